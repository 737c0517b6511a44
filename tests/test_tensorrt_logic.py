"""The TensorRT back-end's logic, tested without TensorRT (it cannot be installed here: PyPI's
`tensorrt-*-libs` only download from NVIDIA's index): the version adapter on stand-ins shaped like
TensorRT 8, 10 and 11, the mixed-FP16 ONNX on ONNX Runtime, the engine cache's corrupt, stale,
unwritable and concurrent cases, and the fall-back when a back-end breaks in an unexpected way.
The real builds and runs are in tests/test_backends.py, skipped without TensorRT and a GPU."""
from __future__ import annotations

import enum
import logging
import multiprocessing as mp
import types
from pathlib import Path

import numpy as np
import pytest

from engine.backends import trt_api
from engine.backends.tensorrt_backend import CacheChain, EngineCache, engine_cache_key, profile_shapes


def fake_trt(version: str, fp16_flag: bool, strongly_typed: bool, explicit_batch: bool, allocation: bool):
    """A module with the attribute shape of a TensorRT release (only what the adapter looks at)."""
    flags = {"EXPLICIT_BATCH": 0} if explicit_batch else {}
    if strongly_typed:
        flags["STRONGLY_TYPED"] = 5 if explicit_batch else 1
    m = types.SimpleNamespace(__version__=version,
                              NetworkDefinitionCreationFlag=enum.IntEnum("NetworkDefinitionCreationFlag", flags)
                              if flags else types.SimpleNamespace(),
                              BuilderFlag=enum.IntEnum("BuilderFlag", {"FP16": 0, "TF32": 1} if fp16_flag else {"TF32": 1}))
    if allocation:
        m.ExecutionContextAllocationStrategy = enum.IntEnum("ExecutionContextAllocationStrategy",
                                                            {"STATIC": 0, "ON_PROFILE_CHANGE": 1, "USER_MANAGED": 2})
    return m


TRT8 = fake_trt("8.6.1", fp16_flag=True, strongly_typed=False, explicit_batch=True, allocation=False)
TRT10 = fake_trt("10.13.0.35", fp16_flag=True, strongly_typed=True, explicit_batch=True, allocation=True)
TRT11 = fake_trt("11.0.0.9", fp16_flag=False, strongly_typed=True, explicit_batch=False, allocation=True)


def test_fp16_is_built_strongly_typed_from_the_mixed_graph_on_10_and_11():
    for trt in (TRT10, TRT11):
        plan = trt_api.plan_build(trt, "fp16")
        assert plan == trt_api.BuildPlan("mixed-fp16", strongly_typed=True, fp16_flag=False, explicit_batch_flag=False)
        assert trt_api.network_flags(trt, plan) == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    # TensorRT 11 has no BuilderFlag.FP16 at all: the old code's `config.set_flag(trt.BuilderFlag.FP16)` raised
    with pytest.raises(AttributeError):
        TRT11.BuilderFlag.FP16


def test_fp16_on_tensorrt_8_uses_the_builder_flag_and_explicit_batch():
    plan = trt_api.plan_build(TRT8, "fp16")
    assert plan.onnx == "fp32" and plan.fp16_flag and not plan.strongly_typed and plan.explicit_batch_flag
    assert trt_api.network_flags(TRT8, plan) == 1 << 0

    class Config:
        flags: list = []

        def set_flag(self, f):
            self.flags.append(f)

    cfg = Config()
    trt_api.apply_builder_flags(TRT8, cfg, plan)
    assert cfg.flags == [TRT8.BuilderFlag.FP16]


def test_fp32_plans_and_impossible_fp16():
    for trt in (TRT8, TRT10, TRT11):
        assert trt_api.plan_build(trt, "fp32").onnx == "fp32"
        assert not trt_api.plan_build(trt, "fp32").fp16_flag
    bare = fake_trt("7.0", fp16_flag=False, strongly_typed=False, explicit_batch=True, allocation=False)
    with pytest.raises(ValueError, match="fp32"):
        trt_api.plan_build(bare, "fp16")
    with pytest.raises(ValueError, match="fp16 or fp32"):
        trt_api.plan_build(TRT10, "int8")


def test_contexts_allocate_per_profile_where_tensorrt_can():
    class Engine:
        def __init__(self):
            self.args = None

        def create_execution_context(self, *args):
            self.args = args
            return object()

    e = Engine()
    trt_api.create_context(TRT11, e)
    assert e.args == (TRT11.ExecutionContextAllocationStrategy.ON_PROFILE_CHANGE,)
    trt_api.create_context(TRT8, e)
    assert e.args == ()


def test_failed_calls_are_errors_not_silent_garbage():
    assert trt_api.check(True, "x") is True
    for bad in (False, None):
        with pytest.raises(RuntimeError, match="set_input_shape failed"):
            trt_api.check(bad, "set_input_shape")


