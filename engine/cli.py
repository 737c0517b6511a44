"""Command-line wiring of the engine's own tools: train and export.

`eval` and `build-assets` track the real demo clip first, so their wiring is `realtime.eval_cli`
(the engine never imports the realtime package)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=ROOT / "models" / "face_model.pt", help="checkpoint")
    p.add_argument("--out", type=Path, default=ROOT / "models" / "decoder.onnx", help="ONNX file to write")


def dispatch(args: argparse.Namespace) -> int:
    """Run the engine sub-command in `args.command` (train or export)."""
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
    if args.command == "export":
        from engine.export import export_checkpoint

        report = export_checkpoint(args.model, args.out)
        print(f"wrote {args.out}: max |Δ| vertices {report.max_abs_err_vertices:.2e} mm, "
              f"expressions {report.max_abs_err_expressions:.2e}")
        return 0
    raise ValueError(f"unknown engine command {args.command!r}")
