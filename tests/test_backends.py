"""Inference back-ends: torch ↔ ONNX Runtime parity (always), the registry's fall-back and error messages,
the TensorRT engine cache (pure, runs anywhere), and GPU back-ends where a GPU and their packages exist."""
from __future__ import annotations

import importlib.util
import json
import logging

import numpy as np
import pytest
import torch

from engine import backends as registry
from engine.backends import BACKEND_NAMES, Backend, create_backend
from engine.backends.tensorrt_backend import EngineCache, engine_cache_key, profile_shapes
from engine.errors import BackendUnavailable, CheckpointError
from engine.export import random_landmarks
from engine.hierarchy import load_hierarchy
from engine.model import FaceModel, ModelConfig

SMALL = ModelConfig(latent=8, channels=(4, 4, 6, 6, 8), K=3, encoder_hidden=(32,), expression_hidden=16)
HAS_CUDA = torch.cuda.is_available()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_TRT_RTX = importlib.util.find_spec("onnxruntime_ep_nv_tensorrt_rtx") is not None


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FaceModel.build(load_hierarchy(), SMALL, lm_mean=random_landmarks(1, 3)[0], lm_scale=30.0,
                           offset_scale=5.0).eval()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("engine_cache")


@pytest.fixture(scope="module")
def ort_backend(model, cache):
    b = create_backend("onnxruntime", model=model, cache_dir=cache, threads=1)
    yield b
    b.close()


@pytest.fixture(scope="module")
def torch_backend(model):
    b = create_backend("torch-cpu", model=model)
    yield b
    b.close()


def _reference(model, x):
    with torch.no_grad():
        v, e = model(torch.from_numpy(x))
    return v.numpy(), e.numpy()


# ---- parity: always runs ---------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_torch(ort_backend, torch_backend, model, batch):
    x = random_landmarks(batch, seed=batch)
    ov, oe = ort_backend.infer(x)
    tv, te = torch_backend.infer(x)
    assert ov.dtype == np.float32 and ov.shape == (batch, model.num_vertices, 3) and oe.shape == (batch, 52)
    np.testing.assert_allclose(ov, tv, atol=1e-3)
    np.testing.assert_allclose(oe, te, atol=5e-5)
    rv, re = _reference(model, x)  # the back-ends run the lowering: the same function, regrouped sums
    np.testing.assert_allclose(tv, rv, atol=2e-4)  # mm, float32 rounding on outputs of ~100 mm
    np.testing.assert_allclose(te, re, atol=5e-5)


def test_backends_follow_the_protocol(ort_backend, torch_backend):
    for b in (ort_backend, torch_backend):
        assert isinstance(b, Backend)
        assert b.name in BACKEND_NAMES and b.device.startswith("cpu")


def test_batch1_results_are_owned_by_the_caller(ort_backend):
    x1, x2 = random_landmarks(1, 1), random_landmarks(1, 2)
    v1, e1 = ort_backend.infer(x1)
    keep = v1.copy()
    v2, _ = ort_backend.infer(x2)
    assert not np.allclose(v1, v2)
    np.testing.assert_array_equal(v1, keep)  # the second call did not overwrite the first result


def test_single_frame_and_bad_shapes(ort_backend):
    v, e = ort_backend.infer(random_landmarks(1)[0])  # [468,3] is taken as a batch of one
    assert v.shape[0] == 1 and e.shape == (1, 52)
    with pytest.raises(ValueError, match=r"\[B,468,3\]"):
        ort_backend.infer(np.zeros((2, 478, 3), np.float32))


# ---- the registry ----------------------------------------------------------------------------------

def test_auto_falls_back_with_one_info_line(model, cache, caplog):
    caplog.set_level(logging.INFO, logger="facemesh.backends")
    b = create_backend("auto", model=model, cache_dir=cache)
    try:
        lines = [r for r in caplog.records if r.name == "facemesh.backends"]
        assert len(lines) == 1 and b.name in lines[0].getMessage()
        if not HAS_CUDA:
            assert b.name == "onnxruntime"
            msg = lines[0].getMessage()
            for skipped in ("tensorrt (", "tensorrt-rtx (", "torch-cuda ("):
                assert skipped in msg
            assert "pip install" not in msg and len(msg) < 300  # short: the install hints are for -v
    finally:
        b.close()


def test_unknown_backend_lists_the_choices():
    with pytest.raises(BackendUnavailable, match="onnxruntime"):
        create_backend("tensorflow")


