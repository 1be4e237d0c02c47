"""The shape-systematics on/off study (``config/studies/systematics_onoff.yaml``) through Snakemake's
job graph: the 'off' tree adds only workspaces, toys and merges, reading the baseline's nominal PDFs."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ENV = dict(os.environ, CONDOR_CONFIG="/dev/null")
CONFIGS = ["config/quick.yaml", "config/overlays/systematics.yaml"]


def _dry_run(repo, results, *configs: str) -> str:
    cmd = [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "2", "--configfile", *CONFIGS, *configs,
           "--config", f"results_dir={results}"]
    result = subprocess.run(cmd, check=False, cwd=repo, capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake dry run as {rule: count}."""
    table = output.split("Job stats:")[1].split("\n\n")[0].splitlines()
    return {p[0]: int(p[1]) for p in (line.split() for line in table)
            if len(p) == 2 and p[1].isdigit() and p[0] != "total"}


def test_off_variant_schedules_only_workspaces_toys_and_merges(repo, tmp_path):
    """On a fresh tree, the study adds to the plain run with systematics exactly: one workspace, one
    toy batch and one merge per mass in studies/systematics/off, and the study table; no detector,
    response, PDF or variation job. The off workspaces read the baseline tree's nominal PDFs and get
    neither varied templates nor a systematics entry in their spec."""
    plain = _dry_run(repo, tmp_path)
    study = _dry_run(repo, tmp_path, "config/studies/systematics_onoff.yaml")
    added = dict(job_counts(study))
    for rule, n in job_counts(plain).items():
        assert added.pop(rule) == n, rule
    assert added == {"workspace_study": 2, "toys_m10_systematics_off": 1, "toys_m40_systematics_off": 1,
                     "merge_study": 2, "study": 1}
    commands = [line.removeprefix("Shell command: ") for line in study.splitlines()
                if line.removeprefix("Shell command: ").startswith("lzflow workspace ")]
    off = [c for c in commands if "/studies/systematics/off/" in c]
    assert len(commands) == 4 and len(off) == 2
    for command in off:
        words = shlex.split(command.split(" > ")[0])
        spec = json.loads(words[words.index("--spec") + 1])
        assert "systematics" not in spec and "interpolation" not in spec
        assert words[words.index("--variations") + 1] == "--out"  # no varied templates
        pdfs = [w for w in words if w.endswith(".root")]
        assert len(pdfs) == 12 and all(re.fullmatch(rf"{tmp_path}/quick/pdfs/\w+\.root", w) for w in pdfs)
    for command in set(commands) - set(off):
        words = shlex.split(command.split(" > ")[0])
        assert json.loads(words[words.index("--spec") + 1])["interpolation"] == "log_pchip"


@pytest.mark.slow
def test_onoff_study_end_to_end(repo, tmp_path):
    """The whole quick analysis with the overlay and the on/off study (≈ 1 min on 2 cores): the 'off'
    tree's workspaces carry no systematics and its asymptotic medians are bit-identical to the
    baseline's impacts.json 'without shape systematics' (an independent path: the workspace job
    drops the systematics in memory); profiling never tightens the Asimov limit; at 10 GeV, where
    nr_light widens it by ~45 %, the toy median with systematics is above the one without; the
    table says by how much, and the off tree made no PDF or response."""
    import csv

    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", *CONFIGS,
           "config/studies/systematics_onoff.yaml", "--config", f"results_dir={results}"]
    run = subprocess.run(cmd, check=False, cwd=repo, capture_output=True, text=True, env=ENV)
    assert run.returncode == 0, f"snakemake failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    tree, off = results / "quick", results / "quick" / "studies" / "systematics" / "off"
    assert not (off / "pdfs").exists() and not (off / "response").exists()
    for mass in ("10", "40"):
        impacts = json.loads((tree / f"m{mass}" / "impacts.json").read_text())
        on_doc = json.loads((tree / f"m{mass}" / "limit.json").read_text())
        off_doc = json.loads((off / f"m{mass}" / "limit.json").read_text())
        assert not json.loads((off / f"m{mass}" / "workspace.json").read_text()).get("shape_systematics")
        on_asym, off_asym = (d["asymptotic"]["expected_sigma_cm2"]["0"] for d in (on_doc, off_doc))
        assert off_asym == impacts["median_sigma_cm2_without_shape_systematics"]
        assert on_asym == impacts["median_sigma_cm2_profiled"] and on_asym >= off_asym
    rows = {(r["variant"], r["mass_GeV"]): r for r in csv.DictReader((off.parent / "table.csv").open())}
    assert float(rows["baseline", "10.0"]["sigma_median_cm2"]) > float(rows["off", "10.0"]["sigma_median_cm2"])
    assert "Profiling the shape systematics widens the median expected limit" in (off.parent / "table.md").read_text()
    assert (off.parent / "overlay.png").stat().st_size > 10_000
