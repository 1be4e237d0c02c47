"""One-dimensional interpolation stencils on bin centres (ROOT's rule), and rebinning.

The building blocks of :class:`lzflow.stats.interpolate.HistDensity2D` (the maths, the stencil
rule and the edge modes are described there): for points ``x`` on an axis with bin edges ``e``,
:func:`stencil_1d` gives the ``N + 1`` bins of the order-N stencil and their Lagrange weights
(``"mirror"``: ROOT's mirrored nodes beyond the range; ``"shift"``: the stencil shifted inside),
:func:`interpolation_matrix_1d` the same as a dense matrix, :func:`cells` the breakpoints between
which the interpolant is one polynomial, :func:`gauss_grid` composite Gauss–Legendre nodes on
them; :func:`rebin` merges ``k`` bins per axis.

Reference: ROOT, ``RooDataHist::interpolateDim`` (roofit/roofitcore/src/RooDataHist.cxx).
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

__all__ = ["EDGE_MODES", "MAX_ORDER", "bin_centres", "check_edges", "rebin", "right_index", "stencil_1d",
           "stencil_tables", "interpolation_matrix_1d", "cells", "gauss_grid"]

#: boundary treatments of the stencil
EDGE_MODES = ("mirror", "shift")
#: ROOT keeps at most 10 stencil nodes (``double yarr[10]``)
MAX_ORDER = 9


def bin_centres(edges: np.ndarray) -> np.ndarray:
    """Midpoints of consecutive edges."""
    e = np.asarray(edges, dtype=np.float64)
    return 0.5 * (e[1:] + e[:-1])


def check_edges(edges: np.ndarray, name: str) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
        raise ValueError(f"{name}: edges must be a finite, strictly increasing 1D array")
    return e


def rebin(
    values: np.ndarray, edges: Sequence[np.ndarray], factor: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Merge ``factor × factor`` blocks of bins (contents are summed).

    ``values``: ``(..., nx, ny)`` contents (leading axes, e.g. a stack of templates, are kept);
    ``edges``: ``[x_edges, y_edges]``. Returns ``(values, [x_edges[::factor], y_edges[::factor]])``.
    Raises ``ValueError`` unless both bin counts are divisible by ``factor``.
    """
    f = int(factor)
    if f != factor or f < 1:
        raise ValueError(f"rebin factor must be a positive integer, got {factor!r}")
    v = np.asarray(values, dtype=np.float64)
    ex, ey = (np.asarray(e, dtype=np.float64) for e in edges)
    if v.ndim < 2 or v.shape[-2:] != (ex.size - 1, ey.size - 1):
        raise ValueError(f"values shape {v.shape} does not match the edges "
                         f"({ex.size - 1}, {ey.size - 1})")
    nx, ny = v.shape[-2:]
    if nx % f or ny % f:
        raise ValueError(f"cannot rebin ({nx}, {ny}) bins by {f}: not divisible")
    if f == 1:
        return v.copy(), [ex.copy(), ey.copy()]
    lead = v.shape[:-2]
    out = v.reshape(lead + (nx // f, f, ny // f, f)).sum(axis=(-3, -1))
    return out, [ex[::f].copy(), ey[::f].copy()]


# ----------------------------------------------------------------------------- 1D stencils
def right_index(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``searchsorted(grid, x, side="right") − 1`` (−1 … len(grid)−1), exactly, with an
    arithmetic first guess and a correction step when ``grid`` is uniformly spaced (the
    analysis axes are), a binary search otherwise."""
    g = np.asarray(grid, dtype=np.float64)
    k = g.size
    info = _uniform_grid(g.tobytes())
    if info is None:
        return np.searchsorted(g, x, side="right") - 1
    h, gp = info
    with np.errstate(invalid="ignore"):
        i = np.floor((x - g[0]) * (1.0 / h))
    i = np.clip(np.nan_to_num(i, nan=-1.0), -1, k - 1).astype(np.intp)
    for _ in range(2):  # rounding can put the guess one step off
        i -= x < gp[i + 1]
        i += x >= gp[i + 2]
    return i


@functools.lru_cache(maxsize=64)
def _uniform_grid(key: bytes) -> tuple[float, np.ndarray] | None:
    """(spacing, grid padded with ∓inf) for a uniformly spaced grid, else None."""
    g = np.frombuffer(key, dtype=np.float64)
    k = g.size
    if k < 3:
        return None
    h = (g[-1] - g[0]) / (k - 1)
    if not np.allclose(np.diff(g), h, rtol=1e-12, atol=0.0):
        return None
    gp = np.concatenate([[-np.inf], g, [np.inf]])  # gp[i + 1] = g[i]
    gp.setflags(write=False)
    return h, gp


def _stencil_tables(
    edges: np.ndarray, order: int, edge: str
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Per possible stencil start ``lo`` (from ``lo_min``): bins ``(L, N+1)``, nodes
    ``(L, N+1)`` and inverse Lagrange denominators ``1 / Π_{b≠a} (t_a − t_b)`` ``(L, N+1)``."""
    if edge not in EDGE_MODES:
        raise ValueError(f"edge must be one of {EDGE_MODES}, got {edge!r}")
    return _stencil_tables_cached(np.asarray(edges, dtype=np.float64).tobytes(), int(order), edge)


@functools.lru_cache(maxsize=64)
def _stencil_tables_cached(key: bytes, order: int, edge: str):
    e = np.frombuffer(key, dtype=np.float64)
    m, n = e.size - 1, int(order)
    c = bin_centres(e)
    lo_min = -1 - n // 2
    lo = np.arange(lo_min, m - n // 2)  # j = −1 … m−1
    if edge == "shift":
        raw = np.clip(lo, 0, m - 1 - n)[:, None] + np.arange(n + 1)[None, :]
        idx, nodes = raw, c[raw]
    elif edge == "mirror":
        raw = lo[:, None] + np.arange(n + 1)[None, :]
        under, over = raw < 0, raw >= m
        idx = np.where(under, -raw - 1, np.where(over, 2 * m - raw - 1, raw))
        nodes = c[idx]
        nodes = np.where(under, 2.0 * e[0] - nodes, np.where(over, 2.0 * e[-1] - nodes, nodes))
    else:
        raise ValueError(f"edge must be one of {EDGE_MODES}, got {edge!r}")
    denom = np.ones_like(nodes)
    for a in range(n + 1):
        for b in range(n + 1):
            if a != b:
                denom[:, a] *= nodes[:, a] - nodes[:, b]
    out = (idx, nodes, 1.0 / denom)
    for arr in out:  # shared by the cache
        arr.setflags(write=False)
    return (lo_min, *out)


def stencil_tables(
    edges: np.ndarray, order: int, edge: str = "mirror"
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """``(lo_min, idx, nodes, inv_denominators)`` of :func:`stencil_1d` (read-only, cached): row
    ``right_index(x, centres) − order // 2 − lo_min`` holds the stencil of the point x (order ≥ 1;
    for compiled evaluations that repeat :func:`stencil_1d` operation by operation)."""
    return _stencil_tables(edges, order, edge)


@functools.lru_cache(maxsize=64)
def _centres_cached(key: bytes) -> np.ndarray:
    c = bin_centres(np.frombuffer(key, dtype=np.float64))
    c.setflags(write=False)
    return c


def stencil_1d(
    x: np.ndarray, edges: np.ndarray, order: int, edge: str = "mirror"
) -> tuple[np.ndarray, np.ndarray]:
    """Stencil bins and Lagrange weights of the points ``x`` along one axis.

    Returns ``(idx, w)``, both ``(len(x), order + 1)``: the 1D interpolant at ``x`` is
    ``Σ_a w[:, a] · d[idx[:, a]]`` (see the module docstring for the stencil and edge rules),
    with ``w_a = Π_{b≠a} (x − t_b) / Π_{b≠a} (t_a − t_b)`` — numerators from prefix/suffix
    products, denominators tabulated per stencil. Points outside the range get the weights of
    the nearest end (callers mask them).
    """
    e = np.asarray(edges, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64).ravel()
    m = e.size - 1
    n = int(order)
    if n == 0:
        idx = np.clip(right_index(x, e), 0, m - 1)
        return idx[:, None], np.ones((x.size, 1))
    lo_min, idx_t, nodes_t, inv_t = _stencil_tables(e, n, edge)
    row = right_index(x, _centres_cached(e.tobytes())) - n // 2 - lo_min  # stencil of the largest centre ≤ x
    diff = x[:, None] - nodes_t[row]  # (E, N+1)
    w = np.empty_like(diff)
    prefix = np.ones(x.size)
    for a in range(n + 1):  # w_a ← Π_{b<a} (x − t_b)
        w[:, a] = prefix
        prefix = prefix * diff[:, a]
    suffix = np.ones(x.size)
    for a in range(n, -1, -1):  # … × Π_{b>a} (x − t_b)
        w[:, a] *= suffix
        suffix = suffix * diff[:, a]
    w *= inv_t[row]
    return idx_t[row], w


def interpolation_matrix_1d(
    x: np.ndarray, edges: np.ndarray, order: int, edge: str = "mirror"
) -> np.ndarray:
    """Dense ``(len(x), n_bins)`` matrix A with ``P(x_k) = Σ_i A[k, i] d_i`` along one axis."""
    idx, w = stencil_1d(x, edges, order, edge)
    a = np.zeros((idx.shape[0], np.asarray(edges).size - 1))
    rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
    np.add.at(a, (rows, idx.ravel()), w.ravel())
    return a


def cells(edges: np.ndarray, order: int) -> np.ndarray:
    """Breakpoints between which the 1D interpolant is one polynomial *and* the containing bin
    is fixed: the edges, plus the bin centres for order ≥ 1 (where the stencil changes)."""
    e = np.asarray(edges, dtype=np.float64)
    if order == 0:
        return e
    return np.sort(np.concatenate([e, bin_centres(e)]))


def gauss_grid(breaks: np.ndarray, n_nodes: int, sub: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss–Legendre nodes/weights: ``sub`` equal sub-intervals per cell."""
    t, wt = np.polynomial.legendre.leggauss(n_nodes)
    b = np.asarray(breaks, dtype=np.float64)
    fine = np.concatenate([np.linspace(b[k], b[k + 1], sub + 1)[:-1] for k in range(b.size - 1)]
                          + [b[-1:]])
    lo, hi = fine[:-1], fine[1:]
    half = 0.5 * (hi - lo)
    nodes = (0.5 * (hi + lo))[:, None] + half[:, None] * t[None, :]
    weights = half[:, None] * wt[None, :]
    return nodes.ravel(), weights.ravel()


# ----------------------------------------------------------------------------- the density
