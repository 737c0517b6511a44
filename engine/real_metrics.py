"""Metrics of expression weights on real footage against labelled events and landmark proxies.

Pure numpy on arrays: weights [T,52] per frame (NaN-free; frames without a face are masked by
`found`), normalised landmarks [T,468,3] mm for the geometry proxies, and the labels of
`models/real_labels.json` (how they were made is written in that file). Used by `main.py eval --real`
(realtime/real_eval.py) and the tests.

Proxies (normalised landmarks, mm, so independent of image size; the face is ~150 mm tall):
eye aperture = upper − lower lid centre height (159−145, 386−374); lip gap = mean inner-lip
upper − lower height (engine.retarget.lip_gap); mouth width = corner distance (61–291).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.expressions import EXPRESSION_NAMES

_I = {n: i for i, n in enumerate(EXPRESSION_NAMES)}
LABELS_PATH = Path(__file__).resolve().parent.parent / "models" / "real_labels.json"
LIPS_CLOSED_MM = 1.0  # lip gap at or below this: lips closed
BLINK_WINDOW = 2  # a labelled blink's peak weight is the max within ± this many frames of its range
OPEN_MARGIN = 6  # open-eye frames are at least this many frames from any labelled blink
MOVE_THRESHOLD = 0.1  # a weight "moves" when it exceeds this somewhere
AROUND_BLINK = (3, 8)  # a blink's open surroundings: 3–8 frames before its first and after its last frame
BROW_UP = ("browInnerUp", "browOuterUpLeft", "browOuterUpRight")


def face_height_px(landmarks_px: np.ndarray) -> np.ndarray:
    """[..., ≥468, 3] tracker pixel landmarks → [...] forehead (10) to chin (152) in the image, px."""
    p = np.asarray(landmarks_px, dtype=np.float64)
    return np.linalg.norm(p[..., 10, :2] - p[..., 152, :2], axis=-1)


def load_labels(path: Path = LABELS_PATH) -> dict:
    """{input name: {"blinks": [[a, b], …], "smiles": [i…], "neutral": [i…], …}}."""
    return json.loads(Path(path).read_text())["inputs"]


def eye_aperture(landmarks: np.ndarray) -> np.ndarray:
    """[..., 468, 3] → [..., 2] (right, left) lid-centre gap, mm."""
    return np.stack([landmarks[..., 159, 1] - landmarks[..., 145, 1],
                     landmarks[..., 386, 1] - landmarks[..., 374, 1]], axis=-1)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties ½."""
    p = np.asarray(positive, dtype=np.float64).ravel()
    n = np.asarray(negative, dtype=np.float64).ravel()
    if len(p) == 0 or len(n) == 0:
        return float("nan")
    allv = np.concatenate([p, n])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sv = allv[order]
    # average ranks for ties
    i = 0
    while i < len(sv):
        j = i
        while j + 1 < len(sv) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return float((ranks[:len(p)].sum() - len(p) * (len(p) + 1) / 2.0) / (len(p) * len(n)))


def _frames(ranges: list, n: int) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    for a, b in ranges:
        m[max(0, a):min(n, b + 1)] = True
    return m


