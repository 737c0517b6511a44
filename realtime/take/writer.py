"""A take on disk: every frame of a performance written, off the frame loop, to one folder.

    out/take1/
      take1.csv         Live Link Face CSV (52 ARKit weights + 9 rotations a row, one row per frame)
      take1.glb         glTF 2.0: the head, its 52 morph targets, an animation of weights and rotation
      take1.pc2         point cache: the decoder's dense vertices every frame (metres)
      take1_head.obj    the topology and UVs the point cache indexes
      take1.npz         all per-frame arrays (below); take1.json: the run's metadata
      take1.parts/      while recording: the chunks everything is (re)built from (part-000000.npz, …),
                        removed once the take is complete

`TakeWriter.put(frame)` only copies the frame into a bounded queue; a writer thread appends each
frame to the CSV and the point cache and keeps the arrays, and every `chunk_frames` frames it writes
a chunk (atomically: a temporary name, then a rename) and flushes the CSV and the point cache (whose
header then counts the frames written). So after any kill the folder holds every frame up to the last
chunk in a readable form; `close()` (every way out of the app: end, Ctrl-C, SIGTERM, an error)
writes the last chunk and builds the npz and the glb; `rebuild_take(folder)` (`python main.py
export-take FOLDER`) rebuilds all outputs from the chunks after a hard kill.

Frames without a face: the npz holds NaN in their arrays and `face_found` False; the CSV, the point
cache and the glb animation hold the last face frame's values (zeros / the rest head before the
first face), the way the Live Link Face importers expect a row for every frame with a steady
timecode.

npz arrays, N frames: frame_id [N] int64, t_s [N] float64 (seconds from the take's first frame),
timestamp_ms [N] int64 (the source's), face_found [N] bool, rotation [N,3,3] float32 (head → camera),
translation_mm [N,3] float32, head_ypr_rad [N,3] float32 (yaw, pitch, roll), landmarks_px [N,478,3]
float32 (MediaPipe's, image pixels), landmarks_norm [N,468,3] float32 (head frame, mm), weights
[N,52] float32 (`expression_names` order), vertices [N,V,3] **float16**, head frame, mm (float16
steps are ≤ 0.0625 mm below 128 mm and 0.125 mm up to 256 mm; the point cache has them in float32),
plus expression_names [52] and triangles [F,3] int32.
"""
from __future__ import annotations

import json
import logging
import math
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.assets import NUM_LANDMARKS, TRACKER_LANDMARKS
from engine.errors import UserError
from engine.rotations import quaternion_from_matrix, yaw_pitch_roll

log = logging.getLogger(__name__)

PARTS = ".parts"
CHUNK_FRAMES = 30  # a chunk a second at 30 FPS: the most a hard kill can lose
QUEUE_FRAMES = 256  # frames in flight to the writer thread (~8 s at 30 FPS) before `put` waits
PER_FRAME = ("frame_id", "t_s", "timestamp_ms", "face_found", "rotation", "translation_mm", "head_ypr_rad",
             "landmarks_px", "landmarks_norm", "weights", "vertices")


@dataclass
class TakeFrame:
    """One frame as the take stores it (copies: the record may change after `put`).

    Arrays are None when the frame has no face. rotation [3,3], translation_mm [3], landmarks_px
    [478,3], landmarks_norm [468,3], weights [52], vertices [V,3] mm; timestamp_ms from the source."""

    frame_id: int
    timestamp_ms: int
    face_found: bool
    rotation: np.ndarray | None = None
    translation_mm: np.ndarray | None = None
    landmarks_px: np.ndarray | None = None
    landmarks_norm: np.ndarray | None = None
    weights: np.ndarray | None = None
    vertices: np.ndarray | None = None


