"""stats.construction and stats.discovery_from_toys in the workflow (issue 14 items 1–2): the
config keys and what the specs carry, merge's limit.json sections on real toys of the 40 GeV
workspace, the curve CSV's headline and columns, and the report's paragraph."""

from __future__ import annotations

import copy
import csv
import gzip
import json

import numpy as np
import pytest
from scipy.stats import norm

from lzflow import layout as L
from lzflow.config import ConfigError, load_config
from lzflow.construction_report import construction_context
from lzflow.construction_stage import EXTRA_COLUMNS, curve_columns, discovery_section
from lzflow.curve import COLUMNS, curve_rows, read_curve_csv, write_curve_csv
from lzflow.merge import limit_document
from lzflow.stats.toys import mass_key
from lzflow.workspace import poi_grid, workspace_model

SPEC = {"cl": 0.9, "method": "CLs+b", "power_threshold": 0.1587, "test_statistic": "qtilde"}


# ----------------------------------------------------------------------------- config and specs
def _quick(repo, **stats):
    return load_config(repo / "config" / "quick.yaml", {"stats": stats} if stats else None)


def test_one_sided_is_the_recorded_default_and_changes_no_spec(repo):
    plain, explicit = _quick(repo), _quick(repo, construction="one_sided", discovery_from_toys=None)
    assert plain["stats"]["construction"] == "one_sided" and plain["stats"]["discovery_from_toys"] is None
    for label in ("10", "40"):
        assert L.workspace_spec(plain, label) == L.workspace_spec(explicit, label)
        assert "include_zero" not in L.workspace_spec(plain, label)["poi_grid"]
        assert L.merge_spec(plain, label) == L.merge_spec(explicit, label)
        assert set(L.merge_spec(plain, label)) == {"mass_label", *L.PROCEDURE_KEYS}
        assert L.toy_jobs(plain, label) == L.toy_jobs(explicit, label)


def test_two_sided_adds_mu_zero_and_the_discovery_toys_reach_merge(repo):
    cfg = _quick(repo, construction="two_sided", discovery_from_toys={"n_bonly": 3000, "n_sb": 200})
    n = cfg["stats"]["per_mass"]["40"]["poi_grid"]["n_points"]
    grid = L.workspace_spec(cfg, "40")["poi_grid"]
    assert grid["include_zero"] is True
    points = poi_grid(2.0, grid)
    assert points[0] == 0.0 and len(points) == n + 1 and points[1:] == poi_grid(2.0, {**grid, "include_zero": False})
    sb_jobs = [spec for _, _, spec in L.toy_jobs(cfg, "40") if spec["hypothesis"] == "sb"]
    assert sorted({s["poi_index"] for s in sb_jobs}) == list(range(n + 1))
    spec = L.merge_spec(cfg, "40")
    assert spec["construction"] == "two_sided" and spec["discovery_from_toys"] == {"n_bonly": 3000, "n_sb": 200}


