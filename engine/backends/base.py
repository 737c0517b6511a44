"""The inference back-end protocol shared by every implementation, and its small shared helpers."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from engine.assets import MODELS_DIR, NUM_LANDMARKS

ENGINE_CACHE_DIR = MODELS_DIR / "engine_cache"


@runtime_checkable
class Backend(Protocol):
    """Runs the face model: landmarks [B,468,3] f32 (normalised mm) → (vertices [B,V,3] f32 mm,
    expressions [B,52] f32 in [0,1]).

    `name` is the registry name ("onnxruntime", "tensorrt", …); `device` says where it runs
    ("cpu (2 threads)", "cuda:0 (NVIDIA H100, FP16)"). `infer` returns arrays the caller owns (never
    views of buffers the next call overwrites). `close` frees the back-end's resources; it is idempotent.
    """

    name: str
    device: str

    def infer(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendConfig:
    """What every back-end factory receives (the registry fills it from `create_backend`'s arguments).

    model: an in-memory FaceModel to run instead of loading `model_path` (tests, benchmarks);
    onnx_path: the ONNX file for ONNX-based back-ends (default: `models/decoder.onnx` for the shipped
    checkpoint, else an export cached under `cache_dir`); precision: "fp16" or "fp32" (TensorRT);
    max_batch: the largest batch a TensorRT profile accepts; threads: CPU threads (None = back-end default);
    cuda_graphs: replay captured CUDA graphs for repeated batch sizes on GPU back-ends.
    """

    model_path: Path = MODELS_DIR / "face_model.pt"
    onnx_path: Path | None = None
    model: object | None = field(default=None, compare=False)
    precision: str = "fp16"
    max_batch: int = 4096
    cache_dir: Path = ENGINE_CACHE_DIR
    threads: int | None = None
    cuda_graphs: bool = True


def as_landmark_batch(landmarks: np.ndarray) -> np.ndarray:
    """C-contiguous float32 [B,468,3]; a single [468,3] frame becomes [1,468,3]. ValueError on other shapes."""
    x = np.asarray(landmarks)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (NUM_LANDMARKS, 3) or x.shape[0] < 1:
        raise ValueError(f"landmarks must have shape [B,{NUM_LANDMARKS},3], got {list(np.shape(landmarks))}")
    return np.ascontiguousarray(x, dtype=np.float32)
