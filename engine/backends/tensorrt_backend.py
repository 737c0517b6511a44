"""`tensorrt`: the face model as a TensorRT engine (official `tensorrt` Python API, imported lazily).

Build: parse the ONNX export, FP16 (default) or FP32, one optimisation profile for batch 1…max_batch.
Cache: `<cache>/trt-<key>.engine` + `.json`, key = sha256 of (ONNX bytes, precision, shapes, TensorRT
version, GPU name and compute capability); built only on a miss, rebuilt when the file does not
deserialise. Run: device buffers preallocated once (torch CUDA tensors) and bound by address; the
batch-1 call replays a captured CUDA graph of `execute_async_v3`, so a frame allocates nothing.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from engine.checkpoint import CHECKPOINT_PATH
from engine.errors import BackendUnavailable

log = logging.getLogger(__name__)
INSTALL = ("install NVIDIA TensorRT for your CUDA version (pip install tensorrt-cu12, or the tar/deb "
           "packages from NVIDIA) and a CUDA build of torch; or use --backend onnxruntime")


def engine_key(onnx_bytes: bytes, fp16: bool, max_batch: int, trt_version: str, gpu: str, capability: str) -> str:
    """Cache key: everything that invalidates a built engine."""
    h = hashlib.sha256(onnx_bytes)
    h.update(json.dumps({"fp16": fp16, "max_batch": max_batch, "trt": trt_version, "gpu": gpu,
                         "cc": capability}, sort_keys=True).encode())
    return h.hexdigest()[:24]


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, model_path: Path = CHECKPOINT_PATH, fp16: bool = True, max_batch: int = 4096,
                 cache: Path | None = None, cuda_graph: bool = True) -> None:
        try:
            import tensorrt as trt  # type: ignore[import-not-found]
        except ImportError:
            raise BackendUnavailable(f"tensorrt: the tensorrt Python package is not installed; {INSTALL}") from None
        except OSError as exc:  # stub wheels without the real libraries
            raise BackendUnavailable(f"tensorrt: its libraries do not load ({exc}); {INSTALL}") from None
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable(f"tensorrt: no CUDA device is visible; {INSTALL}")
        from engine.backends.onnxruntime_backend import cache_dir, onnx_for_checkpoint

        self.trt, self.torch = trt, torch
        self.fp16, self.max_batch = fp16, max_batch
        onnx_path = onnx_for_checkpoint(Path(model_path))
        onnx_bytes = onnx_path.read_bytes()
        gpu = torch.cuda.get_device_name(0)
        cc = "%d.%d" % torch.cuda.get_device_capability(0)
        key = engine_key(onnx_bytes, fp16, max_batch, trt.__version__, gpu, cc)
        folder = cache or cache_dir()
        self.engine_path = folder / f"trt-{key}.engine"
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self._load_cached()
        if self.engine is None:
            blob = self._build(onnx_bytes)
            self.engine_path.write_bytes(blob)
            self.engine_path.with_suffix(".json").write_text(json.dumps(
                {"onnx": str(onnx_path), "fp16": fp16, "max_batch": max_batch, "tensorrt": trt.__version__,
                 "gpu": gpu, "compute_capability": cc}, indent=2) + "\n")
            self.engine = self.runtime.deserialize_cuda_engine(blob)
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.device = f"cuda:0 ({gpu}, TensorRT {trt.__version__}, {'FP16' if fp16 else 'FP32'})"
        nv = None
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if name == "vertices":
                nv = self.engine.get_tensor_shape(name)[1]
        self.num_vertices = int(nv)
        self._buffers: dict[int, tuple] = {}
        self.cuda_graph = cuda_graph

    def _load_cached(self):
        if not self.engine_path.exists():
            return None
        engine = self.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:
            log.warning("tensorrt: cached engine %s is corrupt; rebuilding", self.engine_path)
            self.engine_path.unlink(missing_ok=True)
        return engine

    def _build(self, onnx_bytes: bytes) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(onnx_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailable(f"tensorrt: cannot parse the ONNX export ({errors})")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
        if self.fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        profile.set_shape("landmarks", (1, 468, 3), (1, 468, 3), (self.max_batch, 468, 3))
        config.add_optimization_profile(profile)
        log.info("tensorrt: building the engine (once; cached at %s)", self.engine_path)
        blob = builder.build_serialized_network(network, config)
        if blob is None:
            raise BackendUnavailable("tensorrt: the engine build failed (see TensorRT's log above)")
        return bytes(blob)

    def _bind(self, b: int):
        """Preallocated device buffers for batch b, bound to the context (and a CUDA graph for it)."""
        torch = self.torch
        if b in self._buffers:
            return self._buffers[b]
        x = torch.zeros(b, 468, 3, device="cuda")
        v = torch.empty(b, self.num_vertices, 3, device="cuda")
        e = torch.empty(b, 52, device="cuda")
        graph = None
        with torch.cuda.stream(self.stream):
            self.context.set_input_shape("landmarks", (b, 468, 3))
            for name, t in (("landmarks", x), ("vertices", v), ("expressions", e)):
                self.context.set_tensor_address(name, t.data_ptr())
            self.context.execute_async_v3(self.stream.cuda_stream)  # warm-up, also required before capture
            if self.cuda_graph:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=self.stream):
                    self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        self._buffers[b] = (x, v, e, graph)
        return self._buffers[b]

    def infer_tensor(self, x_gpu):
        """Device tensor [B,468,3] → device tensors (views of preallocated outputs)."""
        b = int(x_gpu.shape[0])
        if b > self.max_batch:
            raise ValueError(f"batch {b} exceeds the engine's profile maximum {self.max_batch}")
        x, v, e, graph = self._bind(b)
        x.copy_(x_gpu)
        if graph is not None:
            graph.replay()
        else:
            self.context.set_input_shape("landmarks", (b, 468, 3))
            for name, t in (("landmarks", x), ("vertices", v), ("expressions", e)):
                self.context.set_tensor_address(name, t.data_ptr())
            self.context.execute_async_v3(self.stream.cuda_stream)
        return v, e

    def infer(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.torch.from_numpy(np.ascontiguousarray(landmarks, dtype=np.float32)).cuda()
        with self.torch.cuda.stream(self.stream):
            v, e = self.infer_tensor(x)
        self.stream.synchronize()
        return v.cpu().numpy(), e.cpu().numpy()

    def close(self) -> None:
        self._buffers.clear()
        self.context = self.engine = None
