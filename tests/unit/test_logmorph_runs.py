"""The log-morph kernels skip each systematic's exact zeros (issue 12, speed): a systematic whose
coefficients vanish on some samples (the default 40 GeV workspace's NR-yield systematics on the ER
samples, 3,354 of its 5,573 template entries) is summed over its run of entries only
(:func:`lzflow.stats.logmorph_nll.entry_runs`). The compiled NLL, gradient and Hessian equal a
dense evaluation of the formulas (every sample × bin, numpy) to ≤ 1e-12 relative.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lzflow.stats.fit import BatchedFitter
from lzflow.stats.fitresult import FitConfig
from lzflow.stats.logmorph import basis_functions
from lzflow.stats.model import BinnedModel, ShapeSystematic
from lzflow.stats.synthetic import simple_model
from lzflow.stats.toys import generate_toys, generation_point

WS = Path(__file__).resolve().parents[1] / "data" / "workspace_m40_systematics.json.gz"


def _dense(m: BinnedModel, lay, y: np.ndarray, counts: np.ndarray, aux: np.ndarray):
    """NLL, gradient and Hessian of one toy over every sample × bin, straight from the formulas of
    :mod:`lzflow.stats.logmorph_nll`: U = T exp(Σ B C), ν = Σ c U, g = Σ q ∂ν + P (y − a),
    H = Σ w ∂ν ∂νᵀ + Σ q ∂²ν + P (q = 1 − n/ν, w = n/ν²)."""
    b = m.morph
    c, al = (v[0] for v in lay.split(y[None, :]))
    B0, B1, B2 = basis_functions(al, b.interpolation)  # (K, M)
    U = b.T * np.exp(np.einsum("km,mksi->si", B0, b.C))
    D, E = (np.einsum("km,mksi->ksi", Bx, b.C) for Bx in (B1, B2))
    nu = c @ U
    pos = counts > 0
    q = 1.0 - np.divide(counts, nu, out=np.zeros_like(nu), where=pos)
    w = np.divide(counts, nu * nu, out=np.zeros_like(nu), where=pos)
    a = np.zeros(lay.p)
    a[lay.cols > 0] = aux[lay.cols[lay.cols > 0] - 1]
    nc, K = lay.nc, b.K
    J = np.concatenate([U[lay.cfree], np.einsum("s,si,ksi->ki", c, U, D)])  # ∂ν/∂y (p, n)
    H = (J * w) @ J.T + np.diag(lay.prec)
    cross = np.einsum("i,si,ksi->sk", q, U, D)[lay.cfree]  # Σ_i q ∂²ν/∂c_s∂α_k
    H[:nc, nc:] += cross
    H[nc:, :nc] += cross.T
    H[nc:, nc:] += np.einsum("i,s,si,ksi,lsi->kl", q, c, U, D, D)
    H[nc:, nc:] += np.diag(np.einsum("i,s,si,ksi->k", q, c, U, E))
    assert H.shape == (nc + K, nc + K)
    nll = nu.sum() - counts[pos] @ np.log(nu[pos]) + 0.5 * lay.prec @ (y - a) ** 2
    return nll, J @ q + lay.prec * (y - a), H


def _check(m: BinnedModel, n: int = 6, seed: int = 8):
    f = BatchedFitter(m, FitConfig(hessian_float32=False))
    gen, _ = generation_point(m, 1.0)
    counts, aux = generate_toys(m, gen, np.arange(n), 3, 400000, 0, "sb")
    data = f.prepare(counts, aux)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for mu_fixed in (None, 1.5):
        lay = f._morph[mu_fixed is None].at(mu_fixed)
        y = np.tile(gen[lay.cols], (n, 1)) * rng.uniform(0.7, 1.3, (n, lay.p))
        y[:, -m.n_shape:] = rng.uniform(-3.5, 3.5, (n, m.n_shape))  # every knot interval, and beyond ±2σ
        rows = f.newton_rows(data, mu_fixed)
        nll, g = rows.start(y), rows.grad(y)
        h = rows.hess(None)
        for t in range(n):
            rn, rg, rh = _dense(m, lay, y[t], counts[t].astype(float), aux[t])
            assert nll[t] == pytest.approx(rn, rel=1e-12)
            # gradients cancel near a minimum: relative to the largest component
            np.testing.assert_allclose(g[t], rg, rtol=1e-12, atol=1e-12 * np.abs(rg).max())
            np.testing.assert_allclose(h[..., t], rh, rtol=1e-12, atol=1e-12 * np.abs(rh).max())
            worst = max(worst, abs(nll[t] / rn - 1), np.abs(g[t] - rg).max() / np.abs(rg).max(),
                        np.abs(h[..., t] - rh).max() / np.abs(rh).max())
    return f, worst


@pytest.mark.parametrize("interpolation", ["log_pchip", "log_quartic"])
def test_default_workspace_rows_equal_the_dense_formulas(interpolation):
    """Default 40 GeV workspace: the NR-yield systematics (k = 3, 4) act on the NR, B8 and hep
    samples only, whose 2,219 entries lead the layout; the detector ones on all 5,573."""
    from lzflow.workspace import read_workspace, workspace_model

    ws = read_workspace(WS)
    m = workspace_model(ws)
    m = m.with_shape_systematics(m.shape_systematics, interpolation)
    f, worst = _check(m)
    lay = f._morph[True]
    assert lay.runs.tolist() == [[0, 3, 0, 5573], [3, 5, 0, 2219]]
    assert worst < 1e-12


def _disjoint() -> BinnedModel:
    """Two systematics on different samples (s0 on background 2 only, s1 on the signal only): no run
    covers every entry, so the exponents start from 0 where none acts."""
    m0 = simple_model(n_bins=12, n_bkg=3, seed=4)
    rng = np.random.default_rng(4)
    T = np.vstack([m0.signal[None], m0.backgrounds])
    systs = []
    for k, s in enumerate((3, 0)):
        up, down, up2, down2 = (T.copy() for _ in range(4))
        for arr, lo, hi in ((up, 1.05, 1.4), (down, 0.6, 0.95), (up2, 1.3, 1.9), (down2, 0.4, 0.8)):
            arr[s] = T[s] * rng.uniform(lo, hi, T.shape[1])
        systs.append(ShapeSystematic(f"s{k}", up, down, up2, down2))
    return m0.with_shape_systematics(systs, "log_pchip")


def test_disjoint_systematics_rows_equal_the_dense_formulas():
    m = _disjoint()
    f, worst = _check(m)
    runs = f._morph[True].runs
    X = f._morph[True].Tx.size
    assert len(runs) == 2 and not (runs[0, 2] == 0 and runs[0, 3] == X)  # the zero-start path
    assert all(r[3] - r[2] < X for r in runs)
    assert worst < 1e-12


def test_pchip_rows_equal_the_numpy_basis():
    """The compiled log_pchip basis rows (:func:`pchip_rows`) are bit for bit those of
    :func:`basis_functions` on the columns of :func:`active_basis` less its zero stand-in (3 rows for
    the intervals ending at α = 0, else 4): inside every knot interval, on the knots, just inside and
    beyond ±2σ, and NaN; the rows after the last are 0 (row 0)."""
    from lzflow.stats._logmorph_kernels import pchip_rows
    from lzflow.stats.logmorph import active_basis

    rng = np.random.default_rng(11)
    special = np.r_[-2.0, -1.0, 0.0, 1.0, 2.0, np.nextafter(2.0, 0), np.nextafter(-2.0, 0), -5.0, 5.0, 2.5, -3.7, np.nan]
    alpha = np.concatenate([rng.uniform(-5.0, 5.0, 300), special, rng.uniform(-2.0, 2.0, 3)]).reshape(-1, 3)
    n, K = alpha.shape
    cols, mask = active_basis(alpha, "log_pchip")
    ref = [np.take_along_axis(b, cols, axis=-1) for b in basis_functions(alpha, "log_pchip")]  # (n, K, 4)
    out = [np.empty((n, 4 * K)) for _ in range(3)]
    Ri = np.empty((n, 4 * K), dtype=np.int64)
    Rs = np.empty((n, K + 1), dtype=np.int64)
    pchip_rows(alpha, 9, *out, Ri, Rs)
    for t in range(n):
        keep = mask[t] > 0  # (K, 4)
        assert Rs[t].tolist() == np.r_[0, np.cumsum(keep.sum(axis=1))].tolist()
        m = Rs[t, K]
        for o, r in zip(out, ref):
            np.testing.assert_array_equal(o[t, :m], r[t][keep])
            assert np.all(o[t, m:] == 0.0)
        np.testing.assert_array_equal(Ri[t, :m], (cols[t] + 9 * np.arange(K)[:, None])[keep])
        assert np.all(Ri[t, m:] == 0)
    assert (Rs[:, K] < 4 * K).any() and (Rs[:, K] == 4 * K).any()
    assert np.isnan(out[0][-2, :Rs[-2, K]]).any() and not np.isnan(out[0][:-2]).any()
