"""Drawing the HUD: the text lines of a frame, laid out from a glyph atlas (`realtime.hud_font`) over a
translucent box at the top left of the view (shaders/hud.*.glsl).

`hud_lines` (pure) decides what is shown; `HudLayer` owns the GL side and rewrites its one vertex
buffer only when the text changes, so per frame only a few glyph rectangles are ever written.
"""
from __future__ import annotations

from collections.abc import Sequence

import moderngl
import numpy as np

from engine.real_metrics import face_height_px
from realtime.hud_font import HudFont, hud_box_size, layout_hud, rect_triangles
from realtime.shaders import load_program

NO_FACE_LINE = "no face in frame"
# Forehead to chin below this many pixels, MediaPipe places brows, lids and mouth corners differently
# from a larger view of the same face (a 29-px face's weights differ by 0.26 from a 59-px one's; 57–59
# px against twice that: 0.05–0.06; docs/training.md, "Real faces"): the HUD says so.
SMALL_FACE_PX = 45.0
SMALL_FACE_LINE = "face only {px:.0f} px tall: move closer (expressions unreliable)"
HUD_BOX_ALPHA = 150  # of 255: the translucent black box behind the white HUD text
HUD_RECT_BYTES = 6 * 4 * 4  # one HUD rectangle: 6 vertices of 4 int32


def frame_status(face_found: bool, source_note: str | None, landmarks_px: np.ndarray | None = None) -> str | None:
    """The one status line a frame's HUD carries, decided here only: the source's note when it could
    not deliver a real frame ("camera lost — reconnecting"), else `NO_FACE_LINE` without a face, else
    a note when the face (landmarks_px [478,3]) is under `SMALL_FACE_PX` tall, else None."""
    if source_note:
        return source_note
    if not face_found:
        return NO_FACE_LINE
    if landmarks_px is not None:
        height = float(face_height_px(landmarks_px))
        if height < SMALL_FACE_PX:
            return SMALL_FACE_LINE.format(px=height)
    return None


def hud_lines(lines: Sequence[str], show: bool, status: str | None = None) -> list[str]:
    """The HUD's lines for a frame ([] when hidden): `lines`, then the frame's `status` (`frame_status`)."""
    if not show:
        return []
    return list(lines) + ([status] if status else [])


class HudLayer:
    """The HUD's GL side: the glyph atlas texture, its program and one vertex buffer holding the box
    then the glyphs as pixel-space triangles (shaders/hud.*.glsl); rewritten only when the text changes.
    """

    def __init__(self, ctx: moderngl.Context, font: HudFont, view_size: tuple[int, int]) -> None:
        self.ctx, self.font, self.view_size = ctx, font, view_size
        self.prog = load_program(ctx, "hud")
        self.prog["u_atlas"].value = 0
        self.prog["u_view_size"].value = tuple(float(s) for s in view_size)
        self.prog["u_box_alpha"].value = HUD_BOX_ALPHA / 255.0
        atlas = np.ascontiguousarray(font.atlas)
        self.atlas = ctx.texture((atlas.shape[1], atlas.shape[0]), 1, atlas.tobytes(), alignment=1)
        self.atlas.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self.buf = ctx.buffer(reserve=64 * HUD_RECT_BYTES, dynamic=True)
        self.vao = ctx.vertex_array(self.prog, [(self.buf, "2i 2i", "in_pixel", "in_texel_offset")])
        self.key: tuple[str, ...] | None = None
        self.glyph_count = 0

    def update(self, lines: list[str]) -> None:
        """Lay out `lines` and upload them (a no-op when they did not change since the last call)."""
        key = tuple(lines)
        if key == self.key:
            return
        w, h = hud_box_size(lines, self.font, self.view_size)
        rects = np.concatenate([np.array([[0, 0, w, h, 0, 0]], dtype=np.int32), layout_hud(lines, self.font)])
        data = rect_triangles(rects)
        if data.nbytes > self.buf.size:
            self.buf.orphan(2 * data.nbytes)
        self.buf.write(data)
        self.key, self.glyph_count = key, rects.shape[0] - 1

    def draw(self) -> None:
        """Blend the box, then the text over it, into the bound framebuffer (whole-view viewport)."""
        ctx, prog = self.ctx, self.prog
        ctx.enable(moderngl.BLEND)
        ctx.blend_func = moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA  # the shader writes premultiplied colour
        self.atlas.use(0)
        prog["u_box"].value = True
        self.vao.render(moderngl.TRIANGLES, vertices=6)
        if self.glyph_count:
            prog["u_box"].value = False
            self.vao.render(moderngl.TRIANGLES, vertices=6 * self.glyph_count, first=6)
        ctx.disable(moderngl.BLEND)

    def release(self) -> None:
        for obj in (self.vao, self.buf, self.atlas, self.prog):
            obj.release()
