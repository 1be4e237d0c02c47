"""The binned NLL of toys under a multiplicatively morphed model (:mod:`lzflow.stats.logmorph`),
for the Newton engine and the iminuit reference path.

ν_i = Σ_s c_s U_si with U_si = T_si exp(L_si), L_si = Σ_k Σ_m B_m(α_k) C_mksi, c = [μ, θ]. With
D_ksi = Σ_m B'_m(α_k) C_mksi and E_ksi = Σ_m B''_m(α_k) C_mksi the derivatives are::

    ∂ν_i/∂c_s = U_si,          ∂ν_i/∂α_k = Σ_s c_s U_si D_ksi
    ∂²ν_i/∂c_s∂α_k = U_si D_ksi,
    ∂²ν_i/∂α_k∂α_l = Σ_s c_s U_si (D_ksi D_lsi + δ_kl E_ksi),     ∂²ν/∂c∂c = 0

and, with r_i = n_i/ν_i, q_i = 1 − r_i, w_i = n_i/ν_i², P the constraint precisions and a the
auxiliary observables, g = Σ_i q_i ∂ν_i + P (y − a) and H = Σ_i w_i ∂ν_i ∂ν_iᵀ + Σ_i q_i ∂²ν_i + P.
With W_si = q_i c_s U_si: the α gradient is Σ_m B'_m(α_k) (W · C_mk), one matrix product of W
with the fixed coefficients; the α–α block Σ W D_k D_l + δ_kl Σ_m B''_m(α_k) (W · C_mk) uses the
per-toy D. Only the template's non-zero entries (sample, bin) are evaluated, and only bins some
sample fills ("live"); counts elsewhere make a toy infeasible. ν, the NLL and the gradient are
formed in double precision, the Hessian in single precision by default
(:class:`~lzflow.stats.fitresult.FitConfig` ``hessian_float32``: it only steers the step). The
toys are fitted in sub-blocks (:func:`sub_block`) so that the per-toy arrays (K × entries) stay small.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .binned_nll import PointRows, PreparedData
from .logmorph import basis_functions
from .model import BinnedModel
from .morph_nll import FreeParameters

__all__ = ["LogMorphLayout", "LogMorphRows", "log_morph_problem", "sub_block"]

#: per-toy array elements (K × non-zero template entries) a sub-block of toys may hold together
SUB_BLOCK_ELEMENTS = 1 << 21


def sub_block(model: BinnedModel, block_size: int) -> int:
    """Toys fitted together for ``model`` (at most ``block_size``): the per-toy arrays of a
    sub-block hold at most :data:`SUB_BLOCK_ELEMENTS` numbers (≥ 8 toys)."""
    basis = model.morph
    entries = int(np.count_nonzero(basis.T > 0))
    return max(8, min(int(block_size), SUB_BLOCK_ELEMENTS // max(1, basis.K * entries)))


class LogMorphLayout(FreeParameters):
    """Free-parameter design of one fit type (μ free, or fixed at ``mu_fixed``) of a model with
    multiplicative morphing, and its fixed tables over the template's non-zero entries (sample,
    bin), sample by sample ("entries" x: ``s_of``, ``l_of`` into the live bins)."""

    def __init__(self, model: BinnedModel, mu_fixed: float | None, dense_bins: np.ndarray, sparse_bins: np.ndarray,
                 float32: bool = True):
        super().__init__(model, mu_fixed)
        basis = model.morph
        S, K = basis.S, basis.K
        self.dense_bins, self.sparse_bins, self.n_bins = dense_bins, sparse_bins, model.n_bins
        self.wt = np.float32 if float32 else np.float64  # the Hessian's precision (it only steers the step)
        T = basis.T
        self.live = np.flatnonzero(np.any(T > 0, axis=0))
        L = self.live.size
        self.L, self.M, self.interpolation = L, basis.M, basis.interpolation
        Tl = T[:, self.live]
        self.s_of, self.l_of = np.nonzero(Tl > 0)  # sample-major
        X = self.s_of.size
        self.seg = np.searchsorted(self.s_of, np.arange(S + 1))  # entries of sample s: seg[s]:seg[s+1]
        self.has = np.diff(self.seg) > 0
        self.Tx = Tl[self.s_of, self.l_of]
        C = basis.C[:, :, self.s_of, self.live[self.l_of]]  # (M, K, X)
        self.C2 = np.ascontiguousarray(C.reshape(basis.M * K, X))  # rows (m, k)
        self.Cw = np.ascontiguousarray(C.transpose(1, 0, 2), dtype=self.wt)  # (K, M, X)
        self.A_T = sp.csr_matrix((np.ones(X), (self.l_of, np.arange(X))), shape=(L, X))  # entry → bin
        self.A_Tw = self.A_T.astype(self.wt)
        self.flat = self.s_of * L + self.l_of  # entry → (sample, bin) of an (S, L) array
        # bins an allowed parameter value can fill, without / with the signal (μ fixed at 0: without)
        self._live_sig = {False: np.any(T[1:] > 0, axis=0), True: np.any(T > 0, axis=0)}
        self.fillable = self._live_sig[mu_fixed is None or mu_fixed != 0]

    def _fix_mu(self, mu_fixed: float) -> None:
        self.fillable = self._live_sig[mu_fixed != 0]

    def to_bins(self, values: np.ndarray, A_T: sp.csr_matrix | None = None) -> np.ndarray:
        """Σ over the entries of each live bin: ``(r, X)`` → ``(r, L)``."""
        return np.ascontiguousarray((self.A_T if A_T is None else A_T) @ values.T).T

    def per_sample(self, values: np.ndarray) -> np.ndarray:
        """Σ over the entries of each sample along the last axis: ``(..., X)`` → ``(..., S)``."""
        out = np.add.reduceat(values, self.seg[:-1][self.has], axis=-1)
        full = np.zeros(values.shape[:-1] + (self.S,), dtype=out.dtype)
        full[..., self.has] = out
        return full

    def full_counts(self, data: PreparedData) -> np.ndarray:
        """Dense counts ``(n, n_bins)`` of the fitter's split representation."""
        out = np.zeros((data.n, self.n_bins))
        out[:, self.dense_bins] = data.nD
        out[data.e_toy, self.sparse_bins[data.e_bin]] = data.e_n
        return out


