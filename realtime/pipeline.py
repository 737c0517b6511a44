"""The frame loop: one FrameRecord per frame flows through a list of stages, each timed.

A stage is any object with a `name` and `__call__(record) -> None`; it reads earlier fields of the
record and writes its own. The loop owns time: it stamps `timings_ms[stage]` with
`time.perf_counter`, keeps per-stage samples and the capture→OSC-send latency, and stops on end of
stream, after `max_frames`, or when `should_stop()` says so.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from realtime.record import FrameRecord


class Stage(Protocol):
    """One step of the per-frame work."""

    name: str

    def __call__(self, record: FrameRecord) -> None: ...


@dataclass
class RunStats:
    """Per-stage timings (ms) and counts of one run; `summary()` is the `--stats` JSON."""

    frames: int = 0
    found: int = 0
    wall_s: float = 0.0
    stages_ms: dict[str, list[float]] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)

    def add(self, record: FrameRecord, latency_ms: float | None) -> None:
        """Account one finished frame."""
        self.frames += 1
        self.found += int(record.face_found)
        for name, ms in record.timings_ms.items():
            self.stages_ms.setdefault(name, []).append(ms)
        if latency_ms is not None:
            self.latency_ms.append(latency_ms)

    @staticmethod
    def _pct(values: Sequence[float]) -> dict[str, float]:
        a = np.asarray(values, dtype=np.float64)
        return {"p50": round(float(np.percentile(a, 50)), 4), "p95": round(float(np.percentile(a, 95)), 4)}

    def summary(self) -> dict:
        """`{"frames", "found_ratio", "fps", "stages_ms": {STAGE: {"p50", "p95"}}, "latency_ms"}`."""
        out: dict = {
            "frames": self.frames,
            "found_ratio": round(self.found / self.frames, 4) if self.frames else 0.0,
            "fps": round(self.frames / self.wall_s, 2) if self.wall_s > 0 else 0.0,
            "stages_ms": {k: self._pct(v) for k, v in self.stages_ms.items() if v},
        }
        if self.latency_ms:
            out["latency_ms"] = self._pct(self.latency_ms)
        return out

    def write_json(self, path: Path) -> None:
        """Write `summary()` to `path` (parent folders created)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.summary(), indent=2) + "\n")


class Pipeline:
    """Runs `source` → `stages` until the stream ends, `max_frames` is reached or `should_stop()`."""

    def __init__(
        self,
        source,
        stages: Sequence[Stage],
        latency_stage: str | None = "osc",
        should_stop: Callable[[], bool] | None = None,
        on_frame: Callable[[FrameRecord], None] | None = None,
    ) -> None:
        self.source = source
        self.stages = list(stages)
        self.latency_stage = latency_stage
        self.should_stop = should_stop or (lambda: False)
        self.on_frame = on_frame

    def step(self) -> FrameRecord | None:
        """Read one frame and run every stage on it; None at end of stream."""
        t0 = time.perf_counter()
        frame = self.source.read()
        if frame is None:
            return None
        record = FrameRecord(frame_id=frame.index, t_capture=frame.t_capture,
                             timestamp_ms=frame.timestamp_ms, image=frame.image)
        record.timings_ms["capture"] = (time.perf_counter() - t0) * 1e3
        for stage in self.stages:
            ts = time.perf_counter()
            stage(record)
            record.timings_ms[stage.name] = (time.perf_counter() - ts) * 1e3
            if stage.name == self.latency_stage:
                record.t_sent = time.perf_counter()
        return record

    def run(self, max_frames: int | None = None) -> RunStats:
        """Loop until done; returns the run's statistics. KeyboardInterrupt propagates after the
        partial statistics are kept in `self.stats` (callers close their resources in `finally`)."""
        self.stats = stats = RunStats()
        t_start = time.perf_counter()
        try:
            while (max_frames is None or stats.frames < max_frames) and not self.should_stop():
                record = self.step()
                if record is None:
                    break
                t_sent = record.t_sent
                stats.add(record, None if t_sent is None else (t_sent - record.t_capture) * 1e3)
                if self.on_frame is not None:
                    self.on_frame(record)
        finally:
            stats.wall_s = time.perf_counter() - t_start
        return stats