def frame_from_record(record) -> TakeFrame:
    """A `TakeFrame` from a finished FrameRecord (copies of its arrays)."""
    def cp(a):
        return None if a is None else np.array(a, dtype=np.float32)

    ok = bool(record.face_found and record.expressions is not None and record.vertices is not None)
    pose = record.pose if ok else None
    return TakeFrame(frame_id=int(record.frame_id), timestamp_ms=int(record.timestamp_ms), face_found=ok,
                     rotation=cp(pose.rotation) if pose is not None else None,
                     translation_mm=cp(pose.translation_mm) if pose is not None else None,
                     landmarks_px=cp(record.landmarks_px) if ok else None,
                     landmarks_norm=cp(record.landmarks_norm) if ok else None,
                     weights=cp(record.expressions) if ok else None,
                     vertices=cp(record.vertices) if ok else None)


@dataclass(frozen=True)
class TakeLayout:
    """The file names of a take in `folder` (named after the folder)."""

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    def file(self, suffix: str) -> Path:
        return self.folder / f"{self.name}{suffix}"

    @property
    def parts(self) -> Path:
        return self.folder / f"{self.name}{PARTS}"

    @property
    def csv(self) -> Path:
        return self.file(".csv")

    @property
    def glb(self) -> Path:
        return self.file(".glb")

    @property
    def pc2(self) -> Path:
        return self.file(".pc2")

    @property
    def obj(self) -> Path:
        return self.file("_head.obj")

    @property
    def npz(self) -> Path:
        return self.file(".npz")

    @property
    def json(self) -> Path:
        return self.file(".json")


