"""Mesh hierarchy for the CoMA-style decoder, by quadric-error decimation (fast-simplification).

Level 0 is the full head; each level keeps about 1/`factor` of the vertices of the one above.
Everything is stored as fixed, padded index + weight arrays (no sparse tensors), so the model that
uses it exports to ONNX and TensorRT:

- down-sampling: `down_idx_l` [V_{l+1}] — the vertex of level l kept as each vertex of level l+1
  (quadric-error collapses move vertices; each coarse vertex takes the original position of the
  member of its collapse cluster nearest to the optimised position);
- up-sampling: `up_idx_l` [V_l,3], `up_w_l` [V_l,3] — barycentric coordinates of each fine vertex's
  closest point on the coarse surface (rows sum to 1);
- graph: `nbr_idx_l` [V_l,D_l] neighbour lists padded with the vertex's own index, `nbr_mask_l`
  [V_l,D_l] 1 for a real neighbour, 0 for padding.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import fast_simplification
import numpy as np
import trimesh

from engine.assets import MODELS_DIR, load_npz_asset
from engine.mesh_graph import neighbour_lists

HIERARCHY_PATH = MODELS_DIR / "hierarchy.npz"


@dataclass(frozen=True)
class MeshHierarchy:
    """Per-level arrays, level 0 = full mesh (see the module docstring for shapes)."""

    vertices: list[np.ndarray]
    triangles: list[np.ndarray]
    nbr_idx: list[np.ndarray]
    nbr_mask: list[np.ndarray]
    down_idx: list[np.ndarray]  # len = levels
    up_idx: list[np.ndarray]  # len = levels
    up_w: list[np.ndarray]  # len = levels

    @property
    def num_levels(self) -> int:
        """Number of meshes (decimation steps + 1)."""
        return len(self.vertices)

    @property
    def sizes(self) -> list[int]:
        """Vertex count per level, fine → coarse."""
        return [len(v) for v in self.vertices]

    def topology_hash(self) -> str:
        """sha256 of the triangles, neighbour lists, down-sampling indices and up-sampling *operators*.

        The up-sampling enters as the linear map it is (`up_operator`: per fine vertex, the sorted
        coarse vertices with non-zero weight, weights rounded to 1e-5), not as the raw (idx, w) rows:
        a fine vertex that sits on a coarse vertex or edge is equally the closest point of several
        coarse triangles, and which one the closest-point search returns depends on the CPU's
        floating-point kernels (numpy's AVX-512 and AVX2 paths pick differently). The same operator
        gives the same model, so it gets the same hash."""
        h = hashlib.sha256()
        for arrays in (self.triangles, self.nbr_idx, self.down_idx):
            for a in arrays:
                h.update(np.ascontiguousarray(a, dtype=np.int32).tobytes())
        for lvl in range(self.num_levels - 1):
            indptr, cols, vals = up_operator(self.up_idx[lvl], self.up_w[lvl])
            h.update(np.int64(len(self.vertices[lvl + 1])).tobytes())
            for a in (indptr.astype(np.int32), cols.astype(np.int32), vals.astype(np.float32)):
                h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


def decimate(vertices: np.ndarray, triangles: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """One quadric-error decimation step keeping ~1/factor of the vertices.

    Returns (kept [Vc] indices into `vertices`, coarse triangles [Fc,3] indexing `kept`).
    """
    v64 = np.ascontiguousarray(vertices, dtype=np.float32)
    f64 = np.ascontiguousarray(triangles, dtype=np.int64)
    pts, _, collapses = fast_simplification.simplify(v64, f64, 1.0 - 1.0 / factor, return_collapses=True)
    out_pts, faces, mapping = fast_simplification.replay_simplification(v64, f64, collapses)
    used = np.unique(faces)
    remap = np.full(len(out_pts), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    faces = remap[faces]
    kept = np.empty(len(used), dtype=np.int64)
    for new, old_out in enumerate(used):
        members = np.flatnonzero(mapping == old_out)
        d = np.linalg.norm(vertices[members] - out_pts[old_out], axis=1)
        kept[new] = members[np.argmin(d)]
    # drop faces that became degenerate or duplicated after snapping back to original positions
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    faces = faces[np.sort(first)]
    return kept, faces.astype(np.int32)


def up_operator(idx: np.ndarray, w: np.ndarray, decimals: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical CSR form of one up-sampling step: fine = U @ coarse with U[v, idx[v,j]] += w[v,j].

    idx, w [V_f,3] → (indptr [V_f+1], cols, vals): per row the coarse vertices sorted, repeated
    ones merged, weights rounded to `decimals` and zeros dropped. Two (idx, w) arrays that describe
    the same interpolation give the same three arrays."""
    idx = np.asarray(idx, dtype=np.int64)
    w = np.asarray(w, dtype=np.float64)
    stride = int(idx.max(initial=0)) + 1
    rows = np.repeat(np.arange(len(idx)), idx.shape[1])
    uniq, inverse = np.unique(rows * stride + idx.ravel(), return_inverse=True)
    summed = np.round(np.bincount(inverse, weights=w.ravel(), minlength=len(uniq)), decimals)
    keep = summed != 0.0
    urow, ucol = np.divmod(uniq[keep], stride)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(urow, minlength=len(idx)))])
    return indptr, ucol, summed[keep]


