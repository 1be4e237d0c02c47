"""Compiled projected Newton for the unbinned fits: one toy at a time, all iterations in one loop.

The batched engine (:mod:`lzflow.stats.newton`) advances a block of toys together and passes
over the whole block's template values ``V`` (≈ 0.3 MB per toy, ≈ 16 MB per block) at every
evaluation — from the shared L3 cache or memory. Here each toy is fitted to the end before the
next starts, so its values stay in the core's L2 cache across the iterations, and nothing runs
in Python per iteration. The iteration is the engine's (Bertsekas 1982 projected Newton):

* free set: parameters at their lower bound whose gradient pushes outwards are held there;
* direction ``d_F = −H_FF⁻¹ g_F`` by the same Jacobi-scaled modified Cholesky as
  :func:`lzflow.stats._linalg.newton_direction` (pivots ≤ 1e-13 → 1; zero curvature → max(|g|, 1));
  the first step may use the shared expected information (``fisher``);
* convergence when the squared Newton decrement ``λ² = −gᵀd < tol``, tested first with the
  previous exact factor (no new Hessian); below 1e-6 one chord step reuses that factor;
* line search along the projection arc ``c(t) = max(y + t d, lb)``, t = 1, ½, ¼, … (at most
  ``max_backtrack`` halvings), with the **Armijo condition certified by the gradient**: the NLL
  is convex, so along the segment y → c, ``NLL(c) − NLL(y) ≤ g(c)·(c − y)``; hence
  ``g(c)·(c − y) ≤ armijo · g(y)·(c − y)`` implies the engine's sufficient decrease
  ``NLL(c) ≤ NLL(y) + armijo · g(y)·(c − y)``. The gradient at c is needed anyway for the next
  iteration, so no logarithm is taken inside the iteration: the NLL is computed once, at the
  result, from the ν returned (numpy's vectorised log, the formula of
  :meth:`lzflow.stats.unbinned.EventRows._evaluate`);
* a search that finds no such point ends the fit: CONVERGED if λ² < 1e-6 (rounding noise),
  otherwise LINE_SEARCH; a point with ν ≤ 0 (or non-finite) at some event is never accepted.

Statuses are those of :class:`lzflow.stats.fitresult.FitStatus` (CONVERGED, MAX_ITER,
LINE_SEARCH, NON_FINITE for a start with ν ≤ 0 even after the start floor). Each toy's arithmetic is its own and the loops are
deterministic, so results do not depend on how toys are split into calls or threads.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from .fitresult import FitResult, FitStatus, Strategy, lower_bounds
from ._unbinned_kernels import block4
from .newton import NewtonRun, fit_block

__all__ = ["newton_toys", "fit_block_compiled"]

#: as the engine: a variable within this distance of its lower bound counts as at the bound
_EPS_ACTIVE = 1e-12
#: chord step (reuse the last exact factor) below this decrement, at most once in a row
_CHORD_THRESHOLD = 1e-6
#: sums may be reassociated (vectorised) and a·b + c contracted; see _unbinned_kernels
_FIT_MATH = {"reassoc", "contract"}
#: events per chunk of the Hessian accumulation (the chunk's columns stay in L1)
_CHUNK = 128
_CONVERGED, _MAX_ITER = int(FitStatus.CONVERGED), int(FitStatus.MAX_ITER)
_LINE_SEARCH, _NON_FINITE = int(FitStatus.LINE_SEARCH), int(FitStatus.NON_FINITE)


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=_FIT_MATH)
def _point(Vt, n, wt, has_w, z, cols, y, tvec, prec, a, nu, r, sums, g):  # pragma: no cover
    """ν = Σ_s z_s V_s at the free parameters ``y`` (``z`` full vector, updated), the gradient
    ``g = t − Σ_e w_e x_e/ν_e + P (y − a)``; False if ν ≤ 0 or non-finite at some event."""
    p = cols.size
    n_par = Vt.shape[0]
    for j in range(p):
        z[cols[j]] = y[j]
    for e in range(n):
        nu[e] = 0.0
    s0 = 0
    while s0 + 4 <= n_par:  # four templates per pass over ν (a quarter of the ν traffic)
        x0, x1, x2, x3 = Vt[s0], Vt[s0 + 1], Vt[s0 + 2], Vt[s0 + 3]
        z0, z1, z2, z3 = z[s0], z[s0 + 1], z[s0 + 2], z[s0 + 3]
        for e in range(n):
            nu[e] += (z0 * x0[e] + z1 * x1[e]) + (z2 * x2[e] + z3 * x3[e])
        s0 += 4
    for s in range(s0, n_par):
        x = Vt[s]
        zs = z[s]
        for e in range(n):
            nu[e] += zs * x[e]
    bad = 0
    for e in range(n):
        bad += not (nu[e] > 0.0 and nu[e] < np.inf)
    if bad:
        return False
    if has_w:
        for e in range(n):
            r[e] = wt[e] / nu[e]
    else:
        for e in range(n):
            r[e] = 1.0 / nu[e]
    j0 = 0
    while j0 + 4 <= p:  # four dot products per pass over r
        x0, x1, x2, x3 = Vt[cols[j0]], Vt[cols[j0 + 1]], Vt[cols[j0 + 2]], Vt[cols[j0 + 3]]
        a0 = a1 = a2 = a3 = 0.0
        for e in range(n):
            re = r[e]
            a0 += x0[e] * re
            a1 += x1[e] * re
            a2 += x2[e] * re
            a3 += x3[e] * re
        sums[j0], sums[j0 + 1], sums[j0 + 2], sums[j0 + 3] = a0, a1, a2, a3
        j0 += 4
    for j in range(j0, p):
        x = Vt[cols[j]]
        acc = 0.0
        for e in range(n):
            acc += x[e] * r[e]
        sums[j] = acc
    for j in range(p):
        g[j] = tvec[j] - sums[j] + prec[j] * (y[j] - a[j])
    return True


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=_FIT_MATH)
def _decrease_bound(nu, nu_t, n, wt, has_w, prec, c, y, slope0):  # pragma: no cover - compiled
    """An upper bound of ``NLL(c) − NLL(y)`` without logarithms (both ν > 0): with
    ``δ = c − y`` and ``a_e = ν_e(c)/ν_e(y) − 1 > −1``, the difference is exactly
    ``g(y)·δ + ½ δᵀPδ − Σ_e w_e [ln(1 + a_e) − a_e]`` and ``−ln(1 + a) + a ≤ a²/2`` for a ≥ 0,
    ``≤ a²/2 + |a|³/(3(1 − |a|))`` for −1 < a < 0 (the alternating / geometric tails of the
    series of ln(1 + a)). Tight to third order in a: a Newton step near the minimum passes."""
    acc = 0.0
    for e in range(n):
        ae = nu_t[e] / nu[e] - 1.0
        rr = 0.5 * ae * ae
        if ae < 0.0:
            rr -= ae * ae * ae / (3.0 * (1.0 + ae))
        acc += rr * wt[e] if has_w else rr
    quad = 0.0
    for j in range(c.size):
        dj = c[j] - y[j]
        quad += 0.5 * prec[j] * dj * dj
    return slope0 + quad + acc


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=_FIT_MATH)
def _block4_f32(s, x, j0, k0, m, h):  # pragma: no cover - compiled
    """:func:`lzflow.stats._unbinned_kernels.block4` in single precision (8 lanes per AVX
    register): ``h[j0 + a, k0 + b] += Σ_{e<m} s[j0 + a, e] x[k0 + b, e]``, float32 sums."""
    s0, s1, s2, s3 = s[j0], s[j0 + 1], s[j0 + 2], s[j0 + 3]
    x0, x1, x2, x3 = x[k0], x[k0 + 1], x[k0 + 2], x[k0 + 3]
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = np.float32(0.0)
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = np.float32(0.0)
    for e in range(m):
        u0, u1, u2, u3 = s0[e], s1[e], s2[e], s3[e]
        v0, v1, v2, v3 = x0[e], x1[e], x2[e], x3[e]
        a00 += u0 * v0
        a01 += u0 * v1
        a02 += u0 * v2
        a03 += u0 * v3
        a10 += u1 * v0
        a11 += u1 * v1
        a12 += u1 * v2
        a13 += u1 * v3
        a20 += u2 * v0
        a21 += u2 * v1
        a22 += u2 * v2
        a23 += u2 * v3
        a30 += u3 * v0
        a31 += u3 * v1
        a32 += u3 * v2
        a33 += u3 * v3
    acc = ((a00, a01, a02, a03), (a10, a11, a12, a13), (a20, a21, a22, a23), (a30, a31, a32, a33))
    for i in range(4):
        for k in range(4):
            h[j0 + i, k0 + k] += acc[i][k]


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=_FIT_MATH)
def _hessian(Vt, n, wt, has_w, cols, nu, prec, q, h, f32, s32):  # pragma: no cover - compiled
    """``h = Σ_e w_e x_e x_eᵀ / ν_e² + diag(prec)`` (full symmetric): per chunk of events the
    columns ``x_j`` and ``s_j = x_j w/ν²`` (zero rows up to a multiple of 4), their lower
    triangle in 4 × 4 blocks (:func:`lzflow.stats._unbinned_kernels.block4`); with ``f32``
    (``FitConfig.hessian_float32``, as the batched engine's BLAS product: the Hessian only sets
    the search direction) ``Σ s sᵀ`` of the scaled columns ``s_j = x_j √w/ν`` (bounded by 1/z_j)
    in single precision over all events at once (``s32`` ``(pp, ≥ n)``, rows ≥ p zero)."""
    p = cols.size
    pp = h.shape[0]
    s = np.zeros((pp, _CHUNK))
    x = np.zeros((pp, _CHUNK))
    for e in range(n):
        ri = 1.0 / nu[e]
        we = wt[e] if has_w else 1.0
        q[e] = ri * np.sqrt(we) if f32 else ri * ri * we  # f32: symmetric x √w/ν (bounded)
    for j in range(pp):
        for k in range(pp):
            h[j, k] = 0.0
    if f32:  # all events at once (s32: (pp, ≥ n), rows ≥ p zero): fewer, longer loops
        for j in range(p):
            v = Vt[cols[j]]
            sj = s32[j]
            for e in range(n):
                sj[e] = np.float32(v[e] * q[e])
        for j0 in range(0, pp, 4):
            for k0 in range(0, j0 + 1, 4):
                _block4_f32(s32, s32, j0, k0, n, h)
    else:  # double precision, in chunks of events (the chunk's columns stay in L1)
        for e0 in range(0, n, _CHUNK):
            m = min(_CHUNK, n - e0)
            for j in range(p):
                v = Vt[cols[j]]
                for e in range(m):
                    x[j, e] = v[e0 + e]
                    s[j, e] = v[e0 + e] * q[e0 + e]
            for j0 in range(0, pp, 4):
                for k0 in range(0, j0 + 1, 4):
                    block4(s, x, j0, k0, m, h)
    for j in range(p):
        h[j, j] += prec[j]
        for k in range(j):
            h[k, j] = h[j, k]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _direction(h, g, free, L, scale, d):  # pragma: no cover - compiled
    """:func:`lzflow.stats._linalg.newton_direction` for one toy: factor ``L`` (lower, of the
    Jacobi-scaled H_FF with unit diagonal; held rows/columns decoupled), ``scale``, the
    direction ``d`` (0 on the held set); returns λ² = −gᵀd."""
    p = g.size
    for j in range(p):
        dj = h[j, j]
        if not dj > 0.0:
            dj = max(abs(g[j]), 1.0)
        scale[j] = 1.0 / np.sqrt(dj) if free[j] else 0.0
    for j in range(p):
        for k in range(p):
            L[j, k] = h[j, k] * scale[j] * scale[k]
        L[j, j] = 1.0
    for j in range(p):  # right-looking modified Cholesky (cholesky_toylast)
        piv = L[j, j]
        if not piv > 1e-13:
            piv = 1.0
        ljj = np.sqrt(piv)
        L[j, j] = ljj
        for i in range(j + 1, p):
            L[i, j] /= ljj
        for i in range(j + 1, p):
            for k in range(j + 1, p):
                L[i, k] -= L[i, j] * L[k, j]
    return _solve(L, scale, g, d)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _solve(L, scale, g, d):  # pragma: no cover - compiled
    """``d = −S (L Lᵀ)⁻¹ S g`` (cho_solve_toylast); returns λ² = −gᵀd."""
    p = g.size
    for i in range(p):
        d[i] = g[i] * scale[i]
    for i in range(p):
        d[i] /= L[i, i]
        for k in range(i + 1, p):
            d[k] -= L[k, i] * d[i]
    for i in range(p - 1, -1, -1):
        d[i] /= L[i, i]
        for k in range(i):
            d[k] -= L[i, k] * d[i]
    dec = 0.0
    for i in range(p):
        d[i] = -(d[i] * scale[i])
        dec -= g[i] * d[i]
    return dec


@numba.njit(nogil=True, cache=True, error_model="numpy")
def newton_toys(V, rows, n_cols, w, cols, z_fixed, tvec, prec, aux_c, y0, lb, fisher, use_fisher,
                start_floor, tol, max_iter, max_backtrack, armijo, f32,
                y_out, status, n_iter, dec_out, g_out, nu_out):  # pragma: no cover - compiled
    """Fit the stored toys ``rows`` of ``V`` ``(n, P, C)`` (columns ``n_cols``, weights ``w``
    or ``None``) from ``y0`` ``(k, p)``: free parameters ``cols``, fixed ones from ``z_fixed``,
    totals ``tvec``, constraint precisions ``prec`` and centres ``aux_c`` ``(k, p)``, lower
    bounds ``lb``; ``fisher`` ``(p, p)`` the first step's matrix if ``use_fisher``;
    ``start_floor`` ``(p,)`` what a start with ν ≤ 0 is raised to. Outputs per toy: the point,
    status, iterations, λ² (NaN unless from a direction), gradient and ν (1 in the padding)."""
    n_par = V.shape[1]
    c_max = V.shape[2]
    p = cols.size
    has_w = w is not None
    wdummy = np.ones(c_max)
    z = z_fixed.copy()
    nu = np.empty(c_max)
    nu_t = np.empty(c_max)
    r = np.empty(c_max)
    sums = np.empty(p)
    g = np.empty(p)
    g_t = np.empty(p)
    L = np.empty((p, p))
    scale = np.empty(p)
    d = np.empty(p)
    y = np.empty(p)
    c = np.empty(p)
    free = np.empty(p, dtype=np.bool_)
    free_l = np.empty(p, dtype=np.bool_)
    pp = (p + 3) // 4 * 4
    h = np.empty((pp, pp))
    s32 = np.zeros((pp, c_max if f32 else 1), dtype=np.float32)
    for i in range(rows.size):
        t = rows[i]
        n = n_cols[t]
        Vt = V[t]
        if w is None:
            wt = wdummy
        else:
            wt = w[t]
        a = aux_c[i]
        for j in range(p):
            y[j] = y0[i, j]
        st = _MAX_ITER
        dec = np.nan
        its = 0
        ok = _point(Vt, n, wt, has_w, z, cols, y, tvec, prec, a, nu, r, sums, g)
        if not ok:
            for j in range(p):
                y[j] = max(y[j], start_floor[j])
            ok = _point(Vt, n, wt, has_w, z, cols, y, tvec, prec, a, nu, r, sums, g)
        if not ok:
            st = _NON_FINITE
        have_l = False
        n_chord = 0
        it = 0
        while ok and it < max_iter:
            for j in range(p):
                held = y[j] <= lb[j] + _EPS_ACTIVE and g[j] > 0.0
                free[j] = not held
                if held:
                    y[j] = max(y[j], lb[j])
            for j in range(p):
                if not free[j]:
                    g_t[j] = g[j]
                    g[j] = 0.0  # the direction uses the projected gradient
            need_h = True
            same = have_l
            for j in range(p):
                same = same and free[j] == free_l[j]
            if same:
                dec = _solve(L, scale, g, d)
                if dec < tol:
                    st = _CONVERGED
                elif dec < _CHORD_THRESHOLD and n_chord < 1:
                    need_h = False
                    n_chord += 1
            if st != _CONVERGED and need_h:
                exact = not (use_fisher and it == 0)
                if exact:
                    _hessian(Vt, n, wt, has_w, cols, nu, prec, r, h, f32, s32)
                else:
                    for j in range(p):
                        for k in range(p):
                            h[j, k] = fisher[j, k]
                dec = _direction(h, g, free, L, scale, d)
                have_l = exact
                n_chord = 0
                for j in range(p):
                    free_l[j] = free[j]
                if exact and dec < tol:
                    st = _CONVERGED
            for j in range(p):  # the full gradient back (held entries)
                if not free[j]:
                    g[j] = g_t[j]
            if st == _CONVERGED:
                break
            # line search along the projection arc, Armijo certified by the gradient at c
            step = 1.0
            accepted = False
            for _ in range(max_backtrack + 1):
                slope0 = 0.0
                for j in range(p):
                    c[j] = max(y[j] + step * d[j], lb[j])
                    slope0 += g[j] * (c[j] - y[j])
                if _point(Vt, n, wt, has_w, z, cols, c, tvec, prec, a, nu_t, r, sums, g_t):
                    if _decrease_bound(nu, nu_t, n, wt, has_w, prec, c, y, slope0) <= armijo * slope0:
                        accepted = True
                        break
                step *= 0.5
            its += 1
            if not accepted:  # ν and g are still those of y (the trials used nu_t, g_t)
                st = _CONVERGED if dec < 1e-6 else _LINE_SEARCH
                break
            for j in range(p):
                y[j] = c[j]
                g[j] = g_t[j]
            nu, nu_t = nu_t, nu
            it += 1
        for j in range(p):
            y_out[i, j] = y[j]
            g_out[i, j] = g[j]
        status[i] = st
        n_iter[i] = its
        dec_out[i] = dec
        for e in range(n):
            nu_out[i, e] = nu[e]
        for e in range(n, c_max):
            nu_out[i, e] = 1.0



# ----------------------------------------------------------------------------- the block
def fit_block_compiled(fitter: Any, data: Any, mu_fixed: float | None, init: np.ndarray,
                       mu_lower: float | None, fisher_at: np.ndarray | None) -> FitResult:
    """:func:`lzflow.stats.newton.fit_block` with the first Newton run compiled
    (:func:`newton_toys`): invalid input → NON_FINITE and infeasible data → INFEASIBLE as
    there; toys it does not bring to convergence (rare) are fitted again by the batched engine's
    :func:`~lzflow.stats.newton.fit_block` from the same start (its Newton, retry and Migrad
    fallback), keeping this run's status as the first failure. ``fitter``: an
    :class:`lzflow.stats.unbinned.UnbinnedFitter`; ``data``: its :class:`EventData`."""
    cfg = fitter.config
    n_par = fitter.model.n_par
    res = FitResult.empty(data.n, n_par)
    cols = fitter.free_columns(mu_fixed)
    lb = lower_bounds(cols.size, mu_fixed, mu_lower, 0)
    bad_in = ~data.valid
    res.status[bad_in] = FitStatus.NON_FINITE
    res.first_failure[bad_in] = FitStatus.NON_FINITE
    rows = fitter.newton_rows(data, mu_fixed)
    infeasible = rows.infeasible() & ~bad_in
    res.status[infeasible] = FitStatus.INFEASIBLE
    res.first_failure[infeasible] = FitStatus.INFEASIBLE
    res.nll[infeasible] = np.inf
    res.params[infeasible] = init[infeasible]
    ids = np.flatnonzero(~bad_in & ~infeasible)
    if not ids.size:
        return res
    p = cols.size
    fisher = np.zeros((p, p))
    if fisher_at is not None:
        fa = np.array(fisher_at, dtype=np.float64, copy=True)
        if mu_fixed is not None:
            fa[0] = mu_fixed
        fisher = np.ascontiguousarray(fitter.expected_information(fa, mu_free=mu_fixed is None))
    k = ids.size
    y = np.empty((k, p))
    status = np.empty(k, dtype=np.int8)
    n_iter = np.empty(k, dtype=np.int32)
    dec = np.empty(k)
    g = np.empty((k, p))
    nu = np.empty((k, data.V.shape[2]))
    aux_c = np.ascontiguousarray(rows.aux_c[ids])
    newton_toys(data.V, ids, data.n_cols, data.weight, cols, rows.z_fixed, rows.tvec, rows.prec, aux_c,
                np.maximum(init[ids][:, cols], lb), lb, fisher, fisher_at is not None,
                fitter.start_floor(mu_fixed), cfg.tol, cfg.max_iter, cfg.max_backtrack, cfg.armijo,
                bool(cfg.hessian_float32),
                y, status, n_iter, dec, g, nu)
    z = np.repeat(rows.z_fixed[None, :], k, axis=0)
    z[:, cols] = y
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = np.log(nu)
        if data.weight is not None:
            lg *= data.weight[ids]
        logs = lg.sum(axis=1)
    # row-wise sums (no BLAS: a toy's NLL must not depend on its row in the block)
    nll = (z * rows.totals).sum(axis=1) - logs + 0.5 * (((y - aux_c) ** 2) * rows.prec).sum(axis=1)
    held = (y <= lb + _EPS_ACTIVE) & (g > 0)
    gp = np.where(held, 0.0, g)
    NewtonRun(y=y, nll=nll, status=status, n_iter=n_iter, grad_norm=np.sqrt(np.einsum("ti,ti->t", gp, gp)),
              dec=dec, at_bound=y <= lb + _EPS_ACTIVE).store(res, ids, cols, mu_fixed, Strategy.NEWTON)
    failed = ids[status != FitStatus.CONVERGED]
    if failed.size:
        first, prev_iter = status[status != FitStatus.CONVERGED], res.n_iter[failed].copy()
        res.put(failed, fit_block(fitter, data.subset(failed), mu_fixed, init[failed], mu_lower, fisher_at))
        res.first_failure[failed] = first
        res.n_iter[failed] += prev_iter
    return res