@pytest.mark.skipif(HAS_TRT and HAS_CUDA, reason="TensorRT and a GPU are present: the forced back-end starts")
def test_forced_tensorrt_says_what_is_missing(model, cache):
    with pytest.raises(BackendUnavailable) as err:
        create_backend("tensorrt", model=model, cache_dir=cache)
    msg = str(err.value)
    assert msg.startswith("tensorrt:") and "\n" not in msg
    assert "pip install" in msg or "CUDA" in msg


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is present: torch-cuda starts")
def test_forced_torch_cuda_says_what_is_missing(model):
    with pytest.raises(BackendUnavailable, match="torch-cuda: .*(CPU-only build|no CUDA device)"):
        create_backend("torch-cuda", model=model)


@pytest.mark.skipif(HAS_TRT_RTX and HAS_CUDA, reason="the TensorRT-RTX EP and a GPU are present")
def test_forced_tensorrt_rtx_says_how_to_install(model, cache):
    with pytest.raises(BackendUnavailable) as err:
        create_backend("tensorrt-rtx", model=model, cache_dir=cache)
    msg = str(err.value)
    assert msg.startswith("tensorrt-rtx:")
    if not HAS_TRT_RTX:
        assert "pip install onnxruntime-ep-nv-tensorrt-rtx-cu13" in msg


