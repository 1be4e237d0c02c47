"""Template MC statistics (Barlow–Beeston-lite γ per bin, profiled analytically): lzflow.stats.mcstat.

The profiled γ̂ against a brute-force minimisation, the profiled NLL's gradient and Hessian (envelope
theorem, Schur complement) against finite differences, and q̃ of the batched fitter against the
reference fit with explicit γ parameters (iminuit) and against pyhf's ``staterror`` on the exported
workspace, on the same toys.
"""

from __future__ import annotations

import numpy as np
import pytest

from lzflow.stats.fit import BatchedFitter, fit_minuit
from lzflow.stats.fitresult import FitConfig
from lzflow.stats.mcstat import (McStatLayout, McStatRows, explicit_gamma_fit, gamma_generation, gamma_hat,
                                 total_delta)
from lzflow.stats.model import BinnedModel, ModelError
from lzflow.stats.morphing import ShapeSystematic
from lzflow.stats.teststat import evaluate_test_statistic

NB = 30


def _model(seed: int = 1) -> tuple[BinnedModel, np.ndarray]:
    rng = np.random.default_rng(seed)
    sig = 3.0 * np.exp(-np.arange(NB) / 5.0)
    bkg = np.stack([np.full(NB, 2.0), np.linspace(5.0, 0.1, NB), np.linspace(0.1, 1.0, NB)])
    base = BinnedModel(sig, bkg, ("a", "b", "c"), np.array([0.1, 0.2, 0.0]))
    delta = rng.uniform(0.0, 0.3, NB)
    delta[delta < 0.05] = 0.0
    return base, delta


