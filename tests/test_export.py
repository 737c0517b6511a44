"""ONNX export: one self-contained, checker-valid file with a dynamic batch that ONNX Runtime runs like torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import UserError
from engine.export import (ONNX_PATH, ensure_onnx, export_onnx, model_digest, onnx_is_current, onnx_source_hash,
                           random_landmarks)
from engine.hierarchy import load_hierarchy
from engine.model import FaceModel, ModelConfig

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SMALL = ModelConfig(latent=8, channels=(4, 4, 6, 6, 8), K=3, encoder_hidden=(32,), expression_hidden=16)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    lm = random_landmarks(1, seed=3)[0]
    return FaceModel.build(load_hierarchy(), SMALL, lm_mean=lm, lm_scale=30.0, offset_scale=5.0).eval()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "decoder.onnx"
    return export_onnx(model, path, source_sha256="abc123")


def test_export_is_one_checked_file_with_dynamic_batch(exported):
    path = exported.path
    assert sorted(p.name for p in path.parent.iterdir()) == ["decoder.json", "decoder.onnx"]  # no .onnx.data
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    (inp,) = proto.graph.input
    assert inp.name == "landmarks"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [468, 3]
    assert [o.name for o in proto.graph.output] == ["vertices", "expressions"]
    for out in proto.graph.output:
        assert out.type.tensor_type.shape.dim[0].dim_param


def test_export_parity_is_reported_and_small(exported, model):
    assert exported.num_vertices == model.num_vertices
    assert 0.0 <= exported.max_abs_err_vertices < 1e-3  # mm, on outputs of ~100 mm
    assert 0.0 <= exported.max_abs_err_expressions < 5e-5  # weights in [0,1], inputs far out of range


def test_onnxruntime_matches_torch_at_an_unseen_batch(exported, model):
    sess = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    x = random_landmarks(7, seed=11)
    v, e = sess.run(None, {"landmarks": x})
    with torch.no_grad():
        tv, te = model(torch.from_numpy(x))
    assert v.shape == (7, model.num_vertices, 3) and e.shape == (7, 52)
    np.testing.assert_allclose(v, tv.numpy(), atol=1e-3)
    np.testing.assert_allclose(e, te.numpy(), atol=5e-5)
    assert np.abs(v).max() > 10.0  # real geometry, not zeros


def test_source_hash_is_stamped(exported):
    assert onnx_source_hash(exported.path) == "abc123"
    assert onnx_is_current(exported.path, "abc123")
    assert not onnx_is_current(exported.path, "other")
    assert not onnx_is_current(exported.path.with_name("missing.onnx"), "abc123")


def test_ensure_onnx_exports_once_then_reuses(model, tmp_path):
    path = ensure_onnx(model=model, cache_dir=tmp_path)
    assert path.parent == tmp_path and onnx_source_hash(path) == model_digest(model)
    stamp = path.stat().st_mtime_ns
    assert ensure_onnx(model=model, cache_dir=tmp_path) == path
    assert path.stat().st_mtime_ns == stamp  # current: not exported again


def test_ensure_onnx_replaces_a_corrupt_file(model, tmp_path):
    target = tmp_path / "given.onnx"
    target.write_bytes(b"\x00not an onnx file")
    assert onnx_source_hash(target) is None
    ensure_onnx(onnx_path=target, model=model)
    onnx.checker.check_model(onnx.load(str(target)))
    assert onnx_source_hash(target) == model_digest(model)


def test_unwritable_destination_is_a_user_error(model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="writable"):
        export_onnx(model, blocker / "sub" / "decoder.onnx")


def test_shipped_checkpoint_exports(tmp_path):
    """The trained checkpoint, when it is present and loads, exports with a tiny error."""
    from engine.checkpoint import CHECKPOINT_PATH
    from engine.errors import CheckpointError
    from engine.export import export_checkpoint

    if not CHECKPOINT_PATH.exists():
        pytest.skip("no trained checkpoint in models/")
    try:
        report = export_checkpoint(CHECKPOINT_PATH, tmp_path / "decoder.onnx")
    except CheckpointError as exc:
        pytest.skip(f"shipped checkpoint does not load with this build: {exc}")
    assert report.max_abs_err_vertices < 1e-3 and report.max_abs_err_expressions < 5e-5
    assert ONNX_PATH.name == "decoder.onnx"
