"""Toys to a target precision at ε = 0.02 (issue 16: ``stats.target_precision: 0.02``), the
slow check on config/quick.yaml's workspaces (tests/data/workspace_quick_m{10,40}.json.gz, its
8-point POI grid) through the workflow's rounds (:func:`test_precision.rounds_to_target`:
:func:`lzflow.precisionjob.decide` on the toys so far, the extra toy files it asks for, the final
merge with the workflow's bootstrap, N_BOOT replicates).

- CLs with the number form (the median and both ±1σ covered): every seed reaches ε on all three,
  the bootstrap errors agree with the scatter of the independent seeds, and a mass whose first
  batch is already as large as the toys the rounds reached gets no extra toys;
- CLs+b (the default method) with ``{median: 0.02}``: its −1σ quantile sits near μ = 0 and would
  need 8–17x the median's toys at 2 % (docs/method.md, "Toys to a target precision"), so the target names
  the median only; every seed reaches it, and the −1σ does not drive the toys.

The figures measured are in docs/method.md, "Toys to a target precision"."""

from __future__ import annotations

import gzip
import json
import time

import numpy as np
import pytest
from scipy.stats import chi2
from test_precision import pspec_for, rounds_to_target  # tests/unit is on sys.path under pytest

from lzflow.merge import merge_mass
from lzflow.precision import MARGIN, MAX_ROUNDS, shortfall
from lzflow.precisionjob import decide, round_record

TARGET = 0.02
#: first batch: S+B toys per POI point, B-only toys, jobs per POI (1000 / 2000: the median's error
#: is ~5 % there, so the rounds multiply it by ~10-30; one job keeps the file count low)
FIRST = (1000, 2000, 1)
#: max_toys_per_poi: 100x the first batch; the rounds measured here stopped at 12,000-36,000
BOUND = 100_000
SEEDS = 6
BANDS = ("-1", "0", "1")


def _workspace(repo, mass):
    return json.loads(gzip.decompress((repo / "tests" / "data" / f"workspace_quick_m{mass}.json.gz").read_bytes()))


def _pspec(ws, mass, seed, method, target, first=FIRST):
    pspec = pspec_for(ws, *first, target=target, bound=BOUND)
    pspec["mass"] = pspec["merge"]["mass_label"] = mass
    pspec["merge"]["method"] = method
    pspec["merge"]["target_precision"] = target
    del pspec["merge"]["n_boot"]  # the workflow's bootstrap (N_BOOT replicates)
    for key in ("sb", "b"):
        pspec[key]["seed"] = 1000 + seed
    return pspec


