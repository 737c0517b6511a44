"""The plain per-frame record that flows from stage to stage (see docs/architecture.md)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.rotations import pitch_yaw_roll, quaternion_from_matrix


@dataclass(frozen=True)
class RigidPose:
    """A rigid placement of a face frame in the camera/view frame (x right, y up, z towards the viewer).
    Two frames are placed, each with its own type: `CanonicalPose` (the tracker's) and `HeadPose` (the
    record's); `realtime.stages.head_pose_from_canonical` turns the first into the second.

    rotation: [3,3] float32, maps the face frame's directions to camera-frame directions.
    translation_mm: [3] float32, the face frame's origin in the camera frame, millimetres, estimated with
        a pinhole camera of assumed field of view (see realtime/tracker.py).
    scale_px_per_mm: image pixels per millimetre of the face frame at the head's depth.
    center_px: [2] float32, image position (x right, y down) of the face frame's origin, pixels.
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
        """[4] float32 unit quaternion (x, y, z, w) of `rotation`, scipy's convention
        (`engine.rotations.quaternion_from_matrix`)."""
        return quaternion_from_matrix(self.rotation).astype(np.float32)

    def euler_xyz_rad(self) -> np.ndarray:
        """[3] float32 (pitch about x, yaw about y, roll about z) in radians, R = Rz·Ry·Rx
        (`engine.rotations.pitch_yaw_roll`; the conventions are compared there)."""
        return pitch_yaw_roll(self.rotation)


@dataclass(frozen=True)
class CanonicalPose(RigidPose):
    """The tracker's pose: MediaPipe's canonical face frame (mm) → camera. Never in the record."""


@dataclass(frozen=True)
class HeadPose(RigidPose):
    """The record's pose: the dense head's frame (mm, `models/head.npz`) → camera; what the renderer,
    the smoother, OSC and takes use."""


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
    timings_ms: per-stage wall time in milliseconds; `wait` (cameras, paced clips): the time the
        source idled until the frame came, kept apart from `capture`'s work.
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
