"""The 468 MediaPipe landmarks embedded on the neutral dense head as barycentric points.

Build (`embed_landmarks`, pure compute on arrays in mm):
1. **Similarity** (rotation, translation, uniform scale) from anatomical anchors: the centres and
   lateral corners of the head's eye holes and mouth hole against the canonical eye and inner-lip
   contours, plus the nose tip (the most forward head point above the mouth).
2. **Contour correspondences**: each eye and the inner-lip contour is split at its corners into an
   upper and a lower arc, and every canonical contour landmark is placed on the matching arc of the
   head's hole rim at the same arc-length fraction (upper lid → upper rim, lower lip → lower rim).
3. **Smoothed thin-plate-spline warp** of all 468 points from those correspondences (+ nose tip):
   a strong smoothing keeps it close to affine, so the region far from the eyes and mouth is not
   stretched by extrapolation (the next step pins the contours exactly anyway).
4. **Non-rigid closest-point refinement**: a few iterations of "move towards the closest head
   point", the displacement field smoothed over the canonical mesh graph, contour points pinned.
5. **Left/right symmetrisation** with the canonical mesh's mirror pairs (the head is symmetric about
   x = 0), then projection onto the closest head triangle → barycentric coordinates, done on the −x
   side and mirrored, with midline landmarks projected onto the midline (`symmetric_projection`).

Run time: `load_embedding()`, `reference_landmarks()`; no build-time dependency.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from scipy.interpolate import RBFInterpolator
from scipy.spatial import cKDTree

from engine.assets import MODELS_DIR, load_npz_asset
from engine.canonical import CanonicalFace
from engine.geometry import Similarity, barycentric_interpolate, similarity_procrustes
from engine.mesh_graph import boundary_loops, directed_edges, neighbour_average

EMBEDDING_PATH = MODELS_DIR / "landmark_embedding.npz"

# MediaPipe FaceMesh closed contours (landmark ids, in order around the contour).
# Subject's right eye = image left = −x in the head frame; 33/263 lateral, 133/362 medial corners.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
INNER_LIPS = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
NOSE_TIP = 4  # pronasale: the canonical mesh's most forward vertex (landmark 1 sits just below it)


@dataclass(frozen=True)
class Embedding:
    """triangle [468] i32 (row of head.triangles); vertex_ids [468,3] i32; bary [468,3] f32 (rows ≥ 0,
    sum 1); residual_mm [468] f32 (distance of each similarity-aligned canonical landmark to the head
    surface, mm); similarity [4,4] f32 (canonical mm → head mm: [[s·R, t], [0, 1]])."""

    triangle: np.ndarray
    vertex_ids: np.ndarray
    bary: np.ndarray
    residual_mm: np.ndarray
    similarity: np.ndarray

    def head_from_canonical(self) -> Similarity:
        """The similarity part as a `Similarity` (canonical mm → head mm)."""
        m = self.similarity.astype(np.float64)
        s = float(np.cbrt(np.linalg.det(m[:3, :3])))
        return Similarity(m[:3, :3] / s, m[:3, 3].copy(), s)


def reference_landmarks(head_vertices: np.ndarray, emb: Embedding) -> np.ndarray:
    """The 468 embedded landmarks on a head: vertices [..., V, 3] mm → [..., 468, 3] float32 mm.

    Pass `head.vertices` for the neutral reference, or any posed/deformed head with the same topology.
    """
    return barycentric_interpolate(head_vertices, emb.vertex_ids, emb.bary).astype(np.float32)


# ----------------------------------------------------------------------------- head holes


@dataclass(frozen=True)
class HeadHoles:
    """Boundary loops of the head (vertex ids in order): eyes (right = −x, left = +x) and mouth."""

    right_eye: np.ndarray
    left_eye: np.ndarray
    mouth: np.ndarray


def find_holes(vertices: np.ndarray, triangles: np.ndarray) -> HeadHoles:
    """Identify the eye and mouth holes among the head's boundary loops: the neck loop is the
    longest; the mouth is the lowest loop centred on the midline (|x| < 10 mm); the eyes are the two
    longest off-midline loops. vertices [V,3] mm head frame, triangles [F,3]."""
    loops = sorted(boundary_loops(triangles), key=len, reverse=True)
    if len(loops) < 4:
        raise ValueError(f"the head has {len(loops)} boundary loops; expected neck, two eyes and mouth")
    inner = loops[1:]
    cents = np.array([vertices[lp].mean(axis=0) for lp in inner])
    mid = np.abs(cents[:, 0]) < 10.0
    mouth_i = int(np.argmin(np.where(mid, cents[:, 1], np.inf)))
    eyes = sorted((i for i in range(len(inner)) if not mid[i]), key=lambda i: -len(inner[i]))[:2]
    right = min(eyes, key=lambda i: cents[i, 0])
    left = max(eyes, key=lambda i: cents[i, 0])
    return HeadHoles(inner[right], inner[left], inner[mouth_i])


def split_contour(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a closed contour [N,3] at its lateral extremes into two open arcs that both run from the
    min-x corner to the max-x corner (corners included). Returns (upper, lower) by the y of each
    arc's middle point, as index arrays into `points`."""
    n = len(points)
    i0, i1 = int(np.argmin(points[:, 0])), int(np.argmax(points[:, 0]))
    fwd = [(i0 + k) % n for k in range((i1 - i0) % n + 1)]  # i0 → i1 following the order
    bwd = [(i0 - k) % n for k in range((i0 - i1) % n + 1)]  # i0 → i1 against it
    a, b = np.array(fwd), np.array(bwd)
    mid_a, mid_b = points[a[len(a) // 2]], points[b[len(b) // 2]]
    return (a, b) if mid_a[1] >= mid_b[1] else (b, a)


def _arc_fractions(points: np.ndarray) -> np.ndarray:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    return cum / max(cum[-1], 1e-12)


def _point_at_fraction(polyline: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Points at arc-length fractions [P] in [0,1] along an open polyline [L,3] → [P,3]."""
    f = _arc_fractions(polyline)
    return np.stack([np.interp(fractions, f, polyline[:, k]) for k in range(3)], axis=1)


def contour_correspondences(contour: np.ndarray, rim: np.ndarray) -> np.ndarray:
    """Target on a hole rim for each point of a closed canonical contour.

    contour: [N,3] canonical contour points (already aligned to the head), in contour order;
    rim: [L,3] the head's hole loop, in loop order. Upper arc goes to upper arc, lower to lower, each
    point at the arc-length fraction it has on its own arc. Returns [N,3] mm.
    """
    out = np.empty_like(contour)
    c_arcs, r_arcs = split_contour(contour), split_contour(rim)
    for c_idx, r_idx in zip(c_arcs, r_arcs):
        out[c_idx] = _point_at_fraction(rim[r_idx], _arc_fractions(contour[c_idx]))
    return out


def _anchor_pairs(canon: np.ndarray, vertices: np.ndarray, holes: HeadHoles) -> tuple[np.ndarray, np.ndarray]:
    """Anatomical anchors for the similarity: [10,3] canonical points and their [10,3] head points."""
    src, dst = [], []
    for ids, loop in ((RIGHT_EYE, holes.right_eye), (LEFT_EYE, holes.left_eye), (INNER_LIPS, holes.mouth)):
        c, h = canon[list(ids)], vertices[loop]
        src += [c.mean(axis=0), c[np.argmin(c[:, 0])], c[np.argmax(c[:, 0])]]
        dst += [h.mean(axis=0), h[np.argmin(h[:, 0])], h[np.argmax(h[:, 0])]]
    src.append(canon[NOSE_TIP])
    dst.append(nose_tip(vertices, holes))
    return np.array(src), np.array(dst)


def nose_tip(vertices: np.ndarray, holes: HeadHoles) -> np.ndarray:
    """The most forward (max z) head vertex between the mouth and the eyes, near the midline: [3] mm."""
    y_mouth = vertices[holes.mouth][:, 1].mean()
    y_eyes = vertices[np.concatenate([holes.right_eye, holes.left_eye])][:, 1].mean()
    sel = (vertices[:, 1] > y_mouth) & (vertices[:, 1] < y_eyes) & (np.abs(vertices[:, 0]) < 15.0)
    cand = vertices[sel]
    return cand[np.argmax(cand[:, 2])]


# ----------------------------------------------------------------------------- non-rigid fit


def mirror_pairs(points: np.ndarray, tol_mm: float = 1.0) -> np.ndarray:
    """For a left/right symmetric point set [N,3] (mirror plane x = 0): index of each point's mirror
    image [N] (midline points map to themselves). Raises ValueError if the set is not symmetric."""
    mirrored = points * np.array([-1.0, 1.0, 1.0])
    d, j = cKDTree(points).query(mirrored)
    if d.max() > tol_mm or not np.array_equal(j[j], np.arange(len(points))):
        raise ValueError(f"point set is not mirror-symmetric (worst {d.max():.2f} mm)")
    return j


def nonrigid_fit(points: np.ndarray, triangles: np.ndarray, surface: trimesh.Trimesh, pinned: np.ndarray,
                 pinned_targets: np.ndarray, iterations: int = 10, smooth_steps: int = 10) -> np.ndarray:
    """Pull a mesh's points [N,3] onto `surface` with a smooth displacement field.

    Each iteration: displacement = closest surface point − point (pinned points: their target −
    point), smoothed `smooth_steps` times by neighbour averaging over the mesh graph of `triangles`
    (pinned rows re-imposed after every step), then applied. Returns [N,3] float64 mm.
    """
    x = np.asarray(points, dtype=np.float64).copy()
    avg = neighbour_average(len(x), triangles)
    for _ in range(iterations):
        closest, _, _ = trimesh.proximity.closest_point(surface, x)
        d = closest - x
        fixed = pinned_targets - x[pinned]
        d[pinned] = fixed
        for _ in range(smooth_steps):
            d = 0.5 * d + 0.5 * (avg @ d)
            d[pinned] = fixed
        x += d
    return x


def symmetrise(points: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Average each point [N,3] with the mirror image (x → −x) of its pair → exactly symmetric set."""
    return 0.5 * (points + points[pairs] * np.array([-1.0, 1.0, 1.0]))


def _barycentric(tri_pts: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Barycentric weights [P,3] (clipped ≥ 0, rows sum to 1) of points p [P,3] in triangles [P,3,3]."""
    w = trimesh.triangles.points_to_barycentric(tri_pts, p)
    w = np.clip(w, 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def symmetric_projection(vertices: np.ndarray, triangles: np.ndarray, surface: trimesh.Trimesh,
                         points: np.ndarray, pairs: np.ndarray, midline_tol: float = 1e-4
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Closest-point projection of a mirror-symmetric point set onto a mirror-symmetric mesh, keeping
    the result exactly symmetric.

    vertices [V,3] (symmetric about x = 0, with a symmetric triangulation), triangles [F,3],
    `surface` the same mesh; points [N,3] with mirror pairs [N]. Points on the −x side are projected
    to the closest surface point and their partners get the mirrored triangle and the same weights;
    midline points (their own partner) go to the closest point of the mesh's midline edges (x = 0).
    Returns (triangle [N] int64, bary [N,3] float64).
    """
    vmirror = mirror_pairs(vertices, tol_mm=1e-3)
    tri_of = {tuple(sorted(t)): k for k, t in enumerate(triangles.tolist())}
    n = len(points)
    tri = np.zeros(n, dtype=np.int64)
    bary = np.zeros((n, 3))
    primary = np.flatnonzero((pairs != np.arange(n)) & (points[:, 0] < 0))
    closest, _, t = trimesh.proximity.closest_point(surface, points[primary])
    tri[primary] = t
    bary[primary] = _barycentric(vertices[triangles[t]], closest)
    for i, k, w in zip(primary, t, bary[primary]):
        mirrored = vmirror[triangles[k]]
        k2 = tri_of[tuple(sorted(mirrored.tolist()))]
        order = [int(np.flatnonzero(triangles[k2] == m)[0]) for m in mirrored]
        tri[pairs[i]] = k2
        bary[pairs[i], order] = w

    # Midline points: closest point on the chain of edges with both ends on x = 0.
    mid = np.flatnonzero(pairs == np.arange(n))
    on_mid = np.abs(vertices[:, 0]) < midline_tol
    edges = directed_edges(triangles)
    owner = np.tile(np.arange(len(triangles)), 3)
    keep = on_mid[edges[:, 0]] & on_mid[edges[:, 1]]
    edges, owner = edges[keep], owner[keep]
    a, b = vertices[edges[:, 0]], vertices[edges[:, 1]]
    ab = b - a
    for i in mid:
        u = np.clip(((points[i] - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0.0, 1.0)
        d = np.linalg.norm(a + u[:, None] * ab - points[i], axis=1)
        e = int(np.argmin(d))  # ties: the first edge in triangle order, deterministic
        k = int(owner[e])
        tri[i] = k
        bary[i, int(np.flatnonzero(triangles[k] == edges[e, 0])[0])] = 1.0 - u[e]
        bary[i, int(np.flatnonzero(triangles[k] == edges[e, 1])[0])] = u[e]
    return tri, bary


# ----------------------------------------------------------------------------- embedding


@dataclass(frozen=True)
class EmbeddingBuild:
    """Everything `embed_landmarks` computes; the stages are kept for the figure and the summary."""

    embedding: Embedding
    holes: HeadHoles
    aligned: np.ndarray  # [468,3] similarity-aligned canonical landmarks (head mm)
    fitted: np.ndarray  # [468,3] after warp + non-rigid refinement + symmetrisation
    projected: np.ndarray  # [468,3] embedded points on the head surface
    residual_after_fit_mm: np.ndarray  # [468] distance of `fitted` to its embedded point
    contour_error_mm: np.ndarray  # [C] embedded contour landmarks → their rim targets


def embed_landmarks(vertices: np.ndarray, triangles: np.ndarray, canonical: CanonicalFace,
                    iterations: int = 10, warp_smoothing: float = 1e4) -> EmbeddingBuild:
    """Embed the canonical landmarks on the head (module docstring, steps 1-5).

    vertices [V,3] mm head frame; triangles [F,3]; iterations: closest-point refinement steps;
    warp_smoothing: the thin-plate spline's smoothing (large → nearly affine).
    """
    verts = np.asarray(vertices, dtype=np.float64)
    canon = canonical.vertices.astype(np.float64)
    holes = find_holes(verts, triangles)
    src, dst = _anchor_pairs(canon, verts, holes)
    sim = similarity_procrustes(src, dst)
    aligned = sim.apply(canon)

    mesh = trimesh.Trimesh(verts, triangles, process=False)
    _, resid, _ = trimesh.proximity.closest_point(mesh, aligned)

    # Contour landmarks → hole rims (upper to upper, lower to lower), nose tip → nose tip.
    ids, targets = [], []
    for contour, loop in ((RIGHT_EYE, holes.right_eye), (LEFT_EYE, holes.left_eye), (INNER_LIPS, holes.mouth)):
        ids += list(contour)
        targets.append(contour_correspondences(aligned[list(contour)], verts[loop]))
    ids.append(NOSE_TIP)
    targets.append(dst[-1:])
    pinned, pinned_targets = np.array(ids), np.concatenate(targets)

    warp = RBFInterpolator(aligned[pinned], pinned_targets - aligned[pinned], kernel="thin_plate_spline",
                           smoothing=warp_smoothing)
    warped = aligned + warp(aligned)
    fitted = nonrigid_fit(warped, canonical.triangles, mesh, pinned, pinned_targets, iterations=iterations)
    pairs = mirror_pairs(canon)
    fitted = symmetrise(fitted, pairs)

    tri, bary = symmetric_projection(verts, triangles, mesh, fitted, pairs)
    vids = triangles[tri]
    resid_fit = np.linalg.norm(fitted - barycentric_interpolate(verts, vids, bary), axis=1)
    on_head = barycentric_interpolate(verts, vids, bary)
    emb = Embedding(tri.astype(np.int32), vids.astype(np.int32), bary.astype(np.float32),
                    resid.astype(np.float32), sim.matrix().astype(np.float32))
    contour_err = np.linalg.norm(on_head[pinned[:-1]] - pinned_targets[:-1], axis=1)
    return EmbeddingBuild(emb, holes, aligned, fitted, on_head, resid_fit, contour_err)


def face_region_mask(vertices: np.ndarray, face_points: np.ndarray, face_triangles: np.ndarray,
                     max_dist_mm: float = 10.0) -> np.ndarray:
    """Head vertices [V,3] within `max_dist_mm` of the canonical face surface placed on the head
    (face_points [468,3] mm, face_triangles [898,3]): [V] bool."""
    face = trimesh.Trimesh(np.asarray(face_points, dtype=np.float64), face_triangles, process=False)
    _, d, _ = trimesh.proximity.closest_point(face, np.asarray(vertices, dtype=np.float64))
    return d <= max_dist_mm


# ----------------------------------------------------------------------------- I/O


def save_embedding(emb: Embedding, path: Path = EMBEDDING_PATH) -> None:
    """Write `landmark_embedding.npz` (compressed)."""
    np.savez_compressed(path, triangle=emb.triangle, vertex_ids=emb.vertex_ids, bary=emb.bary,
                        residual_mm=emb.residual_mm, similarity=emb.similarity)


def load_embedding(path: Path = EMBEDDING_PATH) -> Embedding:
    """Load `models/landmark_embedding.npz`; missing/unreadable → CheckpointError with the fix."""
    return load_npz_asset(path, lambda z: Embedding(z["triangle"], z["vertex_ids"], z["bary"], z["residual_mm"],
                                                    z["similarity"]))
