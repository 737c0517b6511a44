"""The pipeline's stages: small callables that each fill their part of a FrameRecord.

track → retarget → decode → smooth → osc → export → render. Each holds its own resources and reads
only the record (docs/architecture.md lists which stage writes which field).
"""
from __future__ import annotations

import logging
import time

import numpy as np

from typing import TYPE_CHECKING

from engine.geometry import Similarity
from realtime.record import CanonicalPose, FrameRecord, HeadPose

if TYPE_CHECKING:
    from realtime.controls import HudState

log = logging.getLogger(__name__)


def head_pose_from_canonical(pose: CanonicalPose, head_from_canonical: Similarity) -> HeadPose:
    """Re-express a pose of the canonical face frame as a pose of the dense head's frame.

    pose: canonical (mm) → camera pose from the tracker; head_from_canonical: the embedding's
    similarity (canonical mm → head mm). Returns the head (mm) → camera pose: the same placement of
    the face, so that head-frame vertices drawn with it cover the tracked face.
    """
    s_inv = 1.0 / head_from_canonical.scale
    r_h = pose.rotation.astype(np.float64) @ head_from_canonical.rotation.T
    scale = pose.scale_px_per_mm * s_inv
    # canonical origin sits at center_px; the head origin is at canonical point c0 = sim⁻¹(0).
    c0 = head_from_canonical.inverse().translation
    offset_up = pose.scale_px_per_mm * (pose.rotation.astype(np.float64) @ c0)  # px, y up
    center = np.asarray(pose.center_px, dtype=np.float64) + np.array([offset_up[0], -offset_up[1]])
    offset_mm = pose.rotation.astype(np.float64) @ c0
    trans = np.asarray(pose.translation_mm, dtype=np.float64) + offset_mm
    return HeadPose(rotation=r_h.astype(np.float32), translation_mm=trans.astype(np.float32),
                    scale_px_per_mm=float(scale), center_px=center.astype(np.float32))


class Calibrator:
    """Neutral-face calibration: averages the expression weights of N face frames.

    Once calibrated, weights are re-based on the user's neutral: w' = clip((w − w0) / (1 − w0), 0, 1),
    so a resting face reads 0 and a full activation still reaches 1. [52] float32 in and out.
    """

    def __init__(self) -> None:
        self.neutral: np.ndarray | None = None
        self._remaining = 0
        self._acc: list[np.ndarray] = []

    def start(self, frames: int) -> None:
        """Begin collecting the next `frames` face frames as the neutral."""
        self._remaining = max(1, int(frames))
        self._acc = []

    @property
    def collecting(self) -> bool:
        return self._remaining > 0

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        if self._remaining > 0:
            self._acc.append(weights.copy())
            self._remaining -= 1
            if self._remaining == 0:
                self.neutral = np.mean(self._acc, axis=0).astype(np.float32)
                log.info("calibrated neutral from %d frames", len(self._acc))
        if self.neutral is None:
            return weights
        w0 = np.minimum(self.neutral, 0.95)
        return np.clip((weights - w0) / (1.0 - w0), 0.0, 1.0).astype(np.float32)


class TrackStage:
    """MediaPipe tracking: fills face_found, landmarks_px, pose (head frame) and landmarks_norm."""

    name = "track"

    def __init__(self, tracker, head_from_canonical: Similarity) -> None:
        self.tracker = tracker
        self.head_from_canonical = head_from_canonical

    def __call__(self, record: FrameRecord) -> None:
        if record.source_note is not None:  # a stand-in while the camera is gone: nothing to track
            record.face_found = False
            return
        res = self.tracker.detect_for_video(record.image, record.timestamp_ms)
        record.face_found = bool(res.face_found)
        if not record.face_found:
            return
        record.landmarks_px = res.landmarks_px
        record.landmarks_norm = res.landmarks_norm
        record.pose = head_pose_from_canonical(res.pose, self.head_from_canonical)


class RetargetStage:
    """The decoder's front end (engine.retarget.Retargeter): fills expressions [52] and
    model_landmarks [468,3] (~0.05 ms a frame alone, compiled and without the GIL: engine.frontend_kernel;
    runs on the main thread, before the decoder)."""

    name = "retarget"

    def __init__(self, retargeter) -> None:
        self.retargeter = retargeter

    def __call__(self, record: FrameRecord) -> None:
        if not record.face_found or record.landmarks_norm is None:
            return
        res = self.retargeter(record.landmarks_norm, record.landmarks_px)
        record.expressions = res.weights
        record.model_landmarks = res.landmarks


