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
from lzflow.merge import limit_document, merge_mass
from lzflow.precision import (MARGIN, MAX_ROUNDS, check_precision, multiplier, precision_merge_keys, precision_section,
                              relative_errors, shortfall, target_reached, targets, worst_relative_error)
from lzflow.precisionjob import (decide, decisions_before, extra_job_spec, extra_jobs, extra_toy_files,
                                 merge_spec_with_rounds, round_record)
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


def test_target_naming_its_quantities(repo, quick):
    """The mapping form covers the quantities it names, each with its own ε; a number covers all three."""
    assert targets(0.02) == {"-1": 0.02, "0": 0.02, "1": 0.02}
    assert targets({"plus_1sigma": 0.05, "median": 0.02}) == {"0": 0.02, "1": 0.05}
    cfg = _resolve(repo, quick, target_precision={"plus_1sigma": 0.05, "median": 0.02}, max_toys_per_poi=3000)
    assert cfg["stats"]["target_precision"] == {"plus_1sigma": 0.05, "median": 0.02}
    # the specs carry it in the order of QUANTITY_NAMES; a number stays the float it was
    assert L.merge_spec(cfg, "40")["target_precision"] == {"median": 0.02, "plus_1sigma": 0.05}
    assert list(L.merge_spec(cfg, "40")["target_precision"]) == ["median", "plus_1sigma"]
    rel = {"-1": 0.5, "0": 0.03, "1": 0.04}  # the -1σ (not covered) would ask for 625x
    assert shortfall(rel, {"median": 0.02}) == pytest.approx(1.5) and not target_reached(rel, {"median": 0.02})
    assert multiplier(rel, {"median": 0.02}, 300, 10**6) == int(np.ceil(MARGIN * 1.5 ** 2)) == 3
    assert multiplier(rel, {"median": 0.02, "plus_1sigma": 0.01}, 300, 10**6) == int(np.ceil(MARGIN * 16)) == 18
    assert multiplier(rel, 0.02, 300, 10**6) == int(np.ceil(MARGIN * 625))  # the number covers the -1σ too
    assert target_reached(rel, {"median": 0.03, "plus_1sigma": 0.04}) and multiplier(rel, {"median": 0.03}, 300, 10**6) == 1
    assert worst_relative_error(rel, {"median": 0.02}) == 0.03 and worst_relative_error(rel) == 0.5
    # a covered quantity that could not be measured (a band on a grid edge) is not held against the target
    assert target_reached({"-1": None, "0": 0.01, "1": None}, 0.02)
    assert not target_reached({"-1": 0.01, "0": None, "1": None}, {"median": 0.02})
    assert multiplier({"-1": 0.01, "0": None, "1": None}, {"median": 0.02}, 300, 10**6, current=2) == 2
    doc = {"limits": {"CLs+b": {"expected_mu": {"-1": 1.0, "0": 2.0, "1": 4.0},
                                "expected_mu_err": {"-1": 0.5, "0": 0.03, "1": 0.1}}}, "toys": {"sb_per_poi": [300], "bonly": 600}}
    section = precision_section(doc, {"method": "CLs+b", "target_precision": {"median": 0.02}}, [])
    assert section["targets"] == {"0": 0.02} and section["worst"] == pytest.approx(0.015) and section["reached"]


@pytest.mark.parametrize("value, message", [
    ({"mean": 0.02}, "stats.target_precision.mean: unknown key"),
    ({}, "stats.target_precision: {}; expected a mapping naming at least one of minus_1sigma, median, plus_1sigma"),
    ({"median": 1.0}, "stats.target_precision.median: 1.0 is out of range; expected 0 < median < 1"),
    ({"median": "2%"}, "stats.target_precision.median: '2%' is invalid; expected a value of type number"),
    ([0.02], "stats.target_precision: [0.02] is invalid; expected a value of type number or object or null"),
])
def test_bad_target_mapping_one_line(repo, quick, value, message):
    with pytest.raises(ConfigError) as err:
        _resolve(repo, quick, target_precision=value, max_toys_per_poi=3000)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_targets_refuse_bad_forms_directly():
    with pytest.raises(ConfigError, match=r"^stats.target_precision: \{'mean': 0.1\}; expected a mapping naming at "
                                          r"least one of minus_1sigma, median, plus_1sigma \(each with its relative error\), not mean$"):
        targets({"mean": 0.1})
    with pytest.raises(ConfigError, match=r"^stats.target_precision.median: 0; expected a positive relative error"):
        targets({"median": 0})
    with pytest.raises(ConfigError, match=r"^stats.target_precision.plus_1sigma: 1.5; expected a relative error in \(0, 1\)"):
        check_precision({"target_precision": {"median": 0.02, "plus_1sigma": 1.5}, "max_toys_per_poi": 10, "per_mass": {}})


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
    # a later round, measured with 3x the first batch: 1.1 * 3 * 6.25 = 20.6 -> 21; met: stays 3
    assert multiplier(rel, 0.02, 300, 10_000, current=3) == 21 and multiplier(rel, 0.05, 300, 10_000, 3) == 3
    assert multiplier(rel, 0.02, 300, 900, current=3) == 3  # at the bound already


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


