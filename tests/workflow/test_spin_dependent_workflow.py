"""Switching an analysis from SI to a spin-dependent coupling reruns only the signal's folds and what
follows them: the NEST NR response matrices and the background PDFs are reused (Snakemake dry run
on a small real SI tree: one mass, small PDFs, few toys)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ENV = dict(os.environ, CONDOR_CONFIG="/dev/null")

#: the quick analysis cut down to one mass, small PDFs and a handful of toys (minutes on 2 cores)
SMALL = {
    "tag": "sd_switch",
    "signal": {"masses_GeV": [40]},
    "pdf": {"n_samples": 20000},
    "stats": {"poi_grid": {"n_points": 3, "min_factor": 0.3, "max_factor": 3.0}, "toys_per_poi": 20,
              "toys_bonly": 40, "jobs_per_poi": 1},
}


def _snakemake(repo: Path, configs: list[Path], *args: str) -> str:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/quick.yaml",
           *map(str, configs), *args]
    result = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=ENV)
    if result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def _jobs(output: str) -> dict[str, int]:
    if "Job stats:" not in output:
        return {}
    counts = {}
    for line in output.split("Job stats:")[1].split("\n\n")[0].splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="module")
def si_tree(repo, tmp_path_factory):
    """A finished SI results tree of the small analysis and its config overlay."""
    work = tmp_path_factory.mktemp("sd_switch")
    small = work / "small.yaml"
    small.write_text(yaml.safe_dump(dict(SMALL, results_dir=str(work / "results"))))
    _snakemake(repo, [small])
    assert _jobs(_snakemake(repo, [small], "-n")) == {}  # up to date
    return work, small


@pytest.mark.parametrize("overlay, interaction", [("config/overlays/sd_neutron.yaml", "SD_n"),
                                                  ("config/overlays/sd_proton.yaml", "SD_p")])
def test_switching_to_sd_reruns_only_the_folds(repo, si_tree, overlay, interaction):
    work, small = si_tree
    # the SD overlay's coupling and sigma_ref, but the SI tree's tag: the same tree switches coupling
    raw = yaml.safe_load((repo / overlay).read_text())
    switch = work / f"{interaction}.yaml"
    switch.write_text(yaml.safe_dump({"signal": raw["signal"], "reference": raw["reference"]}))
    jobs = _jobs(_snakemake(repo, [small, switch], "-n"))
    assert "response" not in jobs and "background_pdf" not in jobs and "detector" not in jobs
    # the toys: one job for the mass (local toy split, lzflow.toysplit)
    assert jobs == {"signal_pdf": 1, "workspace": 1, "toys_m40": 1, "merge": 1, "curve": 1,
                    "mass_plots": 1, "errors": 1, "report": 1, "all": 1}


def test_sd_overlay_with_its_own_tag_is_a_new_tree(repo, si_tree):
    """The shipped overlays keep the SI tree as it is: their own tag, so a fresh tree (whose
    response matrices are made again: lzflow does not share artefacts across tags)."""
    work, small = si_tree
    from lzflow.config import load_config

    n_backgrounds = len(load_config([repo / "config/quick.yaml", small])["backgrounds"])
    jobs = _jobs(_snakemake(repo, [small, repo / "config/overlays/sd_neutron.yaml"], "-n"))
    assert jobs["signal_pdf"] == 1 and jobs["response"] >= 1 and jobs["background_pdf"] == n_backgrounds


def test_sd_run_says_which_cross_section(repo, si_tree):
    """Run the switch for real (last: it changes the tree): the limit, the curve CSV and the signal
    PDF's sidecar name the coupling; switching back to SI again reruns only the folds."""
    import csv
    import json

    work, small = si_tree
    switch = work / "SD_n.yaml"
    _snakemake(repo, [small, switch])
    tree = work / "results" / SMALL["tag"]
    limit = json.loads((tree / "m40" / "limit.json").read_text())
    assert limit["interaction"] == "SD_n" and limit["sigma_ref_cm2"] == pytest.approx(1e-40)
    rows = list(csv.DictReader((tree / "limit_curve.csv").read_text().splitlines()))
    assert [r["interaction"] for r in rows] == ["SD_n"]
    assert 1e-44 < float(rows[0]["sigma_asymptotic_median_cm2"]) < 1e-41  # SD-n scale, not SI's 1e-48
    meta = json.loads((tree / "pdfs" / "wimp_m40.json").read_text())
    assert meta["interaction"] == "NR" and meta["source_metadata"]["interaction"] == "SD_n"
    back = _jobs(_snakemake(repo, [small], "-n"))
    assert "response" not in back and "background_pdf" not in back and back["signal_pdf"] == 1
