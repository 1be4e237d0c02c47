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
per-toy D. Only bins some sample fills ("live") are evaluated; counts elsewhere make a toy
infeasible. The toys are fitted in sub-blocks (:func:`sub_block`) so that the per-toy arrays
(K × samples × live bins) stay small.
"""

from __future__ import annotations

import copy

import numpy as np

from .binned_nll import PreparedData
from .model import BinnedModel
from .logmorph import basis_functions

__all__ = ["LogMorphLayout", "LogMorphRows", "log_morph_problem", "sub_block"]

#: per-toy array elements (K × samples × live bins) a sub-block of toys may hold together (16 MiB)
SUB_BLOCK_ELEMENTS = 1 << 21


def sub_block(model: BinnedModel, block_size: int) -> int:
    """Toys fitted together for ``model`` (at most ``block_size``): the per-toy arrays of a
    sub-block hold at most :data:`SUB_BLOCK_ELEMENTS` numbers (≥ 8 toys)."""
    basis = model.morph
    live = int(np.count_nonzero(np.any(basis.T > 0, axis=0)))
    return max(8, min(int(block_size), SUB_BLOCK_ELEMENTS // max(1, basis.K * basis.S * live)))


class LogMorphLayout:
    """Free-parameter design of one fit type (μ free, or fixed at ``mu_fixed``) of a model with
    multiplicative morphing, and its fixed tables over the live bins."""

    def __init__(self, model: BinnedModel, mu_fixed: float | None, dense_bins: np.ndarray, sparse_bins: np.ndarray):
        basis = model.morph
        S, K = basis.S, basis.K
        self.S, self.K = S, K
        self.mu_free = mu_fixed is None
        self.cols = model.fit_columns(self.mu_free)
        self.p = int(self.cols.size)
        self.cfree = self.cols[self.cols < S]
        self.nc = int(self.cfree.size)
        c0 = np.ones(S)
        c0[0] = 0.0 if mu_fixed is None else float(mu_fixed)
        self.c_fixed = c0
        self.prec = model.constraint_precision[self.cols]
        self.dense_bins, self.sparse_bins, self.n_bins = dense_bins, sparse_bins, model.n_bins
        T = basis.T
        self.live = np.flatnonzero(np.any(T > 0, axis=0))
        L = self.live.size
        self.L, self.M, self.interpolation = L, basis.M, basis.interpolation
        self.T = np.ascontiguousarray(T[:, self.live])  # (S, L)
        C = basis.C[..., self.live]  # (M, K, S, L)
        self.C = np.ascontiguousarray(C.reshape(basis.M, K, S * L))
        self.C2 = np.ascontiguousarray(C.reshape(basis.M * K, S * L))  # rows (m, k)
        # bins an allowed parameter value can fill, without / with the signal (μ fixed at 0: without)
        self._live_sig = {False: np.any(T[1:] > 0, axis=0), True: np.any(T > 0, axis=0)}
        self.fillable = self._live_sig[mu_fixed is None or mu_fixed != 0]

    def at(self, mu_fixed: float | None) -> "LogMorphLayout":
        """This layout (made for the same fit type) with μ fixed at ``mu_fixed``."""
        if mu_fixed is None:
            return self
        out = copy.copy(self)
        out.c_fixed = self.c_fixed.copy()
        out.c_fixed[0] = float(mu_fixed)
        out.fillable = self._live_sig[mu_fixed != 0]
        return out

    def split(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(c = [μ, θ] ``(n, S)``, α ``(n, K)``) of free-parameter rows ``y`` ``(n, p)``."""
        c = np.repeat(self.c_fixed[None, :], y.shape[0], axis=0)
        c[:, self.cfree] = y[:, : self.nc]
        return c, y[:, self.nc :]

    def full_counts(self, data: PreparedData) -> np.ndarray:
        """Dense counts ``(n, n_bins)`` of the fitter's split representation."""
        out = np.zeros((data.n, self.n_bins))
        out[:, self.dense_bins] = data.nD
        out[data.e_toy, self.sparse_bins[data.e_bin]] = data.e_n
        return out


class _Point:
    """ν, the morphed templates and the basis functions of a set of rows at one parameter point."""

    __slots__ = ("c", "alpha", "B1", "B2", "U", "nu")

    def __init__(self, lay: LogMorphLayout, y: np.ndarray):
        self.c, self.alpha = lay.split(y)
        B, self.B1, self.B2 = basis_functions(self.alpha, lay.interpolation)  # (n, K, M)
        E = B.transpose(0, 2, 1).reshape(-1, lay.M * lay.K) @ lay.C2
        self.U = (np.exp(E).reshape(-1, lay.S, lay.L)) * lay.T  # (n, S, L)
        self.nu = np.matmul(self.c[:, None, :], self.U)[:, 0]  # (n, L)

    def take(self, keep: np.ndarray) -> "_Point":
        out = _Point.__new__(_Point)
        for name in _Point.__slots__:
            setattr(out, name, getattr(self, name)[keep])
        return out

    def log_slopes(self, lay: LogMorphLayout, rows: np.ndarray | slice) -> np.ndarray:
        """D = ∂L/∂α_k ``(k, K, S·L)`` of the rows: Σ_m B'_m(α_k) C_mk."""
        return np.einsum("nkm,mkx->nkx", self.B1[rows], lay.C, optimize=True)


