"""Chebyshev spectral graph convolution (Defferrard et al. 2016) as padded neighbour gathers.

    L  = I − D^{-1/2} A D^{-1/2}                 (symmetric normalised Laplacian)
    L~ = 2 L / λ_max − I                          (scaled to [−1, 1]; λ_max = 2 as in PyG's default)
    T_0 = X,  T_1 = L~ X,  T_k = 2 L~ T_{k−1} − T_{k−2}
    Y  = Σ_{k<K} T_k Θ_k + b

`L~ X` is one gather of the padded neighbour lists (x[:, nbr_idx] → [B,V,D,C]) and a weighted sum
plus a diagonal term: no sparse ops, no data-dependent shapes, so the layer exports to ONNX
(Gather, Mul, ReduceSum, MatMul) and TensorRT. Numerically identical to
`torch_geometric.nn.ChebConv(in, out, K, normalization="sym")` with lambda_max=2 (tests/test_chebconv.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def scaled_laplacian_weights(nbr_idx: np.ndarray, nbr_mask: np.ndarray, lambda_max: float = 2.0
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Off-diagonal and diagonal entries of L~ for padded neighbour lists.

    nbr_idx [V,D] int (padding = own index), nbr_mask [V,D] (1 real, 0 padding).
    Returns (weights [V,D] f32, zero on padding; diag [V] f32): (L~ x)_i = Σ_d w_id x_{idx_id} + diag_i x_i,
    with w_ij = −(2/λ)/sqrt(d_i d_j) and diag = 2/λ − 1 (0 for λ = 2; isolated vertices get −1).
    """
    mask = np.asarray(nbr_mask, dtype=np.float64)
    deg = mask.sum(axis=1)
    inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
    w = -(2.0 / lambda_max) * inv_sqrt[:, None] * inv_sqrt[np.asarray(nbr_idx)] * mask
    diag = np.where(deg > 0, 2.0 / lambda_max - 1.0, -1.0)
    return w.astype(np.float32), diag.astype(np.float32)


