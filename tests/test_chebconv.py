"""ChebConv ≡ torch_geometric's ChebConv (same weights, same graph), batched ≡ per-sample, ONNX ≡ eager;
the channel-major training path ≡ the gather path (values and gradients)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.chebconv import ChebConv, scaled_laplacian_weights
from engine.hierarchy import load_hierarchy
from engine.mesh_graph import neighbour_lists
from engine.pyg_reference import edge_index_from_neighbours
from engine.sparse_ops import CSROperator, sparse_from_padded

pyg = pytest.importorskip("torch_geometric.nn", reason="torch_geometric not installed")


def _graphs():
    # a square with one diagonal, a triangle fan with an isolated-degree-1 tail, and the real head
    small = np.array([[0, 1, 2], [0, 2, 3]])
    fan = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [4, 3, 5]])
    yield "square", 4, small
    yield "fan", 6, fan
    h = load_hierarchy()
    yield "head-level2", len(h.vertices[2]), h.triangles[2]


@pytest.mark.parametrize("K", [1, 2, 3, 6])
@pytest.mark.parametrize("cin,cout", [(5, 7), (7, 3)])  # recurrence path and Clenshaw path
def test_equals_pyg(K, cin, cout):
    torch.manual_seed(0)
    for name, n, tris in _graphs():
        idx, mask = neighbour_lists(n, tris)
        ours = ChebConv(cin, cout, K, idx, mask)
        ref = pyg.ChebConv(cin, cout, K, normalization="sym")
        ours.copy_to_pyg(ref)
        x = torch.randn(3, n, cin)
        ei = edge_index_from_neighbours(idx, mask)
        want = torch.stack([ref(x[b], ei, lambda_max=2.0) for b in range(3)])
        got = ours(x)
        assert torch.allclose(got, want, atol=1e-5), (name, (got - want).abs().max())
        # batched ≡ per-sample
        one = torch.cat([ours(x[b:b + 1]) for b in range(3)])
        assert torch.allclose(one, got, atol=1e-6)


@pytest.mark.parametrize("K", [1, 2, 6])
@pytest.mark.parametrize("cin,cout", [(4, 6), (6, 3)])  # recurrence path and Clenshaw path
def test_channel_major_training_path_equals_gather_path(K, cin, cout):
    """forward_channel_major (CSR matmuls, hand-written adjoints) ≡ forward (padded gathers):
    outputs, input gradients and parameter gradients, on the head's level-1 graph."""
    h = load_hierarchy()
    torch.manual_seed(0)
    conv = ChebConv(cin, cout, K, h.nbr_idx[1], h.nbr_mask[1]).train()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(3, len(h.nbr_idx[1]), cin, requires_grad=True)
    g = torch.randn(3, len(h.nbr_idx[1]), cout)
    want = conv(x)
    gx_want, gw_want, gb_want = torch.autograd.grad((want * g).sum(), (x, conv.weight, conv.bias))
    got = conv.forward_channel_major(x.permute(2, 1, 0)).permute(2, 1, 0)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    gx, gw, gb = torch.autograd.grad((got * g).sum(), (x, conv.weight, conv.bias))
    for a, b in ((gx, gx_want), (gw, gw_want), (gb, gb_want)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), (a - b).abs().max()


