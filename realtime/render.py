"""ModernGL renderer: the lit head over (or beside) the camera image, landmarks and a text HUD.

One `Renderer` owns its GL objects and an offscreen framebuffer of the view size; `render(frame,
options)` draws one `FrameRecord` into it, `read_rgb()` reads it back for OpenCV and `blit_to()`
copies it to a window. Shaders live in the repository's `shaders/*.glsl` and are compiled once per
renderer; per frame only buffers, the camera texture and uniforms are written, from preallocated
arrays.

Frames (docs/architecture.md): head vertices are millimetres in the head frame; `HeadPose` maps head
directions to the camera frame (x right, y up, z to the viewer) and places the head origin at
`center_px` with `scale_px_per_mm`. Overlay mode draws the head with exactly that scaled orthographic
camera, so it covers the tracked face; the GPU applies it as one matrix.

The framebuffer is stored **top row first** (OpenCV's order): every draw into it negates clip-space y
(`flip_clip_y`), so GL window y is the picture row. The camera image is written without a flip, the
read-back needs no flip (one channel shuffle to BGR), and `blit_to` turns the view upright for a window.

The head is drawn with back faces culled (half the raster work on Mesa llvmpipe) and lit per vertex
(shaders/head.vert.glsl: its triangles are a few pixels across); its openings (eyes, mouth, neck) are
closed by dark caps fanned around each hole so nothing shows through. The HUD is drawn from a glyph
atlas (`hud_font`, `layout_hud`): per frame only a few glyph rectangles are written.

The pure helpers have no GL and are tested on their own: here `fit_rect`, `overlay_transform`,
`side_transform`, `flip_clip_y`, `image_to_ndc`; mesh helpers (normals, caps, winding) in
`realtime/mesh_geometry.py`; the HUD's glyph atlas and layout in `realtime/hud_font.py`.
"""
from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import moderngl
import numpy as np

from engine.errors import UserError
from realtime.hud_font import HudFont, hud_box_size, hud_font, layout_hud, rect_triangles
from realtime.mesh_geometry import VertexNormals, hole_caps, signed_volume, unique_edges, winding_is_consistent
from realtime.record import FrameRecord, HeadPose

SHADER_DIR = Path(__file__).resolve().parent.parent / "shaders"
LAYOUTS = ("overlay", "side")
NO_FACE_LINE = "no face"

BACKGROUND_RGB = (0.07, 0.08, 0.09)
SKIN_ALBEDO = (0.86, 0.66, 0.55)
CAP_ALBEDO = (0.16, 0.07, 0.07)  # the closed eye/mouth openings: dark, shading into the skin at the rim
WIRE_RGB = (0.35, 1.0, 0.55)
LANDMARK_RGB = (0.2, 0.9, 1.0)
IRIS_RGB = (1.0, 0.3, 0.3)
OVERLAY_DEPTH_MM = 600.0  # head-frame depth range mapped to NDC z in overlay mode (head is ~300 mm)
WIRE_DEPTH_BIAS = 2e-3  # NDC units; lifts the wire lines above the depth pre-pass
MSAA_SAMPLES = 4  # multisampling of the head on a GPU (capped at the context's GL_MAX_SAMPLES)
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast")  # where MSAA triples the render time: off by default


def default_samples(ctx: moderngl.Context) -> int:
    """`MSAA_SAMPLES` on a GPU, 0 on a software rasteriser (Mesa llvmpipe: 11 → 32 ms a frame at
    660×540 measured here)."""
    name = str(ctx.info.get("GL_RENDERER", "")).lower()
    return 0 if any(s in name for s in SOFTWARE_RENDERERS) else MSAA_SAMPLES
SIDE_FILL = 0.9  # fraction of the side panel's smaller side covered by the head's diameter

GL_READ_FRAMEBUFFER, GL_COLOR_BUFFER_BIT, GL_NEAREST, GL_LINEAR = 0x8CA8, 0x4000, 0x2600, 0x2601  # for _gl_call

HUD_BOX_ALPHA = 150  # of 255: the translucent black box behind the white HUD text
HUD_RECT_BYTES = 6 * 4 * 4  # one HUD rectangle: 6 vertices of 4 int32


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


