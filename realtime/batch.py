"""`python main.py batch INPUT... --out DIR`: the app's pipeline over many videos, on Ray.

Each video becomes one take folder (`DIR/takes/<stem>-<hash>/`, the files of `--export`) and one line
of `DIR/manifest.jsonl` (path, take, frames, face-found ratio, processing FPS, status, error).

Why Ray tasks on actors (Ray Core) rather than Ray Data: the unit of work is a whole video whose
frames must go through one tracker, one retargeter and one smoother in order (their state — the
person's neutral, the session identity, the One Euro filters — is what makes a frame's weights), so
there is no per-row dataset to map; an actor per worker keeps the models loaded (MediaPipe's model,
the ONNX Runtime session, the retargeter's data: ~3 s to load here) across videos, and Ray Core needs
none of Ray Data's pandas/pyarrow. Videos are not split into frame ranges: a range started mid-video
would start without the neutral and identity the earlier frames built up and read differently from
the whole-video run. Balance comes from handing out the longest videos first (by their stated
frame count) to whichever worker is free.

Workers write their take folders themselves; the driver only receives each video's one-line summary
and appends it to the manifest (flushed and synced line by line, so after Ctrl-C, SIGTERM or a kill
the manifest lists exactly the videos that finished). A second run skips the videos the manifest
lists as finished (any status: `ok`, `truncated`, `no_face`, `error`; `--retry-failed` redoes the
last) and redoes the rest from scratch (a take folder left by a killed run is replaced).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import UserError

if TYPE_CHECKING:
    from realtime.config import RunConfig

log = logging.getLogger("facemesh")

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")
LIST_EXTENSIONS = (".txt", ".lst", ".list")
FINISHED = ("ok", "truncated", "no_face", "error")
TRUNCATION_SLACK = 0.02  # a video that ends this fraction (or 2 frames) short of its stated count is truncated
PROGRESS_EVERY = 30  # frames between a worker's progress reports (each is a Ray call: ~1 a second)


# ----------------------------------------------------------------------------- inputs and the plan

def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Video paths from INPUT arguments: files as given (whatever their name: a file that is not a
    video fails in its own manifest line), folders searched recursively for `VIDEO_EXTENSIONS`, and
    text files (`LIST_EXTENSIONS`) of paths, one per line (relative to the list's folder; blank lines
    and `#` comments skipped). Absolute, de-duplicated, in order. UserError for a missing input."""
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        p = p.resolve()
        if p not in seen:
            seen.add(p)
            out.append(p)

    for item in inputs:
        p = Path(item).expanduser()
        if not p.exists():
            raise UserError(f"batch input {p} not found")
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS:
                    add(f)
        elif p.suffix.lower() in LIST_EXTENSIONS:
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                q = Path(line).expanduser()
                q = q if q.is_absolute() else p.parent / q
                if not q.exists():
                    raise UserError(f"{p}:{n}: {line} not found")
                add(q)
        else:
            add(p)
    if not out:
        raise UserError("no videos found in the batch inputs (folders are searched for "
                        f"{', '.join(VIDEO_EXTENSIONS[:5])}, …)")
    return out


def take_folder(out: Path, video: Path) -> Path:
    """The take folder of a video: `out/takes/<stem>-<8 hex of the path's SHA-1>` (unique, stable)."""
    digest = hashlib.sha1(str(video.resolve()).encode()).hexdigest()[:8]
    return out / "takes" / f"{video.stem}-{digest}"


class Manifest:
    """`DIR/manifest.jsonl`: one JSON object per finished video, appended and synced line by line.
    `entries` maps path → its last entry (a torn last line from a kill is ignored)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if isinstance(e, dict) and "path" in e:
                    self.entries[e["path"]] = e
        self._f = None

    def append(self, entry: dict) -> None:
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fix_torn_tail()
            self._f = open(self.path, "a", encoding="utf-8")
        self._f.write(json.dumps(entry) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.entries[entry["path"]] = entry

    def _fix_torn_tail(self) -> None:
        """A kill mid-write can leave a last line without its newline: end it, so the next line stands alone."""
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def stated_frames(video: Path) -> int:
    """The frame count a video's container states (0 when it states none or cannot be opened)."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
    finally:
        cap.release()
    return max(0, n)


