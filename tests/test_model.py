"""FaceModel: shapes and ranges, decoder maths, state_dict round trip, ONNX (dynamic batch) ≡ eager."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.chebconv import ChebConv
from engine.hierarchy import MeshHierarchy, load_hierarchy
from engine.model import NUM_EXPRESSIONS, NUM_LANDMARKS, FaceModel, ModelConfig, UpSample, topology_hash

SMALL = ModelConfig(latent=8, channels=(4, 4, 8, 8, 8), K=3, encoder_hidden=(32,), expression_hidden=16)


@pytest.fixture(scope="module")
def hier() -> MeshHierarchy:
    return load_hierarchy()


def _model(h: MeshHierarchy, cfg: ModelConfig = SMALL, seed: int = 0) -> FaceModel:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lm_mean = rng.normal(0, 50, (NUM_LANDMARKS, 3)).astype(np.float32)
    return FaceModel.build(h, cfg, h.vertices[0], 5.0, lm_mean, 40.0).eval()


def _landmarks(b: int, seed: int = 1) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).normal(0, 50, (b, NUM_LANDMARKS, 3)), dtype=torch.float32)


def test_shapes_ranges_and_pieces(hier):
    m = _model(hier)
    lm = _landmarks(3)
    with torch.no_grad():
        verts, expr = m(lm)
        z = m.encode(lm)
    assert verts.shape == (3, hier.sizes[0], 3) and expr.shape == (3, NUM_EXPRESSIONS)
    assert ((expr >= 0) & (expr <= 1)).all()
    assert z.shape == (3, SMALL.latent)
    with torch.no_grad():
        assert torch.allclose(m.decode(z), verts) and torch.allclose(m.expressions(z), expr)
    # batched ≡ per-sample
    with torch.no_grad():
        one = torch.cat([m(lm[i:i + 1])[0] for i in range(3)])
    assert torch.allclose(one, verts, atol=1e-4)


def test_zero_decoder_gives_mean_mesh(hier):
    m = _model(hier)
    with torch.no_grad():
        m.decoder.head.weight.zero_()
        m.decoder.head.bias.zero_()
        verts = m.decode(torch.randn(2, SMALL.latent))
    assert torch.allclose(verts, torch.as_tensor(hier.vertices[0]).expand(2, -1, -1))


def test_upsample_is_barycentric_interpolation(hier):
    up = UpSample(hier.up_idx[0], hier.up_w[0])
    coarse = torch.as_tensor(hier.vertices[1])[None]
    want = (hier.vertices[1][hier.up_idx[0]] * hier.up_w[0][..., None]).sum(axis=1)
    assert np.allclose(up(coarse)[0].numpy(), want, atol=1e-4)


def test_decoder_layers_describe_the_forward_pass(hier):
    m = _model(hier)
    layers = m.decoder_layers()
    kinds = [k for k, _ in layers]
    assert kinds[0] == "fc" and kinds[-1] == "head" and kinds.count("up") == hier.num_levels - 1
    z = torch.randn(2, SMALL.latent)
    with torch.no_grad():
        x = layers[0][1](z).reshape(2, hier.sizes[-1], SMALL.channels[-1])
        for kind, mod in layers[1:]:
            x = mod(x)
        x = x * m.decoder.offset_scale + m.decoder.mean_vertices
        assert torch.allclose(x, m.decode(z))
    convs = [mod for k, mod in layers if k in ("conv", "head")]
    assert all(isinstance(c, ChebConv) for c in convs)
    assert [c.num_vertices for c in convs] == hier.sizes[1:][::-1] + [hier.sizes[0]]


def test_state_dict_restores_model(hier):
    a, b = _model(hier, seed=0), _model(hier, seed=1)
    lm = _landmarks(2)
    with torch.no_grad():
        assert not torch.allclose(a(lm)[0], b(lm)[0])
        b.load_state_dict(a.state_dict())
        assert torch.equal(a(lm)[0], b(lm)[0]) and torch.equal(a(lm)[1], b(lm)[1])
    # the graph is rebuilt from the hierarchy (checked by its hash), only learnt weights and statistics are saved
    assert not any("nbr" in k or "idx" in k for k in a.state_dict())
    assert {"decoder.mean_vertices", "decoder.offset_scale", "encoder.lm_mean", "encoder.lm_scale"} <= set(a.state_dict())
    assert len(topology_hash(hier)) == 64


def test_gradients_reach_every_parameter(hier):
    m = _model(hier).train()
    verts, expr = m(_landmarks(2))
    (verts.square().mean() + expr.mean()).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


@pytest.mark.parametrize("channels", [SMALL.channels, (2, 4, 8, 8, 8)])  # head by Clenshaw (4→3), by recurrence (2→3)
def test_channel_major_training_path_equals_forward(hier, channels):
    """FaceModel.forward_channel_major (the training path) ≡ forward: outputs and every parameter's gradient."""
    cfg = ModelConfig(latent=8, channels=channels, K=3, encoder_hidden=(32,), expression_hidden=16)
    m = _model(hier, cfg).train()
    for p in m.parameters():  # non-zero biases everywhere, so that their paths are exercised too
        if p.dim() == 1:
            torch.nn.init.normal_(p, std=0.1)
    lm = _landmarks(3)
    gv = torch.randn(3, hier.sizes[0], 3)
    ge = torch.randn(3, NUM_EXPRESSIONS)
    params = [p for _, p in m.named_parameters()]
    v, e = m(lm)
    want = torch.autograd.grad((v * gv).sum() + (e * ge).sum(), params)
    vc, ec = m.forward_channel_major(lm)
    assert vc.shape == (3, hier.sizes[0], 3)
    assert torch.allclose(vc.permute(2, 1, 0), v, atol=1e-4) and torch.equal(ec, e)
    got = torch.autograd.grad((vc.permute(2, 1, 0) * gv).sum() + (ec * ge).sum(), params)
    for (name, _), a, b in zip(m.named_parameters(), got, want):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max())), (name, (a - b).abs().max())


def test_config_dict_roundtrip():
    cfg = ModelConfig(latent=16, channels=(8, 8, 8, 16, 16))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_wrong_channel_count_is_rejected(hier):
    with pytest.raises(ValueError, match="channels"):
        FaceModel.build(hier, ModelConfig(channels=(8, 8, 8)))


# engine/export.py uses the TorchScript exporter; the dynamo one also works but takes ~20 s here
@pytest.mark.parametrize("dynamo", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_onnx_export_dynamic_batch_matches_eager(hier, tmp_path, dynamo):
    ort = pytest.importorskip("onnxruntime")
    if dynamo:
        pytest.importorskip("onnxscript")
    m = _model(hier)
    path = tmp_path / "face.onnx"
    kw = dict(dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},), external_data=False) if dynamo \
        else dict(dynamic_axes={"landmarks": {0: "batch"}, "vertices": {0: "batch"}, "expressions": {0: "batch"}})
    torch.onnx.export(m, (_landmarks(2),), str(path), input_names=["landmarks"],
                      output_names=["vertices", "expressions"], opset_version=17, dynamo=dynamo, **kw)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (1, 5):
        lm = _landmarks(b, seed=b)
        got_v, got_e = sess.run(None, {"landmarks": lm.numpy()})
        with torch.no_grad():
            want_v, want_e = m(lm)
        assert got_v.shape == (b, hier.sizes[0], 3)
        assert np.allclose(got_v, want_v.numpy(), atol=1e-3)
        assert np.allclose(got_e, want_e.numpy(), atol=1e-5)
