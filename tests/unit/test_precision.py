"""Toys to a target precision (lzflow.precision, lzflow.precisionjob; issue 16 item 4): the config
keys, the measure, the decision, and that extra toys extend the first batch's ensemble so that the
merged result equals a fixed-count run's."""

from __future__ import annotations

import copy
import gzip
import json

import numpy as np
import pytest
from scipy.stats import norm

from lzflow import layout as L
from lzflow.config import load_config_file, resolve_config
from lzflow.exceptions import ConfigError
from lzflow.merge import limit_document
from lzflow.precision import MARGIN, check_precision, multiplier, precision_merge_keys, relative_errors
from lzflow.precisionjob import decide, extra_job_spec, extra_jobs, extra_toy_files
from lzflow.toyjobs import run_toy_job, toy_file_identity

SPEC = {"mass_label": "40", "cl": 0.9, "method": "CLs+b", "power_threshold": 0.1587, "test_statistic": "qtilde"}


@pytest.fixture(scope="module")
def quick(repo):
    return load_config_file(repo / "config" / "quick.yaml")


def _resolve(repo, raw, **stats):
    raw = copy.deepcopy(raw)
    raw["stats"].update(stats)
    return resolve_config(raw, repo)


# ----------------------------------------------------------------------------- configuration
def test_absent_target_keeps_specs_and_records_null(repo, quick):
    cfg = _resolve(repo, quick)
    assert cfg["stats"]["target_precision"] is None and cfg["stats"]["max_toys_per_poi"] is None
    assert "target_precision" not in L.merge_spec(cfg, "40")  # the merge spec of today: unchanged
    assert precision_merge_keys(cfg["stats"]) == {}
    on = _resolve(repo, quick, target_precision=0.02, max_toys_per_poi=3000)
    assert L.merge_spec(on, "40") == {**L.merge_spec(cfg, "40"), "target_precision": 0.02}
    # the first batch's toy jobs are today's
    assert L.toy_jobs(on, "40") == L.toy_jobs(cfg, "40")


@pytest.mark.parametrize("stats, message", [
    ({"target_precision": 0.02}, "stats.max_toys_per_poi: null with stats.target_precision 0.02; expected"),
    ({"max_toys_per_poi": 1000}, "stats.max_toys_per_poi: 1000 without stats.target_precision; expected null"),
    ({"target_precision": 0.02, "max_toys_per_poi": 200}, "stats.max_toys_per_poi: 200 below toys_per_poi 300"),
    ({"target_precision": 0.02, "max_toys_per_poi": 300 * 5000},
     "stats.max_toys_per_poi: 1500000 allows 10000 toy jobs per POI (mass 10); expected fewer than 10000"),
])
def test_bad_precision_keys_one_line(repo, quick, stats, message):
    with pytest.raises(ConfigError) as err:
        _resolve(repo, quick, **stats)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("value", [0, 1, -0.1, "0.02"])
def test_target_outside_zero_one_refused_by_schema(repo, quick, value):
    with pytest.raises(ConfigError) as err:
        _resolve(repo, quick, target_precision=value, max_toys_per_poi=3000)
    assert "stats.target_precision" in str(err.value)


def test_check_precision_refuses_out_of_range_target_directly():
    with pytest.raises(ConfigError, match=r"stats.target_precision: 1.5; expected a relative error in \(0, 1\)"):
        check_precision({"target_precision": 1.5, "max_toys_per_poi": 10, "per_mass": {}})


# ----------------------------------------------------------------------------- the measure
def test_relative_errors_and_multiplier():
    doc = {"limits": {"CLs": {"expected_mu": {"-2": 1.0, "-1": 2.0, "0": 4.0, "1": 8.0, "2": None},
                              "expected_mu_err": {"-2": 9.0, "-1": 0.1, "0": 0.12, "1": None, "2": 1.0}}}}
    rel = relative_errors(doc, "CLs")
    assert rel == {"-1": pytest.approx(0.05), "0": pytest.approx(0.03), "1": None}  # ±2σ not measured
    # worst 0.05 vs 0.02: (0.05/0.02)^2 = 6.25, x1.1 = 6.875 -> 7
    assert multiplier(rel, 0.02, 300, 10_000) == 7 == int(np.ceil(MARGIN * 6.25))
    assert multiplier(rel, 0.02, 300, 1500) == 5  # the bound: 1500 // 300
    assert multiplier(rel, 0.05, 300, 10_000) == 1  # met (<=): no extra toys
    assert multiplier({"-1": None, "0": None, "1": None}, 0.02, 300, 10_000) == 1