def pspec_for(ws, n_sb, n_b, n_jobs, target=0.02, bound=100_000):
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


def test_rounds_extend_the_ensemble_and_merge_as_the_fixed_count(ws, tmp_path):
    """Two extension rounds (x1 -> x3 -> x4) give toy for toy, and limit.json byte for byte, what a
    fixed-count run with 4x the toys gives, but for the precision section."""
    from lzflow.io import write_json

    pspec = pspec_for(ws, 100, 200, 2)
    first = _first_batch(pspec)
    r1, r2 = extra_jobs(pspec, 3), extra_jobs(pspec, 4, 3, round=2)
    # (m-1) x jobs per POI and B-only, each named as the job it stands for, indices continuing the first batch's
    assert len(r1) == 2 * 2 * (pspec["n_poi"] + 1) and len(r2) == 2 * (pspec["n_poi"] + 1)
    for (name, spec), r, jobs, n in [(e, 1, range(2, 6), 6) for e in r1] + [(e, 2, range(6, 8), 8) for e in r2]:
        assert toy_file_identity(name) == (spec["hypothesis"], spec.get("poi_index", 0), spec["job_index"])
        assert f"/toys/extra/r{r}/" in name and spec["job_index"] in jobs and spec["n_jobs"] == n
    files = _files(ws, first + r1 + r2)
    # the fixed-count run: 400 S+B and 800 B-only toys per POI in 8 jobs
    fixed = _files(ws, _first_batch(pspec_for(ws, 400, 800, 8)))
    by_run = {h["run_number"]: a for _, a, h in fixed}
    assert sorted(by_run) == sorted(h["run_number"] for _, _, h in files)  # the same run numbers
    for _, arrays, header in files:  # toy for toy the same records: no toy made twice, none changed
        for key in ("toy_index", "q", "mu_hat", "n_events"):
            assert np.array_equal(arrays[key], by_run[header["run_number"]][key], equal_nan=True), key
    spec = {**SPEC, "n_boot": 50}
    doc_fixed, _ = limit_document(ws, lambda: fixed, spec)
    rounds = [{"round": 1, "toys_per_poi": 100}, {"round": 2, "toys_per_poi": 300}]
    doc_prec, _ = limit_document(ws, lambda: files, {**spec, "target_precision": 0.02, "precision_rounds": rounds})
    precision = doc_prec.pop("precision")
    assert "precision" not in doc_fixed
    write_json(tmp_path / "fixed.json", doc_fixed)
    write_json(tmp_path / "prec.json", doc_prec)
    assert (tmp_path / "prec.json").read_bytes() == (tmp_path / "fixed.json").read_bytes()  # only the section added
    doc_first, _ = limit_document(ws, lambda: files[:len(first)], {**spec, "target_precision": 0.02})
    assert not doc_first["precision"]["extended"] and doc_first["precision"]["toys_per_poi"] == 100
    assert doc_first["precision"]["rounds"] == []
    assert precision["toys_per_poi"] == 400 and precision["toys_bonly"] == 800 and precision["extended"]
    assert precision["rounds"] == rounds  # as the merge rule passes them (merge_spec_with_rounds)
    rel = relative_errors(doc_fixed, "CLs+b")
    assert precision["relative_error"] == rel and precision["worst"] == max(rel.values())
    assert precision["reached"] == (max(rel.values()) <= 0.02)


