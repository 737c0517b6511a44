"""`OscSender`: one UDP socket per destination and one sender thread behind a bounded queue.

The caller's `send(record)` only copies the fields the encoders read and enqueues them (a few µs);
when the queue is full the oldest frame is dropped. The thread encodes each frame once per format,
sends with non-blocking sockets (a full socket buffer drops the rest of that frame for that
destination) and warns once per destination when sending fails (unreachable host, no route...).
It also answers `/face/topology/request` datagrams sent back to a native destination's socket.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pythonosc.osc_message import OscMessage

from engine.errors import UserError
from realtime.osc.formats import FORMATS, EncodeOptions, OscFormat
from realtime.osc.native import ADDR_TOPO_REQUEST, Topology, encode_topology
from realtime.osc.targets import OscTarget
from realtime.record import FrameRecord, HeadPose

log = logging.getLogger(__name__)

MIN_MTU = 512
MAX_MTU = 65507  # largest UDP payload over IPv4
SEND_BUFFER_BYTES = 1 << 20


@dataclass
class SenderStats:
    """Counters since the sender started (read them after `close()` for exact values).

    enqueued / dropped: frames given to `send` / dropped from the full queue (oldest first);
    frames: frames encoded and sent; datagrams / bytes: sent successfully; failed: datagrams not sent
    (socket buffer full or send error); topology_sends: topology transmissions (all destinations);
    ignored: datagrams that reached a sending socket and were not a topology request from its
    destination (malformed, foreign, anything): dropped; thread_errors: unexpected errors the sender
    thread survived;
    thread_ms: encode+send wall time of recent frames (perf_counter, ms, last 1,000).
    """

    enqueued: int = 0
    dropped: int = 0
    frames: int = 0
    datagrams: int = 0
    bytes: int = 0
    failed: int = 0
    topology_sends: int = 0
    ignored: int = 0
    thread_errors: int = 0
    thread_ms: deque = field(default_factory=lambda: deque(maxlen=1000))


@dataclass
class _Destination:
    target: OscTarget
    sockaddr: tuple
    sock: socket.socket
    warned: bool = False
    connected: bool = False

    @property
    def format(self) -> OscFormat:
        return FORMATS[self.target.format]


def _resolve(target: OscTarget) -> tuple[int, tuple]:
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UserError(f"cannot resolve OSC host {target.host!r} ({target}): {exc}; check the --osc value") from exc
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _copy(a: np.ndarray | None) -> np.ndarray | None:
    """An independent copy of an array (or None)."""
    return None if a is None else np.array(a, copy=True)


def _snapshot(rec: FrameRecord) -> FrameRecord:
    """A copy holding only what the encoders read (no image, no normalised landmarks, no timings),
    with its arrays copied (the caller may reuse its buffers): landmarks_px [478,3], vertices [V,3],
    expressions [52] and the pose's arrays. About 10 µs for a 3,260-vertex frame."""
    pose = rec.pose
    if pose is not None:
        pose = HeadPose(rotation=_copy(pose.rotation), translation_mm=_copy(pose.translation_mm),
                        scale_px_per_mm=pose.scale_px_per_mm, center_px=_copy(pose.center_px))
    return FrameRecord(frame_id=rec.frame_id, t_capture=rec.t_capture, timestamp_ms=rec.timestamp_ms,
                       face_found=rec.face_found, landmarks_px=_copy(rec.landmarks_px), pose=pose,
                       vertices=_copy(rec.vertices), expressions=_copy(rec.expressions), t_sent=rec.t_sent)


POLL_MAX = 64  # datagrams read back per socket per frame at most
# Pacing: a native frame is ~46 datagrams (61 KB); sent back to back in < 1 ms they overflow a
# receiver whose default socket buffer fills faster than its loop drains it (Pd, oscP5, python-osc's
# servers). After every PACE_BURST datagrams the sender thread pauses PACE_GAP_S: a frame then takes
# ~3 ms on the wire, a tenth of a 30 FPS frame period, and the receiver gets time to keep up.
PACE_BURST = 8
PACE_GAP_S = 0.0005


def _is_topology_request(data: bytes) -> bool:
    """Whether a datagram is an OSC message to the topology-request address; never raises (any bytes)."""
    try:
        return OscMessage(data).address == ADDR_TOPO_REQUEST
    except Exception:  # noqa: BLE001 - python-osc raises ParseError, UnicodeDecodeError, IndexError, …
        return False