def upsample_weights(fine: np.ndarray, coarse: np.ndarray, coarse_tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric coordinates of each fine vertex's closest point on the coarse surface.

    fine [Vf,3], coarse [Vc,3], coarse_tris [Fc,3] → (idx [Vf,3] i32, w [Vf,3] f32, rows sum to 1).
    """
    mesh = trimesh.Trimesh(coarse.astype(np.float64), coarse_tris, process=False)
    closest, _, tri = trimesh.proximity.closest_point(mesh, fine.astype(np.float64))
    idx = coarse_tris[tri]
    w = trimesh.triangles.points_to_barycentric(mesh.vertices[idx], closest)
    w = np.clip(w, 0.0, None)
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    return idx.astype(np.int32), w.astype(np.float32)


def build_hierarchy(vertices: np.ndarray, triangles: np.ndarray, levels: int = 4, factor: float = 4.0) -> MeshHierarchy:
    """Decimate `levels` times by `factor` (vertices [V,3] f32 mm, triangles [F,3] i32)."""
    verts = [np.asarray(vertices, dtype=np.float32)]
    tris = [np.asarray(triangles, dtype=np.int32)]
    down, up_i, up_w = [], [], []
    for _ in range(levels):
        kept, coarse_tris = decimate(verts[-1], tris[-1], factor)
        coarse = verts[-1][kept]
        ui, uw = upsample_weights(verts[-1], coarse, coarse_tris)
        down.append(kept.astype(np.int32))
        up_i.append(ui)
        up_w.append(uw)
        verts.append(coarse)
        tris.append(coarse_tris)
    nbr = [neighbour_lists(len(v), t) for v, t in zip(verts, tris)]
    return MeshHierarchy(verts, tris, [n[0] for n in nbr], [n[1] for n in nbr], down, up_i, up_w)


def topology_hash(h: MeshHierarchy) -> str:
    """sha256 of the hierarchy's topology (see `MeshHierarchy.topology_hash`)."""
    return h.topology_hash()


def save_hierarchy(h: MeshHierarchy, path: Path = HIERARCHY_PATH) -> None:
    """Write `hierarchy.npz` with the keys of docs/architecture.md."""
    arrays: dict[str, np.ndarray] = {"num_levels": np.array(h.num_levels, dtype=np.int32)}
    for lvl in range(h.num_levels):
        arrays[f"vertices_{lvl}"] = h.vertices[lvl]
        arrays[f"triangles_{lvl}"] = h.triangles[lvl]
        arrays[f"nbr_idx_{lvl}"] = h.nbr_idx[lvl]
        arrays[f"nbr_mask_{lvl}"] = h.nbr_mask[lvl]
    for lvl in range(h.num_levels - 1):
        arrays[f"down_idx_{lvl}"] = h.down_idx[lvl]
        arrays[f"up_idx_{lvl}"] = h.up_idx[lvl]
        arrays[f"up_w_{lvl}"] = h.up_w[lvl]
    np.savez_compressed(path, **arrays)


def load_hierarchy(path: Path = HIERARCHY_PATH) -> MeshHierarchy:
    """Load `models/hierarchy.npz`; missing/unreadable → CheckpointError with the fix."""
    def build(z) -> MeshHierarchy:
        n = int(z["num_levels"])
        g = lambda k, r: [z[f"{k}_{i}"] for i in r]  # noqa: E731
        return MeshHierarchy(g("vertices", range(n)), g("triangles", range(n)), g("nbr_idx", range(n)),
                             g("nbr_mask", range(n)), g("down_idx", range(n - 1)), g("up_idx", range(n - 1)),
                             g("up_w", range(n - 1)))

    return load_npz_asset(path, build)
