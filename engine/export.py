"""ONNX export of the face model (`python main.py export`): one self-contained file, dynamic batch.

    landmarks [B,468,3] f32 (normalised mm)  →  vertices [B,V,3] f32 (mm), expressions [B,52] f32

What is exported is the model's inference lowering (`engine.lowering.LeanFaceModel`: the same
function regrouped into ~50 nodes of Gemm, MatMul and Gather), not the training graph (~1,000
nodes); parity is always checked against the training model itself. The TorchScript exporter (`dynamo=False`) writes weights inline (no `.onnx.data` beside it) and keeps
axis 0 symbolic. Every file is checked with `onnx.checker` and run in ONNX Runtime against torch on
random inputs at batch 1 and batch 5 (so the dynamic axis is exercised); the largest absolute
differences are returned. The source checkpoint's sha256 is stored in the file's metadata
(`source_sha256`), so back-ends can tell a stale export from a current one (`onnx_is_current`).
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.assets import MODELS_DIR, NUM_LANDMARKS
from engine.errors import UserError

log = logging.getLogger("facemesh.export")

INPUT_NAME = "landmarks"
OUTPUT_NAMES = ("vertices", "expressions")
SOURCE_KEY = "source_sha256"
LOWERING_KEY = "facemesh_lowering"  # the lowering version the file was made with (engine.lowering)
ONNX_PATH = MODELS_DIR / "decoder.onnx"


@dataclass(frozen=True)
class ExportReport:
    """What `export_onnx` wrote and how closely ONNX Runtime reproduces torch (max |Δ| over the test batches)."""

    path: Path
    max_abs_err_vertices: float  # mm
    max_abs_err_expressions: float  # expression weight units (0..1)
    num_vertices: int
    opset: int
    bytes: int


def random_landmarks(batch: int, seed: int = 0, scale_mm: float = 40.0) -> np.ndarray:
    """Plausible-magnitude test input [batch,468,3] f32: N(0, scale_mm) per coordinate."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, NUM_LANDMARKS, 3)) * scale_mm).astype(np.float32)


def export_onnx(model: torch.nn.Module, path: Path = ONNX_PATH, opset: int = 17,
                source_sha256: str | None = None, parity_batches: tuple[int, ...] = (1, 5),
                lowered: bool = True) -> ExportReport:
    """Export `model` (a FaceModel: landmarks [B,468,3] → (vertices [B,V,3], expressions [B,52])) to `path`.

    The graph is `engine.lowering.lower(model)` (lowered=False: the training graph as it is, for
    benchmarks that show what the lowering buys; never used by a back-end). Checks the file with `onnx.checker`, then compares
    ONNX Runtime (CPU) with the torch model on random inputs of each size in `parity_batches`. The file
    is written atomically (temporary name, then rename). Raises UserError if the destination cannot be
    written.
    """
    import onnx

    from engine.lowering import lower

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {path.parent} ({exc.strerror}); pass a writable --out") from None
    model = model.eval().cpu()
    lean = lower(model) if lowered else model
    example = torch.from_numpy(random_landmarks(2))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is chosen on purpose
            torch.onnx.export(lean, (example,), str(tmp), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAMES[0]: {0: "batch"},
                                            OUTPUT_NAMES[1]: {0: "batch"}},
                              opset_version=opset, dynamo=False, do_constant_folding=True)
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto, full_check=True)
        _stamp(proto, source_sha256 if lowered else None, lowered)
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"cannot write {path} ({exc.strerror}); pass a writable --out") from None
    finally:
        tmp.unlink(missing_ok=True)
    err_v, err_e = onnx_parity(model, path, parity_batches)
    report = ExportReport(path, err_v, err_e, int(model.num_vertices), opset, path.stat().st_size)
    write_sidecar(report, source_sha256)
    return report


def write_sidecar(report: ExportReport, source_sha256: str | None) -> Path:
    """`<name>.json` beside the export: its source hash, names, sizes and the parity figures."""
    side = report.path.with_suffix(".json")
    side.write_text(json.dumps({
        "source_sha256": source_sha256, "opset": report.opset, "input": INPUT_NAME, "outputs": list(OUTPUT_NAMES),
        "num_vertices": report.num_vertices, "bytes": report.bytes,
        "max_abs_err_vertices_mm": report.max_abs_err_vertices,
        "max_abs_err_expressions": report.max_abs_err_expressions}, indent=2) + "\n")
    return side


def _stamp(proto, source_sha256: str | None, lowered: bool = True) -> None:
    """Record the source checkpoint's hash and the lowering version in the model's metadata_props."""
    from engine.lowering import LOWERING_VERSION

    del proto.metadata_props[:]
    entries = {LOWERING_KEY: str(LOWERING_VERSION) if lowered else "none"}
    if source_sha256:
        entries[SOURCE_KEY] = source_sha256
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "facemesh-live"


