"""Long runs (`make soak`, not CI): the real app streaming 10,000 paced frames of the looped demo
clip to three stock python-osc receivers (native, FaceOSC, VMC) in their own processes. Checks the
app's memory stays flat, FaceOSC and VMC lose no frame, native frames arrive whole (≥ 99 %)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRAMES = 10_000


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.soak
def test_ten_thousand_frames_to_three_receivers(tmp_path):
    receivers = {}
    for fmt in ("native", "faceosc", "vmc"):
        port = _free_port()
        p = subprocess.Popen([sys.executable, str(ROOT / "tests" / "osc_stream_receiver.py"), str(port), fmt, "5"],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        receivers[fmt] = (port, p)
    stats = tmp_path / "stats.json"
    env = {**os.environ}
    env.pop("DISPLAY", None)
    app = subprocess.Popen([sys.executable, "main.py", "--demo", "--loop", "--no-render", "--frames", str(FRAMES),
                            "--stats", str(stats)]
                           + [a for fmt, (port, _) in receivers.items() for a in ("--osc", f"{fmt}@127.0.0.1:{port}")],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    while app.poll() is None:
        samples.append(_rss_kb(app.pid))
        time.sleep(5.0)
    assert app.returncode == 0, app.stderr.read()
    results = {fmt: json.loads(p.stdout.readline()) for fmt, (_, p) in receivers.items()}
    for _, p in receivers.values():
        p.wait(30)
    s = json.loads(stats.read_text())
    assert s["frames"] == FRAMES
    steady = samples[len(samples) // 5:]  # after start-up (model, caches)
    growth = (max(steady) - steady[0]) / steady[0]
    print(json.dumps({"rss_kb_first_steady": steady[0], "rss_kb_max": max(steady), "growth": growth, **results}))
    assert growth < 0.05, samples
    assert results["faceosc"]["frames"] == FRAMES and results["vmc"]["frames"] == FRAMES
    assert results["native"]["complete"] >= 0.99 * FRAMES, results["native"]
