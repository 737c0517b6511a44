"""The ModernGL renderer (headless, Mesa EGL) and the video recorder, on real meshes and pixels."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh

import realtime.render as render_module
from engine.errors import UserError
from realtime.record import FrameRecord, HeadPose
from realtime.recorder import Recorder
from realtime.hud_font import HUD_FONT, hud_box_size, hud_font, layout_hud, rect_triangles
from realtime.mesh_geometry import (VertexNormals, boundary_loops, hole_caps, incident_face_slots, signed_volume,
                                    unique_edges, vertex_normals, winding_is_consistent)
from realtime.hud import HUD_BOX_ALPHA
from realtime.render import BACKGROUND_RGB, WIRE_RGB, RenderOptions, Renderer
from realtime.view_transforms import fit_rect, flip_clip_y, image_to_ndc, overlay_transform, side_transform

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


@pytest.fixture
def renderer_msaa(ctx, sphere):
    r = Renderer(ctx, W, H, sphere[1], samples=4)
    yield r
    r.release()


@pytest.fixture
def renderer_aliased(ctx, sphere):
    """Without multisampling: for tests that check exact pixel colours of lines."""
    r = Renderer(ctx, W, H, sphere[1], samples=0)
    yield r
    r.release()


def _grey_image(w: int = W, h: int = H) -> np.ndarray:
    return np.full((h, w, 3), GREY, dtype=np.uint8)


def _face_frame(vertices, image, pose, **kw) -> FrameRecord:
    return FrameRecord(0, 0.0, 0, image=image, face_found=True, pose=pose, vertices=vertices, **kw)


def _drawn(img: np.ndarray, background: np.ndarray) -> np.ndarray:
    return np.abs(img.astype(np.int32) - background.astype(np.int32)).sum(axis=2) > 24


def _reference_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals the plain way (scatter-add of cross products), float64."""
    v = v.astype(np.float64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(length > 1e-12, n / np.maximum(length, 1e-300), [0.0, 0.0, 1.0])


def _cv2_hud(lines: list[str], max_width: int, view_height: int) -> np.ndarray:
    """The HUD as the renderer drew it before the glyph atlas: one RGBA cv2 image [h,w,4] (top row first)."""
    scale = float(np.clip(view_height / 900.0, 0.35, 1.2))
    (_, text_h), base = cv2.getTextSize("Ag", HUD_FONT, scale, 1)
    line_h = text_h + base + max(2, int(round(6 * scale)))
    pad = max(3, int(round(8 * scale)))
    width = max(cv2.getTextSize(t, HUD_FONT, scale, 1)[0][0] for t in lines) + 2 * pad
    width = int(min(max(width, 1), max_width))
    height = line_h * len(lines) + 2 * pad - (line_h - text_h - base)
    img = np.zeros((height, width, 4), dtype=np.uint8)
    img[:, :] = (0, 0, 0, HUD_BOX_ALPHA)
    for i, text in enumerate(lines):
        cv2.putText(img, text, (pad, pad + i * line_h + text_h), HUD_FONT, scale, (255, 255, 255, 255), 1, cv2.LINE_AA)
    return img


def _composite(image_bgr: np.ndarray, hud_rgba: np.ndarray) -> np.ndarray:
    """`hud_rgba` alpha-blended over the top-left of a BGR image (straight alpha), uint8."""
    out = image_bgr.astype(np.float64)
    h, w = hud_rgba.shape[:2]
    a = hud_rgba[..., 3:4] / 255.0
    out[:h, :w] = out[:h, :w] * (1 - a) + hud_rgba[..., 2::-1] * a
    return np.round(out).astype(np.uint8)


@pytest.fixture(scope="module")
def real_head():
    path = ROOT / "models" / "head.npz"
    if not path.exists():
        pytest.skip("models/head.npz is not built (python main.py build-assets)")
    head = np.load(path)
    return head["vertices"].astype(np.float32), head["triangles"], head["uvs"]


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


def test_fast_normals_match_a_scatter_add_on_the_real_head(real_head):
    v, f, _ = real_head
    rng = np.random.default_rng(3)
    normals = VertexNormals(f, len(v))
    out = np.empty_like(v)
    for _ in range(3):  # reused buffers give the same answer every call
        moved = v + rng.normal(0, 1.0, v.shape).astype(np.float32)
        got = normals(moved, out=out)
        assert got is out and got.dtype == np.float32
        np.testing.assert_allclose(got, _reference_normals(moved, f), atol=2e-5)
    with pytest.raises(ValueError, match="vertices"):
        normals(v[:10])


def test_incident_face_slots_list_every_corner_once():
    f = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1]])
    slots = incident_face_slots(f, 5)
    assert slots.shape == (3, 5)
    for vertex in range(5):
        listed = sorted(t for t in slots[:, vertex] if t != len(f))
        assert listed == sorted(np.nonzero((f == vertex).any(axis=1))[0].tolist())
    assert (slots[:, 4] == len(f)).all()  # an unused vertex: padding only


