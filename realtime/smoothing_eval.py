"""Jitter and lag of the tracked face with and without One Euro smoothing, on the real demo clip.

- Jitter: a still face, the demo clip's first frame repeated N times with fresh Gaussian sensor noise
  (σ = 2 grey levels) each frame, tracked in VIDEO mode. Jitter = RMS speed (mm/s) of the
  pose-normalised landmarks (and of decoded vertices when a decoder is given): whatever moves is noise.
- Lag: the real moving clip at its real timestamps. Lag = the delay (ms) maximising the
  cross-correlation between the raw and the smoothed landmark velocities (summed over all
  coordinates, peak refined by a parabola); raw vs raw is 0 by construction.

Run: `python -m realtime.smoothing_eval --json docs/smoothing.json` (add `--sweep` for a grid of
parameters). Tracking runs once; the filters then run on the stored tracks. `--timing` instead
times the FrameSmoother per frame on the real clip, tracked and decoded (`time_smoother`).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from realtime.record import FrameRecord
from realtime.smoothing import DEFAULT_BETA, DEFAULT_MIN_CUTOFF_HZ, FrameSmoother
from realtime.tracker import TrackResult

Decode = Callable[[np.ndarray], np.ndarray]  # landmarks_norm [T,468,3] → vertices [T,V,3] mm
WARMUP_FRAMES = 15  # skipped in jitter figures: detection → tracking hand-over and filter start
MAX_LAG_FRAMES = 10
SWEEP_MIN_CUTOFF = (0.25, 0.5, 1.0, 2.0, 4.0)
SWEEP_BETA = (0.0, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 1.0)
# How the defaults are picked from the sweep: least still-face jitter whose lag on the moving clip
# stays within one frame at 30 fps, with a min cutoff that still follows slow expressions
# (time constant 1/(2π·0.5 Hz) ≈ 0.32 s).
CHOICE_MAX_LAG_MS = 1000.0 / 30.0
CHOICE_MIN_CUTOFF_FLOOR_HZ = 0.5


def rms_speed(x: np.ndarray, t_s: np.ndarray) -> float:
    """RMS point speed: x [T,N,3] positions, t_s [T] seconds → sqrt(mean_t,n |Δx/Δt|²) (units/s)."""
    v = np.diff(x.astype(np.float64), axis=0) / np.diff(t_s)[:, None, None]
    return float(np.sqrt(np.mean(np.sum(v * v, axis=-1))))


def xcorr_delay_frames(raw: np.ndarray, smoothed: np.ndarray, max_lag: int = MAX_LAG_FRAMES) -> float:
    """Delay (frames, sub-frame) of `smoothed` behind `raw`, both [T,...] sampled together.

    Each coordinate's track is detrended (least-squares line removed); the delay is the shift
    k ∈ [−max_lag, max_lag] maximising Σ_t ⟨raw(t), smoothed(t+k)⟩ / (T − |k|), refined by a
    parabola through the peak and its neighbours. Positive = smoothed comes later.
    """
    a = _detrend(raw.reshape(len(raw), -1))
    b = _detrend(smoothed.reshape(len(smoothed), -1))
    n = len(a)
    lags = np.arange(-max_lag, max_lag + 1)
    c = np.array([np.sum(a[max(0, -k): n - max(0, k)] * b[max(0, k): n + min(0, k)]) / (n - abs(k))
                  for k in lags])
    i = int(np.argmax(c))
    if 0 < i < len(c) - 1:
        den = c[i - 1] - 2 * c[i] + c[i + 1]
        if den < 0:
            return float(lags[i] + 0.5 * (c[i - 1] - c[i + 1]) / den)
    return float(lags[i])


def _detrend(x: np.ndarray) -> np.ndarray:
    """[T,D] → [T,D] with each column's least-squares line removed (float64)."""
    x = x.astype(np.float64)
    t = np.linspace(-1.0, 1.0, len(x))
    design = np.stack([np.ones_like(t), t], axis=1)
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    return x - design @ coef


def _records(results: Sequence[TrackResult], timestamps_ms: Sequence[int],
             vertices: np.ndarray | None) -> list[FrameRecord]:
    out = []
    for i, (r, ts) in enumerate(zip(results, timestamps_ms)):
        out.append(FrameRecord(frame_id=i, t_capture=0.0, timestamp_ms=int(ts), face_found=r.face_found,
                               landmarks_px=r.landmarks_px, pose=r.pose, landmarks_norm=r.landmarks_norm,
                               vertices=None if vertices is None else vertices[i]))
    return out


def smooth_records(records: Sequence[FrameRecord], min_cutoff: float, beta: float) -> list[FrameRecord]:
    """Copies of `records` passed through a fresh FrameSmoother (the pipeline's smoothing stage)."""
    sm = FrameSmoother(min_cutoff, beta)
    out = []
    for r in records:
        c = replace(r, timings_ms={})
        sm(c)
        out.append(c)
    return out