def test_decisions_round_by_round(ws, tmp_path):
    from lzflow.toyjobs import save_toy_job

    def save(jobs):
        out = []
        for name, spec in jobs:
            r, h = run_toy_job(ws, spec)
            save_toy_job(tmp_path / name, r, h)
            out.append(tmp_path / name)
        return out

    # first batch: 100 S+B / 200 B-only toys: the median's bootstrap error is several per cent
    pspec = pspec_for(ws, 100, 200, 2)
    paths = save(_first_batch(pspec))
    decision = decide(ws, paths, pspec)
    worst = max(v for v in decision["relative_error"].values() if v is not None)
    assert worst > 0.02
    m = decision["multiplier"]
    assert m == min(int(np.ceil(MARGIN * (worst / 0.02) ** 2)), 1000) > 1
    assert decision["final"] == {"toys_per_poi": 100 * m, "toys_bonly": 200 * m, "jobs_per_poi": 2 * m}
    assert [e["file"] for e in decision["extra"]] == [n for n, _ in extra_jobs(pspec, m)]
    assert decision["round"] == 1 and decision["multiplier_before"] == 1
    assert decision["last"] == (m == 1000)  # at the bound (max_toys_per_poi // 100) no later round
    (tmp_path / "d.json").write_text(json.dumps(decision))
    assert extra_toy_files(tmp_path / "d.json", "R") == [f"R/{e['file']}" for e in decision["extra"]]
    one = decision["extra"][0]
    assert extra_job_spec(decision, f"R/{one['file']}") == one["spec"]
    with pytest.raises(ValueError, match="not an extra toy file"):
        extra_job_spec(decision, "R/m40/toys/extra/r1/poi0/job9999.npz")
    # a looser target is met: no extra toys, the last round
    loose = decide(ws, paths, pspec_for(ws, 100, 200, 2, target=round(worst * 1.01, 6)))
    assert loose["multiplier"] == 1 and loose["extra"] == [] and loose["last"]
    # the bound caps the multiplier; at the bound no later round
    capped = decide(ws, paths, pspec_for(ws, 100, 200, 2, bound=250))
    assert capped["multiplier"] == 2 and capped["final"]["toys_per_poi"] == 200 and capped["last"]

    # two rounds to a target 1.3x below the first batch's worst error: round 1 asks for ceil(1.1 * 1.69) = 2x
    target = round(worst / 1.3, 6)
    p2 = pspec_for(ws, 100, 200, 2, target=target)
    d1 = decide(ws, paths, p2)
    assert d1["multiplier"] == 2 and not d1["last"] and len(d1["extra"]) == 2 * (p2["n_poi"] + 1)
    paths2 = paths + save((e["file"], e["spec"]) for e in d1["extra"])
    d2 = decide(ws, paths2, p2, previous=d1)  # round 2 measures all 200 / 400 toys so far
    assert d2["round"] == 2 and d2["multiplier_before"] == 2
    assert d2["measured_with"] == {"toys_per_poi": 200, "toys_bonly": 400}
    w2 = max(v for v in d2["relative_error"].values() if v is not None)
    assert d2["multiplier"] == (2 if w2 <= target else int(np.ceil(MARGIN * 2 * (w2 / target) ** 2)))
    assert [e["file"] for e in d2["extra"]] == [n for n, _ in extra_jobs(p2, d2["multiplier"], 2, 2)]
    assert all("/toys/extra/r2/" in e["file"] for e in d2["extra"])
    assert d2["last"] == (d2["extra"] == [])
    # the round after MAX_ROUNDS - 1 is the last, whatever it asks for
    d_max = decide(ws, paths2, p2, previous={**d1, "round": MAX_ROUNDS - 1})
    assert d_max["round"] == MAX_ROUNDS and d_max["last"]
    with pytest.raises(ValueError, match="expected an open round"):
        decide(ws, paths2, p2, previous={**d1, "last": True})
    # the merge rule's view: decisions round by round up to the last, recorded in the merge spec
    for d in (d1, d2):
        (tmp_path / f"r{d['round']}.json").write_text(json.dumps(d))
    chain = decisions_before(lambda r: str(tmp_path / f"r{r}.json"), None if d2["last"] else 3)
    assert chain == [str(tmp_path / "r1.json"), str(tmp_path / "r2.json")]
    assert decisions_before(lambda r: str(tmp_path / f"r{r}.json"), 2) == [str(tmp_path / "r1.json")]
    spec = json.loads(merge_spec_with_rounds(json.dumps(p2["merge"]), chain))
    assert spec == {**p2["merge"], "precision_rounds": [round_record(d1), round_record(d2)]}
    assert round_record(d1) == {"round": 1, "toys_per_poi": 100, "toys_bonly": 200,
                                "relative_error": d1["relative_error"], "worst": worst, "reached": False,
                                "next_toys_per_poi": 200, "extra_files": len(d1["extra"])}
    assert round_record(d2)["reached"] == (w2 <= target)


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