# ---------------------------------------------------------------------------------------------
# Pure compute (no GL)
# ---------------------------------------------------------------------------------------------

def fit_rect(content_wh: tuple[int, int], box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Largest rectangle of the content's aspect ratio centred in `box`.

    box and result: (x, y, width, height) in pixels (any y convention: the result is centred).
    """
    cw, ch = content_wh
    bx, by, bw, bh = box
    k = min(bw / cw, bh / ch)
    w, h = max(1, int(round(cw * k))), max(1, int(round(ch * k)))
    return bx + (bw - w) // 2, by + (bh - h) // 2, w, h


def _mirror_sign(mirror: bool) -> float:
    return -1.0 if mirror else 1.0


def overlay_transform(pose: HeadPose, image_wh: tuple[int, int], mirror: bool = False,
                      depth_mm: float = OVERLAY_DEPTH_MM) -> tuple[np.ndarray, np.ndarray]:
    """Scaled orthographic camera of the tracked pose, for a viewport that shows the whole image.

    A head-frame point v (mm) lands at image pixel x = cx + s·(Rv)_x, y = cy − s·(Rv)_y (y down),
    which maps to NDC x = ±(2x/W − 1) (− when mirrored), y = 1 − 2y/H, z = −(Rv)_z / depth_mm
    (nearer is smaller). Returns (mvp [4,4] float32 row-major, normal matrix [3,3] float32 taking
    head directions to the displayed view space).
    """
    w, h = image_wh
    r = np.asarray(pose.rotation, dtype=np.float64)
    s = float(pose.scale_px_per_mm)
    cx, cy = (float(c) for c in pose.center_px)
    m = _mirror_sign(mirror)
    mvp = np.zeros((4, 4), dtype=np.float64)
    mvp[0, :3] = m * (2.0 * s / w) * r[0]
    mvp[0, 3] = m * (2.0 * cx / w - 1.0)
    mvp[1, :3] = (2.0 * s / h) * r[1]
    mvp[1, 3] = 1.0 - 2.0 * cy / h
    mvp[2, :3] = -r[2] / depth_mm
    mvp[3, 3] = 1.0
    normal = np.diag([m, 1.0, 1.0]) @ r
    return mvp.astype(np.float32), normal.astype(np.float32)


def side_transform(rotation: np.ndarray, panel_wh: tuple[int, int], radius_mm: float,
                   mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Frontal orthographic view of the head (origin at the panel centre) turned by `rotation`.

    The head's bounding sphere (radius_mm about the head-frame origin) fills SIDE_FILL of the panel's
    smaller side. Returns (mvp [4,4] float32 row-major, normal matrix [3,3] float32).
    """
    w, h = panel_wh
    r = np.asarray(rotation, dtype=np.float64)
    k = SIDE_FILL * 0.5 * min(w, h) / max(radius_mm, 1e-6)  # px per mm
    m = _mirror_sign(mirror)
    mvp = np.zeros((4, 4), dtype=np.float64)
    mvp[0, :3] = m * (2.0 * k / w) * r[0]
    mvp[1, :3] = (2.0 * k / h) * r[1]
    mvp[2, :3] = -r[2] / (2.0 * max(radius_mm, 1e-6))
    mvp[3, 3] = 1.0
    normal = np.diag([m, 1.0, 1.0]) @ r
    return mvp.astype(np.float32), normal.astype(np.float32)


def flip_clip_y(mvp: np.ndarray) -> np.ndarray:
    """The same transform with clip-space y negated ([4,4] float32 row-major): for a top-row-first
    framebuffer, where GL window y is the picture row. Negating y reverses the on-screen winding."""
    out = np.array(mvp, dtype=np.float32)
    out[1] = -out[1]
    return out


def image_to_ndc(image_wh: tuple[int, int], mirror: bool = False) -> tuple[float, float, float, float]:
    """(sx, sy, ox, oy) with NDC = pixel·(sx, sy) + (ox, oy) for a viewport showing the image."""
    w, h = image_wh
    m = _mirror_sign(mirror)
    return 2.0 * m / w, -2.0 / h, -m, 1.0


GL_LIBRARIES = ("libOpenGL.so.0", "libGL.so.1", "libGL.so")


@functools.lru_cache(maxsize=2)
def _gl_library(releases_gil: bool = False) -> ctypes.CDLL | None:
    """The system's GL library, for the calls moderngl does not expose (glFlush, glFinish, and
    glBlitFramebuffer with rectangles), or None where none can be loaded (then they are skipped or
    replaced). Through GLVND (libOpenGL) calls act on whichever context is current. As a PyDLL
    (default) calls keep the GIL, right for calls that return at once; as a CDLL (releases_gil) ctypes
    releases the GIL around them, for calls that wait, so the tracker's thread runs on meanwhile."""
    loader = ctypes.CDLL if releases_gil else ctypes.PyDLL
    for name in GL_LIBRARIES:
        try:
            return loader(name)
        except OSError:
            continue
    return None


def _gl_call(name: str, *args: int, releases_gil: bool = False) -> bool:
    """Call the GL entry point `name` (integer arguments) on the current context; False if unavailable."""
    library = _gl_library(releases_gil)
    function = getattr(library, name, None) if library is not None else None
    if function is None:
        return False
    function(*args)
    return True


def _gl_finish() -> None:
    """glFinish on the current context with the GIL released (skipped without the library: the
    read-back that follows then waits inside moderngl instead)."""
    _gl_call("glFinish", releases_gil=True)


def _gl_flush() -> None:
    """glFlush on the current context: queued GL work starts now, nothing waits (a no-op without the library)."""
    _gl_call("glFlush")


@functools.lru_cache(maxsize=None)
def shader_source(name: str) -> str:
    """Text of `shaders/<name>.glsl`, read once per process."""
    path = SHADER_DIR / f"{name}.glsl"
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"shader {path} is missing or unreadable ({exc.strerror}); "
                        "restore the repository's shaders/ folder") from None


