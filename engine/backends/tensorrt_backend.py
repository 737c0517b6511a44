"""`tensorrt`: the ONNX export compiled by NVIDIA TensorRT (official `tensorrt` Python API, imported lazily).

Build: parse `decoder.onnx`, FP16 (default) or FP32, two optimisation profiles over batch 1…max_batch —
profile 0 tuned for batch 1 (the app), profile 1 for max_batch (throughput) — each served by its own
execution context.
Cache: `models/engine_cache/trt-<key>.engine` with `trt-<key>.json` beside it; the key is a sha256 of
the ONNX bytes, precision, profile shapes, TensorRT version and GPU (name, compute capability). The
JSON also holds the engine's own sha256, so a truncated or altered file is detected before TensorRT
reads it; a miss or a corrupt entry is rebuilt (and rewritten atomically), never crashed on.
Run: device buffers are torch CUDA tensors allocated once per batch size and bound by address; each
batch size's `execute_async_v3` is captured in a CUDA graph, so the batch-1 path replays a graph
between two copies into/out of pinned host buffers and allocates nothing.

Installing TensorRT: PyPI's `tensorrt-cu12` wheels need NVIDIA's own package index to fetch the real
libraries; with it reachable, `pip install tensorrt-cu12` and a CUDA build of torch are all this needs.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.backends.base import NUM_EXPRESSIONS, NUM_LANDMARKS, BackendConfig, as_landmark_batch
from engine.errors import BackendUnavailable

log = logging.getLogger("facemesh.tensorrt")
INSTALL = ("install TensorRT 10 for your CUDA (pip install tensorrt-cu12, which fetches its libraries "
           "from pypi.nvidia.com) and a CUDA build of torch")
SMALL_BATCH_MAX = 64  # batches up to this size use profile 0 (opt = 1); larger ones profile 1 (opt = max)


# ---- the engine cache: pure functions over bytes and files, no TensorRT needed -------------------

def engine_cache_key(onnx_bytes: bytes, precision: str, profiles: list[tuple[int, int, int]],
                     trt_version: str, gpu_name: str, compute_capability: str) -> str:
    """sha256 over everything that invalidates a built engine (hex, 64 chars).

    profiles: per optimisation profile (min, opt, max) batch sizes.
    """
    h = hashlib.sha256()
    h.update(hashlib.sha256(onnx_bytes).digest())
    h.update(json.dumps({"precision": precision, "profiles": [list(p) for p in profiles], "tensorrt": trt_version,
                         "gpu": gpu_name, "compute_capability": compute_capability}, sort_keys=True).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class EngineCache:
    """A folder of `trt-<key>.engine` files, each with a `trt-<key>.json` metadata file beside it."""

    folder: Path

    def paths(self, key: str) -> tuple[Path, Path]:
        stem = f"trt-{key[:24]}"
        return self.folder / f"{stem}.engine", self.folder / f"{stem}.json"

    def load(self, key: str) -> bytes | None:
        """The cached engine bytes, or None on a miss or a corrupt entry (which is then removed)."""
        engine_path, meta_path = self.paths(key)
        if not engine_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            blob = engine_path.read_bytes()
        except (OSError, ValueError) as exc:
            log.warning("engine cache: %s unreadable (%s); rebuilding", meta_path.name, exc)
            self.remove(key)
            return None
        if not isinstance(meta, dict) or meta.get("key") != key or meta.get("engine_sha256") != hashlib.sha256(blob).hexdigest():
            log.warning("engine cache: %s is corrupt or belongs to another build; rebuilding", engine_path.name)
            self.remove(key)
            return None
        return blob

    def store(self, key: str, blob: bytes, meta: dict) -> Path:
        """Write the engine and its metadata atomically; returns the engine path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        engine_path, meta_path = self.paths(key)
        full = {**meta, "key": key, "engine_sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for path, data in ((engine_path, blob), (meta_path, (json.dumps(full, indent=2) + "\n").encode())):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return engine_path

    def remove(self, key: str) -> None:
        for p in self.paths(key):
            p.unlink(missing_ok=True)


def profile_shapes(max_batch: int) -> list[tuple[int, int, int]]:
    """(min, opt, max) batch per optimisation profile: one tuned for batch 1, one for max_batch."""
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    if max_batch <= SMALL_BATCH_MAX:
        return [(1, 1, max_batch)]
    return [(1, 1, SMALL_BATCH_MAX), (1, max_batch, max_batch)]


def import_tensorrt():
    """The `tensorrt` module, or BackendUnavailable saying what is missing."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as exc:
        what = "is not installed" if exc.name in ("tensorrt", None) else f"cannot load its libraries ({exc})"
        raise BackendUnavailable(f"tensorrt: the tensorrt Python package {what}; {INSTALL}") from None
    except OSError as exc:  # the bindings wheel without NVIDIA's libraries
        raise BackendUnavailable(f"tensorrt: its libraries do not load ({exc}); {INSTALL}") from None
    if not hasattr(trt, "Builder"):  # a stub wheel whose real libraries were never fetched
        raise BackendUnavailable(f"tensorrt: the installed package is a stub without TensorRT's libraries; {INSTALL}")
    return trt


# ---- the back-end ---------------------------------------------------------------------------------

class _Binding:
    """Device input/outputs for one batch size, bound to one execution context, optionally a CUDA graph."""

    def __init__(self, torch, context, stream, batch: int, num_vertices: int, use_graph: bool) -> None:
        self.x = torch.zeros(batch, NUM_LANDMARKS, 3, device="cuda")
        self.v = torch.empty(batch, num_vertices, 3, device="cuda")
        self.e = torch.empty(batch, NUM_EXPRESSIONS, device="cuda")
        self.host_x = torch.empty(batch, NUM_LANDMARKS, 3, pin_memory=True)
        self.host_v = torch.empty(batch, num_vertices, 3, pin_memory=True)
        self.host_e = torch.empty(batch, NUM_EXPRESSIONS, pin_memory=True)
        self.context, self.stream, self.graph = context, stream, None
        self._bind()
        with torch.cuda.stream(stream):
            if not context.execute_async_v3(stream.cuda_stream):  # also the warm-up capture needs
                raise RuntimeError(f"TensorRT execution failed at batch {batch}")
            stream.synchronize()
            if use_graph:
                try:
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, stream=stream):
                        context.execute_async_v3(stream.cuda_stream)
                    self.graph = graph
                except RuntimeError as exc:  # capture unsupported for this engine: run it directly
                    log.info("tensorrt: CUDA graph capture failed at batch %d (%s); running without", batch, exc)
                    torch.cuda.synchronize()

    def _bind(self) -> None:
        self.context.set_input_shape("landmarks", tuple(self.x.shape))
        for name, t in (("landmarks", self.x), ("vertices", self.v), ("expressions", self.e)):
            self.context.set_tensor_address(name, t.data_ptr())

    def run(self) -> None:
        """Enqueue one inference on `stream` from `self.x` into `self.v`, `self.e`."""
        if self.graph is not None:
            self.graph.replay()
        else:
            self._bind()  # another batch size may have rebound the shared context since
            self.context.execute_async_v3(self.stream.cuda_stream)


class TensorRTBackend:
    """The face model as a TensorRT engine (see the module docstring)."""

    name = "tensorrt"

    def __init__(self, cfg: BackendConfig = BackendConfig()) -> None:
        trt = import_tensorrt()
        import torch

        from engine.backends.torch_backend import cuda_unavailable_reason

        reason = cuda_unavailable_reason()
        if reason:
            raise BackendUnavailable(f"tensorrt: {reason}")
        if cfg.precision not in ("fp16", "fp32"):
            raise BackendUnavailable(f"tensorrt: precision must be fp16 or fp32, not {cfg.precision!r}")
        from engine.backends.onnxruntime_backend import resolve_onnx

        self.trt, self.torch = trt, torch
        self.precision, self.max_batch, self.use_graphs = cfg.precision, int(cfg.max_batch), bool(cfg.cuda_graphs)
        self.profiles = profile_shapes(self.max_batch)
        onnx_path = resolve_onnx(cfg)
        onnx_bytes = onnx_path.read_bytes()
        gpu = torch.cuda.get_device_name()
        cc = "%d.%d" % torch.cuda.get_device_capability()
        key = engine_cache_key(onnx_bytes, self.precision, self.profiles, trt.__version__, gpu, cc)
        self.cache = EngineCache(Path(cfg.cache_dir))
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        blob = self.cache.load(key)
        self.engine = self.runtime.deserialize_cuda_engine(blob) if blob is not None else None
        if blob is not None and self.engine is None:
            log.warning("tensorrt: cached engine does not deserialise; rebuilding")
            self.cache.remove(key)
        self.built = self.engine is None
        if self.engine is None:
            t0 = time.perf_counter()
            blob = self._build(onnx_bytes)
            self.build_seconds = time.perf_counter() - t0
            self.cache.store(key, blob, {"onnx": str(onnx_path), "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
                                         "precision": self.precision, "profiles": self.profiles,
                                         "tensorrt": trt.__version__, "gpu": gpu, "compute_capability": cc,
                                         "build_seconds": round(self.build_seconds, 2)})
            self.engine = self.runtime.deserialize_cuda_engine(blob)
            if self.engine is None:
                raise BackendUnavailable("tensorrt: the freshly built engine does not deserialise (see TensorRT's log)")
        self.engine_path = self.cache.paths(key)[0]
        self.stream = torch.cuda.Stream()
        self.contexts = []
        for i in range(len(self.profiles)):
            ctx = self.engine.create_execution_context()
            ctx.set_optimization_profile_async(i, self.stream.cuda_stream)
            self.contexts.append(ctx)
        self.stream.synchronize()
        self.num_vertices = int(self.engine.get_tensor_shape("vertices")[1])
        self._bindings: dict[int, _Binding] = {}
        self.device = f"cuda:{torch.cuda.current_device()} ({gpu}, TensorRT {trt.__version__}, " \
                      f"{self.precision.upper()}{', CUDA graphs' if self.use_graphs else ''})"

    def _build(self, onnx_bytes: bytes) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        flags = 0
        if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and int(trt.__version__.split(".")[0]) < 10:
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # TensorRT 8.x
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(onnx_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailable(f"tensorrt: cannot parse the ONNX export ({errors})")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        for lo, opt, hi in self.profiles:
            profile = builder.create_optimization_profile()
            profile.set_shape("landmarks", (lo, NUM_LANDMARKS, 3), (opt, NUM_LANDMARKS, 3), (hi, NUM_LANDMARKS, 3))
            config.add_optimization_profile(profile)
        log.info("tensorrt: building a %s engine for batch 1…%d (once; cached in %s)", self.precision,
                 self.max_batch, self.cache.folder)
        blob = builder.build_serialized_network(network, config)
        if blob is None:
            raise BackendUnavailable("tensorrt: the engine build failed (see TensorRT's log above)")
        return bytes(blob)

    def _binding(self, batch: int) -> _Binding:
        if batch > self.max_batch:
            raise ValueError(f"batch {batch} exceeds the engine's maximum {self.max_batch} (BackendConfig.max_batch)")
        b = self._bindings.get(batch)
        if b is None:
            ctx = self.contexts[0] if batch <= self.profiles[0][2] else self.contexts[-1]
            b = self._bindings[batch] = _Binding(self.torch, ctx, self.stream, batch, self.num_vertices,
                                                 self.use_graphs)
        return b

    def infer_tensor(self, x):
        """Device tensor [B,468,3] → device tensors (preallocated, overwritten by the next call).
        Work is enqueued on `self.stream`; synchronise it before reading."""
        b = self._binding(int(x.shape[0]))
        self.stream.wait_stream(self.torch.cuda.current_stream())
        with self.torch.cuda.stream(self.stream):
            b.x.copy_(x, non_blocking=True)
            b.run()
        return b.v, b.e

    def infer(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """landmarks [B,468,3] f32 → (vertices [B,V,3] f32 mm, expressions [B,52] f32), fresh host arrays."""
        if self.engine is None:
            raise RuntimeError("tensorrt back-end is closed")
        x = as_landmark_batch(landmarks)
        b = self._binding(x.shape[0])
        b.host_x.numpy()[...] = x
        with self.torch.cuda.stream(self.stream):
            b.x.copy_(b.host_x, non_blocking=True)
            b.run()
            b.host_v.copy_(b.v, non_blocking=True)
            b.host_e.copy_(b.e, non_blocking=True)
        self.stream.synchronize()
        return b.host_v.numpy().copy(), b.host_e.numpy().copy()

    def close(self) -> None:
        self._bindings.clear()
        self.contexts = []
        self.engine = None
