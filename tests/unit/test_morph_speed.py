"""The additive (code 4p) morphed fitter's NLL, gradient and Hessian against a direct
bin-by-bin reference (issue 12, speed work): the fast paths (one BLAS product of the Jacobian
basis' pair products, the sparse entries, row subsets) must give the same numbers to 1e-12.

Reference, per toy, over every bin i (ν = z @ M; module docstring of lzflow.stats.morph_nll)::

    g = Σ_i (1 − n_i/ν_i) ∂ν_i + P (y − a)
    H = Σ_i (n_i/ν_i²) ∂ν_i ∂ν_iᵀ + Σ_i (1 − n_i/ν_i) ∂²ν_i + P
"""

from __future__ import annotations

import numpy as np
import pytest

from lzflow.stats.fit import BatchedFitter
from lzflow.stats.fitresult import FitConfig
from lzflow.stats.model import BinnedModel, ShapeSystematic
from lzflow.stats.morphing import code4p
from lzflow.stats.synthetic import simple_model


def _model(seed: int = 4, n_shape: int = 3) -> BinnedModel:
    """40 bins, 4 backgrounds, shape systematics on the signal and two backgrounds only (so that
    some basis rows are 0), bins from ~0.01 to ~30 expected events (dense and sparse)."""
    m0 = simple_model(n_bins=40, n_bkg=4, seed=seed)
    rng = np.random.default_rng(seed)
    T = np.vstack([m0.signal[None], m0.backgrounds])
    T = T * np.geomspace(0.02, 3.0, T.shape[1])[None, :]
    m0 = BinnedModel(signal=T[0], backgrounds=T[1:], names=m0.names, rel_unc=m0.rel_unc)
    systs = []
    for k in range(n_shape):
        up, down = T * (1 + 0.3 * rng.uniform(-1, 1, T.shape)), T * (1 + 0.3 * rng.uniform(-1, 1, T.shape))
        unaffected = [2, 3] if k else [0, 2]
        up[unaffected], down[unaffected] = T[unaffected], T[unaffected]
        systs.append(ShapeSystematic(f"s{k}", up, down))
    return m0.with_shape_systematics(systs)


def _reference(m: BinnedModel, lay, y: np.ndarray, counts: np.ndarray, aux_c: np.ndarray):
    """NLL, gradient and Hessian of one toy, bin by bin over all bins (float64)."""
    M, S, K = m.morph.M, m.morph.S, m.morph.K
    c, al = lay.split(y[None, :])
    c, al = c[0], al[0]
    f, f1, f2 = (v[0] for v in code4p(al[None, :]))
    mu = c[0]
    z = np.concatenate([c, mu * al, mu * f, al, f])
    nu = z @ M
    s0, a0, sb, ab = (M[S + j * K : S + (j + 1) * K] for j in range(4))
    dmu = M[0] + al @ s0 + f @ a0
    dal = mu * (s0 + f1[:, None] * a0) + sb + f1[:, None] * ab  # (K, n_bins)
    J = np.vstack([M[lay.cfree[lay.cfree > 0]], dal])
    if lay.mu_free:
        J = np.vstack([dmu[None], J])
    n = counts
    pos = n > 0
    nll = nu.sum() - n[pos] @ np.log(nu[pos]) + 0.5 * lay.prec @ (y - aux_c) ** 2
    one_r = 1.0 - np.where(pos, n / np.where(pos, nu, 1.0), 0.0)
    w = np.where(pos, n / np.where(pos, nu, 1.0) ** 2, 0.0)
    g = J @ one_r + lay.prec * (y - aux_c)
    H = (J * w) @ J.T + np.diag(lay.prec)
    ia = lay.nc + np.arange(K)
    H[ia, ia] += f2 * ((mu * a0 + ab) @ one_r)
    if lay.mu_free:
        cross = (s0 + f1[:, None] * a0) @ one_r
        H[0, ia] += cross
        H[ia, 0] += cross
    return nll, g, H


