"""A tiny training run on the real assets: deterministic, learns, saves a loadable checkpoint."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.checkpoint import load_face_model
from engine.errors import UserError
from engine.hierarchy import load_hierarchy
from engine.mesh_graph import unique_edges
from engine.model import ModelConfig
from engine.train import HeadData, Loss, TrainConfig, build_model, euclid_mean, l1_mean, make_pool, train

TINY = ModelConfig(latent=8, channels=(4, 4, 4, 4, 8), K=2, encoder_hidden=(32,), expression_hidden=16)


@pytest.fixture(scope="module")
def setup():
    data = HeadData.load()
    return data, load_hierarchy(), make_pool(data, 256, seed=5)


def _cfg(tmp_path, **kw):
    # a tiny run with its own loss weights: it checks the mechanism (learns, deterministic), not the recipe
    return TrainConfig(**{"steps": 30, "batch": 8, "lr": 1e-2, "pool": 256, "seed": 5, "threads": 1, "edge_weight": 4.0,
                          "model": TINY, "out": tmp_path / "m.pt", "log_every": 5, **kw})


def test_pool_is_deterministic_and_prefix_stable(setup):
    data, _, pool = setup
    again = make_pool(data, 256, seed=5)
    assert np.array_equal(pool.landmarks, again.landmarks) and np.array_equal(pool.coeffs, again.coeffs)
    assert pool.landmarks.shape == (256, 468, 3) and pool.coeffs.shape[1] == 2 * data.head.num_identity + 52
    a, b = make_pool(data, 192, seed=5, chunk=64), make_pool(data, 128, seed=5, chunk=64)
    np.testing.assert_array_equal(a.landmarks[:128], b.landmarks)
    assert not np.array_equal(make_pool(data, 100, seed=6).coeffs, pool.coeffs[:100])


def test_buffers_come_from_the_training_data(setup):
    data, h, pool = setup
    model = build_model(data, h, pool, TINY)
    np.testing.assert_allclose(model.encoder.lm_mean.numpy(), pool.landmarks.mean(axis=0), atol=1e-4)
    verts = data.vertices(pool.coeffs)
    np.testing.assert_allclose(model.decoder.mean_vertices.numpy(), verts.mean(axis=0), atol=1e-3)
    assert 0.5 < float(model.decoder.offset_scale) < 20.0 and 0.5 < float(model.encoder.lm_scale) < 100.0


@pytest.mark.parametrize("vertex_loss", ["euclid", "l1"])
def test_loss_equals_the_documented_formula(setup, vertex_loss):
    """Loss (channel-major predictions, incidence matmul, fused backward passes) ≡ the formula written
    out batch-major: face-weighted vertex distance (or L1) + edge_weight · L1 of edge-vector errors +
    expr_weight · BCE; gradients too."""
    data, _, pool = setup
    cfg = TrainConfig(face_weight=3.0, edge_weight=2.5, expr_weight=7.0, vertex_loss=vertex_loss)
    loss_fn = Loss(data, cfg)
    coeffs = torch.from_numpy(pool.coeffs[:4])
    exprs = torch.from_numpy(pool.expressions[:4])
    target = torch.from_numpy(data.vertices(pool.coeffs[:4]))  # [B,V,3]
    pred = (target + torch.randn_like(target)).requires_grad_()
    pe = torch.rand(4, 52, requires_grad=True)
    total, parts = loss_fn(pred.permute(2, 1, 0), pe, coeffs, exprs)
    d = pred - target
    w = torch.where(torch.from_numpy(data.head.face_mask), 3.0, 1.0)[None, :, None]
    if vertex_loss == "euclid":
        l_v = (torch.linalg.vector_norm(d, dim=-1, keepdim=True) * w / w.mean()).mean()
    else:
        l_v = (d.abs() * w / w.mean()).mean()
    e = torch.from_numpy(unique_edges(data.head.triangles)).long()
    l_edge = (d[:, e[:, 0]] - d[:, e[:, 1]]).abs().mean()
    want = l_v + 2.5 * l_edge + 7.0 * torch.nn.functional.binary_cross_entropy(pe, exprs)
    assert torch.allclose(parts["vert_l1_mm"], l_v, rtol=1e-5) and torch.allclose(parts["edge_l1_mm"], l_edge, rtol=1e-5)
    assert torch.allclose(total, want, rtol=1e-5)
    assert torch.allclose(loss_fn.targets(coeffs).permute(2, 1, 0), target, atol=1e-4)
    got = torch.autograd.grad(total, (pred, pe))
    ref = torch.autograd.grad(want, (pred, pe))
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-9) for a, b in zip(got, ref))


def test_fused_loss_terms_match_autograd_including_zeros():
    x = torch.randn(3, 7, 2, dtype=torch.float64)
    x[:, 0, 0] = 0.0  # the subgradient at 0 is 0, as for abs() and for the norm
    w = torch.rand(1, 7, 1, dtype=torch.float64)
    for weight in (w, None):
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        va = l1_mean(a, weight)
        vb = (b.abs() * (1.0 if weight is None else weight)).mean()
        (ga,), (gb,) = torch.autograd.grad(2 * va, a), torch.autograd.grad(2 * vb, b)
        assert torch.allclose(va, vb) and torch.equal(ga, gb)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    va, vb = euclid_mean(a, w[0]), (torch.linalg.vector_norm(b, dim=0) * w[0]).mean()
    (ga,), (gb,) = torch.autograd.grad(2 * va, a), torch.autograd.grad(2 * vb, b)
    assert torch.allclose(va, vb) and torch.allclose(ga, gb, atol=1e-15) and not ga[:, 0, 0].any()


def test_tiny_run_is_deterministic_learns_and_saves(setup, tmp_path):
    data, h, pool = setup
    torch.use_deterministic_algorithms(False)
    a = train(_cfg(tmp_path), progress=False, save=True, data=data, hierarchy=h, pool=pool)
    b = train(_cfg(tmp_path, out=tmp_path / "b.pt"), progress=False, save=False, data=data, hierarchy=h, pool=pool)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.are_deterministic_algorithms_enabled()  # global state restored
    hist = a.history
    assert [r["step"] for r in hist] == [0, 5, 10, 15, 20, 25, 29]
    assert np.mean([r["loss"] for r in hist[-3:]]) < 0.5 * hist[0]["loss"]
    assert hist[-1]["expr_l1"] < hist[0]["expr_l1"]
    # saved: checkpoint + hash + history, loadable, the same function
    loaded = load_face_model(tmp_path / "m.pt", h)
    x = torch.from_numpy(pool.landmarks[:3])
    with torch.no_grad():
        assert torch.allclose(loaded(x)[0], a.model.eval()(x)[0], atol=1e-5)
    assert json.loads((tmp_path / "m.history.json").read_text())[-1]["step"] == 29
    assert a.info["config"]["steps"] == 30 and a.info["augment"]["depth_scale"][0] > 0
    assert not (tmp_path / "b.pt").exists()


def test_a_different_seed_gives_different_weights(setup, tmp_path):
    data, h, pool = setup
    a = train(_cfg(tmp_path, steps=2), progress=False, save=False, data=data, hierarchy=h, pool=pool)
    b = train(_cfg(tmp_path, steps=2, seed=6), progress=False, save=False, data=data, hierarchy=h, pool=pool)
    assert not torch.equal(a.model.encoder.mlp[0].weight, b.model.encoder.mlp[0].weight)


def test_the_shipped_two_thread_setting_is_deterministic_too(setup, tmp_path):
    # the default model and batch, so the matmuls are big enough for torch to split them across threads
    data, h, pool = setup
    cfg = _cfg(tmp_path, steps=4, batch=32, threads=2, model=ModelConfig())
    a, b = (train(cfg, progress=False, save=False, data=data, hierarchy=h, pool=pool) for _ in range(2))
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bad_config_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--steps must be at least 1"):
        train(_cfg(tmp_path, steps=0), progress=False, save=False)
