"""The take files read by the real tools: the Khronos glTF validator (npm `gltf-validator`, under node) and
Blender (Debian's 3.4: glTF importer, OBJ importer + Mesh Cache modifier on the PC2). No mocks; a missing
tool skips with the command that installs it (scripts/install_interop.sh, called by scripts/install.sh)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine.headspace import load_head
from realtime.take.gltf import write_glb
from realtime.take.pointcache import Pc2Writer, read_pc2, write_obj

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = ROOT / ".cache" / "npm" / "node_modules" / "gltf-validator"
INSTALL = "bash scripts/install_interop.sh"
FPS = 30.0
N = 20


@pytest.fixture(scope="module")
def take(tmp_path_factory):
    """The real head with N frames of weights and a small head turn: glb, obj + two pc2 (startFrame 0 and 1)."""
    d = tmp_path_factory.mktemp("take")
    h = load_head()
    rng = np.random.default_rng(7)
    times = np.arange(N) / FPS
    w = np.clip(rng.uniform(-0.2, 1.0, (N, 52)), 0.0, 1.0).astype(np.float32)
    ang = np.linspace(0.0, 0.3, N)
    axis = np.array([0.2, 1.0, 0.1]) / np.linalg.norm([0.2, 1.0, 0.1])
    rot = np.concatenate([np.sin(ang / 2)[:, None] * axis, np.cos(ang / 2)[:, None]], axis=1)
    write_glb(d / "take.glb", h.vertices, h.triangles, h.uvs, h.expression_targets, h.expression_names,
              times, w, rot)
    write_obj(d / "take.obj", h.vertices, h.triangles, h.uvs)
    frames_mm = h.vertices[None] + np.einsum("nt,tvc->nvc", w, h.expression_targets)
    for start in (0, 1):
        with Pc2Writer(d / f"take{start}.pc2", len(h.vertices), start_frame=float(start)) as wr:
            for f in frames_mm:
                wr.append(f)
    np.save(d / "frames_m.npy", frames_mm.astype(np.float64) / 1000.0)  # what Blender must show, in metres
    np.save(d / "base_m.npy", h.vertices.astype(np.float64) / 1000.0)
    return {"dir": d, "head": h, "times": times, "weights": w, "frames_mm": frames_mm}


def test_gltf_validator_finds_no_errors(take) -> None:
    node = shutil.which("node")
    if node is None or not (VALIDATOR / "package.json").exists():
        pytest.skip(f"node or the npm gltf-validator is missing in .cache/npm (install: {INSTALL})")
    script = ("const v = require(process.argv[1]); const fs = require('fs');"
              "v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])), {maxIssues: 100})"
              ".then(r => console.log(JSON.stringify(r))).catch(e => { console.error(e); process.exit(2); });")
    out = subprocess.run([node, "-e", script, str(VALIDATOR), str(take["dir"] / "take.glb")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    issues = report["issues"]
    assert issues["numErrors"] == 0, json.dumps(issues["messages"], indent=1)
    assert issues["numWarnings"] == 0, json.dumps(issues["messages"], indent=1)
    info = report["info"]
    assert info["hasMorphTargets"] and info["animationCount"] == 1
    assert info["totalVertexCount"] == 3260 and info["totalTriangleCount"] == 6388


# Which scene frame shows which PC2 sample (time_mode FRAME): sample = frame * frame_scale - frame_start, and
# the PC2 header's startFrame / sampleRate are ignored (take1.pc2 has startFrame 1 and still plays from frame 0).
PC2_CASES = [
    {"name": "defaults", "file": "take0.pc2", "frame_start": 0.0, "frame_scale": 1.0,
     "frame_to_sample": [[k, k] for k in (0, 1, N // 2, N - 1)] + [[N + 3, N - 1]]},  # clamped past the end
    {"name": "frame_start_1", "file": "take0.pc2", "frame_start": 1.0, "frame_scale": 1.0,
     "frame_to_sample": [[k + 1, k] for k in (0, 1, N // 2, N - 1)] + [[0, 0]]},
    {"name": "header_start_ignored", "file": "take1.pc2", "frame_start": 0.0, "frame_scale": 1.0,
     "frame_to_sample": [[k, k] for k in (0, 1, N - 1)]},
    {"name": "scale_2", "file": "take0.pc2", "frame_start": 0.0, "frame_scale": 2.0,  # a 60 fps take, 30 fps scene
     "frame_to_sample": [[k, 2 * k] for k in (0, 1, 3, (N - 1) // 2)]},
]

BLENDER_SCRIPT = r'''
import json, sys
out = {}
try:
    import numpy
    numpy.bool = bool  # Debian's Blender 3.4 glTF importer still uses numpy.bool (removed in numpy 1.24)
except ImportError as exc:
    print("TAKE_JSON " + json.dumps({"error": "numpy: %s" % exc}))
    sys.exit(0)
import numpy as np
import bpy

d, fps, n = sys.argv[sys.argv.index("--") + 1:]
fps, n = float(fps), int(n)
sc = bpy.context.scene
sc.render.fps, sc.render.fps_base = round(fps), 1.0

# (a) glTF: shape keys, their animation, the head rotation's animation
bpy.ops.import_scene.gltf(filepath=d + "/take.glb")
ob = [o for o in bpy.context.selected_objects if o.type == "MESH"][0]
keys = ob.data.shape_keys
vals = {}
for fc in keys.animation_data.action.fcurves:
    name = fc.data_path.split('"')[1]
    vals[name] = [list(k.co) for k in fc.keyframe_points]
basis = np.array([v.co[:] for v in keys.key_blocks[0].data])
jaw = np.array([v.co[:] for v in keys.key_blocks["jawOpen"].data]) - basis
obj_act = ob.animation_data.action if ob.animation_data else None
out["gltf"] = {
    "vertices": len(ob.data.vertices),
    "shape_keys": [k.name for k in keys.key_blocks],
    "key_action_range": list(keys.animation_data.action.frame_range),
    "key_values": vals,
    "jaw_delta_norms": np.linalg.norm(jaw, axis=1).tolist(),
    "object_action_range": list(obj_act.frame_range) if obj_act else None,
    "object_action_paths": sorted({fc.data_path for fc in obj_act.fcurves}) if obj_act else [],
}

# (b) OBJ with no axis conversion + Mesh Cache modifier on the PC2 (modifier defaults otherwise)
expected = np.load(d + "/frames_m.npy")
base = np.load(d + "/base_m.npy")
def evaluated(o):
    e = o.evaluated_get(bpy.context.evaluated_depsgraph_get())
    me = e.to_mesh()
    co = np.empty(len(me.vertices) * 3)
    me.vertices.foreach_get("co", co)
    e.to_mesh_clear()
    return co.reshape(-1, 3)
out["pc2"] = {}
for case in json.load(open(d + "/pc2_cases.json")):
    bpy.ops.object.select_all(action="DESELECT")
    bpy.ops.wm.obj_import(filepath=d + "/take.obj", forward_axis="Y", up_axis="Z")
    o = bpy.context.selected_objects[0]
    co = np.empty(len(o.data.vertices) * 3)
    o.data.vertices.foreach_get("co", co)
    m = o.modifiers.new("cache", "MESH_CACHE")
    defaults = {p: str(getattr(m, p)) for p in ("forward_axis", "up_axis", "flip_axis", "play_mode", "time_mode",
                                                "frame_start", "frame_scale", "interpolation", "deform_mode")}
    m.cache_format, m.filepath = "PC2", d + "/" + case["file"]
    m.frame_start, m.frame_scale = case["frame_start"], case["frame_scale"]
    res = {"vertices": len(o.data.vertices), "obj_error": float(np.abs(co.reshape(-1, 3) - base).max()),
           "modifier_defaults": defaults, "errors": []}
    for frame, k in case["frame_to_sample"]:
        sc.frame_set(frame)
        res["errors"].append([frame, k, float(np.abs(evaluated(o) - expected[k]).max())])
    out["pc2"][case["name"]] = res
print("TAKE_JSON " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def blender_report(take) -> dict:
    """One Blender run for all the Blender checks (it takes ~2 s)."""
    blender = shutil.which("blender")
    if blender is None:
        pytest.skip(f"blender is not installed (install: {INSTALL}, i.e. apt-get install blender python3-numpy)")
    (take["dir"] / "pc2_cases.json").write_text(json.dumps(PC2_CASES))
    script = take["dir"] / "check.py"
    script.write_text(BLENDER_SCRIPT)
    out = subprocess.run([blender, "-b", "--factory-startup", "--python-exit-code", "1", "--python", str(script),
                          "--", str(take["dir"]), str(FPS), str(N)], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("TAKE_JSON ")]
    assert out.returncode == 0 and lines, \
        f"blender failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    report = json.loads(lines[-1][len("TAKE_JSON "):])
    if "error" in report:
        pytest.skip(f"Blender's python lacks {report['error']} (install: apt-get install python3-numpy)")
    return report


def test_blender_imports_glb_shape_keys_and_animation(take, blender_report) -> None:
    g = blender_report["gltf"]
    h = take["head"]
    assert g["vertices"] == len(h.vertices)
    assert g["shape_keys"] == ["Basis", *h.expression_names]
    # Blender's importer puts time t at frame t * scene fps (no offset): N frames -> 0 .. (N-1)
    last = take["times"][-1] * FPS
    assert g["key_action_range"] == pytest.approx([0.0, last], abs=1e-3)
    assert g["object_action_range"] == pytest.approx([0.0, last], abs=1e-3)
    assert "rotation_quaternion" in g["object_action_paths"]
    assert set(g["key_values"]) == set(h.expression_names)
    for j, name in enumerate(h.expression_names):
        kv = np.array(g["key_values"][name])
        assert kv.shape == (N, 2), name
        np.testing.assert_allclose(kv[:, 0], take["times"] * FPS, atol=1e-3)
        np.testing.assert_allclose(kv[:, 1], take["weights"][:, j], atol=1e-6)
    # the jawOpen shape key moves the vertices as far as ours does (metres; axes differ: glTF Y-up -> Z-up)
    ours = np.linalg.norm(h.expression_targets[h.expression_names.index("jawOpen")], axis=1) / 1000.0
    np.testing.assert_allclose(g["jaw_delta_norms"], ours, atol=1e-6)


@pytest.mark.parametrize("case", PC2_CASES, ids=[c["name"] for c in PC2_CASES])
def test_blender_mesh_cache_plays_the_pc2(take, blender_report, case) -> None:
    r = blender_report["pc2"][case["name"]]
    assert r["vertices"] == len(take["head"].vertices)
    assert r["obj_error"] < 1e-6, "the OBJ's vertices must keep our order and axes"
    dflt = r["modifier_defaults"]
    assert (dflt["forward_axis"], dflt["up_axis"], dflt["flip_axis"]) == ("POS_Y", "POS_Z", "set()"), dflt
    assert (dflt["play_mode"], dflt["time_mode"], dflt["deform_mode"]) == ("SCENE", "FRAME", "OVERWRITE"), dflt
    assert (float(dflt["frame_start"]), float(dflt["frame_scale"])) == (0.0, 1.0), dflt
    for frame, k, err in r["errors"]:
        assert err < 1e-5, f"{case['name']}: scene frame {frame}: max |evaluated - sample {k}| = {err} m"


def test_our_reader_reads_what_blender_played(take) -> None:
    for start in (0, 1):
        frames, start_frame, rate = read_pc2(take["dir"] / f"take{start}.pc2")
        assert frames.shape == (N, 3260, 3) and (start_frame, rate) == (float(start), 1.0)
        np.testing.assert_allclose(frames, take["frames_mm"] / 1000.0, rtol=1e-6, atol=1e-9)
