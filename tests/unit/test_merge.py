"""Merge (issue 17): failed fits and NaN q left out and counted, never a crash; grid edges
extended deterministically with new seed indices; bootstrap errors by default; limit.json
always valid JSON."""

from __future__ import annotations

import copy
import gzip
import json

import numpy as np
import pytest
from scipy.stats import norm

from lzflow.io import write_json
from lzflow.merge import json_safe, limit_document
from lzflow.stats.fitresult import FitStatus
from lzflow.toyjobs import run_toy_job

SPEC = {"cl": 0.9, "method": "CLs+b", "power_threshold": float(norm.cdf(-1)), "test_statistic": "qtilde"}


@pytest.fixture(scope="module")
def ws40(repo):
    return json.loads(gzip.decompress((repo / "tests" / "data" / "workspace_m40.json.gz").read_bytes()))


def _grid(ws, lo_sigma: float, hi_sigma: float, n: int) -> dict:
    """The workspace with a POI grid from lo_sigma to hi_sigma asymptotic σ_μ (CLs+b median = 1.28 σ_μ)."""
    out = copy.deepcopy(ws)
    sigma = ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"] / norm.isf(0.1)
    out["poi_grid"] = (np.linspace(lo_sigma, hi_sigma, n) * sigma).tolist()
    return out


def _arrays(result) -> dict[str, np.ndarray]:
    arrays = {name: np.asarray(getattr(result, name)) for name in result.PER_TOY}
    arrays["mu_test"] = np.asarray(result.mu_test)
    arrays["gen_params"] = np.asarray(result.gen_params)
    return arrays


def toy_files(ws, n_sb: int, n_b: int, jobs: int = 1, seed: int = 5, **likelihood):
    """(path, arrays, header) of every toy job of ``ws``, as merge reads them."""
    files = []
    base = dict(n_jobs=jobs, seed=seed, test_statistic="qtilde", **likelihood)
    for j in range(jobs):
        for k in range(len(ws["poi_grid"])):
            r, h = run_toy_job(ws, dict(base, hypothesis="sb", poi_index=k, job_index=j, n_toys=n_sb))
            files.append((f"toys/poi{k}/job{j}.npz", _arrays(r), h))
        r, h = run_toy_job(ws, dict(base, hypothesis="b", job_index=j, n_toys=n_b))
        files.append((f"toys/bonly/job{j}.npz", _arrays(r), h))
    return files


def merge(ws, files, **spec):
    doc, extra = limit_document(ws, lambda: files, {**SPEC, **spec})
    return doc, extra


# ----------------------------------------------------------------------------- item 6
def test_nan_q_from_unbinned_floor_zero_is_excluded_not_a_crash(ws40, tmp_path):
    """stats.likelihood: unbinned with interpolation_floor: 0 (a legal config) makes toys whose
    events no template can explain: both fits INFEASIBLE, q = NaN. Merge used to crash writing
    limit.json ('Out of range float values are not JSON compliant')."""
    ws = _grid(ws40, 0.3, 3.5, 4)
    like = dict(likelihood="unbinned", interpolation_order=3, interpolation_floor=0.0, template_rebin=2)
    files = toy_files(ws, 256, 256, **like)
    assert any(np.isnan(a["q"]).any() for _, a, _ in files)
    doc, _ = merge(ws, files, n_boot=20, max_refine_rounds=0)
    write_json(tmp_path / "limit.json", doc)  # strict JSON: no NaN, no inf
    back = json.loads((tmp_path / "limit.json").read_text())
    ex = back["excluded"]
    for k, (_, arrays, _) in enumerate(files[:-1]):
        e = ex["sb"][str(k)]
        n_nan = int(np.isnan(arrays["q"]).sum())
        assert e["n_toys"] == 256 and e["n_used"] == 256 - n_nan > 0
        assert sum(e["causes"].values()) == n_nan and set(e["causes"]) == {"uncond:INFEASIBLE"}
        assert back["toys"]["sb_used_per_poi"][k] == e["n_used"]  # the p-value denominator
    b = files[-1][1]
    assert ex["bonly_experiments"]["n_used"] == int(np.sum(~np.isnan(b["q"]).any(axis=1)))
    assert back["limits"]["CLs+b"]["n_experiments"] == ex["bonly_experiments"]["n_used"]
    assert any("left out" in w for w in back["warnings"])
    assert back["limits"]["CLs+b"]["expected_mu"]["0"] > 0


