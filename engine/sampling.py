"""The training distribution of identities and expressions (documented in docs/training.md).

Identity (`sample_identity`): each of the A signed MakeHuman axes is *active* with probability
`p_active`; an active axis is drawn from N(0, σ²) truncated to [−limit, limit] (exact truncation by
inverse CDF, no pile-up at the limits). DATA.md: about ±0.3 gives plausible, varied faces, so
σ = 0.18 and limit = 0.4 keep 93 % of active values inside ±0.3. Inactive axes are 0.

Expressions (`sample_expressions`): real faces move sparsely and in co-occurring groups.
- with probability `p_neutral` the face is neutral (all 52 weights 0);
- otherwise it has 1 + Poisson(λ) *groups*, drawn with the weights of `GROUPS` (symmetric groups
  are more likely than their one-sided variants). Each group gets one amplitude a ~ Beta(α, β), and
  each of its units a·U(0.8, 1) (left and right differ a little, as on real faces);
- with probability `p_single` one extra unit alone, amplitude Beta(α, β) (any unit but tongueOut);
- with probability `p_gaze` a gaze direction: horizontal h and vertical v ~ U(−1, 1)·U(0, 1) give
  *consistent* eye-look units on both eyes (looking to the subject's left = eyeLookOutLeft +
  eyeLookInRight, both = |h|; up/down = eyeLookUp*/eyeLookDown* on both eyes);
- weights add up and are clipped to [0, 1]; then in each antagonist pair (jawLeft/jawRight,
  mouthLeft/mouthRight, eyeBlink*/eyeWide* of one eye) only the larger survives.
`tongueOut` is never drawn: the head has no tongue geometry.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

from engine.assets import NUM_EXPRESSIONS
from engine.expressions import EXPRESSION_NAMES

_I = {n: i for i, n in enumerate(EXPRESSION_NAMES)}

# (relative weight, units): one group is drawn as a whole, with one shared amplitude.
GROUPS: tuple[tuple[float, tuple[str, ...]], ...] = (
    (3.0, ("eyeBlinkLeft", "eyeBlinkRight")),
    (0.5, ("eyeBlinkLeft",)), (0.5, ("eyeBlinkRight",)),
    (3.0, ("mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft", "cheekSquintRight")),
    (1.0, ("mouthSmileLeft", "mouthSmileRight")),
    (0.5, ("mouthSmileLeft", "cheekSquintLeft")), (0.5, ("mouthSmileRight", "cheekSquintRight")),
    (3.0, ("jawOpen", "mouthLowerDownLeft", "mouthLowerDownRight")),
    (2.0, ("jawOpen",)), (0.5, ("jawOpen", "mouthClose")),
    (2.0, ("browInnerUp", "browOuterUpLeft", "browOuterUpRight")),
    (1.0, ("browInnerUp",)), (0.5, ("browOuterUpLeft",)), (0.5, ("browOuterUpRight",)),
    (1.5, ("browDownLeft", "browDownRight")),
    (0.4, ("browDownLeft",)), (0.4, ("browDownRight",)),
    (1.0, ("browDownLeft", "browDownRight", "noseSneerLeft", "noseSneerRight")),
    (1.0, ("mouthPucker",)), (1.0, ("mouthFunnel", "jawOpen")), (0.7, ("mouthPucker", "mouthFunnel")),
    (1.0, ("mouthFrownLeft", "mouthFrownRight")),
    (0.7, ("mouthFrownLeft", "mouthFrownRight", "mouthShrugLower")),
    (0.7, ("noseSneerLeft", "noseSneerRight", "mouthUpperUpLeft", "mouthUpperUpRight")),
    (0.3, ("noseSneerLeft", "mouthUpperUpLeft")), (0.3, ("noseSneerRight", "mouthUpperUpRight")),
    (1.0, ("mouthPressLeft", "mouthPressRight")), (0.8, ("mouthRollLower", "mouthRollUpper")),
    (0.4, ("mouthRollLower",)), (0.4, ("mouthRollUpper",)),
    (0.8, ("mouthShrugLower", "mouthShrugUpper")), (0.4, ("mouthShrugLower",)),
    (0.8, ("mouthStretchLeft", "mouthStretchRight")), (0.3, ("mouthStretchLeft",)), (0.3, ("mouthStretchRight",)),
    (0.8, ("mouthDimpleLeft", "mouthDimpleRight")), (0.3, ("mouthDimpleLeft",)), (0.3, ("mouthDimpleRight",)),
    (0.5, ("jawLeft", "mouthLeft")), (0.5, ("jawRight", "mouthRight")),
    (0.5, ("mouthLeft",)), (0.5, ("mouthRight",)), (0.3, ("jawLeft",)), (0.3, ("jawRight",)),
    (0.6, ("jawForward",)), (0.8, ("cheekPuff",)),
    (1.0, ("eyeWideLeft", "eyeWideRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight")),
    (0.5, ("eyeWideLeft", "eyeWideRight")),
    (1.0, ("eyeSquintLeft", "eyeSquintRight")), (0.3, ("eyeSquintLeft",)), (0.3, ("eyeSquintRight",)),
    (0.8, ("mouthUpperUpLeft", "mouthUpperUpRight")),
    (0.8, ("mouthLowerDownLeft", "mouthLowerDownRight")),
)
# Antagonist pairs: the smaller weight of each pair is set to 0 after summation.
EXCLUSIVE: tuple[tuple[str, str], ...] = (
    ("jawLeft", "jawRight"), ("mouthLeft", "mouthRight"),
    ("eyeBlinkLeft", "eyeWideLeft"), ("eyeBlinkRight", "eyeWideRight"),
    ("eyeLookUpLeft", "eyeLookDownLeft"), ("eyeLookUpRight", "eyeLookDownRight"),
)
GAZE_UNITS = tuple(n for n in EXPRESSION_NAMES if n.startswith("eyeLook"))

_GROUP_IDX = [np.array([_I[n] for n in g]) for _, g in GROUPS]
_GROUP_P = np.array([w for w, _ in GROUPS]) / sum(w for w, _ in GROUPS)
_SINGLES = np.array([_I[n] for n in EXPRESSION_NAMES if n != "tongueOut" and n not in GAZE_UNITS])
_EXCL = np.array([[_I[a], _I[b]] for a, b in EXCLUSIVE])


def sample_identity(rng: np.random.Generator, n: int, num_axes: int, sigma: float = 0.18,
                    limit: float = 0.4, p_active: float = 0.6) -> np.ndarray:
    """[n, num_axes] float32 signed identity axis values in [−limit, limit] (see the module docstring).

    Active axes (probability `p_active`) ~ N(0, sigma²) truncated to ±limit; the others are 0.
    """
    if n < 0 or num_axes < 0:
        raise ValueError(f"n and num_axes must be ≥ 0, got {n}, {num_axes}")
    lo = ndtr(-limit / sigma)
    u = rng.uniform(lo, 1.0 - lo, size=(n, num_axes))
    x = sigma * ndtri(u)
    x *= rng.random((n, num_axes)) < p_active
    return np.clip(x, -limit, limit).astype(np.float32)


def _gaze(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 52] consistent eye-look weights for n random gaze directions."""
    w = np.zeros((n, NUM_EXPRESSIONS))
    h = rng.uniform(-1.0, 1.0, n) * rng.uniform(0.0, 1.0, n)  # > 0: towards the subject's left
    v = rng.uniform(-1.0, 1.0, n) * rng.uniform(0.0, 1.0, n)  # > 0: up
    left, right = np.maximum(h, 0.0), np.maximum(-h, 0.0)
    w[:, _I["eyeLookOutLeft"]] = w[:, _I["eyeLookInRight"]] = left
    w[:, _I["eyeLookInLeft"]] = w[:, _I["eyeLookOutRight"]] = right
    w[:, _I["eyeLookUpLeft"]] = w[:, _I["eyeLookUpRight"]] = np.maximum(v, 0.0)
    w[:, _I["eyeLookDownLeft"]] = w[:, _I["eyeLookDownRight"]] = np.maximum(-v, 0.0)
    return w


