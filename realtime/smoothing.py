"""One Euro smoothing (Casiez, Roussel & Vogel, CHI 2012), vectorised, driven by frame timestamps.

The One Euro filter is an exponential low-pass filter whose cutoff rises with the signal's speed:
at rest a low cutoff removes jitter, in motion a high one removes lag. Per sample, with dt the time
since the previous sample and α(f) = 1 / (1 + 1 / (2π f dt)):

    dx̂ = α(d_cutoff) · (x − x̂_prev) / dt + (1 − α(d_cutoff)) · dx̂_prev     (smoothed speed)
    f_c = min_cutoff + β · |dx̂|                                               (speed-adaptive cutoff)
    x̂  = α(f_c) · x + (1 − α(f_c)) · x̂_prev

`OneEuroFilter` applies this element-wise to an array of any shape. `FrameSmoother` smooths a
FrameRecord's fields; to share one β across fields of different units, each field's speed is first
expressed as millimetres of face motion per second (see `FrameSmoother`), so β is in s/mm and
min_cutoff in Hz everywhere. Defaults were chosen with `python -m realtime.smoothing_eval` (README).
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy.spatial.transform import Rotation

from realtime.record import FrameRecord, HeadPose

# Chosen by realtime/smoothing_eval.py on the demo clip (docs/smoothing.json, README "Smoothing").
DEFAULT_MIN_CUTOFF_HZ = 0.5
DEFAULT_BETA = 0.1  # s/mm
DEFAULT_D_CUTOFF_HZ = 1.0
MAX_GAP_S = 1.0  # a longer pause between frames restarts the filters


def _alpha(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass at `cutoff_hz` for a step of `dt_s`."""
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz) * dt_s))