class _Point:
    """ν, the morphed templates (per entry) and the basis functions of a set of rows at one point."""

    __slots__ = ("c", "alpha", "B1", "B2", "U", "Uc", "nu")

    def __init__(self, lay: LogMorphLayout, y: np.ndarray):
        self.c, self.alpha = lay.split(y)
        B, self.B1, self.B2 = basis_functions(self.alpha, lay.interpolation)  # (n, K, M)
        E = B.transpose(0, 2, 1).reshape(-1, lay.M * lay.K) @ lay.C2
        self.U = np.exp(E) * lay.Tx  # (n, X)
        self.Uc = self.U * self.c[:, lay.s_of]
        self.nu = lay.to_bins(self.Uc)  # (n, L)

    def take(self, keep: np.ndarray) -> "_Point":
        out = _Point.__new__(_Point)
        for name in _Point.__slots__:
            setattr(out, name, getattr(self, name)[keep])
        return out


class LogMorphRows(PointRows):
    """NLL, gradient and Hessians of a set of toys (a :class:`lzflow.stats.newton.NewtonRows`;
    maths in the module docstring)."""

    def __init__(self, lay: LogMorphLayout, counts: np.ndarray, dead: np.ndarray, aux_c: np.ndarray):
        self.lay, self.counts, self.dead, self.aux_c = lay, counts, dead, aux_c
        self.n = counts.shape[0]
        self.cur: _Point | None = None
        self.trial_pt: _Point | None = None
        self.ratios: tuple | None = None  # (q, QU, W, W·C) of the last gradient
        self.parent_rows = None

    @classmethod
    def build(cls, lay: LogMorphLayout, data: PreparedData) -> "LogMorphRows":
        full = lay.full_counts(data)
        dead = np.any(full[:, ~lay.fillable] > 0, axis=1)
        aux_c = np.zeros((data.n, lay.p))
        nuis = lay.cols > 0
        aux_c[:, nuis] = data.aux[:, lay.cols[nuis] - 1]
        return cls(lay, np.ascontiguousarray(full[:, lay.live]), dead, aux_c)

    # ------------------------------------------------------------------ rows
    def infeasible(self) -> np.ndarray:
        return self.dead.copy()

    def subset(self, keep: np.ndarray) -> "LogMorphRows":
        sub = LogMorphRows(self.lay, self.counts[keep], self.dead[keep], self.aux_c[keep])
        sub.parent_rows = np.flatnonzero(keep)
        return sub

    def compact(self, keep: np.ndarray, ratios: bool) -> None:
        self.counts, self.dead, self.aux_c = self.counts[keep], self.dead[keep], self.aux_c[keep]
        self.n = int(keep.sum())
        if self.cur is not None:
            self.cur = self.cur.take(keep)
        if self.trial_pt is not None:
            self.trial_pt = self.trial_pt.take(keep)
        if ratios and self.ratios is not None:
            self.ratios = tuple(a[keep] for a in self.ratios)

    def point(self, y: np.ndarray) -> _Point:
        return _Point(self.lay, y)

    def take_trial(self, sub: "LogMorphRows", ok: np.ndarray) -> None:
        rows = sub.parent_rows[ok]
        for name in _Point.__slots__:
            getattr(self.trial_pt, name)[rows] = getattr(sub.trial_pt, name)[ok]

    # ------------------------------------------------------------------ maths
    def nll(self, y: np.ndarray, pt: _Point) -> np.ndarray:
        """Per-row NLL (+inf where ν ≤ 0 in a bin with n > 0)."""
        n = self.counts
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.where(n > 0, n * np.log(np.where(n > 0, pt.nu, 1.0)), 0.0)
        out = pt.nu.sum(axis=1) - logs.sum(axis=1) + 0.5 * (((y - self.aux_c) ** 2) @ self.lay.prec)
        return np.where(np.isnan(out), np.inf, out)

    def gradient(self, y: np.ndarray, pt: _Point) -> tuple[np.ndarray, tuple]:
        """Gradient ``(n, p)`` and (q, q·U, W, W·C) for :meth:`hessian`."""
        lay = self.lay
        with np.errstate(divide="ignore", invalid="ignore"):
            q = 1.0 - np.where(self.counts > 0, self.counts / pt.nu, 0.0)
        QU = pt.U * q[:, lay.l_of]  # (n, X)
        W = QU * pt.c[:, lay.s_of]
        WC = (W @ lay.C2.T).reshape(self.n, lay.M, lay.K)  # Σ W C_mk
        g = np.concatenate([lay.per_sample(QU)[:, lay.cfree], np.einsum("nkm,nmk->nk", pt.B1, WC)], axis=1)
        return g + lay.prec * (y - self.aux_c), (q, QU, W, WC)

    def hessian(self, pt: _Point, ratios: tuple, rows: np.ndarray | None = None) -> np.ndarray:
        """Hessians ``(p, p, k)`` (toy-last) at the point of the last gradient (all rows or the
        boolean mask ``rows``), formed in the layout's precision."""
        lay = self.lay
        S, K, L, nc, p, wt = lay.S, lay.K, lay.L, lay.nc, lay.p, lay.wt
        sel = slice(None) if rows is None else rows
        q, QU, W, WC = (a[sel] for a in ratios)
        n, U, Uc, nu, B1 = self.counts[sel], pt.U[sel], pt.Uc[sel], pt.nu[sel], pt.B1[sel]
        k = q.shape[0]
        D = np.empty((k, K, lay.Tx.size), dtype=wt)  # ∂L/∂α_k per entry
        B1w = B1.astype(wt)
        for j in range(K):
            np.matmul(B1w[:, j, :], lay.Cw[j], out=D[:, j, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(n > 0, n / (nu * nu), 0.0).astype(wt)  # (k, L)
        # Jacobian columns (k, p, L): U_s in its bins for the free c, Σ_s c_s U_s D_k for α
        J = np.zeros((k, p, L), dtype=wt)
        Us = np.zeros((k, S * L), dtype=wt)
        Us[:, lay.flat] = U
        J[:, :nc] = Us.reshape(k, S, L)[:, lay.cfree]
        J[:, nc:] = lay.to_bins((D * Uc.astype(wt)[:, None, :]).reshape(k * K, -1), lay.A_Tw).reshape(k, K, L)
        h = np.matmul(J * w[:, None, :], J.transpose(0, 2, 1)).astype(np.float64)  # Gauss–Newton part
        # Σ q ∂²ν: c–α cross terms Σ_x∈s q U_x D_kx and the α–α block Σ W D_k D_l + δ_kl Σ_m B''_m W·C_mk
        cross = lay.per_sample(D * QU.astype(wt)[:, None, :]).transpose(0, 2, 1)[:, lay.cfree]  # (k, nc, K)
        h[:, :nc, nc:] += cross
        h[:, nc:, :nc] += cross.transpose(0, 2, 1)
        h[:, nc:, nc:] += np.matmul(D * W.astype(wt)[:, None, :], D.transpose(0, 2, 1))
        ia = np.arange(nc, p)
        h[:, ia, ia] += np.einsum("nkm,nmk->nk", pt.B2[sel], WC)
        ip = np.arange(p)
        h[:, ip, ip] += lay.prec
        return np.ascontiguousarray(h.transpose(1, 2, 0))


def log_morph_problem(model: BinnedModel, lay: LogMorphLayout, counts: np.ndarray, aux: np.ndarray):
    """NLL and gradient closures of one toy (dense counts ``(n_bins,)``, aux ``(n_aux,)``) over the
    free parameters of ``lay`` — the iminuit reference path (:mod:`lzflow.stats.minuit`), written
    independently of :class:`LogMorphRows` from :meth:`LogMorphBasis.jacobian`."""
    basis = model.morph
    a = np.zeros(lay.p)
    nuis = lay.cols > 0
    a[nuis] = aux[lay.cols[nuis] - 1]
    pos = counts > 0
    rows = np.r_[lay.cfree, lay.S + np.arange(lay.K)]

    def nll(y: np.ndarray) -> float:
        c, al = lay.split(y[None, :])
        nu = basis.expected(c[0], al[0])
        if np.any(nu[pos] <= 0):
            return 1e300
        return float(nu.sum() - counts[pos] @ np.log(nu[pos]) + 0.5 * lay.prec @ (y - a) ** 2)

    def grad(y: np.ndarray) -> np.ndarray:
        c, al = lay.split(y[None, :])
        nu = basis.expected(c[0], al[0])
        q = 1.0 - np.where(pos, counts / np.where(pos, nu, 1.0), 0.0)
        return basis.jacobian(c[0], al[0])[rows] @ q + lay.prec * (y - a)

    return nll, grad
