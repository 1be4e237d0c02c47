"""Toy p-values, inversion, expected bands, PCL, coverage, toys vs asymptotics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest, norm

from lzflow.stats import (
    asymptotic_limits,
    crossing,
    limits_from_curves,
    pvalue_curves,
    pvalues_from_toys,
    refine_grid,
    run_toys,
    toy_limits,
)
from lzflow.stats.request import ToyRequest
from lzflow.stats.bands import expected_bands, quantile_with_error
from lzflow.stats.pvalues import Ensemble
from lzflow.stats.synthetic import simple_model


# ----------------------------------------------------------------------------- unit tests
def test_pvalues_from_toys_conventions():
    q_sb = np.array([0.0, 0.0, 0.5, 1.0, 2.0, 3.0, np.inf, np.nan])
    q_b = np.array([0.5, 1.0, 2.0, 4.0, 6.0])
    pv = pvalues_from_toys(1.0, q_sb, q_b)
    assert pv.n_sb == 7  # the NaN toy is excluded (and counted by Ensemble.n_excluded)
    assert pv.clsb == pytest.approx(4 / 7)  # q ≥ q_obs, +inf included
    assert pv.clb == pytest.approx(4 / 5)
    assert pv.cls == pytest.approx((4 / 7) / (4 / 5))
    # error: half the 68.27 % Clopper–Pearson interval (scipy's exact binomial interval)
    ci = binomtest(4, 7).proportion_ci(confidence_level=norm.cdf(1) - norm.cdf(-1), method="exact")
    assert (pv.clsb_lo, pv.clsb_hi) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    assert pv.clsb_err == pytest.approx(0.5 * (ci.high - ci.low), rel=1e-9)
    assert pvalues_from_toys(0.0, q_sb, q_b).clsb == 1.0
    assert Ensemble(q_sb).n_excluded == 1


def test_crossing_loglinear_exact_and_error():
    mu = np.linspace(0.0, 5.0, 11)
    p = np.exp(-mu)  # ln p linear → log-linear interpolation is exact
    c = crossing(mu, p, 0.1, p_err=0.01 * p)
    assert c.status == "ok"
    assert c.mu == pytest.approx(np.log(10.0), rel=1e-12)
    # error propagation: finite differences of the interpolation w.r.t. both bracketing points
    i, j = c.bracket
    def lim(pi, pj):
        q = p.copy()
        q[i], q[j] = pi, pj
        return crossing(mu, q, 0.1).mu
    h = 1e-6
    di = (lim(p[i] * (1 + h), p[j]) - lim(p[i] * (1 - h), p[j])) / (2 * h * p[i])
    dj = (lim(p[i], p[j] * (1 + h)) - lim(p[i], p[j] * (1 - h))) / (2 * h * p[j])
    assert c.error == pytest.approx(np.hypot(di * 0.01 * p[i], dj * 0.01 * p[j]), rel=1e-4)
    # pchip on a smooth curve
    p2 = norm.sf(mu - 1.0)
    c2 = crossing(mu, p2, 0.1, method="pchip")
    assert c2.mu == pytest.approx(1.0 + norm.isf(0.1), abs=2e-3)
    assert crossing(mu, np.full(11, 0.5), 0.1).status == "above_grid"
    assert np.isinf(crossing(mu, np.full(11, 0.5), 0.1).mu)
    assert crossing(mu[1:], p[1:] * 0.01, 0.1).status == "below_grid"
    new = refine_grid(mu, p, 0.1, n_new=3)
    assert new.size == 3 and np.all((new > mu[i]) & (new < mu[j]))


def test_vectorised_inversion_matches_single():
    rng = np.random.default_rng(0)
    mu = np.linspace(0.1, 4.0, 12)
    curves = np.clip(np.exp(-mu[None, :] * rng.uniform(0.3, 3.0, (50, 1)))
                     + rng.normal(0, 0.01, (50, 12)), 0, 1)
    lim, code = limits_from_curves(mu, curves, 0.1)
    for r in range(50):
        c = crossing(mu, curves[r], 0.1)
        assert lim[r] == pytest.approx(c.mu) or (np.isinf(lim[r]) and np.isinf(c.mu))
        assert code[r] == {"ok": 0, "below_grid": 1, "above_grid": 2}[c.status]


def test_quantile_errors_and_bands():
    x = np.random.default_rng(1).normal(size=20000)
    val, err = quantile_with_error(x, [0.5, norm.cdf(1)])
    assert val[0] == pytest.approx(0.0, abs=0.03)
    assert err[0] == pytest.approx(np.sqrt(np.pi / 2 / 20000), rel=0.15)  # σ of the median
    bands, errs = expected_bands(x)
    assert bands[1] == pytest.approx(1.0, abs=0.05) and bands[-2] == pytest.approx(-2.0, abs=0.08)


# ----------------------------------------------------------------------------- physics tests
@pytest.mark.parametrize("method", ["clsb", "cls"])
def test_toys_match_asymptotics_at_large_counts(method):
    """Background 1000 events: toy and asymptotic expected limits agree within 10 %."""
    m = simple_model(n_bins=20, n_bkg=3, background_events=1000.0, signal_events=10.0)
    a = asymptotic_limits(m, method=method)
    grid = np.linspace(0.0, 1.2, 31)[1:] * a.expected[2]
    t = toy_limits(m, grid, 1500, 1500, base_seed=3, mass_key=1, method=method)
    assert all(f["uncond"]["n_failed"] == 0 and f["cond"]["n_failed"] == 0 for f in t.failures)
    # CLs+b: the −1σ/−2σ bands sit at (or below) μ ≈ 0 asymptotically; CLs −2σ: the S+B tail
    # at the crossing is α·Φ(−2) ≈ 0.002, i.e. a handful of the 1500 toys — not resolved here
    for n in (0, 1, 2) if method == "clsb" else (-1, 0, 1, 2):
        assert t.expected[n] == pytest.approx(a.expected[n], rel=0.10), n
    # Asimov "observed" data: the toy observed limit sits at the median within errors
    assert t.observed == pytest.approx(a.observed, rel=0.10)
    assert t.observed_err < 0.1 * t.observed
    # PCL: floor = the Φ(−1) quantile of the B-only limits ≈ the −1σ band
    assert t.pcl_floor == pytest.approx(t.expected[-1], rel=0.05)
    assert t.pcl == max(t.observed, t.pcl_floor)


def test_asymptotics_overstate_sensitivity_at_zero_background():
    """0.1 expected background events. Without systematics the toy CLs+b limit is the exact
    Poisson one, e^{−(μs + b)} = 0.1 → μs = 2.203 events; the asymptotic median is far lower
    (≈ 1 event): asymptotics overstate the sensitivity at low counts. With 10 % systematics the
    auxiliary observables break the ties between n = 0 experiments (a legitimate ordering of
    the data; the toy median moves around ≈ 1.9–2.3 events with the toy statistics), still well
    above the asymptotic ≈ 1 event.
    """
    m0 = simple_model(n_bins=20, n_bkg=3, background_events=0.1, signal_events=10.0, rel_unc=0.0)
    t0 = toy_limits(m0, np.linspace(0.02, 0.6, 30), 1500, 1000, base_seed=5, mass_key=1)
    assert t0.expected[0] * m0.signal_total == pytest.approx(2.303 - 0.1, rel=0.01)
    a0 = asymptotic_limits(m0, method="clsb")
    assert a0.expected[0] < 0.6 * t0.expected[0]
    m = simple_model(n_bins=20, n_bkg=3, background_events=0.1, signal_events=10.0)
    a = asymptotic_limits(m, method="clsb")
    t = toy_limits(m, np.linspace(0.02, 0.6, 30), 1500, 1000, base_seed=5, mass_key=1)
    assert a.expected[0] < 0.75 * t.expected[0]


def test_empty_signal_gives_no_sensitivity():
    m = simple_model(n_bins=20, n_bkg=2, background_events=50)
    m0 = m.with_signal(np.zeros(m.n_bins))
    t = toy_limits(m0, [0.5, 1.0, 2.0], 10, 10, 1, 1)
    assert t.no_sensitivity and np.isinf(t.observed) and np.isinf(t.expected[0])
    assert np.isinf(t.pcl)


def _coverage(n_pe: int, n_ens: int, seed: int) -> tuple[float, float]:
    """Calibration of the p-value inversion alone: fraction of pseudo-experiments at μ_true whose
    90 % CL CLs+b limit (no PCL) ≥ μ_true, with ensembles AND pseudo-experiments at the nominal
    nuisance values and the S+B ensembles at (μ_k, nominal θ) shared by all pseudo-experiments —
    this covers by construction and is not a test of lzflow's procedure (that is
    ``tests/unit/test_coverage.py``: θ_true ≠ nominal, toys at each pseudo-experiment's own θ̂̂).
    Returns (coverage, σ_MC) with σ_MC including the finite ensemble at μ_true.
    """
    m = simple_model(n_bins=8, n_bkg=2, background_events=4.0, signal_events=6.0,
                     rel_unc=(0.2, 0.3))
    mu_true = 1.0
    grid = np.unique(np.r_[np.linspace(0.1, 4.0, 27), mu_true])
    ens = [Ensemble(run_toys(m, ToyRequest(base_seed=seed, mass_key=0, poi_index=k, hypothesis="sb", mu=mu,
                                           toy_indices=np.arange(n_ens), gen_params=m.full_params(mu))).q[:, 0])
           for k, mu in enumerate(grid)]
    pe = run_toys(m, ToyRequest(base_seed=seed + 1000, mass_key=0, poi_index=0, hypothesis="sb", mu=mu_true,
                                toy_indices=np.arange(n_pe), gen_params=m.full_params(mu_true), mu_test=grid))
    lim, _ = limits_from_curves(grid, pvalue_curves(pe.q, ens), 0.10, p_floor=0.5 / n_ens)
    cov = float(np.mean(lim >= mu_true))
    return cov, float(np.sqrt(0.9 * 0.1 / n_pe + 0.9 * 0.1 / n_ens))


def test_inversion_calibration_ci():
    cov, sig = _coverage(n_pe=200, n_ens=2000, seed=11)
    assert abs(cov - 0.90) < 2 * sig, (cov, sig)


@pytest.mark.slow
def test_inversion_calibration_full():
    cov, sig = _coverage(n_pe=2000, n_ens=10000, seed=21)
    assert abs(cov - 0.90) < 2 * sig, (cov, sig)


def test_discovery_potential_toys_vs_asimov():
    from lzflow.stats import discovery_potential, discovery_potential_toys

    m = simple_model(n_bins=20, n_bkg=3, background_events=300.0, signal_events=10.0)
    a = discovery_potential(m, z=3.0)
    d = discovery_potential_toys(m, np.linspace(0.6, 1.6, 6) * a, 1000, 40000, 3, 1, z=3.0)
    assert d.mu_z_asymptotic == pytest.approx(a, rel=0.10)
    assert d.mu_z_toys == pytest.approx(a, rel=0.15)
    assert np.all(np.diff(d.median_q0) > 0)


def test_qmu_unbounded_toys():
    """q_μ (Eq. 14): μ̂ may be negative; q_μ ≥ q̃_μ for μ̂ < 0 (Eq. 16 uses μ̂ = 0 there)."""
    m = simple_model(n_bins=30, n_bkg=3, background_events=100.0, signal_events=10.0)
    kw = dict(base_seed=4, mass_key=1, poi_index=0, hypothesis="b", mu=1.0, mu_test=[1.0], block_size=64,
              toy_indices=np.arange(200))
    qt = run_toys(m, ToyRequest(test_stat="qtilde", **kw))
    qq = run_toys(m, ToyRequest(test_stat="q", **kw))
    neg = qq.mu_hat < 0
    assert neg.sum() > 30 and np.all(qt.mu_hat >= 0)
    assert np.all(qq.q[neg, 0] >= qt.q[neg, 0] - 1e-9)
    np.testing.assert_allclose(qq.q[~neg, 0], qt.q[~neg, 0], atol=1e-7)


def test_qtilde_distribution_matches_asymptotic_formula():
    """Large counts: the toy distribution of q̃_μ under μ (S+B) and under 0 (B-only) follows
    CCGV Eq. 66 with μ/σ = √q_{μ,A}."""
    from lzflow.stats import qtilde_cdf
    from lzflow.stats.asymptotic import AsimovProfile

    m = simple_model(n_bins=20, n_bkg=3, background_events=1000.0, signal_events=10.0)
    mu = 3.0
    a = np.sqrt(AsimovProfile(m).q_asimov(mu))  # μ/σ
    kw = dict(base_seed=8, mass_key=1, poi_index=0, mu=mu, toy_indices=np.arange(4000), block_size=1024)
    sb = run_toys(m, ToyRequest(hypothesis="sb", **kw)).q[:, 0]
    b = run_toys(m, ToyRequest(hypothesis="b", mu_test=[mu], **kw)).q[:, 0]
    for x in (0.5, 1.0, 2.0, 4.0):
        p_sb, p_b = np.mean(sb >= x), np.mean(b >= x)
        assert p_sb == pytest.approx(1 - qtilde_cdf(x, a), abs=4 * np.sqrt(p_sb * (1 - p_sb) / 4000) + 0.01)
        assert p_b == pytest.approx(1 - qtilde_cdf(x, a, 0.0), abs=4 * np.sqrt(p_b * (1 - p_b) / 4000) + 0.01)