def test_flip_clip_y_negates_only_the_y_row():
    mvp, _ = side_transform(_rot_y(20), (200, 100), radius_mm=10.0)
    flipped = flip_clip_y(mvp)
    np.testing.assert_array_equal(flipped[1], -mvp[1])
    np.testing.assert_array_equal(flipped[[0, 2, 3]], mvp[[0, 2, 3]])


def test_hud_box_and_glyphs_follow_cv2_text_metrics():
    lines = ["29.7 FPS   onnxruntime", "ms: track 7.5  decode 6.6", "\u00e9t\u00e9 \t?"]
    for view_h in (144, 480, 720, 1200):
        font = hud_font(view_h)
        assert hud_box_size(lines, font, (4000, 4000)) == _cv2_hud(lines, 4000, view_h).shape[1::-1]
        assert hud_box_size(lines, font, (50, 20)) == (50, 20)  # clipped to the view
        glyphs = layout_hud(lines, font)
        assert glyphs.dtype == np.int32 and glyphs.shape[1] == 6 and (glyphs[:, 2:4] > 0).all()
        assert sum(len(t.encode()) - t.count(" ") for t in lines) == len(glyphs)  # one per drawn byte
        atlas_h, atlas_w = font.atlas.shape
        assert (glyphs[:, 4] + glyphs[:, 2] <= atlas_w).all() and (glyphs[:, 5] + glyphs[:, 3] <= atlas_h).all()


def test_pen_fractions_map_to_the_nearest_phase_across_pixel_edges():
    font = hud_font(480)  # scale 8/15: the 15 phases k/15 of a pixel
    assert len(font.phases) == 15
    for fraction in (0, 1000, 30000, 65000, 65535):
        distance = np.abs(fraction - (font.phases[font.nearest[fraction]] + 65536 * font.shift[fraction]))
        assert distance == np.abs(fraction - font.phases[:, None] - 65536 * np.array([-1, 0, 1])).min()
    assert font.shift[65535] == 1 and font.nearest[65535] == 0  # just below the next pixel: its phase 0


def test_rect_triangles_cover_each_rectangle():
    v = rect_triangles(np.array([[10, 20, 3, 4, 100, 50]]))
    assert v.shape == (6, 4)
    assert {tuple(p) for p in v[:, :2].tolist()} == {(10, 20), (13, 20), (10, 24), (13, 24)}
    assert (v[:, 2:] == (90, 30)).all()


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


def test_wireframe_differs_from_solid(renderer_aliased, sphere):
    renderer = renderer_aliased
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


