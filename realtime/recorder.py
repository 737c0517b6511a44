"""Writes rendered BGR frames to an .mp4 file (fourcc mp4v: OpenCV wheels have no H.264 encoder)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from engine.errors import UserError

log = logging.getLogger(__name__)

FOURCC = "mp4v"
EXTENSIONS = (".mp4", ".m4v", ".mov")


def check_output_path(path: str | os.PathLike) -> Path:
    """The path as a Path, or UserError if it cannot be a video we can write (extension, folder)."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in EXTENSIONS:
        raise UserError(f"recording {p} must end in {' or '.join(EXTENSIONS)} (the mp4v codec); e.g. --record out.mp4")
    from realtime.options import check_writable_file

    check_writable_file("the recording", p, ".mp4")
    return p


class Recorder:
    """BGR frames → video file at a fixed frame size and rate.

    path: .mp4 (or .m4v/.mov) file, overwritten. size: (width, height) in pixels, fixed at open;
    frames of another size are resized. fps: frames per second written in the file's header.
    Use as a context manager, or call `close()` (idempotent).

    Frames go to a hidden file beside `path` (`.NAME.part.mp4`); `close()` finishes it (the container
    index is written then) and renames it to `path` — or deletes it when no frame was written, so a
    recording that never started leaves no file and `path` never holds a half-written video. The app
    calls `close()` on every way out (end, window closed, Ctrl-C, SIGTERM, SIGHUP, an error).
    """

    def __init__(self, path: str | os.PathLike, size: tuple[int, int], fps: float = 30.0) -> None:
        self.path = check_output_path(path)
        width, height = (int(v) for v in size)
        if width < 2 or height < 2:
            raise ValueError(f"video size must be at least 2x2, got {width}x{height}")
        if not np.isfinite(fps) or fps <= 0:
            raise UserError(f"recording frame rate {fps} is not a positive number")
        self.size = (width, height)
        self.fps = float(fps)
        self.frames_written = 0
        self.part_path = self.path.with_name(f".{self.path.stem}.part{self.path.suffix}")
        self._writer = cv2.VideoWriter(str(self.part_path), cv2.VideoWriter_fourcc(*FOURCC), self.fps, self.size)
        if not self._writer.isOpened():
            self._writer.release()
            self.part_path.unlink(missing_ok=True)
            raise UserError(f"cannot write video {self.path} with codec {FOURCC}; check the path and disk space")
        log.info("recording %dx%d at %.2f fps to %s", width, height, self.fps, self.path)

    @property
    def closed(self) -> bool:
        return self._writer is None

    def write(self, frame_bgr: np.ndarray) -> None:
        """Append one frame: [H,W,3] uint8 BGR (resized to `size` if it differs)."""
        if self._writer is None:
            raise RuntimeError(f"write() after close() on the recorder of {self.path}")
        frame = np.asarray(frame_bgr)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frames must be [H,W,3] uint8 BGR, got {frame.shape} {frame.dtype}")
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file: rename it into place, or remove it when it holds no frame. Idempotent."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if self.frames_written == 0:
            self.part_path.unlink(missing_ok=True)
            log.info("no frame was recorded; %s not written", self.path)
            return
        os.replace(self.part_path, self.path)
        log.info("recorded %d frames to %s", self.frames_written, self.path)

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
