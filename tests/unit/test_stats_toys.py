"""Toy generation: reproducibility, split invariance, distributions, records."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lzflow.stats import (
    FitStatus,
    ToyRequest,
    ToyResult,
    generate_toys,
    generation_point,
    mass_key,
    run_toys,
    toy_generator,
)
from lzflow.stats._rng import PoissonInverse, ensemble_key, uniforms_from_words, words
from lzflow.stats.synthetic import lz_like_model, simple_model


def _toys(model, mu, poi_index, toy_indices, hypothesis="sb", **kw) -> ToyResult:
    return run_toys(model, ToyRequest(mu=mu, poi_index=poi_index, toy_indices=toy_indices, hypothesis=hypothesis, **kw))


def _equal(a: ToyResult, b: ToyResult) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True) for k in ToyResult.PER_TOY)


@pytest.mark.parametrize("stream", ["counter", "seedsequence"])
def test_split_invariance_bit_identical(stream):
    m = lz_like_model()
    kw = dict(base_seed=7, mass_key=mass_key(40.0), stream=stream, block_size=64)
    full = _toys(m, 1.0, 3, np.arange(100), **kw)
    a = _toys(m, 1.0, 3, np.arange(50), **kw)
    b = _toys(m, 1.0, 3, np.arange(50, 100), n_threads=1, **kw)
    assert _equal(full, ToyResult.concat([a, b]))
    # any split, any order, threads or not
    c = _toys(m, 1.0, 3, np.arange(99, 36, -1), **kw)
    d = _toys(m, 1.0, 3, np.arange(37), n_threads=1, **kw)
    assert _equal(full, ToyResult.concat([c, d]))
    assert np.all(full.status_uncond == FitStatus.CONVERGED)


def test_process_pool_is_bit_identical():
    m = simple_model(n_bins=50, n_bkg=3, background_events=80)
    kw = dict(base_seed=2, mass_key=10, block_size=32)
    one = _toys(m, 1.0, 0, np.arange(150), **kw)
    two = _toys(m, 1.0, 0, np.arange(150), n_procs=2, **kw)
    assert _equal(one, two)


def test_split_invariance_bonly_grid():
    m = simple_model(n_bins=50, n_bkg=3, background_events=80)
    grid = np.linspace(0.2, 3.0, 6)
    kw = dict(base_seed=1, mass_key=10, hypothesis="b", mu_test=grid, block_size=32)
    full = _toys(m, 0.0, 0, np.arange(90), **kw)
    parts = [_toys(m, 0.0, 0, np.arange(s, min(s + 25, 90)), **kw) for s in range(0, 90, 25)]
    assert _equal(full, ToyResult.concat(parts))
    assert full.q.shape == (90, 6)
    # q̃ grows with μ for every background-only experiment with μ̂ below the grid
    assert np.all(np.diff(full.q[full.mu_hat < grid[0]], axis=1) >= -1e-9)


def test_seeds_define_the_toys():
    m = simple_model(n_bins=30, n_bkg=2, background_events=40)
    gen = m.full_params(1.0)
    c1, a1 = generate_toys(m, gen, [5, 6], 1, 2, 3, "sb")
    c2, a2 = generate_toys(m, gen, [6], 1, 2, 3, "sb")
    np.testing.assert_array_equal(c1[1], c2[0])
    np.testing.assert_array_equal(a1[1], a2[0])
    for changed in ((2, 2, 3, "sb"), (1, 3, 3, "sb"), (1, 2, 4, "sb"), (1, 2, 3, "b")):
        c3, _ = generate_toys(m, gen, [6], *changed)
        assert not np.array_equal(c3[0], c2[0])
    # "seedsequence" stream: the aux normals are the first draws of the per-toy generator
    _, a4 = generate_toys(m, gen, [6], 1, 2, 3, "sb", stream="seedsequence")
    z = toy_generator(1, 2, 3, "sb", 6).standard_normal(m.n_free_bkg)
    np.testing.assert_allclose(a4[0, m.free_bkg], 1.0 + m.rel_unc[m.free_bkg] * z)


def test_mass_key():
    assert mass_key(40.0) == 400000
    assert mass_key(3.0) == 30000
    assert mass_key(2.99999999) == 30000


@pytest.mark.parametrize("stream", ["counter", "seedsequence"])
def test_toy_distributions(stream):
    """Counts ~ Poisson(ν), aux ~ Gauss(θ, r), sparse bins included."""
    m = lz_like_model()
    gen = m.full_params(1.0)
    n = 3000 if stream == "counter" else 600
    c, a = generate_toys(m, gen, np.arange(n), 9, 1, 0, "sb", stream=stream)
    nu = m.expected(1.0)
    tot = c.sum(axis=1)
    assert abs(tot.mean() - nu.sum()) < 4 * np.sqrt(nu.sum() / n)
    assert abs(tot.var() / nu.sum() - 1) < 5 * np.sqrt(2 / n)
    z = (c.mean(axis=0) - nu) / np.sqrt(np.maximum(nu, 1e-12) / n)
    assert abs(z.mean()) < 5 / np.sqrt(m.n_bins)
    assert 0.9 < z[nu > 0.05].std() < 1.1
    low = nu < 0.05  # sparse bins: totals right
    assert abs(c[:, low].sum() / n - nu[low].sum()) < 5 * np.sqrt(nu[low].sum() / n)
    pulls = (a - 1.0) / m.rel_unc
    assert stats.kstest(pulls[:, 0], "norm").pvalue > 1e-3
    assert np.all(np.abs(pulls.mean(axis=0)) < 5 / np.sqrt(n))


def test_poisson_inverse_exact_distribution():
    key = ensemble_key(3, 1, 0, 0)
    u = uniforms_from_words(words(key, np.arange(100000), 0))
    for lam in (0.02, 0.7, 4.0, 40.0):
        x = PoissonInverse(np.array([lam])).sample(u[:, None])[:, 0].astype(int)
        k = np.arange(x.max() + 1)
        exp = stats.poisson.pmf(k, lam) * u.size
        obs = np.bincount(x, minlength=k.size)
        sel = exp > 10
        chi2 = np.sum((obs[sel] - exp[sel]) ** 2 / exp[sel])
        assert stats.chi2.sf(chi2, sel.sum() - 1) > 1e-3


def test_records_and_roundtrip():
    m = simple_model(n_bins=40, n_bkg=3, background_events=100)
    obs = (m.expected(0.0) + 1.0, np.ones(m.n_bkg) * 1.02)
    r = _toys(m, 2.0, 1, np.arange(20), base_seed=5, mass_key=6, observed=obs, block_size=16)
    gen, _ = generation_point(m, 2.0, obs)
    np.testing.assert_allclose(r.gen_params, gen)
    assert r.gen_params[0] == 2.0
    assert r.aux.shape == (20, 3) and np.all(r.aux != 1.0)
    assert r.q.shape == (20, 1) and np.all(r.q >= 0)
    assert np.all((r.mu_hat > 2.0) == (r.q[:, 0] == 0.0))
    back = ToyResult.from_arrays(r.to_arrays())
    assert _equal(back, r) and back.hypothesis == "sb"
    summary = r.failure_summary()
    assert summary["uncond"]["n_failed"] == 0 and summary["cond"]["n_fits"] == 20


def test_request_is_checked_when_made():
    ok = dict(base_seed=1, mass_key=2, poi_index=0, hypothesis="sb", toy_indices=[3, 1], mu=1.0)
    r = ToyRequest(**ok)
    assert r.toy_indices.dtype == np.int64 and not r.toy_indices.flags.writeable
    np.testing.assert_array_equal(r.mu_test, [1.0])
    np.testing.assert_array_equal(ToyRequest(**ok, test_stat="q0", mu_test=[2.0, 3.0]).mu_test, [0.0])
    for bad, match in ((dict(hypothesis="bonly"), "hypothesis"), (dict(test_stat="qq"), "test statistic"),
                       (dict(stream="pcg"), "stream"), (dict(toy_indices=[0, -1]), "non-negative"),
                       (dict(block_size=0), "block_size"), (dict(n_procs=0), "n_procs"),
                       (dict(n_threads=0), "n_threads")):
        with pytest.raises(ValueError, match=match):
            ToyRequest(**{**ok, **bad})
    with pytest.raises(TypeError, match="BinnedModel or an UnbinnedModel"):
        run_toys(object(), r)


@pytest.mark.parametrize("hypothesis", ["sb", "b"])
def test_partial_blocks_fit_only_the_requested_toys_with_the_same_bits(hypothesis, monkeypatch):
    """With the multiplicative shape morphing a toy's fits do not depend on the toys fitted with it
    (BatchedFitter.toys_independent), so run_toys fits only the requested toys of a canonical block
    instead of the whole block: the records equal those of whole-block fitting bit for bit (the
    default systematics overlay's log_pchip on the 40 GeV workspace, further starts, needed fits)."""
    import gzip
    import json
    from pathlib import Path

    from lzflow.stats.fit import BatchedFitter
    from lzflow.stats.toys import BinnedToys
    from lzflow.toyjobs import job_model

    path = Path(__file__).resolve().parents[1] / "data" / "workspace_m40_systematics.json.gz"
    ws = json.loads(gzip.decompress(path.read_bytes()))
    model = job_model(ws, {"likelihood": "binned"})
    model = model.with_shape_systematics(model.shape_systematics, "log_pchip")
    assert BatchedFitter(model).toys_independent
    assert not BatchedFitter(lz_like_model()).toys_independent  # rate-only: BLAS products over a block
    assert not BatchedFitter(model.with_shape_systematics(model.shape_systematics, "code4p")).toys_independent
    grid = np.asarray(ws["poi_grid"], dtype=np.float64)
    kw = dict(base_seed=5, mass_key=40, block_size=32, n_threads=1, cond_fits="needed", test_stat="qtilde")
    if hypothesis == "b":
        kw.update(hypothesis="b", mu_test=grid[[3, 9, 15]], mu=0.0, poi_index=10000)
    else:
        kw.update(hypothesis="sb", mu=float(grid[9]), poi_index=9)
    idx = np.array([70, 5, 17, 18, 40, 63, 64, 90])  # partial blocks of 32, not in order
    calls = []
    drawer = BinnedToys.drawer

    def counting(self, gen, request):  # the drawer, counting the toys each block draws
        draw = drawer(self, gen, request)
        return lambda toys: (calls.append(toys.size), draw(toys))[1]

    monkeypatch.setattr(BinnedToys, "drawer", counting)
    only = run_toys(model, ToyRequest(toy_indices=idx, **kw))
    assert sum(calls) == idx.size  # only the requested toys were drawn and fitted
    monkeypatch.setattr(BatchedFitter, "toys_independent", property(lambda self: False))
    calls.clear()
    whole = run_toys(model, ToyRequest(toy_indices=idx, **kw))
    assert sum(calls) == 3 * 32  # the three canonical blocks (0-31, 32-63, 64-95), whole
    assert _equal(only, whole)
    assert np.all(only.status_uncond == FitStatus.CONVERGED)
