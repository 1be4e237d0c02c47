"""Template MC statistics with shape systematics (lzflow.stats.mcstat_morph): γ profiled on a morphed model.

The profiled NLL's gradient and Hessian (envelope theorem, curvature of the morphing, Schur complement)
against finite differences, and q̃ of the batched fitter against Migrad with every γ, θ and α an explicit
parameter (ν from ``model.expected``), for code 4p and a log morphing, on toys of a small synthetic model.
"""

from __future__ import annotations

import numpy as np
import pytest

from lzflow.stats.fit import BatchedFitter, fit_minuit
from lzflow.stats.fitresult import FitConfig
from lzflow.stats.mcstat_morph import GammaMorphLayout, GammaMorphRows, explicit_gamma_morph_fit
from lzflow.stats.model import BinnedModel
from lzflow.stats.morphing import ShapeSystematic
from lzflow.stats.teststat import evaluate_test_statistic

NB = 24
INTERPOLATIONS = ["code4p", "log_quartic"]


def _model(interpolation: str, seed: int = 1) -> BinnedModel:
    """3 backgrounds (one fixed; some template bins empty), 2 shape systematics (a tilt of every sample, a signal-only
    stretch), ±1σ and ±2σ templates; δ_b uniform in [0, 0.3), below 0.05 no γ."""
    rng = np.random.default_rng(seed)
    x = (np.arange(NB) + 0.5) / NB
    sig = 3.0 * np.exp(-x / 0.2)
    bkg = np.stack([np.full(NB, 2.0), 5.0 * np.exp(-2.0 * x) + 0.1, 0.1 + 0.9 * x])
    sig[-3:] = 0.0  # empty template bins (the log morphings evaluate the non-zero entries only)
    bkg[1, :2] = bkg[2, 5:8] = 0.0
    nom = np.vstack([sig, bkg])

    def tilt(s):
        return nom * (1.0 + s * (x - 0.5))[None, :]

    def stretch(s):
        out = nom.copy()
        out[0] = np.where(sig > 0, np.exp(-x / (0.2 * (1 + s))), 0.0)
        out[0] *= sig.sum() / out[0].sum()
        return out

    systs = [ShapeSystematic(name, f(0.3), f(-0.25), f(0.65), f(-0.45)) for name, f in (("tilt", tilt), ("stretch", stretch))]
    delta = rng.uniform(0.0, 0.3, NB)
    delta[delta < 0.05] = 0.0
    base = BinnedModel(sig, bkg, ("a", "b", "c"), np.array([0.1, 0.2, 0.0]))
    return base.with_shape_systematics(systs, interpolation).with_mc_stat(delta)


