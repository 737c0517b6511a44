"""ChebConv ≡ torch_geometric's ChebConv (same weights, same graph), batched ≡ per-sample, ONNX ≡ eager."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.chebconv import ChebConv, edge_index_from_neighbours, scaled_laplacian_weights
from engine.hierarchy import load_hierarchy, neighbour_lists

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


def test_sparse_training_path_equals_gather_path():
    h = load_hierarchy()
    idx, mask = h.nbr_idx[0], h.nbr_mask[0]
    conv = ChebConv(4, 6, 6, idx, mask).train()
    x = torch.randn(2, len(idx), 4)
    dense = conv(x)
    conv.sparse_training = True
    assert torch.allclose(conv(x), dense, atol=1e-5)


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