def test_gl_hud_looks_like_the_cv2_hud(ctx):
    """The atlas HUD against the HUD as one cv2 image blended over the view: same box, same text (two
    8-bit blends instead of one, and neighbouring glyphs' fringes blended one after the other, move a few
    edge pixels by a few grey levels)."""
    lines = ["29.7 FPS   onnxruntime", "ms: capture 0.6  track 7.7  decode 6.1  smooth 1.3  osc 0.1"]
    for w, h in ((352, 144), (1280, 480), (2560, 720)):
        image = np.random.default_rng(5).integers(0, 255, (h, w, 3), dtype=np.uint8)
        r = Renderer(ctx, w, h, np.array([[0, 1, 2]]))
        try:
            r.render(FrameRecord(0, 0.0, 0, image=image, face_found=True), RenderOptions(hud_lines=lines))
            out = r.read_rgb().astype(np.int32)
        finally:
            r.release()
        expected = _composite(image, _cv2_hud(lines, w, h)).astype(np.int32)
        diff = np.abs(out - expected).max(axis=2)
        assert np.mean(diff > 3) < 0.002 and np.mean(diff) < 0.1, (w, h, np.mean(diff > 3), np.mean(diff))
        box_h, box_w = _cv2_hud(lines, w, h).shape[:2]
        assert (diff[box_h:] == 0).all() and (diff[:, box_w:] == 0).all(), "nothing outside the box changes"


def test_a_single_glyph_on_a_whole_pixel_pen_is_cv2_exact(ctx):
    image = np.full((480, 640, 3), 120, dtype=np.uint8)
    r = Renderer(ctx, 640, 480, np.array([[0, 1, 2]]))
    try:
        for text in ("A", "g", "7"):
            r.render(FrameRecord(0, 0.0, 0, image=image, face_found=True), RenderOptions(hud_lines=[text]))
            diff = np.abs(r.read_rgb().astype(np.int32) - _composite(image, _cv2_hud([text], 640, 480)))
            assert diff.max() <= 2, text  # 8-bit rounding of the two blends
    finally:
        r.release()


def test_letterboxed_image_lands_on_the_fit_rect_rows(ctx):
    """View 320x301 for a 320x240 image: fit_rect puts it at rows 30..269 counted from the top."""
    image = np.random.default_rng(6).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    r = Renderer(ctx, 320, 301, np.array([[0, 1, 2]]))
    try:
        r.render(FrameRecord(0, 0.0, 0, image=image, face_found=True), RenderOptions(show_hud=False))
        out = r.read_rgb()
    finally:
        r.release()
    x, y, w, h = fit_rect((320, 240), (0, 0, 320, 301))
    assert (x, y, w, h) == (0, 30, 320, 240)
    np.testing.assert_array_equal(out[y:y + h, x:x + w], image)
    bg = np.round(np.array(BACKGROUND_RGB[::-1]) * 255)
    assert (np.abs(out[:y].astype(np.int32) - bg) <= 1).all() and (np.abs(out[y + h:].astype(np.int32) - bg) <= 1).all()


def test_a_mesh_beyond_16_bit_indices_draws_the_same(ctx, sphere):
    """Past 65,536 vertices the index buffers are 32-bit: the sphere drawn from indices above 70,000."""
    v, f = sphere
    offset = 70_000
    big_v = np.zeros((offset + len(v), 3), dtype=np.float32)
    big_v[offset:] = v
    shots = []
    for verts, tris, uvs in ((v, f, None), (big_v, f + offset, np.zeros((len(big_v), 2), np.float32))):
        r = Renderer(ctx, W, H, tris, uvs)
        try:
            r.render(_face_frame(verts, _grey_image(), _pose(1.0, (160.0, 120.0))), RenderOptions(show_hud=False))
            shots.append(r.read_rgb())
        finally:
            r.release()
    np.testing.assert_array_equal(shots[0], shots[1])


