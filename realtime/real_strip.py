"""`python -m realtime.real_strip`: real frames beside the rendered head and the main weights.

One row per chosen (input, frame): the camera frame with the tracked face, the decoded head drawn
frontally by the app's renderer, and bars of the weights that matter most to a viewer (blinks, jaw,
smiles, brows, wide eyes), as the app computes them: the whole clip streamed through the
retargeting front end up to that frame (`realtime.real_eval.stream_weights`), then the decoder.
Writes docs/real_faces.png. Needs the fetched clips (`main.py eval --real --fetch`) for rows other
than the bundled carphone clip; missing inputs are left out.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ROWS = (("carphone", 42, "blink"), ("franck", 80, "smile"), ("cap13", 416, "mouth open"),
        ("cap12", 836, "brows raised"), ("cap12", 990, "neutral"))
BARS = ("eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight", "jawOpen", "mouthSmileLeft",
        "mouthSmileRight", "browInnerUp", "browOuterUpLeft", "mouthFunnel")
TILE = 240


def _frame(path: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, img = cap.read()
    cap.release()
    if not ok:
        raise ValueError(f"frame {index} of {path} could not be read")
    return img


def _crop(img: np.ndarray, px: np.ndarray) -> np.ndarray:
    xy = px[:468, :2]
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 0.65
    m = np.float32([[TILE / (2 * r), 0, TILE / 2 - cx * TILE / (2 * r)], [0, TILE / (2 * r), TILE / 2 - cy * TILE / (2 * r)]])
    return cv2.warpAffine(img, m, (TILE, TILE), flags=cv2.INTER_CUBIC)


def _bars(weights: np.ndarray) -> np.ndarray:
    from engine.expressions import EXPRESSION_NAMES

    img = np.full((TILE, 300, 3), 24, np.uint8)
    h = TILE // len(BARS)
    for k, name in enumerate(BARS):
        v = float(weights[EXPRESSION_NAMES.index(name)])
        y = k * h
        cv2.rectangle(img, (130, y + 4), (130 + int(160 * v), y + h - 4), (80, 200, 255), -1)
        cv2.rectangle(img, (130, y + 4), (290, y + h - 4), (90, 90, 90), 1)
        cv2.putText(img, f"{name}", (4, y + h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (230, 230, 230), 1, cv2.LINE_AA)
        cv2.putText(img, f"{v:.2f}", (250, y + h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def make_strip(rows=ROWS) -> np.ndarray:
    """BGR image, one row per available (input, frame, label)."""
    from engine.checkpoint import load_face_model
    from engine.evaluate import predict
    from engine.headspace import load_head
    from realtime import realdata
    from realtime.real_eval import stream_weights
    from realtime.record import FrameRecord
    from realtime.render import Renderer, RenderOptions

    head, model = load_head(), load_face_model()
    out = []
    with Renderer.offscreen(2 * TILE, TILE, head.triangles, head.uvs) as renderer:
        for name, index, label in rows:
            try:
                t = realdata.tracked(name)
            except Exception:  # noqa: BLE001 - not fetched: leave the row out
                continue
            if not t.found[index]:
                continue
            w, _, lms = stream_weights(t)
            verts = predict(model, lms[index:index + 1])[0][0]
            cam = _crop(_frame(realdata.media_path(name), index), t.landmarks_px[index])
            cv2.putText(cam, f"{name} {index}: {label}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                        cv2.LINE_AA)
            rec = FrameRecord(index, 0.0, 0, image=cam, face_found=True, vertices=verts, expressions=w[index])
            renderer.render(rec, RenderOptions(layout="side", show_hud=False))  # no pose: the head faces us
            out.append(np.concatenate([renderer.read_rgb(), _bars(w[index])], axis=1))
    return np.concatenate(out, axis=0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "real_faces.png")
    args = p.parse_args(argv)
    strip = make_strip()
    cv2.imwrite(str(args.out), strip)
    print(f"wrote {args.out} ({strip.shape[1]}x{strip.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
