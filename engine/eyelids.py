"""Eyelids measured in the image: eyeBlink and eyeWide of a real face.

Why (docs/training.md, "Real faces: eyelids"): read from the pose-normalised 3-D landmarks, a blink
is confounded by everything else that moves MediaPipe's lid contour in its depth-normalised frame:
raised brows (carphone 58–64 read eyeBlinkLeft 0.3–0.64 with the eyes wide open) and a head pitched
down 12–15° (cap12 880–1012 read 0.2–0.5 on labelled neutral frames, while the lids in the image
were as open as anywhere else). The lid gap *in the image*, divided by the eye's width, does not
care: it is the eye aspect ratio of Soukupová & Čech (2016), "Real-time eye blink detection using
facial landmarks", with MediaPipe's lid points, and it separates the labelled blinks from open
eyes with AUC 0.99–1.00 on every real clip.

Per eye: aspect = mean lid gap of three upper/lower pairs, measured across the corner-to-corner axis
in the image (px), / the corner distance in 3-D (x, y and MediaPipe's depth, px: turning the head
shortens the image width but not this one). The person's own open-eye aspect (`OpenEyeReference`:
the median of recent frames, since eyes are open almost all the time; population priors before
any frame and for photos; restarted from the calibration frames on a calibration) turns it into a
ratio r, and
    eyeBlink = a ramp of the closure 1 − r: 0 at 0, a soft knee to `DEAD`, 1 at `FULL`;
    eyeWide  = a ramp of the opening r − 1: 0 at 0, a soft knee to `WIDE_DEAD`, 1 at `WIDE_FULL`.
FULL: MediaPipe reports a shut eye as a lid gap only ~⅓ smaller than open on fast blinks at 25–30
fps (carphone 112–113: eyes shut in the picture, r 0.66–0.78), the same steepness as the 3-D
solver's tracker response for eyeBlink (engine.retarget.RESPONSE, 0.33). DEAD: the open-eye noise.

Pure numpy; the landmarks are the tracker's [478,3] (or [468,3]) pixel landmarks.
"""
from __future__ import annotations

import numpy as np

from engine import frontend_kernel as kernel

# (lateral corner, medial corner, upper lid points, lower lid points), MediaPipe ids; right = the
# subject's right eye (image left), as engine.retarget.RIGHT_EYE / LEFT_EYE.
_CORNERS = np.array([[33, 133], [263, 362]])  # [eye, (lateral, medial)]
_UPPER = np.array([[160, 159, 158], [387, 386, 385]])  # [eye, 3]
_LOWER = np.array([[144, 145, 153], [373, 374, 380]])  # [eye, 3], pairs with _UPPER

# Open-eye aspect before any frame (and for single photos), one prior per direction: people's open
# eyes span 0.25–0.33 on the real clips (median per eye; 5th percentiles 0.21–0.29), so a blink is
# read against the narrow end and a wide eye against the wide end; in between reads neutral.
BLINK_PRIOR = 0.22
WIDE_PRIOR = 0.36
PRIOR_FRAMES = 4.0  # a prior counts as this many frames in the running estimate
DEAD = 0.05  # a closure (1 − r) below this is mostly open-eye noise: reads ≤ 0.08 (soft knee)
FULL = 0.33  # a closure of this reads 1
WIDE_DEAD = 0.12  # an opening (r − 1) below this is mostly noise (neutral frames: r p90 1.04–1.16): reads ≤ 0.21
WIDE_FULL = 0.35  # an opening of this reads eyeWide 1 (labelled raised brows: r 1.15–1.44)
LID_UNITS = ("eyeBlinkRight", "eyeBlinkLeft", "eyeWideRight", "eyeWideLeft")  # `OpenEyeReference.lid_values` order
_DEADS = np.array([DEAD, DEAD, WIDE_DEAD, WIDE_DEAD])  # per LID_UNITS
_FULLS = np.array([FULL, FULL, WIDE_FULL, WIDE_FULL])
HISTORY = 300  # frames in the open-eye median (10 s at 30 fps)
REFRESH = 10  # the median is recomputed every this many frames


def eye_aspect(landmarks_px: np.ndarray, upper: np.ndarray = _UPPER, lower: np.ndarray = _LOWER) -> np.ndarray:
    """[..., ≥468, 3] pixel landmarks → [..., 2] (right, left) lid gap / eye width, unitless.

    Gap: the mean of the upper − lower lid distances (pairs: `upper`, `lower` [2,P] ids, by default
    three per eye) across the corner axis in the image plane;
    width: the 3-D corner distance (x, y, depth; all px). An open eye is ~0.25–0.34, a shut one
    0.02–0.2 as MediaPipe reports it. (Compiled: `engine.frontend_kernel.eye_aspects`.)"""
    p = np.ascontiguousarray(landmarks_px, dtype=np.float64)
    lead = p.shape[:-2]
    out = kernel.eye_aspects(p.reshape(-1, *p.shape[-2:]), _CORNERS, np.asarray(upper, dtype=np.int64),
                             np.asarray(lower, dtype=np.int64))
    return out.reshape(*lead, 2)


