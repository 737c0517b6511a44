"""The paired A/B summary of `python -m realtime.bench_against` and its bad-input lines."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from realtime.bench_against import paired_summary

ROOT = Path(__file__).resolve().parent.parent


def test_paired_summary_order_statistics():
    # differences 0.01 .. 0.10 shuffled over the pairs; n = 10: the interval [d_(2), d_(9)] covers the
    # median with 1 - 2 * P(Bin(10, 1/2) <= 1) = 1 - 22/1024; [d_(3), d_(8)] would be 1 - 112/1024 < 0.9
    diffs = [0.05, 0.01, 0.09, 0.03, 0.10, 0.02, 0.08, 0.04, 0.07, 0.06]
    old = [0.7 + 0.01 * i for i in range(10)]
    s = paired_summary([o + d for o, d in zip(old, diffs)], old)
    assert s.n == 10 and s.ahead == 10
    assert s.median_difference == pytest.approx(0.055)
    assert (s.low, s.high) == (pytest.approx(0.02), pytest.approx(0.09))
    assert s.confidence == pytest.approx(1 - 22 / 1024)
    assert s.median_old == pytest.approx(0.745)


def test_paired_summary_signs_and_small_n():
    s = paired_summary([0.8, 0.7, 0.9], [0.9, 0.7, 0.8])
    assert s.ahead == 1 and s.median_difference == pytest.approx(0.0)
    assert math.isnan(s.low) and math.isnan(s.high)  # 3 pairs cannot reach 90 %
    with pytest.raises(ValueError):
        paired_summary([0.8], [0.8, 0.9])
    with pytest.raises(ValueError):
        paired_summary([], [])


@pytest.mark.parametrize("args, words", [(["no-such-commit-xyz"], "is not a commit"),
                                          (["HEAD", "--pairs", "0"], "--pairs must be at least 1")])
def test_bad_input_is_one_line(args, words):
    r = subprocess.run([sys.executable, "-m", "realtime.bench_against", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1
