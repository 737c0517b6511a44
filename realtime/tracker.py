"""MediaPipe FaceMesh wrapper shaped like a MediaPipe Task: options, a running mode, results.

Per frame: 478 refined landmarks (pixels), the head pose by weighted Procrustes of the canonical
face's 33 stable landmarks, and the pose-normalised landmarks the face model reads.

Pixel landmarks: x, y in pixels (y down), z = MediaPipe's relative depth × image width (smaller =
nearer). For the pose they are put in a y-up, z-towards-viewer frame: (x, −y, −z).
"""
from __future__ import annotations

import enum
import logging
import math
import os
import sys
from dataclasses import dataclass

import cv2
import numpy as np

from engine.canonical import CanonicalFace
from engine.geometry import normalise_landmarks, similarity_procrustes
from realtime.record import CanonicalPose

NOISY_CALLS = 2  # MediaPipe's native start-up lines come from building the graph and the first frames


NATIVE_NOISE = ("W0000 ", "I0000 ", "E0000 ", "INFO: Created TensorFlow Lite", "WARNING: All log messages before absl")


class NativeStderrFilter:
    """Holds back MediaPipe's and TensorFlow Lite's start-up notices ("Created TensorFlow Lite XNNPACK
    delegate", absl "W0000 …" lines), which C++ code prints straight to file descriptor 2 — some from
    the graph's own threads, after the constructor has returned — where no Python setting reaches.

    `start()` points fd 2 at a temporary file; `stop()` points it back and writes out every captured
    line that is not such a notice (so our own log lines of the same moment still appear). A no-op
    with -v (the root logger at DEBUG), where the details are wanted. Idempotent."""

    def __init__(self) -> None:
        self._saved: int | None = None
        self._tmp = None

    def start(self) -> None:
        if self._saved is not None or logging.getLogger().isEnabledFor(logging.DEBUG):
            return
        import tempfile

        try:
            sys.stderr.flush()
            self._tmp = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._tmp.fileno(), 2)
        except (OSError, ValueError):  # no real fd 2 (an embedding host): leave it alone
            self._saved = None

    def stop(self) -> None:
        if self._saved is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None
        self._tmp.seek(0)
        kept = [ln for ln in self._tmp.read().decode(errors="replace").splitlines(keepends=True)
                if not ln.startswith(NATIVE_NOISE)]
        self._tmp.close()
        if kept:
            os.write(2, "".join(kept).encode())


# One NormalizedLandmark with only x, y, z set, as it sits in a serialised NormalizedLandmarkList:
# field 1 (landmark), length 15, then x (field 1), y (2), z (3), each a little-endian float32.
_LANDMARK_WIRE = np.dtype([("tag", "u1"), ("size", "u1"), ("tx", "u1"), ("x", "<f4"), ("ty", "u1"), ("y", "<f4"),
                           ("tz", "u1"), ("z", "<f4")])
_LANDMARK_TAGS = (0x0A, 15, 0x0D, 0x15, 0x1D)


def landmark_array(landmark_list) -> np.ndarray:
    """A MediaPipe NormalizedLandmarkList → [N,3] float32 (x, y, z), as read field by field.

    Fast path: the list's wire bytes viewed as records (every landmark with exactly x, y, z, which is
    what FaceMesh emits): ~0.04 ms for 478 points instead of ~0.45 ms of Python attribute reads, time
    the tracker's thread would hold the GIL. Any other layout falls back to reading the fields.
    """
    data = landmark_list.SerializeToString()
    n = len(landmark_list.landmark)
    if len(data) == n * _LANDMARK_WIRE.itemsize:
        rec = np.frombuffer(data, dtype=_LANDMARK_WIRE)
        if all((rec[k] == v).all() for k, v in zip(("tag", "size", "tx", "ty", "tz"), _LANDMARK_TAGS)):
            return np.stack([rec["x"], rec["y"], rec["z"]], axis=1)
    return np.array([(p.x, p.y, p.z) for p in landmark_list.landmark], dtype=np.float32).reshape(n, 3)


class RunningMode(enum.Enum):
    """How frames relate: independent images, or a video stream (tracking between frames)."""

    IMAGE = "image"  # independent images: detection on every call
    VIDEO = "video"  # a stream: tracking between frames, timestamps must increase


@dataclass(frozen=True)
class TrackerOptions:
    """Tracker settings; `FaceTracker.create` validates them (ValueError on nonsense)."""

    running_mode: RunningMode = RunningMode.VIDEO
    refine_landmarks: bool = True
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    fov_deg: float = 60.0  # assumed horizontal field of view for the metric translation

    def validate(self) -> None:
        if not isinstance(self.running_mode, RunningMode):
            raise ValueError(f"running_mode must be a RunningMode, not {self.running_mode!r}")
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if not 1.0 <= self.fov_deg <= 179.0:
            raise ValueError(f"fov_deg must be in [1, 179], got {self.fov_deg}")


@dataclass(frozen=True)
class TrackResult:
    """face_found; landmarks_px [478,3] f32; pose (canonical face frame → camera); landmarks_norm [468,3] f32 mm."""

    face_found: bool
    landmarks_px: np.ndarray | None = None
    pose: CanonicalPose | None = None
    landmarks_norm: np.ndarray | None = None