def check_take_folder(path: Path, overwrite: bool, option: str = "--export") -> Path:
    """The take folder, or UserError (before anything heavy loads): it must not exist with files in it
    unless `overwrite`, and its parent must be a writable folder."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UserError(f"{option} {p} is a file; give a folder name for the take, e.g. out/take1")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise UserError(f"{option} {p} already exists and is not empty; choose a new name or add --overwrite")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"folder {parent} for {option} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.is_dir() and not os.access(p, os.W_OK | os.X_OK)):
        raise UserError(f"{option} {p} cannot be written (permission denied); choose another place")
    try:  # the real test (root passes os.access everywhere; /proc, read-only mounts, full disks do not)
        import tempfile

        os.rmdir(tempfile.mkdtemp(prefix=".facemesh-probe-", dir=parent))
    except OSError as exc:
        raise UserError(f"{option} {p} cannot be written ({exc.strerror or exc}); choose another place") from None
    return p


def _atomic_savez(path: Path, **arrays) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class TakeTopology:
    """What every take of one head shares: rest vertices [V,3] mm, triangles [F,3], uvs [V,2],
    expression targets [52,V,3] mm deltas (the glb's morph targets) and their names."""

    rest_vertices: np.ndarray
    triangles: np.ndarray
    uvs: np.ndarray | None
    expression_targets: np.ndarray
    expression_names: tuple[str, ...]

    @classmethod
    def from_head(cls, head) -> "TakeTopology":
        return cls(np.asarray(head.vertices, np.float32), np.asarray(head.triangles, np.int32),
                   None if head.uvs is None else np.asarray(head.uvs, np.float32),
                   np.asarray(head.expression_targets, np.float32), tuple(head.expression_names))


class _Streams:
    """The streamed outputs (CSV and point cache) and the fill-in rule for frames without a face."""

    def __init__(self, layout: TakeLayout, topo: TakeTopology, fps: float, start_seconds: float) -> None:
        from realtime.take.livelink import LiveLinkCsvWriter
        from realtime.take.pointcache import Pc2Writer

        self.topo = topo
        self.csv = LiveLinkCsvWriter(layout.csv, fps=fps, start_seconds=start_seconds)
        self.pc2 = Pc2Writer(layout.pc2, num_points=len(topo.rest_vertices), start_frame=0.0, sample_rate=1.0)
        self.last_weights = np.zeros(len(topo.expression_names), np.float32)
        self.last_ypr = np.zeros(3, np.float32)
        self.last_vertices = topo.rest_vertices

    def write(self, t_s: float, face: bool, weights, ypr, vertices) -> None:
        from realtime.take.livelink import eye_rotations

        if face:
            self.last_weights, self.last_ypr, self.last_vertices = weights, ypr, vertices
        self.csv.write_row(t_s, self.last_weights, self.last_ypr, eye_rotations(self.last_weights))
        self.pc2.append(self.last_vertices)

    def flush(self) -> None:
        self.csv.flush()
        self.pc2.flush()

    def close(self) -> None:
        self.csv.close()
        self.pc2.close()


class _Chunk:
    """Per-frame arrays collected until the next chunk is written."""

    def __init__(self) -> None:
        self.rows: dict[str, list] = {k: [] for k in PER_FRAME}

    def __len__(self) -> int:
        return len(self.rows["frame_id"])

    def add(self, f: TakeFrame, t_s: float, ypr: np.ndarray | None, num_vertices: int, num_weights: int) -> None:
        nan = np.float32("nan")
        r = self.rows
        r["frame_id"].append(f.frame_id)
        r["t_s"].append(t_s)
        r["timestamp_ms"].append(f.timestamp_ms)
        r["face_found"].append(f.face_found)
        r["rotation"].append(f.rotation if f.face_found else np.full((3, 3), nan))
        r["translation_mm"].append(f.translation_mm if f.face_found else np.full(3, nan))
        r["head_ypr_rad"].append(ypr if f.face_found else np.full(3, nan))
        r["landmarks_px"].append(f.landmarks_px if f.face_found else np.full((TRACKER_LANDMARKS, 3), nan))
        r["landmarks_norm"].append(f.landmarks_norm if f.face_found else np.full((NUM_LANDMARKS, 3), nan))
        r["weights"].append(f.weights if f.face_found else np.full(num_weights, nan))
        r["vertices"].append(f.vertices if f.face_found else np.full((num_vertices, 3), nan))

    def arrays(self) -> dict[str, np.ndarray]:
        r = self.rows
        out = {"frame_id": np.asarray(r["frame_id"], np.int64), "t_s": np.asarray(r["t_s"], np.float64),
               "timestamp_ms": np.asarray(r["timestamp_ms"], np.int64),
               "face_found": np.asarray(r["face_found"], bool)}
        for k in ("rotation", "translation_mm", "head_ypr_rad", "landmarks_px", "landmarks_norm", "weights"):
            out[k] = np.stack(r[k]).astype(np.float32)
        out["vertices"] = np.stack(r["vertices"]).astype(np.float32)  # float16 only in the final npz
        return out


class TakeWriter:
    """Writes a take to `folder` from a thread (module docstring). Use as a context manager.

    folder: the take's folder (created; must be new or empty unless `overwrite`). topo: the head.
    fps: the source's frame rate (the CSV's timecode rate). metadata: the run's facts, stored in the
    json. start_seconds: the CSV's first timecode, seconds after midnight (0 for files, the time of day
    for a camera, as Live Link Face does).
    """

    def __init__(self, folder: Path, topo: TakeTopology, fps: float, metadata: dict | None = None,
                 start_seconds: float = 0.0, overwrite: bool = False, chunk_frames: int = CHUNK_FRAMES,
                 queue_frames: int = QUEUE_FRAMES) -> None:
        self.layout = TakeLayout(check_take_folder(folder, overwrite))
        self.topo = topo
        self.fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else 30.0
        self.chunk_frames = max(1, int(chunk_frames))
        self.frames = 0
        self.error: BaseException | None = None
        self._closed = False
        self._waited = False
        lay = self.layout
        if lay.folder.exists():
            shutil.rmtree(lay.folder)
        lay.parts.mkdir(parents=True)
        from realtime.take.pointcache import write_obj

        write_obj(lay.obj, topo.rest_vertices, topo.triangles, topo.uvs)
        self.metadata = dict(metadata or {})
        self.metadata.update({"name": lay.name, "fps": self.fps, "start_seconds": float(start_seconds),
                              "status": "recording", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        _atomic_json(lay.json, self.metadata)
        self._streams = _Streams(lay, topo, self.fps, start_seconds)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(queue_frames)))
        self._thread = threading.Thread(target=self._run, name="take-writer", daemon=True)
        self._t0_ms: int | None = None
        self._chunk = _Chunk()
        self._part = 0
        self._thread.start()
        log.info("writing the take to %s", lay.folder)

    # -- the frame loop's side --------------------------------------------------------------------
    def put(self, frame: TakeFrame) -> None:
        """Queue one frame (waits only when `queue_frames` frames are already waiting)."""
        if self.error is not None:
            raise RuntimeError(f"the take writer failed: {self.error}") from self.error
        try:
            self._queue.put_nowait(frame)
        except queue.Full:
            if not self._waited:
                self._waited = True
                log.warning("the take writer is %d frames behind (slow disk?); the loop waits for it",
                            self._queue.maxsize)
            self._queue.put(frame)

    def close(self) -> None:
        """Write what is queued, the last chunk, then the npz, glb and json (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        self._streams.close()
        if self.error is not None:
            log.error("the take writer failed (%s); rebuild with: python main.py export-take %s",
                      self.error, self.layout.folder)
            return
        finish_take(self.layout, self.topo, self.metadata)
        log.info("take written: %d frames in %s", self.frames, self.layout.folder)

    def __enter__(self) -> "TakeWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the writer thread ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                f = self._queue.get()
                if f is None:
                    break
                self._write(f)
            self._flush_chunk()
        except BaseException as exc:  # noqa: BLE001 - reported on put/close, never lost silently
            self.error = exc
            while self._queue.get() is not None:  # drain so a waiting put() can finish
                pass

    def _write(self, f: TakeFrame) -> None:
        if self._t0_ms is None:
            self._t0_ms = f.timestamp_ms
        t_s = (f.timestamp_ms - self._t0_ms) / 1000.0
        ypr = yaw_pitch_roll(f.rotation) if f.face_found else None
        self._streams.write(t_s, f.face_found, f.weights, ypr, f.vertices)
        self._chunk.add(f, t_s, ypr, len(self.topo.rest_vertices), len(self.topo.expression_names))
        self.frames += 1
        if len(self._chunk) >= self.chunk_frames:
            self._flush_chunk()

    def _flush_chunk(self) -> None:
        if not len(self._chunk):
            return
        _atomic_savez(self.layout.parts / f"part-{self._part:06d}.npz", **self._chunk.arrays())
        self._part += 1
        self._chunk = _Chunk()
        self._streams.flush()


def read_parts(layout: TakeLayout) -> dict[str, np.ndarray]:
    """All chunks of a take concatenated, in order (per-frame arrays of the module docstring)."""
    files = sorted(layout.parts.glob("part-*.npz"))
    if not files:
        raise UserError(f"{layout.folder} has no frames ({layout.parts.name}/ is empty or missing)")
    chunks = []
    for f in files:
        try:
            with np.load(f) as z:
                chunks.append({k: z[k] for k in PER_FRAME})
        except (OSError, ValueError, KeyError) as exc:  # a torn last chunk of a killed run: stop before it
            log.warning("%s is unreadable (%s); the take ends before it", f.name, exc)
            break
    return {k: np.concatenate([c[k] for c in chunks]) for k in PER_FRAME}


def _held(values: np.ndarray, found: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """`values` [N,...] with rows of frames without a face replaced by the last face row (`fill` before
    the first)."""
    out = np.empty_like(values)
    last = fill
    for i in range(len(values)):
        if found[i]:
            last = values[i]
        out[i] = last
    return out


def identity_rest(data: dict[str, np.ndarray], topo: TakeTopology) -> np.ndarray:
    """[V,3] mm the glb's base mesh: the person's shape, the median over face frames of the decoded
    vertices less their linear expression part (the head's rest shape when there is no face frame)."""
    found = data["face_found"]
    if not found.any():
        return topo.rest_vertices
    idx = np.flatnonzero(found)
    idx = idx[:: max(1, len(idx) // 300)]  # at most ~300 frames: a median, not a full pass
    v = data["vertices"][idx].astype(np.float32)
    lin = np.einsum("nj,jvk->nvk", data["weights"][idx], topo.expression_targets)
    return np.median(v - lin, axis=0).astype(np.float32)


def finish_take(layout: TakeLayout, topo: TakeTopology, metadata: dict | None = None,
                rewrite_streams: bool = False) -> dict:
    """Build the npz, glb and json of a take from its chunks (and the CSV and point cache too when
    `rewrite_streams`, as after a hard kill). Returns the json's content."""
    from realtime.take.gltf import write_glb

    data = read_parts(layout)
    meta = dict(metadata if metadata is not None else _read_json(layout.json))
    fps = float(meta.get("fps", 30.0))
    n = len(data["frame_id"])
    found = data["face_found"]
    weights = _held(np.nan_to_num(data["weights"]), found, np.zeros(len(topo.expression_names), np.float32))
    if rewrite_streams:
        _rewrite_streams(layout, topo, data, fps, float(meta.get("start_seconds", 0.0)))
    rest = identity_rest(data, topo)
    rot = _held(np.nan_to_num(data["rotation"]), found, np.eye(3, dtype=np.float32))
    quats = (np.stack([quaternion_from_matrix(r).astype(np.float32) for r in rot]) if n
             else np.zeros((0, 4), np.float32))
    write_glb(layout.glb, rest, topo.triangles, topo.uvs, topo.expression_targets, topo.expression_names,
              data["t_s"].astype(np.float32), np.clip(weights, 0.0, 1.0), quats)
    _atomic_savez(layout.npz, **{**data, "vertices": data["vertices"].astype(np.float16)},
                  expression_names=np.asarray(topo.expression_names), triangles=topo.triangles)
    meta.update({"status": "complete", "frames": n, "face_frames": int(found.sum()),
                 "duration_s": round(float(data["t_s"][-1]), 4) if n else 0.0,
                 "files": {k: getattr(layout, k).name for k in ("csv", "glb", "pc2", "obj", "npz")},
                 "units": {"npz": "mm, head frame (x right, y up, z towards the viewer); vertices float16",
                           "glb, pc2, obj": "metres", "rotations": "radians"}})
    _atomic_json(layout.json, meta)
    shutil.rmtree(layout.parts, ignore_errors=True)  # every output is complete: the chunks are no longer needed
    return meta


def _rewrite_streams(layout: TakeLayout, topo: TakeTopology, data: dict, fps: float, start_seconds: float) -> None:
    s = _Streams(layout, topo, fps, start_seconds)
    try:
        for i in range(len(data["frame_id"])):
            ok = bool(data["face_found"][i])
            s.write(float(data["t_s"][i]), ok, data["weights"][i], data["head_ypr_rad"][i],
                    data["vertices"][i].astype(np.float32) if ok else None)
    finally:
        s.close()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def rebuild_take(folder: Path) -> dict:
    """`python main.py export-take FOLDER`: every output of a take rebuilt from its chunks (after a
    hard kill or a crash). Returns the json's content."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a take folder (made by --export or batch)")
    layout = TakeLayout(folder)
    if not layout.parts.is_dir() and _read_json(layout.json).get("status") == "complete":
        raise UserError(f"{folder} is already complete; nothing to rebuild")
    if not layout.parts.is_dir():
        raise UserError(f"{folder} has no {layout.parts.name}/ folder: not a take written by --export or batch")
    from engine.headspace import load_head

    topo = TakeTopology.from_head(load_head())
    return finish_take(layout, topo, rewrite_streams=True)
