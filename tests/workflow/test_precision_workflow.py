"""Toys to a target precision through Snakemake (issue 16 item 4): the checkpoint ``precision``
measures each mass's first batch and adds toy jobs only where the target is not met; the final
limit equals a fixed-count run's with the final toy count.

On the quick config (300 S+B toys per POI, 600 B-only) the first batch's relative bootstrap errors
of the CLs+b expected limits are (−1σ, median, +1σ) ≈ (0.57, 0.094, 0.054) at 10 GeV and
(1.10, 0.091, 0.062) at 40 GeV (the −1σ quantile of CLs+b sits near μ = 0, where its relative
error is large). With ``target_precision: 0.8`` 10 GeV is met in round 1 (no extra job, no round 2)
and 40 GeV needs ⌈1.1 (1.10/0.8)²⌉ = 3 × its toys (``max_toys_per_poi: 1500`` allows 5 ×): one
extension; round 2 of 40 GeV measures all 900 / 1800 toys, finds the target met and adds nothing (the
chain of checkpoints ends). ~3 minutes on 2 cores."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lzflow import layout as L

ENV = dict(os.environ, CONDOR_CONFIG="/dev/null")


def _snakemake(repo: Path, targets: list[str], configs: list[Path], results: Path, *args: str,
               split: str = "mass") -> str:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *targets, *args, "--configfile",
           str(repo / "config" / "quick.yaml"), *map(str, configs), "--config", f"results_dir={results}"]
    result = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=dict(ENV, LZFLOW_TOY_JOBS=split))
    assert result.returncode == 0, f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1].split("\n\n")[0].splitlines()
    return {p[0]: int(p[1]) for p in (line.split() for line in table)
            if len(p) == 2 and p[1].isdigit() and p[0] != "total"}


def _limits(tree: Path) -> list[str]:
    return [str(tree / L.fill(L.LIMIT, mass=m)) for m in ("10", "40")]


@pytest.mark.slow
def test_target_precision_adds_toys_only_where_needed_and_matches_the_fixed_count(repo, tmp_path):
    overlay = tmp_path / "precision.yaml"
    overlay.write_text("stats:\n  target_precision: 0.8\n  max_toys_per_poi: 1500\n")
    results = tmp_path / "prec"
    tree = results / "quick"
    log = _snakemake(repo, _limits(tree), [overlay], results)
    decisions = {m: json.loads((tree / L.fill(L.PRECISION_DECISION, mass=m, round=1)).read_text()) for m in ("10", "40")}
    # 10 GeV: met by the first batch -> no extra job, no extra file, no second round
    d10 = decisions["10"]
    assert max(v for v in d10["relative_error"].values() if v is not None) <= 0.8 and d10["last"]
    assert d10["multiplier"] == 1 and d10["extra"] == [] and not (tree / "m10" / "toys" / "extra").exists()
    assert not (tree / L.fill(L.PRECISION_DECISION, mass="10", round=2)).exists()
    # 40 GeV: x3, the extension = jobs 2..5 of 900 (1800) toys in 6 jobs per POI (B-only)
    d40 = decisions["40"]
    assert max(d40["relative_error"].values()) > 0.8 and d40["multiplier"] == 3 and not d40["last"]
    assert d40["final"] == {"toys_per_poi": 900, "toys_bonly": 1800, "jobs_per_poi": 6}
    assert len(d40["extra"]) == (8 + 1) * 4
    assert sorted(p.relative_to(tree).as_posix() for p in (tree / "m40" / "toys" / "extra").rglob("*.npz")) == \
        sorted(e["file"] for e in d40["extra"])
    # round 2 of 40 GeV: measured on all 900 / 1800 toys, met, nothing added, the last round
    d40b = json.loads((tree / L.fill(L.PRECISION_DECISION, mass="40", round=2)).read_text())
    assert d40b["measured_with"] == {"toys_per_poi": 900, "toys_bonly": 1800} and d40b["multiplier_before"] == 3
    assert max(d40b["relative_error"].values()) <= 0.8 and d40b["multiplier"] == 3 and d40b["extra"] == []
    assert d40b["last"]
    assert log.count("(Rule: toys_extra_batch)") == 1 and log.count("(Rule: precision)") == 3
    prec = {m: json.loads(p.read_text()) for m, p in zip(("10", "40"), map(Path, _limits(tree)))}
    for m, toys in (("10", (300, 600)), ("40", (900, 1800))):
        p = prec[m]["precision"]
        assert (p["toys_per_poi"], p["toys_bonly"]) == toys and p["target"] == 0.8
        assert p["extended"] == (m == "40")
        assert set(p["relative_error"]) == {"-1", "0", "1"} and p["reached"] == (p["worst"] <= 0.8)
    # the rounds recorded: toys measured, errors, reached, toys asked for
    r10, r40 = prec["10"]["precision"]["rounds"], prec["40"]["precision"]["rounds"]
    assert [(r["round"], r["toys_per_poi"], r["reached"], r["next_toys_per_poi"]) for r in r10] == [(1, 300, True, 300)]
    assert [(r["round"], r["toys_per_poi"], r["reached"], r["next_toys_per_poi"]) for r in r40] == \
        [(1, 300, False, 900), (2, 900, True, 900)]
    assert r40[1]["relative_error"] == prec["40"]["precision"]["relative_error"]  # round 2 measured the final toys
    assert prec["40"]["toys"]["sb_per_poi"] == [900] * 8 and prec["40"]["toys"]["bonly"] == 1800
    # the extension brought 40 GeV's median error down by ~sqrt(3)
    r0, r1 = d40["relative_error"]["0"], prec["40"]["precision"]["relative_error"]["0"]
    assert 1.3 < r0 / r1 < 2.3

    # (b) the file split schedules extra jobs for 40 GeV only, once the checkpoint has decided (the first
    # batch kept: a switched split would otherwise remake it, lzflow.toysplit)
    for path in [*tree.glob("m*/limit.json"), tree / "m40" / "toys" / "extra"]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    counts = _job_counts(_snakemake(repo, _limits(tree), [overlay], results, "-n", "--rerun-triggers", "mtime",
                                    "input", split="file"))
    # (and 40 GeV's round 2 again, which measured those toys; 10 GeV's single round stays)
    assert counts == {"toys_extra": 8 * 4, "toys_extra_bonly": 4, "precision": 1, "merge": 2}

    # (a) the fixed count 900 / 1800 in 6 jobs at 40 GeV (300 / 600 in 2 at 10 GeV): the same limit.json
    fixed = tmp_path / "fixed"
    shutil.copytree(tree, fixed / "quick", ignore=shutil.ignore_patterns("toys", "limit.json", "fit_errors.json"))
    overlay_fixed = tmp_path / "fixed.yaml"
    overlay_fixed.write_text("stats:\n  per_mass:\n    '40': {toys_per_poi: 900, toys_bonly: 1800, jobs_per_poi: 6}\n")
    _snakemake(repo, _limits(fixed / "quick"), [overlay_fixed], fixed)
    log = _snakemake(repo, _limits(tree), [overlay], results)  # the precision run's limits again (file split removed them)
    for m in ("10", "40"):
        a = json.loads((tree / L.fill(L.LIMIT, mass=m)).read_text())
        b = json.loads((fixed / "quick" / L.fill(L.LIMIT, mass=m)).read_text())
        a.pop("precision")
        assert a == b, m  # identical numbers and provenance (run numbers, seeds); only `precision` added


@pytest.mark.slow
def test_target_precision_mapping_covers_only_the_named_quantities(repo, tmp_path):
    """The mapping form through Snakemake: ``{median: 0.2}`` is met by both masses' first batch
    (median errors ≈ 0.09), so no toy is added, although the −1σ errors (≈ 0.6 and 1.1) are far above
    0.2 — the plain number 0.2 would extend both. limit.json records the mapping as the target."""
    overlay = tmp_path / "precision_map.yaml"
    overlay.write_text("stats:\n  target_precision: {median: 0.2}\n  max_toys_per_poi: 1500\n")
    results = tmp_path / "prec_map"
    tree = results / "quick"
    log = _snakemake(repo, _limits(tree), [overlay], results)
    assert log.count("(Rule: precision)") == 2 and "(Rule: toys_extra_batch)" not in log
    for m in ("10", "40"):
        d = json.loads((tree / L.fill(L.PRECISION_DECISION, mass=m, round=1)).read_text())
        assert d["relative_error"]["0"] <= 0.2 < d["relative_error"]["-1"]  # only the median is covered
        assert d["last"] and d["multiplier"] == 1 and d["extra"] == []
        p = json.loads((tree / L.fill(L.LIMIT, mass=m)).read_text())["precision"]
        assert p["target"] == {"median": 0.2} and p["reached"] and not p["extended"]
        assert (p["toys_per_poi"], p["toys_bonly"]) == (300, 600)
