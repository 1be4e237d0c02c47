"""The binned NLL of toys under a model with shape nuisance parameters, for the Newton engine.

With shape systematics (:mod:`lzflow.stats.morphing`) ν = μ T_0(α) + Σ_b [θ_b T_b + Δ_b(α)] is no
longer linear in the parameters; in the fitters' form ``ν = z @ M`` with the fixed basis
M = [T_s; S⁰_k; A⁰_k; S^B_k; A^B_k] and z = [μ, θ; μα; μf(α); α; f(α)]. For the free parameters
y (μ if free, the floating θ, every α) the exact derivatives are (r_i = n_i/ν_i, w_i = n_i/ν_i²,
f = code 4p, P = constraint precisions, a = auxiliary observables)::

    ∂ν/∂μ = T_0(α) = T_0 + Σ_k (α_k S⁰_k + f(α_k) A⁰_k),     ∂ν/∂θ_b = T_b
    ∂ν/∂α_k = μ (S⁰_k + f'(α_k) A⁰_k) + S^B_k + f'(α_k) A^B_k
    ∂²ν/∂μ∂α_k = S⁰_k + f'(α_k) A⁰_k,   ∂²ν/∂α_k² = f''(α_k) (μ A⁰_k + A^B_k)   (others 0)

    g = Σ_i (1 − r_i) ∂ν_i + P (y − a)
    H = Σ_i w_i ∂ν_i ∂ν_iᵀ + Σ_i (1 − r_i) ∂²ν_i + P

Every Σ_i (1 − r_i) (·) is a projection of the basis, Π = M·1 − M r: one matrix product per block
of toys on the dense bins (``r @ Mᵀ``) plus CSR products over the non-zero sparse entries (empty
bins enter only through the constant M·1). The gradient and the whole second-derivative part of H
(μ–α cross terms and the α–α diagonal of code 4p) are contractions of Π with (μ, α). The
Gauss–Newton part Σ w ∂ν ∂νᵀ: every dense-bin Jacobian column is a combination of R fixed basis
rows G (μ free: [T_s; S⁰; A⁰; T_θ; S^B; A^B]; μ fixed: [T_θ; μS⁰ + S^B; μA⁰ + A^B]) with per-toy
coefficients C (p × R: 1, α, f, μ, μf', f'), so Σ w J Jᵀ = C (Σ_i w_i G_i G_iᵀ) Cᵀ: one BLAS
product ``w @ GG`` over the block with the precomputed pair products of G in the dense bins, plus
one CSR product of the sparse entries' weights with the pair products in the sparse bins (single precision by
default, :class:`~lzflow.stats.fitresult.FitConfig`: only the search direction depends on it),
then a (p × R) sandwich per toy. The dense/sparse split, the fixed part (μ when fixed,
fixed backgrounds) and the NewtonRows protocol (:class:`lzflow.stats.newton.NewtonRows`) are those
of the rate-only fitter (:mod:`lzflow.stats.binned_nll`).
"""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp

from .binned_nll import PointRows, PreparedData
from .model import BinnedModel
from .morphing import code4p

__all__ = ["FreeParameters", "MorphLayout", "MorphRows", "morph_problem"]


