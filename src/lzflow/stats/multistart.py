"""Further starts of the shape fits: a toy keeps the lowest minimum that any of its starts reaches.

With shape systematics (K > 0) the NLL is not convex in α. The multiplicative morphings
(:mod:`lzflow.stats.logmorph`) make ln T(α) flat at α = 0 in every bin whose ±1σ anchors lie on
the same side of the nominal (log_pchip's knot slope is 0 there, log_quartic's is small), so the
data term is even in α to first order and, where the data fluctuate up in such bins, concave:
the NLL along such an α has two wells at about ±|α̂| (measured on the default 40 GeV workspace at
the median limit, 200 S+B toys: the exact Hessian at the generation point has a negative
eigenvalue in 147 toys with log_pchip and 51 with log_quartic, mostly along α_g1). A Newton fit
from the generation point (α ≈ 0, on the ridge) picks one well by the sign of a small gradient,
not by depth: 17 of 200 unconditional fits (log_pchip) and 4 (log_quartic) ended above the
lowest minimum found by any start, by up to 0.70 NLL units — and so did Migrad from the same
start (12 and 5 toys).

Cure (:func:`restart`): after the first Newton run of a block (and its retry) every toy is fitted
again from each start of ``FitConfig.extra_starts`` and keeps the lowest NLL of a converged run
(a further start must be lower by more than :data:`MARGIN` to replace the first, so equal minima
reached by different starts never change the result); a toy whose result came from a further
start gets strategy :attr:`~lzflow.stats.fitresult.Strategy.NEWTON_RESTART` (counted, never
silent). The starts, in the fitted parameters:

* ``"aux"``: the default start (α and θ at their auxiliary observables, μ from the excess:
  :meth:`~lzflow.stats.fit.BatchedFitter.default_init`) — on the far side of the ridge when the
  toy's a_α lies there;
* ``"alpha0"``: the given start with every α set to 0 (nominal shapes);
* ``"reflect"``: the first result with every α̂ mirrored, α → −α̂: the other well of an even
  profile;
* ``"half"``: the first result with every α̂ halved, α → α̂/2: a minimum between the nominal and
  α̂ that a full Newton step jumped over (log_pchip's flat knots at ±1σ, ±2σ).

Pruning (:mod:`lzflow.stats.restart_prune`, on by default): a start that lies at a minimum the toy
already knows (its first result or a converged further start) is not run, and a run is stopped as
soon as it enters such a minimum's well near its bottom; neither can end lower than the incumbent
by more than :data:`MARGIN` (the argument in :mod:`lzflow.stats.restart_prune`), so the records
are the same as without pruning — bit for bit on the 1,600 toys per interpolation tested, not
proven for every toy — for 24–31 % fewer Newton iterations (docs/method.md).

Rate-only fits (K = 0) are convex and never restarted (their numbers and speed are unchanged).
Everything is deterministic: the same toys in the same blocks give bit-identical results.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Callable

import numpy as np

from .fitresult import FitConfig, FitResult, FitStatus, Strategy
from .restart_prune import KnownMinima

__all__ = ["START_KINDS", "MARGIN", "start_points", "restart", "search_fit_config"]

#: the further starts known to :func:`start_points`
START_KINDS = ("aux", "alpha0", "reflect", "half")
#: a further start replaces the result only if its NLL is lower by more than this (NLL units)
MARGIN = 1e-9


def start_points(kind: str, fitter: Any, sub: Any, mu_fixed: float | None, cols: np.ndarray,
                 init: np.ndarray, found: np.ndarray, n_shape: int) -> np.ndarray:
    """Start vectors ``(n, len(cols))`` of the further start ``kind`` (module docstring) for the
    toys of ``sub`` (prepared data), whose given full start vectors are ``init`` ``(n, n_par)``
    and first results (fitted columns) ``found`` ``(n, len(cols))``; the α are the last
    ``n_shape`` columns. Not yet projected onto the bounds."""
    if kind == "aux":
        return fitter.default_init(sub, mu_fixed)[:, cols]
    if kind == "alpha0":
        y = init[:, cols].copy()
        y[:, cols.size - n_shape :] = 0.0
        return y
    if kind in ("reflect", "half"):
        y = found.copy()
        y[:, cols.size - n_shape :] *= -1.0 if kind == "reflect" else 0.5
        return y
    raise ValueError(f"FitConfig.extra_starts: unknown start {kind!r}; expected one of {', '.join(START_KINDS)}")


def restart(res: FitResult, ids: np.ndarray, cols: np.ndarray, mu_fixed: float | None,
            kinds: tuple[str, ...], make_start: Callable[[str, np.ndarray], np.ndarray],
            run: Callable[[np.ndarray, np.ndarray, Callable | None], Any], prune: bool = True) -> int:
    """Fit the toys ``ids`` (rows of ``res``, already fitted once) again from each start of
    ``kinds`` and keep, per toy, the lowest NLL of a converged run (lower by more than
    :data:`MARGIN`; a toy whose first fit failed takes any converged run). ``make_start(kind,
    ids)`` gives the start vectors (fitted columns), ``run(start, ids, prune)`` a
    :class:`~lzflow.stats.newton.NewtonRun` of those toys (``prune``: the hook of
    :func:`~lzflow.stats.newton.minimise`). With ``prune`` starts and runs in the well of a
    minimum the toy already knows are stopped (:mod:`lzflow.stats.restart_prune`; the same results
    on every toy tested).
    Iterations of every run are added to ``res.n_iter``. Returns the number of toys whose result
    a further start replaced."""
    replaced = np.zeros(ids.size, dtype=bool)
    known = KnownMinima(res.params[ids][:, cols], res.nll[ids], res.status[ids] == FitStatus.CONVERGED)
    local = np.arange(ids.size)
    for kind in kinds:
        start = make_start(kind, ids)
        loc = local[~known.near(local, start)] if prune else local
        if not loc.size:
            continue
        with np.errstate(over="ignore", invalid="ignore"):  # a far start may overflow: NLL inf, never kept
            r = run(start[loc], ids[loc], known.pruner(loc) if prune else None)
        sel = ids[loc]
        res.n_iter[sel] += r.n_iter
        old = res.nll[sel]
        old_ok = res.status[sel] == FitStatus.CONVERGED
        conv = r.status == FitStatus.CONVERGED
        better = conv & (~old_ok | (r.nll < old - MARGIN))
        if better.any():
            keep_iter, keep_first = res.n_iter[sel[better]].copy(), res.first_failure[sel[better]].copy()
            type(r)(**{f.name: getattr(r, f.name)[better] for f in fields(r)}).store(res, sel[better], cols, mu_fixed, Strategy.NEWTON_RESTART)
            res.n_iter[sel[better]], res.first_failure[sel[better]] = keep_iter, keep_first
            replaced[loc[better]] = True
        known.add(loc, r.y, r.nll, conv)
    return int(replaced.sum())


def search_fit_config(search: str) -> FitConfig | None:
    """The fit settings of a toy job's ``shape_fit_search`` (:mod:`lzflow.searchconfig`): None (the
    :class:`FitConfig` defaults, every further start) for ``"multistart"``, no further start for
    ``"single_start"`` (each fit runs once, from its given start)."""
    if search == "multistart":
        return None
    if search == "single_start":
        return FitConfig(extra_starts=(), extra_starts_fixed=())
    raise ValueError(f"shape_fit_search: unknown search {search!r}; expected multistart or single_start")
