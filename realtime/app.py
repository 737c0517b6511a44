"""The live app: builds the stages from the command line, runs the loop, handles keys, cleans up.

`run_app(args)` is what `python main.py [run] ...` calls. Stages: track → decode → smooth → osc →
render (each optional where that makes sense); the window's keys act between frames.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import UserError
from realtime.pipeline import Pipeline, RunStats
from realtime.record import FrameRecord

log = logging.getLogger("facemesh")

HELP_LINES = ["q/Esc quit   w wireframe   m mirror   c calibrate neutral",
              "s screenshot   space pause   h help"]


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'640x480' → (640, 480); None passes through."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--view-size {text!r} is not WIDTHxHEIGHT, e.g. 1280x480") from None
    if w < 16 or h < 16:
        raise UserError(f"--view-size {text!r} is too small")
    return w, h


@dataclass
class HudState:
    """What the heads-up display shows; updated once per frame from the record."""

    fps: float = 0.0
    backend: str = ""
    show_help: bool = False
    paused: bool = False
    message: str = ""
    message_until: float = 0.0
    last_render_ms: float | None = None  # the previous frame's render time (this frame's is not known yet)
    _last_t: float | None = field(default=None, repr=False)

    def tick(self) -> None:
        now = time.perf_counter()
        if self._last_t is not None:
            dt = now - self._last_t
            inst = 1.0 / dt if dt > 0 else 0.0
            self.fps = inst if self.fps == 0 else 0.9 * self.fps + 0.1 * inst
        self._last_t = now

    def flash(self, text: str, seconds: float = 2.0) -> None:
        self.message, self.message_until = text, time.perf_counter() + seconds

    def lines(self, record: FrameRecord) -> list[str]:
        stages = "  ".join(f"{k} {v:.1f}" for k, v in record.timings_ms.items() if k != "render")
        if self.last_render_ms is not None:
            stages += f"  render {self.last_render_ms:.1f}"
        fps = f"{self.fps:5.1f}" if self.fps > 0 else "  -- "  # nothing measured before the second frame
        out = [f"{fps} FPS   {self.backend}", f"ms: {stages}"]
        if record.source_note:
            out.append(record.source_note)
        elif not record.face_found:
            out.append("no face in frame")
        if self.paused:
            out.append("paused (space)")
        if self.message and time.perf_counter() < self.message_until:
            out.append(self.message)
        if self.show_help:
            out.extend(HELP_LINES)
        return out


class RenderStage:
    """Draws the record (offscreen or into the window), writes the recording, shows the HUD."""

    name = "render"

    def __init__(self, renderer, options, hud: HudState, window=None, recorder=None) -> None:
        self.renderer, self.options, self.hud = renderer, options, hud
        self.window, self.recorder = window, recorder
        self.last_bgr: np.ndarray | None = None

    def __call__(self, record: FrameRecord) -> None:
        t0 = time.perf_counter()
        self.hud.tick()
        self.options.hud_lines = self.hud.lines(record)
        self.renderer.render(record, self.options)
        if self.window is not None:
            self.window.present(self.renderer)
        if self.recorder is not None:
            self.last_bgr = self.renderer.read_rgb()
            self.recorder.write(self.last_bgr)
        self.hud.last_render_ms = (time.perf_counter() - t0) * 1e3


MIN_VIEW_HEIGHT = 540  # a 176×144 source would otherwise open a thumbnail-sized window


def default_view_size(source: tuple[int, int], layout: str) -> tuple[int, int]:
    """The view for a source of (width, height): twice as wide in side layout, scaled up (aspect kept,
    even sizes) to at least `MIN_VIEW_HEIGHT` pixels tall; never scaled down."""
    w, h = (2 * source[0], source[1]) if layout == "side" else source
    k = max(1.0, MIN_VIEW_HEIGHT / h)
    return int(round(w * k / 2)) * 2, int(round(h * k / 2)) * 2


HEADLESS_CAMERA_TIMEOUT_S = 30.0


def camera_timeout(args: argparse.Namespace) -> float | None:
    """How long a lost camera may stay away: --camera-timeout; by default never while a window is
    open (the view says it is reconnecting), `HEADLESS_CAMERA_TIMEOUT_S` without one."""
    given = getattr(args, "camera_timeout", None)
    if given is not None:
        return float(given)
    return HEADLESS_CAMERA_TIMEOUT_S if (getattr(args, "headless", False) or getattr(args, "no_render", False)) else None


def decoder_threads(args: argparse.Namespace) -> int | None:
    """CPU threads for the decoder back-end: --decoder-threads, else 1 when the loop is overlapped
    (the tracker has the other core: two ORT threads there slowed tracking 2× on a 2-core machine,
    docs/benchmarks.md), else the back-end's default."""
    if getattr(args, "decoder_threads", None):
        return int(args.decoder_threads)
    return None if getattr(args, "no_overlap", False) else 1


