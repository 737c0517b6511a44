"""One Euro filter and FrameSmoother on synthetic signals with known answers."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from realtime.record import FrameRecord, HeadPose
from realtime.smoothing import (MAX_GAP_S, FrameSmoother, OneEuroFilter, alpha, matrix_from_quaternion,
                                quaternion_from_matrix)

FPS = 30.0


def run(filt: OneEuroFilter, xs: np.ndarray, fps: float = FPS) -> np.ndarray:
    return np.stack([filt(x, i / fps) for i, x in enumerate(xs)])


def test_constant_is_unchanged():
    x = np.random.default_rng(0).normal(size=(5, 3))
    out = run(OneEuroFilter(1.0, 0.5), np.repeat(x[None], 50, axis=0))
    assert np.allclose(out, x, atol=1e-12)


def test_first_sample_passes_and_one_step_matches_the_formula():
    f = OneEuroFilter(min_cutoff=2.0, beta=0.1, d_cutoff=1.0)
    assert f(np.array([1.0]), 0.0)[0] == 1.0
    dt = 0.1
    y = f(np.array([3.0]), dt)[0]
    edx = alpha(1.0, dt) * (3.0 - 1.0) / dt
    a = alpha(2.0 + 0.1 * edx, dt)
    assert y == pytest.approx(1.0 + a * 2.0, rel=1e-12)


def test_noisy_constant_jitter_drops():
    rng = np.random.default_rng(1)
    xs = 10.0 + rng.normal(scale=0.5, size=(300, 100))
    out = run(OneEuroFilter(1.0, 0.01), xs)
    raw_speed = np.sqrt(np.mean((np.diff(xs, axis=0) * FPS) ** 2))
    smooth_speed = np.sqrt(np.mean((np.diff(out[30:], axis=0) * FPS) ** 2))
    assert smooth_speed < 0.25 * raw_speed
    assert abs(out[30:].mean() - 10.0) < 0.05  # no bias


def _ramp_lag_s(beta: float, speed: float = 100.0, min_cutoff: float = 1.0) -> float:
    t = np.arange(200) / FPS
    out = run(OneEuroFilter(min_cutoff, beta), (speed * t)[:, None])[:, 0]
    return float((speed * t[-1] - out[-1]) / speed)  # steady-state delay of a ramp


def test_ramp_lag_is_bounded_and_shrinks_with_beta():
    # beta = 0: a plain exponential low-pass at min_cutoff; its steady-state lag on a ramp is
    # dt·(1 − α)/α, which tends to τ = 1/(2π fc) as dt → 0
    dt = 1 / FPS
    a = alpha(1.0, dt)
    assert _ramp_lag_s(0.0) == pytest.approx(dt * (1 - a) / a, rel=1e-3)
    lags = [_ramp_lag_s(b) for b in (0.0, 0.01, 0.05, 0.2)]
    assert all(l2 < l1 for l1, l2 in zip(lags, lags[1:]))
    assert lags[-1] < 0.2 * lags[0]
    assert all(0 <= lag <= 1 / (2 * math.pi * 1.0) + 1e-9 for lag in lags)


def test_non_increasing_timestamps_hold():
    f = OneEuroFilter(1.0, 0.0)
    f(np.array([0.0]), 0.0)
    y1 = f(np.array([10.0]), 0.1)
    assert np.array_equal(f(np.array([99.0]), 0.1), y1)  # same time: ignored
    assert np.array_equal(f(np.array([99.0]), 0.05), y1)  # earlier: ignored
    y2 = f(np.array([10.0]), 0.2)
    assert y1[0] < y2[0] < 10.0


def test_nan_elements_hold_and_do_not_poison():
    f = OneEuroFilter(1.0, 0.0)
    f(np.array([1.0, np.nan]), 0.0)
    y = f(np.array([np.nan, 5.0]), 0.1)
    assert y[0] == 1.0  # held
    assert y[1] == 5.0  # first finite value passes through
    y = f(np.array([2.0, 6.0]), 0.2)
    assert np.all(np.isfinite(y)) and 1.0 < y[0] < 2.0 and 5.0 < y[1] < 6.0


def test_reset_and_shape_change_restart():
    f = OneEuroFilter(1.0, 0.0)
    f(np.zeros(3), 0.0)
    f.reset()
    assert np.array_equal(f(np.full(3, 7.0), 0.1), np.full(3, 7.0))
    assert np.array_equal(f(np.ones((2, 2)), 0.2), np.ones((2, 2)))


def test_bad_parameters():
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0.0)
    with pytest.raises(ValueError):
        OneEuroFilter(beta=-1.0)


def _record(i: int, found: bool, rng, rot_deg: float = 0.0, verts=None) -> FrameRecord:
    pose = HeadPose(rotation=Rotation.from_euler("y", rot_deg, degrees=True).as_matrix().astype(np.float32),
                    translation_mm=np.array([10, 20, -500], np.float32) + rng.normal(size=3).astype(np.float32),
                    scale_px_per_mm=1.5 + 0.01 * rng.normal(),
                    center_px=np.array([320, 240], np.float32) + rng.normal(size=2).astype(np.float32))
    return FrameRecord(frame_id=i, t_capture=0.0, timestamp_ms=round(i * 1000 / FPS), face_found=found,
                       landmarks_px=(np.full((478, 3), 100.0) + rng.normal(size=(478, 3))).astype(np.float32),
                       pose=pose if found else None,
                       landmarks_norm=np.zeros((468, 3), np.float32) + rng.normal(size=(468, 3)).astype(np.float32),
                       vertices=verts if verts is not None else rng.normal(size=(50, 3)).astype(np.float32),
                       expressions=np.clip(0.5 + 0.1 * rng.normal(size=52), 0, 1).astype(np.float32))


def test_frame_smoother_reduces_jitter_of_every_field_and_keeps_types():
    sm = FrameSmoother(1.0, 0.01)
    raw, out = [], []
    for i in range(90):
        raw.append(_record(i, True, np.random.default_rng(1000 + i)))
        r = _record(i, True, np.random.default_rng(1000 + i))
        sm(r)
        out.append(r)
    for name in FrameSmoother.FIELDS:
        a = np.stack([getattr(r, name) for r in raw[30:]])
        b = np.stack([getattr(r, name) for r in out[30:]])
        assert b.dtype == np.float32 and b.shape == a.shape
        assert np.abs(np.diff(b, axis=0)).mean() < 0.5 * np.abs(np.diff(a, axis=0)).mean(), name
    for attr in ("translation_mm", "center_px"):
        a = np.stack([getattr(r.pose, attr) for r in raw[30:]])
        b = np.stack([getattr(r.pose, attr) for r in out[30:]])
        assert np.abs(np.diff(b, axis=0)).mean() < 0.5 * np.abs(np.diff(a, axis=0)).mean(), attr
    s_raw = np.array([r.pose.scale_px_per_mm for r in raw[30:]])
    s_out = np.array([r.pose.scale_px_per_mm for r in out[30:]])
    assert np.abs(np.diff(s_out)).mean() < 0.5 * np.abs(np.diff(s_raw)).mean()
    assert isinstance(out[-1].pose, HeadPose)


def test_rotation_smoothing_is_a_rotation_and_handles_quaternion_sign():
    sm = FrameSmoother(1.0, 0.0)
    rng = np.random.default_rng(4)
    # a head turning 0 → 180°+: as_quat's sign flips along the way; the output must follow smoothly
    angles = np.linspace(0, 200, 61)
    outs = []
    for i, a in enumerate(angles):
        r = _record(i, True, rng, rot_deg=float(a))
        sm(r)
        outs.append(r.pose.rotation.astype(np.float64))
    for m in outs:
        assert np.allclose(m @ m.T, np.eye(3), atol=1e-5) and np.linalg.det(m) == pytest.approx(1, abs=1e-5)
        assert np.allclose(m[1], [0, 1, 0], atol=1e-5)  # still a pure turn about y
    yaw = np.degrees(np.unwrap([math.atan2(m[0, 2], m[0, 0]) for m in outs]))
    assert np.all(np.diff(yaw) > 0)  # monotone: never swings back the long way round
    assert 150 < yaw[-1] < 200  # follows the turn, lagging a little


def test_face_lost_resets_the_smoother():
    rng = np.random.default_rng(5)
    sm = FrameSmoother(0.5, 0.0)
    v0 = np.zeros((50, 3), np.float32)
    for i in range(10):
        sm(_record(i, True, rng, verts=v0))
    lost = _record(10, False, rng)
    sm(lost)
    v1 = np.full((50, 3), 40.0, np.float32)
    r = _record(11, True, rng, verts=v1)
    sm(r)
    assert np.array_equal(r.vertices, v1)  # restarted: passes through, no drag from before the loss


def test_xcorr_delay_recovers_a_known_shift():
    from realtime.smoothing_eval import xcorr_delay_frames

    rng = np.random.default_rng(6)
    x = np.cumsum(rng.normal(size=(200, 20)), axis=0)  # random-walk tracks
    assert xcorr_delay_frames(x, x) == pytest.approx(0.0, abs=1e-9)
    delayed = np.concatenate([np.repeat(x[:1], 3, axis=0), x[:-3]])  # 3 frames later
    assert xcorr_delay_frames(x, delayed) == pytest.approx(3.0, abs=0.3)
    assert xcorr_delay_frames(delayed, x) == pytest.approx(-3.0, abs=0.3)
    # a One Euro filter with beta 0 delays a random walk by roughly its time constant
    f = OneEuroFilter(1.0, 0.0)
    y = run(f, x)
    tau_frames = FPS / (2 * math.pi * 1.0)
    assert 0.3 * tau_frames < xcorr_delay_frames(x, y) < 1.5 * tau_frames


def test_rms_speed_known_answer():
    from realtime.smoothing_eval import rms_speed

    t = np.arange(10) / 10.0
    x = np.zeros((10, 4, 3))
    x[:, :, 0] = 3.0 * t[:, None]
    x[:, :, 1] = 4.0 * t[:, None]  # every point moves at 5 units/s
    assert rms_speed(x, t) == pytest.approx(5.0)


def test_measure_on_the_real_clip_jitter_drops_with_bounded_lag():
    from realtime.smoothing_eval import measure

    rep = measure(still_frames=45, decode=lambda lm: 2.0 * lm)  # a linear landmarks → "vertices" map
    raw, sm = rep["raw"], rep["smoothed"]
    assert raw["lag_norm_ms"] == 0.0 and raw["lag_px_ms"] == 0.0  # raw vs raw
    assert sm["jitter_norm_mm_s"] < 0.3 * raw["jitter_norm_mm_s"]
    assert sm["jitter_px_mm_s"] < 0.3 * raw["jitter_px_mm_s"]
    assert raw["jitter_vertices_mm_s"] == pytest.approx(2 * raw["jitter_norm_mm_s"], abs=0.002)
    assert sm["jitter_vertices_mm_s"] < 0.3 * raw["jitter_vertices_mm_s"]
    assert 0.0 < sm["lag_norm_ms"] < 100.0 and 0.0 < sm["lag_px_ms"] < 100.0


def test_documented_figures_use_the_default_parameters():
    import json
    from pathlib import Path

    from realtime.smoothing import DEFAULT_BETA, DEFAULT_MIN_CUTOFF_HZ

    doc = json.loads((Path(__file__).resolve().parent.parent / "docs" / "smoothing.json").read_text())
    assert doc["params"] == {"min_cutoff_hz": DEFAULT_MIN_CUTOFF_HZ, "beta_s_per_mm": DEFAULT_BETA}
    assert doc["chosen"]["min_cutoff_hz"] == DEFAULT_MIN_CUTOFF_HZ and doc["chosen"]["beta_s_per_mm"] == DEFAULT_BETA


# ------------------------------------------------------------ a plain reference One Euro (allocating)
class RefOneEuro:
    """One Euro as the formulas read (Casiez et al.), NaN elements held: a new array per operation."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float, speed_scale: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff, self.speed_scale = min_cutoff, beta, d_cutoff, speed_scale
        self.x = self.dx = self.t = None

    @staticmethod
    def alpha(cutoff, dt: float):
        tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.x is None or self.x.shape != x.shape:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t
        if not dt > 0:
            return self.x.copy()
        finite = np.isfinite(x)
        base = np.where(finite & ~np.isfinite(self.x), x, self.x)
        speed = np.where(finite, (x - base) / dt, 0.0)
        dx = self.dx + self.alpha(self.d_cutoff, dt) * (speed - self.dx)
        cutoff = self.min_cutoff + self.beta * self.speed_scale * np.abs(dx)
        out = base + self.alpha(cutoff, dt) * (np.where(finite, x, base) - base)
        self.x, self.dx, self.t = np.where(finite, out, self.x), np.where(finite, dx, self.dx), t
        return self.x.copy()


