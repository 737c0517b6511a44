"""Pure mesh helpers for the renderer (no GL): per-frame vertex normals, winding and volume checks,
the caps that close the head's openings. Arrays are numpy; vertices [V,3] float32 mm, triangles
[F,3] int. The mesh graph itself (edges, boundary loops) is `engine.mesh_graph`'s; `boundary_loops`
and `unique_edges` are imported here for the renderer."""
from __future__ import annotations

import numpy as np
import scipy.sparse

from engine.mesh_graph import boundary_loops, directed_edges, unique_edges  # noqa: F401  (renderer's)


def incident_face_slots(triangles: np.ndarray, num_vertices: int) -> np.ndarray:
    """[K,V] intp: the triangles touching each vertex, K = the largest valence, padded with F.

    Column v lists every triangle with a corner at v (a triangle with v twice is listed twice); the
    padding index F = len(triangles) points one past the last triangle (a zero row in `VertexNormals`).
    """
    tri = np.asarray(triangles, dtype=np.int64)
    f = tri.shape[0]
    corners = tri.reshape(-1)
    counts = np.bincount(corners, minlength=num_vertices)
    order = np.argsort(corners, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(order.shape[0]) - np.repeat(starts, counts)
    out = np.full((max(int(counts.max(initial=0)), 1), num_vertices), f, dtype=np.intp)
    out[slot, corners[order]] = order // 3
    return out


class VertexNormals:
    """Area-weighted unit vertex normals of one fixed triangle mesh, computed in preallocated buffers.

    triangles [F,3] int (counter-clockwise = outward), num_vertices V (≥ triangles.max() + 1). Each
    triangle adds (b − a) × (c − a) (length 2 × area: area weighting for free) to its three corners;
    the sums are normalised. All work is two flat gathers and whole-array float32 arithmetic into
    buffers made once (about twice as fast as a sparse incidence product on the 3,260-vertex head).
    """

    def __init__(self, triangles: np.ndarray, num_vertices: int) -> None:
        tri = np.asarray(triangles, dtype=np.int64)
        if tri.ndim != 2 or tri.shape[1] != 3:
            raise ValueError(f"triangles must be [F,3] int, got shape {tri.shape}")
        f, v = tri.shape[0], int(num_vertices)
        self.num_vertices = v
        xyz = np.arange(3)
        # vertices.ravel()[3·i + axis] → corners[corner k, axis, triangle]
        self._corner_index = (3 * tri.T[:, None, :] + xyz[None, :, None]).astype(np.intp).ravel()
        # face_normals.ravel()[(F+1)·axis + triangle] → gathered[axis, slot, vertex]; column F stays 0
        slots = incident_face_slots(tri, v)
        self._slot_index = (slots[None] + (f + 1) * xyz[:, None, None]).astype(np.intp).ravel()
        self._corners = np.empty((3, 3, f), dtype=np.float32)
        self._edges = np.empty((2, 3, f), dtype=np.float32)
        self._face_normals = np.zeros((3, f + 1), dtype=np.float32)
        self._tmp = np.empty(f, dtype=np.float32)
        self._gathered = np.empty((3, slots.shape[0], v), dtype=np.float32)
        self._sums = np.empty((3, v), dtype=np.float32)
        self._length = np.empty(v, dtype=np.float32)
        self._square = np.empty(v, dtype=np.float32)
        self._degenerate = np.empty(v, dtype=bool)

    def __call__(self, vertices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Unit normals [V,3] float32 of vertices [V,3] (any unit), written into `out` when given.

        A vertex in no triangle (or only degenerate ones) gets (0, 0, 1).
        """
        v = np.ascontiguousarray(vertices, dtype=np.float32)
        if v.shape != (self.num_vertices, 3):
            raise ValueError(f"vertices must be [{self.num_vertices},3], got {v.shape}")
        if out is None:
            out = np.empty((self.num_vertices, 3), dtype=np.float32)
        corners, edges, tmp = self._corners, self._edges, self._tmp
        np.take(v.reshape(-1), self._corner_index, out=corners.reshape(-1))
        np.subtract(corners[1:], corners[0], out=edges)  # (b − a, c − a)
        self._cross(edges[0], edges[1], self._face_normals[:, :-1], tmp)
        np.take(self._face_normals.reshape(-1), self._slot_index, out=self._gathered.reshape(-1))
        n = self._sums
        np.add.reduce(self._gathered, axis=1, out=n)
        length, square = self._length, self._square
        np.multiply(n[0], n[0], out=length)
        for axis in (1, 2):
            np.multiply(n[axis], n[axis], out=square)
            length += square
        np.sqrt(length, out=length)
        np.less_equal(length, 1e-12, out=self._degenerate)
        np.maximum(length, 1e-12, out=length)
        np.divide(n, length, out=n)
        out[...] = n.T
        if self._degenerate.any():
            out[self._degenerate] = (0.0, 0.0, 1.0)
        return out

    @staticmethod
    def _cross(u: np.ndarray, w: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> None:
        """out[3,F] = u × w for u, w [3,F] (rows x, y, z); tmp [F] scratch."""
        for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
            np.multiply(u[j], w[k], out=out[i])
            np.multiply(u[k], w[j], out=tmp)
            out[i] -= tmp


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V,3] float32 (one-off use of `VertexNormals`).

    vertices [V,3] float (any unit), triangles [F,3] int (counter-clockwise = outward). Vertices in
    no triangle (or only degenerate ones) get (0, 0, 1).
    """
    v = np.asarray(vertices, dtype=np.float32)
    return VertexNormals(triangles, v.shape[0])(v)


def winding_is_consistent(triangles: np.ndarray) -> bool:
    """Whether every directed edge occurs at most once (neighbouring triangles agree on orientation)."""
    directed = directed_edges(triangles)
    return np.unique(directed, axis=0).shape[0] == directed.shape[0]


def signed_volume(vertices: np.ndarray, triangles: np.ndarray) -> float:
    """Σ a·(b×c)/6 over triangles: > 0 when counter-clockwise triangles face outwards (units³)."""
    v = np.asarray(vertices, dtype=np.float64)
    tri = np.asarray(triangles)
    return float(np.einsum("ij,ij->", v[tri[:, 0]], np.cross(v[tri[:, 1]], v[tri[:, 2]])) / 6.0)


def hole_caps(triangles: np.ndarray, num_vertices: int) -> tuple[np.ndarray, scipy.sparse.csr_matrix]:
    """Fans that close each hole around a new centre vertex, wound like the surrounding surface.

    Returns (cap triangles [C,3] int32 indexing V + hole number for the centres, and a [L,V] sparse
    matrix whose product with vertices [V,3] gives the L centres as the mean of each loop).
    """
    loops = boundary_loops(triangles)
    caps, rows, cols, vals = [], [], [], []
    for i, loop in enumerate(loops):
        centre = num_vertices + i
        # the surface has a→b along the loop, so the cap has b→a: (b, a, centre)
        caps.append(np.stack([np.roll(loop, -1), loop, np.full(len(loop), centre)], axis=1))
        rows.extend([i] * len(loop))
        cols.extend(loop.tolist())
        vals.extend([1.0 / len(loop)] * len(loop))
    tris = np.concatenate(caps).astype(np.int32) if caps else np.zeros((0, 3), dtype=np.int32)
    mean = scipy.sparse.csr_matrix((np.asarray(vals, dtype=np.float32), (rows, cols)),
                                   shape=(len(loops), num_vertices))
    return tris, mean
