"""The binned NLL of toys under a model with shape nuisance parameters, for the Newton engine.

With shape systematics (:mod:`lzflow.stats.morphing`) ν is no longer linear in the parameters:
``ν = z(c, α) @ M`` with the fixed basis M = [T_s; S_ks; A_ks] and c = [μ, θ]. For the free
parameters y (free entries of c, then every α) the exact derivatives are (r_i = n_i/ν_i,
w_i = n_i/ν_i², f = code 4p, P = constraint precisions, a = auxiliary observables)::

    ∂ν/∂c_s = T_s(α) = T_s + Σ_k (α_k S_ks + f(α_k) A_ks)
    ∂ν/∂α_k = Σ_s c_s (S_ks + f'(α_k) A_ks)
    ∂²ν/∂c_s∂α_k = S_ks + f'(α_k) A_ks,   ∂²ν/∂α_k² = f''(α_k) Σ_s c_s A_ks   (others 0)

    g = Σ_i (1 − r_i) ∂ν_i + P (y − a)
    H = Σ_i w_i ∂ν_i ∂ν_iᵀ + Σ_i (1 − r_i) ∂²ν_i + P

Every Σ_i (1 − r_i) (·) is a projection of the basis: Π = Σ_i (1 − r_i) M_·i = M·1 − M r, one
matrix product per block of toys (``r @ Mᵀ``, dense bins; CSR products over the non-zero sparse
entries — empty bins enter only through the constant M·1). The gradient and the whole
second-derivative part of H (θ–α cross terms and the α–α diagonal of code 4p) are contractions
of Π with (c, α); the Gauss–Newton part Σ w ∂ν ∂νᵀ is formed from each toy's Jacobian on the dense
bins (built by two matrix products over the block, optionally in single precision) and the
sparse entries. The dense/sparse split, the fixed part (μ when fixed, fixed backgrounds) and the
NewtonRows protocol (:class:`lzflow.stats.newton.NewtonRows`) are those of the rate-only fitter
(:mod:`lzflow.stats.binned_nll`).
"""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp

from .binned_nll import PreparedData
from .model import BinnedModel
from .morphing import code4p

__all__ = ["MorphLayout", "MorphRows", "morph_problem", "JACOBIAN_CHUNK"]

#: toys whose dense-bin Jacobians are built and multiplied together (work arrays in cache)
JACOBIAN_CHUNK = 8


