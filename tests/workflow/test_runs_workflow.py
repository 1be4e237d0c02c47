"""Science runs (``runs:``) through the real Snakemake workflow: per-run trees, one combine job per
mass, toys/merge/curve/report unchanged on the combination; rerunning one run's inputs reruns only
what depends on it; and the issue's check: two identical runs combined give the median limit of one
run with twice the live time, within the toy error."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ENV = dict(os.environ, CONDOR_CONFIG="/dev/null")
BACKGROUNDS = ["B8", "DSN", "DetER", "DetNR", "Kr85", "Rn220", "Rn222", "atm", "hep", "pp", "vvBB"]


def snakemake(repo: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    result = subprocess.run(cmd, check=False, cwd=repo, capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake dry run as {rule: count} (empty: nothing to do)."""
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:")[1].split("\n\n")[0].splitlines()
    return {p[0]: int(p[1]) for p in (line.split() for line in table)
            if len(p) == 2 and p[1].isdigit() and p[0] != "total"}


def test_quick_two_runs_job_graph(repo, tmp_path):
    """Each run's detector chain in runs/<run>/ (the late run reads the early run's detector and
    responses: same detector, same seed), its own PDFs and workspaces, one combine per mass reading
    the runs' workspaces in run order, and the usual toys, merge, curve, errors and report."""
    out = snakemake(repo, "-n", "-p", "--configfile", "config/quick_two_runs.yaml", "--config",
                    f"results_dir={tmp_path}")
    assert job_counts(out) == {"detector": 1, "detector_run": 1, "response_run": 2, "background_pdf_run": 22,
                               "signal_pdf_run": 4, "workspace_run": 4, "combine": 2, "toys_m10": 1, "toys_m40": 1,
                               "merge": 2, "mass_plots": 2, "curve": 1, "errors": 1, "report": 1, "all": 1}
    tree = f"{tmp_path}/quick_two_runs"
    combines = [line.removeprefix("Shell command: ") for line in out.splitlines()
                if line.startswith("Shell command: python -m lzflow.runsjob")]
    assert len(combines) == 2
    for command in combines:
        words = shlex.split(command.split(" > ")[0])
        spec = json.loads(words[words.index("--spec") + 1])
        mass = spec["mass_label"]
        assert spec["runs"] == ["early", "late"] and spec["correlated"] == ["pp", "B8", "hep", "atm", "DSN", "vvBB"]
        i = words.index("--workspace")
        assert words[i + 1:i + 3] == [f"{tree}/runs/early/m{mass}/workspace.json",
                                      f"{tree}/runs/late/m{mass}/workspace.json"]
        assert words[words.index("--out") + 1] == f"{tree}/m{mass}/workspace.json"
    # late's PDFs fold early's responses; nothing is written to the analysis tree's response/ or pdfs/
    assert f"--response {tree}/runs/early/response/NR.npz" in out and f"{tree}/runs/late/response" not in out
    assert f"{tree}/pdfs/" not in out and f"{tree}/response/" not in out


