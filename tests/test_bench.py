"""The pipeline benchmark on the real clip, shortened: JSON shape, ratio, plot."""
from __future__ import annotations

import json

import pytest

from realtime import bench

pytestmark = pytest.mark.slow


def test_bench_json_and_plot(tmp_path):
    result = bench.run_bench(["native"], ["track", "headless", "full", "headless-direct"], min_frames=40, min_time_s=0.1,
                             warmup=5)
    modes = result["modes"]
    assert set(modes) == {"track", "headless", "full", "headless-direct"}
    # the front end is the retarget stage; -direct runs without it (the decoder reads the tracked landmarks)
    assert "retarget" in modes["headless"]["stages_ms"] and "retarget" not in modes["headless-direct"]["stages_ms"]
    assert "headless-direct/track" in bench.format_table(result)
    for name, m in modes.items():
        assert m["frames"] >= 40 and m["fps"] > 0 and m["found_ratio"] == 1.0
        assert m["stages_ms"]["track"]["p50"] > 0
    assert "decode" in modes["headless"]["stages_ms"] and "render" in modes["full"]["stages_ms"]
    assert modes["headless"]["latency_ms"]["p50"] > 0 and modes["headless"]["osc_datagrams"] > 0
    assert result["ratio_headless_vs_track"] == pytest.approx(modes["headless"]["fps"] / modes["track"]["fps"], abs=1e-3)
    assert result["machine"]["cores"] >= 1 and result["machine"]["decoder_backend"]
    bench.write(result, tmp_path / "b.json", tmp_path / "b.png")
    assert json.loads((tmp_path / "b.json").read_text())["modes"]["full"]["fps"] > 0
    assert (tmp_path / "b.png").stat().st_size > 1000
    assert "headless/track" in bench.format_table(result)


def _summary(fps: float, track_ms: float, lat: float | None = None) -> dict:
    out = {"frames": 100, "found_ratio": 1.0, "fps": fps, "stages_ms": {"track": {"p50": track_ms, "p95": 2 * track_ms}}}
    if lat is not None:
        out["latency_ms"] = {"p50": lat, "p95": 2 * lat}
    return out


def test_rounds_combine_to_medians():
    """--repeat: each figure is the median over the rounds; one round comes back unchanged."""
    one = _summary(100.0, 5.0, 9.0)
    assert bench.combine_rounds([one]) is one
    c = bench.combine_rounds([_summary(100.0, 5.0, 9.0), _summary(140.0, 4.0, 7.0), _summary(90.0, 6.0, 11.0)])
    assert c["fps"] == 100.0 and c["fps_rounds"] == [100.0, 140.0, 90.0] and c["rounds"] == 3 and c["frames"] == 300
    assert c["stages_ms"]["track"] == {"p50": 5.0, "p95": 10.0} and c["latency_ms"] == {"p50": 9.0, "p95": 18.0}
