"""Inference-time lowering of a trained FaceModel into a lean graph for export and fast back-ends.

The training model (`engine.model.FaceModel`) is written for clarity: one ChebConv per level as a
three-term recurrence over one gather per neighbour slot, separate up-sampling, normalisation
buffers. Exported as-is that is ~1,000 ONNX nodes whose per-node dispatch, not arithmetic, sets the
CPU latency at batch 1. `LeanFaceModel` computes the same function (to float32 rounding;
tests/test_lowering.py) with ~80 nodes, by regrouping the algebra once, when it is built:

- **Encoder**: the input normalisation (x − lm_mean) / lm_scale is folded into the first Linear.
- **Coarse levels are dense.** Between two ELUs the decoder is affine: the first Linear and the
  coarsest ChebConv become one Gemm [Z → V·C].
- **Chebyshev levels as operators.** A ChebConv after an up-sampling U is
  Y = Σ_k T_k(L~) U X Θ_k = A · Z with Z = (X Θ_k)_k stacked by rows (vertex j, order k), and
  A = [T_k(L~) U]_k a fixed [V, V_in·K] matrix. Medium meshes (≤ `DENSE_MAX_VERTICES`) use A dense
  (one MatMul); large meshes use it **blocked**: the output vertices are cut into compact patches
  (recursive coordinate bisection), and each patch's rows of A, restricted to the columns it
  touches (its halo), form a small dense block. One Gather collects every patch's halo rows and one
  batched MatMul applies the blocks: [P,S,H] @ [P,H,B·C]. On a CPU this runs at GEMM speed where
  gathers of 3-float rows run at a few ns a row, and the batch lands in the GEMM's N dimension.
- **The last layer** (up-sampling to the full mesh, ChebConv to 3 coordinates) is a blocked
  operator like the others, with Z = XΘ formed before up-sampling (U(X)Θ = U(XΘ)); offset_scale is
  folded into Θ and mean_vertices into the final per-vertex offset. Two other forms of it were
  measured in ONNX Runtime at batch 1 (scratch exports of that layer alone) and are slower: Clenshaw's recurrence (b_k = U Z_k + 2L~ b_{k+1}
  − b_{k+2} with L~ blocked: 2.1 MB of blocks instead of 7.9, but five more gathers, 1.17 against
  0.96 ms) and halos gathered by whole coarse vertex (K orders per row: 4× fewer gathered rows, but
  the blocks widen 601 → 960 columns, 1.6 against 1.4 ms).

Activations after the dense stage are vertex-major, [rows, B, C], rows in each level's patch order
(padding rows included; a block's columns for padding are zero, so padding rows never leak).
Every op is a plain ONNX op (Gemm, MatMul, Gather, Reshape, Transpose, Split, Add, Sub, Mul, Elu,
Sigmoid): no sparse ops, no data-dependent shapes, a dynamic batch axis, so the graph runs in ONNX
Runtime and TensorRT. Every precomputation is done in float64 from the model's own parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg  # noqa: F401  (sp.linalg)
import torch
from torch import nn

from engine.chebconv import ChebConv

DENSE_MAX_VERTICES = 256  # levels up to this size use dense operators
PATCH_VERTICES = 52  # target patch size of blocked operators
LOWERING_VERSION = 2  # stored in the ONNX metadata; bump when the exported graph's form changes


# -- graph algebra (float64, scipy.sparse) ------------------------------------------------------

def chebyshev_operator(lap: sp.csr_matrix, k: int, right: sp.csr_matrix | None = None) -> sp.csr_matrix:
    """[T_0(L)R | … | T_{k−1}(L)R] interleaved by column as (j, order): [V, V_in·k] float64 CSR.

    Column j·k + o holds T_o(L) R[:, j]; R = `right` (default identity). Y = A @ Z for Z with rows
    (j, o) = X_j Θ_o is the ChebConv Σ_o T_o(L) R X Θ_o.
    """
    r = sp.identity(lap.shape[0], format="csr") if right is None else right.tocsr()
    terms = [r]
    if k > 1:
        terms.append((lap @ r).tocsr())
    for _ in range(2, k):
        terms.append((2.0 * (lap @ terms[-1]) - terms[-2]).tocsr())
    v, vin = r.shape
    stacked = sp.hstack(terms).tocoo()  # column o·vin + j
    o, j = np.divmod(stacked.col, vin)
    return sp.csr_matrix((stacked.data, (stacked.row, j * k + o)), shape=(v, vin * k))


def coarse_positions(fine_positions: np.ndarray, up: sp.csr_matrix) -> np.ndarray:
    """Least-squares positions of a coarser level from a finer one through its up-sampling:
    argmin_P ‖U P − fine‖ ([Vc,3]); used only to cut the coarser mesh into compact patches."""
    ut = up.T.tocsr()
    gram = (ut @ up + 1e-9 * sp.identity(up.shape[1])).tocsc()
    return sp.linalg.spsolve(gram, ut @ fine_positions).reshape(up.shape[1], -1)


# -- patches ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Row order of one level's vertex-major activations [rows, B, C].

    order [rows]: the vertex at each row, −1 for padding; pos [V]: the row of each vertex;
    parts: number of patches P, each of `size` S rows (rows = P·S, patch-major).
    """

    order: np.ndarray
    pos: np.ndarray
    parts: int
    size: int

    @property
    def rows(self) -> int:
        return len(self.order)

    @classmethod
    def identity(cls, num_vertices: int) -> "Layout":
        """One patch holding every vertex in its own order."""
        return cls(np.arange(num_vertices), np.arange(num_vertices), 1, num_vertices)

    @classmethod
    def patches(cls, positions: np.ndarray, patch_vertices: int = PATCH_VERTICES) -> "Layout":
        """Compact patches of about `patch_vertices` vertices by recursive coordinate bisection
        (split along the widest axis, sizes proportional to the patch counts); deterministic."""
        v = len(positions)
        parts = max(1, int(round(v / patch_vertices)))
        groups = _bisect(np.asarray(positions, np.float64), np.arange(v), parts)
        size = max(len(g) for g in groups)
        order = np.full(parts * size, -1, dtype=np.int64)
        for p, g in enumerate(groups):
            order[p * size:p * size + len(g)] = g
        pos = np.empty(v, dtype=np.int64)
        real = order >= 0
        pos[order[real]] = np.flatnonzero(real)
        return cls(order, pos, parts, size)

    def groups(self) -> list[np.ndarray]:
        """The vertices of each patch (padding dropped)."""
        return [g[g >= 0] for g in self.order.reshape(self.parts, self.size)]


