"""A tiny training run on the real assets: deterministic, learns, saves a loadable checkpoint."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.checkpoint import load_face_model
from engine.errors import UserError
from engine.hierarchy import load_hierarchy
from engine.model import ModelConfig
from engine.train import HeadData, TrainConfig, build_model, make_pool, train

TINY = ModelConfig(latent=8, channels=(4, 4, 4, 4, 8), K=2, encoder_hidden=(32,), expression_hidden=16)


@pytest.fixture(scope="module")
def setup():
    data = HeadData.load()
    return data, load_hierarchy(), make_pool(data, 256, seed=5)


def _cfg(tmp_path, **kw):
    return TrainConfig(**{"steps": 30, "batch": 8, "lr": 1e-2, "pool": 256, "seed": 5, "threads": 1,
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


def test_bad_config_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--steps must be at least 1"):
        train(_cfg(tmp_path, steps=0), progress=False, save=False)