@pytest.mark.parametrize("threshold", [0.3, 1e-9, 1e9])  # dense + sparse, all dense, all sparse
@pytest.mark.parametrize("mu_fixed", [None, 0.7, 0.0])
def test_nll_gradient_hessian_equal_bin_by_bin_reference(threshold, mu_fixed):
    m = _model()
    f = BatchedFitter(m, FitConfig(dense_threshold=threshold, hessian_float32=False))
    rng = np.random.default_rng(7)
    n = 9
    truth = np.r_[1.0, np.ones(m.n_bkg), 0.4, -1.3, 0.8]
    counts = rng.poisson(m.expected(1.0, truth[1:]), size=(n, m.n_bins)).astype(float)
    aux = np.tile(np.r_[np.full(m.n_bkg, 1.02), 0.1, -0.2, 0.3], (n, 1))
    data = f.prepare(counts, aux)
    rows = f.newton_rows(data, mu_fixed)
    lay = rows.lay
    y = rng.uniform(0.6, 1.4, (n, lay.p))
    y[:, -m.n_shape :] = rng.uniform(-1.8, 1.8, (n, m.n_shape))  # both code-4p regimes (|α| < 1, > 1)
    nll, g = rows.start(y), rows.grad(y)
    h = rows.hess(None)
    sub = np.arange(n) % 3 != 1
    h_sub = rows.hess(sub)
    assert h_sub.shape == (lay.p, lay.p, int(sub.sum()))
    for t in range(n):
        r_nll, r_g, r_h = _reference(m, lay, y[t], counts[t], rows.aux_c[t])
        assert nll[t] == pytest.approx(r_nll, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(g[t], r_g, rtol=0, atol=1e-12 * max(1.0, np.abs(r_g).max()))
        np.testing.assert_allclose(h[..., t], r_h, rtol=0, atol=1e-12 * np.abs(r_h).max())
    np.testing.assert_allclose(h_sub, h[..., sub], rtol=0, atol=1e-14 * np.abs(h).max())


def test_float32_hessian_close_and_subnormal_free():
    """The single-precision Hessian (default) is the double one to float32 rounding, and its
    pair products hold no subnormal float32 values (~100× slower products)."""
    m = _model(seed=9)
    rng = np.random.default_rng(3)
    counts = rng.poisson(m.expected(1.0), size=(6, m.n_bins)).astype(float)
    out = []
    for f32 in (False, True):
        f = BatchedFitter(m, FitConfig(dense_threshold=0.3, hessian_float32=f32))
        rows = f.newton_rows(f.prepare(counts), None)
        y = np.tile(np.r_[1.1, np.full(m.n_bkg, 0.95), 0.3, -0.6, 1.2], (6, 1))
        rows.start(y)
        rows.grad(y)
        out.append(rows.hess(None))
        GG = rows.lay.GG
        tiny = (GG != 0) & (np.abs(GG) < np.finfo(np.float32).tiny)
        assert not tiny.any()
    np.testing.assert_allclose(out[1], out[0], rtol=0, atol=2e-6 * np.abs(out[0]).max())


def test_line_search_subset_evaluates_only_pending_rows():
    """After the parent took some rows' trial points, a line-search subset evaluates only the
    others: their NLL and the ν the parent takes equal a full evaluation; taken rows give +inf."""
    m = _model(seed=5)
    f = BatchedFitter(m, FitConfig(dense_threshold=0.3, hessian_float32=False))
    rng = np.random.default_rng(8)
    n = 8
    counts = rng.poisson(m.expected(1.0), size=(n, m.n_bins)).astype(float)
    rows = f.newton_rows(f.prepare(counts), None)
    p = rows.lay.p
    y0 = np.tile(np.r_[1.0, np.ones(m.n_bkg), 0.0, 0.0, 0.0], (n, 1))
    y1 = y0 + rng.uniform(-0.3, 0.3, (n, p))
    y2 = y0 + rng.uniform(-0.3, 0.3, (n, p))
    rows.start(y0)
    rows.trial(y0)
    fail = np.arange(n) % 2 == 0
    sub = rows.subset(fail)
    f1 = sub.trial(y1[fail])
    ok1 = np.arange(fail.sum()) < 2  # the parent takes the first two
    rows.take_trial(sub, ok1)
    f2 = sub.trial(y2[fail])
    assert np.all(np.isinf(f2[ok1]))
    ref = f.newton_rows(f.prepare(counts), None)
    np.testing.assert_allclose(f1, ref.start(y1)[fail], rtol=1e-13)
    np.testing.assert_allclose(f2[~ok1], ref.start(y2)[fail][~ok1], rtol=1e-13)
    ok2 = ~ok1
    rows.take_trial(sub, ok2)
    rows.advance()
    want = np.where(fail[:, None], 0.0, y0)
    want[np.flatnonzero(fail)[ok1]] = y1[fail][ok1]
    want[np.flatnonzero(fail)[ok2]] = y2[fail][ok2]
    want[~fail] = y0[~fail]
    np.testing.assert_allclose(rows.cur.nuD, ref.point(want).nuD, rtol=1e-13)
    np.testing.assert_allclose(rows.cur.nue, ref.point(want).nue, rtol=1e-13)
