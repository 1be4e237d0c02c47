"""Compiled loops of the unbinned toys (numba): drawing the events and evaluating the fit
densities at them.

Both replace vectorised numpy code whose temporaries (three random words per event, the
``(E, (N+1)², S)`` gather of stencil values) cost more in memory traffic than the arithmetic.
They perform **the same floating-point operations in the same order** as the numpy definitions,
so their results are bit-identical to them (tested):

* :func:`draw_events` — the per-event words of :mod:`lzflow.stats.unbinned_model` (word
  ``F + 1 + 3e + {0, 1, 2}`` of toy k: its truth bin by the categorical guide-table search, then
  x and y uniform in that bin), with the SplitMix64 words of :func:`lzflow.stats._rng.words`
  (unsigned 64-bit arithmetic wraps in numba as in numpy) and the uniforms of
  :func:`~lzflow.stats._rng.uniforms_from_words`;
* :func:`event_values` — ``N_s · max(P_s(x, y), η d⁰_s) / Z_s`` of
  :meth:`lzflow.stats.interpolate.HistDensity2D.pdf_points` times the totals: the stencil rows
  and Lagrange weights of :func:`lzflow.stats.stencil.stencil_1d` (prefix/suffix products,
  tabulated denominators), the tensor sum ``Σ_a Σ_b (w_a w_b) d_{i_a j_b}`` accumulated in
  stencil order (numpy's ``einsum("ek,eks->es")`` order), written straight into the fitter's
  padded ``(n, S, E_max)`` layout with the bit mask of the positive templates of each event.

The fit loops (:func:`nu_and_sums`, :func:`hessians`) run over the events of one toy at a
time, innermost, so that they vectorise.

Functions are compiled on first use and cached on disk (numba ``cache=True``, in
``__pycache__``); they release the GIL, so the toy threads run them in parallel. This module is
imported only where unbinned toys are drawn or prepared (numba's import costs ~0.3 s).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["bin_columns", "block4", "draw_events", "event_values", "event_values_power", "hessians", "nu_and_sums"]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32, _S11 = (np.uint64(s) for s in (30, 27, 31, 32, 11))
_ONE, _THREE = np.uint64(1), np.uint64(3)
_TWO_M53 = 2.0**-53


@numba.njit(inline="always")
def _mix64(z):
    z ^= z >> _S30
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


@numba.njit(inline="always")
def _uniform(k0, k1, toy, j):
    """Uniform of word ``j`` of toy ``toy`` (both uint64) — ``uniforms_from_words(words(...))``."""
    z = (toy << _S32) + j
    z *= _GAMMA
    z += k0
    z = _mix64(z) ^ k1
    z = _mix64(z)
    return (np.float64(z >> _S11) + 0.5) * _TWO_M53


@numba.njit(nogil=True, cache=True)
def draw_events(key, toys, offsets, n_free, cdf, guide, last_pos, ex, ex_below, ey, ey_below,
                positions, bins, x, y):  # pragma: no cover - compiled
    """Events of the toys ``toys`` (int64) with ``offsets`` (their event counts), into
    ``bins`` (truth bin, C order), ``x`` and ``y`` (only the bins unless ``positions``).

    ``cdf``/``guide``/``last_pos``: the categorical table of the truth bins; ``ex_below`` =
    ``nextafter(ex[1:], -inf)`` (positions stay strictly below the upper edge). Per toy the
    uniforms of all its words are formed first (a branch-free loop over the events that the
    compiler vectorises), then the guide-table searches and the positions use them."""
    k0 = np.uint64(key[0])
    k1 = np.uint64(key[1])
    n_guide = guide.size
    ny = ey.size - 1
    first = np.uint64(n_free + 1)
    n_max = 0
    for t in range(toys.size):
        n_max = max(n_max, offsets[t + 1] - offsets[t])
    u0 = np.empty(n_max)
    u1 = np.empty(n_max)
    u2 = np.empty(n_max)
    for t in range(toys.size):
        toy = np.uint64(toys[t])
        a = offsets[t]
        ne = offsets[t + 1] - a
        for j in range(ne):
            j0 = first + _THREE * np.uint64(j)
            u0[j] = _uniform(k0, k1, toy, j0)
        if positions:
            for j in range(ne):
                j0 = first + _THREE * np.uint64(j)
                u1[j] = _uniform(k0, k1, toy, j0 + _ONE)
                u2[j] = _uniform(k0, k1, toy, j0 + _ONE + _ONE)
        for j in range(ne):
            u = u0[j]
            c = np.int64(u * n_guide)
            if c > n_guide - 1:
                c = n_guide - 1
            i = guide[c]
            while u >= cdf[i] and i < last_pos:
                i += 1
            bins[a + j] = i
            if positions:
                ix = i // ny
                iy = i - ix * ny
                lo = ex[ix]
                v = lo + u1[j] * (ex[ix + 1] - lo)
                x[a + j] = v if v <= ex_below[ix] else ex_below[ix]
                lo = ey[iy]
                v = lo + u2[j] * (ey[iy + 1] - lo)
                y[a + j] = v if v <= ey_below[iy] else ey_below[iy]


@numba.njit(inline="always")
def _right_index(g, x):
    """``searchsorted(g, x, "right") − 1`` exactly (−1 … len(g) − 1; −1 for NaN): a linear
    first guess corrected by stepping (a few steps on the analysis' uniform axes)."""
    k = g.size
    if not x == x:
        return -1
    h = (g[k - 1] - g[0]) / (k - 1)
    f = (x - g[0]) / h
    if f < -1.0:
        i = -1
    elif f > k - 1.0:
        i = k - 1
    else:
        i = np.int64(np.floor(f))
    while i >= 0 and x < g[i]:
        i -= 1
    while i + 1 < k and x >= g[i + 1]:
        i += 1
    return i


@numba.njit(nogil=True, cache=True)
def _stencils(x, centres, order, lo_min, idx_t, nodes_t, inv_t, idx, w):  # pragma: no cover
    """:func:`lzflow.stats.stencil.stencil_1d` (order ≥ 1) of the points ``x`` into ``idx``,
    ``w`` ``(≥ len(x), order + 1)``."""
    half = order // 2
    for e in range(x.size):
        xe = x[e]
        row = _right_index(centres, xe) - half - lo_min
        prefix = 1.0
        for a in range(order + 1):
            w[e, a] = prefix
            prefix = prefix * (xe - nodes_t[row, a])
        suffix = 1.0
        for a in range(order, -1, -1):
            w[e, a] *= suffix
            suffix = suffix * (xe - nodes_t[row, a])
        for a in range(order + 1):
            w[e, a] *= inv_t[row, a]
            idx[e, a] = idx_t[row, a]


@numba.njit(nogil=True, cache=True)
def event_values(x, y, offsets, order, ex, ey, cx, cy, tab_x, tab_y, table, floor, inv_norm,
                 totals, V, bits):  # pragma: no cover - compiled
    """``V[t, s, j] = (max(P_s, η d⁰_s) · inv_norm_s) · totals_s`` at event j of toy t (0 in the
    padding ``j ≥ n_t`` and outside the range), ``bits[t, j]`` = Σ_s 2^s [V[t, s, j] > 0].

    ``table`` ``(nx·ny, S)`` per-area node values (C order), ``cx``/``cy`` the bin centres,
    ``tab_x``/``tab_y`` the stencil tables ``(lo_min, idx, nodes, 1/denominators)`` of
    :func:`lzflow.stats.stencil._stencil_tables` (unused for order 0)."""
    n_sources = table.shape[1]
    ny = ey.size - 1
    e_max = V.shape[2]
    m = order + 1
    ix = np.zeros((e_max, m), np.int64)
    iy = np.zeros((e_max, m), np.int64)
    wx = np.ones((e_max, m))
    wy = np.ones((e_max, m))
    acc = np.empty(n_sources)
    for t in range(offsets.size - 1):
        a0 = offsets[t]
        ne = offsets[t + 1] - a0
        xs = x[a0 : a0 + ne]
        ys = y[a0 : a0 + ne]
        if order > 0:
            _stencils(xs, cx, order, tab_x[0], tab_x[1], tab_x[2], tab_x[3], ix, wx)
            _stencils(ys, cy, order, tab_y[0], tab_y[1], tab_y[2], tab_y[3], iy, wy)
        for j in range(ne):
            xe = xs[j]
            ye = ys[j]
            bits[t, j] = 0
            if not (xe >= ex[0] and xe <= ex[ex.size - 1] and ye >= ey[0] and ye <= ey[ny]):
                for s in range(n_sources):
                    V[t, s, j] = 0.0
                continue
            if order == 0:
                f0 = min(max(_right_index(ex, xe), 0), ex.size - 2) * ny
                f0 += min(max(_right_index(ey, ye), 0), ny - 1)
                for s in range(n_sources):
                    acc[s] = table[f0, s]
            else:
                for s in range(n_sources):
                    acc[s] = 0.0
                for a in range(m):
                    for b in range(m):
                        wab = wx[j, a] * wy[j, b]
                        f = ix[j, a] * ny + iy[j, b]
                        for s in range(n_sources):
                            acc[s] += wab * table[f, s]
            if floor > 0.0 and order > 0:
                f0 = min(max(_right_index(ex, xe), 0), ex.size - 2) * ny
                f0 += min(max(_right_index(ey, ye), 0), ny - 1)
                for s in range(n_sources):
                    low = floor * table[f0, s]
                    if acc[s] < low:  # np.maximum: NaN stays NaN
                        acc[s] = low
            else:
                for s in range(n_sources):
                    if acc[s] < 0.0:
                        acc[s] = 0.0
            mask = 0
            for s in range(n_sources):
                v = (acc[s] * inv_norm[s]) * totals[s]
                V[t, s, j] = v
                if v > 0.0:
                    mask |= 1 << s
            bits[t, j] = mask
        for j in range(ne, e_max):
            bits[t, j] = 0
            for s in range(n_sources):
                V[t, s, j] = 0.0


@numba.njit(nogil=True, cache=True)
def event_values_power(x, y, offsets, order, ex, ey, cx, cy, lo_x, lo_y, ref_x, ref_y, coef, table,
                       floor, inv_norm, totals, V, bits):  # pragma: no cover - compiled
    """:func:`event_values` (orders 1–3) from the interpolant written per stencil cell in powers of
    ``u = x − ref_x[r]``, ``v = y − ref_y[q]``: ``P_s = Σ_{k,l} u^k v^l coef[r, q, k m + l, s]``
    (:func:`lzflow.stats.unbinned.power_tables`); r, q the stencil rows of :func:`_stencils`.
    The same polynomial as the Lagrange form, without the per-event weights (≈ 1e-15 relative
    apart); clipping, floor, scaling and bits as :func:`event_values`."""
    n_sources = table.shape[1]
    ny = ey.size - 1
    e_max = V.shape[2]
    m = order + 1
    half = order // 2
    acc = np.empty(n_sources)
    pu = np.empty(m)
    pv = np.empty(m)
    for t in range(offsets.size - 1):
        a0 = offsets[t]
        ne = offsets[t + 1] - a0
        for j in range(ne):
            xe = x[a0 + j]
            ye = y[a0 + j]
            bits[t, j] = 0
            if not (xe >= ex[0] and xe <= ex[ex.size - 1] and ye >= ey[0] and ye <= ey[ny]):
                for s in range(n_sources):
                    V[t, s, j] = 0.0
                continue
            r = _right_index(cx, xe) - half - lo_x
            q = _right_index(cy, ye) - half - lo_y
            u = xe - ref_x[r]
            v = ye - ref_y[q]
            pu[0] = 1.0
            pv[0] = 1.0
            for k in range(1, m):
                pu[k] = pu[k - 1] * u
                pv[k] = pv[k - 1] * v
            for s in range(n_sources):
                acc[s] = 0.0
            cq = coef[r, q]
            for k in range(m):
                for l in range(m):
                    mk = pu[k] * pv[l]
                    row = cq[k * m + l]
                    for s in range(n_sources):
                        acc[s] += mk * row[s]
            if floor > 0.0:
                f0 = min(max(_right_index(ex, xe), 0), ex.size - 2) * ny
                f0 += min(max(_right_index(ey, ye), 0), ny - 1)
                for s in range(n_sources):
                    low = floor * table[f0, s]
                    if acc[s] < low:
                        acc[s] = low
            else:
                for s in range(n_sources):
                    if acc[s] < 0.0:
                        acc[s] = 0.0
            mask = 0
            for s in range(n_sources):
                val = (acc[s] * inv_norm[s]) * totals[s]
                V[t, s, j] = val
                if val > 0.0:
                    mask |= 1 << s
            bits[t, j] = mask
        for j in range(ne, e_max):
            bits[t, j] = 0
            for s in range(n_sources):
                V[t, s, j] = 0.0


@numba.njit(nogil=True, cache=True)
def bin_columns(key, offsets, n_bins, vals, bit_of):  # pragma: no cover - compiled
    """Order 0: per toy the bins ``key`` (0 … ``n_bins``, the last: outside) holding its events,
    ascending, as columns: ``V (n, P, C)`` = ``vals[bin]``, weights = the bin's events, bits =
    ``bit_of[bin]``, and the columns per toy (0 in the padding)."""
    n = offsets.size - 1
    n_par = vals.shape[1]
    counts = np.zeros((n, n_bins + 1), np.int64)
    ncol = np.zeros(n, np.int64)
    for t in range(n):
        ct = counts[t]
        for i in range(offsets[t], offsets[t + 1]):
            ct[key[i]] += 1
        c = 0
        for b in range(n_bins + 1):
            c += ct[b] > 0
        ncol[t] = c
    c_max = 0
    for t in range(n):
        c_max = max(c_max, ncol[t])
    V = np.zeros((n, n_par, c_max))
    w = np.zeros((n, c_max))
    bits = np.zeros((n, c_max), np.int64)
    for t in range(n):
        c = 0
        for b in range(n_bins + 1):
            k = counts[t, b]
            if k > 0:
                for s in range(n_par):
                    V[t, s, c] = vals[b, s]
                w[t, c] = k
                bits[t, c] = bit_of[b]
                c += 1
    return V, bits, w, ncol


# ----------------------------------------------------------------------------- fits
#: the fit loops may reassociate sums and contract a·b + c (vectorised sums over the events and
#: templates). Deterministic for a given machine (numba caches per CPU); no assumption about
#: NaN or infinities is made, so ν ≤ 0 still gives inf/NaN where the numpy maths would.
_FIT_MATH = {"reassoc", "contract"}


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=_FIT_MATH)
def nu_and_sums(V, rows, z, n_cols, w, nu, sums):  # pragma: no cover - compiled
    """For each stored row ``t = rows[i]`` at the full parameter vector ``z[i]``:
    ``ν[t, e] = Σ_s z_s V[t, s, e]`` for its ``n_cols[t]`` columns (1 in the padding) and
    ``sums[i, s] = Σ_e w_e V[t, s, e] / ν_e`` (``w`` ``None``: 1); the toy's values stay in
    cache between the two passes."""
    n_par = V.shape[1]
    c_max = V.shape[2]
    r = np.empty(c_max)
    for i in range(rows.size):
        t = rows[i]
        n = n_cols[t]
        nut = nu[t]
        x = V[t, 0]
        z0 = z[i, 0]
        for e in range(n):
            nut[e] = z0 * x[e]
        for s in range(1, n_par):
            x = V[t, s]
            zs = z[i, s]
            for e in range(n):
                nut[e] += zs * x[e]
        for e in range(n, c_max):
            nut[e] = 1.0
        if w is None:
            for e in range(n):
                r[e] = 1.0 / nut[e]
        else:
            wt = w[t]
            for e in range(n):
                r[e] = wt[e] / nut[e]
        for s in range(n_par):
            x = V[t, s]
            a = 0.0
            for e in range(n):
                a += x[e] * r[e]
            sums[i, s] = a


