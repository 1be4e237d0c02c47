"""Statistics core of lzflow: binned and unbinned likelihoods, batched fits, toys, limits.

Conventions (``docs/method.md``, section "Statistics conventions"): the test statistics of Cowan,
Cranmer, Gross, Vitells (arXiv:1007.1727) with q = 2ΔNLL, CLs+b / CLs p-values with Clopper–Pearson
MC errors, fit failures excluded and counted, the power-constrained limit of arXiv:1105.3166 at
Φ(−1), Asimov asymptotics. Everything works on numpy arrays; file formats, workflow and CLI live
elsewhere.

Modules (one concern each):

* :mod:`~lzflow.stats.model` — :class:`BinnedModel` (templates, constraints, NLL);
* :mod:`~lzflow.stats.unbinned_model` — :class:`UnbinnedModel` (interpolated densities) and its
  event toys; :mod:`~lzflow.stats.interpolate` — the RooHistPdf-like interpolated densities;
* :mod:`~lzflow.stats.fitresult` — :class:`FitStatus`, :class:`Strategy`, :class:`FitConfig`,
  :class:`FitResult`: what every fitter is told and returns;
* :mod:`~lzflow.stats.newton` — the one projected-Newton engine (line search, retries, blocks);
* :mod:`~lzflow.stats.binned_nll`, :mod:`~lzflow.stats.fit` — the binned problem and
  :class:`BatchedFitter`; :mod:`~lzflow.stats.unbinned` — the unbinned problem and fitter;
* :mod:`~lzflow.stats.minuit` — iminuit (Migrad on the closures a fitter hands it): the
  reference and last-resort fits;
* :mod:`~lzflow.stats.teststat` — q̃_μ, q_μ, q₀;
* :mod:`~lzflow.stats.request` — :class:`ToyRequest` (seeds, indices, hypothesis, tested μ);
* :mod:`~lzflow.stats.toys` — reproducible toy generation + fits, binned or unbinned
  (:func:`run_toys`); :mod:`~lzflow.stats.toyresult` — their per-toy records;
* :mod:`~lzflow.stats.pvalues` — toy p-values CLs+b, CLb, CLs with Clopper–Pearson errors;
* :mod:`~lzflow.stats.quality` — which toys count (failed fits excluded and counted, with causes);
* :mod:`~lzflow.stats.crossing` — inverting p-value curves at α (log-linear in ln p);
* :mod:`~lzflow.stats.bands` — :data:`BANDS`, :data:`POWER_THRESHOLD` (their one home), expected
  bands and their grid-edge bounds, PCL;
* :mod:`~lzflow.stats.inversion` — a grid of toys inverted (observed limit, bands, PCL floor),
  bootstrap errors, grid extension;
* :mod:`~lzflow.stats.hypotest` — runs the toys of a limit or discovery test in memory
  (:func:`toy_limits`, :func:`discovery_potential_toys`);
* :mod:`~lzflow.stats.construction` — the two-sided (Feldman–Cousins-style) construction from the
  same toy records (:func:`two_sided_result`); :mod:`~lzflow.stats.belt_toys` — its toys in memory;
* :mod:`~lzflow.stats.asymptotic` — Asimov limits, p-value formulae, discovery potential;
* :mod:`~lzflow.stats.pyhf_export` — pyhf JSON workspace;
* :mod:`~lzflow.stats.synthetic` — synthetic LZ-like models for tests and benchmarks.
"""

from importlib import import_module
from typing import Any

# ``crossing`` is both a submodule and its main function: once any module imports the submodule,
# Python binds the package attribute to it, so the function is imported here, eagerly (numpy only).
from .crossing import Crossing, crossing, limits_from_curves, refine_grid

#: Public name → the submodule that defines it. The package imports nothing eagerly (PEP 562):
#: a toy job that needs only the toy machinery does not pay for scipy.stats/optimize (asymptotics),
#: ~1 s of start-up per job on these machines (benchmarks/bench_startup.py).
_EXPORTS: dict[str, str] = {
    "AsymptoticLimits": "asymptotic",
    "asymptotic_limits": "asymptotic",
    "discovery_potential": "asymptotic",
    "pvalues_asymptotic": "asymptotic",
    "qtilde_cdf": "asymptotic",
    "BANDS": "bands",
    "POWER_THRESHOLD": "bands",
    "expected_bands": "bands",
    "power_constrained": "bands",
    "Crossing": "crossing",
    "crossing": "crossing",
    "limits_from_curves": "crossing",
    "refine_grid": "crossing",
    "BatchedFitter": "fit",
    "fit_batch": "fit",
    "fit_minuit": "fit",
    "FitConfig": "fitresult",
    "FitResult": "fitresult",
    "FitStatus": "fitresult",
    "Strategy": "fitresult",
    "DiscoveryToys": "hypotest",
    "ToyLimits": "hypotest",
    "discovery_potential_toys": "hypotest",
    "TwoSidedResult": "construction",
    "two_sided_result": "construction",
    "observed_q": "hypotest",
    "toy_limits": "hypotest",
    "bootstrap_errors": "inversion",
    "refine_toy_grid": "inversion",
    "BinnedModel": "model",
    "ModelError": "model",
    "PValues": "pvalues",
    "binomial_interval": "pvalues",
    "pvalue_curves": "pvalues",
    "pvalues_from_toys": "pvalues",
    "to_pyhf_workspace": "pyhf_export",
    "toy_quality": "quality",
    "evaluate_test_statistic": "teststat",
    "BONLY_POI_INDEX": "toys",
    "HYPOTHESES": "toys",
    "ToyRequest": "toys",
    "ToyResult": "toys",
    "generate_toys": "toys",
    "generation_point": "toys",
    "mass_key": "toys",
    "run_toys": "toys",
    "toy_generator": "toys",
}


__all__ = [
    "AsymptoticLimits", "asymptotic_limits", "discovery_potential", "pvalues_asymptotic",
    "qtilde_cdf", "BatchedFitter", "FitConfig", "FitResult", "FitStatus", "Strategy",
    "fit_batch", "BANDS", "POWER_THRESHOLD", "Crossing", "PValues", "ToyLimits", "crossing",
    "expected_bands", "limits_from_curves", "observed_q", "power_constrained", "pvalue_curves",
    "pvalues_from_toys", "refine_grid", "toy_limits", "binomial_interval", "bootstrap_errors", "refine_toy_grid",
    "toy_quality", "DiscoveryToys", "discovery_potential_toys", "fit_minuit", "BinnedModel", "ModelError",
    "to_pyhf_workspace", "evaluate_test_statistic", "BONLY_POI_INDEX", "HYPOTHESES", "ToyRequest", "ToyResult",
    "generate_toys", "generation_point", "mass_key", "run_toys", "toy_generator", "TwoSidedResult", "two_sided_result",
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
