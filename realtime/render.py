"""ModernGL renderer: the lit head over (or beside) the camera image, landmarks and a text HUD.

One `Renderer` owns its GL objects and an offscreen framebuffer of the view size; `render(frame,
options)` draws one `FrameRecord` into it, `read_rgb()` reads it back for OpenCV and `blit_to()`
copies it to a window. Shaders live in the repository's `shaders/*.glsl` and are compiled once per
renderer; per frame only buffers, the camera texture and uniforms are written.

Frames (docs/architecture.md): head vertices are millimetres in the head frame; `HeadPose` maps head
directions to the camera frame (x right, y up, z to the viewer) and places the head origin at
`center_px` with `scale_px_per_mm`. Overlay mode draws the head with exactly that scaled orthographic
camera, so it covers the tracked face; the GPU applies it as one matrix.

The head is drawn with back faces culled (half the raster work on Mesa llvmpipe); its openings (eyes,
mouth, neck) are closed by dark caps fanned around each hole so nothing shows through.

The pure helpers (`vertex_normals`, `winding_is_consistent`, `signed_volume`, `boundary_loops`,
`hole_caps`, `unique_edges`, `fit_rect`, `overlay_transform`, `side_transform`, `image_to_ndc`,
`draw_hud`) have no GL and are tested on their own.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import moderngl
import numpy as np
import scipy.sparse

from engine.errors import UserError
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
SIDE_FILL = 0.9  # fraction of the side panel's smaller side covered by the head's diameter


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

def vertex_incidence(triangles: np.ndarray, num_vertices: int) -> scipy.sparse.csr_matrix:
    """[V,F] sparse matrix with a 1 where vertex v is a corner of triangle f (for normal sums)."""
    tri = np.asarray(triangles, dtype=np.int64)
    f = tri.shape[0]
    rows = tri.reshape(-1)
    cols = np.repeat(np.arange(f), 3)
    data = np.ones(rows.shape[0], dtype=np.float32)
    return scipy.sparse.csr_matrix((data, (rows, cols)), shape=(num_vertices, f))


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray,
                   incidence: scipy.sparse.csr_matrix | None = None) -> np.ndarray:
    """Area-weighted unit vertex normals.

    vertices [V,3] float (any unit), triangles [F,3] int (counter-clockwise = outward), optional
    precomputed `vertex_incidence(triangles, V)`. Returns [V,3] float32; vertices in no triangle
    (or only degenerate ones) get (0, 0, 1).
    """
    v = np.asarray(vertices, dtype=np.float32)
    tri = np.asarray(triangles)
    a, b, c = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]
    face_n = np.cross(b - a, c - a)  # length = 2 × area: area weighting for free
    if incidence is None:
        incidence = vertex_incidence(tri, v.shape[0])
    n = np.asarray(incidence @ face_n, dtype=np.float32)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    ok = length[:, 0] > 1e-12
    n[ok] /= length[ok]
    n[~ok] = (0.0, 0.0, 1.0)
    return n


def winding_is_consistent(triangles: np.ndarray) -> bool:
    """Whether every directed edge occurs at most once (neighbouring triangles agree on orientation)."""
    tri = np.asarray(triangles, dtype=np.int64)
    directed = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]], axis=0)
    return np.unique(directed, axis=0).shape[0] == directed.shape[0]


def signed_volume(vertices: np.ndarray, triangles: np.ndarray) -> float:
    """Σ a·(b×c)/6 over triangles: > 0 when counter-clockwise triangles face outwards (units³)."""
    v = np.asarray(vertices, dtype=np.float64)
    tri = np.asarray(triangles)
    return float(np.einsum("ij,ij->", v[tri[:, 0]], np.cross(v[tri[:, 1]], v[tri[:, 2]])) / 6.0)


def boundary_loops(triangles: np.ndarray) -> list[np.ndarray]:
    """The mesh's holes: closed chains of boundary edges, each [k] int64 in the triangles' edge direction.

    A boundary edge a→b belongs to one triangle whose neighbour across it is missing. Assumes each
    boundary vertex starts one boundary edge (a manifold boundary); other vertices are skipped.
    """
    tri = np.asarray(triangles, dtype=np.int64)
    directed = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]], axis=0)
    n = int(tri.max()) + 1
    key = directed[:, 0] * n + directed[:, 1]
    reverse = directed[:, 1] * n + directed[:, 0]
    boundary = directed[~np.isin(reverse, key)]
    nxt = dict(zip(boundary[:, 0].tolist(), boundary[:, 1].tolist()))
    loops, seen = [], set()
    for start in boundary[:, 0].tolist():
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


def hole_caps(triangles: np.ndarray, num_vertices: int) -> tuple[np.ndarray, scipy.sparse.csr_matrix]:
    """Fans that close each hole around a new centre vertex, wound like the surrounding surface.

    Returns (cap triangles [C,3] int32 indexing V + hole number for the centres, and a [L,V] sparse
    matrix whose product with vertices [V,3] gives the L centres as the mean of each loop).
    """
    loops = boundary_loops(triangles)
    caps, rows, cols, vals = [], [], [], []
    for i, loop in enumerate(loops):
        centre = num_vertices + i
        # the surface has a→b along the loop, so the cap has b→a: (b, a, centre)
        caps.append(np.stack([np.roll(loop, -1), loop, np.full(len(loop), centre)], axis=1))
        rows.extend([i] * len(loop))
        cols.extend(loop.tolist())
        vals.extend([1.0 / len(loop)] * len(loop))
    tris = np.concatenate(caps).astype(np.int32) if caps else np.zeros((0, 3), dtype=np.int32)
    mean = scipy.sparse.csr_matrix((np.asarray(vals, dtype=np.float32), (rows, cols)),
                                   shape=(len(loops), num_vertices))
    return tris, mean


def unique_edges(triangles: np.ndarray) -> np.ndarray:
    """[E,2] int32 undirected edges of a triangle mesh, each once (smaller index first)."""
    tri = np.asarray(triangles, dtype=np.int64)
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]], axis=0)
    e.sort(axis=1)
    return np.unique(e, axis=0).astype(np.int32)


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


def image_to_ndc(image_wh: tuple[int, int], mirror: bool = False) -> tuple[float, float, float, float]:
    """(sx, sy, ox, oy) with NDC = pixel·(sx, sy) + (ox, oy) for a viewport showing the image."""
    w, h = image_wh
    m = _mirror_sign(mirror)
    return 2.0 * m / w, -2.0 / h, -m, 1.0


def draw_hud(lines: list[str], max_width: int, view_height: int) -> np.ndarray:
    """The HUD as an RGBA image [h,w,4] uint8 (top row first): white text on a translucent box.

    The font scales with the view height; the width is clipped to `max_width` pixels.
    """
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = float(np.clip(view_height / 900.0, 0.35, 1.2))
    thick = 1
    (_, text_h), base = cv2.getTextSize("Ag", font, scale, thick)
    line_h = text_h + base + max(2, int(round(6 * scale)))
    pad = max(3, int(round(8 * scale)))
    width = max(cv2.getTextSize(t, font, scale, thick)[0][0] for t in lines) + 2 * pad
    width = int(min(max(width, 1), max_width))
    height = line_h * len(lines) + 2 * pad - (line_h - text_h - base)
    img = np.zeros((height, width, 4), dtype=np.uint8)
    img[:, :] = (0, 0, 0, 150)
    for i, text in enumerate(lines):
        y = pad + i * line_h + text_h
        cv2.putText(img, text, (pad, y), font, scale, (255, 255, 255, 255), thick, cv2.LINE_AA)
    return img


@functools.lru_cache(maxsize=None)
def shader_source(name: str) -> str:
    """Text of `shaders/<name>.glsl`, read once per process."""
    path = SHADER_DIR / f"{name}.glsl"
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"shader {path} is missing or unreadable ({exc.strerror}); "
                        "restore the repository's shaders/ folder") from None


def load_program(ctx: moderngl.Context, name: str) -> moderngl.Program:
    """Compile `shaders/<name>.vert.glsl` + `shaders/<name>.frag.glsl` into a program."""
    return ctx.program(vertex_shader=shader_source(f"{name}.vert"), fragment_shader=shader_source(f"{name}.frag"))


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


class Renderer:
    """Draws FrameRecords into its own framebuffer of (width, height) pixels.

    ctx: a moderngl context (a window's, or `Renderer.offscreen`'s own EGL one).
    triangles: [F,3] int head topology (static). uvs: optional [V,2] texture coordinates; they fix the
    vertex count V and are kept for a future skin texture (not drawn yet). Without uvs,
    V = triangles.max() + 1.
    """

    def __init__(self, ctx: moderngl.Context, width: int, height: int, triangles: np.ndarray,
                 uvs: np.ndarray | None = None, *, owns_context: bool = False) -> None:
        width, height = int(width), int(height)
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
        self._incidence = vertex_incidence(tri, n_vert)
        # The head's openings (eyes, mouth, neck) are closed by dark caps drawn with it, so the culled
        # surface never shows a see-through hole; cap centres follow the vertices every frame.
        self._cap_tris, self._cap_mean = hole_caps(tri, n_vert)
        self._all_tris = np.concatenate([tri, self._cap_tris])
        self._radius_mm: float | None = None
        # Back-face culling halves the raster work on llvmpipe; it needs a consistently wound mesh.
        # None = two-sided (no culling); otherwise the GL face to cull, fixed at the first frame.
        self._consistent = winding_is_consistent(self._all_tris)
        self._cull_face: str | None = None
        self._hud_key: tuple | None = None
        self._hud_wh = (0, 0)
        self._hud_tex: moderngl.Texture | None = None
        self._read_buf = bytearray(width * height * 4)
        self._create_gl_objects()

    def _create_gl_objects(self) -> None:
        """Framebuffer, programs (compiled once), static topology buffers and per-frame buffers."""
        ctx, width, height, tri, n_vert = self.ctx, self.width, self.height, self.triangles, self.num_vertices
        self.color = ctx.texture((width, height), 4)
        self.color.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self._depth = ctx.depth_renderbuffer((width, height))
        self.fbo = ctx.framebuffer(color_attachments=[self.color], depth_attachment=self._depth)
        # Colour-only view of the same texture: blits from it copy no depth (formats differ from a window's).
        self._blit_fbo = ctx.framebuffer(color_attachments=[self.color])

        self._head_prog = load_program(ctx, "head")
        self._points_prog = load_program(ctx, "points")
        self._quad_prog = load_program(ctx, "quad")
        self._head_prog["u_albedo"].value = SKIN_ALBEDO
        self._head_prog["u_cap_albedo"].value = CAP_ALBEDO
        self._head_prog["u_color"].value = WIRE_RGB
        self._points_prog["u_color"].value = LANDMARK_RGB
        self._points_prog["u_highlight_color"].value = IRIS_RGB
        self._points_prog["u_highlight_from"].value = 468
        self._quad_prog["u_texture"].value = 0

        n_all = n_vert + self._cap_mean.shape[0]
        self._pos_buf = ctx.buffer(reserve=n_all * 12, dynamic=True)
        self._nrm_buf = ctx.buffer(reserve=n_all * 12, dynamic=True)
        cap_flag = np.zeros(n_all, dtype=np.float32)
        cap_flag[n_vert:] = 1.0
        self._cap_buf = ctx.buffer(cap_flag.tobytes())
        self._tri_buf = ctx.buffer(self._all_tris.tobytes())
        self._edge_buf = ctx.buffer(unique_edges(tri).tobytes())  # the real mesh's edges only
        content = [(self._pos_buf, "3f", "in_position"), (self._nrm_buf, "3f", "in_normal"),
                   (self._cap_buf, "1f", "in_cap")]
        self._head_vao = ctx.vertex_array(self._head_prog, content, index_buffer=self._tri_buf, index_element_size=4)
        self._wire_vao = ctx.vertex_array(self._head_prog, content, index_buffer=self._edge_buf, index_element_size=4)
        self._lm_buf = ctx.buffer(reserve=478 * 12, dynamic=True)
        self._lm_vao = ctx.vertex_array(self._points_prog, [(self._lm_buf, "3f", "in_position")])
        self._quad_vao = ctx.vertex_array(self._quad_prog, [])

    @classmethod
    def offscreen(cls, width: int, height: int, triangles: np.ndarray, uvs: np.ndarray | None = None) -> "Renderer":
        """A renderer with its own headless EGL context (released with the renderer)."""
        ctx = create_offscreen_context()
        try:
            return cls(ctx, width, height, triangles, uvs, owns_context=True)
        except BaseException:
            ctx.release()
            raise

    # -- per frame --------------------------------------------------------------------------

    def render(self, frame: FrameRecord, options: RenderOptions) -> None:
        """Draw one frame into the framebuffer (see RenderOptions). Nothing is read back."""
        if self._released:
            raise RuntimeError("render() on a released Renderer")
        self._activate()
        ctx = self.ctx
        self.fbo.use()
        ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND | moderngl.CULL_FACE)
        self.fbo.clear(*BACKGROUND_RGB, 1.0, depth=1.0)
        full = (0, 0, self.width, self.height)
        if options.layout == "side":
            half = self.width // 2
            image_box, head_box = (0, 0, half, self.height), (half, 0, self.width - half, self.height)
        else:
            image_box = head_box = full

        image = frame.image
        image_rect = None
        if image is not None:
            ih, iw = image.shape[:2]
            image_rect = fit_rect((iw, ih), image_box)
            self._draw_image(image, image_rect, options.mirror)

        has_head = frame.face_found and frame.vertices is not None
        if has_head:
            verts = np.ascontiguousarray(frame.vertices, dtype=np.float32)
            if verts.shape != (self.num_vertices, 3):
                raise ValueError(f"frame.vertices must be [{self.num_vertices},3], got {verts.shape}")
            transform = None
            if options.layout == "side":
                if self._radius_mm is None:
                    self._radius_mm = float(np.linalg.norm(verts, axis=1).max())
                rot = frame.pose.rotation if frame.pose is not None else np.eye(3, dtype=np.float32)
                viewport = head_box
                transform = side_transform(rot, head_box[2:], self._radius_mm, options.mirror)
            elif frame.pose is not None and image_rect is not None:
                viewport = image_rect
                transform = overlay_transform(frame.pose, (image.shape[1], image.shape[0]), options.mirror)
            if transform is not None:
                if self._consistent and self._cull_face is None:
                    capped = np.concatenate([verts, self._cap_mean @ verts])
                    self._cull_face = "back" if signed_volume(capped, self._all_tris) >= 0 else "front"
                self._draw_head(verts, transform, viewport, options.wireframe, options.mirror)

        if options.show_landmarks and frame.landmarks_px is not None and image_rect is not None:
            self._draw_landmarks(frame.landmarks_px, (image.shape[1], image.shape[0]), image_rect, options.mirror)

        if options.show_hud:
            lines = list(options.hud_lines)
            if not frame.face_found and not any(NO_FACE_LINE in t.lower() for t in lines):
                lines.append(NO_FACE_LINE)
            if lines:
                self._draw_hud(lines)
        ctx.viewport = full

    def _draw_image(self, image: np.ndarray, rect: tuple[int, int, int, int], mirror: bool) -> None:
        """Write the camera image into `rect` of the colour texture (no sampling pass: llvmpipe-cheap)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frame.image must be [H,W,3] uint8 BGR, got {image.shape} {image.dtype}")
        x, y, w, h = rect
        if image.shape[:2] != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if w < image.shape[1] else cv2.INTER_LINEAR)
        flipped = cv2.flip(image, -1 if mirror else 0)  # GL rows run bottom to top
        self.color.write(cv2.cvtColor(flipped, cv2.COLOR_BGR2RGBA), viewport=(x, y, w, h))

    def _draw_head(self, verts: np.ndarray, transform: tuple[np.ndarray, np.ndarray],
                   viewport: tuple[int, int, int, int], wireframe: bool, mirror: bool = False) -> None:
        ctx, prog = self.ctx, self._head_prog
        mvp, normal_mat = transform
        normals = vertex_normals(verts, self.triangles, self._incidence)
        cap_normals = np.asarray(self._cap_mean @ normals, dtype=np.float32)
        cap_normals /= np.maximum(np.linalg.norm(cap_normals, axis=1, keepdims=True), 1e-12)
        self._pos_buf.write(np.concatenate([verts, np.asarray(self._cap_mean @ verts, dtype=np.float32)]))
        self._nrm_buf.write(np.concatenate([normals, cap_normals]))
        prog["u_mvp"].write(np.ascontiguousarray(mvp.T))  # GL wants column-major
        prog["u_normal_mat"].write(np.ascontiguousarray(normal_mat.T))
        ctx.viewport = viewport
        ctx.enable(moderngl.DEPTH_TEST)
        prog["u_two_sided"].value = self._cull_face is None
        if self._cull_face is not None:
            ctx.enable(moderngl.CULL_FACE)
            ctx.cull_face = self._cull_face
            ctx.front_face = "cw" if mirror else "ccw"  # a mirror reverses the on-screen winding
        prog["u_depth_bias"].value = 0.0
        if wireframe:
            # Hidden-line wireframe: depth-only pre-pass of the surface, then the edges over it.
            self._set_color_mask(False, viewport)
            prog["u_mode"].value = 0
            self._head_vao.render(moderngl.TRIANGLES)
            self._set_color_mask(True, viewport)
            prog["u_mode"].value = 1
            prog["u_depth_bias"].value = WIRE_DEPTH_BIAS
            self._wire_vao.render(moderngl.LINES)
        else:
            prog["u_mode"].value = 0
            self._head_vao.render(moderngl.TRIANGLES)
        ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        ctx.front_face = "ccw"

    def _set_color_mask(self, on: bool, viewport: tuple[int, int, int, int]) -> None:
        # moderngl applies a framebuffer's colour mask when it is bound; binding resets the viewport.
        self.fbo.color_mask = (on, on, on, on)
        self.fbo.use()
        self.ctx.viewport = viewport

    def _draw_landmarks(self, landmarks_px: np.ndarray, image_wh: tuple[int, int],
                        rect: tuple[int, int, int, int], mirror: bool) -> None:
        lm = np.ascontiguousarray(landmarks_px[:478], dtype=np.float32)
        self._lm_buf.write(lm)
        self.ctx.viewport = rect
        self.ctx.point_size = float(max(2.0, round(rect[3] / 240.0)))
        self._points_prog["u_image_to_ndc"].value = image_to_ndc(image_wh, mirror)
        self._lm_vao.render(moderngl.POINTS, vertices=lm.shape[0])

    def _draw_hud(self, lines: list[str]) -> None:
        key = tuple(lines)
        if key != self._hud_key:
            hud = draw_hud(lines, self.width, self.height)[: self.height]
            h, w = hud.shape[:2]
            if self._hud_tex is None or self._hud_tex.size[0] < w or self._hud_tex.size[1] < h:
                if self._hud_tex is not None:
                    self._hud_tex.release()
                cap_h = min(self.height, max(h, 64 * ((h + 63) // 64)))
                self._hud_tex = self.ctx.texture((self.width, cap_h), 4)
            self._hud_tex.write(hud, viewport=(0, 0, w, h))
            self._hud_key, self._hud_wh = key, (w, h)
        w, h = self._hud_wh
        tw, th = self._hud_tex.size
        ctx = self.ctx
        ctx.viewport = (0, 0, self.width, self.height)
        ctx.enable(moderngl.BLEND)
        ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        self._hud_tex.use(0)
        self._quad_prog["u_rect"].value = (-1.0, 1.0, -1.0 + 2.0 * w / self.width, 1.0 - 2.0 * h / self.height)
        self._quad_prog["u_uv_rect"].value = (0.0, 0.0, w / tw, h / th)
        self._quad_vao.render(moderngl.TRIANGLE_STRIP, vertices=4)
        ctx.disable(moderngl.BLEND)

    def _activate(self) -> None:
        """Make an owned (offscreen) context current: several renderers may live in one thread."""
        if self._owns_context:
            self.ctx.__enter__()

    # -- output -----------------------------------------------------------------------------

    def read_rgb(self) -> np.ndarray:
        """The rendered view as [H,W,3] uint8 in **BGR** order (OpenCV's), top row first."""
        if self._released:
            raise RuntimeError("read_rgb() on a released Renderer")
        self._activate()
        # RGBA reads are the fast path on Mesa (RGB makes it repack on the CPU).
        self.fbo.read_into(self._read_buf, components=4, alignment=1)
        rgba_bottom_up = np.frombuffer(self._read_buf, dtype=np.uint8).reshape(self.height, self.width, 4)
        return cv2.cvtColor(cv2.flip(rgba_bottom_up, 0), cv2.COLOR_RGBA2BGR)

    def blit_to(self, target: moderngl.Framebuffer, viewport: tuple[int, int, int, int]) -> None:
        """Draw the rendered view into `viewport` (x, y, w, h; GL pixels) of another framebuffer.

        A same-size copy at the origin is a framebuffer blit; anything else a textured quad (scaled).
        """
        if tuple(viewport) == (0, 0, self.width, self.height):
            self.ctx.copy_framebuffer(target, self._blit_fbo)
            return
        target.use()
        self.ctx.viewport = viewport
        self.ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND)
        self.color.use(0)
        self._quad_prog["u_rect"].value = (-1.0, 1.0, 1.0, -1.0)
        self._quad_prog["u_uv_rect"].value = (0.0, 1.0, 1.0, 0.0)  # GL textures are stored bottom row first
        self._quad_vao.render(moderngl.TRIANGLE_STRIP, vertices=4)

    def release(self) -> None:
        """Free every GL object (and the context if this renderer created it). Idempotent."""
        if self._released:
            return
        self._released = True
        if not self._owns_context and self.ctx.fbo in (self.fbo, self._blit_fbo):
            # Never leave a deleted framebuffer bound: moderngl re-binds it after creating the next one.
            (self.ctx.screen or self.ctx.detect_framebuffer(0)).use()
        for obj in (self._head_vao, self._wire_vao, self._lm_vao, self._quad_vao, self._pos_buf, self._nrm_buf, self._cap_buf,
                    self._tri_buf, self._edge_buf, self._lm_buf, self._hud_tex, self._blit_fbo, self.fbo,
                    self.color, self._depth, self._head_prog, self._points_prog, self._quad_prog):
            if obj is not None:
                obj.release()
        if self._owns_context:
            self.ctx.release()

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
