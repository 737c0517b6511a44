"""PyTorch back-ends: `torch-cpu` (eager, inference mode) and `torch-cuda` (CUDA graphs per batch size).

Both run the model's inference lowering (`engine.lowering.LeanFaceModel`: the same function as the
checkpoint's FaceModel in ~40 kernels instead of ~500).

torch-cuda keeps, for each batch size it has seen (up to `MAX_GRAPHS` of them), a captured CUDA graph
with static device input/outputs and a pinned host copy of the outputs, so a repeated batch size — the
app's batch 1 above all — costs one host→device copy, one graph replay and one device→host copy, with
no allocation on the device.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from engine.assets import NUM_EXPRESSIONS, NUM_LANDMARKS
from engine.backends.base import BackendConfig, as_landmark_batch
from engine.errors import BackendUnavailable

MAX_GRAPHS = 8  # distinct batch sizes kept as captured graphs (each holds its own static buffers)


def load_model(cfg: BackendConfig) -> torch.nn.Module:
    """The model to run, in eval mode: the lowering of `cfg.model` if given, else of the checked checkpoint."""
    from engine.lowering import lower

    if cfg.model is not None:
        return lower(cfg.model)
    from engine.checkpoint import load_face_model

    return lower(load_face_model(cfg.model_path))


class TorchCPUBackend:
    """The model in eager PyTorch on the CPU (`threads` sets torch's process-wide intra-op threads)."""

    name = "torch-cpu"

    def __init__(self, cfg: BackendConfig = BackendConfig()) -> None:
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        self.model = load_model(cfg).cpu()
        self.device = f"cpu ({torch.get_num_threads()} threads)"

    def infer(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """landmarks [B,468,3] f32 → (vertices [B,V,3] f32 mm, expressions [B,52] f32)."""
        if self.model is None:
            raise RuntimeError("torch-cpu back-end is closed")
        x = torch.from_numpy(as_landmark_batch(landmarks))
        with torch.inference_mode():
            v, e = self.model(x)
        return v.numpy(), e.numpy()

    def close(self) -> None:
        self.model = None


def cuda_unavailable_reason() -> str | None:
    """None if PyTorch sees a CUDA device, else what is missing (one clause)."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build; install a CUDA build of torch " \
               "(pip install torch --index-url https://download.pytorch.org/whl/cu126)"
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return f"torch {torch.__version__} finds no CUDA device{hint}; check the NVIDIA driver (nvidia-smi)"
    return None


class _Graph:
    """One captured forward pass at a fixed batch size: static input, outputs and pinned host copies."""

    def __init__(self, model: torch.nn.Module, batch: int, num_vertices: int, stream: torch.cuda.Stream,
                 use_graph: bool) -> None:
        self.model = model
        self.x = torch.zeros(batch, NUM_LANDMARKS, 3, device="cuda")
        self.host_x = torch.empty(batch, NUM_LANDMARKS, 3, pin_memory=True)
        self.host_v = torch.empty(batch, num_vertices, 3, pin_memory=True)
        self.host_e = torch.empty(batch, NUM_EXPRESSIONS, pin_memory=True)
        self.graph: torch.cuda.CUDAGraph | None = None
        stream.wait_stream(torch.cuda.current_stream())  # the buffers above were made on the current stream
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # warm-up on a side stream, as capture requires
                self.v, self.e = model(self.x)
        torch.cuda.current_stream().wait_stream(stream)
        if use_graph:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph), torch.inference_mode():
                self.v, self.e = model(self.x)

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.x.copy_(x, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
            return self.v, self.e
        with torch.inference_mode():
            return self.model(self.x)


class TorchCUDABackend:
    """The model on an NVIDIA GPU through PyTorch, with CUDA graphs for repeated batch sizes."""

    name = "torch-cuda"

    def __init__(self, cfg: BackendConfig = BackendConfig()) -> None:
        reason = cuda_unavailable_reason()
        if reason:
            raise BackendUnavailable(f"torch-cuda: {reason}")
        self.model = load_model(cfg).cuda()  # the lowering is a new module: cfg.model stays on the CPU
        self.num_vertices = int(self.model.num_vertices)
        self.use_graphs = bool(cfg.cuda_graphs)
        self.stream = torch.cuda.Stream()
        self._graphs: dict[int, _Graph] = {}
        self.device = f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()}" \
                      f"{', CUDA graphs' if self.use_graphs else ''})"

    def _graph(self, batch: int) -> _Graph:
        g = self._graphs.get(batch)
        if g is None:
            if len(self._graphs) >= MAX_GRAPHS:
                self._graphs.pop(next(iter(self._graphs)))
            g = self._graphs[batch] = _Graph(self.model, batch, self.num_vertices, self.stream, self.use_graphs)
        return g

    def infer_tensor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Device tensor [B,468,3] → device tensors (static buffers, overwritten by the next call)."""
        if self.model is None:
            raise RuntimeError("torch-cuda back-end is closed")
        return self._graph(int(x.shape[0])).run(x)

    def infer(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """landmarks [B,468,3] f32 → (vertices [B,V,3] f32 mm, expressions [B,52] f32), fresh host arrays."""
        x = as_landmark_batch(landmarks)
        g = self._graph(x.shape[0])
        g.host_x.numpy()[...] = x  # pinned staging buffer: the upload below is a true async copy
        v, e = g.run(g.host_x)
        g.host_v.copy_(v, non_blocking=True)
        g.host_e.copy_(e, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return g.host_v.numpy().copy(), g.host_e.numpy().copy()

    def close(self) -> None:
        self._graphs.clear()
        self.model = None
