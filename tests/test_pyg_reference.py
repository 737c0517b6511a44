"""The torch_geometric twin of the decoder gives the FaceModel's outputs (it is the benchmark's anchor)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.export import random_landmarks
from engine.hierarchy import load_hierarchy
from engine.model import FaceModel, ModelConfig

pytest.importorskip("torch_geometric.nn", reason="torch_geometric not installed")

from engine.pyg_reference import PygReference, PygReferenceBackend, upsample_matrix  # noqa: E402


@pytest.fixture(scope="module")
def hierarchy():
    return load_hierarchy()


@pytest.mark.parametrize("cfg", [ModelConfig(latent=8, channels=(4, 4, 6, 6, 8), K=3, encoder_hidden=(32,),
                                             expression_hidden=16),
                                 ModelConfig(latent=8, channels=(5, 3, 6, 2, 8), K=6, encoder_hidden=(32,),
                                             expression_hidden=16)])
def test_equals_face_model(hierarchy, cfg):
    torch.manual_seed(1)
    model = FaceModel.build(hierarchy, cfg, lm_scale=30.0, offset_scale=4.0).eval()
    ref = PygReference.from_face_model(model, hierarchy)
    x = torch.from_numpy(random_landmarks(3, seed=5))
    with torch.no_grad():
        v, e = model(x)
        rv, re = ref(x)
    assert rv.shape == v.shape and re.shape == e.shape
    assert float((v - v.mean()).abs().max()) > 1.0  # the graph layers change the output noticeably
    torch.testing.assert_close(rv, v, atol=5e-4, rtol=1e-5)
    torch.testing.assert_close(re, e)
    # per-sample ≡ batched (the batched edge_index offsets are right)
    with torch.no_grad():
        one = torch.cat([ref(x[i:i + 1])[0] for i in range(3)])
    torch.testing.assert_close(one, rv, atol=5e-4, rtol=1e-5)


def test_reference_uses_pyg_layers(hierarchy):
    from torch_geometric.nn import ChebConv as PygChebConv

    model = FaceModel.build(hierarchy, ModelConfig(latent=4, channels=(2, 2, 2, 2, 2), K=2, encoder_hidden=(8,),
                                                   expression_hidden=4))
    ref = PygReference.from_face_model(model, hierarchy)
    n_pyg = sum(isinstance(m, PygChebConv) for m in ref.modules())
    n_ours = sum(k in ("conv", "head") for k, _ in model.decoder.layers())
    assert n_pyg == n_ours == hierarchy.num_levels


def test_upsample_matrix_rows_are_barycentric(hierarchy):
    m = upsample_matrix(hierarchy.up_idx[0], hierarchy.up_w[0], hierarchy.sizes[1]).to_dense()
    assert m.shape == (hierarchy.sizes[0], hierarchy.sizes[1])
    np.testing.assert_allclose(m.sum(dim=1).numpy(), 1.0, atol=1e-5)


def test_wrong_hierarchy_is_reported(hierarchy):
    from engine.hierarchy import MeshHierarchy

    model = FaceModel.build(hierarchy, ModelConfig(latent=4, channels=(2, 2, 2, 2, 2), K=2, encoder_hidden=(8,),
                                                   expression_hidden=4))
    other = MeshHierarchy(hierarchy.vertices[:1], hierarchy.triangles[:1], hierarchy.nbr_idx[:1],
                          hierarchy.nbr_mask[:1], [], [], [])
    with pytest.raises(ValueError, match="hierarchy"):
        PygReference.from_face_model(model, other)


def test_backend_wrapper(hierarchy):
    model = FaceModel.build(hierarchy, ModelConfig(latent=4, channels=(2, 2, 2, 2, 2), K=2, encoder_hidden=(8,),
                                                   expression_hidden=4)).eval()
    be = PygReferenceBackend(model, hierarchy)
    x = random_landmarks(2)
    v, e = be.infer(x)
    with torch.no_grad():
        tv, te = model(torch.from_numpy(x))
    np.testing.assert_allclose(v, tv.numpy(), atol=5e-4)
    assert e.shape == (2, 52)
    be.close()
