"""The renderer's parts that need no framebuffer: view transforms, HUD lines, shader sources, GL calls."""
from __future__ import annotations

import numpy as np
import pytest

from engine.errors import UserError
from realtime.hud import NO_FACE_LINE, SMALL_FACE_LINE, SMALL_FACE_PX, frame_status, hud_lines
from realtime.shaders import SHADER_DIR, shader_source, with_defines
from realtime.view_transforms import (OVERLAY_DEPTH_MM, SIDE_FILL, image_to_ndc, mirror_sign, overlay_transform,
                                      side_transform)
from realtime.record import HeadPose


def _pose(scale: float, center: tuple[float, float]) -> HeadPose:
    return HeadPose(rotation=np.eye(3, dtype=np.float32), translation_mm=np.zeros(3, dtype=np.float32),
                    scale_px_per_mm=scale, center_px=np.asarray(center, dtype=np.float32))


def _ndc(image_wh, mirror, px):
    sx, sy, ox, oy = image_to_ndc(image_wh, mirror)
    return px[0] * sx + ox, px[1] * sy + oy


def test_image_to_ndc_maps_the_corners():
    assert _ndc((400, 200), False, (0, 0)) == (-1.0, 1.0)  # top left, y down → NDC y up
    assert _ndc((400, 200), False, (400, 200)) == (1.0, -1.0)
    assert _ndc((400, 200), True, (0, 0)) == (1.0, 1.0)  # mirrored: the left edge shows on the right
    assert _ndc((400, 200), True, (400, 200)) == (-1.0, -1.0)
    assert mirror_sign(True) == -1.0 and mirror_sign(False) == 1.0


def test_overlay_depth_is_nearer_smaller_within_the_depth_range():
    mvp, _ = overlay_transform(_pose(1.0, (200.0, 100.0)), (400, 200))
    near = mvp @ np.array([0, 0, OVERLAY_DEPTH_MM / 2, 1.0])  # towards the viewer (+z)
    far = mvp @ np.array([0, 0, -OVERLAY_DEPTH_MM / 2, 1.0])
    assert near[2] == pytest.approx(-0.5) and far[2] == pytest.approx(0.5)
    assert mvp.dtype == np.float32 and mvp.shape == (4, 4)


def test_side_transform_mirror_flips_x_only():
    mvp, normal = side_transform(np.eye(3), (100, 200), radius_mm=10.0)
    mvp_m, normal_m = side_transform(np.eye(3), (100, 200), radius_mm=10.0, mirror=True)
    np.testing.assert_allclose(mvp_m[0], -mvp[0])
    np.testing.assert_allclose(mvp_m[1:], mvp[1:])
    np.testing.assert_allclose(normal_m, np.diag([-1.0, 1.0, 1.0]) @ normal)
    right = mvp @ np.array([10.0, 0, 0, 1])
    assert right[0] == pytest.approx(SIDE_FILL)  # the narrow side (width) bounds the sphere


def test_hud_lines_end_with_the_frame_status_and_hide():
    assert frame_status(True, None) is None
    assert frame_status(False, None) == NO_FACE_LINE
    assert frame_status(False, "camera lost — reconnecting") == "camera lost — reconnecting"
    assert hud_lines(["30 fps"], show=True) == ["30 fps"]
    assert hud_lines(["30 fps"], show=True, status=NO_FACE_LINE) == ["30 fps", NO_FACE_LINE]
    assert hud_lines(["30 fps"], show=False, status=NO_FACE_LINE) == []
    lines = ["a"]
    hud_lines(lines, show=True, status="b")
    assert lines == ["a"]  # the caller's list is not changed


def test_a_face_too_small_to_read_says_so():
    lm = np.zeros((478, 3), np.float32)
    lm[10], lm[152] = (100.0, 80.0, 5.0), (110.0, 80.0 + np.sqrt(40.0 ** 2 - 10.0 ** 2), -3.0)  # 40 px, tilted
    assert frame_status(True, None, lm) == SMALL_FACE_LINE.format(px=40.0)
    lm[152, 1] = 80.0 + np.sqrt(SMALL_FACE_PX ** 2 - 10.0 ** 2) + 0.01
    assert frame_status(True, None, lm) is None
    assert frame_status(False, None, lm) == NO_FACE_LINE and frame_status(True, "camera lost", lm) == "camera lost"


@pytest.mark.slow
def test_the_real_demo_clip_reads_as_small_only_at_half_size():
    """carphone's face is ~59 px tall (its weights hold within 0.06 at twice the size); at ×0.5, 29 px."""
    from tests.real_support import real_clip

    from realtime import realdata

    real_clip("carphone")
    for resize, small in ((1.0, False), (0.5, True)):
        t = realdata.tracked("carphone", resize=resize)
        statuses = [frame_status(True, None, t.landmarks_px[i]) for i in np.flatnonzero(t.found)]
        assert np.mean([s is not None for s in statuses]) == (1.0 if small else 0.0)


def test_shader_defines_follow_the_version_line():
    src = "#version 330 core\nvoid main() {}\n"
    assert with_defines(src) == src
    assert with_defines(src, ("CAPS", "X")) == "#version 330 core\n#define CAPS 1\n#define X 1\nvoid main() {}\n"
    for name in ("head", "hud", "points", "quad"):
        for stage in ("vert", "frag"):
            assert shader_source(f"{name}.{stage}").startswith("#version"), (name, stage)
    assert (SHADER_DIR / "head.vert.glsl").is_file()


def test_a_missing_shader_is_a_user_error():
    with pytest.raises(UserError, match="shaders/ folder"):
        shader_source("no-such-shader.vert")


def test_gl_call_of_an_unknown_entry_point_is_false():
    from realtime.gl_loader import gl_call
    assert gl_call("glNoSuchEntryPointAnywhere") is False