def _break(files, n_bad: int):
    """The first n_bad toys of every file fail in every strategy, with the finite q the old
    code kept (q̃ = 0 from a NaN μ̂)."""
    out = []
    for path, arrays, header in files:
        a = {k: v.copy() for k, v in arrays.items()}
        a["status_uncond"][:n_bad] = FitStatus.MAX_ITER
        a["mu_hat"][:n_bad] = np.nan
        a["q"][:n_bad] = 0.0
        out.append((path, a, header))
    return out


def test_failed_fits_are_excluded_and_counted(ws40):
    ws = _grid(ws40, 0.02, 3.5, 6)
    files = toy_files(ws, 256, 512)
    clean, _ = merge(ws, files, n_boot=0, max_refine_rounds=0)
    doc, _ = merge(ws, _break(files, 40), n_boot=0, max_refine_rounds=0)
    for k in range(6):
        assert doc["excluded"]["sb"][str(k)] == {"n_toys": 256, "n_used": 216, "causes": {"uncond:MAX_ITER": 40}}
        assert doc["excluded"]["bonly"][str(k)]["n_used"] == 472
    assert doc["excluded"]["bonly_experiments"] == {"n_toys": 512, "n_used": 472, "causes": {"uncond:MAX_ITER": 40}}
    # the p-values are those of the good toys: recompute CLs+b at every point from them
    for k, (_, arrays, _) in enumerate(files[:-1]):
        good = arrays["q"][40:, 0]
        assert doc["pvalues"]["clsb"][k] == pytest.approx(np.mean(good >= doc["q_obs"][k]))
    # with toys that were kept as q = 0 the p-values were biased upwards; now the limits move
    # only within their errors
    lim, ref = doc["limits"]["CLs+b"], clean["limits"]["CLs+b"]
    assert lim["expected_mu"]["0"] == pytest.approx(ref["expected_mu"]["0"], abs=3 * ref["expected_mu_err"]["0"])
    assert any("MAX_ITER" in w for w in doc["warnings"])


def test_errors_summary_counts_excluded_toys(ws40):
    from lzflow.fit_errors import summarise_loaded

    ws = _grid(ws40, 0.02, 3.5, 4)
    files = _break(toy_files(ws, 256, 256), 10)
    summary = summarise_loaded(files)
    assert summary["excluded_toys"] == 10 * len(files)
    assert summary["files"] == len(files)


def test_json_safe_flags_every_non_finite_number():
    safe, paths = json_safe({"a": [1.0, float("nan")], "b": {"c": float("inf")}, "d": np.float64(2.0)})
    assert safe == {"a": [1.0, None], "b": {"c": None}, "d": 2.0}
    assert paths == ["a[1] (nan)", "b.c (inf)"]
    json.dumps(safe, allow_nan=False)


# ----------------------------------------------------------------------------- item 9b/9d
@pytest.fixture(scope="module")
def coarse(ws40):
    """A grid from 0.3 σ_μ: ≈ 16 % of the CLs+b experiments are below it."""
    ws = _grid(ws40, 0.3, 3.5, 8)
    return ws, toy_files(ws, 256, 1024)


def test_merge_extends_the_grid_edge_deterministically(coarse):
    ws, files = coarse
    plain, _ = merge(ws, files, n_boot=0, max_refine_rounds=0)
    lim0 = plain["limits"]["CLs+b"]
    assert lim0["expected_status"]["-1"] == "upper_bound" and lim0["pcl_floor_status"] == "upper_bound"
    assert lim0["expected_mu"]["-1"] is None  # a bound is not a band edge
    doc, extra = merge(ws, files, n_boot=30)
    lim = doc["limits"]["CLs+b"]
    rounds = doc["refinement"]["rounds"]
    added = [mu for r in rounds for mu in r["mu"]]
    assert rounds and min(added) < ws["poi_grid"][0]
    assert all(mu < ws["poi_grid"][0] or mu > ws["poi_grid"][-1] for mu in added)  # only beyond the edges
    # new seed indices after the configured ones; configured points keep theirs
    idx = dict(zip(doc["poi_grid"], doc["poi_index"]))
    assert [idx[mu] for mu in ws["poi_grid"]] == list(range(8))
    assert sorted(set(doc["poi_index"]) - set(range(8))) == list(range(8, 8 + len(added)))
    assert lim["expected_status"] == {"-2": "upper_bound", "-1": "ok", "0": "ok", "1": "ok", "2": "ok"}
    assert lim["expected_mu"]["-2"] is None and lim["expected_bound_mu"]["-2"] == pytest.approx(doc["poi_grid"][0])
    assert lim["pcl_floor_status"] == "ok" and lim["pcl_floor_mu"] < ws["poi_grid"][0]
    # the resolved −1σ band is where the asymptotic one is (this mass has ~1000 background events)
    asym = ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]
    assert lim["expected_mu"]["-1"] == pytest.approx(asym["-1"], abs=3 * lim["expected_mu_err"]["-1"] + 0.1 * asym["-1"])
    # the median does not move: points were added beyond the edges only
    assert lim["expected_mu"]["0"] == pytest.approx(lim0["expected_mu"]["0"], rel=1e-12)
    # the toys merge ran are accounted for: failures per new ensemble, in the error summary too
    for k in set(doc["poi_index"]) - set(range(8)):
        assert doc["failures"]["sb"][str(k)]["n_toys"] == 256
    assert len(doc["failures"]["bonly_grid_extension"]) == len(rounds)
    assert {h["hypothesis"] for _, _, h in extra} == {"sb", "b-grid-extension"}
    # same input → the same document, bit for bit
    again, _ = merge(ws, files, n_boot=30)
    assert json.dumps(again, sort_keys=True) == json.dumps(doc, sort_keys=True)


