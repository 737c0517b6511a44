"""Synthetic landmarks → tracker-like, pose-normalised landmarks (the encoder's input).

Steps, vectorised over a batch (docs/training.md):
1. clean landmarks = the 468 embedded points of each synthetic head (barycentric);
2. a random head pose (yaw/pitch/roll) and a weaker depth: the camera-depth axis is scaled by
   U(depth_scale) — MediaPipe's z is known only up to scale — as the tracker sees it;
3. tracker noise: per landmark, per camera axis, N(0, σ²) with σ measured on the real clip
   (`models/tracker_noise.json`, engine/noise.py), × U(noise_scale) per sample;
4. the app's own normalisation (`engine.geometry.normalise_landmarks`), whose error under noise is
   the pose-normalisation error; plus a small residual similarity jitter.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from engine.geometry import barycentric_interpolate, normalise_landmarks


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the augmentation (angles in degrees, lengths in mm)."""

    max_yaw: float = 30.0
    max_pitch: float = 20.0
    max_roll: float = 15.0
    depth_scale: tuple[float, float] = (0.6, 1.1)
    noise_scale: tuple[float, float] = (0.5, 1.5)
    jitter_rot_deg: float = 1.0
    jitter_scale: float = 0.01
    jitter_trans_mm: float = 0.5


@dataclass(frozen=True)
class LandmarkSpace:
    """What the normalisation needs: reference [468,3] mm, Procrustes ids [P] and weights [P]."""

    reference: np.ndarray
    indices: np.ndarray
    weights: np.ndarray


def tracker_like_landmarks(rng: np.random.Generator, vertices: np.ndarray, vertex_ids: np.ndarray,
                           bary: np.ndarray, space: LandmarkSpace, sigma: np.ndarray,
                           cfg: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray]:
    """vertices [B,V,3] mm → (noisy normalised landmarks [B,468,3] f32, clean normalised [B,468,3] f32).

    sigma: [468,3] tracker noise std (mm) along camera x, y, z.
    """
    b = vertices.shape[0]
    clean = barycentric_interpolate(vertices, vertex_ids, bary).astype(np.float64)
    angles = np.stack([rng.uniform(-cfg.max_pitch, cfg.max_pitch, b), rng.uniform(-cfg.max_yaw, cfg.max_yaw, b),
                       rng.uniform(-cfg.max_roll, cfg.max_roll, b)], axis=1)
    rot = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    cam = np.einsum("bij,bnj->bni", rot, clean)
    cam[..., 2] *= rng.uniform(*cfg.depth_scale, size=(b, 1))
    cam += rng.normal(size=cam.shape) * sigma[None] * rng.uniform(*cfg.noise_scale, size=(b, 1, 1))
    noisy = normalise_landmarks(cam, space.reference, space.indices, space.weights).astype(np.float64)
    # residual similarity jitter (tracking-vs-model mismatch the normalisation does not remove)
    jr = Rotation.from_rotvec(rng.normal(scale=np.deg2rad(cfg.jitter_rot_deg), size=(b, 3))).as_matrix()
    centre = space.reference.mean(axis=0)
    s = 1.0 + rng.normal(scale=cfg.jitter_scale, size=(b, 1, 1))
    noisy = s * np.einsum("bij,bnj->bni", jr, noisy - centre) + centre
    noisy += rng.normal(scale=cfg.jitter_trans_mm, size=(b, 1, 3))
    clean_n = normalise_landmarks(clean, space.reference, space.indices, space.weights)
    return noisy.astype(np.float32), clean_n
