"""The tracker-noise model: estimators on synthetic tracks with known answers, and the real clip."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from engine.errors import CheckpointError
from engine.noise import (NOISE_PATH, TrackerNoise, depth_gain, load_tracker_noise, pose_norm_error, residual_sigma,
                          save_tracker_noise)
from realtime.clips import measure_tracker_noise
from realtime.tracker import load_tracker_assets


@pytest.fixture(scope="module")
def assets():
    return load_tracker_assets()


def test_residual_sigma_is_unbiased_for_white_noise_on_motion():
    rng = np.random.default_rng(0)
    t = np.arange(3000) / 30.0
    motion = 5.0 * np.sin(2 * np.pi * 0.5 * t)[:, None, None] * rng.normal(size=(1, 468, 3))  # slow speech-like
    sigma = np.full((468, 3), 0.3)
    sigma[:, 2] = 0.1
    est = residual_sigma(motion + rng.normal(size=motion.shape) * sigma)
    assert est.shape == (468, 3) and est.dtype == np.float32
    assert np.median(est[:, :2]) == pytest.approx(0.3, rel=0.05)
    assert np.median(est[:, 2]) == pytest.approx(0.1, rel=0.1)


def test_depth_gain_of_a_flattened_face(assets):
    _, reference = assets
    track = np.repeat(reference[None].astype(np.float64), 20, axis=0)
    track[..., 2] *= 0.7
    track += np.random.default_rng(1).normal(scale=0.1, size=track.shape)
    assert depth_gain(track, reference) == pytest.approx(0.7, abs=0.02)


def test_pose_norm_error_recovers_a_known_rotation_jitter(assets):
    canonical, reference = assets
    rng = np.random.default_rng(2)
    t = np.arange(600) / 30.0
    slow = Rotation.from_euler("y", 15 * np.sin(2 * np.pi * 0.3 * t)[:, None], degrees=True)
    jitter_deg = 0.4  # per axis
    jit = Rotation.from_rotvec(np.radians(rng.normal(scale=jitter_deg, size=(len(t), 3))))
    rot = (jit * slow).as_matrix()
    observed = 3.0 * np.einsum("tij,nj->tni", rot, reference) + np.array([300.0, -200.0, 0.0])
    out = pose_norm_error(observed, reference, canonical.procrustes_indices, canonical.procrustes_weights)
    assert out["rot_deg_rms"] == pytest.approx(np.sqrt(3) * jitter_deg, rel=0.15)
    assert out["scale_rel_rms"] < 1e-3 and out["procrustes_residual_mm_median"] < 1e-6
    # with no jitter the normalisation is exact
    clean = 3.0 * np.einsum("tij,nj->tni", slow.as_matrix(), reference)
    out0 = pose_norm_error(clean, reference, canonical.procrustes_indices, canonical.procrustes_weights)
    assert out0["rot_deg_rms"] < 0.05 and out0["wobble_mm_median"] < 0.05


def test_save_load_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(3)
    n = TrackerNoise(rng.uniform(0.1, 0.5, (468, 3)).astype(np.float32), 120, 118, "clip.mp4", "test",
                     still_sigma_mm=rng.uniform(0.05, 0.2, (468, 3)).astype(np.float32), depth_gain=0.9,
                     pose_norm={"rot_deg_rms": 0.5})
    p = tmp_path / "noise.json"
    save_tracker_noise(n, p)
    m = load_tracker_noise(p)
    assert np.allclose(m.sigma_mm, n.sigma_mm, atol=1e-4) and np.allclose(m.still_sigma_mm, n.still_sigma_mm, atol=1e-4)
    assert (m.frames, m.found, m.source, m.depth_gain, m.pose_norm) == (120, 118, "clip.mp4", 0.9, {"rot_deg_rms": 0.5})
    with pytest.raises(CheckpointError, match="not found"):
        load_tracker_noise(tmp_path / "missing.json")
    d = json.loads(p.read_text())
    d["sigma_mm"] = d["sigma_mm"][:10]
    p.write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="unreadable"):
        load_tracker_noise(p)
    p.write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_tracker_noise(p)


@pytest.fixture(scope="module")
def measured() -> TrackerNoise:
    return measure_tracker_noise()


def test_measured_on_the_real_clip(measured):
    assert measured.frames == 120 and measured.found == 120
    assert "carphone_pristine.mp4" in measured.source and "Savitzky-Golay" in measured.method
    s = measured.sigma_mm
    assert s.shape == (468, 3) and np.all(s > 0) and np.all(np.isfinite(s))
    assert 0.02 < np.median(s) < 2.0  # mm
    assert measured.still_sigma_mm is not None
    assert np.median(measured.still_sigma_mm) < np.median(s)  # a still face jitters less than a talking one
    summ = measured.summary()
    assert summ["depth_vs_xy_ratio"] < 1.0  # weaker depth: z is smoother/flatter than x, y
    assert 0.0 < measured.pose_norm["rot_deg_rms"] < 3.0
    assert 0.0 < measured.pose_norm["wobble_mm_median"] < 3.0


def test_shipped_noise_file_matches_a_fresh_measurement(measured):
    shipped = load_tracker_noise(NOISE_PATH)
    assert shipped.method == measured.method and shipped.frames == measured.frames
    # MediaPipe is deterministic on CPU for the same frames; allow for rounding and library drift
    assert np.allclose(shipped.sigma_mm, measured.sigma_mm, rtol=0.1, atol=0.02)
