"""Observed results of one mass: best fit with its profile-likelihood interval, post-fit pulls,
and the local discovery p-value from toys (``limit.json`` → ``"observed"``, written by
:mod:`lzflow.merge` in an unblinded analysis; docs/data.md). The data are an
:class:`lzflow.observedfit.ObservedData`: binned counts with the binned likelihood, or the
in-window events with the unbinned one (:class:`lzflow.stats.unbinned_observed.UnbinnedObserved`);
every formula below holds for either NLL.

Best fit and interval
---------------------
μ̂ maximises the likelihood with μ ≥ 0 (the physical region, as the limits' q̃). The 68.27 %
interval is the profile-likelihood one (Wilks, one parameter):
``{μ ≥ 0 : t(μ) = 2[NLL(μ, θ̂̂(μ)) − NLL(μ̂, θ̂)] ≤ 1}``, its edges found by Brent's method on
conditional fits; the lower edge is 0 when t(0) ≤ 1 (an interval that includes no signal). Cross
sections are μ × σ_ref.

Pulls
-----
For each nuisance parameter j (floating background normalisations θ_b, shape parameters α_k):
``pull_j = (ĵ − a_j) / σ_j`` with a_j its auxiliary observable (1 for θ, 0 for α) and σ_j its
prior width (``rel_unc`` for θ, 1 for α); ``constraint_j = σ̂_j / σ_j`` with σ̂_j from the
inverse of the observed Hessian of the NLL at the best fit (central differences with steps of
10⁻³ of the expected-information widths; the expected information itself where the observed
Hessian is not positive definite, e.g. μ̂ on its bound with a signal-only bin), μ profiled.

Discovery
---------
q₀ = 2[NLL(0, θ̂̂(0)) − NLL(μ̂, θ̂)] for μ̂ > 0, else 0 (arXiv:1007.1727, eq. 12). Its p-value
``p₀ = P(q₀ ≥ q₀,obs | μ = 0)`` is the fraction of background-only toys generated at the
observed data's (0, θ̂̂(0)) (:func:`lzflow.stats.toys.run_toys` with ``observed=``), with its
68.27 % Clopper–Pearson interval; Z = Φ⁻¹(1 − p₀). When no toy reaches q₀,obs, p₀ is reported as
the upper bound of that interval (``p_value_is_upper_bound``) and Z as a lower bound. The
asymptotic ``p₀ = Φ(−√q₀)`` (half-χ²₁) is given beside it. The toys use their own seed stream
(POI index :data:`DISCOVERY_POI_INDEX`, B-only), independent of the limit's toys. The p-value is
local (this mass only); no look-elsewhere correction over masses is made.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .observedfit import as_observed, toy_request
from .stats.special import norm_isf, norm_sf

__all__ = ["DISCOVERY_POI_INDEX", "INTERVAL_CL", "best_fit", "postfit_pulls", "discovery_pvalue",
           "observed_section", "observed_results"]

#: the seed stream of the discovery toys: POI index 999 (MAX_POI − 1, above any grid index) with
#: the B-only hypothesis index
DISCOVERY_POI_INDEX = 999
#: the best-fit interval's confidence level (±1σ of a Gaussian), t(μ) = 1
INTERVAL_CL = 0.6827


def best_fit(data: Any, counts: np.ndarray | None = None, aux: np.ndarray | None = None) -> dict[str, Any]:
    """μ̂ ≥ 0, the full best-fit parameter vector and the 68.27 % profile-likelihood interval
    (module docstring) of ``data``, an :class:`lzflow.observedfit.ObservedData` (binned or unbinned),
    or of a binned model with ``counts`` and ``aux``."""
    from scipy.optimize import brentq  # here, not at import: merge imports this module for every mass

    data = as_observed(data, counts, aux)
    ru = data.fit(mu_fixed=None, mu_lower=0.0)
    mu_hat, nll_hat = float(ru.params[0, 0]), float(ru.nll[0])

    def t(mu: float) -> float:
        init = ru.params.copy()
        init[:, 0] = mu
        rc = data.fit(mu_fixed=float(mu), init=init)
        return 2.0 * (float(rc.nll[0]) - nll_hat)

    scale = max(mu_hat, 1.0 / max(data.signal_total, 1e-300))  # ~ one signal event
    t0 = t(0.0)
    lower = 0.0 if t0 <= 1.0 else brentq(lambda m: t(m) - 1.0, 0.0, mu_hat, xtol=1e-6 * scale, rtol=1e-8)
    hi, step = mu_hat + scale, scale
    for _ in range(60):
        if t(hi) > 1.0:
            break
        hi, step = hi + step, 2.0 * step
    upper = brentq(lambda m: t(m) - 1.0, mu_hat, hi, xtol=1e-6 * scale, rtol=1e-8)
    return {"mu_hat": mu_hat, "params": ru.params[0].copy(), "nll": nll_hat, "status": int(ru.status[0]),
            "interval_mu": [float(lower), float(upper)], "t_at_zero": float(t0)}


def _hessian(f, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Central-difference Hessian of ``f`` (vectorised over leading axes) at ``x``, steps ``h``."""
    n = x.size
    e = np.diag(h)
    pts = []
    for i in range(n):
        for j in range(n):
            for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                pts.append(x + si * e[i] + sj * e[j])
    v = f(np.array(pts)).reshape(n, n, 4)
    return (v[..., 0] - v[..., 1] - v[..., 2] + v[..., 3]) / (4.0 * np.outer(h, h))


