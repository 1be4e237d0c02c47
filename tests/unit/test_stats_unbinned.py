"""Interpolated histogram densities and the unbinned likelihood: maths, equivalences, toys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lzflow.stats import (
    BatchedFitter,
    FitConfig,
    FitStatus,
    ToyResult,
    evaluate_test_statistic,
)
from lzflow.stats.interpolate import HistDensity2D
from lzflow.stats.stencil import EDGE_MODES, bin_centres, rebin, stencil_1d
from lzflow.stats.toys import ToyRequest, generate_toys, generation_point, mass_key, run_toys
from lzflow.stats.unbinned import UnbinnedFitter, fit_minuit_events
from lzflow.stats.unbinned_model import EventToys, UnbinnedModel, generate_unbinned_toys

#: the default analysis' 40 GeV workspace (real NEST templates), committed (tests/data/README.md)
WS40 = Path(__file__).resolve().parents[1] / "data" / "workspace_m40.json.gz"
MU40 = 0.003  # ≈ the expected 90% CL limit at 40 GeV (≈ 11 signal events)


@pytest.fixture(scope="module")
def ws40() -> dict:
    import gzip

    return json.loads(gzip.decompress(WS40.read_bytes()))


def _equal(a: ToyResult, b: ToyResult) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True)
               for k in ToyResult.PER_TOY)


# ----------------------------------------------------------------------------- interpolation
def test_rebin_sums_blocks_and_rejects_indivisible():
    rng = np.random.default_rng(0)
    v = rng.uniform(size=(3, 6, 4))
    edges = [np.linspace(0, 6, 7), np.linspace(1, 3, 5)]
    r, e = rebin(v, edges, 2)
    assert r.shape == (3, 3, 2)
    np.testing.assert_allclose(r[1, 2, 1], v[1, 4:6, 2:4].sum())
    np.testing.assert_allclose(r.sum(axis=(1, 2)), v.sum(axis=(1, 2)))
    np.testing.assert_array_equal(e[0], [0, 2, 4, 6])
    np.testing.assert_array_equal(e[1], [1, 2, 3])
    with pytest.raises(ValueError, match="divisible"):
        rebin(v, edges, 3)  # 4 bins along y
    with pytest.raises(ValueError):
        rebin(v, edges, 0)


def _poly_hist(order: int, rng: np.random.Generator):
    """Irregular 2D binning and a random, positive tensor polynomial of degree ≤ order per axis,
    stored as contents = P(centre) × area (so the per-area node values are P at the centres)."""
    ex = np.sort(np.r_[0.0, rng.uniform(0, 4, 8), 4.0])
    ey = np.sort(np.r_[-1.0, rng.uniform(-1, 2, 7), 2.0])
    cx, cy = rng.normal(size=order + 1), rng.normal(size=order + 1)
    xx, yy = np.linspace(-2, 6, 401), np.linspace(-3, 4, 401)
    shift = 1.0 + np.abs(np.polyval(cx, xx)).max() * np.abs(np.polyval(cy, yy)).max()

    def poly(x, y):
        return np.polyval(cx, x) * np.polyval(cy, y) + shift

    xc, yc = bin_centres(ex), bin_centres(ey)
    area = np.diff(ex)[:, None] * np.diff(ey)[None, :]
    return poly(xc[:, None], yc[None, :]) * area, [ex, ey], poly


@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("edge", EDGE_MODES)
def test_lagrange_property(order, edge):
    """Order N reproduces polynomials of degree ≤ N per axis exactly between the centres
    (everywhere in the range with the shifted stencil); order 0 is the bin value."""
    rng = np.random.default_rng(10 + order)
    contents, edges, poly = _poly_hist(order, rng)
    h = HistDensity2D(contents, edges, order, edge)
    area = np.diff(edges[0])[:, None] * np.diff(edges[1])[None, :]
    if order == 0:
        x, y = rng.uniform(0, 4, 2000), rng.uniform(-1, 2, 2000)
        ix = np.searchsorted(edges[0], x, side="right") - 1
        iy = np.searchsorted(edges[1], y, side="right") - 1
        np.testing.assert_array_equal(h.interpolate(x, y), (contents / area)[ix, iy])
        np.testing.assert_allclose(h.pdf(x, y), (contents / area)[ix, iy] / contents.sum(),
                                   rtol=1e-14)
        return
    xc, yc = bin_centres(edges[0]), bin_centres(edges[1])
    k = order // 2 + 1  # stay where the whole stencil is inside the histogram
    x, y = rng.uniform(xc[k], xc[-k - 1], 3000), rng.uniform(yc[k], yc[-k - 1], 3000)
    np.testing.assert_allclose(h.interpolate(x, y), poly(x, y), rtol=1e-12)
    if edge == "shift":  # polynomial extrapolation up to the range limits
        x, y = rng.uniform(0, 4, 3000), rng.uniform(-1, 2, 3000)
        np.testing.assert_allclose(h.interpolate(x, y), poly(x, y), rtol=1e-12)
        # P > 0 here, so nothing is clipped and Z is the exact polynomial integral
        assert np.all(h.clipped_integral == 0)
    assert np.all(h.interpolate(np.array([-0.1, 4.1]), np.array([0.0, 0.0])) == 0)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_root_stencil_is_continuous_and_mirrors(order):
    """ROOT's stencil rule gives a continuous interpolant (order 2 included: the 'three
    nearest centres' rule would jump at the bin edges); mirror makes order 1 flat in the
    outer half bins."""
    rng = np.random.default_rng(3)
    edges = np.linspace(0.0, 10.0, 11)
    x = np.r_[edges[1:-1], bin_centres(edges)]
    d = rng.uniform(0.5, 2.0, 10)
    vals = []
    for xx in (np.nextafter(x, -np.inf), np.nextafter(x, np.inf)):
        idx, w = stencil_1d(xx, edges, order, "mirror")
        vals.append((w * d[idx]).sum(axis=1))
    np.testing.assert_allclose(vals[0], vals[1], rtol=1e-12)
    if order == 1:
        idx, w = stencil_1d(np.array([0.0, 0.2, 0.5, 9.7, 10.0]), edges, 1, "mirror")
        np.testing.assert_allclose((w * d[idx]).sum(axis=1), d[[0, 0, 0, 9, 9]], rtol=1e-14)


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_normalisation_real_templates(ws40, order):
    """∫∫ f = 1 on the 40 GeV templates (signal and the steep Rn222 band), checked by an
    independent composite Gauss–Legendre sum of the point evaluations: to 1e-10 where nothing is
    clipped, to 2e-5 where the clipping leaves kinks (the check's own accuracy)."""
    names = [b["name"] for b in ws40["backgrounds"]]
    t = np.stack([np.asarray(ws40["signal"]["template"]),
                  np.asarray(ws40["backgrounds"][names.index("Rn222")]["template"])])
    edges = [np.asarray(a["edges"]) for a in ws40["axes"]]
    for factor in (1, 2):
        tr, er = rebin(t, edges, factor)
        h = HistDensity2D(tr, er, order, "mirror")
        assert np.all(h.norm_error <= 1e-5 * h.norm)
        assert np.all(h.clipped_integral >= 0)
        grids = []
        for e in er:  # cells: edges and centres, 6 sub-intervals × 4 Gauss nodes each
            b = np.sort(np.r_[e, bin_centres(e)])
            b = np.concatenate([np.linspace(b[i], b[i + 1], 7)[:-1] for i in range(b.size - 1)]
                               + [b[-1:]])
            tt, ww = np.polynomial.legendre.leggauss(4)
            half = 0.5 * np.diff(b)
            nodes = ((b[:-1] + b[1:]) / 2)[:, None] + half[:, None] * tt
            grids.append((nodes.ravel(), (half[:, None] * ww).ravel()))
        (xg, wx), (yg, wy) = grids
        X, Y = np.meshgrid(xg, yg, indexing="ij")
        f = h.pdf(X.ravel(), Y.ravel()).reshape(X.shape + (2,))
        integral = np.einsum("i,ijs,j->s", wx, f, wy)
        tol = 1e-10 if np.all(h.clipped_integral == 0) else 2e-5
        np.testing.assert_allclose(integral, 1.0, rtol=0, atol=tol)
        if order >= 2:
            assert np.max(h.clipped_integral / h.norm) > 1e-5  # the clipping is exercised


def test_floor_keeps_populated_bins_positive(ws40):
    m0 = UnbinnedModel.from_workspace(ws40, 3, 2)
    m1 = UnbinnedModel.from_workspace(ws40, 3, 2, floor=1e-3)
    gen = m0.truth.full_params(0.0)
    ev = generate_unbinned_toys(m0, gen, np.arange(40), 1, 2, 3, "b")
    dead0 = (m0.event_values(ev.x, ev.y) <= 0).all(axis=1)
    dead1 = (m1.event_values(ev.x, ev.y) <= 0).all(axis=1)
    assert dead0.any() and not dead1.any()
    np.testing.assert_allclose(m1.densities.norm_error, 0, atol=1e-5 * m1.densities.norm.max())


# ----------------------------------------------------------------------------- likelihood
def test_order0_unbinned_equals_binned(ws40):
    """Order 0 at full resolution: ν_s f_s(x) = ν_{s,i}/A_i, so the unbinned NLL is the binned
    NLL of the binned events plus Σ_e ln A_i — fits and q̃ coincide."""
    m = UnbinnedModel.from_workspace(ws40, 0, 1)
    gen, _ = generation_point(m.truth, MU40)
    ev = generate_unbinned_toys(m, gen, np.arange(24), 5, mass_key(40.0), 2, "sb")
    counts = ev.binned_counts(m)
    assert np.array_equal(counts.sum(axis=1), ev.n_events)
    assert np.array_equal(m.bin_index(ev.x, ev.y), ev.truth_bin)  # events lie in their bins
    cfg = FitConfig(n_threads=1)
    bf, uf = BatchedFitter(m.truth, cfg), UnbinnedFitter(m, cfg)
    data = uf.prepare(ev)
    init = np.broadcast_to(gen, (ev.n, gen.size))
    rb, rbc = bf.fit(counts, ev.aux, init=init), bf.fit(counts, ev.aux, mu_fixed=MU40, init=init)
    ru, ruc = uf.fit(data, init=init), uf.fit(data, mu_fixed=MU40, init=init)
    assert ru.converged.all() and ruc.converged.all()
    area = np.diff(m.edges[0])[:, None] * np.diff(m.edges[1])[None, :]
    const = counts @ np.log(area.ravel())
    np.testing.assert_allclose(ru.mu, rb.mu, rtol=0, atol=1e-7 * MU40)
    np.testing.assert_allclose(ru.params, rb.params, rtol=0, atol=1e-7)
    np.testing.assert_allclose(ru.nll - rb.nll, const, rtol=0, atol=1e-7)
    np.testing.assert_allclose(ruc.nll - rbc.nll, const, rtol=0, atol=1e-7)
    qb = evaluate_test_statistic("qtilde", rbc.nll, rb.nll, rb.mu, MU40)
    qu = evaluate_test_statistic("qtilde", ruc.nll, ru.nll, ru.mu, MU40)
    np.testing.assert_allclose(qu, qb, rtol=0, atol=1e-7)
    assert np.sum(qb > 0) >= 5
    # the reference NLL of the model agrees with the fitter's
    x, y = ev.events(0)
    np.testing.assert_allclose(m.nll(ru.params[0], x, y, ev.aux[0]), ru.nll[0], rtol=1e-12)


def test_fixed_background_and_failure_handling(ws40):
    """A fixed background (rel_unc = 0) is removed from the fits like in the binned model; fits
    that cannot converge (max_iter = 1) are retried or refitted with iminuit, never dropped."""
    ws = json.loads(json.dumps(ws40))
    ws["backgrounds"][1]["rel_unc"] = 0.0
    m = UnbinnedModel.from_workspace(ws, 0, 1)
    gen, _ = generation_point(m.truth, MU40)
    ev = generate_unbinned_toys(m, gen, np.arange(10), 1, 2, 3, "sb")
    ref = UnbinnedFitter(m, FitConfig(n_threads=1)).fit(UnbinnedFitter(m).prepare(ev))
    rb = BatchedFitter(m.truth, FitConfig(n_threads=1)).fit(ev.binned_counts(m), ev.aux)
    assert ref.converged.all() and np.all(ref.params[:, 2] == 1.0)
    # both stop at λ² < tol = 1e-9 (NLL within ~1e-9 of the minimum; other iterates, compiled
    # vs batched Newton): parameters agree to ~1e-6 (observed 2.4e-7)
    np.testing.assert_allclose(ref.params, rb.params, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ref.nll, UnbinnedFitter(m).fit(UnbinnedFitter(m).prepare(ev), batched=True).nll,
                               rtol=0, atol=1e-9)
    f1 = UnbinnedFitter(m, FitConfig(n_threads=1, max_iter=1))
    r1 = f1.fit(f1.prepare(ev))
    assert r1.n == 10 and np.all(r1.first_failure == FitStatus.MAX_ITER)
    assert r1.converged.all() and np.all(r1.strategy > 0)  # NEWTON_RETRY or MINUIT
    np.testing.assert_allclose(r1.nll, ref.nll, rtol=0, atol=1e-6)
    f2 = UnbinnedFitter(m, FitConfig(n_threads=1, max_iter=1, retry=False, minuit_fallback=False))
    r2 = f2.fit(f2.prepare(ev))
    assert np.all(r2.status == FitStatus.MAX_ITER) and np.all(np.isfinite(r2.nll))


def test_batched_fits_match_iminuit(ws40):
    """Order 3, coarse templates (the hardest model): the batched Newton fits agree with
    Migrad on the same unbinned NLL (μ̂ far below its σ ≈ 1e-3, NLL to 1e-6)."""
    m = UnbinnedModel.from_workspace(ws40, 3, 2, floor=1e-3)
    gen, _ = generation_point(m.truth, MU40)
    ev = generate_unbinned_toys(m, gen, np.arange(6), 9, mass_key(40.0), 1, "sb")
    uf = UnbinnedFitter(m, FitConfig(n_threads=1))
    data = uf.prepare(ev)
    init = np.broadcast_to(gen, (ev.n, gen.size))
    ru, ruc = uf.fit(data, init=init, fisher_at=gen), uf.fit(data, mu_fixed=MU40, init=init)
    rm, rmc = fit_minuit_events(uf, data, init=init), fit_minuit_events(uf, data, mu_fixed=MU40, init=init)
    assert ru.converged.all() and rm.converged.all() and rmc.converged.all()
    np.testing.assert_allclose(ru.mu, rm.mu, rtol=0, atol=2e-6)
    np.testing.assert_allclose(ru.nll, rm.nll, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ruc.nll, rmc.nll, rtol=0, atol=1e-6)
    assert np.all(ru.nll <= rm.nll + 1e-8)  # Newton reaches the minimum at least as well


def test_order0_bin_columns_are_the_event_likelihood(ws40):
    """Order 0 fits one column per template bin weighted by its events: the same NLL as one
    column per event (fits, and the model's reference NLL, to rounding), the same q̃, and the
    same Migrad fits on either form."""
    m = UnbinnedModel.from_workspace(ws40, 0, 2)
    gen, _ = generation_point(m.truth, MU40)
    ev = generate_unbinned_toys(m, gen, np.arange(12), 4, mass_key(40.0), 1, "sb")
    uf = UnbinnedFitter(m, FitConfig(n_threads=1))
    binned, events = uf.prepare(ev), uf.prepare(ev, aggregate=False)
    assert binned.weight is not None and events.weight is None
    assert np.array_equal(binned.weight.sum(axis=1), ev.n_events)
    assert binned.V.shape[2] < events.V.shape[2] / 10  # ≈ 110 bins against ≈ 3300 events
    init = np.broadcast_to(gen, (ev.n, gen.size))
    rb, re_ = uf.fit(binned, init=init, fisher_at=gen), uf.fit(events, init=init, fisher_at=gen)
    cb, ce = uf.fit(binned, mu_fixed=MU40, init=init), uf.fit(events, mu_fixed=MU40, init=init)
    assert rb.converged.all() and re_.converged.all() and cb.converged.all() and ce.converged.all()
    np.testing.assert_allclose(rb.nll, re_.nll, rtol=0, atol=1e-8)
    np.testing.assert_allclose(rb.params, re_.params, rtol=0, atol=1e-6)
    ref = [m.nll(rb.params[t], *ev.events(t), ev.aux[t]) for t in range(ev.n)]
    np.testing.assert_allclose(rb.nll, ref, rtol=1e-12, atol=0)
    qb = evaluate_test_statistic("qtilde", cb.nll, rb.nll, rb.mu, MU40)
    qe = evaluate_test_statistic("qtilde", ce.nll, re_.nll, re_.mu, MU40)
    np.testing.assert_allclose(qb, qe, rtol=0, atol=1e-8)
    mb, me = fit_minuit_events(uf, binned, init=init), fit_minuit_events(uf, events, init=init)
    np.testing.assert_allclose(mb.nll, me.nll, rtol=0, atol=1e-7)
    r64 = UnbinnedFitter(m, FitConfig(n_threads=1, hessian_float32=False)).fit(events, init=init, fisher_at=gen)
    assert r64.converged.all()  # double-precision Hessians: other iterates, the same minimum
    np.testing.assert_allclose(r64.nll, re_.nll, rtol=0, atol=1e-8)


@pytest.mark.parametrize("order, floor, rebin_", [(0, 1e-3, 2), (3, 1e-3, 2), (3, 0.0, 1)])
def test_toy_qtilde_equals_iminuit(ws40, order, floor, rebin_):
    """The toy pipeline's q̃ (run_toys: compiled draws and densities, batched Newton fits) equals
    q̃ from Migrad fits of the same events, one column per event, within 1e-6 (40 GeV, orders 0
    and 3 on the interpolation study's 20×20 templates; floor 0 on 40×40 leaves infeasible toys,
    q = NaN in both)."""
    m = UnbinnedModel.from_workspace(ws40, order, rebin_, floor=floor)
    n = 16
    kw = dict(base_seed=21, mass_key=mass_key(40.0), poi_index=1, hypothesis="sb", mu=MU40)
    res = run_toys(m, ToyRequest(toy_indices=np.arange(n), block_size=n, n_threads=1, **kw))
    ev = generate_unbinned_toys(m, res.gen_params, np.arange(n), 21, mass_key(40.0), 1, "sb")
    uf = UnbinnedFitter(m, FitConfig(n_threads=1))
    data = uf.prepare(ev, aggregate=False)
    init = np.broadcast_to(res.gen_params, (n, m.n_par))
    mu_r, mc_r = fit_minuit_events(uf, data, init=init), fit_minuit_events(uf, data, mu_fixed=MU40, init=init)
    q_m = evaluate_test_statistic("qtilde", mc_r.nll, mu_r.nll, mu_r.mu, MU40)
    np.testing.assert_array_equal(np.isnan(q_m), np.isnan(res.q[:, 0]))
    ok = np.isfinite(q_m)
    assert ok.sum() >= (n // 2 if floor == 0 else n)
    np.testing.assert_allclose(res.q[ok, 0], q_m[ok], rtol=0, atol=1e-6)
    assert np.all(res.nll_uncond[ok] <= mu_r.nll[ok] + 1e-7)  # Newton's minimum is at least as low
    assert np.sum(res.q[ok, 0] > 0) >= 3


def test_compiled_draws_are_the_numpy_definition(ws40):
    """The compiled per-event loop gives, bit for bit, the draws of the word layout in
    :mod:`lzflow.stats.unbinned_model`: bin = min(searchsorted(cdf, u₀), last populated bin),
    position lo + u (hi − lo) kept below hi (numpy, written out here)."""
    from lzflow.stats._rng import ensemble_key, uniforms_from_words, words
    from lzflow.stats.unbinned_model import UnbinnedToySampler

    m = UnbinnedModel.from_workspace(ws40, 1, 1)
    gen, _ = generation_point(m.truth, MU40)
    sampler = UnbinnedToySampler(m, gen)
    key = ensemble_key(7, mass_key(40.0), 2, 1)
    toys = np.arange(100, 130)
    ev = sampler.draw_key(key, toys)
    nf = m.free_bkg.size
    toy = np.repeat(toys, ev.n_events)
    j = (np.arange(ev.x.size) - np.repeat(ev.offsets[:-1], ev.n_events)).astype(np.uint64)
    u = uniforms_from_words(words(key, toy[:, None], np.uint64(nf + 1) + np.uint64(3) * j[:, None]
                                  + np.arange(3, dtype=np.uint64)[None, :]))
    b = np.minimum(np.searchsorted(sampler.cdf, u[:, 0], side="right"), sampler.last_pos)
    np.testing.assert_array_equal(ev.truth_bin, b)
    ix, iy = np.divmod(b, m.bin_shape[1])
    for got, e, i, uu in ((ev.x, m.edges[0], ix, u[:, 1]), (ev.y, m.edges[1], iy, u[:, 2])):
        want = np.minimum(e[i] + uu * (e[i + 1] - e[i]), np.nextafter(e[i + 1], -np.inf))
        np.testing.assert_array_equal(got, want)
    part = ev.take(np.arange(5, 17))  # a range of toys: slices, the same as the general gather
    assert np.array_equal(part.x, np.concatenate([ev.events(t)[0] for t in range(5, 17)]))
    assert np.array_equal(part.offsets, np.r_[0, np.cumsum(ev.n_events[5:17])])


@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("edge, floor, rebin_", [("mirror", 0.0, 1), ("shift", 1e-3, 2)])
def test_compiled_densities_are_pdf_points(ws40, order, edge, floor, rebin_):
    """The compiled template values at the events are HistDensity2D.pdf_points × totals bit for
    bit (points inside, on the range's edges and outside it), with the bits of the positive
    templates; padding is zero."""
    m = UnbinnedModel.from_workspace(ws40, order, rebin_, edge, floor)
    gen, _ = generation_point(m.truth, MU40)
    ev = generate_unbinned_toys(m, gen, np.arange(3), 2, mass_key(40.0), 1, "sb")
    (ex, ey), rng = m.edges, np.random.default_rng(order)
    xs = [ev.events(0)[0], np.r_[ex[0], ex[-1], ex[0] - 1.0, ex[5], rng.uniform(ex[0], ex[-1], 50)],
          ev.events(2)[0]]
    ys = [ev.events(0)[1], np.r_[ey[0], ey[-1], ey[3], ey[-1] + 0.1, rng.uniform(ey[0], ey[-1], 50)],
          ev.events(2)[1]]
    toys = EventToys.from_lists(xs, ys, ev.aux[:3])
    fitter = UnbinnedFitter(m, FitConfig(n_threads=1))
    assert fitter.power_basis == (order > 0)
    power = fitter.prepare(toys, aggregate=False)
    fitter.power_basis = False  # the Lagrange form: bit for bit
    data = fitter.prepare(toys, aggregate=False)
    for t in range(3):
        want = m.event_values(xs[t], ys[t])
        k = want.shape[0]
        assert np.array_equal(data.V[t, :, :k].T, want)
        # the power basis per stencil cell: the same polynomial to ~1e-15 of each template's scale
        scale = np.abs(want).max(axis=0) + 1e-300
        assert np.all(np.abs(power.V[t, :, :k].T - want) <= 1e-13 * scale)
        np.testing.assert_array_equal(power.bits[t], data.bits[t])
        assert np.all(data.V[t, :, k:] == 0) and np.all(data.pad[t, k:]) and not data.pad[t, :k].any()
        np.testing.assert_array_equal(data.bits[t, :k], ((want > 0) << np.arange(m.n_par)).sum(axis=1))
    assert np.all(data.V[1, :, 2:4] == 0) and data.dead[1]  # outside the range: no template
    if order > 0:
        assert np.array_equal(power.V, UnbinnedFitter(m).prepare(toys).V)  # the default
    else:
        with pytest.raises(ValueError, match="aggregate"):
            UnbinnedFitter(UnbinnedModel.from_workspace(ws40, 1, 1)).prepare(toys, aggregate=True)


# ----------------------------------------------------------------------------- toys
def test_toy_generation(ws40):
    m = UnbinnedModel.from_workspace(ws40, 1, 1)
    gen, _ = generation_point(m.truth, MU40)
    idx = np.arange(3, 43)
    ev = generate_unbinned_toys(m, gen, idx, 4, 5, 6, "sb")
    # same aux words as the binned toys of the same ensemble
    _, aux_b = generate_toys(m.truth, gen, idx, 4, 5, 6, "sb")
    np.testing.assert_array_equal(ev.aux, aux_b)
    nu = m.truth.expected(gen[0], gen[1:])
    lam = nu.sum()
    assert abs(ev.n_events.mean() - lam) < 4 * np.sqrt(lam / ev.n)
    # binned events follow ν_i (χ² over bins with ≥ 20 expected events)
    counts = ev.binned_counts(m).sum(axis=0)
    expect = nu * ev.n_events.sum() / lam
    big = expect >= 20
    chi2 = np.sum((counts[big] - expect[big]) ** 2 / expect[big])
    assert chi2 < big.sum() + 6 * np.sqrt(2 * big.sum())
    assert counts[nu == 0].sum() == 0
    # positions are uniform within the bins: within-bin fraction ~ U(0, 1)
    ex = m.edges[0]
    ix = ev.truth_bin // (m.edges[1].size - 1)
    frac = (ev.x - ex[ix]) / np.diff(ex)[ix]
    assert 0 <= frac.min() and frac.max() < 1
    assert abs(frac.mean() - 0.5) < 5 * np.sqrt(1 / 12 / frac.size)


def test_split_invariance_and_replay(ws40):
    """Records are bit-identical however the toy indices are split (threads or not), and a
    toy replayed alone reproduces its record; infeasible toys are kept with their status.
    block_size 64 > the fitting sub-block (≈ 56 toys of ≈ 3100 events): both levels split."""
    m = UnbinnedModel.from_workspace(ws40, 3, 2)  # floor 0: some toys are infeasible
    kw = dict(base_seed=11, mass_key=mass_key(40.0), block_size=64, poi_index=1, hypothesis="sb", mu=MU40)
    full = run_toys(m, ToyRequest(toy_indices=np.arange(70), **kw))
    a = run_toys(m, ToyRequest(toy_indices=np.arange(35), n_threads=1, **kw))
    b = run_toys(m, ToyRequest(toy_indices=np.arange(69, 34, -1), **kw))
    assert _equal(full, ToyResult.concat([a, b]))
    one = run_toys(m, ToyRequest(toy_indices=[60], n_threads=1, **kw))
    assert all(np.array_equal(getattr(one, k)[0], getattr(full, k)[60], equal_nan=True)
               for k in ToyResult.PER_TOY)
    assert full.n == 70 and np.all(full.n_events > 2500)
    st = full.status_uncond
    assert np.all((st == FitStatus.CONVERGED) | (st == FitStatus.INFEASIBLE))
    assert np.any(st == FitStatus.INFEASIBLE)  # events where every clipped density is 0
    assert np.all(np.isinf(full.nll_uncond[st == FitStatus.INFEASIBLE]))
    assert full.failure_summary()["uncond"]["final_INFEASIBLE"] == int(np.sum(st == 4))


def test_physics_sanity_40gev(ws40):
    """40 GeV, order 1 (interpolated, full-resolution templates): B-only toys put μ̂ at the
    bound about half of the time and rarely far up; S+B toys at μ give q̃ = 0 about half of the
    time and P(q̃ > 2.71) near the asymptotic 5 % (½χ²₁ tail)."""
    m = UnbinnedModel.from_workspace(ws40, 1, 1)
    kw = dict(base_seed=3, mass_key=mass_key(40.0), block_size=96, mu=MU40, toy_indices=np.arange(96))
    b = run_toys(m, ToyRequest(poi_index=0, hypothesis="b", **kw))
    sb = run_toys(m, ToyRequest(poi_index=1, hypothesis="sb", **kw))
    assert np.all(b.status_uncond == 0) and np.all(sb.status_cond == 0)
    at_zero = np.mean(b.mu_hat == 0.0)
    assert 0.3 <= at_zero <= 0.75, at_zero
    assert np.median(b.mu_hat) < 0.35 * MU40
    assert np.mean(b.q[:, 0] > 2.71) > 0.3  # μ = MU40 is excluded by most B-only toys
    assert 0.3 <= np.mean(sb.q[:, 0] == 0.0) <= 0.75
    tail = np.mean(sb.q[:, 0] > 2.71)
    assert 0.005 <= tail <= 0.15, tail
    assert 0.5 * MU40 < np.mean(sb.mu_hat) < 1.5 * MU40


def test_model_consistent_toys_are_unbiased(ws40):
    """Events drawn from the fitted model's own density (order 3 on 20×20 templates, sampled on
    a 12× finer grid) give μ̂ and q̃ as expected: a wrongly normalised or wrongly evaluated
    density would bias them. (Toys from the 40×40 truth histogram are biased for this model —
    that is the interpolation study's finding, not a fit error.)"""
    m = UnbinnedModel.from_workspace(ws40, 3, 2, floor=1e-3)
    gen, _ = generation_point(m.truth, MU40)
    rng = np.random.default_rng(8)
    (ex, ey), k = m.edges, 12
    fx = np.linspace(ex[0], ex[-1], (ex.size - 1) * k + 1)
    fy = np.linspace(ey[0], ey[-1], (ey.size - 1) * k + 1)
    X, Y = np.meshgrid((fx[1:] + fx[:-1]) / 2, (fy[1:] + fy[:-1]) / 2, indexing="ij")
    dens = m.event_values(X.ravel(), Y.ravel()) @ gen  # events per unit area
    cdf = np.cumsum(dens) / dens.sum()
    n = 112
    counts = rng.poisson(dens.sum() * (fx[1] - fx[0]) * (fy[1] - fy[0]), n)
    cell = np.minimum(np.searchsorted(cdf, rng.random(counts.sum()), side="right"), cdf.size - 1)
    ix, iy = np.divmod(cell, fy.size - 1)
    x = fx[ix] + rng.random(cell.size) * (fx[1] - fx[0])
    y = fy[iy] + rng.random(cell.size) * (fy[1] - fy[0])
    split = np.cumsum(counts)[:-1]
    aux = np.ones((n, m.n_bkg))
    aux[:, m.free_bkg] = gen[1:][m.free_bkg] + m.rel_unc[m.free_bkg] * rng.normal(
        size=(n, m.free_bkg.size))
    ev = EventToys.from_lists(np.split(x, split), np.split(y, split), aux)
    uf = UnbinnedFitter(m, FitConfig(n_threads=1))
    data = uf.prepare(ev)
    init = np.broadcast_to(gen, (n, gen.size))
    ru, rc = uf.fit(data, init=init, fisher_at=gen), uf.fit(data, mu_fixed=MU40, init=init)
    assert ru.converged.all() and rc.converged.all()
    q = evaluate_test_statistic("qtilde", rc.nll, ru.nll, ru.mu, MU40)
    assert abs(np.mean(ru.mu) - MU40) < 0.3 * MU40, np.mean(ru.mu)
    assert 0.3 <= np.mean(q == 0) <= 0.7
    assert np.mean(q > 2.71) <= 0.15


def test_failed_line_search_is_recorded_and_rescued(ws40):
    """The shared backtracking of the unbinned fitter: with an absurd sufficient-decrease constant
    every fit ends LINE_SEARCH (kept, finite NLL) without fallbacks; iminuit rescues them all."""
    m = UnbinnedModel.from_workspace(ws40, 1, 2)
    gen, _ = generation_point(m.truth, MU40)
    fitter = UnbinnedFitter(m, FitConfig(n_threads=1))
    data = fitter.prepare(generate_unbinned_toys(m, gen, np.arange(8), 1, 2, 3, "sb"))
    ref = fitter.fit(data)
    failing = UnbinnedFitter(m, FitConfig(n_threads=1, armijo=1e6, retry=False, minuit_fallback=False))
    r = failing.fit(data)
    assert r.n == 8 and np.all(r.status == FitStatus.LINE_SEARCH) and np.all(np.isfinite(r.nll))
    rescued = UnbinnedFitter(m, FitConfig(n_threads=1, armijo=1e6)).fit(data)
    assert np.all(rescued.first_failure == FitStatus.LINE_SEARCH) and rescued.converged.all()
    np.testing.assert_allclose(rescued.nll, ref.nll, rtol=0, atol=1e-6)
