"""Inverting p-value curves: the upper limit where p(μ) falls to α.

The upper limit is the supremum of the confidence set {μ : p(μ) ≥ α}, α = 1 − CL. On an
increasing grid, K is the largest grid point with p ≥ α and the p-value curve is interpolated to
p = α between μ_K and μ_{K+1} **linearly in ln p** (``"loglinear"``, default; p = 0 is floored at
0.5/N by the callers, :func:`lzflow.stats.inversion.invert_toys`), or with a monotone PCHIP spline
in ln p (``"pchip"``, single curves). (Taking the *first* downward crossing instead would exclude
μ values inside the confidence set when Monte-Carlo noise makes a curve dip below α early, and
undercover.) NaN points of a curve (no usable toy there) are skipped. The limit's MC uncertainty
propagates the errors of the two bracketing p-values through the interpolation: for
μ = μ₁ + Δ (ln α − a)/(b − a), a = ln p₁, b = ln p₂:

    δμ² = Δ²[((ln α − b)/(b − a)² · δp₁/p₁)² + ((ln α − a)/(b − a)² · δp₂/p₂)²].

A p-curve that never falls below α gives +inf ("above_grid"); one below α at the first grid
point gives that point ("below_grid": the limit is at most that).

:func:`crossing` inverts one curve (with its error and bracket), :func:`limits_from_curves` many
at once (the B-only experiments of the expected bands, status codes ``LIMIT_*``),
:func:`refine_grid` proposes POI points inside the bracket of a crossing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "Crossing",
    "crossing",
    "LIMIT_OK",
    "LIMIT_BELOW",
    "LIMIT_ABOVE",
    "LIMIT_UNDEFINED",
    "limits_from_curves",
    "refine_grid",
]


@dataclass
class Crossing:
    """Result of inverting one p-value curve."""

    mu: float
    error: float
    status: str  # "ok", "below_grid", "above_grid", "no_sensitivity", "undefined" (no usable point)
    bracket: tuple[int, int] | None = None


def _loglinear(mu1, mu2, p1, p2, alpha, e1=None, e2=None):
    a, b, c = np.log(p1), np.log(p2), np.log(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(b != a, (c - a) / (b - a), 0.5)
        mu = mu1 + (mu2 - mu1) * frac
        if e1 is None:
            return mu, None
        da = (c - b) / (b - a) ** 2 * (e1 / p1)
        db = -(c - a) / (b - a) ** 2 * (e2 / p2)
        err = np.abs(mu2 - mu1) * np.sqrt(da**2 + db**2)
    return mu, np.where(np.isfinite(err), err, np.nan)


def crossing(
    mu: Sequence[float] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    alpha: float,
    p_err: Sequence[float] | np.ndarray | None = None,
    method: str = "loglinear",
    p_floor: float = 1e-12,
) -> Crossing:
    """Invert one p-value curve at ``alpha`` (module docstring); NaN points are skipped."""
    mu = np.asarray(mu, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if mu.size == 0 or not np.all(np.diff(mu) > 0):
        raise ValueError("the POI grid must be non-empty and strictly increasing")
    if method not in ("loglinear", "pchip"):
        raise ValueError(f"unknown interpolation method {method!r}")
    pe = np.zeros_like(p) if p_err is None else np.asarray(p_err, dtype=np.float64)
    idx = np.flatnonzero(~np.isnan(p))
    if idx.size == 0:
        return Crossing(float("nan"), float("nan"), "undefined", None)
    mu_f, pc, pe_f = mu[idx], np.maximum(p[idx], p_floor), pe[idx]
    inside = pc >= alpha
    if not inside.any():
        return Crossing(float(mu_f[0]), 0.0, "below_grid", (int(idx[0]), int(idx[0])))
    if inside[-1]:
        return Crossing(float("inf"), float("nan"), "above_grid", None)
    k = int(mu_f.size - 1 - np.argmax(inside[::-1])) + 1  # first usable point after the last p ≥ α
    bracket = (int(idx[k - 1]), int(idx[k]))
    m, e = _loglinear(mu_f[k - 1], mu_f[k], pc[k - 1], pc[k], alpha, pe_f[k - 1], pe_f[k])
    if method == "pchip" and mu_f.size >= 2:
        from scipy.interpolate import PchipInterpolator  # only for this option (start-up of toy jobs)
        from scipy.optimize import brentq

        spl = PchipInterpolator(mu_f, np.log(pc))
        m = brentq(lambda x: spl(x) - np.log(alpha), mu_f[k - 1], mu_f[k])
    return Crossing(float(m), float(e), "ok", bracket)


#: codes of :func:`limits_from_curves`
LIMIT_OK, LIMIT_BELOW, LIMIT_ABOVE, LIMIT_UNDEFINED = 0, 1, 2, 3


def limits_from_curves(
    mu: np.ndarray, p: np.ndarray, alpha: float, p_floor: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised log-linear inversion of many curves ``p`` ``(n, n_mu)`` (NaN points skipped).

    Returns (limits ``(n,)``, status codes ``(n,)``: 0 ok, 1 below grid (limit = the first usable
    point, an upper bound), 2 above grid (+inf), 3 no usable point (NaN)).
    """
    mu = np.asarray(mu, dtype=np.float64)
    p = np.atleast_2d(np.asarray(p, dtype=np.float64))
    n, nm = p.shape
    fin = ~np.isnan(p)
    pc = np.maximum(np.where(fin, p, 1.0), p_floor)
    inside = fin & (pc >= alpha)
    any_fin = fin.any(axis=1)
    any_in = inside.any(axis=1)
    last = nm - 1 - np.argmax(inside[:, ::-1], axis=1)  # last usable point with p ≥ α
    if fin.all():  # every point usable (the bootstrap's curves): the next one is last + 1
        k = last + 1
    else:  # next usable point after each position (nm if none)
        pos = np.where(fin, np.arange(nm), nm)
        nxt = np.concatenate([np.minimum.accumulate(pos[:, ::-1], axis=1)[:, ::-1][:, 1:],
                              np.full((n, 1), nm)], axis=1)
        k = nxt[np.arange(n), last]
    lim = np.full(n, np.nan)
    code = np.full(n, LIMIT_UNDEFINED, dtype=np.int8)
    below = any_fin & ~any_in
    lim[below] = mu[np.argmax(fin[below], axis=1)]
    code[below] = LIMIT_BELOW
    above = any_in & (k >= nm)
    lim[above] = np.inf
    code[above] = LIMIT_ABOVE
    ok = any_in & (k < nm)
    rows = np.flatnonzero(ok)
    if rows.size:
        lo, hi = last[ok], k[ok]
        m, _ = _loglinear(mu[lo], mu[hi], pc[rows, lo], pc[rows, hi], alpha)
        lim[ok] = m
        code[ok] = LIMIT_OK
    return lim, code


def refine_grid(mu: np.ndarray, p: np.ndarray, alpha: float, n_new: int = 4) -> np.ndarray:
    """``n_new`` extra POI points evenly inside the interval bracketing the crossing of ``p``
    (to reduce the interpolation bias of a coarse grid); empty if there is no crossing."""
    c = crossing(mu, p, alpha)
    if c.status != "ok" or c.bracket is None:
        return np.zeros(0)
    a, b = np.asarray(mu, float)[list(c.bracket)]
    return np.linspace(a, b, n_new + 2)[1:-1]