def plan(videos: list[Path], manifest: Manifest, retry_failed: bool = False) -> tuple[list[Path], list[Path]]:
    """(to do, skipped): videos the manifest lists as finished are skipped (errors too, unless
    `retry_failed`)."""
    todo, skipped = [], []
    for v in videos:
        e = manifest.entries.get(str(v))
        done = e is not None and e.get("status") in FINISHED and not (retry_failed and e.get("status") == "error")
        (skipped if done else todo).append(v)
    return todo, skipped


# ----------------------------------------------------------------------------- one worker

class TakeProcessor:
    """A worker: models loaded once (`realtime.app.Models`), then `process(video, folder)` per video —
    the app's stages (fresh tracker, retargeter and smoother per video) with an export stage, as fast
    as possible, overlapped as the app runs unless `config.output.overlap` is off.

    config: the run's configuration (face model, smoothing, overlap; `batch_config`); its source and
    export folder are set per video, and its `argv` is recorded in each take's json."""

    def __init__(self, config: RunConfig | None = None) -> None:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
        from realtime.app import Models

        self.config = config if config is not None else batch_config()
        self.models = Models.load(self.config.model, self.config.output.overlap)

    def process(self, video: str, folder: str, progress: Callable[[int], None] | None = None,
                stated: int | None = None) -> dict:
        """Run one video into `folder` (replaced). Returns its manifest entry (never raises for a bad
        video: the reason is in `error`). stated: the frame count its container states, when the
        caller has read it already (`stated_frames`)."""
        from contextlib import ExitStack
        from dataclasses import replace

        from realtime.app import build_stages, front_stage_count, open_take_writer
        from realtime.pipeline import Pipeline
        from realtime.sources import SourceError, VideoSource
        from realtime.stages import ExportStage

        t0 = time.perf_counter()
        entry: dict = {"path": str(video), "take": str(folder), "frames": 0, "face_found_ratio": 0.0,
                       "fps": 0.0, "status": "error", "error": None}
        entry["node"] = _node_name()
        stated = stated_frames(Path(video)) if stated is None else stated
        try:
            with ExitStack() as stack:
                try:
                    source = stack.enter_context(VideoSource(video, realtime=False))
                except SourceError as exc:
                    entry["error"] = str(exc)
                    return entry
                c = self.config
                config = replace(c, source=replace(c.source, video=Path(video)),
                                 output=replace(c.output, export=Path(folder), overwrite=True))
                built = build_stages(config, stack, self.models)
                stages = built.stages
                writer = stack.enter_context(open_take_writer(config, source.fps, built.head, built.backend.name))
                stages.append(ExportStage(writer))
                counter = _Counter(progress)
                pipe = Pipeline(source, stages, on_frame=counter,
                                front_stages=front_stage_count(stages) if config.output.overlap else 0)
                stats = pipe.run()
                counter.flush()
            entry.update(frames=stats.frames, face_found_ratio=round(stats.found / max(1, stats.frames), 4),
                         fps=round(stats.frames / max(1e-9, time.perf_counter() - t0), 2), status="ok")
            if stats.found == 0:
                entry.update(status="no_face", error="no face found in any frame")
            elif stated and stats.frames < stated - max(2, TRUNCATION_SLACK * stated):
                entry.update(status="truncated",
                             error=f"truncated: {stats.frames} of the {stated} frames its header states could be decoded")
        except Exception as exc:  # noqa: BLE001 - a bad video is a manifest line, the batch goes on
            entry["error"] = f"{type(exc).__name__}: {exc}"
        return entry

    def ping(self) -> str:
        return "ready"


def _node_name() -> str:
    """The Ray node this runs on (its id), or the host name outside Ray."""
    import socket

    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return socket.gethostname()


