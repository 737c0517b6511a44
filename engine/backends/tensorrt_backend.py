"""`tensorrt`: the ONNX export compiled by NVIDIA TensorRT (official `tensorrt` Python API, imported lazily).

Build (TensorRT 8, 10 and 11 through `trt_api`): FP16 (default) from the mixed-precision ONNX
(`engine.onnx_fp16`) as a strongly typed network — the only FP16 route TensorRT 11 has, and the same
precisions on 10 — or FP32; two optimisation profiles over batch 1…max_batch — profile 0 tuned for
batch 1 (the app), profile 1 for max_batch (throughput) — each served by its own execution context,
whose device memory follows its own profile (`ON_PROFILE_CHANGE`). A timing cache per TensorRT
version and GPU makes rebuilds skip tactic timing.
Cache: `models/engine_cache/trt-<key>.engine` with `trt-<key>.json` beside it; the key is a sha256 of
the ONNX bytes, precision, build plan, build-recipe version (`trt_api.BUILD_RECIPE`), profile shapes,
TensorRT version and GPU (name, compute capability). The JSON also holds the engine's own sha256, so a
truncated or altered file is detected before TensorRT reads it; a miss or a corrupt entry is rebuilt,
never crashed on. An engine is stored only once it has deserialised, atomically (write + rename, so two
processes building at once each leave a whole file). An unwritable cache folder falls back to a
folder under the system's temporary directory, then to memory (rebuilt next start), and says so.
Run: device buffers are torch CUDA tensors allocated once per batch size and bound by address; each
batch size's `execute_async_v3` is captured in a CUDA graph, so the batch-1 path replays a graph
between two copies into/out of pinned host buffers and allocates nothing.

Installing TensorRT: PyPI's `tensorrt` (11.x today; `tensorrt-cu12` 10.x) wheels need NVIDIA's own
package index to fetch the real libraries; with it reachable, `pip install tensorrt` and a CUDA build
of torch are all this needs.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.assets import NUM_EXPRESSIONS, NUM_LANDMARKS
from engine.backends import trt_api
from engine.backends.base import BackendConfig, as_landmark_batch
from engine.errors import BackendUnavailable

log = logging.getLogger("facemesh.tensorrt")
INSTALL = ("install TensorRT 10 or 11 for your CUDA (pip install tensorrt, which fetches its libraries "
           "from pypi.nvidia.com) and a CUDA build of torch")
SMALL_BATCH_MAX = 64  # batches up to this size use profile 0 (opt = 1); larger ones profile 1 (opt = max)


# ---- the engine cache: pure functions over bytes and files, no TensorRT needed -------------------

def engine_cache_key(onnx_bytes: bytes, precision: str, profiles: list[tuple[int, int, int]],
                     trt_version: str, gpu_name: str, compute_capability: str, plan: str = "",
                     recipe: int = trt_api.BUILD_RECIPE) -> str:
    """sha256 over everything that invalidates a built engine (hex, 64 chars).

    profiles: per optimisation profile (min, opt, max) batch sizes; plan: `BuildPlan.describe()`;
    recipe: the build code's version (`trt_api.BUILD_RECIPE`).
    """
    h = hashlib.sha256()
    h.update(hashlib.sha256(onnx_bytes).digest())
    h.update(json.dumps({"precision": precision, "profiles": [list(p) for p in profiles], "tensorrt": trt_version,
                         "gpu": gpu_name, "compute_capability": compute_capability, "plan": plan,
                         "recipe": recipe}, sort_keys=True).encode())
    return h.hexdigest()


def fallback_cache_dir() -> Path:
    """Where engines go when the configured cache folder is not writable."""
    return Path(tempfile.gettempdir()) / "facemesh-engine-cache"


def timing_cache_name(trt_version: str, gpu_name: str, compute_capability: str) -> str:
    """File name of the tactic timing cache for one TensorRT version and GPU."""
    safe = "".join(c if c.isalnum() else "-" for c in f"{gpu_name}-{compute_capability}")
    return f"trt-timing-{trt_version}-{safe}.bin"


@dataclass(frozen=True)
class EngineCache:
    """A folder of engines: `trt-<key>.json` (metadata, naming the engine file and its sha256) and
    `trt-<key>-<sha>.engine`. The engine file is written first under its own content name, the
    metadata last by an atomic rename, so two processes storing the same key at once each leave a
    whole pair and the metadata that wins names a whole engine."""

    folder: Path

    def meta_path(self, key: str) -> Path:
        return self.folder / f"trt-{key[:24]}.json"

    def engine_path(self, key: str, sha256: str) -> Path:
        return self.folder / f"trt-{key[:24]}-{sha256[:16]}.engine"

    def _meta(self, key: str) -> dict | None:
        try:
            meta = json.loads(self.meta_path(key).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("engine cache: %s unreadable (%s); rebuilding", self.meta_path(key).name, exc)
            self.remove(key)
            return None
        if not isinstance(meta, dict) or meta.get("key") != key or not isinstance(meta.get("engine_sha256"), str):
            log.warning("engine cache: %s belongs to another build or is corrupt; rebuilding",
                        self.meta_path(key).name)
            self.remove(key)
            return None
        return meta

    def stored_engine(self, key: str) -> Path | None:
        """The engine file the key's metadata names (whether or not it is intact), or None."""
        meta = self._meta(key)
        return None if meta is None else self.engine_path(key, meta["engine_sha256"])

    def load(self, key: str) -> bytes | None:
        """The cached engine bytes, or None on a miss or a corrupt entry (which is then removed)."""
        meta = self._meta(key)
        if meta is None:
            return None
        path = self.engine_path(key, meta["engine_sha256"])
        try:
            blob = path.read_bytes()
        except OSError as exc:
            log.warning("engine cache: %s unreadable (%s); rebuilding", path.name, exc)
            self.remove(key)
            return None
        if hashlib.sha256(blob).hexdigest() != meta["engine_sha256"]:
            log.warning("engine cache: %s is truncated or altered; rebuilding", path.name)
            self.remove(key)
            return None
        return blob

    def store(self, key: str, blob: bytes, meta: dict) -> Path:
        """Write the engine, then its metadata (each atomically); returns the engine path. OSError when
        the folder is not writable."""
        self.folder.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256(blob).hexdigest()
        engine_path = self.engine_path(key, sha)
        full = {**meta, "key": key, "engine": engine_path.name, "engine_sha256": sha, "bytes": len(blob),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for path, data in ((engine_path, blob), (self.meta_path(key), (json.dumps(full, indent=2) + "\n").encode())):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return engine_path

    def remove(self, key: str) -> None:
        """Delete the key's metadata and every engine file of the key."""
        for p in (self.meta_path(key), *self.folder.glob(f"trt-{key[:24]}-*.engine")):
            try:
                p.unlink(missing_ok=True)
            except OSError:  # a read-only folder: the entry stays, and is skipped again next time
                pass

    def read_blob(self, name: str) -> bytes | None:
        """Any other file of the folder (the timing cache), or None."""
        try:
            return (self.folder / name).read_bytes()
        except OSError:
            return None

    def write_blob(self, name: str, data: bytes) -> None:
        """Write a file of the folder atomically (OSError when the folder is not writable)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


@dataclass(frozen=True)
class CacheChain:
    """The configured engine cache, then `fallback_cache_dir()`: loads from the first that has the
    entry, stores into the first that is writable, else keeps nothing (the engine lives in memory)."""

    caches: tuple[EngineCache, ...]

    @classmethod
    def for_folder(cls, folder: Path) -> "CacheChain":
        primary = EngineCache(Path(folder))
        fallback = EngineCache(fallback_cache_dir())
        return cls((primary,) if primary.folder == fallback.folder else (primary, fallback))

    def load(self, key: str) -> bytes | None:
        for c in self.caches:
            blob = c.load(key)
            if blob is not None:
                return blob
        return None

    def remove(self, key: str) -> None:
        for c in self.caches:
            c.remove(key)

    def store(self, key: str, blob: bytes, meta: dict) -> Path | None:
        """The path it was stored at, or None when no folder was writable (one warning per folder)."""
        for i, c in enumerate(self.caches):
            try:
                path = c.store(key, blob, meta)
            except OSError as exc:
                nxt = (f"trying {self.caches[i + 1].folder}" if i + 1 < len(self.caches)
                       else "keeping the engine in memory only (it is rebuilt at the next start)")
                log.warning("tensorrt: cannot write the engine cache %s (%s); %s", c.folder, exc, nxt)
                continue
            return path
        return None

    def read_blob(self, name: str) -> bytes | None:
        for c in self.caches:
            data = c.read_blob(name)
            if data is not None:
                return data
        return None

    def write_blob(self, name: str, data: bytes) -> bool:
        for c in self.caches:
            try:
                c.write_blob(name, data)
                return True
            except OSError:
                continue
        return False


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
            # also the warm-up that graph capture needs
            trt_api.check(context.execute_async_v3(stream.cuda_stream), f"execute_async_v3 (batch {batch})")
            stream.synchronize()
            if use_graph:
                try:
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, stream=stream):
                        ok = context.execute_async_v3(stream.cuda_stream)
                    trt_api.check(ok, f"execute_async_v3 during CUDA graph capture (batch {batch})")
                    self.graph = graph
                except RuntimeError as exc:  # capture unsupported for this engine: run it directly
                    log.info("tensorrt: CUDA graph capture failed at batch %d (%s); running without", batch, exc)
                    torch.cuda.synchronize()
                    self._bind()

    def _bind(self) -> None:
        trt_api.check(self.context.set_input_shape("landmarks", tuple(self.x.shape)),
                      f"set_input_shape(landmarks, {tuple(self.x.shape)})")
        for name, t in (("landmarks", self.x), ("vertices", self.v), ("expressions", self.e)):
            trt_api.check(self.context.set_tensor_address(name, t.data_ptr()), f"set_tensor_address({name})")

    def run(self) -> None:
        """Enqueue one inference on `stream` from `self.x` into `self.v`, `self.e`."""
        if self.graph is not None:
            self.graph.replay()
        else:
            self._bind()  # another batch size may have rebound the shared context since
            trt_api.check(self.context.execute_async_v3(self.stream.cuda_stream), "execute_async_v3")


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
        try:
            self.plan = trt_api.plan_build(trt, cfg.precision)
        except ValueError as exc:
            raise BackendUnavailable(f"tensorrt: {exc}") from None
        from engine.backends.onnxruntime_backend import resolve_onnx

        self.trt, self.torch = trt, torch
        self.precision, self.max_batch, self.use_graphs = cfg.precision, int(cfg.max_batch), bool(cfg.cuda_graphs)
        self.profiles = profile_shapes(self.max_batch)
        onnx_path = resolve_onnx(cfg)
        onnx_bytes = self._onnx_bytes(onnx_path)
        gpu = torch.cuda.get_device_name()
        cc = "%d.%d" % torch.cuda.get_device_capability()
        key = engine_cache_key(onnx_bytes, self.precision, self.profiles, trt.__version__, gpu, cc,
                               self.plan.describe())
        self.cache = CacheChain.for_folder(Path(cfg.cache_dir))
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt_api.check(trt.Runtime(self.logger), "Runtime()")
        blob = self.cache.load(key)
        self.engine = self.runtime.deserialize_cuda_engine(blob) if blob is not None else None
        if blob is not None and self.engine is None:
            log.warning("tensorrt: cached engine does not deserialise; rebuilding")
            self.cache.remove(key)
        self.built = self.engine is None
        self.engine_path: Path | None = None
        if self.engine is None:
            t0 = time.perf_counter()
            timing_name = timing_cache_name(trt.__version__, gpu, cc)
            blob, timing = self._build(onnx_bytes, self.cache.read_blob(timing_name))
            self.build_seconds = time.perf_counter() - t0
            self.engine = self.runtime.deserialize_cuda_engine(blob)
            if self.engine is None:  # never cache what does not load
                raise BackendUnavailable("tensorrt: the freshly built engine does not deserialise (see TensorRT's log)")
            self.engine_path = self.cache.store(
                key, blob, {"onnx": str(onnx_path), "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
                            "precision": self.precision, "plan": self.plan.describe(),
                            "recipe": trt_api.BUILD_RECIPE, "profiles": self.profiles,
                            "tensorrt": trt.__version__, "gpu": gpu, "compute_capability": cc,
                            "build_seconds": round(self.build_seconds, 2)})
            if timing is not None and not self.cache.write_blob(timing_name, timing):
                log.info("tensorrt: the timing cache could not be written (the next build times tactics again)")
        else:
            self.engine_path = next((p for c in self.cache.caches if (p := c.stored_engine(key)) is not None), None)
        self.stream = torch.cuda.Stream()
        self.contexts = []
        for i in range(len(self.profiles)):
            ctx = trt_api.create_context(trt, self.engine)
            trt_api.check(ctx.set_optimization_profile_async(i, self.stream.cuda_stream),
                          f"set_optimization_profile_async({i})")
            self.contexts.append(ctx)
        self.stream.synchronize()
        self.num_vertices = int(self.engine.get_tensor_shape("vertices")[1])
        self._bindings: dict[int, _Binding] = {}
        self.device = f"cuda:{torch.cuda.current_device()} ({gpu}, TensorRT {trt.__version__}, " \
                      f"{self.precision.upper()}{', CUDA graphs' if self.use_graphs else ''})"

    def _onnx_bytes(self, onnx_path: Path) -> bytes:
        """The graph the plan builds from: the FP32 export, or its mixed-FP16 copy (derived, cached beside it)."""
        if self.plan.onnx == "fp32":
            return onnx_path.read_bytes()
        from engine.onnx_fp16 import write_mixed_fp16

        src = onnx_path.read_bytes()
        digest = hashlib.sha256(src).hexdigest()[:16]
        for folder in (onnx_path.parent, fallback_cache_dir()):
            dst = folder / f"{onnx_path.stem}.fp16-{digest}.onnx"
            if dst.exists():
                return dst.read_bytes()
            try:
                return write_mixed_fp16(onnx_path, dst).read_bytes()
            except OSError:
                continue
        import onnx

        from engine.onnx_fp16 import to_mixed_fp16

        return to_mixed_fp16(onnx.load(str(onnx_path))).SerializeToString()

    def _build(self, onnx_bytes: bytes, timing: bytes | None) -> tuple[bytes, bytes | None]:
        """(serialised engine, serialised timing cache or None) for the plan."""
        trt = self.trt
        builder = trt_api.check(trt.Builder(self.logger), "Builder()")
        network = trt_api.check(builder.create_network(trt_api.network_flags(trt, self.plan)), "create_network")
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(onnx_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailable(f"tensorrt: cannot parse the ONNX export ({errors})")
        config = trt_api.check(builder.create_builder_config(), "create_builder_config")
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
        trt_api.apply_builder_flags(trt, config, self.plan)
        cache = None
        if hasattr(config, "create_timing_cache"):
            cache = config.create_timing_cache(timing or b"")
            if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
                log.info("tensorrt: the stored timing cache does not fit this build; timing afresh")
                cache = config.create_timing_cache(b"")
                config.set_timing_cache(cache, ignore_mismatch=True)
        for lo, opt, hi in self.profiles:
            profile = builder.create_optimization_profile()
            trt_api.check(profile.set_shape("landmarks", (lo, NUM_LANDMARKS, 3), (opt, NUM_LANDMARKS, 3),
                                            (hi, NUM_LANDMARKS, 3)), "IOptimizationProfile.set_shape")
            if config.add_optimization_profile(profile) < 0:
                raise BackendUnavailable("tensorrt: the optimisation profile was rejected (see TensorRT's log)")
        log.info("tensorrt: building a %s engine (%s) for batch 1…%d (once; cached)", self.precision,
                 self.plan.describe(), self.max_batch)
        blob = builder.build_serialized_network(network, config)
        if blob is None:
            raise BackendUnavailable("tensorrt: the engine build failed (see TensorRT's log above)")
        timing_out = None
        if cache is not None:
            serialised = config.get_timing_cache().serialize()
            timing_out = bytes(serialised) if serialised is not None else None
        return bytes(blob), timing_out

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
