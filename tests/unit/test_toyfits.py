"""Only the needed conditional fits (lzflow.stats.toyfits, cond_fits "needed"): a one-sided limit's
toys skip the fit at μ where μ̂ > μ (q̃ = 0 there by definition), with the same q, records that say
so, failure accounting that does not count them, the same bits for any job split, and a two-sided
construction that refuses such records."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from lzflow import layout
from lzflow.fit_errors import ensemble_failures
from lzflow.stats.construction import records_t
from lzflow.stats.fitresult import FitStatus
from lzflow.stats.request import ToyRequest
from lzflow.toyjobs import run_toy_job

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


@pytest.fixture(scope="module")
def ws40():
    """The default analysis' 40 GeV workspace (real NEST templates), with a short POI grid."""
    ws = json.loads(gzip.decompress((DATA / "workspace_m40.json.gz").read_bytes()))
    ws["poi_grid"] = ws["poi_grid"][::4]
    return ws


def _spec(hypothesis: str, cond_fits: str | None, n_jobs: int = 1, job: int = 0) -> dict:
    spec = {"hypothesis": hypothesis, "job_index": job, "n_jobs": n_jobs, "n_toys": 600, "seed": 11,
            "test_statistic": "qtilde", **({"poi_index": 2} if hypothesis == "sb" else {})}
    return {**spec, "cond_fits": cond_fits} if cond_fits else spec


@pytest.mark.parametrize("hypothesis", ["sb", "b"])
def test_needed_fits_give_the_same_q_and_say_which_were_not_run(ws40, hypothesis):
    full, header_full = run_toy_job(ws40, _spec(hypothesis, None))
    needed, header = run_toy_job(ws40, _spec(hypothesis, "needed"))
    assert "cond_fits" not in header_full and header["cond_fits"] == "needed"
    above = needed.mu_hat[:, None] > needed.mu_test[None, :]
    assert above.any() and not above.all()
    skipped = needed.status_cond == FitStatus.NOT_NEEDED
    np.testing.assert_array_equal(skipped, above)
    assert np.isnan(needed.nll_cond[skipped]).all() and np.all(needed.q[skipped] == 0.0)
    assert np.all(full.status_cond[~skipped] == needed.status_cond[~skipped])
    np.testing.assert_array_equal(needed.ok, full.ok)  # a skipped fit is no failed one
    # the unconditional fits are the same fits; the conditional ones agree to the fit tolerance
    np.testing.assert_array_equal(full.nll_uncond, needed.nll_uncond)
    np.testing.assert_allclose(needed.nll_cond[~skipped], full.nll_cond[~skipped], rtol=0, atol=1e-8)
    np.testing.assert_allclose(needed.q, full.q, rtol=0, atol=1e-7)
    summary = needed.failure_summary()["cond"]
    assert summary["n_not_needed"] == int(skipped.sum())
    assert summary["n_fits"] == needed.q.size - int(skipped.sum()) and summary["n_failed"] == 0
    records = {name: getattr(needed, name) for name in needed.per_toy}
    counts = ensemble_failures(records)["cond"]
    assert counts["not_needed"] == int(skipped.sum()) and counts["failed"] == 0
    assert counts["n_fits"] + counts["not_needed"] == needed.q.size and counts["causes_final"] == {}


def test_needed_fits_are_the_same_bits_for_any_job_split(ws40):
    whole, _ = run_toy_job(ws40, _spec("b", "needed"))
    parts = [run_toy_job(ws40, _spec("b", "needed", n_jobs=3, job=j))[0] for j in range(3)]
    for name in ("q", "nll_cond", "status_cond", "params_uncond", "nll_uncond"):
        joined = np.concatenate([getattr(p, name) for p in parts])
        assert joined.tobytes() == getattr(whole, name).tobytes(), name


