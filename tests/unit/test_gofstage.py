"""lzflow gof-observed (lzflow.gofstage): the goodness of fit of the binned observed data in the
workflow's document, against lzflow.stats.gof called directly; its spec checks and report rows."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from lzflow.cli import main
from lzflow.exceptions import MergeError
from lzflow.gofstage import check_spec, gof_document, report_context
from lzflow.stats.gof import best_fit, statistic_pieces
from lzflow.workspace import workspace_model

DATA = Path(__file__).resolve().parents[1] / "data"
WS_PATH = DATA / "workspace_m40.json.gz"
SPEC = {"blind": False, "n_toys": 64, "seed": 11}


@pytest.fixture(scope="module")
def inputs():
    """The 40 GeV workspace and a seeded dataset of it (background plus a small signal), binned as
    lzflow bin-data writes it (as tests/unit/test_lookelsewhere.py builds one)."""
    from lzflow.observeddata import DATA_FORMAT, observed_digest

    ws = json.loads(gzip.decompress(WS_PATH.read_bytes()))
    model = workspace_model(ws)
    counts = np.random.default_rng(5).poisson(model.asimov(0.0)[0] + 0.0025 * model.signal).reshape(model.bin_shape)
    data = {"format": DATA_FORMAT, "counts": counts.tolist(), "counts_digest": observed_digest(counts),
            "window": {"cS1_edges": ws["axes"][0]["edges"], "log10cS2_edges": ws["axes"][1]["edges"]},
            "events_file": "x.csv", "events_sha256": "0" * 64, "n_total": int(counts.sum()),
            "n_inside": int(counts.sum()), "n_outside": 0, "outside_by_reason": {},
            "settings": {"format": "csv", "columns": {}, "units": {}, "tree": "events"}}
    return ws, data


def test_document_matches_the_direct_statistic_and_the_command(tmp_path, inputs):
    ws, data = inputs
    doc = gof_document(ws, data, SPEC)
    model, counts = workspace_model(ws), np.asarray(data["counts"], dtype=np.float64).ravel()
    fit = best_fit(model, counts)
    direct = statistic_pieces(model, fit.params, counts[None], model.nominal_nuisance()[None])
    for name in ("total", "bins", "constraints"):
        assert doc["observed"][name] == pytest.approx(float(direct[name][0]), rel=1e-10, abs=1e-10)
    assert doc["observed"]["total"] == pytest.approx(doc["observed"]["bins"] + doc["observed"]["constraints"], rel=1e-12)
    assert 0.0 <= doc["p_value"]["total"] <= 1.0 and doc["n_toys"] == 64 and doc["runs"] == []
    assert doc["n_events"] == int(counts.sum()) and doc["best_fit"]["mu"] == pytest.approx(float(fit.params[0, 0]))
    # the command writes the same document (same seed: same toys), with the workspace file's sha256
    (tmp_path / "observed.json").write_text(json.dumps(data))
    out = tmp_path / "m40" / "gof.json"
    assert main(["gof-observed", "--spec", json.dumps(SPEC), "--workspace", str(WS_PATH), "--observed",
                 str(tmp_path / "observed.json"), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["observed"] == doc["observed"] and written["p_value"] == doc["p_value"]
    assert len(written["workspace"]["sha256"]) == 64
    # the report's row for this mass: χ²_λ and the p-value as in the file
    (tmp_path / "m40" / "limit.json").write_text("{}")
    rows = report_context([tmp_path / "m40" / "limit.json"], [{"mass": 40.0}])
    assert rows == [["40", "all", f"{doc['observed']['total']:.1f}", f"{doc['toy_quantiles']['total']['50']:.1f}",
                     f"{doc['p_value']['total']:.3g} ± {doc['p_error']['total']:.2g}", f"{64 - doc['n_failed']}"]]
    assert report_context([tmp_path / "m40" / "limit.json"], None) is None


@pytest.mark.parametrize("spec, match", [
    ({**SPEC, "blind": True}, "blind True; expected false"),
    ({**SPEC, "extra": 1}, r"unknown keys \['extra'\]"),
    ({"blind": False, "seed": 1}, r"missing keys \['n_toys'\]"),
    ({**SPEC, "n_toys": 0}, "n_toys 0; expected an integer >= 1"),
    ({**SPEC, "seed": -1}, "seed -1; expected an integer >= 0"),
])
def test_bad_spec_one_line(spec, match):
    with pytest.raises(MergeError, match=match):
        check_spec(spec)


def test_missing_gof_file_is_an_error(tmp_path):
    (tmp_path / "limit.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="gof.json is missing"):
        report_context([tmp_path / "limit.json"], [{"mass": 40.0}])


def test_combined_workspace_has_a_piece_per_run_equal_to_lzflow_gof(tmp_path, inputs):
    """Two runs (the 40 GeV workspace twice, B8 shared): pieces r1 + r2 = bins; the document equals
    ``lzflow gof`` (lzflow.combinecli) on the same counts and seed; the report has a row per run."""
    from lzflow.combinecli import combine_workspaces, write_document
    from lzflow.observeddata import DATA_FORMAT, observed_digest

    ws, one = inputs
    spec = {"cl": 0.9, "method": "CLs+b", "test_statistic": "qtilde", "power_threshold": 0.1587,
            "discovery_sigma": 3.0, "poi_grid": {"n_points": 3, "min_factor": 0.3, "max_factor": 2.5}}
    comb = combine_workspaces({"r1": ws, "r2": ws}, ["B8"], spec)
    model = workspace_model(ws)
    second = np.random.default_rng(6).poisson(model.asimov(0.0)[0]).reshape(model.bin_shape)
    counts = np.concatenate([np.asarray(one["counts"]).ravel(), second.ravel()])
    runs = [{"run": "r1", **{k: one[k] for k in ("window", "counts", "counts_digest", "n_total")}},
            {"run": "r2", "window": one["window"], "counts": second.tolist(), "n_total": int(second.sum())}]
    data = {"format": DATA_FORMAT, "counts": counts.tolist(), "counts_digest": observed_digest(counts),
            "n_total": int(counts.sum()), "n_inside": int(counts.sum()), "n_outside": 0, "outside_by_reason": {},
            "runs": runs}
    doc = gof_document(comb, data, SPEC)
    assert doc["runs"] == ["r1", "r2"] and doc["n_bins"] == 2 * model.signal.size
    assert doc["observed"]["r1"] + doc["observed"]["r2"] == pytest.approx(doc["observed"]["bins"], rel=1e-12)
    assert all(0.0 <= doc["p_value"][k] <= 1.0 for k in ("total", "r1", "r2"))
    write_document(tmp_path / "c.json", comb)
    np.savez(tmp_path / "counts.npz", counts=counts)
    assert main(["gof", "--workspace", str(tmp_path / "c.json"), "--data", str(tmp_path / "counts.npz"), "--toys",
                 str(SPEC["n_toys"]), "--seed", str(SPEC["seed"]), "--out", str(tmp_path / "cli.json")]) == 0
    cli = json.loads((tmp_path / "cli.json").read_text())
    assert cli["observed"] == doc["observed"] and cli["p_value"] == doc["p_value"] and cli["best_fit"] == doc["best_fit"]
    (tmp_path / "m40").mkdir()
    (tmp_path / "m40" / "gof.json").write_text(json.dumps(doc))
    rows = report_context([tmp_path / "m40" / "limit.json"], [{"mass": 40.0}])
    assert [r[1] for r in rows] == ["all", "run r1", "run r2"]
    assert rows[1][2] == f"{doc['observed']['r1']:.1f}"