class OscSender:
    """Streams frames to every target without blocking the caller.

    targets: destinations (see `parse_target`); mtu: largest datagram in bytes (512..65507);
    topology: `(triangles [F,3], uvs [V,2])` or a `Topology`, sent to native destinations at start,
    on request and every `topology_interval_s` seconds (0 disables the periodic resend);
    queue_size: frames waiting for the thread before the oldest is dropped; faceosc_raw: add
    FaceOSC's `/raw` points; pace: spread a frame's datagrams (`PACE_BURST`, `PACE_GAP_S`);
    mesh_every: native destinations get the dense mesh (`/face/vertices`, ~30 of a frame's ~46
    datagrams) only in every Nth frame (frame id % N == 0): the compact stream for receivers that
    need the weights and pose at full rate but the mesh less often (their `/face/end` then announces
    0 vertex chunks; keep the last mesh). Use as a context manager or call `close()` (idempotent, joins the thread).
    """

    def __init__(self, targets: Sequence[OscTarget], mtu: int = 1400,
                 topology: Topology | tuple | None = None, queue_size: int = 4,
                 faceosc_raw: bool = False, topology_interval_s: float = 10.0, pace: bool = True,
                 mesh_every: int = 1) -> None:
        if not MIN_MTU <= int(mtu) <= MAX_MTU:
            raise UserError(f"--osc-mtu {mtu} is out of range: use {MIN_MTU}..{MAX_MTU} bytes (1400 is safe on Ethernet)")
        if queue_size < 1:
            raise ValueError(f"queue_size must be ≥ 1, got {queue_size}")
        self.mtu = int(mtu)
        self.topology = Topology.of(topology)
        self.faceosc_raw = faceosc_raw
        self.pace = bool(pace)
        if int(mesh_every) < 1:
            raise UserError(f"--osc-mesh-every {mesh_every} must be at least 1 (1 = the mesh in every frame)")
        self.mesh_every = int(mesh_every)
        self.topology_interval_s = float(topology_interval_s)
        self.stats = SenderStats()
        self.error: BaseException | None = None
        unknown = [str(t) for t in targets if t.format not in FORMATS]
        if unknown:
            raise ValueError(f"unknown OSC format in {', '.join(unknown)}; registered: {', '.join(FORMATS)}")
        resolved = [(target, *_resolve(target)) for target in targets]  # UserError before any socket exists
        self._dests: list[_Destination] = []
        for target, family, sockaddr in resolved:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            # Connected: the kernel picks the local address of the route to the destination (loopback
            # for 127.0.0.1, not every interface) and delivers replies from that peer only; the only
            # thing we read back is a native receiver's topology request (docs/osc.md).
            connected = True
            try:
                sock.connect(sockaddr)
            except OSError:  # no route yet (network down): send unconnected; replies are then filtered
                connected = False
            sock.setblocking(False)
            self._dests.append(_Destination(target, sockaddr, sock, connected=connected))
        self._queue: deque[FrameRecord] = deque()
        self._queue_size = int(queue_size)
        self._cond = threading.Condition()
        self._closing = False
        self._closed = False
        self._topology_due: set[int] = self._topology_destinations()
        self._topology_bytes: list[bytes] | None = None
        self._t0 = self._last_topology = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="osc-sender", daemon=True)
        self._thread.start()

    def _topology_destinations(self) -> set[int]:
        """Indices of the destinations whose format takes the mesh topology (`needs_topology`)."""
        return {i for i, d in enumerate(self._dests) if d.format.needs_topology}

    @property
    def targets(self) -> list[OscTarget]:
        return [d.target for d in self._dests]

    def local_ports(self) -> list[int]:
        """The UDP port each destination's socket sends from (receivers reply there)."""
        return [d.sock.getsockname()[1] for d in self._dests]

    # --- caller side -------------------------------------------------------------------------
    def send(self, frame: FrameRecord) -> None:
        """Enqueue a frame for every destination; never blocks on the network."""
        snap = _snapshot(frame)
        with self._cond:
            if self._closing:
                return
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self.stats.dropped += 1
            self._queue.append(snap)
            self.stats.enqueued += 1
            self._cond.notify()

    def request_topology(self) -> None:
        """Send the topology again to every destination that takes it (native; on the sender thread)."""
        with self._cond:
            self._topology_due.update(self._topology_destinations())
            self._cond.notify()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued, stop the thread (join) and close the sockets. Safe to call twice."""
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            log.warning("OSC sender thread did not stop within %.1f s", timeout_s)
        for d in self._dests:
            d.sock.close()
        self._closed = True

    def __enter__(self) -> OscSender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check(self) -> None:
        """Raise RuntimeError if the sender thread has died (it survives everything it expects; this
        is for what it does not): the app's OSC stage calls it every frame, so no frame is silently lost."""
        if not self._closing and not self._thread.is_alive():
            raise RuntimeError(f"the OSC sender thread stopped ({self.error!r}); no OSC is being sent — "
                               "please report this with the log above")

    # --- sender thread -----------------------------------------------------------------------
    def _run(self) -> None:
        """The thread: survives any error of one iteration (logged, counted), exits only on close."""
        while True:
            try:
                if self._run_once():
                    return
            except Exception as exc:  # noqa: BLE001 - the thread must not die on anything a frame or the network does
                self.stats.thread_errors += 1
                self.error = exc
                if self.stats.thread_errors == 1 or self.stats.thread_errors % 1000 == 0:
                    log.error("OSC sender: %s: %s (%d so far); still running", type(exc).__name__, exc,
                              self.stats.thread_errors, exc_info=log.isEnabledFor(logging.DEBUG))
                time.sleep(0.01)  # an error that repeats every iteration must not spin a core

    def _run_once(self) -> bool:
        """One iteration; True when the thread should end."""
        with self._cond:
            if not (self._queue or self._closing or self._topology_due):
                self._cond.wait(timeout=0.1)
            rec = self._queue.popleft() if self._queue else None
            stop = self._closing and not self._queue
            due, self._topology_due = self._topology_due, set()
        self._poll_requests(due)
        if self.topology is not None and self.topology_interval_s > 0 and \
                time.perf_counter() - self._last_topology >= self.topology_interval_s:
            due |= self._topology_destinations()
        if due and self.topology is not None:
            self._send_topology(due)
            self._last_topology = time.perf_counter()
        if rec is not None:
            self._send_frame(rec)
        return stop

    def _poll_requests(self, due: set[int]) -> None:
        """Drain every socket (at most `POLL_MAX` datagrams each per frame, so a flood cannot stall
        the thread); a topology-taking (native) destination's own topology request is honoured,
        anything else dropped."""
        for i, d in enumerate(self._dests):
            for _ in range(POLL_MAX):
                try:
                    data, peer = d.sock.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # e.g. ICMP port unreachable reported on this socket
                    break
                if d.format.needs_topology and _is_topology_request(data) and \
                        (d.connected or peer[:2] == d.sockaddr[:2]):
                    due.add(i)
                    continue
                self.stats.ignored += 1
                if self.stats.ignored == 1 or self.stats.ignored % 10_000 == 0:
                    log.warning("OSC: ignored %d datagram(s) sent back to our sending port (only a native "
                                "receiver's %s is read there)", self.stats.ignored, ADDR_TOPO_REQUEST)

    def _send_topology(self, due: set[int]) -> None:
        if self._topology_bytes is None:
            self._topology_bytes = encode_topology(self.topology, self.mtu)
        for i in sorted(due):
            self._send_all(self._dests[i], self._topology_bytes)
            self.stats.topology_sends += 1

    def _send_frame(self, rec: FrameRecord) -> None:
        t0 = time.perf_counter()
        encoded: dict[str, list[bytes]] = {}
        options = EncodeOptions(self.mtu, faceosc_raw=self.faceosc_raw, mesh_every=self.mesh_every)
        try:
            for d in self._dests:
                fmt = d.format
                if fmt.name not in encoded:
                    encoded[fmt.name] = fmt.encode(rec, options, time.perf_counter() - self._t0)
                self._send_all(d, encoded[fmt.name])
        except (ValueError, TypeError, OverflowError) as exc:  # malformed record: keep the app running
            if self.error is None:
                log.error("OSC: cannot encode frame %d: %s", rec.frame_id, exc)
            self.error = exc
            return
        self.stats.frames += 1
        self.stats.thread_ms.append((time.perf_counter() - t0) * 1e3)

    def _send_all(self, d: _Destination, datagrams: list[bytes]) -> None:
        sock, addr = d.sock, d.sockaddr
        sent = n_bytes = 0
        try:
            for dgram in datagrams:
                n_bytes += sock.send(dgram) if d.connected else sock.sendto(dgram, addr)
                sent += 1
                if self.pace and sent % PACE_BURST == 0 and sent < len(datagrams):
                    time.sleep(PACE_GAP_S)
        except BlockingIOError:  # socket buffer full: the receiver side or network is slow
            self.stats.failed += len(datagrams) - sent
        except OSError as exc:  # unreachable host/network, refused...: warn once, keep going
            if not d.warned:
                log.warning("OSC destination %s: %s; still sending, this warning is shown once",
                            d.target, exc.strerror or exc)
                d.warned = True
            self.stats.failed += len(datagrams) - sent
        self.stats.datagrams += sent
        self.stats.bytes += n_bytes
