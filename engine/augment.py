"""Synthetic landmarks → tracker-like, pose-normalised landmarks (the encoder's input).

Steps, vectorised over a batch (docs/training.md):
1. clean landmarks = the 468 embedded points of each synthetic head (`barycentric_interpolate`);
2. a random head pose (pitch, yaw, roll uniform in ±max) and a weaker, mis-scaled depth: the
   camera-depth axis is scaled by U(depth_scale) around the measured depth gain (MediaPipe's z is
   known only up to scale);
3. tracker noise: per landmark, per camera axis, N(0, σ²) with σ [468,3] measured on the real clip
   (`models/tracker_noise.json`, `engine.noise`), × U(noise_scale) per sample (webcams are sharper
   than the 176×144 clip, fast motion is worse);
4. exactly the app's normalisation (`engine.geometry.normalise_landmarks`), whose error under noise
   *is* a pose-normalisation error; plus a small residual similarity jitter (rotation, scale,
   translation) with the RMS figures measured on the clip (`pose_norm` of the noise model: an upper
   bound, so it errs on the noisy side).

All lengths in mm, angles in degrees.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from engine.geometry import barycentric_interpolate, normalise_landmarks
from engine.noise import TrackerNoise


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the augmentation (angles in degrees, lengths in mm, factors unitless).

    Defaults are the documented placeholder; `from_noise` sets depth and jitter from the measurement.
    """

    max_yaw: float = 30.0
    max_pitch: float = 20.0
    max_roll: float = 15.0
    depth_scale: tuple[float, float] = (0.8, 1.15)
    noise_scale: tuple[float, float] = (0.5, 1.5)
    jitter_rot_deg: float = 0.6  # RMS angle of the residual rotation
    jitter_scale: float = 0.003  # std of the residual relative scale
    jitter_trans_mm: float = 0.65  # RMS length of the residual translation (3-D)

    @classmethod
    def from_noise(cls, noise: TrackerNoise, depth_spread: float = 0.2) -> "AugmentConfig":
        """Depth range gain·(1 ± depth_spread) (clipped to ≤ 1.2) and jitter RMS from `noise.pose_norm`."""
        gain = 1.0 if noise.depth_gain is None else float(noise.depth_gain)
        pn = noise.pose_norm
        d = cls()
        return cls(depth_scale=(gain * (1.0 - depth_spread), min(gain * (1.0 + depth_spread), 1.2)),
                   jitter_rot_deg=pn.get("rot_deg_rms", d.jitter_rot_deg),
                   jitter_scale=pn.get("scale_rel_rms", d.jitter_scale),
                   jitter_trans_mm=pn.get("trans_mm_rms", d.jitter_trans_mm))

    def to_dict(self) -> dict:
        """Plain dict (JSON / checkpoint friendly)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class LandmarkSpace:
    """What the normalisation needs: reference [468,3] mm, Procrustes ids [P] and weights [P]."""

    reference: np.ndarray
    indices: np.ndarray
    weights: np.ndarray


def random_rotations(rng: np.random.Generator, n: int, max_pitch: float, max_yaw: float,
                     max_roll: float) -> np.ndarray:
    """[n,3,3] rotations from uniform pitch (x), yaw (y), roll (z) angles in ±max degrees."""
    angles = np.stack([rng.uniform(-max_pitch, max_pitch, n), rng.uniform(-max_yaw, max_yaw, n),
                       rng.uniform(-max_roll, max_roll, n)], axis=1)
    return Rotation.from_euler("xyz", angles, degrees=True).as_matrix()


def similarity_jitter(rng: np.random.Generator, points: np.ndarray, centre: np.ndarray, rot_deg: float,
                      scale_std: float, trans_mm: float) -> np.ndarray:
    """Apply a small random similarity about `centre` to points [B,N,3].

    The rotation vector has 3-D RMS angle `rot_deg`; translation has 3-D RMS length `trans_mm`.
    """
    b = points.shape[0]
    rv = rng.normal(scale=np.deg2rad(rot_deg) / np.sqrt(3.0), size=(b, 3))
    r = Rotation.from_rotvec(rv).as_matrix()
    s = 1.0 + rng.normal(scale=scale_std, size=(b, 1, 1))
    t = rng.normal(scale=trans_mm / np.sqrt(3.0), size=(b, 1, 3))
    return s * np.einsum("bij,bnj->bni", r, points - centre) + centre + t


def tracker_like_landmarks(rng: np.random.Generator, vertices: np.ndarray, vertex_ids: np.ndarray,
                           bary: np.ndarray, space: LandmarkSpace, sigma: np.ndarray,
                           cfg: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray]:
    """vertices [B,V,3] mm → (noisy normalised landmarks [B,468,3] f32, clean normalised [B,468,3] f32).

    vertex_ids [468,3], bary [468,3]: the landmark embedding. sigma: [468,3] tracker noise std (mm)
    along camera x, y, z (a zero sigma and zero jitter give back the clean landmarks).
    """
    b = vertices.shape[0]
    sigma = np.asarray(sigma, dtype=np.float64)
    if sigma.shape != (vertex_ids.shape[0], 3):
        raise ValueError(f"sigma must be [{vertex_ids.shape[0]},3], got {sigma.shape}")
    clean = barycentric_interpolate(vertices, vertex_ids, bary).astype(np.float64)
    rot = random_rotations(rng, b, cfg.max_pitch, cfg.max_yaw, cfg.max_roll)
    cam = np.einsum("bij,bnj->bni", rot, clean)
    cam[..., 2] *= rng.uniform(*cfg.depth_scale, size=(b, 1))
    cam += rng.normal(size=cam.shape) * sigma[None] * rng.uniform(*cfg.noise_scale, size=(b, 1, 1))
    noisy = normalise_landmarks(cam, space.reference, space.indices, space.weights).astype(np.float64)
    noisy = similarity_jitter(rng, noisy, space.reference.mean(axis=0), cfg.jitter_rot_deg, cfg.jitter_scale,
                              cfg.jitter_trans_mm)
    clean_n = normalise_landmarks(clean, space.reference, space.indices, space.weights)
    return noisy.astype(np.float32), clean_n
