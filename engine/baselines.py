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
  held-out tenth of the training data from a log grid. Targets on the same inputs share one
  `RidgeDesign` (standardisation and eigendecomposition).

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

    def encode_linear(self, coeffs: np.ndarray, basis: np.ndarray, neutral: np.ndarray) -> np.ndarray:
        """Codes [N,k] of vertices = neutral + coeffs @ basis, without forming them (coeffs [N,C])."""
        comp_t = self.components.T  # [D,k]
        off = (np.asarray(neutral, dtype=np.float64).reshape(-1) - self.mean) @ comp_t
        return off + _flat(coeffs) @ (np.asarray(basis, dtype=np.float64) @ comp_t)

    def reconstruct(self, vertices: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(vertices))


@dataclass
class RidgeDesign:
    """Standardised inputs and the factorisations that every ridge target on the same x reuses.

    Rows [:n_val] validate the regulariser, rows [n_val:] fit it; the final fit uses all rows."""

    x_mean: np.ndarray
    x_std: np.ndarray
    xs: np.ndarray  # [N,Dx] standardised
    n_val: int
    evals: np.ndarray  # eigen-decomposition of xs[n_val:]ᵀ xs[n_val:]
    evecs: np.ndarray
    xtx: np.ndarray  # xsᵀ xs (all rows)

    @classmethod
    def of(cls, x: np.ndarray, val_fraction: float = 0.1) -> "RidgeDesign":
        x2 = _flat(x)
        x_mean, x_std = x2.mean(axis=0), x2.std(axis=0) + 1e-8
        xs = (x2 - x_mean) / x_std
        n_val = max(1, int(len(xs) * val_fraction))
        evals, evecs = np.linalg.eigh(xs[n_val:].T @ xs[n_val:])
        return cls(x_mean, x_std, xs, n_val, np.maximum(evals, 0.0), evecs, xs.T @ xs)


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
    def fit(cls, x: np.ndarray | RidgeDesign, y: np.ndarray, out_basis: np.ndarray | None = None,
            out_offset: np.ndarray | None = None, out_shape: tuple[int, ...] | None = None,
            alphas: tuple[float, ...] = ALPHAS) -> "RidgeBaseline":
        """x [N,...] inputs (or their `RidgeDesign`), y [N,...] targets. The first tenth of the rows
        chooses alpha from `alphas` × mean eigenvalue (MSE in output space), then all rows fit."""
        d = x if isinstance(x, RidgeDesign) else RidgeDesign.of(x)
        y2 = _flat(y)
        y_mean = y2.mean(axis=0)
        yc = y2 - y_mean
        basis = None if out_basis is None else np.asarray(out_basis, np.float64)
        gram = None if basis is None else basis @ basis.T
        alpha = _choose_alpha(d, yc, alphas, gram)
        w = np.linalg.solve(d.xtx + alpha * np.eye(len(d.xtx)), d.xs.T @ yc)
        if out_shape is None:
            out_shape = tuple(np.shape(y)[1:]) if basis is None else (-1,)
        return cls(d.x_mean, d.x_std, y_mean, w, alpha, out_shape, basis,
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


def _choose_alpha(d: RidgeDesign, yc: np.ndarray, alphas: tuple[float, ...], gram: np.ndarray | None) -> float:
    """The alpha (absolute) of the grid with the smallest validation error."""
    xt, yt, xv, yv = d.xs[d.n_val:], yc[d.n_val:], d.xs[:d.n_val], yc[:d.n_val]
    proj = d.evecs.T @ (xt.T @ yt)  # [Dx, Dy]
    xv_e = xv @ d.evecs
    scale = float(np.mean(d.evals))
    best, best_err = alphas[0] * scale, np.inf
    for a in alphas:
        e = xv_e @ (proj / (d.evals + a * scale)[:, None]) - yv
        err = float(np.mean(e * e) if gram is None else np.einsum("ni,ij,nj->", e, gram, e) / len(e))
        if err < best_err:
            best, best_err = a * scale, err
    return best
