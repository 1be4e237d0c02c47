"""Detector systematics through the real workflow: config/quick.yaml + config/overlays/systematics.yaml at reduced
statistics (pdf.n_samples 1e5, CRN fraction 0.2): the dry run shows the variation jobs (and nothing
more without the overlay), the varied templates move the expected counts in the physical direction,
and the workspace carries them as ``shape_systematics``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

ENV = dict(os.environ, CONDOR_CONFIG="/dev/null")
SMALL = {"pdf": {"n_samples": 100000}, "systematics": {"n_samples_fraction": 0.2}}


@pytest.fixture(scope="module")
def small_overlay(repo, tmp_path_factory):
    path = tmp_path_factory.mktemp("syst") / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake dry run as {rule: count}."""
    table = output.split("Job stats:")[1].split("\n\n")[0].splitlines()
    return {p[0]: int(p[1]) for p in (line.split() for line in table)
            if len(p) == 2 and p[1].isdigit() and p[0] != "total"}


def _run(repo, *args, overlay=None, results, systematics=True):
    configs = ["config/quick.yaml", *(["config/overlays/systematics.yaml"] if systematics else []),
               *([str(overlay)] if overlay else [])]
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", *configs,
           "--config", f"results_dir={results}", *args]
    result = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_dry_run_shows_the_variation_jobs_only_with_the_overlay(repo, tmp_path):
    plain = job_counts(_run(repo, "-n", results=tmp_path, systematics=False).stdout)
    with_syst = job_counts(_run(repo, "-n", results=tmp_path).stdout)
    assert "response_variation" not in plain and "variation_pdf" not in plain
    # NR: CRN nominal + 5 systematics; beta: CRN nominal + g1, g2, drift_field (NR yields do not act on beta)
    assert with_syst["response_variation"] == 10
    assert with_syst["variation_pdf"] == 11 + 2  # every background and the two WIMP masses
    # the toys of a mass: one job without shape systematics, one per job index with them (lzflow.toysplit)
    toy_jobs = {k for k in plain if re.fullmatch(r"toys_m[0-9p]+", k)}
    assert toy_jobs == {"toys_m10", "toys_m40"}
    split = {f"{k}_job{j}": 1 for k in toy_jobs for j in (0, 1)}
    assert {k: with_syst.get(k) for k in split} == split
    rest = {k: v for k, v in with_syst.items() if k not in ("response_variation", "variation_pdf", *split)}
    assert rest == {k: v for k, v in plain.items() if k not in toy_jobs}


def test_single_start_overlay_reaches_every_toy_job_and_nothing_else(repo, tmp_path):
    """config/overlays/single_start.yaml (stats.shape_fit_search): the same job graph, every toy batch's
    spec says single_start; on the quick config without the systematics overlay it is refused in one line."""
    single = repo / "config" / "overlays" / "single_start.yaml"
    dry = _run(repo, "-n", "-p", overlay=single, results=tmp_path).stdout
    assert job_counts(dry) == job_counts(_run(repo, "-n", results=tmp_path).stdout)
    toy_commands = [line for line in dry.splitlines() if "lzflow.toybatch" in line]
    assert len(toy_commands) == 4 and all('"shape_fit_search":"single_start"' in c for c in toy_commands)
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "config/quick.yaml", str(single),
           "--config", f"results_dir={tmp_path}"]
    refused = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=ENV)
    assert refused.returncode != 0
    assert "stats.shape_fit_search: 'single_start' with no systematics: block" in refused.stdout + refused.stderr


