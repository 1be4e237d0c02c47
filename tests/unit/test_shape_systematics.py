"""Shape nuisance parameters (issue 12): code-4p morphing, the batched fitter against iminuit and
pyhf, toys with randomised a_α, asymptotics with profiling, coverage.

Measured (this file's fast tests print them with ``pytest -s``): q̃_μ batched vs iminuit on 48 toys
of the 40×40 LZ-like model with 4 shape + 11 rate parameters: max |Δq̃| ≈ 1e-9; vs pyhf 0.7.6
(numpy backend, histosys code 4p) on the exported workspace: NLL differences constant to ≈ 1e-9,
q̃ to ≈ 1e-7 (pyhf's scipy fits end at a tolerance of ~1e-8 in NLL).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lzflow.stats import ToyRequest, asymptotic_limits, evaluate_test_statistic, run_toys
from lzflow.stats.fit import BatchedFitter, fit_minuit
from lzflow.stats.fitresult import FitConfig
from lzflow.stats.model import BinnedModel, ModelError, ShapeSystematic
from lzflow.stats.morphing import code4p
from lzflow.stats.synthetic import lz_like_systematics_model, simple_model
from lzflow.stats.toys import generate_toys, generation_point


@pytest.fixture(scope="module")
def lz() -> BinnedModel:
    return lz_like_systematics_model()


def _small(seed: int = 3, n_shape: int = 2, size: float = 0.2) -> BinnedModel:
    m0 = simple_model(n_bins=12, n_bkg=3, seed=seed)
    rng = np.random.default_rng(seed)
    T = np.vstack([m0.signal[None], m0.backgrounds])
    systs = [ShapeSystematic(f"s{k}", T * (1 + size * rng.uniform(-1, 1, T.shape)),
                             T * (1 + size * rng.uniform(-1, 1, T.shape))) for k in range(n_shape)]
    return m0.with_shape_systematics(systs)


def _pyhf_code4p(alpha: np.ndarray, nom: float, up: float, down: float) -> np.ndarray:
    import pyhf

    pyhf.set_backend("numpy")
    interp = pyhf.interpolators.code4p(np.array([[[[down], [nom], [up]]]]))  # (syst, sample, 3, bin)
    return np.asarray(interp(np.asarray(alpha, float)[None, :]))[0, 0, :, 0]


def test_code4p_equals_pyhf_and_is_c2():
    alpha = np.linspace(-3.0, 3.0, 121)
    nom, up, down = 10.0, 13.0, 8.5
    f = code4p(alpha)[0]
    delta = alpha * 0.5 * (up - down) + f * (0.5 * (up + down) - nom)
    np.testing.assert_allclose(delta, _pyhf_code4p(alpha, nom, up, down), rtol=0, atol=1e-12)
    for a in (-1.0, 1.0):  # f, f', f'' continuous at |α| = 1
        for inside, outside in code4p(np.array([a * (1 - 1e-9), a * (1 + 1e-9)])):  # f, f', f''
            assert inside == pytest.approx(outside, abs=1e-7)
    eps = 1e-6
    f0, f1, f2 = code4p(alpha)
    np.testing.assert_allclose(f1, (code4p(alpha + eps)[0] - code4p(alpha - eps)[0]) / (2 * eps), atol=1e-6)
    np.testing.assert_allclose(f2, (code4p(alpha + eps)[1] - code4p(alpha - eps)[1]) / (2 * eps), atol=1e-5)


def test_model_validation_and_k0_identity():
    m0 = simple_model()
    T = np.vstack([m0.signal[None], m0.backgrounds])
    with pytest.raises(ModelError):
        m0.with_shape_systematics([ShapeSystematic("a", T[:2], T[:2])])
    with pytest.raises(ValueError):
        ShapeSystematic("a", -T, T)
    with pytest.raises(ModelError):
        m0.with_shape_systematics([ShapeSystematic("a", T, T), ShapeSystematic("a", T, T)])
    m = m0.with_shape_systematics([ShapeSystematic("a", 1.1 * T, 0.9 * T)])
    assert m.n_par == m0.n_par + 1 and m.par_names[-1] == "alpha_a" and m.n_aux == m0.n_bkg + 1
    # at α = 0 the morphed model is the rate-only one; the constraint adds α²/2
    p0 = m0.full_params(1.3, np.r_[1.1, 0.9, 1.0])
    counts = np.round(m0.expected(1.0)).astype(float)
    assert m.nll(np.r_[p0, 0.0], counts) == pytest.approx(m0.nll(p0, counts), abs=1e-9)
    assert m.nll(np.r_[p0, 0.5], counts, np.r_[np.ones(3), 0.5]) != m0.nll(p0, counts)
    assert m0.with_shape_systematics().shape_systematics == ()


@pytest.mark.parametrize("threshold", [0.5, 1e9])  # dense + sparse bins, all sparse
def test_gradient_and_hessian_are_exact(threshold):
    m = _small()
    f = BatchedFitter(m, FitConfig(dense_threshold=threshold, hessian_float32=False))
    rng = np.random.default_rng(5)
    counts = rng.poisson(m.expected(1.0, np.r_[1, 1, 1, 0.3, -0.5]), size=(5, m.n_bins)).astype(float)
    aux = np.tile(np.r_[1.05, 0.95, 1.0, 0.2, -0.3], (5, 1))
    data = f.prepare(counts, aux)
    for mu_fixed in (None, 2.0):
        cols = f.free_columns(mu_fixed)
        y = rng.uniform(0.5, 1.5, (5, cols.size))
        y[:, -2:] = rng.uniform(-1.7, 1.7, (5, 2))
        rows = f.newton_rows(data, mu_fixed)
        nll, g = rows.start(y), rows.grad(y)
        h = rows.hess(None)
        full = np.tile(m.full_params(mu_fixed or 0.0), (5, 1))
        full[:, cols] = y
        np.testing.assert_allclose(nll, m.nll(full, counts, aux), rtol=0, atol=1e-9)
        eps = 1e-6
        for j in range(cols.size):
            yp, ym = y.copy(), y.copy()
            yp[:, j] += eps
            ym[:, j] -= eps
            rp, rm = f.newton_rows(data, mu_fixed), f.newton_rows(data, mu_fixed)
            fp, fm = rp.start(yp), rm.start(ym)
            gp, gm = rp.grad(yp), rm.grad(ym)
            np.testing.assert_allclose(g[:, j], (fp - fm) / (2 * eps), atol=2e-6 * max(1, np.abs(g).max()))
            np.testing.assert_allclose(h[:, j, :].T, (gp - gm) / (2 * eps), atol=2e-6 * np.abs(h).max())
        prob = f.minuit_problem(data, 0, mu_fixed)
        assert prob.nll(y[0]) == pytest.approx(nll[0], abs=1e-9)
        np.testing.assert_allclose(prob.grad(y[0]), g[0], atol=1e-9)


def _toys(m: BinnedModel, n: int, seed: int = 11):
    gen, _ = generation_point(m, 1.0)
    counts, aux = generate_toys(m, gen, np.arange(n), seed, 400000, 0, "sb")
    return gen, counts, aux


def test_qtilde_batched_equals_iminuit(lz):
    """q̃_μ of the batched fitter = iminuit's within 1e-6 (4 shape + 11 rate parameters)."""
    gen, counts, aux = _toys(lz, 48)
    f = BatchedFitter(lz, FitConfig(n_threads=1))
    init = np.tile(gen, (counts.shape[0], 1))
    ru = f.fit(counts, aux, init=init, fisher_at=gen)
    rc = f.fit(counts, aux, mu_fixed=1.0, init=ru.params)
    mu_ = fit_minuit(lz, counts, aux, init=init)
    mc = fit_minuit(lz, counts, aux, mu_fixed=1.0, init=mu_.params)
    assert ru.converged.all() and rc.converged.all() and mu_.converged.all() and mc.converged.all()
    qb = evaluate_test_statistic("qtilde", rc.nll, ru.nll, ru.mu, 1.0)
    qm = evaluate_test_statistic("qtilde", mc.nll, mu_.nll, mu_.mu, 1.0)
    print(f"\nmax |q~ batched - q~ iminuit| = {np.max(np.abs(qb - qm)):.2e} over {qb.size} toys "
          f"(q~ up to {qb.max():.2f}); max NLL(batched) - NLL(iminuit) = "
          f"{max(np.max(ru.nll - mu_.nll), np.max(rc.nll - mc.nll)):.1e}")
    assert np.max(np.abs(qb - qm)) < 1e-6
    assert np.max(ru.nll - mu_.nll) < 1e-7 and np.max(rc.nll - mc.nll) < 1e-7  # never above Migrad's minimum
    assert np.any(qb > 0.1) and np.ptp(ru.params[:, -4:]) > 1.0  # non-trivial toys and α̂


