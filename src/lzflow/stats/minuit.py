"""Reference fits with iminuit (Migrad + analytic gradient), one toy at a time.

Same NLL, parameters, bounds and outputs as the batched Newton fits (:mod:`lzflow.stats.newton`);
used as the cross-check of the vectorised fits and as their last-resort fallback. This module
knows no likelihood: a fitter (the binned :class:`lzflow.stats.fit.BatchedFitter` or the
unbinned :class:`lzflow.stats.unbinned.UnbinnedFitter`) hands it, per toy, the NLL and its
gradient over the free parameters as closures (:class:`MigradProblem`, built by the fitter's
``minuit_problem``) and Migrad minimises them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
from iminuit import Minuit

from .fitresult import FitResult, FitStatus, Strategy, fittable_toys, lower_bounds, upper_bounds
from .multistart import MARGIN, start_points

__all__ = ["MigradProblem", "MinuitFitter", "migrad_into", "fit_toys_minuit"]


@dataclass(frozen=True)
class MigradProblem:
    """NLL of one toy and its analytic gradient, functions of the free parameters."""

    nll: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]


class MinuitFitter(Protocol):
    """What a fitter provides for the Migrad fits of its toys."""

    model: Any  # n_par, par_names

    def free_columns(self, mu_fixed: float | None) -> np.ndarray: ...

    def default_init(self, data: Any, mu_fixed: float | None = None) -> np.ndarray: ...

    def expected_information(self, params: np.ndarray, mu_free: bool = True) -> np.ndarray: ...

    def minuit_problem(self, data: Any, t: int, mu_fixed: float | None) -> MigradProblem | None: ...


def migrad_into(res: FitResult, t: int, nll: Callable[[np.ndarray], float],
                grad: Callable[[np.ndarray], np.ndarray], fitter: MinuitFitter, init: np.ndarray,
                lb: np.ndarray, cols: np.ndarray, mu_fixed: float | None, tol: float,
                ub: np.ndarray | None = None) -> None:
    """Minimise ``nll`` (free parameters ``cols``, lower bounds ``lb``, upper bounds ``ub`` or none:
    Migrad limits) with Migrad from the full start
    vector ``init`` and write row ``t`` of ``res``: full parameters, NLL, status (MINUIT_FAILED unless
    Migrad reports a valid minimum after strategy 1, then 2), iterations, projected-gradient norm, EDM
    and at-bound flags. Initial steps: 1σ from ``fitter.expected_information`` at the start."""
    m = fitter.model
    n_par = m.n_par
    names = [m.par_names[c] for c in cols]
    y0 = np.maximum(np.asarray(init, float)[cols], np.where(np.isfinite(lb), lb, -np.inf))
    if ub is not None:
        y0 = np.minimum(y0, ub)
    full0 = np.ones(n_par)
    full0[cols] = np.maximum(y0, 0.0)
    shape = cols.size - m.n_shape  # the shape parameters α (last) can be negative
    full0[cols[shape:]] = y0[shape:]
    if mu_fixed is not None:
        full0[0] = mu_fixed
    try:
        info = fitter.expected_information(full0, mu_free=mu_fixed is None)
        step = np.sqrt(np.clip(np.diag(np.linalg.inv(info)), 1e-16, None))
    except np.linalg.LinAlgError:
        step = np.full(cols.size, 0.1)
    step = np.where(np.isfinite(step) & (step > 0), step, 0.1)
    # Migrad's bound transform has zero slope exactly at a limit: start strictly inside,
    # and inside the domain (ν > 0 where n > 0)
    y0 = np.where(np.isfinite(lb) & (y0 <= lb + 0.1 * step), lb + 0.1 * step, y0)
    if ub is not None:
        y0 = np.where(np.isfinite(ub) & (y0 >= ub - 0.1 * step), ub - 0.1 * step, y0)
    if not np.isfinite(nll(y0)) or nll(y0) >= 1e300:
        y0 = np.r_[np.maximum(y0[:shape], 0.05), y0[shape:]]
    for _ in range(6):  # α towards 0 (ν ≥ 0 everywhere at α = 0 for μ, θ ≥ 0)
        if shape == cols.size or (np.isfinite(nll(y0)) and nll(y0) < 1e300):
            break
        y0 = np.r_[y0[:shape], 0.5 * y0[shape:]]
    mn = Minuit(nll, y0, grad=grad, name=names)
    mn.errordef = Minuit.LIKELIHOOD
    mn.tol = tol
    mn.print_level = 0
    hi = np.full(cols.size, np.inf) if ub is None else ub
    mn.limits = [(None if not np.isfinite(v) else float(v), None if not np.isfinite(u) else float(u))
                 for v, u in zip(lb, hi)]
    for j in range(cols.size):
        mn.errors[j] = float(step[j])
    mn.strategy = 1
    mn.migrad()
    if not mn.valid:
        mn.strategy = 2
        mn.migrad()
    y = np.array(mn.values)
    full = np.ones(n_par)
    full[cols] = y
    if mu_fixed is not None:
        full[0] = mu_fixed
    res.params[t] = full
    res.nll[t] = nll(y)
    res.status[t] = FitStatus.CONVERGED if mn.valid else FitStatus.MINUIT_FAILED
    res.strategy[t] = Strategy.MINUIT
    res.n_iter[t] = mn.nfcn
    g = grad(y)
    at_lo = y <= lb + 1e-9 * np.maximum(1.0, np.abs(lb) if np.all(np.isfinite(lb)) else 1.0)
    at_hi = np.zeros(cols.size, dtype=bool)
    if ub is not None:
        fin = np.isfinite(ub)
        at_hi[fin] = y[fin] >= ub[fin] - 1e-9 * np.maximum(1.0, np.abs(ub[fin]))
    at = at_lo | at_hi
    gp = np.where((at_lo & (g > 0)) | (at_hi & (g < 0)), 0.0, g)
    res.grad_norm[t] = float(np.sqrt(gp @ gp))
    res.edm[t] = float(mn.fmin.edm)
    ab = np.zeros(n_par, dtype=bool)
    ab[cols] = at
    res.at_bound[t] = ab


def fit_toys_minuit(
    fitter: MinuitFitter, data: Any, mu_fixed: float | None = None, init: np.ndarray | None = None,
    mu_lower: float | None = 0.0, tol: float = 1e-6, extra_starts: tuple[str, ...] = (),
) -> FitResult:
    """Fit each toy of ``data`` (the fitter's prepared toys: ``n``, ``valid``, ``subset``) with
    Migrad (strategy 1, then 2 if invalid). ``init``: full start vectors (default
    ``fitter.default_init``); μ fixed at ``mu_fixed`` or bounded below by ``mu_lower``. Toys
    with invalid input are NON_FINITE; toys for which the fitter has no problem (data no
    allowed parameter value can explain) are INFEASIBLE with NLL = +inf.

    ``extra_starts`` (with shape parameters): Migrad again from each further start of
    :mod:`lzflow.stats.multistart` (``"aux"``, ``"alpha0"``, ``"reflect"``, ``"half"``: the same
    start vectors as the batched fits, made from this toy's first Migrad result), keeping the lowest
    NLL of a valid minimum (lower by more than 1e-9, or any valid one if the first was not): the
    reference for the further-start Newton fits, which otherwise compare their global search with one
    local Migrad run. ``n_iter`` sums the function calls of every run."""
    res = FitResult.empty(data.n, fitter.model.n_par)
    if init is None:
        init = fitter.default_init(data, mu_fixed)
    cols = fitter.free_columns(mu_fixed)
    lb = lower_bounds(cols.size, mu_fixed, mu_lower, fitter.model.n_shape)
    ub = upper_bounds(cols.size, fitter.model.n_shape)
    for t in fittable_toys(res, data.valid):
        problem = fitter.minuit_problem(data, t, mu_fixed)
        if problem is None:
            res.status[t] = res.first_failure[t] = FitStatus.INFEASIBLE
            res.nll[t] = np.inf
            res.params[t] = init[t]
            continue
        migrad_into(res, t, problem.nll, problem.grad, fitter, init[t], lb, cols, mu_fixed, tol, ub)
        if extra_starts and fitter.model.n_shape:
            _further_starts(res, t, problem, fitter, data, init[t], lb, ub, cols, mu_fixed, tol, extra_starts)
    return res


def _further_starts(res: FitResult, t: int, problem: MigradProblem, fitter: MinuitFitter, data: Any,
                    init: np.ndarray, lb: np.ndarray, ub: np.ndarray, cols: np.ndarray,
                    mu_fixed: float | None, tol: float, kinds: tuple[str, ...]) -> None:
    """Migrad from each start of ``kinds`` for toy ``t`` (:func:`fit_toys_minuit`)."""
    one = data.subset(np.array([t]))
    trial = FitResult.empty(1, fitter.model.n_par)
    for kind in kinds:
        y = start_points(kind, fitter, one, mu_fixed, cols, init[None, :],
                         res.params[t : t + 1, cols], fitter.model.n_shape)[0]
        start = np.array(init, dtype=np.float64, copy=True)
        start[cols] = y
        with np.errstate(over="ignore", invalid="ignore"):  # a far start may overflow: NLL inf
            migrad_into(trial, 0, problem.nll, problem.grad, fitter, start, lb, cols, mu_fixed, tol, ub)
        calls = int(res.n_iter[t]) + int(trial.n_iter[0])
        ok_old = res.status[t] == FitStatus.CONVERGED
        if trial.status[0] == FitStatus.CONVERGED and (not ok_old or trial.nll[0] < res.nll[t] - MARGIN):
            first = res.first_failure[t]
            res.put(np.array([t]), trial)
            res.first_failure[t] = first
        res.n_iter[t] = calls
