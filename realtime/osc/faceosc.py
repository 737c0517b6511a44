"""FaceOSC-compatible output: FaceOSC's addresses, types and units from our tracked landmarks.

FaceOSC (kylemcdonald/ofxFaceTracker) sends one bundle per frame: `/found i` (alone when no face),
`/pose/position ff`, `/pose/scale f`, `/pose/orientation fff`, eight `/gesture/*` floats and, when
enabled, `/raw` (66 image points, x y interleaved). Its gestures are distances between points of the
tracker's pose-free 3D shape model, in that model's units; `/pose/scale` is image pixels per model
unit. We compute the same quantities from MediaPipe landmarks (docs/osc.md lists the derivations).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from realtime.osc.encode import float_array_message, message
from realtime.osc.template import FrameTemplate, TemplateBuilder
from realtime.record import FrameRecord

IBUG68_FROM_MEDIAPIPE: tuple[int, ...] = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # 0-16 jaw line
    71, 63, 105, 66, 107,  # 17-21 brow on the image left (subject's right)
    336, 296, 334, 293, 301,  # 22-26 brow on the image right
    168, 197, 5, 4,  # 27-30 nose bridge
    98, 97, 2, 326, 327,  # 31-35 nose base, outer nostril edges at 31 and 35
    33, 160, 158, 133, 153, 144,  # 36-41 eye on the image left
    362, 385, 387, 263, 373, 380,  # 42-47 eye on the image right
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # 48-59 outer lip
    78, 82, 13, 312, 308, 317, 14, 87,  # 60-67 inner lip
)
"""MediaPipe face-mesh index of each of the 68 iBUG / Multi-PIE points (the layout FaceOSC uses)."""

FACEOSC66_FROM_IBUG68: tuple[int, ...] = tuple(i for i in range(68) if i not in (60, 64))
"""FaceTracker's 66 points are the iBUG 68 without the two inner mouth corners (60, 64)."""

FACEOSC_MM_PER_UNIT = 151.1 / 40.0
"""Millimetres per FaceOSC model unit (~3.78). FaceTracker's mean shape spans about ±20 units across
the face outline (points 0–16); MediaPipe's canonical face measures 151.1 mm between the matching
points 162 and 389. With it, the canonical neutral face reads mouth width 13.0, eye 3.0, eyebrow
6.4, jaw 19.9, nostrils 7.4: the range FaceOSC users know (e.g. 'smile' above ~16)."""

# (address, MediaPipe index a, MediaPipe index b): FaceOSC's point pairs mapped through IBUG68.
GESTURES: tuple[tuple[str, int, int], ...] = (
    ("/gesture/mouth/width", 61, 291),     # 48 ↔ 54: mouth corners
    ("/gesture/mouth/height", 13, 14),     # FaceTracker 61 ↔ 64: inner lip, top ↔ bottom middle
    ("/gesture/eyebrow/left", 158, 66),    # 38 ↔ 20: upper eyelid ↔ middle of the brow
    ("/gesture/eyebrow/right", 385, 296),  # 43 ↔ 23
    ("/gesture/eye/left", 158, 144),       # 38 ↔ 41: upper inner ↔ lower outer eyelid
    ("/gesture/eye/right", 385, 373),      # 43 ↔ 46
    ("/gesture/jaw", 2, 152),              # 33 ↔ 8: below the nose tip ↔ chin
    ("/gesture/nostrils", 98, 327),        # 31 ↔ 35: nostril edges
)

_GESTURE_A = np.array([a for _, a, _ in GESTURES])
_GESTURE_B = np.array([b for _, _, b in GESTURES])
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])  # camera frame (y up, z to viewer) ↔ image frame (y down, z into it)


def gestures(landmarks_px: np.ndarray, scale_px_per_mm: float) -> dict[str, float]:
    """The eight FaceOSC gestures in FaceOSC units.

    landmarks_px: [≥468,3] (x, y, z in pixels). Each gesture is the 3D distance between its two
    landmarks (rotation-invariant, like FaceTracker's distances on its pose-free shape), divided by
    the head's pixels per millimetre and by `FACEOSC_MM_PER_UNIT`.
    """
    lm = np.asarray(landmarks_px)
    diff = lm[_GESTURE_A].astype(np.float64) - lm[_GESTURE_B].astype(np.float64)  # [8,3]
    unit_px = float(scale_px_per_mm) * FACEOSC_MM_PER_UNIT
    # sqrt(d·d) per row is exactly what np.linalg.norm computes for one vector (same bits on the wire)
    return {addr: float(math.sqrt(d.dot(d)) / unit_px) for (addr, _, _), d in zip(GESTURES, diff)}