def _toys(model: BinnedModel, n: int, mu: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(model.expected(mu), size=(n, model.n_bins)).astype(float)
    d = model.mc_stat[model.mc_stat > 0]
    aux = np.column_stack([1 + 0.1 * rng.standard_normal(n), 1 + 0.2 * rng.standard_normal(n), np.ones(n),
                           1 + d * rng.standard_normal((n, d.size))])
    return counts, aux


@pytest.mark.parametrize("u,v,n,a,d2", [(0.7, 2.3, 4.0, 1.1, 0.04), (0.0, 3.0, 7.0, 0.9, 0.09),
                                        (2.0, 0.5, 0.0, 1.0, 0.25), (0.0, 5.0, 0.0, 0.8, 1.0),
                                        (1e-3, 40.0, 55.0, 1.02, 0.0025)])
def test_gamma_hat_is_the_minimum(u, v, n, a, d2):
    g = np.linspace(0.0, 6.0, 3_000_001)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = u + g * v - np.where(n > 0, n * np.log(u + g * v), 0.0) + (g - a) ** 2 / (2 * d2)
    gh = float(gamma_hat(*map(np.asarray, (u, v, n, a, d2))))
    assert gh == pytest.approx(g[np.nanargmin(f)], abs=3e-6)
    if u == 0:  # Conway's closed form (arXiv:1103.0354 Eq. 12, a = aux)
        conway = 0.5 * ((a - v * d2) + np.sqrt((a - v * d2) ** 2 + 4 * n * d2))
        assert gh == pytest.approx(max(conway, 0.0), rel=1e-12)


def _rows(model, counts, aux, mu_free=True, mu=None):
    lay = McStatLayout(model, mu_free).at(mu)
    rows = McStatRows(lay, counts[None], np.zeros((1, lay.p)), aux[None, lay.aux_gamma])
    rows.aux_c[0, lay.scaled] = aux[lay.cols[lay.scaled] - 1]
    return rows


@pytest.mark.parametrize("mu_free", [True, False])
def test_gradient_and_hessian_match_finite_differences(mu_free):
    base, delta = _model()
    model = base.with_mc_stat(delta)
    counts, aux = _toys(model, 1, 0.5, 3)
    aux[0, 3] = -0.5  # a negative auxiliary measurement: its γ̂ clips at 0 where n = 0
    counts[0, model.mc_stat > 0] *= np.r_[0.0, np.ones(model.n_gamma - 1)]
    rows = _rows(model, counts[0], aux[0], mu_free, None if mu_free else 0.8)
    y = np.array([[0.6, 1.1, 0.95]]) if mu_free else np.array([[1.1, 0.95]])
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
    # the Schur correction matters: the Gauss–Newton part Σ w x̃ x̃ᵀ + P alone is not the Hessian
    lay = rows.lay
    r, gam = ratios
    xt = lay.X * np.where(lay.scaled, gam[0][:, None], 1.0)
    gn = (xt * (r[0] / pt.nu[0])[:, None]).T @ xt + np.diag(lay.prec)
    assert np.abs(gn - h).max() > 1e-2 * np.abs(h).max()
    assert model.nll(model.full_params(y[0, 0] if mu_free else 0.8, np.r_[y[0, -2:], 1.0]), counts[0], aux[0]) \
        == pytest.approx(f(y), rel=1e-14)


def _qtilde(model, counts, aux, mu):
    fitter = BatchedFitter(model, FitConfig(n_threads=1))
    ru = fitter.fit(counts, aux, mu_lower=0.0)
    rc = fitter.fit(counts, aux, mu_fixed=mu)
    assert (ru.status == 0).all() and (rc.status == 0).all()
    return evaluate_test_statistic("qtilde", rc.nll, ru.nll, ru.params[:, 0], mu), ru


def test_qtilde_batched_equals_explicit_gamma_iminuit():
    base, delta = _model()
    model = base.with_mc_stat(delta)
    counts, aux = _toys(model, 4, 0.3, 5)
    q, ru = _qtilde(model, counts, aux, 1.0)
    q_ref = []
    for t in range(4):
        n_u, full = explicit_gamma_fit(model, counts[t], aux[t])
        n_c, _ = explicit_gamma_fit(model, counts[t], aux[t], mu_fixed=1.0)
        q_ref.append(2 * (n_c - n_u) if full[0] <= 1.0 else 0.0)
        assert ru.nll[t] == pytest.approx(n_u, abs=1e-7)
    assert np.abs(q - np.array(q_ref)).max() < 1e-6
    assert q.max() > 0.5  # not all trivially 0
    # the profiled Migrad path of the fitter agrees too
    np.testing.assert_allclose(fit_minuit(model, counts, aux).nll, ru.nll, atol=1e-7)
    # and the γ change q̃: without them the same toys give other values
    q_none, _ = _qtilde(base, counts, aux[:, :3], 1.0)
    assert np.abs(q_none - q).max() > 1e-3


def test_qtilde_equals_pyhf_staterror():
    pyhf = pytest.importorskip("pyhf")
    from lzflow.stats.pyhf_export import pyhf_data, to_pyhf_workspace

    base, delta = _model(2)
    model = base.with_mc_stat(delta)
    counts, aux = _toys(model, 3, 0.3, 7)
    q, _ = _qtilde(model, counts, aux, 1.0)
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-8, strategy=2))
    try:
        pm = pyhf.Workspace(to_pyhf_workspace(model)).model()
        cfg = pm.config
        np.testing.assert_allclose(np.asarray(cfg.param_set("mcstat").sigmas)[delta > 0], delta[delta > 0],
                                   rtol=1e-12)
        assert [f for f, d in zip(cfg.suggested_fixed()[cfg.par_slice("mcstat")], delta)] == list(delta == 0)
        qp = [float(pyhf.infer.test_statistics.qmu_tilde(1.0, pyhf_data(model, pm, counts[t], aux[t]), pm,
                                                          cfg.suggested_init(), cfg.suggested_bounds(),
                                                          cfg.suggested_fixed())) for t in range(3)]
    finally:
        pyhf.set_backend("numpy", "scipy")
    assert np.abs(q - np.array(qp)).max() < 1e-6