def test_grid_extension_refuses_b_only_toys_that_do_not_regenerate(coarse):
    """The grid extension takes the B-only toys' unconditional fits from their files; it still checks
    that the toys regenerate from their seeds (aux and event counts): a file whose toys differ is refused."""
    from lzflow.exceptions import MergeError

    ws, files = coarse
    tampered = []
    for path, arrays, header in files:
        if header["hypothesis"] == "b":
            arrays = {**arrays, "aux": arrays["aux"] + np.where(np.arange(arrays["aux"].shape[0]) == 7, 1e-3, 0.0)[:, None]}
        tampered.append((path, arrays, header))
    with pytest.raises(MergeError, match="could not be regenerated from their seeds"):
        merge(ws, tampered, n_boot=0)


def test_merge_result_is_independent_of_the_job_split(coarse, ws40):
    ws, files = coarse
    one, _ = merge(ws, files, n_boot=20)
    split, _ = merge(ws, toy_files(ws, 256, 1024, jobs=3), n_boot=20)
    for d in (one, split):
        d.pop("toys")  # run numbers differ
    assert json.dumps(one, sort_keys=True) == json.dumps(split, sort_keys=True)


def test_merge_of_one_sided_toys_extends_the_grid_with_the_needed_fits_only(coarse):
    """Toy files made with cond_fits 'needed' (no fit where mu_hat > mu: the workflow's one-sided toys):
    merge's grid-extension toys do as their headers say; the limits equal those of the full records to
    the fits' tolerance; toy files that disagree on it are refused."""
    from lzflow.exceptions import MergeError

    ws, files = coarse
    needed = toy_files(ws, 256, 1024, cond_fits="needed")
    assert all(h["cond_fits"] == "needed" for _, _, h in needed)
    doc, extra = merge(ws, needed, n_boot=0)
    full, _ = merge(ws, files, n_boot=0)
    assert doc["poi_grid"] == full["poi_grid"]  # the same points added
    for method in ("CLs+b", "CLs"):
        for n in ("-1", "0", "1", "2"):
            assert doc["limits"][method]["expected_mu"][n] == pytest.approx(full["limits"][method]["expected_mu"][n],
                                                                         rel=1e-9)
    added = [a for _, a, h in extra if h["hypothesis"] == "sb"]
    assert added and all(np.any(a["status_cond"] == FitStatus.NOT_NEEDED) for a in added)
    assert any(f.get("cond", {}).get("not_needed") for f in doc["failures"]["sb"].values())
    mixed = needed[:-1] + files[-1:]
    with pytest.raises(MergeError, match="toy files disagree on the conditional fits"):
        merge(ws, mixed, n_boot=0)


def test_merge_errors_are_bootstrap_by_default(coarse):
    from lzflow.stats.inversion import N_BOOT

    ws, files = coarse
    doc, _ = merge(ws, files, max_refine_rounds=0)
    for method in ("CLs+b", "CLs"):
        lim = doc["limits"][method]
        assert lim["error_method"].startswith(f"bootstrap ({N_BOOT} replicates")
        assert lim["expected_mu_err"]["0"] != lim["expected_mu_err_order_stats"]["0"]
        assert lim["observed_mu_err"] != lim["observed_mu_err_propagated"]
        assert lim["observed_mu_err"] > 0 and lim["pcl_mu_err"] > 0


