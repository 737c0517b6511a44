"""Linear baselines the face model is compared with (`engine.evaluate`), fitted on training data.

Training heads are linear in their coefficients: vertices = neutral + c @ B, with c [N,C] the
head-model coefficients and B [C,V·3] the identity/expression basis (`engine.train.HeadData`). Both
baselines use that to stay exact and small (nothing of size N × V·3 is ever formed):

- `PCABaseline`: principal components of the training vertices, `k` = the model's latent size. It
  *auto-encodes clean vertices* (project, reconstruct), as CoMA compared — it sees the answer, so it
  measures what a linear k-dimensional code can represent, not what can be inferred from landmarks.
  Components come from the SVD of (c − c̄) Rᵀ with Bᵀ = Q R, so they are Q W (the SVD in C dims).
  Its expression weights come from a ridge regression from its k-dim code to the 52 weights.
- `RidgeBaseline`: ridge regression from inputs x (the same noisy normalised landmarks the model
  sees, [468·3], standardised) to targets y; with `out_basis` the targets are coefficients and the
  prediction is y @ out_basis + out_offset (vertices), and the validation error that picks the
  regulariser is measured in output space (‖e B‖² = e (B Bᵀ) eᵀ). The regulariser is picked on a
  held-out tenth of the training data from a log grid.

Pure numpy (float64 inside), no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHAS = tuple(float(a) for a in 10.0 ** np.arange(-4, 3.5, 0.5))  # × the mean eigenvalue of XᵀX


def _flat(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).reshape(len(a), -1)


@dataclass
class PCABaseline:
    """mean [D], components [k,D] (orthonormal rows), D = V·3; vertices are [N,V,3] mm."""

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray  # [min(N,C)] cumulative explained-variance ratio (all components)

    @classmethod
    def fit(cls, vertices: np.ndarray, k: int) -> "PCABaseline":
        """Direct fit on vertices [N,V,3] (small N·V only)."""
        x = _flat(vertices)
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        return cls(mean, vt[:k], np.cumsum(s ** 2) / np.sum(s ** 2))

    @classmethod
    def fit_linear(cls, coeffs: np.ndarray, basis: np.ndarray, neutral: np.ndarray, k: int) -> "PCABaseline":
        """Exact PCA of vertices = neutral + coeffs @ basis without forming them.

        coeffs [N,C], basis [C,D], neutral [V,3] or [D]."""
        c = _flat(coeffs)
        b = np.asarray(basis, dtype=np.float64)
        q, r = np.linalg.qr(b.T)  # Bᵀ = Q R: Q [D,C] orthonormal, R [C,C]
        c_mean = c.mean(axis=0)
        _, s, wt = np.linalg.svd((c - c_mean) @ r.T, full_matrices=False)
        comps = (q @ wt.T).T  # [C,D], orthonormal rows
        mean = np.asarray(neutral, dtype=np.float64).reshape(-1) + c_mean @ b
        return cls(mean, comps[:k], np.cumsum(s ** 2) / np.sum(s ** 2))

    @property
    def k(self) -> int:
        return len(self.components)

    def encode(self, vertices: np.ndarray) -> np.ndarray:
        """[N,V,3] → codes [N,k]."""
        return (_flat(vertices) - self.mean) @ self.components.T

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """[N,k] → [N,V,3] float32 mm."""
        return (self.mean + codes @ self.components).reshape(len(codes), -1, 3).astype(np.float32)

    def reconstruct(self, vertices: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(vertices))


@dataclass
class RidgeBaseline:
    """y ≈ ((x − x_mean) / x_std) @ weights + y_mean; outputs = y (or y @ out_basis + out_offset)."""

    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    weights: np.ndarray  # [Dx, Dy]
    alpha: float  # absolute regulariser on the standardised inputs
    out_shape: tuple[int, ...]
    out_basis: np.ndarray | None = None  # [Dy, Dout]
    out_offset: np.ndarray | None = None  # [Dout]

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, out_basis: np.ndarray | None = None,
            out_offset: np.ndarray | None = None, out_shape: tuple[int, ...] | None = None,
            alphas: tuple[float, ...] = ALPHAS, val_fraction: float = 0.1) -> "RidgeBaseline":
        """x [N,...] inputs, y [N,...] targets. The first `val_fraction` of rows choose alpha (MSE in
        output space), then the model is refitted on all rows."""
        xs_all, y2 = _flat(x), _flat(y)
        n = len(xs_all)
        x_mean, x_std = xs_all.mean(axis=0), xs_all.std(axis=0) + 1e-8
        y_mean = y2.mean(axis=0)
        xs, yc = (xs_all - x_mean) / x_std, y2 - y_mean
        gram = None if out_basis is None else np.asarray(out_basis, np.float64) @ np.asarray(out_basis, np.float64).T
        n_val = max(1, int(n * val_fraction))
        alpha = _choose_alpha(xs[n_val:], yc[n_val:], xs[:n_val], yc[:n_val], alphas, gram)
        w = np.linalg.solve(xs.T @ xs + alpha * np.eye(xs.shape[1]), xs.T @ yc)
        if out_shape is None:
            out_shape = tuple(y.shape[1:]) if out_basis is None else (-1,)
        return cls(x_mean, x_std, y_mean, w, alpha, out_shape,
                   None if out_basis is None else np.asarray(out_basis, np.float64),
                   None if out_offset is None else np.asarray(out_offset, np.float64).reshape(-1))

    def predict_targets(self, x: np.ndarray) -> np.ndarray:
        """[N,...] → [N,Dy] float64 (coefficients when fitted with an out_basis)."""
        return ((_flat(x) - self.x_mean) / self.x_std) @ self.weights + self.y_mean

    def predict(self, x: np.ndarray) -> np.ndarray:
        """[N,...] → [N,*out_shape] float32 outputs."""
        y = self.predict_targets(x)
        if self.out_basis is not None:
            y = y @ self.out_basis + (0.0 if self.out_offset is None else self.out_offset)
        return y.reshape(len(y), *self.out_shape).astype(np.float32)


def _choose_alpha(xt: np.ndarray, yt: np.ndarray, xv: np.ndarray, yv: np.ndarray, alphas: tuple[float, ...],
                  gram: np.ndarray | None) -> float:
    """The alpha (absolute) of the grid with the smallest validation error; one eigendecomposition."""
    evals, evecs = np.linalg.eigh(xt.T @ xt)
    proj = evecs.T @ (xt.T @ yt)  # [Dx, Dy]
    xv_e = xv @ evecs
    scale = float(np.mean(np.maximum(evals, 0.0)))
    best, best_err = alphas[0] * scale, np.inf
    for a in alphas:
        e = xv_e @ (proj / (np.maximum(evals, 0.0) + a * scale)[:, None]) - yv
        err = float(np.mean(e * e) if gram is None else np.einsum("ni,ij,nj->", e, gram, e) / len(e))
        if err < best_err:
            best, best_err = a * scale, err
    return best
