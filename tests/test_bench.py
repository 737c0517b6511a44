"""The pipeline benchmark on the real clip, shortened: JSON shape, ratio, plot."""
from __future__ import annotations

import json

import pytest

from realtime import bench

pytestmark = pytest.mark.slow


def test_bench_json_and_plot(tmp_path):
    result = bench.run_bench(["native"], ["track", "headless", "full"], min_frames=40, min_time_s=0.1, warmup=5)
    modes = result["modes"]
    assert set(modes) == {"track", "headless", "full"}
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