class MorphLayout:
    """Free-parameter design of one fit type (μ free, or fixed at ``mu_fixed``) of a morphed model."""

    def __init__(self, model: BinnedModel, mu_fixed: float | None, dense_bins: np.ndarray,
                 sparse_bins: np.ndarray, float32: bool):
        basis = model.morph
        S, K = basis.S, basis.K
        self.S, self.K = S, K
        self.cols = model.fit_columns(mu_fixed is None)
        self.p = int(self.cols.size)
        self.cfree = self.cols[self.cols < S]
        self.nc = int(self.cfree.size)
        c0 = np.ones(S)
        c0[0] = 0.0 if mu_fixed is None else float(mu_fixed)
        self.c_fixed = c0
        self.prec = model.constraint_precision[self.cols]
        M = basis.M
        # ν and the projections Π use only the basis rows that are not identically 0 (a sample a
        # systematic does not affect): ``keep``; Π of the others is exactly 0
        self.keep = np.flatnonzero(np.any(M != 0, axis=1))
        Mk = M[self.keep]
        self.MDk = np.ascontiguousarray(Mk[:, dense_bins])  # (R_kept, D)
        self.MDkT = np.ascontiguousarray(self.MDk.T)  # (D, R_kept)
        self.MS = np.ascontiguousarray(Mk[:, sparse_bins].T)  # (nS, R_kept)
        self.Mtot = Mk.sum(axis=1)  # (R_kept,)
        self.MD = M[:, dense_bins]  # (R, D), every row (Jacobian bases)
        D = dense_bins.size
        wt = np.float32 if float32 else np.float64
        self.wt = wt
        # Jacobian bases: c-columns (1 + 2K, nc·D) with rows [T_s, S_ks (k), A_ks (k)] of the free samples
        rows = np.array([[s] + [S + k * S + s for k in range(K)] + [S + K * S + k * S + s for k in range(K)]
                         for s in self.cfree], dtype=int).reshape(self.nc, 1 + 2 * K)
        self.Bc = np.ascontiguousarray(self.MD[rows.T].reshape(1 + 2 * K, self.nc * D), dtype=wt)
        # α-columns (S, 2K·D): for each sample its [S_ks (k); A_ks (k)]
        sa = self.MD[S:].reshape(2, K, S, D).transpose(2, 0, 1, 3)  # (S, 2, K, D)
        self.SA = np.ascontiguousarray(sa.reshape(S, 2 * K * D), dtype=wt)
        # bins some allowed parameter value can fill: a basis row of a free or non-zero fixed
        # sample (without / with the signal when μ is fixed)
        sample_of_row = np.r_[np.arange(S), np.tile(np.arange(S), 2 * K)]
        self._live = {}
        for with_signal in (False, True):
            use = np.ones(S, dtype=bool)
            use[0] = with_signal or mu_fixed is None
            live = np.any(M[use[sample_of_row]] != 0, axis=0)
            self._live[with_signal] = (live[dense_bins], live[sparse_bins])
        self.liveD, self.liveS = self._live[mu_fixed is None or mu_fixed != 0]

    def at(self, mu_fixed: float | None) -> "MorphLayout":
        """This layout (made for the same fit type) with μ fixed at ``mu_fixed``."""
        if mu_fixed is None:
            return self
        out = copy.copy(self)
        out.c_fixed = self.c_fixed.copy()
        out.c_fixed[0] = float(mu_fixed)
        out.liveD, out.liveS = self._live[mu_fixed != 0]
        return out

    def split(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(c ``(n, S)``, α ``(n, K)``) of free-parameter rows ``y`` ``(n, p)``."""
        c = np.repeat(self.c_fixed[None, :], y.shape[0], axis=0)
        c[:, self.cfree] = y[:, : self.nc]
        return c, y[:, self.nc :]

    def coefficients(self, c: np.ndarray, alpha: np.ndarray, f: np.ndarray) -> np.ndarray:
        """z ``(n, R)`` = [c, c α_k, c f(α_k)] (k-major), so that ν = z @ M."""
        n, S, K = c.shape[0], self.S, self.K
        z = np.empty((n, S * (1 + 2 * K)))
        z[:, :S] = c
        z[:, S : S + K * S] = (alpha[:, :, None] * c[:, None, :]).reshape(n, K * S)
        z[:, S + K * S :] = (f[:, :, None] * c[:, None, :]).reshape(n, K * S)
        return z


class _Point:
    """ν and the morphing coefficients of a set of rows at one parameter point."""

    __slots__ = ("c", "alpha", "f", "f1", "f2", "z", "nuD", "nue")

    def __init__(self, lay: MorphLayout, y: np.ndarray, e_row: np.ndarray, MSe: np.ndarray):
        self.c, self.alpha = lay.split(y)
        self.f, self.f1, self.f2 = code4p(self.alpha)
        self.z = lay.coefficients(self.c, self.alpha, self.f)[:, lay.keep]
        self.nuD = self.z @ lay.MDk
        self.nue = np.einsum("er,er->e", MSe, self.z[e_row]) if e_row.size else np.zeros(0)

    def take(self, keep: np.ndarray, em: np.ndarray) -> "_Point":
        out = _Point.__new__(_Point)
        for name in ("c", "alpha", "f", "f1", "f2", "z", "nuD"):
            setattr(out, name, getattr(self, name)[keep])
        out.nue = self.nue[em]
        return out


class MorphRows:
    """NLL, gradient and Hessians of a set of toys under a morphed model (a
    :class:`lzflow.stats.newton.NewtonRows`; maths in the module docstring)."""

    def __init__(self, lay: MorphLayout, nD: np.ndarray, e_row: np.ndarray, e_n: np.ndarray,
                 MSe: np.ndarray, aux_c: np.ndarray):
        self.lay, self.nD, self.e_row, self.e_n, self.MSe, self.aux_c = lay, nD, e_row, e_n, MSe, aux_c
        self.n = nD.shape[0]
        self.cur: _Point | None = None
        self.trial_pt: _Point | None = None
        self.ratios: tuple | None = None  # (r, re, Π) of the last gradient
        self._jbuf: tuple[np.ndarray, np.ndarray] | None = None  # Jacobian work arrays
        self.parent_rows = self.parent_entries = None

    @classmethod
    def build(cls, lay: MorphLayout, data: PreparedData) -> "MorphRows":
        aux_c = np.zeros((data.n, lay.p))
        nuis = lay.cols > 0
        aux_c[:, nuis] = data.aux[:, lay.cols[nuis] - 1]
        return cls(lay, data.nD, data.e_toy, data.e_n, lay.MS[data.e_bin], aux_c)

    # ------------------------------------------------------------------ rows
    def entry_mask(self, keep: np.ndarray) -> np.ndarray:
        return keep[self.e_row]

    def _entries_of(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        em = self.entry_mask(keep)
        return (np.cumsum(keep) - 1)[self.e_row[em]], self.e_n[em], self.MSe[em]

    def infeasible(self) -> np.ndarray:
        out = np.any(self.nD[:, ~self.lay.liveD] > 0, axis=1)
        dead = ~self.lay.liveS
        if self.e_row.size and dead.any():
            live_e = np.any(self.MSe != 0, axis=1)
            out[self.e_row[~live_e]] = True
        return out

    def subset(self, keep: np.ndarray) -> "MorphRows":
        sub = MorphRows(self.lay, self.nD[keep], *self._entries_of(keep), self.aux_c[keep])
        sub.parent_rows = np.flatnonzero(keep)
        sub.parent_entries = np.flatnonzero(self.entry_mask(keep))
        return sub

    def compact(self, keep: np.ndarray, ratios: bool) -> None:
        em = self.entry_mask(keep)
        self.nD = self.nD[keep]
        self.e_row, self.e_n, self.MSe = self._entries_of(keep)
        self.aux_c = self.aux_c[keep]
        self.n = int(keep.sum())
        if self.cur is not None:
            self.cur = self.cur.take(keep, em)
        if self.trial_pt is not None:
            self.trial_pt = self.trial_pt.take(keep, em)
        if ratios and self.ratios is not None:
            r, re, P = self.ratios
            self.ratios = (r[keep], re[em], P[keep])

    # ------------------------------------------------------------------ NewtonRows
    def start(self, y: np.ndarray) -> np.ndarray:
        self.cur = _Point(self.lay, y, self.e_row, self.MSe)
        return self.nll(y, self.cur)

    def grad(self, y: np.ndarray) -> np.ndarray:
        g, self.ratios = self.gradient(y, self.cur)
        return g

    def hess(self, rows: np.ndarray | None) -> np.ndarray:
        return self.hessian(self.cur, self.ratios, rows)

    def trial(self, y: np.ndarray) -> np.ndarray:
        self.trial_pt = _Point(self.lay, y, self.e_row, self.MSe)
        return self.nll(y, self.trial_pt)

    def take_trial(self, sub: "MorphRows", ok: np.ndarray) -> None:
        dst, src = self.trial_pt, sub.trial_pt
        rows = sub.parent_rows[ok]
        for name in ("c", "alpha", "f", "f1", "f2", "z", "nuD"):
            getattr(dst, name)[rows] = getattr(src, name)[ok]
        if sub.e_row.size:
            e_ok = sub.entry_mask(ok)
            dst.nue[sub.parent_entries[e_ok]] = src.nue[e_ok]

    def advance(self) -> None:
        self.cur, self.trial_pt = self.trial_pt, None

    # ------------------------------------------------------------------ maths
    def segsum(self, weights: np.ndarray, V: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Σ over the sparse entries of each row of ``weights[e] · V[e]`` → ``(n, V.shape[1])``
        (``rows``: only the rows of this boolean mask, in order)."""
        e_row, n = self.e_row, self.n
        if rows is not None:
            em = self.entry_mask(rows)
            e_row, weights, V, n = (np.cumsum(rows) - 1)[e_row[em]], weights[em], V[em], int(rows.sum())
        indptr = np.searchsorted(e_row, np.arange(n + 1))
        sel = sp.csr_matrix((np.asarray(weights, dtype=np.float64), np.arange(e_row.size), indptr),
                            shape=(n, e_row.size))
        return np.asarray(sel @ V)

    def nll(self, y: np.ndarray, pt: _Point) -> np.ndarray:
        """Per-row NLL (+inf where ν ≤ 0 in a bin with n > 0)."""
        nD = self.nD
        with np.errstate(divide="ignore", invalid="ignore"):
            tD = np.vecdot(nD, np.log(pt.nuD))
            bad = ~np.isfinite(tD)
            if bad.any():
                nb, vb = nD[bad], pt.nuD[bad]
                pos = nb > 0
                infeasible = np.any(pos & ~(vb > 0), axis=1)
                safe = np.where(pos & (vb > 0), vb, 1.0)
                tD[bad] = np.where(infeasible, -np.inf, np.sum(nb * np.log(safe), axis=1))
            if self.e_row.size:
                le = np.where(pt.nue > 0, np.log(np.where(pt.nue > 0, pt.nue, 1.0)), -np.inf)
                tD += np.bincount(self.e_row, weights=self.e_n * le, minlength=self.n)
        cons = 0.5 * (((y - self.aux_c) ** 2) @ self.lay.prec)
        return pt.z @ self.lay.Mtot - tD + cons

    def gradient(self, y: np.ndarray, pt: _Point) -> tuple[np.ndarray, tuple]:
        """Gradient ``(n, p)`` and (r, r_e, Π) for :meth:`hessian`."""
        lay = self.lay
        S, K, n = lay.S, lay.K, self.n
        with np.errstate(divide="ignore", invalid="ignore"):
            r = self.nD / pt.nuD
            bad = ~np.isfinite(r).all(axis=1)
            if bad.any():  # 0/0 in bins with n = ν = 0 contributes 0
                r[bad] = np.where(self.nD[bad] > 0, r[bad], 0.0)
            re = self.e_n / pt.nue if self.e_row.size else np.zeros(0)
        Pk = lay.Mtot - r @ lay.MDkT
        if self.e_row.size:
            Pk -= self.segsum(re, self.MSe)
        P = np.zeros((n, S * (1 + 2 * K)))
        P[:, lay.keep] = Pk
        PT, PS, PA = P[:, :S], P[:, S : S + K * S].reshape(n, K, S), P[:, S + K * S :].reshape(n, K, S)
        g = np.empty((n, lay.p))
        gc = PT + np.einsum("nk,nks->ns", pt.alpha, PS) + np.einsum("nk,nks->ns", pt.f, PA)
        g[:, : lay.nc] = gc[:, lay.cfree]
        g[:, lay.nc :] = np.einsum("ns,nks->nk", pt.c, PS) + pt.f1 * np.einsum("ns,nks->nk", pt.c, PA)
        g += lay.prec * (y - self.aux_c)
        return g, (r, re, P)

    def gauss_newton_dense(self, pt: _Point, w: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Σ_i w_i ∂ν_i ∂ν_iᵀ over the dense bins, ``(k, p, p)``, for weights ``w`` ``(k, D)`` of
        the rows (all, or the boolean mask ``rows``). Each toy's Jacobian ∂ν/∂y ``(p, D)`` is built
        in chunks of :data:`JACOBIAN_CHUNK` toys by two matrix products (c-columns: [1, α, f(α)] @
        the bases of the free samples; α-columns: c @ [S_k; A_k] combined with f'(α)), scaled by
        √w, and multiplied by its transpose — work arrays that stay in cache, in the Hessian's
        precision (single by default, see :class:`~lzflow.stats.fitresult.FitConfig`)."""
        lay = self.lay
        K, D, nc, p, wt = lay.K, lay.MD.shape[1], lay.nc, lay.p, lay.wt
        sel = slice(None) if rows is None else rows
        alpha, f, f1, c = pt.alpha[sel], pt.f[sel], pt.f1[sel], pt.c[sel]
        k = alpha.shape[0]
        a = np.concatenate([np.ones((k, 1)), alpha, f], axis=1).astype(wt)
        c, f1 = c.astype(wt), f1.astype(wt)[:, :, None]
        sw = np.sqrt(w).astype(wt, copy=False)
        ch = JACOBIAN_CHUNK
        if self._jbuf is None:
            self._jbuf = (np.empty((ch, p, D), dtype=wt), np.empty((ch, 2 * K * D), dtype=wt))
        J, U = self._jbuf
        H = np.empty((k, p, p), dtype=wt)
        for s0 in range(0, k, ch):
            s1 = min(s0 + ch, k)
            m = s1 - s0
            Jv = J[:m]
            Jv[:, :nc] = np.matmul(a[s0:s1], lay.Bc).reshape(m, nc, D)
            U4 = np.matmul(c[s0:s1], lay.SA, out=U[:m]).reshape(m, 2, K, D)
            np.multiply(U4[:, 1], f1[s0:s1], out=Jv[:, nc:])
            Jv[:, nc:] += U4[:, 0]
            Jv *= sw[s0:s1, None, :]
            np.matmul(Jv, Jv.transpose(0, 2, 1), out=H[s0:s1])
        return H.astype(np.float64)

    def jacobian_entries(self, pt: _Point, e_row: np.ndarray, MSe: np.ndarray) -> np.ndarray:
        """∂ν/∂y at the sparse entries ``(E, p)``."""
        lay = self.lay
        S, K = lay.S, lay.K
        E = e_row.size
        full = np.zeros((E, S * (1 + 2 * K)))
        full[:, lay.keep] = MSe
        MSe = full
        T, Sk, Ak = MSe[:, :S], MSe[:, S : S + K * S].reshape(E, K, S), MSe[:, S + K * S :].reshape(E, K, S)
        al, f, f1, c = pt.alpha[e_row], pt.f[e_row], pt.f1[e_row], pt.c[e_row]
        Jc = T + np.einsum("ek,eks->es", al, Sk) + np.einsum("ek,eks->es", f, Ak)
        Ja = np.einsum("es,eks->ek", c, Sk) + f1 * np.einsum("es,eks->ek", c, Ak)
        return np.concatenate([Jc[:, lay.cfree], Ja], axis=1)

    def hessian(self, pt: _Point, ratios: tuple, rows: np.ndarray | None = None) -> np.ndarray:
        """Hessians ``(p, p, k)`` (toy-last) at the point of the last gradient (all rows or the
        boolean mask ``rows``)."""
        lay = self.lay
        S, K, nc, p = lay.S, lay.K, lay.nc, lay.p
        r, re, P = ratios
        nD = self.nD
        if rows is not None:
            r, P, nD = r[rows], P[rows], nD[rows]
        k = r.shape[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            sub = slice(None) if rows is None else rows
            w = (r / pt.nuD[sub]).astype(lay.wt)
            if not np.isfinite(w).all():
                w = np.where(nD > 0, w, 0).astype(lay.wt)
        h = self.gauss_newton_dense(pt, w, rows)
        if self.e_row.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                we = np.where(self.e_n > 0, re / pt.nue, 0.0)
            Je = self.jacobian_entries(pt, self.e_row, self.MSe)
            h += self.segsum(we, (Je[:, :, None] * Je[:, None, :]).reshape(-1, p * p), rows).reshape(k, p, p)
        # second-derivative terms Σ (1 − r) ∂²ν from the projections Π
        sel = slice(None) if rows is None else rows
        PS, PA = P[:, S : S + K * S].reshape(k, K, S), P[:, S + K * S :].reshape(k, K, S)
        cross = PS + pt.f1[sel][:, :, None] * PA  # (k, K, S): ∂²/∂c_s∂α_k
        ca = cross[:, :, lay.cfree].transpose(0, 2, 1)  # (k, nc, K)
        h[:, :nc, nc:] += ca
        h[:, nc:, :nc] += ca.transpose(0, 2, 1)
        ia = np.arange(nc, p)
        h[:, ia, ia] += pt.f2[sel] * np.einsum("ns,nks->nk", pt.c[sel], PA)
        ip = np.arange(p)
        h[:, ip, ip] += lay.prec
        return np.ascontiguousarray(h.transpose(1, 2, 0))


def morph_problem(model: BinnedModel, lay: MorphLayout, counts: np.ndarray, aux: np.ndarray):
    """NLL and gradient closures of one toy (dense counts ``(n_bins,)``, aux ``(n_aux,)``) over the
    free parameters of ``lay`` — the iminuit reference path (:mod:`lzflow.stats.minuit`). Bins
    with n_i > 0 only in the log term; the others through Σ_i ν_i = z @ M·1."""
    basis = model.morph
    pos = np.flatnonzero(counts > 0)
    Mn, nn = basis.M[:, pos], counts[pos]
    Mtot = basis.M.sum(axis=1)
    a = np.zeros(lay.p)
    nuis = lay.cols > 0
    a[nuis] = aux[lay.cols[nuis] - 1]
    S, K = lay.S, lay.K

    def parts(y: np.ndarray):
        c, al = lay.split(y[None, :])
        f, f1, _ = code4p(al)
        z = lay.coefficients(c, al, f)[0]
        return c[0], al[0], f[0], f1[0], z, z @ Mn

    def nll(y: np.ndarray) -> float:
        *_, z, nu = parts(y)
        if np.any(nu <= 0):
            return 1e300
        return float(z @ Mtot - nn @ np.log(nu) + 0.5 * lay.prec @ (y - a) ** 2)

    def grad(y: np.ndarray) -> np.ndarray:
        c, al, f, f1, z, nu = parts(y)
        P = Mtot - Mn @ (nn / nu)
        PT, PS, PA = P[:S], P[S : S + K * S].reshape(K, S), P[S + K * S :].reshape(K, S)
        gc = PT + al @ PS + f @ PA
        ga = PS @ c + f1 * (PA @ c)
        return np.r_[gc[lay.cfree], ga] + lay.prec * (y - a)

    return nll, grad
