"""HS3 export of the multiplicative (log) shape morphings (issue 12, :mod:`lzflow.hs3_logmorph`):
each affected sample's per-bin factor exp(Σ_k Σ_m B_m(α_k) C_mksi) is written as a
``generic_function``, the factors as a ``shapefactor`` of the ``histfactory_dist``. The written
formulae are evaluated here by a small evaluator of their grammar (numbers, names, + − * /,
comparisons, exp) — no pyhf, no ROOT — and the expected events equal lzflow's model to 1e-9 at α
inside, on and beyond the knots; with ROOT importable, RooFit's NLL differences equal lzflow's.
"""

from __future__ import annotations

import ast
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lzflow.hs3 import hs3_document
from lzflow.stats.model import BinnedModel, ShapeSystematic
from lzflow.stats.synthetic import simple_model

DATA = Path(__file__).parents[1] / "data"


class Formulae:
    """The document's ``generic_function`` entries, evaluated at given parameter values."""

    def __init__(self, doc: dict):
        self.expr = {f["name"]: ast.parse(f["expression"], mode="eval").body for f in doc.get("functions", [])}
        assert all(f["type"] == "generic_function" for f in doc.get("functions", []))

    def __call__(self, name: str, values: dict[str, float], cache: dict[str, float]) -> float:
        if name in values:
            return values[name]
        if name not in cache:
            cache[name] = self._eval(self.expr[name], values, cache)
        return cache[name]

    def _eval(self, node: ast.AST, values: dict[str, float], cache: dict[str, float]) -> float:
        ev = lambda n: self._eval(n, values, cache)  # noqa: E731
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name):
            return self(node.id, values, cache)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub, ast.Mult, ast.Div):
            a, b = ev(node.left), ev(node.right)
            return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}.get(type(node.op)) if not isinstance(
                node.op, ast.Div) else a / b
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            a, b = ev(node.left), ev(node.comparators[0])
            op = type(node.ops[0])
            return float({ast.Lt: a < b, ast.LtE: a <= b, ast.Gt: a > b, ast.GtE: a >= b}[op])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "exp" and len(node.args) == 1:
            return math.exp(ev(node.args[0]))
        raise AssertionError(f"formula element outside the written grammar: {ast.dump(node)}")


def hs3_expected(doc: dict, values: dict[str, float]) -> np.ndarray:
    """Expected events per bin (C order) of the document's histfactory_dist at ``values``:
    Σ_s normfactors × (histosys, here symmetric and linear) × shapefactor (first axis fastest) ×
    normsys (hi = lo = 1) × contents."""
    (dist,) = doc["distributions"]
    shape = tuple(ax["nbins"] for ax in dist["axes"])
    f = Formulae(doc)
    cache: dict[str, float] = {}
    total = np.zeros(int(np.prod(shape)))
    for s in dist["samples"]:
        nu = np.asarray(s["data"]["contents"], dtype=np.float64)
        factor = np.ones_like(nu)
        for m in s["modifiers"]:
            if m["type"] == "normfactor":
                factor = factor * values[m["parameter"]]
            elif m["type"] == "histosys":
                hi, lo = (np.asarray(m["data"][k]["contents"]) for k in ("hi", "lo"))
                np.testing.assert_allclose(hi - nu, nu - lo, rtol=1e-12)  # the rates' linear histosys
                nu = nu + values[m["parameter"]] * (hi - lo) / 2.0
            elif m["type"] == "normsys":
                assert m["data"] == {"hi": 1.0, "lo": 1.0}  # the constraint carrier: a factor of exactly 1
            elif m["type"] == "shapefactor":
                phf = np.array([f(p, values, cache) for p in m["parameters"]])
                factor = factor * phf.reshape(shape[::-1]).T.ravel()  # parameters: first axis fastest
            else:
                raise AssertionError(f"modifier type {m['type']}")
        total += factor * nu
    return total


def _model(interpolation: str, seed: int = 5) -> BinnedModel:
    """A 3 × 4-bin model, 3 samples, two shape systematics with ±1σ/±2σ templates; one empty
    nominal bin, one unaffected sample, one MC-empty variation."""
    m0 = simple_model(n_bins=12, n_bkg=2, seed=seed)
    m0 = BinnedModel(m0.signal.reshape(3, 4), m0.backgrounds.reshape(2, 3, 4), m0.names, m0.rel_unc, "wimp",
                     (3, 4))
    T = np.vstack([m0.signal.ravel()[None], m0.backgrounds.reshape(2, -1)])
    T[1, 5] = 0.0
    rng = np.random.default_rng(seed)
    systs = []
    for k, name in enumerate(("g1", "nr_light")):
        r = {a: np.exp(0.3 * a * rng.uniform(-1, 1, T.shape) + 0.05 * a * a) for a in (-2, -1, 1, 2)}
        tm = {a: np.where(T > 0, T * r[a], 0.0) for a in r}
        if k == 1:
            for a in tm:
                tm[a][2] = T[2]  # the second background is unaffected by nr_light
            tm[-1][0, 7] = 0.0  # an MC-empty variation
        systs.append(ShapeSystematic(name, tm[1], tm[-1], tm[2], tm[-2]))
    sig, bkg = T[0].reshape(3, 4), T[1:].reshape(2, 3, 4)
    return BinnedModel(sig, bkg, m0.names, m0.rel_unc, "wimp", (3, 4), tuple(systs), interpolation)


