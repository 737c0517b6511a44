"""The real-face front end's per-frame arithmetic, compiled (numba): eyes, gaze, the bounded solve.

Why compiled (docs/benchmarks.md, "The front end compiled"): per frame the front end
(`engine.retarget.Retargeter`, `engine.eyelids`) measures both eyes' aspect and iris position,
ramps the lids, solves a 43-unit bounded least squares, applies a dead zone and assembles the
decoder's input: arithmetic on arrays of 2 to 1,404 numbers. Written as numpy that is ~60 calls a
frame whose interpreter overhead, not arithmetic, is the cost (~0.25 ms alone, ~1 ms in the loop
where the tracker's and the decoder's threads share two cores), all of it holding the GIL that the
tracker's thread needs between its MediaPipe calls. Compiled, the same arithmetic is one call that
runs without the GIL (`nogil`): ~0.03 ms.

Every function here is the only implementation of its logic: the numpy-facing functions of
`engine.eyelids` and `engine.retarget` call these. Compiled on first use and cached on disk
(`cache=True`, next to this file or in numba's user cache); `Retargeter.warm_up()` compiles or
loads them with the types a frame uses (~9 s the first time on a 2-core machine, 0.04 s from the
cache) before the first frame.

Conventions: float64 inside; landmark arrays [F, N, 3] (frames, landmarks, xyz) in pixels; ids are
MediaPipe landmark ids. Units are in each function's docstring.
"""
from __future__ import annotations

import numpy as np
from numba import njit, vectorize

_JIT = {"cache": True, "nogil": True}


def _ramp_scalar(x: float, dead: float, full: float) -> float:
    """`engine.eyelids.soft_ramp` for one number: 0 for x ≤ 0, x²/(2·dead) up to `dead`, then
    x − dead/2, scaled so that x = `full` reads 1, clipped to [0, 1]."""
    x = max(x, 0.0)
    knee = x * x / (2.0 * dead) if x < dead else x - 0.5 * dead
    return min(max(knee / (full - 0.5 * dead), 0.0), 1.0)


ramp = njit(**_JIT)(_ramp_scalar)
ramp_ufunc = vectorize(["float64(float64, float64, float64)"], nopython=True, cache=True)(_ramp_scalar)
"""`_ramp_scalar` as a numpy ufunc (broadcasting: x, dead, full arrays or scalars)."""


