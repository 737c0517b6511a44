"""Live Link Face CSV: the take format of Epic's Live Link Face app (Unreal's importer and the community
Blender/Maya/MotionBuilder importers read it).

One header line `Timecode,BlendShapeCount,<52 blendshapes>,<9 rotations>` then one row per frame: an SMPTE-like
timecode `HH:MM:SS:FF.mmm`, the count 61, the 52 weights in [0, 1] in Apple's `ARFaceAnchor.BlendShapeLocation`
(Unreal `EARFaceBlendShape`) order, then head yaw/pitch/roll and the two eyes' yaw/pitch/roll in radians.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from types import TracebackType

import numpy as np

from engine.expressions import EXPRESSION_NAMES

LIVE_LINK_NAMES: tuple[str, ...] = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawLeft", "JawRight", "JawOpen", "MouthClose",
    "MouthFunnel", "MouthPucker", "MouthLeft", "MouthRight", "MouthSmileLeft", "MouthSmileRight",
    "MouthFrownLeft", "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft",
    "MouthStretchRight", "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper",
    "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft",
    "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight",
    "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)
ROTATION_NAMES: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)
BLEND_SHAPE_COUNT = len(LIVE_LINK_NAMES) + len(ROTATION_NAMES)  # 61, the value of the BlendShapeCount column
HEADER = ",".join(("Timecode", "BlendShapeCount") + LIVE_LINK_NAMES + ROTATION_NAMES)

_PASCAL = tuple(n[0].upper() + n[1:] for n in EXPRESSION_NAMES)
assert len(LIVE_LINK_NAMES) == 52 and set(LIVE_LINK_NAMES) == set(_PASCAL)
# weights_ours[FROM_OURS] is in Live Link order
FROM_OURS: np.ndarray = np.array([_PASCAL.index(n) for n in LIVE_LINK_NAMES], dtype=np.int64)

# Our convention for the angle a full (weight 1) ARKit eyeLook* expresses; ARKit does not publish one.
EYE_YAW_FULL_RAD = math.radians(30.0)
EYE_PITCH_FULL_RAD = math.radians(20.0)
_I = {n: i for i, n in enumerate(EXPRESSION_NAMES)}


def timecode(seconds: float, fps: float) -> str:
    """`HH:MM:SS:FF.mmm` for a time in seconds (e.g. since midnight).

    FF is the whole frame within the second at the timecode rate round(fps) and `.mmm` the sub-frame
    (the fraction of a frame x 1000); the time is rounded to the nearest 1/1000 frame first, so a frame of
    29.9999 at 30 fps becomes the next second's frame 0. Hours wrap at 24 (negative times wrap backwards).
    """
    rate = max(1, round(fps))
    units = round(seconds * rate * 1000)  # thousandths of a frame, an exact integer from here on
    whole_s, rem = divmod(units, rate * 1000)
    ff, mmm = divmod(rem, 1000)
    whole_s %= 86400
    hh, rest = divmod(whole_s, 3600)
    mm, ss = divmod(rest, 60)
    return f"{hh:02d}:{mm:02d}:{ss:02d}:{ff:02d}.{mmm:03d}"


def eye_rotations(weights_ours: np.ndarray) -> np.ndarray:
    """[6] radians (LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEyeYaw, RightEyePitch, RightEyeRoll) from the
    gaze weights of a [52] weight vector in our order.

    Yaw is positive towards the subject's own left for both eyes (left eye: lookOut - lookIn, right eye:
    lookIn - lookOut), pitch positive up (lookUp - lookDown); roll is 0. A full eyeLook weight is our
    convention of EYE_YAW_FULL_RAD (30 deg) sideways and EYE_PITCH_FULL_RAD (20 deg) up/down.
    """
    w = np.asarray(weights_ours, dtype=np.float64)
    g = lambda name: float(w[_I[name]])  # noqa: E731
    ly = (g("eyeLookOutLeft") - g("eyeLookInLeft")) * EYE_YAW_FULL_RAD
    ry = (g("eyeLookInRight") - g("eyeLookOutRight")) * EYE_YAW_FULL_RAD
    lp = (g("eyeLookUpLeft") - g("eyeLookDownLeft")) * EYE_PITCH_FULL_RAD
    rp = (g("eyeLookUpRight") - g("eyeLookDownRight")) * EYE_PITCH_FULL_RAD
    return np.array([ly, lp, 0.0, ry, rp, 0.0], dtype=np.float64)


class LiveLinkCsvWriter:
    """Appends Live Link Face CSV rows to `path` (the header is written on opening).

    Each row is built in full and written with one write, so a crash leaves whole rows plus at most one torn
    last line (which `read_livelink_csv` ignores).
    """

    def __init__(self, path: str | os.PathLike, fps: float, start_seconds: float = 0.0) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.start_seconds = float(start_seconds)
        self._f = open(self.path, "w", newline="", encoding="ascii")
        self._f.write(HEADER + "\n")

    def write_row(self, t_seconds: float, weights_ours: np.ndarray, head_ypr_rad: np.ndarray,
                  eyes_rad: np.ndarray) -> None:
        """One frame at `t_seconds` after `start_seconds`: weights [52] in our order, head (yaw, pitch, roll)
        [3] radians, eyes [6] radians as from `eye_rotations`. Values are written with 6 significant digits."""
        w = np.asarray(weights_ours, dtype=np.float64).reshape(-1)
        h = np.asarray(head_ypr_rad, dtype=np.float64).reshape(-1)
        e = np.asarray(eyes_rad, dtype=np.float64).reshape(-1)
        if w.shape != (52,) or h.shape != (3,) or e.shape != (6,):
            raise ValueError(f"expected weights [52], head [3], eyes [6]; got {w.shape}, {h.shape}, {e.shape}")
        vals = np.concatenate([w[FROM_OURS], h, e])
        line = ",".join([timecode(self.start_seconds + t_seconds, self.fps), str(BLEND_SHAPE_COUNT)]
                        + [format(float(v), ".6g") for v in vals])
        self._f.write(line + "\n")

    def flush(self, fsync: bool = False) -> None:
        """Flushes Python's buffer to the OS (and to the disk with `fsync=True`)."""
        self._f.flush()
        if fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> LiveLinkCsvWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_livelink_csv(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(timecodes, values [N,61] float32: the 52 weights in Live Link order then the 9 rotations in radians).

    A torn last line (no final newline, or fewer columns than the header) is ignored.
    """
    text = Path(path).read_text(encoding="ascii")
    lines = text.split("\n")
    torn_tail = lines.pop()  # "" when the file ends with a newline, else an unterminated (torn) line
    del torn_tail
    if not lines:
        raise ValueError(f"{path}: no header line")
    ncol = len(lines[0].split(","))
    if ncol != 2 + BLEND_SHAPE_COUNT:
        raise ValueError(f"{path}: header has {ncol} columns, expected {2 + BLEND_SHAPE_COUNT}")
    codes: list[str] = []
    rows: list[list[float]] = []
    body = lines[1:]
    for k, line in enumerate(body):
        parts = line.rstrip("\r").split(",")
        if len(parts) != ncol:
            if k == len(body) - 1:
                break  # a torn last row
            raise ValueError(f"{path}: line {k + 2} has {len(parts)} columns, expected {ncol}")
        codes.append(parts[0])
        rows.append([float(p) for p in parts[2:]])
    values = np.array(rows, dtype=np.float32).reshape(len(rows), BLEND_SHAPE_COUNT)
    return codes, values
