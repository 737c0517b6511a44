"""`python main.py train`: fit the face model on synthetic heads with tracker-like landmarks.

Data: a fixed pool of `pool` samples (identity and expressions from `engine.sampling` → vertices
through the linear head model; landmarks through the embedding and `engine.augment`, with the
tracker noise measured on the real clip), generated from `seed`. Loss per step:

    L1(vertices, mm; face region weighted ×face_weight) + edge_weight · L1(edge vectors, mm)
    + expr_weight · BCE(expression weights)   (or L1 with expr_loss="l1")

The edge term compares every mesh edge vector with the target's: it penalises high-frequency
error (roughness) that the vertex term tolerates (docs/training.md measures the trade-off).
Adam with a one-cycle learning rate; deterministic for a fixed seed *and* thread count
(`torch.use_deterministic_algorithms`, a numpy Generator for data and batch order).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.utils.deterministic
from tqdm import tqdm

from engine.augment import AugmentConfig, LandmarkSpace, tracker_like_landmarks
from engine.canonical import load_canonical
from engine.checkpoint import CHECKPOINT_PATH, save_checkpoint
from engine.embedding import Embedding, load_embedding, reference_landmarks
from engine.errors import UserError
from engine.headspace import Head, load_head
from engine.hierarchy import MeshHierarchy, load_hierarchy
from engine.model import FaceModel, ModelConfig
from engine.noise import TrackerNoise, load_tracker_noise
from engine.mesh_graph import edge_incidence, unique_edges
from engine.sampling import sample_expressions, sample_identity
from engine.sparse_ops import CSROperator, to_torch_coo

POOL_CHUNK = 2000  # samples generated per chunk; part of the data's definition (keep fixed)


@dataclass
class TrainConfig:
    """Training knobs; `steps` is the deterministic length of a run (docs/training.md)."""

    steps: int = 20000  # ≈ 15 steps/s on one core of this machine when idle: ≈ 23 min (docs/training.md)
    batch: int = 32  # beat 64 and 128 at equal time, 16 was too noisy (docs/training.md)
    lr: float = 5e-3  # one-cycle peak; 4e-3 is 3 % better on synthetic heads but folds on the real clip (docs/training.md)
    seed: int = 0
    pool: int = 60000
    edge_weight: float = 16.0  # with the Euclidean vertex term (docs/training.md)
    expr_weight: float = 10.0
    expr_loss: str = "bce"  # "bce" (cross-entropy on the sigmoid outputs) | "l1" (stuck at 0: docs/training.md)
    face_weight: float = 4.0
    vertex_loss: str = "euclid"  # "euclid" (per-vertex distance, the eval metric) | "l1" (per coordinate)
    threads: int = 2  # 15 vs 12 steps/s on this idle machine; 1 when the machine is shared (docs/training.md)
    model: ModelConfig = field(default_factory=ModelConfig)
    aug: AugmentConfig | None = None  # None: AugmentConfig.from_noise(the measured tracker noise)
    out: Path = CHECKPOINT_PATH
    log_every: int = 50

    def validate(self) -> None:
        """Raise UserError for values that cannot train."""
        for name in ("steps", "batch", "pool", "threads", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1 (got {getattr(self, name)})")
        if self.lr <= 0 or self.edge_weight < 0 or self.expr_weight < 0:
            raise UserError("--lr must be > 0 and the loss weights ≥ 0")
        if self.vertex_loss not in ("l1", "euclid"):
            raise UserError(f"vertex_loss must be l1 or euclid (got {self.vertex_loss!r})")
        if self.expr_loss not in ("l1", "bce"):
            raise UserError(f"--expr-loss must be l1 or bce (got {self.expr_loss!r})")


class TrainResult(NamedTuple):
    """What `train` returns (unpacks as `model, info`); `history` is also in `info["history"]`."""

    model: FaceModel
    info: dict

    @property
    def history(self) -> list[dict]:
        """Logged loss records: {step, loss, vert_l1_mm, edge_l1_mm, expr_l1}."""
        return self.info["history"]


@dataclass
class HeadData:
    """Everything the synthetic data needs, loaded once."""

    head: Head
    emb: Embedding
    space: LandmarkSpace
    noise: TrackerNoise
    basis: np.ndarray  # [2A+52, V*3] f32: [identity +, identity −, expressions]

    @property
    def sigma(self) -> np.ndarray:
        """[468,3] tracker noise std, mm."""
        return self.noise.sigma_mm

    @classmethod
    def load(cls) -> "HeadData":
        head, emb, canon = load_head(), load_embedding(), load_canonical()
        space = LandmarkSpace(reference_landmarks(head.vertices, emb), canon.procrustes_indices,
                              canon.procrustes_weights)
        basis = np.concatenate([head.identity_pos, head.identity_neg, head.expression_targets]).reshape(
            -1, head.vertices.size).astype(np.float32)
        return cls(head, emb, space, load_tracker_noise(), basis)

    def coefficients(self, identity: np.ndarray, expressions: np.ndarray) -> np.ndarray:
        """[n,A], [n,52] → [n,2A+52] rows of the linear basis."""
        return np.concatenate([np.maximum(identity, 0), np.maximum(-identity, 0), expressions], axis=1)

    def vertices(self, coeffs: np.ndarray) -> np.ndarray:
        """[n,2A+52] → [n,V,3] f32 mm."""
        return self.head.vertices + (coeffs @ self.basis).reshape(len(coeffs), -1, 3)

    def default_aug(self) -> AugmentConfig:
        return AugmentConfig.from_noise(self.noise)


@dataclass
class Pool:
    """A generated data set: coefficients [n,2A+52] f32, expressions [n,52] f32, noisy normalised
    landmarks [n,468,3] f32 mm, clean normalised landmarks [n,468,3] f32 mm (or None)."""

    coeffs: np.ndarray
    expressions: np.ndarray
    landmarks: np.ndarray
    clean_landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.coeffs)


def make_pool(data: HeadData, n: int, seed: int, aug: AugmentConfig | None = None, progress: bool = False,
              chunk: int = POOL_CHUNK, keep_clean: bool = False) -> Pool:
    """Sample `n` heads and their tracker-like landmarks, deterministically from `seed`.

    Generated `chunk` samples at a time, so for m a multiple of `chunk` the first m samples of a
    pool of n ≥ m equal a pool of m (same seed): evaluation refits baselines on the training prefix.
    keep_clean: also keep the noise-free normalised landmarks (else `clean_landmarks` is None).
    """
    aug = aug or data.default_aug()
    rng = np.random.default_rng(seed)
    coeffs, exprs, lms, clean = [], [], [], []
    for start in tqdm(range(0, n, chunk), desc="data", disable=not progress, leave=False):
        m = min(chunk, n - start)
        ids = sample_identity(rng, m, data.head.num_identity)
        ex = sample_expressions(rng, m)
        c = data.coefficients(ids, ex)
        noisy, cl = tracker_like_landmarks(rng, data.vertices(c), data.emb.vertex_ids, data.emb.bary,
                                           data.space, data.sigma, aug)
        coeffs.append(c)
        exprs.append(ex)
        lms.append(noisy)
        if keep_clean:
            clean.append(cl)
    return Pool(np.concatenate(coeffs), np.concatenate(exprs), np.concatenate(lms),
                np.concatenate(clean) if keep_clean else None)


def build_model(data: HeadData, h: MeshHierarchy, pool: Pool, cfg: ModelConfig) -> FaceModel:
    """A fresh model whose normalisation buffers come from the training pool.

    mean_vertices [V,3] and offset_scale (scalar std of the offsets) from up to 5000 pool heads;
    lm_mean [468,3] and lm_scale (scalar std) from the pool's noisy landmarks.
    """
    verts = data.vertices(pool.coeffs[: min(len(pool), 5000)])
    mean_v = verts.mean(axis=0)
    offset_scale = float((verts - mean_v).std())
    lm_mean = pool.landmarks.mean(axis=0)
    lm_scale = float((pool.landmarks - lm_mean).std())
    return FaceModel.build(h, cfg, mean_v, offset_scale, lm_mean, lm_scale)


class _L1Mean(torch.autograd.Function):
    """mean(|x| · w) for x [...] and a constant w broadcastable to x (or None: w = 1).

    The same value and (sub)gradient as `(x.abs() * w).mean()` — ∂x = sign(x) · w · ∂/numel — in
    one fused backward pass instead of autograd's expand, divide, sign and multiply."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.w = w
        a = x.abs()
        return (a.mul_(w) if w is not None else a).mean()

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (x,) = ctx.saved_tensors
        gx = torch.sign(x).mul_(g / x.numel())
        return (gx.mul_(ctx.w) if ctx.w is not None else gx), None