@pytest.mark.parametrize("stats, message", [
    ({"construction": "two_sided", "test_statistic": "q"}, "stats.construction: two_sided with stats.test_statistic 'q'"),
    ({"construction": "two_sided", "likelihood": "unbinned"}, "stats.construction: two_sided with stats.likelihood"),
    ({"construction": "both"}, "stats.construction: 'both'"),
    ({"discovery_from_toys": {"n_bonly": 3000}}, "stats.discovery_from_toys.n_sb: missing"),
    ({"discovery_from_toys": 0}, "stats.discovery_from_toys: 0"),
])
def test_bad_keys_are_refused_in_one_line(repo, stats, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        _quick(repo, **stats)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- merge on real toys
@pytest.fixture(scope="module")
def ws40(repo):
    ws = json.loads(gzip.decompress((repo / "tests" / "data" / "workspace_m40.json.gz").read_bytes()))
    out = copy.deepcopy(ws)
    median = ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"]
    out["poi_grid"] = poi_grid(median, {"n_points": 8, "min_factor": 0.02, "max_factor": 4.0, "include_zero": True})
    return out


@pytest.fixture(scope="module")
def two_sided_doc(ws40):
    from test_merge import toy_files

    files = toy_files(ws40, 300, 600)
    doc, _ = limit_document(ws40, lambda: files, {**SPEC, "construction": "two_sided", "n_boot": 0})
    return doc


def test_two_sided_section_is_consistent(two_sided_doc, ws40):
    doc = two_sided_doc
    ts = doc["two_sided"]
    assert doc["construction"] == "two_sided" and ts["construction"] == "two_sided"
    assert ts["mu_grid"] == ws40["poi_grid"] and ts["mu_grid"][0] == 0.0
    # the one-sided limits are those of the points mu > 0 (q-tilde is 0 at mu = 0)
    assert 0.0 not in doc["poi_grid"] and doc["poi_grid_configured"][0] == 0.0
    tc, err = np.array(ts["belt"]["t_crit"]), np.array(ts["belt"]["t_crit_err"])
    # the belt: t_c(0) ~ the 0.8 quantile of chi2_1 (half the datasets have mu_hat = 0), rising towards the
    # chi2_1 0.9 quantile 2.71 (Wilks) away from the boundary; within 3 MC errors
    assert abs(tc[0] - 1.642) < 3 * err[0]
    assert np.all(tc <= 2.706 + 3 * err) and np.all(tc[1:] >= tc[0] - 3 * np.hypot(err[1:], err[0]))
    assert np.mean(tc[len(tc) // 2:]) > tc[0]
    exp = ts["expected_mu_up"]
    finite = [exp[n] for n in ("-2", "-1", "0", "1") if exp[n] is not None]
    assert finite == sorted(finite) and len(finite) >= 3
    # two-sided intervals are at least as long above as the one-sided CLs+b limits on the same toys
    one = doc["limits"]["CLs+b"]["expected_mu"]["0"]
    assert exp["0"] >= one
    for n in ("-1", "0", "1"):
        assert ts["expected_sigma_cm2"][n] == pytest.approx(exp[n] * ws40["sigma_ref_cm2"], rel=1e-12)
    # PCL on the Asimov B-only data: at least the -1 sigma (power-threshold) floor
    asimov = ts["asimov"]
    assert "observed" not in ts and asimov["mu_lo"] == 0.0 and asimov["mu_lo_status"] == "zero"
    assert asimov["limit_mu"] >= ts["pcl_floor_mu_up"] - 1e-15
    assert asimov["limit_sigma_cm2"] == pytest.approx(asimov["limit_mu"] * ws40["sigma_ref_cm2"], rel=1e-12)
    # about 1 - CL of the B-only intervals exclude mu = 0 (Feldman-Cousins' unified intervals)
    frac, (lo, hi) = ts["mu_lo_positive_fraction"], ts["mu_lo_positive_interval"]
    assert lo <= frac <= hi and abs(frac - 0.10) < 4 * (hi - lo) / 2 + 0.02


def test_curve_and_report_use_the_two_sided_headline(two_sided_doc, tmp_path):
    doc = two_sided_doc
    row = curve_rows([doc])[0]
    assert row["construction"] == "two_sided"
    assert row["sigma_median_cm2"] == doc["two_sided"]["expected_sigma_cm2"]["0"]
    assert row["sigma_one_sided_median_cm2"] == doc["limits"]["CLs+b"]["expected_sigma_cm2"]["0"]
    assert row["sigma_pcl_cm2"] == doc["two_sided"]["asimov"]["limit_sigma_cm2"]
    path = tmp_path / "curve.csv"
    write_curve_csv(path, [row])
    header = next(csv.reader(path.read_text().splitlines()))
    assert header[:len(COLUMNS)] == COLUMNS and "construction" in header
    back = read_curve_csv(path)[0]
    assert back["construction"] == "two_sided" and back["sigma_median_cm2"] == pytest.approx(row["sigma_median_cm2"])
    ctx = construction_context([doc])
    assert ctx["two_sided"][0][0] == "40" and ctx["discovery"] == []
    assert float(ctx["two_sided"][0][3].lstrip("×")) == pytest.approx(row["sigma_median_cm2"] / row["sigma_one_sided_median_cm2"],
                                                         abs=1e-3)


def test_one_sided_documents_and_rows_are_as_before(two_sided_doc):
    one = {k: v for k, v in two_sided_doc.items() if k not in ("two_sided", "construction", "discovery")}
    assert curve_columns(one, {}) == {} and construction_context([one]) is None
    assert not set(curve_rows([one])[0]) & set(EXTRA_COLUMNS)


def test_discovery_section_toys_match_asymptotics_at_40_gev(ws40):
    ws = {**ws40, "poi_grid": ws40["poi_grid"][1:]}
    section, warnings = discovery_section(workspace_model(ws), ws, {"seed": 5}, mass_key(40.0), 3000, 200, None)
    assert section["n_bonly"] == 3000 and section["method"].startswith("importance sampling")
    for z in ("3", "5"):
        p = section["potentials"][z]
        # 40 GeV: enough events for the asymptotic formulae; toy and Asimov potentials agree within 3 errors
        assert abs(p["sigma_cm2_toys"] - p["sigma_cm2_asymptotic"]) < 3 * p["sigma_cm2_toys_err"]
        # the B-only tail is near the half-chi2_1 one (not on it: q0 is discrete with a few events per bin)
        assert 0.5 < p["tail_p0"] / norm.sf(int(z)) < 1.5
        assert p["tail_rel_err"] <= 0.10
    assert warnings == []
    doc = {"mass_GeV": 40.0, "discovery": section}
    row = curve_columns(doc, {})
    assert row["sigma_discovery_5sigma_toys_cm2"] == section["potentials"]["5"]["sigma_cm2_toys"]
    ctx = construction_context([{**doc, "method": "CLs+b"}])
    assert len(ctx["discovery"]) == 1 and ctx["differ"] == []


def test_two_sided_extends_the_grid_above_its_top(ws40):
    """A grid up to 1.5 × the one-sided median (the two-sided median is ~1.2 ×, its +1σ band ~2.4 ×),
    no one-sided extension: merge adds S+B points above the top for the two-sided bands (new POI
    indices, the B-only toys regenerated there) until every band is resolved."""
    from test_merge import toy_files

    ws = copy.deepcopy(ws40)
    median = ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"]
    ws["poi_grid"] = poi_grid(median, {"n_points": 5, "min_factor": 0.3, "max_factor": 1.5, "include_zero": True})
    files = toy_files(ws, 200, 400)
    doc, extra = limit_document(ws, lambda: files, {**SPEC, "construction": "two_sided", "n_boot": 0,
                                                    "max_refine_rounds": 0})
    ts = doc["two_sided"]
    assert "refinement" not in doc and ts["grid_extension"]
    added = [i for r in ts["grid_extension"] for i in r["poi_index"]]
    assert added[0] == len(ws["poi_grid"]) and ts["poi_index"][-len(added):] == added
    assert ts["mu_grid"] == sorted(ts["mu_grid"]) and ts["mu_grid"][:6] == ws["poi_grid"]
    assert sorted(int(h["poi_index"]) for _, _, h in extra if h["hypothesis"] == "sb") == added
    assert ts["expected_status"]["1"] == "ok" and ts["asimov"]["mu_up_status"] == "ok"
    assert ts["expected_mu_up"]["1"] > ws["poi_grid"][-1]
