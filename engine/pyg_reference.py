"""The face model's decoder rebuilt from `torch_geometric.nn.ChebConv`: the benchmark's reference anchor.

Same encoder and expression head (shared with the FaceModel), same weights; only the decoder differs:
graph convolutions are PyG message passing over a batched `edge_index` (the B copies of each mesh
level as one disjoint graph, as PyG batches graphs) with the symmetric normalisation recomputed each
call, and the barycentric up-sampling is a sparse [V_fine, V_coarse] matrix product — the way the
original CoMA code runs. `tests/test_pyg_reference.py` checks it gives the FaceModel's outputs.

    model = PygReference.from_face_model(face_model, hierarchy)
    vertices [B,V,3], expressions [B,52] = model(landmarks [B,468,3])
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from engine.hierarchy import MeshHierarchy
from engine.mesh_graph import padded_matrix
from engine.sparse_ops import to_torch_coo


def _level_of(size: int, hierarchy: MeshHierarchy) -> int:
    if size not in hierarchy.sizes:
        raise ValueError(f"no hierarchy level has {size} vertices (levels: {hierarchy.sizes}); "
                         "pass the hierarchy the model was built on")
    return hierarchy.sizes.index(size)


def upsample_matrix(up_idx: np.ndarray, up_w: np.ndarray, num_coarse: int) -> torch.Tensor:
    """Sparse COO [V_fine, V_coarse] float32 (coalesced) with row i = weights up_w[i] at columns up_idx[i]."""
    return to_torch_coo(padded_matrix(up_idx, np.asarray(up_w, dtype=np.float32), None, num_coarse), torch.float32)


def edge_index_from_neighbours(nbr_idx: np.ndarray, nbr_mask: np.ndarray) -> torch.Tensor:
    """PyG `edge_index` [2,E] (source j → target i) of the padded neighbour lists."""
    rows, cols = np.nonzero(np.asarray(nbr_mask) > 0)
    tgt = rows
    src = np.asarray(nbr_idx)[rows, cols]
    return torch.as_tensor(np.stack([src, tgt]), dtype=torch.long)


class PygChebLayer(nn.Module):
    """A `torch_geometric.nn.ChebConv` on one fixed mesh, applied to batched features x [B,V,C]."""

    def __init__(self, conv, edge_index: torch.Tensor, num_vertices: int) -> None:
        super().__init__()
        self.conv = conv
        self.num_vertices = num_vertices
        self.register_buffer("edge_index", edge_index)
        self._batched: dict[int, torch.Tensor] = {}

    def batched_edges(self, b: int) -> torch.Tensor:
        """edge_index of b disjoint copies of the mesh: [2, b·E], cached per batch size."""
        ei = self._batched.get(b)
        if ei is None:
            offs = (torch.arange(b, device=self.edge_index.device) * self.num_vertices).repeat_interleave(
                self.edge_index.shape[1])
            ei = self._batched[b] = self.edge_index.repeat(1, b) + offs
        return ei

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, v, c = x.shape
        y = self.conv(x.reshape(b * v, c), self.batched_edges(b), lambda_max=2.0)
        return y.reshape(b, v, -1)


class SparseUpsample(nn.Module):
    """x [B,Vc,C] → [B,Vf,C] by one sparse-dense matmul with the [Vf,Vc] up-sampling matrix."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.matrix = matrix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, vc, c = x.shape
        y = torch.sparse.mm(self.matrix, x.permute(1, 0, 2).reshape(vc, b * c))
        return y.reshape(-1, b, c).permute(1, 0, 2)


class PygReference(nn.Module):
    """FaceModel twin whose decoder is built from torch_geometric layers (inference only)."""

    def __init__(self, face_model: nn.Module, steps: list[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.face_model = face_model  # encoder, expression head and the decoder's fc/statistics
        self.steps = nn.ModuleList([m for _, m in steps])
        self.kinds = [k for k, _ in steps]
        dec = face_model.decoder
        self.coarse_vertices, self.coarse_channels = dec.coarse_vertices, dec.coarse_channels

    @classmethod
    def from_face_model(cls, model: nn.Module, hierarchy: MeshHierarchy) -> "PygReference":
        """Copy `model`'s decoder into PyG ChebConvs (same K, channels, weights) on `hierarchy`'s meshes."""
        from torch_geometric.nn import ChebConv as PygChebConv

        steps: list[tuple[str, nn.Module]] = []
        for kind, mod in model.decoder.layers():
            if kind in ("conv", "head"):
                lvl = _level_of(mod.num_vertices, hierarchy)
                ref = PygChebConv(mod.in_channels, mod.out_channels, mod.K, normalization="sym",
                                  bias=mod.bias is not None)
                mod.copy_to_pyg(ref)
                ei = edge_index_from_neighbours(hierarchy.nbr_idx[lvl], hierarchy.nbr_mask[lvl])
                steps.append((kind, PygChebLayer(ref, ei, mod.num_vertices)))
            elif kind == "up":
                fine = _level_of(mod.num_out, hierarchy)
                steps.append((kind, SparseUpsample(upsample_matrix(hierarchy.up_idx[fine], hierarchy.up_w[fine],
                                                                   hierarchy.sizes[fine + 1]))))
            elif kind in ("fc", "act"):
                steps.append((kind, mod))
            else:
                raise ValueError(f"unknown decoder layer kind {kind!r}")
        return cls(model, steps).eval()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """latent [B,Z] → vertices [B,V,3] mm."""
        x = z
        for kind, step in zip(self.kinds, self.steps):
            x = step(x)
            if kind == "fc":
                x = x.reshape(z.shape[0], self.coarse_vertices, self.coarse_channels)
        dec = self.face_model.decoder
        return x * dec.offset_scale + dec.mean_vertices

    def forward(self, landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.face_model.encode(landmarks)
        return self.decode(z), self.face_model.expressions(z)


class PygReferenceBackend:
    """The PyG twin behind the `Backend` protocol (CPU), for the benchmark's "pyg_reference" row."""

    name = "pyg_reference"

    def __init__(self, model: nn.Module, hierarchy: MeshHierarchy) -> None:
        self.model = PygReference.from_face_model(model.eval().cpu(), hierarchy)
        self.device = f"cpu ({torch.get_num_threads()} threads, torch_geometric message passing)"

    def infer(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """landmarks [B,468,3] f32 → (vertices [B,V,3] f32 mm, expressions [B,52] f32)."""
        from engine.backends.base import as_landmark_batch

        with torch.inference_mode():
            v, e = self.model(torch.from_numpy(as_landmark_batch(landmarks)))
        return v.numpy(), e.numpy()

    def close(self) -> None:
        self.model = None