def _stack(records: Sequence[FrameRecord], name: str) -> np.ndarray:
    return np.stack([getattr(r, name) for r in records])


def _px_in_mm(records: Sequence[FrameRecord]) -> np.ndarray:
    """landmarks_px [T,478,3] expressed in mm of face (÷ the median face scale, px per mm)."""
    s = float(np.median([r.pose.scale_px_per_mm for r in records]))
    return _stack(records, "landmarks_px") / s


def jitter_lag(still: Sequence[FrameRecord], moving: Sequence[FrameRecord], min_cutoff: float | None,
               beta: float | None) -> dict:
    """Figures for one setting (None, None = raw). Records must all have a face."""
    if min_cutoff is not None:
        still = smooth_records(still, min_cutoff, beta)
        moving_s = smooth_records(moving, min_cutoff, beta)
    else:
        moving_s = list(moving)
    t_still = np.array([r.timestamp_ms for r in still]) * 1e-3
    t_move = np.array([r.timestamp_ms for r in moving]) * 1e-3
    frame_ms = float(np.mean(np.diff(t_move))) * 1e3
    w = WARMUP_FRAMES
    out = {
        "jitter_norm_mm_s": rms_speed(_stack(still, "landmarks_norm")[w:], t_still[w:]),
        "jitter_px_mm_s": rms_speed(_px_in_mm(still)[w:], t_still[w:]),
        "moving_speed_norm_mm_s": rms_speed(_stack(moving_s, "landmarks_norm"), t_move),
        "lag_norm_ms": frame_ms * xcorr_delay_frames(_stack(moving, "landmarks_norm"),
                                                     _stack(moving_s, "landmarks_norm")),
        "lag_px_ms": frame_ms * xcorr_delay_frames(_stack(moving, "landmarks_px"), _stack(moving_s, "landmarks_px")),
    }
    if still[0].vertices is not None:
        out["jitter_vertices_mm_s"] = rms_speed(_stack(still, "vertices")[w:], t_still[w:])
        out["lag_vertices_ms"] = frame_ms * xcorr_delay_frames(_stack(moving, "vertices"), _stack(moving_s, "vertices"))
    return {k: round(v, 3) for k, v in out.items()}


def measure(min_cutoff: float = DEFAULT_MIN_CUTOFF_HZ, beta: float = DEFAULT_BETA, decode: Decode | None = None,
            still_frames: int = 120, sigma_grey: float = 2.0, sweep: bool = False,
            video: Path | None = None, max_lag_ms: float = CHOICE_MAX_LAG_MS) -> dict:
    """Track the demo clip (moving) and its noisy still first frame; return raw vs smoothed figures.

    Returns {"clip", "still": {...}, "params": {...}, "raw": {...}, "smoothed": {...},
    "sweep": [...], "chosen": {...} (with `sweep`), "track_ms_per_frame"}; units in the keys (mm/s, ms).
    """
    from realtime.sources import VideoSource, demo_clip_path, noisy_still_frames
    from realtime.clips import track_frames
    from realtime.tracker import load_tracker_assets

    path = Path(video) if video is not None else demo_clip_path()
    canonical, reference = load_tracker_assets()
    with VideoSource(path, realtime=False) as src:
        frames = list(src)
    still_src = noisy_still_frames(frames[0].image, still_frames, sigma_grey, fps=src.fps, seed=0)
    t0 = time.perf_counter()
    moving_res = track_frames(frames, canonical=canonical, reference=reference)
    still_res = track_frames(still_src, canonical=canonical, reference=reference)
    track_ms = (time.perf_counter() - t0) * 1e3 / (len(frames) + len(still_src))
    keep_m = [i for i, r in enumerate(moving_res) if r.face_found]
    keep_s = [i for i, r in enumerate(still_res) if r.face_found]
    if len(keep_m) < len(moving_res) or len(keep_s) < len(still_res):
        raise RuntimeError(f"the tracker lost the face ({len(keep_m)}/{len(moving_res)} moving, "
                           f"{len(keep_s)}/{len(still_res)} still frames); the figures need every frame")
    verts_m = verts_s = None
    if decode is not None:
        verts_m = decode(np.stack([r.landmarks_norm for r in moving_res]))
        verts_s = decode(np.stack([r.landmarks_norm for r in still_res]))
    moving = _records(moving_res, [f.timestamp_ms for f in frames], verts_m)
    still = _records(still_res, [f.timestamp_ms for f in still_src], verts_s)
    report = {
        "clip": f"{path.name} ({frames[0].image.shape[1]}x{frames[0].image.shape[0]}, {len(frames)} frames, "
                f"{src.fps:.2f} fps)",
        "still": f"first frame x{still_frames}, Gaussian sensor noise sigma={sigma_grey} grey levels per frame",
        "params": {"min_cutoff_hz": min_cutoff, "beta_s_per_mm": beta},
        "raw": jitter_lag(still, moving, None, None),
        "smoothed": jitter_lag(still, moving, min_cutoff, beta),
        "track_ms_per_frame": round(track_ms, 2),
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
    }
    if sweep:
        report["sweep"] = [{"min_cutoff_hz": mc, "beta_s_per_mm": b, **jitter_lag(still, moving, mc, b)}
                           for mc in SWEEP_MIN_CUTOFF for b in SWEEP_BETA]
        report["choice_rule"] = (f"least jitter_norm_mm_s with lag_norm_ms <= {max_lag_ms:.1f} and "
                                 f"min_cutoff_hz >= {CHOICE_MIN_CUTOFF_FLOOR_HZ}")
        report["chosen"] = choose(report["sweep"], max_lag_ms)
    return report