def test_checkpoint_errors_are_not_swallowed_by_auto(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        create_backend("auto", model_path=tmp_path / "missing.pt", cache_dir=tmp_path)


def test_all_failures_are_reported_together(monkeypatch):
    def fail(reason):
        def factory(cfg):
            raise BackendUnavailable(reason)
        return factory

    def crash(cfg):
        raise RuntimeError("driver exploded\nsecond line")

    monkeypatch.setattr(registry, "REGISTRY", {"a": fail("a: missing A (pip install a)"), "b": crash,
                                               "c": fail("c: missing C")})
    monkeypatch.setattr(registry, "AUTO_ORDER", ("a", "b", "c"))
    with pytest.raises(BackendUnavailable) as err:
        registry.create_backend("auto")
    msg = str(err.value)
    assert "a: missing A (pip install a)" in msg and "b: failed to start (RuntimeError: driver exploded)" in msg
    assert "c: missing C" in msg and "\n" not in msg


# ---- the TensorRT engine cache (no TensorRT needed) ------------------------------------------------

def test_engine_cache_key_covers_every_input():
    base = dict(onnx_bytes=b"model", precision="fp16", profiles=[(1, 1, 64), (1, 4096, 4096)], trt_version="10.9",
                gpu_name="NVIDIA H100", compute_capability="9.0")
    k0 = engine_cache_key(**base)
    assert k0 == engine_cache_key(**base)
    changes = dict(onnx_bytes=b"model2", precision="fp32", profiles=[(1, 1, 64)], trt_version="10.10",
                   gpu_name="NVIDIA H200", compute_capability="8.9")
    for field, value in changes.items():
        assert engine_cache_key(**{**base, field: value}) != k0, field


def test_engine_cache_roundtrip_and_corruption(tmp_path):
    cache = EngineCache(tmp_path / "engine_cache")
    key = engine_cache_key(b"m", "fp16", profile_shapes(4096), "10.9", "gpu", "9.0")
    assert cache.load(key) is None  # miss
    blob = bytes(range(256)) * 10
    path = cache.store(key, blob, {"precision": "fp16"})
    meta = json.loads(cache.meta_path(key).read_text())
    assert meta["key"] == key and meta["precision"] == "fp16" and meta["bytes"] == len(blob)
    assert cache.load(key) == blob  # hit
    path.write_bytes(blob[:100])  # truncated engine: detected, removed, reported as a miss
    assert cache.load(key) is None and not path.exists() and not cache.meta_path(key).exists()
    cache.store(key, blob, {})
    cache.meta_path(key).write_text("{not json")  # corrupt metadata
    assert cache.load(key) is None
    cache.store(key, blob, {})
    other = engine_cache_key(b"m2", "fp16", profile_shapes(4096), "10.9", "gpu", "9.0")
    cache.meta_path(key).write_text(json.dumps({"key": other}))  # metadata of another build
    assert cache.load(key) is None


def test_profile_shapes():
    assert profile_shapes(1) == [(1, 1, 1)]
    assert profile_shapes(64) == [(1, 1, 64)]
    assert profile_shapes(4096) == [(1, 1, 64), (1, 4096, 4096)]
    with pytest.raises(ValueError):
        profile_shapes(0)


# ---- the decoder benchmark -------------------------------------------------------------------------

def test_bench_decoder_reports_the_documented_fields(ort_backend, torch_backend, model):
    from engine.bench_decoder import bench_decoder, estimate_bytes_per_sample, format_table
    from engine.pyg_reference import PygReferenceBackend

    pyg = PygReferenceBackend(model, load_hierarchy())
    per = estimate_bytes_per_sample(model)
    result = bench_decoder({"onnxruntime": ort_backend, "torch-cpu": torch_backend, "pyg_reference": pyg},
                           batches=(1, 4, 10**6), min_time_s=0.05, min_runs=2, batch1_min_runs=5,
                           bytes_per_sample={"onnxruntime": per, "torch-cpu": per, "pyg_reference": per},
                           memory_budget=per * 100)
    assert set(result) == {"onnxruntime", "torch-cpu", "pyg_reference"}
    for r in result.values():
        assert 0 < r["batch1_p50_ms"] <= r["batch1_p99_ms"] and r["batch1_runs"] >= 5
        assert set(r["throughput"]) == {"1", "4"} and all(v > 0 for v in r["throughput"].values())
        assert "1000000" in r["skipped"]  # over the memory budget
    json.dumps(result)
    table = format_table(result)
    assert "pyg_reference" in table and "vs PyG" in table and "skipped" in table


# ---- GPU back-ends: only where they can run --------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device visible to torch")
def test_torch_cuda_matches_cpu_with_graphs(model):
    x, xb = random_landmarks(1, 4), random_landmarks(5, 4)
    rv, re = _reference(model, x)
    b = create_backend("torch-cuda", model=model)
    try:
        v1, e1 = b.infer(x)  # captures the batch-1 graph
        v2, _ = b.infer(x)  # replays it
        np.testing.assert_allclose(v1, rv, atol=1e-3)
        np.testing.assert_allclose(e1, re, atol=5e-5)
        np.testing.assert_array_equal(v1, v2)
        vb, _ = b.infer(xb)
        np.testing.assert_allclose(vb, _reference(model, xb)[0], atol=1e-3)
    finally:
        b.close()


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TRT and HAS_CUDA), reason="TensorRT and a CUDA GPU are needed (pip install tensorrt)")
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-2), ("fp16", 0.5)])
def test_tensorrt_parity_and_cache(model, tmp_path, precision, tol):
    x = random_landmarks(3, 7)
    rv, re = _reference(model, x)
    b = create_backend("tensorrt", model=model, cache_dir=tmp_path, precision=precision, max_batch=128)
    try:
        assert b.built
        v, e = b.infer(x)
        np.testing.assert_allclose(v, rv, atol=tol)
        np.testing.assert_allclose(e, re, atol=tol / 10)
        v1, _ = b.infer(x[:1])
        np.testing.assert_allclose(v1, rv[:1], atol=tol)
        engine_path = b.engine_path
    finally:
        b.close()
    b2 = create_backend("tensorrt", model=model, cache_dir=tmp_path, precision=precision, max_batch=128)
    assert not b2.built  # cache hit
    b2.close()
    engine_path.write_bytes(engine_path.read_bytes()[:1000])  # corrupt: rebuilt, not crashed on
    b3 = create_backend("tensorrt", model=model, cache_dir=tmp_path, precision=precision, max_batch=128)
    assert b3.built
    np.testing.assert_allclose(b3.infer(x)[0], rv, atol=tol)
    b3.close()


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TRT_RTX and HAS_CUDA),
                    reason="the TensorRT-RTX EP (pip install onnxruntime-ep-nv-tensorrt-rtx-cu13) and a GPU are needed")
def test_tensorrt_rtx_parity(model, tmp_path):
    try:
        b = create_backend("tensorrt-rtx", model=model, cache_dir=tmp_path)
    except BackendUnavailable as exc:  # e.g. a data-centre GPU outside TensorRT-RTX's support matrix
        pytest.skip(str(exc))
    x = random_landmarks(2, 9)
    rv, _ = _reference(model, x)
    v, _ = b.infer(x)
    np.testing.assert_allclose(v, rv, atol=0.5)
    b.close()