def postfit_pulls(data: Any, params: np.ndarray, counts: np.ndarray | None = None,
                  aux: np.ndarray | None = None) -> dict[str, Any]:
    """Pull and constraint of every nuisance parameter at the best fit ``params`` (module
    docstring) of ``data`` (as :func:`best_fit`); ``{"parameters": {name: {...}}, "covariance":
    how σ̂ was obtained}``."""
    data = as_observed(data, counts, aux)
    model, aux = data.model, data.aux
    cols = np.asarray(data.free_columns(None))
    info = data.expected_information(params, mu_free=True)
    h = 1e-3 / np.sqrt(np.clip(np.diag(info), 1e-300, None))

    def nll(sub: np.ndarray) -> np.ndarray:
        full = np.broadcast_to(params, sub.shape[:-1] + params.shape).copy()
        full[..., cols] = sub
        return data.nll(full)

    hess = _hessian(nll, params[cols], h)
    how = "observed Hessian (central differences)"
    try:
        if not np.all(np.isfinite(hess)):
            raise np.linalg.LinAlgError
        np.linalg.cholesky(0.5 * (hess + hess.T))
        cov = np.linalg.inv(0.5 * (hess + hess.T))
    except np.linalg.LinAlgError:
        cov, how = np.linalg.inv(info), "expected information (the observed Hessian is not positive definite)"
    names = model.par_names
    nb = model.n_bkg
    out = {}
    for k, col in enumerate(cols):
        if col == 0:
            continue
        is_theta = col <= nb
        prior = float(model.rel_unc[col - 1]) if is_theta else 1.0
        centre = float(aux[col - 1])  # aux = [a_θ (n_bkg), a_α (K)]
        value = float(params[col])
        out[names[col]] = {"fitted": value, "prefit": centre, "prior_sigma": prior,
                           "pull": (value - centre) / prior,
                           "constraint": float(np.sqrt(cov[k, k])) / prior if cov[k, k] > 0 else float("nan")}
    return {"parameters": out, "covariance": how}


def discovery_pvalue(data: Any, n_toys: int, base_seed: int, mass_key: int, block_size: int) -> dict[str, Any]:
    """q₀ of ``data`` (:class:`lzflow.observedfit.ObservedData`) and its toy p-value from
    background-only toys at the data's (0, θ̂̂(0)) (module docstring), of the data's likelihood."""
    from .stats.pvalues import Ensemble
    from .stats.quality import GOOD, toy_quality
    from .stats.toys import run_toys

    q_obs = float(data.q([0.0], "q0")[0])
    toys = run_toys(data.model, toy_request(base_seed=int(base_seed), mass_key=int(mass_key),
                                            poi_index=DISCOVERY_POI_INDEX, hypothesis="b", mu=0.0, test_stat="q0",
                                            toy_indices=np.arange(int(n_toys)), block_size=int(block_size),
                                            n_threads=1, observed=data.toy_source))
    good = toy_quality(toys, "q0")[:, 0] == GOOD
    ens = Ensemble(toys.q[:, 0], good)
    p = float(ens.fraction(q_obs))
    lo, hi = (float(v) for v in ens.interval(q_obs))
    bound = ens.count(q_obs) == 0
    p_report = hi if bound else p
    return {"q0": q_obs, "p_value": p_report, "p_value_interval": [lo, hi], "p_value_is_upper_bound": bool(bound),
            "significance": float(norm_isf(p_report)) if p_report > 0 else float("inf"),
            "significance_is_lower_bound": bool(bound),
            "p_value_asymptotic": float(norm_sf(np.sqrt(max(q_obs, 0.0)))),
            "significance_asymptotic": float(np.sqrt(max(q_obs, 0.0))),
            "n_toys": int(ens.n_total), "n_toys_used": int(ens.n),
            "toys_at_or_above": int(ens.count(q_obs)),
            "seed_stream": [int(base_seed), int(mass_key), DISCOVERY_POI_INDEX, 1],
            "generated_at": "mu = 0, the observed data's conditional fit theta_hat_hat(0)", "scope": "local"}