def test_needed_fits_only_for_the_one_sided_statistics():
    common = dict(base_seed=1, mass_key=400000, poi_index=0, toy_indices=[0], mu=1.0)
    with pytest.raises(ValueError, match="cond_fits 'needed' with test statistic 'q0'"):
        ToyRequest(hypothesis="b", test_stat="q0", cond_fits="needed", **common)
    with pytest.raises(ValueError, match=r"cond_fits must be one of \('all', 'needed'\), got 'some'"):
        ToyRequest(hypothesis="sb", cond_fits="some", **common)
    assert ToyRequest(hypothesis="sb", test_stat="q", cond_fits="needed", **common).cond_fits == "needed"


def test_the_two_sided_construction_refuses_one_sided_records(ws40):
    needed, _ = run_toy_job(ws40, _spec("b", "needed"))
    with pytest.raises(ValueError, match="toys made for a one-sided limit"):
        records_t(needed, needed.mu_test, what="B-only toys")
    full, _ = run_toy_job(ws40, _spec("b", None))
    t, codes = records_t(full, full.mu_test, what="B-only toys")
    assert np.isfinite(t).all() and not codes.any()


def test_the_workflow_asks_for_needed_fits_only_for_a_one_sided_limit():
    from lzflow.config import load_config

    one = load_config([REPO / "config" / "config.yaml"])
    label = next(iter(one["stats"]["per_mass"]))
    assert layout.toys_sb_spec(one, label, 0, 0)["cond_fits"] == "needed"
    assert layout.toys_b_spec(one, label, 0)["cond_fits"] == "needed"
    two = load_config([REPO / "config" / "lz_ws2024.yaml"])
    assert two["stats"]["construction"] == "two_sided"
    label = next(iter(two["stats"]["per_mass"]))
    assert "cond_fits" not in layout.toys_sb_spec(two, label, 0, 0)
    assert "cond_fits" not in layout.toys_b_spec(two, label, 0)
    assert layout.cond_fits_spec({**one["stats"], "test_statistic": "q0"}) == {}


# ------------------------------------------------------------------------ stored unconditional fits
def test_stored_unconditional_fits_give_the_same_records_bit_for_bit():
    """Merge evaluates B-only toys at new POI points from the unconditional fits in their files
    (StoredUncond): the records equal a full refit's bit for bit, with shape systematics (further
    starts) too; a block the store does not cover whole (toys past the last stored one) is fitted."""
    from lzflow.stats.toyfits import UNCOND_FIELDS, StoredUncond
    from lzflow.stats.toys import BONLY_POI_INDEX, run_toys
    from lzflow.toyjobs import job_model

    ws = json.loads(gzip.decompress((DATA / "workspace_m40_systematics.json.gz").read_bytes()))
    model = job_model(ws, {"likelihood": "binned"})
    grid = np.asarray(ws["poi_grid"], dtype=np.float64)
    first = dict(base_seed=3, mass_key=40, poi_index=BONLY_POI_INDEX, hypothesis="b", mu=float(grid[0]), test_stat="qtilde",
                 block_size=32, n_threads=1, cond_fits="needed")
    stored_run = run_toys(model, ToyRequest(toy_indices=np.arange(72), mu_test=grid[[2, 6]], **first))
    assert stored_run.params_uncond.shape[1] > 1 + model.n_bkg  # α̂ present: shape systematics
    stored = StoredUncond(stored_run.toy_index, *(getattr(stored_run, f"{k}_uncond") for k in UNCOND_FIELDS))
    # new POI points, as merge's grid extension asks; toys 72..95 of the last block are not stored
    request = ToyRequest(toy_indices=np.arange(72), mu_test=grid[[9, 14]], **first)
    refit = run_toys(model, request)
    reused = run_toys(model, request, stored)
    for name in refit.per_toy:
        np.testing.assert_array_equal(getattr(reused, name), getattr(refit, name), err_msg=name)
    assert stored.block(np.arange(64, 96)) is None and stored.block(np.arange(32, 64)) is not None
    with pytest.raises(ValueError, match="one process only"):
        run_toys(model, ToyRequest(toy_indices=np.arange(72), mu_test=grid[[9]], **{**first, "n_procs": 2}), stored)