def sample_expressions(rng: np.random.Generator, n: int, p_neutral: float = 0.1, lam: float = 0.8,
                       p_single: float = 0.3, p_gaze: float = 0.3,
                       beta: tuple[float, float] = (1.5, 1.5)) -> np.ndarray:
    """[n, 52] float32 sparse, co-occurring expression weights in [0, 1] (see the module docstring)."""
    if n < 0:
        raise ValueError(f"n must be ≥ 0, got {n}")
    w = np.zeros((n, NUM_EXPRESSIONS), dtype=np.float64)
    active = rng.random(n) >= p_neutral
    counts = np.where(active, 1 + rng.poisson(lam, size=n), 0)
    # all draws for all groups of all samples at once (deterministic order: sample-major)
    rows = np.repeat(np.arange(n), counts)
    groups = rng.choice(len(_GROUP_IDX), size=len(rows), p=_GROUP_P)
    amps = rng.beta(*beta, size=len(rows))
    for r, g, a in zip(rows, groups, amps):
        units = _GROUP_IDX[g]
        w[r, units] += a * rng.uniform(0.8, 1.0, size=len(units))
    single = active & (rng.random(n) < p_single)
    w[np.flatnonzero(single), rng.choice(_SINGLES, size=int(single.sum()))] += rng.beta(*beta, size=int(single.sum()))
    gaze = active & (rng.random(n) < p_gaze)
    w[gaze] += _gaze(rng, int(gaze.sum()))
    np.clip(w, 0.0, 1.0, out=w)
    a, b = w[:, _EXCL[:, 0]], w[:, _EXCL[:, 1]]
    w[:, _EXCL[:, 0]] = np.where(a >= b, a, 0.0)
    w[:, _EXCL[:, 1]] = np.where(b > a, b, 0.0)
    return w.astype(np.float32)