class OneEuroFilter:
    """Element-wise One Euro filter over arrays of a fixed shape.

    min_cutoff: cutoff at rest (Hz). beta: cutoff increase per unit of speed (s per signal unit,
    times `speed_scale`). d_cutoff: cutoff of the speed estimate (Hz). speed_scale: multiplies the
    speed before β (converts the signal's units to the units β is quoted in); may be changed
    between calls.

    `__call__(x, t_s)`: x any-shape float array, t_s its time in seconds. Returns the filtered
    array (float64, x's shape). The first sample passes through. A sample whose time is not after
    the previous one is ignored and the last output returned. NaN elements leave their state
    unchanged and output their last value (NaN if they never had one). A shape change restarts.
    """

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF_HZ, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF_HZ, speed_scale: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"One Euro needs min_cutoff > 0, d_cutoff > 0, beta ≥ 0 "
                             f"(got {min_cutoff}, {d_cutoff}, {beta})")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.speed_scale = float(speed_scale)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None
        self._clean = True  # no NaN seen since the reset: the fast path applies

    def __call__(self, x: np.ndarray, t_s: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x = x.copy()
            self._dx = np.zeros_like(x)
            self._t = float(t_s)
            self._clean = bool(np.isfinite(x).all())
            return x.copy()
        dt = float(t_s) - self._t
        if not dt > 0:  # repeated or out-of-order timestamp (or NaN time): hold
            return self._x.copy()
        a_d = _alpha(self.d_cutoff, dt)
        if self._clean and np.isfinite(x).all():  # fast path: no NaN anywhere, now or before
            edx = self._dx + a_d * ((x - self._x) / dt - self._dx)
            cutoff = self.min_cutoff + (self.beta * self.speed_scale) * np.abs(edx)
            self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
            self._dx = edx
            self._t = float(t_s)
            return self._x.copy()
        self._clean = False
        finite = np.isfinite(x)
        prev = self._x
        # elements that never had a finite value start from this sample
        fresh = finite & ~np.isfinite(prev)
        base = np.where(fresh, x, prev)
        dx = np.where(finite, (x - base) / dt, 0.0)
        edx = self._dx + a_d * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * self.speed_scale * np.abs(edx)
        out = base + _alpha(cutoff, dt) * (np.where(finite, x, base) - base)
        self._x = np.where(finite, out, prev)
        self._dx = np.where(finite, edx, self._dx)
        self._t = float(t_s)
        return self._x.copy()


class FrameSmoother:
    """One Euro smoothing of a FrameRecord's vertices, expressions, landmarks and head pose, in place.

    Driven by `record.timestamp_ms`; restarts when the face is lost or frames pause > MAX_GAP_S.
    Every field's speed is converted to mm/s of face motion before β (so β is in s/mm):
      vertices, landmarks_norm, pose translation: mm → ×1;
      landmarks_px, pose center: px → ÷ scale_px_per_mm (the current face scale);
      pose scale: filtered as log(scale), ×FACE_SIZE_MM (a 1 % change ≈ 1.5 mm at the face edge);
      pose rotation: unit quaternion (sign-aligned to the last output, renormalised), ×2·HEAD_RADIUS_MM
        (a rotation of θ rad moves the face surface ≈ θ·radius; |dq| ≈ θ/2);
      expressions: weights in [0,1], ×EXPRESSION_MM (a full activation moves the face ≈ that much).
    `__call__(record)` modifies the record and returns None (a pipeline stage's smoother).
    """

    FACE_SIZE_MM = 150.0
    HEAD_RADIUS_MM = 90.0
    EXPRESSION_MM = 20.0
    FIELDS = ("vertices", "expressions", "landmarks_px", "landmarks_norm")

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF_HZ, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF_HZ) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        unit = {"vertices": 1.0, "landmarks_norm": 1.0, "expressions": self.EXPRESSION_MM, "landmarks_px": 1.0,
                "translation": 1.0, "log_scale": self.FACE_SIZE_MM, "center": 1.0,
                "quat": 2.0 * self.HEAD_RADIUS_MM}
        self.filters = {k: OneEuroFilter(min_cutoff, beta, d_cutoff, speed_scale=u) for k, u in unit.items()}
        self._last_ms: int | None = None

    def reset(self) -> None:
        """Restart every filter (next frame passes through)."""
        for f in self.filters.values():
            f.reset()
        self._last_ms = None

    def __call__(self, record: FrameRecord) -> None:
        if not record.face_found:
            self.reset()
            return
        ts = int(record.timestamp_ms)
        if self._last_ms is not None and (ts - self._last_ms) > MAX_GAP_S * 1e3:
            self.reset()
        self._last_ms = ts
        t = ts * 1e-3
        px_to_mm = 1.0
        if record.pose is not None and record.pose.scale_px_per_mm > 0:
            px_to_mm = 1.0 / record.pose.scale_px_per_mm
        self.filters["landmarks_px"].speed_scale = px_to_mm
        self.filters["center"].speed_scale = px_to_mm
        for name in self.FIELDS:
            value = getattr(record, name)
            if value is not None:
                setattr(record, name, self.filters[name](value, t).astype(np.float32))
        if record.expressions is not None:
            record.expressions = np.clip(record.expressions, 0.0, 1.0)
        if record.pose is not None:
            record.pose = self._smooth_pose(record.pose, t)

    def _smooth_pose(self, pose: HeadPose, t: float) -> HeadPose:
        q = Rotation.from_matrix(np.asarray(pose.rotation, dtype=np.float64)).as_quat()  # x y z w
        last = self.filters["quat"]._x
        if last is not None and float(np.dot(q, last)) < 0.0:
            q = -q  # same rotation, nearer the last output: no interpolation through the long way
        qs = self.filters["quat"](q, t)
        qs /= max(float(np.linalg.norm(qs)), 1e-12)
        log_s = self.filters["log_scale"](np.array([math.log(max(pose.scale_px_per_mm, 1e-12))]), t)
        return replace(
            pose,
            rotation=Rotation.from_quat(qs).as_matrix().astype(np.float32),
            translation_mm=self.filters["translation"](pose.translation_mm, t).astype(np.float32),
            scale_px_per_mm=float(math.exp(log_s[0])),
            center_px=self.filters["center"](pose.center_px, t).astype(np.float32),
        )
