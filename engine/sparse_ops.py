"""Sparse operators for the training path (CPU): constant sparse matrices applied by CSR matmuls with
hand-written adjoints, the form `ChebConv.forward_channel_major` and `UpSample.forward_channel_major`
train with (docs in engine/chebconv.py), and the torch conversions of `engine.mesh_graph`'s scipy
matrices.

- `sparse_from_padded`, `to_torch_csr`, `to_torch_coo`: scipy → torch sparse (one graph implementation,
  `engine.mesh_graph.padded_matrix`);
- `CSROperator`: I_copies ⊗ A with A and Aᵀ stored as int32 CSR, applied by custom autograd Functions
  (`A x`, the Chebyshev terms T_j(A) x, Clenshaw's Σ_j T_j(A) z_j) that need no per-step transpose.

Export and inference never use these (ONNX has no sparse ops).
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from engine.mesh_graph import padded_matrix


def _numpy(t: torch.Tensor | np.ndarray) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def to_torch_csr(m: sp.spmatrix, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A scipy sparse matrix as a torch sparse CSR tensor (int64 indices) of `dtype`."""
    m = sp.csr_matrix(m)
    m.sort_indices()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we use mm/addmm only (tested)
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.as_tensor(m.indptr, dtype=torch.long),
                                       torch.as_tensor(m.indices, dtype=torch.long),
                                       torch.as_tensor(m.data, dtype=dtype), m.shape, check_invariants=True)


