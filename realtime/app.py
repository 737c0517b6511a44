"""The live app: builds the stages from the configuration, runs the loop, handles keys, cleans up.

`run_app(args)` is what `python main.py [run] ...` calls: it checks the options, makes the
`RunConfig` once, and runs track → retarget → decode → smooth → osc → export → render (each optional
where that makes sense); the window's keys act between frames (`realtime/controls.py`).
`Models` + `build_stages` are also what the benchmark, the demo strip and the batch workers use.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import UserError
from realtime.config import ModelConfig, RunConfig
from realtime.controls import Controller, HudState
from realtime.pipeline import Pipeline, RunStats

log = logging.getLogger("facemesh")

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


MIN_VIEW_HEIGHT = 540  # a 176×144 source would otherwise open a thumbnail-sized window


def default_view_size(source: tuple[int, int], layout: str) -> tuple[int, int]:
    """The view for a source of (width, height): twice as wide in side layout, scaled up (aspect kept,
    even sizes) to at least `MIN_VIEW_HEIGHT` pixels tall; never scaled down."""
    w, h = (2 * source[0], source[1]) if layout == "side" else source
    k = max(1.0, MIN_VIEW_HEIGHT / h)
    return int(round(w * k / 2)) * 2, int(round(h * k / 2)) * 2


HEADLESS_CAMERA_TIMEOUT_S = 30.0


def camera_timeout(config: RunConfig) -> float | None:
    """How long a lost camera may stay away: --camera-timeout; by default never while a window is
    open (the view says it is reconnecting), `HEADLESS_CAMERA_TIMEOUT_S` without one."""
    given = config.source.camera_timeout_s
    if given is not None:
        return float(given)
    return HEADLESS_CAMERA_TIMEOUT_S if (config.output.headless or not config.output.render) else None


def decoder_threads(model: ModelConfig, overlap: bool) -> int | None:
    """CPU threads for the decoder back-end: --decoder-threads, else 1 when the loop is overlapped
    (the tracker has the other core: two ORT threads there slowed tracking 2× on a 2-core machine,
    docs/benchmarks.md), else the back-end's default."""
    if model.decoder_threads:
        return int(model.decoder_threads)
    return 1 if overlap else None


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
    def load(cls, model: ModelConfig, overlap: bool = True) -> "Models":
        from engine.backends import create_backend
        from engine.embedding import load_embedding
        from engine.headspace import load_head
        from realtime.tracker import load_tracker_assets

        canonical, reference = load_tracker_assets()
        retargeter = None
        if model.expressions == "retarget":
            from engine.retarget import Retargeter

            retargeter = Retargeter.load()
            t0 = time.perf_counter()
            retargeter.warm_up()  # its compiled kernels, before the first frame
            if time.perf_counter() - t0 > 1.0:  # the first run on this machine compiles them
                log.info("compiled the front end's kernels in %.0f s (once: numba keeps them for later runs)",
                         time.perf_counter() - t0)
        backend = create_backend(model.backend, model_path=model.model, threads=decoder_threads(model, overlap))
        if model.backend != "auto":  # auto logs its own line, with what it skipped
            log.info("back-end: %s on %s", backend.name, backend.device)
        return cls(canonical, reference, load_head(), load_embedding(), backend, retargeter)

    def close(self) -> None:
        getattr(self.backend, "close", lambda: None)()


@dataclass
class Stages:
    """What `build_stages` made: the stages in order, and the parts the app reaches for."""

    stages: list
    backend: object
    decode: object  # the DecodeStage (calibration starts there)
    head: object  # the dense head (topology for rendering and export)


def build_stages(config: RunConfig, stack: ExitStack, models: Models | None = None) -> Stages:
    """Every per-frame stage the configuration asks for, track … osc (the caller adds export and
    render), with fresh per-run state (tracker, retargeter, smoother) over `models` (loaded here when
    not given, then closed by `stack`)."""
    import copy

    from realtime.smoothing import FrameSmoother
    from realtime.stages import Calibrator, DecodeStage, OscStage, RetargetStage, SmoothStage, TrackStage
    from realtime.tracker import FaceTracker, TrackerOptions

    if models is None:
        models = Models.load(config.model, config.output.overlap)
        stack.callback(models.close)
    head, backend = models.head, models.backend
    tracker = stack.enter_context(FaceTracker.create(TrackerOptions(), models.canonical, models.reference))
    retargeter = copy.deepcopy(models.retargeter) if models.retargeter is not None else None
    decode = DecodeStage(backend, head.vertices, head.expression_targets, config.model.identity, Calibrator(),
                         retargeter)
    if config.model.calibrate:
        decode.start_calibration(config.model.calibrate)
    stages: list = [TrackStage(tracker, models.embedding.head_from_canonical())]
    if retargeter is not None:
        stages.append(RetargetStage(retargeter))
    stages.append(decode)
    sm = config.smoothing
    if sm.enabled:
        kw = {}
        if sm.min_cutoff_hz is not None:
            kw["min_cutoff"] = sm.min_cutoff_hz
        if sm.beta is not None:
            kw["beta"] = sm.beta
        stages.append(SmoothStage(FrameSmoother(**kw)))
    out = config.output
    if out.osc:
        from realtime.osc import OscSender, parse_target

        sender = OscSender([parse_target(t) for t in out.osc], mtu=out.osc_mtu, topology=(head.triangles, head.uvs),
                           faceosc_raw=out.faceosc_raw, mesh_every=out.osc_mesh_every)
        stack.callback(sender.close)
        stages.append(OscStage(sender))
    from threadpoolctl import threadpool_limits

    # One BLAS thread for the run (every BLAS library loaded by now: numpy's, scipy's): the per-frame
    # products are small (the retarget stage's [43,1404] matrix-vector products), and a second
    # OpenBLAS thread spinning against the tracker's thread on 2 cores made the retarget stage ~6 ms
    # instead of ~1 (docs/benchmarks.md). Restored when the run's stack closes.
    stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
    return Stages(stages, backend, decode, head)


