"""Fast unit tests of the take file formats: Live Link Face CSV, PC2 + OBJ, glTF binary."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from engine.expressions import EXPRESSION_NAMES
from realtime.take.gltf import CHUNK_BIN, CHUNK_JSON, accessor_array, read_glb, vertex_normals, write_glb
from realtime.take.livelink import (
    EYE_PITCH_FULL_RAD, EYE_YAW_FULL_RAD, FROM_OURS, HEADER, LIVE_LINK_NAMES, ROTATION_NAMES, LiveLinkCsvWriter,
    eye_rotations, read_livelink_csv, timecode,
)
from realtime.take.pointcache import Pc2Writer, read_pc2, write_obj

# ---------------------------------------------------------------- Live Link Face CSV


@pytest.mark.parametrize("seconds, fps, expected", [
    (0.0, 30, "00:00:00:00.000"),
    (3661.5, 30, "01:01:01:15.000"),
    (1 / 30, 30, "00:00:00:01.000"),
    (29.9999 / 30, 30, "00:00:01:00.000"),  # rounds to the next second, never FF=30
    (29.9994 / 30, 30, "00:00:00:29.999"),
    (1.0 - 1e-12, 30, "00:00:01:00.000"),
    (59.5 / 60, 60, "00:00:00:59.500"),
    (1 / 29.97, 29.97, "00:00:00:01.001"),  # wall-clock seconds at the timecode rate 30
    (1000 / 29.97, 29.97, "00:00:33:11.001"),
    (0.25 / 30, 30, "00:00:00:00.250"),
    (86400.0, 30, "00:00:00:00.000"),  # 24 h wrap
    (86399 + 29.5 / 30, 30, "23:59:59:29.500"),
    (2 * 86400 + 3600, 24, "01:00:00:00.000"),
])
def test_timecode(seconds: float, fps: float, expected: str) -> None:
    assert timecode(seconds, fps) == expected


def test_timecode_frames_never_reach_the_rate() -> None:
    for fps in (24, 25, 29.97, 30, 50, 59.94, 60):
        for k in range(5000):
            ff = int(timecode(k / fps, fps).split(":")[3].split(".")[0])
            assert 0 <= ff < round(fps)


def test_header_and_names() -> None:
    cols = HEADER.split(",")
    assert len(cols) == 2 + 61 and cols[:2] == ["Timecode", "BlendShapeCount"]
    assert cols[2] == "EyeBlinkLeft" and cols[2 + 51] == "TongueOut" and cols[-9:] == list(ROTATION_NAMES)
    assert HEADER.startswith("Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,")
    assert HEADER.endswith(",NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,"
                           "LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll")
    assert len(set(cols)) == len(cols)


def test_from_ours_is_a_permutation() -> None:
    assert sorted(FROM_OURS.tolist()) == list(range(52))
    for col, ours in enumerate(FROM_OURS):
        assert LIVE_LINK_NAMES[col] == EXPRESSION_NAMES[ours][0].upper() + EXPRESSION_NAMES[ours][1:]
    w = np.zeros(52)
    w[EXPRESSION_NAMES.index("jawOpen")] = 0.7
    assert w[FROM_OURS][LIVE_LINK_NAMES.index("JawOpen")] == 0.7


def test_eye_rotations() -> None:
    w = np.zeros(52)
    i = EXPRESSION_NAMES.index
    w[i("eyeLookOutLeft")] = 1.0  # left eye looks to the subject's left
    w[i("eyeLookInRight")] = 1.0  # right eye looks to the subject's left too
    w[i("eyeLookUpLeft")] = 0.5
    w[i("eyeLookDownRight")] = 0.25
    e = eye_rotations(w)
    assert e.shape == (6,)
    np.testing.assert_allclose(e, [EYE_YAW_FULL_RAD, 0.5 * EYE_PITCH_FULL_RAD, 0,
                                   EYE_YAW_FULL_RAD, -0.25 * EYE_PITCH_FULL_RAD, 0])


def test_csv_round_trip_and_torn_last_line(tmp_path) -> None:
    rng = np.random.default_rng(1)
    n, fps = 7, 60.0
    w = rng.uniform(0, 1, (n, 52))
    head = rng.uniform(-0.5, 0.5, (n, 3))
    path = tmp_path / "take.csv"
    with LiveLinkCsvWriter(path, fps, start_seconds=3600.0) as wr:
        for k in range(n):
            wr.write_row(k / fps, w[k], head[k], eye_rotations(w[k]))
        wr.flush(fsync=True)
    text = path.read_text()
    assert text.splitlines()[0] == HEADER and "\r" not in text
    assert text.splitlines()[1].startswith("01:00:00:00.000,61,")
    codes, vals = read_livelink_csv(path)
    assert codes == [timecode(3600.0 + k / fps, fps) for k in range(n)]
    assert vals.shape == (n, 61) and vals.dtype == np.float32
    np.testing.assert_allclose(vals[:, :52], w[:, FROM_OURS], atol=1e-6)
    np.testing.assert_allclose(vals[:, 52:55], head, atol=1e-6)
    np.testing.assert_allclose(vals[:, 55:], np.stack([eye_rotations(x) for x in w]), atol=1e-6)
    # a crash mid-row: the torn last line is ignored (unterminated, or terminated with fewer columns)
    full = path.read_bytes()
    last_row = full[:-1].rsplit(b"\n", 1)[1]
    path.write_bytes(full + last_row[: len(last_row) // 2])
    assert len(read_livelink_csv(path)[0]) == n
    path.write_bytes(full + last_row[: len(last_row) // 2] + b"\n")
    assert len(read_livelink_csv(path)[0]) == n
    path.write_bytes(full + b"00:00:0")
    assert len(read_livelink_csv(path)[0]) == n


def test_csv_rejects_bad_shapes(tmp_path) -> None:
    with LiveLinkCsvWriter(tmp_path / "x.csv", 30) as wr, pytest.raises(ValueError):
        wr.write_row(0.0, np.zeros(51), np.zeros(3), np.zeros(6))

# ---------------------------------------------------------------- PC2 + OBJ


def test_pc2_round_trip_flush_and_partial_frame(tmp_path) -> None:
    rng = np.random.default_rng(2)
    frames_mm = rng.normal(0, 80, (5, 10, 3)).astype(np.float32)
    path = tmp_path / "take.pc2"
    wr = Pc2Writer(path, 10, start_frame=1.0, sample_rate=0.5)
    for f in frames_mm[:3]:
        wr.append(f)
    wr.flush()
    raw = path.read_bytes()
    assert raw[:12] == b"POINTCACHE2\0" and struct.unpack_from("<iiffi", raw, 12) == (1, 10, 1.0, 0.5, 3)
    assert len(raw) == 32 + 3 * 10 * 12
    got, start, rate = read_pc2(path)
    assert (start, rate) == (1.0, 0.5) and got.shape == (3, 10, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, frames_mm[:3] / 1000.0, rtol=1e-6)
    for f in frames_mm[3:]:
        wr.append(f)
    wr.close()
    got, _, _ = read_pc2(path)
    np.testing.assert_allclose(got, frames_mm / 1000.0, rtol=1e-6)
    # a crash mid-frame: the partial trailing frame is ignored, and so is a header count past the data
    raw = path.read_bytes()
    path.write_bytes(raw[:-50])
    assert read_pc2(path)[0].shape == (4, 10, 3)
    path.write_bytes(raw[:32] + raw[32:32 + 2 * 120])
    assert read_pc2(path)[0].shape == (2, 10, 3)
    with pytest.raises(ValueError):
        Pc2Writer(tmp_path / "y.pc2", 10).append(np.zeros((9, 3)))


def test_pc2_empty(tmp_path) -> None:
    with Pc2Writer(tmp_path / "e.pc2", 4):
        pass
    frames, start, rate = read_pc2(tmp_path / "e.pc2")
    assert frames.shape == (0, 4, 3) and (start, rate) == (0.0, 1.0)


def test_obj_counts_and_units(tmp_path) -> None:
    v = np.array([[0, 0, 0], [1000, 0, 0], [0, 1000, 0], [0, 0, 1000]], dtype=np.float32)
    t = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [1, 0], [0, 1], [0.5, 0.5]])
    write_obj(tmp_path / "m.obj", v, t, uv)
    lines = (tmp_path / "m.obj").read_text().splitlines()
    assert lines[0].startswith("#") and "metres" in lines[0]
    vs = [ln for ln in lines if ln.startswith("v ")]
    assert len(vs) == 4 and [float(x) for x in vs[1].split()[1:]] == [1.0, 0.0, 0.0]
    assert len([ln for ln in lines if ln.startswith("vt ")]) == 4
    assert [ln for ln in lines if ln.startswith("f ")] == ["f 1/1 2/2 3/3", "f 1/1 3/3 4/4"]
    write_obj(tmp_path / "n.obj", v, t, None)
    text = (tmp_path / "n.obj").read_text()
    assert "vt " not in text and "f 1 3 4" in text

# ---------------------------------------------------------------- glTF binary


def _small_take(n: int = 6, rotations: bool = True):
    rng = np.random.default_rng(3)
    v = np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0], [100, 100, 5]], dtype=np.float32)
    t = np.array([[0, 1, 2], [1, 3, 2]])
    uv = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    targets = rng.normal(0, 3, (3, 4, 3)).astype(np.float32)
    times = np.arange(n) / 30.0
    w = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    q = None
    if rotations:
        ang = np.linspace(0, 0.4, n)
        q = np.stack([np.zeros(n), np.sin(ang / 2), np.zeros(n), np.cos(ang / 2)], axis=1)
        q[1::2] *= -1  # alternate hemispheres: the writer must make them consecutive
    return v, t, uv, targets, times, w, q


def test_glb_structure_and_data(tmp_path) -> None:
    v, t, uv, targets, times, w, q = _small_take()
    path = tmp_path / "take.glb"
    write_glb(path, v, t, uv, targets, ["a", "b", "c"], times, w, q)
    raw = path.read_bytes()
    magic, version, total = struct.unpack_from("<III", raw)
    assert (magic, version, total) == (0x46546C67, 2, len(raw)) and total % 4 == 0
    jlen, jtype = struct.unpack_from("<II", raw, 12)
    blen, btype = struct.unpack_from("<II", raw, 20 + jlen)
    assert jtype == CHUNK_JSON and btype == CHUNK_BIN and jlen % 4 == 0 and blen % 4 == 0
    assert 20 + jlen + 8 + blen == len(raw)
    doc, binary = read_glb(path)
    assert doc["asset"] == {"version": "2.0", "generator": "facemesh-live"}
    assert doc["buffers"][0]["byteLength"] == len(binary)
    for view in doc["bufferViews"]:
        assert view["byteOffset"] % 4 == 0 and view["byteOffset"] + view["byteLength"] <= len(binary)
    prim = doc["meshes"][0]["primitives"][0]
    assert doc["meshes"][0]["extras"]["targetNames"] == ["a", "b", "c"]
    assert doc["meshes"][0]["weights"] == [0.0, 0.0, 0.0]

    pos = accessor_array(doc, binary, prim["attributes"]["POSITION"])
    np.testing.assert_allclose(pos, v / 1000.0, rtol=1e-6)
    acc = doc["accessors"][prim["attributes"]["POSITION"]]
    assert acc["count"] == 4 and acc["min"] == pos.min(0).tolist() and acc["max"] == pos.max(0).tolist()
    for k, tgt in enumerate(prim["targets"]):
        d = accessor_array(doc, binary, tgt["POSITION"])
        np.testing.assert_allclose(d, targets[k] / 1000.0, rtol=1e-6)
        acc = doc["accessors"][tgt["POSITION"]]
        assert acc["min"] == d.min(0).tolist() and acc["max"] == d.max(0).tolist()
    idx = accessor_array(doc, binary, prim["indices"])
    assert doc["accessors"][prim["indices"]]["componentType"] == 5123 and idx.tolist() == t.reshape(-1).tolist()
    tex = accessor_array(doc, binary, prim["attributes"]["TEXCOORD_0"])
    np.testing.assert_allclose(tex, np.stack([uv[:, 0], 1 - uv[:, 1]], 1))
    nrm = accessor_array(doc, binary, prim["attributes"]["NORMAL"])
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=1e-6)
    assert nrm[0, 2] > 0.99  # the first triangle is counter-clockwise seen from +z

    anim = doc["animations"][0]
    paths = {c["target"]["path"]: anim["samplers"][c["sampler"]] for c in anim["channels"]}
    ws = paths["weights"]
    t_acc = doc["accessors"][ws["input"]]
    assert t_acc["count"] == 6 and t_acc["min"] == [0.0] and t_acc["max"] == [np.float32(times[-1]).item()]
    np.testing.assert_array_equal(accessor_array(doc, binary, ws["output"]), w.reshape(-1))
    assert ws["interpolation"] == "LINEAR"
    rq = accessor_array(doc, binary, paths["rotation"]["output"])
    assert rq.shape == (6, 4) and np.all(np.sum(rq[1:] * rq[:-1], axis=1) > 0)
    np.testing.assert_allclose(np.abs(rq), np.abs(q), atol=1e-6)


def test_glb_single_frame_no_rotation_and_uint32(tmp_path) -> None:
    v, t, uv, targets, times, w, _ = _small_take(n=1, rotations=False)
    write_glb(tmp_path / "one.glb", v, t, None, targets, ["a", "b", "c"], times, w, None)
    doc, binary = read_glb(tmp_path / "one.glb")
    assert [c["target"]["path"] for c in doc["animations"][0]["channels"]] == ["weights"]
    assert "TEXCOORD_0" not in doc["meshes"][0]["primitives"][0]["attributes"]
    # 70000 vertices need 32-bit indices
    big = np.zeros((70000, 3), dtype=np.float32)
    big[:, 0] = np.arange(70000)
    big[1::2, 1] = 1.0
    tris = np.stack([np.arange(69998), np.arange(1, 69999), np.arange(2, 70000)], 1)
    write_glb(tmp_path / "big.glb", big, tris, None, np.zeros((0, 70000, 3)), [], times, np.zeros((1, 0)), None)
    doc, binary = read_glb(tmp_path / "big.glb")
    prim = doc["meshes"][0]["primitives"][0]
    assert doc["accessors"][prim["indices"]]["componentType"] == 5125
    assert accessor_array(doc, binary, prim["indices"])[-1] == 69999 and "animations" not in doc


def test_glb_rejects_bad_times(tmp_path) -> None:
    v, t, uv, targets, times, w, q = _small_take()
    with pytest.raises(ValueError):
        write_glb(tmp_path / "x.glb", v, t, uv, targets, "abc", times[::-1].copy(), w, q)
    with pytest.raises(ValueError):
        write_glb(tmp_path / "x.glb", v, t, uv, targets, "abc", times + 1, w, q)


def test_vertex_normals_degenerate() -> None:
    v = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [5, 5, 5]], dtype=np.float32)
    n = vertex_normals(v, np.array([[0, 1, 2]]))
    np.testing.assert_allclose(n, [[0, 0, 1]] * 4)
