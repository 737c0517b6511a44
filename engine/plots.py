"""Figures for docs/ (matplotlib, Agg backend; build and evaluation time only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.mesh_graph import unique_edges


def _front_edges(vertices: np.ndarray, triangles: np.ndarray, i: int, j: int, min_z: float | None) -> np.ndarray:
    """Unique mesh edges as 2-D segments [E,2,2] on axes (i, j); only edges with both ends at
    z > min_z when given (hides the back of the head in the front view)."""
    e = unique_edges(triangles)
    if min_z is not None:
        e = e[(vertices[e[:, 0], 2] > min_z) & (vertices[e[:, 1], 2] > min_z)]
    return vertices[e][:, :, [i, j]]


def plot_embedding(vertices: np.ndarray, triangles: np.ndarray, aligned: np.ndarray, embedded: np.ndarray,
                   residual_mm: np.ndarray, loops: list[np.ndarray], contour_ids: np.ndarray, path: Path) -> None:
    """The landmark embedding on the dense head, four panels: front (x, y), side (z, y), mouth and
    right-eye close-ups. Grey: head wireframe (mm); coloured: similarity-aligned canonical landmarks
    by their distance to the head surface (residual_mm [468]); black: the embedded points [468,3];
    red: the hole rims (`loops`, vertex-id arrays) and the embedded contour landmarks (`contour_ids`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    fig, axes = plt.subplots(2, 2, figsize=(12, 11.5), layout="constrained")
    vmax = max(6.0, float(np.percentile(residual_mm, 95)))
    mouth_c = vertices[loops[-1]].mean(axis=0)
    eye_c = vertices[loops[0]].mean(axis=0)
    views = (
        (axes[0, 0], 0, 1, "front (x, y)", -20.0, None),
        (axes[0, 1], 2, 1, "side (z, y)", None, None),
        (axes[1, 0], 0, 1, "mouth close-up (x, y)", -20.0, (mouth_c, 32.0)),
        (axes[1, 1], 0, 1, "right eye close-up (x, y)", 0.0, (eye_c, 16.0)),
    )
    sc = None
    for ax, i, j, title, min_z, zoom in views:
        ax.add_collection(LineCollection(_front_edges(vertices, triangles, i, j, min_z), colors="0.78",
                                         linewidths=0.4, zorder=1))
        for lp in loops:
            ring = vertices[np.append(lp, lp[0])]
            ax.plot(ring[:, i], ring[:, j], color="tab:red", lw=1.0, zorder=2)
        sc = ax.scatter(aligned[:, i], aligned[:, j], s=14 if zoom else 9, c=residual_mm, cmap="viridis",
                        vmin=0, vmax=vmax, zorder=3, label="canonical landmarks after similarity")
        ax.scatter(embedded[:, i], embedded[:, j], s=6 if zoom else 2, c="k", zorder=4,
                   label="embedded on the head")
        ax.scatter(embedded[contour_ids, i], embedded[contour_ids, j], s=10 if zoom else 3, c="tab:red",
                   zorder=5, label="embedded eye / inner-lip contour")
        if zoom is not None:
            (c, half) = zoom
            ax.set_xlim(c[i] - half, c[i] + half)
            ax.set_ylim(c[j] - half * 0.75, c[j] + half * 0.75)
        else:
            ax.autoscale_view()
        ax.set_aspect("equal")
        ax.set_title(title)
        ax.set_xlabel("mm")
    axes[0, 0].legend(loc="lower left", fontsize=8)
    fig.colorbar(sc, ax=axes, shrink=0.5, label="distance to head surface after similarity (mm)")
    fig.suptitle(f"MediaPipe landmarks on the dense head. Residual after similarity: mean "
                 f"{residual_mm.mean():.2f} mm, median {np.median(residual_mm):.2f} mm, "
                 f"p95 {np.percentile(residual_mm, 95):.2f} mm")
    fig.savefig(path, dpi=100)
    plt.close(fig)