def choose(sweep: Sequence[dict], max_lag_ms: float = CHOICE_MAX_LAG_MS,
           min_cutoff_floor: float = CHOICE_MIN_CUTOFF_FLOOR_HZ) -> dict | None:
    """The sweep row with the least `jitter_norm_mm_s` among those with `lag_norm_ms` ≤ max_lag_ms
    and min_cutoff ≥ floor; None when no row qualifies."""
    ok = [r for r in sweep if r["lag_norm_ms"] <= max_lag_ms and r["min_cutoff_hz"] >= min_cutoff_floor]
    return min(ok, key=lambda r: r["jitter_norm_mm_s"]) if ok else None


def format_table(report: dict) -> str:
    """A small text table of raw vs smoothed (and the sweep if present)."""
    keys = [k for k in report["raw"] if k != "moving_speed_norm_mm_s"]
    p = report["params"]
    lines = [f"{'':<22}" + "".join(f"{k:>22}" for k in keys),
             f"{'raw':<22}" + "".join(f"{report['raw'][k]:>22.2f}" for k in keys),
             f"{'one euro ' + str(p['min_cutoff_hz']) + ' Hz, b=' + str(p['beta_s_per_mm']):<22}"
             + "".join(f"{report['smoothed'][k]:>22.2f}" for k in keys)]
    for row in report.get("sweep", []):
        label = f"  fc={row['min_cutoff_hz']} b={row['beta_s_per_mm']}"
        lines.append(f"{label:<22}" + "".join(f"{row[k]:>22.2f}" for k in keys))
    if report.get("chosen"):
        c = report["chosen"]
        lines.append(f"chosen ({report['choice_rule']}): min_cutoff {c['min_cutoff_hz']} Hz, "
                     f"beta {c['beta_s_per_mm']} s/mm")
    return "\n".join(lines)


def time_smoother(records: Sequence[FrameRecord], rounds: int = 10) -> dict:
    """Wall time (ms) of one FrameSmoother call per frame: `records` run `rounds` times through one
    smoother (10 s apart, so each round restarts as after a pause); copies are made outside the
    timing. Returns {"frames", "ms_p50", "ms_p95", "ms_mean"} (the very first call left out)."""
    sm = FrameSmoother()
    ms: list[float] = []
    for k in range(rounds):
        batch = [replace(r, timestamp_ms=r.timestamp_ms + k * 10_000, timings_ms={}) for r in records]
        for r in batch:
            t0 = time.perf_counter()
            sm(r)
            ms.append((time.perf_counter() - t0) * 1e3)
    a = np.asarray(ms[1:])
    return {"frames": len(a), "ms_p50": round(float(np.median(a)), 4), "ms_p95": round(float(np.percentile(a, 95)), 4),
            "ms_mean": round(float(a.mean()), 4)}


def _model_decoder() -> Decode | None:
    """The trained face model as a decode callable, when models/face_model.pt exists."""
    from engine.checkpoint import CHECKPOINT_PATH, load_face_model

    if not Path(CHECKPOINT_PATH).exists():
        return None
    import torch

    model = load_face_model()

    def decode(landmarks: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            v, _ = model(torch.from_numpy(np.ascontiguousarray(landmarks, dtype=np.float32)))
        return v.numpy()

    return decode


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m realtime.smoothing_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the figures here (e.g. docs/smoothing.json)")
    ap.add_argument("--min-cutoff", type=float, default=DEFAULT_MIN_CUTOFF_HZ, help="One Euro min cutoff, Hz")
    ap.add_argument("--beta", type=float, default=DEFAULT_BETA, help="One Euro beta, s/mm")
    ap.add_argument("--sweep", action="store_true", help="also evaluate a grid of parameters")
    ap.add_argument("--no-decode", action="store_true", help="skip decoded vertices even if a model exists")
    ap.add_argument("--timing", action="store_true",
                    help="only time the smoother per frame on the real clip (tracked and decoded), then exit")
    args = ap.parse_args(argv)
    from engine.errors import UserError

    if args.timing:
        from realtime.clips import real_frames

        print(json.dumps(time_smoother(real_frames(120)), indent=2))
        return 0

    try:
        decode = None if args.no_decode else _model_decoder()
        report = measure(args.min_cutoff, args.beta, decode=decode, sweep=args.sweep)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
