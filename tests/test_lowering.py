"""The inference lowering (engine/lowering.py): the same function as the FaceModel, its pieces exact,
its ONNX export small and batch-dynamic."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from engine.chebconv import ChebConv
from engine.checkpoint import CHECKPOINT_PATH, load_face_model
from engine.errors import CheckpointError
from engine.hierarchy import load_hierarchy
from engine.lowering import Layout, LeanFaceModel, block_operator, chebyshev_operator, lower
from engine.model import NUM_LANDMARKS, FaceModel, ModelConfig, UpSample

SMALL = ModelConfig(latent=8, channels=(4, 4, 6, 6, 8), K=3, encoder_hidden=(32,), expression_hidden=16)


def _randomise_biases(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh models have zero ChebConv biases; give them values so bias folding is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ChebConv) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)
    return model


@pytest.fixture(scope="module")
def hier():
    return load_hierarchy()


@pytest.fixture(scope="module")
def small_model(hier):
    torch.manual_seed(0)
    lm_mean = np.random.default_rng(0).normal(0, 50, (NUM_LANDMARKS, 3)).astype(np.float32)
    return _randomise_biases(FaceModel.build(hier, SMALL, hier.vertices[0], 5.0, lm_mean, 40.0)).eval()


def _inputs(model: FaceModel, batch: int, seed: int = 1, spread: float = 2.0) -> torch.Tensor:
    """Landmarks near the model's mean (in-distribution) [batch,468,3]."""
    rng = np.random.default_rng(seed)
    noise = torch.as_tensor(rng.normal(0, spread, (batch, NUM_LANDMARKS, 3)), dtype=torch.float32)
    return model.encoder.lm_mean + noise


@pytest.mark.parametrize("batch", [1, 4])
def test_lowering_equals_model(small_model, batch):
    lean = lower(small_model)
    x = _inputs(small_model, batch, spread=30.0)
    with torch.no_grad():
        v0, e0 = small_model(x)
        v1, e1 = lean(x)
    assert v1.shape == v0.shape and e1.shape == e0.shape
    scale = float(v0.abs().max())
    torch.testing.assert_close(v1, v0, atol=2e-6 * scale + 1e-5, rtol=0)
    torch.testing.assert_close(e1, e0, atol=1e-5, rtol=0)


def test_lowering_equals_shipped_model():
    try:
        model = load_face_model(CHECKPOINT_PATH)
    except CheckpointError as exc:
        pytest.skip(f"no usable shipped checkpoint: {exc}")
    lean = lower(model)
    x = _inputs(model, 3)
    with torch.no_grad():
        v0, e0 = model(x)
        v1, e1 = lean(x)
    assert float((v1 - v0).abs().max()) < 1e-4  # mm, on heads of ~150 mm
    assert float((e1 - e0).abs().max()) < 1e-5


def test_chebyshev_operator_is_the_chebconv(hier):
    """Y = A Z (Z rows (j, order) = X_j Θ_order) equals ChebConv(U X) on a real level."""
    torch.manual_seed(3)
    conv = ChebConv(5, 4, 4, hier.nbr_idx[1], hier.nbr_mask[1])
    up = UpSample(hier.up_idx[1], hier.up_w[1])
    x = torch.randn(1, hier.sizes[2], 5, dtype=torch.float64)
    with torch.no_grad():
        ref = conv.double()(up.double()(x))[0].numpy() - conv.bias.numpy()
    a = chebyshev_operator(conv.laplacian_matrix(), conv.K, up.matrix(hier.sizes[2]))
    theta = conv.weight.detach().double().numpy()  # [K,in,out]
    z = np.einsum("jc,kco->jko", x[0].numpy(), theta).reshape(-1, 4)  # rows j·K + k
    np.testing.assert_allclose(a @ z, ref, atol=2e-6)  # the graph weights are stored in float32


def test_block_operator_reproduces_the_operator(hier):
    rng = np.random.default_rng(0)
    a = sp.random(hier.sizes[1], 300, density=0.02, random_state=1, format="csr")
    layout = Layout.patches(hier.vertices[1], 40)
    col_rows = rng.permutation(300)  # columns live at shuffled rows of the input array
    halo, blocks = block_operator(a, layout, col_rows)
    x = rng.normal(size=(300, 7))
    x_rows = np.empty_like(x)
    x_rows[col_rows] = x  # row col_rows[c] holds column c
    y = np.einsum("psh,phn->psn", blocks, x_rows[halo].reshape(layout.parts, -1, 7)).reshape(-1, 7)
    np.testing.assert_allclose(y[layout.pos], a @ x, atol=1e-12)


def test_patch_layout_covers_every_vertex_once(hier):
    pts = hier.vertices[0]
    lay = Layout.patches(pts, 52)
    real = lay.order[lay.order >= 0]
    assert sorted(real.tolist()) == list(range(len(pts)))
    np.testing.assert_array_equal(lay.order[lay.pos], np.arange(len(pts)))
    sizes = [len(g) for g in lay.groups()]
    assert max(sizes) - min(sizes) <= 1 and lay.rows == lay.parts * lay.size
    again = Layout.patches(pts, 52)
    np.testing.assert_array_equal(again.order, lay.order)  # deterministic
    # patches are compact: each one's bounding box is far smaller than the head's
    boxes = [np.ptp(pts[g], axis=0).max() for g in lay.groups()]
    assert np.median(boxes) < 0.25 * np.ptp(pts, axis=0).max()


def test_export_is_small_and_batch_dynamic(small_model, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from engine.export import export_onnx

    rep = export_onnx(small_model, tmp_path / "lean.onnx")
    proto = onnx.load(str(rep.path))
    ops = [n.op_type for n in proto.graph.node]
    assert len(ops) < 80, f"{len(ops)} nodes"
    assert not any("Sparse" in op for op in ops)
    sess = ort.InferenceSession(str(rep.path), providers=["CPUExecutionProvider"])
    for batch in (1, 2, 7):
        x = _inputs(small_model, batch, seed=batch, spread=30.0)
        v, e = sess.run(None, {"landmarks": x.numpy()})
        with torch.no_grad():
            tv, te = small_model(x)
        np.testing.assert_allclose(v, tv.numpy(), atol=1e-3)
        np.testing.assert_allclose(e, te.numpy(), atol=5e-5)


def test_refuses_what_it_cannot_lower(small_model, hier):
    bad = FaceModel.build(hier, SMALL)
    bad.encoder.mlp[1] = nn.ReLU()
    with pytest.raises(ValueError, match="ELU"):
        LeanFaceModel(bad)
    skew = FaceModel.build(hier, SMALL).eval()
    with torch.no_grad():
        up = skew.decoder.ups[1]
        idx, w = up._padded
        up._padded = (idx, w * 1.5)  # rows no longer sum to 1: a folded bias would be scaled
    with pytest.raises(ValueError, match="sum to 1"):
        LeanFaceModel(skew)
