"""Multiplicative shape morphing (issue 12, ``systematics.interpolation: log_code4p``): positive
templates, exact anchors, exponential extrapolation, exact derivatives in the Newton rows, q̃ of the
batched fitter equal to iminuit's, profiling never tightening the Asimov limit, coverage.

Measured (``pytest -s``): on the 40×40 LZ-like model with 4 shape + 11 rate parameters, max |Δq̃|
batched vs iminuit ≈ 1e-9 over 48 toys; the additive code 4p of the same variations is negative in
some bins at α = −3 where log_code4p is > 0 in every bin the nominal fills.
"""

from __future__ import annotations

import numpy as np
import pytest

from lzflow.stats import asymptotic_limits, evaluate_test_statistic
from lzflow.stats.fit import BatchedFitter, fit_minuit
from lzflow.stats.fitresult import FitConfig
from lzflow.stats.model import BinnedModel, ModelError, ShapeSystematic
from lzflow.stats.pyhf_export import to_pyhf_workspace
from lzflow.stats.synthetic import lz_like_systematics_model, simple_model
from lzflow.stats.toys import generate_toys, generation_point


INTERPOLATIONS = ["log_quartic", "log_code4p", "log_pchip"]


@pytest.fixture(scope="module", params=INTERPOLATIONS)
def lz(request) -> BinnedModel:
    """The synthetic LZ-like model's variations, without the support they give bins the nominal
    leaves empty (a multiplicative morphing cannot; lzflow's varied templates never do that)."""
    m = lz_like_systematics_model()
    T = np.vstack([m.signal[None], m.backgrounds])
    systs = []
    for s in m.shape_systematics:
        up, down = np.where(T > 0, s.up, 0.0), np.where(T > 0, s.down, 0.0)
        # ±2σ anchors: the ±1σ variations continued, with a curvature (not the quartic's own extrapolation)
        systs.append(ShapeSystematic(s.name, up, down, np.maximum(T + 2.2 * (up - T), 0.3 * T),
                                     np.maximum(T + 1.7 * (down - T), 0.3 * T)))
    return m.with_shape_systematics(systs, request.param)


def _small(seed: int = 3, n_shape: int = 2, size: float = 0.4, interpolation: str = "log_quartic") -> BinnedModel:
    m0 = simple_model(n_bins=12, n_bkg=3, seed=seed)
    rng = np.random.default_rng(seed)
    T = np.vstack([m0.signal[None], m0.backgrounds])
    systs = []
    for k in range(n_shape):
        ru, rd = (1 + size * rng.uniform(-1, 1, (2,) + T.shape))
        systs.append(ShapeSystematic(f"s{k}", T * ru, T * rd, T * ru * rng.uniform(0.8, 1.5, T.shape) ** 0.5 * ru,
                                     T * rd * rd * rng.uniform(0.7, 1.2, T.shape)))
    return m0.with_shape_systematics(systs, interpolation)


def test_log_code4p_anchors_positivity_and_exponential_extrapolation():
    m0 = simple_model(n_bins=12, n_bkg=3, seed=1)
    T = np.vstack([m0.signal[None], m0.backgrounds])
    up, down = 1.45 * T, 0.61 * T  # the 10 GeV signal's NR light-yield variation (+45 %, −39 %)
    m = m0.with_shape_systematics([ShapeSystematic("nr_light", up, down)], "log_code4p")
    additive = m0.with_shape_systematics([ShapeSystematic("nr_light", up, down)])
    B = m.morph
    np.testing.assert_allclose(B.templates(np.array([0.0])), T, rtol=1e-15)
    np.testing.assert_allclose(B.templates(np.array([1.0])), up, rtol=1e-14)
    np.testing.assert_allclose(B.templates(np.array([-1.0])), down, rtol=1e-14)
    for a in (2.5, -3.0):  # outside ±1σ: (up/T)^α, (down/T)^|α|
        ratio = 1.45 if a > 0 else 0.61
        np.testing.assert_allclose(B.templates(np.array([a])), T * ratio ** abs(a), rtol=1e-13)
    # additive code 4p goes negative at α = −3 (1 − 3·0.39 < 0); the multiplicative one never does
    assert np.all(additive.morph.templates(np.array([-3.0]))[T > 0] < 0)
    grid = np.linspace(-5, 5, 201)[:, None]
    assert np.all(B.templates(grid)[:, T > 0] > 0)
    _assert_smooth(B, (-1.0, 1.0), second=True)


