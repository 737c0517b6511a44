"""Every bad option value gets one line on stderr and exit status 2, before anything heavy loads.

Runs the real `main.py` in a subprocess per value; also checks that neither torch nor MediaPipe was
imported by then. The table of values, messages and exit codes is docs/bad_values.md: this test
compares it with what it saw (FACEMESH_WRITE_DOCS=1 rewrites it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "bad_values.md"
WRAPPER = ("import json, sys; sys.path.insert(0, '.'); import main\ntry:\n    rc = main.main(sys.argv[1:])\n"
           "except SystemExit as e:\n    rc = e.code\n"
           "print(json.dumps({'heavy': sorted(m for m in ('torch', 'mediapipe', 'moderngl', 'onnxruntime') "
           "if m in sys.modules)})); sys.exit(rc)")


def _cases(tmp: Path) -> list[tuple[str, list[str]]]:
    text = tmp / "notes.mp4"
    text.write_text("this is a text file, not a video\n")
    folder = tmp / "a-folder"
    folder.mkdir(exist_ok=True)
    base = ["--demo", "--headless"]
    take = tmp / "take-exists"
    take.mkdir(exist_ok=True)
    (take / "take-exists.csv").write_text("an earlier take\n")
    return [
        ("smoothing cutoff below zero", base + ["--smooth-mincutoff", "-1"]),
        ("smoothing cutoff zero", base + ["--smooth-mincutoff", "0"]),
        ("smoothing beta below zero", base + ["--smooth-beta", "-1"]),
        ("zero frames", base + ["--frames", "0"]),
        ("negative frames", base + ["--frames", "-5"]),
        ("negative calibration", base + ["--calibrate", "-1"]),
        ("zero decoder threads", base + ["--decoder-threads", "0"]),
        ("negative decoder threads", base + ["--decoder-threads", "-1"]),
        ("negative camera rate", ["--camera", "0", "--fps", "-1"]),
        ("negative camera index", ["--camera", "-1"]),
        ("tiny capture width", ["--camera", "0", "--width", "0"]),
        ("view size not WxH", base + ["--view-size", "big"]),
        ("view size too small", base + ["--view-size", "8x8"]),
        ("recording in a missing folder", base + ["--record", "no/such/folder/out.mp4"]),
        ("recording with a wrong extension", base + ["--record", "out.avi"]),
        ("recording path is a folder", base + ["--record", str(folder)]),
        ("statistics path is a folder", base + ["--stats", str(folder)]),
        ("OSC datagram size too small", base + ["--osc", "127.0.0.1:9000", "--osc-mtu", "100"]),
        ("OSC host that does not resolve", base + ["--osc", "no-such-host.invalid:9000"]),
        ("OSC target without a port", base + ["--osc", "127.0.0.1"]),
        ("OSC format unknown", base + ["--osc", "midi@127.0.0.1:9000"]),
        ("model path is a folder", base + ["--model", str(folder)]),
        ("model file missing", base + ["--model", "missing.pt"]),
        ("unknown back-end", base + ["--backend", "tpu"]),
        ("video file missing", ["--video", "missing.mp4", "--headless"]),
        ("video path is a folder", ["--video", str(folder), "--headless"]),
        ("a text file renamed .mp4", ["--video", str(text), "--headless"]),
        ("export folder that exists", base + ["--export", str(take)]),
        ("export folder is a file", base + ["--export", str(text)]),
        ("export folder in a missing folder", base + ["--export", "no/such/folder/take1"]),
        ("export folder where nothing can be written", base + ["--export", "/proc/take1"]),
        ("batch input missing", ["batch", "missing.mp4", "--out", str(tmp / "batch")]),
        ("batch with zero workers", ["batch", str(text), "--out", str(tmp / "batch"), "--workers", "0"]),
        ("batch Ray address not HOST:PORT", ["batch", str(text), "--out", str(tmp / "batch"), "--ray-address", "x"]),
        ("batch Ray address where no cluster answers", ["batch", str(text), "--out", str(tmp / "batch"),
                                                        "--ray-address", "127.0.0.1:1"]),
        ("batch output is a file", ["batch", str(text), "--out", str(text)]),
        ("export-take of a folder that is not a take", ["export-take", str(folder)]),
        ("bench with zero rounds", ["bench", "--repeat", "0"]),
        ("not a number", base + ["--frames", "many"]),
        ("a choice that does not exist", base + ["--msaa", "3"]),
        ("an unknown option", base + ["--colour", "red"]),
    ]


def _run(args: list[str]) -> tuple[int, str, list[str]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DISPLAY", None)
    p = subprocess.run([sys.executable, "-c", WRAPPER, *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=env)
    heavy = json.loads(p.stdout.strip().splitlines()[-1])["heavy"] if p.stdout.strip() else ["?"]
    return p.returncode, p.stderr, heavy


def _show(args: list[str], tmp: Path) -> str:
    return " ".join(a.replace(str(tmp), "TMP") for a in args)


@pytest.mark.slow
def test_every_bad_value_is_one_line_and_exit_2(tmp_path):
    cases = _cases(tmp_path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: _run(c[1]), cases))
    rows = ["| what | command line (`python main.py …`) | exit | message |", "|---|---|---|---|"]
    problems = []
    for (what, args), (rc, err, heavy) in zip(cases, results):
        lines = [ln for ln in err.splitlines() if ln.strip()]
        msg = lines[-1] if lines else ""
        if rc != 2 or len(lines) != 1 or not msg.startswith("error: "):
            problems.append(f"{what}: exit {rc}, stderr {err!r}")
        if heavy:
            problems.append(f"{what}: loaded {', '.join(heavy)} before refusing")
        shown = msg.replace(str(tmp_path), "TMP").replace("|", "\\|")
        rows.append(f"| {what} | `{_show(args, tmp_path)}` | {rc} | {shown} |")
    assert not problems, "\n".join(problems)
    table = ("# Bad values: one line, exit status 2\n\nEvery value below was tried by `tests/test_bad_values.py` "
             "(the real `main.py` in a subprocess, no display); each is refused before torch, MediaPipe, ONNX "
             "Runtime or OpenGL load. `TMP` is the test's temporary folder. Regenerate with "
             "`FACEMESH_WRITE_DOCS=1 python -m pytest tests/test_bad_values.py`.\n\n" + "\n".join(rows) + "\n")
    if os.environ.get("FACEMESH_WRITE_DOCS") == "1":
        DOC.write_text(table)
    assert DOC.read_text() == table, "docs/bad_values.md is out of date: rerun with FACEMESH_WRITE_DOCS=1"