# ----------------------------------------------------------------------------- extension = fixed count
@pytest.fixture(scope="module")
def ws(repo):
    ws = json.loads(gzip.decompress((repo / "tests" / "data" / "workspace_m40.json.gz").read_bytes()))
    sigma = ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"] / norm.isf(0.1)
    ws["poi_grid"] = (np.linspace(0.3, 3.5, 6) * sigma).tolist()
    return ws


def _arrays(result):
    arrays = {name: np.asarray(getattr(result, name)) for name in result.PER_TOY}
    arrays["mu_test"] = np.asarray(result.mu_test)
    arrays["gen_params"] = np.asarray(result.gen_params)
    return arrays


def _files(ws, jobs):
    """(path, arrays, header) of toy jobs [(file name, spec)], as merge reads them."""
    out = []
    for name, spec in jobs:
        r, h = run_toy_job(ws, spec)
        out.append((name, _arrays(r), h))
    return out


def _pspec(ws, n_sb, n_b, n_jobs, target=0.02, bound=100_000):
    base = {"n_jobs": n_jobs, "seed": 5, "test_statistic": "qtilde"}
    return {"mass": "40", "target_precision": target, "max_toys_per_poi": bound,
            "merge": {**SPEC, "n_boot": 50, "target_precision": target},
            "sb": {**base, "hypothesis": "sb", "poi_index": 0, "job_index": 0, "n_toys": n_sb},
            "b": {**base, "hypothesis": "b", "job_index": 0, "n_toys": n_b}, "n_poi": len(ws["poi_grid"])}


def _first_batch(pspec):
    sb, b, n_jobs = pspec["sb"], pspec["b"], pspec["sb"]["n_jobs"]
    jobs = [(L.fill(L.TOYS_SB, mass="40", poi=k, job=j), {**sb, "poi_index": k, "job_index": j})
            for k in range(pspec["n_poi"]) for j in range(n_jobs)]
    return jobs + [(L.fill(L.TOYS_B, mass="40", job=j), {**b, "job_index": j}) for j in range(n_jobs)]


def test_extra_toys_extend_the_ensemble_and_merge_as_the_fixed_count(ws, tmp_path):
    pspec = _pspec(ws, 100, 200, 2)
    first = _first_batch(pspec)
    m = 3
    extra = extra_jobs(pspec, m)
    # (m-1) x jobs per POI and B-only, each named as the job it stands for, indices continuing the first batch's
    assert len(extra) == (m - 1) * 2 * (pspec["n_poi"] + 1)
    for name, spec in extra:
        assert toy_file_identity(name) == (spec["hypothesis"], spec.get("poi_index", 0), spec["job_index"])
        assert "/toys/extra/" in name and 2 <= spec["job_index"] < 6 and spec["n_jobs"] == 6
    files = _files(ws, first + extra)
    # the fixed-count run: 300 S+B and 600 B-only toys per POI in 6 jobs
    fixed_pspec = _pspec(ws, 300, 600, 6)
    fixed = _files(ws, _first_batch(fixed_pspec))
    by_run = {h["run_number"]: a for _, a, h in fixed}
    assert sorted(by_run) == sorted(h["run_number"] for _, _, h in files)  # the same run numbers
    for _, arrays, header in files:  # toy for toy the same records: no toy made twice, none changed
        for key in ("toy_index", "q", "mu_hat", "n_events"):
            assert np.array_equal(arrays[key], by_run[header["run_number"]][key], equal_nan=True), key
    spec = {**SPEC, "n_boot": 50}
    doc_fixed, _ = limit_document(ws, lambda: fixed, spec)
    doc_prec, _ = limit_document(ws, lambda: files, {**spec, "target_precision": 0.02})
    precision = doc_prec.pop("precision")
    assert doc_prec == doc_fixed  # identical numbers; the precision run adds only its section
    assert "precision" not in doc_fixed
    doc_first, _ = limit_document(ws, lambda: files[:len(first)], {**spec, "target_precision": 0.02})
    assert not doc_first["precision"]["extended"] and doc_first["precision"]["toys_per_poi"] == 100
    assert precision["toys_per_poi"] == 300 and precision["toys_bonly"] == 600 and precision["extended"]
    rel = relative_errors(doc_fixed, "CLs+b")
    assert precision["relative_error"] == rel and precision["worst"] == max(rel.values())
    assert precision["reached"] == (max(rel.values()) <= 0.02)


