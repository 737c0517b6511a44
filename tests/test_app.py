"""The whole app on the real demo clip, headless (Mesa EGL), through main.py's entry point."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import main as app_main

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(*argv: str) -> int:
    return app_main.main(list(argv))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    rec, stats = out / "demo.mp4", out / "stats.json"
    code = _run("--demo", "--headless", "--as-fast-as-possible", "--record", str(rec), "--stats", str(stats),
                "--layout", "overlay", "--landmarks")
    return code, rec, stats


def test_demo_pipeline_runs_every_frame(demo_run):
    code, rec, stats = demo_run
    assert code == 0
    s = json.loads(stats.read_text())
    assert s["frames"] == 120
    assert s["found_ratio"] == 1.0  # MediaPipe finds the face in every frame of the clip
    for stage in ("capture", "track", "decode", "smooth", "render"):
        assert stage in s["stages_ms"] and s["stages_ms"][stage]["p50"] > 0
    assert s["fps"] > 0


def test_recording_readable_with_right_frame_count(demo_run):
    _, rec, _ = demo_run
    cap = cv2.VideoCapture(str(rec))
    n, frames = 0, []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        n += 1
        if n in (1, 60):
            frames.append(img)
    cap.release()
    assert n == 120
    assert frames[0].shape == (540, 660, 3)  # the 176×144 clip's view, scaled up to 540 px tall


def test_default_view_size_keeps_the_aspect_and_a_usable_height():
    from realtime.app import default_view_size

    assert default_view_size((176, 144), "overlay") == (660, 540)
    assert default_view_size((176, 144), "side") == (1320, 540)
    assert default_view_size((1280, 720), "side") == (2560, 720)  # never scaled down


def test_rendered_head_sits_on_the_face(tmp_path):
    """Render one tracked demo frame in overlay mode: the head's pixels cover the tracked landmarks."""
    from engine.embedding import load_embedding
    from engine.headspace import load_head
    from realtime.render import RenderOptions, Renderer
    from realtime.sources import open_source
    from realtime.stages import TrackStage
    from realtime.tracker import FaceTracker, TrackerOptions, load_tracker_assets
    from realtime.record import FrameRecord

    canonical, reference = load_tracker_assets()
    head, emb = load_head(), load_embedding()
    with open_source(demo=True, realtime=False) as src, \
            FaceTracker.create(TrackerOptions(), canonical, reference) as tracker:
        f = src.read()
        rec = FrameRecord(f.index, f.t_capture, f.timestamp_ms, image=f.image)
        TrackStage(tracker, emb.head_from_canonical())(rec)
    assert rec.face_found
    rec.vertices = head.vertices.copy()
    h, w = rec.image.shape[:2]
    r = Renderer.offscreen(w, h, head.triangles, head.uvs)
    try:
        blank = FrameRecord(0, 0.0, 0, image=rec.image)
        r.render(blank, RenderOptions(layout="overlay", show_hud=False))
        background = r.read_rgb().astype(np.int32)
        r.render(rec, RenderOptions(layout="overlay", show_hud=False))
        img = r.read_rgb().astype(np.int32)
    finally:
        r.release()
    changed = np.abs(img - background).sum(axis=2) > 30
    assert changed.mean() > 0.05, "the head is not drawn"
    lm = rec.landmarks_px[:468, :2]
    inside = changed[np.clip(lm[:, 1].astype(int), 0, h - 1), np.clip(lm[:, 0].astype(int), 0, w - 1)]
    assert inside.mean() > 0.9, f"only {inside.mean():.0%} of the landmarks are under the drawn head"
    ys, xs = np.nonzero(changed)
    cx, cy = xs.mean(), ys.mean()
    assert abs(cx - lm[:, 0].mean()) < 0.15 * w and abs(cy - lm[:, 1].mean()) < 0.25 * h


def test_missing_video_is_one_line_error(capsys):
    assert _run("--video", "/nonexistent/clip.mp4", "--headless") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "/nonexistent/clip.mp4" in err[0]


def test_no_display_without_headless_is_one_line_error():
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--demo", "--frames", "2"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert lines and "--headless" in lines[0]
    assert "Traceback" not in proc.stderr


def test_bad_osc_target_is_one_line_error(capsys):
    assert _run("--demo", "--headless", "--osc", "nonsense", "--frames", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "HOST:PORT" in err[-1]


def test_decoder_threads_follow_the_overlap():
    from realtime.app import decoder_threads
    from realtime.config import ModelConfig

    assert decoder_threads(ModelConfig(decoder_threads=None), overlap=True) == 1  # the tracker has the other core
    assert decoder_threads(ModelConfig(decoder_threads=None), overlap=False) is None  # the back-end's default
    assert decoder_threads(ModelConfig(decoder_threads=3), overlap=True) == 3


def test_serial_run_gives_the_same_frames(tmp_path):
    stats = tmp_path / "serial.json"
    assert _run("--demo", "--headless", "--as-fast-as-possible", "--no-overlap", "--no-render", "--frames", "30",
                "--stats", str(stats)) == 0
    s = json.loads(stats.read_text())
    assert s["frames"] == 30 and s["found_ratio"] == 1.0 and "decode" in s["stages_ms"]


def test_a_paced_clip_plays_at_its_own_rate_from_the_first_frame(tmp_path):
    """The clock starts when the loop does, not at the read before the model loads: the demo clip
    plays at its 29.97 fps instead of racing to catch up, and capture → output latency stays a
    frame or so (it read 6,000–33,000 ms when the clock started early). Latency is reported without
    --osc too (to the end of the last stage)."""
    stats = tmp_path / "s.json"
    assert _run("--demo", "--no-render", "--frames", "90", "--stats", str(stats)) == 0
    s = json.loads(stats.read_text())
    assert s["frames"] == 90
    assert 24.0 < s["fps"] < 36.0, s["fps"]  # paced, not 2-4x too fast
    assert s["latency_ms"]["p50"] < 500.0, s["latency_ms"]


def test_a_run_uses_one_blas_thread_and_gives_the_rest_back():
    """The per-frame numpy products are small: a second OpenBLAS thread spinning against the tracker
    made the retarget stage ~6 ms instead of ~1 on 2 cores (docs/benchmarks.md). `build_stages`
    holds BLAS at one thread for the run and restores the process's setting after it."""
    from contextlib import ExitStack

    from threadpoolctl import threadpool_info

    import main as entry
    from realtime.app import build_stages
    from realtime.config import RunConfig

    def blas_threads() -> set[int]:
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    before = blas_threads()
    assert before, "numpy's BLAS is not visible to threadpoolctl"
    config = RunConfig.from_args(entry.build_parser().parse_args(["run", "--demo", "--headless", "--no-render"]))
    with ExitStack() as stack:
        built = build_stages(config, stack)
        assert [s.name for s in built.stages][:3] == ["track", "retarget", "decode"]
        assert blas_threads() == {1}
    assert blas_threads() == before