def _open_backend(args: argparse.Namespace):
    from engine.backends import create_backend

    backend = create_backend(args.backend, model_path=args.model, threads=decoder_threads(args))
    if args.backend != "auto":  # auto logs its own line, with what it skipped
        log.info("back-end: %s on %s", backend.name, backend.device)
    return backend


@dataclass
class Models:
    """What a run loads once (assets, the inference back-end, the retargeter's data) and every run
    of stages can share: the app builds its stages from one, a batch worker from one per process."""

    canonical: object
    reference: np.ndarray
    head: object
    embedding: object
    backend: object
    retargeter: object | None  # a fresh, loaded Retargeter to copy per run (None: --expressions direct)

    @classmethod
    def load(cls, args: argparse.Namespace) -> "Models":
        from engine.embedding import load_embedding
        from engine.headspace import load_head
        from realtime.tracker import load_tracker_assets

        canonical, reference = load_tracker_assets()
        retargeter = None
        if getattr(args, "expressions", "retarget") == "retarget":
            from engine.retarget import Retargeter

            retargeter = Retargeter.load()
        return cls(canonical, reference, load_head(), load_embedding(), _open_backend(args), retargeter)

    def close(self) -> None:
        getattr(self.backend, "close", lambda: None)()


def build_stages(args: argparse.Namespace, stack: ExitStack, models: Models | None = None):
    """Create every stage the arguments ask for (track … osc; the caller adds export and render), with
    fresh per-run state (tracker, retargeter, smoother) over `models` (loaded here when not given,
    then closed by `stack`). Returns (stages, backend, decode stage, head)."""
    import copy

    from realtime.smoothing import FrameSmoother
    from realtime.stages import Calibrator, DecodeStage, OscStage, RetargetStage, SmoothStage, TrackStage
    from realtime.tracker import FaceTracker, TrackerOptions

    if models is None:
        models = Models.load(args)
        stack.callback(models.close)
    head, backend = models.head, models.backend
    tracker = stack.enter_context(FaceTracker.create(TrackerOptions(), models.canonical, models.reference))
    retargeter = copy.deepcopy(models.retargeter) if models.retargeter is not None else None
    decode = DecodeStage(backend, head.vertices, head.expression_targets, args.identity, Calibrator(), retargeter)
    if args.calibrate:
        decode.start_calibration(args.calibrate)
    stages: list = [TrackStage(tracker, models.embedding.head_from_canonical())]
    if retargeter is not None:
        stages.append(RetargetStage(retargeter))
    stages.append(decode)
    if not args.no_smooth:
        kw = {}
        if args.smooth_mincutoff is not None:
            kw["min_cutoff"] = args.smooth_mincutoff
        if args.smooth_beta is not None:
            kw["beta"] = args.smooth_beta
        stages.append(SmoothStage(FrameSmoother(**kw)))
    if getattr(args, "osc", None):
        from realtime.osc import OscSender, parse_target

        targets = [parse_target(t) for t in args.osc]
        sender = OscSender(targets, mtu=args.osc_mtu, topology=(head.triangles, head.uvs),
                           faceosc_raw=getattr(args, "faceosc_raw", False),
                           mesh_every=getattr(args, "osc_mesh_every", 1))
        stack.callback(sender.close)
        stages.append(OscStage(sender))
    return stages, backend, decode, head