def _write(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _base(results: Path, tag: str) -> dict:
    """Small quick-like settings: one mass, coarse PDFs, a few toys."""
    return {
        "tag": tag, "results_dir": str(results),
        "signal": {"masses_GeV": [40], "sigma_ref": "1e-45 cm**2", "interaction": "SI",
                   "halo": {"preset": "standard_2018"}},
        "pdf": {"n_samples": 100000, "seed": 7, "workers": 2, "cs1_phd": {"min": 3.0, "max": 80.0, "bins": 20},
                "log10_cs2_phd": {"min": 2.5, "max": 5.0, "bins": 20}, "s2_raw_min_phd": 600.0},
        "stats": {"seed": 11, "poi_grid": {"n_points": 10, "min_factor": 0.2, "max_factor": 2.5},
                  "toys_per_poi": 1500, "toys_bonly": 3000, "jobs_per_poi": 1},
    }


def _run(repo: Path, live_time: str, quoted: str) -> dict:
    """A run of config/config.yaml's detector and backgrounds (counts quoted for ``quoted``)."""
    default = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    return {"detector": default["detector"],
            "exposure": {"fiducial_mass": "5.6 t", "live_time": live_time, "backgrounds_quoted_for": quoted},
            "backgrounds": default["backgrounds"]}


@pytest.fixture(scope="module")
def two_vs_one(repo, tmp_path_factory):
    """Two identical 500 d runs, every parameter shared, and one 1000 d run (counts quoted for
    5.6 t x 1000 d in both, so each 500 d run has half of them): both analyses run to the end."""
    tmp = tmp_path_factory.mktemp("runs")
    results = tmp / "results"
    two = _write(tmp / "two.yaml", {**_base(results, "two"), "correlated": BACKGROUNDS,
                                    "runs": {"a": _run(repo, "500 d", "5600 t*d"), "b": _run(repo, "500 d", "5600 t*d")}})
    one = _write(tmp / "one.yaml", {**_base(results, "one"), **_run(repo, "1000 d", "5600 t*d")})
    for config in (two, one):
        snakemake(repo, "--configfile", str(config))
    return tmp, two, results


@pytest.mark.slow
def test_two_identical_runs_equal_one_run_with_twice_the_live_time(two_vs_one):
    _, _, results = two_vs_one
    two = json.loads((results / "two" / "m40" / "limit.json").read_text())
    one = json.loads((results / "one" / "m40" / "limit.json").read_text())
    ws_two = json.loads((results / "two" / "m40" / "workspace.json").read_text())
    assert [r["name"] for r in ws_two["runs"]] == ["a", "b"] and sorted(ws_two["correlated"]) == BACKGROUNDS
    # the model is the doubled run's exactly (stats.combine docstring): equal Asimov limits
    for band, sigma in one["asymptotic"]["expected_sigma_cm2"].items():
        assert two["asymptotic"]["expected_sigma_cm2"][band] == pytest.approx(sigma, rel=1e-3, abs=1e-60), band
    # toys: the same distribution, other random counts (twice the bins): medians within the toy error
    t, o = two["limits"]["CLs+b"], one["limits"]["CLs+b"]
    err = (t["expected_mu_err"]["0"] ** 2 + o["expected_mu_err"]["0"] ** 2) ** 0.5
    assert abs(t["expected_mu"]["0"] - o["expected_mu"]["0"]) < 3.0 * err, (t["expected_mu"]["0"], o["expected_mu"]["0"], err)
    assert err < 0.1 * t["expected_mu"]["0"]  # the check has teeth: the toy error is < 10 % of the median
    impacts = json.loads((results / "two" / "m40" / "impacts.json").read_text())
    assert {row["parameter"] for row in impacts["parameters"]} <= set(BACKGROUNDS)
    assert (results / "two" / "report.html").is_file() and (results / "two" / "limit_curve.csv").is_file()


@pytest.mark.slow
def test_changing_one_runs_detector_reruns_only_that_run(repo, two_vs_one):
    tmp, two, _ = two_vs_one
    assert job_counts(snakemake(repo, "-n", "--configfile", str(two))) == {}
    raw = yaml.safe_load(two.read_text())
    raw["runs"]["b"]["detector_overrides"] = {"nest": {"g1": 0.1}}
    changed = _write(tmp / "two_changed.yaml", raw)
    out = snakemake(repo, "-n", "--configfile", str(changed))
    assert job_counts(out) == {"detector_run": 1, "response_run": 2, "background_pdf_run": 11, "signal_pdf_run": 1,
                               "workspace_run": 1, "combine": 1, "toys_m40": 1, "merge": 1, "mass_plots": 1, "curve": 1, "errors": 1,
                               "report": 1, "all": 1}
    assert "wildcards: run=b" in out and "wildcards: run=a" not in out  # nothing of run a is remade


#: published pre-fit ROI counts per run (config/lz_ws2022_ws2024.yaml's sources: PRL22 and PRL24 Table I [S])
PUBLISHED_ROI = {
    "ws2022": {"Rn222": 165.1, "Rn220": 13.9, "DetER": 36.0, "pp": 27.1, "vvBB": 15.1, "Xe124LL": 3.170,
               "Xe124LM": 1.830, "Xe127": 9.2, "Ar37": 52.5, "B8": 0.14, "accidentals": 1.2},
    "ws2024": {"Rn222": 743.0, "Rn220": 62.7, "DetER": 162.0, "pp": 102.0, "H3": 58.3, "vvBB": 55.6, "Xe124LL": 12.3,
               "Xe124LM": 7.1, "Xe127": 3.2, "B8": 0.06, "atm": 0.12, "accidentals": 2.8},
}


@pytest.mark.slow
def test_ws2022_ws2024_two_runs_end_to_end(repo, tmp_path):
    """config/lz_ws2022_ws2024_quick.yaml runs to the end (3 min on 2 cores): each run's PDFs hold its
    published ROI counts (WS2022's calibrated with these very PDFs: 0.2 %; WS2024's for
    config/lz_ws2024.yaml, measured within 0.1 %: 1 %, 8B 5 %), the combined
    workspace has both runs' bins, the shared pp/vvBB/B8 and everything else per run, and the 40 GeV
    median limit is LZ-like (LZ's median 5.06e-48 cm2: two-sided 0.89 of it, one-sided 0.66)."""
    snakemake(repo, "--configfile", "config/lz_ws2022_ws2024_quick.yaml", "--config", f"results_dir={tmp_path}")
    tree = tmp_path / "lz_ws2022_ws2024_quick"
    for run, table in PUBLISHED_ROI.items():
        for source, roi in table.items():
            got = json.loads((tree / "runs" / run / "pdfs" / f"{source}.json").read_text())["expected_events"]
            tol = 2e-3 if run == "ws2022" else (0.05 if source == "B8" else 0.01)
            assert got == pytest.approx(roi, rel=tol), (run, source, got, roi)
    ws = json.loads((tree / "m40" / "workspace.json").read_text())
    assert [(r["name"], r["n_bins"]) for r in ws["runs"]] == [("ws2022", 1600), ("ws2024", 1600)]
    names = {b["name"] for b in ws["backgrounds"]}
    assert {"pp", "vvBB", "B8", "ws2022:Ar37", "ws2024:H3", "ws2022:Rn222", "ws2024:Rn222"} <= names
    assert len(names) == 3 + 8 + 9  # shared; WS2022's own 8; WS2024's own 9
    limit = json.loads((tree / "m40" / "limit.json").read_text())
    median = limit["limits"]["CLs+b"]["expected_sigma_cm2"]["0"]
    assert 0.4 * 5.06e-48 < median < 1.0 * 5.06e-48, median
    # the headline is LZ's two-sided construction (the config's stats.construction): median within the
    # issue-11 +-30 % of LZ's, and its -1 sigma edge at LZ's 0.44 of the median within +-30 %
    two = limit["two_sided"]["expected_sigma_cm2"]
    assert 0.7 * 5.06e-48 < two["0"] < 1.3 * 5.06e-48, two
    assert 0.7 * 0.44 < two["-1"] / two["0"] < 1.3 * 0.44, two
    assert (tree / "report.html").is_file() and (tree / "reference_comparison.csv").is_file()