def _pyhf(m: BinnedModel):
    pyhf = pytest.importorskip("pyhf")
    from lzflow.stats.pyhf_export import PYHF_MODIFIER_SETTINGS, to_pyhf_workspace

    pyhf.set_backend("numpy", "scipy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = pyhf.Workspace(to_pyhf_workspace(m)).model(modifier_settings=PYHF_MODIFIER_SETTINGS)
    return pyhf, pm


def _to_pyhf_pars(m: BinnedModel, pm, params: np.ndarray) -> np.ndarray:
    out = np.array(pm.config.suggested_init(), float)
    for name in pm.config.par_order:
        sl = pm.config.par_slice(name)
        if name == "mu":
            out[sl] = params[0]
        elif name in m.names:
            b = m.names.index(name)
            out[sl] = (params[1 + b] - 1.0) / m.rel_unc[b]
        else:
            out[sl] = params[1 + m.n_bkg + m.shape_parameters.index(name)]
    return out


def test_pyhf_export_same_nll_and_qtilde():
    """The exported histosys workspace is the same likelihood: −log L(pyhf) − NLL(lzflow) is the
    same constant (Σ ln n! + n_aux ln√(2π)) at random points, and q̃ agrees within 1e-6."""
    from scipy.special import gammaln

    from lzflow.stats.pyhf_export import pyhf_data

    m = lz_like_systematics_model(n_cs1=16, n_logcs2=16)
    pyhf, pm = _pyhf(m)
    assert {p for p in pm.config.par_order if p.startswith("alpha_")} == set(m.shape_parameters)
    gen, counts, aux = _toys(m, 3, seed=4)
    rng = np.random.default_rng(2)
    f = BatchedFitter(m, FitConfig(n_threads=1))
    worst_q = worst_nll = 0.0
    for t in range(counts.shape[0]):
        data = pyhf_data(m, pm, counts[t], aux[t])
        const = gammaln(counts[t] + 1).sum() + 0.5 * np.log(2 * np.pi) * m.n_aux
        for _ in range(4):
            nuis = np.r_[1 + 0.5 * m.rel_unc * rng.standard_normal(m.n_bkg), rng.uniform(-1.5, 1.5, m.n_shape)]
            p = m.full_params(rng.uniform(0.0, 3.0), nuis)
            d = -pm.logpdf(_to_pyhf_pars(m, pm, p), data)[0] - m.nll(p, counts[t], aux[t]) - const
            worst_nll = max(worst_nll, abs(d))
        ru = f.fit(counts[t : t + 1], aux[t : t + 1], init=gen[None])
        rc = f.fit(counts[t : t + 1], aux[t : t + 1], mu_fixed=1.0, init=ru.params)
        q = evaluate_test_statistic("qtilde", rc.nll, ru.nll, ru.mu, 1.0)[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opts = dict(return_fitted_val=True, tolerance=1e-12, method="SLSQP")  # pyhf's own start
            pu, fu = pyhf.infer.mle.fit(data, pm, **opts)
            _, fc = pyhf.infer.mle.fixed_poi_fit(1.0, data, pm, **opts)
        mu_hat = float(pu[pm.config.poi_index])  # pyhf's twice_nll: q = fc − fu
        q_pyhf = max(float(fc) - float(fu), 0.0) if mu_hat <= 1.0 else 0.0
        worst_q = max(worst_q, abs(q - q_pyhf))
    print(f"\npyhf vs lzflow: NLL difference constant to {worst_nll:.1e}; max |dq~| = {worst_q:.1e}")
    assert worst_nll < 1e-6
    assert worst_q < 1e-6


def test_toys_randomise_alpha_aux_and_records(lz):
    req = dict(base_seed=3, mass_key=400000, poi_index=2, hypothesis="sb", mu=1.0, mu_test=[0.5, 1.0],
               block_size=128, n_threads=1)
    r = run_toys(lz, ToyRequest(toy_indices=np.arange(256), **req))
    nb, k = lz.n_bkg, lz.n_shape
    assert r.aux.shape == (256, nb + k) and r.params_uncond.shape == (256, lz.n_par)
    assert r.alpha_cond.shape == (256, 2, k) and np.isfinite(r.alpha_cond).all()
    gen_alpha = r.gen_params[1 + nb :]
    pull = r.aux[:, nb:] - gen_alpha  # a_α ~ N(α̂̂(μ), 1)
    assert np.all(np.abs(pull.mean(axis=0)) < 0.25) and np.all(np.abs(pull.std(axis=0) - 1) < 0.15)
    assert (r.status_uncond == 0).all() and (r.status_cond == 0).all()
    sub = run_toys(lz, ToyRequest(toy_indices=np.array([200, 3, 130]), **req))  # split invariance, replay
    for name in r.per_toy:
        assert np.array_equal(getattr(sub, name), getattr(r, name)[[200, 3, 130]], equal_nan=True), name
    back = type(r).from_arrays(r.to_arrays())
    assert np.array_equal(back.alpha_cond, r.alpha_cond)
    seq = run_toys(lz, ToyRequest(toy_indices=np.arange(4), stream="seedsequence", **req))
    assert seq.aux.shape == (4, nb + k) and (seq.status_uncond == 0).all()


def test_profiling_cannot_tighten_asimov_limit(lz):
    """Asymptotic median with systematics ≥ without, on the synthetic model and random variations."""
    base = asymptotic_limits(lz.with_shape_systematics()).expected[0]
    full = asymptotic_limits(lz).expected[0]
    print(f"\nasymptotic CLs+b median: {base:.4f} without, {full:.4f} with the 4 shape systematics")
    assert full >= base * (1 - 1e-9)
    for seed in range(4):
        m = _small(seed=seed, n_shape=3, size=0.3)
        assert asymptotic_limits(m).expected[0] >= asymptotic_limits(m.with_shape_systematics()).expected[0] * (1 - 1e-9)


def _coverage(n_pe: int, n_sb: int, n_b: int, seed: int, mu_factor: float = 1.0) -> tuple[float, float]:
    """CLs+b coverage of the 90 % CL toy upper limit with 2 shape + 2 rate nuisance parameters:
    pseudo-experiments generated away from nominal (θ_true = 1 ± 1σ, α_true = (+1, −0.8)) with
    their auxiliary observables randomised around the truth; the procedure of ``lzflow merge``
    (:func:`toy_limits`: S+B toys at each experiment's own (μ, θ̂̂, α̂̂), B-only toys at its (0, θ̂̂, α̂̂))."""
    from lzflow.stats import toy_limits

    m = _small(seed=7, n_shape=2, size=0.25).with_rel_unc(np.array([0.2, 0.3, 0.0]))
    median = asymptotic_limits(m, method="clsb").expected[0]
    grid = np.linspace(0.02, 3.5, 12) * median
    mu_true = mu_factor * median
    nuis_true = np.r_[1.0 + m.rel_unc * np.array([1.0, -1.0, 0.0]), 1.0, -0.8]
    rng = np.random.default_rng([seed, 12])
    hits = []
    for j in range(n_pe):
        counts = rng.poisson(m.expected(mu_true, nuis_true)).astype(np.float64)
        aux = nuis_true + np.r_[m.rel_unc, np.ones(m.n_shape)] * rng.standard_normal(m.n_aux)
        aux[2] = 1.0  # fixed background
        t = toy_limits(m, grid, n_sb, n_b, base_seed=seed * 100_000 + j, mass_key=1, cl=0.9, method="clsb",
                       observed=(counts, aux), block_size=256, n_threads=1)
        hits.append(t.observed >= mu_true)
    c = float(np.mean(hits))
    err = float(np.sqrt(0.9 * 0.1 / n_pe))
    print(f"\ncoverage with shape systematics at mu_true = {mu_factor} x median ({n_pe} pseudo-experiments, "
          f"{n_sb}/{n_b} toys): CLs+b {c:.3f} ± {err:.3f}")
    return c, err


@pytest.mark.slow  # ~3.5 min since every shape fit takes further starts (×4.5 CPU); the fast suite keeps
# tests/unit/test_systematics_coverage.py's CI version on the real 40 GeV workspace
def test_coverage_with_systematics_ci():
    """CI size: 120 pseudo-experiments (σ_cov ≈ 0.027), 100 S+B / 200 B-only toys per grid point."""
    c, err = _coverage(n_pe=120, n_sb=100, n_b=200, seed=1)
    assert abs(c - 0.9) <= 2.5 * err + 0.5 / 100  # + the toys' own granularity


@pytest.mark.slow
@pytest.mark.parametrize("mu_factor", [0.5, 1.0])
def test_coverage_with_systematics_full(mu_factor):
    """2000 pseudo-experiments (σ_cov ≈ 0.0067), 600 S+B / 1200 B-only toys."""
    c, err = _coverage(n_pe=2000, n_sb=600, n_b=1200, seed=20 + int(10 * mu_factor), mu_factor=mu_factor)
    assert abs(c - 0.9) <= 2.5 * err


# ----------------------------------------------------------------------------- α bounds (pyhf's ±5)
def test_alpha_upper_bound_projected_newton_and_migrad():
    """A minimum beyond α = +5 (auxiliary observable at +40): the fit ends at the bound, with the
    projected gradient 0 there, status CONVERGED and the parameter flagged at its bound — in the
    Newton engine and in Migrad (its limits), at the same NLL; the lower bound likewise."""
    from lzflow.stats.fitresult import ALPHA_BOUND, alpha_at_bound

    m = _small(seed=5, n_shape=2, size=0.05)
    counts, _ = m.asimov(1.0)
    nb = m.n_bkg
    aux = np.tile(m.nominal_nuisance(), (2, 1))
    aux[0, nb] = 40.0  # α_0 pulled far above its bound
    aux[1, nb + 1] = -40.0  # α_1 far below
    counts = np.tile(counts, (2, 1))
    f = BatchedFitter(m, FitConfig(n_threads=1))
    for mu_fixed in (None, 1.0):
        r = f.fit(counts, aux, mu_fixed=mu_fixed)
        rm = fit_minuit(m, counts, aux, mu_fixed=mu_fixed)
        assert r.converged.all() and rm.converged.all()
        assert r.params[0, 1 + nb] == ALPHA_BOUND and r.params[1, 2 + nb] == -ALPHA_BOUND
        assert r.at_bound[0, 1 + nb] and r.at_bound[1, 2 + nb]
        assert not r.at_bound[0, 2 + nb] and not r.at_bound[1, 1 + nb]
        # projected gradient at the convergence tolerance (λ² < 1e-9), the bound's component removed
        # (the raw gradient there is ≈ a − α ≈ 35)
        np.testing.assert_array_less(r.grad_norm, 1e-4)
        np.testing.assert_allclose(rm.params[:, 1 + nb :], r.params[:, 1 + nb :], atol=1e-3)
        assert rm.at_bound[0, 1 + nb] and rm.at_bound[1, 2 + nb]
        np.testing.assert_allclose(rm.nll, r.nll, atol=1e-6)
        assert alpha_at_bound(r.params, m.n_shape).all()
        assert not alpha_at_bound(np.zeros((3, m.n_par)), m.n_shape).any()


def test_large_mu_conditional_fits_stay_within_alpha_bounds(lz):
    """Background-only toys fitted at a signal strength far above what they allow: α used to run
    away (linear extrapolation lowers μ s(α) without limit; overflow, NON_FINITE, then Migrad
    failed); now every fit converges with |α| ≤ 5, some at the bound (flagged)."""
    from lzflow.stats.fitresult import ALPHA_BOUND

    gen, _ = generation_point(lz, 0.0)
    counts, aux = generate_toys(lz, gen, np.arange(24), 3, 400000, 0, "b")
    f = BatchedFitter(lz, FitConfig(n_threads=1))
    K = lz.n_shape
    for mu in (5.0, 50.0):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no overflow anywhere
            r = f.fit(counts, aux, mu_fixed=mu)
        assert r.converged.all(), r.failure_summary()
        alpha = r.params[:, -K:]
        assert np.all(np.abs(alpha) <= ALPHA_BOUND) and np.all(np.isfinite(r.nll))
        np.testing.assert_array_equal(r.at_bound[:, -K:], np.abs(alpha) == ALPHA_BOUND)
    assert r.at_bound[:, -K:].any()  # μ = 50: the fits end at the bound