def test_csr_operator_adjoints_pass_gradcheck():
    """The custom autograd nodes (A x, Chebyshev terms, Clenshaw) have the right adjoints (float64),
    and the stored transpose is the transpose. A is *not* symmetric (random weights on the fan
    graph plus a diagonal), so using A for Aᵀ would fail."""
    idx, mask = neighbour_lists(6, np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [4, 3, 5]]))
    w = np.random.default_rng(0).uniform(-1, 1, idx.shape) * mask
    a = sparse_from_padded(torch.as_tensor(idx).long(), torch.as_tensor(w, dtype=torch.float64),
                           torch.full((6,), 0.3, dtype=torch.float64), 6)
    assert not torch.equal(a.to_dense(), a.to_dense().t())
    op = CSROperator(a, copies=2)
    dense = torch.block_diag(a.to_dense(), a.to_dense())
    assert torch.equal(op.at.to_dense(), dense.t()) and torch.equal(op.a.to_dense(), dense)
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    z = torch.randn(4, 2, 6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradcheck(lambda t: op.chebyshev_terms(t, 4), (x,))
    assert torch.autograd.gradcheck(op.clenshaw, (z,))
    # and their values: T_k(A) x by dense powers; Clenshaw = Σ_k T_k(A) z_k
    t = [torch.eye(12, dtype=torch.float64), dense]
    for _ in range(2, 4):
        t.append(2 * dense @ t[-1] - t[-2])
    flat = x.detach().reshape(12, 3)
    want = torch.stack([tk @ flat for tk in t]).reshape(4, 2, 6, 3)
    assert torch.allclose(op.chebyshev_terms(x, 4), want)
    zz = z.detach().reshape(4, 12, 3)
    assert torch.allclose(op.clenshaw(z).reshape(12, 3), sum(tk @ zk for tk, zk in zip(t, zz)))
    with pytest.raises(ValueError, match="planes"):
        op(torch.randn(3, 6, 1, dtype=torch.float64))


@pytest.mark.parametrize("lambda_max", [2.0, 1.5])
def test_general_lambda_max(lambda_max):
    idx, mask = neighbour_lists(6, np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [4, 3, 5]]))
    ours = ChebConv(3, 2, 4, idx, mask, lambda_max=lambda_max)
    ref = pyg.ChebConv(3, 2, 4, normalization="sym")
    ours.copy_to_pyg(ref)
    x = torch.randn(6, 3)
    ei = edge_index_from_neighbours(idx, mask)
    assert torch.allclose(ours(x[None])[0], ref(x, ei, lambda_max=lambda_max), atol=1e-5)


def test_load_from_pyg_roundtrip():
    idx, mask = neighbour_lists(4, np.array([[0, 1, 2], [0, 2, 3]]))
    ref = pyg.ChebConv(2, 3, 3, normalization="sym")
    ours = ChebConv(2, 3, 3, idx, mask)
    ours.load_from_pyg(ref)
    x = torch.randn(4, 2)
    ei = edge_index_from_neighbours(idx, mask)
    assert torch.allclose(ours(x[None])[0], ref(x, ei, lambda_max=2.0), atol=1e-6)


def test_scaled_laplacian_weights_equal_dense_matrix():
    # dense L~ = 2L/λ − I with L = I − D^-1/2 A D^-1/2, on the fan graph, for λ = 2 and λ = 1.5
    tris = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [4, 3, 5]])
    idx, mask = neighbour_lists(6, tris)
    a = np.zeros((6, 6))
    for i in range(6):
        a[i, idx[i][mask[i] > 0]] = 1.0
    dis = 1.0 / np.sqrt(a.sum(axis=1))
    lap = np.eye(6) - dis[:, None] * a * dis[None, :]
    for lam in (2.0, 1.5):
        want = 2.0 * lap / lam - np.eye(6)
        w, diag = scaled_laplacian_weights(idx, mask, lam)
        got = np.diag(diag).astype(np.float64)
        for i in range(6):
            for d in range(idx.shape[1]):
                got[i, idx[i, d]] += w[i, d]
        assert np.allclose(got, want, atol=1e-6)
        conv = ChebConv(1, 1, 2, idx, mask, lambda_max=lam)
        x = torch.randn(1, 6, 1)
        assert np.allclose(conv.laplacian(x)[0, :, 0].numpy(), want @ x[0, :, 0].numpy(), atol=1e-5)


def test_onnx_export_matches_eager(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    h = load_hierarchy()
    idx, mask = h.nbr_idx[1], h.nbr_mask[1]
    conv = ChebConv(4, 8, 6, idx, mask).eval()
    x = torch.randn(2, len(idx), 4)
    path = tmp_path / "cheb.onnx"
    torch.onnx.export(conv, (x,), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x3 = torch.randn(3, len(idx), 4)
    got = sess.run(None, {"x": x3.numpy()})[0]
    assert np.allclose(got, conv(x3).detach().numpy(), atol=1e-5)