def test_cache_key_covers_the_plan_and_the_build_recipe():
    base = dict(onnx_bytes=b"m", precision="fp16", profiles=profile_shapes(4096), trt_version="11.0",
                gpu_name="NVIDIA H100", compute_capability="9.0", plan="mixed-fp16 ONNX, strongly typed")
    k = engine_cache_key(**base)
    assert engine_cache_key(**{**base, "plan": "fp32 ONNX, weakly typed, BuilderFlag.FP16"}) != k
    assert engine_cache_key(**base, recipe=trt_api.BUILD_RECIPE + 1) != k
    assert engine_cache_key(**base, recipe=trt_api.BUILD_RECIPE) == k


def test_mixed_fp16_graph_matches_fp32_on_onnx_runtime(tmp_path):
    """The FP16 graph TensorRT 11 builds from, run by ONNX Runtime's CPU provider against the FP32 one."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from engine.export import ensure_onnx
    from engine.onnx_fp16 import FLOAT16, fp32_nodes, write_mixed_fp16

    src = ensure_onnx()
    dst = write_mixed_fp16(src, tmp_path / "decoder.fp16.onnx")
    m16 = onnx.load(str(dst))
    kinds = {t.data_type for t in m16.graph.initializer}
    assert FLOAT16 in kinds and len(fp32_nodes(onnx.load(str(src)))) == 3
    assert [i.type.tensor_type.elem_type for i in m16.graph.input] == [1]  # the signature stays FP32
    x = np.random.default_rng(0).normal(scale=40.0, size=(16, 468, 3)).astype(np.float32)
    from engine.embedding import load_embedding, reference_landmarks
    from engine.headspace import load_head

    x = reference_landmarks(load_head().vertices, load_embedding())[None] + 0.02 * x  # landmark-like, mm
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"landmarks": x})  # noqa: E731
    (v32, e32), (v16, e16) = run(src), run(dst)
    assert v16.dtype == np.float32 and e16.dtype == np.float32
    assert np.abs(v16 - v32).max() < 0.1  # mm (the model's own error is ~0.7 mm)
    assert np.abs(e16 - e32).max() < 0.01
    assert dst.stat().st_size < 0.7 * src.stat().st_size


def test_unwritable_cache_falls_back_then_keeps_the_engine_in_memory(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    bad = EngineCache(blocker / "engine_cache")  # mkdir fails under a file, even as root
    good = EngineCache(tmp_path / "fallback")
    key = engine_cache_key(b"m", "fp16", profile_shapes(64), "11.0", "gpu", "9.0")
    caplog.set_level(logging.WARNING, logger="facemesh.tensorrt")
    chain = CacheChain((bad, good))
    path = chain.store(key, b"engine", {})
    assert path is not None and path.parent == good.folder and chain.load(key) == b"engine"
    assert any("cannot write the engine cache" in r.getMessage() for r in caplog.records)
    none = CacheChain((bad, EngineCache(blocker / "other")))
    assert none.store(key, b"engine", {}) is None
    assert "in memory" in caplog.records[-1].getMessage()
    assert none.load(key) is None and not none.write_blob("timing.bin", b"t")
    assert chain.write_blob("timing.bin", b"t") and chain.read_blob("timing.bin") == b"t"


def _store_many(folder: str, key: str, seed: int, n: int) -> None:
    cache = EngineCache(Path(folder))
    rng = np.random.default_rng(seed)
    for i in range(n):
        cache.store(key, rng.bytes(int(rng.integers(1_000, 200_000))), {"writer": seed, "i": i})


def test_two_processes_storing_one_key_never_leave_a_mismatched_pair(tmp_path):
    key = engine_cache_key(b"m", "fp16", profile_shapes(64), "11.0", "gpu", "9.0")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_store_many, args=(str(tmp_path), key, s, 40)) for s in (1, 2)]
    for p in procs:
        p.start()
    cache = EngineCache(tmp_path)
    loads = 0
    while any(p.is_alive() for p in procs):
        blob = cache.load(key)  # read while both write: a whole engine or a miss, never a mix
        loads += blob is not None
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    blob = cache.load(key)
    assert blob is not None and len(blob) >= 1_000


def test_auto_falls_back_on_any_failure_and_flags_likely_bugs(monkeypatch, caplog):
    import engine.backends as registry

    class Ok:
        name, device = "ok", "cpu"

        def infer(self, x):
            return x, x

        def close(self):
            pass

    def broken(cfg):  # what the old TensorRT back-end did on TensorRT 11
        raise AttributeError("type object 'tensorrt.BuilderFlag' has no attribute 'FP16'")

    monkeypatch.setattr(registry, "REGISTRY", {"trt": broken, "ok": lambda cfg: Ok()})
    monkeypatch.setattr(registry, "AUTO_ORDER", ("trt", "ok"))
    caplog.set_level(logging.INFO, logger="facemesh.backends")
    b = registry.create_backend("auto")
    assert b.name == "ok"
    msgs = [r.getMessage() for r in caplog.records]
    assert any("possibly a bug" in m and "AttributeError" in m for m in msgs)
    assert any(m.startswith("back-end: ok on cpu; not used: trt (failed to start") for m in msgs)