AXES = [{"name": "cS1", "edges": [0.0, 1.0, 2.0, 3.0]}, {"name": "log10cS2", "edges": [2.0, 2.5, 3.0, 3.5, 4.0]}]
ALPHAS = [(0.0, 0.0), (0.37, -0.81), (-1.0, 2.0), (-2.0, 1.0), (1.5, -1.5), (-2.6, 3.1), (4.7, -5.0), (-3.3, 0.2)]


@pytest.mark.parametrize("interpolation", ["log_pchip", "log_quartic", "log_code4p"])
def test_exported_formulae_give_lzflow_s_expected_events(interpolation):
    m = _model(interpolation)
    doc = hs3_document(m, AXES, "3x4 bins")
    assert json.loads(json.dumps(doc)) == doc
    params = {p["name"] for p in doc["parameter_points"][0]["parameters"]}
    assert {"alpha_g1", "alpha_nr_light", "nom_alpha_g1", "nom_alpha_nr_light"} <= params
    domain = {a["name"]: (a["min"], a["max"]) for a in doc["domains"][0]["axes"]}
    assert domain["alpha_g1"] == (-5.0, 5.0)
    sf = {s["name"]: [x for x in s["modifiers"] if x["type"] == "shapefactor"] for s in doc["distributions"][0]["samples"]}
    assert len(sf["wimp"]) == 1 and len(sf[m.names[0]]) == 1 and len(sf[m.names[1]]) == 1  # g1 acts on all three
    rng = np.random.default_rng(3)
    for mu in (0.0, 1.7):
        theta = np.where(m.constrained, 1.0 + m.rel_unc * rng.uniform(-1.0, 1.0, m.n_bkg), 1.0)
        for alpha in ALPHAS:
            values = {"mu": mu, **{m.names[b]: (theta[b] - 1.0) / m.rel_unc[b] for b in m.free_bkg},
                      **dict(zip(m.shape_parameters, alpha))}
            ours = m.expected(mu, np.r_[theta, alpha])
            np.testing.assert_allclose(hs3_expected(doc, values), ours, rtol=1e-9, atol=1e-12 * ours.max())


def test_default_workspace_log_pchip_formulae_equal_lzflow():
    """The default 40 GeV workspace (12 samples × 1600 bins, 5 systematics): every written factor equals
    lzflow's at α beyond and between the knots."""
    from lzflow.workspace import workspace_model

    ws = json.loads(gzip.decompress((DATA / "workspace_m40_systematics.json.gz").read_bytes()))
    m = workspace_model(ws)
    m = m.with_shape_systematics(m.shape_systematics, "log_pchip")
    doc = hs3_document(m, ws["axes"], "default 40 GeV")
    print(f"\n{len(doc['functions'])} functions, {len(json.dumps(doc)) / 1e6:.1f} MB")
    for alpha in ([0.3, -1.2, 2.4, -0.5, 1.0], [-3.0, 0.0, 0.7, -2.2, 5.0]):
        values = {"mu": 1.0, **{m.names[b]: 0.0 for b in m.free_bkg}, **dict(zip(m.shape_parameters, alpha))}
        ours = m.expected(1.0, np.r_[np.ones(m.n_bkg), alpha])
        np.testing.assert_allclose(hs3_expected(doc, values), ours, rtol=1e-9, atol=1e-12 * ours.max())


def test_root_reads_the_log_morphing_with_lzflow_s_nll():
    """ROOT (skipped where it cannot be imported): the exported log_pchip model imports, its nuisance
    parameters and global observables are the rates' and alpha_<name>, and RooFit's NLL differences
    between parameter points (α inside and beyond ±2σ) equal lzflow's."""
    ROOT = pytest.importorskip("ROOT", reason="ROOT is not importable")
    m = _model("log_pchip")
    doc = hs3_document(m, AXES, "3x4 bins")
    path = Path(pytest.importorskip("tempfile").mkdtemp()) / "ws.hs3.json"
    path.write_text(json.dumps(doc))
    w = ROOT.RooWorkspace("w_logmorph")
    assert ROOT.RooJSONFactoryWSTool(w).importJSON(str(path))
    mc = w.obj("ModelConfig")
    names = lambda c: {v.GetName() for v in c}  # noqa: E731
    floating = {m.names[b] for b in m.free_bkg}
    assert names(mc.GetNuisanceParameters()) == floating | set(m.shape_parameters)
    assert names(mc.GetGlobalObservables()) == {f"nom_{p}" for p in floating | set(m.shape_parameters)}
    counts = m.expected(0.0)
    nll = mc.GetPdf().createNLL(w.data("asimov_background_only"), ROOT.RooFit.GlobalObservables(mc.GetGlobalObservables()))
    rng = np.random.default_rng(9)
    values = []
    for mu, alpha in ((0.0, (0.0, 0.0)), (0.8, (0.37, -0.81)), (1.3, (-2.6, 3.1)), (0.2, (1.5, -1.5))):
        theta = np.where(m.constrained, 1.0 + m.rel_unc * rng.uniform(-1.0, 1.0, m.n_bkg), 1.0)
        w.var("mu").setVal(mu)
        for b in m.free_bkg:
            w.var(m.names[b]).setVal((theta[b] - 1.0) / m.rel_unc[b])
        for name, a in zip(m.shape_parameters, alpha):
            w.var(name).setVal(a)
        values.append((nll.getVal(), float(m.nll(m.full_params(mu, np.r_[theta, alpha]), counts))))
    (root0, lz0), *rest = values
    for root_v, lz_v in rest:
        assert abs(lz_v - lz0) > 0.1
        assert root_v - root0 == pytest.approx(lz_v - lz0, rel=1e-8, abs=1e-8)