def onnx_parity(model: torch.nn.Module, path: Path, batches: tuple[int, ...] = (1, 5), seed: int = 1
                ) -> tuple[float, float]:
    """Max |torch − ONNX Runtime| over random inputs of each batch size: (vertices mm, expressions)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    err_v = err_e = 0.0
    for i, b in enumerate(batches):
        x = random_landmarks(b, seed + i)
        with torch.no_grad():
            tv, te = model(torch.from_numpy(x))
        ov, oe = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
        if ov.shape != tuple(tv.shape) or oe.shape != tuple(te.shape):
            raise RuntimeError(f"ONNX output shapes {ov.shape}, {oe.shape} differ from torch "
                               f"{tuple(tv.shape)}, {tuple(te.shape)} at batch {b}")
        err_v = max(err_v, float(np.abs(ov - tv.numpy()).max()))
        err_e = max(err_e, float(np.abs(oe - te.numpy()).max()))
    return err_v, err_e


def onnx_metadata(path: Path) -> dict[str, str] | None:
    """The metadata_props stored by `export_onnx` as a dict, or None (not a readable ONNX file)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (OSError, ValueError, RuntimeError, onnx.onnx_cpp2py_export.checker.ValidationError):
        return None
    except Exception as exc:  # protobuf's DecodeError has no stable import path across versions
        if type(exc).__name__ == "DecodeError":
            return None
        raise
    return {p.key: p.value for p in proto.metadata_props}


def onnx_source_hash(path: Path) -> str | None:
    """The `source_sha256` stored by `export_onnx`, or None (no such key, or not an ONNX file)."""
    meta = onnx_metadata(path)
    return None if meta is None else meta.get(SOURCE_KEY)


def onnx_is_current(path: Path, source_sha256: str) -> bool:
    """True if `path` was exported from the checkpoint whose sha256 is `source_sha256` by this
    build's lowering (an export from an older lowering is stale: same function, slower graph)."""
    from engine.lowering import LOWERING_VERSION

    meta = onnx_metadata(path) if Path(path).exists() else None
    return meta is not None and meta.get(SOURCE_KEY) == source_sha256 \
        and meta.get(LOWERING_KEY) == str(LOWERING_VERSION)


def model_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's state (names, shapes and bytes of every tensor): the cache key of its export."""
    import hashlib

    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return "state:" + h.hexdigest()


def ensure_onnx(model_path: Path = MODELS_DIR / "face_model.pt", onnx_path: Path | None = None,
                model: torch.nn.Module | None = None, cache_dir: Path = MODELS_DIR / "engine_cache") -> Path:
    """An ONNX export that matches the model, exported first if missing or stale.

    With `model` (an in-memory FaceModel) the key is a hash of its state; otherwise the checkpoint at
    `model_path` (existence, hash and version checked first) and its file sha256. Default destination:
    `models/decoder.onnx` for the shipped checkpoint, else `cache_dir/decoder-<key>.onnx`.
    """
    from engine.checkpoint import CHECKPOINT_PATH, load_face_model, read_checkpoint, sha256_file

    if model is not None:
        digest = model_digest(model)
        default = Path(cache_dir) / f"decoder-{digest[6:22]}.onnx"
    else:
        model_path = Path(model_path)
        read_checkpoint(model_path)  # CheckpointError with its one-line fix when missing/corrupt/old
        digest = sha256_file(model_path)
        shipped = model_path.resolve() == CHECKPOINT_PATH.resolve()
        default = ONNX_PATH if shipped else Path(cache_dir) / f"decoder-{digest[:16]}.onnx"
    path = Path(onnx_path) if onnx_path is not None else default
    if onnx_is_current(path, digest):
        return path
    log.info("exporting %s (missing or older than the model)", path)
    source = model if model is not None else load_face_model(model_path)
    report = export_onnx(source, path, source_sha256=digest)
    log.info("exported %s: max |Δ| vertices %.2e mm, expressions %.2e", path,
             report.max_abs_err_vertices, report.max_abs_err_expressions)
    return path


def export_checkpoint(model_path: Path = MODELS_DIR / "face_model.pt", out: Path = ONNX_PATH, opset: int = 17
                      ) -> ExportReport:
    """`python main.py export`: load the checkpoint (checked), export it stamped with its sha256."""
    from engine.checkpoint import load_face_model, sha256_file

    model = load_face_model(Path(model_path))
    return export_onnx(model, out, opset=opset, source_sha256=sha256_file(Path(model_path)))
