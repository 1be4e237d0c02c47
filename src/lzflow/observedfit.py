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

__all__ = ["ObservedData", "BinnedObserved", "as_observed", "toy_request", "observed_toy_limit"]


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


def observed_toy_limit(obs: ObservedData, mu_grid: Sequence[float], n_sb: int, n_b: int, base_seed: int,
                       mass_key: int, cl: float = 0.9, method: str = "clsb", test_stat: str = "qtilde",
                       power_threshold: float = 0.1587, block_size: int = 256) -> Any:
    """The toy inversion of one dataset ``obs`` (binned or unbinned) on a POI grid, in memory: S+B
    toys (``n_sb`` per point, seed index = grid index) and ``n_b`` B-only toys (seed index
    :data:`~lzflow.stats.request.BONLY_POI_INDEX`), all generated at ``obs``'s fits
    (:func:`toy_request`), inverted with its observed q (:func:`lzflow.stats.inversion.invert_toys`)
    after the grid-edge extension of :func:`lzflow.stats.inversion.refine_toy_grid` — the
    procedure of ``lzflow merge`` (methods CLs+b and CLs, π_crit ``power_threshold`` for the
    PCL floor, loglinear interpolation). Returns the :class:`~lzflow.stats.inversion.Inversion`
    of ``method``."""
    from .stats.inversion import invert_toys, refine_toy_grid, toy_grid
    from .stats.pvalues import pvalue_table
    from .stats.request import BONLY_POI_INDEX
    from .stats.toys import run_toys

    mus = np.asarray(mu_grid, dtype=np.float64)
    common = dict(base_seed=base_seed, mass_key=mass_key, test_stat=test_stat, block_size=block_size, n_threads=1,
                  observed=obs.toy_source)
    b_index = np.arange(int(n_b))

    def points(mu_new: np.ndarray, idx_new: np.ndarray) -> Any:
        sb = [run_toys(obs.model, toy_request(poi_index=int(k), hypothesis="sb", mu=float(mu),
                                              toy_indices=np.arange(int(n_sb)), **common))
              for mu, k in zip(mu_new, idx_new)]
        b = run_toys(obs.model, toy_request(poi_index=BONLY_POI_INDEX, hypothesis="b", mu=float(mu_new[0]),
                                            mu_test=mu_new, toy_indices=b_index, **common))
        return toy_grid(mu_new, obs.q(mu_new, test_stat), sb, b, test_stat, idx_new)

    grid, _ = refine_toy_grid(points(mus, np.arange(mus.size)), points, 1.0 - cl, ("clsb", "cls"), power_threshold)
    table = pvalue_table(grid.q_obs, grid.sb, grid.b)
    return invert_toys(grid, 1.0 - cl, method, power_threshold, table=table)