def orientation(rotation: np.ndarray) -> tuple[float, float, float]:
    """FaceTracker's (pitch, yaw, roll) in radians for a head→camera rotation [3,3].

    FaceTracker works in image axes (x right, y down, z into the image) with
    R = Rx(pitch)·Ry(yaw)·Rz(roll); our rotation is in view axes (y up, z towards the viewer), so it
    is conjugated by diag(1, −1, −1) first. A frontal face reads (0, 0, 0).
    """
    r = _FLIP_YZ @ np.asarray(rotation, dtype=np.float64) @ _FLIP_YZ
    yaw = math.asin(max(-1.0, min(1.0, r[0, 2])))
    pitch = math.atan2(-r[1, 2], r[2, 2])
    roll = math.atan2(-r[0, 1], r[0, 0])
    return pitch, yaw, roll


_RAW_INDICES: tuple[int, ...] = tuple(IBUG68_FROM_MEDIAPIPE[i] for i in FACEOSC66_FROM_IBUG68)
_RAW_INDEX_ARRAY = np.array(_RAW_INDICES)


def position(landmarks_px: np.ndarray) -> tuple[float, float]:
    """FaceOSC `/pose/position`: image position (px, y down) of the shape's origin, taken as the
    centroid of the 66 FaceOSC points (FaceTracker's mean shape is centred on its points)."""
    pts = np.asarray(landmarks_px)[_RAW_INDEX_ARRAY, :2].astype(np.float64)
    c = np.add.reduce(pts, axis=0) / len(pts)  # = pts.mean(axis=0), without its Python overhead
    return float(c[0]), float(c[1])


def raw_points(landmarks_px: np.ndarray) -> np.ndarray:
    """[66,2] float32 image points (px) in FaceTracker's order, for `/raw`."""
    return np.asarray(landmarks_px)[_RAW_INDEX_ARRAY, :2].astype(np.float32)


@lru_cache(maxsize=8)
def faceosc_template(found: bool, raw: bool, mtu: int) -> FrameTemplate:
    """FaceOSC's bundle for a frame with (or without) a face: one slot "values", the floats in
    message order: position [2] px, scale [1], orientation [3] rad, the 8 gestures, and with `raw`
    the 66 points [132] px. Without a face just `/found 0`."""
    b = TemplateBuilder(mtu)
    if not found:
        b.bundles([(message("/found", "i", [0]), ())])
        return b.build()
    msgs: list[tuple[bytes, tuple[str, ...]]] = [
        (message("/found", "i", [1]), ()), (message("/pose/position", "ff", [0.0, 0.0]), ("values",) * 2),
        (message("/pose/scale", "f", [0.0]), ("values",)), (message("/pose/orientation", "fff", [0.0] * 3), ("values",) * 3)]
    msgs += [(message(address, "f", [0.0]), ("values",)) for address, _, _ in GESTURES]
    if raw:
        msgs.append((float_array_message("/raw", np.zeros(2 * len(_RAW_INDICES), np.float32)),
                     ("values",) * (2 * len(_RAW_INDICES))))
    b.bundles(msgs)
    return b.build()


def faceosc_values(rec: FrameRecord, raw: bool = False) -> np.ndarray:
    """The numbers of FaceOSC's messages for a frame with a face, pose and landmarks, in order: [14]
    float64 (position, scale, orientation, gestures), or [146] with `raw` (+ the 66 points)."""
    lm = np.asarray(rec.landmarks_px)
    scale = rec.pose.scale_px_per_mm
    values = np.array([*position(lm), scale * FACEOSC_MM_PER_UNIT, *orientation(rec.pose.rotation),
                       *gestures(lm, scale).values()])
    return np.concatenate([values, raw_points(lm).reshape(-1)]) if raw else values


def encode_faceosc(rec: FrameRecord, mtu: int, raw: bool = False) -> list[bytes]:
    """One bundle per frame, as FaceOSC sends it (split in two only if `mtu` is below its size:
    ~400 B without `/raw`, ~1,080 B with it); `/found 0` alone without a face (or pose, landmarks)."""
    found = bool(rec.face_found and rec.pose is not None and rec.landmarks_px is not None)
    template = faceosc_template(found, bool(raw), int(mtu))
    return template.encode(floats={"values": faceosc_values(rec, raw)} if found else None)