def _assert_smooth(B, points, second: bool) -> None:
    """ln T continuous with its first (and second) derivative across ``points``."""
    lnT = lambda a: B.log_factors(np.array([a]))  # noqa: E731
    h = 1e-4
    for a in points:
        lo, hi = a - 3 * h, a + 3 * h
        np.testing.assert_allclose(lnT(lo), lnT(hi), atol=1e-3)
        d1 = [(lnT(x + h) - lnT(x - h)) / (2 * h) for x in (lo, hi)]
        np.testing.assert_allclose(d1[0], d1[1], atol=1e-2)
        if second:
            d2 = [(lnT(x + h) - 2 * lnT(x) + lnT(x - h)) / h**2 for x in (lo, hi)]
            np.testing.assert_allclose(d2[0], d2[1], atol=5e-2)


def test_log_quartic_exact_at_all_anchors_positive_and_exponential_beyond_2sigma():
    m0 = simple_model(n_bins=12, n_bkg=3, seed=4)
    T = np.vstack([m0.signal[None], m0.backgrounds])
    rng = np.random.default_rng(4)
    # the 10 GeV signal's NR light yield: -2, -1, +1, +2 sigma = 0.29, 0.61, 1.45, 1.81 x nominal (quick config)
    anchors = {-2: 0.29 * T, -1: 0.61 * T, 1: 1.45 * T, 2: 1.81 * T * rng.uniform(0.9, 1.1, T.shape)}
    sy = ShapeSystematic("nr_light", anchors[1], anchors[-1], anchors[2], anchors[-2])
    B = m0.with_shape_systematics([sy], "log_quartic").morph
    for a, tmpl in {0: T, **anchors}.items():
        np.testing.assert_allclose(B.templates(np.array([float(a)])), tmpl, rtol=1e-12)
    grid = np.linspace(-5, 5, 401)[:, None]
    assert np.all(B.templates(grid)[:, T > 0] > 0)
    # beyond ±2σ ln T is linear: T(3)/T(2) = T(4)/T(3)
    t2, t3, t4 = (B.templates(np.array([x])) for x in (2.0, 3.0, 4.0))
    np.testing.assert_allclose(t3 / t2, t4 / t3, rtol=1e-12)
    _assert_smooth(B, (-2.0, 2.0), second=False)
    with pytest.raises(ModelError, match="no ±2 sigma templates.*log_quartic"):
        m0.with_shape_systematics([ShapeSystematic("g1", anchors[1], anchors[-1])], "log_quartic")


def _pchip_reference(y: np.ndarray):
    """scipy's PchipInterpolator through ``y`` ``(5, ...)`` at α = −2 … +2 (the reference of log_pchip)."""
    from scipy.interpolate import PchipInterpolator

    return PchipInterpolator(np.arange(-2.0, 3.0), y, axis=0)


