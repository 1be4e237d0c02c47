"""Small batched dense linear algebra, vectorised over toys.

``numpy.linalg.solve`` on a stack of 12×12 matrices costs a few µs per matrix (one LAPACK call
each). Here the stack is stored *toy-last* — ``(p, p, n)``. The Newton directions
(:func:`newton_direction`, :func:`reuse_direction`) run the Jacobi-scaled modified Cholesky and its
solves either in compiled loops (:mod:`lzflow.stats._linalg_kernels`, ≈ p³/3 multiply-adds per toy)
or in the numpy formulation kept here (:func:`cholesky_toylast`, :func:`cho_solve_toylast`: one
contiguous numpy operation over all toys per step), bit for bit the same directions. The compiled
loops are used when numba is loaded already, i.e. by the log-morph (shape-systematics) fits, whose
own kernels load it and whose further starts factor 1 to 4 toys at a time (≈ 170 µs of numpy
interpreter cost per direction there). The rate-only fits of the default analysis factor blocks
of ~512 toys, where numpy's per-step cost is small, and do not import numba: importing it and
loading the cached kernels cost a toy or merge job 0.3–0.6 CPU-s (and their first compilation,
once per install, seconds), more than the compiled directions save there (issue 16).
"""

from __future__ import annotations

import sys
from types import ModuleType

import numpy as np

__all__ = ["unpack_symmetric", "cholesky_toylast", "cho_solve_toylast", "newton_direction",
           "numpy_newton_direction", "reuse_direction"]


def unpack_symmetric(packed: np.ndarray, iu: np.ndarray, ju: np.ndarray, p: int) -> np.ndarray:
    """``packed`` (n, p(p+1)/2) upper-triangle entries → ``(p, p, n)`` symmetric stack."""
    pt = packed.T
    a = np.empty((p, p, packed.shape[0]))
    a[iu, ju] = pt
    a[ju, iu] = pt
    return a


#: pivots of the scaled Hessian at or below this are replaced by 1 (modified Cholesky)
_FLOOR = 1e-13


def cholesky_toylast(a: np.ndarray, floor: float = _FLOOR) -> np.ndarray:
    """In-place lower Cholesky factor of each ``a[:, :, t]`` (symmetric, unit diagonal expected).

    Pivots ≤ ``floor`` are replaced by 1 (modified Cholesky): the factor then describes a
    positive-definite matrix and the Newton direction stays a descent direction.
    Only the lower triangle of the result is meaningful.
    """
    p = a.shape[0]
    for j in range(p):
        piv = a[j, j]
        bad = ~(piv > floor)
        if bad.any():
            piv = np.where(bad, 1.0, piv)
        ljj = np.sqrt(piv)
        a[j, j] = ljj
        if j + 1 < p:
            col = a[j + 1 :, j] / ljj
            a[j + 1 :, j] = col
            a[j + 1 :, j + 1 :] -= col[:, None, :] * col[None, :, :]
    return a


def cho_solve_toylast(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``L Lᵀ x = b``; ``L`` (p, p, n) lower factors, ``b`` (p, n)."""
    p = L.shape[0]
    y = np.array(b, dtype=np.float64, copy=True)
    for i in range(p):
        y[i] /= L[i, i]
        if i + 1 < p:
            y[i + 1 :] -= L[i + 1 :, i] * y[i]
    for i in range(p - 1, -1, -1):
        y[i] /= L[i, i]
        if i:
            y[:i] -= L[i, :i] * y[i]
    return y


def newton_direction(
    h: np.ndarray, g: np.ndarray, free: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Newton direction on the free subspace of each toy.

    ``h`` (p, p, n) Hessians (toy-last, overwritten), ``g`` (n, p) gradients, ``free`` (n, p).
    Solves ``H_FF d_F = −g_F`` with ``d_A = 0`` on the active (bound-held) set, using Jacobi
    scaling ``S = diag(H)^{-1/2}`` and a modified Cholesky. Returns ``(d, λ², L, scale)``, with
    ``λ² = −gᵀd = g_Fᵀ H_FF⁻¹ g_F`` the squared Newton decrement (½λ² estimates the NLL distance
    to the minimum) and the factor/scale for :func:`reuse_direction`.
    Zero-curvature free directions (e.g. μ when no event falls where the signal is) get a
    curvature max(|g|, 1), i.e. a step of at most one unit; bounds and line search do the rest.
    """
    kernels = _compiled_kernels()
    if kernels is None:
        return numpy_newton_direction(h, g, free)
    scale = np.empty((h.shape[0], h.shape[2]))
    kernels.scaled_factor(h, np.ascontiguousarray(g), np.ascontiguousarray(free), _FLOOR, scale)
    d = np.empty(g.shape[::-1])  # toy-last, returned transposed as before (the einsum below sums in its order)
    kernels.scaled_solve(h, scale, np.ascontiguousarray(g), d)
    d = d.T
    dec = -np.einsum("ti,ti->t", g, d)
    return d, dec, h, scale


def numpy_newton_direction(
    h: np.ndarray, g: np.ndarray, free: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`newton_direction` in numpy (one operation over all toys per step): what the
    rate-only fits run, and the reference the compiled loops equal bit for bit."""
    p = h.shape[0]
    idx = np.arange(p)
    gt = g.T
    diag = h[idx, idx]
    tiny = ~(diag > 0)
    if tiny.any():
        diag = np.where(tiny, np.maximum(np.abs(gt), 1.0), diag)
    scale = np.where(free.T, 1.0 / np.sqrt(diag), 0.0)
    h *= scale[:, None, :]
    h *= scale[None, :, :]
    h[idx, idx] = 1.0  # unit diagonal; active rows/columns are decoupled (zero off-diagonal)
    L = cholesky_toylast(h)
    d = -(cho_solve_toylast(L, gt * scale) * scale).T
    return d, -np.einsum("ti,ti->t", g, d), L, scale


def reuse_direction(L: np.ndarray, scale: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Direction and decrement with a previously factorised (scaled) Hessian."""
    kernels = _compiled_kernels()
    if kernels is None:
        d = -(cho_solve_toylast(L, g.T * scale) * scale).T
        return d, -np.einsum("ti,ti->t", g, d)
    d = np.empty(g.shape[::-1])
    kernels.scaled_solve(L, scale, np.ascontiguousarray(g), d)
    d = d.T
    return d, -np.einsum("ti,ti->t", g, d)


def _compiled_kernels() -> ModuleType | None:
    """:mod:`lzflow.stats._linalg_kernels` if numba is loaded (module docstring), else None."""
    if "numba" not in sys.modules:
        return None
    from . import _linalg_kernels

    return _linalg_kernels
