"""The 468 MediaPipe landmarks embedded on the neutral dense head as barycentric points.

Build (`embed_landmarks`): (1) a similarity from anatomical anchors — eye-hole and mouth-hole
centres and corners of the head against the canonical eye and inner-lip contours, and the nose tip;
(2) a thin-plate-spline warp from the contour correspondences (the canonical eye and inner-lip
contours slid onto the head's eye and mouth hole rims); (3) each warped landmark projected onto the
closest point of the head surface (barycentric coordinates of that point). Run time:
`load_embedding()`, `reference_landmarks()`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from scipy.interpolate import RBFInterpolator

from engine.canonical import CanonicalFace
from engine.errors import CheckpointError
from engine.geometry import Similarity, barycentric_interpolate, similarity_procrustes

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
EMBEDDING_PATH = MODELS_DIR / "landmark_embedding.npz"

# MediaPipe FaceMesh contours (landmark ids), subject's right eye = image left = −x.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
INNER_LIPS = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
NOSE_TIP = 1


@dataclass(frozen=True)
class Embedding:
    """triangle [468] i32; vertex_ids [468,3] i32; bary [468,3] f32; residual_mm [468] f32 (distance
    of each similarity-aligned canonical landmark to the head surface); similarity [4,4] f32
    (canonical mm → head mm, scale·R | t)."""

    triangle: np.ndarray
    vertex_ids: np.ndarray
    bary: np.ndarray
    residual_mm: np.ndarray
    similarity: np.ndarray

    def head_from_canonical(self) -> Similarity:
        """The similarity part as a `Similarity`."""
        m = self.similarity.astype(np.float64)
        s = float(np.cbrt(np.linalg.det(m[:3, :3])))
        return Similarity(m[:3, :3] / s, m[:3, 3].copy(), s)


def reference_landmarks(head_vertices: np.ndarray, emb: Embedding) -> np.ndarray:
    """The 468 embedded landmarks on a head: vertices [...,V,3] → [...,468,3] float32 mm."""
    return barycentric_interpolate(head_vertices, emb.vertex_ids, emb.bary).astype(np.float32)


def boundary_loops(triangles: np.ndarray) -> list[np.ndarray]:
    """Closed boundary loops (vertex ids in order) of a triangle mesh."""
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    key = np.sort(e, axis=1)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    border = e[cnt[inv.ravel()] == 1]
    nxt = {int(a): int(b) for a, b in border}
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(np.array(loop))
    return loops


@dataclass(frozen=True)
class HeadHoles:
    right_eye: np.ndarray  # loop vertex ids (x < 0)
    left_eye: np.ndarray
    mouth: np.ndarray


def find_holes(vertices: np.ndarray, triangles: np.ndarray) -> HeadHoles:
    """Identify the eye and mouth holes among the head's boundary loops (the neck loop is the
    longest; eyes are the two small loops above the nose, mouth the one below it on the midline)."""
    loops = sorted(boundary_loops(triangles), key=len, reverse=True)
    inner = loops[1:]  # drop the neck
    cents = np.array([vertices[lp].mean(axis=0) for lp in inner])
    mid = np.abs(cents[:, 0]) < 10.0
    mouth_i = int(np.argmin(np.where(mid, cents[:, 1], np.inf)))
    eyes = [i for i in range(len(inner)) if not mid[i]]
    eyes = sorted(eyes, key=lambda i: -len(inner[i]))[:2]
    right = min(eyes, key=lambda i: cents[i, 0])
    left = max(eyes, key=lambda i: cents[i, 0])
    return HeadHoles(inner[right], inner[left], inner[mouth_i])


def _corners(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lateral extremes (min x, max x) of a contour."""
    return points[np.argmin(points[:, 0])], points[np.argmax(points[:, 0])]


def _anchor_pairs(canon: np.ndarray, vertices: np.ndarray, holes: HeadHoles) -> tuple[np.ndarray, np.ndarray]:
    src, dst = [], []
    for ids, loop in ((RIGHT_EYE, holes.right_eye), (LEFT_EYE, holes.left_eye), (INNER_LIPS, holes.mouth)):
        c, h = canon[list(ids)], vertices[loop]
        src += [c.mean(axis=0), *_corners(c)]
        dst += [h.mean(axis=0), *_corners(h)]
    face = vertices[vertices[:, 1] > vertices[holes.mouth][:, 1].mean()]
    src.append(canon[NOSE_TIP])
    dst.append(face[np.argmax(face[:, 2])])  # nose tip: the most forward point above the mouth
    return np.array(src), np.array(dst)


