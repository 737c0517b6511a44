"""`python -m realtime.real_scale_study`: what was tried for the scale target and cap12's head-down
smile of issue #12, and not kept (docs/training.md, "Real faces").

Every figure comes from the whole clips through the real-face evaluation (`realtime.real_eval`),
varied by its `prepare` / `post` hooks, or from the tracker on re-made images:
- `thresholds`: every weight but the blinks (and, where named, the jaw) lowered by
  τ = k / (face height px) − c (hard: w − τ; soft: a knee of width τ), so a small face needs a larger
  motion to register;
- `upsample`: carphone ×0.5 upscaled again before tracking (does the tracker recover what it lost?);
- `lids`: five lid point pairs per eye in the eye aspect instead of three (less jitter?);
- `pose`: a neutral conditioned on head pose: each clip's lips-closed frames regressed on pitch and
  yaw, the fit's pose-dependent part removed from every frame (in-sample: the best case).
Prints one line per row and writes them as JSON (`--json`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from engine.expressions import EXPRESSION_NAMES
from engine.real_metrics import face_height_px
from realtime import realdata

STUDIES = ("thresholds", "upsample", "lids", "pose")
# (k, c, mode, units left alone) for `thresholds`
THRESHOLDS = ((8.0, 0.067, "hard", ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen")),
              (8.0, 0.067, "soft", ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen")),
              (6.0, 0.03, "hard", ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen")),
              (10.0, 0.06, "soft", ("eyeBlinkLeft", "eyeBlinkRight")))
FIVE_UPPER = np.array([[161, 160, 159, 158, 157], [388, 387, 386, 385, 384]])
FIVE_LOWER = np.array([[163, 144, 145, 153, 154], [390, 373, 374, 380, 381]])


def threshold_post(k: float, c: float, mode: str, keep: tuple[str, ...]):
    """A `post` hook for `evaluate_real`: weights [T,52] lowered by τ = clip(k / face px − c, 0, 0.9)."""
    cols = np.array([j for j, n in enumerate(EXPRESSION_NAMES)
                     if n not in keep and not n.startswith("eyeLook") and n != "tongueOut"])

    def post(w: np.ndarray, t: realdata.Tracked) -> np.ndarray:
        height = np.nan_to_num(face_height_px(t.landmarks_px), nan=1e9)  # no face: no threshold
        tau = np.clip(k / np.maximum(height, 1.0) - c, 0.0, 0.9)[:, None]
        x = w[:, cols].astype(np.float64)
        if mode == "hard":
            x = np.maximum(x - tau, 0.0)
        else:
            x = np.where(x < tau, x * x / (2.0 * np.maximum(tau, 1e-9)), x - tau / 2.0) / (1.0 - tau / 2.0)
        out = w.copy()
        out[:, cols] = x
        return out

    return post


def _row(name: str, result: dict) -> dict:
    s = result["summary"]
    keys = ("blink_auc_min", "blink_peak_min", "smile_min", "neutral_smile_median", "weights_moved",
            "scale_median_max")
    row = {"name": name, **{k: s[k] for k in keys if k in s}}
    if result.get("scale"):
        row["scale"] = {k: round(v["median"], 3) for k, v in result["scale"].items()}
    neutral = result["inputs"].get("cap12", {}).get("neutral")
    if neutral:
        row["cap12_neutral_smile_median"] = neutral["smile_median"]
    return row


def thresholds() -> list[dict]:
    from realtime.real_eval import evaluate_real

    rows = [_row("shipped", evaluate_real(progress=False))]
    for k, c, mode, keep in THRESHOLDS:
        r = evaluate_real(progress=False, post=threshold_post(k, c, mode, keep))
        rows.append(_row(f"threshold k={k:g} c={c:g} {mode}, not on {', '.join(keep)}", r))
    return rows


def upsample() -> list[dict]:
    """carphone at ×0.5, upscaled again before tracking: weights against ×1 (median per-frame max |Δw|)."""
    import cv2

    from realtime.clips import track_file
    from realtime.real_eval import stream_weights

    base = realdata.tracked("carphone")
    ref, _, _ = stream_weights(base)
    path = realdata.media_path("carphone")
    variants = (("×0.5", 0.5, None, 1.0), ("×0.5 then ×2 bicubic", 0.5, cv2.INTER_CUBIC, 2.0),
                ("×0.5 then ×4 bicubic", 0.5, cv2.INTER_CUBIC, 4.0),
                ("×0.5 then ×4 Lanczos", 0.5, cv2.INTER_LANCZOS4, 4.0), ("×1 then ×4 bicubic", 1.0, cv2.INTER_CUBIC, 4.0))
    rows = []
    for name, down, interp, up in variants:
        t = track_file(path, "carphone", down, upsample=up, upsample_interpolation=interp)
        w, _, _ = stream_weights(t)
        both = base.found & t.found
        d = np.abs(w[both] - ref[both]).max(axis=1)
        moved = np.abs(t.landmarks_norm[both] - base.landmarks_norm[both])
        rows.append({"name": f"carphone {name}", "median_max_dw": float(np.median(d)),
                     "landmarks_mm_median": float(np.median(moved)), "frames": int(both.sum())})
    return rows


def lids() -> list[dict]:
    """Open-eye jitter of the eye aspect: median |frame-to-frame change| / median aspect, 3 and 5 pairs."""
    from engine.eyelids import eye_aspect

    rows = []
    for name in ("carphone", "franck", "cap12", "cap13"):
        t = realdata.tracked(name)
        p = t.landmarks_px[t.found]
        row = {"name": name}
        for label, a in (("3 pairs", eye_aspect(p)), ("5 pairs", eye_aspect(p, FIVE_UPPER, FIVE_LOWER))):
            row[label] = float(np.median(np.abs(np.diff(a, axis=0)) / np.median(a, axis=0)))
        rows.append(row)
    return rows


def head_angles(t: realdata.Tracked) -> np.ndarray:
    """[T,2] (pitch, yaw) degrees of each face frame's head pose from its landmarks (NaN without one)."""
    from scipy.spatial.transform import Rotation

    from realtime.clips import load_tracker_assets
    from realtime.tracker import pose_from_landmarks

    canonical, _ = load_tracker_assets()
    out = np.full((len(t), 2), np.nan)
    for i in np.flatnonzero(t.found):
        rot = pose_from_landmarks(t.landmarks_px[i], canonical, t.size).rotation.astype(np.float64)
        out[i] = Rotation.from_matrix(rot).as_euler("xyz", degrees=True)[:2]
    return out


