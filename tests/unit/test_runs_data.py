"""Observed data per run in a ``runs:`` analysis (lzflow.runsconfig, lzflow.observeddata): the
resolved data keys, each run's list binned on its own window and concatenated in the combined
workspace's run order, the combined workspace refused by the single-run event tools, and the
blind-safe checks of the data files (lzflow.dataconfig.check_data_files)."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lzflow.config import ConfigError, load_config_stack
from lzflow.dataconfig import check_data_files, data_files, data_label
from lzflow.eventlist import DataError, load_events, read_events, write_events
from lzflow.observeddata import ObservedDataError, bin_observed_runs, observed_counts, observed_summary
from lzflow.runsconfig import resolve_runs, runs_data_spec

REPO = Path(__file__).resolve().parents[2]
WORKSPACE = REPO / "tests" / "data" / "workspace_m40.json.gz"
EVENTS = REPO / "tests" / "data" / "quick_observed_events.csv"


def _runs_raw(**data: dict) -> dict:
    raw = load_config_stack([REPO / "config" / "quick_two_runs.yaml"])
    for run, d in data.items():
        raw["runs"][run]["data"] = d
    return raw


@pytest.fixture(scope="module")
def combined(tmp_path_factory):
    """A combination of two copies of the 40 GeV workspace (runs a, b), as the combine job writes it."""
    from lzflow.runsjob import main

    out = tmp_path_factory.mktemp("comb") / "workspace.json"
    spec = {"mass_label": "40", "runs": ["a", "b"], "correlated": [], "cl": 0.9, "method": "CLs+b",
            "test_statistic": "qtilde", "power_threshold": 0.1587, "discovery_sigma": 3.0,
            "poi_grid": {"n_points": 8, "min_factor": 0.02, "max_factor": 3.5}}
    assert main(["--spec", json.dumps(spec), "--workspace", str(WORKSPACE), str(WORKSPACE), "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_runs_data_resolves_per_run_with_one_blind_and_one_toy_count():
    raw = _runs_raw(early={"path": str(EVENTS)}, late={"path": str(EVENTS), "units": {"cS1": "phd"}})
    raw["blind"] = False
    cfg = resolve_runs(raw, REPO)
    assert cfg["blind"] is False and cfg["data"]["discovery_toys"] == 10_000
    assert list(cfg["data"]["runs"]) == ["early", "late"]
    assert cfg["data"]["runs"]["late"]["units"] == {"cS1": "phd"} and cfg["data"]["runs"]["early"]["units"] == {}
    assert data_files(cfg) == [str(EVENTS)] * 2 and data_label(cfg) == f"early: {EVENTS}, late: {EVENTS}"
    spec = runs_data_spec(cfg)
    assert [r["run"] for r in spec["runs"]] == ["early", "late"]
    assert spec["runs"][0]["window"]["cS1_edges"][0] == 3.0 and len(spec["runs"][0]["window"]["cS1_edges"]) == 21
    assert resolve_runs(_runs_raw(early={"path": str(EVENTS)}, late={"path": str(EVENTS)}), REPO)["blind"] is True
    assert "data" not in resolve_runs(_runs_raw(), REPO)  # no event list: no data keys


def test_runs_data_refusals_are_one_line():
    with pytest.raises(ConfigError, match=r"^runs\.late\.data: missing while run\(s\) early have one"):
        resolve_runs(_runs_raw(early={"path": str(EVENTS)}), REPO)
    top = _runs_raw()
    top["data"] = {"path": str(EVENTS)}
    with pytest.raises(ConfigError, match=r"^data: given at the top level with runs:"):
        resolve_runs(top, REPO)
    with pytest.raises(ConfigError, match=r"runs\.late\.data\.discovery_toys 500\b.*one number"):
        resolve_runs(_runs_raw(early={"path": str(EVENTS)}, late={"path": str(EVENTS), "discovery_toys": 500}), REPO)


def test_each_run_binned_on_its_window_and_concatenated_in_run_order(tmp_path, combined):
    ws = json.loads(gzip.decompress(WORKSPACE.read_bytes()))
    a, b = tmp_path / "a.csv", tmp_path / "b.parquet"
    ev = read_events(EVENTS)
    write_events(a, np.r_[ev.cs1[:500], 1.0], np.r_[ev.cs2[:500], 1e4])  # one more, below the window in cS1
    write_events(b, ev.cs1[500:], ev.cs2[500:])
    n_inside = load_events(EVENTS, ws).n_inside
    window = {"cS1_edges": ws["axes"][0]["edges"], "log10cS2_edges": ws["axes"][1]["edges"]}
    common = {"columns": {"cS1": "cS1", "cS2": "cS2"}, "units": {}, "tree": "events", "window": window}
    spec = {"runs": [{"run": "a", "format": "csv", **common}, {"run": "b", "format": "parquet", **common}]}
    doc = json.loads(json.dumps(bin_observed_runs(spec, [a, b])))
    counts = observed_counts(doc, combined)
    n = np.asarray(ws["signal"]["template"]).size
    assert counts.shape == (2 * n,) and counts.sum() == n_inside
    assert np.array_equal(counts[:n], load_events(a, ws).flat_counts())  # run a's bins first, C order
    assert np.array_equal(counts[n:], load_events(b, ws).flat_counts())
    assert doc["n_total"] == len(ev) + 1 == n_inside + 1 and doc["n_outside"] == 1 and doc["outside_by_reason"]["cS1_below"] == 1
    summary = observed_summary(doc)
    assert summary["runs"]["a"]["n_outside"] == 1 and summary["runs"]["b"]["n_outside"] == 0
    assert summary["runs"]["a"]["n_total"] + summary["runs"]["b"]["n_total"] == summary["n_total"]
    assert summary["salt"] == {"salted": False, "salt_removed": None}
    swapped = copy.deepcopy(doc)
    swapped["runs"].reverse()
    with pytest.raises(ObservedDataError, match=r"runs \['b', 'a'\], the workspace's runs \['a', 'b'\]"):
        observed_counts(swapped, combined)
    with pytest.raises(ObservedDataError, match="runs"):
        observed_counts(doc, ws)  # a runs document on a single-run workspace
    with pytest.raises(ObservedDataError, match="1 event list"):
        bin_observed_runs(spec, [a])


def test_event_tools_refuse_a_combined_workspace_saying_it_is_a_combination(tmp_path, combined, capsys):
    from lzflow.cli import main

    path = tmp_path / "comb.json"
    path.write_text(json.dumps(combined))
    for args in (["simulate-data", "--workspace", str(path), "--seed", "1", "--background-only",
                  "--out", str(tmp_path / "x.csv")], ["events", "--events", str(EVENTS), "--workspace", str(path)]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "a combination of runs ['a', 'b']; expected one run's workspace" in err


def test_blind_safe_checks_find_a_wrong_file_or_column_before_unblinding(tmp_path):
    good = {"path": str(EVENTS), "format": "csv", "columns": {"cS1": "cS1", "cS2": "cS2"}, "units": {},
            "tree": "events", "discovery_toys": 10}
    check_data_files({"data": good, "blind": True})
    check_data_files({})  # no data: nothing to check
    with pytest.raises(ConfigError, match=r"^data\.path: nope\.csv: no such event-list file$"):
        check_data_files({"data": {**good, "path": "nope.csv"}})
    with pytest.raises(ConfigError, match=r"^data\.path: .*column 's1c' not found; columns there: cS1, cS2$"):
        check_data_files({"data": {**good, "columns": {"cS1": "s1c", "cS2": "cS2"}}})
    runs = {"data": {"runs": {"a": good, "b": {**good, "path": "gone.csv"}}, "discovery_toys": 10}}
    with pytest.raises(ConfigError, match=r"^runs\.b\.data\.path: gone\.csv: no such event-list file$"):
        check_data_files(runs)
    # Parquet: the schema only (the values are never read: a file whose values are bad still passes)
    pq.write_table(pa.table({"cS1": pa.array([np.nan]), "x": pa.array([1.0])}), tmp_path / "e.parquet")
    pq_data = {**good, "path": str(tmp_path / "e.parquet"), "format": "parquet", "units": {"cS1": "phd", "cS2": "phd"}}
    with pytest.raises(ConfigError, match=r"column 'cS2' not found; columns there: cS1, x"):
        check_data_files({"data": pq_data})
    pq_data["columns"] = {"cS1": "cS1", "cS2": "x"}
    check_data_files({"data": pq_data})
    with pytest.raises(DataError, match="non-finite|NaN|nan"):
        load_events(pq_data["path"], json.loads(gzip.decompress(WORKSPACE.read_bytes())), columns=pq_data["columns"],
                    units=pq_data["units"])
    with pytest.raises(ConfigError, match=r"declares no unit"):
        check_data_files({"data": {**pq_data, "units": {}}})
    # ROOT: the tree and branch names and the title's units
    root = tmp_path / "e.root"
    write_events(root, np.array([5.0]), np.array([1e3]), tree="events")
    rd = {**good, "path": str(root), "format": "root"}
    check_data_files({"data": rd})
    with pytest.raises(ConfigError, match=r"no TTree 'Events'; TTrees there: events"):
        check_data_files({"data": {**rd, "tree": "Events"}})


def test_validate_and_the_workflow_gate_check_the_data_file(tmp_path, capsys):
    from lzflow.cli import main
    from lzflow.workflow_gate import workflow_config

    overlay = tmp_path / "data.yaml"
    overlay.write_text("blind: true\nruns:\n  early:\n    data: {path: tests/data/quick_observed_events.csv}\n"
                       "  late:\n    data: {path: tests/data/missing.csv}\n")
    configs = [str(REPO / "config" / "quick_two_runs.yaml"), str(overlay)]
    assert main(["validate", "--config", *configs]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "runs.late.data.path: tests/data/missing.csv: no such event-list file" in err
    with pytest.raises(SystemExit):
        workflow_config(configs)
    assert "runs.late.data.path: tests/data/missing.csv" in capsys.readouterr().err
    overlay.write_text(overlay.read_text().replace("missing.csv", "quick_observed_events.csv"))
    assert main(["validate", "--config", *configs]) == 0
    assert capsys.readouterr().out.rstrip().endswith(
        "data early: tests/data/quick_observed_events.csv, late: tests/data/quick_observed_events.csv (blind)")


def test_bin_data_refuses_a_bad_spec_in_one_line(tmp_path, capsys):
    from lzflow.cli import main

    ws = json.loads(gzip.decompress(WORKSPACE.read_bytes()))
    window = {"cS1_edges": ws["axes"][0]["edges"], "log10cS2_edges": ws["axes"][1]["edges"]}
    good = {"format": "csv", "columns": {"cS1": "cS1", "cS2": "cS2"}, "units": {}, "tree": "events", "window": window}
    out = tmp_path / "o.json"
    cases = [({"format": "csv"}, "keys ['format']; expected format, columns, units, tree, window"),
             ("not json", "not JSON"), ([1], "keys [1]"), ({"runs": 3}, "expected runs: [one spec per run"),
             ({**good, "window": {"cS1_edges": [3, 4]}}, "window {'cS1_edges': [3, 4]}; expected {cS1_edges, "),
             ({"runs": [good, {**good, "run": "b"}]}, "keys ['columns', 'format', 'tree', 'units', 'window']"),
             ({"runs": [{**good, "run": "a"}]}, "2 event list(s) for 1 runs")]
    for spec, message in cases:
        text = spec if isinstance(spec, str) else json.dumps(spec)
        assert main(["bin-data", "--spec", text, "--events", str(EVENTS), str(EVENTS), "--out", str(out)]
                    if "2 event" in message else ["bin-data", "--spec", text, "--events", str(EVENTS), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (spec, err)
    assert not out.exists()
    assert main(["bin-data", "--spec", json.dumps(good), "--events", str(EVENTS), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["n_total"] == 3310