class DecodeStage:
    """The face model through an inference back-end: vertices [V,3] mm and expressions [52].

    After a `RetargetStage` (the default in the app) the record holds the weights and the decoder's
    input (`model_landmarks`: the in-domain landmarks of the person's identity and solved expression);
    the decoder turns them into the head. Without one (`--expressions direct`): the decoder reads the
    tracked landmarks as they are and its expression head gives the weights, re-based by
    `calibrator`. `retargeter`: the front end the retarget stage runs, for calibration.

    identity 'user': the decoder's head (your estimated shape and expression).
    identity 'avatar': the fixed neutral head driven by your expression weights,
    vertices = neutral + Σ_j w_j · E_j with the head's 52 expression targets.
    """

    name = "decode"

    def __init__(self, backend, neutral: np.ndarray, expression_targets: np.ndarray,
                 identity: str = "user", calibrator: Calibrator | None = None, retargeter=None) -> None:
        if identity not in ("user", "avatar"):
            raise ValueError(f"identity must be 'user' or 'avatar', not {identity!r}")
        self.backend = backend
        self.identity = identity
        self.retargeter = retargeter
        self.calibrator = calibrator or Calibrator()
        self.non_finite = 0  # frames whose model output was not finite (dropped as "no face")
        self.neutral = np.ascontiguousarray(neutral, dtype=np.float32)
        self.targets = np.ascontiguousarray(expression_targets.reshape(len(expression_targets), -1),
                                            dtype=np.float32)

    def start_calibration(self, frames: int) -> None:
        """The next `frames` face frames are the user's relaxed neutral."""
        if self.retargeter is not None:
            self.retargeter.start_calibration(frames)
        else:
            self.calibrator.start(frames)

    def __call__(self, record: FrameRecord) -> None:
        if not record.face_found or record.landmarks_norm is None:
            return
        if record.model_landmarks is not None:
            verts, _ = self.backend.infer(record.model_landmarks[None])
            weights = record.expressions
        else:
            verts, expr = self.backend.infer(record.landmarks_norm[None])
            weights = self.calibrator(np.asarray(expr[0], dtype=np.float32))
        if not (np.isfinite(verts).all() and np.isfinite(weights).all()):
            # never send NaN/inf to a receiver: the frame counts as one without a face
            self.non_finite += 1
            if self.non_finite == 1 or self.non_finite % 1000 == 0:
                log.warning("the face model gave non-finite output (%d frame(s) so far); treating them as no face",
                            self.non_finite)
            record.face_found = False
            record.expressions = record.vertices = record.model_landmarks = None
            return
        record.expressions = weights
        if self.identity == "avatar":
            record.vertices = self.neutral + (weights @ self.targets).reshape(self.neutral.shape)
        else:
            record.vertices = np.asarray(verts[0], dtype=np.float32)


class SmoothStage:
    """One Euro smoothing of vertices, expressions, landmarks and pose (realtime/smoothing.py)."""

    name = "smooth"

    def __init__(self, smoother) -> None:
        self.smoother = smoother

    def __call__(self, record: FrameRecord) -> None:
        self.smoother(record)


class OscStage:
    """Hands the record to the OSC sender (non-blocking; encoding happens on its thread)."""

    name = "osc"

    def __init__(self, sender) -> None:
        self.sender = sender

    def __call__(self, record: FrameRecord) -> None:
        self.sender.check()  # a dead sender thread is an error, never a silent stop of all OSC
        self.sender.send(record)


class ExportStage:
    """Hands a copy of the finished record to the take writer (its thread writes the files)."""

    name = "export"

    def __init__(self, writer) -> None:
        self.writer = writer

    def __call__(self, record: FrameRecord) -> None:
        from realtime.take.writer import frame_from_record

        self.writer.put(frame_from_record(record))


class RenderStage:
    """Draws the record (offscreen or into the window), writes the recording, shows the HUD."""

    name = "render"

    def __init__(self, renderer, options, hud: HudState, window=None, recorder=None) -> None:
        self.renderer, self.options, self.hud = renderer, options, hud
        self.window, self.recorder = window, recorder
        self.last_bgr: np.ndarray | None = None

    def __call__(self, record: FrameRecord) -> None:
        t0 = time.perf_counter()
        self.hud.tick()
        self.options.hud_lines = self.hud.lines(record)
        self.renderer.render(record, self.options)
        if self.window is not None:
            self.window.present(self.renderer)
        if self.recorder is not None:
            self.last_bgr = self.renderer.read_rgb()
            self.recorder.write(self.last_bgr)
        self.hud.last_render_ms = (time.perf_counter() - t0) * 1e3
