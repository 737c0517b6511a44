"""`onnxruntime`: the ONNX export on ONNX Runtime's CPU execution provider, tuned for batch-1 latency.

Session: all graph optimisations, sequential execution, `threads` intra-op threads (default
`default_threads()`), one inter-op thread. Batch 1 — the app's every frame — runs through an IO
binding with a preallocated input and outputs (no per-call output allocation inside ONNX Runtime);
other batch sizes use `session.run`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.assets import NUM_EXPRESSIONS, NUM_LANDMARKS
from engine.backends.base import BackendConfig, as_landmark_batch
from engine.errors import BackendUnavailable

INSTALL = "pip install onnxruntime==1.31.1"


def default_threads() -> int:
    """Intra-op threads: the CPUs this process may use, at most 4 (more only adds sync cost at batch 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def session_options(threads: int):
    """SessionOptions for low batch-1 latency on the CPU."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


def resolve_onnx(cfg: BackendConfig) -> Path:
    """The ONNX file matching cfg's model (exported on a miss; see `engine.export.ensure_onnx`)."""
    from engine.export import ensure_onnx

    return ensure_onnx(cfg.model_path, cfg.onnx_path, cfg.model, cfg.cache_dir)


class OnnxRuntimeBackend:
    """ONNX Runtime, CPU execution provider."""

    name = "onnxruntime"

    def __init__(self, cfg: BackendConfig = BackendConfig(), onnx_file: Path | None = None) -> None:
        """cfg: as every back-end; onnx_file: run this file as it is (benchmarks), skipping the export
        and staleness check of `resolve_onnx`."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable(f"onnxruntime: the onnxruntime package is not installed ({INSTALL})") from None
        self.onnx_path = Path(onnx_file) if onnx_file is not None else resolve_onnx(cfg)
        self.threads = int(cfg.threads or default_threads())
        self.session = ort.InferenceSession(str(self.onnx_path), sess_options=session_options(self.threads),
                                            providers=["CPUExecutionProvider"])
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        self.num_vertices = int(outputs["vertices"][1])
        self.device = f"cpu ({self.threads} threads)"
        # batch-1 IO binding over preallocated numpy buffers
        self._x1 = np.zeros((1, NUM_LANDMARKS, 3), np.float32)
        self._v1 = np.zeros((1, self.num_vertices, 3), np.float32)
        self._e1 = np.zeros((1, NUM_EXPRESSIONS), np.float32)
        self._binding = self.session.io_binding()
        self._binding.bind_input("landmarks", "cpu", 0, np.float32, list(self._x1.shape), self._x1.ctypes.data)
        self._binding.bind_output("vertices", "cpu", 0, np.float32, list(self._v1.shape), self._v1.ctypes.data)
        self._binding.bind_output("expressions", "cpu", 0, np.float32, list(self._e1.shape), self._e1.ctypes.data)

    def infer(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """landmarks [B,468,3] f32 → (vertices [B,V,3] f32 mm, expressions [B,52] f32)."""
        if self.session is None:
            raise RuntimeError("onnxruntime back-end is closed")
        x = as_landmark_batch(landmarks)
        if x.shape[0] == 1:
            self._x1[...] = x
            self.session.run_with_iobinding(self._binding)
            return self._v1.copy(), self._e1.copy()
        v, e = self.session.run(None, {"landmarks": x})
        return v, e

    def close(self) -> None:
        self._binding = None
        self.session = None
