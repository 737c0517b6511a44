"""Baselines (exact on known linear data) and the evaluation's JSON shape."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.baselines import PCABaseline, RidgeBaseline
from engine.evaluate import FOLD_COUNT, KEYS, evaluate, format_table, predict, real_clip_folds, uniform_laplacian
from engine.geometry import folded_triangles
from engine.errors import CheckpointError, UserError
from engine.hierarchy import load_hierarchy
from engine.model import ModelConfig
from engine.train import HeadData, build_model, make_pool


def test_linear_pca_equals_pca_of_the_vertices():
    rng = np.random.default_rng(0)
    coeffs = rng.normal(size=(300, 12)) * np.linspace(3, 0.1, 12)
    basis = rng.normal(size=(12, 3 * 40))
    neutral = rng.normal(size=(40, 3))
    verts = neutral + (coeffs @ basis).reshape(300, 40, 3)
    a, b = PCABaseline.fit(verts, 5), PCABaseline.fit_linear(coeffs, basis, neutral, 5)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-9)
    np.testing.assert_allclose(np.abs(a.components @ b.components.T), np.eye(5), atol=1e-7)  # same up to sign
    np.testing.assert_allclose(a.reconstruct(verts), b.reconstruct(verts), atol=1e-4)
    np.testing.assert_allclose(a.explained[:5], b.explained[:5], atol=1e-9)
    np.testing.assert_allclose(b.encode_linear(coeffs, basis, neutral), b.encode(verts), atol=1e-8)
    # all 12 components reconstruct exactly; fewer do not
    assert np.abs(PCABaseline.fit_linear(coeffs, basis, neutral, 12).reconstruct(verts) - verts).max() < 1e-4
    assert np.abs(b.reconstruct(verts) - verts).max() > 0.1


def test_ridge_recovers_a_linear_map_and_picks_a_small_alpha():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 30)) * rng.uniform(0.5, 5, size=30) + 4.0
    w = rng.normal(size=(30, 6))
    y = x @ w + 1.5 + rng.normal(scale=0.01, size=(2000, 6))
    r = RidgeBaseline.fit(x, y)
    np.testing.assert_allclose(r.predict(x[:10]), y[:10], atol=0.05)
    # through an output basis: targets are coefficients, outputs their image
    basis = rng.normal(size=(6, 15))
    r2 = RidgeBaseline.fit(x, y, out_basis=basis, out_offset=np.ones(15), out_shape=(5, 3))
    assert r2.predict(x[:4]).shape == (4, 5, 3)
    np.testing.assert_allclose(r2.predict(x[:4]).reshape(4, 15), y[:4] @ basis + 1.0, atol=0.2)


def test_ridge_regularises_pure_noise():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(1000, 200)), rng.normal(size=(1000, 1))
    r = RidgeBaseline.fit(x, y)
    assert r.predict(x).std() < 0.3 * y.std()  # strong shrinkage: predictions near the mean


def test_uniform_laplacian_of_a_flat_grid_is_zero_inside():
    xs, ys = np.meshgrid(np.arange(4.0), np.arange(4.0))
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(16)], axis=1)
    q = np.array([[i * 4 + j, i * 4 + j + 1, (i + 1) * 4 + j + 1, (i + 1) * 4 + j] for i in range(3) for j in range(3)])
    tris = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
    lap = uniform_laplacian(16, tris) @ v
    assert np.abs(lap[[5, 6, 9, 10]]).max() < 1e-12 and np.abs(lap).max() > 0.1


@pytest.fixture(scope="module")
def tiny_model():
    data = HeadData.load()
    pool = make_pool(data, 64, seed=0)
    torch.manual_seed(0)
    cfg = ModelConfig(latent=6, channels=(2, 2, 2, 2, 4), K=2, encoder_hidden=(16,), expression_hidden=8)
    return data, build_model(data, load_hierarchy(), pool, cfg).eval()


def test_eval_json_has_the_keys(tiny_model, tmp_path):
    data, model = tiny_model
    res = evaluate(model, n=40, n_train=300, data=data, jitter_heads=4, jitter_draws=3, batch=20)
    for name in ("gcnn", "pca", "ridge"):
        assert set(KEYS) <= set(res[name]), name
        assert all(np.isfinite(res[name][k]) and res[name][k] >= 0 for k in KEYS)
        assert res[name]["p95_mm"] >= res[name]["mean_mm"]
    assert res["latent"] == 6 and res["n"] == 40
    assert res["gcnn"]["jitter_mm"] > 0 and "clean_mean_mm" in res["gcnn"]
    # fitted on training data, the linear baselines explain a lot; an untrained model does not
    assert res["ridge"]["mean_mm"] < res["gcnn"]["mean_mm"] and res["pca"]["mean_mm"] < res["gcnn"]["mean_mm"]
    assert res["ridge"]["expr_mae"] < 0.2
    assert res["ridge"]["expr_active_mae"] < res["expr_zero_active_mae"]  # ridge reads expressions
    assert 0.01 < res["expr_zero_mae"] < res["expr_zero_active_mae"]
    # fold counts: the true heads are the reference, a fold-free model scores like them
    assert set(res["folds"]) == {"truth", "gcnn"} and res["folds"]["truth"]["max"] >= 0
    json.loads(json.dumps(res))  # JSON-ready
    assert "gcnn" in format_table(res) and "ridge" in format_table(res)


def test_folded_triangles_counts_triangles_turned_inside_out():
    rest = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float64)
    tris = np.array([[0, 1, 2], [1, 3, 2]])
    pushed = rest.copy()
    pushed[3] = [-0.5, -0.5, 0.0]  # vertex 3 pulled across edge 1–2: the second triangle flips
    lifted = rest + [0, 0, 5]  # moved and stretched in z without turning anything over
    lifted[3, 2] = 9
    assert folded_triangles(np.stack([rest, pushed, lifted]), rest, tris).tolist() == [0, 1, 0]


# folded triangles / (triangles × frames) of the heads decoded on the demo clip: the shipped model
# 1.7e-4 (max 3 in a frame); negated decoder-head weights 1.3e-3 (max 68), 1 % of the output vertices
# shuffled 1.5e-2, all of them permuted 0.50
FOLD_SHARE_MAX = 5e-4


@pytest.fixture(scope="module")
def demo_clip():
    from realtime.clips import track_clip

    return track_clip()


def folded_share(model, data: HeadData, clip) -> tuple[float, int]:
    """(share of the head's triangles turned over, averaged over the clip's frames; most in one frame)."""
    lms = clip.landmarks_norm[clip.found_ids].astype(np.float32)
    counts = folded_triangles(predict(model, lms)[0], data.head.vertices, data.head.triangles)
    return float(counts.mean() / len(data.head.triangles)), int(counts.max())


class _PermutedVertices(torch.nn.Module):
    def __init__(self, model, perm: np.ndarray) -> None:
        super().__init__()
        self.model, self.perm = model, torch.from_numpy(perm)

    def forward(self, x):
        v, e = self.model(x)
        return v[:, self.perm], e


def test_real_clip_folds_of_the_shipped_model_on_the_demo_clip(demo_clip):
    from engine.checkpoint import load_face_model

    data, model = HeadData.load(), load_face_model()
    res = real_clip_folds(model, data, demo_clip)
    assert res["source"] == "carphone_pristine.mp4" and res["found"] > 100
    assert set(res["gcnn"]) == {"median", "p95", "max", "share_over_20"}
    # the decoded heads do not fold: hardly any triangle turns over, no frame is visibly broken
    share, worst = folded_share(model, data, demo_clip)
    assert share < FOLD_SHARE_MAX, share
    assert res["gcnn"]["max"] == worst <= FOLD_COUNT and res["gcnn"]["share_over_20"] == 0.0


@pytest.mark.parametrize("breakage", ["negated head weights", "permuted vertices"])
def test_the_fold_check_fails_a_model_that_folds(demo_clip, breakage):
    import copy

    from engine.checkpoint import load_face_model

    data, model = HeadData.load(), load_face_model()
    if breakage == "negated head weights":  # the decoder's last layer: offsets from the mean head mirrored
        model = copy.deepcopy(model)
        with torch.no_grad():
            for param in model.decoder.head.parameters():
                param.neg_()
    else:
        model = _PermutedVertices(model, np.random.default_rng(0).permutation(len(data.head.vertices)))
    share, worst = folded_share(model, data, demo_clip)
    assert share > FOLD_SHARE_MAX and worst > FOLD_COUNT, (share, worst)


def test_eval_seed_must_differ_from_training_and_sizes_are_checked(tiny_model):
    data, model = tiny_model
    with pytest.raises(ValueError, match="collides"):
        evaluate(model, n=4, n_train=30, seed=0, train_seed=0, data=data)
    with pytest.raises(UserError, match="at least 1 held-out"):
        evaluate(model, n=0, data=data)


def test_eval_of_a_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found; rebuild it with `python main.py train`"):
        evaluate(tmp_path / "face_model.pt", n=4, n_train=30)


def test_a_missing_or_unreadable_clip_skips_the_real_clip_check_and_keeps_the_rest(tiny_model, tmp_path):
    from realtime.clips import track_clip

    data, model = tiny_model
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(UserError, match="broken.mp4"):
        track_clip(bad)
    res = evaluate(model, n=20, n_train=100, data=data, jitter_heads=2, jitter_draws=2, batch=20,
                   real_clip=lambda: track_clip(bad))
    assert "broken.mp4" in res["real_clip"]["skipped"] and set(KEYS) <= set(res["gcnn"])
    assert "real clip: skipped" in format_table(res)
