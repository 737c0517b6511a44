"""engine.mesh_graph (one implementation of each mesh-graph helper) against dense references, on
small meshes and on the real head and MediaPipe's canonical face."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.canonical import load_canonical
from engine.headspace import load_head
from engine.mesh_graph import (adjacency, boundary_loops, directed_edges, edge_incidence, neighbour_average,
                               neighbour_lists, padded_matrix, uniform_laplacian, unique_edges)
from engine.sparse_ops import sparse_from_padded, to_torch_coo, to_torch_csr

FAN = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [4, 3, 5]])


@pytest.fixture(scope="module", params=["head", "canonical"])
def mesh(request):
    m = load_head() if request.param == "head" else load_canonical()
    return len(m.vertices), np.asarray(m.triangles)


def _dense_adjacency(n: int, tris: np.ndarray) -> np.ndarray:
    a = np.zeros((n, n))
    for t in tris:
        for i, j in ((0, 1), (1, 2), (2, 0)):
            a[t[i], t[j]] = a[t[j], t[i]] = 1.0
    return a


def test_edges_of_a_fan():
    assert directed_edges(FAN).shape == (12, 2) and directed_edges(FAN)[4].tolist() == [1, 2]
    e = unique_edges(FAN)
    assert e.tolist() == [[0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [2, 3], [3, 4], [3, 5], [4, 5]]
    m = edge_incidence(e, 6).toarray()
    x = np.arange(6.0) ** 2
    np.testing.assert_array_equal(m @ x, x[e[:, 0]] - x[e[:, 1]])


def test_neighbourhood_operators_equal_dense_ones():
    a = _dense_adjacency(7, FAN)  # vertex 6 is isolated
    np.testing.assert_array_equal(adjacency(7, FAN).toarray(), a)
    deg = a.sum(axis=1)
    avg = a / np.maximum(deg, 1)[:, None]
    np.testing.assert_allclose(neighbour_average(7, FAN).toarray(), avg, rtol=1e-15)
    np.testing.assert_allclose(uniform_laplacian(7, FAN).toarray(), avg - np.diag(deg > 0), rtol=1e-15)
    idx, mask = neighbour_lists(7, FAN)
    for i in range(7):
        assert sorted(idx[i][mask[i] > 0].tolist()) == np.flatnonzero(a[i]).tolist()
        assert (idx[i][mask[i] == 0] == i).all()


def test_padded_matrix_and_its_torch_forms():
    idx, mask = neighbour_lists(6, FAN)
    w = np.random.default_rng(0).uniform(-1, 1, idx.shape) * mask
    diag = np.full(6, 0.3)
    dense = np.diag(diag)
    for i in range(6):
        for d in range(idx.shape[1]):
            dense[i, idx[i, d]] += w[i, d]
    np.testing.assert_allclose(padded_matrix(idx, w, diag).toarray(), dense, rtol=1e-15)
    t = sparse_from_padded(torch.as_tensor(idx).long(), torch.as_tensor(w), torch.as_tensor(diag), 6)
    assert t.layout == torch.sparse_csr and t.dtype == torch.float64
    assert int(t.values().eq(0).sum()) == 0  # padding dropped
    np.testing.assert_array_equal(t.to_dense().numpy(), padded_matrix(idx, w, diag).toarray())
    m = padded_matrix(idx, w.astype(np.float32), None, 8)
    assert m.shape == (6, 8)
    np.testing.assert_array_equal(to_torch_csr(m).to_dense().numpy(), m.toarray().astype(np.float32))
    np.testing.assert_array_equal(to_torch_coo(m).to_dense().numpy(), m.toarray().astype(np.float32))


def test_boundary_loops_of_small_meshes():
    assert boundary_loops(np.zeros((0, 3), int)) == []
    loops = boundary_loops(FAN)
    assert len(loops) == 1 and loops[0].tolist() == [0, 1, 2, 3, 5, 4]  # from the smallest id, edge direction
    # a bow tie (two triangles sharing only vertex 0): no simple chain through 0 → skipped, no crash
    bow = [lp.tolist() for lp in boundary_loops(np.array([[0, 1, 2], [0, 3, 4]]))]
    assert bow in ([], [[0, 1, 2]], [[0, 3, 4]])


def test_boundary_loops_of_the_real_meshes(mesh):
    n, tris = mesh
    loops = boundary_loops(tris)
    e = directed_edges(tris)
    key = np.sort(e, axis=1)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    border = {tuple(x) for x in e[cnt[inv.ravel()] == 1].tolist()}
    walked = {(int(a), int(b)) for lp in loops for a, b in zip(lp, np.roll(lp, -1))}
    assert walked == border  # every boundary edge once, in the triangles' direction
    assert [int(lp[0]) for lp in loops] == sorted(int(lp.min()) for lp in loops)
    assert len(loops) == (4 if n > 1000 else 1)  # head: neck, two eyes, mouth; canonical face: its rim


def test_unique_edges_of_the_real_meshes(mesh):
    n, tris = mesh
    e = unique_edges(tris)
    a = adjacency(n, tris)
    assert len(e) == a.nnz // 2 and (e[:, 0] < e[:, 1]).all()
    np.testing.assert_array_equal(np.asarray(a[e[:, 0], e[:, 1]]).ravel(), 1.0)
