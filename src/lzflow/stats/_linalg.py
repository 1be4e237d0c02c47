"""Small batched dense linear algebra, vectorised over toys.

``numpy.linalg.solve`` on a stack of 12×12 matrices costs a few µs per matrix (one LAPACK call
each). Here the stack is stored *toy-last* — ``(p, p, n)``. The Newton directions
(:func:`newton_direction`, :func:`reuse_direction`) run the Jacobi-scaled modified Cholesky and its
solves in compiled loops (:mod:`lzflow.stats._linalg_kernels`, ≈ p³/3 multiply-adds per toy),
bit-identical to the numpy formulation kept here (:func:`cholesky_toylast`,
:func:`cho_solve_toylast`: one contiguous numpy operation over all toys per step, whose
interpreter cost — ≈ 170 µs per direction for 1 to 4 toys, the common case in the further starts
of the shape fits — dominated there).
"""

from __future__ import annotations

import numpy as np

from ._linalg_kernels import scaled_factor, scaled_solve

__all__ = ["unpack_symmetric", "cholesky_toylast", "cho_solve_toylast", "newton_direction",
           "reuse_direction"]


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
    scale = np.empty((h.shape[0], h.shape[2]))
    scaled_factor(h, np.ascontiguousarray(g), np.ascontiguousarray(free), _FLOOR, scale)
    d = np.empty(g.shape[::-1])  # toy-last, returned transposed as before (the einsum below sums in its order)
    scaled_solve(h, scale, np.ascontiguousarray(g), d)
    d = d.T
    dec = -np.einsum("ti,ti->t", g, d)
    return d, dec, h, scale


def reuse_direction(L: np.ndarray, scale: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Direction and decrement with a previously factorised (scaled) Hessian."""
    d = np.empty(g.shape[::-1])
    scaled_solve(L, scale, np.ascontiguousarray(g), d)
    d = d.T
    return d, -np.einsum("ti,ti->t", g, d)
