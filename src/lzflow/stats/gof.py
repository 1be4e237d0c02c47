"""Goodness of fit: the saturated-model likelihood ratio (Baker & Cousins) with its toy distribution.

Statistic
---------
For counts n_i, auxiliary observables a_p and the best fit (μ̂ ≥ 0, θ̂, α̂) of the binned model
(:mod:`lzflow.stats.model`), the likelihood ratio to the *saturated* model — ν_i = n_i in every
bin and every constrained parameter at its auxiliary observable — is (Baker & Cousins, "Clarification
of the use of chi-square and likelihood functions in fits to histograms", NIM 221 (1984) 437,
Eq. 13, for Poisson bins; the Gaussian constraints add their χ²)::

    χ²_λ = 2 Σ_i [ν̂_i − n_i + n_i ln(n_i / ν̂_i)] + Σ_b ((a_b − θ̂_b) / r_b)² + Σ_k (a_k − α̂_k)²
         = 2 [NLL(μ̂, θ̂, α̂; n, a) − NLL_sat(n)],      NLL_sat = Σ_i (n_i − n_i ln n_i)

(n_i ln n_i = 0 for n_i = 0, so an empty bin contributes 2 ν̂_i; fixed backgrounds contribute no
constraint term). Pieces reported: ``total`` (the line above), ``bins`` (its Poisson part),
``constraints`` (its Gaussian part) and, for a combined model (:mod:`lzflow.stats.combine`), one
piece per run: the Poisson part over that run's bin range (a shared parameter's constraint is in
``constraints``, not in a run's piece). Each piece has its own toy distribution and p-value, from
the same toys and fits.

Toy distribution
----------------
χ²_λ is asymptotically χ² with (bins − free parameters) degrees of freedom only when every bin
has many events; LZ-like templates have thousands of nearly empty bins, so the distribution is
taken from toys: generated at the best-fit point (μ̂, θ̂, α̂) with the toy generator of
:mod:`lzflow.stats.toys` (:class:`~lzflow.stats.toys.ToySampler`: Poisson counts, auxiliary
observables ~ Gauss(θ̂, r), Gauss(α̂, 1); counter-based streams keyed by (seed, mass_key,
:data:`GOF_POI_INDEX`, :data:`GOF_HYPOTHESIS`), so GOF toys never coincide with a limit's S+B
(h = 0) or B-only (h = 1) toys of the same seed), each refitted exactly as the data (μ ≥ 0), and
the statistic evaluated at its own best fit. The p-value of a piece is the fraction of converged
toys with a value ≥ the observed one, p = k/N, with the binomial error √(p(1−p)/N) and, when k = 0,
the 95 % Clopper–Pearson upper bound 1 − 0.05^(1/N). Toys whose fit did not converge are counted
(``n_failed``) and left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from .fit import BatchedFitter
from .fitresult import FitConfig, FitResult, FitStatus
from .model import BinnedModel
from .toys import ToySampler

__all__ = ["GOF_HYPOTHESIS", "GOF_POI_INDEX", "GofResult", "deviance", "constraint_chi2", "statistic_pieces",
           "best_fit", "goodness_of_fit"]

#: hypothesis index of goodness-of-fit toys in their random-stream key (0: S+B, 1: B-only toys)
GOF_HYPOTHESIS = 2
#: POI index of goodness-of-fit toys in their random-stream key
GOF_POI_INDEX = 0


def deviance(model: BinnedModel, params: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-bin Poisson deviance ``2[ν_i − n_i + n_i ln(n_i/ν_i)]`` ``(..., n_bins)`` at full parameter
    vectors ``params`` ``(..., n_par)`` (+inf where n_i > 0 and ν_i ≤ 0)."""
    params = np.asarray(params, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    nu = model.expected(params[..., 0], params[..., 1:])
    with np.errstate(divide="ignore", invalid="ignore"):
        log = np.where(n > 0, n * np.log(np.where(n > 0, n, 1.0) / np.where(nu > 0, nu, 1.0)), 0.0)
    out = 2.0 * (nu - n + log)
    return np.where((n > 0) & ~(nu > 0), np.inf, out)


def constraint_chi2(model: BinnedModel, params: np.ndarray, aux: np.ndarray) -> np.ndarray:
    """Per nuisance parameter ``((a − θ)/r)²`` (rates; 0 for fixed ones) and ``(a − α)²`` (shapes),
    ``(..., n_aux)``: twice the constraint terms of the NLL."""
    params = np.asarray(params, dtype=np.float64)
    return model.constraint_precision[1:] * (np.asarray(aux, dtype=np.float64) - params[..., 1:]) ** 2


def statistic_pieces(model: BinnedModel, params: np.ndarray, counts: np.ndarray, aux: np.ndarray,
                     pieces: Mapping[str, slice] | None = None) -> dict[str, np.ndarray]:
    """χ²_λ and its pieces at ``params`` (module docstring): ``total``, ``bins``, ``constraints`` and
    the Poisson part over each bin range of ``pieces`` (name → slice, e.g. a combination's runs)."""
    dev = deviance(model, params, counts)
    out = {"bins": dev.sum(axis=-1), "constraints": constraint_chi2(model, params, aux).sum(axis=-1)}
    out["total"] = out["bins"] + out["constraints"]
    for name, bins in (pieces or {}).items():
        if name in out:
            raise ValueError(f"piece name {name!r} clashes with total, bins or constraints")
        out[name] = dev[..., bins].sum(axis=-1)
    return out


def best_fit(model: BinnedModel, counts: np.ndarray, aux: np.ndarray | None = None,
             config: FitConfig | None = None) -> FitResult:
    """The unconditional fit (μ ≥ 0) of one dataset, with 10× the Newton iterations of a toy fit
    (as :func:`lzflow.stats.toys.generation_point`: a dataset far from the model may need many)."""
    cfg = config or FitConfig()
    fitter = BatchedFitter(model, replace(cfg, n_threads=1, max_iter=10 * cfg.max_iter))
    aux = model.nominal_nuisance() if aux is None else np.asarray(aux, dtype=np.float64)
    return fitter.fit(np.asarray(counts, dtype=np.float64)[None, :], aux[None, :], mu_fixed=None, mu_lower=0.0)


@dataclass(frozen=True)
class GofResult:
    """Observed χ²_λ pieces, their toy distributions and p-values (module docstring)."""

    observed: dict[str, float]
    toys: dict[str, np.ndarray] = field(repr=False)
    p_value: dict[str, float]
    p_error: dict[str, float]
    p_upper95: dict[str, float | None]
    best_fit: dict[str, float]
    n_toys: int
    n_failed: int
    seed: dict[str, int]

    def as_dict(self, with_toys: bool = False) -> dict[str, Any]:
        out = {"statistic": "Baker-Cousins saturated likelihood ratio chi2_lambda (NIM 221 (1984) 437)",
               "observed": self.observed, "p_value": self.p_value, "p_error": self.p_error,
               "p_upper95": self.p_upper95, "best_fit": self.best_fit, "n_toys": self.n_toys,
               "n_failed": self.n_failed, "seed": self.seed,
               "toy_quantiles": {k: dict(zip(("5", "50", "95"), np.quantile(v, [0.05, 0.5, 0.95]).tolist()))
                                 if v.size else None for k, v in self.toys.items()}}
        if with_toys:
            out["toys"] = {k: v.tolist() for k, v in self.toys.items()}
        return out


def _p_values(observed: Mapping[str, float], toys: Mapping[str, np.ndarray]) -> tuple[dict, dict, dict]:
    p, err, upper = {}, {}, {}
    for name, t in toys.items():
        n = t.size
        k = int(np.count_nonzero(t >= observed[name]))
        p[name] = k / n if n else float("nan")
        err[name] = float(np.sqrt(p[name] * (1 - p[name]) / n)) if n else float("nan")
        upper[name] = float(1.0 - 0.05 ** (1.0 / n)) if n and k == 0 else None
    return p, err, upper


def goodness_of_fit(model: BinnedModel, counts: np.ndarray, aux: np.ndarray | None = None, *, n_toys: int,
                    base_seed: int, mass_key: int, pieces: Mapping[str, slice] | None = None,
                    config: FitConfig | None = None, block_size: int = 512) -> GofResult:
    """χ²_λ of ``counts`` (and ``aux``, default nominal) with its distribution over ``n_toys`` toys
    generated at the best fit and refitted (module docstring). Raises ValueError (one line) if the
    data's own fit does not converge."""
    if isinstance(n_toys, bool) or not isinstance(n_toys, (int, np.integer)) or n_toys < 1:
        raise ValueError(f"n_toys: {n_toys!r}; expected an integer >= 1")
    counts = np.asarray(counts, dtype=np.float64).ravel()
    aux = model.nominal_nuisance() if aux is None else np.asarray(aux, dtype=np.float64)
    fit = best_fit(model, counts, aux, config)
    if fit.status[0] != FitStatus.CONVERGED:
        raise ValueError(f"the fit to the data did not converge (status {FitStatus(fit.status[0]).name}); "
                         f"expected a converged best fit to generate the toys at")
    gen = fit.params[0]
    observed = {k: float(v[0]) for k, v in statistic_pieces(model, fit.params, counts[None], aux[None], pieces).items()}
    fitter = BatchedFitter(model, replace(config or FitConfig(), n_threads=1))
    sampler = ToySampler(fitter, gen)
    values: dict[str, list[np.ndarray]] = {k: [] for k in observed}
    n_failed = 0
    for lo in range(0, int(n_toys), block_size):
        idx = np.arange(lo, min(int(n_toys), lo + block_size), dtype=np.int64)
        data, toy_aux = sampler.draw(base_seed, mass_key, GOF_POI_INDEX, GOF_HYPOTHESIS, idx)
        res = fitter.fit(data, mu_fixed=None, init=np.broadcast_to(gen, (idx.size, gen.size)).copy(),
                         mu_lower=0.0, fisher_at=gen)
        ok = res.converged
        n_failed += int(np.count_nonzero(~ok))
        stats = statistic_pieces(model, res.params[ok], sampler.dense_counts(data)[ok], toy_aux[ok], pieces)
        for k, v in stats.items():
            values[k].append(v)
    toys = {k: np.concatenate(v) for k, v in values.items()}
    p, err, upper = _p_values(observed, toys)
    return GofResult(observed, toys, p, err, upper, dict(zip(model.par_names, gen.tolist())), int(n_toys),
                     n_failed, {"base_seed": int(base_seed), "mass_key": int(mass_key), "poi_index": GOF_POI_INDEX,
                                "hypothesis": GOF_HYPOTHESIS})
