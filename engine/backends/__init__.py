"""Inference back-ends behind one protocol (`base.Backend`) and a registry.

`create_backend("auto")` tries tensorrt → tensorrt-rtx → torch-cuda → onnxruntime → torch-cpu and
logs which it took (one info line for what it skipped). A forced back-end that cannot run raises
`BackendUnavailable` whose one-line message names what is missing and how to install it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from engine.backends.base import Backend
from engine.checkpoint import CHECKPOINT_PATH
from engine.errors import BackendUnavailable, CheckpointError

log = logging.getLogger(__name__)


def _tensorrt(path: Path) -> Backend:
    from engine.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path)


def _tensorrt_rtx(path: Path) -> Backend:
    from engine.backends.onnxruntime_backend import TensorRTRTXBackend

    return TensorRTRTXBackend(path)


def _torch_cuda(path: Path) -> Backend:
    from engine.backends.torch_backend import TorchCUDABackend

    return TorchCUDABackend(path)


def _onnxruntime(path: Path) -> Backend:
    from engine.backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path)


def _torch_cpu(path: Path) -> Backend:
    from engine.backends.torch_backend import TorchCPUBackend

    return TorchCPUBackend(path)


REGISTRY: dict[str, Callable[[Path], Backend]] = {
    "tensorrt": _tensorrt,
    "tensorrt-rtx": _tensorrt_rtx,
    "torch-cuda": _torch_cuda,
    "onnxruntime": _onnxruntime,
    "torch-cpu": _torch_cpu,
}
AUTO_ORDER = ("tensorrt", "tensorrt-rtx", "torch-cuda", "onnxruntime", "torch-cpu")


def create_backend(name: str = "auto", model_path: Path = CHECKPOINT_PATH) -> Backend:
    """The named back-end, or the first that works for "auto". Checkpoint errors always propagate
    (they are the user's to fix whatever the back-end); other failures are collected and reported
    together."""
    model_path = Path(model_path)
    if name != "auto" and name not in REGISTRY:
        raise BackendUnavailable(f"unknown back-end {name!r}; choose auto or one of {', '.join(REGISTRY)}")
    order = AUTO_ORDER if name == "auto" else (name,)
    reasons: list[str] = []
    for cand in order:
        try:
            backend = REGISTRY[cand](model_path)
        except CheckpointError:
            raise
        except BackendUnavailable as exc:
            reasons.append(str(exc))
            continue
        if name == "auto" and reasons:
            log.info("back-end auto: using %s (skipped: %s)", cand, " | ".join(r.split(":")[0] for r in reasons))
        return backend
    raise BackendUnavailable(" | ".join(reasons))


def available_backends(model_path: Path = CHECKPOINT_PATH) -> dict[str, str]:
    """Each registered back-end → "ok (device)" or the reason it cannot run here."""
    out = {}
    for name, factory in REGISTRY.items():
        try:
            b = factory(Path(model_path))
            out[name] = f"ok ({b.device})"
            b.close()
        except BackendUnavailable as exc:
            out[name] = str(exc)
    return out