def l1_mean(x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """mean(|x| · w) (0-d), with the fused backward of `_L1Mean`; w is a constant (no gradient)."""
    return _L1Mean.apply(x, w)


class _EuclidMean(torch.autograd.Function):
    """mean over [V,B] of ‖x_{:,v,b}‖ · w_{v,b} for channel-major x [3,V,B] and a constant w [V,1].

    The same value and gradient as `(x.square().sum(0).sqrt() * w).mean()` — ∂x = x · w · ∂ /
    (‖x‖ · V·B), zero where ‖x‖ = 0 — in one fused backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=0)  # [V,B]
        ctx.save_for_backward(x, norm)
        ctx.w = w
        return (norm * w).mean()

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, norm = ctx.saved_tensors
        scale = torch.where(norm > 0, ctx.w / norm, 0.0).mul_(g / norm.numel())
        return x * scale, None


def euclid_mean(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted mean per-vertex distance (0-d) of channel-major errors x [3,V,B] mm, w [V,1] constant."""
    return _EuclidMean.apply(x, w)


class Loss(torch.nn.Module):
    """The training loss (module docstring) on *channel-major* predictions (`FaceModel.forward_channel_major`).

    forward(pred_v [3,V,B] mm, pred_e [B,52], coeffs [B,C], exprs [B,52]) → (total, parts), parts =
    {vert_l1_mm, edge_l1_mm, expr_l1} (0-d tensors). Targets are computed channel-major from a
    re-ordered basis; the edge term is one sparse incidence matmul (I_3 ⊗ M, `edge_incidence`).
    """

    def __init__(self, data: HeadData, cfg: TrainConfig) -> None:
        super().__init__()
        v = data.head.vertices.shape[0]
        basis = data.basis.reshape(len(data.basis), v, 3)  # [C,V,3]
        self.register_buffer("basis_cm", torch.from_numpy(np.ascontiguousarray(basis.transpose(2, 1, 0)).reshape(3 * v, -1)))
        self.register_buffer("neutral_cm", torch.from_numpy(np.ascontiguousarray(data.head.vertices.T).reshape(3 * v, 1)))
        self.incidence = CSROperator(to_torch_coo(edge_incidence(unique_edges(data.head.triangles), v)), copies=3)
        vw = torch.ones(v)
        vw[torch.from_numpy(data.head.face_mask)] = cfg.face_weight
        self.register_buffer("vw", (vw / vw.mean()).reshape(1, v, 1))  # [1,V,1]
        self.edge_weight, self.expr_weight, self.expr_loss = cfg.edge_weight, cfg.expr_weight, cfg.expr_loss
        self.vertex_loss = cfg.vertex_loss

    def targets(self, coeffs: torch.Tensor) -> torch.Tensor:
        """[B,C] → channel-major target vertices [3,V,B] mm."""
        return torch.addmm(self.neutral_cm, self.basis_cm, coeffs.t()).reshape(3, -1, len(coeffs))

    def forward(self, pred_v: torch.Tensor, pred_e: torch.Tensor, coeffs: torch.Tensor,
                exprs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        d = pred_v - self.targets(coeffs)  # [3,V,B]
        l_v = euclid_mean(d, self.vw[0]) if self.vertex_loss == "euclid" else l1_mean(d, self.vw)
        # (p_i − p_j) − (t_i − t_j) = d_i − d_j: the edge term is the edge differences of the error
        l_edge = l1_mean(self.incidence(d))
        l_expr = (pred_e - exprs).abs().mean()
        l_e = l_expr if self.expr_loss == "l1" else torch.nn.functional.binary_cross_entropy(pred_e, exprs)
        total = l_v + self.edge_weight * l_edge + self.expr_weight * l_e
        return total, {"vert_l1_mm": l_v, "edge_l1_mm": l_edge, "expr_l1": l_expr}


def _plain(d: dict) -> dict:
    """Config dict → JSON / weights_only friendly (paths → str, tuples → lists)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, Path):
            v = str(v)
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, dict):
            v = _plain(v)
        out[k] = v
    return out


def train(cfg: TrainConfig, progress: bool = True, save: bool = True, data: HeadData | None = None,
          hierarchy: MeshHierarchy | None = None, pool: Pool | None = None) -> TrainResult:
    """Train; save the checkpoint (+ `.sha256`, `.history.json`) when `save`; return (model, info).

    data / hierarchy / pool: pre-loaded inputs (tests and studies); by default the shipped assets and a
    pool of `cfg.pool` samples from `cfg.seed`.
    """
    cfg.validate()
    prev_det, prev_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    prev_fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    # Deterministic mode also NaN-fills every torch.empty (a debugging aid for reads of uninitialised
    # memory; 15 % of a step here). Results do not depend on it: every buffer is written before use.
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        return _train(cfg, progress, save, data, hierarchy, pool)
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.utils.deterministic.fill_uninitialized_memory = prev_fill
        torch.set_num_threads(prev_threads)


def _train(cfg: TrainConfig, progress: bool, save: bool, data: HeadData | None, h: MeshHierarchy | None,
           pool: Pool | None) -> TrainResult:
    t0 = time.perf_counter()
    data = data or HeadData.load()
    h = h or load_hierarchy()
    aug = cfg.aug or data.default_aug()
    pool = pool or make_pool(data, cfg.pool, cfg.seed, aug, progress=progress)
    t_data = time.perf_counter() - t0
    model = build_model(data, h, pool, cfg.model)
    loss_fn = Loss(data, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)  # one kernel per step (4× the for-loop)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    rng = np.random.default_rng(cfg.seed + 1)
    lms, coeffs, exprs = (torch.from_numpy(a) for a in (pool.landmarks, pool.coeffs, pool.expressions))
    history: list[dict] = []
    model.train()
    t1 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="train", disable=not progress)
    for step in bar:
        idx = torch.from_numpy(rng.integers(0, len(lms), size=cfg.batch))
        pred_v, pred_e = model.forward_channel_major(lms.index_select(0, idx))
        loss, parts = loss_fn(pred_v, pred_e, coeffs.index_select(0, idx), exprs.index_select(0, idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            rec = {"step": step, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}}
            history.append(rec)
            bar.set_postfix(v=f"{rec['vert_l1_mm']:.3f}", e=f"{rec['expr_l1']:.4f}")
    t_train = time.perf_counter() - t1
    model.eval()
    info = {
        "config": _plain({k: v for k, v in asdict(cfg).items() if k not in ("model", "aug")}),
        "model": cfg.model.to_dict(),
        "augment": aug.to_dict(),
        "noise_source": data.noise.source,
        "data_seconds": round(t_data, 1),
        "train_seconds": round(t_train, 1),
        "steps_per_second": round(cfg.steps / max(t_train, 1e-9), 2),
        "final": history[-1],
        "torch": str(torch.__version__),
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    if save:
        save_checkpoint(model, h, cfg.out, train_info=info)
        Path(cfg.out).with_suffix(".history.json").write_text(json.dumps(history) + "\n")
    return TrainResult(model, {**info, "history": history})