class LogMorphRows:
    """NLL, gradient and Hessians of a set of toys (a :class:`lzflow.stats.newton.NewtonRows`;
    maths in the module docstring)."""

    def __init__(self, lay: LogMorphLayout, counts: np.ndarray, dead: np.ndarray, aux_c: np.ndarray):
        self.lay, self.counts, self.dead, self.aux_c = lay, counts, dead, aux_c
        self.n = counts.shape[0]
        self.cur: _Point | None = None
        self.trial_pt: _Point | None = None
        self.ratios: tuple | None = None  # (q, W) of the last gradient
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

    def start(self, y: np.ndarray) -> np.ndarray:
        self.cur = _Point(self.lay, y)
        return self.nll(y, self.cur)

    def grad(self, y: np.ndarray) -> np.ndarray:
        g, self.ratios = self.gradient(y, self.cur)
        return g

    def hess(self, rows: np.ndarray | None) -> np.ndarray:
        return self.hessian(self.cur, self.ratios, rows)

    def trial(self, y: np.ndarray) -> np.ndarray:
        self.trial_pt = _Point(self.lay, y)
        return self.nll(y, self.trial_pt)

    def take_trial(self, sub: "LogMorphRows", ok: np.ndarray) -> None:
        rows = sub.parent_rows[ok]
        for name in _Point.__slots__:
            getattr(self.trial_pt, name)[rows] = getattr(sub.trial_pt, name)[ok]

    def advance(self) -> None:
        self.cur, self.trial_pt = self.trial_pt, None

    # ------------------------------------------------------------------ maths
    def nll(self, y: np.ndarray, pt: _Point) -> np.ndarray:
        """Per-row NLL (+inf where ν ≤ 0 in a bin with n > 0)."""
        n = self.counts
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.where(n > 0, n * np.log(np.where(n > 0, pt.nu, 1.0)), 0.0)
        out = pt.nu.sum(axis=1) - logs.sum(axis=1) + 0.5 * (((y - self.aux_c) ** 2) @ self.lay.prec)
        return np.where(np.isnan(out), np.inf, out)

    def gradient(self, y: np.ndarray, pt: _Point) -> tuple[np.ndarray, tuple]:
        """Gradient ``(n, p)`` and (q, W, W·C) for :meth:`hessian`."""
        lay = self.lay
        with np.errstate(divide="ignore", invalid="ignore"):
            q = 1.0 - np.where(self.counts > 0, self.counts / pt.nu, 0.0)
        gc = np.matmul(pt.U, q[:, :, None])[:, :, 0]  # (n, S)
        W = (q[:, None, :] * pt.c[:, :, None] * pt.U).reshape(self.n, -1)  # (n, S·L)
        WC = (W @ lay.C2.T).reshape(self.n, lay.M, lay.K)  # Σ W C_mk
        g = np.concatenate([gc[:, lay.cfree], np.einsum("nkm,nmk->nk", pt.B1, WC)], axis=1)
        return g + lay.prec * (y - self.aux_c), (q, W, WC)

    def hessian(self, pt: _Point, ratios: tuple, rows: np.ndarray | None = None) -> np.ndarray:
        """Hessians ``(p, p, k)`` (toy-last) at the point of the last gradient (all rows or the
        boolean mask ``rows``)."""
        lay = self.lay
        S, K, L, nc, p = lay.S, lay.K, lay.L, lay.nc, lay.p
        sel = slice(None) if rows is None else rows
        q, W, WC = (a[sel] for a in ratios)
        n, c, U, nu = self.counts[sel], pt.c[sel], pt.U[sel], pt.nu[sel]
        k = q.shape[0]
        D = pt.log_slopes(lay, sel)  # (k, K, S·L)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(n > 0, n / (nu * nu), 0.0)  # (k, L)
        # Jacobian columns (k, p, L): U_s for the free c, Σ_s c_s U_s D_ks for α
        V = (c[:, :, None] * U).reshape(k, 1, S * L)
        Ja = (D * V).reshape(k, K, S, L).sum(axis=2)
        J = np.concatenate([U[:, lay.cfree], Ja], axis=1)
        h = np.matmul(J * w[:, None, :], J.transpose(0, 2, 1))  # Gauss–Newton part (k, p, p)
        # Σ q ∂²ν: c–α cross terms Σ_i q_i U_si D_ksi and the α–α block
        QU = (q[:, None, :] * U).reshape(k, 1, S * L)
        cross = (D * QU).reshape(k, K, S, L).sum(axis=3).transpose(0, 2, 1)[:, lay.cfree]  # (k, nc, K)
        h[:, :nc, nc:] += cross
        h[:, nc:, :nc] += cross.transpose(0, 2, 1)
        h[:, nc:, nc:] += np.matmul(D * W[:, None, :], D.transpose(0, 2, 1))
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