@pytest.mark.parametrize("direct_gl", [True, False])
def test_blit_to_another_framebuffer_is_upright(ctx, sphere, monkeypatch, direct_gl):
    """blit_to into a y-up framebuffer (as a window's): the same pixels at the same size, a filtered copy
    at half size; by a flipped framebuffer blit, or by the textured quad where GL cannot be called directly."""
    if not direct_gl:
        monkeypatch.setattr(render_module, "_gl_call", lambda name, *args, **kwargs: False)
    image = np.random.default_rng(7).integers(0, 255, (H, W, 3), dtype=np.uint8)
    r = Renderer(ctx, W, H, sphere[1])
    tw, th = W + 40, H + 20
    target = ctx.simple_framebuffer((tw, th))
    try:
        r.render(_face_frame(sphere[0], image, _pose(1.0, (120.0, 100.0))), RenderOptions(hud_lines=["x"]))
        expected = r.read_rgb()
        for x, y, w, h in ((40, 20, W, H), (10, 4, W // 2, H // 2)):
            target.use()
            target.clear(0.0, 0.0, 0.0, 1.0)
            r.blit_to(target, (x, y, w, h))
            shown = np.frombuffer(target.read(components=3), np.uint8).reshape(th, tw, 3)[::-1, :, ::-1]  # top first, BGR
            top = th - y - h  # GL y counts from the bottom
            got = shown[top:top + h, x:x + w].astype(np.int32)
            outside = np.ones((th, tw), dtype=bool)
            outside[top:top + h, x:x + w] = False
            assert shown[outside].max() == 0, "nothing drawn outside the rectangle"
            if (w, h) == (W, H):
                np.testing.assert_array_equal(got, expected)
            else:  # a half-size linear sample lands between 2x2 texels: their mean
                want = cv2.resize(expected, (w, h), interpolation=cv2.INTER_AREA).astype(np.int32)
                assert np.abs(got - want).mean() < 1.0 and np.abs(got - want).max() <= 3
    finally:
        ctx.screen.use() if ctx.screen is not None else ctx.detect_framebuffer(0).use()
        target.release()
        r.release()


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


def test_multisampling_smooths_the_silhouette_and_the_wire(ctx, sphere, renderer_msaa, renderer_aliased):
    """With MSAA (the default) the sphere's edge and the wire lines get in-between colours (partial
    coverage); without it every pixel is either the image or the head. The head itself is unchanged."""
    image = _grey_image()
    frame = _face_frame(sphere[0], image, _pose(1.0, (160.0, 120.0)))
    assert renderer_msaa.samples == 4 and renderer_aliased.samples == 0
    out = {}
    for name, r in (("aa", renderer_msaa), ("aliased", renderer_aliased)):
        for wire in (False, True):
            r.render(frame, RenderOptions(show_hud=False, wireframe=wire))
            out[name, wire] = r.read_rgb().astype(np.int32)
    yy, xx = np.mgrid[:H, :W]
    dist = np.hypot(xx + 0.5 - 160.0, yy + 0.5 - 120.0)
    rim = np.abs(dist - RADIUS_MM) < 1.0  # pixels the silhouette crosses
    inside = dist < RADIUS_MM - 3

    def blended(img: np.ndarray, mask: np.ndarray) -> float:
        """Share of mask pixels that are neither the image's grey nor the head's own colour inside."""
        head_col = np.median(img[inside], axis=0)
        far_grey = np.abs(img - GREY).max(axis=-1) > 4
        far_head = np.abs(img - head_col).max(axis=-1) > 24
        return float((far_grey & far_head)[mask].mean())

    assert blended(out["aa", False], rim) > blended(out["aliased", False], rim) + 0.1
    assert np.abs(out["aa", False][inside] - out["aliased", False][inside]).mean() < 2.0
    wire_bgr = np.round(np.array(WIRE_RGB[::-1]) * 255)
    partial = lambda img: (np.abs(img - wire_bgr).sum(-1) > 6) & (np.abs(img - GREY).max(-1) > 4)  # noqa: E731
    assert partial(out["aa", True])[inside].mean() > partial(out["aliased", True])[inside].mean()


def test_multisampling_defaults_off_on_a_software_rasteriser(ctx):
    from realtime.render import MSAA_SAMPLES, default_samples

    software = "llvmpipe" in ctx.info["GL_RENDERER"].lower()
    assert default_samples(ctx) == (0 if software else MSAA_SAMPLES)
