"""The HS3 export (lzflow.hs3) without ROOT: every modifier names its parameter, each parameter is
declared once, the names and bounds are pyhf's, the references between the top-level sections
resolve, and shape systematics are refused. ROOT reading the same document: test_hs3_root.py."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from lzflow.exceptions import WorkspaceError
from lzflow.hs3 import ANALYSIS, DISTRIBUTION, hs3_document
from lzflow.stats.model import ShapeSystematic
from lzflow.stats.pyhf_export import to_pyhf_workspace
from lzflow.stats.synthetic import simple_model
from lzflow.workspace import to_hs3, workspace_model

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def ws() -> dict:
    """The 40 GeV workspace of the default analysis (40×40 bins, 11 backgrounds, DSN at 50 %)."""
    return json.loads(gzip.decompress((DATA / "workspace_m40.json.gz").read_bytes()))


@pytest.fixture(scope="module")
def doc(ws) -> dict:
    return to_hs3(ws)


def _named(items: list[dict]) -> dict[str, dict]:
    names = [item["name"] for item in items]
    assert len(set(names)) == len(names), f"duplicate names {names}"
    return {item["name"]: item for item in items}


def test_every_modifier_names_a_parameter_declared_once(doc):
    (dist,) = doc["distributions"]
    modifiers = [m for s in dist["samples"] for m in s["modifiers"]]
    assert modifiers and all(isinstance(m.get("parameter"), str) for m in modifiers)
    (domain,) = doc["domains"]
    declared = [axis["name"] for axis in domain["axes"]]
    point = [p["name"] for p in doc["parameter_points"][0]["parameters"]]
    assert len(set(declared)) == len(declared) and sorted(declared) == sorted(point)
    used = {m["parameter"] for m in modifiers}
    globs = {f"nom_{p}" for p in used if p != "mu"}
    assert set(declared) == used | globs  # nothing undeclared, no orphan (the old alpha_* domains)
    consts = {p["name"] for p in doc["parameter_points"][0]["parameters"] if p.get("const")}
    assert consts == globs  # HS3 §2.7: a parameter outside the domain's fitted ones is const


def test_names_bounds_and_templates_are_pyhf_s(ws, doc):
    spec = to_pyhf_workspace(workspace_model(ws))
    pyhf_mods = {(s["name"], m["name"]): m for s in spec["channels"][0]["samples"] for m in s["modifiers"]}
    (dist,) = doc["distributions"]
    hs3_mods = {(s["name"], m["parameter"]): m for s in dist["samples"] for m in s["modifiers"]}
    assert hs3_mods.keys() == pyhf_mods.keys()
    for key, mod in hs3_mods.items():
        assert mod["type"] == pyhf_mods[key]["type"] and mod["name"] == key[1]
        if mod["type"] == "histosys":
            assert mod["constraint"] == "Gauss"
            assert mod["data"]["hi"]["contents"] == pyhf_mods[key]["data"]["hi_data"]
            assert mod["data"]["lo"]["contents"] == pyhf_mods[key]["data"]["lo_data"]
    bounds = {p["name"]: p["bounds"][0] for p in spec["measurements"][0]["config"]["parameters"]}
    domain = _named(doc["domains"][0]["axes"])
    assert {name: [domain[name]["min"], domain[name]["max"]] for name in bounds} == bounds
    floating = [b for b in ws["backgrounds"] if not b["fixed"]]
    assert sorted(bounds) == sorted(["mu"] + [b["name"] for b in floating])  # lzflow's names: BinnedModel.names
    dsn = next(b for b in ws["backgrounds"] if b["name"] == "DSN")
    assert dsn["rel_unc"] == 0.5 and domain["DSN"]["min"] == -2.0  # the rate B (1 + r α) reaches 0 there, not below
    assert domain["pp"]["min"] == -5.0 and domain["pp"]["max"] == 5.0  # pp: r = 2 %, -1/r = -50 is beyond -5


def test_sections_reference_each_other(ws, doc):
    (dist,) = doc["distributions"]
    assert dist["name"] == DISTRIBUTION and dist["type"] == "histfactory_dist"
    assert [a["nbins"] for a in dist["axes"]] == [len(a["edges"]) - 1 for a in ws["axes"]]
    (lik,) = doc["likelihoods"]
    assert lik["distributions"] == [DISTRIBUTION] and lik["data"] == [doc["data"][0]["name"]]
    (analysis,) = doc["analyses"]
    assert analysis["name"] == ANALYSIS and analysis["likelihood"] == lik["name"]
    assert analysis["parameters_of_interest"] == ["mu"] and analysis["domains"] == [doc["domains"][0]["name"]]
    assert analysis["init"] == doc["parameter_points"][0]["name"]
    assert doc["misc"]["ROOT_internal"]["ModelConfigs"][ANALYSIS]["pdfName"] == DISTRIBUTION
    data = np.asarray(doc["data"][0]["contents"])
    expected = sum(np.asarray(b["template"]) for b in ws["backgrounds"]).ravel()  # B-only Asimov, C order
    np.testing.assert_allclose(data, expected, rtol=1e-12)


def test_multiplicative_shape_systematics_exported_and_irregular_axes_refused():
    model = simple_model(n_bins=6, n_bkg=2, seed=1)
    axes = [{"name": "cS1", "edges": [0.0, 1.0, 2.0, 3.0]}, {"name": "log10cS2", "edges": [2.0, 3.0, 4.0]}]
    assert len(hs3_document(model, axes, "six bins")["data"][0]["contents"]) == 6
    T = np.vstack([model.signal[None], model.backgrounds])
    shaped = model.with_shape_systematics([ShapeSystematic("g1", up=T * 1.1, down=T * 0.9)], "log_code4p")
    mods = [m["type"] for s in hs3_document(shaped, axes, "six bins")["distributions"][0]["samples"]
            for m in s["modifiers"]]  # written exactly since issue 12 (tests/unit/test_hs3_logmorph.py)
    assert mods.count("shapefactor") == 3 and mods.count("normsys") == 1  # one per sample; alpha_g1's constraint
    bent = [{"name": "cS1", "edges": [0.0, 1.0, 2.5, 3.0]}, axes[1]]
    with pytest.raises(WorkspaceError, match=r"axis 'cS1': edges are not regular"):
        hs3_document(model, bent, "six bins")


def test_additive_shape_systematics_are_pyhf_s_histosys():
    """code4p shape systematics: a histosys alpha_<name> on every affected sample, hi/lo = the ±1σ
    templates, a Gauss constraint with its global observable, domain [−5, 5] — pyhf's modifiers."""
    model = simple_model(n_bins=6, n_bkg=2, seed=1)
    axes = [{"name": "cS1", "edges": [0.0, 1.0, 2.0, 3.0]}, {"name": "log10cS2", "edges": [2.0, 3.0, 4.0]}]
    T = np.vstack([model.signal[None], model.backgrounds])
    up, down = T * 1.1, T * 0.9
    up[2], down[2] = T[2], T[2]  # the second background is unaffected
    doc = hs3_document(model.with_shape_systematics([ShapeSystematic("g1", up=up, down=down)]), axes, "six bins")
    samples = {s["name"]: s for s in doc["distributions"][0]["samples"]}
    with_g1 = {name for name, s in samples.items() if any(m["parameter"] == "alpha_g1" for m in s["modifiers"])}
    assert with_g1 == {model.signal_name, model.names[0]}
    mod = next(m for m in samples[model.names[0]]["modifiers"] if m["parameter"] == "alpha_g1")
    assert mod["type"] == "histosys" and mod["constraint"] == "Gauss"
    np.testing.assert_allclose(mod["data"]["hi"]["contents"], up[1]) and np.testing.assert_allclose(mod["data"]["lo"]["contents"], down[1])
    domain = {a["name"]: (a["min"], a["max"]) for a in doc["domains"][0]["axes"]}
    assert domain["alpha_g1"] == (-5.0, 5.0) and "nom_alpha_g1" in domain
