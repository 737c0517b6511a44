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

Cost: a step is 15 in-place numpy operations on preallocated float64 buffers. `FrameSmoother`
keeps the states of all its filters in one flat buffer (12,680 values for a 3,260-vertex head) and,
while they run in step (the usual case), updates them all at once: ~0.15 ms a frame on the real clip
instead of ~0.5–1 ms (2-core CPU; `python -m realtime.smoothing_eval --timing`). The numbers are
those of the per-filter formulas above, the same float64 operations in the same order (the head
rotation's matrix ↔ quaternion conversions, engine/rotations.py, agree with scipy's to ~1e-15);
tests/test_smoothing.py compares with a plain reference implementation on the real clip.
"""
from __future__ import annotations

import math

import numpy as np

from engine.rotations import matrix_from_quaternion, quaternion_from_matrix
from realtime.record import FrameRecord, HeadPose

# Chosen by realtime/smoothing_eval.py on the demo clip (docs/smoothing.json, README "Smoothing").
DEFAULT_MIN_CUTOFF_HZ = 0.5
DEFAULT_BETA = 0.1  # s/mm
DEFAULT_D_CUTOFF_HZ = 1.0
MAX_GAP_S = 1.0  # a longer pause between frames restarts the filters


def alpha(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass at `cutoff_hz` for a step of `dt_s`."""
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz) * dt_s))


def _alpha_in_place(cutoff_hz: np.ndarray, dt_s: float) -> None:
    """`cutoff_hz` (float64 array) ← `alpha(cutoff_hz, dt_s)`, the same operations in the same order."""
    np.multiply(cutoff_hz, 2.0 * math.pi, out=cutoff_hz)
    np.multiply(cutoff_hz, dt_s, out=cutoff_hz)
    np.divide(1.0, cutoff_hz, out=cutoff_hz)
    np.add(cutoff_hz, 1.0, out=cutoff_hz)
    np.divide(1.0, cutoff_hz, out=cutoff_hz)