def _slide_onto_loop(points: np.ndarray, loop_pts: np.ndarray) -> np.ndarray:
    """Closest point on a closed polyline for each point: [P,3], [L,3] → [P,3]."""
    a, b = loop_pts, np.roll(loop_pts, -1, axis=0)
    ab = b - a
    t = np.einsum("plk,lk->pl", points[:, None] - a[None], ab) / np.maximum((ab * ab).sum(1), 1e-12)
    t = np.clip(t, 0.0, 1.0)
    proj = a[None] + t[..., None] * ab[None]
    d = np.linalg.norm(proj - points[:, None], axis=2)
    return proj[np.arange(len(points)), np.argmin(d, axis=1)]


@dataclass(frozen=True)
class EmbeddingBuild:
    embedding: Embedding
    aligned: np.ndarray  # [468,3] similarity-aligned canonical landmarks (head mm)
    warped: np.ndarray  # [468,3] after the thin-plate warp
    projected: np.ndarray  # [468,3] on the head surface
    residual_after_warp_mm: np.ndarray  # [468]


def embed_landmarks(vertices: np.ndarray, triangles: np.ndarray, canonical: CanonicalFace) -> EmbeddingBuild:
    """Embed the canonical landmarks on the head (vertices [V,3] mm, triangles [F,3])."""
    holes = find_holes(vertices, triangles)
    src, dst = _anchor_pairs(canonical.vertices.astype(np.float64), vertices.astype(np.float64), holes)
    sim = similarity_procrustes(src, dst)
    aligned = sim.apply(canonical.vertices.astype(np.float64))

    mesh = trimesh.Trimesh(vertices.astype(np.float64), triangles, process=False)
    _, resid, _ = trimesh.proximity.closest_point(mesh, aligned)

    # Thin-plate warp: contour landmarks slid onto the matching hole rims, plus the nose tip.
    ctrl_src, ctrl_dst = [], []
    for ids, loop in ((RIGHT_EYE, holes.right_eye), (LEFT_EYE, holes.left_eye), (INNER_LIPS, holes.mouth)):
        pts = aligned[list(ids)]
        ctrl_src.append(pts)
        ctrl_dst.append(_slide_onto_loop(pts, vertices[loop].astype(np.float64)))
    ctrl_src.append(aligned[[NOSE_TIP]])
    ctrl_dst.append(dst[-1:])
    cs, cd = np.concatenate(ctrl_src), np.concatenate(ctrl_dst)
    warp = RBFInterpolator(cs, cd - cs, kernel="thin_plate_spline", smoothing=1.0)
    warped = aligned + warp(aligned)

    projected, resid_warp, tri = trimesh.proximity.closest_point(mesh, warped)
    vids = triangles[tri]
    bary = trimesh.triangles.points_to_barycentric(mesh.vertices[vids], projected)
    bary = np.clip(bary, 0.0, None)
    bary /= bary.sum(axis=1, keepdims=True)
    m = sim.matrix().astype(np.float32)
    emb = Embedding(tri.astype(np.int32), vids.astype(np.int32), bary.astype(np.float32),
                    resid.astype(np.float32), m)
    return EmbeddingBuild(emb, aligned, warped, barycentric_interpolate(vertices, vids, bary), resid_warp)


def save_embedding(emb: Embedding, path: Path = EMBEDDING_PATH) -> None:
    """Write `landmark_embedding.npz`."""
    np.savez_compressed(path, triangle=emb.triangle, vertex_ids=emb.vertex_ids, bary=emb.bary,
                        residual_mm=emb.residual_mm, similarity=emb.similarity)


def load_embedding(path: Path = EMBEDDING_PATH) -> Embedding:
    """Load `models/landmark_embedding.npz`; missing/unreadable → CheckpointError with the fix."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return Embedding(z["triangle"], z["vertex_ids"], z["bary"], z["residual_mm"], z["similarity"])
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found; rebuild it with `python main.py build-assets`") from None
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} is unreadable ({exc}); rebuild it with `python main.py build-assets`") from None


def face_region_mask(vertices: np.ndarray, canonical_on_head: np.ndarray, canonical_triangles: np.ndarray,
                     max_dist_mm: float = 10.0) -> np.ndarray:
    """Head vertices within `max_dist_mm` of the canonical face surface placed on the head: [V] bool."""
    face = trimesh.Trimesh(canonical_on_head, canonical_triangles, process=False)
    _, d, _ = trimesh.proximity.closest_point(face, vertices.astype(np.float64))
    return d <= max_dist_mm
