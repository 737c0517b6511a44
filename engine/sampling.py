"""The training distribution of identities and expressions (documented in docs/training.md).

Identity: each of the A signed MakeHuman axes is active with probability `p_active` and then drawn
from a normal N(0, σ²) truncated to ±`limit` (DATA.md: about ±0.3 gives plausible, varied faces).

Expressions: real faces move in co-occurring groups, sparsely. A sample is neutral with probability
`p_neutral`; otherwise it has 1 + Poisson(λ) active *groups* (blink, smile, jaw open, brow raise,
…, see GROUPS), each with a Beta(2, 2) amplitude shared by its units (each unit jittered ×U(0.75, 1)
so left and right differ a little), and with probability `p_single` one extra single unit. Weights add
up and are clipped to [0, 1]. `tongueOut` is never drawn: the head has no tongue geometry.
"""
from __future__ import annotations

import numpy as np

from engine.expressions import EXPRESSION_NAMES

_I = {n: i for i, n in enumerate(EXPRESSION_NAMES)}

# Co-occurring groups (unit names); one group is drawn as a whole.
GROUPS: tuple[tuple[str, ...], ...] = (
    ("eyeBlinkLeft", "eyeBlinkRight"),
    ("eyeBlinkLeft",), ("eyeBlinkRight",),
    ("mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft", "cheekSquintRight"),
    ("mouthSmileLeft", "cheekSquintLeft"), ("mouthSmileRight", "cheekSquintRight"),
    ("jawOpen", "mouthLowerDownLeft", "mouthLowerDownRight"),
    ("jawOpen",), ("jawOpen", "mouthClose"),
    ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"),
    ("browInnerUp",), ("browOuterUpLeft",), ("browOuterUpRight",),
    ("browDownLeft", "browDownRight"),
    ("browDownLeft", "browDownRight", "noseSneerLeft", "noseSneerRight"),
    ("mouthPucker",), ("mouthFunnel", "jawOpen"), ("mouthPucker", "mouthFunnel"),
    ("mouthFrownLeft", "mouthFrownRight"), ("mouthFrownLeft", "mouthFrownRight", "mouthShrugLower"),
    ("noseSneerLeft", "noseSneerRight", "mouthUpperUpLeft", "mouthUpperUpRight"),
    ("mouthPressLeft", "mouthPressRight"), ("mouthRollLower", "mouthRollUpper"),
    ("mouthShrugLower", "mouthShrugUpper"),
    ("mouthStretchLeft", "mouthStretchRight"), ("mouthDimpleLeft", "mouthDimpleRight"),
    ("jawLeft", "mouthLeft"), ("jawRight", "mouthRight"), ("mouthLeft",), ("mouthRight",),
    ("jawForward",), ("cheekPuff",),
    ("eyeWideLeft", "eyeWideRight", "browInnerUp"), ("eyeSquintLeft", "eyeSquintRight"),
    ("eyeLookUpLeft", "eyeLookUpRight"), ("eyeLookDownLeft", "eyeLookDownRight"),
    ("eyeLookOutLeft", "eyeLookInRight"), ("eyeLookInLeft", "eyeLookOutRight"),
    ("mouthUpperUpLeft", "mouthUpperUpRight"), ("mouthLowerDownLeft", "mouthLowerDownRight"),
)
_GROUP_IDX = [np.array([_I[n] for n in g]) for g in GROUPS]
_SINGLES = np.array([i for n, i in _I.items() if n != "tongueOut"])


def sample_identity(rng: np.random.Generator, n: int, num_axes: int, sigma: float = 0.15,
                    limit: float = 0.4, p_active: float = 0.6) -> np.ndarray:
    """[n, num_axes] float32 signed identity values in [−limit, limit]."""
    x = rng.normal(0.0, sigma, size=(n, num_axes))
    x = np.clip(x, -limit, limit)
    x *= rng.random((n, num_axes)) < p_active
    return x.astype(np.float32)


def sample_expressions(rng: np.random.Generator, n: int, p_neutral: float = 0.1, lam: float = 0.8,
                       p_single: float = 0.3) -> np.ndarray:
    """[n, 52] float32 sparse, co-occurring expression weights in [0, 1]."""
    w = np.zeros((n, len(EXPRESSION_NAMES)), dtype=np.float64)
    active = rng.random(n) >= p_neutral
    counts = np.where(active, 1 + rng.poisson(lam, size=n), 0)
    for i in np.flatnonzero(counts):
        for g in rng.integers(0, len(_GROUP_IDX), size=counts[i]):
            units = _GROUP_IDX[g]
            amp = rng.beta(2.0, 2.0)
            w[i, units] += amp * rng.uniform(0.75, 1.0, size=len(units))
        if rng.random() < p_single:
            w[i, rng.choice(_SINGLES)] += rng.beta(2.0, 2.0)
    return np.clip(w, 0.0, 1.0).astype(np.float32)