def rounds_to_target(ws, tmp_path, pspec):
    """One mass through the workflow's rounds (lzflow.precisionjob.decide on the toys so far, the
    extra files it asks for, until the last round), then the final merge: (limit document, decisions,
    every toy file)."""
    from lzflow.toyjobs import save_toy_job

    def save(jobs):
        out = []
        for name, spec in jobs:
            r, h = run_toy_job(ws, spec)
            save_toy_job(tmp_path / name, r, h)
            out.append(tmp_path / name)
        return out

    paths, decisions = save(_first_batch(pspec)), []
    while not decisions or not decisions[-1]["last"]:
        decisions.append(decide(ws, paths, pspec, previous=decisions[-1] if decisions else None))
        paths += save((e["file"], e["spec"]) for e in decisions[-1]["extra"])
    spec = {**pspec["merge"], "precision_rounds": [round_record(d) for d in decisions]}
    return merge_mass(ws, paths, spec)[0], decisions, paths


@pytest.mark.slow
@pytest.mark.parametrize("mass", ["10", "40"])
def test_rounds_reach_the_target_and_errors_match_the_seed_scatter(repo, tmp_path, mass):
    """config/quick.yaml's workspaces (tests/data/workspace_quick_m*.json.gz, its 8-point POI grid),
    6 independent seeds per mass, CLs, ε = 0.1, first batch 100 S+B / 200 B-only toys per POI, bound
    3000, the workflow's bootstrap (N_BOOT replicates); ~1.5 min per mass on one free core. Every seed
    reaches ε within MAX_ROUNDS rounds (one round alone falls short for about half of them, up to
    ~2 ε: the first batch's error estimate scatters itself), and the bootstrap errors agree with the
    scatter of the seeds: for each quantity Q, χ² = Σ_i (Q_i − Q̄_w)² / σ_i² (σ_i the seed's bootstrap
    error, Q̄_w the 1/σ²-weighted mean) follows χ² with 5 degrees of freedom if the σ_i are right;
    each of the three is required inside its central 99.8 % interval [0.21, 20.5] (errors 2x too
    large give χ² ≈ 5/4, 2x too small ≈ 20: a gross misestimate fails, 6 seeds cannot tell 20 %)."""
    from scipy.stats import chi2

    ws = json.loads(gzip.decompress((repo / "tests" / "data" / f"workspace_quick_m{mass}.json.gz").read_bytes()))
    target, values, errors, toys, one_round = 0.1, [], [], [], []
    for seed in range(6):
        pspec = pspec_for(ws, 100, 200, 2, target=target, bound=3000)
        pspec["mass"] = pspec["merge"]["mass_label"] = mass
        pspec["merge"]["method"] = "CLs"
        del pspec["merge"]["n_boot"]  # the workflow's bootstrap (N_BOOT replicates)
        for key in ("sb", "b"):
            pspec[key]["seed"] = 100 + seed
        doc, decisions, _ = rounds_to_target(ws, tmp_path / f"s{seed}", pspec)
        p = doc["precision"]
        assert p["reached"] and p["worst"] <= target, (seed, p)  # every seed reaches the target
        assert p["rounds"] == [round_record(d) for d in decisions] and len(decisions) <= MAX_ROUNDS
        assert p["toys_per_poi"] == decisions[-1]["final"]["toys_per_poi"] and p["extended"] == (p["toys_per_poi"] > 100)
        # a round that met the target added nothing and was the last
        assert all(d["extra"] == [] and d["last"] for d in decisions if round_record(d)["reached"])
        lim = doc["limits"]["CLs"]
        values.append([lim["expected_mu"][q] for q in ("-1", "0", "1")])
        errors.append([lim["expected_mu_err"][q] for q in ("-1", "0", "1")])
        toys.append((decisions[0]["final"]["toys_per_poi"], p["toys_per_poi"], len(decisions)))
        # the one-round version's result: the measurement after the first extension (round 2's)
        after_one = round_record(decisions[1]) if len(decisions) > 1 else p
        one_round.append((after_one["reached"], round(after_one["worst"], 4)))
    print(f"m{mass}: (toys per POI after one round, final, decisions)", toys, "one round (reached, worst)", one_round)
    values, errors = np.array(values), np.array(errors)
    weights = 1 / errors ** 2
    mean = (weights * values).sum(axis=0) / weights.sum(axis=0)
    stat = ((values - mean) ** 2 * weights).sum(axis=0)
    print("chi2 (-1, 0, +1 sigma)", stat, "scatter/mean", values.std(axis=0, ddof=1) / values.mean(axis=0),
          "mean bootstrap/mean", errors.mean(axis=0) / values.mean(axis=0))
    lo, hi = chi2.ppf([0.001, 0.999], df=len(values) - 1)
    assert np.all((lo < stat) & (stat < hi)), (stat, lo, hi)
