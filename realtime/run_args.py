"""The live app's command-line options (`python main.py [run] …`), in the groups that other commands
reuse: `batch` takes the face-model and smoothing groups, so a batch run decodes as the app does.

`run_namespace(*argv)` parses a run command line into the same Namespace the app gets (what the
benchmark, the demo strip and the batch workers use instead of building one by hand).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.assets import MODELS_DIR


def add_source_arguments(p: argparse.ArgumentParser) -> None:
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


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    mdl = p.add_argument_group("face model")
    mdl.add_argument("--backend", default="auto",
                     help="inference back-end: auto, tensorrt, tensorrt-rtx, torch-cuda, onnxruntime, torch-cpu")
    mdl.add_argument("--model", type=Path, default=MODELS_DIR / "face_model.pt", help="checkpoint path")
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


def add_smoothing_arguments(p: argparse.ArgumentParser) -> None:
    sm = p.add_argument_group("smoothing (One Euro)")
    sm.add_argument("--no-smooth", action="store_true", help="disable temporal smoothing")
    sm.add_argument("--smooth-mincutoff", type=float, default=None, help="One Euro min cutoff (Hz)")
    sm.add_argument("--smooth-beta", type=float, default=None, help="One Euro speed coefficient")


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    from realtime.osc.formats import formats_help  # the format registry: light (no python-osc import)

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
    out.add_argument("--export", type=Path, metavar="FOLDER",
                     help="write the take to FOLDER: Live Link Face CSV, glTF (.glb), point cache (.pc2 + .obj), "
                          ".npz + .json (docs/export.md)")
    out.add_argument("--overwrite", action="store_true", help="let --export replace an existing take folder")
    out.add_argument("--stats", type=Path, metavar="PATH", help="write per-stage timing JSON at exit")
    out.add_argument("--screenshot-dir", type=Path, default=Path("out"), help="where key s saves PNGs")
    out.add_argument("--osc", action="append", default=[], metavar="[FORMAT@]HOST:PORT",
                     help="stream over OSC (repeatable); " + formats_help())
    out.add_argument("--osc-mtu", type=int, default=1400, help="largest OSC datagram in bytes")
    out.add_argument("--osc-mesh-every", type=int, default=1, metavar="N",
                     help="native OSC: send the dense mesh only in every Nth frame (weights, pose and landmarks "
                          "still every frame): ~16 instead of ~46 datagrams for the frames in between")
    out.add_argument("--faceosc-raw", action="store_true",
                     help="FaceOSC destinations also get /raw (every landmark in pixels; off by default, as in FaceOSC)")
    out.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Every option of the live app."""
    add_source_arguments(p)
    add_model_arguments(p)
    add_smoothing_arguments(p)
    add_output_arguments(p)


def run_namespace(*argv: str) -> argparse.Namespace:
    """The app's Namespace for a run command line (defaults for everything not given)."""
    p = argparse.ArgumentParser(prog="main.py run", add_help=False)
    add_run_arguments(p)
    return p.parse_args(list(argv))
