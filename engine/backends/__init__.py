"""Inference back-ends behind one protocol (`base.Backend`) and a registry.

    create_backend("auto")   tries tensorrt → tensorrt-rtx → torch-cuda → onnxruntime → torch-cpu and
                             logs one info line naming the one it took and why the others were skipped;
    create_backend(NAME)     that back-end, or `BackendUnavailable` whose one-line message says what is
                             missing and how to install it;
    available_backends()     every back-end → "ok: <device>" or the reason it cannot run here.

Checkpoint problems (`CheckpointError`) are never swallowed by the fall-back: they are the user's to fix
whichever back-end runs. *Any* other failure of an optional back-end while it starts (a driver error, a
failed engine build, an API a new TensorRT no longer has) is recorded as a reason and the next candidate
is tried; one that is not an expected kind of failure (anything but BackendUnavailable, ImportError,
OSError, RuntimeError, ValueError) may be a bug of ours, so it is also logged as a warning with its
traceback (shown with -v). The info line names each skipped back-end with a short reason; the full
reasons are logged at debug level (-v).
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


EXPECTED_FAILURES = (ImportError, OSError, RuntimeError, ValueError)


def _start(name: str, cfg: BackendConfig) -> Backend:
    """REGISTRY[name](cfg), with any failure other than a checkpoint problem as BackendUnavailable."""
    try:
        return REGISTRY[name](cfg)
    except (CheckpointError, BackendUnavailable):
        raise
    except Exception as exc:  # noqa: BLE001 - an optional back-end must never take the app down
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if not isinstance(exc, EXPECTED_FAILURES):
            log.warning("back-end %s failed in an unexpected way (%s: %s) — possibly a bug in facemesh-live; "
                        "falling back", name, type(exc).__name__, first, exc_info=log.isEnabledFor(logging.DEBUG))
        raise BackendUnavailable(f"{name}: failed to start ({type(exc).__name__}: {first})") from exc


def short_reason(message: str) -> str:
    """The gist of a back-end's refusal: without the name prefix, cut before the install hint (at the
    first '; ' or ' (pip'), at most 60 characters. "tensorrt: the tensorrt Python package is not
    installed; install …" → "the tensorrt Python package is not installed"."""
    text = message.split(": ", 1)[1] if ": " in message else message
    for sep in ("; ", " (pip", " (install"):
        text = text.split(sep, 1)[0]
    return text if len(text) <= 60 else text[:57] + "..."


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
            skipped = "; not used: " + ", ".join(f"{n} ({short_reason(r)})" for n, r in zip(order, reasons)) \
                if reasons else ""
            log.info("back-end: %s on %s%s", backend.name, backend.device, skipped)
            for r in reasons:
                log.debug("back-end refused: %s", r)
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