def load_program(ctx: moderngl.Context, name: str, defines: tuple[str, ...] = ()) -> moderngl.Program:
    """Compile `shaders/<name>.vert.glsl` + `shaders/<name>.frag.glsl` into a program; each name in
    `defines` becomes a `#define NAME 1` line after the `#version` line (variants of one source)."""

    def source(stage: str) -> str:
        version, _, body = shader_source(f"{name}.{stage}").partition("\n")
        return version + "\n" + "".join(f"#define {d} 1\n" for d in defines) + body

    return ctx.program(vertex_shader=source("vert"), fragment_shader=source("frag"))


# ---------------------------------------------------------------------------------------------
# The renderer
# ---------------------------------------------------------------------------------------------

def create_offscreen_context() -> moderngl.Context:
    """A standalone OpenGL ≥ 3.3 context through EGL (no display needed); UserError if impossible."""
    try:
        ctx = moderngl.create_standalone_context(backend="egl")
    except Exception as exc:  # moderngl/glcontext raise plain Exception subclasses for missing libraries
        raise UserError(f"cannot create an offscreen OpenGL context through EGL ({exc}); install Mesa EGL "
                        "(Debian: libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1) or use --no-render") from None
    if ctx.version_code < 330:
        ctx.release()
        raise UserError(f"the EGL OpenGL context is version {ctx.version_code}, 330 is needed; update Mesa")
    return ctx


class _HudLayer:
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
        self._hud: _HudLayer | None = None
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
        _gl_flush()
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
            _gl_flush()  # the head rasterises while the HUD is laid out
        if options.show_landmarks and frame.landmarks_px is not None and image_rect is not None:
            self._draw_landmarks(frame.landmarks_px, (image.shape[1], image.shape[0]), image_rect, options.mirror)
        lines = self._hud_lines(frame, options)
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

    def _hud_lines(self, frame: FrameRecord, options: RenderOptions) -> list[str]:
        """The HUD's lines for this frame ([] when hidden): the options' lines, plus 'no face' without one."""
        if not options.show_hud:
            return []
        lines = list(options.hud_lines)
        if not frame.face_found and not any(NO_FACE_LINE in t.lower() for t in lines):
            lines.append(NO_FACE_LINE)
        return lines

    def _hud_layer(self) -> _HudLayer:
        if self._hud is None:
            self._hud = _HudLayer(self.ctx, hud_font(self.height), (self.width, self.height))
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
        _gl_finish()  # wait for the raster threads with the GIL released; the read below is then a copy
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
