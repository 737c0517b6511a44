"""The face model: landmarks → latent → dense head (CoMA-style Chebyshev decoder) + 52 expressions.

    landmarks [B,468,3] (pose-normalised, mm)
      └─ encoder: (x − lm_mean) / lm_scale → flatten → MLP → latent z [B,Z]
            ├─ decoder: Linear → [B,V_L,C_L] on the coarsest mesh; per level: ChebConv+ELU, then
            │           up-sample (gather of 3 coarse vertices × barycentric weights); finally a
            │           ChebConv to 3 channels → × offset_scale + mean_vertices → vertices [B,V,3] mm
            └─ expression_head: MLP → sigmoid → expressions [B,52] in [0,1]

All graph data are buffers (restored by `load_state_dict` given the same hierarchy). Every op is
dense (gathers, matmuls), so the model exports to ONNX with a dynamic batch and runs in TensorRT.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from engine.assets import NUM_EXPRESSIONS, NUM_LANDMARKS
from engine.chebconv import ChebConv
from engine.mesh_graph import padded_matrix
from engine.sparse_ops import CSROperator, sparse_from_padded
from engine.hierarchy import MeshHierarchy, topology_hash  # noqa: F401  (re-exported)


@dataclass
class ModelConfig:
    """Architecture. `channels[l]` is the feature width on hierarchy level l (0 = full mesh)."""

    latent: int = 32
    channels: tuple[int, ...] = (16, 16, 64, 128, 256)  # wide coarse levels: docs/training.md
    K: int = 6
    encoder_hidden: tuple[int, ...] = (512, 256)
    expression_hidden: int = 128

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["encoder_hidden"] = list(self.encoder_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        d["encoder_hidden"] = tuple(d["encoder_hidden"])
        return cls(**d)


class UpSample(nn.Module):
    """Barycentric up-sampling: x [B,Vc,C] → [B,Vf,C] with idx [Vf,3], w [Vf,3] (rows sum to 1):
    three gathers, each scaled per output vertex, summed (graph buffers derived, not saved)."""

    def __init__(self, idx: np.ndarray, w: np.ndarray) -> None:
        super().__init__()
        idx, w = np.asarray(idx), np.asarray(w, dtype=np.float32)
        self.num_out = len(idx)
        for k in range(3):
            self.register_buffer(f"idx_{k}", torch.as_tensor(idx[:, k], dtype=torch.long), persistent=False)
            self.register_buffer(f"w_{k}", torch.as_tensor(w[:, k]).reshape(-1, 1), persistent=False)
        self._padded = (torch.as_tensor(idx, dtype=torch.long), torch.as_tensor(w))
        self._operators: dict[tuple[int, int], CSROperator] = {}  # training only: `forward_channel_major`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.index_select(1, self.idx_0) * self.w_0 + x.index_select(1, self.idx_1) * self.w_1
                + x.index_select(1, self.idx_2) * self.w_2)

    def matrix(self, num_coarse: int) -> sp.csr_matrix:
        """The up-sampling as a [V_fine, num_coarse] float64 scipy CSR matrix (rows sum to 1; zero
        barycentric weights stay as stored zeros)."""
        idx, w = (t.numpy() for t in self._padded)
        return padded_matrix(idx, w, None, num_coarse)

    def forward_channel_major(self, x: torch.Tensor) -> torch.Tensor:
        """The same map on channel-major activations, x [C,Vc,B] → [C,Vf,B], as one CSR matmul
        (I_C ⊗ U on the [C·Vc, B] view; the training path)."""
        key = (x.shape[0], x.shape[1])
        if key not in self._operators:
            self._operators[key] = CSROperator(sparse_from_padded(*self._padded, None, key[1]), key[0])
        return self._operators[key](x)


def _cheb(h: MeshHierarchy, level: int, cin: int, cout: int, K: int) -> ChebConv:
    return ChebConv(cin, cout, K, h.nbr_idx[level], h.nbr_mask[level])


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Pose-normalised landmarks [B,468,3] mm → latent [B,Z]."""

    def __init__(self, cfg: ModelConfig, lm_mean: np.ndarray, lm_scale: float) -> None:
        super().__init__()
        self.register_buffer("lm_mean", torch.as_tensor(lm_mean, dtype=torch.float32).reshape(NUM_LANDMARKS, 3))
        self.register_buffer("lm_scale", torch.tensor(float(lm_scale), dtype=torch.float32))
        self.mlp = _mlp([NUM_LANDMARKS * 3, *cfg.encoder_hidden, cfg.latent])

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        x = (landmarks - self.lm_mean) / self.lm_scale
        return self.mlp(x.reshape(x.shape[0], NUM_LANDMARKS * 3))


