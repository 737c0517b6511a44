"""Receiving the native schema: `FrameAssembler` (pure reassembly), `NativeListener` (a UDP socket
around it) and `run_listener` (the `python main.py listen PORT` command).

A frame is finished by its `/face/end` datagram (or abandoned when a newer frame ends first); it is
`complete` when every landmark and vertex chunk announced in `/face/end` arrived.
"""
from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pythonosc.osc_message import OscMessage

from engine.errors import UserError
from realtime.osc import native as N
from realtime.osc.names import ARKIT_NAMES

log = logging.getLogger(__name__)

RECV_BUFFER_BYTES = 4 << 20
MAX_PENDING_FRAMES = 8  # frames being assembled at once; an older unfinished one is dropped
MAX_BUNDLE_DEPTH = 8  # bundles inside bundles
MAX_LANDMARK_ROWS = 1024
MAX_VERTEX_ROWS = 1 << 17  # before a topology has said how many there are
MAX_TOPOLOGY_ROWS = 1 << 20
MAX_CHUNKS = 1 << 14
BUNDLE_TAG = b"#bundle\x00"


class BadDatagram(ValueError):
    """A datagram or message that does not follow the native schema (dropped and counted)."""


def osc_messages(datagram: bytes, depth: int = 0) -> Iterator[tuple[str, list]]:
    """(address, arguments) of every message in a datagram, bundles walked by our own bounded parser
    (python-osc 1.10.2's loops forever on a bundle element of size −4 and recurses without limit):
    element sizes must be positive, 4-aligned and inside the datagram, nesting at most
    `MAX_BUNDLE_DEPTH`. Raises BadDatagram; a message python-osc cannot parse raises whatever it does."""
    if datagram.startswith(BUNDLE_TAG):
        if depth >= MAX_BUNDLE_DEPTH:
            raise BadDatagram("bundles nested too deep")
        if len(datagram) < 16:
            raise BadDatagram("truncated bundle header")
        pos = 16
        while pos < len(datagram):
            if pos + 4 > len(datagram):
                raise BadDatagram("truncated bundle element size")
            size = int.from_bytes(datagram[pos:pos + 4], "big", signed=True)
            pos += 4
            if size <= 0 or size % 4 or pos + size > len(datagram):
                raise BadDatagram(f"bundle element size {size} does not fit")
            yield from osc_messages(datagram[pos:pos + size], depth + 1)
            pos += size
        return
    msg = OscMessage(datagram)
    yield msg.address, list(msg.params)


@dataclass
class NativeFrame:
    """One reassembled frame. Arrays are float32; None when not sent (no face) or not received.

    position_mm [3], quaternion [4] (x, y, z, w), matrix [4,4], euler_rad [3], center_px [2],
    expressions [52] (ARKit order), landmarks_px [N,3], vertices [V,3] mm (rows of lost chunks NaN).
    """

    frame_id: int
    timestamp_ms: int | None = None
    found: bool = False
    position_mm: np.ndarray | None = None
    quaternion: np.ndarray | None = None
    matrix: np.ndarray | None = None
    euler_rad: np.ndarray | None = None
    scale_px_per_mm: float | None = None
    center_px: np.ndarray | None = None
    expressions: np.ndarray | None = None
    named_expressions: dict[str, float] = field(default_factory=dict)
    landmarks_px: np.ndarray | None = None
    vertices: np.ndarray | None = None
    complete: bool = False
    chunks_expected: tuple[int, int] = (0, 0)
    chunks_received: tuple[int, int] = (0, 0)
    _chunk_sets: dict[str, set[int]] = field(default_factory=lambda: {N.ADDR_LANDMARKS: set(), N.ADDR_VERTICES: set()},
                                             repr=False)
    _header: bool = field(default=False, repr=False)


@dataclass
class ReceivedTopology:
    """Topology from `/face/topology/*`: triangles [F,3] int32, uvs [V,2] float32 or None."""

    topology_id: int
    n_vertices: int
    triangles: np.ndarray
    uvs: np.ndarray | None


