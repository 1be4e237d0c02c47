"""Fits of many "observed" datasets at once: the test statistic and the toy generation point of
each, with every fit batched over the datasets (a coverage study's pseudo-experiments are just
datasets; fitting them one call each costs the per-call overhead and a Migrad-sized fallback
budget per dataset, batched only the genuine failures fall back to Migrad, dataset by dataset).

* :func:`observed_q_many` — q_μ of each dataset at one tested μ, exactly as
  :func:`lzflow.stats.hypotest.observed_q` makes it for one dataset: the unconditional fit from the
  fitter's default start (μ ≥ :func:`~lzflow.stats.teststat.mu_lower_bound`), then the conditional
  fit at μ started from the unconditional minimum, q = 2 (NLL(μ, θ̂̂) − NLL(μ̂, θ̂)) with the
  conventions of :func:`~lzflow.stats.teststat.evaluate_test_statistic`;
* :func:`generation_points_many` — (μ, θ̂̂(μ)) of each dataset, exactly as
  :func:`lzflow.stats.toys.generation_point` makes it for one (start: θ from the auxiliary
  observables clipped to ≥ 0.05, α from theirs; with shape parameters 10× the Newton iterations).

Each dataset's fit is its own minimisation (no parameter is shared between rows); the batch only
changes floating-point details of the vectorised linear algebra (BLAS kernels chosen by the batch
shape), so a caller that needs bit-identical reruns of a subset must fit the same batches
(canonical blocks of datasets).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .fit import BatchedFitter
from .fitresult import FitConfig, FitResult
from .model import BinnedModel
from .teststat import evaluate_test_statistic, mu_lower_bound

__all__ = ["ObservedFits", "observed_q_many", "generation_points_many"]


class ObservedFits:
    """q of ``n`` datasets at one μ: ``q`` ``(n,)`` and the two fits (``uncond``, ``cond``,
    :class:`~lzflow.stats.fitresult.FitResult` rows in dataset order)."""

    def __init__(self, q: np.ndarray, uncond: FitResult, cond: FitResult):
        self.q = q
        self.uncond = uncond
        self.cond = cond

    def info(self, i: int) -> dict:
        """Dataset ``i``'s fit summary, as :func:`~lzflow.stats.hypotest.observed_q` reports it."""
        return {"mu_hat": float(self.uncond.params[i, 0]), "status_uncond": int(self.uncond.status[i]),
                "status_cond": [int(self.cond.status[i])]}


def _single_threaded(model: BinnedModel, config: FitConfig | None, max_iter_factor: int = 1) -> BatchedFitter:
    cfg = config or FitConfig()
    return BatchedFitter(model, replace(cfg, n_threads=1, max_iter=max_iter_factor * cfg.max_iter))


def observed_q_many(model: BinnedModel, counts: np.ndarray, aux: np.ndarray, mu: float,
                    test_stat: str = "qtilde", config: FitConfig | None = None) -> ObservedFits:
    """Test statistic of each row of ``counts`` ``(n, n_bins)`` / ``aux`` ``(n, n_aux)`` at ``mu``
    (module docstring); a dataset whose fits fail gets a non-finite q (NaN), as with
    :func:`~lzflow.stats.hypotest.observed_q`."""
    if test_stat == "q0":
        raise ValueError(f"test_stat: observed_q_many tests one upper-limit μ ('qtilde' or 'q'), got {test_stat!r}")
    fitter = _single_threaded(model, config)
    c = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    a = np.atleast_2d(np.asarray(aux, dtype=np.float64))
    ru = fitter.fit(c, a, mu_fixed=None, mu_lower=mu_lower_bound(test_stat))
    init = ru.params.copy()
    init[:, 0] = float(mu)
    rc = fitter.fit(c, a, mu_fixed=float(mu), init=init)
    q = evaluate_test_statistic(test_stat, rc.nll, ru.nll, ru.params[:, 0], float(mu))
    return ObservedFits(np.asarray(q, dtype=np.float64), ru, rc)


def generation_points_many(model: BinnedModel, mu: float, counts: np.ndarray, aux: np.ndarray,
                           config: FitConfig | None = None) -> FitResult:
    """Conditional fits at ``mu`` of each dataset (rows of ``counts``, ``aux``) from the start of
    :func:`~lzflow.stats.toys.generation_point`; ``.params[i]`` is dataset i's generation point
    (whatever its status, as there)."""
    c = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    a = np.atleast_2d(np.asarray(aux, dtype=np.float64))
    nb = model.n_bkg
    theta = np.where(model.constrained, np.clip(a[:, :nb], 0.05, None), 1.0)
    nuis = np.concatenate([theta, a[:, nb : nb + model.n_shape]], axis=1)
    init = model.full_params(float(mu), nuis)
    fitter = _single_threaded(model, config, 10 if model.n_shape else 1)
    return fitter.fit(c, a, mu_fixed=float(mu), init=init)
