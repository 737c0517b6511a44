"""Saving and loading the face model, with a content hash, a format version and a topology check.

Files: `models/face_model.pt` — `torch.save` of plain containers only (loadable with
`weights_only=True`): {format_version: int, model_config: dict, topology_hash: str (sha256 of the
mesh hierarchy's topology and up-sampling operators, `MeshHierarchy.topology_hash`), state_dict:
{name: tensor}, train_info: dict} — and `models/face_model.sha256` (`<hex digest>  face_model.pt`), checked before
anything is unpickled. Every refusal is a `CheckpointError` with one line naming the file, the
reason and the fix (`python main.py train`).
"""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from engine.assets import MODELS_DIR, sha256_file
from engine.errors import CheckpointError
from engine.hierarchy import HIERARCHY_PATH, MeshHierarchy, load_hierarchy
from engine.model import FaceModel, ModelConfig

# 2: graph buffers (neighbour lists, up-sampling) are rebuilt from the hierarchy, not stored.
FORMAT_VERSION = 2
CHECKPOINT_PATH = MODELS_DIR / "face_model.pt"
REBUILD = "rebuild it with `python main.py train`"


def hash_path(path: Path) -> Path:
    """The sibling hash file of a checkpoint: `x.pt` → `x.sha256`."""
    return Path(path).with_suffix(".sha256")


def _show(path: Path) -> str:
    """The path as the user typed it relative to the working directory when possible."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def save_checkpoint(model: FaceModel, hierarchy: MeshHierarchy, path: Path = CHECKPOINT_PATH,
                    train_info: dict | None = None) -> str:
    """Write the checkpoint and its `.sha256` (each atomically, via a temporary file); return the digest.

    train_info must hold plain JSON-like values (dict, list, str, int, float, bool, None).
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": model.cfg.to_dict(),
        "topology_hash": hierarchy.topology_hash(),
        "state_dict": state,
        "train_info": train_info or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    digest = sha256_file(tmp)
    os.replace(tmp, path)
    tmp_hash = hash_path(path).with_name(hash_path(path).name + ".tmp")
    tmp_hash.write_text(f"{digest}  {path.name}\n")
    os.replace(tmp_hash, hash_path(path))
    return digest


def _fix(path: Path) -> str:
    """What to do about a bad checkpoint: for the shipped one, restoring it from git comes first (a
    retrain takes ~22 minutes); for any other, retraining or pointing --model at a good file."""
    if path.resolve() == CHECKPOINT_PATH.resolve():
        return ("restore the shipped file with `git checkout models/face_model.pt models/face_model.sha256`, "
                f"or {REBUILD} (~22 min)")
    return f"{REBUILD} (~22 min), or pass --model a good checkpoint"


def read_checkpoint(path: Path = CHECKPOINT_PATH) -> dict:
    """Verify existence, content hash and format version, then return the payload (weights_only)."""
    path = Path(path)
    name = _show(path)
    if path.is_dir():
        raise CheckpointError(f"{name} is a folder, not a checkpoint file; pass --model a .pt file "
                              f"such as {_show(CHECKPOINT_PATH)}")
    if not path.is_file():
        raise CheckpointError(f"{name} not found; {_fix(path)}")
    fix = _fix(path)
    hp = hash_path(path)
    if not hp.is_file():
        raise CheckpointError(f"{name} has no content hash ({hp.name} is missing); {fix}")
    words = hp.read_text().split()
    if not words or words[0] != sha256_file(path):
        raise CheckpointError(f"{name} is corrupt (sha256 mismatch with {hp.name}); {fix}")
    try:
        # TorchVersion (a str subclass) sits in train_info of checkpoints from before it was stored as str
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{name} is unreadable ({type(exc).__name__}); {fix}") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{name} is not a facemesh-live checkpoint; {fix}")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{name} has format version {payload['format_version']}, this build reads "
                              f"version {FORMAT_VERSION}; {fix}")
    for key in ("model_config", "topology_hash", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{name} lacks '{key}'; {fix}")
    return payload


def load_face_model(path: Path = CHECKPOINT_PATH, hierarchy: MeshHierarchy | None = None) -> FaceModel:
    """The trained FaceModel in eval mode, checked against the mesh hierarchy (default: the shipped
    `models/hierarchy.npz`). Raises CheckpointError (missing, corrupt, other version or topology)."""
    payload = read_checkpoint(path)
    name = _show(Path(path))
    h = hierarchy or load_hierarchy(HIERARCHY_PATH)
    theirs, ours = str(payload["topology_hash"]), h.topology_hash()
    if theirs != ours:
        raise CheckpointError(f"{name} was trained for another mesh topology (hash {theirs[:12]}, "
                              f"the mesh hierarchy has {ours[:12]}); {REBUILD}")
    try:
        cfg = ModelConfig.from_dict(payload["model_config"])
        model = FaceModel.build(h, cfg)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{name} has a model configuration this build cannot make ({exc}); {REBUILD}") from None
    state = payload["state_dict"]
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    for what, keys in (("lacks", missing), ("has unknown", unexpected), ("has wrongly shaped", shapes)):
        if keys:
            raise CheckpointError(f"{name} does not fit this model: it {what} tensors ({len(keys)}, e.g. "
                                  f"{keys[0]}); {REBUILD}")
    bad = sorted(k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()
                 and not bool(torch.isfinite(v).all()))
    if bad:  # a diverged run: it would stream NaN to every receiver
        raise CheckpointError(f"{name} holds non-finite weights ({len(bad)} tensors, e.g. {bad[0]}): the run that "
                              f"made it diverged; {_fix(Path(path))}")
    model.load_state_dict(state)
    return model.eval()


def checkpoint_info(path: Path = CHECKPOINT_PATH) -> dict:
    """The verified checkpoint's train_info (plain dict)."""
    return dict(read_checkpoint(path).get("train_info", {}))
