"""Figures for docs/ (matplotlib, Agg backend; build and evaluation time only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_embedding(vertices: np.ndarray, triangles: np.ndarray, aligned: np.ndarray, embedded: np.ndarray,
                   residual_mm: np.ndarray, path: Path) -> None:
    """Front and side views: head vertices (grey), similarity-aligned canonical landmarks (coloured by
    their distance to the head surface, mm) and the embedded points on the head (black dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 6.5))
    for ax, (i, j, title) in zip(axes, ((0, 1, "front (x, y)"), (2, 1, "side (z, y)"))):
        front = vertices[:, 2] > -40 if i == 0 else np.ones(len(vertices), bool)
        ax.scatter(vertices[front, i], vertices[front, j], s=1, c="0.8", label="dense head vertices")
        sc = ax.scatter(aligned[:, i], aligned[:, j], s=10, c=residual_mm, cmap="viridis",
                        vmin=0, vmax=max(6.0, float(np.percentile(residual_mm, 95))),
                        label="canonical landmarks after similarity")
        ax.scatter(embedded[:, i], embedded[:, j], s=2, c="k", label="embedded on the head")
        ax.set_aspect("equal")
        ax.set_title(title)
        ax.set_xlabel("mm")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.colorbar(sc, ax=axes, shrink=0.8, label="distance to head surface after similarity (mm)")
    fig.suptitle(f"MediaPipe landmarks on the dense head: residual mean {residual_mm.mean():.2f} mm, "
                 f"median {np.median(residual_mm):.2f} mm, p95 {np.percentile(residual_mm, 95):.2f} mm")
    fig.savefig(path, dpi=110)
    plt.close(fig)