class RefFrameSmoother:
    """FrameSmoother's documented behaviour with one RefOneEuro per field and scipy's rotations."""

    def __init__(self, min_cutoff: float = 0.5, beta: float = 0.1, d_cutoff: float = 1.0) -> None:
        fs = FrameSmoother
        units = {"vertices": 1.0, "expressions": fs.EXPRESSION_MM, "landmarks_px": 1.0, "landmarks_norm": 1.0,
                 "quat": 2.0 * fs.HEAD_RADIUS_MM, "log_scale": fs.FACE_SIZE_MM, "translation": 1.0, "center": 1.0}
        self.make = lambda: {k: RefOneEuro(min_cutoff, beta, d_cutoff, u) for k, u in units.items()}
        self.f = self.make()
        self.last_ms = None

    def __call__(self, rec: FrameRecord) -> None:
        if not rec.face_found:
            self.f, self.last_ms = self.make(), None
            return
        if self.last_ms is not None and rec.timestamp_ms - self.last_ms > MAX_GAP_S * 1e3:
            self.f = self.make()
        self.last_ms = rec.timestamp_ms
        t = rec.timestamp_ms * 1e-3
        scale = rec.pose.scale_px_per_mm if rec.pose is not None and rec.pose.scale_px_per_mm > 0 else 1.0
        self.f["landmarks_px"].speed_scale = self.f["center"].speed_scale = 1.0 / scale
        for name in FrameSmoother.FIELDS:
            if getattr(rec, name) is not None:
                setattr(rec, name, self.f[name](getattr(rec, name), t).astype(np.float32))
        if rec.expressions is not None:
            rec.expressions = np.clip(rec.expressions, 0.0, 1.0)
        if rec.pose is not None:
            p = rec.pose
            q = Rotation.from_matrix(p.rotation.astype(np.float64)).as_quat()
            if self.f["quat"].x is not None and np.dot(q, self.f["quat"].x) < 0:
                q = -q
            q = self.f["quat"](q, t)
            q = q / np.linalg.norm(q)
            rec.pose = HeadPose(Rotation.from_quat(q).as_matrix().astype(np.float32),
                                self.f["translation"](p.translation_mm, t).astype(np.float32),
                                float(np.exp(self.f["log_scale"]([np.log(p.scale_px_per_mm)], t)[0])),
                                self.f["center"](p.center_px, t).astype(np.float32))


