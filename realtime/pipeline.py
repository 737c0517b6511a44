"""The frame loop: one FrameRecord per frame flows through a list of stages, each timed.

A stage is any object with a `name` and `__call__(record) -> None`; it reads earlier fields of the
record and writes its own. The loop owns time: it stamps `timings_ms[stage]` with
`time.perf_counter`, keeps per-stage samples and the capture→OSC-send latency, and stops on end of
stream, after `max_frames`, or when `should_stop()` says so.

Overlap (`front_stages=n`): capture and the first n stages (the tracker) run in a worker thread one
frame ahead of the rest (decode → smooth → osc → render in the caller's thread), handing records
over through a bounded queue (`depth` frames in flight, the worker waits when it is full, so nothing
is dropped and order is kept). MediaPipe and ONNX Runtime release the GIL while they compute, so on
two cores frame n+1 is tracked while frame n is decoded and drawn: throughput is set by the slower
half instead of the sum. Latency (capture → OSC send) still includes every stage, plus any wait
in the queue. `should_stop()` and everything after the front stages run in the caller's thread
(window polling must stay on the main thread).
"""
from __future__ import annotations

import json
import queue
import threading
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


RESERVOIR_SIZE = 8192  # samples kept per statistic: memory is flat however long the session runs


class Reservoir:
    """A uniform random sample of at most `capacity` values of a stream (Vitter's algorithm R), so
    percentiles of a run of any length come from bounded memory: [capacity] float64, ~64 KiB.

    Exact (every value kept) until `capacity` values have been added; after that each value of the
    whole stream is in the sample with equal probability. Deterministic for a given seed."""

    def __init__(self, capacity: int = RESERVOIR_SIZE, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._data = np.empty(capacity, dtype=np.float64)
        self.count = 0
        self._rng = np.random.default_rng(seed)

    def append(self, value: float) -> None:
        if self.count < len(self._data):
            self._data[self.count] = value
        else:
            j = int(self._rng.integers(0, self.count + 1))
            if j < len(self._data):
                self._data[j] = value
        self.count += 1

    def extend(self, values) -> None:
        for v in values:
            self.append(float(v))

    def values(self) -> np.ndarray:
        """The sample [min(count, capacity)] (a view)."""
        return self._data[:min(self.count, len(self._data))]

    def __len__(self) -> int:
        return min(self.count, len(self._data))

    def __iter__(self):
        return iter(self.values())


@dataclass
class RunStats:
    """Per-stage timings (ms) and counts of one run; `summary()` is the `--stats` JSON. Timings are
    kept as bounded reservoirs (`Reservoir`): percentiles are exact up to `RESERVOIR_SIZE` frames and
    a uniform sample of the whole run after that."""

    frames: int = 0
    found: int = 0
    wall_s: float = 0.0
    stages_ms: dict[str, Reservoir] = field(default_factory=dict)
    latency_ms: Reservoir = field(default_factory=Reservoir)

    def add(self, record: FrameRecord, latency_ms: float | None) -> None:
        """Account one finished frame."""
        self.frames += 1
        self.found += int(record.face_found)
        for name, ms in record.timings_ms.items():
            r = self.stages_ms.get(name)
            if r is None:
                r = self.stages_ms[name] = Reservoir(seed=len(self.stages_ms) + 1)
            r.append(ms)
        if latency_ms is not None:
            self.latency_ms.append(latency_ms)

    @staticmethod
    def _pct(values) -> dict[str, float]:
        a = values.values() if isinstance(values, Reservoir) else np.asarray(values, dtype=np.float64)
        return {"p50": round(float(np.percentile(a, 50)), 4), "p95": round(float(np.percentile(a, 95)), 4)}

    def summary(self) -> dict:
        """`{"frames", "found_ratio", "fps", "stages_ms": {STAGE: {"p50", "p95"}}, "latency_ms"}`."""
        out: dict = {
            "frames": self.frames,
            "found_ratio": round(self.found / self.frames, 4) if self.frames else 0.0,
            "fps": round(self.frames / self.wall_s, 2) if self.wall_s > 0 else 0.0,
            "stages_ms": {k: self._pct(v) for k, v in self.stages_ms.items() if len(v)},
        }
        if len(self.latency_ms):
            out["latency_ms"] = self._pct(self.latency_ms)
        return out

    def write_json(self, path: Path) -> None:
        """Write `summary()` to `path` (parent folders created)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.summary(), indent=2) + "\n")


class Pipeline:
    """Runs `source` → `stages` until the stream ends, `max_frames` is reached or `should_stop()`.

    front_stages: how many leading stages run ahead with capture in a worker thread (0 = everything
    in the caller's thread, one frame at a time); depth: records in flight between the two threads.
    latency_stage: the stage whose end is the latency's end (`t_sent`; the app names its OSC stage,
    "osc"); None, or a name no stage has, means the end of the last stage.
    """

    def __init__(
        self,
        source,
        stages: Sequence[Stage],
        latency_stage: str | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_frame: Callable[[FrameRecord], None] | None = None,
        front_stages: int = 0,
        depth: int = 1,
    ) -> None:
        if not 0 <= front_stages <= len(stages):
            raise ValueError(f"front_stages must be between 0 and {len(stages)}, not {front_stages}")
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.source = source
        self.stages = list(stages)
        names = [getattr(st, "name", "") for st in self.stages]
        self.latency_stage = latency_stage if latency_stage in names or not names else names[-1]
        self.should_stop = should_stop or (lambda: False)
        self.on_frame = on_frame
        self.front_stages, self.depth = int(front_stages), int(depth)

    def _capture(self) -> FrameRecord | None:
        """Read one frame into a new record; None at end of stream. `capture` is the time the read
        worked; `wait`, from a source that says how long it waited for the frame (a camera, a paced
        clip: `SourceFrame.waited_ms`), the idle rest."""
        t0 = time.perf_counter()
        frame = self.source.read()
        if frame is None:
            return None
        record = FrameRecord(frame_id=frame.index, t_capture=frame.t_capture,
                             timestamp_ms=frame.timestamp_ms, image=frame.image,
                             source_note=getattr(frame, "lost", None))
        elapsed = (time.perf_counter() - t0) * 1e3
        waited = getattr(frame, "waited_ms", None)
        if waited is None:
            record.timings_ms["capture"] = elapsed
        else:
            waited = min(max(float(waited), 0.0), elapsed)
            record.timings_ms["capture"] = elapsed - waited
            record.timings_ms["wait"] = waited
        return record

    def _run_stages(self, record: FrameRecord, stages: Sequence[Stage]) -> None:
        for stage in stages:
            ts = time.perf_counter()
            stage(record)
            record.timings_ms[stage.name] = (time.perf_counter() - ts) * 1e3
            if stage.name == self.latency_stage:
                record.t_sent = time.perf_counter()

    def step(self) -> FrameRecord | None:
        """Read one frame and run every stage on it, in this thread; None at end of stream."""
        record = self._capture()
        if record is not None:
            self._run_stages(record, self.stages)
        return record

    def run(self, max_frames: int | None = None) -> RunStats:
        """Loop until done; returns the run's statistics. KeyboardInterrupt propagates after the
        partial statistics are kept in `self.stats` (callers close their resources in `finally`);
        an exception in the front thread is re-raised here."""
        self.stats = stats = RunStats()
        t_start = time.perf_counter()
        front = _Front(self, max_frames) if self.front_stages else None
        back = self.stages[self.front_stages:]
        try:
            while (max_frames is None or stats.frames < max_frames) and not self.should_stop():
                if front is None:
                    record = self.step()
                else:
                    record = front.next()
                    if record is not None:
                        self._run_stages(record, back)
                if record is None:
                    break
                t_sent = record.t_sent
                stats.add(record, None if t_sent is None else (t_sent - record.t_capture) * 1e3)
                if self.on_frame is not None:
                    self.on_frame(record)
        finally:
            if front is not None:
                front.stop()
            stats.wall_s = time.perf_counter() - t_start
        return stats


_END = object()


class _Front:
    """The worker thread of an overlapped run: capture + the front stages, into a bounded queue."""

    def __init__(self, pipe: Pipeline, max_frames: int | None) -> None:
        self.pipe, self.limit = pipe, max_frames
        self.queue: queue.Queue = queue.Queue(maxsize=pipe.depth)
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="pipeline-front", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        made = 0
        try:
            while not self.halt.is_set() and (self.limit is None or made < self.limit):
                record = self.pipe._capture()
                if record is None:
                    break
                self.pipe._run_stages(record, self.pipe.stages[:self.pipe.front_stages])
                made += 1
                if not self._put(record):
                    return
        except BaseException as exc:  # handed to the caller's thread, re-raised there
            self.error = exc
        self._put(_END)

    def _put(self, item) -> bool:
        while not self.halt.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def next(self) -> FrameRecord | None:
        """The next record from the front thread, or None at the end (its error re-raised)."""
        while True:
            try:
                item = self.queue.get(timeout=0.05)
                break
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    item = _END
                    break
        if item is _END:
            if self.error is not None:
                raise self.error
            return None
        return item

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to finish, drain the queue so it is not blocked, and join it."""
        self.halt.set()
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.thread.join(timeout_s)
