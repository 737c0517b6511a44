"""The ModernGL renderer (headless, Mesa EGL) and the video recorder, on real meshes and pixels."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh

from engine.errors import UserError
from realtime.record import FrameRecord, HeadPose
from realtime.recorder import Recorder
from realtime.render import (
    BACKGROUND_RGB, WIRE_RGB, RenderOptions, Renderer, boundary_loops, fit_rect, hole_caps, image_to_ndc,
    overlay_transform, side_transform, signed_volume, unique_edges, vertex_normals, winding_is_consistent,
)

ROOT = Path(__file__).resolve().parent.parent
W, H = 320, 240
RADIUS_MM = 50.0
GREY = 90


def _rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]], dtype=np.float32)


def _pose(scale: float, center: tuple[float, float], rotation: np.ndarray | None = None) -> HeadPose:
    return HeadPose(rotation=np.eye(3, dtype=np.float32) if rotation is None else rotation,
                    translation_mm=np.zeros(3, dtype=np.float32), scale_px_per_mm=scale,
                    center_px=np.asarray(center, dtype=np.float32))


@pytest.fixture(scope="module")
def sphere():
    m = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS_MM)
    return m.vertices.astype(np.float32), m.faces.astype(np.int32)


@pytest.fixture
def renderer(ctx, sphere):
    r = Renderer(ctx, W, H, sphere[1])
    yield r
    r.release()


def _grey_image(w: int = W, h: int = H) -> np.ndarray:
    return np.full((h, w, 3), GREY, dtype=np.uint8)


def _face_frame(vertices, image, pose, **kw) -> FrameRecord:
    return FrameRecord(0, 0.0, 0, image=image, face_found=True, pose=pose, vertices=vertices, **kw)


def _drawn(img: np.ndarray, background: np.ndarray) -> np.ndarray:
    return np.abs(img.astype(np.int32) - background.astype(np.int32)).sum(axis=2) > 24


# -- pure helpers ----------------------------------------------------------------------------------

def test_vertex_normals_of_a_sphere_point_outwards(sphere):
    v, f = sphere
    n = vertex_normals(v, f)
    assert n.shape == v.shape and n.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    cos = (n * (v / np.linalg.norm(v, axis=1, keepdims=True))).sum(axis=1)
    assert cos.min() > 0.99


def test_vertex_normals_of_a_flipped_triangle_and_an_unused_vertex():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]], dtype=np.float32)
    n = vertex_normals(v, np.array([[0, 2, 1]]))
    np.testing.assert_allclose(n[:3], [[0, 0, -1]] * 3, atol=1e-6)
    np.testing.assert_allclose(n[3], [0, 0, 1])  # in no triangle: a harmless default


def test_winding_and_orientation_checks(sphere):
    v, f = sphere
    assert winding_is_consistent(f) and signed_volume(v, f) > 0
    assert signed_volume(v, f[:, ::-1]) < 0
    assert not winding_is_consistent(np.array([[0, 1, 2], [0, 1, 3]]))  # edge 0→1 used twice


def test_boundary_loops_and_caps_close_a_holed_sphere(sphere):
    v, f = sphere
    assert boundary_loops(f) == []
    holed = f[1:]  # one triangle removed: one hole of three edges
    loops = boundary_loops(holed)
    assert len(loops) == 1 and sorted(loops[0].tolist()) == sorted(f[0].tolist())
    caps, mean = hole_caps(holed, len(v))
    assert caps.shape == (3, 3) and mean.shape == (1, len(v))
    closed = np.concatenate([holed, caps])
    assert winding_is_consistent(closed) and boundary_loops(closed) == []
    capped_v = np.concatenate([v, mean @ v])
    np.testing.assert_allclose(capped_v[-1], v[f[0]].mean(axis=0), atol=1e-5)
    assert signed_volume(capped_v, closed) == pytest.approx(signed_volume(v, f), rel=1e-3)


def test_boundary_loop_of_a_square():
    loops = boundary_loops(np.array([[0, 1, 2], [0, 2, 3]]))
    assert len(loops) == 1 and len(loops[0]) == 4


def test_unique_edges_of_a_tetrahedron():
    e = unique_edges(np.array([[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]]))
    assert e.shape == (6, 2) and (e[:, 0] < e[:, 1]).all()


def test_fit_rect_letterboxes():
    assert fit_rect((640, 480), (0, 0, 640, 480)) == (0, 0, 640, 480)
    assert fit_rect((640, 480), (0, 0, 1280, 480)) == (320, 0, 640, 480)
    assert fit_rect((100, 100), (10, 0, 200, 100)) == (60, 0, 100, 100)


def test_overlay_transform_places_the_origin_at_center_px():
    pose = _pose(2.0, (100.0, 50.0), _rot_y(30))
    mvp, normal = overlay_transform(pose, (400, 200))
    sx, sy, ox, oy = image_to_ndc((400, 200))
    for v in ([0, 0, 0], [10, -5, 3]):
        cam = pose.rotation @ np.asarray(v, dtype=np.float32)
        px = np.array([100 + 2 * cam[0], 50 - 2 * cam[1]])  # the pose's contract, y down
        ndc = mvp @ np.array([*v, 1.0])
        np.testing.assert_allclose(ndc[:2], [px[0] * sx + ox, px[1] * sy + oy], atol=1e-5)
    np.testing.assert_allclose(normal, pose.rotation, atol=1e-6)
    mvp_m, normal_m = overlay_transform(pose, (400, 200), mirror=True)
    np.testing.assert_allclose(mvp_m[0], -mvp[0], atol=1e-6)
    assert np.linalg.det(normal_m) < 0


def test_side_transform_fits_the_bounding_sphere():
    mvp, _ = side_transform(np.eye(3), (200, 100), radius_mm=10.0)
    top = mvp @ np.array([0, 10.0, 0, 1])
    assert top[1] == pytest.approx(0.9)  # SIDE_FILL of the half-height


def test_options_reject_an_unknown_layout():
    with pytest.raises(UserError, match="layout"):
        RenderOptions(layout="sideways")


# -- rendering -------------------------------------------------------------------------------------

def test_read_back_is_bgr_and_top_row_first(renderer):
    img = np.zeros((H, W, 3), dtype=np.uint8)
    img[: H // 2] = (255, 0, 0)  # blue on top (BGR)
    img[H // 2:] = (0, 0, 255)   # red below
    renderer.render(FrameRecord(0, 0.0, 0, image=img), RenderOptions(show_hud=False))
    out = renderer.read_rgb()
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, img)


def test_overlay_head_lands_on_the_pose(renderer, sphere):
    scale, center = 0.9, (190.0, 110.0)
    image = _grey_image()
    renderer.render(FrameRecord(0, 0.0, 0, image=image), RenderOptions(show_hud=False))
    background = renderer.read_rgb()
    renderer.render(_face_frame(sphere[0], image, _pose(scale, center)), RenderOptions(show_hud=False))
    mask = _drawn(renderer.read_rgb(), background)
    ys, xs = np.nonzero(mask)
    assert xs.mean() == pytest.approx(center[0], abs=1.5) and ys.mean() == pytest.approx(center[1], abs=1.5)
    diameter_px = 2 * RADIUS_MM * scale
    assert xs.max() - xs.min() + 1 == pytest.approx(diameter_px, abs=3)
    assert ys.max() - ys.min() + 1 == pytest.approx(diameter_px, abs=3)


def test_mirror_flips_the_head_and_the_image(renderer, sphere):
    image = _grey_image()
    image[:, :40] = (0, 200, 0)
    frame = _face_frame(sphere[0], image, _pose(0.5, (80.0, 120.0)))
    renderer.render(frame, RenderOptions(show_hud=False, mirror=True))
    out = renderer.read_rgb()
    np.testing.assert_array_equal(out[:, W - 40:], image[:, :40])
    mask = _drawn(out, np.flip(image, axis=1))
    assert np.nonzero(mask)[1].mean() == pytest.approx(W - 80.0, abs=1.5)


def test_surface_is_lit_not_flat(renderer, sphere):
    image = _grey_image()
    renderer.render(_face_frame(sphere[0], image, _pose(1.0, (160.0, 120.0))), RenderOptions(show_hud=False))
    out = renderer.read_rgb()
    mask = _drawn(out, image)
    lum = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)[mask].astype(np.float32)
    assert mask.sum() > 5000
    assert lum.std() > 15 and np.percentile(lum, 95) - np.percentile(lum, 5) > 50
    # The key light is above-left: the upper-left of the sphere is brighter than the lower-right.
    gray = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(np.float32)
    assert gray[120 - 25, 160 - 25] > gray[120 + 25, 160 + 25] + 20


def test_mirrored_sphere_is_shaded_like_the_unmirrored_one(renderer, sphere):
    """Lights are fixed in the view, so a centred sphere looks the same mirrored; culling that missed the
    mirror's reversed winding would show its dark inside instead."""
    frame = _face_frame(sphere[0], _grey_image(), _pose(1.0, (160.0, 120.0)))
    renderer.render(frame, RenderOptions(show_hud=False))
    plain = renderer.read_rgb().astype(np.int32)
    renderer.render(frame, RenderOptions(show_hud=False, mirror=True))
    mirrored = renderer.read_rgb().astype(np.int32)
    assert np.abs(plain - mirrored).mean() < 1.0