class ChebConv(nn.Module):
    """Chebyshev convolution of order K on a fixed graph.

    Args: in_channels, out_channels, K (≥ 1), nbr_idx [V,D] int (padding = own index), nbr_mask [V,D]
    (1 real neighbour, 0 padding), lambda_max, bias. Input x [B,V,in]; output [B,V,out].
    Parameters: `weight` [K,in,out] (Θ_k = weight[k]) and `bias` [out].
    """

    def __init__(self, in_channels: int, out_channels: int, K: int, nbr_idx: np.ndarray,
                 nbr_mask: np.ndarray, lambda_max: float = 2.0, bias: bool = True) -> None:
        super().__init__()
        if K < 1:
            raise ValueError("K must be at least 1")
        self.in_channels, self.out_channels, self.K = in_channels, out_channels, K
        idx = np.asarray(nbr_idx)
        mask = np.asarray(nbr_mask, dtype=np.float64)
        v, d = idx.shape
        self.num_vertices, self.degree = v, d
        deg = mask.sum(axis=1)
        inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
        diag = np.where(deg > 0, 2.0 / lambda_max - 1.0, -1.0)
        # Graph buffers are derived from the hierarchy (checked by its topology hash), not saved.
        pad = np.where(mask > 0, idx, v)  # padding points at an appended zero row
        for k in range(d):
            self.register_buffer(f"nbr_{k}", torch.as_tensor(pad[:, k], dtype=torch.long), persistent=False)
        self.register_buffer("row_scale", torch.as_tensor(inv_sqrt, dtype=torch.float32).reshape(v, 1),
                             persistent=False)
        self.register_buffer("out_scale", torch.as_tensor(-(2.0 / lambda_max) * inv_sqrt, dtype=torch.float32
                                                          ).reshape(v, 1), persistent=False)
        self.register_buffer("diag", torch.as_tensor(diag, dtype=torch.float32).reshape(v, 1), persistent=False)
        self.has_diag = bool(np.any(diag != 0))
        w, dg = scaled_laplacian_weights(idx, mask, lambda_max)
        self._padded = (torch.as_tensor(idx, dtype=torch.long), torch.as_tensor(w), torch.as_tensor(dg))
        self.weight = nn.Parameter(torch.empty(K, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.sparse_training = False  # see `sparse_apply`; never used by eval, export or inference
        self._sparse: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform Θ_k (as PyG's Linear layers), zero bias."""
        a = math.sqrt(6.0 / (self.in_channels + self.out_channels))
        nn.init.uniform_(self.weight, -a, a)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def laplacian(self, x: torch.Tensor) -> torch.Tensor:
        """L~ x for x [B,V,C] → [B,V,C].

        (L~x)_i = diag_i x_i − (2/λ) c_i Σ_{j∈N(i)} c_j x_j with c = 1/sqrt(degree): scale rows by c,
        append a zero row (the padding target), then one gather per neighbour slot and a running sum.
        Exported, this is Mul, Concat, Gather and Add only — the forms ONNX Runtime and TensorRT run
        fastest (a [B,V,D,C] gather with a broadcast multiply and ReduceSum was 4× slower in ORT).
        """
        if self.sparse_training and self.training:
            return sparse_apply(self._sparse_operator(), x)
        y = x * self.row_scale
        y = torch.cat([y, torch.zeros_like(y[:, :1])], dim=1)
        acc = y.index_select(1, self.nbr_0)
        for k in range(1, self.degree):
            acc = acc + y.index_select(1, getattr(self, f"nbr_{k}"))
        out = acc * self.out_scale
        return out + self.diag * x if self.has_diag else out

    def _sparse_operator(self) -> torch.Tensor:
        if self._sparse is None:
            idx, w, dg = self._padded
            self._sparse = sparse_from_padded(idx, w, dg, self.num_vertices)
        return self._sparse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.out_channels < self.in_channels and self.K > 1:
            out = self._forward_clenshaw(x)
        else:
            out = self._forward_recurrence(x)
        return out + self.bias if self.bias is not None else out

    def _forward_recurrence(self, x: torch.Tensor) -> torch.Tensor:
        """Σ_k T_k Θ_k with T_k by the three-term recurrence on the input channels."""
        terms = [x]
        if self.K > 1:
            terms.append(self.laplacian(x))
        for _ in range(2, self.K):
            terms.append(2.0 * self.laplacian(terms[-1]) - terms[-2])
        stacked = torch.cat(terms, dim=-1)  # [B,V,K·in]
        return stacked @ self.weight.reshape(self.K * self.in_channels, self.out_channels)

    def _forward_clenshaw(self, x: torch.Tensor) -> torch.Tensor:
        """The same sum by Clenshaw's algorithm on the (fewer) output channels:
        Z_k = X Θ_k;  b_k = Z_k + 2 L~ b_{k+1} − b_{k+2} (k = K−1…1);  Y = Z_0 + L~ b_1 − b_2."""
        b, v, _ = x.shape
        z = (x @ self.weight.permute(1, 0, 2).reshape(self.in_channels, self.K * self.out_channels))
        z = z.reshape(b, v, self.K, self.out_channels)
        b1 = z[:, :, self.K - 1]
        b2 = torch.zeros_like(b1)
        for k in range(self.K - 2, 0, -1):
            b1, b2 = z[:, :, k] + 2.0 * self.laplacian(b1) - b2, b1
        return z[:, :, 0] + self.laplacian(b1) - b2

    def load_from_pyg(self, conv) -> None:
        """Copy Θ_k and the bias from a `torch_geometric.nn.ChebConv` of the same shape."""
        with torch.no_grad():
            for k, lin in enumerate(conv.lins):
                self.weight[k].copy_(lin.weight.T)
            if self.bias is not None and conv.bias is not None:
                self.bias.copy_(conv.bias)

    def copy_to_pyg(self, conv) -> None:
        """Copy this layer's parameters into a `torch_geometric.nn.ChebConv` of the same shape."""
        with torch.no_grad():
            for k, lin in enumerate(conv.lins):
                lin.weight.copy_(self.weight[k].T)
            if self.bias is not None and conv.bias is not None:
                conv.bias.copy_(self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, K={self.K}, V={self.num_vertices}, D={self.degree}"


def sparse_from_padded(idx: torch.Tensor, weight: torch.Tensor, diag: torch.Tensor | None,
                       num_cols: int) -> torch.Tensor:
    """The same operator as a sparse CSR matrix [V,num_cols] (padding entries have weight 0)."""
    v, d = idx.shape
    rows = torch.arange(v).repeat_interleave(d)
    cols, vals = idx.reshape(-1), weight.reshape(-1)
    if diag is not None:
        rows = torch.cat([rows, torch.arange(v)])
        cols = torch.cat([cols, torch.arange(v)])
        vals = torch.cat([vals, diag])
    keep = vals != 0
    coo = torch.sparse_coo_tensor(torch.stack([rows[keep], cols[keep]]), vals[keep], (v, num_cols))
    return coo.coalesce().to_sparse_csr()


def sparse_apply(op: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """op [Vo,Vi] sparse CSR applied to x [B,Vi,C] → [B,Vo,C].

    Training-only fast path: on a CPU a CSR matmul reads each input row once, where the padded
    gather materialises [B,V,D,C]. The numbers are the same (tests/test_chebconv.py); export and
    inference always use the gather form, which ONNX and TensorRT support.
    """
    b, vi, c = x.shape
    xt = x.permute(1, 0, 2).reshape(vi, b * c)
    return (op @ xt).reshape(op.shape[0], b, c).permute(1, 0, 2)


def edge_index_from_neighbours(nbr_idx: np.ndarray, nbr_mask: np.ndarray) -> torch.Tensor:
    """PyG `edge_index` [2,E] (source j → target i) of the padded neighbour lists."""
    rows, cols = np.nonzero(np.asarray(nbr_mask) > 0)
    tgt = rows
    src = np.asarray(nbr_idx)[rows, cols]
    return torch.as_tensor(np.stack([src, tgt]), dtype=torch.long)