def _check_rounds(doc, decisions, target):
    """The rounds' invariants: every round but the last fell short and asked for ⌈MARGIN m s²⌉
    (at most the bound), the last met the target, added nothing and is last."""
    p = doc["precision"]
    assert p["reached"], p
    assert p["rounds"] == [round_record(d) for d in decisions] and len(decisions) <= MAX_ROUNDS
    *short, last = decisions
    assert last["extra"] == [] and last["last"] and round_record(last)["reached"]
    assert last["multiplier"] == last["multiplier_before"]  # reached: no extra toys
    for d in short:
        s = shortfall(d["relative_error"], target)
        assert not round_record(d)["reached"] and s > 1 and not d["last"]
        assert d["multiplier"] == min(int(np.ceil(MARGIN * d["multiplier_before"] * s ** 2)), BOUND // FIRST[0])
    assert p["toys_per_poi"] == last["final"]["toys_per_poi"] == last["multiplier"] * FIRST[0]
    assert p["toys_bonly"] == last["multiplier"] * FIRST[1]


def _chi2(values, errors):
    """χ² = Σ_i (Q_i − Q̄_w)² / σ_i² per quantity (Q̄_w the 1/σ²-weighted mean)."""
    values, errors = np.asarray(values), np.asarray(errors)
    weights = 1 / errors ** 2
    mean = (weights * values).sum(axis=0) / weights.sum(axis=0)
    return ((values - mean) ** 2 * weights).sum(axis=0)


@pytest.mark.slow
@pytest.mark.parametrize("mass", ["10", "40"])
def test_cls_reaches_two_per_cent_and_errors_match_the_seed_scatter(repo, tmp_path, mass):
    """CLs, ε = 0.02 (the number form: median and ±1σ), SEEDS independent seeds, first batch
    FIRST, bound BOUND. Every seed reaches ε on all three quantities within MAX_ROUNDS rounds, every
    round but the last fell short and the last added nothing. The bootstrap errors agree with the
    seeds' scatter: for each quantity χ² (above) follows χ² with SEEDS − 1 = 5 degrees of freedom if
    the σ_i are right; each is required inside its central 99.8 % interval [0.21, 20.5]. A mass
    whose first batch is already the toys a seed ended with (same files) gets a first decision with
    no extra toys, and its merge equals that seed's. ~1 CPU-min per seed and mass."""
    ws = _workspace(repo, mass)
    values, errors, runs = [], [], []
    for seed in range(SEEDS):
        pspec = _pspec(ws, mass, seed, "CLs", TARGET)
        cpu = time.process_time()
        doc, decisions, paths = rounds_to_target(ws, tmp_path / f"s{seed}", pspec)
        cpu = time.process_time() - cpu
        _check_rounds(doc, decisions, TARGET)
        rel = doc["precision"]["relative_error"]
        assert all(rel[q] is not None and rel[q] <= TARGET for q in BANDS), rel  # the median and ±1σ
        lim = doc["limits"]["CLs"]
        values.append([lim["expected_mu"][q] for q in BANDS])
        errors.append([lim["expected_mu_err"][q] for q in BANDS])
        runs.append((doc["precision"]["toys_per_poi"], len(decisions), round(cpu), {q: round(r, 4) for q, r in rel.items()}))
        if seed == 0:
            # a mass that reaches ε early: its first batch is what this seed ended with (the same
            # toys, m_R jobs of m_R x 1000 / 2000 toys, job j = toy indices [1000 j, 1000 (j + 1)))
            m = decisions[-1]["multiplier"]
            early = _pspec(ws, mass, seed, "CLs", TARGET, first=(m * FIRST[0], m * FIRST[1], m))
            d1 = decide(ws, paths, early)
            assert d1["round"] == 1 and d1["multiplier"] == 1 and d1["extra"] == [] and d1["last"]
            assert d1["relative_error"] == rel and d1["final"]["toys_per_poi"] == m * FIRST[0]
            again = merge_mass(ws, paths, {**early["merge"], "precision_rounds": [round_record(d1)]})[0]
            assert again["limits"] == doc["limits"] and again["precision"]["rounds"][0]["extra_files"] == 0
    stat = _chi2(values, errors)
    values, errors = np.array(values), np.array(errors)
    print(f"\nm{mass} CLs eps={TARGET}: (toys per POI, decisions, CPU s, r_Q) per seed", runs)
    print("chi2 (-1, 0, +1 sigma)", stat.round(2), "seed scatter/mean", (values.std(axis=0, ddof=1) / values.mean(axis=0)).round(4),
          "mean bootstrap/mean", (errors.mean(axis=0) / values.mean(axis=0)).round(4))
    lo, hi = chi2.ppf([0.001, 0.999], df=SEEDS - 1)
    assert np.all((lo < stat) & (stat < hi)), (stat, lo, hi)
    # the seeds' own scatter of the median: a true error of 2 % gives a sample standard deviation
    # of 6 seeds above 4 % with probability P(χ²_5 > 20) ≈ 0.1 % (measured: 1.75 % at 10 GeV, 0.67 % at 40)
    assert values[:, 1].std(ddof=1) / values[:, 1].mean() < 2 * TARGET


@pytest.mark.slow
@pytest.mark.parametrize("mass", ["10", "40"])
def test_clsb_median_target_ignores_the_noisy_minus_one_sigma(repo, tmp_path, mass):
    """CLs+b, ``target_precision: {median: 0.02}``, 4 seeds: every seed reaches 2 % on the median,
    each round's multiplier follows the median's error alone (the −1σ's, far above 2 %, is
    measured and recorded but not covered), and the median's bootstrap errors agree with the seed
    scatter (χ², 3 degrees of freedom, central 99.8 % interval [0.024, 16.3])."""
    ws = _workspace(repo, mass)
    target, values, errors, runs = {"median": TARGET}, [], [], []
    for seed in range(4):
        pspec = _pspec(ws, mass, seed, "CLs+b", target)
        cpu = time.process_time()
        doc, decisions, _ = rounds_to_target(ws, tmp_path / f"s{seed}", pspec)
        cpu = time.process_time() - cpu
        _check_rounds(doc, decisions, target)
        p = doc["precision"]
        assert p["targets"] == {"0": TARGET} and p["worst"] == p["relative_error"]["0"] <= TARGET
        for d in decisions[:-1]:  # the median alone sets the toys
            assert shortfall(d["relative_error"], target) == d["relative_error"]["0"] / TARGET
        lim = doc["limits"]["CLs+b"]
        values.append([lim["expected_mu"]["0"]])
        errors.append([lim["expected_mu_err"]["0"]])
        runs.append((p["toys_per_poi"], len(decisions), round(cpu), {q: round(r, 4) for q, r in p["relative_error"].items()}))
    stat = _chi2(values, errors)
    print(f"\nm{mass} CLs+b median eps={TARGET}: (toys per POI, decisions, CPU s, r_Q) per seed", runs,
          "chi2 (median)", stat.round(2))
    lo, hi = chi2.ppf([0.001, 0.999], df=3)
    assert np.all((lo < stat) & (stat < hi)), (stat, lo, hi)
