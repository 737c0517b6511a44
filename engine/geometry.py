"""Pure geometry helpers shared by the tracker, the landmark embedding and training.

Everything here is numpy, float64 internally, with no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Similarity:
    """x' = scale · rotation @ x + translation.

    rotation: [3,3] proper rotation (det +1); translation: [3]; scale: positive float.
    """

    rotation: np.ndarray
    translation: np.ndarray
    scale: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform points [..., 3] → [..., 3] (same dtype as the input)."""
        out = self.scale * (points @ self.rotation.T) + self.translation
        return out.astype(points.dtype, copy=False)

    def inverse(self) -> "Similarity":
        """The inverse transform."""
        rt = self.rotation.T
        return Similarity(rt, -(rt @ self.translation) / self.scale, 1.0 / self.scale)

    def matrix(self) -> np.ndarray:
        """[4,4] float64 homogeneous matrix."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = self.translation
        return m


def similarity_procrustes_batch(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, with_scale: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least-squares similarity (Umeyama 1991) mapping src onto dst, batched.

    src: [B,N,3] or [N,3]; dst: [B,N,3] or [N,3] (broadcast against src); weights: [N] ≥ 0 or None.
    Returns (rotation [B,3,3], translation [B,3], scale [B]) minimising
    Σ_i w_i |s R src_i + t − dst_i|² with det R = +1 (scale fixed to 1 when `with_scale` is False).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim == 2:
        src = src[None]
    if dst.ndim == 2:
        dst = dst[None]
    src, dst = np.broadcast_arrays(src, dst)
    n = src.shape[1]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s = np.einsum("n,bnk->bk", w, src)
    mu_d = np.einsum("n,bnk->bk", w, dst)
    xs = src - mu_s[:, None]
    xd = dst - mu_d[:, None]
    cov = np.einsum("n,bni,bnj->bij", w, xd, xs)  # [B,3,3] dst×src
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    d = np.where(d == 0, 1.0, d)
    corr = np.ones((src.shape[0], 3))
    corr[:, 2] = d
    rot = u @ (corr[:, :, None] * vt)
    if with_scale:
        var_s = np.einsum("n,bnk,bnk->b", w, xs, xs)
        scale = (sig * corr).sum(axis=1) / np.maximum(var_s, 1e-300)
    else:
        scale = np.ones(src.shape[0])
    trans = mu_d - scale[:, None] * np.einsum("bij,bj->bi", rot, mu_s)
    return rot, trans, scale


def similarity_procrustes(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, with_scale: bool = True
) -> Similarity:
    """Single-pair version of `similarity_procrustes_batch`: src, dst [N,3] → Similarity."""
    r, t, s = similarity_procrustes_batch(src, dst, weights, with_scale)
    return Similarity(r[0], t[0], float(s[0]))


def normalise_landmarks(
    landmarks: np.ndarray, reference: np.ndarray, indices: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Pose-normalise landmarks: the encoder's input (docs/architecture.md).

    landmarks: [B,N,3] or [N,3] (N ≥ 468; only the first 468 are used), any similarity frame.
    reference: [468,3] reference landmarks on the neutral head, mm, head frame.
    indices, weights: [P] Procrustes landmark ids and weights (MediaPipe's 33 stable points).
    Returns float32 [B,468,3] (or [468,3]): landmarks mapped by the weighted similarity that best
    aligns their `indices` subset onto the reference.
    """
    single = landmarks.ndim == 2
    lm = np.asarray(landmarks, dtype=np.float64)[..., :468, :]
    if single:
        lm = lm[None]
    r, t, s = similarity_procrustes_batch(lm[:, indices], reference[indices], weights)
    out = s[:, None, None] * np.einsum("bij,bnj->bni", r, lm) + t[:, None]
    out = out.astype(np.float32)
    return out[0] if single else out


def barycentric_interpolate(
    vertices: np.ndarray, vertex_ids: np.ndarray, bary: np.ndarray
) -> np.ndarray:
    """Points on a mesh from barycentric coordinates.

    vertices: [..., V, 3]; vertex_ids: [P,3] int; bary: [P,3] (rows sum to 1). Returns [..., P, 3].
    """
    return np.einsum("...pkc,pk->...pc", vertices[..., vertex_ids, :], bary)


def folded_triangles(vertices: np.ndarray, rest: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Per mesh, how many triangles face backwards: normal turned by more than 90° from the rest pose's.

    vertices [B,V,3] (any length unit), rest [V,3] (the neutral head), triangles [F,3] → [B] int64.
    A decoded head never needs that (expressions move the surface, they do not turn it inside out),
    so a count above what the training heads themselves show is a fold — a visible defect."""

    def normals(x: np.ndarray) -> np.ndarray:
        a, b, c = (x[..., triangles[:, i], :] for i in range(3))
        return np.cross(b - a, c - a)

    n0 = normals(np.asarray(rest, dtype=np.float64))
    n = normals(np.asarray(vertices, dtype=np.float64))
    return ((n * n0).sum(axis=-1) < 0).sum(axis=-1)