def _bisect(points: np.ndarray, ids: np.ndarray, parts: int) -> list[np.ndarray]:
    if parts == 1:
        return [ids]
    span = points[ids].max(axis=0) - points[ids].min(axis=0)
    o = ids[np.argsort(points[ids, int(np.argmax(span))], kind="stable")]
    left = parts // 2
    cut = int(round(len(o) * left / parts))
    return _bisect(points, o[:cut], left) + _bisect(points, o[cut:], parts - left)


def block_operator(a: sp.csr_matrix, out: Layout, col_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut a [V_out, N] operator into per-patch dense blocks.

    col_rows [N]: the input-array row of each column. Returns (halo rows [P·H] int64 — padding
    points at row 0 with zero weight — and blocks [P,S,H] float64) so that for an input array x
    [rows_in, …], (blocks @ x[halo].reshape(P,H,…)) in patch-major rows equals (a @ x_cols)[order].
    """
    a = a.tocsr()
    groups = out.groups()
    halos = [np.unique(a[g].indices) for g in groups]
    h = max(1, max(len(c) for c in halos))
    rows = np.zeros((out.parts, h), dtype=np.int64)
    blocks = np.zeros((out.parts, out.size, h))
    for p, (g, cols) in enumerate(zip(groups, halos)):
        rows[p, :len(cols)] = col_rows[cols]
        blocks[p, :len(g), :len(cols)] = a[g][:, cols].toarray()
    return rows.reshape(-1), blocks


# -- modules ------------------------------------------------------------------------------------
# Activations after the flat stage are 2-D: [rows·B, C] before a Gemm, [rows·K, B·C] into an
# operator. ONNX Runtime's CPU kernels take slow paths for broadcasts over short inner axes and for
# size-1 middle axes, so every bias is folded into a Gemm and no op broadcasts along [.., B, C].

def _f32(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)


def _wb(lin: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    return lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()


def _cheb_weights(conv: ChebConv, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(Θ as [in, (order, out)] with column o·out + c, bias [out]), both × scale, float64."""
    theta = conv.weight.detach().double().numpy() * scale  # [K,in,out]
    bias = conv.bias.detach().double().numpy() * scale if conv.bias is not None else np.zeros(conv.out_channels)
    return np.concatenate(list(theta), axis=1), bias


class Gemm(nn.Module):
    """x [N,in] → x Wᵀ + b (W [out,in], b [out]): one ONNX Gemm."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        self.lin = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.lin.weight.copy_(_f32(weight))
            self.lin.bias.copy_(_f32(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


class ToVertexMajor(nn.Module):
    """[B, V·C] (row-major [V,C] per sample) → [V·B, C]."""

    def __init__(self, v: int, c: int) -> None:
        super().__init__()
        self.v, self.c = v, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, self.v, self.c).transpose(0, 1).reshape(-1, self.c)


class ChebMix(nn.Module):
    """Z = X Θ (+ the layer's bias on the order-0 columns), as operator input rows (vertex j, order o):
    x [R·B, in] (or [R, B·in]) → [R·K, B·out]."""

    def __init__(self, theta: np.ndarray, bias: np.ndarray, rows: int, k: int, out: int) -> None:
        super().__init__()
        b = np.zeros(theta.shape[1])
        b[:out] = bias  # order 0 = T_0 U: rows of U sum to 1, so a constant passes unchanged
        self.gemm = Gemm(theta.T, b)
        self.rows, self.k, self.out, self.inp = rows, k, out, theta.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.gemm(x.reshape(-1, self.inp)).reshape(self.rows, -1, self.k, self.out)  # [R,B,K,out]
        return z.transpose(1, 2).reshape(self.rows * self.k, -1)


class DenseOperator(nn.Module):
    """y = A z over rows: z [N, B·C] → [V, B·C] (A [V,N] dense; one MatMul)."""

    def __init__(self, a: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("a", _f32(a))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.a @ z


class BlockedOperator(nn.Module):
    """y = A z with A cut into per-patch dense blocks (`block_operator`): z [N, B·C] → [P·S, B·C]
    (one Gather of the halo rows, one batched MatMul)."""

    def __init__(self, halo_rows: np.ndarray, blocks: np.ndarray, channels: int) -> None:
        super().__init__()
        self.register_buffer("halo", torch.as_tensor(halo_rows, dtype=torch.long))
        self.register_buffer("blocks", _f32(blocks))
        self.parts, self.size, self.width = blocks.shape
        self.channels = int(channels)  # per sample: z is [N, B·channels]

    def floats_per_sample(self) -> int:
        """Floats per sample of the gathered halo plus the output (peak working set of this op)."""
        return (self.parts * self.width + self.parts * self.size) * self.channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        g = z.index_select(0, self.halo).reshape(self.parts, self.width, -1)
        return (self.blocks @ g).reshape(self.parts * self.size, -1)


class RestoreOrder(nn.Module):
    """Patch rows → the mesh's vertex order, batch first, plus a per-vertex offset:
    y [rows, B·C] → [B,V,C] + offset [V,C]."""

    def __init__(self, restore: np.ndarray, offset: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("restore", torch.as_tensor(restore, dtype=torch.long))
        self.register_buffer("offset", _f32(offset))
        self.v, self.c = offset.shape

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y.index_select(0, self.restore).reshape(self.v, -1, self.c).transpose(0, 1) + self.offset


class LeanFaceModel(nn.Module):
    """The same function as a FaceModel, regrouped for inference (module docstring).

    landmarks [B,468,3] mm → (vertices [B,V,3] mm, expressions [B,52] in [0,1]).
    """

    def __init__(self, model: nn.Module, patch_vertices: int = PATCH_VERTICES) -> None:
        super().__init__()
        model = model.eval()
        _check_activations(model)
        enc, dec = model.encoder, model.decoder
        self.num_landmarks = int(enc.lm_mean.shape[0])
        self.num_vertices = int(dec.mean_vertices.shape[0])
        lins = [m for m in enc.mlp if isinstance(m, nn.Linear)]
        w0, b0 = _wb(lins[0])
        w0 = w0 / float(enc.lm_scale)
        b0 = b0 - w0 @ enc.lm_mean.detach().double().numpy().reshape(-1)
        self.encoder = _mlp([(w0, b0)] + [_wb(m) for m in lins[1:]])
        self.expression_head = _mlp([_wb(m) for m in model.expression_head if isinstance(m, nn.Linear)])
        self.decoder_stages = nn.ModuleList(_lower_decoder(dec, patch_vertices))

    def bytes_per_sample(self) -> int:
        """Rough peak working memory per mesh of one forward pass (bytes): the largest blocked
        operator's gathered halo and output, doubled for allocator slack."""
        peak = max((m.floats_per_sample() for m in self.modules() if isinstance(m, BlockedOperator)), default=0)
        return 2 * 4 * (peak + self.num_vertices * 3)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """latent [B,Z] → vertices [B,V,3] mm."""
        x = z
        for stage in self.decoder_stages:
            x = stage(x)
        return x

    def forward(self, landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(landmarks.reshape(-1, self.num_landmarks * 3))
        return self.decode(z), torch.sigmoid(self.expression_head(z))


def _mlp(layers: list[tuple[np.ndarray, np.ndarray]]) -> nn.Sequential:
    out: list[nn.Module] = []
    for i, (w, b) in enumerate(layers):
        out.append(Gemm(w, b))
        if i < len(layers) - 1:
            out.append(nn.ELU())
    return nn.Sequential(*out)


def _check_activations(model: nn.Module) -> None:
    acts = {type(m) for m in model.modules() if isinstance(m, (nn.ELU, nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU))}
    if acts - {nn.ELU}:
        raise ValueError(f"lowering supports ELU activations only, found {sorted(a.__name__ for a in acts)}")


def _fold_into_first_conv(fc: nn.Linear, conv: ChebConv) -> tuple[np.ndarray, np.ndarray]:
    """fc (Z → V·C_in, row-major [V,C_in]) then the coarsest ChebConv as one affine map on the latent:
    (W [V·C_out, Z], b [V·C_out]). The conv is applied to fc's Z weight columns and to its bias, so
    nothing of size (V·C)² is formed, whatever the widths."""
    w_fc, b_fc = _wb(fc)
    v, cin = conv.num_vertices, conv.in_channels
    theta, bias = _cheb_weights(conv)  # [in, K·out], column o·out + c
    a = chebyshev_operator(conv.laplacian_matrix(), conv.K)  # [V, V·K], column j·K + o
    x = np.concatenate([w_fc.T, b_fc[None]]).reshape(-1, v, cin)  # Z+1 inputs [V, C_in]
    z = (x @ theta).reshape(len(x), v, conv.K, conv.out_channels).reshape(len(x), v * conv.K, conv.out_channels)
    y = np.stack([a @ zi for zi in z]).reshape(len(x), -1)  # [Z+1, V·out]
    y[-1] += np.tile(bias, v)
    return y[:-1].T, y[-1]


def _check_constant_preserving(a: sp.csr_matrix, k: int) -> None:
    """The order-0 columns of A (= U, or I) must keep constants (rows sum to 1), so a bias can ride in Z."""
    sums = np.asarray(a[:, 0::k].sum(axis=1)).ravel()
    if not np.allclose(sums, 1.0, atol=1e-6):
        raise ValueError("up-sampling rows must sum to 1 for the bias folding of the lowering")


def _lower_decoder(dec: nn.Module, patch_vertices: int) -> list[nn.Module]:
    """Decoder.layers() → lowered stages (module docstring)."""
    convs, ups = list(dec.convs), list(dec.ups)
    sizes = [c.num_vertices for c in convs] + [dec.head.num_vertices]
    up_mats = [u.matrix(sizes[i]) for i, u in enumerate(ups)]  # ups[i]: sizes[i] → sizes[i+1]
    # positions per level (coarse → fine) for patch layouts: the mean head, then least squares through U
    positions = [dec.mean_vertices.detach().double().numpy()]
    for u in reversed(up_mats):
        positions.insert(0, coarse_positions(positions[0], u))
    # fc then the coarsest ChebConv: one Gemm
    stages: list[nn.Module] = [Gemm(*_fold_into_first_conv(dec.fc, convs[0])), nn.ELU(),
                               ToVertexMajor(sizes[0], convs[0].out_channels)]
    layout = Layout.identity(sizes[0])
    layers = [(c, 1.0) for c in convs[1:]] + [(dec.head, float(dec.offset_scale))]
    for i, (conv, scale) in enumerate(layers):
        last = i == len(layers) - 1
        theta, bias = _cheb_weights(conv, scale)
        a = chebyshev_operator(conv.laplacian_matrix(), conv.K, up_mats[i])  # [V, V_in·K], col j·K + o
        _check_constant_preserving(a, conv.K)
        stages.append(ChebMix(theta, bias, layout.rows, conv.K, conv.out_channels))
        col_rows = (layout.pos[:, None] * conv.K + np.arange(conv.K)[None]).reshape(-1)
        if conv.num_vertices <= DENSE_MAX_VERTICES and not last:
            layout = Layout.identity(conv.num_vertices)
            dense = np.zeros((conv.num_vertices, layout_rows_k(col_rows)))
            dense[:, col_rows] = a.toarray()
            stages.append(DenseOperator(dense))
        else:
            layout = Layout.patches(positions[i + 1], patch_vertices)
            stages.append(BlockedOperator(*block_operator(a, layout, col_rows), conv.out_channels))
        if not last:
            stages.append(nn.ELU())
    stages.append(RestoreOrder(layout.pos, dec.mean_vertices.detach().double().numpy()))
    return stages


def layout_rows_k(col_rows: np.ndarray) -> int:
    """Rows of an operator input array addressed by `col_rows` (its largest index + 1)."""
    return int(col_rows.max()) + 1


def lower(model: nn.Module, patch_vertices: int = PATCH_VERTICES) -> LeanFaceModel:
    """`LeanFaceModel(model)` in eval mode (a FaceModel in, the same function out)."""
    return LeanFaceModel(model, patch_vertices).eval()