@njit(**_JIT)
def eye_aspects(p: np.ndarray, corners: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """p [F,N,3] px (N ≥ 468) → [F,2] (right, left) lid gap / eye width (`engine.eyelids.eye_aspect`).

    corners [2,2] (lateral, medial) ids per eye; upper, lower [2,P] lid ids, paired. Gap: the mean
    upper − lower difference (image x, y), across the corner axis; width: the 3-D corner distance."""
    frames, pairs = p.shape[0], upper.shape[1]
    out = np.empty((frames, 2))
    for f in range(frames):
        for e in range(2):
            lat, med = corners[e, 0], corners[e, 1]
            ax = p[f, med, 0] - p[f, lat, 0]
            ay = p[f, med, 1] - p[f, lat, 1]
            az = p[f, med, 2] - p[f, lat, 2]
            dx = 0.0
            dy = 0.0
            for k in range(pairs):
                dx += p[f, upper[e, k], 0] - p[f, lower[e, k], 0]
                dy += p[f, upper[e, k], 1] - p[f, lower[e, k], 1]
            dx /= pairs
            dy /= pairs
            across = abs(dy * ax - dx * ay)
            planar = np.sqrt(ax * ax + ay * ay)
            width = np.sqrt(ax * ax + ay * ay + az * az)
            out[f, e] = across / max(planar, 1e-9) / max(width, 1e-9)
    return out


@njit(**_JIT)
def iris_positions(p: np.ndarray, eyes: np.ndarray, perp_sign: np.ndarray) -> np.ndarray:
    """p [F,N,3] px (N ≥ 478) → [F,2,2]: per eye (right, left) the iris centre as (along the
    medial → lateral corner axis, across it, + up), in eye widths (`engine.retarget.iris_positions`).

    eyes [2,3] ids (medial corner, lateral corner, iris centre); perp_sign [2]: the sign that makes
    + up for each eye (the right eye's frame is mirrored)."""
    frames = p.shape[0]
    out = np.empty((frames, 2, 2))
    for f in range(frames):
        for e in range(2):
            i0, i1, i2 = eyes[e, 0], eyes[e, 1], eyes[e, 2]
            ax = p[f, i1, 0] - p[f, i0, 0]
            ay = p[f, i1, 1] - p[f, i0, 1]
            rx = p[f, i2, 0] - p[f, i0, 0]
            ry = p[f, i2, 1] - p[f, i0, 1]
            w2 = ax * ax + ay * ay
            out[f, e, 0] = (rx * ax + ry * ay) / w2
            out[f, e, 1] = (ay * rx - ax * ry) * perp_sign[e] / w2  # rel · (a_y, −a_x)
    return out


@njit(**_JIT)
def gaze(positions: np.ndarray, neutral: np.ndarray, full: np.ndarray, dead: float) -> np.ndarray:
    """Iris positions [2,2] and their looking-ahead values [2,2] → eight eyeLook weights [8], per eye
    (out, in, up, down): each deviation / full travel `full` [2] (along, across), minus the dead zone
    `dead` (a fraction of full), clipped to [0, 1] (`engine.retarget.gaze_array`)."""
    out = np.empty(8)
    for e in range(2):
        for a in range(2):
            d = (positions[e, a] - neutral[e, a]) / full[a]
            out[4 * e + 2 * a] = min(max((d - dead) / (1.0 - dead), 0.0), 1.0)
            out[4 * e + 2 * a + 1] = min(max((-d - dead) / (1.0 - dead), 0.0), 1.0)
    return out


@njit(**_JIT)
def box_qp(g: np.ndarray, c: np.ndarray, start: np.ndarray, max_iter: int = 200, tol: float = 1e-9) -> np.ndarray:
    """argmin ½ wᵀ G w − cᵀ w subject to 0 ≤ w ≤ 1; G [n,n] symmetric positive definite, c [n],
    start [n] (clipped; zeros for a cold start) → w [n] (`engine.retarget.box_qp`).

    Primal active-set method (Nocedal & Wright, Numerical Optimization, §16.5) with the bounds as
    the constraints: solve on the free variables with the others pinned at their bounds; step to the
    first bound hit, or, once feasible, free the pinned variable whose multiplier has the wrong sign."""
    n = len(c)
    w = np.empty(n)
    state = np.zeros(n, dtype=np.int8)  # 0 free, −1 at 0, +1 at 1
    for i in range(n):
        v = min(max(start[i], 0.0), 1.0)
        w[i] = v
        if v <= 0.0:
            state[i] = -1
        elif v >= 1.0:
            state[i] = 1
    scale = tol * max(1.0, np.abs(c).max())
    free = np.empty(n, dtype=np.int64)
    for _ in range(max_iter):
        nf = 0
        for i in range(n):
            if state[i] == 0:
                free[nf] = i
                nf += 1
        if nf:
            gf = np.empty((nf, nf))
            rhs = np.empty(nf)
            for a in range(nf):
                fa = free[a]
                s = c[fa]
                for j in range(n):  # pinned variables sit at 0 or 1: their pull is G[free, at 1]
                    if state[j] == 1:
                        s -= g[fa, j]
                rhs[a] = s
                for b in range(nf):
                    gf[a, b] = g[fa, free[b]]
            sol = np.linalg.solve(gf, rhs)
            # largest α ≤ 1 keeping 0 ≤ w + α·step ≤ 1 (only free variables move)
            alpha, hit, hit_down = np.inf, -1, False
            for a in range(nf):
                step = sol[a] - w[free[a]]
                if step < -tol:
                    al = -w[free[a]] / step
                elif step > tol:
                    al = (1.0 - w[free[a]]) / step
                else:
                    continue
                if al < alpha:
                    alpha, hit, hit_down = al, a, step < -tol
            if alpha < 1.0:
                for a in range(nf):
                    fa = free[a]
                    w[fa] = min(max(w[fa] + alpha * (sol[a] - w[fa]), 0.0), 1.0)
                k = free[hit]
                if hit_down:
                    w[k], state[k] = 0.0, -1
                else:
                    w[k], state[k] = 1.0, 1
                continue
            for a in range(nf):
                w[free[a]] = min(max(sol[a], 0.0), 1.0)
        grad = g @ w - c
        worst, k = np.inf, -1  # the multiplier of a pinned variable must be ≥ 0 at the optimum
        for j in range(n):
            if state[j] != 0:
                m = grad[j] if state[j] < 0 else -grad[j]
                if m < worst:
                    worst, k = m, j
        if k < 0 or worst >= -scale:
            return w
        state[k] = 0
    return w


@njit(**_JIT)
def solve_units(a: np.ndarray, row_weights: np.ndarray, sparsity: np.ndarray, g: np.ndarray, offset: np.ndarray,
                fixed: np.ndarray, fixed_values: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The expression solver's bounded least squares (`engine.retarget.ExpressionSolver`) → [J].

    a [M,J] whitened basis (M = 1,404 landmark coordinates); row_weights [M] the whitening;
    sparsity [J] the L1 price; g [J,J] = aᵀa + λI; offset [M] mm (landmarks − neutral); fixed [K]
    positions held at fixed_values [K] (clipped to [0, 1]) while the others are solved for what
    those leave unexplained; start [J] the warm start (the last answer, or zeros)."""
    c = a.T @ (offset * row_weights) - sparsity
    n = len(c)
    x = np.empty(n)
    is_fixed = np.zeros(n, dtype=np.bool_)
    for i in range(len(fixed)):
        is_fixed[fixed[i]] = True
        x[fixed[i]] = min(max(fixed_values[i], 0.0), 1.0)
    if len(fixed) == 0:
        return box_qp(g, c, start)
    free = np.flatnonzero(~is_fixed)
    nf = len(free)
    gf = np.empty((nf, nf))
    cf = np.empty(nf)
    sf = np.empty(nf)
    for p in range(nf):
        i = free[p]
        s = c[i]
        for q in range(len(fixed)):
            s -= g[i, fixed[q]] * x[fixed[q]]
        cf[p] = s
        sf[p] = start[i]
        for r in range(nf):
            gf[p, r] = g[i, free[r]]
    xf = box_qp(gf, cf, sf)
    for p in range(nf):
        x[free[p]] = xf[p]
    return x


@njit(**_JIT)
def lid_weights(aspect: np.ndarray, blink_ref: np.ndarray, wide_ref: np.ndarray, deads: np.ndarray,
                fulls: np.ndarray) -> np.ndarray:
    """aspect [2] (right, left), the open-eye references [2] each → [4] (blink right, left, wide
    right, left): the closure 1 − aspect/blink_ref and the opening aspect/wide_ref − 1, ramped with
    `deads`, `fulls` [4] (`engine.eyelids.OpenEyeReference.weights`)."""
    out = np.empty(4)
    for e in range(2):
        out[e] = ramp(1.0 - aspect[e] / blink_ref[e], deads[e], fulls[e])
        out[2 + e] = ramp(aspect[e] / wide_ref[e] - 1.0, deads[2 + e], fulls[2 + e])
    return out


@njit(**_JIT)
def dead_zone_rows(w: np.ndarray, zoned: np.ndarray, zone: float) -> None:
    """In place on w [F,52] float32: the `zoned` columns [K] mapped v ↦ clip((v − zone)/(1 − zone), 0, 1)
    (`engine.retarget.dead_zone`)."""
    z, span = np.float32(zone), np.float32(1.0 - zone)  # float32 arithmetic, as numpy does on float32 weights
    lo, hi = np.float32(0.0), np.float32(1.0)
    for f in range(w.shape[0]):
        for j in zoned:
            w[f, j] = min(max((w[f, j] - z) / span, lo), hi)


@njit(**_JIT)
def assemble(raw: np.ndarray, units: np.ndarray, zoned: np.ndarray, zone: float, pinned_units: np.ndarray,
             pinned_values: np.ndarray, gaze_units: np.ndarray, gaze_values: np.ndarray, motion: np.ndarray,
             keep: np.ndarray, offset: np.ndarray, identity_landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame's outputs from the solved units (`engine.retarget.Retargeter`).

    raw [J] solved values of `units` [J] (ids among the 52); zoned [K] ids given the dead zone;
    pinned_units / pinned_values: measured units written as they are (no dead zone); gaze_units [8] /
    gaze_values [8] (empty: none); motion [52, M] the decoder-input motion per unit; keep [M] (0 on
    the orbit ring, empty: no residual) times offset [M] mm passed through; identity_landmarks [M] mm.
    → (weights [52] float32, decoder landmarks [M] float32 mm)."""
    r32 = np.zeros(motion.shape[0], dtype=np.float32)
    for i in range(len(units)):
        r32[units[i]] = np.float32(raw[i])
    w = r32.copy().reshape(1, -1)
    dead_zone_rows(w, zoned, zone)
    out = w[0]
    for i in range(len(pinned_units)):
        out[pinned_units[i]] = np.float32(pinned_values[i])
    for i in range(len(gaze_units)):
        out[gaze_units[i]] = np.float32(gaze_values[i])
    flat = r32.astype(np.float64) @ motion
    if len(keep):
        flat += keep * offset
    return out, (identity_landmarks + flat).astype(np.float32)