def test_no_gamma_is_the_rate_only_model():
    base, _ = _model()
    counts, _ = _toys(base.with_mc_stat(np.full(NB, 0.1)), 3, 0.3, 9)
    zero = base.with_mc_stat(np.zeros(NB))
    assert zero.n_gamma == 0 and zero.n_aux == base.n_aux
    a = BatchedFitter(base, FitConfig(n_threads=1)).fit(counts)
    b = BatchedFitter(zero, FitConfig(n_threads=1)).fit(counts)
    assert np.array_equal(a.nll, b.nll) and np.array_equal(a.params, b.params)


def test_total_delta_and_threshold():
    t = np.array([[4.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    rel = np.array([[0.1, 0.2, 0.5], [0.3, 0.04, 0.5]])
    d = total_delta(t, rel, 0.0)
    np.testing.assert_allclose(d, [0.1, np.sqrt(0.2 ** 2 + 0.04 ** 2) / 2, 0.0])
    np.testing.assert_allclose(total_delta(t, rel, 0.101), [0.0, d[1], 0.0])


def test_malformed_mc_stat_refused():
    base, delta = _model()
    with pytest.raises(ModelError, match="one relative error per bin"):
        base.with_mc_stat(delta[:-1])
    with pytest.raises(ModelError, match="finite and >= 0"):
        base.with_mc_stat(-delta)
    B0 = base.backgrounds.copy()
    B0[:, 0] = 0.0
    empty = BinnedModel(base.signal, B0, base.names, base.rel_unc)
    with pytest.raises(ModelError, match="without background"):
        empty.with_mc_stat(np.full(NB, 0.1))


def test_mc_stat_with_shape_systematics_is_a_model():
    """γ and α together (lzflow.stats.mcstat_morph; fits tested in test_mcstat_morph.py): the aux vector
    is [a_θ, a_α, a_γ], the Asimov a_γ = 1, and at nominal aux the profiled NLL is the γ-less one where
    the data are the background expectation (γ̂ = 1)."""
    base, delta = _model()
    up = np.vstack([base.signal, base.backgrounds]) * 1.1
    sy = ShapeSystematic("x", up, up / 1.21)
    model = base.with_mc_stat(delta).with_shape_systematics([sy])
    assert (model.n_shape, model.n_gamma, model.n_aux) == (1, int((delta > 0).sum()), 3 + 1 + int((delta > 0).sum()))
    counts, aux = model.asimov(0.0)
    np.testing.assert_array_equal(aux, np.r_[1.0, 1.0, 1.0, 0.0, np.ones(model.n_gamma)])
    full = model.full_params(0.0)
    plain = model.with_mc_stat(None)
    assert model.nll(full, counts, aux) == pytest.approx(plain.nll(full, counts, aux[:4]), rel=1e-14)


@pytest.mark.parametrize("stream", ["counter", "seedsequence"])
def test_toys_randomise_the_gamma_aux_and_their_qtilde_is_the_reference(stream):
    from lzflow.stats.request import ToyRequest
    from lzflow.stats.toys import run_toys

    base, delta = _model()
    model = base.with_mc_stat(delta)
    n = 400 if stream == "counter" else 40
    req = ToyRequest(base_seed=11, mass_key=400000, poi_index=0, hypothesis="sb", toy_indices=np.arange(n),
                     mu=1.0, block_size=64, n_threads=1, stream=stream)
    res = run_toys(model, req)
    assert res.aux.shape == (n, model.n_aux)
    ag = res.aux[:, model.n_bkg:]
    centre = gamma_generation(model, res.gen_params)  # γ̂̂(μ = 1) on the Asimov background-only data
    assert np.abs(centre - 1).max() > 0.02  # the signal pulls the γ of the conditional fit
    z = (ag - centre) / delta[delta > 0]  # a_γ ~ Gauss(γ̂̂, δ): standard normal after scaling
    assert abs(z.mean()) < 4 / np.sqrt(z.size) and abs(z.std() - 1) < 0.05
    assert np.all(np.isfinite(res.q[:, 0])) and (res.status_uncond == 0).all()
    # the same toys split differently give the same records (a_γ are a function of the toy index)
    half = run_toys(model, ToyRequest(base_seed=11, mass_key=400000, poi_index=0, hypothesis="sb",
                                      toy_indices=np.arange(n // 2, n), mu=1.0, block_size=64, n_threads=1,
                                      stream=stream))
    assert np.array_equal(half.aux, res.aux[n // 2:]) and np.array_equal(half.q, res.q[n // 2:])
    # q̃ of the first toys against the explicit-γ reference fits of the same (regenerated) toys
    from lzflow.stats.toys import generate_toys

    counts, aux = generate_toys(model, res.gen_params, np.arange(3), 11, 400000, 0, "sb", stream)
    assert np.array_equal(aux, res.aux[:3])
    for t in range(3):
        n_u, full = explicit_gamma_fit(model, counts[t], aux[t])
        n_c, _ = explicit_gamma_fit(model, counts[t], aux[t], mu_fixed=1.0)
        assert res.q[t, 0] == pytest.approx(2 * (n_c - n_u) if full[0] <= 1.0 else 0.0, abs=1e-6)


def test_combining_runs_with_gamma_refused():
    from lzflow.stats.combine import combine_models

    base, delta = _model()
    with pytest.raises(ModelError, match="template MC statistics"):
        combine_models({"a": base.with_mc_stat(delta), "b": base}, ())


@pytest.mark.parametrize("stream", ["counter", "seedsequence"])
def test_toys_gamma_generated_at_the_conditional_fit(stream):
    """a_γ ~ Gauss(γ̂̂(μ), δ), as θ and α at θ̂̂, α̂̂: at background-only Asimov data γ̂̂(0) = 1 exactly and
    the toys are those drawn at the nominal γ bit for bit; with data the generation point carries γ̂̂,
    the γ of the explicit-γ conditional fit, and the a_γ move by γ̂̂ − 1 with the same normals."""
    from lzflow.stats.toys import BatchedFitter as _BF, ToySampler, generation_point

    base, delta = _model()
    model = base.with_mc_stat(delta)
    fitter = _BF(model, FitConfig(n_threads=1))
    gen0, _ = generation_point(model, 0.0, None, fitter)
    g0 = gamma_generation(model, gen0)
    assert np.array_equal(g0, np.ones(model.n_gamma))
    idx = np.arange(40)
    nominal = ToySampler(fitter, gen0, stream).draw(3, 7, 0, "b", idx)[1]
    at_g0 = ToySampler(fitter, gen0, stream, g0).draw(3, 7, 0, "b", idx)[1]
    assert np.array_equal(nominal, at_g0)
    from lzflow.stats.request import ToyRequest
    from lzflow.stats.toys import run_toys

    res = run_toys(model, ToyRequest(base_seed=3, mass_key=7, poi_index=0, hypothesis="b", toy_indices=idx, mu=1.0,
                                     block_size=64, n_threads=1, stream=stream))
    assert np.array_equal(res.aux, nominal)  # run_toys' B-only toys: today's, bit for bit
    # data: a toy-like observed dataset (counts and a_γ off nominal); B-only and S+B generation points
    counts, aux = _toys(model, 1, 0.3, 21)
    obs = (counts[0], aux[0])
    for mu in (0.0, 1.0):
        gen, _ = generation_point(model, mu, obs, fitter)
        g = gamma_generation(model, gen, obs)
        _, full = explicit_gamma_fit(model, counts[0], aux[0], mu_fixed=mu)
        np.testing.assert_allclose(g, full[1 + model.n_bkg:], atol=2e-5)  # Migrad's γ (tolerance-limited)
        assert np.abs(g - 1).max() > 0.05
        moved = ToySampler(fitter, gen, stream, g).draw(3, 7, 0, "sb", idx)[1]
        plain = ToySampler(fitter, gen, stream).draw(3, 7, 0, "sb", idx)[1]
        np.testing.assert_array_equal(moved[:, :3], plain[:, :3])
        np.testing.assert_allclose(moved[:, 3:] - plain[:, 3:], np.broadcast_to(g - 1, (40, g.size)), atol=1e-14)