def _step_in_place(x: np.ndarray, x_hat: np.ndarray, dx_hat: np.ndarray, dt_s: float, alpha_d: float,
                   min_cutoff: float, beta_scale: np.ndarray | float, diff: np.ndarray, work: np.ndarray) -> None:
    """One One Euro step for finite samples, updating `x_hat` and `dx_hat` in place.

    x: the new sample; x_hat / dx_hat: the filtered value and speed (updated); diff / work: scratch
    (`diff` may be `x` itself when the sample may be overwritten); all float64 of one shape. alpha_d:
    `alpha(d_cutoff, dt_s)`; beta_scale: β × speed scale, a scalar or per element. No allocation;
    bit for bit the module docstring's formulas.
    """
    np.subtract(x, x_hat, out=diff)                # x − x̂_prev
    np.divide(diff, dt_s, out=work)                # raw speed
    np.subtract(work, dx_hat, out=work)
    np.multiply(work, alpha_d, out=work)
    np.add(dx_hat, work, out=dx_hat)               # dx̂ = dx̂_prev + α_d · (speed − dx̂_prev)
    np.absolute(dx_hat, out=work)
    np.multiply(work, beta_scale, out=work)
    np.add(work, min_cutoff, out=work)             # f_c = min_cutoff + β·|dx̂|
    _alpha_in_place(work, dt_s)                    # α(f_c)
    np.multiply(work, diff, out=work)
    np.add(x_hat, work, out=x_hat)                 # x̂ = x̂_prev + α(f_c) · (x − x̂_prev)


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
        self._alpha_d_key: tuple[float, float] | None = None
        self._alpha_d = 0.0
        self._scratch: tuple[np.ndarray, np.ndarray] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None
        self._clean = True  # no NaN seen since the reset: the fast path applies

    @property
    def state(self) -> np.ndarray | None:
        """The current estimate x̂: the filter's own array, not a copy (read only); None before the first sample."""
        return self._x

    def alpha_d(self, dt_s: float) -> float:
        """`alpha(d_cutoff, dt_s)`, cached for the last (dt, d_cutoff): frame intervals repeat."""
        key = (dt_s, self.d_cutoff)
        if key != self._alpha_d_key:
            self._alpha_d_key, self._alpha_d = key, alpha(self.d_cutoff, dt_s)
        return self._alpha_d

    def _scratch_for(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        if self._scratch is None or self._scratch[0].shape != shape:
            self._scratch = (np.empty(shape), np.empty(shape))
        return self._scratch

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
        a_d = self.alpha_d(dt)
        if self._clean and np.isfinite(x).all():  # fast path: no NaN anywhere, now or before
            diff, work = self._scratch_for(x.shape)
            _step_in_place(x, self._x, self._dx, dt, a_d, self.min_cutoff, self.beta * self.speed_scale, diff, work)
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
        out = base + alpha(cutoff, dt) * (np.where(finite, x, base) - base)
        self._x = np.where(finite, out, prev)
        self._dx = np.where(finite, edx, self._dx)
        self._t = float(t_s)
        return self._x.copy()


class _SharedState:
    """The states of several OneEuroFilters in one flat float64 buffer, so they step as one.

    names / shapes: the filters' fields and array shapes. x, dx: filtered values and speeds (each
    filter's `_x` / `_dx` are views into them once `bind` ran); sample: the gathered new samples
    (then scratch); beta_scale: β × speed scale per element; work: scratch. Allocated once.
    """

    def __init__(self, names: tuple[str, ...], shapes: tuple[tuple[int, ...], ...]) -> None:
        self.names, self.shapes = names, shapes
        sizes = [math.prod(s) for s in shapes]
        total = sum(sizes)
        self.x, self.dx, self.sample, self.work = (np.zeros(total) for _ in range(4))
        self.beta_scale = np.zeros(total)
        ends = np.cumsum(sizes).tolist()
        self.slices = [slice(e - n, e) for e, n in zip(ends, sizes)]
        self.x_views = [self.x[sl].reshape(s) for sl, s in zip(self.slices, shapes)]
        self.dx_views = [self.dx[sl].reshape(s) for sl, s in zip(self.slices, shapes)]
        self.sample_views = [self.sample[sl].reshape(s) for sl, s in zip(self.slices, shapes)]
        self._scales: list[float | None] = [None] * len(names)

    def bind(self, filters: list[OneEuroFilter]) -> None:
        """Copy the filters' states in and make their `_x` / `_dx` views of this buffer."""
        for f, xv, dv in zip(filters, self.x_views, self.dx_views):
            np.copyto(xv, f._x)
            np.copyto(dv, f._dx)
            f._x, f._dx = xv, dv

    def set_beta_scales(self, filters: list[OneEuroFilter]) -> None:
        """beta_scale ← each filter's β × speed_scale over its elements (rewritten only on change)."""
        for i, f in enumerate(filters):
            value = f.beta * f.speed_scale
            if value != self._scales[i]:
                self.beta_scale[self.slices[i]] = value
                self._scales[i] = value


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

    Each field has its own `OneEuroFilter` (`filters`), with exactly its semantics (a field that is
    None is skipped, NaN and shape changes are per field). While every present field's filter has
    the same history (the usual case: all fields every frame), their states live in one
    `_SharedState` and one fused step updates them all (the same numbers, ~10× less time).
    """

    FACE_SIZE_MM = 150.0
    HEAD_RADIUS_MM = 90.0
    EXPRESSION_MM = 20.0
    FIELDS = ("vertices", "expressions", "landmarks_px", "landmarks_norm")
    MAX_SHARED_LAYOUTS = 4  # distinct sets of present fields whose shared buffers are kept

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF_HZ, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF_HZ) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        unit = {"vertices": 1.0, "landmarks_norm": 1.0, "expressions": self.EXPRESSION_MM, "landmarks_px": 1.0,
                "translation": 1.0, "log_scale": self.FACE_SIZE_MM, "center": 1.0,
                "quat": 2.0 * self.HEAD_RADIUS_MM}
        self.filters = {k: OneEuroFilter(min_cutoff, beta, d_cutoff, speed_scale=u) for k, u in unit.items()}
        self._last_ms: int | None = None
        self._shared: dict[tuple, _SharedState] = {}

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
        out = self._filter(self._samples(record), t)
        for name in self.FIELDS:
            if name in out:
                value = out[name].astype(np.float32)
                if name == "expressions":  # weights stay in [0, 1]: np.clip, in place on the fresh copy
                    np.minimum(np.maximum(value, 0.0, out=value), 1.0, out=value)
                setattr(record, name, value)
        if record.pose is not None:
            record.pose = self._pose(record.pose, out)

    def _samples(self, record: FrameRecord) -> dict[str, np.ndarray]:
        """This frame's value per filter, for the fields present: the record's arrays, and the pose as
        quaternion [4] (sign-aligned with the last output), log scale [1], translation [3], center [2]."""
        samples = {}
        for name in self.FIELDS:
            value = getattr(record, name)
            if value is not None:
                samples[name] = value
        pose = record.pose
        if pose is not None:
            q = quaternion_from_matrix(pose.rotation)
            last = self.filters["quat"]._x
            if last is not None and float(np.dot(q, last)) < 0.0:
                q = -q  # same rotation, nearer the last output: no interpolation through the long way
            samples["quat"] = q
            samples["log_scale"] = np.array([math.log(max(pose.scale_px_per_mm, 1e-12))])
            samples["translation"] = pose.translation_mm
            samples["center"] = pose.center_px
        return samples

    def _pose(self, pose: HeadPose, out: dict[str, np.ndarray]) -> HeadPose:
        qs = out["quat"] / max(float(np.linalg.norm(out["quat"])), 1e-12)
        return HeadPose(rotation=matrix_from_quaternion(qs).astype(np.float32),
                        translation_mm=out["translation"].astype(np.float32),
                        scale_px_per_mm=float(math.exp(out["log_scale"][0])),
                        center_px=out["center"].astype(np.float32))

    def _filter(self, samples: dict[str, np.ndarray], t: float) -> dict[str, np.ndarray]:
        """Filtered float64 values per name (read-only: they may be views of the filter states)."""
        names = tuple(samples)
        filters = [self.filters[n] for n in names]
        shared = self._shared.get(names)
        if shared is not None and self._in_step(shared, filters, samples):
            out = self._shared_step(shared, filters, samples, t)
            if out is not None:
                return out
        out = {n: f(samples[n], t) for n, f in zip(names, filters)}
        self._share(names, filters)
        return out

    @staticmethod
    def _in_step(shared: _SharedState, filters: list[OneEuroFilter], samples: dict[str, np.ndarray]) -> bool:
        """Whether `shared` holds these filters' states and one step applies to all of them: same last
        time, no NaN so far, same cutoffs, and this frame's shapes are the stored ones."""
        first = filters[0]
        t, min_cutoff, d_cutoff = first._t, first.min_cutoff, first.d_cutoff
        for f, xv, dv, v, shape in zip(filters, shared.x_views, shared.dx_views, samples.values(), shared.shapes):
            if not (f._x is xv and f._dx is dv and f._t == t and f._clean and f.min_cutoff == min_cutoff
                    and f.d_cutoff == d_cutoff and np.shape(v) == shape):
                return False
        return True

    @staticmethod
    def _shared_step(shared: _SharedState, filters: list[OneEuroFilter], samples: dict[str, np.ndarray],
                     t: float) -> dict[str, np.ndarray] | None:
        """All filters' step at once; None (nothing changed) when a sample is not finite, so that each
        filter handles its NaN itself."""
        first = filters[0]
        dt = float(t) - first._t
        if dt > 0:
            for view, value in zip(shared.sample_views, samples.values()):
                np.copyto(view, value)
            if not math.isfinite(shared.sample.sum()):  # a finite sum ⇒ every sample is finite
                return None
            shared.set_beta_scales(filters)
            _step_in_place(shared.sample, shared.x, shared.dx, dt, first.alpha_d(dt), first.min_cutoff,
                           shared.beta_scale, shared.sample, shared.work)
            for f in filters:
                f._t = float(t)
        # (dt ≤ 0: a repeated or out-of-order timestamp; every filter holds its last output)
        return dict(zip(shared.names, shared.x_views))

    def _share(self, names: tuple[str, ...], filters: list[OneEuroFilter]) -> None:
        """After per-filter steps: move the states into a shared buffer when the filters are in step."""
        first = filters[0] if filters else None
        if first is None or not all(f._x is not None and f._clean and f._t == first._t
                                    and f.min_cutoff == first.min_cutoff and f.d_cutoff == first.d_cutoff
                                    for f in filters):
            return
        shapes = tuple(f._x.shape for f in filters)
        shared = self._shared.get(names)
        if shared is None or shared.shapes != shapes:
            if len(self._shared) >= self.MAX_SHARED_LAYOUTS:
                self._shared.pop(next(iter(self._shared)))
            shared = self._shared[names] = _SharedState(names, shapes)
        shared.bind(filters)
