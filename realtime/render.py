"""ModernGL renderer: the lit head over (or beside) the camera image, landmarks and a text HUD.

One `Renderer` owns its GL objects and an offscreen framebuffer of the view size; `render(frame,
options)` draws one `FrameRecord` into it, `read_rgb()` reads it back for OpenCV and `blit_to()`
copies it to a window. Shaders live in the repository's `shaders/*.glsl` and are compiled once per
renderer (`realtime/shaders.py`); per frame only buffers, the camera texture and uniforms are
written, from preallocated arrays.

Frames (docs/architecture.md): head vertices are millimetres in the head frame; `HeadPose` maps head
directions to the camera frame and places the head origin at `center_px` with `scale_px_per_mm`.
Overlay mode draws the head with exactly that scaled orthographic camera (`overlay_transform`), so it
covers the tracked face; the GPU applies it as one matrix.

The framebuffer is stored **top row first** (OpenCV's order): every draw into it negates clip-space y
(`flip_clip_y`), so GL window y is the picture row. The camera image is written without a flip, the
read-back needs no flip (one channel shuffle to BGR), and `blit_to` turns the view upright for a window.

The head is drawn with back faces culled (half the raster work on Mesa llvmpipe) and lit per vertex
(shaders/head.vert.glsl: its triangles are a few pixels across); its openings (eyes, mouth, neck) are
closed by dark caps fanned around each hole so nothing shows through.

The parts, each tested on its own:
- `realtime/view_transforms.py`: the pure transforms (`fit_rect`, `overlay_transform`,
  `side_transform`, `flip_clip_y`, `image_to_ndc`; numpy only);
- `realtime/gl_loader.py`: the offscreen EGL context and direct GL calls (glFlush, glFinish, blits);
- `realtime/shaders.py`: reading and compiling `shaders/*.glsl`;
- `realtime/hud.py`: the HUD's lines and its GL layer, from the glyph atlas of `realtime/hud_font.py`;
- `realtime/mesh_geometry.py`: normals, hole caps, winding.
Their public names are re-exported here, so `from realtime.render import fit_rect` keeps working.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import moderngl
import numpy as np

from engine.errors import UserError
from realtime.gl_loader import (GL_COLOR_BUFFER_BIT, GL_LINEAR, GL_NEAREST, GL_READ_FRAMEBUFFER,
                                create_offscreen_context, gl_finish, gl_flush)
from realtime.gl_loader import gl_call as _gl_call  # looked up here by blit_to (tests replace it for the fallback)
from realtime.hud import HUD_BOX_ALPHA, NO_FACE_LINE, HudLayer, frame_status, hud_lines
from realtime.hud_font import hud_font
from realtime.mesh_geometry import VertexNormals, hole_caps, signed_volume, unique_edges, winding_is_consistent
from realtime.record import FrameRecord
from realtime.shaders import SHADER_DIR, load_program, shader_source
from realtime.view_transforms import (OVERLAY_DEPTH_MM, SIDE_FILL, fit_rect, flip_clip_y, image_to_ndc,
                                      overlay_transform, side_transform)

__all__ = ["BACKGROUND_RGB", "HUD_BOX_ALPHA", "LAYOUTS", "MSAA_SAMPLES", "NO_FACE_LINE", "OVERLAY_DEPTH_MM",
           "RenderOptions", "Renderer", "SHADER_DIR", "SIDE_FILL", "WIRE_RGB", "create_offscreen_context",
           "default_samples", "fit_rect", "flip_clip_y", "image_to_ndc", "load_program", "overlay_transform",
           "shader_source", "side_transform"]

LAYOUTS = ("overlay", "side")

BACKGROUND_RGB = (0.07, 0.08, 0.09)
SKIN_ALBEDO = (0.86, 0.66, 0.55)
CAP_ALBEDO = (0.16, 0.07, 0.07)  # the closed eye/mouth openings: dark, shading into the skin at the rim
WIRE_RGB = (0.35, 1.0, 0.55)
LANDMARK_RGB = (0.2, 0.9, 1.0)
IRIS_RGB = (1.0, 0.3, 0.3)
WIRE_DEPTH_BIAS = 2e-3  # NDC units; lifts the wire lines above the depth pre-pass
MSAA_SAMPLES = 4  # multisampling of the head on a GPU (capped at the context's GL_MAX_SAMPLES)
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast")  # where MSAA triples the render time: off by default


def default_samples(ctx: moderngl.Context) -> int:
    """`MSAA_SAMPLES` on a GPU, 0 on a software rasteriser (Mesa llvmpipe: 11 → 32 ms a frame at
    660×540 measured here)."""
    name = str(ctx.info.get("GL_RENDERER", "")).lower()
    return 0 if any(s in name for s in SOFTWARE_RENDERERS) else MSAA_SAMPLES


@dataclass
class RenderOptions:
    """How to draw a frame. Mutable: the window's keys toggle fields between frames.

    layout: 'overlay' (head drawn over the camera image at the tracked pose) or 'side' (camera image
        in the left half, the head in the right half seen from the front, turned by the tracked
        rotation).
    wireframe: draw the head's edges (hidden lines removed) instead of the lit surface.
    show_landmarks: draw the tracker's landmarks as points over the camera image.
    mirror: flip the whole view horizontally (selfie view).
    show_hud: draw `hud_lines` at the top left.
    """

    layout: str = "overlay"
    wireframe: bool = False
    show_landmarks: bool = False
    mirror: bool = False
    show_hud: bool = True
    hud_lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise UserError(f"unknown layout {self.layout!r}; choose one of: {', '.join(LAYOUTS)}")


class Renderer:
    """Draws FrameRecords into its own framebuffer of (width, height) pixels.

    ctx: a moderngl context (a window's, or `Renderer.offscreen`'s own EGL one).
    triangles: [F,3] int head topology (static). uvs: optional [V,2] texture coordinates; they fix the
    vertex count V and are kept for a future skin texture (not drawn yet). Without uvs,
    V = triangles.max() + 1.
    """

    def __init__(self, ctx: moderngl.Context, width: int, height: int, triangles: np.ndarray,
                 uvs: np.ndarray | None = None, *, owns_context: bool = False, samples: int | None = None) -> None:
        width, height = int(width), int(height)
        samples = default_samples(ctx) if samples is None else int(samples)
        self.samples = max(0, min(samples, int(ctx.info.get("GL_MAX_SAMPLES", 0) or 0)))
        if width < 16 or height < 16:
            raise UserError(f"render size {width}x{height} is too small; use at least 16x16")
        max_size = int(ctx.info["GL_MAX_TEXTURE_SIZE"])
        if width > max_size or height > max_size:
            raise UserError(f"render size {width}x{height} exceeds this GPU's limit of {max_size}; "
                            "use a smaller --view-size")
        tri = np.ascontiguousarray(triangles, dtype=np.int32)
        if tri.ndim != 2 or tri.shape[1] != 3 or tri.shape[0] == 0:
            raise ValueError(f"triangles must be [F,3] int, got shape {tri.shape}")
        n_vert = int(tri.max()) + 1
        if uvs is not None:
            uvs = np.asarray(uvs, dtype=np.float32)
            if uvs.ndim != 2 or uvs.shape[1] != 2 or uvs.shape[0] < n_vert:
                raise ValueError(f"uvs must be [V,2] with V ≥ {n_vert}, got shape {uvs.shape}")
            n_vert = uvs.shape[0]
        if tri.min() < 0:
            raise ValueError("triangles hold negative vertex indices")
        self.ctx, self.width, self.height = ctx, width, height
        self.triangles, self.uvs, self.num_vertices = tri, uvs, n_vert
        self._owns_context = owns_context
        self._released = False
        self._normals = VertexNormals(tri, n_vert)
        # The head's openings (eyes, mouth, neck) are closed by dark caps drawn with it, so the culled
        # surface never shows a see-through hole; cap centres follow the vertices every frame.
        self._cap_tris, self._cap_mean = hole_caps(tri, n_vert)
        self._all_tris = np.concatenate([tri, self._cap_tris])
        n_all = n_vert + self._cap_mean.shape[0]
        self._positions = np.zeros((n_all, 3), dtype=np.float32)  # head vertices, then the cap centres
        self._vertex_normals = np.zeros((n_all, 3), dtype=np.float32)
        self._radius_mm: float | None = None
        # Back-face culling halves the raster work on llvmpipe; it needs a consistently wound mesh.
        # None = two-sided (no culling); otherwise the GL face to cull, fixed at the first frame.
        self._consistent = winding_is_consistent(self._all_tris)
        self._cull_face: str | None = None
        self._image_rgba: np.ndarray | None = None  # the camera image converted for upload (reused)
        self._hud: HudLayer | None = None
        self._read_buf = bytearray(width * height * 4)
        self._create_gl_objects()

    def _create_gl_objects(self) -> None:
        """Framebuffer, programs (compiled once), static topology buffers and per-frame buffers."""
        ctx, width, height, tri, n_vert = self.ctx, self.width, self.height, self.triangles, self.num_vertices
        self.color = ctx.texture((width, height), 4)
        self.color.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self._depth = ctx.depth_renderbuffer((width, height))
        self.fbo = ctx.framebuffer(color_attachments=[self.color], depth_attachment=self._depth)
        # Multisampling: the head is drawn into a multisampled framebuffer (transparent elsewhere),
        # resolved into `_head_tex` — colour premultiplied by each pixel's coverage — and composited
        # over the view with (ONE, ONE_MINUS_SRC_ALPHA): smooth silhouettes and wire lines, and the
        # camera image is never resampled.
        self._head_fbo = self._ms_fbo = None
        if self.samples:
            self._ms_color = ctx.renderbuffer((width, height), 4, samples=self.samples)
            self._ms_depth = ctx.depth_renderbuffer((width, height), samples=self.samples)
            self._ms_fbo = ctx.framebuffer(color_attachments=[self._ms_color], depth_attachment=self._ms_depth)
            self._head_tex = ctx.texture((width, height), 4)
            self._head_fbo = ctx.framebuffer(color_attachments=[self._head_tex])

        # The surface and the hole caps are drawn by two variants of the head shaders: only the caps
        # carry the colour they fade to, so the surface's pixels interpolate one colour (llvmpipe pays
        # per interpolated value on every pixel).
        self._head_prog = load_program(ctx, "head")
        self._cap_prog = load_program(ctx, "head", defines=("CAPS",))
        self._points_prog = load_program(ctx, "points")
        self._quad_prog = load_program(ctx, "quad")
        for prog in (self._head_prog, self._cap_prog):
            prog["u_albedo"].value = SKIN_ALBEDO
            prog["u_color"].value = WIRE_RGB
        self._cap_prog["u_cap_albedo"].value = CAP_ALBEDO
        self._points_prog["u_color"].value = LANDMARK_RGB
        self._points_prog["u_highlight_color"].value = IRIS_RGB
        self._points_prog["u_highlight_from"].value = 468
        self._quad_prog["u_texture"].value = 0

        n_all = self._positions.shape[0]
        self._pos_buf = ctx.buffer(reserve=n_all * 12, dynamic=True)
        self._nrm_buf = ctx.buffer(reserve=n_all * 12, dynamic=True)
        cap_flag = np.zeros(n_all, dtype=np.float32)
        cap_flag[n_vert:] = 1.0
        self._cap_buf = ctx.buffer(cap_flag.tobytes())
        # 16-bit indices where they fit (the head's 3,264): a little less vertex-fetch work on llvmpipe
        index_type = np.uint16 if n_all <= np.iinfo(np.uint16).max + 1 else np.uint32
        index_size = np.dtype(index_type).itemsize
        self._tri_buf = ctx.buffer(self._all_tris.astype(index_type).tobytes())
        self._edge_buf = ctx.buffer(unique_edges(tri).astype(index_type).tobytes())  # the real mesh's edges only
        surface = [(self._pos_buf, "3f", "in_position"), (self._nrm_buf, "3f", "in_normal")]
        # one index buffer: the surface's triangles, then the caps' (drawn from their offset)
        self._head_vao = ctx.vertex_array(self._head_prog, surface, index_buffer=self._tri_buf,
                                          index_element_size=index_size)
        self._cap_vao = ctx.vertex_array(self._cap_prog, surface + [(self._cap_buf, "1f", "in_cap")],
                                         index_buffer=self._tri_buf, index_element_size=index_size)
        self._wire_vao = ctx.vertex_array(self._head_prog, surface, index_buffer=self._edge_buf,
                                          index_element_size=index_size)
        self._lm_buf = ctx.buffer(reserve=478 * 12, dynamic=True)
        self._lm_vao = ctx.vertex_array(self._points_prog, [(self._lm_buf, "3f", "in_position")])
        self._quad_vao = ctx.vertex_array(self._quad_prog, [])

    @classmethod
    def offscreen(cls, width: int, height: int, triangles: np.ndarray, uvs: np.ndarray | None = None,
                  samples: int | None = None) -> "Renderer":
        """A renderer with its own headless EGL context (released with the renderer)."""
        ctx = create_offscreen_context()
        try:
            return cls(ctx, width, height, triangles, uvs, owns_context=True, samples=samples)
        except BaseException:
            ctx.release()
            raise

    # -- per frame --------------------------------------------------------------------------

    def render(self, frame: FrameRecord, options: RenderOptions) -> None:
        """Draw one frame into the framebuffer (see RenderOptions). Nothing is read back.

        Rectangles here are in view pixels from the top-left, which in this top-row-first
        framebuffer are also GL viewport coordinates. Work is flushed to the GL as soon as it is queued,
        so a CPU rasteriser (llvmpipe) clears on its worker threads while this thread converts the
        image and computes the normals, and draws the head while this thread lays out the HUD.
        """
        if self._released:
            raise RuntimeError("render() on a released Renderer")
        self._activate()
        ctx = self.ctx
        self.fbo.use()
        ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND | moderngl.CULL_FACE)
        self.fbo.clear(*BACKGROUND_RGB, 1.0, depth=1.0)
        gl_flush()
        full = (0, 0, self.width, self.height)
        if options.layout == "side":
            half = self.width // 2
            image_box, head_box = (0, 0, half, self.height), (half, 0, self.width - half, self.height)
        else:
            image_box = head_box = full

        image, image_rect = frame.image, None
        if image is not None:
            image_rect = fit_rect((image.shape[1], image.shape[0]), image_box)
            self._prepare_image(image, image_rect, options.mirror)
        head = self._prepare_head(frame, options, head_box, image_rect)

        if image_rect is not None:
            self.color.write(self._image_rgba, viewport=image_rect)
        if head is not None:
            if self._ms_fbo is not None:
                self._ms_fbo.use()
                self._ms_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                self._draw_head(*head, options.wireframe, options.mirror, target=self._ms_fbo)
                ctx.copy_framebuffer(self._head_fbo, self._ms_fbo)  # resolve the samples
                self._composite_head(full)
            else:
                self._draw_head(*head, options.wireframe, options.mirror)
            gl_flush()  # the head rasterises while the HUD is laid out
        if options.show_landmarks and frame.landmarks_px is not None and image_rect is not None:
            self._draw_landmarks(frame.landmarks_px, (image.shape[1], image.shape[0]), image_rect, options.mirror)
        lines = hud_lines(options.hud_lines, options.show_hud, frame_status(frame.face_found, frame.source_note,
                                                                          frame.landmarks_px))
        if lines:
            hud = self._hud_layer()
            hud.update(lines)
            ctx.viewport = full
            hud.draw()
        ctx.viewport = full

    def _prepare_image(self, image: np.ndarray, rect: tuple[int, int, int, int], mirror: bool) -> None:
        """Convert the camera image for `rect` into the reused RGBA array (written into the colour
        texture directly: no sampling pass, llvmpipe-cheap).

        The framebuffer is top row first like the image, so this is one BGR → RGBA conversion; a
        resize (letterboxing) or mirror adds one pass each.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frame.image must be [H,W,3] uint8 BGR, got {image.shape} {image.dtype}")
        x, y, w, h = rect
        if image.shape[:2] != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if w < image.shape[1] else cv2.INTER_LINEAR)
        if mirror:
            image = cv2.flip(image, 1)
        if self._image_rgba is None or self._image_rgba.shape[:2] != (h, w):
            self._image_rgba = np.empty((h, w, 4), dtype=np.uint8)
        cv2.cvtColor(image, cv2.COLOR_BGR2RGBA, dst=self._image_rgba)

    def _prepare_head(self, frame: FrameRecord, options: RenderOptions, head_box: tuple[int, int, int, int],
                      image_rect: tuple[int, int, int, int] | None
                      ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[int, int, int, int]] | None:
        """The head's (transform, viewport) for this frame, with its positions and normals filled in;
        None when no head is drawn."""
        if not (frame.face_found and frame.vertices is not None):
            return None
        verts = np.ascontiguousarray(frame.vertices, dtype=np.float32)
        if verts.shape != (self.num_vertices, 3):
            raise ValueError(f"frame.vertices must be [{self.num_vertices},3], got {verts.shape}")
        if options.layout == "side":
            if self._radius_mm is None:
                self._radius_mm = float(np.linalg.norm(verts, axis=1).max())
            rot = frame.pose.rotation if frame.pose is not None else np.eye(3, dtype=np.float32)
            viewport = head_box
            transform = side_transform(rot, head_box[2:], self._radius_mm, options.mirror)
        elif frame.pose is not None and image_rect is not None:
            viewport = image_rect
            transform = overlay_transform(frame.pose, (frame.image.shape[1], frame.image.shape[0]), options.mirror)
        else:
            return None
        self._update_geometry(verts)
        if self._consistent and self._cull_face is None:
            self._cull_face = "back" if signed_volume(self._positions, self._all_tris) >= 0 else "front"
        return transform, viewport

    def _update_geometry(self, verts: np.ndarray) -> None:
        """Fill the preallocated positions and unit normals [V+L,3] (head vertices, then cap centres)."""
        n = self.num_vertices
        pos, nrm = self._positions, self._vertex_normals
        pos[:n] = verts
        pos[n:] = self._cap_mean @ verts
        self._normals(verts, out=nrm[:n])
        cap = self._cap_mean @ nrm[:n]
        cap /= np.maximum(np.linalg.norm(cap, axis=1, keepdims=True), 1e-12)
        nrm[n:] = cap

    def _hud_layer(self) -> HudLayer:
        if self._hud is None:
            self._hud = HudLayer(self.ctx, hud_font(self.height), (self.width, self.height))
        return self._hud

    def _composite_head(self, full: tuple[int, int, int, int]) -> None:
        """Draw the resolved head texture over the view (premultiplied alpha), texel for pixel."""
        ctx = self.ctx
        self.fbo.use()
        ctx.viewport = full
        ctx.enable(moderngl.BLEND)
        ctx.blend_func = moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA
        self._head_tex.use(0)
        self._quad_prog["u_rect"].value = (-1.0, 1.0, 1.0, -1.0)
        self._quad_prog["u_uv_rect"].value = (0.0, 1.0, 1.0, 0.0)
        self._quad_vao.render(moderngl.TRIANGLE_STRIP, vertices=4)
        ctx.disable(moderngl.BLEND)
        ctx.blend_func = moderngl.DEFAULT_BLENDING

    def _draw_head(self, transform: tuple[np.ndarray, np.ndarray], viewport: tuple[int, int, int, int],
                   wireframe: bool, mirror: bool = False, target: moderngl.Framebuffer | None = None) -> None:
        """Upload this frame's head arrays (`_update_geometry`) and draw the surface and its caps into
        `target` (default: the view's framebuffer)."""
        ctx = self.ctx
        target = target or self.fbo
        mvp, normal_mat = transform
        self._pos_buf.write(self._positions)
        self._nrm_buf.write(self._vertex_normals)
        mvp_gl = np.ascontiguousarray(flip_clip_y(mvp).T)  # GL wants column-major
        normal_gl = np.ascontiguousarray(normal_mat.T)
        for prog in (self._head_prog, self._cap_prog):
            prog["u_mvp"].write(mvp_gl)
            prog["u_normal_mat"].write(normal_gl)
            prog["u_two_sided"].value = self._cull_face is None
            prog["u_depth_bias"].value = 0.0
            prog["u_mode"].value = 0
        ctx.viewport = viewport
        ctx.enable(moderngl.DEPTH_TEST)
        if self._cull_face is not None:
            ctx.enable(moderngl.CULL_FACE)
            ctx.cull_face = self._cull_face
            # the top-row-first flip reverses the on-screen winding, and a mirror reverses it again
            ctx.front_face = "ccw" if mirror else "cw"
        if wireframe:
            # Hidden-line wireframe: depth-only pre-pass of the surface, then the edges over it.
            self._set_color_mask(False, viewport, target)
            self._draw_surface_and_caps()
            self._set_color_mask(True, viewport, target)
            self._head_prog["u_mode"].value = 1
            self._head_prog["u_depth_bias"].value = WIRE_DEPTH_BIAS
            self._wire_vao.render(moderngl.LINES)
        else:
            self._draw_surface_and_caps()
        ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        ctx.front_face = "ccw"

    def _draw_surface_and_caps(self) -> None:
        surface, caps = 3 * self.triangles.shape[0], 3 * self._cap_tris.shape[0]
        self._head_vao.render(moderngl.TRIANGLES, vertices=surface)
        if caps:
            self._cap_vao.render(moderngl.TRIANGLES, vertices=caps, first=surface)

    def _set_color_mask(self, on: bool, viewport: tuple[int, int, int, int], target: moderngl.Framebuffer) -> None:
        # moderngl applies a framebuffer's colour mask when it is bound; binding resets the viewport.
        target.color_mask = (on, on, on, on)
        target.use()
        self.ctx.viewport = viewport

    def _draw_landmarks(self, landmarks_px: np.ndarray, image_wh: tuple[int, int],
                        rect: tuple[int, int, int, int], mirror: bool) -> None:
        lm = np.ascontiguousarray(landmarks_px[:478], dtype=np.float32)
        self._lm_buf.write(lm)
        self.ctx.viewport = rect
        self.ctx.point_size = float(max(2.0, round(rect[3] / 240.0)))
        sx, sy, ox, oy = image_to_ndc(image_wh, mirror)
        self._points_prog["u_image_to_ndc"].value = (sx, -sy, ox, -oy)  # top-row-first framebuffer
        self._lm_vao.render(moderngl.POINTS, vertices=lm.shape[0])

    def _activate(self) -> None:
        """Make an owned (offscreen) context current: several renderers may live in one thread."""
        if self._owns_context:
            self.ctx.__enter__()

    # -- output -----------------------------------------------------------------------------

    def read_rgb(self) -> np.ndarray:
        """The rendered view as a new [H,W,3] uint8 array in **BGR** order (OpenCV's), top row first."""
        if self._released:
            raise RuntimeError("read_rgb() on a released Renderer")
        self._activate()
        gl_finish()  # wait for the raster threads with the GIL released; the read below is then a copy
        # RGBA reads are the fast path on Mesa (RGB makes it repack on the CPU); the rows are already
        # top first, so one channel shuffle remains.
        self.fbo.read_into(self._read_buf, components=4, alignment=1)
        rgba = np.frombuffer(self._read_buf, dtype=np.uint8).reshape(self.height, self.width, 4)
        return cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR)

    def blit_to(self, target: moderngl.Framebuffer, viewport: tuple[int, int, int, int]) -> None:
        """Draw the rendered view upright into `viewport` (x, y, w, h; GL pixels, y up) of another
        framebuffer (a window's): texel for pixel at the same size, filtered when scaled.

        A framebuffer blit with the destination rows reversed (the view is stored top row first); where
        the GL library cannot be called directly, a textured quad does the same (slower on llvmpipe).
        """
        x, y, w, h = viewport
        same_size = (w, h) == (self.width, self.height)
        target.use()
        if _gl_call("glBindFramebuffer", GL_READ_FRAMEBUFFER, self.fbo.glo):
            _gl_call("glBlitFramebuffer", 0, 0, self.width, self.height, x, y + h, x + w, y, GL_COLOR_BUFFER_BIT,
                     GL_NEAREST if same_size else GL_LINEAR)
            target.use()  # read and draw bindings back to what moderngl tracks
            return
        self.ctx.viewport = viewport
        self.ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND | moderngl.CULL_FACE)
        self.color.filter = (moderngl.NEAREST, moderngl.NEAREST) if same_size else (moderngl.LINEAR, moderngl.LINEAR)
        self.color.use(0)
        self._quad_prog["u_rect"].value = (-1.0, 1.0, 1.0, -1.0)
        self._quad_prog["u_uv_rect"].value = (0.0, 0.0, 1.0, 1.0)  # texture row 0 is the view's top row
        self._quad_vao.render(moderngl.TRIANGLE_STRIP, vertices=4)

    def release(self) -> None:
        """Free every GL object (and the context if this renderer created it). Idempotent."""
        if self._released:
            return
        self._released = True
        if not self._owns_context and self.ctx.fbo is self.fbo:
            # Never leave a deleted framebuffer bound: moderngl re-binds it after creating the next one.
            (self.ctx.screen or self.ctx.detect_framebuffer(0)).use()
        if self._hud is not None:
            self._hud.release()
        for obj in (self._head_vao, self._cap_vao, self._wire_vao, self._lm_vao, self._quad_vao, self._pos_buf,
                    self._nrm_buf, self._cap_buf, self._tri_buf, self._edge_buf, self._lm_buf, self.fbo, self.color,
                    self._depth, self._head_prog, self._cap_prog, self._points_prog, self._quad_prog):
            obj.release()
        if self._owns_context:
            self.ctx.release()

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