def _toys(model: BinnedModel, n: int, mu: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(model.expected(mu), size=(n, model.n_bins)).astype(float)
    d = model.mc_stat[model.mc_stat > 0]
    aux = np.column_stack([1 + 0.1 * rng.standard_normal(n), 1 + 0.2 * rng.standard_normal(n), np.ones(n),
                           rng.standard_normal((n, 2)), 1 + d * rng.standard_normal((n, d.size))])
    return counts, aux


def _rows(model, counts, aux, mu_free=True, mu=None):
    lay = GammaMorphLayout(model, None if mu_free else 1.0).at(mu)
    rows = GammaMorphRows(lay, counts[None], np.zeros((1, lay.p)), aux[None, lay.aux_gamma])
    nuis = lay.cols > 0
    rows.aux_c[0, nuis] = aux[lay.cols[nuis] - 1]
    return rows


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("mu_free", [True, False])
def test_gradient_and_hessian_match_finite_differences(interpolation, mu_free):
    model = _model(interpolation)
    counts, aux = _toys(model, 1, 0.5, 3)
    aux[0, model.n_bkg + model.n_shape] = -0.5  # a negative a_γ: its γ̂ clips at 0 where n = 0
    counts[0, np.flatnonzero(model.mc_stat > 0)[0]] = 0.0
    rows = _rows(model, counts[0], aux[0], mu_free, None if mu_free else 0.8)
    y = np.array([[0.6, 1.1, 0.95, 0.4, -0.7]]) if mu_free else np.array([[1.1, 0.95, 0.4, -0.7]])
    p = y.shape[1]
    pt = rows.point(y)
    assert pt.g[0, 0] == 0.0  # the clipped bin is exercised

    def f(z):
        return rows.nll(z, rows.point(z))[0]

    def grad(z):
        return rows.gradient(z, rows.point(z))[0][0]

    g, ratios = rows.gradient(y, pt)
    h = rows.hessian(pt, ratios, None)[:, :, 0]
    eps = 1e-5
    e = np.eye(p)
    g_fd = np.array([(f(y + eps * e[j]) - f(y - eps * e[j])) / (2 * eps) for j in range(p)])
    h_fd = np.array([(grad(y + eps * e[j]) - grad(y - eps * e[j])) / (2 * eps) for j in range(p)])
    np.testing.assert_allclose(g[0], g_fd, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(h, h_fd, rtol=1e-6, atol=1e-6 * np.abs(h).max())
    # the model's reference NLL (mcstat.profiled_nll: u, v from model.expected) is the rows' NLL
    full = model.full_params(y[0, 0] if mu_free else 0.8, np.r_[y[0, -4:-2], 1.0, y[0, -2:]])
    assert model.nll(full, counts[0], aux[0]) == pytest.approx(f(y), rel=1e-13)


def _qtilde(model, counts, aux, mu):
    fitter = BatchedFitter(model, FitConfig(n_threads=1))
    ru = fitter.fit(counts, aux, mu_lower=0.0)
    rc = fitter.fit(counts, aux, mu_fixed=mu)
    assert (ru.status == 0).all() and (rc.status == 0).all()
    return evaluate_test_statistic("qtilde", rc.nll, ru.nll, ru.params[:, 0], mu), ru, rc


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_qtilde_batched_equals_explicit_gamma_migrad(interpolation):
    model = _model(interpolation)
    counts, aux = _toys(model, 4, 0.4, 5)
    q, ru, rc = _qtilde(model, counts, aux, 1.5)
    q_ref = []
    for t in range(4):
        n_u, full = explicit_gamma_morph_fit(model, counts[t], aux[t])
        n_c, _ = explicit_gamma_morph_fit(model, counts[t], aux[t], mu_fixed=1.5)
        q_ref.append(2 * (n_c - n_u) if full[0] <= 1.5 else 0.0)
        assert ru.nll[t] == pytest.approx(n_u, abs=1e-7)
        assert rc.nll[t] == pytest.approx(n_c, abs=1e-7)
    assert np.abs(q - np.array(q_ref)).max() < 1e-6
    assert q.max() > 0.5  # not all trivially 0
    assert np.abs(ru.params[:, -2:]).max() > 0.1  # the α move
    # the profiled Migrad path of the fitter agrees too
    np.testing.assert_allclose(fit_minuit(model, counts, aux).nll, ru.nll, atol=1e-7)
    # and the γ change q̃: without them the same toys give other values
    q_none, _, _ = _qtilde(model.with_mc_stat(None), counts, aux[:, : model.n_bkg + model.n_shape], 1.5)
    assert np.abs(q_none - q).max() > 1e-3


def test_qtilde_equals_pyhf_staterror_with_code4p_histosys():
    """pyhf's ``staterror`` multiplies each background sample after its additive ``histosys`` deltas, so
    its γ_b scales ν(0, θ, α) of the bin as lzflow's does: same q̃ on the exported workspace."""
    pyhf = pytest.importorskip("pyhf")
    from lzflow.stats.pyhf_export import PYHF_MODIFIER_SETTINGS, pyhf_data, to_pyhf_workspace

    model = _model("code4p", 2)
    counts, aux = _toys(model, 3, 0.4, 7)
    q, _, _ = _qtilde(model, counts, aux, 1.5)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-8, strategy=2))
    try:
        pm = pyhf.Workspace(to_pyhf_workspace(model)).model(modifier_settings=PYHF_MODIFIER_SETTINGS)
        cfg = pm.config
        assert {"alpha_tilt", "alpha_stretch", "mcstat"} <= set(cfg.parameters)
        qp = [float(pyhf.infer.test_statistics.qmu_tilde(1.5, pyhf_data(model, pm, counts[t], aux[t]), pm,
                                                          cfg.suggested_init(), cfg.suggested_bounds(),
                                                          cfg.suggested_fixed())) for t in range(3)]
    finally:
        pyhf.set_backend("numpy", "scipy")
    assert np.abs(q - np.array(qp)).max() < 1e-6
    assert max(qp) > 0.5


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_toys_of_a_morphed_gamma_model(interpolation):
    """run_toys end to end: a_α ~ Gauss(α̂̂, 1) and a_γ ~ Gauss(γ̂̂, δ) at the conditional fit of the
    Asimov data, and q̃ of the first toys equals the explicit-γ, explicit-α Migrad one."""
    from lzflow.stats.mcstat import gamma_generation
    from lzflow.stats.request import ToyRequest
    from lzflow.stats.toys import generate_toys, run_toys

    model = _model(interpolation)
    req = ToyRequest(base_seed=5, mass_key=400000, poi_index=0, hypothesis="sb", toy_indices=np.arange(200),
                     mu=1.5, block_size=64, n_threads=1)
    res = run_toys(model, req)
    assert (res.status_uncond == 0).all() and np.all(np.isfinite(res.q[:, 0]))
    d = model.mc_stat[model.mc_stat > 0]
    z = (res.aux[:, model.n_bkg + model.n_shape:] - gamma_generation(model, res.gen_params)) / d
    assert abs(z.mean()) < 4 / np.sqrt(z.size) and abs(z.std() - 1) < 0.05
    za = res.aux[:, model.n_bkg:model.n_bkg + model.n_shape] - res.gen_params[1 + model.n_bkg:]
    assert np.abs(za.mean(axis=0)).max() < 4 / np.sqrt(200) and np.abs(res.gen_params[-2:]).max() > 0.05
    counts, aux = generate_toys(model, res.gen_params, np.arange(3), 5, 400000, 0, "sb")
    assert np.array_equal(aux, res.aux[:3])
    for t in range(3):
        n_u, full = explicit_gamma_morph_fit(model, counts[t], aux[t])
        n_c, _ = explicit_gamma_morph_fit(model, counts[t], aux[t], mu_fixed=1.5)
        assert res.q[t, 0] == pytest.approx(2 * (n_c - n_u) if full[0] <= 1.5 else 0.0, abs=1e-6)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_expected_information_is_the_hessian_at_asimov_data(interpolation):
    """At Asimov data of (μ, θ, α) with a = the parameters and a_γ = 1, γ̂ = 1 and n = ν: the curvature
    terms vanish and the profiled Hessian is the expected information (the fitter's first step and
    profile slope, ``BatchedFitter.expected_information``)."""
    from lzflow.stats.mcstat_morph import gamma_morph_information

    model = _model(interpolation)
    nuis = np.r_[1.05, 0.9, 1.0, 0.3, -0.4]
    counts, aux = model.asimov(0.7, nuis)
    full = model.full_params(0.7, nuis)
    for mu_free in (True, False):
        rows = _rows(model, counts, aux, mu_free, None if mu_free else 0.7)
        y = full[rows.lay.cols][None, :]
        pt = rows.point(y)
        np.testing.assert_allclose(pt.g, 1.0, rtol=1e-12)
        g, ratios = rows.gradient(y, pt)
        np.testing.assert_allclose(g, 0.0, atol=1e-10)
        h = rows.hessian(pt, ratios, None)[:, :, 0]
        info = BatchedFitter(model).expected_information(full, mu_free)
        np.testing.assert_allclose(info, h, rtol=1e-10, atol=1e-12 * np.abs(h).max())
        assert np.allclose(info, gamma_morph_information(model, rows.lay, full))