def open_take_writer(config: RunConfig, fps: float, head, backend_name: str):
    """The `--export` folder's TakeWriter, with the run's metadata (realtime/take/writer.py)."""
    from realtime.take.metadata import run_metadata
    from realtime.take.writer import TakeTopology, TakeWriter

    source = config.source.describe()
    options = {"expressions": config.model.expressions, "identity": config.model.identity,
               "calibrate": config.model.calibrate, "smoothing": dataclasses.asdict(config.smoothing),
               "mirror": config.source.mirror}
    start = 0.0
    if source["kind"] == "camera":  # a live take's timecode is the time of day, as Live Link Face writes it
        now = time.localtime()
        start = now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec + (time.time() % 1.0)
    meta = {"run": run_metadata(model_path=config.model.model, backend=backend_name, source=source, options=options,
                                argv=config.argv)}
    return TakeWriter(config.output.export, TakeTopology.from_head(head), fps=fps, metadata=meta, start_seconds=start,
                      overwrite=config.output.overwrite)


# Stages that run with capture in the worker thread of the overlapped loop. The retarget stage is
# cheap numpy work that holds the GIL; measured on 2 cores it costs less beside the decoder on the
# main thread (headless/track 0.76–0.78) than beside the tracker in the worker (0.72–0.73), and
# again with one BLAS thread (2026-12-06, 5 alternating runs each: median 0.75 against 0.67).
FRONT_STAGES = ("track",)


def front_stage_count(stages: list) -> int:
    """How many leading stages belong in the overlapped loop's worker thread (`FRONT_STAGES`)."""
    n = 0
    while n < len(stages) and getattr(stages[n], "name", "") in FRONT_STAGES:
        n += 1
    return n


def open_run_source(config: RunConfig):
    """The configured source (`realtime.sources.open_source`)."""
    from realtime.sources import open_source

    s = config.source
    return open_source(camera=s.camera, video=s.video, images=s.images, demo=s.demo, width=s.width, height=s.height,
                       fps=s.fps, mirror=s.mirror, realtime=s.realtime, loop=s.loop,
                       camera_timeout_s=camera_timeout(config))


def run_app(args: argparse.Namespace) -> int:
    """The live app (`python main.py [run] …`). Returns the exit status."""
    from realtime.options import validate_run_args

    validate_run_args(args)  # every option, before anything heavy loads
    config = RunConfig.from_args(args)
    out = config.output
    if args.list_cameras:
        from realtime.sources import list_cameras

        found = list_cameras()
        print("cameras found: " + (", ".join(map(str, found)) if found else "none"))
        return 0
    if out.record is not None and not out.render:
        raise UserError("--record needs rendering; drop --no-render")
    if out.render and not out.headless and sys.platform.startswith("linux") \
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("no display found (DISPLAY is not set); run with --headless, e.g. "
                        "--headless --record out.mp4")
    holder = _RunHolder()
    code = 0
    with StopSignals() as signals:
        try:
            with ExitStack() as stack:
                source = stack.enter_context(open_run_source(config))
                built = build_stages(config, stack)
                stages, head = built.stages, built.head
                hud = HudState(backend=f"{built.backend.name}")
                window = renderer = render_stage = None
                if out.export is not None:
                    from realtime.stages import ExportStage

                    writer = stack.enter_context(open_take_writer(config, source.fps, head, built.backend.name))
                    stages.append(ExportStage(writer))
                if out.render:
                    window, renderer, render_stage = _open_view(config, source, head, hud, stack)
                    stages.append(render_stage)
                controller = Controller(out.screenshot_dir, hud, built.decode, window, renderer, render_stage)
                pipeline = Pipeline(source, stages, latency_stage="osc", should_stop=controller.should_stop,
                                    front_stages=front_stage_count(stages) if out.overlap else 0)
                holder.pipeline = pipeline
                restart = getattr(source, "restart_clock", None)
                if restart is not None:  # a paced video starts now: loading the model is not lag to catch up
                    restart()
                pipeline.run(max_frames=out.frames)
        except Stopped as exc:
            code = exc.exit_code
            log.info("%s: stopping; the recording and statistics are saved", exc.what)
        finally:
            signals.stopping = True  # further signals during the shutdown are ignored
            stats = getattr(holder.pipeline, "stats", None) or RunStats()
            _report(stats, out.stats)
    return code


def _open_view(config: RunConfig, source, head, hud: HudState, stack: ExitStack):
    """The window (or offscreen target), renderer, recorder and render stage: (window, renderer, stage)."""
    from realtime.render import Renderer, RenderOptions
    from realtime.stages import RenderStage

    out = config.output
    size = parse_size(out.view_size) or default_view_size(source.size, out.layout)
    options = RenderOptions(layout=out.layout, wireframe=out.wireframe, show_landmarks=out.landmarks, mirror=False,
                            show_hud=True)
    window = None
    if out.headless:
        renderer = Renderer.offscreen(size[0], size[1], head.triangles, head.uvs, samples=out.msaa)
    else:
        from realtime.window import Window

        window = stack.enter_context(Window.open(size[0], size[1], "facemesh-live"))
        renderer = Renderer(window.ctx, size[0], size[1], head.triangles, head.uvs, samples=out.msaa)
    stack.callback(renderer.release)
    recorder = None
    if out.record is not None:
        from realtime.recorder import Recorder

        recorder = stack.enter_context(Recorder(out.record, size, fps=source.fps or 30.0))
    return window, renderer, RenderStage(renderer, options, hud, window, recorder)


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
