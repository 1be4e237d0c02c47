"""Template MC statistics in the workspace stage (lzflow.workspace.add_mc_stat): the per-bin relative
MC error of each background read from its PDF's variances, the δ of the total, the format tag that
keeps older readers from reading γ-less, the model and the pyhf export built from it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lzflow.workspace import (FORMAT, WorkspaceError, add_mc_stat, load_workspace_file, make_workspace,
                              mc_stat_delta, workspace_model)

from test_workspace import SPEC, _write


@pytest.fixture
def pdfs(tmp_path):
    rng = np.random.default_rng(3)
    signal = _write(tmp_path, "wimp_m40", np.full((4, 3), 0.5))
    b1 = _write(tmp_path, "bkgA", rng.uniform(0.5, 2.0, (4, 3)), source_metadata={"rel_unc": 0.1})
    b2 = _write(tmp_path, "bkgB", rng.uniform(0.1, 0.3, (4, 3)), source_metadata={"rel_unc": 0.0})
    return signal, [b2, b1]


def test_workspace_carries_relative_mc_errors_and_delta(tmp_path, pdfs):
    signal, backgrounds = pdfs
    plain, plain_exports = make_workspace(signal, backgrounds, SPEC)
    assert plain["format"] == FORMAT and "mc_stat" not in plain
    assert all("mc_rel_error" not in b for b in plain["backgrounds"])
    ws, exports = make_workspace(signal, backgrounds, {**SPEC, "mc_stat": {"threshold": 0.0}})
    assert ws["format"] == "lzflow-workspace-2"
    # the test PDFs have variance = 1e-4 × value: relative error 0.01 / sqrt(value)
    for b in ws["backgrounds"]:
        t = np.asarray(b["template"])
        np.testing.assert_allclose(b["mc_rel_error"], 0.01 / np.sqrt(t), rtol=1e-12)
    t = np.stack([np.asarray(b["template"]).ravel() for b in ws["backgrounds"]])
    delta = np.sqrt((t * 1e-4).sum(axis=0)) / t.sum(axis=0)  # sqrt(Σ var) / Σ value
    np.testing.assert_allclose(mc_stat_delta(ws), delta, rtol=1e-12)
    assert ws["mc_stat"] == {"threshold": 0.0, "gamma_bins": 12}
    model = workspace_model(ws)
    assert model.n_gamma == 12 and np.array_equal(model.mc_stat, mc_stat_delta(ws))
    # the γ only add uncertainty: the Asimov median limit does not tighten
    m_plain = plain["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"]
    m_gamma = ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"]
    assert m_gamma >= m_plain * (1 - 1e-9)
    assert any(m["type"] == "staterror" for s in exports["pyhf"]["channels"][0]["samples"] for m in s["modifiers"])
    assert "not_exported" in exports["hs3"]
    # a high threshold gives no γ
    hi = json.loads(json.dumps(plain))
    add_mc_stat(hi, backgrounds, 1.0)
    assert hi["mc_stat"]["gamma_bins"] == 0 and workspace_model(hi).n_gamma == 0
    # written and read back by the checked reader
    path = tmp_path / "ws.json"
    path.write_text(json.dumps(ws))
    assert load_workspace_file(path)[0]["mc_stat"]["gamma_bins"] == 12


def test_mc_stat_refusals(pdfs):
    signal, backgrounds = pdfs
    ws, _ = make_workspace(signal, backgrounds, SPEC)
    with pytest.raises(WorkspaceError, match=r"no PDF given for backgrounds \['bkgA'\]"):
        add_mc_stat(json.loads(json.dumps(ws)), backgrounds[:1], 0.05)
    ws["mc_stat"] = {"threshold": 0.05}
    with pytest.raises(WorkspaceError, match="without mc_rel_error"):
        workspace_model(ws)


def test_mc_stat_with_shape_systematics(pdfs):
    """Both together (lzflow.stats.mcstat_morph): the model carries the α and the γ, the pyhf export
    a histosys on the varied sample and the staterror on every background."""
    signal, backgrounds = pdfs
    ws, _ = make_workspace(signal, backgrounds, SPEC)
    t = np.asarray(next(b for b in ws["backgrounds"] if b["name"] == "bkgA")["template"])
    ws["shape_systematics"] = [{"name": "x", "templates": {"bkgA": {"1": (1.1 * t).tolist(), "-1": (0.9 * t).tolist(),
                                                                     "2": (1.2 * t).tolist(), "-2": (0.8 * t).tolist()}}}]
    ws["shape_interpolation"] = "code4p"
    add_mc_stat(ws, backgrounds, 0.0)
    model = workspace_model(ws)
    assert (model.n_shape, model.n_gamma, model.n_aux) == (1, 12, 2 + 1 + 12)
    assert np.array_equal(model.mc_stat, mc_stat_delta(ws))
    from lzflow.workspace import pyhf_export

    mods = {m["type"] for s in pyhf_export(model)["channels"][0]["samples"] for m in s["modifiers"]}
    assert {"histosys", "staterror"} <= mods
