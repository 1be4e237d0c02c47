"""Science runs (``runs:``, lzflow.runsconfig): resolution of each run, the combined configuration,
the run trees and what they share, and the combine job (python -m lzflow.runsjob) on real workspaces.
The refusals are cases of tests/workflow/config_corpus.py."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from lzflow import layout as L
from lzflow.config import DAYS_PER_YEAR, ConfigError, load_config_stack, resolve_config
from lzflow.runsconfig import (
    combine_spec,
    combined_artefacts,
    resolve_runs,
    run_artefacts,
)
from lzflow.variants import expand_studies, run_variants

REPO = Path(__file__).resolve().parents[2]
WORKSPACE = REPO / "tests" / "data" / "workspace_m40.json.gz"


@pytest.fixture(scope="module")
def two_runs() -> dict:
    return load_config_stack([REPO / "config" / "quick_two_runs.yaml"])


@pytest.fixture(scope="module")
def resolved(two_runs) -> dict:
    return resolve_runs(two_runs, REPO)


def test_each_run_is_the_shared_keys_plus_its_own(two_runs, resolved):
    assert list(resolved["runs"]) == ["early", "late"]
    for name, cfg in resolved["runs"].items():
        single = {k: v for k, v in two_runs.items() if k not in ("runs", "correlated")}
        assert cfg == resolve_config({**single, **two_runs["runs"][name]}, REPO)
    early, late = resolved["runs"]["early"], resolved["runs"]["late"]
    # backgrounds quoted for 5.6 t x 1000 d, scaled to 400 d and 600 d: together the single 1000 d run's counts
    quick = resolve_config(load_config_stack([REPO / "config" / "quick.yaml"]), REPO)
    for name, entry in quick["backgrounds"].items():
        assert early["backgrounds"][name]["counts"] == pytest.approx(0.4 * entry["counts"], rel=1e-12)
        assert early["backgrounds"][name]["counts"] + late["backgrounds"][name]["counts"] == pytest.approx(
            entry["counts"], rel=1e-12)
    assert early["signal"] == late["signal"] == quick["signal"]
    assert early["stats"] == quick["stats"] and early["pdf"] == quick["pdf"]


def test_combined_configuration_has_the_whole_exposure(resolved):
    ex = resolved["exposure"]
    runs = resolved["runs"].values()
    assert ex["exposure_t_yr"] == pytest.approx(sum(c["exposure"]["exposure_t_yr"] for c in runs), rel=1e-15)
    assert ex["live_time_days"] == 1000.0
    assert ex["fiducial_mass_t"] * ex["live_time_days"] / DAYS_PER_YEAR == pytest.approx(ex["exposure_t_yr"], rel=1e-15)
    assert resolved["correlated"] == ["pp", "B8", "hep", "atm", "DSN", "vvBB"]
    assert resolved["detector"] == resolved["runs"]["early"]["detector"]


def test_union_of_backgrounds_and_run_error_names_the_run(two_runs):
    raw = copy.deepcopy(two_runs)
    del raw["runs"]["late"]["backgrounds"]["Kr85"]
    raw["runs"]["early"]["backgrounds"].pop("DSN")
    cfg = resolve_runs(raw, REPO)
    assert "Kr85" not in cfg["runs"]["late"]["backgrounds"] and "DSN" not in cfg["runs"]["early"]["backgrounds"]
    assert {"Kr85", "DSN"} <= set(cfg["backgrounds"])
    raw["correlated"] = ["Kr85"]  # a parameter of one run only: legal (shared by nobody else)
    resolve_runs(raw, REPO)
    raw["runs"]["late"]["exposure"]["live_time"] = "-5 d"
    with pytest.raises(ConfigError, match=r"^runs\.late\.exposure\.live_time: '-5 d'"):
        resolve_runs(raw, REPO)


def test_identical_artefacts_are_made_once(resolved):
    runs = run_variants(resolved)
    early, late = runs["early"], runs["late"]
    assert early.suffix == "/runs/early" and late.suffix == "/runs/late"
    # one detector, one pdf seed: late reads early's detector and responses, makes its own PDFs (other exposure)
    for rel in (L.DETECTOR, "response/NR.npz", "response/beta.npz"):
        assert late.path("R", rel) == f"R/runs/early/{rel}"
    for rel in ("pdfs/pp.root", "pdfs/wimp_m40.root", "m40/workspace.json"):
        assert late.path("R", rel) == f"R/runs/late/{rel}"
        assert early.path("R", rel) == f"R/runs/early/{rel}"


def test_a_changed_detector_makes_its_own_chain(two_runs):
    raw = copy.deepcopy(two_runs)
    raw["runs"]["late"]["detector_overrides"] = {"nest": {"g1": 0.1}}
    runs = run_variants(resolve_runs(raw, REPO))
    before = run_variants(resolve_runs(two_runs, REPO))
    for rel in (L.DETECTOR, "response/NR.npz", "pdfs/pp.root", "m10/workspace.json"):
        assert runs["late"].path("R", rel) == f"R/runs/late/{rel}"
        assert runs["late"].keys[rel] != before["late"].keys[rel]
        assert runs["early"].keys[rel] == before["early"].keys[rel]  # nothing of early's changes


def test_no_runs_no_run_trees():
    baseline, _ = expand_studies(load_config_stack([REPO / "config" / "quick.yaml"]), REPO)
    assert run_variants(baseline.config) == {} and "runs" not in baseline.config


def test_trees_and_combine_spec(resolved):
    rels = run_artefacts(resolved["runs"]["early"])
    assert L.DETECTOR in rels and "m40/workspace.json" in rels and "m40/impacts.json" in rels
    assert not any("toys" in r or r.endswith("limit.json") for r in rels)
    combined = combined_artefacts(resolved)
    assert "m40/limit.json" in combined and "m10/toys/bonly/job1.npz" in combined
    assert not any(r.startswith(("pdfs/", "response/")) or r == L.DETECTOR for r in combined)
    spec = combine_spec(resolved, "40")
    assert spec["runs"] == ["early", "late"] and spec["correlated"] == resolved["correlated"]
    ws_spec = L.workspace_spec(resolved, "40")
    assert all(spec[k] == ws_spec[k] for k in ("cl", "method", "test_statistic", "power_threshold",
                                                "discovery_sigma", "poi_grid"))


# ------------------------------------------------------------------------------ the combine job
def _doubled(ws: dict) -> dict:
    """The same run with twice the exposure: every template and expected count x 2."""
    out = copy.deepcopy(ws)
    for entry in (out["signal"], *out["backgrounds"]):
        entry["template"] = (2.0 * np.asarray(entry["template"])).tolist()
        entry["expected_events"] *= 2.0
    for b in out["backgrounds"]:
        b["sigma_events"] = b["rel_unc"] * b["expected_events"]
    return out


def test_combine_job_two_identical_runs_all_shared_equals_doubled_exposure(tmp_path):
    from lzflow.runsjob import main
    from lzflow.workspace import asymptotic_summary, workspace_model

    ws = json.loads(gzip.decompress(WORKSPACE.read_bytes()))
    names = [b["name"] for b in ws["backgrounds"]]
    proc = {"cl": 0.9, "method": "CLs+b", "test_statistic": "qtilde", "power_threshold": 0.1587,
            "discovery_sigma": 3.0, "poi_grid": {"n_points": 8, "min_factor": 0.02, "max_factor": 3.5}}
    spec = {"mass_label": "40", "runs": ["a", "b"], "correlated": names, **proc}
    out = tmp_path / "m40" / "workspace.json"
    out.parent.mkdir()
    assert main(["--spec", json.dumps(spec), "--workspace", str(WORKSPACE), str(WORKSPACE), "--out", str(out)]) == 0
    comb = json.loads(out.read_text())
    assert [r["name"] for r in comb["runs"]] == ["a", "b"] and comb["correlated"] == names
    assert len(comb["signal"]["template"]) == 2 * np.asarray(ws["signal"]["template"]).size
    doubled = asymptotic_summary(workspace_model(_doubled(ws)), proc, ws["sigma_ref_cm2"])
    for band, sigma in doubled["expected_sigma_cm2"].items():
        assert comb["asymptotic"]["expected_sigma_cm2"][band] == pytest.approx(sigma, rel=2e-3), band
    single = ws["asymptotic"]["expected_sigma_cm2"]["0"]
    assert comb["asymptotic"]["expected_sigma_cm2"]["0"] < 0.75 * single  # twice the exposure: a lower limit
    impacts = json.loads((out.parent / "impacts.json").read_text())
    assert impacts["mass_GeV"] == 40.0
    assert {row["parameter"] for row in impacts["parameters"]} <= set(names)  # all shared: no <run>:<name>


def test_combine_job_separate_parameters_and_refusals(tmp_path, capsys):
    from lzflow.runsjob import main

    ws = json.loads(gzip.decompress(WORKSPACE.read_bytes()))
    proc = {"cl": 0.9, "method": "CLs+b", "test_statistic": "qtilde", "power_threshold": 0.1587,
            "discovery_sigma": 3.0, "poi_grid": {"n_points": 8, "min_factor": 0.02, "max_factor": 3.5}}
    out = tmp_path / "workspace.json"
    spec = {"mass_label": "40", "runs": ["a", "b"], "correlated": ["pp"], **proc}
    assert main(["--spec", json.dumps(spec), "--workspace", str(WORKSPACE), str(WORKSPACE), "--out", str(out)]) == 0
    comb = json.loads(out.read_text())
    got = {b["name"] for b in comb["backgrounds"]}
    assert "pp" in got and "a:B8" in got and "b:B8" in got and "B8" not in got
    assert len(got) == 1 + 2 * (len(ws["backgrounds"]) - 1)
    assert main(["--spec", json.dumps({**spec, "runs": ["a"]}), "--workspace", str(WORKSPACE), str(WORKSPACE),
                 "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 files for 1 runs" in err
    assert not (tmp_path / "x.json").exists()


def test_quick_two_runs_yaml_parses_as_documented():
    text = (REPO / "config" / "quick_two_runs.yaml").read_text()
    raw = yaml.safe_load(text)
    assert raw["runs"]["early"]["backgrounds"] == raw["runs"]["late"]["backgrounds"]


def test_ws2022_ws2024_runs_split_the_pooled_run():
    """config/lz_ws2022_ws2024.yaml splits config/lz_ws2024.yaml's pooled run: the same sources, the
    exposures add up to its 280 days, a source of one run only has the pooled count (WS2024's H3 and
    atm; WS2022's Ar37 to 0.3 %: WS2022's own ROI fraction), the shared rates carry the pooled widths,
    and the WS2024 run is the pooled analysis in everything but its backgrounds and exposure. (Each
    run's ROI counts against its published table: tests/workflow/test_runs_workflow.py, slow.)"""
    runs = resolve_runs(load_config_stack([REPO / "config" / "lz_ws2022_ws2024.yaml"]), REPO)
    pooled = resolve_config(load_config_stack([REPO / "config" / "lz_ws2024.yaml"]), REPO)
    ws22, ws24 = runs["runs"]["ws2022"], runs["runs"]["ws2024"]
    assert ws22["detector"]["name"] == "LZ_WS2022" and ws24["detector"]["name"] == "LZ_WS2024"
    assert ws22["exposure"]["live_time_days"] + ws24["exposure"]["live_time_days"] == pooled["exposure"]["live_time_days"]
    assert runs["exposure"]["exposure_t_yr"] == pytest.approx(pooled["exposure"]["exposure_t_yr"], rel=1e-12)
    assert set(runs["backgrounds"]) == set(pooled["backgrounds"])
    only = {name: c for c in (ws22, ws24) for name in c["backgrounds"]
            if sum(name in other["backgrounds"] for other in (ws22, ws24)) == 1}
    assert set(only) == {"Ar37", "H3", "atm"}
    for name, cfg in only.items():
        assert cfg["backgrounds"][name]["counts"] == pytest.approx(pooled["backgrounds"][name]["counts"], rel=3e-3)
    for name in runs["correlated"]:
        assert ws22["backgrounds"][name]["rel_unc"] == ws24["backgrounds"][name]["rel_unc"] == pooled[
            "backgrounds"][name]["rel_unc"]
    assert {k: v for k, v in ws24.items() if k not in ("backgrounds", "exposure", "tag")} == {
        k: v for k, v in pooled.items() if k not in ("backgrounds", "exposure", "tag")}