def soft_ramp(x: np.ndarray, dead: float | np.ndarray, full: float | np.ndarray) -> np.ndarray:
    """x [...] → [...] in [0, 1] (dead, full: scalars, or arrays broadcast against x): 0 for x ≤ 0,
    x²/(2·dead) up to `dead` (a soft knee), then linear (x − dead/2), scaled so that x = `full` reads
    1. Noise (x of a few %) stays near 0, and, unlike a hard dead zone, a small x still reads more
    than none (the start of a blink ranks above an open eye). (Compiled: `engine.frontend_kernel.ramp`.)"""
    return kernel.ramp_ufunc(np.asarray(x, dtype=np.float64), dead, full)


def blink_from_ratio(ratio: np.ndarray) -> np.ndarray:
    """ratio [...] (aspect / the person's open aspect) → eyeBlink [...]: the closure 1 − r, ramped."""
    return soft_ramp(1.0 - np.asarray(ratio, dtype=np.float64), DEAD, FULL)


def wide_from_ratio(ratio: np.ndarray) -> np.ndarray:
    """ratio [...] → eyeWide [...]: the opening r − 1 beyond the person's open eye, ramped."""
    return soft_ramp(np.asarray(ratio, dtype=np.float64) - 1.0, WIDE_DEAD, WIDE_FULL)


class OpenEyeReference:
    """The person's open-eye aspect per eye (right, left), adapted from the stream.

    `update(aspect [2])` per face frame (when adapting): the median of the last `HISTORY` frames,
    refreshed every `REFRESH` frames, blended with a prior as (n·median + PRIOR_FRAMES·prior) /
    (n + PRIOR_FRAMES) — `BLINK_PRIOR` for reading blinks, `WIDE_PRIOR` for wide eyes;
    `calibrate(aspects [K,2])` restarts the history from the user's relaxed frames, priors dropped.
    """

    def __init__(self, adapt: bool = True) -> None:
        self.adapt = adapt
        self._buf = np.empty((HISTORY, 2))
        self._n = 0
        self.calibrated = False
        self._blink_ref = np.full(2, BLINK_PRIOR)
        self._wide_ref = np.full(2, WIDE_PRIOR)

    @property
    def value(self) -> tuple[np.ndarray, np.ndarray]:
        """([2], [2]): the open-eye aspect (right, left) that blinks and that wide eyes are read against."""
        return self._blink_ref, self._wide_ref

    def update(self, aspect: np.ndarray) -> None:
        """Offer one face frame's aspects [2]."""
        if not self.adapt:
            return
        self._buf[self._n % HISTORY] = aspect
        self._n += 1
        if self._n <= 3 or self._n % REFRESH == 0:
            self._refresh()

    def _refresh(self) -> None:
        m = min(self._n, HISTORY)
        med = np.median(self._buf[:m], axis=0)
        prior = 0.0 if self.calibrated else PRIOR_FRAMES
        self._blink_ref = (m * med + prior * BLINK_PRIOR) / (m + prior)
        self._wide_ref = (m * med + prior * WIDE_PRIOR) / (m + prior)

    def calibrate(self, aspects: np.ndarray) -> None:
        """aspects [K,2] of the user's relaxed, open-eyed frames: the history restarts from them,
        without the priors (both references = their median), and goes on adapting — an open eye's
        aspect changes with gaze and pose, which a few seconds of calibration do not cover."""
        a = np.asarray(aspects, dtype=np.float64).reshape(-1, 2)[-HISTORY:]
        self._buf[:len(a)] = a
        self._n = len(a)
        self.calibrated = True
        self._refresh()

    def reset(self) -> None:
        """Back to the priors, adapting again."""
        self._n = 0
        self.calibrated = False
        self._blink_ref = np.full(2, BLINK_PRIOR)
        self._wide_ref = np.full(2, WIDE_PRIOR)

    def lid_values(self, aspect: np.ndarray) -> np.ndarray:
        """aspects [2] float64 (right, left) → [4] float64 in `LID_UNITS` order: the closure
        1 − aspect / blink reference and the opening aspect / wide reference − 1, each ramped."""
        return kernel.lid_weights(aspect, self._blink_ref, self._wide_ref, _DEADS, _FULLS)

    def weights(self, aspect: np.ndarray) -> dict[str, float]:
        """aspects [2] (right, left) → {eyeBlinkRight, eyeBlinkLeft, eyeWideRight, eyeWideLeft}."""
        v = self.lid_values(np.asarray(aspect, dtype=np.float64)).tolist()
        return dict(zip(LID_UNITS, v))
