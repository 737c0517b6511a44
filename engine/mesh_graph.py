"""The graph of a triangle mesh, one implementation each (numpy/scipy; torch wrappers in
`engine.sparse_ops`).

- edges: `directed_edges` (a→b, b→c, c→a of every triangle), `unique_edges` (undirected, once each),
  `edge_incidence` ([E,V]: x_i − x_j per edge);
- neighbourhoods: `neighbour_lists` (padded one-ring lists, the ChebConv's and the hierarchy's form),
  `adjacency`, `neighbour_average` (row-normalised adjacency), `uniform_laplacian`;
- padded index/weight rows → sparse matrix: `padded_matrix` (ChebConv's scaled Laplacian, the
  barycentric up-sampling);
- `boundary_loops`: the mesh's holes as closed vertex chains.

Triangles are [F,3] int (counter-clockwise = outward where it matters); vertex ids index [V].
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def directed_edges(triangles: np.ndarray) -> np.ndarray:
    """[3F,2] int64 directed edges: every triangle's a→b, then every b→c, then every c→a."""
    tri = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    return np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])


def unique_edges(triangles: np.ndarray) -> np.ndarray:
    """[E,2] int64 undirected edges of a triangle mesh, each once (smaller index first), sorted."""
    return np.unique(np.sort(directed_edges(triangles), axis=1), axis=0)


def edge_incidence(edges: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """[E,V] float64 CSR with +1 at (e, i) and −1 at (e, j) for each edge (i, j): (M x)_e = x_i − x_j."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    n = len(e)
    rows = np.tile(np.arange(n), 2)
    vals = np.concatenate([np.ones(n), -np.ones(n)])
    return sp.csr_matrix((vals, (rows, np.concatenate([e[:, 0], e[:, 1]]))), shape=(n, num_vertices))


def neighbour_lists(num_vertices: int, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Padded one-ring neighbours: ([V,D] i32 padded with own index, [V,D] f32 mask), D the largest
    valence; each vertex's neighbours in increasing id order (deterministic)."""
    e = directed_edges(triangles)
    e = np.concatenate([e, e[:, ::-1]])
    e = np.unique(e, axis=0)  # sorted by source, then target: deterministic
    deg = np.bincount(e[:, 0], minlength=num_vertices)
    d = int(deg.max())
    idx = np.repeat(np.arange(num_vertices, dtype=np.int32)[:, None], d, axis=1)
    mask = np.zeros((num_vertices, d), dtype=np.float32)
    start = np.concatenate([[0], np.cumsum(deg)[:-1]])
    col = np.arange(len(e)) - start[e[:, 0]]
    idx[e[:, 0], col] = e[:, 1]
    mask[e[:, 0], col] = 1.0
    return idx, mask


def adjacency(num_vertices: int, triangles: np.ndarray) -> sp.csr_matrix:
    """[V,V] float64 CSR, 1 where two vertices share an edge (symmetric, no self-loops)."""
    e = unique_edges(triangles)
    e = np.concatenate([e, e[:, ::-1]])
    return sp.csr_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(num_vertices, num_vertices))


def neighbour_average(num_vertices: int, triangles: np.ndarray) -> sp.csr_matrix:
    """[V,V] row-normalised adjacency: (A x)_i = mean of i's neighbours (0 rows for isolated vertices)."""
    a = adjacency(num_vertices, triangles)
    deg = np.asarray(a.sum(axis=1)).ravel()
    return sp.diags(1.0 / np.maximum(deg, 1.0)) @ a


def uniform_laplacian(num_vertices: int, triangles: np.ndarray) -> sp.csr_matrix:
    """[V,V] sparse: (L x)_i = mean of i's neighbours − x_i (0 rows for isolated vertices)."""
    a = adjacency(num_vertices, triangles)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = sp.diags(np.where(deg > 0, 1.0 / np.maximum(deg, 1), 0.0))
    return (inv @ a - sp.diags((deg > 0).astype(float))).tocsr()


def padded_matrix(idx: np.ndarray, weight: np.ndarray, diag: np.ndarray | None = None,
                  num_cols: int | None = None) -> sp.csr_matrix:
    """The operator of padded index/weight rows as a [V, num_cols] float64 CSR matrix (canonical:
    sorted, repeated entries summed): row i holds weight[i,d] at column idx[i,d] for every slot d, plus
    diag[i] at (i, i) when given. Zero weights (padding) stay as stored zeros; `.eliminate_zeros()`
    drops them. num_cols defaults to V (a square operator such as the ChebConv's L~)."""
    idx = np.asarray(idx, dtype=np.int64)
    v, d = idx.shape
    rows, cols = np.repeat(np.arange(v), d), idx.reshape(-1)
    vals = np.asarray(weight, dtype=np.float64).reshape(-1)
    if diag is not None:
        rows = np.concatenate([rows, np.arange(v)])
        cols = np.concatenate([cols, np.arange(v)])
        vals = np.concatenate([vals, np.asarray(diag, dtype=np.float64).reshape(-1)])
    return sp.csr_matrix((vals, (rows, cols)), shape=(v, v if num_cols is None else int(num_cols)))


def boundary_loops(triangles: np.ndarray) -> list[np.ndarray]:
    """The mesh's holes: closed chains of boundary edges, each [k] int64 in the triangles' edge direction.

    A boundary edge is an edge of exactly one triangle. Each loop starts at its smallest vertex id and
    the loops are sorted by it (deterministic, independent of the triangle order). Where the boundary
    is not a simple chain (a non-manifold vertex), chains that do not close are skipped, as are
    chains of fewer than three vertices.
    """
    e = directed_edges(triangles)
    if not len(e):
        return []
    _, inv, cnt = np.unique(np.sort(e, axis=1), axis=0, return_inverse=True, return_counts=True)
    border = e[cnt[inv.ravel()] == 1]
    nxt = dict(zip(border[:, 0].tolist(), border[:, 1].tolist()))
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen and v in nxt:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        if v == start and len(loop) >= 3:
            loops.append(np.asarray(loop, dtype=np.int64))
    return loops
