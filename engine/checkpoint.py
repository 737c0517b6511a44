"""Saving and loading the face model, with a content hash, a format version and a topology check.

File: `models/face_model.pt` (torch.save of plain containers: loadable with weights_only=True) and
`models/face_model.sha256` (hex digest of the .pt bytes), checked before the model is built.
"""
from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path

import torch

from engine.errors import CheckpointError
from engine.hierarchy import HIERARCHY_PATH, MeshHierarchy, load_hierarchy
from engine.model import FaceModel, ModelConfig

FORMAT_VERSION = 1
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
CHECKPOINT_PATH = MODELS_DIR / "face_model.pt"
REBUILD = "rebuild it with `python main.py train`"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_path(path: Path) -> Path:
    return path.with_suffix(".sha256")


def save_checkpoint(model: FaceModel, hierarchy: MeshHierarchy, path: Path = CHECKPOINT_PATH,
                    train_info: dict | None = None) -> str:
    """Write the checkpoint and its `.sha256`; returns the digest."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": model.cfg.to_dict(),
        "topology_hash": hierarchy.topology_hash(),
        "state_dict": state,
        "train_info": train_info or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    digest = sha256_file(path)
    hash_path(path).write_text(f"{digest}  {path.name}\n")
    return digest


def read_checkpoint(path: Path = CHECKPOINT_PATH) -> dict:
    """Verify existence and hash, then load the payload (weights_only). Raises CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} not found; {REBUILD}")
    hp = hash_path(path)
    if hp.exists():
        want = hp.read_text().split()[0] if hp.read_text().strip() else ""
        if want != sha256_file(path):
            raise CheckpointError(f"{path} is corrupt (sha256 differs from {hp.name}); {REBUILD}")
    try:
        # TorchVersion (a str subclass) appears in train_info of checkpoints written by torch ≤ 2.13 code
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is unreadable ({type(exc).__name__}); {REBUILD}") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path} is not a facemesh-live checkpoint; {REBUILD}")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {payload['format_version']}, this build reads "
                              f"version {FORMAT_VERSION}; {REBUILD}")
    return payload


def load_face_model(path: Path = CHECKPOINT_PATH, hierarchy: MeshHierarchy | None = None) -> FaceModel:
    """The trained FaceModel in eval mode, checked against the shipped mesh hierarchy."""
    payload = read_checkpoint(path)
    h = hierarchy or load_hierarchy(HIERARCHY_PATH)
    if payload["topology_hash"] != h.topology_hash():
        raise CheckpointError(f"{path} was trained for another mesh topology (hash {payload['topology_hash'][:12]}, "
                              f"models/hierarchy.npz has {h.topology_hash()[:12]}); {REBUILD}")
    try:
        cfg = ModelConfig.from_dict(payload["model_config"])
        model = FaceModel.build(h, cfg)
        wanted = model.state_dict()
        # graph buffers are rebuilt from the hierarchy (whose topology hash matched); keep the rest
        model.load_state_dict({k: v for k, v in payload["state_dict"].items() if k in wanted}, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} does not fit this model ({str(exc).splitlines()[0][:120]}); {REBUILD}") from None
    return model.eval()