#: events per chunk of :func:`hessians` (the chunk's values and scaled values stay in L1)
_CHUNK = 128


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=_FIT_MATH)
def block4(s, x, j0, k0, m, h):  # pragma: no cover - compiled
    """``h[j0 + a, k0 + b] += Σ_{e<m} s[j0 + a, e] · x[k0 + b, e]`` for a, b < 4: 16 sums in one
    vectorised pass over the events (8 loads per 16 multiply-adds)."""
    s0, s1, s2, s3 = s[j0], s[j0 + 1], s[j0 + 2], s[j0 + 3]
    x0, x1, x2, x3 = x[k0], x[k0 + 1], x[k0 + 2], x[k0 + 3]
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = 0.0
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = 0.0
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
    h[j0, k0] += a00
    h[j0, k0 + 1] += a01
    h[j0, k0 + 2] += a02
    h[j0, k0 + 3] += a03
    h[j0 + 1, k0] += a10
    h[j0 + 1, k0 + 1] += a11
    h[j0 + 1, k0 + 2] += a12
    h[j0 + 1, k0 + 3] += a13
    h[j0 + 2, k0] += a20
    h[j0 + 2, k0 + 1] += a21
    h[j0 + 2, k0 + 2] += a22
    h[j0 + 2, k0 + 3] += a23
    h[j0 + 3, k0] += a30
    h[j0 + 3, k0 + 1] += a31
    h[j0 + 3, k0 + 2] += a32
    h[j0 + 3, k0 + 3] += a33


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=_FIT_MATH)
def hessians(V, rows, cols, n_cols, w, nu, prec, out):  # pragma: no cover - compiled
    """Hessians, toy-last: ``out[j, k, i] = Σ_e w_e V[t, c_j, e] V[t, c_k, e] / ν_e² + δ_jk prec_j``
    for ``t = rows[i]`` and the parameters ``c = cols`` (``w`` ``None``: 1), in double
    precision. The events run in chunks of ``_CHUNK``: per chunk the columns ``x_j = V_{c_j}``
    and ``s_j = x_j · w/ν²`` are copied (zero rows up to a multiple of 4) and the lower triangle
    of ``Σ s xᵀ`` is accumulated in 4 × 4 blocks (:func:`block4`); the upper is its mirror."""
    p = cols.size
    pp = (p + 3) // 4 * 4
    s = np.zeros((pp, _CHUNK))
    x = np.zeros((pp, _CHUNK))
    h = np.empty((pp, pp))
    for i in range(rows.size):
        t = rows[i]
        n = n_cols[t]
        nut = nu[t]
        for j in range(pp):
            for k in range(pp):
                h[j, k] = 0.0
        for e0 in range(0, n, _CHUNK):
            m = min(_CHUNK, n - e0)
            for j in range(p):
                v = V[t, cols[j]]
                xj = x[j]
                sj = s[j]
                for e in range(m):
                    xj[e] = v[e0 + e]
                if w is None:
                    for e in range(m):
                        r = 1.0 / nut[e0 + e]
                        sj[e] = xj[e] * (r * r)
                else:
                    for e in range(m):
                        r = 1.0 / nut[e0 + e]
                        sj[e] = xj[e] * (w[t, e0 + e] * (r * r))
            for j0 in range(0, pp, 4):
                for k0 in range(0, j0 + 1, 4):
                    block4(s, x, j0, k0, m, h)
        for j in range(p):
            out[j, j, i] = h[j, j] + prec[j]
            for k in range(j):
                out[j, k, i] = h[j, k]
                out[k, j, i] = h[j, k]
