"""The native OSC schema: FrameRecord → datagrams of at most `mtu` bytes (schema: docs/osc.md).

Pure functions; the sender calls them on its thread. Numbers are int32 or float32 only.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from realtime.osc.encode import chunked, floats, message, pack_bundles
from realtime.osc.names import ARKIT_NAMES
from realtime.record import FrameRecord

PREFIX = "/face"
ADDR_FOUND = "/face/found"
ADDR_FRAME = "/face/frame"
ADDR_POSITION = "/face/pose/position"
ADDR_QUATERNION = "/face/pose/quaternion"
ADDR_MATRIX = "/face/pose/matrix"
ADDR_EULER = "/face/pose/euler"
ADDR_SCALE = "/face/pose/scale"
ADDR_CENTER = "/face/pose/center"
ADDR_BLEND = "/face/blend"
ADDR_LANDMARKS = "/face/landmarks"
ADDR_VERTICES = "/face/vertices"
ADDR_END = "/face/end"
ADDR_TOPO_INFO = "/face/topology/info"
ADDR_TOPO_TRIANGLES = "/face/topology/triangles"
ADDR_TOPO_UVS = "/face/topology/uvs"
ADDR_TOPO_REQUEST = "/face/topology/request"

INT32_MASK = 0x7FFFFFFF


def wrap_int32(value: int) -> int:
    """A non-negative counter folded into int32 range (frame ids, millisecond timestamps)."""
    return int(value) & INT32_MASK


@dataclass(frozen=True)
class Topology:
    """Mesh topology sent at start and on request.

    triangles: [F,3] int32 vertex indices; uvs: [V,2] float32 texture coordinates, or None.
    """

    triangles: np.ndarray
    uvs: np.ndarray | None = None

    @staticmethod
    def of(value: Topology | tuple | None) -> Topology | None:
        """Accept a Topology, a `(triangles, uvs)` / `(triangles,)` tuple, or None."""
        if value is None or isinstance(value, Topology):
            return value
        tri = np.ascontiguousarray(value[0], dtype=np.int32).reshape(-1, 3)
        uvs = value[1] if len(value) > 1 else None
        return Topology(tri, None if uvs is None else np.ascontiguousarray(uvs, dtype=np.float32).reshape(-1, 2))

    @property
    def n_vertices(self) -> int:
        """Vertex count: the UV rows, else one more than the largest index."""
        if self.uvs is not None:
            return len(self.uvs)
        return int(self.triangles.max()) + 1 if len(self.triangles) else 0

    @property
    def topology_id(self) -> int:
        """int32 CRC of the triangles and UVs: the id carried by every topology chunk."""
        crc = zlib.crc32(np.ascontiguousarray(self.triangles, dtype="<i4").tobytes())
        if self.uvs is not None:
            crc = zlib.crc32(np.ascontiguousarray(self.uvs, dtype="<f4").tobytes(), crc)
        return crc & INT32_MASK


def header_messages(rec: FrameRecord) -> list[bytes]:
    """The small per-frame messages: found, frame, pose (if any), expression weights (if any)."""
    found = bool(rec.face_found)
    msgs = [message(ADDR_FOUND, "i", [int(found)]),
            message(ADDR_FRAME, "ii", [wrap_int32(rec.frame_id), wrap_int32(rec.timestamp_ms)])]
    if found and rec.pose is not None:
        p = rec.pose
        msgs += [message(ADDR_POSITION, "fff", floats(p.translation_mm)),
                 message(ADDR_QUATERNION, "ffff", floats(p.quaternion())),
                 message(ADDR_MATRIX, "f" * 16, floats(p.matrix())),
                 message(ADDR_EULER, "fff", floats(p.euler_xyz_rad())),
                 message(ADDR_SCALE, "f", floats([p.scale_px_per_mm])),
                 message(ADDR_CENTER, "ff", floats(p.center_px))]
    if found and rec.expressions is not None:
        w = floats(rec.expressions)
        if len(w) != len(ARKIT_NAMES):
            raise ValueError(f"expected {len(ARKIT_NAMES)} expression weights, got {len(w)}")
        msgs.append(message(ADDR_BLEND, "f" * len(w), w))
        msgs += [message(f"{ADDR_BLEND}/{name}", "f", [v]) for name, v in zip(ARKIT_NAMES, w)]
    return msgs


def encode_frame(rec: FrameRecord, mtu: int) -> list[bytes]:
    """All datagrams of one frame, each ≤ mtu bytes, in send order.

    1. bundles of the header messages; 2. `/face/landmarks` chunks ([478,3] px); 3. `/face/vertices`
    chunks ([V,3] mm, head frame); 4. `/face/end iii` (frame id, landmark chunk count, vertex chunk
    count) so a receiver knows when the frame is over and whether it lost a chunk.
    """
    fid = wrap_int32(rec.frame_id)
    out = pack_bundles(header_messages(rec), mtu)
    lm_chunks: list[bytes] = []
    v_chunks: list[bytes] = []
    if rec.face_found:
        if rec.landmarks_px is not None:
            lm_chunks = chunked(ADDR_LANDMARKS, fid, np.asarray(rec.landmarks_px).reshape(-1, 3), "f", mtu)
        if rec.vertices is not None:
            v_chunks = chunked(ADDR_VERTICES, fid, np.asarray(rec.vertices).reshape(-1, 3), "f", mtu)
    return out + lm_chunks + v_chunks + [message(ADDR_END, "iii", [fid, len(lm_chunks), len(v_chunks)])]


def encode_topology(topology: Topology, mtu: int) -> list[bytes]:
    """Topology datagrams, each ≤ mtu: `/face/topology/info iiii` (topology id, vertex count,
    triangle count, 1 if UVs follow) then `/face/topology/triangles` chunks ([F,3] int32) and
    `/face/topology/uvs` chunks ([V,2] float32), all with the topology id in the chunk header."""
    tid = topology.topology_id
    has_uvs = topology.uvs is not None
    out = [message(ADDR_TOPO_INFO, "iiii", [tid, topology.n_vertices, len(topology.triangles), int(has_uvs)])]
    out += chunked(ADDR_TOPO_TRIANGLES, tid, topology.triangles, "i", mtu)
    if has_uvs:
        out += chunked(ADDR_TOPO_UVS, tid, topology.uvs, "f", mtu)
    return out


def topology_request() -> bytes:
    """The datagram a receiver sends back to the sender's address to get the topology again."""
    return message(ADDR_TOPO_REQUEST)
