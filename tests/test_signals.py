"""Every way out of the app finishes the recording and writes --stats (issue #13): SIGINT (130),
SIGTERM (143), SIGHUP (129) mid-run, a second signal during the shutdown, and a signal during
start-up (no video file at all, statistics still written). The real app in a subprocess."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _start(tmp: Path) -> tuple[subprocess.Popen, Path, Path]:
    video, stats = tmp / "out.mp4", tmp / "stats.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DISPLAY", None)
    p = subprocess.Popen([sys.executable, "main.py", "--demo", "--loop", "--headless", "--record", str(video),
                          "--stats", str(stats)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    return p, video, stats


def _wait_for_frames(video: Path, p: subprocess.Popen, timeout_s: float = 120.0) -> None:
    part = video.with_name(f".{video.stem}.part{video.suffix}")
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end and p.poll() is None:
        if part.exists() and part.stat().st_size > 20_000:  # some frames are in
            return
        time.sleep(0.1)
    raise AssertionError(f"the app did not start recording (exit {p.poll()}): {p.stdout.read() if p.poll() else ''}")


def _frames(video: Path) -> int:
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_mid_run_finishes_the_recording(tmp_path, sig, code):
    p, video, stats = _start(tmp_path)
    _wait_for_frames(video, p)
    p.send_signal(sig)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == code, out
    assert "Traceback" not in out
    assert _frames(video) > 0  # plays: the container index was written
    s = json.loads(stats.read_text())
    assert s["frames"] > 0 and "decode" in s["stages_ms"]
    assert not list(tmp_path.glob(".*.part.mp4"))


@pytest.mark.slow
def test_a_second_signal_during_shutdown_changes_nothing(tmp_path):
    p, video, stats = _start(tmp_path)
    _wait_for_frames(video, p)
    p.send_signal(signal.SIGTERM)
    for _ in range(5):
        time.sleep(0.02)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 143, out
    assert _frames(video) > 0 and json.loads(stats.read_text())["frames"] > 0


@pytest.mark.slow
def test_a_signal_during_start_up_leaves_no_video_but_the_statistics(tmp_path):
    p, video, stats = _start(tmp_path)
    time.sleep(1.5)  # loading: nothing recorded yet
    assert p.poll() is None
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 130, out
    assert "Traceback" not in out
    assert not video.exists() and not list(tmp_path.glob(".*.part.mp4"))
    assert json.loads(stats.read_text())["frames"] == 0
