"""The HUD's text as a glyph atlas (no GL): what `cv2.putText` draws with the Hershey font, glyph by
glyph, laid out as pixel rectangles; the renderer draws them in one call (shaders/hud.*.glsl)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

HUD_FONT = cv2.FONT_HERSHEY_SIMPLEX
HUD_THICKNESS = 1
HUD_MAX_PHASES = 24  # sub-pixel pen positions the glyph atlas holds at most (see HudFont)


@dataclass(frozen=True)
class HudFont:
    """The HUD's Hershey font at one scale as a glyph atlas: what `cv2.putText` draws, glyph by glyph.

    cv2 places glyph i of a line at the pen org.x + (Σ_{j<i} units_j) · hscale / 2¹⁶ pixels (integer
    fixed point); the atlas holds every glyph drawn at a few sub-pixel pen phases, and `layout_hud`
    picks the nearest. When the scale is a simple fraction (height / 900 at common view heights) pens
    take only a few phases and the atlas holds all of them, so the text is cv2's to the pixel.

    scale: the cv2 font scale; hscale: round(scale · 2¹⁶), cv2's fixed-point scale. text_h, base,
    line_h, pad: cap height, descent, line pitch and box padding in pixels (the HUD box layout).
    units: [256] int64 pen advance of each byte in font units. phases: [P] int64 pen phases held, in
    1/2¹⁶ pixel; nearest, shift: [2¹⁶] int64 lookups from a pen's fraction (1/2¹⁶ px) to the nearest
    phase held and the whole-pixel step (−1, 0, 1) that reaching it takes across a pixel edge.
    cells: [256, P, 6] int32 per byte and phase: (dx, dy, w, h, atlas_x, atlas_y), the
    glyph's tight box relative to (whole pen pixel, baseline) and its top-left texel in the atlas;
    w = h = 0 for a glyph that draws nothing (space). Bytes cv2 cannot draw (control, non-ASCII) are '?',
    as cv2 shows them. atlas: [H,W] uint8 text coverage (255 = fully white).
    """

    scale: float
    hscale: int
    text_h: int
    base: int
    line_h: int
    pad: int
    units: np.ndarray
    phases: np.ndarray
    nearest: np.ndarray
    shift: np.ndarray
    cells: np.ndarray
    atlas: np.ndarray


def _hershey_units() -> np.ndarray:
    """[256] int64: each byte's pen advance in Hershey font units (pixels at scale 1); '?' for undrawable bytes."""
    units = np.zeros(256, dtype=np.int64)
    for code in range(32, 127):
        width = cv2.getTextSize(chr(code) * 100, HUD_FONT, 1.0, HUD_THICKNESS)[0][0]  # 100·advance + thickness
        units[code] = (width - HUD_THICKNESS) // 100
    drawable = np.zeros(256, dtype=bool)
    drawable[32:127] = True
    units[~drawable] = units[ord("?")]
    return units


def _pen_prefixes(units: np.ndarray, hscale: int, targets: np.ndarray) -> tuple[list[tuple[str, int]], np.ndarray]:
    """For each target pen phase (1/2¹⁶ px), a text whose cv2 advance ends nearest to it, as (text,
    advance in whole pixels), and the phases really reached [P] int64. Texts: nothing, spaces, or one
    glyph then at least two spaces (so that glyph's ink stays a whole space left of what follows)."""
    space = int(units[ord(" ")])
    texts = [" " * k for k in range(64)] + [chr(c) + " " * k for c in range(33, 127) for k in range(2, 16)]
    totals = np.array([k * space for k in range(64)] + [int(units[c]) + k * space for c in range(33, 127)
                                                        for k in range(2, 16)], dtype=np.int64)
    reached = (totals * hscale) % 65536
    gap = np.abs(reached[None, :] - np.asarray(targets)[:, None])
    best = np.argmin(np.minimum(gap, 65536 - gap), axis=1)  # first (shortest) of equals
    return [(texts[i], int((totals[i] * hscale) >> 16)) for i in best], reached[best]


