"""The projected-Newton engine shared by the binned and the unbinned fitters.

Both likelihoods are linear-in-parameters Poisson + quadratic constraints, hence convex, with
exact derivatives (ν = X y + c per bin or event, y the free parameters, c the fixed part, n the
counts — 1 per event for the unbinned likelihood)::

    g = Σ_i x_i (1 − n_i/ν_i) + P (y − a)
    H = Σ_i (n_i/ν_i²) x_i x_iᵀ + P,           P = diag(1/r_b²) (0 for μ)

A fitter describes one fit type on a set of toys as a :class:`NewtonRows` (NLL, gradient and
Hessians; ν at the current and at trial points kept inside, in its own layout) and the engine
advances all toys ("rows") of a block together as arrays (:func:`minimise`):

1. projected Newton (Bertsekas 1982): variables at a bound (lower, or upper where there is one:
   the shape parameters α, :func:`~lzflow.stats.fitresult.upper_bounds`) whose gradient pushes
   outwards are held fixed (active set); the Newton system is solved on the free set with a Jacobi-scaled,
   modified Cholesky vectorised over toys (:mod:`lzflow.stats._linalg`). Optionally the first
   step uses the *expected* information at the generation point (one matrix for all toys,
   ``fisher_at``) instead of each toy's Hessian;
2. backtracking Armijo line search along the projection arc ``clip(y + t d, lb, ub)``;
3. convergence when the Newton decrement ``λ² = g_Fᵀ H_FF⁻¹ g_F`` (≈ 2 × the NLL distance to
   the minimum) is below ``tol``. After a step, λ² is first estimated with the previous exact
   Hessian factor (one gradient, no new Hessian); if that estimate is already tiny (< 1e-6) one
   chord step reuses the factor, otherwise a fresh Hessian is formed.

Finished toys are compacted out of the iteration. Failures (non-finite values, no convergence
within ``max_iter``, failed line search) are retried (:func:`fit_block`): first Newton again
from the nominal start with a step cap, then — optionally — one iminuit Migrad fit per remaining
toy (:mod:`lzflow.stats.minuit`). No toy is ever dropped: every row of the result carries its
final status, the strategy that produced it and the cause of the first failure. Data impossible
under every allowed parameter value get status INFEASIBLE and NLL = +inf (a legitimate q = ∞,
not a failure). :func:`fit_in_blocks` spreads blocks of toys over threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from ._linalg import newton_direction, reuse_direction
from ._threads import blas_threads
from .fitresult import FitConfig, FitResult, FitStatus, Strategy, lower_bounds, upper_bounds
from .minuit import MinuitFitter, fit_toys_minuit
from .multistart import restart, start_points

__all__ = ["NewtonRows", "NewtonFitter", "NewtonRun", "minimise", "fit_block", "fit_in_blocks"]

#: variables within this distance of a bound count as at the bound
_EPS_ACTIVE = 1e-12
#: chord steps (reusing the last Hessian factor) are taken when the decrement estimated with
#: that factor is below this, at most _MAX_CHORD times in a row
_CHORD_THRESHOLD = 1e-6
_MAX_CHORD = 1


class NewtonRows(Protocol):
    """NLL, gradient and Hessians of one fit type for a set of toys ("rows").

    The rows keep the expected counts ν of the current point (set by :meth:`start`, replaced
    by :meth:`advance`), of the trial points of the line search (:meth:`trial`) and the
    ratios of the last :meth:`grad` (for :meth:`hess`), in whatever layout suits the fitter.
    """

    def infeasible(self) -> np.ndarray:
        """``(n,)`` rows with data that no allowed parameter value can explain (ν = 0 where
        there are counts for every value of the free parameters)."""

    def subset(self, keep: np.ndarray) -> NewtonRows:
        """New rows: those where the boolean ``keep`` is True (order kept), without ν."""

    def start(self, y: np.ndarray) -> np.ndarray:
        """Make ``y`` ``(n, p)`` the current point; returns the NLL there."""

    def grad(self, y: np.ndarray) -> np.ndarray:
        """Gradient ``(n, p)`` at the current point ``y``."""

    def hess(self, rows: np.ndarray | None) -> np.ndarray:
        """Hessians ``(p, p, k)`` (toy-last) at the point of the last :meth:`grad`, for all rows
        or for those of the boolean mask ``rows``."""

    def trial(self, y: np.ndarray) -> np.ndarray:
        """NLL at trial points ``y`` ``(n, p)``, whose ν is kept for :meth:`advance`."""

    def take_trial(self, sub: NewtonRows, ok: np.ndarray) -> None:
        """Trial points of the rows ``ok`` of ``sub`` (made by :meth:`subset` of these rows)
        replace those of the corresponding rows here."""

    def compact(self, keep: np.ndarray, ratios: bool) -> None:
        """Drop the rows where ``keep`` is False (in place; also the ratios if ``ratios``)."""

    def advance(self) -> None:
        """The trial points become the current points."""


class NewtonFitter(MinuitFitter, Protocol):
    """What a fitter provides to :func:`fit_block` (besides the Migrad fallback's needs)."""

    config: FitConfig
    n_threads: int

    def newton_rows(self, data: Any, mu_fixed: float | None) -> NewtonRows: ...

    def start_floor(self, mu_fixed: float | None) -> np.ndarray | None: ...


@dataclass
class NewtonRun:
    """Outcome of :func:`minimise` for each toy (fitted parameters only)."""

    y: np.ndarray  # (n, p) parameters (within the bounds)
    nll: np.ndarray  # (n,)
    status: np.ndarray  # (n,) FitStatus
    n_iter: np.ndarray  # (n,)
    grad_norm: np.ndarray  # (n,) norm of the projected gradient
    dec: np.ndarray  # (n,) Newton decrement λ²
    at_bound: np.ndarray  # (n, p)

    def store(self, res: FitResult, idx: np.ndarray, cols: np.ndarray, mu_fixed: float | None,
              strategy: Strategy) -> None:
        """Write the rows ``idx`` of ``res``: fitted columns ``cols``; μ set to ``mu_fixed``
        when fixed, parameters left out of the fit at 1; EDM = decrement / 2."""
        n_par = res.params.shape[1]
        full = np.ones((idx.size, n_par))
        full[:, cols] = self.y
        if mu_fixed is not None:
            full[:, 0] = mu_fixed
        res.params[idx] = full
        res.nll[idx] = self.nll
        res.status[idx] = self.status
        res.strategy[idx] = strategy
        res.n_iter[idx] = self.n_iter
        res.grad_norm[idx] = self.grad_norm
        res.edm[idx] = 0.5 * self.dec
        at_bound = np.zeros((idx.size, n_par), dtype=bool)
        at_bound[:, cols] = self.at_bound
        res.at_bound[idx] = at_bound


class _State:
    """Iteration state of the still-active rows (global ids in ``active``).

    Besides the point (y, NLL f; ν inside ``rows``) it keeps, per row, the last Hessian factor
    (``L`` toy-last, ``scale``), the free set it was formed with, whether it is an exact Hessian
    (not the shared Fisher matrix) and how many chord steps have reused it.
    """

    def __init__(self, rows: NewtonRows, y: np.ndarray, f: np.ndarray):
        self.rows, self.y, self.f = rows, y, f
        k, p = y.shape
        self.active = np.arange(k)
        self.L = np.zeros((p, p, k))
        self.scale = np.zeros((p, k))
        self.free = np.zeros((k, p), dtype=bool)
        self.exact = np.zeros(k, dtype=bool)
        self.n_chord = np.zeros(k, dtype=np.int32)

    def keep(self, keep: np.ndarray, *extra: np.ndarray, ratios: bool = False) -> list[np.ndarray]:
        """Drop the rows where ``keep`` is False from the state, the rows and the row arrays
        ``extra`` (returned filtered, in order)."""
        if keep.all():
            return list(extra)
        self.rows.compact(keep, ratios)
        self.active, self.y, self.f = self.active[keep], self.y[keep], self.f[keep]
        self.L, self.scale, self.free = self.L[..., keep], self.scale[:, keep], self.free[keep]
        self.exact, self.n_chord = self.exact[keep], self.n_chord[keep]
        return [e[keep] for e in extra]


def minimise(
    rows: NewtonRows, y0: np.ndarray, lb: np.ndarray, cfg: FitConfig, max_iter: int,
    step_cap: float | None = None, fisher: np.ndarray | None = None,
    start_floor: np.ndarray | None = None, ub: np.ndarray | None = None,
    start_shrink: np.ndarray | None = None, interpolate: bool = False, prune: Callable | None = None,
) -> NewtonRun:
    """Projected Newton with Armijo backtracking for all rows, from ``y0`` ``(n, p)`` with lower
    bounds ``lb`` ``(p,)`` and upper bounds ``ub`` ``(p,)`` (``None``: none; see the module
    docstring).

    Each iteration, per toy: gradient g; if the previous exact Hessian factor (same free set)
    gives a decrement below ``tol`` → converged; below ``_CHORD_THRESHOLD`` → chord step with
    that factor (no new Hessian); otherwise a fresh Hessian (or, in the first iteration, the
    shared ``fisher`` matrix if given). Then a line search along the projection arc.
    ``step_cap``: retry strategy, see :func:`_cap_step`. ``start_floor``: ``(p,)`` values that
    starts with a non-finite NLL are raised to (``None``: such starts fail as NON_FINITE).
    ``start_shrink``: ``(p,)`` boolean, parameters pulled towards 0 (halved, then 0) in starts
    whose NLL is still non-finite (the shape parameters α: α = 0 gives ν ≥ 0 for μ, θ ≥ 0).
    ``interpolate``: the line search tries the minimum of the quadratic through f(0), f'(0) and the
    failed point instead of halving (:func:`_backtrack`). ``prune(rows, y, f, y_newton, λ²) -> mask``:
    rows (ids into ``y0``) stopped before the line search, status NOT_RUN (further starts).
    """
    n, p = y0.shape
    proj = _projection(lb, ub)
    y = y0.copy()
    status = np.full(n, FitStatus.NOT_RUN, dtype=np.int8)
    n_iter = np.zeros(n, dtype=np.int32)
    dec_out = np.full(n, np.nan)
    g_out = np.zeros((n, p))
    f = rows.start(y)
    bad_start = ~np.isfinite(f)
    if bad_start.any() and start_floor is not None:  # a start with ν ≤ 0 somewhere: move inside
        y[bad_start] = np.maximum(y[bad_start], start_floor)
        f = rows.start(y)
    if start_shrink is not None and start_shrink.any():
        for factor in (0.5, 0.5, 0.5, 0.0):
            bad_start = ~np.isfinite(f)
            if not bad_start.any():
                break
            y[np.ix_(bad_start, start_shrink)] *= factor
            f = rows.start(y)
    st = _State(rows, y.copy(), f.copy())
    fin = np.isfinite(f)
    status[~fin] = FitStatus.NON_FINITE
    st.keep(fin)

    def finish(mask: np.ndarray, code: int, dec: np.ndarray, g: np.ndarray) -> None:
        ids = st.active[mask]
        status[ids] = code
        y[ids] = st.y[mask]
        f[ids] = st.f[mask]
        dec_out[ids] = dec[mask]
        g_out[ids] = g[mask]

    for it in range(max_iter):
        if not st.active.size:
            break
        g = st.rows.grad(st.y)
        bad_g = ~np.all(np.isfinite(g), axis=1)
        if bad_g.any():
            finish(bad_g, FitStatus.NON_FINITE, np.full(bad_g.size, np.nan), g)
            (g,) = st.keep(~bad_g, g, ratios=True)
            if not st.active.size:
                break
        free = ~_held(st.y, g, lb, ub)
        st.y = np.where(free, st.y, proj(st.y))  # snap held variables onto the bound
        gm = np.where(free, g, 0.0)
        k = st.active.size
        d = np.zeros((k, p))
        dec = np.full(k, np.inf)
        done = np.zeros(k, dtype=bool)
        need_h = np.ones(k, dtype=bool)
        same = st.exact & np.all(free == st.free, axis=1)
        if same.any():  # decrement with the previous exact factor: convergence test / chord step
            with np.errstate(all="ignore"):  # rows without a factor are not used
                d_c, dec_c = reuse_direction(st.L, st.scale, gm)
            conv = same & (dec_c < cfg.tol)
            if conv.any():
                finish(conv, FitStatus.CONVERGED, dec_c, g)
                done |= conv
            chord = same & ~conv & (dec_c < _CHORD_THRESHOLD) & (st.n_chord < _MAX_CHORD)
            d[chord], dec[chord] = d_c[chord], dec_c[chord]
            need_h = ~done & ~chord
        st.n_chord[~need_h] += 1
        use_fisher = fisher is not None and it == 0
        if need_h.any():
            kh = int(need_h.sum())
            if use_fisher:
                h = np.repeat(fisher[:, :, None], kh, axis=2)
            else:
                h = st.rows.hess(None if kh == k else need_h)
            d_n, dec_n, L_n, s_n = newton_direction(h, gm[need_h], free[need_h])
            d[need_h], dec[need_h] = d_n, dec_n
            st.L[..., need_h], st.scale[:, need_h] = L_n, s_n
            st.exact[need_h] = not use_fisher
            st.n_chord[need_h] = 0
            if not use_fisher:
                conv = need_h & (dec < cfg.tol)
                if conv.any():
                    finish(conv, FitStatus.CONVERGED, dec, g)
                    done |= conv
        st.free = free
        if prune is not None and (cut := ~done & prune(st.active, st.y, st.f, proj(st.y + d), dec)).any():
            finish(cut, FitStatus.NOT_RUN, dec, g)
            done |= cut
        if done.any():
            g, d, dec = st.keep(~done, g, d, dec)
            if not st.active.size:
                break
        if step_cap is not None:
            d = _cap_step(d, st.y, step_cap)
        # ---- line search along the projection arc
        cand = proj(st.y + d)
        fc = st.rows.trial(cand)
        ok = _armijo(fc, st.f, g, cand - st.y, dec, cfg)
        if not ok.all():
            fail = ~ok
            sub = st.rows.subset(fail)
            ids = np.flatnonzero(fail)

            def accept(ok_s: np.ndarray, c_s: np.ndarray, f_c: np.ndarray) -> None:
                rows_ok = ids[ok_s]
                cand[rows_ok], fc[rows_ok] = c_s[ok_s], f_c[ok_s]
                st.rows.take_trial(sub, ok_s)
                ok[rows_ok] = True

            _backtrack(st.y[fail], d[fail], g[fail], st.f[fail], dec[fail], proj, cfg, sub.trial, accept,
                       fc[fail] if interpolate else None)
        if not ok.all():
            _end_failed_search(ok, dec, g, finish)
            n_iter[st.active[~ok]] += 1
            cand, fc, g = st.keep(ok, cand, fc, g)
        st.rows.advance()
        st.y, st.f = cand, fc
        n_iter[st.active] += 1
    if st.active.size:
        g = st.rows.grad(st.y)
        finish(np.ones(st.active.size, dtype=bool), FitStatus.MAX_ITER,
               np.full(st.active.size, np.nan), g)
    at_bound = y <= lb + _EPS_ACTIVE
    if ub is not None:
        at_bound |= y >= ub - _EPS_ACTIVE
    gp = np.where(_held(y, g_out, lb, ub), 0.0, g_out)  # projected gradient
    return NewtonRun(y=proj(y), nll=f, status=status, n_iter=n_iter,
                     grad_norm=np.sqrt(np.einsum("ti,ti->t", gp, gp)), dec=dec_out,
                     at_bound=at_bound)


def _projection(lb: np.ndarray, ub: np.ndarray | None) -> Callable[[np.ndarray], np.ndarray]:
    """Projection onto the box [lb, ub] (onto y ≥ lb alone when ``ub`` is None)."""
    if ub is None:
        return lambda x: np.maximum(x, lb)
    return lambda x: np.minimum(np.maximum(x, lb), ub)


def _held(y: np.ndarray, g: np.ndarray, lb: np.ndarray, ub: np.ndarray | None) -> np.ndarray:
    """Variables at a bound whose gradient pushes outwards (the active set; projected gradient 0)."""
    held = (y <= lb + _EPS_ACTIVE) & (g > 0)
    if ub is not None:
        held |= (y >= ub - _EPS_ACTIVE) & (g < 0)
    return held


def _cap_step(d: np.ndarray, y: np.ndarray, step_cap: float) -> np.ndarray:
    """Retry strategy: scale each row's step so that no parameter moves by more than
    ``step_cap · max(|y|, 1)``."""
    lim = step_cap * np.maximum(np.abs(y), 1.0)
    ad = np.abs(d)
    fac = np.min(np.where(ad > lim, lim / np.where(ad > lim, ad, 1.0), 1.0), axis=1)
    return d * fac[:, None]


def _next_t(t: np.ndarray, f_c: np.ndarray, f: np.ndarray, g: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Next step fraction of the interpolating line search: the minimum of the parabola through
    φ(0) = f, φ'(0) = g·step/t and φ(t) = f_c (Nocedal & Wright 2006, eq. 3.57), kept within
    [t/10, t/2] (t/10 where f_c is not finite)."""
    slope = np.einsum("ti,ti->t", g, step) / t  # φ'(0) along the step (< 0 for a descent direction)
    with np.errstate(all="ignore"):
        curv = f_c - f - slope * t
        t_q = -slope * t * t / (2.0 * curv)
    t_q = np.where(np.isfinite(t_q) & (curv > 0), t_q, 0.1 * t)
    return np.clip(t_q, 0.1 * t, 0.5 * t)


def _backtrack(y, d, g, f, dec, proj: Callable[[np.ndarray], np.ndarray], cfg: FitConfig,
               evaluate: Callable[[np.ndarray], np.ndarray],
               accept: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
               f_full: np.ndarray | None = None) -> None:
    """Backtracking along the projection arc for the rows whose full step failed :func:`_armijo`.

    Candidates are ``proj(y + t d)`` with t = 1/2, 1/4, … (at most ``cfg.max_backtrack``
    halvings) or, given the NLL ``f_full`` at the full steps, with t from :func:`_next_t`
    (as many tries). ``evaluate(c) -> nll`` computes the NLL at the candidates (and keeps their
    ν); ``accept(ok, c, nll)`` takes the rows (mask ``ok``) that passed at this t."""
    n = y.shape[0]
    pending = np.ones(n, dtype=bool)
    t = np.full(n, 0.5) if f_full is None else _next_t(np.ones(n), f_full, f, g, proj(y + d) - y)
    for _ in range(cfg.max_backtrack):
        c = proj(y + t[:, None] * d)
        f_c = evaluate(c)
        ok = pending & _armijo(f_c, f, g, c - y, dec, cfg)
        if ok.any():
            accept(ok, c, f_c)
            pending &= ~ok
        if not pending.any():
            break
        t = 0.5 * t if f_full is None else np.where(pending, _next_t(t, f_c, f, g, c - y), t)


def _end_failed_search(ok: np.ndarray, dec: np.ndarray, g: np.ndarray, finish) -> None:
    """Rows (``~ok``) where no step decreased the NLL: CONVERGED at the noise level (λ² < 1e-6), else LINE_SEARCH."""
    noise = ~ok & (dec < 1e-6)
    if noise.any():
        finish(noise, FitStatus.CONVERGED, dec, g)
    hard = ~ok & ~noise
    if hard.any():
        finish(hard, FitStatus.LINE_SEARCH, dec, g)


def _armijo(fc, f0, g, step, dec, cfg: FitConfig) -> np.ndarray:
    """Sufficient decrease along the projection arc (or no increase below the noise level)."""
    slope = np.einsum("ti,ti->t", g, step)
    ok = np.isfinite(fc) & (fc <= f0 + cfg.armijo * slope)
    ok |= np.isfinite(fc) & (dec < 1e-6) & (fc <= f0 + 1e-12 * np.maximum(1.0, np.abs(f0)))
    return ok


def fit_block(fitter: NewtonFitter, data: Any, mu_fixed: float | None, init: np.ndarray,
              mu_lower: float | None, fisher_at: np.ndarray | None) -> FitResult:
    """Fit the toys of ``data`` (the fitter's prepared toys: ``n``, ``valid``, ``subset``)
    from the full start vectors ``init``: Newton, then the retries of the failures (module
    docstring). Invalid input → NON_FINITE, infeasible data → INFEASIBLE (never fitted)."""
    cfg = fitter.config
    res = FitResult.empty(data.n, fitter.model.n_par)
    cols = fitter.free_columns(mu_fixed)
    n_shape = fitter.model.n_shape
    lb = lower_bounds(cols.size, mu_fixed, mu_lower, n_shape)
    ub = upper_bounds(cols.size, n_shape)
    proj = _projection(lb, ub)
    shrink = None
    if n_shape:  # shape fits: start shrink, interpolating line search
        shrink = np.zeros(cols.size, dtype=bool)
        shrink[cols.size - n_shape :] = True
    bad_in = ~data.valid
    res.status[bad_in] = FitStatus.NON_FINITE
    res.first_failure[bad_in] = FitStatus.NON_FINITE
    rows = fitter.newton_rows(data, mu_fixed)
    infeasible = rows.infeasible() & ~bad_in
    if infeasible.any():
        res.status[infeasible] = FitStatus.INFEASIBLE
        res.first_failure[infeasible] = FitStatus.INFEASIBLE
        res.nll[infeasible] = np.inf
        res.params[infeasible] = init[infeasible]
    todo = ~bad_in & ~infeasible
    ids = np.flatnonzero(todo)
    if not ids.size:
        return res
    if not todo.all():
        rows = rows.subset(todo)
    y0 = proj(init[ids][:, cols])
    fisher = None
    if fisher_at is not None:
        fa = np.array(fisher_at, dtype=np.float64, copy=True)
        if mu_fixed is not None:
            fa[0] = mu_fixed
        fisher = fitter.expected_information(fa, mu_free=mu_fixed is None)
    floor = fitter.start_floor(mu_fixed)
    run = minimise(rows, y0, lb, cfg, cfg.max_iter, None, fisher, floor, ub, shrink, bool(n_shape))
    run.store(res, ids, cols, mu_fixed, Strategy.NEWTON)
    failed = ids[run.status != FitStatus.CONVERGED]
    if failed.size:
        res.first_failure[failed] = run.status[run.status != FitStatus.CONVERGED]
    if failed.size and cfg.retry:
        sub = data.subset(failed)
        start = proj(fitter.default_init(sub, mu_fixed)[:, cols])
        run2 = minimise(fitter.newton_rows(sub, mu_fixed), start, lb, cfg, 4 * cfg.max_iter, 0.5,
                        None, floor, ub, shrink, bool(n_shape))
        prev_iter = res.n_iter[failed].copy()
        run2.store(res, failed, cols, mu_fixed, Strategy.NEWTON_RETRY)
        res.n_iter[failed] += prev_iter
        failed = failed[run2.status != FitStatus.CONVERGED]
    kinds = cfg.extra_starts if mu_fixed is None else cfg.extra_starts_fixed
    if n_shape and kinds:  # the NLL is not convex in α: further starts (lzflow.stats.multistart)
        restart(res, ids, cols, mu_fixed, kinds,
                lambda kind, i: proj(start_points(kind, fitter, data.subset(i), mu_fixed, cols, init[i],
                                                  res.params[i][:, cols], n_shape)),
                lambda y1, i, cut: minimise(fitter.newton_rows(data.subset(i), mu_fixed), y1, lb, cfg,
                                            cfg.max_iter, None, None, floor, ub, shrink, True, cut))
        failed = failed[res.status[failed] != FitStatus.CONVERGED]
    if failed.size and cfg.minuit_fallback:
        for i in failed:
            r = fit_toys_minuit(fitter, data.subset(np.array([i])), mu_fixed=mu_fixed,
                                init=init[i : i + 1], mu_lower=mu_lower)
            keep_first, prev_iter = res.first_failure[i], res.n_iter[i]
            res.put(np.array([i]), r)
            res.first_failure[i] = keep_first
            res.n_iter[i] += prev_iter
    return res


def fit_in_blocks(fitter: NewtonFitter, data: Any, init: np.ndarray | None, mu_fixed: float | None,
                  mu_lower: float | None, fisher_at: np.ndarray | None, block_size: int) -> FitResult:
    """Fit ``data`` (which also has ``slice(start, stop)``) in blocks of ``block_size`` toys
    (:func:`fit_block`), spread over the fitter's threads with single-threaded BLAS.
    ``init``: full start vectors (default ``fitter.default_init``); μ is set to ``mu_fixed``
    for conditional fits."""
    n_par = fitter.model.n_par
    res = FitResult.empty(data.n, n_par)
    if init is None:
        init = fitter.default_init(data, mu_fixed)
    init = np.array(init, dtype=np.float64, copy=True)
    if init.shape != (data.n, n_par):
        raise ValueError(f"init must have shape ({data.n}, {n_par})")
    if mu_fixed is not None:
        init[:, 0] = mu_fixed
    blocks = [np.arange(s, min(s + block_size, data.n)) for s in range(0, data.n, block_size)]

    def work(idx: np.ndarray) -> None:
        sub = data if idx.size == data.n else data.slice(int(idx[0]), int(idx[-1]) + 1)
        res.put(idx, fit_block(fitter, sub, mu_fixed, init[idx], mu_lower, fisher_at))

    n_threads = min(fitter.n_threads, len(blocks))
    if n_threads > 1:
        with blas_threads(1), ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(work, blocks))
    else:
        for idx in blocks:
            work(idx)
    return res