def pose_fit(t: realdata.Tracked, closed_share: float = 0.4) -> tuple[np.ndarray, np.ndarray, float]:
    """Least squares of the lips-closed frames' landmarks [468,3] on (pitch, yaw) minus their median.
    → (slopes [2,1404] mm per degree, angles [T,2] relative to the closed frames' median, R²)."""
    from engine.retarget import lip_gap

    f = np.flatnonzero(t.found)
    ang = head_angles(t)
    x = t.landmarks_norm[f].astype(np.float64)
    gap = lip_gap(x)
    closed = gap < np.percentile(gap, 100 * closed_share)
    rel = ang - np.median(ang[f][closed], axis=0)
    d = (x[closed] - np.median(x[closed], axis=0)).reshape(closed.sum(), -1)
    m = np.c_[rel[f][closed], np.ones(closed.sum())]
    coef = np.linalg.lstsq(m, d, rcond=None)[0]
    resid = d - m @ coef
    r2 = 1.0 - (resid ** 2).sum() / ((d - d.mean(axis=0)) ** 2).sum()
    return coef[:2], rel, float(r2)


def pose() -> list[dict]:
    from realtime.real_eval import evaluate_real

    names = ("cap12", "cap13", "franck", "carphone")
    fits = {n: pose_fit(realdata.tracked(n)) for n in names}
    rows = []
    for n in names:
        slope, _, r2 = fits[n]
        per_deg = np.sqrt((slope.reshape(2, 468, 3) ** 2).sum(-1).mean(-1))
        rows.append({"name": f"{n}: pose fit", "r2": r2, "mm_per_deg_pitch": float(per_deg[0]),
                     "mm_per_deg_yaw": float(per_deg[1]),
                     "pitch_slope_corr": {m: float(np.corrcoef(slope[0], fits[m][0][0])[0, 1]) for m in names}})

    def prepare(t: realdata.Tracked) -> realdata.Tracked:
        if len(t) < 10 or t.name not in fits:
            return t
        slope, rel, _ = fits[t.name]
        f = np.flatnonzero(t.found)
        norm = t.landmarks_norm.copy()
        norm[f] = (norm[f] - (rel[f] @ slope).reshape(-1, 468, 3)).astype(np.float32)
        return realdata.Tracked(t.name, t.fps, t.size, t.found, t.landmarks_px, norm, t.scale_px_per_mm)

    rows.append(_row("shipped", evaluate_real(progress=False, scale=False)))
    rows.append(_row("neutral conditioned on pose (each clip's own fit)",
                     evaluate_real(progress=False, scale=False, prepare=prepare)))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(STUDIES), help=f"comma-separated, of {', '.join(STUDIES)}")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    chosen = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in chosen if s not in STUDIES]
    if bad:
        p.error(f"unknown study {', '.join(bad)}; choose from {', '.join(STUDIES)}")
    out = {}
    for name in chosen:
        out[name] = {"thresholds": thresholds, "upsample": upsample, "lids": lids, "pose": pose}[name]()
        for row in out[name]:
            print(f"{name}: " + json.dumps(row, ensure_ascii=False))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