def test_wireframe_differs_from_solid(renderer, sphere):
    image = _grey_image()
    frame = _face_frame(sphere[0], image, _pose(1.0, (160.0, 120.0)))
    renderer.render(frame, RenderOptions(show_hud=False))
    solid = renderer.read_rgb()
    renderer.render(frame, RenderOptions(show_hud=False, wireframe=True))
    wire = renderer.read_rgb()
    head = _drawn(solid, image)
    assert _drawn(wire, solid)[head].mean() > 0.5
    wire_bgr = np.round(np.array(WIRE_RGB[::-1]) * 255)
    is_line = np.abs(wire.astype(np.float32) - wire_bgr).sum(axis=2) < 6
    assert 0.05 < is_line[head].mean() < 0.95, "edges drawn, with the image visible between them"
    yy, xx = np.mgrid[:H, :W]
    outside = np.hypot(xx + 0.5 - 160.0, yy + 0.5 - 120.0) > RADIUS_MM + 1.5  # the sphere's disc, scale 1
    assert not is_line[outside].any(), "no line outside the head's silhouette"
    between = head & ~is_line
    assert (np.abs(wire[between].astype(np.int32) - GREY).max(axis=1) <= 2).mean() > 0.5, "hidden-line, no fill"


def test_side_layout_puts_the_image_left_and_the_head_right(ctx, sphere):
    r = Renderer(ctx, 2 * W, H, sphere[1])
    try:
        image = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
        frame = _face_frame(sphere[0], image, _pose(1.0, (160.0, 120.0)))
        r.render(frame, RenderOptions(layout="side", show_hud=False))
        out = r.read_rgb()
    finally:
        r.release()
    np.testing.assert_array_equal(out[:, :W], image)
    bg = np.round(np.array(BACKGROUND_RGB[::-1]) * 255).astype(np.int32)
    head = np.abs(out[:, W:].astype(np.int32) - bg).sum(axis=2) > 24
    ys, xs = np.nonzero(head)
    assert xs.mean() == pytest.approx(W / 2, abs=2) and ys.mean() == pytest.approx(H / 2, abs=2)
    assert ys.max() - ys.min() + 1 == pytest.approx(0.9 * H, abs=4)  # bounding sphere fills 90%