class _ChunkBuffer:
    """Collects chunks of one [total, width] array; `total` is checked against `limit` before anything
    is allocated, every chunk against the array's bounds (BadDatagram otherwise)."""

    def __init__(self, total: int, width: int, dtype, limit: int) -> None:
        if not 0 < total <= limit:
            raise BadDatagram(f"array of {total} rows announced (at most {limit})")
        self.data = np.full((total, width), np.nan if dtype == np.float32 else -1, dtype=dtype)
        self.seen: set[int] = set()
        self.count: int | None = None

    def add(self, index: int, count: int, start: int, total: int, values: list, width: int) -> None:
        if total != len(self.data) or not 0 < count <= MAX_CHUNKS or not 0 <= index < count:
            raise BadDatagram("chunk header does not match its array")
        if not values or len(values) % width:
            raise BadDatagram("chunk values are not whole rows")
        vals = np.asarray(values, dtype=self.data.dtype).reshape(-1, width)
        if not 0 <= start <= len(self.data) - len(vals):
            raise BadDatagram("chunk outside its array")
        self.data[start:start + len(vals)] = vals
        self.seen.add(index)
        self.count = count

    @property
    def done(self) -> bool:
        return self.count is not None and len(self.seen) == self.count


class FrameAssembler:
    """Reassembles native frames and topology from datagrams (no I/O).

    `feed(datagram)` returns the frames finished by it (usually none, one at `/face/end`).
    `topology` holds the latest complete topology.
    """

    def __init__(self) -> None:
        self._frames: dict[int, NativeFrame] = {}
        self._order: list[int] = []
        self._arrays: dict[tuple[int, str], _ChunkBuffer] = {}
        self.topology: ReceivedTopology | None = None
        self._topo_info: tuple[int, int, int, int] | None = None
        self._topo_parts: dict[str, _ChunkBuffer] = {}
        self._found = False
        self._current: NativeFrame | None = None
        self.datagrams = 0
        self.bad_datagrams = 0
        self.dropped_frames = 0

    def feed(self, datagram: bytes) -> list[NativeFrame]:
        """Frames finished by this datagram. Never raises: whatever does not follow the schema is
        dropped and counted in `bad_datagrams` (memory stays bounded whatever arrives)."""
        self.datagrams += 1
        try:
            messages = list(osc_messages(bytes(datagram)))
        except Exception:  # noqa: BLE001 - BadDatagram, and anything python-osc raises on garbage
            self.bad_datagrams += 1
            return []
        done: list[NativeFrame] = []
        bad = False
        for addr, params in messages:
            try:
                done += self._message(addr, params)
            except (BadDatagram, ValueError, TypeError, IndexError, OverflowError, KeyError):
                bad = True
        self.bad_datagrams += bad
        return done

    @property
    def pending(self) -> int:
        """Frames being assembled now (at most `MAX_PENDING_FRAMES`)."""
        return len(self._frames)

    def _frame(self, fid: int) -> NativeFrame:
        f = self._frames.get(fid)
        if f is None:
            while len(self._frames) >= MAX_PENDING_FRAMES:  # a flood of unfinished frames: drop the oldest
                self._finish(self._order[0], None, None)
                self.dropped_frames += 1
            f = self._frames[fid] = NativeFrame(frame_id=fid)
            self._order.append(fid)
        return f

    def _message(self, addr: str, p: list) -> list[NativeFrame]:
        if addr == N.ADDR_FOUND:
            self._found = bool(p[0])
        elif addr == N.ADDR_FRAME:
            f = self._frame(int(p[0]))
            f.timestamp_ms, f.found, f._header = int(p[1]), self._found, True
            self._current = f
        elif addr.startswith("/face/pose/") or addr.startswith(N.ADDR_BLEND):
            self._pose_or_blend(addr, p)
        elif addr in (N.ADDR_LANDMARKS, N.ADDR_VERTICES):
            fid, index, count, start, total, *vals = p
            limit = MAX_LANDMARK_ROWS if addr == N.ADDR_LANDMARKS else (
                self.topology.n_vertices if self.topology is not None else MAX_VERTEX_ROWS)
            key = (int(fid), addr)
            buf = self._arrays.get(key)
            if buf is None:
                buf = _ChunkBuffer(int(total), 3, np.float32, limit)  # checks before the frame exists
                self._frame(int(fid))
                self._arrays[key] = buf
            buf.add(int(index), int(count), int(start), int(total), vals, 3)
        elif addr == N.ADDR_END:
            return self._end(int(p[0]), int(p[1]), int(p[2]))
        elif addr.startswith("/face/topology/"):
            self._topology_message(addr, p)
        return []

    _SIZES = {N.ADDR_POSITION: 3, N.ADDR_QUATERNION: 4, N.ADDR_MATRIX: 16, N.ADDR_EULER: 3, N.ADDR_SCALE: 1,
              N.ADDR_CENTER: 2, N.ADDR_BLEND: len(ARKIT_NAMES)}

    def _pose_or_blend(self, addr: str, p: list) -> None:
        f = self._current
        if f is None:
            return
        arr = np.asarray(p, dtype=np.float32)
        want = self._SIZES.get(addr, 1)
        if arr.shape != (want,):
            raise BadDatagram(f"{addr} with {arr.size} values (expected {want})")
        if addr not in self._SIZES and addr[len(N.ADDR_BLEND) + 1:] not in _ARKIT_SET:
            raise BadDatagram(f"unknown expression {addr}")
        if addr == N.ADDR_POSITION:
            f.position_mm = arr
        elif addr == N.ADDR_QUATERNION:
            f.quaternion = arr
        elif addr == N.ADDR_MATRIX:
            f.matrix = arr.reshape(4, 4)
        elif addr == N.ADDR_EULER:
            f.euler_rad = arr
        elif addr == N.ADDR_SCALE:
            f.scale_px_per_mm = float(arr[0])
        elif addr == N.ADDR_CENTER:
            f.center_px = arr
        elif addr == N.ADDR_BLEND:
            f.expressions = arr
        else:
            f.named_expressions[addr[len(N.ADDR_BLEND) + 1:]] = float(arr[0])

    def _end(self, fid: int, n_lm: int, n_v: int) -> list[NativeFrame]:
        out = []
        # frames older than this one that never ended are finished as incomplete
        for old in [k for k in self._order if k != fid and k in self._frames and _older(k, fid)]:
            out.append(self._finish(old, None, None))
        if fid in self._frames:
            out.append(self._finish(fid, n_lm, n_v))
        while len(self._order) > MAX_PENDING_FRAMES:
            self._finish(self._order[0], None, None)
        return out

    def _finish(self, fid: int, n_lm: int | None, n_v: int | None) -> NativeFrame:
        f = self._frames.pop(fid)
        self._order.remove(fid)
        lm = self._arrays.pop((fid, N.ADDR_LANDMARKS), None)
        vx = self._arrays.pop((fid, N.ADDR_VERTICES), None)
        f.landmarks_px = None if lm is None else lm.data
        f.vertices = None if vx is None else vx.data
        got = (0 if lm is None else len(lm.seen), 0 if vx is None else len(vx.seen))
        f.chunks_received = got
        if n_lm is not None and n_v is not None:
            f.chunks_expected = (n_lm, n_v)
            f.complete = f._header and got == (n_lm, n_v)
        return f

    def _topology_message(self, addr: str, p: list) -> None:
        if addr == N.ADDR_TOPO_INFO:
            info = tuple(int(x) for x in p[:4])
            if self._topo_info != info:
                self._topo_info, self._topo_parts = info, {}
            return
        if self._topo_info is None or addr not in (N.ADDR_TOPO_TRIANGLES, N.ADDR_TOPO_UVS):
            return
        tid, index, count, start, total, *vals = p
        if int(tid) != self._topo_info[0]:
            return
        width, dtype = (3, np.int32) if addr == N.ADDR_TOPO_TRIANGLES else (2, np.float32)
        buf = self._topo_parts.get(addr)
        if buf is None:
            buf = self._topo_parts[addr] = _ChunkBuffer(int(total), width, dtype, MAX_TOPOLOGY_ROWS)
        buf.add(int(index), int(count), int(start), int(total), vals, width)
        tid, n_vertices, _, has_uvs = self._topo_info
        tri = self._topo_parts.get(N.ADDR_TOPO_TRIANGLES)
        uvs = self._topo_parts.get(N.ADDR_TOPO_UVS)
        if tri is not None and tri.done and (not has_uvs or (uvs is not None and uvs.done)):
            self.topology = ReceivedTopology(tid, n_vertices, tri.data, uvs.data if has_uvs else None)