def _pen_phases(hscale: int) -> np.ndarray:
    """The sub-pixel pen phases (1/2¹⁶ px) the atlas should hold: those a HUD line (< 2,048 font units)
    can reach, grouped where they lie within 1/128 px of each other (cv2's rounded fixed-point scale
    spreads each exact phase a little), when there are at most HUD_MAX_PHASES groups; else that many
    evenly spaced."""
    reachable = np.unique((np.arange(2048, dtype=np.int64) * hscale) % 65536)
    starts = reachable[np.concatenate([[True], np.diff(reachable) > 512])]
    if starts.size > 1 and starts[0] + 65536 - reachable[-1] <= 512:
        starts = starts[1:]  # the first group continues the last one across a whole pixel
    if starts.size <= HUD_MAX_PHASES:
        return starts
    return np.arange(HUD_MAX_PHASES, dtype=np.int64) * 65536 // HUD_MAX_PHASES


def _nearest_phase_lookup(phases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every pen fraction f in 1/2¹⁶ px: the index of the nearest phase held (distance measured
    around the pixel edge) and the whole-pixel step to it: −1 when it lies just before this pixel,
    +1 when just after. Returns ([2¹⁶] int64, [2¹⁶] int64)."""
    f = np.arange(65536, dtype=np.int64)
    nearest, step = np.zeros(65536, dtype=np.int64), np.zeros(65536, dtype=np.int64)
    best = np.full(65536, np.iinfo(np.int64).max)
    for i, phase in enumerate(np.asarray(phases, dtype=np.int64).tolist()):
        s = (f - phase + 32768) // 65536  # −1, 0 or 1
        distance = np.abs(f - phase - 65536 * s)
        closer = distance < best
        best[closer], nearest[closer], step[closer] = distance[closer], i, s[closer]
    return nearest, step


def _render_glyph(code: int, scale: float, prefix: str, prefix_px: int, above: int, below: int,
                  width: int) -> tuple[np.ndarray, int, int]:
    """cv2's anti-aliased glyph of `code` drawn after `prefix` (whose advance has `prefix_px` whole
    pixels), with the origin moved back by those pixels: the prefix falls off the image's left edge and
    the glyph's pen sits at the prefix's sub-pixel phase. Returns (tight coverage image [h,w] uint8,
    empty if nothing is drawn; dx, dy) relative to (whole pen pixel, baseline).
    """
    margin = 3
    img = np.zeros((above + below, width + 2 * margin), dtype=np.uint8)
    cv2.putText(img, prefix + chr(code), (margin - prefix_px, above), HUD_FONT, scale, 255, HUD_THICKNESS,
                cv2.LINE_AA)
    ys, xs = np.nonzero(img)
    if ys.size == 0:
        return np.zeros((0, 0), dtype=np.uint8), 0, 0
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return img[y0:y1, x0:x1], int(x0 - margin), int(y0 - above)


@functools.lru_cache(maxsize=8)
def hud_font(view_height: int) -> HudFont:
    """The HUD font for a view `view_height` pixels tall (scale as the HUD always used: height / 900,
    clipped to [0.35, 1.2]); built once per height (~100 cv2 glyphs per pen phase, a few ms)."""
    scale = float(np.clip(view_height / 900.0, 0.35, 1.2))
    hscale = int(np.rint(scale * 65536))  # cv2's cvRound(fontScale · XY_ONE)
    (_, text_h), base = cv2.getTextSize("Ag", HUD_FONT, scale, HUD_THICKNESS)
    line_h = text_h + base + max(2, int(round(6 * scale)))
    pad = max(3, int(round(8 * scale)))
    units = _hershey_units()
    prefixes, phases = _pen_prefixes(units, hscale, _pen_phases(hscale))
    above, below = text_h + base + 4, 2 * base + 4
    glyph_w = int(np.ceil(units.max() * scale)) + 4
    cells = np.zeros((256, phases.size, 6), dtype=np.int32)
    images: dict[tuple[int, int], np.ndarray] = {}
    for p, (prefix, prefix_px) in enumerate(prefixes):
        for code in range(32, 127):
            img, dx, dy = _render_glyph(code, scale, prefix, prefix_px, above, below, glyph_w)
            if img.size:
                images[code, p] = img
                cells[code, p, :4] = (dx, dy, img.shape[1], img.shape[0])
    atlas = _pack_atlas(images, cells)
    cells[np.r_[0:32, 127:256]] = cells[ord("?")]
    nearest, shift = _nearest_phase_lookup(phases)
    for array in (units, phases, nearest, shift, cells, atlas):
        array.setflags(write=False)
    return HudFont(scale, hscale, int(text_h), int(base), int(line_h), int(pad), units, phases, nearest, shift,
                   cells, atlas)


def _pack_atlas(images: dict[tuple[int, int], np.ndarray], cells: np.ndarray, width: int = 1024) -> np.ndarray:
    """Shelf-pack glyph images into one [H,width] uint8 atlas; writes each one's texel into cells[..., 4:6]."""
    x = y = shelf_h = 0
    spots = {}
    for key, img in images.items():
        h, w = img.shape
        if x + w > width:
            x, y, shelf_h = 0, y + shelf_h + 1, 0
        spots[key] = (x, y)
        x, shelf_h = x + w + 1, max(shelf_h, h)
    atlas = np.zeros((max(y + shelf_h, 1), width), dtype=np.uint8)
    for key, img in images.items():
        ax, ay = spots[key]
        atlas[ay:ay + img.shape[0], ax:ax + img.shape[1]] = img
        cells[key[0], key[1], 4:6] = (ax, ay)
    return atlas


