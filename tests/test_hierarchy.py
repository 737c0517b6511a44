"""Mesh hierarchy: valid coarse meshes, exact down-sampling, barycentric up-sampling, npz round trip."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from engine.errors import CheckpointError
from engine.hierarchy import (MODELS_DIR, MeshHierarchy, build_hierarchy, load_hierarchy, neighbour_lists,
                              save_hierarchy, topology_hash, up_operator)


@pytest.fixture(scope="module")
def sphere() -> MeshHierarchy:
    s = trimesh.creation.icosphere(3)  # 642 vertices, closed
    return build_hierarchy(s.vertices.astype(np.float32), s.faces.astype(np.int32), levels=3, factor=4)


@pytest.fixture(scope="module")
def head() -> MeshHierarchy:
    return load_hierarchy()


def _boundary_loops(num_vertices: int, tris: np.ndarray) -> int:
    e = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    u, c = np.unique(e, axis=0, return_counts=True)
    b = u[c == 1]
    if not len(b):
        return 0
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    g = sp.coo_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(num_vertices, num_vertices))
    _, lab = connected_components(g, directed=False)
    return len(np.unique(lab[np.unique(b)]))


def _check_valid(h: MeshHierarchy) -> None:
    for lvl in range(h.num_levels):
        v, t = h.vertices[lvl], h.triangles[lvl]
        assert v.dtype == np.float32 and t.dtype == np.int32
        assert ((t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])).all(), "degenerate face"
        assert len(np.unique(np.sort(t, axis=1), axis=0)) == len(t), "duplicate face"
        assert np.array_equal(np.unique(t), np.arange(len(v))), "unused vertex"
        assert (trimesh.Trimesh(v, t, process=False).area_faces > 0).all(), "zero-area face"
        idx, mask = h.nbr_idx[lvl], h.nbr_mask[lvl]
        pad = mask == 0
        assert np.array_equal(idx[pad], np.nonzero(pad)[0]), "padding must point to the vertex itself"
        assert (mask.sum(axis=1) >= 2).all()
    for lvl in range(h.num_levels - 1):
        # every coarse vertex IS a vertex of the finer level, at its original position
        d = h.down_idx[lvl]
        assert len(np.unique(d)) == len(d) == len(h.vertices[lvl + 1])
        assert np.array_equal(h.vertices[lvl][d], h.vertices[lvl + 1])
        w = h.up_w[lvl]
        assert (w >= 0).all() and np.allclose(w.sum(axis=1), 1.0, atol=1e-5)
        assert h.up_idx[lvl].max() < len(h.vertices[lvl + 1])
        # kept vertices lie on the coarse surface: up-sampling reproduces them exactly
        rec = (h.vertices[lvl + 1][h.up_idx[lvl]] * w[..., None]).sum(axis=1)
        assert np.abs(rec[d] - h.vertices[lvl][d]).max() < 1e-3


def test_sphere_levels_are_valid(sphere):
    assert sphere.sizes[0] == 642
    for a, b in zip(sphere.sizes, sphere.sizes[1:]):
        assert 3.0 < a / b < 5.5, sphere.sizes
    _check_valid(sphere)


def test_head_hierarchy_is_valid_and_keeps_holes(head):
    assert head.num_levels == 5 and head.sizes[0] == 3260
    for a, b in zip(head.sizes, head.sizes[1:]):
        assert 3.0 < a / b < 5.5, head.sizes
    _check_valid(head)
    # eyes, mouth and neck: four boundary loops at full and quarter resolution
    assert _boundary_loops(head.sizes[0], head.triangles[0]) == 4
    assert _boundary_loops(head.sizes[1], head.triangles[1]) == 4
    # up-sampling the coarser mesh lands close to the finer one on the first level (mm)
    rec = (head.vertices[1][head.up_idx[0]] * head.up_w[0][..., None]).sum(axis=1)
    assert np.linalg.norm(rec - head.vertices[0], axis=1).mean() < 1.0


def test_build_is_deterministic_and_matches_shipped_file(head):
    z = np.load(MODELS_DIR / "head.npz")
    again = build_hierarchy(z["vertices"], z["triangles"])
    assert again.sizes == head.sizes
    assert topology_hash(again) == topology_hash(head)
    assert topology_hash(build_hierarchy(z["vertices"], z["triangles"])) == topology_hash(again)


def test_up_operator_merges_ties_and_the_hash_ignores_how_a_tie_was_broken(head):
    # fine vertices kept by the decimation sit exactly on a coarse vertex: weight 1 on it
    kept = head.down_idx[0]
    row = int(kept[0])
    indptr, cols, vals = up_operator(head.up_idx[0], head.up_w[0])
    assert cols[indptr[row]:indptr[row + 1]].tolist() == [0] and vals[indptr[row]:indptr[row + 1]].tolist() == [1.0]
    # the same point written as a corner of another coarse triangle (the other closest-point answer)
    other = int(np.flatnonzero((head.triangles[1] == 0).any(axis=1))[-1])
    corner = head.triangles[1][other].copy()
    corner = np.roll(corner, -int(np.flatnonzero(corner == 0)[0]))
    up_idx = [a.copy() for a in head.up_idx]
    up_w = [a.copy() for a in head.up_w]
    up_idx[0][row], up_w[0][row] = corner, [1.0, 0.0, 0.0]
    retied = MeshHierarchy(head.vertices, head.triangles, head.nbr_idx, head.nbr_mask, head.down_idx, up_idx, up_w)
    assert topology_hash(retied) == topology_hash(head)
    # a different interpolation is a different model: another hash
    up_w[0][row] = [0.5, 0.5, 0.0]
    moved = MeshHierarchy(head.vertices, head.triangles, head.nbr_idx, head.nbr_mask, head.down_idx, up_idx, up_w)
    assert topology_hash(moved) != topology_hash(head)
    # a row with a repeated coarse vertex merges into one entry
    ip, c, v = up_operator(np.array([[3, 3, 1]]), np.array([[0.25, 0.25, 0.5]]))
    assert ip.tolist() == [0, 2] and c.tolist() == [1, 3] and v.tolist() == [0.5, 0.5]


def test_neighbour_lists_small_graph():
    idx, mask = neighbour_lists(4, np.array([[0, 1, 2], [0, 2, 3]]))
    assert idx.shape == (4, 3) and mask.sum() == 10  # 5 undirected edges
    assert sorted(idx[0][mask[0] > 0]) == [1, 2, 3]
    assert sorted(idx[1][mask[1] > 0]) == [0, 2] and idx[1][mask[1] == 0].tolist() == [1]


def test_save_load_roundtrip(sphere, tmp_path):
    path = tmp_path / "h.npz"
    save_hierarchy(sphere, path)
    with np.load(path) as z:
        assert int(z["num_levels"]) == 4
        assert {"vertices_0", "triangles_3", "nbr_idx_2", "nbr_mask_1", "down_idx_2", "up_idx_0", "up_w_2"} <= set(z)
        assert "down_idx_3" not in z
    back = load_hierarchy(path)
    assert back.topology_hash() == sphere.topology_hash()
    for a, b in zip(back.vertices, sphere.vertices):
        assert np.array_equal(a, b)


def test_topology_hash_changes_with_topology(sphere):
    tris = [t.copy() for t in sphere.triangles]
    tris[1] = tris[1][::-1].copy()
    other = MeshHierarchy(sphere.vertices, tris, sphere.nbr_idx, sphere.nbr_mask, sphere.down_idx,
                          sphere.up_idx, sphere.up_w)
    assert topology_hash(other) != topology_hash(sphere)


def test_missing_and_corrupt_files_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="build-assets") as exc:
        load_hierarchy(tmp_path / "nope.npz")
    assert "nope.npz" in str(exc.value)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="bad.npz.*build-assets"):
        load_hierarchy(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, num_levels=np.array(2))
    with pytest.raises(CheckpointError, match="build-assets"):
        load_hierarchy(partial)