@pytest.fixture(scope="module")
def varied_tree(repo, small_overlay, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    _run(repo, "--until", "variation_pdf", overlay=small_overlay, results=results)
    return results / "quick"


def _changes(tree, source):
    doc = json.loads((tree / "pdfs" / "variations" / f"{source}.json").read_text())
    n = doc["nominal_expected_events"]
    return {e["name"]: {k: v["expected_events"] / n - 1 for k, v in e["shifts"].items()} for e in doc["systematics"]}


def test_varied_templates_move_counts_in_the_physical_direction(varied_tree):
    m10 = _changes(varied_tree, "wimp_m10")
    # lower g1 (less S1 light) or a lower NR light yield: fewer 10 GeV WIMP events above the S1 threshold
    assert m10["g1"]["-1"] < 0 < m10["g1"]["1"] and m10["g1"]["-2"] < m10["g1"]["-1"]
    assert m10["nr_light"]["-1"] < -0.1 and m10["nr_light"]["1"] > 0.1
    # more NR charge at fixed total quanta means less light: fewer events at threshold
    assert m10["nr_charge"]["1"] < 0 < m10["nr_charge"]["-1"]
    # the 40 GeV WIMP reaches higher S1: every detector shift moves it less than the 10 GeV one
    m40 = _changes(varied_tree, "wimp_m40")
    for name in ("g1", "nr_light"):
        assert abs(m40[name]["1"]) < abs(m10[name]["1"])
    # flat ER: a higher g1 pushes events out of the top of the cS1 window (80 phd)
    pp = _changes(varied_tree, "pp")
    assert pp["g1"]["1"] < 0 < pp["g1"]["-1"] and set(pp) == {"g1", "g2", "drift_field"}


def test_variation_matrices_share_their_events(varied_tree):
    from lzflow.response.crn import load_variations

    base = load_variations(varied_tree / "response" / "variations" / "NR" / "nominal.npz")
    g1 = load_variations(varied_tree / "response" / "variations" / "NR" / "g1.npz")
    assert np.array_equal(base.n_sim, g1.n_sim) and g1.shifts == (-2, -1, 1, 2)
    assert base.metadata["n_samples_fraction"] == 0.2


def test_workspace_carries_the_variations(repo, small_overlay, varied_tree):
    _run(repo, "--until", "workspace", overlay=small_overlay, results=varied_tree.parent)
    ws = json.loads((varied_tree / "m10" / "workspace.json").read_text())
    names = [s["name"] for s in ws["shape_systematics"]]
    assert names == ["g1", "g2", "drift_field", "nr_light", "nr_charge"]
    g1 = ws["shape_systematics"][0]
    assert g1["parameter"] == "alpha_g1" and g1["physical"]["key"] == "detector.nest.g1"
    assert set(g1["templates"]) == {ws["signal"]["name"], *(b["name"] for b in ws["backgrounds"])}
    nr_light = ws["shape_systematics"][3]
    assert "pp" not in nr_light["templates"] and "wimp_m10" in nr_light["templates"]
    signal_down = np.sum(g1["templates"]["wimp_m10"]["-1"])
    assert signal_down < ws["signal"]["expected_events"]
    # the impacts rank the shape parameters with the rates; profiling never tightens the median
    impacts = json.loads((varied_tree / "m10" / "impacts.json").read_text())
    ranked = {p["parameter"]: p for p in impacts["parameters"]}
    assert {f"alpha_{n}" for n in names} <= set(ranked)
    assert all(p["impact"] > -1e-6 and 0 < p["asimov_constraint"] <= 1 + 1e-9 for p in ranked.values())
    # at 10 GeV the NR light yield costs more sensitivity than the detector's g1 (its prior is 10 %)
    assert ranked["alpha_nr_light"]["impact"] > ranked["alpha_g1"]["impact"]
    # the overlay's positive morphing: recorded, its floored sample-bins counted, pyhf told why not
    assert ws["shape_interpolation"] == "log_pchip"
    assert set(ws["shape_ratio_floored"]) == set(names)
    pyhf_doc = json.loads((varied_tree / "m10" / "workspace.pyhf.json").read_text())
    assert set(pyhf_doc) == {"not_exported"} and "log_pchip" in pyhf_doc["not_exported"]
