"""`python -m realtime.bench_threads [--mode headless] [--frames 600]`: CPU time per frame of each
thread of one benchmark run (Linux: /proc/self/task).

Where the loop's time goes, beyond the per-stage wall times of `main.py bench`: one mode of the
benchmark (`realtime.bench.bench_mode`, the demo clip at 640×480 as fast as possible) runs `--frames`
measured frames, and each thread's user + system CPU over them is divided by the frame count. Threads
are named by Python where it knows them (MainThread, pipeline-front, osc-sender, osc-measure-sink)
and by the kernel otherwise (MediaPipe's own threads, the video decoder's); a thread that ended during
the run (a worker of an earlier chunk) is summed as "ended threads".
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

TASKS = Path("/proc/self/task")


def parse_stat(text: str) -> float:
    """A /proc/<pid>/task/<tid>/stat line → user + system CPU in clock ticks (fields 14 and 15; the
    command name in parentheses may hold spaces, so fields are counted after its closing one)."""
    fields = text[text.rindex(")") + 2:].split()
    return float(int(fields[11]) + int(fields[12]))


def thread_cpu() -> dict[int, tuple[str, float]]:
    """{thread id: (kernel name, CPU seconds)} of this process's threads now."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in TASKS.iterdir():
        try:
            out[int(d.name)] = ((d / "comm").read_text().strip(), parse_stat((d / "stat").read_text()) / tick)
        except (OSError, ValueError):  # the thread ended while we read it
            continue
    return out


def per_frame(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], frames: int,
              names: dict[int, str], total_before: float, total_after: float) -> list[tuple[str, float]]:
    """CPU ms per frame of each thread between two `thread_cpu` snapshots, largest first; threads gone
    by `after` are the difference between the process totals and the threads still there."""
    rows = []
    seen = 0.0
    for tid, (comm, cpu) in after.items():
        d = cpu - before.get(tid, (comm, 0.0))[1]
        seen += d
        if d > 0:
            rows.append((names.get(tid) or comm, 1e3 * d / frames))
    gone = (total_after - total_before) - seen
    if gone > 1e-3:
        rows.append(("ended threads", 1e3 * gone / frames))
    return sorted(rows, key=lambda r: -r[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m realtime.bench_threads", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", default="headless", help="a `main.py bench` mode (default headless)")
    ap.add_argument("--frames", type=int, default=600, help="measured frames (default 600)")
    args = ap.parse_args(argv)
    if not TASKS.is_dir():
        print("per-thread CPU needs Linux's /proc/self/task", file=sys.stderr)
        return 2
    if args.frames < 50:
        print(f"--frames must be at least 50, not {args.frames}", file=sys.stderr)
        return 2
    from realtime import bench

    state: dict = {}
    run = bench.Pipeline.run

    def measured(pipe, max_frames=None):
        if "rows" in state or not max_frames or max_frames < 50:  # the warm-up, or after the measured chunk
            return run(pipe, max_frames=max_frames)
        before, t0, p0 = thread_cpu(), time.perf_counter(), time.process_time()
        stats = run(pipe, max_frames=args.frames)
        after, wall, p1 = thread_cpu(), time.perf_counter() - t0, time.process_time()
        names = {t.native_id: t.name for t in threading.enumerate()}
        state["rows"] = per_frame(before, after, stats.frames, names, p0, p1)
        state["wall_ms"] = 1e3 * wall / stats.frames
        return stats

    bench.Pipeline.run = measured
    try:
        bench.bench_mode(args.mode, (640, 480), "auto", args.frames, 0.0, 30)
    finally:
        bench.Pipeline.run = run
    print(f"{args.mode} at 640x480, {args.frames} frames: CPU ms per frame by thread")
    for name, ms in state["rows"]:
        print(f"  {name:24s} {ms:6.2f}")
    print(f"  {'all':24s} {sum(ms for _, ms in state['rows']):6.2f}   (wall {state['wall_ms']:.2f} ms a frame)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
