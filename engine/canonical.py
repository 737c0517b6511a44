"""MediaPipe's canonical face mesh (468 vertices, UVs, triangles, Procrustes weights).

Build time: `extract_canonical(tgz)` reads the npm package `@mediapipe/face_mesh` tarball, finds
`geometry_pipeline_metadata_landmarks.binarypb` inside its Emscripten file pack by the byte range
its loader JS lists, and parses it with the `_pb2` modules shipped in the mediapipe wheel.
Run time: `load_canonical()` reads `models/canonical_face.npz` (millimetres, y up, z forward).
"""
from __future__ import annotations

import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.assets import MODELS_DIR, load_npz_asset
from engine.errors import UserError

CANONICAL_PATH = MODELS_DIR / "canonical_face.npz"
NPM_PACKAGE = "@mediapipe/face_mesh@0.4.1657299874"
METADATA_NAME = "/third_party/mediapipe/modules/face_geometry/data/geometry_pipeline_metadata_landmarks.binarypb"
CM_TO_MM = 10.0


@dataclass(frozen=True)
class CanonicalFace:
    """The canonical face: vertices [468,3] f32 mm; uvs [468,2]; triangles [898,3] i32;
    procrustes_indices [33] i32 and procrustes_weights [33] f32 (MediaPipe's stable landmarks)."""

    vertices: np.ndarray
    uvs: np.ndarray
    triangles: np.ndarray
    procrustes_indices: np.ndarray
    procrustes_weights: np.ndarray


def parse_metadata(blob: bytes) -> CanonicalFace:
    """Decode a GeometryPipelineMetadata protobuf (landmark variant) into a CanonicalFace."""
    from mediapipe.modules.face_geometry.protos import geometry_pipeline_metadata_pb2 as gpm

    meta = gpm.GeometryPipelineMetadata()
    meta.ParseFromString(blob)
    mesh = meta.canonical_mesh
    vb = np.asarray(mesh.vertex_buffer, dtype=np.float32).reshape(-1, 5)  # x y z u v
    tris = np.asarray(mesh.index_buffer, dtype=np.int32).reshape(-1, 3)
    idx = np.array([p.landmark_id for p in meta.procrustes_landmark_basis], dtype=np.int32)
    w = np.array([p.weight for p in meta.procrustes_landmark_basis], dtype=np.float32)
    if vb.shape[0] != 468:
        raise UserError(f"canonical mesh has {vb.shape[0]} vertices, expected 468")
    return CanonicalFace(vb[:, :3] * CM_TO_MM, vb[:, 3:5].copy(), tris, idx, w)


def extract_canonical(tgz: Path) -> CanonicalFace:
    """Read the canonical face from the npm tarball of @mediapipe/face_mesh."""
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            loader = tar.extractfile("package/face_mesh_solution_packed_assets_loader.js").read().decode()
            packed = tar.extractfile("package/face_mesh_solution_packed_assets.data").read()
    except (OSError, KeyError, tarfile.TarError) as exc:
        raise UserError(f"cannot read {tgz} as the @mediapipe/face_mesh npm tarball ({exc})") from None
    m = re.search(r'\{[^{}]*"filename":\s*"' + re.escape(METADATA_NAME) + r'"[^{}]*\}', loader)
    if m is None:
        raise UserError(f"{tgz}: the loader lists no {METADATA_NAME}")
    entry = json.loads(m.group(0))
    return parse_metadata(packed[entry["start"]:entry["end"]])


def save_canonical(face: CanonicalFace, path: Path = CANONICAL_PATH) -> None:
    """Write `canonical_face.npz`."""
    np.savez_compressed(path, vertices=face.vertices, uvs=face.uvs, triangles=face.triangles,
                        procrustes_indices=face.procrustes_indices, procrustes_weights=face.procrustes_weights)


def load_canonical(path: Path = CANONICAL_PATH) -> CanonicalFace:
    """Load `models/canonical_face.npz`; missing/unreadable → CheckpointError with the fix."""
    return load_npz_asset(path, lambda z: CanonicalFace(z["vertices"], z["uvs"], z["triangles"],
                                                        z["procrustes_indices"], z["procrustes_weights"]))