def test_without_power_constraint_the_pcl_is_the_observed_limit_with_its_error(coarse):
    """stats.power_threshold: null: the reported PCL is the observed limit, and so is its MC error.
    (merge used to report the bootstrap error of a power-constrained limit; the two differ only when the
    observed limit falls below the PCL floor, which Asimov background-only data never does.)"""
    ws, files = coarse
    doc, _ = merge(ws, files, max_refine_rounds=0, power_threshold=None, method="CLs")
    for method in ("CLs+b", "CLs"):
        lim = doc["limits"][method]
        assert lim["pcl_mu"] == lim["observed_mu"] and lim["pcl_floor_mu"] is None
        assert lim["pcl_mu_err"] == lim["observed_mu_err"] and lim["pcl_mu_err"] > 0


# ----------------------------------------------------------------------------- readers of limit.json
def test_readers_show_bounds_as_bounds(coarse, tmp_path):
    """curve (CSV, plots), report and study overlay read a limit.json whose −2σ and −1σ band
    edges are only bounds (no grid extension): no crash, and a bound is never written as a value."""
    from pathlib import Path

    from lzflow.curve import curve_rows, plot_limit_curve, plot_pvalues, plot_teststat, write_curve_csv
    from lzflow.report import _curve_section
    from lzflow.study_table import plot_study_overlay, study_rows

    ws, files = coarse
    doc, _ = merge(ws, files, n_boot=0, max_refine_rounds=0)
    write_json(tmp_path / "limit.json", doc)
    doc = json.loads((tmp_path / "limit.json").read_text())
    rows = curve_rows([doc])
    assert rows[0]["sigma_m1_cm2"] is None and rows[0]["sigma_m1_bound"].startswith("<=")
    assert float(rows[0]["sigma_m1_bound"][2:]) == pytest.approx(ws["poi_grid"][0] * doc["sigma_ref_cm2"], rel=1e-5)
    write_curve_csv(tmp_path / "curve.csv", rows)
    plot_limit_curve(rows, tmp_path / "curve.png")
    plot_pvalues(doc, tmp_path / "pv.png")
    plot_teststat(doc, tmp_path / "ts.png")
    html = _curve_section(Path(tmp_path / "curve.csv"), Path(tmp_path / "curve.png"))
    import re

    cells = re.findall(r"<em>([≤≥]) [0-9.e+-]+</em>", html)
    assert sorted(cells) == sorted(["≤", "≤"] + ["≥"] * (rows[0]["sigma_p2_bound"] is not None)), html
    table = study_rows({"name": "s", "parameter": "p", "baseline_value": 1}, {"40": doc},
                       [{"label": "v", "value": 2, "limits": {"40": doc}}])
    assert table[0]["sigma_m1_cm2"] is None
    plot_study_overlay({"name": "s", "parameter": "p", "baseline_value": 1}, table, tmp_path / "overlay.png")
    assert (tmp_path / "overlay.png").stat().st_size > 1000


def test_curve_summary_line_shows_a_band_beyond_the_grid_as_its_bound():
    """A +1σ edge beyond the POI grid has no value, only a bound: the console line shows the bound
    (it used to crash formatting None)."""
    from lzflow.curve import summary_line

    row = {"mass_GeV": 10.0, "no_sensitivity": False, "sigma_median_cm2": 8.7e-47, "sigma_m1_cm2": 2.3e-47,
           "sigma_p1_cm2": None, "sigma_p1_bound": ">=1.14e-45", "sigma_asymptotic_median_cm2": 2.85e-47}
    assert summary_line(row) == "        10 GeV: median 8.7e-47 cm2 [-1s 2.3e-47, +1s >=1.14e-45], asymptotic 2.85e-47"
    assert summary_line({"mass_GeV": 2.0, "no_sensitivity": True}).endswith("2 GeV: no sensitivity")


def test_a_toy_median_far_from_the_asymptotic_one_is_reported():
    """Toys and asymptotics agree to ~20 % at these toy counts; a factor 2.8 (quick + systematics at
    10 GeV before the morphing is fixed) must not pass silently."""
    from lzflow.merge import toy_asymptotic_mismatch

    def doc(toys, asymptotic):
        return {"method": "CLs+b", "limits": {"CLs+b": {"expected_sigma_cm2": {"0": toys}}},
                "asymptotic": {"expected_sigma_cm2": {"0": asymptotic}}}

    assert toy_asymptotic_mismatch(doc(2.12e-47, 2.09e-47)) is None
    assert toy_asymptotic_mismatch(doc(1.10e-48, 1.19e-48)) is None
    message = toy_asymptotic_mismatch(doc(8.01e-47, 2.85e-47))
    assert message is not None and "2.81 x the asymptotic" in message
    assert "0.40 x" in toy_asymptotic_mismatch(doc(1.0, 2.5))
    assert toy_asymptotic_mismatch(doc(None, 2.85e-47)) is None and toy_asymptotic_mismatch({"method": "CLs"}) is None
