"""Shared OSC test data and helpers (tests/test_osc.py, tests/test_osc_formats.py, tests/test_smoothing.py):
frames built from the shipped assets, the real demo clip's records, a capturing UDP socket."""
from __future__ import annotations

import functools
import socket
import time
from pathlib import Path

import numpy as np
from pythonosc.osc_packet import OscPacket

from realtime.osc.measure import UdpSink
from realtime.record import FrameRecord, HeadPose

MODELS = Path(__file__).resolve().parent.parent / "models"


def rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]], np.float32)


def face_record(frame_id: int = 0, found: bool = True, yaw_deg: float = 10.0, scale: float = 2.0) -> FrameRecord:
    """A frame built from the shipped assets: MediaPipe's canonical face as landmarks (projected at
    `scale` px/mm around (320, 240), iris points at the eye corners), the dense head as vertices."""
    can = np.load(MODELS / "canonical_face.npz")["vertices"].astype(np.float64)
    head = np.load(MODELS / "head.npz")
    rot = rot_y(yaw_deg)
    pts = can @ rot.T.astype(np.float64)
    lm = np.zeros((478, 3), np.float32)
    lm[:468] = np.stack([320 + scale * pts[:, 0], 240 - scale * pts[:, 1], -scale * pts[:, 2]], axis=1)
    lm[468:] = lm[[33, 133, 159, 145, 160, 362, 263, 386, 374, 387]]
    rng = np.random.default_rng(frame_id)
    pose = HeadPose(rotation=rot, translation_mm=np.array([10.0, -5.0, -600.0], np.float32), scale_px_per_mm=scale,
                    center_px=np.array([320.0, 240.0], np.float32))
    verts = head["vertices"] + rng.normal(0, 1.0, head["vertices"].shape).astype(np.float32)
    return FrameRecord(frame_id=frame_id, t_capture=time.perf_counter(), timestamp_ms=1000 + 33 * frame_id,
                       face_found=found, landmarks_px=lm if found else None, pose=pose if found else None,
                       vertices=verts if found else None,
                       expressions=rng.uniform(0, 1, 52).astype(np.float32) if found else None)


def head_topology():
    head = np.load(MODELS / "head.npz")
    return head["triangles"], head["uvs"]


@functools.lru_cache(maxsize=1)
def real_records() -> tuple[FrameRecord, ...]:
    """30 frames of the real demo clip (640×480) through the real tracker and face model (cached for
    the session)."""
    from realtime.clips import real_frames

    records = tuple(real_frames(30))
    assert all(r.face_found for r in records)
    return records


class Capture(UdpSink):
    """A UDP socket on 127.0.0.1 that records every datagram (the measuring sink, keeping the bytes)."""

    def _setup(self) -> None:
        self.datagrams: list[bytes] = []

    def _received(self, data: bytes) -> None:
        self.datagrams.append(data)

    def wait_quiet(self, quiet_s: float = 0.3, max_s: float = 10.0) -> list[bytes]:
        """Wait until no datagram arrived for `quiet_s`, then stop; returns all datagrams."""
        t_end = time.perf_counter() + max_s
        n = -1
        while time.perf_counter() < t_end and n != len(self.datagrams):
            n = len(self.datagrams)
            time.sleep(quiet_s)
        self.close()
        return self.datagrams


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def messages_of(datagrams: list[bytes]) -> list[tuple[str, str, list]]:
    """(address, type tags without ',', params) of every message, bundles unpacked."""
    out = []
    for d in datagrams:
        for timed in OscPacket(d).messages:
            m = timed.message
            out.append((m.address, _type_tags(m.dgram), list(m.params)))
    return out


def _type_tags(dgram: bytes) -> str:
    start = dgram.index(b",", dgram.index(b"\x00"))
    return dgram[start + 1:dgram.index(b"\x00", start)].decode()
