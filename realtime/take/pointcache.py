"""PC2 point cache + OBJ topology: a take's per-frame vertex positions for Blender's Mesh Cache modifier
(and 3ds Max / Maya / Houdini point-cache readers).

Both files are written in METRES (our arrays are millimetres in the head frame: x right, y up, z towards the
viewer); the OBJ keeps our vertex order exactly, because the PC2 frames index those vertices.

PC2 layout (little-endian): char[12] b"POINTCACHE2\\0", int32 version = 1, int32 numPoints, float32
startFrame, float32 sampleRate, int32 numSamples, then numSamples x numPoints x 3 float32.

Blender (3.4, checked by tests/test_take_interop.py): import the OBJ with
`bpy.ops.wm.obj_import(filepath=..., forward_axis='Y', up_axis='Z')` (no axis conversion; our vertex order is
kept), add a Mesh Cache modifier with `cache_format='PC2'` and `filepath=...`. Its defaults need no change:
forward_axis='POS_Y', up_axis='POS_Z', flip_axis empty (no axis conversion), play_mode='SCENE',
time_mode='FRAME', frame_start=0, frame_scale=1, interpolation='LINEAR', deform_mode='OVERWRITE'.
In that FRAME mode scene frame f shows sample `f * frame_scale - frame_start` (linear interpolation between
samples, clamped to [0, numSamples - 1]), and the PC2 header's startFrame and sampleRate are IGNORED. So:
  - defaults: scene frame k shows sample k;
  - frame_start = 1: scene frame k + 1 shows sample k (Blender scenes start at frame 1);
  - a take at s x the scene's fps: frame_scale = s (frame_start is then in samples, subtracted after scaling).
We still write startFrame/sampleRate (defaults 0 and 1) for other readers.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from types import TracebackType

import numpy as np

PC2_MAGIC = b"POINTCACHE2\0"
_HEADER = struct.Struct("<12siiffi")  # magic, version, numPoints, startFrame, sampleRate, numSamples
_COUNT_OFFSET = 28  # byte offset of numSamples in the header


class Pc2Writer:
    """Appends frames to a PC2 file. After every `flush()` (and `close()`) the file is a valid PC2 of the
    frames written so far: the header's sample count is rewritten there."""

    def __init__(self, path: str | os.PathLike, num_points: int, start_frame: float = 0.0,
                 sample_rate: float = 1.0) -> None:
        self.path = Path(path)
        self.num_points = int(num_points)
        self.num_samples = 0
        self._f = open(self.path, "wb")
        self._f.write(_HEADER.pack(PC2_MAGIC, 1, self.num_points, float(start_frame), float(sample_rate), 0))

    def append(self, vertices_mm: np.ndarray) -> None:
        """One frame: vertices [num_points, 3] in millimetres (written as float32 metres)."""
        v = np.asarray(vertices_mm)
        if v.shape != (self.num_points, 3):
            raise ValueError(f"expected vertices [{self.num_points},3], got {v.shape}")
        self._f.write((v.astype(np.float64) / 1000.0).astype("<f4").tobytes())
        self.num_samples += 1

    def flush(self, fsync: bool = False) -> None:
        """Rewrites the header's sample count, then flushes (and fsyncs with `fsync=True`)."""
        self._f.flush()  # frames reach the file before the count that covers them
        self._f.seek(_COUNT_OFFSET)
        self._f.write(struct.pack("<i", self.num_samples))
        self._f.seek(0, os.SEEK_END)
        self._f.flush()
        if fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self.flush()
            self._f.close()

    def __enter__(self) -> Pc2Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_pc2(path: str | os.PathLike) -> tuple[np.ndarray, float, float]:
    """(frames [N,V,3] float32 metres, startFrame, sampleRate). N = min(header count, complete frames in the
    file): trailing bytes of a partly written frame are ignored."""
    data = Path(path).read_bytes()
    if len(data) < _HEADER.size:
        raise ValueError(f"{path}: shorter than a PC2 header")
    magic, version, npts, start, rate, count = _HEADER.unpack_from(data)
    if magic != PC2_MAGIC:
        raise ValueError(f"{path}: not a PC2 file (magic {magic!r})")
    frame_bytes = npts * 12
    present = (len(data) - _HEADER.size) // frame_bytes if frame_bytes else 0
    n = max(0, min(count, present))
    frames = np.frombuffer(data, dtype="<f4", count=n * npts * 3, offset=_HEADER.size)
    return frames.reshape(n, npts, 3).astype(np.float32), float(start), float(rate)


def write_obj(path: str | os.PathLike, vertices_mm: np.ndarray, triangles: np.ndarray,
              uvs: np.ndarray | None = None) -> None:
    """Wavefront OBJ in metres: `v` per vertex in our order, `vt` per vertex (same indexing as `v`, when uvs
    [V,2] are given), `f a/a b/b c/c` 1-based triangles [F,3]."""
    v = np.asarray(vertices_mm, dtype=np.float64) / 1000.0
    t = np.asarray(triangles, dtype=np.int64) + 1
    if v.ndim != 2 or v.shape[1] != 3 or t.ndim != 2 or t.shape[1] != 3:
        raise ValueError(f"expected vertices [V,3] and triangles [F,3], got {v.shape} and {t.shape}")
    lines = ["# facemesh-live head; units: metres (x right, y up, z towards the viewer)"]
    lines += [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in v.tolist()]
    if uvs is not None:
        uv = np.asarray(uvs, dtype=np.float64)
        if uv.shape != (len(v), 2):
            raise ValueError(f"expected uvs [{len(v)},2], got {uv.shape}")
        lines += [f"vt {a:.9g} {b:.9g}" for a, b in uv.tolist()]
        lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in t.tolist()]
    else:
        lines += [f"f {a} {b} {c}" for a, b, c in t.tolist()]
    Path(path).write_text("\n".join(lines) + "\n", encoding="ascii")