class Decoder(nn.Module):
    """Latent [B,Z] → vertices [B,V,3] mm through the mesh hierarchy (coarse → fine)."""

    def __init__(self, cfg: ModelConfig, h: MeshHierarchy, mean_vertices: np.ndarray, offset_scale: float) -> None:
        super().__init__()
        top = h.num_levels - 1
        if len(cfg.channels) != h.num_levels:
            raise ValueError(f"channels has {len(cfg.channels)} entries, hierarchy has {h.num_levels} levels")
        self.coarse_vertices, self.coarse_channels = h.sizes[top], cfg.channels[top]
        self.fc = nn.Linear(cfg.latent, self.coarse_vertices * self.coarse_channels)
        # level l+1 → l: ChebConv on level l+1 (C_{l+1} → C_l), then up-sample to level l
        self.convs = nn.ModuleList([_cheb(h, lvl + 1, cfg.channels[lvl + 1], cfg.channels[lvl], cfg.K)
                                    for lvl in reversed(range(top))])
        self.ups = nn.ModuleList([UpSample(h.up_idx[lvl], h.up_w[lvl]) for lvl in reversed(range(top))])
        self.head = _cheb(h, 0, cfg.channels[0], 3, cfg.K)
        self.act = nn.ELU()
        self.register_buffer("mean_vertices", torch.as_tensor(mean_vertices, dtype=torch.float32))
        self.register_buffer("offset_scale", torch.tensor(float(offset_scale), dtype=torch.float32))

    def layers(self) -> list[tuple[str, nn.Module]]:
        """The decoder in execution order, for building twins (e.g. a torch_geometric benchmark):
        ("fc", Linear) then per coarse→fine step ("conv", ChebConv on level l+1), ("act", ELU),
        ("up", UpSample to level l), and last ("head", ChebConv on level 0, no activation); the
        result is × `offset_scale` + `mean_vertices`."""
        out: list[tuple[str, nn.Module]] = [("fc", self.fc)]
        for conv, up in zip(self.convs, self.ups):
            out += [("conv", conv), ("act", self.act), ("up", up)]
        return out + [("head", self.head)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).reshape(z.shape[0], self.coarse_vertices, self.coarse_channels)
        for conv, up in zip(self.convs, self.ups):
            x = up(self.act(conv(x)))
        return self.head(x) * self.offset_scale + self.mean_vertices

    def forward_channel_major(self, z: torch.Tensor) -> torch.Tensor:
        """Training path: latent [B,Z] → vertices *channel-major* [3,V,B] mm, the same function as
        `forward` (`forward(z) ≈ forward_channel_major(z).permute(2, 1, 0)`, tests/test_model.py),
        with activations kept [C,V,B] between layers: every graph op is a CSR matmul and every
        channel mixing a wide matmul, with no permutes (ChebConv.forward_channel_major). When the
        head sums by Clenshaw (3 < C_0 channels), its mixing Z_k = Θ_kᵀ X is done *before* the last
        up-sampling (per-vertex linear maps commute: U(X) Θ = U(X Θ)), on 4× fewer vertices."""
        x = self.fc(z).reshape(z.shape[0], self.coarse_vertices, self.coarse_channels).permute(2, 1, 0)
        last = len(self.convs) - 1
        for i, (conv, up) in enumerate(zip(self.convs, self.ups)):
            x = self.act(conv.forward_channel_major(x))
            if i == last and self.head.uses_clenshaw:
                zk = self.head.mix_channel_major(x)  # [K,3,V_1,B]
                k, c, _, b = zk.shape
                zk = up.forward_channel_major(zk.reshape(k * c, -1, b)).reshape(k, c, -1, b)
                out = self.head.propagate_mixed(zk)
                break
            x = up.forward_channel_major(x)
        else:
            out = self.head.forward_channel_major(x)
        return out * self.offset_scale + self.mean_vertices.t()[:, :, None]


class FaceModel(nn.Module):
    """landmarks [B,468,3] mm → (vertices [B,V,3] mm, expressions [B,52] in [0,1])."""

    def __init__(self, cfg: ModelConfig, h: MeshHierarchy, mean_vertices: np.ndarray, offset_scale: float,
                 lm_mean: np.ndarray, lm_scale: float) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg, lm_mean, lm_scale)
        self.decoder = Decoder(cfg, h, mean_vertices, offset_scale)
        self.expression_head = _mlp([cfg.latent, cfg.expression_hidden, NUM_EXPRESSIONS])

    @classmethod
    def build(cls, h: MeshHierarchy, cfg: ModelConfig | None = None, mean_vertices: np.ndarray | None = None,
              offset_scale: float = 1.0, lm_mean: np.ndarray | None = None, lm_scale: float = 1.0) -> "FaceModel":
        """A fresh model on hierarchy `h`; statistics default to the hierarchy's neutral mesh."""
        cfg = cfg or ModelConfig()
        mv = h.vertices[0] if mean_vertices is None else mean_vertices
        lm = np.zeros((NUM_LANDMARKS, 3), np.float32) if lm_mean is None else lm_mean
        return cls(cfg, h, mv, offset_scale, lm, lm_scale)

    @property
    def num_vertices(self) -> int:
        return int(self.decoder.mean_vertices.shape[0])

    def forward_channel_major(self, landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training path: landmarks [B,468,3] mm → (vertices channel-major [3,V,B] mm, expressions
        [B,52]); the same function as `forward` (see `Decoder.forward_channel_major`)."""
        z = self.encoder(landmarks)
        return self.decoder.forward_channel_major(z), torch.sigmoid(self.expression_head(z))

    def decoder_layers(self) -> list[tuple[str, nn.Module]]:
        """`Decoder.layers()`: the decoder's modules in execution order."""
        return self.decoder.layers()

    def encode(self, landmarks: torch.Tensor) -> torch.Tensor:
        return self.encoder(landmarks)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def expressions(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.expression_head(z))

    def forward(self, landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(landmarks)
        return self.decoder(z), torch.sigmoid(self.expression_head(z))