class FreeParameters:
    """The free-parameter design of one fit type (μ free, or fixed at ``mu_fixed``) of a model with
    shape systematics: the fitted columns ``cols`` (``p``), the sample coefficients c = [μ, θ] among
    them (``cfree``, ``nc``), the fixed c values and the constraint precisions. Shared by the
    additive (:class:`MorphLayout`) and multiplicative (:mod:`lzflow.stats.logmorph_nll`) layouts,
    which add their tables and, in :meth:`_fix_mu`, what depends on a fixed μ."""

    def __init__(self, model: BinnedModel, mu_fixed: float | None):
        self.S, self.K = model.morph.S, model.morph.K
        self.mu_free = mu_fixed is None
        self.cols = model.fit_columns(self.mu_free)
        self.p = int(self.cols.size)
        self.cfree = self.cols[self.cols < self.S]
        self.nc = int(self.cfree.size)
        self.c_fixed = np.ones(self.S)
        self.c_fixed[0] = 0.0 if mu_fixed is None else float(mu_fixed)
        self.prec = model.constraint_precision[self.cols]

    def _fix_mu(self, mu_fixed: float) -> None:
        """Update what depends on the value of a fixed μ (in a copy made by :meth:`at`)."""

    def at(self, mu_fixed: float | None):
        """This layout (made for the same fit type) with μ fixed at ``mu_fixed``."""
        if mu_fixed is None:
            return self
        out = copy.copy(self)
        out.c_fixed = self.c_fixed.copy()
        out.c_fixed[0] = float(mu_fixed)
        out._fix_mu(float(mu_fixed))
        return out

    def split(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(c = [μ, θ] ``(n, S)``, α ``(n, K)``) of free-parameter rows ``y`` ``(n, p)``."""
        c = np.repeat(self.c_fixed[None, :], y.shape[0], axis=0)
        c[:, self.cfree] = y[:, : self.nc]
        return c, y[:, self.nc :]


class MorphLayout(FreeParameters):
    """Free-parameter design of one fit type (μ free, or fixed at ``mu_fixed``) of a morphed model."""

    def __init__(self, model: BinnedModel, mu_fixed: float | None, dense_bins: np.ndarray,
                 sparse_bins: np.ndarray, float32: bool):
        super().__init__(model, mu_fixed)
        basis = model.morph
        S, K = basis.S, basis.K
        self.theta = self.cfree[self.cfree > 0]  # free θ (indices into c)
        M = basis.M
        self.model_M = M
        # ν and Π use only the basis rows that are not identically 0: ``keep``; Π of the others is 0
        self.keep = np.flatnonzero(np.any(M != 0, axis=1))
        Mk = M[self.keep]
        self.MDk = np.ascontiguousarray(Mk[:, dense_bins])  # (R_kept, D)
        self.MDkT = np.ascontiguousarray(self.MDk.T)  # (D, R_kept)
        self.MS = np.ascontiguousarray(Mk[:, sparse_bins].T)  # (nS, R_kept)
        self.Mtot = Mk.sum(axis=1)  # (R_kept,)
        self.wt = np.float32 if float32 else np.float64
        self.dense_bins, self.sparse_bins = dense_bins, sparse_bins
        self._jacobian_basis(mu_fixed)
        # bins some allowed parameter value can fill (without / with the signal when μ is fixed)
        self._live = {}
        for with_signal in (False, True):
            rows = np.ones(M.shape[0], dtype=bool)
            if not (with_signal or self.mu_free):
                rows[0] = False
                rows[S : S + 2 * K] = False
            live = np.any(M[rows] != 0, axis=0)
            self._live[with_signal] = (live[dense_bins], live[sparse_bins])
        self.liveD, self.liveS = self._live[mu_fixed is None or mu_fixed != 0]

    def _fix_mu(self, mu_fixed: float) -> None:
        self.liveD, self.liveS = self._live[mu_fixed != 0]
        self._jacobian_basis(mu_fixed)

    def _jacobian_basis(self, mu_fixed: float | None) -> None:
        """The rows G ``(R, n_bins)`` that span every Jacobian column, J = C(y) G, and their pair
        products in the dense bins, ``GG`` ``(D, R(R+1)/2)`` (Hessian precision), and in the sparse
        bins, ``GGS`` ``(nS, R(R+1)/2)`` (double): μ free, G = [T_s; S⁰; A⁰; T_θ; S^B; A^B]; μ
        fixed, G = [T_θ; μS⁰ + S^B; μA⁰ + A^B]. Rows that are 0 in every bin are left out.
        ``gcols``: the rows of the full list kept."""
        S, K, M = self.S, self.K, self.model_M
        s0, a0, sb, ab = M[S:].reshape(4, K, -1)
        th = M[self.theta]
        if mu_fixed is None:
            G = np.vstack([M[:1], s0, a0, th, sb, ab])
        else:
            G = np.vstack([th, mu_fixed * s0 + sb, mu_fixed * a0 + ab])
        nz = np.flatnonzero(np.any(G != 0, axis=1))
        newcol = np.full(G.shape[0], -1)
        newcol[nz] = np.arange(nz.size)
        self.gcols = nz
        G = G[nz]
        iu, ju = np.triu_indices(nz.size)
        GD = G[:, self.dense_bins]
        if self.wt is np.float32:  # values the float32 range cannot hold normally are 0
            GD = np.where(np.abs(GD) < 1e-20, 0.0, GD)  # (subnormal products are ~100× slower)
        GG = (GD[iu] * GD[ju]).T
        if self.wt is np.float32:  # products below the float32 normal range: 0
            GG = np.where(np.abs(GG) < 1e-30, 0.0, GG)
        self.GG = np.ascontiguousarray(GG, dtype=self.wt)
        GS = G[:, self.sparse_bins]
        self.GGS = np.ascontiguousarray((GS[iu] * GS[ju]).T)
        self.gpair = np.zeros((nz.size, nz.size), dtype=np.intp)
        self.gpair[iu, ju] = self.gpair[ju, iu] = np.arange(iu.size)
        # slots (row, column of G before leaving rows out) of C's constant 1s and of its values
        # (in the order of MorphRows.coefficient_matrix): see there
        nth, nc, k_ = th.shape[0], self.nc, np.arange(K)
        ia = nc + k_
        if mu_fixed is None:
            one = [(0, 0)] + [(1 + j, 1 + 2 * K + j) for j in range(nth)] + list(zip(ia, 1 + 2 * K + nth + k_))
            var = (list(zip([0] * K, 1 + k_)) + list(zip([0] * K, 1 + K + k_)) + list(zip(ia, 1 + k_))
                   + list(zip(ia, 1 + K + k_)) + list(zip(ia, 1 + 3 * K + nth + k_)))
        else:
            one = [(j, j) for j in range(nth)] + list(zip(ia, nth + k_))
            var = list(zip(ia, nth + K + k_))

        def flat(slots):
            rc = np.array(slots, dtype=np.intp).reshape(-1, 2)
            c = newcol[rc[:, 1]]
            return rc[:, 0] * nz.size + c, c >= 0

        (self.c_one, keep1), (self.c_var, self.c_vsel) = flat(one), flat(var)
        self.c_one, self.c_var = self.c_one[keep1], self.c_var[self.c_vsel]
        if self.c_vsel.all():
            self.c_vsel = None

    def coefficients(self, c: np.ndarray, alpha: np.ndarray, f: np.ndarray) -> np.ndarray:
        """z ``(n, R)`` = [c, μα, μf, α, f], so that ν = z @ M."""
        mu = c[:, :1]
        return np.concatenate([c, mu * alpha, mu * f, alpha, f], axis=1)


class _Point:
    """ν and the morphing coefficients of a set of rows at one parameter point."""

    __slots__ = ("c", "alpha", "f", "f1", "f2", "z", "nuD", "nue")
    ROWS = ("c", "alpha", "f", "f1", "f2", "z", "nuD")  # the per-row arrays (nue: per entry)

    def __init__(self, lay: MorphLayout, y: np.ndarray, e_row: np.ndarray, MSe: np.ndarray):
        self.c, self.alpha = lay.split(y)
        self.f, self.f1, self.f2 = code4p(self.alpha)
        self.z = lay.coefficients(self.c, self.alpha, self.f)[:, lay.keep]
        self.nuD = self.z @ lay.MDk
        self.nue = np.einsum("er,er->e", MSe, self.z[e_row]) if e_row.size else np.zeros(0)

    def take(self, keep: np.ndarray, em: np.ndarray) -> "_Point":
        out = _Point.__new__(_Point)
        for name in _Point.ROWS:
            setattr(out, name, getattr(self, name)[keep])
        out.nue = self.nue[em]
        return out


class MorphRows(PointRows):
    """NLL, gradient and Hessians of a set of toys under a morphed model (a
    :class:`lzflow.stats.newton.NewtonRows`; maths in the module docstring)."""

    def __init__(self, lay: MorphLayout, nD: np.ndarray, e_row: np.ndarray, e_n: np.ndarray,
                 MSe: np.ndarray, e_bin: np.ndarray, aux_c: np.ndarray):
        self.lay, self.nD, self.e_row, self.e_n, self.MSe, self.aux_c = lay, nD, e_row, e_n, MSe, aux_c
        self.e_bin = e_bin  # sparse bin of each entry (index into lay.sparse_bins)
        self.n = nD.shape[0]
        self.cur: _Point | None = None
        self.trial_pt: _Point | None = None
        self.ratios: tuple | None = None  # (r, re, Π, rows with ν = 0 in a bin) of the last gradient
        self.parent_rows = self.parent_entries = None
        self._cbuf: np.ndarray | None = None  # work array of coefficient_matrix
        self._sel: sp.csr_matrix | None = None  # binsum's CSR structure (rows × sparse bins)
        self.taken: np.ndarray | None = None  # line-search subset: rows whose point the parent took

    @classmethod
    def build(cls, lay: MorphLayout, data: PreparedData) -> "MorphRows":
        aux_c = np.zeros((data.n, lay.p))
        nuis = lay.cols > 0
        aux_c[:, nuis] = data.aux[:, lay.cols[nuis] - 1]
        return cls(lay, data.nD, data.e_toy, data.e_n, lay.MS[data.e_bin], data.e_bin, aux_c)

    # ------------------------------------------------------------------ rows
    def entry_mask(self, keep: np.ndarray) -> np.ndarray:
        return keep[self.e_row]

    def _entries_of(self, keep: np.ndarray) -> tuple[np.ndarray, ...]:
        em = self.entry_mask(keep)
        return (np.cumsum(keep) - 1)[self.e_row[em]], self.e_n[em], self.MSe[em], self.e_bin[em]

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
        self.e_row, self.e_n, self.MSe, self.e_bin = self._entries_of(keep)
        self.aux_c = self.aux_c[keep]
        self.n = int(keep.sum())
        self._sel = None
        if self.cur is not None:
            self.cur = self.cur.take(keep, em)
        if self.trial_pt is not None:
            self.trial_pt = self.trial_pt.take(keep, em)
        if ratios and self.ratios is not None:
            r, re, P, bad = self.ratios
            self.ratios = (r[keep], re[em], P[keep], bad[keep])

    # ---------------------------------- NewtonRows (start, grad, hess, trial, advance: PointRows)
    def point(self, y: np.ndarray) -> _Point:
        return _Point(self.lay, y, self.e_row, self.MSe)

    def take_trial(self, sub: "MorphRows", ok: np.ndarray) -> None:
        dst, src = self.trial_pt, sub.trial_pt
        rows = sub.parent_rows[ok]
        for name in _Point.ROWS:
            getattr(dst, name)[rows] = getattr(src, name)[ok]
        if sub.e_row.size:
            e_ok = sub.entry_mask(ok)
            dst.nue[sub.parent_entries[e_ok]] = src.nue[e_ok]
        sub.taken = ok.copy() if sub.taken is None else sub.taken | ok

    def trial(self, y: np.ndarray) -> np.ndarray:
        """NLL at the trial points ``y``. In a subset made for the line search, rows whose point
        the parent already took (:meth:`take_trial`) are not evaluated again (NLL +inf, never read;
        as :meth:`lzflow.stats.logmorph_nll.LogMorphRows.trial`)."""
        if self.taken is None or not self.taken.any():
            return super().trial(y)
        todo = ~self.taken
        part = self.subset(todo)
        pt = part.point(y[todo])
        out = np.full(self.n, np.inf)
        out[todo] = part.nll(y[todo], pt)
        full = _Point.__new__(_Point)
        for name in _Point.ROWS:
            v = getattr(pt, name)
            arr = np.zeros((self.n,) + v.shape[1:])
            arr[todo] = v
            setattr(full, name, arr)
        full.nue = np.zeros(self.e_row.size)
        full.nue[self.entry_mask(todo)] = pt.nue
        self.trial_pt = full
        return out

    # ------------------------------------------------------------------ maths
    def binsum(self, weights: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Σ over the sparse entries of each row of ``weights[e] · V[bin of e]`` → ``(n, V.shape[1])``
        for a table ``V`` over the sparse bins: one CSR product (rows × sparse bins) whose structure
        is built once per set of rows (only its values change)."""
        if self._sel is None:
            indptr = np.searchsorted(self.e_row, np.arange(self.n + 1))
            self._sel = sp.csr_matrix((np.ones(self.e_row.size), self.e_bin, indptr),
                                      shape=(self.n, V.shape[0]))
        self._sel.data = np.ascontiguousarray(weights, dtype=np.float64)
        return np.asarray(self._sel @ V)

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

    def projections(self, P: np.ndarray) -> tuple[np.ndarray, ...]:
        """Π split as (Π_T ``(n, S)``, Π_S⁰, Π_A⁰, Π_S^B, Π_A^B ``(n, K)`` each)."""
        S, K = self.lay.S, self.lay.K
        m4 = P[:, S:].reshape(-1, 4, K)
        return P[:, :S], m4[:, 0], m4[:, 1], m4[:, 2], m4[:, 3]

    def gradient(self, y: np.ndarray, pt: _Point) -> tuple[np.ndarray, tuple]:
        """Gradient ``(n, p)`` and (r, r_e, Π, rows where ν = 0 in some bin) for :meth:`hessian`."""
        lay = self.lay
        n = self.n
        with np.errstate(divide="ignore", invalid="ignore"):
            r = self.nD / pt.nuD
            Pk = lay.Mtot - r @ lay.MDkT
            bad = ~np.isfinite(Pk).all(axis=1)  # (a non-finite r_i makes its row's product so)
            if bad.any():  # 0/0 in bins with n = ν = 0 contributes 0
                r[bad] = np.where(self.nD[bad] > 0, r[bad], 0.0)
                Pk[bad] = lay.Mtot - r[bad] @ lay.MDkT
            re = self.e_n / pt.nue if self.e_row.size else np.zeros(0)
        if self.e_row.size:
            Pk -= self.binsum(re, lay.MS)
        P = np.zeros((n, lay.S + 4 * lay.K))
        P[:, lay.keep] = Pk
        PT, PS0, PA0, PSB, PAB = self.projections(P)
        gc = PT.copy()
        gc[:, 0] += np.vecdot(pt.alpha, PS0) + np.vecdot(pt.f, PA0)
        g = np.empty((n, lay.p))
        g[:, : lay.nc] = gc[:, lay.cfree]
        g[:, lay.nc :] = pt.c[:, :1] * (PS0 + pt.f1 * PA0) + PSB + pt.f1 * PAB
        g += lay.prec * (y - self.aux_c)
        return g, (r, re, P, bad)

    def coefficient_matrix(self, pt: _Point, rows: np.ndarray | None = None) -> np.ndarray:
        """C ``(k, p, R)`` with the dense-bin Jacobian ∂ν/∂y = C G (G: the layout's
        :meth:`MorphLayout._jacobian_basis`; module docstring): μ ← [1, α, f] on [T_s, S⁰, A⁰],
        θ_b ← 1 on T_b, α_k ← [μ, μf'_k, 1, f'_k] on [S⁰_k, A⁰_k, S^B_k, A^B_k] (μ free) or
        [1, f'_k] on [μS⁰_k + S^B_k, μA⁰_k + A^B_k] (μ fixed). In a work array of these rows
        (its constant entries set once), valid until the next call."""
        lay = self.lay
        sel = slice(None) if rows is None else rows
        f1 = pt.f1[sel]
        k = f1.shape[0]
        if self._cbuf is None or self._cbuf.shape[0] < k:
            self._cbuf = np.zeros((max(k, self.n), lay.p * lay.gcols.size), dtype=lay.wt)
            self._cbuf[:, lay.c_one] = 1.0
        C = self._cbuf[:k]
        if lay.mu_free:
            mu = pt.c[sel, :1]
            vals = (pt.alpha[sel], pt.f[sel], np.broadcast_to(mu, f1.shape), mu * f1, f1)
        else:
            vals = (f1,)
        v = np.concatenate(vals, axis=1)
        C[:, lay.c_var] = v if lay.c_vsel is None else v[:, lay.c_vsel]
        return C.reshape(k, lay.p, lay.gcols.size)

    def gauss_newton(self, pt: _Point, w: np.ndarray, rows: np.ndarray | None = None,
                     extra: np.ndarray | None = None) -> np.ndarray:
        """Σ_i w_i ∂ν_i ∂ν_iᵀ, ``(k, p, p)``, for the dense-bin weights ``w`` ``(k, D)`` (Hessian
        precision) of the rows (all, or the boolean mask ``rows``): with ∂ν = C G,
        C (Σ_i w_i G_i G_iᵀ) Cᵀ — the pair products of the basis rows weighted in one BLAS product
        ``w @ GG`` over the block (plus ``extra``, the packed sums of other bins: the sparse
        entries), then a small (p × R) product per toy (in the same precision)."""
        lay = self.lay
        Qp = w @ lay.GG
        if extra is not None:
            Qp += extra
        Q = np.take(Qp, lay.gpair, axis=1)  # (k, R, R), C-contiguous
        C = self.coefficient_matrix(pt, rows)
        return np.matmul(np.matmul(C, Q), C.transpose(0, 2, 1)).astype(np.float64)

    def hessian(self, pt: _Point, ratios: tuple, rows: np.ndarray | None = None) -> np.ndarray:
        """Hessians ``(p, p, k)`` (toy-last) at the point of the last gradient (all rows or the
        boolean mask ``rows``)."""
        lay = self.lay
        nc, p = lay.nc, lay.p
        r, re, P, bad = ratios
        nD = self.nD
        sel = slice(None) if rows is None else rows
        if rows is not None:
            r, P, nD, bad = r[rows], P[rows], nD[rows], bad[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.divide(r, pt.nuD[sel], dtype=lay.wt)  # n/ν² (the Hessian's precision)
            if bad.any():  # rows with ν = 0 somewhere (gradient): 0/0 in bins with n = ν = 0
                w[bad] = np.where(nD[bad] > 0, w[bad], 0.0)
        Qe = None
        if self.e_row.size:  # the sparse entries' Σ_e w_e G_e G_eᵀ (packed), added before the sandwich
            with np.errstate(divide="ignore", invalid="ignore"):
                we = np.where(self.e_n > 0, re / pt.nue, 0.0)
            Qe = self.binsum(we, lay.GGS)
            Qe = Qe if rows is None else Qe[rows]
        h = self.gauss_newton(pt, w, rows, Qe)
        # second-derivative terms Σ (1 − r) ∂²ν from the projections Π
        _, PS0, PA0, _, PAB = self.projections(P)
        f1, f2, mu = pt.f1[sel], pt.f2[sel], pt.c[sel, :1]
        ia = np.arange(nc, p)
        if lay.mu_free:
            cross = PS0 + f1 * PA0
            h[:, 0, ia] += cross
            h[:, ia, 0] += cross
        h[:, ia, ia] += f2 * (mu * PA0 + PAB)
        ip = np.arange(p)
        h[:, ip, ip] += lay.prec
        return np.ascontiguousarray(h.transpose(1, 2, 0))


def morph_problem(model: BinnedModel, lay: MorphLayout, counts: np.ndarray, aux: np.ndarray):
    """NLL and gradient closures of one toy (dense counts ``(n_bins,)``, aux ``(n_aux,)``) over the
    free parameters of ``lay`` — the iminuit reference path (:mod:`lzflow.stats.minuit`). Bins
    with n_i > 0 only in the log term; the others through Σ_i ν_i = z @ M·1."""
    M = model.morph.M
    pos = np.flatnonzero(counts > 0)
    Mn, nn, Mtot = M[:, pos], counts[pos], M.sum(axis=1)
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
        PT, (PS0, PA0, PSB, PAB) = P[:S].copy(), P[S:].reshape(4, K)
        PT[0] += al @ PS0 + f @ PA0
        return np.r_[PT[lay.cfree], c[0] * (PS0 + f1 * PA0) + PSB + f1 * PAB] + lay.prec * (y - a)

    return nll, grad
