"""Compiled loops (numba) of the multiplicatively morphed NLL (:mod:`lzflow.stats.logmorph_nll`).

The template's non-zero entries are stored **by support group**: samples whose templates fill
exactly the same bins form a group (at 40 GeV: the NR group signal, DSN, DetNR, atm on 507 bins;
the ER group on 559; B8; hep), and the entries of a group are ``(samples of the group) × (bins of
the group)``, sample-major. Sums over a bin's samples are then vector operations over the group's
bins, and only one scatter per group-bin remains (1,257 instead of 5,573 entries at 40 GeV).

Every loop runs over the entries of **one toy at a time**, in an order that depends only on the
layout, never on which other toys are in the block: a toy's ν, NLL, gradient and Hessian are the
same whatever the block size, the sub-block split or the number of threads (tested). Sums may be
reassociated into vector lanes and a·b + c contracted (``fastmath={"reassoc", "contract"}``), as
in :mod:`lzflow.stats._unbinned_kernels`: deterministic for a given machine (numba compiles per
CPU); no assumption about NaN or infinities is made.

* :func:`log_terms` — E_tx = Σ_j B_tj C_jx (the exponent, before ``np.exp``: numpy's exponential
  is vectorised, numba's scalar one is 7× slower);
* :func:`point_grad` — per toy: U = T ⊙ exp(E) (in place), ν_l = Σ_s c_s U_sl and the Poisson part
  of the NLL (:func:`_point_one`), then, while the toy's templates are in the cache, the gradient
  ∂NLL/∂c_s (free c) and ∂NLL/∂α_k plus W·C for the Hessian's diagonal (:func:`_grad_one`): the Newton
  engine asks for the gradient at almost every point it evaluates;
* :func:`hessian` — Gauss–Newton part and second-derivative terms, in the work type (float32 by
  default), returned toy-last as the Newton engine wants.

Compiled on first use and cached on disk (``cache=True``); they release the GIL, so the toy
threads run them in parallel.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["hessian", "log_terms", "point_grad"]

_MATH = {"reassoc", "contract"}


#: entries whose exponents are formed together for all toys of a block (the coefficients of a
#: chunk, J × 256 × 8 bytes, stay in the L1/L2 cache across toys)
_CHUNK = 256


@numba.njit(inline="always")
def _pass8(b, ri, j, C, x0, x1, o, first):  # pragma: no cover - compiled
    """``o (=|+=) Σ_{i<8} b[j+i] C[ri[j+i], x0:x1]``."""
    b0, b1, b2, b3, b4, b5, b6, b7 = b[j], b[j + 1], b[j + 2], b[j + 3], b[j + 4], b[j + 5], b[j + 6], b[j + 7]
    c0, c1, c2, c3 = C[ri[j], x0:x1], C[ri[j + 1], x0:x1], C[ri[j + 2], x0:x1], C[ri[j + 3], x0:x1]
    c4, c5, c6, c7 = C[ri[j + 4], x0:x1], C[ri[j + 5], x0:x1], C[ri[j + 6], x0:x1], C[ri[j + 7], x0:x1]
    if first:
        for x in range(x1 - x0):
            o[x] = (b0 * c0[x] + b1 * c1[x] + b2 * c2[x] + b3 * c3[x]
                    + b4 * c4[x] + b5 * c5[x] + b6 * c6[x] + b7 * c7[x])
    else:
        for x in range(x1 - x0):
            o[x] += (b0 * c0[x] + b1 * c1[x] + b2 * c2[x] + b3 * c3[x]
                     + b4 * c4[x] + b5 * c5[x] + b6 * c6[x] + b7 * c7[x])

@numba.njit(inline="always")
def _pass4(b, ri, j, C, x0, x1, o, first):  # pragma: no cover - compiled
    b0, b1, b2, b3 = b[j], b[j + 1], b[j + 2], b[j + 3]
    c0, c1, c2, c3 = C[ri[j], x0:x1], C[ri[j + 1], x0:x1], C[ri[j + 2], x0:x1], C[ri[j + 3], x0:x1]
    if first:
        for x in range(x1 - x0):
            o[x] = b0 * c0[x] + b1 * c1[x] + b2 * c2[x] + b3 * c3[x]
    else:
        for x in range(x1 - x0):
            o[x] += b0 * c0[x] + b1 * c1[x] + b2 * c2[x] + b3 * c3[x]

@numba.njit(inline="always")
def _pass1(b, ri, j, C, x0, x1, o, first):  # pragma: no cover - compiled
    b0 = b[j]
    c0 = C[ri[j], x0:x1]
    if first:
        for x in range(x1 - x0):
            o[x] = b0 * c0[x]
    else:
        for x in range(x1 - x0):
            o[x] += b0 * c0[x]

@numba.njit(inline="always")
def _combine(b, ri, j0, R, C, x0, x1, o, init):  # pragma: no cover - compiled
    """``o (=|+=) Σ_{j0 ≤ j < j0+R} b[j] C[ri[j], x0:x1]`` (``=`` if ``init``): eight rows a pass, then
    four, then one (a fixed order for given ``j0, R``; few passes over ``o``)."""
    j = 0
    while j + 8 <= R:
        _pass8(b, ri, j0 + j, C, x0, x1, o, init and j == 0)
        j += 8
    while j + 4 <= R:
        _pass4(b, ri, j0 + j, C, x0, x1, o, init and j == 0)
        j += 4
    while j < R:
        _pass1(b, ri, j0 + j, C, x0, x1, o, init and j == 0)
        j += 1


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def log_terms(Bv, Ri, C, E, runs, Rs, er):  # pragma: no cover - compiled
    """``E[er[t]] = Σ_j Bv[t, j] C[Ri[t, j]]`` (``er`` ``(n,)``: the row of ``E`` of toy t) (``Bv``, ``Ri`` ``(n, J)``, ``C`` ``(rows, X)``): for each toy
    the same operations in the same order, chunk by chunk of entries. ``runs`` ``(R, 4)``: systematics
    k0 ≤ k < k1 whose coefficients vanish outside the entries lo ≤ x < hi (rows k Ĵ … (k+1) Ĵ − 1 of
    a toy: ``Rs[t, k] ≤ j < Rs[t, k+1]``, ``Rs`` ``(n, K+1)``): each run is a :func:`_combine` over
    its rows and entries only, in run order; entries the first run does not cover start from 0."""
    X = C.shape[1]
    for x0 in range(0, X, _CHUNK):
        x1 = min(x0 + _CHUNK, X)
        full = runs[0, 2] <= x0 and runs[0, 3] >= x1
        for t in range(Bv.shape[0]):
            e = er[t]
            if not full:
                for x in range(x0, x1):
                    E[e, x] = 0.0
            for r in range(runs.shape[0]):
                a, b = max(x0, runs[r, 2]), min(x1, runs[r, 3])
                if a < b:
                    j0 = Rs[t, runs[r, 0]]
                    _combine(Bv[t], Ri[t], j0, Rs[t, runs[r, 1]] - j0, C, a, b, E[e, a:b], full and r == 0)


@numba.njit(inline="always", error_model="numpy", fastmath=_MATH)
def _point_one(u, Tx, c_t, g_samp, g_sptr, g_bins, g_bptr, g_eoff, ct, v, tmp):  # pragma: no cover - compiled
    """One toy: ``u *= Tx`` (u held exp(E)); ``v`` = ν ``(L,)`` over the live bins; returns Σ_l ν_l −
    Σ_{n_l > 0} n_l ln ν_l (+inf where ν_l ≤ 0 with n_l > 0, NaN propagated)."""
    G = g_eoff.size
    L = v.size
    for i in range(L):
        v[i] = 0.0
    for g in range(G):
        bins = g_bins[g_bptr[g] : g_bptr[g + 1]]
        Lg = bins.size
        x0 = g_eoff[g]
        for r in range(g_sptr[g], g_sptr[g + 1]):
            cs = c_t[g_samp[r]]
            ug = u[x0 : x0 + Lg]
            tg = Tx[x0 : x0 + Lg]
            if r == g_sptr[g]:
                for j in range(Lg):
                    ug[j] *= tg[j]
                    tmp[j] = cs * ug[j]
            else:
                for j in range(Lg):
                    ug[j] *= tg[j]
                    tmp[j] += cs * ug[j]
            x0 += Lg
        for j in range(Lg):
            v[bins[j]] += tmp[j]
    total = 0.0
    for i in range(L):
        total += v[i]
    logs = 0.0
    bad = False
    for i in range(L):
        k = ct[i]
        if k > 0.0:
            if v[i] > 0.0:
                logs += k * math.log(v[i])
            elif v[i] == v[i]:  # ν ≤ 0 (NaN propagates)
                bad = True
    return np.inf if bad else total - logs


@numba.njit(inline="always", error_model="numpy", fastmath=_MATH)
def _q_of(counts_t, nu_t, q):  # pragma: no cover - compiled
    for i in range(nu_t.size):
        k = counts_t[i]
        q[i] = 1.0 - k / nu_t[i] if k > 0.0 else 1.0


@numba.njit(inline="always", error_model="numpy", fastmath=_MATH)
def _grad_one(u, nu_t, ct, c_t, g_samp, g_sptr, g_bins, g_bptr, g_eoff, C, bv1, ri, col_of, nc, g_t, wc,
              q, qg, w, runs, rs):  # pragma: no cover - compiled
    """One toy (templates ``u``): Poisson part of the gradient ``g_t`` ``(p,)`` (c columns ``col_of[s] ≥ 0``,
    α columns ``nc + k``) and ``wc[j] = Σ_x W_x C[ri[j], x]`` with W_x = q_l c_s U_x, q = 1 − n/ν;
    ``q``, ``qg``, ``w``: work arrays; ``runs``, ``rs`` (the toy's row of ``Rs``): as :func:`log_terms`
    (W·C_j is summed over its run's entries)."""
    K = g_t.size - nc
    G = g_eoff.size
    _q_of(ct, nu_t, q)
    for g_ in range(G):
        bins = g_bins[g_bptr[g_] : g_bptr[g_ + 1]]
        Lg = bins.size
        for j in range(Lg):
            qg[j] = q[bins[j]]
        x0 = g_eoff[g_]
        for r in range(g_sptr[g_], g_sptr[g_ + 1]):
            s = g_samp[r]
            cs = c_t[s]
            ug = u[x0 : x0 + Lg]
            wg = w[x0 : x0 + Lg]
            acc = 0.0
            for j in range(Lg):
                qu = qg[j] * ug[j]
                acc += qu
                wg[j] = cs * qu
            if col_of[s] >= 0:
                g_t[col_of[s]] = acc
            x0 += Lg
    for r_ in range(runs.shape[0]):  # per run of systematics: its rows over its entries only
        jj, jend, xa, xb = rs[runs[r_, 0]], rs[runs[r_, 1]], runs[r_, 2], runs[r_, 3]
        nx = xb - xa  # loops from 0 over slices: indices provably ≥ 0, so the loops vectorise
        wr = w[xa:xb]
        while jj + 8 <= jend:  # eight, then four coefficient rows per pass over W
            c0, c1, c2, c3 = C[ri[jj], xa:xb], C[ri[jj + 1], xa:xb], C[ri[jj + 2], xa:xb], C[ri[jj + 3], xa:xb]
            c4, c5, c6, c7 = C[ri[jj + 4], xa:xb], C[ri[jj + 5], xa:xb], C[ri[jj + 6], xa:xb], C[ri[jj + 7], xa:xb]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
            for x in range(nx):
                wx = wr[x]
                a0 += wx * c0[x]
                a1 += wx * c1[x]
                a2 += wx * c2[x]
                a3 += wx * c3[x]
                a4 += wx * c4[x]
                a5 += wx * c5[x]
                a6 += wx * c6[x]
                a7 += wx * c7[x]
            wc[jj], wc[jj + 1], wc[jj + 2], wc[jj + 3] = a0, a1, a2, a3
            wc[jj + 4], wc[jj + 5], wc[jj + 6], wc[jj + 7] = a4, a5, a6, a7
            jj += 8
        while jj + 4 <= jend:
            c0, c1, c2, c3 = C[ri[jj], xa:xb], C[ri[jj + 1], xa:xb], C[ri[jj + 2], xa:xb], C[ri[jj + 3], xa:xb]
            a0 = a1 = a2 = a3 = 0.0
            for x in range(nx):
                wx = wr[x]
                a0 += wx * c0[x]
                a1 += wx * c1[x]
                a2 += wx * c2[x]
                a3 += wx * c3[x]
            wc[jj], wc[jj + 1], wc[jj + 2], wc[jj + 3] = a0, a1, a2, a3
            jj += 4
        while jj < jend:
            cj = C[ri[jj], xa:xb]
            acc = 0.0
            for x in range(nx):
                acc += wr[x] * cj[x]
            wc[jj] = acc
            jj += 1
    for k in range(K):
        acc = 0.0
        for j in range(rs[k], rs[k + 1]):
            acc += bv1[j] * wc[j]
        g_t[nc + k] = acc


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=_MATH)
def point_grad(U, Tx, c, g_samp, g_sptr, g_bins, g_bptr, g_eoff, counts, nu, out, C, Bv1, Ri, col_of, nc, g,
               WC, runs, Rs, ur):  # pragma: no cover - compiled
    """For each toy t: :func:`_point_one` (NLL ``out[t]``, ν ``nu[t]``, its templates ``U[ur[t]]``
    completed) then :func:`_grad_one` (``g[t]``, ``WC[t]``) on the same templates."""
    n, L = nu.shape
    tmp = np.empty(L)
    q = np.empty(L)
    qg = np.empty(L)
    w = np.empty(C.shape[1])
    for t in range(n):
        u = U[ur[t]]
        out[t] = _point_one(u, Tx, c[t], g_samp, g_sptr, g_bins, g_bptr, g_eoff, counts[t], nu[t], tmp)
        _grad_one(u, nu[t], counts[t], c[t], g_samp, g_sptr, g_bins, g_bptr, g_eoff, C, Bv1[t], Ri[t],
                  col_of, nc, g[t], WC[t], q, qg, w, runs, Rs[t])


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=_MATH)
def hessian(rows, U, ui, nu, counts, c, g_samp, g_sptr, g_bins, g_bptr, g_eoff, Cw, Bv1, Bv2, Ri, WC, col_of, nc,
            prec, H, D, J_, runs, Rs):  # pragma: no cover - compiled
    """Hessians of the rows ``rows`` into ``H`` ``(p, p, len(rows))`` (toy-last, float64; row t's
    templates ``U[ui[t]]``).

    Work arrays ``D`` ``(K, X)`` (zero-filled: only each systematic's run of entries, ``runs`` as in
    :func:`log_terms`, is written) and ``J_`` ``(p, 2 L)`` of the work type (float32 or float64):
    D_kx = Σ_m B'_m(α_k) C_mkx (B' rounded to the work type); J the Jacobian ∂ν_l/∂y over the bins with counts (w = 0 elsewhere). H = Σ_l w_l J_l J_lᵀ
    (w = n/ν²) + [c–α: Σ_{x∈s} q U_x D_kx] + [α–α: Σ_x W_x D_kx D_lx + δ_kl Σ_m B''_m W·C_mk] + P."""
    L = nu.shape[1]
    JJ, X = Bv1.shape[1], Cw.shape[1]
    K, p = D.shape[0], H.shape[0]
    G = g_eoff.size
    zero = np.zeros(1, D.dtype)[0]  # sums of work-type products stay in the work type
    q = np.empty(L)
    wl = np.empty(L, dtype=D.dtype)
    W = np.empty(X, dtype=D.dtype)
    QU = np.empty(X, dtype=D.dtype)
    UC = np.empty(X, dtype=D.dtype)
    JA = np.empty((K, L), dtype=D.dtype)
    qg = np.empty(L)
    pos = np.empty(L, dtype=np.int64)
    pg = np.empty(L, dtype=np.int64)
    tmp = np.empty(max(L, X), dtype=D.dtype)
    acc_a = np.empty(p)
    bw = np.empty(JJ, dtype=D.dtype)
    klo = np.empty(K, dtype=np.int64)  # the run of entries of each systematic
    khi = np.empty(K, dtype=np.int64)
    for r_ in range(runs.shape[0]):
        for k in range(runs[r_, 0], runs[r_, 1]):
            klo[k], khi[k] = runs[r_, 2], runs[r_, 3]
    for i in range(rows.size):
        t = rows[i]
        ct, nt, vt = counts[t], nu[t], U[ui[t]]
        npos = 0  # the Gauss–Newton part needs only the bins with counts: columns 0 … npos−1 of J
        for l in range(L):
            k_ = ct[l]
            if k_ > 0.0:
                r = k_ / nt[l]
                q[l] = 1.0 - r
                wl[npos] = r / nt[l]
                pos[l] = npos
                npos += 1
            else:
                q[l] = 1.0
                pos[l] = L + l  # scratch columns, never read (distinct: no chain of stores to one address)
        for j in range(JJ):  # B' in the work type: D's sums then stay in it (float32: 5× faster)
            bw[j] = Bv1[t, j]
        for r_ in range(runs.shape[0]):  # D_k over k's run of entries (D is 0 outside it: allocated so)
            xa, xb = runs[r_, 2], runs[r_, 3]
            for k in range(runs[r_, 0], runs[r_, 1]):
                if xa < xb:
                    _combine(bw, Ri[t], Rs[t, k], Rs[t, k + 1] - Rs[t, k], Cw, xa, xb, D[k, xa:xb], True)
        for a in range(p):
            ja = J_[a]
            for l in range(npos):
                ja[l] = 0.0
            for b_ in range(p):
                H[a, b_, i] = 0.0
        # entries group by group: W, qU, cU, the Jacobian columns and the c–α cross terms
        for g_ in range(G):
            bins = g_bins[g_bptr[g_] : g_bptr[g_ + 1]]
            Lg = bins.size
            for j in range(Lg):
                qg[j] = q[bins[j]]
                pg[j] = pos[bins[j]]
            x0 = g_eoff[g_]
            for r in range(g_sptr[g_], g_sptr[g_ + 1]):
                s = g_samp[r]
                cs = c[t, s]
                col = col_of[s]
                first = r == g_sptr[g_]
                ug = vt[x0 : x0 + Lg]
                qug = QU[x0 : x0 + Lg]
                wg = W[x0 : x0 + Lg]
                ucg = UC[x0 : x0 + Lg]
                for j in range(Lg):
                    qu = qg[j] * ug[j]
                    qug[j] = qu
                    wg[j] = cs * qu
                    ucg[j] = cs * ug[j]
                if col >= 0:
                    jc = J_[col]
                    for j in range(Lg):
                        jc[pg[j]] = ug[j]
                for k in range(K):  # one pass over D_k: the cross term and Σ_s c_s U_s D_k per bin
                    dg = D[k, x0 : x0 + Lg]
                    ak = JA[k]
                    acc = zero
                    if first:
                        for j in range(Lg):
                            acc += qug[j] * dg[j]
                            ak[j] = ucg[j] * dg[j]
                    else:
                        for j in range(Lg):
                            acc += qug[j] * dg[j]
                            ak[j] += ucg[j] * dg[j]
                    if col >= 0:
                        H[col, nc + k, i] = acc
                        H[nc + k, col, i] = acc
                x0 += Lg
            for k in range(K):
                ja = J_[nc + k]
                ak = JA[k]
                for j in range(Lg):
                    ja[pg[j]] += ak[j]
        # α–α second derivatives: Σ_x W D_k D_l (+ δ_kl Σ_m B''_m (W·C)_mk, in float64)
        for k in range(K):  # over the entries where both D_k and D_l can be non-zero
            dk = D[k]
            xa = klo[k]
            wk, dkk, tk = W[xa : khi[k]], dk[xa : khi[k]], tmp[xa : khi[k]]
            for x in range(wk.size):  # loops from 0 over slices: indices provably ≥ 0, so they vectorise
                tk[x] = wk[x] * dkk[x]
            for k2 in range(k, K):
                a_, b_ = max(xa, klo[k2]), min(khi[k], khi[k2])
                d2 = D[k2, a_:b_] if a_ < b_ else D[k2, :0]
                t2 = tmp[a_:b_] if a_ < b_ else tmp[:0]
                acc = zero
                for x in range(d2.size):
                    acc += t2[x] * d2[x]
                H[nc + k, nc + k2, i] += acc
                if k2 != k:
                    H[nc + k2, nc + k, i] += acc
            acc2 = 0.0
            for j in range(Rs[t, k], Rs[t, k + 1]):
                acc2 += Bv2[t, j] * WC[t, j]
            H[nc + k, nc + k, i] += acc2
        # Gauss–Newton part over the bins with counts
        for a in range(p):
            ja = J_[a]
            for l in range(npos):
                tmp[l] = wl[l] * ja[l]
            for b_ in range(a, p):
                jb = J_[b_]
                acc = zero
                for l in range(npos):
                    acc += tmp[l] * jb[l]
                acc_a[b_] = acc
            for b_ in range(a, p):
                H[a, b_, i] += acc_a[b_]
                if b_ != a:
                    H[b_, a, i] += acc_a[b_]
            H[a, a, i] += prec[a]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def pchip_rows(alpha, M, B0, B1, B2, Ri, Rs):  # pragma: no cover - compiled
    """log_pchip's basis functions at ``alpha`` ``(n, K)`` on the columns of each α_k's knot interval
    j (:func:`lzflow.stats.logmorph.active_basis` without its stand-in: the value of knots j, j+1
    — the knot α = 0 has no value column — and the slopes of knots j, j+1: 4 rows, or 3 where the
    interval ends at α = 0) into ``B0, B1, B2`` ``(n, 4 K)``, their coefficient rows k M + column
    into ``Ri``, and the first row of each α_k into ``Rs`` ``(n, K + 1)`` (rows past ``Rs[t, K]``:
    0, row 0). The same numbers as :func:`lzflow.stats.logmorph.basis_functions` on those columns
    (same operations, strict IEEE: no contraction), without the numpy temporaries of the (n, K, 9)
    arrays."""
    n, K = alpha.shape
    for t_ in range(n):
        o = 0
        for k in range(K):
            Rs[t_, k] = o
            a = alpha[t_, k]
            x = a if math.isnan(a) else min(max(a, -2.0), 2.0)
            j = int(min(max(math.floor((0.0 if math.isnan(x) else x) + 2.0), 0.0), 3.0))
            t = x + 2.0 - j
            t2 = t * t
            t3 = t * t * t
            inside = abs(a) <= 2.0
            beyond = a - x
            nan0 = 0.0 * a  # NaN α: NaN
            end = 4 if a > 0 else 0
            eL, eR = (1.0 if end == j else 0.0), (1.0 if end == j + 1 else 0.0)
            v = (2 * t3 - 3 * t2 + 1, -2 * t3 + 3 * t2, t3 - 2 * t2 + t + eL * beyond, t3 - t2 + eR * beyond)
            if inside:
                d = (6 * t2 - 6 * t, -6 * t2 + 6 * t, 3 * t2 - 4 * t + 1, 3 * t2 - 2 * t)
                dd = (12 * t - 6, -12 * t + 6, 6 * t - 4, 6 * t - 2)
            else:  # linear continuation: slope 1 on the end knot's slope column
                d = (0.0, 0.0, eL, eR)
                dd = (0.0, 0.0, 0.0, 0.0)
            # columns: values of knots -2, -1, +1, +2 are 0-3 (knot 0 has none), slopes of knots -2 … +2 are 4-8
            cols = (j if j < 2 else j - 1, j + 1 if j + 1 < 2 else j, 4 + j, 5 + j)
            for i in range(4):
                if (i == 0 and j == 2) or (i == 1 and j == 1):  # the value of knot α = 0: no column
                    continue
                B0[t_, o] = v[i] + nan0
                B1[t_, o] = d[i] + nan0
                B2[t_, o] = dd[i] + nan0
                Ri[t_, o] = k * M + cols[i]
                o += 1
        Rs[t_, K] = o
        for i in range(o, Ri.shape[1]):
            B0[t_, i] = 0.0
            B1[t_, i] = 0.0
            B2[t_, i] = 0.0
            Ri[t_, i] = 0