def test_log_pchip_equals_scipy_pchip_inside_and_continues_linearly():
    """log_pchip's ln T, its slopes at the knots (Fritsch–Carlson, scipy's end rule) and its first and
    second derivatives equal scipy's PchipInterpolator inside ±2σ; beyond, ln T is linear with the end
    slope (C¹), which is at most 3 end secants; exact at all five anchors; the ±2σ templates required."""
    from lzflow.stats.logmorph import basis_functions, pchip_slopes

    rng = np.random.default_rng(12)
    y = rng.normal(size=(5, 400)) * rng.choice([0.01, 1.0, 7.0], size=(5, 400))
    y[:, :100] = np.where(rng.random((5, 100)) < 0.4, 0.0, y[:, :100])  # flat pieces and sign changes
    y[:, 100:150] = np.sort(y[:, 100:150], axis=0)  # monotone data
    y[:, 100:150] -= y[2, 100:150]
    y[2] = 0.0
    ref = _pchip_reference(y)
    knots = np.arange(-2.0, 3.0)
    d = pchip_slopes(y)
    np.testing.assert_allclose(d, ref.derivative()(knots), rtol=1e-12, atol=1e-12 * np.abs(y).max())
    C = np.concatenate([y[[0, 1, 3, 4]], d])
    a = np.linspace(-2.0, 2.0, 161)
    B, B1, B2 = basis_functions(a, "log_pchip")
    scale = np.abs(y).max()
    for b, order in ((B, 0), (B1, 1), (B2, 2)):
        np.testing.assert_allclose(b @ C, ref.derivative(order)(a) if order else ref(a), atol=1e-12 * scale * 10**order)
    np.testing.assert_array_equal(basis_functions(knots, "log_pchip")[0] @ C, y)  # exact at the knots
    mono = np.all(np.diff(y[:, 100:150], axis=0) >= 0, axis=0)
    assert mono.all() and np.all(np.diff((B @ C)[:, 100:150], axis=0) >= -1e-12)
    for end, sign in ((4, 1.0), (0, -1.0)):
        out = sign * np.array([2.0, 2.5, 3.0, 5.0])
        lin = y[end] + d[end] * (out - 2.0 * sign)[:, None]
        np.testing.assert_allclose(basis_functions(out, "log_pchip")[0] @ C, lin, rtol=1e-13, atol=1e-13 * scale)
        np.testing.assert_array_equal(basis_functions(out[1:], "log_pchip")[1] @ C, np.tile(d[end], (3, 1)))
        assert np.all(basis_functions(out[1:], "log_pchip")[2] == 0.0)
        secant = y[end] - y[end - int(sign)]
        assert np.all(np.abs(d[end]) <= 3.0 * np.abs(secant) * (1 + 1e-15))
    for b in basis_functions(np.array([np.nan, 0.5]), "log_pchip"):  # a NaN trial step (overflow) stays NaN
        assert np.isnan(b[0]).all() and np.isfinite(b[1]).all()
    m0 = simple_model(n_bins=12, n_bkg=3, seed=4)
    T = np.vstack([m0.signal[None], m0.backgrounds])
    anchors = {-2: 0.29 * T, -1: 0.61 * T, 1: 1.45 * T, 2: 1.81 * T * rng.uniform(0.9, 1.1, T.shape)}
    sy = ShapeSystematic("nr_light", anchors[1], anchors[-1], anchors[2], anchors[-2])
    Bm = m0.with_shape_systematics([sy], "log_pchip").morph
    for a_, tmpl in {0: T, **anchors}.items():
        np.testing.assert_allclose(Bm.templates(np.array([float(a_)])), tmpl, rtol=1e-14)
    _assert_smooth(Bm, (-2.0, -1.0, 1.0, 2.0), second=False)
    with pytest.raises(ModelError, match="no ±2 sigma templates.*log_pchip"):
        m0.with_shape_systematics([ShapeSystematic("g1", anchors[1], anchors[-1])], "log_pchip")


def test_log_pchip_on_the_default_workspace_exact_monotone_and_bounded():
    """On the default 40 GeV workspace (5 systematics, NEST templates; 1124 MC-empty sample-bins):
    log_pchip reproduces every template the response made in every well-measured bin (each anchor
    filled), and the sample's ratio r̄_a (over those bins) in the MC-empty ones, so each sample's
    morphed total at a knot is r̄_a times its nominal; the slopes at −1, 0, +1 are scipy's PCHIP
    ones, ln T is monotone between the knots −1, 0, +1 where the anchors are, and the end slopes are
    ±½ ln r̄_{±2} (module docstring)."""
    m0, _ = _default_workspace()
    m = m0.with_shape_systematics(m0.shape_systematics, "log_pchip")
    B = m.morph
    knots = np.arange(-2.0, 3.0)
    assert sum(B.floored.values()) == 1124
    for k, sy in enumerate(m.shape_systematics):
        al = np.zeros((5, B.K))
        al[:, k] = knots
        U = B.templates(al)
        tmpls = (sy.down2, sy.down, B.T, sy.up, sy.up2)
        empty = (B.T > 0) & np.any([t == 0 for t in tmpls], axis=0)
        assert empty.sum() == B.floored[sy.name]
        for a_, tmpl in zip(knots, tmpls):
            rbar = np.where(empty, 0.0, tmpl).sum(axis=1) / np.where(empty, 0.0, B.T).sum(axis=1)
            np.testing.assert_allclose(U[int(a_) + 2][~empty], tmpl[~empty], rtol=1e-12)  # exact where measured
            np.testing.assert_allclose(U[int(a_) + 2], np.where(empty, rbar[:, None] * B.T, tmpl), rtol=1e-12)
            np.testing.assert_allclose(U[int(a_) + 2].sum(axis=1), rbar * B.T.sum(axis=1), rtol=1e-12)
        y = np.concatenate([B.C[:2, k], np.zeros_like(B.C[0, k])[None], B.C[2:4, k]])  # (5, S, n)
        np.testing.assert_allclose(B.C[5:8, k], _pchip_reference(y).derivative()(knots[1:4]), rtol=1e-12,
                                   atol=1e-12 * np.abs(y).max())
        for end, sign in ((0, -1.0), (4, 1.0)):
            rbar = U[end].sum(axis=1) / B.T.sum(axis=1)
            np.testing.assert_allclose(B.C[4 + end, k], np.where(B.T > 0, 0.5 * sign * np.log(rbar)[:, None], 0.0),
                                       rtol=1e-12, atol=1e-15)
        grid = np.linspace(-1.0, 1.0, 21)
        al = np.zeros((grid.size, B.K))
        al[:, k] = grid
        lnT = B.log_factors(al)
        for j in range(2):  # monotone between knots j − 1 and j in the direction of the data
            seg = lnT[10 * j : 10 * j + 11]
            step = np.diff(seg, axis=0) * np.sign(y[j + 2] - y[j + 1])
            assert np.all(step >= -1e-12 * (1 + np.abs(y).max()))