def blink_surroundings(blinks: list, found: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per labelled blink [first, last] with a face in both: (its frames, the open frames around it —
    `AROUND_BLINK` before and after), as frame ids; blinks missing either are left out."""
    near, far = AROUND_BLINK
    n = len(found)
    out = []
    for a, b in blinks:
        peak = np.array([f for f in range(a, b + 1) if 0 <= f < n and found[f]], dtype=int)
        around = np.array([f for f in [*range(a - far, a - near + 1), *range(b + near, b + far + 1)]
                           if 0 <= f < n and found[f]], dtype=int)
        if len(peak) and len(around):
            out.append((peak, around))
    return out


def blink_metrics(weights: np.ndarray, found: np.ndarray, landmarks: np.ndarray, labels: dict) -> dict | None:
    """Blink separation on one clip: AUC of eyeBlinkLeft/Right (and of the aperture proxy) between
    labelled blink frames and open-eye frames, each labelled blink's peak on both eyes, and the
    median on open-eye frames. None without labelled blinks."""
    blinks = labels.get("blinks", [])
    if not blinks:
        return None
    n = len(found)
    blink = _frames(blinks, n) & found
    near = _frames([[a - OPEN_MARGIN, b + OPEN_MARGIN] for a, b in blinks], n)
    excluded = _frames(labels.get("exclude_eyes", []), n)
    open_ = found & ~near & ~excluded
    out: dict = {"blinks": len(blinks), "blink_frames": int(blink.sum()), "open_frames": int(open_.sum())}
    ap = eye_aperture(landmarks).mean(axis=-1)
    out["proxy_auc"] = auc(-ap[blink], -ap[open_])
    peaks = []
    for side in ("Left", "Right"):
        w = weights[:, _I[f"eyeBlink{side}"]]
        out[f"auc_{side.lower()}"] = auc(w[blink], w[open_])
        out[f"open_median_{side.lower()}"] = float(np.median(w[open_]))
        pk = [float(w[max(0, a - BLINK_WINDOW):b + BLINK_WINDOW + 1][found[max(0, a - BLINK_WINDOW):b + BLINK_WINDOW + 1]]
                    .max(initial=0.0)) for a, b in blinks]
        peaks.append(pk)
    both = np.minimum(*peaks)
    out["peaks_left"] = [round(v, 3) for v in peaks[0]]
    out["peaks_right"] = [round(v, 3) for v in peaks[1]]
    out["peak_min"] = float(both.min())
    out["peak_median"] = float(np.median(both))
    out["peaks_over_0.6"] = int((both >= 0.6).sum())
    # brows at a blink: the largest brow-raise weight at the blink over its median on the open frames
    # around (a real blink does not raise the brows; MediaPipe's brow landmarks rise in one)
    brow = weights[:, [_I[n] for n in BROW_UP]].max(axis=1)
    rise = [float(brow[p].max() - np.median(brow[a])) for p, a in blink_surroundings(blinks, found)]
    if rise:
        out["brow_rise"] = [round(v, 3) for v in rise]
        out["brow_rise_median"] = float(np.median(rise))
    return out


def mean_of(weights: np.ndarray, frames: list[int], names: tuple[str, ...]) -> list[float]:
    """Per listed frame, the mean of the named weights."""
    idx = [_I[n] for n in names]
    return [float(weights[f, idx].mean()) for f in frames]


def clip_metrics(weights: np.ndarray, found: np.ndarray, landmarks: np.ndarray, labels: dict) -> dict:
    """Every metric one input supports (module docstring); keys absent where the labels are."""
    from engine.retarget import lip_gap

    out: dict = {"frames": int(len(found)), "found": int(found.sum())}
    b = blink_metrics(weights, found, landmarks, labels)
    if b is not None:
        out["blink"] = b
    f = np.flatnonzero(found)
    if len(f) > 2:
        gap = lip_gap(landmarks[f])
        jaw = weights[f, _I["jawOpen"]]
        closed = gap <= LIPS_CLOSED_MM
        out["jaw"] = {"r_lip_gap": float(np.corrcoef(jaw, gap)[0, 1]) if jaw.std() > 0 else float("nan"),
                      "closed_frames": int(closed.sum()),
                      "closed_median": float(np.median(jaw[closed])) if closed.any() else float("nan"),
                      "closed_p90": float(np.percentile(jaw[closed], 90)) if closed.any() else float("nan"),
                      "max": float(jaw.max())}
    smile_names = ("mouthSmileLeft", "mouthSmileRight")
    if labels.get("smiles"):
        s = mean_of(weights, labels["smiles"], smile_names)
        out["smile"] = {"frames": len(s), "min": min(s), "median": float(np.median(s))}
    if labels.get("neutral"):
        nf = [i for i in labels["neutral"] if found[i]]
        out["neutral"] = {
            "eye_wide": mean_of(weights, nf, ("eyeWideLeft", "eyeWideRight")),
            "smile": mean_of(weights, nf, smile_names),
            "frames": len(nf),
            "smile_median": float(np.median(mean_of(weights, nf, smile_names))),
            "eye_wide_median": float(np.median(mean_of(weights, nf, ("eyeWideLeft", "eyeWideRight")))),
            "brow_up_median": float(np.median(mean_of(weights, nf, BROW_UP))),
            "jaw_median": float(np.median(mean_of(weights, nf, ("jawOpen",)))),
            "max_weight_median": float(np.median([weights[i].max() for i in nf])),
            "max_weight": [float(weights[i].max()) for i in nf],
        }
    if labels.get("brows_raised"):
        out["brows_raised"] = {"median": float(np.median(mean_of(weights, labels["brows_raised"], BROW_UP)))}
    if labels.get("mouth_open"):
        out["mouth_open"] = {"jaw_median": float(np.median(mean_of(weights, labels["mouth_open"], ("jawOpen",)))),
                             "smile_median": float(np.median(mean_of(weights, labels["mouth_open"], smile_names)))}
    out["moved"] = sorted(EXPRESSION_NAMES[j] for j in np.flatnonzero(weights[found].max(axis=0, initial=0.0)
                                                                      > MOVE_THRESHOLD))
    return out


IDENTITY_WARMUP_S = 2.0  # the shape is learnt over the first seconds; stability is measured after


def identity_metrics(shapes: np.ndarray, found: np.ndarray, landmarks: np.ndarray, fps: float = 0.0) -> dict:
    """Identity stability of one clip: shapes [T,V,3] mm (the identity head, expression-free) per
    frame, from `IDENTITY_WARMUP_S` seconds on (fps > 0). rms_mm: RMS distance of each frame's shape
    from the clip's mean shape; open_closed_mm: RMS distance between the mean shapes of mouth-open
    (lip gap > 10 mm) and lips-closed frames."""
    from engine.retarget import lip_gap

    found = found.copy()
    found[:int(round(IDENTITY_WARMUP_S * fps))] = False
    f = np.flatnonzero(found)
    s = shapes[f].astype(np.float64)
    mean = s.mean(axis=0)
    out = {"rms_mm": float(np.sqrt(((s - mean) ** 2).sum(-1).mean()))}
    gap = lip_gap(landmarks[f])
    o, c = gap > 10.0, gap <= LIPS_CLOSED_MM
    if o.any() and c.any():
        out["open_closed_mm"] = float(np.sqrt(((s[o].mean(0) - s[c].mean(0)) ** 2).sum(-1).mean()))
        out["open_frames"], out["closed_frames"] = int(o.sum()), int(c.sum())
    return out


def scale_metrics(reference: np.ndarray, other: np.ndarray, found: np.ndarray) -> dict:
    """Weights of the same frames at another image scale: |Δw| [T,52] → median, p95 and max of the
    per-frame largest change (frames with a face in both)."""
    d = np.abs(other[found] - reference[found]).max(axis=1)
    return {"frames": int(found.sum()), "median": float(np.median(d)), "p95": float(np.percentile(d, 95)),
            "max": float(d.max())}
