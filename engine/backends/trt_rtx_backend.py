"""`tensorrt-rtx`: ONNX Runtime with NVIDIA's TensorRT-RTX execution provider.

The one TensorRT that installs from PyPI alone: `pip install onnxruntime-ep-nv-tensorrt-rtx-cu13`
(a plugin EP, ~147 MB, bundling `libtensorrt_rtx`; needs onnxruntime ≥ 1.24 and an NVIDIA driver for
CUDA 13, or the `-cu12` variant). It is registered at run time through ONNX Runtime's plugin-EP API
(`register_execution_provider_library`, `get_ep_devices`, `SessionOptions.add_provider_for_devices`).
ONNX Runtime builds that compile the EP in (`onnxruntime-trt-rtx`, WinML) expose it instead as the
provider `NvTensorRTRTXExecutionProvider`; both routes are tried.

TensorRT-RTX targets GeForce/RTX GPUs: its support matrix lists compute capabilities 7.5, 8.6, 8.9 and
12.x, not 8.0 (A100) or 9.0 (H100/H200); on those the EP finds no device or fails to build, and this
back-end says so. The EP compiles engines just in time and keeps them in `nv_runtime_cache_path`
(models/engine_cache/trt-rtx-<onnx hash>/), with a batch profile of 1…max_batch.
Tested here only for its error paths: no GPU was available to this project's CPU machine.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from engine.assets import NUM_LANDMARKS
from engine.backends.base import BackendConfig, as_landmark_batch
from engine.errors import BackendUnavailable

log = logging.getLogger("facemesh.tensorrt_rtx")
PROVIDER = "NvTensorRTRTXExecutionProvider"
PLUGIN_MODULE = "onnxruntime_ep_nv_tensorrt_rtx"
INSTALL = "pip install onnxruntime-ep-nv-tensorrt-rtx-cu13 (or -cu12 for a CUDA 12 driver)"
DOCUMENTED_CAPABILITIES = ("7.5", "8.6", "8.9", "12.0", "12.1")  # TensorRT-RTX 1.x support matrix


def provider_options(cache_path: Path, max_batch: int, cuda_graph: bool = True) -> dict[str, str]:
    """TensorRT-RTX EP options (all strings): runtime cache, CUDA graphs, one batch profile 1…max_batch."""
    shape = lambda b: f"landmarks:{b}x{NUM_LANDMARKS}x3"  # noqa: E731
    return {"nv_runtime_cache_path": str(cache_path), "enable_cuda_graph": "1" if cuda_graph else "0",
            "nv_profile_min_shapes": shape(1), "nv_profile_opt_shapes": shape(1),
            "nv_profile_max_shapes": shape(max_batch)}


def _gpu_note() -> str:
    """', GPU <name> has compute capability X (not in TensorRT-RTX's support matrix)' or ''."""
    try:
        import torch

        if torch.cuda.is_available():
            cc = "%d.%d" % torch.cuda.get_device_capability()
            if cc not in DOCUMENTED_CAPABILITIES:
                return (f"; {torch.cuda.get_device_name()} has compute capability {cc}, which TensorRT-RTX's "
                        f"support matrix does not list ({', '.join(DOCUMENTED_CAPABILITIES)}): use --backend tensorrt")
    except (ImportError, RuntimeError):
        pass
    return ""


def _register_plugin(ort):
    """Register the PyPI plugin; returns its OrtEpDevices, or raises BackendUnavailable with the reason."""
    try:
        plugin = __import__(PLUGIN_MODULE)
    except ImportError:
        raise BackendUnavailable(f"tensorrt-rtx: the TensorRT-RTX execution provider is not installed ({INSTALL}; "
                                 f"needs an NVIDIA RTX-class GPU){_gpu_note()}") from None
    if not hasattr(ort, "register_execution_provider_library"):
        raise BackendUnavailable(f"tensorrt-rtx: onnxruntime {ort.__version__} has no plugin-EP API; "
                                 "pip install 'onnxruntime>=1.24'")
    ep_name = plugin.get_ep_name()
    try:
        ort.register_execution_provider_library(ep_name, plugin.get_library_path())
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/RuntimeException types here
        if "already registered" not in str(exc).lower():
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendUnavailable(f"tensorrt-rtx: the plugin does not load ({first}){_gpu_note()}") from None
    devices = [d for d in ort.get_ep_devices() if d.ep_name == ep_name]
    if not devices:
        raise BackendUnavailable(f"tensorrt-rtx: the plugin found no GPU it supports{_gpu_note() or ' (no NVIDIA GPU?)'}")
    return devices


class TensorRTRTXBackend:
    """ONNX Runtime session whose graph runs entirely in the TensorRT-RTX EP (no CPU fallback)."""

    name = "tensorrt-rtx"

    def __init__(self, cfg: BackendConfig = BackendConfig()) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("tensorrt-rtx: onnxruntime is not installed (pip install onnxruntime)") from None
        from engine.backends.onnxruntime_backend import resolve_onnx, session_options

        builtin = PROVIDER in ort.get_available_providers()
        devices = None if builtin else _register_plugin(ort)
        self.onnx_path = resolve_onnx(cfg)
        key = hashlib.sha256(self.onnx_path.read_bytes()).hexdigest()[:16]
        cache = Path(cfg.cache_dir) / f"trt-rtx-{key}"
        cache.mkdir(parents=True, exist_ok=True)
        # CUDA graphs in ORT EPs need every input and output IO-bound to device memory; `infer` feeds host
        # numpy arrays, so they stay off here.
        opts = provider_options(cache, int(cfg.max_batch), cuda_graph=False)
        so = session_options(1)
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")  # all of it on the GPU, or fail
        try:
            if builtin:
                self.session = ort.InferenceSession(str(self.onnx_path), sess_options=so, providers=[(PROVIDER, opts)])
            else:
                so.add_provider_for_devices(devices, opts)
                self.session = ort.InferenceSession(str(self.onnx_path), sess_options=so)
        except Exception as exc:  # noqa: BLE001 - ORT's Fail/InvalidArgument/RuntimeException
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise BackendUnavailable(f"tensorrt-rtx: the EP cannot run the model ({first}){_gpu_note()}") from None
        if not any("TensorRT" in p or "Nv" in p for p in self.session.get_providers()):
            raise BackendUnavailable(f"tensorrt-rtx: ONNX Runtime did not place the model on the EP "
                                     f"({', '.join(self.session.get_providers())}){_gpu_note()}")
        self.device = "cuda (TensorRT-RTX EP"
        if devices:
            meta = getattr(getattr(devices[0], "device", None), "metadata", None) or {}
            self.device += f", {meta.get('Description', 'NVIDIA GPU')}"
        self.device += ")"

    def infer(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """landmarks [B,468,3] f32 → (vertices [B,V,3] f32 mm, expressions [B,52] f32)."""
        if self.session is None:
            raise RuntimeError("tensorrt-rtx back-end is closed")
        v, e = self.session.run(None, {"landmarks": as_landmark_batch(landmarks)})
        return v, e

    def close(self) -> None:
        self.session = None