def hud_box_size(lines: list[str], font: HudFont, max_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) in pixels of the HUD's box behind `lines` (cv2.getTextSize's text widths),
    clipped to max_size (the view)."""
    if not lines:
        return 0, 0
    widths = [int(np.rint((font.units[_hud_bytes(t)] * font.scale).sum() + HUD_THICKNESS)) for t in lines]
    w = int(min(max(max(widths) + 2 * font.pad, 1), max_size[0]))
    h = font.line_h * len(lines) + 2 * font.pad - (font.line_h - font.text_h - font.base)
    return w, int(min(h, max_size[1]))


def layout_hud(lines: list[str], font: HudFont) -> np.ndarray:
    """Where the glyphs of `lines` go: [N,6] int32 rows (x, y, w, h, atlas_x, atlas_y), view pixels from
    the top-left. Line i is cv2's text at (pad, pad + i·line_h + text_h); each glyph is the atlas's at
    the nearest pen phase (see HudFont). Glyphs that draw nothing are left out. All lines in one pass."""
    encoded = [_hud_bytes(t) for t in lines]
    counts = np.array([c.size for c in encoded], dtype=np.int64)
    if counts.sum() == 0:
        return np.zeros((0, 6), dtype=np.int32)
    codes = np.concatenate(encoded)
    units = font.units[codes]
    running = np.concatenate([[0], np.cumsum(units)])  # font units before each byte, over all lines
    line = np.repeat(np.arange(len(lines)), counts)
    line_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pen = (font.pad << 16) + (running[:-1] - running[line_start][line]) * font.hscale  # 1/2¹⁶ px
    fraction = pen & 0xFFFF
    glyphs = font.cells[codes, font.nearest[fraction]]
    glyphs[:, 0] += ((pen >> 16) + font.shift[fraction]).astype(np.int32)
    glyphs[:, 1] += (font.pad + font.text_h + line * font.line_h).astype(np.int32)
    return glyphs[glyphs[:, 2] > 0]


_RECT_CORNERS = np.array([[0, 0], [1, 0], [0, 1], [1, 0], [1, 1], [0, 1]], dtype=np.int32)


def rect_triangles(rects: np.ndarray) -> np.ndarray:
    """Vertices [6N,4] int32 (pixel x, y, texel offset x, y) of two triangles per rectangle.

    rects [N,6] int (x, y, w, h, atlas_x, atlas_y) in pixels; the texel offset (atlas minus pixel)
    is the same at every corner of a rectangle. One plain draw: llvmpipe pays per instance, not per vertex.
    """
    r = np.asarray(rects, dtype=np.int32)
    out = np.empty((r.shape[0], 6, 4), dtype=np.int32)
    out[:, :, 0:2] = r[:, None, 0:2] + _RECT_CORNERS[None] * r[:, None, 2:4]
    out[:, :, 2:4] = (r[:, 4:6] - r[:, 0:2])[:, None]
    return out.reshape(-1, 4)


def _hud_bytes(text: str) -> np.ndarray:
    """The UTF-8 bytes of `text` as [n] intp (font tables map undrawable bytes to '?')."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.intp)
