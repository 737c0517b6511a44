"""Pure view transforms of the renderer (numpy only, no GL): letterboxing, the overlay and side-view
cameras of the head, mirroring, the top-row-first clip flip and the image → NDC map.

Frames (docs/architecture.md): head vertices are millimetres in the head frame; `HeadPose` maps head
directions to the camera frame (x right, y up, z to the viewer) and places the head origin at
`center_px` with `scale_px_per_mm`. Overlay mode draws the head with exactly that scaled orthographic
camera, so it covers the tracked face; the GPU applies it as one matrix. Matrices are [4,4] float32
row-major (transpose them for GL's column-major uniforms).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from realtime.record import HeadPose

OVERLAY_DEPTH_MM = 600.0  # head-frame depth range mapped to NDC z in overlay mode (head is ~300 mm)
SIDE_FILL = 0.9  # fraction of the side panel's smaller side covered by the head's diameter


def fit_rect(content_wh: tuple[int, int], box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Largest rectangle of the content's aspect ratio centred in `box`.

    box and result: (x, y, width, height) in pixels (any y convention: the result is centred).
    """
    cw, ch = content_wh
    bx, by, bw, bh = box
    k = min(bw / cw, bh / ch)
    w, h = max(1, int(round(cw * k))), max(1, int(round(ch * k)))
    return bx + (bw - w) // 2, by + (bh - h) // 2, w, h


def mirror_sign(mirror: bool) -> float:
    """−1 for a mirrored (selfie) view, else 1: the factor on view x."""
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
    m = mirror_sign(mirror)
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
    m = mirror_sign(mirror)
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
    m = mirror_sign(mirror)
    return 2.0 * m / w, -2.0 / h, -m, 1.0