def observed_section(data: Any, limits: Mapping[str, Any], method: str, sigma_ref: float,
                     events: Mapping[str, Any], discovery: Mapping[str, Any]) -> dict[str, Any]:
    """The ``"observed"`` block of ``limit.json``: limits (CLs+b, CLs, PCL of each; ``sigma_cm2``
    = the configured method's power-constrained limit, as ``upper_limit_sigma_cm2`` is), best fit,
    discovery, pulls, events (the binned list's accounting), ``salted`` (the list was salted by
    ``lzflow salt``: every observed number includes fake signal events; docs/data.md, "Salting")."""
    fit = best_fit(data)
    pulls = postfit_pulls(data, fit["params"])
    per_method = {name: {"sigma_cm2": s["observed_sigma_cm2"], "sigma_cm2_err": _scaled(s["observed_mu_err"], sigma_ref),
                         "status": s["observed_status"], "pcl_sigma_cm2": s["pcl_sigma_cm2"],
                         "pcl_status": s["pcl_status"]}
                  for name, s in limits.items()}
    lo, hi = fit["interval_mu"]
    return {
        "sigma_cm2": per_method[method]["pcl_sigma_cm2"],
        "method": method,
        "limits": per_method,
        "best_fit": {"mu": fit["mu_hat"], "sigma_cm2": fit["mu_hat"] * sigma_ref, "fit_status": fit["status"],
                     "interval_mu": [lo, hi], "interval_sigma_cm2": [lo * sigma_ref, hi * sigma_ref],
                     "interval_cl": INTERVAL_CL, "interval_excludes_zero": bool(lo > 0),
                     "t_at_zero": fit["t_at_zero"],
                     "method": "profile likelihood, mu >= 0, t(mu) = 2 dNLL <= 1 (Wilks)"},
        "discovery": dict(discovery),
        "pulls": pulls["parameters"],
        "pulls_covariance": pulls["covariance"],
        "events": dict(events),
        # the list's provenance says lzflow salt wrote it: every number above includes fake signal events
        "salted": bool((events.get("salt") or {}).get("salted")),
    }


def observed_results(obs: Any, doc: Mapping[str, Any], spec: Mapping[str, Any], settings: Mapping[str, Any],
                     data: Mapping[str, Any], mass_key: int) -> dict[str, Any]:
    """:func:`observed_section` of the dataset ``obs`` (:class:`lzflow.observedfit.ObservedData`:
    binned counts or unbinned events) for :func:`lzflow.merge.limit_document`: its limits
    (``doc["limits"]``), the toys' seed and block (``settings``), ``spec["discovery_toys"]``
    discovery toys, the accounting of the event list ``data`` (:data:`lzflow.layout.OBSERVED_DATA`)
    and ``likelihood``: which likelihood the fits used (binned counts or unbinned events)."""
    from .observeddata import observed_summary

    disc = discovery_pvalue(obs, int(spec["discovery_toys"]), settings["seed"], mass_key, settings["toy_block"])
    section = observed_section(obs, doc["limits"], doc["method"], float(doc["sigma_ref_cm2"]),
                               observed_summary(data), disc)
    section["likelihood"] = settings["likelihood"]["likelihood"]
    return section


def _scaled(x: float | None, factor: float) -> float | None:
    return None if x is None else float(x) * factor
