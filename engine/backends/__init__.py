"""Inference back-ends behind one protocol (`base.Backend`) and a registry.

    create_backend("auto")   tries tensorrt → tensorrt-rtx → torch-cuda → onnxruntime → torch-cpu and
                             logs one info line naming the one it took and why the others were skipped;
    create_backend(NAME)     that back-end, or `BackendUnavailable` whose one-line message says what is
                             missing and how to install it;
    available_backends()     every back-end → "ok: <device>" or the reason it cannot run here.

Checkpoint problems (`CheckpointError`) are never swallowed by the fall-back: they are the user's to fix
whichever back-end runs. Anything other than BackendUnavailable that a back-end raises while starting
(a driver error, a failed engine build) is also recorded as a reason and the next candidate is tried.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from engine.backends.base import ENGINE_CACHE_DIR, MODELS_DIR, Backend, BackendConfig
from engine.errors import BackendUnavailable, CheckpointError

log = logging.getLogger("facemesh.backends")


def _tensorrt(cfg: BackendConfig) -> Backend:
    from engine.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(cfg)


def _tensorrt_rtx(cfg: BackendConfig) -> Backend:
    from engine.backends.trt_rtx_backend import TensorRTRTXBackend

    return TensorRTRTXBackend(cfg)


def _torch_cuda(cfg: BackendConfig) -> Backend:
    from engine.backends.torch_backend import TorchCUDABackend

    return TorchCUDABackend(cfg)


def _onnxruntime(cfg: BackendConfig) -> Backend:
    from engine.backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(cfg)


def _torch_cpu(cfg: BackendConfig) -> Backend:
    from engine.backends.torch_backend import TorchCPUBackend

    return TorchCPUBackend(cfg)


REGISTRY: dict[str, Callable[[BackendConfig], Backend]] = {
    "tensorrt": _tensorrt,
    "tensorrt-rtx": _tensorrt_rtx,
    "torch-cuda": _torch_cuda,
    "onnxruntime": _onnxruntime,
    "torch-cpu": _torch_cpu,
}
AUTO_ORDER = ("tensorrt", "tensorrt-rtx", "torch-cuda", "onnxruntime", "torch-cpu")
BACKEND_NAMES = ("auto", *REGISTRY)


def _start(name: str, cfg: BackendConfig) -> Backend:
    """REGISTRY[name](cfg), with any failure other than a checkpoint problem as BackendUnavailable."""
    try:
        return REGISTRY[name](cfg)
    except (CheckpointError, BackendUnavailable):
        raise
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise BackendUnavailable(f"{name}: failed to start ({type(exc).__name__}: {first})") from exc


def create_backend(name: str = "auto", model_path: Path = MODELS_DIR / "face_model.pt",
                   onnx_path: Path | None = None, *, model=None, precision: str = "fp16", max_batch: int = 4096,
                   cache_dir: Path = ENGINE_CACHE_DIR, threads: int | None = None, cuda_graphs: bool = True
                   ) -> Backend:
    """The named back-end (`BACKEND_NAMES`), or for "auto" the first in `AUTO_ORDER` that starts.

    model_path: checkpoint (ignored when `model`, an in-memory FaceModel, is given); onnx_path: the ONNX
    export for ONNX-based back-ends (default: models/decoder.onnx for the shipped checkpoint, exported on
    demand if missing or stale); see `BackendConfig` for the rest.
    Raises BackendUnavailable (all reasons in one line) or CheckpointError.
    """
    if name not in BACKEND_NAMES:
        raise BackendUnavailable(f"unknown back-end {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    cfg = BackendConfig(Path(model_path), None if onnx_path is None else Path(onnx_path), model, precision,
                        int(max_batch), Path(cache_dir), threads, cuda_graphs)
    order = AUTO_ORDER if name == "auto" else (name,)
    reasons: list[str] = []
    for cand in order:
        try:
            backend = _start(cand, cfg)
        except BackendUnavailable as exc:
            reasons.append(str(exc))
            continue
        if name == "auto":
            skipped = f" (skipped: {' | '.join(reasons)})" if reasons else ""
            log.info("back-end auto: using %s on %s%s", backend.name, backend.device, skipped)
        return backend
    if name == "auto":
        raise BackendUnavailable("no back-end can run here: " + " | ".join(reasons))
    raise BackendUnavailable(reasons[0])


def available_backends(model_path: Path = MODELS_DIR / "face_model.pt", **kwargs) -> dict[str, str]:
    """Each registered back-end → "ok: <device>" or the reason it cannot run here (starts and closes each)."""
    out: dict[str, str] = {}
    for name in REGISTRY:
        try:
            b = create_backend(name, model_path, **kwargs)
        except BackendUnavailable as exc:
            out[name] = str(exc)
            continue
        out[name] = f"ok: {b.device}"
        b.close()
    return out


__all__ = ["AUTO_ORDER", "BACKEND_NAMES", "Backend", "BackendConfig", "REGISTRY", "available_backends",
           "create_backend"]
