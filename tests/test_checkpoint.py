"""Checkpoint round trip and each refusal: missing, no hash, corrupt, other version, other topology."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from engine.checkpoint import FORMAT_VERSION, hash_path, load_face_model, read_checkpoint, save_checkpoint, sha256_file
from engine.errors import CheckpointError, UserError
from engine.hierarchy import build_hierarchy, load_hierarchy
from engine.model import FaceModel, ModelConfig

TINY = ModelConfig(latent=4, channels=(2, 2, 2, 2, 2), K=2, encoder_hidden=(8,), expression_hidden=8)


@pytest.fixture(scope="module")
def hier():
    return load_hierarchy()


@pytest.fixture()
def saved(tmp_path, hier):
    torch.manual_seed(0)
    model = FaceModel.build(hier, TINY, lm_scale=10.0)
    path = tmp_path / "face_model.pt"
    digest = save_checkpoint(model, hier, path, train_info={"steps": 3, "note": "test"})
    return model, path, digest


def test_round_trip_restores_the_same_function(saved, hier):
    model, path, digest = saved
    assert hash_path(path).read_text().split() == [digest, "face_model.pt"]
    assert digest == sha256_file(path)
    loaded = load_face_model(path, hier)
    assert not loaded.training and loaded.cfg == TINY
    x = model.encoder.lm_mean[None] + torch.randn(2, 468, 3)
    with torch.no_grad():
        (va, ea), (vb, eb) = model.eval()(x), loaded(x)
    assert torch.equal(va, vb) and torch.equal(ea, eb)
    payload = read_checkpoint(path)
    assert payload["format_version"] == FORMAT_VERSION and payload["train_info"]["note"] == "test"
    assert not list(path.parent.glob("*.tmp"))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"face_model.pt not found; rebuild it with `python main.py train`"):
        load_face_model(tmp_path / "face_model.pt")


def test_missing_hash_is_refused(saved):
    _, path, _ = saved
    hash_path(path).unlink()
    with pytest.raises(CheckpointError, match=r"has no content hash \(face_model.sha256 is missing\)"):
        load_face_model(path)


def test_corrupt_checkpoint(saved):
    _, path, _ = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        load_face_model(path)
    msg = str(err.value)
    assert "face_model.pt is corrupt (sha256 mismatch" in msg and "python main.py train" in msg
    assert "\n" not in msg and isinstance(err.value, UserError)


def test_truncated_file_with_a_matching_hash_is_unreadable(saved):
    _, path, _ = saved
    path.write_bytes(path.read_bytes()[:1000])
    hash_path(path).write_text(f"{sha256_file(path)}  {path.name}\n")
    with pytest.raises(CheckpointError, match=r"is unreadable \(.*\); rebuild it"):
        load_face_model(path)


def _rewrite(path, **changes):
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)
    hash_path(path).write_text(f"{sha256_file(path)}  {path.name}\n")


def test_other_format_version_is_refused(saved):
    _, path, _ = saved
    _rewrite(path, format_version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match=rf"has format version {FORMAT_VERSION + 1}, this build reads "
                                              rf"version {FORMAT_VERSION}; rebuild it"):
        load_face_model(path)


def test_other_topology_is_refused(saved):
    _, path, _ = saved
    ico = trimesh.creation.icosphere(subdivisions=3, radius=80.0)
    other = build_hierarchy(np.asarray(ico.vertices, np.float32), np.asarray(ico.faces, np.int32), levels=4, factor=2.5)
    with pytest.raises(CheckpointError, match=r"was trained for another mesh topology \(hash [0-9a-f]{12}, "
                                              r"the mesh hierarchy has [0-9a-f]{12}\); rebuild it"):
        load_face_model(path, other)


def test_state_that_does_not_fit_is_refused(saved, hier):
    _, path, _ = saved
    payload = torch.load(path, weights_only=True)
    state = dict(payload["state_dict"])
    state["decoder.old_graph_buffer"] = torch.zeros(3)
    _rewrite(path, state_dict=state)
    with pytest.raises(CheckpointError, match=r"does not fit this model: it has unknown tensors \(1, e.g. "
                                              r"decoder.old_graph_buffer\)"):
        load_face_model(path, hier)
