"""The training distribution (engine.sampling) and the tracker-like augmentation (engine.augment)."""
from __future__ import annotations

import numpy as np
import pytest

from engine.augment import AugmentConfig, LandmarkSpace, similarity_jitter, tracker_like_landmarks
from engine.expressions import EXPRESSION_NAMES
from engine.noise import TrackerNoise
from engine.sampling import EXCLUSIVE, GAZE_UNITS, sample_expressions, sample_identity

I = {n: i for i, n in enumerate(EXPRESSION_NAMES)}


@pytest.fixture(scope="module")
def expr():
    return sample_expressions(np.random.default_rng(0), 20000)


def test_identity_is_truncated_sparse_and_deterministic():
    a = sample_identity(np.random.default_rng(1), 4000, 50, sigma=0.18, limit=0.4, p_active=0.6)
    b = sample_identity(np.random.default_rng(1), 4000, 50, sigma=0.18, limit=0.4, p_active=0.6)
    assert a.shape == (4000, 50) and a.dtype == np.float32 and np.array_equal(a, b)
    assert np.abs(a).max() <= 0.4
    assert (a != 0).mean() == pytest.approx(0.6, abs=0.01)
    active = a[a != 0]
    assert abs(active.mean()) < 0.005
    # std of N(0, 0.18²) truncated to ±0.4 (2.22σ) is 0.8996·σ ≈ 0.162; no pile-up at the limits
    assert active.std() == pytest.approx(0.162, abs=0.004)
    assert (np.abs(active) > 0.399).mean() < 0.002


def test_expressions_are_sparse_in_range_and_mostly_not_neutral(expr):
    assert expr.shape == (20000, 52) and expr.dtype == np.float32
    assert expr.min() >= 0.0 and expr.max() <= 1.0
    neutral = (expr == 0).all(axis=1)
    assert neutral.mean() == pytest.approx(0.1, abs=0.01)
    active = (expr > 0).sum(axis=1)[~neutral]
    assert 2.0 < active.mean() < 8.0  # a few units at a time, not all 52
    assert np.percentile(active, 99) < 20
    assert (expr[:, I["tongueOut"]] == 0).all()


def test_paired_units_co_occur(expr):
    on = expr > 0
    for a, b in (("eyeBlinkLeft", "eyeBlinkRight"), ("mouthSmileLeft", "mouthSmileRight"),
                 ("browOuterUpLeft", "browOuterUpRight"), ("mouthLowerDownLeft", "mouthLowerDownRight")):
        both = (on[:, I[a]] & on[:, I[b]]).sum()
        assert both / on[:, I[a]].sum() > 0.5, (a, b)  # mostly together
        assert np.corrcoef(expr[:, I[a]], expr[:, I[b]])[0, 1] > 0.6
    # but one-sided variants exist (winks)
    assert (on[:, I["eyeBlinkLeft"]] & ~on[:, I["eyeBlinkRight"]]).sum() > 50


def test_gaze_is_consistent_between_the_eyes_and_antagonists_exclude(expr):
    np.testing.assert_array_equal(expr[:, I["eyeLookOutLeft"]], expr[:, I["eyeLookInRight"]])
    np.testing.assert_array_equal(expr[:, I["eyeLookInLeft"]], expr[:, I["eyeLookOutRight"]])
    np.testing.assert_array_equal(expr[:, I["eyeLookUpLeft"]], expr[:, I["eyeLookUpRight"]])
    assert not ((expr[:, I["eyeLookOutLeft"]] > 0) & (expr[:, I["eyeLookInLeft"]] > 0)).any()
    assert (expr[:, [I[n] for n in GAZE_UNITS]] > 0).any(axis=1).mean() > 0.2
    for a, b in EXCLUSIVE:
        assert not ((expr[:, I[a]] > 0) & (expr[:, I[b]] > 0)).any(), (a, b)


def test_negative_sizes_are_rejected():
    with pytest.raises(ValueError):
        sample_expressions(np.random.default_rng(0), -1)


@pytest.fixture(scope="module")
def space():
    from engine.canonical import load_canonical
    from engine.embedding import load_embedding, reference_landmarks
    from engine.headspace import load_head

    head, emb, canon = load_head(), load_embedding(), load_canonical()
    return head, emb, LandmarkSpace(reference_landmarks(head.vertices, emb), canon.procrustes_indices,
                                    canon.procrustes_weights)


STILL = AugmentConfig(max_yaw=0.0, max_pitch=0.0, max_roll=0.0, depth_scale=(1.0, 1.0), noise_scale=(1.0, 1.0),
                      jitter_rot_deg=0.0, jitter_scale=0.0, jitter_trans_mm=0.0)


def test_without_noise_the_normalisation_removes_any_pose(space):
    head, emb, sp = space
    cfg = AugmentConfig(noise_scale=(0.0, 0.0), depth_scale=(1.0, 1.0), jitter_rot_deg=0.0, jitter_scale=0.0,
                        jitter_trans_mm=0.0)
    verts = np.repeat(head.vertices[None], 6, axis=0) + 500.0  # far from the origin, posed randomly
    noisy, clean = tracker_like_landmarks(np.random.default_rng(0), verts, emb.vertex_ids, emb.bary, sp,
                                          np.full((468, 3), 0.3), cfg)
    assert noisy.shape == clean.shape == (6, 468, 3) and noisy.dtype == np.float32
    np.testing.assert_allclose(noisy, clean, atol=2e-3)
    np.testing.assert_allclose(clean[0], sp.reference, atol=2e-3)  # neutral head → the reference


def test_noise_level_matches_the_sigma_given(space):
    head, emb, sp = space
    sigma = np.tile(np.array([[0.3, 0.3, 0.15]]), (468, 1))
    verts = np.repeat(head.vertices[None], 400, axis=0)
    noisy, clean = tracker_like_landmarks(np.random.default_rng(2), verts, emb.vertex_ids, emb.bary, sp, sigma, STILL)
    d = (noisy - clean).reshape(-1, 3)
    # σ itself plus the pose-normalisation error it causes (the similarity fitted on 33 noisy points)
    ratio = d.std(axis=0) / np.array([0.3, 0.3, 0.15])
    assert np.all(ratio > 0.98) and np.all(ratio < 1.15), ratio
    with pytest.raises(ValueError):
        tracker_like_landmarks(np.random.default_rng(2), verts[:2], emb.vertex_ids, emb.bary, sp, sigma[:10], STILL)


def test_similarity_jitter_has_the_requested_rms():
    rng = np.random.default_rng(3)
    pts = np.zeros((20000, 1, 3))  # the centre itself: only the translation moves it
    out = similarity_jitter(rng, pts, np.zeros(3), rot_deg=1.0, scale_std=0.01, trans_mm=0.6)
    assert np.sqrt(np.mean(np.sum(out[:, 0] ** 2, axis=-1))) == pytest.approx(0.6, rel=0.05)


def test_config_from_the_measured_noise():
    noise = TrackerNoise(np.full((468, 3), 0.2, np.float32), 120, 120, "clip", "m", depth_gain=0.9,
                         pose_norm={"rot_deg_rms": 0.5, "scale_rel_rms": 0.004, "trans_mm_rms": 0.7})
    cfg = AugmentConfig.from_noise(noise)
    assert cfg.depth_scale == pytest.approx((0.72, 1.08))
    assert (cfg.jitter_rot_deg, cfg.jitter_scale, cfg.jitter_trans_mm) == (0.5, 0.004, 0.7)
    assert cfg.to_dict()["depth_scale"] == pytest.approx([0.72, 1.08])