class _Counter:
    """Pipeline `on_frame` callback: reports frames to `progress` every `PROGRESS_EVERY` frames."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.progress, self.pending = progress, 0

    def __call__(self, record) -> None:
        self.pending += 1
        if self.pending >= PROGRESS_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.progress is not None and self.pending:
            self.progress(self.pending)
        self.pending = 0


class ProgressCounter:
    """A Ray actor the workers add frame counts to and the driver reads (Ray actor, no resources)."""

    def __init__(self) -> None:
        self.frames = 0

    def add(self, n: int) -> None:
        self.frames += int(n)

    def total(self) -> int:
        return self.frames


# ----------------------------------------------------------------------------- the driver

def run_batch(inputs: list[str], out: Path, *, workers: int | None = None, cpus_per_worker: float = 1.0,
              ray_address: str | None = None, config: RunConfig | None = None, retry_failed: bool = False,
              progress_bar: bool = True) -> dict:
    """The batch command. Returns {"videos", "done", "skipped", "failed", "frames", "workers", "startup_s"
    (Ray start or join, workers' models loaded), "wall_s" and "fps" (from every worker ready to the end)}.
    Raises UserError for bad inputs (before Ray starts); KeyboardInterrupt/`Stopped` propagate after
    the workers are stopped (the manifest stays true)."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    videos = expand_inputs(inputs)
    (out / "takes").mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"--out {out} is not writable; choose another folder")
    manifest = Manifest(out / "manifest.jsonl")
    todo, skipped = plan(videos, manifest, retry_failed)
    summary = {"videos": len(videos), "done": 0, "skipped": len(skipped), "failed": 0, "frames": 0,
               "wall_s": 0.0, "fps": 0.0, "workers": 0}
    if skipped:
        log.info("%d of %d videos already finished (manifest); %d to do", len(skipped), len(videos), len(todo))
    if not todo:
        return summary
    sizes = {v: stated_frames(v) for v in todo}
    todo.sort(key=lambda v: -sizes[v])  # longest first: the last video to start is a short one
    import ray

    t_init = time.perf_counter()
    started_here = ray_address is None
    init_kw: dict = {"include_dashboard": False, "log_to_driver": False,
                     "runtime_env": {"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                                                  "OPENBLAS_NUM_THREADS": "1", "OPENCV_FFMPEG_LOGLEVEL": "-8"}}}
    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it with its own (sys.exit(15)): restored below
    if started_here:
        n = workers or max(1, int((os.cpu_count() or 1) // max(cpus_per_worker, 1e-9)))
        ray.init(address="local", num_cpus=max(1, int(round(n * cpus_per_worker + 0.4999))), **init_kw)
    else:
        try:
            ray.init(address=ray_address, **init_kw)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserError(f"cannot join the Ray cluster at {ray_address} ({exc}); start one with "
                            "`ray start --head` or leave --ray-address out for a local run") from None
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus_per_worker, 1e-9)))
    if sigterm is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, sigterm)  # StopSignals': SIGTERM stops the batch like Ctrl-C (exit 143)
    n = min(n, len(todo))
    summary["workers"] = n
    bar = None
    t0 = time.perf_counter()
    actors: list = []
    try:
        worker_cls = ray.remote(num_cpus=cpus_per_worker)(TakeProcessor)
        counter = ray.remote(num_cpus=0)(ProgressCounter).remote()
        actors = [worker_cls.remote(config or batch_config()) for _ in range(n)]
        ray.get([a.ping.remote() for a in actors])  # models loaded; a worker that cannot start fails here
        summary["startup_s"] = round(time.perf_counter() - t_init, 3)
        t0 = time.perf_counter()  # throughput is measured from here: every worker ready
        if progress_bar:
            from tqdm import tqdm

            bar = tqdm(total=sum(sizes.values()) or None, unit="frame", desc=f"0/{len(todo)} videos",
                       file=sys.stderr, dynamic_ncols=True, smoothing=0.05)
        queue = list(todo)
        pending: dict = {}

        def report(k: int) -> None:
            counter.add.remote(k)

        def submit(actor) -> None:
            v = queue.pop(0)
            pending[actor.process.remote(str(v), str(take_folder(out, v)), report, sizes[v])] = (actor, v)

        for a in actors:
            if queue:
                submit(a)
        shown = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                actor, v = pending.pop(ref)
                entry = ray.get(ref)
                manifest.append(entry)
                summary["done"] += 1
                summary["frames"] += entry["frames"]
                if entry["status"] == "error":
                    summary["failed"] += 1
                    log.warning("%s: %s", v.name, entry["error"])
                elif entry["status"] != "ok":
                    log.warning("%s: %s", v.name, entry["error"])
                if queue:
                    submit(actor)
            if bar is not None:
                total = ray.get(counter.total.remote())
                bar.update(total - shown)
                shown = total
                bar.set_description(f"{summary['done']}/{len(todo)} videos")
    finally:
        if bar is not None:
            bar.close()
        manifest.close()
        summary["wall_s"] = round(time.perf_counter() - t0, 3)
        summary["fps"] = round(summary["frames"] / summary["wall_s"], 2) if summary["wall_s"] > 0 else 0.0
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        ray.shutdown()
    return summary


def add_batch_arguments(p: argparse.ArgumentParser) -> None:
    from realtime.run_args import add_model_arguments, add_smoothing_arguments

    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders (searched recursively) or text files listing paths")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="output folder: DIR/manifest.jsonl and DIR/takes/<video>-<hash>/")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (default: the CPUs Ray has, divided by --cpus-per-worker)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="C", help="CPUs Ray reserves per worker")
    p.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="join a running Ray cluster (default: start a local one on this machine)")
    p.add_argument("--retry-failed", action="store_true", help="redo videos the manifest lists as errors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-overlap", action="store_true",
                   help="each worker runs its stages one frame at a time (default: tracking overlapped, as the app)")
    add_model_arguments(p)
    add_smoothing_arguments(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def batch_config(args: argparse.Namespace | None = None) -> RunConfig:
    """The workers' RunConfig from a batch command line (its face-model, smoothing and overlap options;
    no rendering, files as fast as possible; with --no-overlap and no --decoder-threads, each worker's
    decoder gets its reserved CPUs). None: the defaults."""
    from dataclasses import replace

    from realtime.config import OutputConfig, RunConfig, SourceConfig

    if args is None:
        return RunConfig(source=SourceConfig(realtime=False), output=OutputConfig(render=False))
    c = RunConfig.from_args(args)
    model = c.model
    if args.no_overlap and model.decoder_threads is None:
        model = replace(model, decoder_threads=max(1, int(args.cpus_per_worker)))
    return replace(c, model=model, source=SourceConfig(realtime=False),
                   output=OutputConfig(render=False, overlap=not args.no_overlap), argv=tuple(sys.argv[1:]))


def validate_batch_args(args: argparse.Namespace) -> None:
    """Bad values as one line, before Ray or a model loads."""
    from realtime.options import _number, validate_run_args

    _number("--workers", args.workers, 1, 4096)
    _number("--cpus-per-worker", args.cpus_per_worker, above=0, hi=1024)
    validate_run_args(args)  # the face-model and smoothing options it shares with the app
    if args.ray_address is not None and args.ray_address != "auto":
        check_ray_address(args.ray_address)


def check_ray_address(address: str, timeout_s: float = 3.0) -> None:
    """UserError unless `address` is HOST:PORT and something accepts a TCP connection there (Ray's
    own join waits minutes for a cluster that is not there)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--ray-address {address!r} is not auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one there with "
                        f"`ray start --head --port={port}`, or leave --ray-address out for a local run") from None


def main_batch(args: argparse.Namespace) -> int:
    """`python main.py batch`: exit 0 when every video finished (bad videos are manifest lines), 130/143 when stopped."""
    from realtime.app import StopSignals, Stopped

    class Signals(StopSignals):  # remembers the signal: ray.wait/ray.get turn its Stopped into a plain KeyboardInterrupt
        signum = signal.SIGINT

        def _handle(self, signum, frame) -> None:
            if not self.stopping:
                self.signum = signum
            super()._handle(signum, frame)

    validate_batch_args(args)
    with Signals() as signals:
        try:
            s = run_batch(args.inputs, args.out, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                          ray_address=args.ray_address, config=batch_config(args),
                          retry_failed=args.retry_failed, progress_bar=not args.no_progress)
        except KeyboardInterrupt as exc:
            exc = exc if isinstance(exc, Stopped) else Stopped(signals.signum)
            log.info("%s: stopped; the manifest lists the finished videos — run the same command to resume", exc.what)
            return exc.exit_code
    log.info("%d videos: %d done now (%d failed), %d already finished; %d frames in %.1f s (%.1f frames/s, %d workers); "
             "manifest %s", s["videos"], s["done"], s["failed"], s["skipped"], s["frames"], s["wall_s"], s["fps"],
             s["workers"], Path(args.out) / "manifest.jsonl")
    return 0
