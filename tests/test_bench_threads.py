"""Per-thread CPU of a benchmark run (realtime/bench_threads.py): the /proc parsing and the sums."""
from __future__ import annotations

import os
import sys

import pytest

from realtime.bench_threads import TASKS, parse_stat, per_frame, thread_cpu


def test_parse_stat_counts_fields_after_the_command_name():
    # a command name with spaces and parentheses, then state, ppid, … utime (14) = 7, stime (15) = 5
    line = "123 (odd (name) x) S 1 2 3 4 5 6 7 8 9 10 7 5 0 0 20 0 1 0"
    assert parse_stat(line) == 12.0


def test_per_frame_names_threads_and_sums_the_ended_ones():
    before = {1: ("python", 1.0), 2: ("mediapipe/2", 0.5), 3: ("python", 0.2)}
    after = {1: ("python", 1.3), 2: ("mediapipe/2", 0.62), 4: ("python", 0.15)}
    rows = per_frame(before, after, 100, {1: "MainThread", 4: "osc-sender"}, total_before=2.0, total_after=2.65)
    # thread 3 ended: the process's 0.65 s less the 0.57 s of the threads still there
    assert rows == [("MainThread", pytest.approx(3.0)), ("osc-sender", pytest.approx(1.5)),
                    ("mediapipe/2", pytest.approx(1.2)), ("ended threads", pytest.approx(0.8))]


@pytest.mark.skipif(not TASKS.is_dir(), reason="per-thread CPU needs Linux's /proc/self/task")
def test_thread_cpu_sees_this_thread():
    cpu = thread_cpu()
    assert os.getpid() in cpu and cpu[os.getpid()][1] > 0  # the main thread's id is the process id
    assert sum(c for _, c in cpu.values()) <= os.times().user + os.times().system + 0.1 * len(cpu)
    assert sys.platform.startswith("linux")
