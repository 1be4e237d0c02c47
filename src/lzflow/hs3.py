"""HS3 export of a workspace: the pyhf workspace of :mod:`lzflow.stats.pyhf_export` written in the
HEP Statistics Serialization Standard (HS3 v0.2) so that ROOT ≥ 6.30 reads it as a HistFactory
model with its ModelConfig (``RooJSONFactoryWSTool(ws).importJSON(path)``).

One parameter name per quantity in lzflow, pyhf and HS3: the document is translated from
:func:`~lzflow.stats.pyhf_export.to_pyhf_workspace`, so the parameters, their bounds and the
modifiers are pyhf's by construction —

* ``mu``: the POI, ``normfactor`` of the signal (bounds as in pyhf);
* ``<background>`` (e.g. ``B8``, lzflow's ``BinnedModel.names``): the Gaussian-constrained rate of
  a floating background, a ``histosys`` with hi/lo = B_b (1 ± r_b) on α_b = (θ_b − 1)/r_b, a unit
  Gaussian (``"constraint": "Gauss"``). The yield B_b (1 + r_b α_b) is exactly linear, and every
  HistFactory interpolation code is (codes 0, 4 and pyhf's code4p coincide on symmetric hi/lo).
  Domain [max(−5, −1/r_b), 5]: the lower end keeps the rate ≥ 0 (θ_b ≥ 0 as in lzflow), e.g.
  DSN at r = 50 %: [−2, 5];
* fixed backgrounds (r_b = 0) carry no modifier and no parameter.

Each modifier names its parameter in ``parameter`` (HS3 §HistFactory: "a component ``parameter``
… relating to the name … of parameters controlling this modifier"); without it ROOT invents
``alpha_<name>`` with the default range [−5, 5].

Global observables: HS3 leaves the auxiliary measurement of a ``Gauss`` modifier implicit; ROOT's
importer creates ``nom_<parameter>`` (and the constraint ``<parameter>Constraint``), and fills the
ModelConfig's global observables with the *constant* parameters of the analysis' domains that no
distribution over the observables uses (``RooJSONFactoryWSTool.cxx``, ``importAnalysis``). So the
document declares each ``nom_<parameter>`` in ``default_domain`` ([−10, 10], as ROOT's own HS3
export writes them) and as ``const`` at 0 in ``parameter_points/default_values``: HS3 §2.7 asks
that every parameter be in the analysis' domain or constant in its parameter point. The analysis
``upper_limit`` (POI ``mu``) is read into a ModelConfig named ``ModelConfig`` (``misc/ROOT_internal``,
the name RooStats scripts expect) whose nuisance parameters are the rates above.

Layout: one channel (``lz``, the distribution ``model_lz``) over the axes (cS1, log10cS2) with
regular binning; contents flattened in C order (cS1 slow, log10cS2 fast), the order of ROOT's
``RooDataHist`` for two observables (first one slowest). Data: ``asimov_background_only`` (Σ_b B_b,
unrounded) unless ``observed`` is given.

Shape systematics (issue 12) with the additive ``code4p`` morphing are written as pyhf writes
them: a ``histosys`` ``alpha_<name>`` on every sample it affects (hi/lo = the ±1σ templates,
domain [−5, 5], global observable ``nom_alpha_<name>``). ROOT 6.40's ``histfactory_dist`` importer
morphs every ``histosys`` with ``PiecewiseInterpolation`` code 4 — pyhf's and lzflow's code 4p —
and sets it positive-definite (a sample's morphed bin is clipped at 0; lzflow and pyhf do not clip,
so the two likelihoods differ only where a template has gone negative). The multiplicative
morphings (``log_quartic``, ``log_pchip``, ``log_code4p``) are not a ``histosys``: ROOT's
``PiecewiseInterpolation`` codes (0, 1, 2, 4, 5, 6) are each defined by the ±1σ templates alone and
act on T, so none holds the ±2σ knots of log_quartic/log_pchip, and codes 1/5 agree with log_code4p
only at 0, ±1 and beyond ±1σ. They are written exactly instead (:mod:`lzflow.hs3_logmorph`): each
affected sample gets a ``shapefactor`` whose per-bin parameters are ``generic_function`` factors
exp(Σ_k Σ_m B_m(α_k) C_mk) (the basis functions themselves ``generic_function`` of ``alpha_<name>``),
and each ``alpha_<name>`` its unit Gaussian constraint through a ``normsys`` with hi = lo = 1 (a factor
of exactly 1); ROOT 6.40 reads it with RooFit NLL differences equal to lzflow's (1e-8,
``tests/unit/test_hs3_logmorph.py``).

References: HS3 standard, https://hep-statistics-serialization-standard.github.io (parts/histfactory,
§2.5 domains, §2.6 parameter points, §2.7 analyses); ROOT ``roofit/hs3/src/RooJSONFactoryWSTool.cxx``
and ``JSONFactories_HistFactory.cxx`` (6.40).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from . import __version__
from .exceptions import WorkspaceError
from .hs3_logmorph import log_morph_hs3
from .stats.model import BinnedModel
from .stats.pyhf_export import to_pyhf_workspace

__all__ = ["hs3_document", "global_observable", "CHANNEL", "ANALYSIS", "DISTRIBUTION",
           "GLOBAL_OBSERVABLE_RANGE"]

#: the channel (pyhf) and the HistFactory distribution (HS3; ROOT names the channel after ``model_``)
CHANNEL = "lz"
DISTRIBUTION = f"model_{CHANNEL}"
#: the analysis (and the ROOT ModelConfig built from it)
ANALYSIS = "upper_limit"
#: range of the global observables ``nom_<parameter>`` (what ROOT's own HS3 export writes)
GLOBAL_OBSERVABLE_RANGE = (-10.0, 10.0)


def global_observable(parameter: str) -> str:
    """ROOT's name of the auxiliary measurement of a ``Gauss``-constrained modifier's parameter."""
    return f"nom_{parameter}"


def _modifier(mod: Mapping[str, Any]) -> dict[str, Any]:
    """One pyhf modifier as an HS3 modifier (``parameter`` = pyhf's name)."""
    if mod["type"] == "normfactor":
        return {"type": "normfactor", "name": mod["name"], "parameter": mod["name"]}
    if mod["type"] == "histosys":
        return {"type": "histosys", "name": mod["name"], "parameter": mod["name"], "constraint": "Gauss",
                "data": {"hi": {"contents": mod["data"]["hi_data"]}, "lo": {"contents": mod["data"]["lo_data"]}}}
    raise WorkspaceError(f"pyhf modifier {mod['name']!r} has type {mod['type']!r}; expected normfactor or histosys")


def _regular_axes(axes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """HS3 regular axes (name, min, max, nbins) of lzflow's axes (name, edges)."""
    out = []
    for ax in axes:
        edges = np.asarray(ax["edges"], dtype=np.float64)
        if edges.size < 2 or not np.allclose(np.diff(edges), (edges[-1] - edges[0]) / (edges.size - 1),
                                             rtol=1e-9, atol=0.0):
            raise WorkspaceError(f"axis {ax['name']!r}: edges are not regular; expected equal-width bins")
        out.append({"name": ax["name"], "min": float(edges[0]), "max": float(edges[-1]), "nbins": int(edges.size - 1)})
    return out


def hs3_document(model: BinnedModel, axes: Sequence[Mapping[str, Any]], description: str,
                 observed: np.ndarray | None = None) -> dict[str, Any]:
    """The HS3 document of ``model`` (module docstring). ``axes``: lzflow's ``[{"name", "edges"}]``
    of the two template axes; ``observed``: counts (any shape, C order) or None for the
    background-only Asimov data set."""
    hs3_axes = _regular_axes(axes)
    log = bool(model.n_shape) and model.interpolation != "code4p"
    spec = to_pyhf_workspace(model.with_shape_systematics() if log else model, observed, channel=CHANNEL)
    (channel,) = spec["channels"]
    samples = [{"name": s["name"], "data": {"contents": s["data"]}, "modifiers": [_modifier(m) for m in s["modifiers"]]}
               for s in channel["samples"]]
    config = spec["measurements"][0]["config"]
    poi = config["poi"]
    bounds = {p["name"]: p["bounds"][0] for p in config["parameters"]}
    inits = {p["name"]: p.get("inits", [0.0])[0] for p in config["parameters"]}
    functions: list[dict[str, Any]] = []
    if log:  # the exact multiplicative morphing (lzflow.hs3_logmorph)
        functions, shapefactors = log_morph_hs3(model.morph.C, model.interpolation, model.shape_parameters,
                                                [s["name"] for s in samples], [ax["nbins"] for ax in hs3_axes])
        for s, mod in shapefactors.items():
            samples[s]["modifiers"].append(mod)
        for par in model.shape_parameters:  # a factor of exactly 1 that carries alpha's unit Gaussian constraint
            samples[0]["modifiers"].append({"type": "normsys", "name": par, "parameter": par, "constraint": "Gauss",
                                            "data": {"hi": 1.0, "lo": 1.0}})
            bounds[par], inits[par] = [-5.0, 5.0], 0.0
    constrained = sorted({m["parameter"] for s in samples for m in s["modifiers"] if "constraint" in m})
    domain = [{"name": name, "min": float(lo), "max": float(hi)} for name, (lo, hi) in bounds.items()]
    domain += [{"name": global_observable(p), "min": GLOBAL_OBSERVABLE_RANGE[0], "max": GLOBAL_OBSERVABLE_RANGE[1]}
               for p in constrained]
    point = [{"name": name, "value": float(inits[name])} for name in bounds]
    point += [{"name": global_observable(p), "value": 0.0, "const": True} for p in constrained]
    data_name = "asimov_background_only" if observed is None else "observed"
    (obs,) = spec["observations"]
    return {
        "metadata": {"hs3_version": "0.2", "packages": [{"name": "lzflow", "version": __version__}],
                     "description": description},
        **({"functions": functions} if functions else {}),
        "distributions": [{"name": DISTRIBUTION, "type": "histfactory_dist", "axes": hs3_axes, "samples": samples}],
        "data": [{"name": data_name, "type": "binned", "axes": hs3_axes, "contents": obs["data"]}],
        "likelihoods": [{"name": "likelihood", "distributions": [DISTRIBUTION], "data": [data_name]}],
        "domains": [{"name": "default_domain", "type": "product_domain", "axes": domain}],
        "parameter_points": [{"name": "default_values", "parameters": point}],
        "analyses": [{"name": ANALYSIS, "likelihood": "likelihood", "parameters_of_interest": [poi],
                      "domains": ["default_domain"], "init": "default_values"}],
        "misc": {"ROOT_internal": {"ModelConfigs": {ANALYSIS: {"mcName": "ModelConfig", "pdfName": DISTRIBUTION}}}},
    }