def _assert_same_outputs(a: FrameRecord, b: FrameRecord, where: str) -> None:
    """Equal to float32 tolerance (in practice bit for bit), same dtypes and shapes, same None-ness."""
    for name in FrameSmoother.FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), (where, name)
        if x is not None:
            assert x.dtype == y.dtype == np.float32 and x.shape == y.shape, (where, name)
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6, err_msg=f"{where} {name}")
    assert (a.pose is None) == (b.pose is None), where
    if a.pose is not None:
        for name in ("rotation", "translation_mm", "center_px"):
            x, y = getattr(a.pose, name), getattr(b.pose, name)
            assert x.dtype == y.dtype == np.float32, (where, name)
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6, err_msg=f"{where} {name}")
        assert a.pose.scale_px_per_mm == pytest.approx(b.pose.scale_px_per_mm, rel=1e-9), where


def _real_sequence(edits: bool) -> list[FrameRecord]:
    """The real clip's records (tracked + decoded), 3 times over (10 s apart: a restart each time);
    with `edits`, also every case the smoother branches on, at fixed frames."""
    from tests.osc_support import real_records

    base = real_records()
    seq = [replace(r, frame_id=i, timestamp_ms=r.timestamp_ms + k * 10_000)
           for k in range(3) for i, r in enumerate(base, start=k * len(base))]
    if not edits:
        return seq
    n = len(base)
    for i, r in enumerate(seq):
        if i == 5:  # face lost
            seq[i] = replace(r, face_found=False, landmarks_px=None, pose=None, landmarks_norm=None, vertices=None,
                             expressions=None)
        elif i in (9, 10):  # the same timestamp twice, then one going back
            seq[i] = replace(r, timestamp_ms=seq[8].timestamp_ms - (i - 9) * 5)
        elif 12 <= i < 20 and i % 2:  # expressions missing every other frame
            seq[i] = replace(r, expressions=None)
        elif i == 21:  # a pose-less face
            seq[i] = replace(r, pose=None)
        elif i == 24:  # NaN in two fields (held per element), the filters of the others keep going
            v, lm = r.vertices.copy(), r.landmarks_px.copy()
            v[3] = np.nan
            lm[10, 1] = np.nan
            seq[i] = replace(r, vertices=v, landmarks_px=lm)
        elif i == n + 4:  # another vertex count: that filter restarts
            seq[i] = replace(r, vertices=r.vertices[:100])
        elif i == n + 8:  # a gap > MAX_GAP_S: everything restarts
            for j in range(i, 2 * n):
                seq[j] = replace(seq[j], timestamp_ms=seq[j].timestamp_ms + 1500)
    return seq


