"""The plain per-frame record that flows from stage to stage (see docs/architecture.md)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class HeadPose:
    """Rigid head pose in the camera/view frame (x right, y up, z towards the viewer).

    rotation: [3,3] float32, maps head-frame directions to camera-frame directions.
    translation_mm: [3] float32, head-frame origin in the camera frame, millimetres, estimated with
        a pinhole camera of assumed field of view (see realtime/tracker.py).
    scale_px_per_mm: image pixels per millimetre of the canonical face at the head's depth.
    center_px: [2] float32, image position (x right, y down) of the head-frame origin, pixels.
    """

    rotation: np.ndarray
    translation_mm: np.ndarray
    scale_px_per_mm: float
    center_px: np.ndarray

    def matrix(self) -> np.ndarray:
        """[4,4] float32 head → camera transform (rotation and translation in mm)."""
        m = np.eye(4, dtype=np.float32)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.translation_mm
        return m

    def quaternion(self) -> np.ndarray:
        """[4] float32 unit quaternion (x, y, z, w) of `rotation`."""
        r = np.asarray(self.rotation, dtype=np.float64)
        tr = r[0, 0] + r[1, 1] + r[2, 2]
        if tr > 0:
            s = math.sqrt(tr + 1.0) * 2
            q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s]
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
            q = [0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s]
        elif r[1, 1] > r[2, 2]:
            s = math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
            q = [(r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s]
        else:
            s = math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
            q = [(r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s, (r[1, 0] - r[0, 1]) / s]
        qa = np.asarray(q, dtype=np.float64)
        return (qa / np.linalg.norm(qa)).astype(np.float32)

    def euler_xyz_rad(self) -> np.ndarray:
        """[3] float32 (pitch about x, yaw about y, roll about z) in radians, R = Rz·Ry·Rx."""
        r = np.asarray(self.rotation, dtype=np.float64)
        yaw = math.asin(max(-1.0, min(1.0, -r[2, 0])))
        pitch = math.atan2(r[2, 1], r[2, 2])
        roll = math.atan2(r[1, 0], r[0, 0])
        return np.array([pitch, yaw, roll], dtype=np.float32)


@dataclass
class FrameRecord:
    """Everything known about one frame. Arrays are float32 unless noted.

    frame_id: running index from the source, starting at 0.
    t_capture: `time.perf_counter()` seconds when the frame was captured (latency origin).
    timestamp_ms: source timestamp in integer milliseconds, strictly increasing (video: frame time).
    image: [H,W,3] uint8 BGR, or None once dropped.
    face_found: whether the tracker found a face.
    landmarks_px: [478,3] tracker landmarks; x, y in pixels (y down), z in pixels (MediaPipe's
        relative depth × image width, smaller = nearer the camera).
    pose: head pose, or None without a face.
    landmarks_norm: [468,3] pose-normalised landmarks, mm, head frame (the tracker's output).
    model_landmarks: [468,3] the decoder's input, mm, head frame, written by the retarget stage
        (anny-domain landmarks of the person's identity and solved expression); None on the direct path.
    vertices: [V,3] dense head in the head frame, mm.
    expressions: [52] ARKit-named expression weights in [0,1] (order: engine expression names).
    timings_ms: per-stage wall time in milliseconds.
    t_sent: `time.perf_counter()` seconds when the OSC stage handed the frame off (latency end).
    source_note: set when the source could not deliver a real frame (a camera unplugged): what the
        view says; the image is a stand-in and is not tracked.
    """

    frame_id: int
    t_capture: float
    timestamp_ms: int
    image: np.ndarray | None = None
    face_found: bool = False
    landmarks_px: np.ndarray | None = None
    pose: HeadPose | None = None
    landmarks_norm: np.ndarray | None = None
    model_landmarks: np.ndarray | None = None
    vertices: np.ndarray | None = None
    expressions: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    t_sent: float | None = None
    source_note: str | None = None