@pytest.mark.parametrize("a", [2.5, 3.0, 5.0])
def test_log_pchip_growth_beyond_2sigma_is_bounded_in_every_bin(a):
    """The bound: beyond ±2σ no template was computed, so each bin keeps the shape of its ±2σ
    template and the sample's normalisation continues HistFactory's exponential extrapolation of the
    measured ±2σ normalisation r̄_{±2} (module docstring). So in *every* bin, exactly,
    T(α)/T(±2) = r̄_{±2}^{(|α|−2)/2} — the growth beyond the last computed template is set by the
    sample's ±2σ normalisation change, which the MC measures with all its events; on this workspace
    r̄ ∈ [0.146, 2.88] (B8 under nr_light: CEvNS events cross the S1 threshold), so that factor is at
    most 2.88^{1.5} = 4.9 at 3σ and 2.88^{2.5} = 14 at 5σ; with the signal at σ_ref, the whole
    analysis's expected events move by ≤ 1.10 at 3σ and ≤ 1.18 at 5σ. Until issue 12 (ratio floored
    at 10⁻³, PCHIP end slopes) one bin moved by 3e20 at 3σ and a sample total by 335."""
    m0, _ = _default_workspace()
    m = m0.with_shape_systematics(m0.shape_systematics, "log_pchip")
    B = m.morph
    filled = B.T > 0
    worst = 0.0
    for k in range(B.K):
        for sign in (-1.0, 1.0):
            al, al2 = np.zeros(B.K), np.zeros(B.K)
            al[k], al2[k] = sign * a, sign * 2.0
            U, U2 = B.templates(al), B.templates(al2)
            rbar = U2.sum(axis=1) / B.T.sum(axis=1)
            assert 0.14 < rbar.min() and rbar.max() < 2.9
            np.testing.assert_allclose(U[filled], (U2 * (rbar ** ((a - 2.0) / 2.0))[:, None])[filled], rtol=1e-12)
            np.testing.assert_allclose(U.sum(axis=1), B.T.sum(axis=1) * rbar ** (a / 2.0), rtol=1e-12)
            assert np.all(U[filled] / U2[filled] <= 2.88 ** ((a - 2.0) / 2.0))
            nuis = m.nominal_nuisance().copy()
            nuis[m.n_bkg + k] = sign * a
            worst = max(worst, m.expected(1.0, nuis).sum() / m.expected(1.0, m.nominal_nuisance()).sum())
    print(f"\nlog_pchip, default 40 GeV workspace: largest expected-events factor at |alpha| = {a}: {worst:.4g}")
    assert worst < {2.5: 1.09, 3.0: 1.11, 5.0: 1.19}[a]


