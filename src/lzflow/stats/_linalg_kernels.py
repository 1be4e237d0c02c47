"""Compiled (numba) loops of :mod:`lzflow.stats._linalg`: the Jacobi-scaled modified Cholesky and
its solves for a toy-last stack ``(p, p, n)``, toy by toy in one compiled loop instead of one numpy
call per column (each of which costs microseconds of interpreter and temporaries when a further
start of the shape fits is left with a few toys).

Used by :func:`lzflow.stats._linalg.newton_direction` only where numba is loaded already (the
log-morph fits); bit-identical to the numpy formulation, which the rate-only fits run
(:func:`~lzflow.stats._linalg.numpy_newton_direction`, with
:func:`~lzflow.stats._linalg.cho_solve_toylast`): every element sees the same IEEE operations in the
same order — ``(h_jk s_j) s_k``, ``l_ij = a_ij / l_jj``, ``a_ik − l_ij l_kj``, the forward and back
substitutions row by row — with no fast-math (no reassociation, no fused multiply-add), so the
Newton directions and hence every fit are unchanged to the last bit (tested:
``tests/unit/test_linalg_kernels.py``). Only the lower triangle of a factor is formed (the numpy
version also updates the upper one, which nothing reads).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["scaled_factor", "scaled_solve"]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def scaled_factor(h, g, free, floor, scale):  # pragma: no cover - compiled
    """In place for each toy t: ``scale[:, t]`` = S = diag(H)^{-1/2} on the free set (0 on the held
    set; a diagonal ≤ 0 or NaN replaced by max(|g_j|, 1), NaN kept), ``h[:, :, t]`` ← the lower
    modified-Cholesky factor of S H S with unit diagonal (pivots ≤ ``floor`` or NaN → 1).
    ``h`` ``(p, p, n)``, ``g`` ``(n, p)``, ``free`` ``(n, p)`` bool, ``scale`` ``(p, n)``."""
    p, n = h.shape[0], h.shape[2]
    for t in range(n):
        for j in range(p):
            dj = h[j, j, t]
            if not dj > 0.0:
                a = abs(g[t, j])
                dj = a if (a != a or a > 1.0) else 1.0  # np.maximum(|g|, 1): NaN propagates
            scale[j, t] = 1.0 / np.sqrt(dj) if free[t, j] else 0.0
        for j in range(p):
            for k in range(j + 1):
                h[j, k, t] = h[j, k, t] * scale[j, t] * scale[k, t]
            h[j, j, t] = 1.0
        for j in range(p):  # right-looking, as cholesky_toylast
            piv = h[j, j, t]
            if not piv > floor:
                piv = 1.0
            ljj = np.sqrt(piv)
            h[j, j, t] = ljj
            for i in range(j + 1, p):
                h[i, j, t] = h[i, j, t] / ljj
            for i in range(j + 1, p):
                lij = h[i, j, t]
                for k in range(j + 1, i + 1):
                    h[i, k, t] = h[i, k, t] - lij * h[k, j, t]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def scaled_solve(L, scale, g, d):  # pragma: no cover - compiled
    """``d[:, t] = −S (L Lᵀ)⁻¹ S g[t]`` for each toy t (``L`` ``(p, p, n)`` lower factors, ``scale``
    ``(p, n)``, ``g`` ``(n, p)``, ``d`` ``(p, n)``: toy-last like the numpy version's result, whose
    transpose the callers return): the operations of ``cho_solve_toylast(L, gᵀ S) · S``."""
    p, n = L.shape[0], L.shape[2]
    y = np.empty(p)
    for t in range(n):
        for i in range(p):
            y[i] = g[t, i] * scale[i, t]
        for i in range(p):
            y[i] = y[i] / L[i, i, t]
            for k in range(i + 1, p):
                y[k] = y[k] - L[k, i, t] * y[i]
        for i in range(p - 1, -1, -1):
            y[i] = y[i] / L[i, i, t]
            for k in range(i):
                y[k] = y[k] - L[i, k, t] * y[i]
        for i in range(p):
            d[i, t] = -(y[i] * scale[i, t])