def to_torch_coo(m: sp.spmatrix, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A scipy sparse matrix as a coalesced torch sparse COO tensor of `dtype` (stored zeros kept)."""
    c = sp.csr_matrix(m)
    c.sort_indices()
    c = c.tocoo()
    idx = torch.as_tensor(np.stack([c.row, c.col]), dtype=torch.long)
    return torch.sparse_coo_tensor(idx, torch.as_tensor(c.data, dtype=dtype), c.shape, check_invariants=True).coalesce()


def sparse_from_padded(idx: torch.Tensor, weight: torch.Tensor, diag: torch.Tensor | None,
                       num_cols: int) -> torch.Tensor:
    """The operator of padded index/weight rows (`engine.mesh_graph.padded_matrix`) as a torch sparse
    CSR matrix [V,num_cols] in `weight`'s dtype; padding entries (weight 0) are dropped."""
    m = padded_matrix(_numpy(idx), _numpy(weight), None if diag is None else _numpy(diag), num_cols)
    m.eliminate_zeros()
    return to_torch_csr(m, weight.dtype)


def block_diagonal(a: torch.Tensor, copies: int) -> torch.Tensor:
    """I_copies ⊗ A: `copies` copies of the sparse matrix A [R,C] on the diagonal → sparse CSR
    [copies·R, copies·C] (applied to a [copies·C, N] stack of planes, it maps each plane by A)."""
    coo = (a if a.layout == torch.sparse_coo else a.to_sparse_coo()).coalesce()
    (r, c), vals = coo.indices(), coo.values()
    nr, nc = coo.shape
    k = torch.arange(copies).repeat_interleave(len(vals))
    rows, cols = r.repeat(copies) + k * nr, c.repeat(copies) + k * nc
    out = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals.repeat(copies), (copies * nr, copies * nc),
                                  check_invariants=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return out.coalesce().to_sparse_csr()


def _csr32(a: torch.Tensor) -> torch.Tensor:
    """A sparse matrix as CSR with int32 indices (what the CPU kernel takes without a per-call copy)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        csr = a if a.layout == torch.sparse_csr else a.to_sparse_coo().coalesce().to_sparse_csr()
        return torch.sparse_csr_tensor(csr.crow_indices().to(torch.int32), csr.col_indices().to(torch.int32),
                                       csr.values(), tuple(csr.shape), check_invariants=True)


def chebyshev_terms_csr(a: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
    """T_0(A) x … T_{k−1}(A) x stacked → [k,R,N] for CSR A [R,R] and x [R,N] (no autograd).
    T_0 = x, T_1 = A x, T_j = 2 A T_{j−1} − T_{j−2}; each term is one addmm written in place."""
    t = x.new_empty(k, *x.shape)
    t[0].copy_(x)
    if k > 1:
        torch.addmm(t[0], a, x, beta=0.0, out=t[1])
    for j in range(2, k):
        torch.addmm(t[j - 2], a, t[j - 1], beta=-1.0, alpha=2.0, out=t[j])
    return t


def clenshaw_csr(a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Σ_k T_k(A) z_k for CSR A [R,R] and z [k,R,N] → [R,N] by Clenshaw's recurrence (no autograd):
    b_k = z_k + 2 A b_{k+1} − b_{k+2} (k = K−1…1), result z_0 + A b_1 − b_2."""
    k = z.shape[0]
    if k == 1:
        return z[0].clone()
    b1, b2 = z[k - 1], None
    for j in range(k - 2, 0, -1):
        nxt = torch.addmm(z[j], a, b1, alpha=2.0)
        b1, b2 = (nxt if b2 is None else nxt.sub_(b2)), b1
    out = torch.addmm(z[0], a, b1)
    return out if b2 is None else out.sub_(b2)


class _CSRMatmul(torch.autograd.Function):
    """y = A x for a constant CSR matrix A [Ro,Ri], dense x [Ri,N]; ∂x = Aᵀ ∂y with Aᵀ precomputed."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, a: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        ctx.at = at
        return torch.addmm(x.new_empty(a.shape[0], x.shape[1]), a, x, beta=0.0)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        g = g.contiguous()
        return torch.addmm(g.new_empty(ctx.at.shape[0], g.shape[1]), ctx.at, g, beta=0.0), None, None


class _ChebyshevTerms(torch.autograd.Function):
    """x [R,N] → (T_j(A) x)_j [k,R,N]. Linear in x, so nothing is saved: its adjoint is
    ∂x = Σ_j T_j(Aᵀ) ∂T_j, i.e. Clenshaw's recurrence with Aᵀ."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, a: torch.Tensor, at: torch.Tensor, k: int) -> torch.Tensor:
        ctx.at = at
        return chebyshev_terms_csr(a, x, k)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return clenshaw_csr(ctx.at, g.contiguous()), None, None, None


class _Clenshaw(torch.autograd.Function):
    """z [k,R,N] → Σ_j T_j(A) z_j [R,N]. Linear in z: ∂z_j = T_j(Aᵀ) ∂y, the three-term
    recurrence with Aᵀ (`chebyshev_terms_csr`)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, a: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        ctx.at, ctx.k = at, z.shape[0]
        return clenshaw_csr(a, z)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return chebyshev_terms_csr(ctx.at, g.contiguous(), ctx.k), None, None


class CSROperator:
    """I_copies ⊗ A for a constant sparse matrix A [Vo,Vi]: A applied to each of `copies` planes,
    x [copies,Vi,...] → [copies,Vo,...] (the training path's graph operator).

    The planes are one contiguous [copies·Vi, N] matrix (N = the trailing dims, e.g. the batch of a
    channel-major activation [C,V,B]), so no permute is needed. The block-diagonal matrix and its
    transpose are both stored as CSR with int32 indices, built once: backward neither transposes
    nor sorts, and the CPU kernel takes the indices without a per-call copy. On a CPU a CSR matmul
    reads each input row once, where the padded gather materialises every neighbour slot. Export
    and inference never use it (ONNX has no sparse ops).
    """

    def __init__(self, a: torch.Tensor, copies: int = 1) -> None:
        if copies < 1:
            raise ValueError("copies must be at least 1")
        self.copies = copies
        self.vo, self.vi = (int(n) for n in a.shape)
        big = block_diagonal(a, copies)
        self.a, self.at = _csr32(big), _csr32(big.to_sparse_coo().t().coalesce())

    def _rows(self, x: torch.Tensor, v: int, lead: int = 0) -> torch.Tensor:
        if tuple(x.shape[lead:lead + 2]) != (self.copies, v):
            raise ValueError(f"operator takes [{self.copies},{v},...] planes, got {tuple(x.shape)}")
        return x.contiguous().reshape(*x.shape[:lead], self.copies * v, -1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A x per plane: x [copies,Vi,...] → [copies,Vo,...]."""
        y = _CSRMatmul.apply(self._rows(x, self.vi), self.a, self.at)
        return y.reshape(self.copies, self.vo, *x.shape[2:])

    def chebyshev_terms(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """(T_j(A) x)_{j<k} for square A: x [copies,V,...] → [k,copies,V,...] (differentiable)."""
        t = _ChebyshevTerms.apply(self._rows(x, self.vi), self.a, self.at, k)
        return t.reshape(k, *x.shape)

    def clenshaw(self, z: torch.Tensor) -> torch.Tensor:
        """Σ_j T_j(A) z_j for square A: z [k,copies,V,...] → [copies,V,...] (differentiable)."""
        y = _Clenshaw.apply(self._rows(z, self.vi, lead=1), self.a, self.at)
        return y.reshape(*z.shape[1:])
