"""`python -m realtime.bench_against REF`: this checkout's headless/track FPS ratio against another
commit's, in one sitting.

The ratio target of issue #12 compares builds "on the same machine in one sitting"; a shared machine's
speed drifts ±15 % within minutes, so one run of each proves nothing. This runs both builds'
`main.py bench --sizes 640x480 --modes track,headless` in alternating order (new-old, old-new, …),
`--pairs` times, with this checkout's Python (REF checked out in a temporary git worktree, which
builds its own decoder on its first run), and reports each pair's ratios and their difference, the
medians, how many pairs came out ahead, and a distribution-free confidence interval for the median
difference (order statistics of the sign test). Nothing is written but the printout (and `--json`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binom

ROOT = Path(__file__).resolve().parent.parent
MODES = "track,headless"


@dataclass(frozen=True)
class PairedSummary:
    """Paired differences d_i = new_i − old_i of n pairs: median, how many > 0, and the interval
    [d_(k), d_(n−k+1)] of the sorted differences that holds the median with probability ≥ `level`
    (`confidence` is the exact coverage of that interval; NaN bounds when n is too small)."""

    n: int
    median_new: float
    median_old: float
    median_difference: float
    ahead: int
    low: float
    high: float
    confidence: float


def paired_summary(new: list[float], old: list[float], level: float = 0.9) -> PairedSummary:
    """The sign-test summary of paired figures (new[i] and old[i] measured side by side)."""
    a, b = np.asarray(new, dtype=np.float64), np.asarray(old, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equal, non-empty lists of paired figures (got {a.shape} and {b.shape})")
    d = np.sort(a - b)
    n = len(d)
    # the widest k (1-based) whose interval [d_(k), d_(n-k+1)] still covers the median with >= level
    k, coverage = 0, float("nan")
    for j in range(1, n // 2 + 1):
        c = 1.0 - 2.0 * float(binom.cdf(j - 1, n, 0.5))
        if c < level:
            break
        k, coverage = j, c
    low, high = (float(d[k - 1]), float(d[n - k])) if k else (float("nan"), float("nan"))
    return PairedSummary(n=n, median_new=float(np.median(a)), median_old=float(np.median(b)),
                         median_difference=float(np.median(d)), ahead=int((d > 0).sum()),
                         low=low, high=high, confidence=coverage)


def _ratio(checkout: Path, python: str, size: str) -> tuple[float, float, float]:
    """One `main.py bench` run in `checkout`: (track FPS, headless FPS, headless/track)."""
    with tempfile.TemporaryDirectory(prefix="bench-against-") as tmp:
        out = Path(tmp) / "bench.json"
        subprocess.run([python, "main.py", "bench", "--sizes", size, "--modes", MODES, "--json", str(out)],
                       cwd=checkout, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        modes = json.loads(out.read_text())["sizes"][size]["modes"]
    track, headless = modes["track"]["fps"], modes["headless"]["fps"]
    return track, headless, headless / track


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m realtime.bench_against", description=__doc__.split("\n\n")[0])
    ap.add_argument("ref", help="the commit to compare against (any git revision)")
    ap.add_argument("--pairs", type=int, default=10, help="alternating pairs of runs (default 10)")
    ap.add_argument("--size", default="640x480", help="source size (default 640x480)")
    ap.add_argument("--json", type=Path, help="write every run and the summary as JSON")
    args = ap.parse_args(argv)
    if args.pairs < 1:
        print(f"--pairs must be at least 1, not {args.pairs}", file=sys.stderr)
        return 2
    rev = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{args.ref}^{{commit}}"], cwd=ROOT,
                         capture_output=True, text=True)
    if rev.returncode != 0:
        print(f"{args.ref!r} is not a commit of this repository (git log shows the ones there are)", file=sys.stderr)
        return 2
    ref = rev.stdout.strip()
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-against-") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), ref], cwd=ROOT, check=True)
        try:
            for i in range(args.pairs):
                order = ("new", "old") if i % 2 == 0 else ("old", "new")
                for build in order:
                    checkout = ROOT if build == "new" else old
                    try:
                        track, headless, ratio = _ratio(checkout, sys.executable, args.size)
                    except (subprocess.CalledProcessError, KeyError, ValueError) as exc:
                        print(f"the {build} build's bench failed ({exc}); run `python main.py bench --sizes "
                              f"{args.size} --modes {MODES}` in {checkout} to see why", file=sys.stderr)
                        return 1
                    runs.append({"pair": i + 1, "build": build, "track_fps": track, "headless_fps": headless,
                                 "ratio": ratio})
                    print(f"pair {i + 1:2d} {build}: track {track:6.1f} headless {headless:6.1f} FPS, "
                          f"ratio {ratio:.3f}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    new = [r["ratio"] for r in runs if r["build"] == "new"]
    olds = [r["ratio"] for r in runs if r["build"] == "old"]
    s = paired_summary(new, olds)
    print(f"headless/track at {args.size}, {s.n} pairs: this checkout {s.median_new:.3f}, {args.ref} "
          f"{s.median_old:.3f} (medians); paired difference median {s.median_difference:+.3f}, "
          f"{s.ahead} of {s.n} ahead, {s.confidence:.0%} interval {s.low:+.3f} … {s.high:+.3f}")
    if args.json:
        args.json.write_text(json.dumps({"ref": ref, "size": args.size, "runs": runs, "summary": vars(s)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
