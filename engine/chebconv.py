"""Chebyshev spectral graph convolution (Defferrard et al. 2016) as padded neighbour gathers.

    L  = I − D^{-1/2} A D^{-1/2}                 (symmetric normalised Laplacian)
    L~ = 2 L / λ_max − I                          (scaled to [−1, 1]; λ_max = 2 as in PyG's default)
    T_0 = X,  T_1 = L~ X,  T_k = 2 L~ T_{k−1} − T_{k−2}
    Y  = Σ_{k<K} T_k Θ_k + b

`L~ X` is one gather of the padded neighbour lists (x[:, nbr_idx] → [B,V,D,C]) and a weighted sum
plus a diagonal term: no sparse ops, no data-dependent shapes, so the layer exports to ONNX
(Gather, Mul, ReduceSum, MatMul) and TensorRT. Numerically identical to
`torch_geometric.nn.ChebConv(in, out, K, normalization="sym")` with lambda_max=2 (tests/test_chebconv.py).

Training uses a second, equivalent form (`ChebConv.forward_vertex_major`): activations laid out
vertex-major [V,B,C], so that L~ is one sparse CSR matmul on the contiguous [V, B·C] view, through
`engine.sparse_ops.CSROperator` (L~ and its transpose precomputed, a custom autograd Function: no
per-step transpose, sort or permute). Same parameters, same numbers to float32 rounding
(tests/test_chebconv.py); it is never used by eval, export or inference. `laplacian_matrix()` gives L~
as a scipy matrix (what `engine.lowering` regroups for inference).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from engine.mesh_graph import padded_matrix
from engine.sparse_ops import CSROperator, sparse_from_padded


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
        self._operators: dict[int, CSROperator] = {}  # training only: `forward_channel_major`
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
        y = x * self.row_scale
        y = torch.cat([y, torch.zeros_like(y[:, :1])], dim=1)
        acc = y.index_select(1, self.nbr_0)
        for k in range(1, self.degree):
            acc = acc + y.index_select(1, getattr(self, f"nbr_{k}"))
        out = acc * self.out_scale
        return out + self.diag * x if self.has_diag else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uses_clenshaw:
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

    def laplacian_matrix(self) -> sp.csr_matrix:
        """L~ of the layer's graph as a [V,V] float64 scipy CSR matrix (no stored zeros)."""
        idx, w, dg = (t.numpy() for t in self._padded)
        lap = padded_matrix(idx, w, dg)
        lap.eliminate_zeros()
        return lap

    def operator(self, channels: int) -> CSROperator:
        """I_channels ⊗ L~: L~ on each of `channels` stacked [V,·] planes, as a `CSROperator`
        [channels·V, channels·V] (built once per channel count, cached; not a buffer, not saved)."""
        op = self._operators.get(channels)
        if op is None:
            idx, w, dg = self._padded
            op = CSROperator(sparse_from_padded(idx, w, dg, self.num_vertices), channels)
            self._operators[channels] = op
        return op

    @property
    def uses_clenshaw(self) -> bool:
        """Whether the layer sums by Clenshaw's recurrence on its (fewer) output channels."""
        return self.out_channels < self.in_channels and self.K > 1

    def forward_channel_major(self, x: torch.Tensor) -> torch.Tensor:
        """The same layer on channel-major activations: x [in,V,B] → [out,V,B] (the training path).

        Equal to `forward(x.permute(2, 1, 0)).permute(2, 1, 0)` to float32 rounding. Each channel is
        a contiguous [V,B] plane, so L~ is one CSR matmul (I_C ⊗ L~) on the [C·V, B] view, the
        Chebyshev recurrence (or Clenshaw's) one autograd node with a hand-written adjoint
        (`CSROperator.chebyshev_terms` / `.clenshaw`), and the channel mixing one wide matmul
        Θᵀ [out, K·in] @ [K·in, V·B] with the bias fused in.
        """
        if self.uses_clenshaw:
            return self.propagate_mixed(self.mix_channel_major(x))
        cin, v, b = x.shape
        k, cout = self.K, self.out_channels
        terms = self.operator(cin).chebyshev_terms(x, k)  # [K,in,V,B]
        out = torch.addmm(self._bias(x)[:, None], self.weight.reshape(k * cin, cout).t(),
                          terms.reshape(k * cin, v * b))
        return out.reshape(cout, v, b)

    def mix_channel_major(self, x: torch.Tensor) -> torch.Tensor:
        """Z_k = Θ_kᵀ X for every k in one matmul, the bias added to Z_0 (T_0 = I): x [in,V,B] →
        z [K,out,V,B]; `propagate_mixed(z)` = Σ_k T_k(L~) Z_k completes the layer. Mixing is
        per-vertex, so it commutes with per-vertex linear maps such as up-sampling."""
        cin, v, b = x.shape
        k, cout = self.K, self.out_channels
        wt = self.weight.transpose(1, 2).reshape(k * cout, cin)
        zb = torch.cat([self._bias(x), x.new_zeros((k - 1) * cout)])[:, None]
        return torch.addmm(zb, wt, x.reshape(cin, v * b)).reshape(k, cout, v, b)

    def propagate_mixed(self, z: torch.Tensor) -> torch.Tensor:
        """Σ_k T_k(L~) Z_k by Clenshaw's recurrence (one autograd node): z [K,out,V,B] → [out,V,B]."""
        return self.operator(z.shape[1]).clenshaw(z)

    def _bias(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias if self.bias is not None else x.new_zeros(self.out_channels)

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