def open_take_writer(args: argparse.Namespace, fps: float, head, backend_name: str):
    """The `--export` folder's TakeWriter, with the run's metadata (realtime/take/writer.py)."""
    from realtime.take.metadata import describe_source, run_metadata
    from realtime.take.writer import TakeTopology, TakeWriter

    source = describe_source(camera=args.camera, video=args.video, images=args.images, demo=args.demo)
    options = {k: getattr(args, k, None) for k in ("expressions", "identity", "calibrate", "no_smooth",
                                                   "smooth_mincutoff", "smooth_beta", "mirror")}
    start = 0.0
    if source["kind"] == "camera":  # a live take's timecode is the time of day, as Live Link Face writes it
        now = time.localtime()
        start = now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec + (time.time() % 1.0)
    meta = {"run": run_metadata(model_path=args.model, backend=backend_name, source=source, options=options,
                                argv=getattr(args, "command_line", None))}
    return TakeWriter(args.export, TakeTopology.from_head(head), fps=fps, metadata=meta, start_seconds=start,
                      overwrite=args.overwrite)


# Stages that run with capture in the worker thread of the overlapped loop. The retarget stage is
# cheap numpy work that holds the GIL; measured on 2 cores it costs less beside the decoder on the
# main thread (headless/track 0.76–0.78) than beside the tracker in the worker (0.72–0.73).
FRONT_STAGES = ("track",)


def front_stage_count(stages: list) -> int:
    """How many leading stages belong in the overlapped loop's worker thread (`FRONT_STAGES`)."""
    n = 0
    while n < len(stages) and getattr(stages[n], "name", "") in FRONT_STAGES:
        n += 1
    return n


def run_app(args: argparse.Namespace) -> int:
    """The live app. Returns the exit status."""
    from realtime.options import validate_run_args

    validate_run_args(args)  # every option, before anything heavy loads
    from realtime.sources import list_cameras, open_source

    if args.list_cameras:
        found = list_cameras()
        print("cameras found: " + (", ".join(map(str, found)) if found else "none"))
        return 0
    if args.record is not None and args.no_render:
        raise UserError("--record needs rendering; drop --no-render")
    if not (args.headless or args.no_render) and sys.platform.startswith("linux") \
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("no display found (DISPLAY is not set); run with --headless, e.g. "
                        "--headless --record out.mp4")
    holder = _RunHolder()
    code = 0
    with StopSignals() as signals:
        try:
            with ExitStack() as stack:
                source = stack.enter_context(open_source(
                    camera=args.camera, video=args.video, images=args.images, demo=args.demo, width=args.width,
                    height=args.height, fps=args.fps, mirror=args.mirror, realtime=not args.as_fast_as_possible,
                    loop=args.loop, camera_timeout_s=camera_timeout(args)))
                first = source.read()
                if first is None:
                    raise UserError("the source gave no frames")
                h, w = first.image.shape[:2]
                stages, backend, decode, head = build_stages(args, stack)
                hud = HudState(backend=f"{backend.name}")
                window = renderer = recorder = None
                if not args.no_render:
                    from realtime.render import Renderer, RenderOptions

                    size = parse_size(args.view_size) or default_view_size((w, h), args.layout)
                    options = RenderOptions(layout=args.layout, wireframe=args.wireframe, show_landmarks=args.landmarks,
                                            mirror=False, show_hud=True)
                    if args.headless:
                        renderer = Renderer.offscreen(size[0], size[1], head.triangles, head.uvs, samples=args.msaa)
                    else:
                        from realtime.window import Window

                        window = stack.enter_context(Window.open(size[0], size[1], "facemesh-live"))
                        renderer = Renderer(window.ctx, size[0], size[1], head.triangles, head.uvs, samples=args.msaa)
                    stack.callback(renderer.release)
                    if args.record is not None:
                        from realtime.recorder import Recorder

                        recorder = stack.enter_context(Recorder(args.record, size, fps=source.fps or 30.0))
                    stages.append(RenderStage(renderer, options, hud, window, recorder))
                if args.export is not None:
                    from realtime.stages import ExportStage

                    writer = stack.enter_context(open_take_writer(args, source.fps, head, backend.name))
                    stages.insert(len(stages) - (not args.no_render), ExportStage(writer))  # before render
                controller = Controller(args, hud, decode, window, renderer, stages)
                pipeline = Pipeline(_Prepend(first, source), stages, should_stop=controller.should_stop,
                                    front_stages=0 if getattr(args, "no_overlap", False) else front_stage_count(stages))
                holder.pipeline = pipeline
                pipeline.run(max_frames=args.frames)
        except Stopped as exc:
            code = exc.exit_code
            log.info("%s: stopping; the recording and statistics are saved", exc.what)
        finally:
            signals.stopping = True  # further signals during the shutdown are ignored
            stats = getattr(holder.pipeline, "stats", None) or RunStats()
            _report(stats, args.stats)
    return code