_ARKIT_SET = frozenset(ARKIT_NAMES)


def _older(a: int, b: int) -> bool:
    """Frame id a precedes b (int32 ids that wrap)."""
    return 0 < (b - a) % (N.INT32_MASK + 1) < (1 << 30)


class NativeListener:
    """A UDP socket bound to host:port feeding a `FrameAssembler`.

    Once a frame has finished and no topology has arrived, asks the sender for it
    (`/face/topology/request` sent back to the frame's source address), at most once a second. Raises `UserError` when the port is in use.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", request_topology: bool = True) -> None:
        if not 0 <= int(port) <= 65535:
            raise UserError(f"listen port {port} is out of range: use 1..65535")
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][0]
        except socket.gaierror as exc:
            raise UserError(f"cannot resolve listen address {host!r}: {exc}") from exc
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES)
        try:
            self.sock.bind((host, int(port)))
        except OSError as exc:
            self.sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"UDP port {port} on {host} is already in use; stop the program using it "
                                f"or listen on another port") from exc
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.assembler = FrameAssembler()
        self.request_topology = request_topology
        self._last_request = -1e9

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    @property
    def topology(self) -> ReceivedTopology | None:
        return self.assembler.topology

    def receive(self, timeout_s: float = 1.0) -> list[NativeFrame]:
        """Read datagrams until at least one frame is finished or `timeout_s` passes."""
        deadline = time.perf_counter() + timeout_s
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return []
            self.sock.settimeout(left)
            try:
                data, addr = self.sock.recvfrom(65536)
            except (TimeoutError, socket.timeout):
                return []
            frames = self.assembler.feed(data)
            if frames:
                self._maybe_request(addr)
                return frames

    def frames(self, count: int | None = None, timeout_s: float | None = None) -> Iterator[NativeFrame]:
        """Yield finished frames until `count` were yielded or nothing arrived for `timeout_s`."""
        n = 0
        while count is None or n < count:
            got = self.receive(timeout_s if timeout_s is not None else 3600.0)
            if not got and timeout_s is not None:
                return
            for f in got:
                yield f
                n += 1
                if count is not None and n >= count:
                    return

    def _maybe_request(self, addr) -> None:
        if not self.request_topology or self.assembler.topology is not None:
            return
        now = time.perf_counter()
        if now - self._last_request >= 1.0:
            self._last_request = now
            try:
                self.sock.sendto(N.topology_request(), addr)
            except OSError as exc:
                log.debug("topology request to %s failed: %s", addr, exc)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> NativeListener:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def frames_to_arrays(frames: list[NativeFrame], topology: ReceivedTopology | None = None) -> dict[str, np.ndarray]:
    """Stack frames for saving: frame_id [F] i32, timestamp_ms [F] i64, found / complete [F] bool,
    position_mm [F,3], quaternion [F,4], expressions [F,52], landmarks_px [F,N,3], vertices [F,V,3]
    (float32, NaN where absent), expression_names [52]; triangles / uvs when a topology arrived."""
    def stack(attr: str, shape: tuple[int, ...]) -> np.ndarray:
        out = np.full((len(frames), *shape), np.nan, np.float32)
        for i, f in enumerate(frames):
            v = getattr(f, attr)
            if v is not None and v.shape == shape:
                out[i] = v
        return out

    def first_shape(attr: str, default: tuple[int, ...]) -> tuple[int, ...]:
        return next((getattr(f, attr).shape for f in frames if getattr(f, attr) is not None), default)

    arrays = {
        "frame_id": np.array([f.frame_id for f in frames], np.int32),
        "timestamp_ms": np.array([-1 if f.timestamp_ms is None else f.timestamp_ms for f in frames], np.int64),
        "found": np.array([f.found for f in frames], bool),
        "complete": np.array([f.complete for f in frames], bool),
        "position_mm": stack("position_mm", (3,)),
        "quaternion": stack("quaternion", (4,)),
        "expressions": stack("expressions", (len(ARKIT_NAMES),)),
        "landmarks_px": stack("landmarks_px", first_shape("landmarks_px", (0, 3))),
        "vertices": stack("vertices", first_shape("vertices", (0, 3))),
        "expression_names": np.array(ARKIT_NAMES),
    }
    if topology is not None:
        arrays["triangles"] = topology.triangles
        if topology.uvs is not None:
            arrays["uvs"] = topology.uvs
    return arrays


def describe(frame: NativeFrame) -> str:
    """One printable line for a frame."""
    head = f"frame {frame.frame_id:6d}  t={frame.timestamp_ms} ms"
    if not frame.found:
        return f"{head}  no face"
    parts = [head]
    if frame.position_mm is not None:
        parts.append("pos=({:.0f}, {:.0f}, {:.0f}) mm".format(*frame.position_mm))
    if frame.expressions is not None:
        top = int(np.argmax(frame.expressions))
        parts.append(f"{ARKIT_NAMES[top]}={frame.expressions[top]:.2f}")
    parts.append(f"landmarks {0 if frame.landmarks_px is None else len(frame.landmarks_px)}")
    parts.append(f"vertices {0 if frame.vertices is None else len(frame.vertices)}")
    if not frame.complete:
        parts.append("INCOMPLETE (chunks {}/{} {}/{})".format(frame.chunks_received[0], frame.chunks_expected[0],
                                                              frame.chunks_received[1], frame.chunks_expected[1]))
    return "  ".join(parts)


def run_listener(port: int, host: str = "127.0.0.1", out_path: Path | str | None = None, count: int | None = None,
                 timeout_s: float | None = None, echo: Callable[[str], None] | None = print) -> list[NativeFrame]:
    """`python main.py listen PORT`: receive native frames, print one line each, optionally save.

    Stops after `count` frames, after `timeout_s` seconds without a frame, or on Ctrl-C; then writes
    `out_path` (.npz, see `frames_to_arrays`) if given. Returns the frames received when saving
    (an empty list otherwise: a listener left running keeps no history).
    """
    if out_path is not None:
        out_path = Path(out_path)
        if not out_path.parent.is_dir():
            raise UserError(f"cannot save to {out_path}: folder {out_path.parent} does not exist")
    frames: list[NativeFrame] = []
    with NativeListener(port, host) as listener:
        if echo is not None:
            echo(f"listening for native OSC on {host}:{listener.port}" + (f" for {count} frames" if count else "")
                 + "; Ctrl-C to stop")
        try:
            for f in listener.frames(count=count, timeout_s=timeout_s):
                if out_path is not None:  # kept only to be saved: without --out memory stays flat
                    frames.append(f)
                if echo is not None:
                    echo(describe(f))
        except KeyboardInterrupt:
            pass
        topology = listener.topology
    if out_path is not None:
        np.savez_compressed(out_path, **frames_to_arrays(frames, topology))
        if echo is not None:
            echo(f"saved {len(frames)} frames to {out_path}")
    return frames
