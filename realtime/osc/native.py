"""The native OSC schema: FrameRecord → datagrams of at most `mtu` bytes (schema: docs/osc.md).

Pure functions; the sender calls them on its thread. Numbers are int32 or float32 only. A frame is
encoded by filling its cached `frame_template` (realtime/osc/template.py): a few numpy assignments,
byte-identical to python-osc's builders (tests/test_osc.py).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from realtime.osc.encode import chunked, float_array_message, message, message_prefix, one_float_messages
from realtime.osc.names import ARKIT_NAMES
from realtime.osc.template import FrameTemplate, TemplateBuilder
from realtime.record import FrameRecord, HeadPose

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

_NAMED_BLEND_PREFIXES: tuple[bytes, ...] = tuple(message_prefix(f"{ADDR_BLEND}/{name}", "f") for name in ARKIT_NAMES)
"""Address and ',f' of each `/face/blend/<name>` message, in ARKIT_NAMES order."""


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


POSE_MESSAGES: tuple[tuple[str, int], ...] = ((ADDR_POSITION, 3), (ADDR_QUATERNION, 4), (ADDR_MATRIX, 16),
                                              (ADDR_EULER, 3), (ADDR_SCALE, 1), (ADDR_CENTER, 2))
"""The pose messages in send order, with their float32 argument counts (29 in all, `pose_values`)."""


def pose_values(pose: HeadPose) -> np.ndarray:
    """[29] float32, the pose messages' arguments in order: position [3] mm, quaternion [4] (x y z w),
    matrix [16] row-major (translation in mm), euler [3] rad (pitch yaw roll), scale [1] px/mm,
    center [2] px."""
    v = np.empty(29, dtype=np.float32)
    v[0:3] = np.reshape(pose.translation_mm, -1)
    v[3:7] = pose.quaternion()
    v[7:23] = pose.matrix().reshape(-1)
    v[23:26] = pose.euler_xyz_rad()
    v[26] = pose.scale_px_per_mm
    v[27:29] = np.reshape(pose.center_px, -1)
    return v


@lru_cache(maxsize=32)
def frame_template(found: bool, pose: bool, weights: bool, n_landmarks: int, n_vertices: int,
                   mtu: int) -> FrameTemplate:
    """The datagrams of every native frame of this shape (docs/osc.md), with slots: "id" (the frame
    id, in `/face/frame`, every chunk and `/face/end`), "time" (ms), "pose" [29] (`pose_values`),
    "blend" / "named" [52] (the weights in `/face/blend` and in the `/face/blend/<name>` messages)
    and the row runs "landmarks" / "vertices" ([N,3] float32 chunk payloads)."""
    header: list[tuple[bytes, tuple[str, ...]]] = [(message(ADDR_FOUND, "i", [int(found)]), ()),
                                                   (message(ADDR_FRAME, "ii", [0, 0]), ("id", "time"))]
    if pose:
        header += [(message(address, "f" * n, [0.0] * n), ("pose",) * n) for address, n in POSE_MESSAGES]
    if weights:
        zeros = np.zeros(len(ARKIT_NAMES), np.float32)
        header.append((float_array_message(ADDR_BLEND, zeros), ("blend",) * len(zeros)))
        header += [(m, ("named",)) for m in one_float_messages(_NAMED_BLEND_PREFIXES, zeros)]
    b = TemplateBuilder(mtu)
    b.bundles(header)
    n_lm = b.float_chunks(ADDR_LANDMARKS, n_landmarks, 3, "id", "landmarks")
    n_vx = b.float_chunks(ADDR_VERTICES, n_vertices, 3, "id", "vertices")
    b.message(message(ADDR_END, "iii", [0, n_lm, n_vx]), ("id", "", ""))
    return b.build()


def encode_frame(rec: FrameRecord, mtu: int) -> list[bytes]:
    """All datagrams of one frame, each ≤ mtu bytes, in send order.

    1. bundles of the header messages (found, frame, pose and weights when a face is found);
    2. `/face/landmarks` chunks ([478,3] px); 3. `/face/vertices` chunks ([V,3] mm, head frame);
    4. `/face/end iii` (frame id, landmark chunk count, vertex chunk count) so a receiver knows when
    the frame is over and whether it lost a chunk. Built from the frame's `frame_template`.
    """
    found = bool(rec.face_found)
    pose = rec.pose if found else None
    floats: dict[str, np.ndarray] = {}
    rows: dict[str, np.ndarray] = {}
    if pose is not None:
        floats["pose"] = pose_values(pose)
    if found and rec.expressions is not None:
        w = np.asarray(rec.expressions, dtype=np.float32).reshape(-1)
        if len(w) != len(ARKIT_NAMES):
            raise ValueError(f"expected {len(ARKIT_NAMES)} expression weights, got {len(w)}")
        floats["blend"] = floats["named"] = w
    if found and rec.landmarks_px is not None:
        rows["landmarks"] = np.asarray(rec.landmarks_px).reshape(-1, 3)
    if found and rec.vertices is not None:
        rows["vertices"] = np.asarray(rec.vertices).reshape(-1, 3)
    template = frame_template(found, pose is not None, "blend" in floats, len(rows.get("landmarks", ())),
                              len(rows.get("vertices", ())), int(mtu))
    return template.encode(ints={"id": wrap_int32(rec.frame_id), "time": wrap_int32(rec.timestamp_ms)},
                           floats=floats, rows=rows)


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