def test_mc_empty_variation_takes_the_sample_ratio_and_new_support_refused():
    """A bin a varied template empties is an MC artefact: at every anchor it takes the ratio of its
    sample's well-measured bins (module docstring); a variation with support outside the nominal's,
    and a sample whose well-measured bins are all empty at an anchor, are refused in one line."""
    m0 = simple_model(n_bins=6, n_bkg=2, seed=2)
    T = np.vstack([m0.signal[None], m0.backgrounds])
    up, down = 1.2 * T, 0.9 * T
    up[1, 3] = 2.0 * T[1, 3]
    up[1, 2] = 0.0  # the +1σ template empties one bin of a background
    m = m0.with_shape_systematics([ShapeSystematic("g2", up, down)], "log_code4p")
    assert m.morph.floored == {"g2": 1}
    good = np.arange(6) != 2
    rbar_up = up[1, good].sum() / T[1, good].sum()
    assert rbar_up == pytest.approx((1.2 * T[1, good].sum() + T[1, 3] * 0.8) / T[1, good].sum(), rel=1e-12)
    np.testing.assert_allclose(m.morph.templates(np.array([1.0]))[1, 2], rbar_up * T[1, 2], rtol=1e-12)
    np.testing.assert_allclose(m.morph.templates(np.array([-1.0]))[1, 2], 0.9 * T[1, 2], rtol=1e-12)  # r̄ = 0.9
    np.testing.assert_allclose(m.morph.templates(np.array([1.0]))[1, good], up[1, good], rtol=1e-12)
    np.testing.assert_allclose(m.morph.templates(np.array([1.0]))[[0, 2]], up[[0, 2]], rtol=1e-12)
    lone = up.copy()
    lone[2] = np.where(np.arange(6) == 0, 1.0, 0.0) * T[2]  # sample 2: every bin but one emptied
    with pytest.raises(ModelError, match=r"'g2'.*\+1 sigma template of sample 2 is empty in every bin"):
        m0.with_shape_systematics([ShapeSystematic("g2", lone, np.where(np.arange(6) == 0, 0.0, 1.0) * T)],
                                  "log_code4p")
    T0 = T.copy()
    T0[2, 4] = 0.0
    filled = T0.copy()
    filled[2, 4] = 0.5
    with pytest.raises(ModelError, match=r"'g1'.*nominal is empty.*multiplicative"):
        m0.with_shape_systematics().__class__(m0.signal, T0[1:], m0.names, m0.rel_unc, "signal", (6,),
                                              (ShapeSystematic("g1", filled, T0),), "log_code4p")
    with pytest.raises(ModelError, match="interpolation 'code5'"):
        m0.with_shape_systematics([ShapeSystematic("g2", up, T)], "code5")


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("threshold", [0.5, 1e9])  # the split does not matter to this path
def test_gradient_and_hessian_are_exact(threshold, interpolation):
    m = _small(interpolation=interpolation)
    f = BatchedFitter(m, FitConfig(dense_threshold=threshold, hessian_float32=False))
    rng = np.random.default_rng(5)
    counts = rng.poisson(m.expected(1.0, np.r_[1, 1, 1, 0.3, -0.5]), size=(5, m.n_bins)).astype(float)
    aux = np.tile(np.r_[1.05, 0.95, 1.0, 0.2, -0.3], (5, 1))
    data = f.prepare(counts, aux)
    for mu_fixed in (None, 2.0):
        cols = f.free_columns(mu_fixed)
        y = rng.uniform(0.5, 1.5, (5, cols.size))
        y[:, -2:] = rng.uniform(-3.0, 3.0, (5, 2))  # inside and outside ±1σ and ±2σ
        rows = f.newton_rows(data, mu_fixed)
        nll, g = rows.start(y), rows.grad(y)
        h = rows.hess(None)
        full = np.tile(m.full_params(mu_fixed or 0.0), (5, 1))
        full[:, cols] = y
        np.testing.assert_allclose(nll, m.nll(full, counts, aux), rtol=1e-13, atol=1e-9)
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
        sub = np.array([True, False, True, True, False])
        np.testing.assert_allclose(rows.hess(sub), h[..., sub], rtol=1e-12)
        prob = f.minuit_problem(data, 0, mu_fixed)
        assert prob.nll(y[0]) == pytest.approx(nll[0], abs=1e-9)
        np.testing.assert_allclose(prob.grad(y[0]), g[0], rtol=1e-10, atol=1e-9)


