"""Pruning of the further starts (lzflow.stats.restart_prune): the pruned further starts give the
same records as the full ones — every minimum the full runs find, bit for bit — in fewer
iterations, independently of the block split.

Toys: the default analysis's 40 GeV workspace (tests/data) at the CLs+b median limit, S+B toys at
μ = 1, base seed 99 (and 7), mass key 400000, as in test_fit_multistart.py. Measured without
pruning on toys 0–399 (seed 99): a further start changed the unconditional / conditional result of
30 / 6 toys (log_pchip) and 6 / 2 (log_quartic).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from systematics_workspace import median_limit_model

from lzflow.stats import newton
from lzflow.stats.fit import BatchedFitter
from lzflow.stats.fitresult import (
    FitConfig,
    FitStatus,
    Strategy,
    lower_bounds,
    upper_bounds,
)
from lzflow.stats.multistart import restart
from lzflow.stats.restart_prune import NEAR, NEAR_NLL, PREDICT_SLACK, KnownMinima
from lzflow.stats.toys import generate_toys, generation_point

RECORDS = ("params", "nll", "status", "strategy", "first_failure", "grad_norm", "edm", "at_bound")


def _fit_both(m, counts, aux, gen, block_size: int = 512):
    f = BatchedFitter(m, FitConfig(n_threads=1, block_size=block_size))
    ru = f.fit(counts, aux, init=np.tile(gen, (counts.shape[0], 1)), fisher_at=gen)
    return ru, f.fit(counts, aux, mu_fixed=1.0, init=ru.params)


def _compare(interpolation: str, seed: int, n: int, monkeypatch) -> None:
    m = median_limit_model(interpolation)
    gen, _ = generation_point(m, 1.0)
    counts, aux = generate_toys(m, gen, np.arange(n), seed, 400000, 0, "sb")
    pruned = _fit_both(m, counts, aux, gen)
    with monkeypatch.context() as mp:
        mp.setattr(newton, "restart", functools.partial(restart, prune=False))
        full = _fit_both(m, counts, aux, gen)
    n_restart = 0
    for a, b in zip(pruned, full):
        for name in RECORDS:
            x, y = getattr(a, name), getattr(b, name)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name
        assert np.all(a.n_iter <= b.n_iter)
        n_restart += int(np.sum(b.strategy == Strategy.NEWTON_RESTART))
    assert n_restart >= 5  # the further starts matter on these toys
    # the pruned runs are a large part of the further starts' iterations
    it_p = sum(int(r.n_iter.sum()) for r in pruned)
    it_f = sum(int(r.n_iter.sum()) for r in full)
    assert it_p < 0.8 * it_f


@pytest.mark.parametrize("interpolation", ["log_pchip", "log_quartic"])
def test_pruned_further_starts_give_the_same_records(interpolation, monkeypatch):
    _compare(interpolation, 99, 400, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("interpolation", ["log_pchip", "log_quartic"])
def test_pruned_further_starts_give_the_same_records_seed7(interpolation, monkeypatch):
    _compare(interpolation, 7, 400, monkeypatch)


def test_pruned_fits_independent_of_block_split():
    m = median_limit_model("log_pchip")
    gen, _ = generation_point(m, 1.0)
    counts, aux = generate_toys(m, gen, np.arange(120), 99, 400000, 0, "sb")
    a = _fit_both(m, counts, aux, gen, 512)
    b = _fit_both(m, counts, aux, gen, 37)
    assert np.any(a[0].strategy == Strategy.NEWTON_RESTART)
    for ra, rb in zip(a, b):
        # not edm: the conditional fits' λ² at the minimum (~1e-11) differs between block splits
        # with or without further starts (the float32 Hessian product; measured, toys 111 and 116)
        for name in [r for r in RECORDS if r != "edm"] + ["n_iter"]:
            x, y = getattr(ra, name), getattr(rb, name)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), (name, np.flatnonzero(x != y))


def test_known_minima_box():
    y = np.array([[1.0, 0.0, 3.0], [0.5, -2.0, 0.0]])
    km = KnownMinima(y, np.array([10.0, 20.0]), np.array([True, False]))
    rows = np.array([0, 0, 0, 0, 1])
    d = NEAR * np.array([1.0, 1.0, 3.0])  # box half-widths of toy 0: NEAR · max(1, |y|)
    pts = np.array([y[0] + 0.99 * d, y[0] - 1.01 * d * [0, 0, 1], y[0], y[0], y[1]])
    f = np.array([10.0 + 0.5 * NEAR_NLL, 10.0, 10.0 - 1e-6, 10.0 + 2 * NEAR_NLL, 20.0])
    # in the box and at most NEAR_NLL above (never below) f_k; toy 1's first fit failed: nothing known
    np.testing.assert_array_equal(km.near(rows, pts, f), [True, False, False, False, False])
    np.testing.assert_array_equal(km.near(rows, pts), [True, False, True, True, False])  # starts: no NLL
    # a Newton point: the model's minimum f − λ²/2 within [f_k − PREDICT_SLACK, f_k + NEAR_NLL]
    f = 10.0 + np.array([0.5, 0.5, 0.5, 0.0, 0.0]) * NEAR_NLL
    dec = np.array([0.0, 2.0 * (f[1] - 10.0 + 0.5 * PREDICT_SLACK), 2.0 * (f[2] - 10.0 + 2.0 * PREDICT_SLACK),
                    0.0, 0.0])
    np.testing.assert_array_equal(km.near(rows[:4], pts[[0, 0, 0, 1]], f[:4], dec[:4]), [True, True, False, False])
    km.add(np.array([1]), y[1:] + 0.5, np.array([19.0]), np.array([True]))
    km.add(np.array([0, 1]), np.zeros((2, 3)), np.array([0.0, 0.0]), np.array([False, False]))  # not converged
    np.testing.assert_array_equal(km.near(np.array([1, 1, 0]), np.vstack([y[1] + 0.5, y[1], np.zeros(3)]),
                                          np.array([19.0, 19.0, 0.0])), [True, False, False])


def test_minimise_prune_hook_stops_rows():
    """Rows cut by the hook end with status NOT_RUN and the others are bit-identical to a run
    without the hook (a row's iterations do not depend on the rows beside it)."""
    m = median_limit_model("log_quartic")
    f = BatchedFitter(m, FitConfig(n_threads=1))
    gen, _ = generation_point(m, 1.0, fitter=f)
    counts, aux = generate_toys(m, gen, np.arange(16), 5, 400000, 0, "sb")
    data = f.prepare(counts, aux)
    cols = f.free_columns(None)
    lb, ub = lower_bounds(cols.size, None, None, m.n_shape), upper_bounds(cols.size, m.n_shape)
    y0 = np.clip(f.default_init(data, None)[:, cols], lb, ub)
    calls = []

    def prune(active, y, nll, y_newton, dec):
        calls.append((active.copy(), y_newton - y, dec))
        return (active % 2 == 0) & (len(calls) == 2)  # even rows, at the second iteration

    a = newton.minimise(f.newton_rows(data, None), y0, lb, f.config, 50, ub=ub, interpolate=True, prune=prune)
    b = newton.minimise(f.newton_rows(data, None), y0, lb, f.config, 50, ub=ub, interpolate=True)
    even = np.arange(16) % 2 == 0
    assert np.all(a.status[even] == FitStatus.NOT_RUN) and np.all(a.n_iter[even] == 1)
    assert np.all(b.status == FitStatus.CONVERGED) and np.all(b.n_iter > 1)
    for name in ("y", "nll", "status", "n_iter"):  # not λ² at the minimum: see the block-split test
        assert np.array_equal(getattr(a, name)[~even], getattr(b, name)[~even]), name
    assert not np.any(np.isin(calls[2][0], np.flatnonzero(even)))
    # the Newton point is a descent step: λ² = −g·d > 0 before convergence
    assert np.all(calls[0][2] > 0) and np.all(np.abs(calls[0][1]).max(axis=1) > 0)
