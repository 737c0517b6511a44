"""Measure the OSC sender's cost: `python -m realtime.osc.measure [--real] [--frames N] [--vertices V] [--mtu B]`.

Reports, per frame, the caller's `send()` time (copy + enqueue) and the sender thread's encode+send
time, for face frames sent to a local UDP sink: synthetic ones (V vertices, 478 landmarks) or, with
`--real`, the real demo clip through the app's tracking and decoding stages (`realtime.clips.real_frames`).
"""
from __future__ import annotations

import argparse
import platform
import socket
import threading
import time

import numpy as np

from realtime.osc.sender import OscSender
from realtime.osc.targets import parse_target
from realtime.record import FrameRecord, HeadPose


class UdpSink:
    """UDP socket on 127.0.0.1 drained by a thread; counts datagrams and bytes. Subclasses keep other
    tallies by overriding `_setup` (run before the thread starts) and `_received`."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self._setup()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="osc-measure-sink", daemon=True)
        self._thread.start()

    def _setup(self) -> None:
        self.datagrams = 0
        self.bytes = 0

    def _received(self, data: bytes) -> None:
        self.bytes += len(data)
        self.datagrams += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._received(self.sock.recv(65536))
            except (TimeoutError, socket.timeout):
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.sock.close()


def synthetic_frame(frame_id: int, n_vertices: int, rng: np.random.Generator) -> FrameRecord:
    """A found face with random landmarks [478,3] px, vertices [V,3] mm and weights [52]."""
    pose = HeadPose(np.eye(3, dtype=np.float32), np.array([0, 0, -600], np.float32), 2.0,
                    np.array([320, 240], np.float32))
    return FrameRecord(frame_id=frame_id, t_capture=time.perf_counter(), timestamp_ms=33 * frame_id, face_found=True,
                       landmarks_px=rng.uniform(0, 640, (478, 3)).astype(np.float32), pose=pose,
                       vertices=rng.normal(0, 80, (n_vertices, 3)).astype(np.float32),
                       expressions=rng.uniform(0, 1, 52).astype(np.float32))


def measure(frames: int, n_vertices: int, mtu: int, formats: list[str], fps: float, real: bool = False) -> dict:
    """Send `frames` frames at `fps` (synthetic with `n_vertices`, or the real clip's with `real`);
    returns caller and thread medians / p95 in ms, datagrams and bytes per frame."""
    if real:
        from realtime.clips import real_frames

        recs = real_frames(frames)
        n_vertices = len(recs[0].vertices)
    else:
        rng = np.random.default_rng(0)
        recs = [synthetic_frame(i, n_vertices, rng) for i in range(frames)]
    sink = UdpSink()
    try:
        sender = OscSender([parse_target(f"{f}@127.0.0.1:{sink.port}") for f in formats], mtu=mtu,
                           topology_interval_s=0, queue_size=4)
        caller_ms = []
        period = 1.0 / fps
        t_next = time.perf_counter()
        for rec in recs:
            t0 = time.perf_counter()
            sender.send(rec)
            caller_ms.append((time.perf_counter() - t0) * 1e3)
            t_next += period
            time.sleep(max(0.0, t_next - time.perf_counter()))
        sender.close()
        time.sleep(0.2)
    finally:
        sink.close()
    thread_ms = list(sender.stats.thread_ms)
    pct = lambda xs, q: float(np.percentile(xs, q)) if xs else float("nan")  # noqa: E731
    return {"frames": frames, "vertices": n_vertices, "mtu": mtu, "formats": formats,
            "caller_ms_p50": pct(caller_ms, 50), "caller_ms_p95": pct(caller_ms, 95),
            "thread_ms_p50": pct(thread_ms, 50), "thread_ms_p95": pct(thread_ms, 95),
            "dropped": sender.stats.dropped, "datagrams_per_frame": sender.stats.datagrams / max(1, sender.stats.frames),
            "bytes_per_frame": sender.stats.bytes / max(1, sender.stats.frames), "received": sink.datagrams,
            "sent": sender.stats.datagrams, "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--vertices", type=int, default=3300)
    p.add_argument("--mtu", type=int, default=1400)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--formats", default="native", help="comma-separated: native,faceosc,vmc")
    p.add_argument("--real", action="store_true", help="the real demo clip, tracked and decoded, instead of random frames")
    a = p.parse_args()
    r = measure(a.frames, a.vertices, a.mtu, a.formats.split(","), a.fps, real=a.real)
    for k, v in r.items():
        print(f"{k:20s} {v:.3f}" if isinstance(v, float) else f"{k:20s} {v}")


if __name__ == "__main__":
    main()
