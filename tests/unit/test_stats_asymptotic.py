"""Asymptotic limits: pyhf cross-check, formulae, discovery potential."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy.stats import norm

from lzflow.stats import asymptotic_limits, discovery_potential, pvalues_asymptotic, qtilde_cdf
from lzflow.stats.asymptotic import AsimovProfile, band_target
from lzflow.stats import generate_toys
from lzflow.stats.pyhf_export import pyhf_aux_from_lzflow, pyhf_data, to_pyhf_workspace
from lzflow.stats.synthetic import lz_like_model, simple_model

pyhf = pytest.importorskip("pyhf")
pytestmark = pytest.mark.filterwarnings("ignore:jsonschema.RefResolver is deprecated")


@pytest.fixture(scope="module")
def small_model():
    return simple_model(n_bins=100, n_bkg=3, background_events=500, signal_events=10,
                        rel_unc=(0.05, 0.1, 0.3), seed=4)


def _pyhf(ws_dict):
    pyhf.set_backend("numpy", "scipy")
    ws = pyhf.Workspace(json.loads(json.dumps(ws_dict)))  # proves it is plain JSON
    model = ws.model()
    return model, ws.data(model)


def test_workspace_layout(small_model):
    m = small_model
    ws = to_pyhf_workspace(m)
    model, data = _pyhf(ws)
    assert model.config.poi_name == "mu"
    assert model.config.nmaindata == m.n_bins
    np.testing.assert_allclose(data[: m.n_bins], m.backgrounds.sum(axis=0))
    # expected yields agree at an arbitrary point (linear histosys = lzflow multipliers)
    theta = np.array([1.03, 0.9, 1.4])
    pars = model.config.suggested_init()
    pars[model.config.poi_index] = 1.7
    for b, name in enumerate(m.names):
        pars[model.config.par_slice(name)] = [(theta[b] - 1.0) / m.rel_unc[b]]
    np.testing.assert_allclose(model.expected_actualdata(pars), m.expected(1.7, theta), rtol=1e-12)
    np.testing.assert_allclose(pyhf_aux_from_lzflow(m, np.ones(3)), model.config.auxdata)
    # a toy with random aux has the same NLL difference in both (pyhf orders aux by name)
    lz = lz_like_model()
    pm = _pyhf(to_pyhf_workspace(lz))[0]
    c, a = generate_toys(lz, lz.full_params(1.0), [3], 1, 1, 0, "sb")
    data = pyhf_data(lz, pm, c[0], a[0])
    p1, p2 = pm.config.suggested_init(), pm.config.suggested_init()
    p2[pm.config.poi_index] = 2.0
    for name in ("pp_7Be", "Pb214"):
        b = lz.names.index(name)
        p2[pm.config.par_slice(name)] = [0.7]
    d_pyhf = float(pm.logpdf(p1, data)[0] - pm.logpdf(p2, data)[0])
    th = np.ones(lz.n_bkg)
    for name in ("pp_7Be", "Pb214"):
        b = lz.names.index(name)
        th[b] = 1 + 0.7 * lz.rel_unc[b]
    d_lz = float(lz.nll(lz.full_params(2.0, th), c[0], a[0]) - lz.nll(lz.full_params(1.0), c[0], a[0]))
    assert d_pyhf == pytest.approx(d_lz, rel=1e-9, abs=1e-9)
    # fixed backgrounds carry no modifier; 2D templates are flattened in C order
    m2 = m.with_rel_unc(np.array([0.05, 0.0, 0.3]))
    ws2 = to_pyhf_workspace(m2)
    assert ws2["channels"][0]["samples"][2]["modifiers"] == []


@pytest.mark.parametrize("observed_shift", [0.0, 12.0])
def test_cls_limits_agree_with_pyhf(small_model, observed_shift):
    m = small_model
    obs = m.backgrounds.sum(axis=0) + observed_shift * m.signal / m.signal_total
    model, data = _pyhf(to_pyhf_workspace(m, observed=obs))
    from pyhf.infer.intervals.upper_limits import toms748_scan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_obs, p_exp = toms748_scan(data, model, 0.01, 10.0, level=0.1, rtol=1e-7,
                                    test_stat="qtilde", calctype="asymptotics")
    r = asymptotic_limits(m, observed=(obs, np.ones(m.n_bkg)), cl=0.90, method="cls")
    assert r.observed == pytest.approx(float(p_obs), rel=5e-3)
    for n, pe in zip((-2, -1, 0, 1, 2), p_exp):
        assert r.expected[n] == pytest.approx(float(pe), rel=5e-3)
    if observed_shift == 0.0:  # Asimov "observed" data: observed limit = median
        assert r.observed == pytest.approx(r.expected[0], rel=1e-6)


def test_pvalues_agree_with_pyhf_hypotest(small_model):
    m = small_model
    obs = m.backgrounds.sum(axis=0) + 8.0 * m.signal / m.signal_total
    model, data = _pyhf(to_pyhf_workspace(m, observed=obs))
    prof = AsimovProfile(m, (obs, np.ones(m.n_bkg)))
    for mu in (0.5, 1.5, 3.0):
        cls, (clsb, clb) = pyhf.infer.hypotest(mu, data, model, test_stat="qtilde",
                                               calctype="asymptotics", return_tail_probs=True)
        mine = prof.pvalues(mu)
        np.testing.assert_allclose(mine, (float(clsb), float(clb), float(cls)), rtol=1e-4)


def test_pvalue_formulae():
    qa = 4.0
    # CLs+b for q̃ ≤ q_A is the one-sided Gaussian tail
    clsb, clb, cls = pvalues_asymptotic(1.0, qa)
    assert clsb == pytest.approx(norm.sf(1.0))
    assert clb == pytest.approx(norm.sf(1.0 - 2.0))
    assert cls == pytest.approx(clsb / clb)
    # beyond q_A: Eq. 67 branch, continuous at q̃ = q_A
    lo = pvalues_asymptotic(qa - 1e-9, qa)
    hi = pvalues_asymptotic(qa + 1e-9, qa)
    np.testing.assert_allclose(lo, hi, rtol=1e-6)
    # the S+B CDF of Eq. 66 turns the p-value into 1 − F
    for q in (0.3, 2.0, 9.0):
        assert 1 - qtilde_cdf(q, 2.0) == pytest.approx(float(pvalues_asymptotic(q, qa)[0]))
        assert 1 - qtilde_cdf(q, 2.0, 0.0) == pytest.approx(float(pvalues_asymptotic(q, qa)[1]))
    # band targets at 90 % CL: median 1.282σ (CLs+b), 1.645σ (CLs)
    assert band_target(0, 0.1, "clsb") == pytest.approx(1.2816, abs=1e-4)
    assert band_target(0, 0.1, "cls") == pytest.approx(1.6449, abs=1e-4)


def test_clsb_median_is_1282_sigma_for_gaussian_regime():
    """Many events, no systematics: σ barely depends on μ → median = 1.2816 σ."""
    m = simple_model(n_bins=10, n_bkg=1, background_events=1e6, signal_events=1000, rel_unc=0.0)
    r = asymptotic_limits(m, method="clsb")
    assert r.expected[0] / r.sigma_median == pytest.approx(1.2816, rel=2e-3)
    r2 = asymptotic_limits(m, method="cls")
    assert r2.expected[0] / r2.sigma_median == pytest.approx(1.6449, rel=2e-3)
    # PCL floor at the −1σ band (π = Φ(−1))
    assert r.pcl_floor == pytest.approx(r.expected[-1], rel=1e-6)
    assert r.pcl == max(r.observed, r.pcl_floor)


def test_discovery_potential_and_empty_signal():
    m = lz_like_model()
    mu3 = discovery_potential(m, z=3.0)
    lim = asymptotic_limits(m)
    assert mu3 > lim.expected[0]  # 3σ evidence needs more signal than a 90 % CL exclusion
    m0 = m.with_signal(np.zeros(m.n_bins))
    r0 = asymptotic_limits(m0)
    assert r0.no_sensitivity and np.isinf(r0.observed) and np.isinf(r0.expected[0])
    assert np.isinf(discovery_potential(m0))
