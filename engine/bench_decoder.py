"""Decoder benchmark (`python main.py bench --decoder`): every back-end and the torch_geometric reference.

Per back-end: batch-1 latency (p50, p99) and throughput (meshes/s) at larger batches, same model and
inputs for all, in one process, one back-end after another. Each measurement warms up first (at
least `WARMUP_RUNS` calls and `WARMUP_S` seconds), then runs until both `min_time_s` seconds and a
minimum number of calls have passed. CPU back-ends are timed with `time.perf_counter` around `infer`
(host arrays in and out: what the app pays). GPU back-ends (those with `infer_tensor`) are timed with
CUDA events around device-to-device inference; their host round trip at batch 1 is reported as well
(`batch1_host_p50_ms`). A batch size whose estimated working memory exceeds the budget is skipped,
as is one that runs out of memory; the reason is recorded under "skipped".

Result (also the JSON's "decoder" value):
    {BACKEND: {"device", "batch1_p50_ms", "batch1_p99_ms", "batch1_runs", "throughput": {BATCH: meshes_per_s},
               "skipped": {BATCH: reason}}, ..., "pyg_reference": {...}}
and {"unavailable": reason} for a back-end that cannot start here.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.assets import NUM_LANDMARKS
from engine.backends.base import Backend

log = logging.getLogger("facemesh.bench_decoder")
WARMUP_RUNS = 3
WARMUP_S = 0.2
BATCH1_MIN_RUNS = 200
BATCH_MIN_RUNS = 3
REFERENCE = "pyg_reference"
UNLOWERED = "ort-unlowered"  # ONNX Runtime on the training graph exported as it is: what the lowering buys
EXTRA = (REFERENCE, UNLOWERED)


def _landmarks(batch: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, NUM_LANDMARKS, 3)) * 40.0).astype(np.float32)


def estimate_bytes_per_sample(model, message_passing: bool = False) -> int:
    """Rough peak working memory per mesh (bytes) of one forward pass of `model` (a FaceModel) as the
    training graph runs it (the references; the back-ends' lowering has `LeanFaceModel.bytes_per_sample`).

    Largest layer's live tensors: a ChebConv keeps K Chebyshev terms plus two temporaries of
    V × max(C_in, C_out) floats; PyG message passing adds a [E, C] message tensor and the int64
    batched edge_index (E ≈ V·D). Doubled for allocator slack.
    """
    peak = 0
    for kind, mod in model.decoder.layers():
        if kind in ("conv", "head"):
            c = max(mod.in_channels, mod.out_channels)
            live = (mod.K + 2) * mod.num_vertices * c * 4
            if message_passing:
                edges = mod.num_vertices * mod.degree
                live += edges * c * 4 * 2 + edges * 2 * 8
            peak = max(peak, live)
        elif kind == "up":
            peak = max(peak, mod.num_out * 3 * 64 * 4)
    return 2 * (peak + model.num_vertices * 3 * 4)


def default_memory_budget(gpu: bool) -> int:
    """Bytes a batch may use: 80 % of free GPU memory, or half the available RAM (at most 8 GiB) on CPU."""
    if gpu:
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free * 0.8)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return min(int(line.split()[1]) * 1024 // 2, 8 << 30)
    except OSError:
        pass
    return 2 << 30


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def _run_timed(call: Callable[[], None], min_time_s: float, min_runs: int, timer: Callable[[Callable[[], None]], float]
               ) -> list[float]:
    """Warm up, then time `call` until min_time_s and min_runs are both reached; per-call seconds."""
    t_end = time.perf_counter() + WARMUP_S
    n = 0
    while n < min(WARMUP_RUNS, min_runs) or time.perf_counter() < t_end:
        call()
        n += 1
    times: list[float] = []
    t_end = time.perf_counter() + min_time_s
    while len(times) < min_runs or time.perf_counter() < t_end:
        times.append(timer(call))
    return times


def _wall(call: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def _cuda_timer():
    import torch

    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def timer(call: Callable[[], None]) -> float:
        start.record()
        call()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop) / 1e3

    return timer


def bench_backend(backend: Backend, batches: tuple[int, ...] = (1, 64, 1024, 4096), min_time_s: float = 1.0,
                  memory_budget: int | None = None, bytes_per_sample: int | None = None,
                  min_runs: int = BATCH_MIN_RUNS, batch1_min_runs: int = BATCH1_MIN_RUNS) -> dict:
    """One back-end's figures (see the module docstring); batches above the memory budget are skipped.
    Batch 1 runs at least `batch1_min_runs` times (for a meaningful p99), larger batches `min_runs` times."""
    gpu = hasattr(backend, "infer_tensor") and str(backend.device).startswith("cuda")
    budget = memory_budget if memory_budget is not None else default_memory_budget(gpu)
    out: dict = {"device": backend.device, "throughput": {}, "skipped": {}}
    for b in batches:
        if bytes_per_sample and b * bytes_per_sample > budget:
            out["skipped"][str(b)] = (f"needs ~{b * bytes_per_sample / 2**30:.1f} GiB, budget "
                                      f"{budget / 2**30:.1f} GiB")
            continue
        x = _landmarks(b)
        try:
            if gpu:
                import torch

                xd = torch.from_numpy(x).cuda()
                stream = getattr(backend, "stream", None)

                def call(xd=xd, stream=stream) -> None:
                    backend.infer_tensor(xd)
                    if stream is not None:  # work enqueued on the back-end's own stream
                        torch.cuda.current_stream().wait_stream(stream)

                times = _run_timed(call, min_time_s, batch1_min_runs if b == 1 else min_runs, _cuda_timer())
                if b == 1:
                    host = _run_timed(lambda: backend.infer(x), min_time_s / 2, batch1_min_runs, _wall)
                    out["batch1_host_p50_ms"] = round(float(np.percentile(host, 50)) * 1e3, 4)
            else:
                times = _run_timed(lambda x=x: backend.infer(x), min_time_s,
                                   batch1_min_runs if b == 1 else min_runs, _wall)
        except (MemoryError, RuntimeError) as exc:
            if not _is_oom(exc):
                raise
            out["skipped"][str(b)] = "out of memory"
            log.info("%s: batch %d ran out of memory; skipped", backend.name, b)
            continue
        t = np.asarray(times)
        if b == 1:
            out["batch1_p50_ms"] = round(float(np.percentile(t, 50)) * 1e3, 4)
            out["batch1_p99_ms"] = round(float(np.percentile(t, 99)) * 1e3, 4)
            out["batch1_runs"] = int(len(t))
        out["throughput"][str(b)] = round(b / float(np.median(t)), 1)
    if not out["skipped"]:
        del out["skipped"]
    return out


def bench_decoder(backends: dict[str, Backend], batches: tuple[int, ...] = (1, 64, 1024, 4096),
                  min_time_s: float = 1.0, bytes_per_sample: dict[str, int] | None = None,
                  memory_budget: int | None = None, min_runs: int = BATCH_MIN_RUNS,
                  batch1_min_runs: int = BATCH1_MIN_RUNS) -> dict:
    """Benchmark each back-end in `backends` (name → started back-end) in turn; {name: figures}."""
    result: dict = {}
    for name, backend in backends.items():
        log.info("benchmarking %s on %s", name, backend.device)
        result[name] = bench_backend(backend, tuple(batches), min_time_s, memory_budget,
                                     (bytes_per_sample or {}).get(name), min_runs, batch1_min_runs)
    return result


def format_table(result: dict) -> str:
    """The benchmark as a fixed-width text table (throughput in meshes/s; speed-up vs the PyG reference)."""
    batches = sorted({int(b) for r in result.values() for b in r.get("throughput", {})} |
                     {int(b) for r in result.values() for b in r.get("skipped", {})})
    ref = result.get(REFERENCE, {}).get("batch1_p50_ms")
    head = f"{'back-end':<14} {'b1 p50 ms':>10} {'b1 p99 ms':>10} {'vs PyG':>7} " + \
           " ".join(f"{'b' + str(b) + ' /s':>11}" for b in batches if b != 1) + "  device"
    lines = [head, "-" * len(head)]
    for name, r in result.items():
        if "unavailable" in r:
            lines.append(f"{name:<14} unavailable: {r['unavailable']}")
            continue
        p50, p99 = r.get("batch1_p50_ms"), r.get("batch1_p99_ms")
        speed = f"{ref / p50:6.1f}x" if ref and p50 else f"{'':>7}"
        cells = []
        for b in batches:
            if b == 1:
                continue
            v = r["throughput"].get(str(b))
            cells.append(f"{v:>11,.0f}" if v is not None else f"{'skipped':>11}")
        fmt = lambda v: f"{v:>10.3f}" if v is not None else f"{'-':>10}"  # noqa: E731
        lines.append(f"{name:<14} {fmt(p50)} {fmt(p99)} {speed} " + " ".join(cells) + f"  {r['device']}")
    return "\n".join(lines)


def run_decoder_bench(spec: str = "all", batches: list[int] | tuple[int, ...] = (1, 64, 1024, 4096),
                      min_time_s: float = 1.0, model_path: Path | None = None, threads: int | None = None) -> dict:
    """`bench --decoder`: start the back-ends in `spec` ("all" or a comma list, may include pyg_reference),
    benchmark them and the PyG reference, print the table, return {name: figures}.

    All CPU back-ends get the same thread count (`threads`, default: the CPUs this process may use).
    """
    from engine.backends import REGISTRY, create_backend
    from engine.checkpoint import CHECKPOINT_PATH, load_face_model
    from engine.errors import BackendUnavailable, UserError
    from engine.hierarchy import load_hierarchy
    from engine.pyg_reference import PygReferenceBackend

    model_path = Path(model_path or CHECKPOINT_PATH)
    names = [*REGISTRY, *EXTRA] if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in REGISTRY and n not in EXTRA]
    if bad:
        raise UserError(f"unknown back-end {', '.join(bad)} for --decoder-backends; choose from "
                        f"{', '.join([*REGISTRY, *EXTRA])} or all")
    if any(b < 1 for b in batches):
        raise UserError("--batches must be positive integers, e.g. 1,64,1024,4096")
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:
            threads = os.cpu_count() or 1
    import torch

    torch.set_num_threads(threads)
    from engine.lowering import lower

    model = load_face_model(model_path)
    per_sample = lower(model).bytes_per_sample()  # the back-ends run the lowering
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="facemesh-bench-") as tmp:
        for name in names:
            try:
                if name == REFERENCE:
                    backend = PygReferenceBackend(model, load_hierarchy())
                elif name == UNLOWERED:
                    backend = unlowered_backend(model, threads, Path(tmp))
                else:
                    backend = create_backend(name, model_path, threads=threads, max_batch=max(batches))
            except BackendUnavailable as exc:
                result[name] = {"unavailable": str(exc)}
                continue
            try:
                bps = per_sample if name not in EXTRA else \
                    estimate_bytes_per_sample(model, message_passing=(name == REFERENCE))
                result[name] = bench_backend(backend, tuple(batches), min_time_s, None, bps)
            finally:
                backend.close()
    print(format_table(result))
    return result


def unlowered_backend(model, threads: int, folder: Path) -> Backend:
    """ONNX Runtime on the training graph exported without the lowering (engine/lowering.py), into
    `folder`: the same function, ~1,000 nodes instead of ~50; a benchmark row, never an app back-end."""
    from engine.backends.base import BackendConfig
    from engine.backends.onnxruntime_backend import OnnxRuntimeBackend
    from engine.export import export_onnx

    report = export_onnx(model, folder / "unlowered.onnx", lowered=False, parity_batches=(1,))
    backend = OnnxRuntimeBackend(BackendConfig(threads=threads), onnx_file=report.path)
    backend.name = UNLOWERED
    return backend
