"""Reference fits with iminuit (Migrad + analytic gradient), one toy at a time.

Same NLL, parameters, bounds and outputs as the batched fitter (:mod:`lzflow.stats.fit`); used
as the cross-check of the vectorised Newton fits and as their last-resort fallback.
Only bins with n_i > 0 enter the log term; the others contribute the constant-gradient term
Σ_i ν_i (see :mod:`lzflow.stats.model`).
"""

from __future__ import annotations

import numpy as np
from iminuit import Minuit

from .fit import BatchedFitter, FitConfig, FitResult, FitStatus, PreparedData, Strategy, fittable_toys, lower_bounds
from .model import BinnedModel

__all__ = ["fit_minuit", "fit_minuit_prepared", "migrad_into"]


def migrad_into(res: FitResult, t: int, nll, grad, fitter, init: np.ndarray, lb: np.ndarray,
                cols: np.ndarray, mu_fixed: float | None, tol: float) -> None:
    """Minimise ``nll`` (free parameters ``cols``, lower bounds ``lb``) with Migrad from the full start
    vector ``init`` and write row ``t`` of ``res``: full parameters, NLL, status (MINUIT_FAILED unless
    Migrad reports a valid minimum after strategy 1, then 2), iterations, projected-gradient norm, EDM
    and at-bound flags. Initial steps: 1σ from ``fitter.expected_information`` at the start (binned
    or unbinned fitter)."""
    m = fitter.model
    n_par = m.n_par
    names = [m.par_names[c] for c in cols]
    y0 = np.maximum(np.asarray(init, float)[cols], np.where(np.isfinite(lb), lb, -np.inf))
    full0 = np.ones(n_par)
    full0[cols] = np.maximum(y0, 0.0)
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
    if not np.isfinite(nll(y0)) or nll(y0) >= 1e300:
        y0 = np.maximum(y0, 0.05)
    mn = Minuit(nll, y0, grad=grad, name=names)
    mn.errordef = Minuit.LIKELIHOOD
    mn.tol = tol
    mn.print_level = 0
    mn.limits = [(None if not np.isfinite(v) else float(v), None) for v in lb]
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
    at = y <= lb + 1e-9 * np.maximum(1.0, np.abs(lb) if np.all(np.isfinite(lb)) else 1.0)
    gp = np.where(at & (g > 0), 0.0, g)
    res.grad_norm[t] = float(np.sqrt(gp @ gp))
    res.edm[t] = float(mn.fmin.edm)
    ab = np.zeros(n_par, dtype=bool)
    ab[cols] = at
    res.at_bound[t] = ab


def _one_toy_problem(fitter: BatchedFitter, data: PreparedData, t: int, cols: np.ndarray,
                     offset: np.ndarray):
    """Dense arrays (n>0 bins only) of toy ``t`` for the free parameters ``cols``."""
    X = fitter._templates[cols].T  # (n_bins, p)
    nD = data.nD[t]
    posD = np.flatnonzero(nD > 0)
    bins = [fitter.dense_bins[posD]]
    counts = [nD[posD]]
    sel = data.e_toy == t
    bins.append(fitter.sparse_bins[data.e_bin[sel]])
    counts.append(data.e_n[sel])
    b = np.concatenate(bins)
    n = np.concatenate(counts)
    return X[b], offset[b], n, X.sum(axis=0), float(offset.sum())


def fit_minuit_prepared(
    fitter: BatchedFitter,
    data: PreparedData,
    mu_fixed: float | None = None,
    init: np.ndarray | None = None,
    mu_lower: float | None = 0.0,
    tol: float = 1e-6,
) -> FitResult:
    """Fit each toy of ``data`` with Migrad (strategy 1, then 2 if invalid)."""
    m = fitter.model
    res = FitResult.empty(data.n, m.n_par)
    if init is None:
        init = fitter.default_init(data, mu_fixed)
    cols = np.r_[0, 1 + m.free_bkg].astype(int) if mu_fixed is None else (1 + m.free_bkg).astype(int)
    offset = fitter._fixed_template.copy()
    if mu_fixed is not None:
        offset = offset + mu_fixed * m.signal
    prec = fitter._full_prec[cols]
    lb = lower_bounds(cols.size, mu_fixed, mu_lower)
    for t in fittable_toys(res, data.valid):
        Xn, cn, nn, tvec, const = _one_toy_problem(fitter, data, t, cols, offset)
        a = np.zeros(cols.size)
        bk = cols > 0
        a[bk] = data.aux[t, cols[bk] - 1]

        def nll(y: np.ndarray) -> float:
            nu = Xn @ y + cn
            if np.any(nu <= 0):
                return 1e300
            return float(y @ tvec + const - nn @ np.log(nu) + 0.5 * prec @ (y - a) ** 2)

        def grad(y: np.ndarray) -> np.ndarray:
            nu = Xn @ y + cn
            return tvec - (nn / nu) @ Xn + prec * (y - a)

        migrad_into(res, t, nll, grad, fitter, init[t], lb, cols, mu_fixed, tol)
    return res


def fit_minuit(
    model: BinnedModel,
    counts: np.ndarray,
    aux: np.ndarray | None = None,
    mu_fixed: float | None = None,
    init: np.ndarray | None = None,
    mu_lower: float | None = 0.0,
    tol: float = 1e-6,
) -> FitResult:
    """iminuit reference path: fit each row of ``counts`` ``(n, n_bins)`` separately.

    Same conventions and outputs as :func:`lzflow.stats.fit.fit_batch`.
    """
    fitter = BatchedFitter(model, FitConfig(minuit_fallback=False))
    data = fitter.prepare(counts, aux)
    return fit_minuit_prepared(fitter, data, mu_fixed=mu_fixed, init=init, mu_lower=mu_lower, tol=tol)