def pose_from_landmarks(landmarks_px: np.ndarray, canonical: CanonicalFace, image_size: tuple[int, int],
                        fov_deg: float = 60.0) -> CanonicalPose:
    """Weighted similarity Procrustes of the canonical stable points onto the observed ones.

    landmarks_px [≥468,3]; image_size (width, height). Rotation maps canonical directions to the
    camera frame (x right, y up, z to the viewer); scale is pixels per canonical millimetre;
    translation_mm places the canonical origin with a pinhole camera of horizontal FOV `fov_deg`.
    """
    w, h = image_size
    up = landmarks_px[:468].astype(np.float64) * np.array([1.0, -1.0, -1.0])
    idx = canonical.procrustes_indices
    sim = similarity_procrustes(canonical.vertices[idx].astype(np.float64), up[idx], canonical.procrustes_weights)
    cx, cy = sim.translation[0], -sim.translation[1]
    focal = 0.5 * w / math.tan(math.radians(fov_deg) / 2.0)
    depth = focal / sim.scale  # mm
    trans = np.array([(cx - w / 2.0) / sim.scale, -(cy - h / 2.0) / sim.scale, -depth])
    return CanonicalPose(rotation=sim.rotation.astype(np.float32), translation_mm=trans.astype(np.float32),
                    scale_px_per_mm=float(sim.scale), center_px=np.array([cx, cy], dtype=np.float32))


class FaceTracker:
    """One face, MediaPipe FaceMesh (legacy solution API, models bundled in the wheel)."""

    def __init__(self, options: TrackerOptions, canonical: CanonicalFace, reference: np.ndarray) -> None:
        options.validate()
        reference = np.asarray(reference, dtype=np.float64)
        if reference.shape != (468, 3):
            raise ValueError(f"reference must be [468,3] landmarks in mm, got shape {reference.shape}")
        import mediapipe as mp  # heavy import, only when a tracker is made

        self.options = options
        self.canonical = canonical
        self.reference = reference
        self._quiet = NativeStderrFilter()  # until the first frames are through (the graph starts async)
        self._quiet.start()
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=options.running_mode is RunningMode.IMAGE, max_num_faces=1,
            refine_landmarks=options.refine_landmarks,
            min_detection_confidence=options.min_detection_confidence,
            min_tracking_confidence=options.min_tracking_confidence)
        self._calls = 0
        self._last_ts: int | None = None
        self._closed = False

    @classmethod
    def create(cls, options: TrackerOptions, canonical: CanonicalFace, reference: np.ndarray) -> "FaceTracker":
        """Validate the options and make a tracker."""
        return cls(options, canonical, reference)

    def detect(self, image_bgr: np.ndarray) -> TrackResult:
        """IMAGE mode: one independent image [H,W,3] uint8 BGR."""
        if self.options.running_mode is not RunningMode.IMAGE:
            raise ValueError("detect() needs running_mode IMAGE; use detect_for_video() in VIDEO mode")
        return self._process(image_bgr)

    def detect_for_video(self, image_bgr: np.ndarray, timestamp_ms: int) -> TrackResult:
        """VIDEO mode: the next frame of a stream, with a strictly increasing integer timestamp (ms)."""
        if self.options.running_mode is not RunningMode.VIDEO:
            raise ValueError("detect_for_video() needs running_mode VIDEO; use detect() in IMAGE mode")
        if not isinstance(timestamp_ms, (int, np.integer)):
            raise ValueError(f"timestamp_ms must be an integer, got {type(timestamp_ms).__name__}")
        if self._last_ts is not None and timestamp_ms <= self._last_ts:
            raise ValueError(f"timestamp {timestamp_ms} ms is not after the previous {self._last_ts} ms")
        self._last_ts = int(timestamp_ms)
        return self._process(image_bgr)

    def _process(self, image_bgr: np.ndarray) -> TrackResult:
        if self._closed:
            raise ValueError("the tracker is closed")
        if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 \
                or image_bgr.dtype != np.uint8:
            raise ValueError("expected an [H,W,3] uint8 BGR image")
        h, w = image_bgr.shape[:2]
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False
        out = self._mesh.process(rgb)
        self._calls += 1
        if self._calls == NOISY_CALLS:
            self._quiet.stop()
        if not out.multi_face_landmarks:
            return TrackResult(False)
        arr = landmark_array(out.multi_face_landmarks[0])  # normalised image coords
        arr *= np.array([w, h, w], dtype=np.float32)
        pose = pose_from_landmarks(arr, self.canonical, (w, h), self.options.fov_deg)
        up = arr[:468].astype(np.float64) * np.array([1.0, -1.0, -1.0])
        norm = normalise_landmarks(up, self.reference, self.canonical.procrustes_indices,
                                   self.canonical.procrustes_weights)
        return TrackResult(True, arr, pose, norm)

    def close(self) -> None:
        """Release MediaPipe's graph; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._mesh.close()
            self._quiet.stop()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_tracker_assets() -> tuple[CanonicalFace, np.ndarray]:
    """The canonical face and the reference landmarks [468,3] mm (head frame) from `models/`.

    Reference = the 468 landmarks embedded on the neutral dense head (engine.embedding); missing
    assets raise CheckpointError telling how to rebuild them.
    """
    from engine.canonical import load_canonical
    from engine.embedding import load_embedding, reference_landmarks
    from engine.headspace import load_head

    canonical = load_canonical()
    reference = reference_landmarks(load_head().vertices, load_embedding())
    return canonical, reference