@pytest.mark.slow
@pytest.mark.parametrize("edits", [False, True])
def test_frame_smoother_matches_a_plain_one_euro_on_the_real_clip(edits):
    fast, ref = FrameSmoother(), RefFrameSmoother()
    for i, r in enumerate(_real_sequence(edits)):
        a, b = replace(r), replace(r)
        fast(a)
        ref(b)
        _assert_same_outputs(a, b, f"frame {i}")
    # the fused path did the work: every filter's state is a view of one shared buffer
    bases = {id(f.state.base) for f in fast.filters.values()}
    assert len(bases) == 1 and next(iter(fast.filters.values())).state.base.size == sum(
        f.state.size for f in fast.filters.values())


def test_frame_smoother_follows_parameter_changes_and_leaves_inputs_alone():
    rng = np.random.default_rng(7)
    recs = [_record(i, True, rng) for i in range(40)]
    fast, ref = FrameSmoother(1.0, 0.01), RefFrameSmoother(1.0, 0.01)
    for i, r in enumerate(recs):
        if i == 20:  # e.g. a UI slider
            fast.filters["vertices"].beta = ref.f["vertices"].beta = 0.3
        before = r.vertices.copy()
        a, b = replace(r), replace(r)
        fast(a)
        ref(b)
        assert np.array_equal(r.vertices, before)  # outputs are new arrays
        _assert_same_outputs(a, b, f"frame {i}")


