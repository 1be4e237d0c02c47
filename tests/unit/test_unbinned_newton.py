"""The compiled per-toy Newton of the unbinned fits (lzflow.stats.unbinned_newton) against the
batched engine it replaced and against the toy records of the code before it (issue 16 item 5).

Reference file ``tests/data/unbinned_qtilde_ref.npz``: q̃, unconditional NLL and μ̂ of 24 fixed
toys per case (40 GeV test workspace, base seed 5, POI index 1, μ = 0.003, S+B and B-only),
written by run_toys with the batched engine at commit 77a79b2 (before the change). Both fits stop
at a squared Newton decrement λ² < tol = 1e-9, i.e. each NLL within ≈ 5e-10 of its minimum, so
q̃ = 2 (NLL_cond − NLL_uncond) of other iterates may move by up to ≈ 2e-9 (observed ≤ 8.8e-10).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from lzflow.stats import FitConfig, FitStatus, evaluate_test_statistic
from lzflow.stats.toys import ToyRequest, generation_point, mass_key, run_toys
from lzflow.stats.unbinned import UnbinnedFitter
from lzflow.stats.unbinned_model import UnbinnedModel, generate_unbinned_toys

DATA = Path(__file__).resolve().parents[1] / "data"
MU = 0.003
#: |Δq̃| allowed between fits that each stop at λ² < 1e-9 (see the module docstring)
Q_TOL = 2e-9


@pytest.fixture(scope="module")
def ws40() -> dict:
    return json.loads(gzip.decompress((DATA / "workspace_m40.json.gz").read_bytes()))


@pytest.mark.parametrize("order, rebin, floor", [
    (0, 2, 1e-3), (3, 2, 1e-3),
    pytest.param(1, 2, 1e-3, marks=pytest.mark.slow), pytest.param(2, 2, 1e-3, marks=pytest.mark.slow),
    pytest.param(3, 1, 0.0, marks=pytest.mark.slow),
])
def test_toy_records_match_the_code_before(ws40, order, rebin, floor):
    """run_toys on fixed toys gives the q̃ (within Q_TOL), NLL and infeasible toys (NaN) of the
    batched engine before the compiled fits."""
    ref = np.load(DATA / "unbinned_qtilde_ref.npz")
    m = UnbinnedModel.from_workspace(ws40, order, rebin, floor=floor)
    for hyp in ("sb", "b"):
        r = run_toys(m, ToyRequest(base_seed=5, mass_key=mass_key(40.0), poi_index=1, hypothesis=hyp, mu=MU,
                                   toy_indices=np.arange(24), block_size=24, n_threads=1))
        key = f"o{order}_r{rebin}_f{floor:g}_{hyp}"
        q_ref, nll_ref = ref[key + "_q"], ref[key + "_nll"]
        np.testing.assert_array_equal(np.isnan(r.q[:, 0]), np.isnan(q_ref))
        ok = np.isfinite(q_ref)
        assert ok.sum() >= 20
        np.testing.assert_allclose(r.q[ok, 0], q_ref[ok], rtol=0, atol=Q_TOL)
        np.testing.assert_allclose(r.nll_uncond[ok], nll_ref[ok], rtol=0, atol=1e-9)
        assert np.sum(q_ref[ok] > 0) >= 3  # the comparison sees non-trivial q̃


@pytest.mark.parametrize("order", [0, 3])
def test_compiled_fits_equal_the_batched_engine(ws40, order):
    """Same statuses, NLL within 1e-9 and q̃ within Q_TOL as the batched engine (one column per
    event and, at order 0, one per template bin); unconditional and conditional, with and
    without the Fisher first step; one thread or two."""
    m = UnbinnedModel.from_workspace(ws40, order, 2, floor=1e-3)
    gen, _ = generation_point(m.truth, MU)
    ev = generate_unbinned_toys(m, gen, np.arange(20), 7, mass_key(40.0), 1, "sb")
    f1 = UnbinnedFitter(m, FitConfig(n_threads=1))
    f2 = UnbinnedFitter(m, FitConfig(n_threads=2, block_size=7))
    init = np.broadcast_to(gen, (ev.n, gen.size))
    datas = [f1.prepare(ev)] + ([f1.prepare(ev, aggregate=False)] if order == 0 else [])
    for data in datas:
        fits = {}
        for batched in (True, False):
            ru = f1.fit(data, init=init, fisher_at=gen, batched=batched)
            ru0 = f1.fit(data, batched=batched)
            rc = f1.fit(data, mu_fixed=MU, init=ru.params, batched=batched)
            fits[batched] = (ru, ru0, rc)
        for a, b in zip(fits[True], fits[False]):
            np.testing.assert_array_equal(a.status, b.status)
            assert np.all(a.status == FitStatus.CONVERGED)
            np.testing.assert_allclose(b.nll, a.nll, rtol=0, atol=1e-9)
            np.testing.assert_allclose(b.params, a.params, rtol=0, atol=1e-5)
        (ua, _, ca), (ub, _, cb) = fits[True], fits[False]
        qa = evaluate_test_statistic("qtilde", ca.nll, ua.nll, ua.mu, MU)
        qb = evaluate_test_statistic("qtilde", cb.nll, ub.nll, ub.mu, MU)
        np.testing.assert_allclose(qb, qa, rtol=0, atol=Q_TOL)
        # threads and blocks: bit for bit
        r2 = f2.fit(data, init=init, fisher_at=gen)
        assert np.array_equal(r2.params, ub.params) and np.array_equal(r2.nll, ub.nll)


def test_line_search_failures_fall_back_to_the_engine(ws40):
    """Toys the compiled Newton leaves unconverged (max_iter = 1) keep MAX_ITER as their first
    failure and are refitted by the batched engine's strategies: converged, same minimum."""
    m = UnbinnedModel.from_workspace(ws40, 3, 2, floor=1e-3)
    gen, _ = generation_point(m.truth, MU)
    ev = generate_unbinned_toys(m, gen, np.arange(6), 3, mass_key(40.0), 1, "sb")
    ref = UnbinnedFitter(m, FitConfig(n_threads=1)).fit(UnbinnedFitter(m).prepare(ev))
    f = UnbinnedFitter(m, FitConfig(n_threads=1, max_iter=1))
    r = f.fit(f.prepare(ev))
    assert np.all(r.first_failure == FitStatus.MAX_ITER) and r.converged.all()
    assert np.all(r.n_iter >= 2)  # the compiled iteration counts with the fallback's
    np.testing.assert_allclose(r.nll, ref.nll, rtol=0, atol=1e-6)
