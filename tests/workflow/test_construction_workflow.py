"""stats.construction: two_sided and stats.discovery_from_toys through the real Snakemake workflow:
config/quick.yaml + config/overlays/two_sided.yaml + discovery toys (3000 B-only, 200 S+B per μ) — μ = 0
toy files, limit.json["two_sided"] and ["discovery"] consistent, the curve's headline and the
report's paragraph. (The one_sided files are unchanged: benchmarks/compare_results.py on two quick
runs before and after, in the commit message of this test.)"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.slow

ENV = dict(os.environ, CONDOR_CONFIG="/dev/null")
DISCOVERY = {"stats": {"discovery_from_toys": {"n_bonly": 3000, "n_sb": 200}}}


@pytest.fixture(scope="module")
def two_sided_run(repo, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    overlay = results / "discovery.yaml"
    overlay.write_text(yaml.safe_dump(DISCOVERY))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/quick.yaml",
           "config/overlays/two_sided.yaml", str(overlay), "--config", f"results_dir={results}"]
    result = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return results / "quick"


def _limit(run, mass: str) -> dict:
    return json.loads((run / f"m{mass}" / "limit.json").read_text())


def test_mu_zero_has_its_toys(two_sided_run):
    ws = json.loads((two_sided_run / "m40" / "workspace.json").read_text())
    assert ws["poi_grid"][0] == 0.0 and len(ws["poi_grid"]) == 9  # quick: 8 points + mu = 0
    assert sorted(p.name for p in (two_sided_run / "m40" / "toys").iterdir()) == \
        ["bonly", *sorted(f"poi{k}" for k in range(9))]


@pytest.mark.parametrize("mass", ["10", "40"])
def test_two_sided_limits_are_consistent(two_sided_run, mass):
    doc = _limit(two_sided_run, mass)
    ts = doc["two_sided"]
    assert doc["construction"] == "two_sided" and ts["mu_grid"][0] == 0.0
    tc, err = np.array(ts["belt"]["t_crit"], float), np.array(ts["belt"]["t_crit_err"], float)
    # belt: below the chi2_1 90 % point 2.71 (Wilks) within 3 MC errors, lowest at the boundary mu = 0
    # (there half the datasets have t = 0: t_c(0) ~ the chi2_1 80 % point 1.64, or less with few events)
    assert np.all(tc <= 2.706 + 3 * err) and tc[0] <= 1.642 + 3 * err[0]
    assert np.all(tc[1:] >= tc[0] - 3 * np.hypot(err[1:], err[0]))
    exp = ts["expected_mu_up"]
    finite = [exp[n] for n in ("-2", "-1", "0", "1", "2") if exp[n] is not None]
    assert finite == sorted(finite) and exp["0"] is not None
    # the two-sided upper end is above the one-sided CLs+b limit on the same toys
    assert exp["0"] >= doc["limits"]["CLs+b"]["expected_mu"]["0"]
    assert ts["expected_sigma_cm2"]["0"] == pytest.approx(exp["0"] * doc["sigma_ref_cm2"], rel=1e-12)
    # PCL at least the -1 sigma (power-threshold) floor; blind quick run: the Asimov dataset's interval
    asimov = ts["asimov"]
    assert asimov["limit_mu"] >= ts["pcl_floor_mu_up"] * (1 - 1e-12)
    assert asimov["mu_lo"] == 0.0
    frac, (lo, hi) = ts["mu_lo_positive_fraction"], ts["mu_lo_positive_interval"]
    assert lo <= frac <= hi and frac < 0.25


def test_discovery_toys_match_asymptotics_at_40_gev(two_sided_run):
    disc = _limit(two_sided_run, "40")["discovery"]
    assert disc["n_bonly"] == 3000 and disc["n_sb"] == 200
    for z in ("3", "5"):
        p = disc["potentials"][z]
        assert abs(p["sigma_cm2_toys"] - p["sigma_cm2_asymptotic"]) < 3 * p["sigma_cm2_toys_err"], z
        assert p["tail_rel_err"] <= 0.10
    # 10 GeV is there too (few events: toys and asymptotics may differ; both finite)
    low = _limit(two_sided_run, "10")["discovery"]["potentials"]["3"]
    assert low["sigma_cm2_toys"] > 0 and low["sigma_cm2_asymptotic"] > 0


def test_curve_and_report_headline_is_two_sided(two_sided_run):
    rows = list(csv.DictReader((two_sided_run / "limit_curve.csv").read_text().splitlines()))
    assert [r["construction"] for r in rows] == ["two_sided", "two_sided"]
    for row in rows:
        doc = _limit(two_sided_run, row["mass_GeV"].removesuffix(".0"))
        assert float(row["sigma_median_cm2"]) == pytest.approx(doc["two_sided"]["expected_sigma_cm2"]["0"], rel=1e-12)
        assert float(row["sigma_one_sided_median_cm2"]) == pytest.approx(doc["median_expected_sigma_cm2"], rel=1e-12)
        assert float(row["sigma_discovery_3sigma_toys_cm2"]) == pytest.approx(
            doc["discovery"]["potentials"]["3"]["sigma_cm2_toys"], rel=1e-12)
    page = (two_sided_run / "report.html").read_text()
    assert "Two-sided construction" in page and "Discovery potential from toys" in page