class _RunHolder:
    pipeline: Pipeline | None = None


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by `StopSignals` on SIGINT, SIGTERM or SIGHUP: unwinds the app like
    Ctrl-C (every resource closed, the recording finished) and carries the exit status
    (130, 143, 129: 128 + the signal number)."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        self.exit_code = 128 + signum
        self.what = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)"}.get(
            signum, f"signal {signal.Signals(signum).name}")
        super().__init__(self.what)


class StopSignals:
    """Within the block, SIGINT, SIGTERM and SIGHUP (kill, systemd, docker stop, a closed terminal)
    raise `Stopped` once in the main thread; once `stopping` is set (the app is shutting down), further
    signals are only logged, so they cannot cut the recording's finalisation short. The previous
    handlers are restored on exit, unless a signal stopped the app (then the process is exiting, and
    repeats stay ignored until it has). A no-op outside the main thread."""

    def __init__(self) -> None:
        self.stopping = False
        self.signalled = False
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.stopping:
            log.info("already stopping; signal %d ignored", signum)
            return
        self.stopping = self.signalled = True
        raise Stopped(signum)

    def __enter__(self) -> "StopSignals":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        if self.signalled:  # the process is on its way out: ignore repeats until it has exited (SIG_IGN
            for sig in self._previous:  # also holds while the interpreter shuts down; a Python handler would not)
                signal.signal(sig, signal.SIG_IGN)
            return
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)


def _report(stats: RunStats, path: Path | None) -> None:
    """Log the run's summary (when it processed frames) and write `--stats` (always, when asked)."""
    s = stats.summary()
    if s["frames"]:
        log.info("%d frames, face found in %.0f%%, %.1f FPS", s["frames"], 100 * s["found_ratio"], s["fps"])
    if path is not None:
        stats.write_json(path)
        log.info("statistics written to %s", path)


class _Prepend:
    """A source that first returns an already-read frame, then reads on. The loop starts with that
    read: the frame is re-stamped as captured now and a paced video's clock restarts, so neither the
    model's loading time nor a late first frame shows up as lag or as a catch-up sprint."""

    def __init__(self, first, source) -> None:
        self.first, self.source = first, source

    def read(self):
        if self.first is not None:
            f, self.first = self.first, None
            restart = getattr(self.source, "restart_clock", None)
            if restart is not None:
                restart()
            return dataclasses.replace(f, t_capture=time.perf_counter())
        return self.source.read()


class Controller:
    """Key actions from the window, between frames."""

    def __init__(self, args, hud: HudState, decode, window, renderer, stages) -> None:
        self.args, self.hud, self.decode = args, hud, decode
        self.window, self.renderer = window, renderer
        self.render_stage = next((s for s in stages if isinstance(s, RenderStage)), None)
        self.quit = False

    def should_stop(self) -> bool:
        """Called by the pipeline on the main thread before each frame: keys, then waits while paused."""
        self._poll()
        self.wait_while_paused()
        return self.quit

    def wait_while_paused(self) -> None:
        while self.hud.paused and not self.quit:
            if self.window is not None and self.render_stage is not None:
                self.window.present(self.renderer)
            time.sleep(0.02)
            self._poll()

    def _poll(self) -> None:
        if self.window is None:
            return
        for action in self.window.poll():
            name = getattr(action, "value", action)
            if name == "quit":
                self.quit = True
            elif name == "toggle_wireframe" and self.render_stage:
                self.render_stage.options.wireframe = not self.render_stage.options.wireframe
            elif name == "toggle_mirror" and self.render_stage:
                self.render_stage.options.mirror = not self.render_stage.options.mirror
            elif name == "calibrate":
                self.decode.start_calibration(30)
                self.hud.flash("calibrating neutral: keep a relaxed face")
            elif name == "screenshot" and self.renderer is not None:
                self._screenshot()
            elif name == "pause":
                self.hud.paused = not self.hud.paused
            elif name == "help":
                self.hud.show_help = not self.hud.show_help

    def _screenshot(self) -> None:
        import cv2

        folder: Path = self.args.screenshot_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / time.strftime("facemesh-%Y%m%d-%H%M%S.png")
        cv2.imwrite(str(path), self.renderer.read_rgb())
        self.hud.flash(f"saved {path}")
        log.info("screenshot saved to %s", path)
