"""The observed dataset as the observed results see it: one small interface over binned counts and
unbinned events (:mod:`lzflow.observed` computes best fit, interval, pulls and discovery p-value
through it; :mod:`lzflow.merge` and :mod:`lzflow.toyjobs` take its test statistic and its toys'
generation point).

An :class:`ObservedData` has a ``model`` (``par_names``, ``n_bkg``, ``rel_unc``), the auxiliary
observables ``aux``, ``signal_total`` (expected signal events at μ = 1) and

* ``fit(mu_fixed, mu_lower, init)`` → a one-row :class:`~lzflow.stats.fitresult.FitResult`;
* ``nll(params)`` → the NLL at parameter vectors ``(..., n_par)``;
* ``free_columns(mu_fixed)``, ``expected_information(params, mu_free)`` (the fitter's);
* ``q(mu_grid, test_stat)`` → the observed test statistic on a grid;
* ``toy_source``: what :func:`toy_request` takes to generate toys at the data's fits.

Two implementations: :class:`BinnedObserved` (counts on the workspace grid, the binned likelihood
:class:`~lzflow.stats.model.BinnedModel`) and :class:`lzflow.stats.unbinned_observed.UnbinnedObserved`
(the in-window events, :class:`~lzflow.stats.unbinned_model.UnbinnedModel`). Binned data generate
their toys as before (``ToyRequest.observed = (counts, aux)``, the θ̂̂ fit inside
:func:`lzflow.stats.toys.run_toys`); unbinned data at their own conditional MLEs
(``ToyRequest.gen_params`` = :meth:`UnbinnedObserved.generation_point` of the request's μ).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol, Sequence

import numpy as np

from .stats.fit import BatchedFitter
from .stats.fitresult import FitConfig, FitResult
from .stats.request import ToyRequest

__all__ = ["ObservedData", "BinnedObserved", "as_observed", "toy_request"]


class ObservedData(Protocol):
    """What the observed results need of a dataset (module docstring)."""

    model: Any
    aux: np.ndarray

    @property
    def signal_total(self) -> float: ...

    @property
    def toy_source(self) -> Any: ...

    def fit(self, mu_fixed: float | None = None, mu_lower: float | None = 0.0,
            init: np.ndarray | None = None) -> FitResult: ...

    def nll(self, params: np.ndarray) -> np.ndarray: ...

    def free_columns(self, mu_fixed: float | None) -> np.ndarray: ...

    def expected_information(self, params: np.ndarray, mu_free: bool = True) -> np.ndarray: ...

    def q(self, mu_grid: Sequence[float], test_stat: str = "qtilde") -> np.ndarray: ...


class BinnedObserved:
    """Binned counts ``(n_bins,)`` on the workspace grid and auxiliary observables of a
    :class:`~lzflow.stats.model.BinnedModel` (the fits of :class:`BatchedFitter`, one thread)."""

    def __init__(self, model: Any, counts: np.ndarray, aux: np.ndarray):
        self.model = model
        self.counts = np.asarray(counts, dtype=np.float64).ravel()
        self.aux = np.asarray(aux, dtype=np.float64).ravel()
        self.fitter = BatchedFitter(model, FitConfig(n_threads=1))

    @property
    def signal_total(self) -> float:
        return float(self.model.signal_total)

    @property
    def toy_source(self) -> tuple[np.ndarray, np.ndarray]:
        return self.counts, self.aux

    def fit(self, mu_fixed: float | None = None, mu_lower: float | None = 0.0,
            init: np.ndarray | None = None) -> FitResult:
        start = None if init is None else np.asarray(init, dtype=np.float64).reshape(1, -1)
        return self.fitter.fit(self.counts[None, :], self.aux[None, :], mu_fixed=mu_fixed, init=start,
                               mu_lower=mu_lower)

    def nll(self, params: np.ndarray) -> np.ndarray:
        return self.model.nll(params, self.counts, self.aux)

    def free_columns(self, mu_fixed: float | None) -> np.ndarray:
        return np.asarray(self.fitter.free_columns(mu_fixed))

    def expected_information(self, params: np.ndarray, mu_free: bool = True) -> np.ndarray:
        return self.fitter.expected_information(params, mu_free=mu_free)

    def q(self, mu_grid: Sequence[float], test_stat: str = "qtilde") -> np.ndarray:
        from .stats.hypotest import observed_q

        return observed_q(self.model, self.counts, self.aux, mu_grid, test_stat)[0]


def as_observed(data: Any, counts: np.ndarray | None = None, aux: np.ndarray | None = None) -> ObservedData:
    """``data`` itself when it is an :class:`ObservedData`; a :class:`BinnedObserved` of the binned
    model ``data`` with ``counts`` and ``aux`` otherwise (the binned call ``f(model, counts, aux)``)."""
    if counts is None and aux is None:
        return data
    if counts is None or aux is None:
        raise TypeError("a binned model needs both counts and aux")
    return BinnedObserved(data, counts, aux)


def toy_request(*, observed: Any = None, **fields: Any) -> ToyRequest:
    """A :class:`~lzflow.stats.request.ToyRequest` whose toys are generated at the fits of
    ``observed``: None (the Asimov background-only dataset) or binned ``(counts, aux)`` as
    ``ToyRequest.observed``; an unbinned dataset (an object with ``generation_point``, its
    ``toy_source``) as the explicit generation point (μ_gen, θ̂̂(μ_gen)) of its events."""
    if observed is None or isinstance(observed, tuple):
        return ToyRequest(observed=observed, **fields)
    request = ToyRequest(**fields)
    return replace(request, gen_params=observed.generation_point(request.mu_generation))
