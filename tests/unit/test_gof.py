"""Goodness of fit (issue 13 item 6, :mod:`lzflow.stats.gof`): the Baker–Cousins statistic is
2 (NLL − NLL_saturated); its toy p-values are uniform on datasets drawn from the model itself and
tiny for data with a wrong shape; per-run pieces of a combined model find the run that is wrong.

Measured (``pytest -s``, 40 GeV test workspace, 1600 bins): background-only data drawn from the
model: χ²_λ ≈ 480–560 (toy median 557, not the 1589 degrees of freedom of the asymptotic χ²: most
bins are nearly empty); data whose Rn222 template has its bins reversed: χ²_λ = 8631, p = 0/3000
(95 % upper bound 9.98e-4).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lzflow.stats.combine import combine_models
from lzflow.stats.gof import GOF_HYPOTHESIS, deviance, goodness_of_fit, statistic_pieces
from lzflow.stats.model import BinnedModel
from lzflow.stats.toys import generate_toys
from lzflow.workspace import workspace_model

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def m40() -> BinnedModel:
    return workspace_model(json.loads(gzip.decompress((DATA / "workspace_m40.json.gz").read_bytes())))


def wrong_shape(m: BinnedModel, name: str = "Rn222") -> BinnedModel:
    """``m`` with background ``name``'s template reversed over the bins the model fills (the data
    stay possible under ``m``: no event where ``m`` predicts none)."""
    bkg = m.backgrounds.copy()
    k = m.names.index(name)
    filled = np.flatnonzero(m.backgrounds.sum(axis=0) > 0)
    bkg[k, filled] = bkg[k, filled][::-1]
    return BinnedModel(m.signal, bkg, m.names, m.rel_unc, m.signal_name, m.bin_shape)


def _data(model: BinnedModel, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` background-only datasets (counts, auxiliary observables) drawn from ``model``."""
    return generate_toys(model, model.full_params(0.0), np.arange(n), seed, 40, 7, "b")


def test_statistic_is_twice_the_nll_above_the_saturated_model(m40):
    rng = np.random.default_rng(3)
    params = np.c_[rng.uniform(0, 2e-3, (6, 1)), rng.uniform(0.7, 1.3, (6, m40.n_bkg))]
    counts, aux = _data(m40, 6, seed=1)
    n = counts
    saturated = np.where(n > 0, n - n * np.log(np.where(n > 0, n, 1.0)), 0.0).sum(axis=1)
    pieces = statistic_pieces(m40, params, counts, aux, {"left": slice(0, 800), "right": slice(800, 1600)})
    np.testing.assert_allclose(pieces["total"], 2 * (m40.nll(params, counts, aux) - saturated), rtol=1e-10)
    np.testing.assert_allclose(pieces["left"] + pieces["right"], pieces["bins"], rtol=1e-12)
    assert np.all(deviance(m40, params, counts) >= -1e-12)  # each bin's deviance is ≥ 0


def test_asimov_data_fit_perfectly(m40):
    counts, aux = m40.asimov(0.0)
    r = goodness_of_fit(m40, counts, aux, n_toys=50, base_seed=1, mass_key=40)
    assert r.observed["total"] < 1e-6
    assert r.p_value["total"] == 1.0 and r.n_failed == 0


def test_pvalues_uniform_on_data_from_the_model(m40):
    """60 datasets drawn from the model, 100 GOF toys each: the p-values of χ²_λ are uniform."""
    counts, aux = _data(m40, 60, seed=2)
    p = np.array([goodness_of_fit(m40, counts[i], aux[i], n_toys=100, base_seed=1000 + i, mass_key=40).p_value["total"]
                  for i in range(len(counts))])
    ks = stats.kstest(p, "uniform")
    print(f"GOF p-values on data from the model: mean {p.mean():.3f} ± {1 / np.sqrt(12 * p.size):.3f}, "
          f"KS p {ks.pvalue:.3f}")
    assert ks.pvalue > 0.01
    assert abs(p.mean() - 0.5) < 3 / np.sqrt(12 * p.size)


def test_wrong_shape_has_a_tiny_pvalue_and_runs_are_told_apart(m40):
    bad_counts, bad_aux = _data(wrong_shape(m40), 1, seed=3)
    r = goodness_of_fit(m40, bad_counts[0], bad_aux[0], n_toys=3000, base_seed=5, mass_key=40)
    print(f"wrong shape: chi2_lambda {r.observed['total']:.1f}, toy 95 % quantile {np.quantile(r.toys['total'], 0.95):.1f}, "
          f"p {r.p_value['total']} (< {r.p_upper95['total']:.3g})")
    assert r.p_value["total"] == 0.0 and r.p_upper95["total"] < 1e-3 and r.n_failed == 0
    # a combination: run "good" drawn from the model, run "bad" with a wrong DetER shape. Separate
    # rates, and a wrong shape that does not look like signal: the Rn222 one pulls the shared μ̂ to
    # ~350 signal events and then the good run is misfitted too (p = 0 for both pieces).
    comb = combine_models({"good": m40, "bad": m40}, ())
    good_counts, _ = _data(m40, 1, seed=4)
    det_counts, _ = _data(wrong_shape(m40, "DetER"), 1, seed=3)
    rc = goodness_of_fit(comb.model, np.r_[good_counts[0], det_counts[0]], None, n_toys=300, base_seed=6,
                         mass_key=40, pieces={run.name: run.bins for run in comb.runs})
    print(f"combined: p {rc.p_value}")
    assert rc.p_value["bad"] == 0.0 and rc.p_value["total"] == 0.0
    assert rc.p_value["good"] > 0.01