def test_no_face_shows_the_image_and_a_no_face_line(renderer):
    image = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    frame = FrameRecord(0, 0.0, 0, image=image, face_found=False)
    renderer.render(frame, RenderOptions(show_hud=False))
    np.testing.assert_array_equal(renderer.read_rgb(), image)
    renderer.render(frame, RenderOptions(show_hud=True, hud_lines=[]))
    out = renderer.read_rgb()
    changed = np.abs(out.astype(np.int32) - image).sum(axis=2) > 0
    ys, xs = np.nonzero(changed)
    assert changed.any() and ys.max() < H // 4 and xs.max() < W // 2, "a HUD box at the top left only"


def test_hud_draws_its_lines(renderer):
    image = _grey_image()
    frame = FrameRecord(0, 0.0, 0, image=image, face_found=True)
    renderer.render(frame, RenderOptions(hud_lines=["12.3 FPS"]))
    one = _drawn(renderer.read_rgb(), image)
    renderer.render(frame, RenderOptions(hud_lines=["12.3 FPS", "ms: track 3.0  decode 1.0"]))
    two = _drawn(renderer.read_rgb(), image)
    assert one.any() and two.sum() > one.sum()
    assert np.nonzero(two)[0].max() > np.nonzero(one)[0].max(), "a second line below the first"


def test_landmarks_are_drawn_where_they_are(renderer):
    image = _grey_image()
    lm = np.zeros((478, 3), dtype=np.float32)
    lm[:, :2] = (40.0, 30.0)
    lm[468:, :2] = (250.0, 200.0)  # irises: the highlight colour
    frame = FrameRecord(0, 0.0, 0, image=image, face_found=True, landmarks_px=lm)
    renderer.render(frame, RenderOptions(show_hud=False, show_landmarks=True))
    out = renderer.read_rgb()
    mask = _drawn(out, image)
    ys, xs = np.nonzero(mask)
    near_a = (np.abs(xs - 40) <= 3) & (np.abs(ys - 30) <= 3)
    near_b = (np.abs(xs - 250) <= 3) & (np.abs(ys - 200) <= 3)
    assert near_a.any() and near_b.any() and (near_a | near_b).all()
    assert not np.array_equal(out[30, 40], out[200, 250])


