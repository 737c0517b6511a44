"""Tracked landmarks as plain arrays: what the engine's real-clip measurements take as input.

The engine never runs the tracker itself (that is `realtime.clips`): the fold check on a real clip
(`engine.evaluate.real_clip_folds`) and the tracker-noise model (`engine.noise.tracker_noise`) take
a `Tracked` that the realtime side filled in.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tracked:
    """One real input tracked frame by frame.

    name; fps (photos: 0); size (width, height) px; found [T] bool; landmarks_px [T,478,3] f32 (NaN
    where no face; x, y px, z = MediaPipe depth × width); landmarks_norm [T,468,3] f32 mm (NaN where
    no face): the app's pose-normalised landmarks; scale_px_per_mm [T] f32 (NaN where no face).
    """

    name: str
    fps: float
    size: tuple[int, int]
    found: np.ndarray
    landmarks_px: np.ndarray
    landmarks_norm: np.ndarray
    scale_px_per_mm: np.ndarray

    def __len__(self) -> int:
        return len(self.found)

    @property
    def found_ids(self) -> np.ndarray:
        """[F] int: the indices of the frames with a face, in order."""
        return np.flatnonzero(self.found)