def test_toys_reproducible_and_on_their_own_stream(m40):
    counts, aux = _data(m40, 1, seed=5)
    a = goodness_of_fit(m40, counts[0], aux[0], n_toys=40, base_seed=9, mass_key=40, block_size=16)
    b = goodness_of_fit(m40, counts[0], aux[0], n_toys=40, base_seed=9, mass_key=40, block_size=16)
    c = goodness_of_fit(m40, counts[0], aux[0], n_toys=40, base_seed=9, mass_key=40)
    for k in a.toys:
        np.testing.assert_array_equal(a.toys[k], b.toys[k])  # bit for bit
        # the same toys in other fit blocks: the fits agree to their convergence tolerance
        np.testing.assert_allclose(a.toys[k], c.toys[k], rtol=1e-7, atol=1e-7)
    d = goodness_of_fit(m40, counts[0], aux[0], n_toys=40, base_seed=10, mass_key=40, block_size=16)
    assert not np.array_equal(a.toys["total"], d.toys["total"])
    assert a.seed["hypothesis"] == GOF_HYPOTHESIS not in (0, 1)
    with pytest.raises(ValueError, match="n_toys: 0; expected an integer >= 1"):
        goodness_of_fit(m40, counts[0], aux[0], n_toys=0, base_seed=9, mass_key=40)


@pytest.mark.slow
def test_pvalues_uniform_many_datasets(m40):
    counts, aux = _data(m40, 300, seed=8)
    p = np.array([goodness_of_fit(m40, counts[i], aux[i], n_toys=200, base_seed=5000 + i, mass_key=40).p_value["total"]
                  for i in range(len(counts))])
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert abs(p.mean() - 0.5) < 3 / np.sqrt(12 * p.size)


# ----------------------------------------------------------------------------- lzflow gof
def test_gof_cli_events_per_run_and_counts_agree(tmp_path, capsys):
    from lzflow.cli import main
    from lzflow.combinecli import combine_workspaces, write_document

    w = DATA / "workspace_m40.json.gz"
    spec = {"cl": 0.9, "method": "CLs+b", "test_statistic": "qtilde", "power_threshold": 0.1587,
            "discovery_sigma": 3.0, "poi_grid": {"n_points": 3, "min_factor": 0.3, "max_factor": 2.5}}
    ws = json.loads(gzip.decompress(w.read_bytes()))
    write_document(tmp_path / "c.json.gz", combine_workspaces({"r1": ws, "r2": ws}, ["B8"], spec))
    for k in (1, 2):
        assert main(["simulate-data", "--workspace", str(w), "--seed", str(k), "--background-only",
                     "--out", str(tmp_path / f"r{k}.csv")]) == 0
        assert main(["events", "--workspace", str(w), "--events", str(tmp_path / f"r{k}.csv"),
                     "--out", str(tmp_path / f"r{k}.json")]) == 0
    flat = np.concatenate([np.asarray(json.loads((tmp_path / f"r{k}.json").read_text())["counts"]).ravel()
                           for k in (1, 2)])
    np.savez(tmp_path / "counts.npz", counts=flat)
    capsys.readouterr()
    base = ["gof", "--workspace", str(tmp_path / "c.json.gz"), "--toys", "80", "--seed", "3"]
    assert main([*base, "--data", str(tmp_path / "r1.csv"), str(tmp_path / "r2.csv"), "--out", str(tmp_path / "a.json")]) == 0
    assert main([*base, "--data", str(tmp_path / "counts.npz"), "--out", str(tmp_path / "b.json")]) == 0
    line = capsys.readouterr().out
    assert "r1 p " in line and "r2 p " in line
    a, b = (json.loads((tmp_path / f"{x}.json").read_text()) for x in "ab")
    assert a["observed"] == b["observed"] and a["p_value"] == b["p_value"]  # the same bins, the same toys
    assert a["runs"] == ["r1", "r2"] and a["n_toys"] == 80 and a["data"][1]["run"] == "r2"
    assert a["observed"]["total"] == pytest.approx(a["observed"]["r1"] + a["observed"]["r2"]
                                                   + a["observed"]["constraints"], rel=1e-12)
    assert all(0.0 <= p <= 1.0 for p in a["p_value"].values())
    # single run: one event list
    assert main(["gof", "--workspace", str(w), "--data", str(tmp_path / "r1.csv"), "--toys", "20", "--seed", "3",
                 "--out", str(tmp_path / "one.json")]) == 0
    assert set(json.loads((tmp_path / "one.json").read_text())["p_value"]) == {"total", "bins", "constraints"}
    # refusals, one line each
    np.savez(tmp_path / "short.npz", counts=flat[:100])
    for data, message in ((["r1.csv"], "--data: 1 files for 2 run(s) (r1, r2); expected one per run"),
                          (["short.npz"], "counts of shape (100,); expected 3200 finite integers >= 0")):
        assert main([*base, "--data", *[str(tmp_path / d) for d in data], "--out", str(tmp_path / "x.json")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