def test_the_real_head_covers_its_projected_extent(ctx):
    path = ROOT / "models" / "head.npz"
    if not path.exists():
        pytest.skip("models/head.npz is not built (python main.py build-assets)")
    head = np.load(path)
    verts, tris = head["vertices"], head["triangles"]
    r = Renderer(ctx, 640, 480, tris, head["uvs"])
    try:
        pose = _pose(1.1, (300.0, 250.0), _rot_y(15))
        image = _grey_image(640, 480)
        r.render(_face_frame(verts, image, pose), RenderOptions(show_hud=False))
        mask = _drawn(r.read_rgb(), image)
    finally:
        r.release()
    cam = verts @ pose.rotation.T
    px_x = pose.center_px[0] + pose.scale_px_per_mm * cam[:, 0]
    px_y = pose.center_px[1] - pose.scale_px_per_mm * cam[:, 1]
    ys, xs = np.nonzero(mask)
    assert xs.min() == pytest.approx(px_x.min(), abs=3) and xs.max() == pytest.approx(px_x.max(), abs=3)
    assert ys.min() == pytest.approx(px_y.min(), abs=3) and ys.max() == pytest.approx(px_y.max(), abs=3)


def test_the_real_heads_openings_are_closed(ctx):
    """Eyes, mouth and neck are holes in the mesh; with back faces culled they must not show the image."""
    path = ROOT / "models" / "head.npz"
    if not path.exists():
        pytest.skip("models/head.npz is not built (python main.py build-assets)")
    head = np.load(path)
    r = Renderer(ctx, 640, 480, head["triangles"], head["uvs"])
    try:
        image = np.zeros((480, 640, 3), dtype=np.uint8)
        image[:] = (0, 255, 0)
        r.render(_face_frame(head["vertices"], image, _pose(1.2, (320.0, 250.0))), RenderOptions(show_hud=False))
        head_px = (_drawn(r.read_rgb(), image)).astype(np.uint8)
    finally:
        r.release()
    filled = head_px.copy()
    cv2.floodFill(filled, None, (0, 0), 2)  # everything reachable from the corner outside the head
    holes = filled == 0
    assert head_px.sum() > 30_000 and holes.sum() < 0.002 * head_px.sum()


def test_wrong_vertex_count_is_refused(renderer, sphere):
    frame = _face_frame(sphere[0][:10], _grey_image(), _pose(1.0, (160.0, 120.0)))
    with pytest.raises(ValueError, match="vertices"):
        renderer.render(frame, RenderOptions())


def test_offscreen_owns_and_releases_its_context(sphere):
    r = Renderer.offscreen(64, 48, sphere[1])
    try:
        r.render(FrameRecord(0, 0.0, 0), RenderOptions())  # no image, no face: background and HUD
        assert r.read_rgb().shape == (48, 64, 3)
        assert r.ctx.error == "GL_NO_ERROR"
    finally:
        r.release()
    r.release()  # idempotent
    with pytest.raises(RuntimeError):
        r.read_rgb()


def test_too_small_a_view_is_a_user_error(ctx, sphere):
    with pytest.raises(UserError, match="too small"):
        Renderer(ctx, 8, 8, sphere[1])


# -- recorder --------------------------------------------------------------------------------------

def test_recorder_writes_a_readable_mp4(tmp_path):
    path = tmp_path / "out.mp4"
    rng = np.random.default_rng(2)
    with Recorder(path, (160, 120), fps=10.0) as rec:
        for i in range(11):
            rec.write(np.full((120, 160, 3), 20 * i, dtype=np.uint8))
        rec.write(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))  # resized to the fixed size
        assert rec.frames_written == 12
    rec.close()  # idempotent
    cap = cv2.VideoCapture(str(path))
    try:
        tag = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace")
        assert tag.lower() in ("mp4v", "fmp4"), tag  # MPEG-4 part 2 (FFmpeg names its decoder FMP4)
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    assert len(frames) == 12 and frames[0].shape == (120, 160, 3)
    assert fps == pytest.approx(10.0, abs=0.01)
    assert abs(float(frames[5].mean()) - 100) <= 8  # the content survives the lossy codec
    with pytest.raises(RuntimeError):
        rec.write(frames[0])


@pytest.mark.parametrize("name, message", [("out.avi", "must end in"), ("missing/out.mp4", "does not exist"),
                                           (".", "folder")])
def test_recorder_rejects_bad_paths(tmp_path, name, message):
    target = tmp_path if name == "." else tmp_path / name
    if name == ".":
        target = tmp_path / "dir.mp4"
        target.mkdir()
    with pytest.raises(UserError, match=message):
        Recorder(target, (64, 48))


def test_recorder_rejects_an_unwritable_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        import os

        if os.access(folder, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(UserError, match="not writable"):
            Recorder(folder / "out.mp4", (64, 48))
    finally:
        folder.chmod(0o700)
