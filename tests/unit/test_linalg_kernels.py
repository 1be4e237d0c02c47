"""The compiled Newton directions (:mod:`lzflow.stats._linalg_kernels`) against the numpy
formulation they replace, bit for bit: scaled modified Cholesky, solves, decrements."""

from __future__ import annotations

import numpy as np
import pytest

from lzflow.stats import _linalg as la
from lzflow.stats import _linalg_kernels  # noqa: F401  loads numba: newton_direction takes the compiled path


def test_the_compiled_path_is_taken_once_numba_is_loaded() -> None:
    """The comparisons below are compiled against numpy: with numba loaded (here by the import
    above; in a run by the log-morph kernels) newton_direction uses the compiled loops. Without it
    (the rate-only fits) it is :func:`lzflow.stats._linalg.numpy_newton_direction`, the reference here."""
    assert la._compiled_kernels() is _linalg_kernels


def _stack(rng: np.random.Generator, p: int, n: int):
    a = rng.normal(size=(n, p, p + 3))
    h = np.einsum("nik,njk->ijn", a, a)  # positive definite, toy-last
    h[:, :, ::5] -= 3.0 * np.eye(p)[:, :, None]  # indefinite: pivots replaced by 1
    h[2, 2, ::7] = 0.0  # zero curvature: max(|g|, 1)
    h[3, 3, 1::11] = np.nan
    g = 3.0 * rng.normal(size=(n, p))
    g[1::13, 2] = np.nan
    free = rng.random((n, p)) > 0.2
    return h, g, free


@pytest.mark.parametrize(("p", "n"), [(17, 300), (16, 7), (12, 1), (5, 64)])
def test_newton_direction_bit_identical(p: int, n: int) -> None:
    h, g, free = _stack(np.random.default_rng(p * 1000 + n), p, n)
    lower = np.tril(np.ones((p, p), dtype=bool))
    with np.errstate(all="ignore"):
        d0, dec0, L0, s0 = la.numpy_newton_direction(h.copy(), g, free)
        d1, dec1, L1, s1 = la.newton_direction(h.copy(), g, free)
    assert np.isfinite(dec0).sum() > n // 2  # the comparison is not over NaNs only
    np.testing.assert_array_equal(d1, d0)
    np.testing.assert_array_equal(dec1, dec0)
    np.testing.assert_array_equal(s1, s0)
    np.testing.assert_array_equal(L1[lower], L0[lower])  # the upper triangle is never read


@pytest.mark.parametrize(("p", "n"), [(17, 40), (16, 3)])
def test_reuse_direction_bit_identical(p: int, n: int) -> None:
    rng = np.random.default_rng(p + n)
    h, g, free = _stack(rng, p, n)
    with np.errstate(all="ignore"):
        _, _, L, s = la.newton_direction(h, g, free)
        g2 = rng.normal(size=(n, p))
        ref = -(la.cho_solve_toylast(L, g2.T * s) * s).T
        d, dec = la.reuse_direction(L, s, g2)
    np.testing.assert_array_equal(d, ref)
    np.testing.assert_array_equal(dec, -np.einsum("ti,ti->t", g2, ref))


def test_direction_solves_the_newton_system() -> None:
    """On positive-definite Hessians with every parameter free the direction solves H d = −g."""
    rng = np.random.default_rng(3)
    p, n = 17, 20
    a = rng.normal(size=(n, p, p + 3))
    h = np.einsum("nik,njk->ijn", a, a) + 0.5 * np.eye(p)[:, :, None]
    g = rng.normal(size=(n, p))
    d, dec, _, _ = la.newton_direction(h.copy(), g, np.ones((n, p), dtype=bool))
    resid = np.einsum("ijn,nj->ni", h, d) + g
    assert np.max(np.abs(resid)) < 1e-9 * np.max(np.abs(g))
    np.testing.assert_allclose(dec, np.einsum("ni,ni->n", g, -d), rtol=0, atol=0)
    assert np.all(dec > 0)
