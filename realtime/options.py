"""Checks of the live app's options, run before anything heavy loads (no torch, MediaPipe or GL).

`validate_run_args(args)` raises `UserError` — one line saying what is wrong and what to do, which
`main.py` prints with exit status 2 — for every value that cannot work: out-of-range numbers, paths
that do not exist or cannot be written, an OSC host that does not resolve. The table of values
tried, with their messages, is docs/bad_values.md (written by tests/test_bad_values.py).
"""
from __future__ import annotations

import argparse
import math
import os
import socket
from pathlib import Path

from engine.errors import UserError

STATS_SUFFIX = ".json"


def _number(name: str, value, lo: float | None = None, hi: float | None = None, *, above: float | None = None,
            hint: str = "") -> None:
    """`value` must be a finite number in [lo, hi] (or > above)."""
    if value is None:
        return
    bad = not math.isfinite(float(value)) or (lo is not None and value < lo) or (hi is not None and value > hi) \
        or (above is not None and value <= above)
    if bad:
        if above is not None:
            rule = f"a number above {above:g}" + (f" and at most {hi:g}" if hi is not None else "")
        elif hi is None:
            rule = f"at least {lo:g}"
        else:
            rule = f"between {lo:g} and {hi:g}"
        raise UserError(f"{name} {value:g} is out of range: use {rule}{hint}")


def check_writable_file(what: str, path: Path, suffix: str) -> None:
    """UserError unless `path` can be written as a file: not a folder, in an existing writable folder,
    not an existing read-only file. `what` names it in the message ("--stats", "the recording")."""
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name such as {path / ('out' + suffix)}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"folder {folder} for {what} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"folder {folder} for {what} is not writable; choose another place")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{what} {path} exists and is not writable; choose another name")


def check_osc_host(host: str, option: str) -> None:
    """The host must resolve to an address (a name lookup, no packet sent)."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UserError(f"{option}: host {host!r} does not resolve ({exc.strerror if hasattr(exc, 'strerror') else exc});"
                        " use an IP address such as 127.0.0.1 or a name this machine can look up") from None


def validate_run_args(args: argparse.Namespace) -> None:
    """Every check of the module docstring, in the order the options are listed in `--help`."""
    if getattr(args, "camera", None) is not None and args.camera < 0:
        raise UserError(f"--camera {args.camera} is not a camera index: use 0, 1, … (see --list-cameras)")
    for option, attr in (("--video", "video"), ("--images", "images")):
        p = getattr(args, attr, None)
        if p is not None and not Path(p).exists():
            raise UserError(f"{option} {p} not found")
    if getattr(args, "video", None) is not None and Path(args.video).is_dir():
        raise UserError(f"--video {args.video} is a folder; use --images for a folder of images")
    _number("--width", getattr(args, "width", None), 16, 8192)
    _number("--height", getattr(args, "height", None), 16, 8192)
    _number("--fps", getattr(args, "fps", None), above=0, hi=1000)
    _number("--camera-timeout", getattr(args, "camera_timeout", None), above=0, hi=10 ** 7, hint=" seconds")
    from engine.backends import BACKEND_NAMES  # light: the back-ends themselves load lazily

    if getattr(args, "backend", "auto") not in BACKEND_NAMES:
        raise UserError(f"--backend {args.backend!r} is not one of {', '.join(BACKEND_NAMES)}")
    model = getattr(args, "model", None)
    if model is not None:
        model = Path(model)
        if model.is_dir():
            raise UserError(f"--model {model} is a folder, not a checkpoint file; pass a .pt file such as "
                            "models/face_model.pt")
        if not model.exists():
            raise UserError(f"--model {model} not found; pass a checkpoint made by `python main.py train`")
    _number("--decoder-threads", getattr(args, "decoder_threads", None), 1, 256)
    _number("--calibrate", getattr(args, "calibrate", None), 0, 100_000, hint=" face frames (0 = no calibration)")
    _number("--smooth-mincutoff", getattr(args, "smooth_mincutoff", None), above=0, hi=1000,
            hint=" Hz (the default is 0.5)")
    _number("--smooth-beta", getattr(args, "smooth_beta", None), 0, 1000, hint=" s/mm (the default is 0.1)")
    _number("--frames", getattr(args, "frames", None), 1, hint=" (or leave it out to run to the end)")
    if getattr(args, "view_size", None) is not None:
        from realtime.app import parse_size

        parse_size(args.view_size)
    if getattr(args, "record", None) is not None:
        from realtime.recorder import check_output_path

        check_output_path(args.record)
    if getattr(args, "export", None) is not None:
        from realtime.take.writer import check_take_folder

        check_take_folder(Path(args.export), getattr(args, "overwrite", False))
    if getattr(args, "stats", None) is not None:
        check_writable_file("--stats", Path(args.stats), STATS_SUFFIX)
    shots = getattr(args, "screenshot_dir", None)
    if shots is not None and Path(shots).exists() and not Path(shots).is_dir():
        raise UserError(f"--screenshot-dir {shots} is a file, not a folder")
    from realtime.osc.sender import MAX_MTU, MIN_MTU  # python-osc only: light

    _number("--osc-mtu", getattr(args, "osc_mtu", None), MIN_MTU, MAX_MTU, hint=" bytes (1400 is safe on Ethernet)")
    _number("--osc-mesh-every", getattr(args, "osc_mesh_every", None), 1, 10_000, hint=" frames (1 = every frame)")
    if getattr(args, "osc", None):
        from realtime.osc.targets import parse_target

        for text in args.osc:
            check_osc_host(parse_target(text).host, f"--osc {text}")