def test_qtilde_batched_equals_iminuit(lz):
    """q̃_μ of the batched fitter = iminuit's within 1e-6 (4 shape + 11 rate parameters)."""
    gen, _ = generation_point(lz, 1.0)
    counts, aux = generate_toys(lz, gen, np.arange(48), 11, 400000, 0, "sb")
    f = BatchedFitter(lz, FitConfig(n_threads=1))
    init = np.tile(gen, (counts.shape[0], 1))
    ru = f.fit(counts, aux, init=init, fisher_at=gen)
    rc = f.fit(counts, aux, mu_fixed=1.0, init=ru.params)
    mu_ = fit_minuit(lz, counts, aux, init=init)
    mc = fit_minuit(lz, counts, aux, mu_fixed=1.0, init=mu_.params)
    assert ru.converged.all() and rc.converged.all() and mu_.converged.all() and mc.converged.all()
    qb = evaluate_test_statistic("qtilde", rc.nll, ru.nll, ru.mu, 1.0)
    qm = evaluate_test_statistic("qtilde", mc.nll, mu_.nll, mu_.mu, 1.0)
    print(f"\n{lz.interpolation}: max |q~ batched - q~ iminuit| = {np.max(np.abs(qb - qm)):.2e} over {qb.size} toys")
    assert np.max(np.abs(qb - qm)) < 1e-6
    assert np.max(ru.nll - mu_.nll) < 1e-7 and np.max(rc.nll - mc.nll) < 1e-7
    assert np.any(qb > 0.1) and np.ptp(ru.params[:, -4:]) > 1.0


def _default_workspace() -> tuple[BinnedModel, dict]:
    """The default analysis's 40 GeV workspace (tests/data; log_quartic, 5 shape + 11 rate parameters)."""
    import gzip
    import json
    from pathlib import Path

    from lzflow.workspace import workspace_model

    path = Path(__file__).parents[1] / "data" / "workspace_m40_systematics.json.gz"
    ws = json.loads(gzip.decompress(path.read_bytes()))
    return workspace_model(ws), ws


