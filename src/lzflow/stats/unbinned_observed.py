"""One observed dataset of events under the unbinned likelihood: its fits, its test statistic and
the generation point of toys made at its fits (docs/data.md, "Unbinned observed data").

The data are the in-window events ``x_e = (cS1, log10 cS2)`` of an event list and the auxiliary
observables ``a`` (the nominal values, as for binned data). With the unbinned NLL of
:class:`lzflow.stats.unbinned_model.UnbinnedModel` (extended likelihood, Barlow, NIM A297 (1990)
496)::

    NLL(μ, θ) = Σ_s ν_s − Σ_e ln( Σ_s ν_s f_s(x_e) ) + Σ_b (a_b − θ_b)² / (2 r_b²)

the dataset's fits are those of :class:`lzflow.stats.unbinned.UnbinnedFitter` on a single "toy"
(the events, aggregated per template bin at interpolation order 0), single-threaded:

* :meth:`UnbinnedObserved.fit`: μ free (μ ≥ ``mu_lower``) or fixed;
* :meth:`UnbinnedObserved.q`: the test statistic on a POI grid as :func:`lzflow.stats.hypotest.observed_q`
  computes it for binned data (unconditional fit, then each conditional fit from its point with μ set;
  arXiv:1007.1727 eqs. 8–16);
* :meth:`UnbinnedObserved.generation_point`: (μ, θ̂̂(μ)) of these events — the point where the toys of an
  unblinded unbinned analysis are generated (the binned path fits the binned data there, module
  :mod:`lzflow.stats.toys`; here the conditional MLE of the likelihood that tests them);
* :meth:`UnbinnedObserved.nll`: the NLL at any parameter vectors (the model's reference NLL, used
  for the observed Hessian of the post-fit pulls).
"""

from __future__ import annotations

from functools import cached_property
from typing import Sequence

import numpy as np

from .fitresult import FitConfig, FitResult
from .teststat import evaluate_test_statistic, mu_lower_bound
from .unbinned import UnbinnedFitter, fit_minuit_events
from .unbinned_model import EventData, EventToys, UnbinnedModel

__all__ = ["UnbinnedObserved"]


class UnbinnedObserved:
    """The in-window events ``x``, ``y`` (cS1 [phd], log10 cS2) and auxiliary observables ``aux``
    ``(n_bkg,)`` of one dataset, with the unbinned ``model`` (module docstring)."""

    def __init__(self, model: UnbinnedModel, x: np.ndarray, y: np.ndarray, aux: np.ndarray,
                 config: FitConfig | None = None):
        self.model = model
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        if self.x.shape != self.y.shape or self.x.ndim != 1:
            raise ValueError(f"events: x {self.x.shape} and y {self.y.shape}; expected two 1D arrays of one length")
        self.aux = np.asarray(aux, dtype=np.float64).ravel()
        self.fitter = UnbinnedFitter(model, FitConfig(**{**(config or FitConfig()).__dict__, "n_threads": 1}))

    @property
    def n_events(self) -> int:
        return int(self.x.size)

    @property
    def signal_total(self) -> float:
        """Expected signal events at μ = 1 (the full-resolution template's total)."""
        return float(self.model.truth.signal_total)

    @property
    def toy_source(self) -> "UnbinnedObserved":
        """What :func:`lzflow.observedfit.toy_request` takes to generate toys at this dataset's fits."""
        return self

    @cached_property
    def events(self) -> EventToys:
        """The events as one :class:`EventToys` (toy index 0)."""
        return EventToys.from_lists([self.x], [self.y], self.aux[None, :])

    @cached_property
    def prepared(self) -> EventData:
        """The events in the fitter's layout (computed once)."""
        return self.fitter.prepare(self.events)

    def free_columns(self, mu_fixed: float | None) -> np.ndarray:
        return self.fitter.free_columns(mu_fixed)

    def expected_information(self, params: np.ndarray, mu_free: bool = True) -> np.ndarray:
        """Expected information at ``params`` (of the full-resolution binned truth model, as the
        unbinned fitter uses it)."""
        return self.fitter.expected_information(params, mu_free)

    def fit(self, mu_fixed: float | None = None, mu_lower: float | None = 0.0,
            init: np.ndarray | None = None) -> FitResult:
        """One fit of the events (one row): μ free (≥ ``mu_lower``) or fixed at ``mu_fixed``."""
        start = None if init is None else np.asarray(init, dtype=np.float64).reshape(1, -1)
        return self.fitter.fit(self.prepared, mu_fixed=mu_fixed, init=start, mu_lower=mu_lower)

    def fit_minuit(self, mu_fixed: float | None = None, mu_lower: float | None = 0.0,
                   init: np.ndarray | None = None, tol: float = 1e-8) -> FitResult:
        """The same fit with iminuit Migrad (:func:`lzflow.stats.unbinned.fit_minuit_events`): the reference."""
        start = None if init is None else np.asarray(init, dtype=np.float64).reshape(1, -1)
        return fit_minuit_events(self.fitter, self.prepared, mu_fixed=mu_fixed, init=start, mu_lower=mu_lower,
                                 tol=tol)

    def nll(self, params: np.ndarray) -> np.ndarray:
        """NLL of the events at parameter vectors ``(..., n_par)`` (:meth:`UnbinnedModel.nll`)."""
        return self.model.nll(params, self.x, self.y, self.aux)

    def q(self, mu_grid: Sequence[float], test_stat: str = "qtilde") -> np.ndarray:
        """The test statistic of the events at every grid value (``q0``: at μ = 0 for each)."""
        ru = self.fit(mu_fixed=None, mu_lower=mu_lower_bound(test_stat))
        mus = np.asarray(mu_grid, dtype=np.float64)
        out = np.empty(mus.size)
        for k, mu in enumerate(mus):
            mu_eval = 0.0 if test_stat == "q0" else float(mu)
            init = ru.params.copy()
            init[:, 0] = mu_eval
            rc = self.fit(mu_fixed=mu_eval, init=init)
            out[k] = evaluate_test_statistic(test_stat, rc.nll, ru.nll, ru.params[:, 0], mu_eval)[0]
        return out

    def generation_point(self, mu: float) -> np.ndarray:
        """(μ, θ̂̂(μ)): the conditional fit of the events at ``mu`` from θ = the auxiliary
        observables (clipped to ≥ 0.05 as the binned generation point starts)."""
        m = self.model
        init = np.r_[float(mu), np.where(m.constrained, np.clip(self.aux, 0.05, None), 1.0)]
        r = self.fit(mu_fixed=float(mu), init=init)
        return r.params[0].copy()
