"""`python -m realtime.demo_strip`: a picture for people to judge the model by.

Runs the real pipeline (tracking, the face model, smoothing, offscreen rendering) over the bundled real
clip and writes a strip of chosen frames — the camera frame on the left, the rendered head (frontal
side layout, then the same head over the face) on the right — to docs/demo_strip.png.
"""
from __future__ import annotations

import argparse
import logging
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np

from realtime.app import build_stages
from realtime.pipeline import Pipeline
from realtime.record import FrameRecord

ROOT = Path(__file__).resolve().parent.parent


def make_strip(frames: tuple[int, ...] = (0, 30, 60, 90, 110), scale: int = 3, backend: str = "auto",
               model: Path = ROOT / "models" / "face_model.pt") -> np.ndarray:
    """BGR image: one row per chosen frame index, [camera | head beside | head over the face]."""
    from realtime.render import Renderer, RenderOptions
    from realtime.sources import open_source

    from realtime.config import RunConfig
    from realtime.run_args import run_namespace

    config = RunConfig.from_args(run_namespace("--backend", backend, "--model", str(model)))
    rows: list[np.ndarray] = []
    with ExitStack() as stack:
        src = stack.enter_context(open_source(demo=True, realtime=False))
        w, h = src.size
        W, H = w * scale, h * scale
        built = build_stages(config, stack)
        stages, head = built.stages, built.head
        side = stack.enter_context(Renderer.offscreen(2 * W, H, head.triangles, head.uvs))
        over = stack.enter_context(Renderer.offscreen(W, H, head.triangles, head.uvs))

        def grab(rec: FrameRecord) -> None:
            if rec.frame_id not in frames:
                return
            big = FrameRecord(rec.frame_id, rec.t_capture, rec.timestamp_ms,
                              image=cv2.resize(rec.image, (W, H), interpolation=cv2.INTER_CUBIC),
                              face_found=rec.face_found, vertices=rec.vertices, expressions=rec.expressions)
            if rec.landmarks_px is not None:
                big.landmarks_px = rec.landmarks_px * np.array([scale, scale, scale], np.float32)
            if rec.pose is not None:
                from realtime.record import HeadPose

                p = rec.pose
                big.pose = HeadPose(p.rotation, p.translation_mm, p.scale_px_per_mm * scale, p.center_px * scale)
            side.render(big, RenderOptions(layout="side", show_hud=False))
            over.render(big, RenderOptions(layout="overlay", show_hud=False))
            row = np.concatenate([side.read_rgb(), over.read_rgb()], axis=1)
            cv2.putText(row, f"frame {rec.frame_id}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                        cv2.LINE_AA)
            rows.append(row)

        Pipeline(src, stages, on_frame=grab).run(max_frames=max(frames) + 1)
    return np.concatenate(rows, axis=0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "demo_strip.png")
    p.add_argument("--backend", default="auto")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    strip = make_strip(backend=args.backend)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), strip)
    print(f"wrote {args.out} ({strip.shape[1]}x{strip.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