@pytest.mark.parametrize("interpolation", ["log_quartic", "log_pchip"])
def test_qtilde_batched_equals_iminuit_on_the_default_workspace(interpolation):
    """The default analysis's 40 GeV workspace with its 5 detector systematics (real NEST templates
    at 1e7 samples; tests/data): q̃_μ at the median limit equals iminuit's within 1e-6."""
    m, ws = _default_workspace()
    assert m.interpolation == "log_quartic" and m.n_shape == 5 and m.n_free_bkg == 11
    m = m.with_shape_systematics(m.shape_systematics, interpolation)
    m = m.with_signal(m.signal * ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"])
    gen, _ = generation_point(m, 1.0)
    counts, aux = generate_toys(m, gen, np.arange(24), 99, 400000, 0, "sb")
    f = BatchedFitter(m)
    init = np.tile(gen, (counts.shape[0], 1))
    ru = f.fit(counts, aux, init=init, fisher_at=gen)
    rc = f.fit(counts, aux, mu_fixed=1.0, init=ru.params)
    mu_ = fit_minuit(m, counts, aux, init=init)
    mc = fit_minuit(m, counts, aux, mu_fixed=1.0, init=mu_.params)
    qb = evaluate_test_statistic("qtilde", rc.nll, ru.nll, ru.mu, 1.0)
    qm = evaluate_test_statistic("qtilde", mc.nll, mu_.nll, mu_.mu, 1.0)
    assert ru.converged.all() and rc.converged.all()
    # The NLL is not convex in α: the knot slopes are 0 (log_pchip) or small (log_quartic) wherever a
    # bin's ±1σ anchors lie on the same side of the nominal, so the NLL has two wells along such an α
    # (mostly α_g1, at ±|α̂|). A single start picks one by the sign of a small gradient (toy 12,
    # log_pchip: α_g1 = +0.18 batched, −0.26 iminuit, ΔNLL = 0.10, iminuit lower). The batched fit's
    # further starts (lzflow.stats.multistart) keep the lowest minimum: never above Migrad's; where
    # they differ, Migrad stopped in a higher minimum, which a single-start batched fit started there
    # keeps, and Migrad started at the batched minimum stays there.
    assert np.max(ru.nll - mu_.nll) < 1e-7 and np.max(rc.nll - mc.nll) < 1e-7
    one = BatchedFitter(m, FitConfig(extra_starts=(), extra_starts_fixed=()))
    other = np.abs(rc.nll - mc.nll) + np.abs(ru.nll - mu_.nll) > 1e-7
    for t in np.flatnonzero(other):
        again = fit_minuit(m, counts[t : t + 1], aux[t : t + 1], mu_fixed=1.0, init=rc.params[t : t + 1])
        assert abs(again.nll[0] - rc.nll[t]) < 1e-7
        back = one.fit(counts[t : t + 1], aux[t : t + 1], mu_fixed=1.0, init=mc.params[t : t + 1])
        assert back.converged.all() and abs(back.nll[0] - mc.nll[t]) < 1e-7
    same = ~other
    print(f"\ndefault 40 GeV workspace, {interpolation}: max |q~ batched - q~ iminuit| = "
          f"{np.max(np.abs(qb - qm)[same]):.2e} over {same.sum()} toys; {other.sum()} toys where iminuit stopped "
          f"in a higher local minimum (by <= {np.max(mc.nll - rc.nll, initial=0):.3g})")
    assert np.max(np.abs(qb - qm)[same]) < 1e-6 and np.any(qb > 0.5)
    assert other.sum() <= 2


def test_profiling_cannot_tighten_asimov_limit(lz):
    base = asymptotic_limits(lz.with_shape_systematics()).expected[0]
    full = asymptotic_limits(lz).expected[0]
    print(f"\n{lz.interpolation} asymptotic CLs+b median: {base:.4f} without, {full:.4f} with the 4 shape systematics")
    assert full >= base * (1 - 1e-9)
    for seed in range(4):
        m = _small(seed=seed, n_shape=3, size=0.5)
        assert asymptotic_limits(m).expected[0] >= asymptotic_limits(m.with_shape_systematics()).expected[0] * (1 - 1e-9)


def test_pyhf_export_refused_with_one_line(lz):
    with pytest.raises(ValueError, match="log_.*cannot be written as a pyhf workspace; expected 'code4p'"):
        to_pyhf_workspace(lz)
    to_pyhf_workspace(lz.with_shape_systematics(lz.shape_systematics, "code4p"))  # the additive one is exported


@pytest.mark.slow  # ~3.5 min since every shape fit takes further starts (×4.5 CPU); the fast suite keeps
# tests/unit/test_systematics_coverage.py's CI version on the real 40 GeV workspace
def test_coverage_with_log_morphing_ci():
    """CLs+b coverage of the toy upper limit with 2 shape (log_quartic, ±40 % variations) + 2 rate
    nuisance parameters, pseudo-experiments generated away from nominal; 120 experiments
    (σ_cov ≈ 0.027)."""
    from lzflow.stats import toy_limits

    m = _small(seed=7, n_shape=2, size=0.4).with_rel_unc(np.array([0.2, 0.3, 0.0]))
    median = asymptotic_limits(m, method="clsb").expected[0]
    grid = np.linspace(0.02, 3.5, 12) * median
    nuis_true = np.r_[1.0 + m.rel_unc * np.array([1.0, -1.0, 0.0]), 1.0, -1.5]
    rng = np.random.default_rng([5, 12])
    hits = []
    for j in range(120):
        counts = rng.poisson(m.expected(median, nuis_true)).astype(np.float64)
        aux = nuis_true + np.r_[m.rel_unc, np.ones(m.n_shape)] * rng.standard_normal(m.n_aux)
        aux[2] = 1.0
        t = toy_limits(m, grid, 100, 200, base_seed=500_000 + j, mass_key=1, cl=0.9, method="clsb",
                       observed=(counts, aux), block_size=256, n_threads=1)
        hits.append(t.observed >= median)
    c = float(np.mean(hits))
    err = float(np.sqrt(0.09 / len(hits)))
    print(f"\nlog_quartic coverage: {c:.3f} ± {err:.3f}")
    assert abs(c - 0.9) <= 2.5 * err + 0.005


def _numpy_reference(m: BinnedModel, lay, y: np.ndarray, counts: np.ndarray, aux: np.ndarray):
    """NLL, gradient and Hessian of one toy written densely with numpy from :class:`LogMorphBasis`
    (templates, Jacobian, basis functions): the reference of the compiled rows."""
    from lzflow.stats.logmorph import basis_functions

    B = m.morph
    c, al = lay.split(y[None, :])
    c, al = c[0], al[0]
    U = B.templates(al)  # (S, n)
    _, B1, B2 = basis_functions(al, B.interpolation)
    D = np.einsum("km,mksi->ksi", B1, B.C)
    E2 = np.einsum("km,mksi->ksi", B2, B.C)
    nu = c @ U
    a = np.zeros(lay.p)
    a[lay.cols > 0] = aux[lay.cols[lay.cols > 0] - 1]
    pos = counts > 0
    nll = nu.sum() - counts[pos] @ np.log(nu[pos]) + 0.5 * lay.prec @ (y - a) ** 2
    q = np.where(pos, 1.0 - counts / np.where(pos, nu, 1.0), 1.0)
    w = np.where(pos, counts / np.where(pos, nu, 1.0) ** 2, 0.0)
    Jac = B.jacobian(c, al)[np.r_[lay.cfree, B.S + np.arange(B.K)]]
    g = Jac @ q + lay.prec * (y - a)
    H = (Jac * w) @ Jac.T + np.diag(lay.prec)
    nc = lay.nc
    cross = np.einsum("i,si,ksi->sk", q, U, D)[lay.cfree]
    H[:nc, nc:] += cross
    H[nc:, :nc] += cross.T
    H[nc:, nc:] += np.einsum("i,s,si,ksi,lsi->kl", q, c, U, D, D) + np.diag(np.einsum("i,s,si,ksi->k", q, c, U, E2))
    return nll, g, H


@pytest.mark.parametrize("float32", [False, True])
def test_compiled_rows_equal_the_numpy_reference(lz, float32):
    """The numba kernels' NLL, gradient and Hessian (float64, and float32 Hessians) equal a dense
    numpy evaluation of the same formulas, for μ free and fixed, inside and outside ±1σ/±2σ."""
    f = BatchedFitter(lz, FitConfig(hessian_float32=float32))
    gen, _ = generation_point(lz, 1.0)
    counts, aux = generate_toys(lz, gen, np.arange(6), 3, 400000, 0, "sb")
    data = f.prepare(counts, aux)
    rng = np.random.default_rng(8)
    for mu_fixed in (None, 1.5):
        lay = f._morph[mu_fixed is None].at(mu_fixed)
        y = np.tile(gen[lay.cols], (6, 1)) * rng.uniform(0.7, 1.3, (6, lay.p))
        y[:, -lz.n_shape:] = rng.uniform(-3.5, 3.5, (6, lz.n_shape))
        rows = f.newton_rows(data, mu_fixed)
        nll, g = rows.start(y), rows.grad(y)
        h = rows.hess(None)
        for t in range(6):
            rn, rg, rh = _numpy_reference(lz, lay, y[t], counts[t].astype(float), aux[t])
            assert nll[t] == pytest.approx(rn, rel=1e-13)
            np.testing.assert_allclose(g[t], rg, rtol=1e-9, atol=1e-9 * np.abs(rg).max())
            tol = 2e-5 if float32 else 1e-10
            np.testing.assert_allclose(h[..., t], rh, rtol=tol, atol=tol * np.abs(rh).max())


def test_fits_bit_identical_across_block_sizes_and_threads(lz):
    """A toy's fit does not depend on the toys fitted with it: the compiled loops run toy by toy
    and the line search's subsets evaluate only their pending rows."""
    gen, _ = generation_point(lz, 1.0)
    counts, aux = generate_toys(lz, gen, np.arange(40), 21, 400000, 0, "sb")
    init = np.tile(gen, (40, 1))
    out = []
    for block, threads in ((512, 1), (8, 1), (13, 2)):
        f = BatchedFitter(lz, FitConfig(block_size=block, n_threads=threads))
        ru = f.fit(counts, aux, init=init, fisher_at=gen)
        rc = f.fit(counts, aux, mu_fixed=1.0, init=ru.params)
        out.append((ru, rc))
    for ru, rc in out[1:]:
        for a, b in ((ru, out[0][0]), (rc, out[0][1])):
            assert np.array_equal(a.nll, b.nll) and np.array_equal(a.params, b.params)
            assert np.array_equal(a.status, b.status) and np.array_equal(a.n_iter, b.n_iter)
