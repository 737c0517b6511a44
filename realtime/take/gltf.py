"""glTF 2.0 binary (.glb) of a take: the head mesh with our 52 expressions as morph targets and an animation
of their weights (and of the head rotation). Written with `struct` + `json`, no glTF library.

Units are METRES (glTF's): the writer takes millimetre arrays (head frame: x right, y up, z towards the viewer,
which is glTF's +Y up, +Z front convention) and divides by 1000. Blender reads `mesh.extras.targetNames` as
the shape-key names; its importer (3.4) keys time t at frame t x scene fps (no offset: the first keyframe is
frame 0), so set the scene's fps to the take's before importing.
"""
from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

GLB_MAGIC = 0x46546C67  # "glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963
FLOAT, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5123, 5125
_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}


class _Builder:
    """Accumulates the BIN chunk, one 4-byte-aligned bufferView per accessor."""

    def __init__(self) -> None:
        self.bin = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, data: np.ndarray, target: int | None = None, minmax: bool = False,
            accessor_type: str | None = None) -> int:
        """Adds `data` ([count] or [count, k], float32/uint16/uint32) and returns its accessor index."""
        arr = np.ascontiguousarray(data)
        comp = {np.dtype(np.float32): FLOAT, np.dtype(np.uint16): UNSIGNED_SHORT,
                np.dtype(np.uint32): UNSIGNED_INT}[arr.dtype]
        k = 1 if arr.ndim == 1 else arr.shape[1]
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        view = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.bin += raw + b"\0" * (-len(raw) % 4)
        self.views.append(view)
        acc: dict = {"bufferView": len(self.views) - 1, "componentType": comp, "count": int(arr.shape[0]),
                     "type": accessor_type or _TYPES[k]}
        if minmax:
            flat = arr.reshape(arr.shape[0], -1)
            cast = float if comp == FLOAT else int
            acc["min"] = [cast(x) for x in flat.min(axis=0)]
            acc["max"] = [cast(x) for x in flat.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """[V,3] float32 unit normals: area-weighted sums of the triangle normals (counter-clockwise = front);
    a vertex on no (or only degenerate) triangles gets +z."""
    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles, dtype=np.int64)
    fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])  # length = 2 x area
    n = np.zeros_like(v)
    for c in range(3):
        np.add.at(n, t[:, c], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    out = np.where(length > 1e-20, n / np.maximum(length, 1e-300), np.array([0.0, 0.0, 1.0]))
    return out.astype(np.float32)


def write_glb(path: str | os.PathLike, base_vertices_mm: np.ndarray, triangles: np.ndarray,
              uvs: np.ndarray | None, targets_mm: np.ndarray, target_names: Sequence[str],
              times_s: np.ndarray, weights: np.ndarray, rotations_xyzw: np.ndarray | None = None,
              name: str = "facemesh head") -> None:
    """Writes a .glb: the mesh (base_vertices_mm [V,3] mm, triangles [F,3], uvs [V,2] with a bottom-left origin
    as in OBJ files, or None) with morph targets (targets_mm [T,V,3] mm position deltas, named target_names),
    and an animation: times_s [N] seconds (strictly increasing, starting at 0; N = 1 is allowed), weights
    [N,T] in [0, 1] (LINEAR), and, when given, rotations_xyzw [N,4] unit quaternions (head -> camera) on the
    same node. Positions are written in metres."""
    base = np.asarray(base_vertices_mm, dtype=np.float64)
    tris = np.asarray(triangles, dtype=np.int64)
    targ = np.asarray(targets_mm, dtype=np.float64)
    times = np.asarray(times_s, dtype=np.float32).reshape(-1)
    w = np.asarray(weights, dtype=np.float32)
    nv, nt, nf = len(base), len(targ), len(times)
    if base.shape != (nv, 3) or tris.ndim != 2 or tris.shape[1] != 3:
        raise ValueError(f"expected vertices [V,3] and triangles [F,3], got {base.shape}, {tris.shape}")
    if tris.size and (tris.min() < 0 or tris.max() >= nv):
        raise ValueError("triangle index out of range")
    if targ.shape != (nt, nv, 3) or len(target_names) != nt:
        raise ValueError(f"expected targets [{nt},{nv},3] and {nt} names, got {targ.shape}, {len(target_names)}")
    if nf < 1 or w.shape != (nf, nt):
        raise ValueError(f"expected times [N>=1] and weights [N,{nt}], got {times.shape}, {w.shape}")
    if times[0] != 0 or np.any(np.diff(times) <= 0):
        raise ValueError("times must start at 0 and be strictly increasing (as float32)")

    b = _Builder()
    attrs = {"POSITION": b.add((base / 1000.0).astype(np.float32), ARRAY_BUFFER, minmax=True),
             "NORMAL": b.add(vertex_normals(base, tris), ARRAY_BUFFER)}
    if uvs is not None:
        uv = np.asarray(uvs, dtype=np.float64)
        if uv.shape != (nv, 2):
            raise ValueError(f"expected uvs [{nv},2], got {uv.shape}")
        attrs["TEXCOORD_0"] = b.add(np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1).astype(np.float32),
                                    ARRAY_BUFFER)  # glTF's UV origin is top-left
    index_dtype = np.uint16 if nv < 65536 else np.uint32
    indices = b.add(tris.reshape(-1).astype(index_dtype), ELEMENT_ARRAY_BUFFER)
    targets = [{"POSITION": b.add((d / 1000.0).astype(np.float32), ARRAY_BUFFER, minmax=True)} for d in targ]

    primitive: dict = {"attributes": attrs, "indices": indices, "mode": 4, "material": 0}
    mesh: dict = {"name": name, "primitives": [primitive]}
    if nt:
        primitive["targets"] = targets
        mesh["weights"] = [0.0] * nt
        mesh["extras"] = {"targetNames": [str(s) for s in target_names]}
    node: dict = {"name": name, "mesh": 0}

    t_acc = b.add(times, minmax=True) if nt or rotations_xyzw is not None else -1
    samplers, channels = [], []
    if nt:
        samplers.append({"input": t_acc, "output": b.add(w.reshape(-1)), "interpolation": "LINEAR"})
        channels.append({"sampler": 0, "target": {"node": 0, "path": "weights"}})
    if rotations_xyzw is not None:
        q = np.asarray(rotations_xyzw, dtype=np.float64)
        if q.shape != (nf, 4):
            raise ValueError(f"expected rotations [{nf},4], got {q.shape}")
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        for i in range(1, nf):  # shortest path: each quaternion in the previous one's hemisphere
            if np.dot(q[i], q[i - 1]) < 0:
                q[i] = -q[i]
        node["rotation"] = [float(x) for x in q[0].astype(np.float32)]
        samplers.append({"input": t_acc, "output": b.add(q.astype(np.float32)), "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": 0, "path": "rotation"}})

    gltf: dict = {
        "asset": {"version": "2.0", "generator": "facemesh-live"},
        "scene": 0, "scenes": [{"name": name, "nodes": [0]}], "nodes": [node], "meshes": [mesh],
        "materials": [{"name": "skin", "pbrMetallicRoughness": {
            "baseColorFactor": [0.8, 0.65, 0.55, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.6}}],
        "buffers": [{"byteLength": len(b.bin)}], "bufferViews": b.views, "accessors": b.accessors,
    }
    if channels:
        gltf["animations"] = [{"name": "take", "samplers": samplers, "channels": channels}]

    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(b.bin)
    with open(path, "wb") as f:
        f.write(struct.pack("<III", GLB_MAGIC, 2, total))
        f.write(struct.pack("<II", len(js), CHUNK_JSON) + js)
        f.write(struct.pack("<II", len(b.bin), CHUNK_BIN) + bytes(b.bin))


def read_glb(path: str | os.PathLike) -> tuple[dict, bytes]:
    """(the JSON chunk as a dict, the BIN chunk's bytes) of a .glb (checks magic, version and lengths)."""
    data = Path(path).read_bytes()
    magic, version, total = struct.unpack_from("<III", data)
    if magic != GLB_MAGIC or version != 2 or total != len(data):
        raise ValueError(f"{path}: not a glTF 2 binary (magic {magic:#x}, version {version}, length {total})")
    jlen, jtype = struct.unpack_from("<II", data, 12)
    if jtype != CHUNK_JSON:
        raise ValueError(f"{path}: first chunk is not JSON")
    doc = json.loads(data[20:20 + jlen])
    off = 20 + jlen
    binary = b""
    if off < len(data):
        blen, btype = struct.unpack_from("<II", data, off)
        if btype != CHUNK_BIN:
            raise ValueError(f"{path}: second chunk is not BIN")
        binary = data[off + 8:off + 8 + blen]
    return doc, binary


def accessor_array(doc: dict, binary: bytes, index: int) -> np.ndarray:
    """The data of accessor `index` of a (doc, binary) from `read_glb`, as [count] or [count, k]."""
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = {FLOAT: "<f4", UNSIGNED_SHORT: "<u2", UNSIGNED_INT: "<u4"}[acc["componentType"]]
    k = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc["type"]]
    arr = np.frombuffer(binary, dtype=dtype, count=acc["count"] * k,
                        offset=view.get("byteOffset", 0) + acc.get("byteOffset", 0))
    return arr if k == 1 else arr.reshape(acc["count"], k)