def test_decision_from_the_first_batch(ws, tmp_path):
    # first batch: 100 S+B / 200 B-only toys: the median's bootstrap error is several per cent
    pspec = _pspec(ws, 100, 200, 2)
    paths = []
    for name, spec in _first_batch(pspec):
        from lzflow.toyjobs import save_toy_job

        r, h = run_toy_job(ws, spec)
        path = tmp_path / name
        save_toy_job(path, r, h)
        paths.append(path)
    decision = decide(ws, paths, pspec)
    worst = max(v for v in decision["relative_error_first_batch"].values() if v is not None)
    assert worst > 0.02
    m = decision["multiplier"]
    assert m == min(int(np.ceil(MARGIN * (worst / 0.02) ** 2)), 1000) > 1
    assert decision["final"] == {"toys_per_poi": 100 * m, "toys_bonly": 200 * m, "jobs_per_poi": 2 * m}
    assert [e["file"] for e in decision["extra"]] == [n for n, _ in extra_jobs(pspec, m)]
    (tmp_path / "d.json").write_text(json.dumps(decision))
    assert extra_toy_files(tmp_path / "d.json", "R") == [f"R/{e['file']}" for e in decision["extra"]]
    one = decision["extra"][0]
    assert extra_job_spec(decision, f"R/{one['file']}") == one["spec"]
    with pytest.raises(ValueError, match="not an extra toy file"):
        extra_job_spec(decision, "R/m40/toys/extra/poi0/job9999.npz")
    # a looser target is met: no extra toys
    loose = decide(ws, paths, _pspec(ws, 100, 200, 2, target=round(worst * 1.01, 6)))
    assert loose["multiplier"] == 1 and loose["extra"] == []
    # the bound caps the multiplier
    capped = decide(ws, paths, _pspec(ws, 100, 200, 2, bound=250))
    assert capped["multiplier"] == 2 and capped["final"]["toys_per_poi"] == 200


def test_study_table_reports_the_precision_reached():
    from lzflow.study_table import study_markdown, study_rows

    def limit(mass, err0):
        return {"mass_GeV": mass, "method": "CLs", "sigma_ref_cm2": 1e-45,
                "limits": {"CLs": {"expected_sigma_cm2": {"0": 2e-47, "-1": 1e-47, "1": 4e-47},
                                   "expected_mu": {"-1": 1.0, "0": 2.0, "1": 4.0},
                                   "expected_mu_err": {"-1": 0.01, "0": err0, "1": 0.04}}},
                "asymptotic": {"expected_sigma_cm2": {"0": 2e-47}}, "toys": {"sb_per_poi": [300]}}

    study = {"name": "s", "parameter": "stats.toys_per_poi"}
    rows = study_rows(study, {"40": limit(40, 0.1)}, [{"label": "600", "value": 600, "limits": {"40": limit(40, 0.02)}}])
    assert [r["mc_precision_pct"] for r in rows] == [pytest.approx(5.0), pytest.approx(1.0)]  # 0.1/2; max(1 %, 1 %, 1 %)
    md = study_markdown(study, rows)
    assert "| MC error |" in md and "| 300 | 5.0 % |" in md and "| 300 | 1.0 % |" in md
    assert study_rows(study, {"40": {**limit(40, 0.1), "no_sensitivity": True}}, [])[0]["mc_precision_pct"] is None


@pytest.mark.slow
def test_one_round_against_the_scatter_of_independent_seeds(ws):
    """8 independent seeds, CLs, ε = 0.1, first batch 100 S+B / 200 B-only toys, one extension round
    as the workflow makes it (~1 min). Measured: the final medians scatter by 0.91 ε across seeds and
    the mean bootstrap error of the median is 0.83 of that scatter (the measure is sound), but one
    1/√N extrapolation from a 100-toy batch falls short: 3 of 8 seeds reach ε, the others end at
    ≤ 1.47 ε (mostly the −1σ quantile), because the first batch's error estimate scatters itself."""
    target, meds, boot, ms, worst = 0.1, [], [], [], []
    for seed in range(8):
        pspec = _pspec(ws, 100, 200, 2, target=target, bound=3000)
        for key in ("sb", "b"):
            pspec[key]["seed"] = 100 + seed
        spec = {**SPEC, "method": "CLs", "target_precision": target}
        first = _files(ws, _first_batch(pspec))
        doc, _ = limit_document(ws, lambda: first, spec)
        m = multiplier(relative_errors(doc, "CLs"), target, 100, 3000)
        files = first + _files(ws, extra_jobs(pspec, m))
        doc, _ = limit_document(ws, lambda: files, spec)
        p = doc["precision"]
        assert p["toys_per_poi"] == 100 * m and p["extended"] == (m > 1)
        meds.append(doc["limits"]["CLs"]["expected_mu"]["0"])
        boot.append(p["relative_error"]["0"])
        ms.append(m)
        worst.append(p["worst"])
    assert len(set(ms)) > 1  # the seeds needed different extensions
    assert sum(w <= target for w in worst) >= 3 and max(worst) <= 1.5 * target, worst
    scatter = np.std(meds, ddof=1) / np.mean(meds)
    assert scatter <= 1.3 * target, scatter
    assert 0.5 < np.mean(boot) / scatter < 2.0, (np.mean(boot), scatter)