def test_one_euro_filter_matches_the_reference_with_nan_and_holds():
    rng = np.random.default_rng(8)
    xs = np.cumsum(rng.normal(size=(80, 7, 3)), axis=0)
    xs[30, 2, 1] = np.nan
    xs[31:33, 0] = np.nan
    ts = np.arange(80) / FPS
    ts[50] = ts[49]  # repeated time: hold
    fast, ref = OneEuroFilter(0.7, 0.2, speed_scale=3.0), RefOneEuro(0.7, 0.2, 1.0, 3.0)
    for x, t in zip(xs, ts):
        np.testing.assert_allclose(fast(x, t), ref(x, t), rtol=1e-12, atol=1e-12)


def test_rotation_helpers_match_scipy():
    mats = Rotation.random(300, random_state=3).as_matrix()
    mats = np.concatenate([mats, Rotation.from_rotvec([[math.pi, 0, 0], [0, math.pi - 1e-6, 0]]).as_matrix()])
    for m in (mats, mats.astype(np.float32)):  # float32: slightly non-orthogonal, like the tracker's
        for r in m:
            np.testing.assert_allclose(quaternion_from_matrix(r), Rotation.from_matrix(r.astype(np.float64)).as_quat(),
                                       atol=1e-12)
    q = Rotation.random(300, random_state=4).as_quat() * 1.7
    for x in q:
        np.testing.assert_allclose(matrix_from_quaternion(x), Rotation.from_quat(x).as_matrix(), atol=1e-14)
    with pytest.raises(ValueError):
        quaternion_from_matrix(np.diag([1.0, 1.0, -1.0]))
