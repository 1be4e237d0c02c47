r"""Impact of each nuisance parameter on the median expected limit, and its post-fit constraint.

For a workspace's model (rate parameters θ_b with Gaussian widths r_b, shape parameters α_k with unit
widths, :mod:`lzflow.stats.model`) and each constrained parameter p:

* **impact** — the Asimov (asymptotic) median expected upper limit with every parameter profiled,
  μ_med, against the same with p *fixed* at its nominal value, μ_med^{p fixed}:
  ``impact = μ_med / μ_med^{p fixed} − 1`` (≥ 0: profiling a parameter can only widen the limit,
  up to the solver's tolerance). Fixing θ_b is ``r_b = 0``; fixing α_k drops the systematic (α_k ≡ 0).
  The parameters are ranked by impact, the quantity a physicist reads first ("which systematic
  costs the most sensitivity").
* **all shape systematics together** (with a ``systematics:`` block): the median without any of
  them (``median_sigma_cm2_without_shape_systematics``) and ``shape_systematics_impact``, the
  with/without comparison of the analysis at this mass.
* **post-fit constraint on Asimov data** — the width of p from the expected (Fisher) information
  of the background-only Asimov dataset at the nominal point, in units of its prior width:
  ``constraint = sqrt((I⁻¹)_pp) / prior``; < 1 means the data constrain p beyond its auxiliary
  measurement (e.g. a background's rate measured by its own events). On Asimov data the pull
  ``(p̂ − p₀) / prior`` is 0 by construction; it is reported from the fit as a check.

Asimov medians: :func:`lzflow.stats.asymptotic.asymptotic_limits` (Cowan, Cranmer, Gross & Vitells,
arXiv:1007.1727); the ranking is the "impact plot" of LHC analyses, computed here on the expected
limit rather than on μ̂ because lzflow projects sensitivity.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["impacts"]


def _median(model: Any, method: str, test_stat: str) -> float:
    from .stats.asymptotic import asymptotic_limits

    return float(asymptotic_limits(model, method=method, test_stat=test_stat, bands=(0,)).expected[0])


def _fixed(model: Any, name: str) -> Any:
    """The model with parameter ``name`` fixed at nominal."""
    if name in model.names:
        rel = np.array(model.rel_unc, dtype=float)
        rel[model.names.index(name)] = 0.0
        return model.with_rel_unc(rel)
    return model.with_shape_systematics([s for s in model.shape_systematics if f"alpha_{s.name}" != name])


def _asimov_fit(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """(best-fit full parameters, covariance of the free ones) on the B-only Asimov dataset."""
    from .stats.fit import BatchedFitter

    fitter = BatchedFitter(model)
    counts, aux = model.asimov(0.0)
    res = fitter.fit(counts[None, :], aux[None, :], mu_fixed=None, mu_lower=None)
    params = res.params[0]
    info = fitter.expected_information(model.full_params(0.0), mu_free=True)
    return params, np.linalg.inv(info)


def impacts(model: Any, spec: Mapping[str, Any], sigma_ref_cm2: float) -> dict[str, Any]:
    """Impacts of every constrained parameter of ``model`` (module docstring), ranked; ``spec``:
    ``method`` (``CLs+b`` or ``CLs``) and ``test_statistic`` of the analysis."""
    method = "cls" if spec["method"] == "CLs" else "clsb"
    test_stat = spec["test_statistic"]
    profiled = _median(model, method, test_stat)
    params, cov = _asimov_fit(model)
    cols = list(model.fit_columns(True))
    prior = np.r_[0.0, model.rel_unc, np.ones(model.n_shape)]
    nominal = np.r_[0.0, model.nominal_nuisance()]
    rows = []
    for index, name in enumerate(model.par_names):
        if index == 0 or prior[index] == 0.0:
            continue
        fixed = _median(_fixed(model, name), method, test_stat)
        k = cols.index(index)
        rows.append({
            "parameter": name,
            "kind": "shape" if index > model.n_bkg else "rate",
            "median_sigma_cm2_fixed": fixed * sigma_ref_cm2,
            "impact": profiled / fixed - 1.0,
            "asimov_pull": float((params[index] - nominal[index]) / prior[index]),
            "asimov_constraint": float(np.sqrt(cov[k, k]) / prior[index]),
        })
    rows.sort(key=lambda r: -r["impact"])
    out = {"method": spec["method"], "median_sigma_cm2_profiled": profiled * sigma_ref_cm2, "parameters": rows}
    if model.n_shape:  # the same analysis without its shape systematics (rates still profiled)
        without = _median(model.with_shape_systematics(), method, test_stat)
        out["median_sigma_cm2_without_shape_systematics"] = without * sigma_ref_cm2
        out["shape_systematics_impact"] = profiled / without - 1.0
    return out
