"""The line search's subsets of log-morph rows (lzflow.stats.logmorph_nll.LogMorphRows.trial /
take_trial): a subset forms its trial templates in the rows of its parent's trial point, so a taken
point copies no templates. Checked bit for bit against the same points evaluated afresh: the
templates, ν, NLL, gradient and Hessian the parent continues from, over two backtracking rounds
(rows taken in the first round are not evaluated again in the second)."""

from __future__ import annotations

import numpy as np
import pytest
from systematics_workspace import median_limit_model

from lzflow.stats.fit import BatchedFitter
from lzflow.stats.fitresult import FitConfig
from lzflow.stats.toys import generate_toys, generation_point


@pytest.mark.parametrize("interpolation", ["log_pchip", "log_quartic"])
def test_subset_trials_written_in_place_equal_fresh_points(interpolation: str) -> None:
    m = median_limit_model(interpolation)
    gen, _ = generation_point(m, 1.0)
    counts, aux = generate_toys(m, gen, np.arange(12), 99, 400000, 0, "sb")
    f = BatchedFitter(m, FitConfig(n_threads=1))
    data = f.prepare(counts, aux)
    cols = f.free_columns(None)
    rng = np.random.default_rng(5)
    y0 = np.tile(gen[cols], (data.n, 1))
    y1 = y0 + rng.normal(0.0, 0.05, y0.shape)  # the full steps
    y2 = y0 + rng.normal(0.0, 0.05, y0.shape)  # first backtracking round
    y3 = y0 + rng.normal(0.0, 0.05, y0.shape)  # second round
    y1[:, 1 : 1 + m.n_bkg] = np.abs(y1[:, 1 : 1 + m.n_bkg])  # θ ≥ 0
    y2[:, 1 : 1 + m.n_bkg] = np.abs(y2[:, 1 : 1 + m.n_bkg])
    y3[:, 1 : 1 + m.n_bkg] = np.abs(y3[:, 1 : 1 + m.n_bkg])

    rows = f.newton_rows(data, None)
    rows.start(y0)
    rows.trial(y1)
    fail = np.zeros(data.n, dtype=bool)
    fail[[1, 2, 5, 7, 8, 11]] = True  # rows whose full step "failed"
    sub = rows.subset(fail)
    f2 = sub.trial(y2[fail])
    ok2 = np.zeros(fail.sum(), dtype=bool)
    ok2[[0, 3]] = True  # taken in round 1: toys 1 and 7
    rows.take_trial(sub, ok2)
    f3 = sub.trial(y3[fail])
    assert np.all(np.isinf(f3[ok2])) and np.all(np.isfinite(f3[~ok2]))  # taken rows are not evaluated again
    ok3 = ~ok2
    ok3[2] = False  # toy 5 never taken: its trial row is dropped by the engine, not checked
    rows.take_trial(sub, ok3)

    taken_at = {1: y2, 7: y2, 2: y3, 8: y3, 11: y3}
    expect = y1.copy()
    for toy, y in taken_at.items():
        expect[toy] = y[toy]
    check = np.r_[0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    fresh = f.newton_rows(data, None)
    f_fresh = fresh.start(expect)
    pt, fp = rows.trial_pt, fresh.cur
    np.testing.assert_array_equal(pt.U[pt.ui[check]], fp.U[fp.ui[check]])
    for name in ("nu", "pois", "gp", "Rs"):
        np.testing.assert_array_equal(getattr(pt, name)[check], getattr(fp, name)[check])
    for t in check:  # the rows of the coefficient table in use (log_pchip: fewer at intervals ending at 0)
        used = slice(0, fp.Rs[t, -1])
        for name in ("WC", "Bv1", "Bv2", "Ri"):
            np.testing.assert_array_equal(getattr(pt, name)[t, used], getattr(fp, name)[t, used])
    sub_rows = np.flatnonzero(fail)
    for i, toy in enumerate(sub_rows):  # the NLL the line search saw for the taken points
        if toy in (1, 7):
            assert f2[i] == f_fresh[toy]
        elif toy in (2, 8, 11):
            assert f3[i] == f_fresh[toy]
    rows.advance()
    np.testing.assert_array_equal(rows.grad(expect)[check], fresh.grad(expect)[check])
    keep = np.ones(data.n, dtype=bool)
    keep[5] = False
    rows.compact(keep, ratios=True)  # the engine drops the toy whose line search failed
    fresh.compact(keep, ratios=True)
    np.testing.assert_array_equal(rows.hess(None), fresh.hess(None))
