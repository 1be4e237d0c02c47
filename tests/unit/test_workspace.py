"""Unit tests of the workspace stage (lzflow.workspace): building from PDF files, checks, the
asymptotic limits and POI grid of the workspace job, the exports written beside it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import hist
import numpy as np
import pytest

from lzflow import layout
from lzflow.pdfs import write_pdf
from lzflow.workspace import (EXPORT_NAMES, FORMAT, WorkspaceError, build_workspace, make_workspace, poi_grid,
                              read_workspace, to_hs3, workspace_model, write_workspace)

DATA = Path(__file__).resolve().parents[1] / "data"
SPEC = {"mass_GeV": 40.0, "mass_label": "40", "cl": 0.9, "method": "CLs+b", "power_threshold": 0.1587,
        "test_statistic": "qtilde", "discovery_sigma": 3.0,
        "poi_grid": {"n_points": 5, "min_factor": 0.1, "max_factor": 3.0}}


def _histogram(values: np.ndarray) -> hist.Hist:
    h = hist.Hist(hist.axis.Regular(values.shape[0], 0.0, 80.0, name="cS1"),
                  hist.axis.Regular(values.shape[1], 2.0, 5.0, name="log10cS2"), storage=hist.storage.Weight())
    h.view().value = values
    h.view().variance = values * 1e-4
    return h


def _write(directory: Path, source: str, values: np.ndarray, **meta) -> Path:
    root, _ = write_pdf(directory, source, _histogram(values), {"source": source, "sigma_ref_cm2": 1e-45, **meta})
    return root


@pytest.fixture
def pdfs(tmp_path):
    """A 4×3 signal PDF with 6 events and two backgrounds (one constrained at 10 %, one fixed)."""
    rng = np.random.default_rng(1)
    signal = _write(tmp_path, "wimp_m40", np.full((4, 3), 0.5))
    b1 = _write(tmp_path, "bkgA", rng.uniform(0.5, 2.0, (4, 3)), source_metadata={"rel_unc": 0.1})
    b2 = _write(tmp_path, "bkgB", rng.uniform(0.1, 0.3, (4, 3)), source_metadata={"rel_unc": 0.0})
    return signal, [b2, b1]


def test_build_workspace_reads_templates_counts_and_constraints(pdfs):
    signal, backgrounds = pdfs
    ws = build_workspace(signal, backgrounds, 40.0)
    assert ws["format"] == FORMAT and ws["mass_GeV"] == 40.0 and ws["sigma_ref_cm2"] == 1e-45
    assert ws["signal"]["expected_events"] == pytest.approx(6.0) and not ws["signal"]["empty"]
    names = [b["name"] for b in ws["backgrounds"]]
    assert names == ["bkgA", "bkgB"]  # sorted by source, whatever the order given
    a, b = ws["backgrounds"]
    assert a["sigma_events"] == pytest.approx(0.1 * a["expected_events"]) and not a["fixed"]
    assert b["fixed"] and b["sigma_events"] == 0.0
    assert np.asarray(ws["signal"]["template"]).shape == (4, 3)
    assert len(ws["axes"][0]["edges"]) == 5 and len(ws["axes"][1]["edges"]) == 4
    model = workspace_model(ws)
    assert model.expected(1.0).sum() == pytest.approx(6.0 + a["expected_events"] + b["expected_events"])


def test_build_workspace_refuses_inconsistent_inputs(tmp_path, pdfs):
    signal, backgrounds = pdfs
    other = tmp_path / "other"
    other.mkdir()
    wrong_binning = write_pdf(other, "bkgC", hist.Hist(hist.axis.Regular(4, 0.0, 50.0), hist.axis.Regular(3, 2.0, 5.0),
                                                       storage=hist.storage.Weight()).fill([1.0], [3.0]),
                              {"source": "bkgC", "source_metadata": {"rel_unc": 0.1}})[0]
    with pytest.raises(WorkspaceError, match="binning differs"):
        build_workspace(signal, [*backgrounds, wrong_binning], 40.0)
    no_unc = _write(other, "bkgD", np.ones((4, 3)))
    with pytest.raises(WorkspaceError, match="without rel_unc"):
        build_workspace(signal, [no_unc], 40.0)
    with pytest.raises(WorkspaceError, match="duplicate"):
        build_workspace(signal, [backgrounds[0], backgrounds[0]], 40.0)
    with pytest.raises(WorkspaceError, match="no background"):
        build_workspace(signal, [], 40.0)


def test_poi_grid_scales_the_factors_by_the_median():
    assert poi_grid(2.0, {"n_points": 3, "min_factor": 0.5, "max_factor": 1.5}) == [1.0, 2.0, 3.0]


def test_make_workspace_grid_around_the_asymptotic_median_and_exports(tmp_path, pdfs):
    signal, backgrounds = pdfs
    ws, exports = make_workspace(signal, backgrounds, SPEC)
    median = ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"]
    assert median > 0
    assert ws["poi_grid"] == pytest.approx(list(median * np.linspace(0.1, 3.0, 5)), rel=0, abs=0)
    assert ws["asymptotic"]["expected_sigma_cm2"]["0"] == median * 1e-45
    cls = ws["asymptotic"]["by_method"]["CLs"]["expected_mu"]["0"]
    assert cls > median  # CLs is more conservative than CLs+b
    assert set(exports) == {"pyhf", "hs3", "impacts"}
    assert exports["hs3"] == to_hs3(ws)
    impacts = exports["impacts"]
    assert impacts["median_sigma_cm2_profiled"] == pytest.approx(ws["asymptotic"]["expected_sigma_cm2"]["0"], rel=1e-6)
    # every constrained background is ranked; profiling a parameter never tightens the limit
    assert {p["parameter"] for p in impacts["parameters"]} == {b["name"] for b in ws["backgrounds"] if b["rel_unc"] > 0}
    assert all(p["impact"] >= -1e-6 for p in impacts["parameters"])
    assert [p["impact"] for p in impacts["parameters"]] == sorted((p["impact"] for p in impacts["parameters"]), reverse=True)
    out = tmp_path / "m40" / "workspace.json"
    out.parent.mkdir()
    write_workspace(out, ws, exports)
    assert read_workspace(out) == json.loads(json.dumps(ws))
    for kind, name in EXPORT_NAMES.items():
        assert (out.parent / name).is_file()
        template = layout.IMPACTS if kind == "impacts" else getattr(layout, f"WORKSPACE_{kind.upper()}")
        assert name == Path(template).name


def test_make_workspace_without_power_constraint_reports_the_observed_limit(pdfs):
    signal, backgrounds = pdfs
    ws, _ = make_workspace(signal, backgrounds, {**SPEC, "power_threshold": 0})
    for method in ("CLs+b", "CLs"):
        entry = ws["asymptotic"]["by_method"][method]
        assert entry["pcl_mu"] == entry["observed_mu"] and entry["pcl_floor_mu"] is None


def test_empty_signal_gives_no_grid_and_no_sensitivity_exports(tmp_path, pdfs):
    _, backgrounds = pdfs
    empty = _write(tmp_path, "wimp_m2", np.zeros((4, 3)), empty=True)
    ws, exports = make_workspace(empty, backgrounds, {**SPEC, "mass_GeV": 2.0})
    assert ws["signal"]["empty"] and ws["poi_grid"] == [] and ws["asymptotic"] == {"no_sensitivity": True}
    assert exports == {kind: {"no_sensitivity": True} for kind in ("pyhf", "hs3", "impacts")}


def test_read_workspace_refuses_other_documents(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(WorkspaceError, match="not an lzflow workspace"):
        read_workspace(path)


def test_real_workspace_model_round_trip():
    """The committed default 40 GeV workspace: the model's nominal expectation is its templates' sum."""
    ws = json.loads(gzip.decompress((DATA / "workspace_m40.json.gz").read_bytes()))
    model = workspace_model(ws)
    total = np.asarray(ws["signal"]["template"]).sum() + sum(np.asarray(b["template"]).sum() for b in ws["backgrounds"])
    assert model.expected(1.0).sum() == pytest.approx(total, rel=1e-12)
