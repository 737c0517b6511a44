"""`python main.py train`: fit the face model on synthetic heads with tracker-like landmarks.

Data: a fixed pool of `pool` samples (identity, expressions → vertices through the linear head
model; landmarks through the embedding and `engine.augment`), generated from `seed`. Loss:
    L1(vertices, mm; face region ×2) + edge_weight · L1(edge vectors) + expr_weight · L1(expressions)
Adam with a cosine learning-rate decay; fixed seed, deterministic algorithms, fixed thread count.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.augment import AugmentConfig, LandmarkSpace, tracker_like_landmarks
from engine.canonical import load_canonical
from engine.checkpoint import CHECKPOINT_PATH, save_checkpoint
from engine.embedding import Embedding, load_embedding, reference_landmarks
from engine.headspace import Head, load_head
from engine.hierarchy import MeshHierarchy, load_hierarchy
from engine.model import FaceModel, ModelConfig
from engine.noise import load_tracker_noise
from engine.sampling import sample_expressions, sample_identity


@dataclass
class TrainConfig:
    """Training knobs; `steps` is the deterministic length of a run."""

    steps: int = 6000
    batch: int = 64
    lr: float = 2e-3
    seed: int = 0
    pool: int = 60000
    edge_weight: float = 1.0
    expr_weight: float = 20.0
    face_weight: float = 2.0
    threads: int = 2
    model: ModelConfig = field(default_factory=lambda: ModelConfig(latent=32))
    out: Path = CHECKPOINT_PATH


@dataclass
class HeadData:
    """Everything the synthetic data needs, loaded once."""

    head: Head
    emb: Embedding
    space: LandmarkSpace
    sigma: np.ndarray  # [468,3] tracker noise std, mm
    basis: np.ndarray  # [2A+52, V*3] f32: [identity +, identity −, expressions]

    @classmethod
    def load(cls) -> "HeadData":
        head, emb, canon = load_head(), load_embedding(), load_canonical()
        space = LandmarkSpace(reference_landmarks(head.vertices, emb), canon.procrustes_indices,
                              canon.procrustes_weights)
        basis = np.concatenate([head.identity_pos, head.identity_neg, head.expression_targets]).reshape(
            -1, head.vertices.size).astype(np.float32)
        return cls(head, emb, space, load_tracker_noise().sigma_mm, basis)

    def coefficients(self, identity: np.ndarray, expressions: np.ndarray) -> np.ndarray:
        """[n,A], [n,52] → [n,2A+52] rows of the linear basis."""
        return np.concatenate([np.maximum(identity, 0), np.maximum(-identity, 0), expressions], axis=1)

    def vertices(self, coeffs: np.ndarray) -> np.ndarray:
        """[n,2A+52] → [n,V,3] f32 mm."""
        return self.head.vertices + (coeffs @ self.basis).reshape(len(coeffs), -1, 3)


@dataclass
class Pool:
    """A generated data set: coefficients [n,2A+52], expressions [n,52], noisy landmarks [n,468,3]."""

    coeffs: np.ndarray
    expressions: np.ndarray
    landmarks: np.ndarray


def make_pool(data: HeadData, n: int, seed: int, aug: AugmentConfig = AugmentConfig(),
              chunk: int = 2000, progress: bool = False) -> Pool:
    """Sample `n` heads and their tracker-like landmarks, deterministically from `seed`."""
    rng = np.random.default_rng(seed)
    coeffs, exprs, lms = [], [], []
    for start in tqdm(range(0, n, chunk), desc="data", disable=not progress, leave=False):
        m = min(chunk, n - start)
        ids = sample_identity(rng, m, data.head.num_identity)
        ex = sample_expressions(rng, m)
        c = data.coefficients(ids, ex)
        noisy, _ = tracker_like_landmarks(rng, data.vertices(c), data.emb.vertex_ids, data.emb.bary,
                                          data.space, data.sigma, aug)
        coeffs.append(c)
        exprs.append(ex)
        lms.append(noisy)
    return Pool(np.concatenate(coeffs), np.concatenate(exprs), np.concatenate(lms))


def edges_of(triangles: np.ndarray) -> np.ndarray:
    """Unique undirected edges [E,2] of a triangle list."""
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


def build_model(data: HeadData, h: MeshHierarchy, pool: Pool, cfg: ModelConfig) -> FaceModel:
    """A fresh model whose normalisation buffers come from the training pool."""
    sample = pool.coeffs[: min(len(pool.coeffs), 5000)]
    verts = data.vertices(sample)
    mean_v = verts.mean(axis=0)
    offset_scale = float((verts - mean_v).std())
    lm_mean = pool.landmarks.mean(axis=0)
    lm_scale = float((pool.landmarks - lm_mean).std())
    return FaceModel.build(h, cfg, mean_v, offset_scale, lm_mean, lm_scale)


def _seed_everything(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def train(cfg: TrainConfig, progress: bool = True, save: bool = True) -> tuple[FaceModel, dict]:
    """Train, save the checkpoint (when `save`), return (model, info)."""
    _seed_everything(cfg.seed, cfg.threads)
    t0 = time.perf_counter()
    data, h = HeadData.load(), load_hierarchy()
    pool = make_pool(data, cfg.pool, cfg.seed, progress=progress)
    t_data = time.perf_counter() - t0
    model = build_model(data, h, pool, cfg.model).use_sparse_training(True)
    basis = torch.from_numpy(data.basis)
    neutral = torch.from_numpy(data.head.vertices.reshape(-1))
    edges = torch.from_numpy(edges_of(data.head.triangles))
    vw = torch.ones(data.head.vertices.shape[0], 1)
    vw[torch.from_numpy(data.head.face_mask)] = cfg.face_weight
    vw /= vw.mean()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    rng = np.random.default_rng(cfg.seed + 1)
    lms = torch.from_numpy(pool.landmarks)
    coeffs = torch.from_numpy(pool.coeffs)
    exprs = torch.from_numpy(pool.expressions)
    history = []
    bar = tqdm(range(cfg.steps), desc="train", disable=not progress)
    model.train()
    for step in bar:
        idx = torch.from_numpy(rng.integers(0, len(lms), size=cfg.batch))
        target = (neutral + coeffs[idx] @ basis).reshape(cfg.batch, -1, 3)
        pred_v, pred_e = model(lms[idx])
        l_v = ((pred_v - target).abs() * vw).mean()
        d_pred = pred_v[:, edges[:, 0]] - pred_v[:, edges[:, 1]]
        d_true = target[:, edges[:, 0]] - target[:, edges[:, 1]]
        l_edge = (d_pred - d_true).abs().mean()
        l_expr = (pred_e - exprs[idx]).abs().mean()
        loss = l_v + cfg.edge_weight * l_edge + cfg.expr_weight * l_expr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            rec = {"step": step, "loss": float(loss), "vert_l1_mm": float(l_v), "edge_l1_mm": float(l_edge),
                   "expr_l1": float(l_expr)}
            history.append(rec)
            bar.set_postfix(v=f"{rec['vert_l1_mm']:.3f}", e=f"{rec['expr_l1']:.4f}")
    model.eval()
    info = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "model"},
        "model": cfg.model.to_dict(),
        "data_seconds": round(t_data, 1),
        "train_seconds": round(time.perf_counter() - t0 - t_data, 1),
        "final": history[-1],
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if save:
        save_checkpoint(model, h, cfg.out, train_info=info)
        cfg.out.with_suffix(".history.json").write_text(json.dumps(history) + "\n")
    return model, info
