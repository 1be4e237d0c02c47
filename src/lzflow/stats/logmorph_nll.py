"""The binned NLL of toys under a multiplicatively morphed model (:mod:`lzflow.stats.logmorph`),
for the Newton engine and the iminuit reference path.

ν_i = Σ_s c_s U_si with U_si = T_si exp(L_si), L_si = Σ_k Σ_m B_m(α_k) C_mksi, c = [μ, θ]. With
D_ksi = Σ_m B'_m(α_k) C_mksi and E_ksi = Σ_m B''_m(α_k) C_mksi the derivatives are::

    ∂ν_i/∂c_s = U_si,          ∂ν_i/∂α_k = Σ_s c_s U_si D_ksi
    ∂²ν_i/∂c_s∂α_k = U_si D_ksi,
    ∂²ν_i/∂α_k∂α_l = Σ_s c_s U_si (D_ksi D_lsi + δ_kl E_ksi),     ∂²ν/∂c∂c = 0

and, with r_i = n_i/ν_i, q_i = 1 − r_i, w_i = n_i/ν_i², P the constraint precisions and a the
auxiliary observables, g = Σ_i q_i ∂ν_i + P (y − a) and H = Σ_i w_i ∂ν_i ∂ν_iᵀ + Σ_i q_i ∂²ν_i + P.
With W_si = q_i c_s U_si: the α gradient is Σ_m B'_m(α_k) (W · C_mk); the α–α block
Σ W D_k D_l + δ_kl Σ_m B''_m(α_k) (W · C_mk). Only the template's non-zero entries (sample, bin)
are evaluated, and only bins some sample fills ("live"); counts elsewhere make a toy infeasible;
the Gauss–Newton part runs over the bins with counts only (w = 0 elsewhere). ν, the NLL and the
gradient are formed in double precision, the Hessian in single precision by default
(:class:`~lzflow.stats.fitresult.FitConfig` ``hessian_float32``: it only steers the step).

The loops are compiled (:mod:`lzflow.stats._logmorph_kernels`, numba): the entries are stored by
support group (samples filling the same bins), each toy is evaluated on its own in a fixed order,
so a toy's fit is bit-identical whatever the block size, sub-block split or thread count (tested).
Subsets made by the line search evaluate only their rows still pending, forming their templates in
the rows of the parent's trial point, so taking a point copies none (:meth:`LogMorphRows.trial`).
The kernels read coefficient rows through a per-toy row table ``Ri`` (α_k's rows from ``Rs[t, k]``):
every row k M + m for log_quartic and log_code4p, only the basis columns of α_k's knot interval for
log_pchip (4 of its 9, 3 for the intervals ending at α = 0; :func:`lzflow.stats.logmorph.active_basis`,
formed by :func:`lzflow.stats._logmorph_kernels.pchip_rows`), so a log_pchip point costs less than a
log_quartic one.
The toys are fitted in sub-blocks (:func:`sub_block`) so that the morphed templates of a block
(entries × toys, at the current and the trial points) stay small.

Speed (``benchmarks/bench_toys.py --workspace tests/data/workspace_m40_systematics.json.gz
--interpolation log_quartic``: 5 shape + 11 rate parameters, 5,573 template entries). 2 shared cores,
host load 9–13 (other jobs), 8,192 toys, CPU-µs per toy on 1 thread (generation + both fits):
log_quartic 800 (840 before the fused point + gradient kernel and the float32 D of the Hessian),
log_pchip 1,120 (1,405 before; also the interpolating line search of :mod:`lzflow.stats.newton`);
at host load ≈ 1.5 log_quartic measured 625 before these changes. A toy evaluates ≈ 9 points
(each with its gradient, :func:`lzflow.stats._logmorph_kernels.point_grad`) and 4.7 Hessians
(log_quartic: 4.5 + 2.2 Newton iterations for the unconditional + conditional fit; log_pchip
5.5 + 2.45: its C¹ interpolant's curvature jumps at the knots). The kernels compile on first use
(≈ 5 CPU-s) and are cached on disk. With each systematic's products over its own entries only
(:func:`entry_runs`) and log_pchip's basis rows compiled, without the zero stand-in (issue 12, one
start per fit, 4,096 toys, host load ≈ 3.5–4, before → after): log_pchip 1,108 → 873, log_quartic
835 → 764 CPU-µs per toy; a toy of log_pchip evaluates 11.2 points and 6.0 Hessians.
"""

from __future__ import annotations

import numpy as np

from .binned_nll import PointRows, PreparedData
from .logmorph import basis_functions
from .model import BinnedModel
from .morph_nll import FreeParameters

__all__ = ["LogMorphLayout", "LogMorphRows", "log_morph_problem", "sub_block", "support_groups"]

#: per-toy array elements (non-zero template entries) a sub-block of toys may hold together
SUB_BLOCK_ELEMENTS = 1 << 21


def sub_block(model: BinnedModel, block_size: int) -> int:
    """Toys fitted together for ``model`` (at most ``block_size``): the per-toy arrays of a
    sub-block (the morphed templates at the current and the trial points) hold at most
    :data:`SUB_BLOCK_ELEMENTS` numbers each (≥ 8 toys). A toy's fit does not depend on it."""
    entries = int(np.count_nonzero(model.morph.T > 0))
    return max(8, min(int(block_size), SUB_BLOCK_ELEMENTS // max(1, entries)))


def support_groups(T: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(samples, bins)]``: the samples of ``T`` ``(S, n)`` grouped by the set of bins they fill
    (in order of their first sample; samples filling no bin are left out)."""
    groups: dict[bytes, tuple[list[int], np.ndarray]] = {}
    for s, row in enumerate(T > 0):
        if row.any():
            groups.setdefault(np.packbits(row).tobytes(), ([], np.flatnonzero(row)))[0].append(s)
    return [(np.array(samples), bins) for samples, bins in groups.values()]


def _order_groups(groups: list[tuple[np.ndarray, np.ndarray]], C: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``groups`` with those that more systematics act on first (``C`` ``(M, K, S, L)``; ties: in the order of the
    systematics acting, then as given), so that each systematic's entries form one leading run
    (:func:`entry_runs`) where the systematics' sample sets nest (default 40 GeV workspace: the NR
    yield systematics act on the NR, B8 and hep samples, the detector ones on all)."""
    acts = [np.any(C[:, :, s][..., b] != 0, axis=(0, 2, 3)) for s, b in groups]  # (K,) per group
    order = sorted(range(len(groups)), key=lambda i: (-int(acts[i].sum()), tuple(~acts[i]), i))
    return [groups[i] for i in order]


def entry_runs(C2: np.ndarray, K: int, bounds: np.ndarray) -> np.ndarray:
    """``(R, 4)`` int64 rows ``(k0, k1, lo, hi)``: the maximal runs of systematics k0 ≤ k < k1 whose
    coefficient rows ``C2[k M : (k+1) M]`` (``C2`` ``(K M, X)``) vanish outside the same entries
    lo ≤ x < hi: from the first to the last block of entries ``bounds[i] ≤ x < bounds[i+1]`` (one
    sample of a support group; ``bounds`` ascending from 0 to X) where one is non-zero ((0, 0) for
    none). The kernels (:mod:`lzflow.stats._logmorph_kernels`) skip the products with these exact zeros."""
    M = C2.shape[0] // K
    spans = []
    for k in range(K):
        nz = np.any(C2[k * M : (k + 1) * M] != 0, axis=0)
        used = np.flatnonzero(np.logical_or.reduceat(nz, bounds[:-1])) if nz.size else np.zeros(0, int)
        spans.append((int(bounds[used[0]]), int(bounds[used[-1] + 1])) if used.size else (0, 0))
    runs = []
    for k, span in enumerate(spans):
        if runs and (runs[-1][2], runs[-1][3]) == span:
            runs[-1][1] = k + 1
        else:
            runs.append([k, k + 1, *span])
    return np.array(runs, dtype=np.int64).reshape(-1, 4)


class LogMorphLayout(FreeParameters):
    """Free-parameter design of one fit type (μ free, or fixed at ``mu_fixed``) of a model with
    multiplicative morphing, and its fixed tables over the template's non-zero entries x (sample,
    live bin), stored by support group (:mod:`lzflow.stats._logmorph_kernels`)."""

    def __init__(self, model: BinnedModel, mu_fixed: float | None, dense_bins: np.ndarray, sparse_bins: np.ndarray,
                 float32: bool = True):
        super().__init__(model, mu_fixed)
        basis = model.morph
        K = basis.K
        self.dense_bins, self.sparse_bins, self.n_bins = dense_bins, sparse_bins, model.n_bins
        self.wt = np.float32 if float32 else np.float64  # the Hessian's precision (it only steers the step)
        T = basis.T
        self.live = np.flatnonzero(np.any(T > 0, axis=0))
        self.L, self.M, self.interpolation = self.live.size, basis.M, basis.interpolation
        groups = _order_groups(support_groups(T[:, self.live]), basis.C[:, :, :, self.live])
        self.g_samp = np.concatenate([g for g, _ in groups]).astype(np.int64)
        self.g_sptr = np.cumsum([0] + [g.size for g, _ in groups]).astype(np.int64)
        self.g_bins = np.concatenate([b for _, b in groups]).astype(np.int64)
        self.g_bptr = np.cumsum([0] + [b.size for _, b in groups]).astype(np.int64)
        self.g_eoff = np.cumsum([0] + [g.size * b.size for g, b in groups])[:-1].astype(np.int64)
        # entries x: group-major, then sample, then bin
        self.s_of = np.concatenate([np.repeat(g, b.size) for g, b in groups])
        self.l_of = np.concatenate([np.tile(b, g.size) for g, b in groups])
        self.Tx = np.ascontiguousarray(T[self.s_of, self.live[self.l_of]])
        C = basis.C[:, :, self.s_of, self.live[self.l_of]]  # (M, K, X)
        self.C2 = np.ascontiguousarray(C.transpose(1, 0, 2).reshape(K * basis.M, -1))  # rows j = k M + m
        self.Cw = np.ascontiguousarray(self.C2, dtype=self.wt)
        sizes = np.repeat(np.diff(self.g_bptr), np.diff(self.g_sptr))  # entries of each (group, sample)
        self.runs = entry_runs(self.C2, K, np.cumsum(np.r_[0, sizes]))
        self.col_of = np.full(self.S, -1, dtype=np.int64)  # free column of each sample coefficient
        self.col_of[self.cfree] = np.arange(self.nc)
        # bins an allowed parameter value can fill, without / with the signal (μ fixed at 0: without)
        self._live_sig = {False: np.any(T[1:] > 0, axis=0), True: np.any(T > 0, axis=0)}
        self.fillable = self._live_sig[mu_fixed is None or mu_fixed != 0]

    def _fix_mu(self, mu_fixed: float) -> None:
        self.fillable = self._live_sig[mu_fixed != 0]

    def groups(self) -> tuple[np.ndarray, ...]:
        """The support-group tables the kernels take (samples, their pointers, bins, pointers, entry offsets)."""
        return self.g_samp, self.g_sptr, self.g_bins, self.g_bptr, self.g_eoff

    def full_counts(self, data: PreparedData) -> np.ndarray:
        """Dense counts ``(n, n_bins)`` of the fitter's split representation."""
        out = np.zeros((data.n, self.n_bins))
        out[:, self.dense_bins] = data.nD
        out[data.e_toy, self.sparse_bins[data.e_bin]] = data.e_n
        return out


class _Point:
    """The morphed templates (per entry), ν, the Poisson part of the NLL and the basis functions
    of a set of rows at one point. Row i's templates are ``U[ui[i]]``: dropping rows
    (:meth:`take`) keeps ``U`` as it is instead of copying entries × rows numbers. Given ``U`` and
    ``ui``, the templates are formed in those rows of that array (a line-search subset writes its trial
    points into its parent's, :meth:`LogMorphRows.trial`); otherwise in a new array."""

    __slots__ = ("c", "alpha", "Bv1", "Bv2", "Ri", "Rs", "nu", "pois", "gp", "WC", "ui", "U")
    ROWS = __slots__[:-1]  # one row per point row

    def __init__(self, lay: LogMorphLayout, y: np.ndarray, counts: np.ndarray, U: np.ndarray | None = None,
                 ui: np.ndarray | None = None):
        from ._logmorph_kernels import (  # numba: compiled on first use
            log_terms,
            pchip_rows,
            point_grad,
        )

        self.c, self.alpha = lay.split(y)
        n = y.shape[0]
        if lay.interpolation == "log_pchip":  # the 4 columns of α_k's interval, rows k M + column of lay.C2
            B, self.Bv1, self.Bv2 = (np.empty((n, 4 * lay.K)) for _ in range(3))
            self.Ri = np.empty((n, 4 * lay.K), dtype=np.int64)
            self.Rs = np.empty((n, lay.K + 1), dtype=np.int64)
            pchip_rows(np.ascontiguousarray(self.alpha), lay.M, B, self.Bv1, self.Bv2, self.Ri, self.Rs)
        else:  # every column: j = k M + m, as lay.C2's rows
            B, B1, B2 = basis_functions(self.alpha, lay.interpolation)  # (n, K, M)
            self.Ri = np.tile(np.arange(lay.K * lay.M), (n, 1))
            self.Rs = np.tile(lay.M * np.arange(lay.K + 1), (n, 1))
            B = np.ascontiguousarray(B.reshape(n, -1))
            self.Bv1, self.Bv2 = (np.ascontiguousarray(b.reshape(n, -1)) for b in (B1, B2))
        own = U is None
        self.U = np.empty((n, lay.Tx.size)) if own else U
        self.ui = np.arange(n) if own else ui
        log_terms(B, self.Ri, lay.C2, self.U, lay.runs, self.Rs, self.ui)
        if own:
            np.exp(self.U, out=self.U)
        else:  # row by row: the same values as one call (tested), without gathering the rows
            for r in self.ui:
                np.exp(self.U[r], out=self.U[r])
        self.nu = np.empty((n, lay.L))
        self.pois = np.empty(n)
        self.gp = np.zeros((n, lay.p))  # Poisson part of the gradient, and W·C: formed with ν (fused)
        self.WC = np.empty(self.Bv1.shape)
        point_grad(self.U, lay.Tx, self.c, *lay.groups(), counts, self.nu, self.pois, lay.C2, self.Bv1, self.Ri,
                   lay.col_of, lay.nc, self.gp, self.WC, lay.runs, self.Rs, self.ui)

    def take(self, keep: np.ndarray) -> _Point:
        out = _Point.__new__(_Point)
        for name in _Point.ROWS:
            setattr(out, name, getattr(self, name)[keep])
        out.U = self.U
        return out


class LogMorphRows(PointRows):
    """NLL, gradient and Hessians of a set of toys (a :class:`lzflow.stats.newton.NewtonRows`;
    maths in the module docstring, loops in :mod:`lzflow.stats._logmorph_kernels`)."""

    def __init__(self, lay: LogMorphLayout, counts: np.ndarray, dead: np.ndarray, aux_c: np.ndarray):
        self.lay, self.counts, self.dead, self.aux_c = lay, counts, dead, aux_c
        self.n = counts.shape[0]
        self.cur: _Point | None = None
        self.trial_pt: _Point | None = None
        self.ratios: tuple | None = None  # (W·C,) of the last gradient
        self.parent: LogMorphRows | None = None  # of a subset: the rows it was made from
        self.parent_rows = None
        self.taken: np.ndarray | None = None  # of a subset: rows whose trial point the parent took
        self.trial_rows: np.ndarray | None = None  # of a subset: rows of its last trial point

    @classmethod
    def build(cls, lay: LogMorphLayout, data: PreparedData) -> LogMorphRows:
        full = lay.full_counts(data)
        dead = np.any(full[:, ~lay.fillable] > 0, axis=1)
        aux_c = np.zeros((data.n, lay.p))
        nuis = lay.cols > 0
        aux_c[:, nuis] = data.aux[:, lay.cols[nuis] - 1]
        return cls(lay, np.ascontiguousarray(full[:, lay.live]), dead, aux_c)

    # ------------------------------------------------------------------ rows
    def infeasible(self) -> np.ndarray:
        return self.dead.copy()

    def subset(self, keep: np.ndarray) -> LogMorphRows:
        sub = LogMorphRows(self.lay, self.counts[keep], self.dead[keep], self.aux_c[keep])
        sub.parent, sub.parent_rows = self, np.flatnonzero(keep)
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
        return _Point(self.lay, y, self.counts)

    def take_trial(self, sub: LogMorphRows, ok: np.ndarray) -> None:
        rows = sub.parent_rows[ok]
        dst, src = self.trial_pt, sub.trial_pt
        pos = np.searchsorted(sub.trial_rows, np.flatnonzero(ok))  # accepted rows were evaluated last
        if src.U is not dst.U:  # the subset had its own templates (the parent had no trial point then)
            dst.U[dst.ui[rows]] = src.U[src.ui[pos]]
        for name in _Point.ROWS[:-1]:  # the templates of the rows are in place
            getattr(dst, name)[rows] = getattr(src, name)[pos]
        sub.taken = ok.copy() if sub.taken is None else sub.taken | ok

    def trial(self, y: np.ndarray) -> np.ndarray:
        """NLL at the trial points ``y``. A subset made for the line search (its parent has a trial
        point) evaluates only its rows still pending — not those whose point the parent already took
        (:meth:`take_trial`; NLL +inf there, never read) — and forms their templates directly in the
        parent's trial templates, in the rows of those toys (whose rejected trial they replace), so
        that taking an accepted point copies no templates."""
        parent = self.parent
        if parent is None or parent.trial_pt is None:
            self.trial_rows = np.arange(self.n)
            return super().trial(y)
        rows = np.arange(self.n) if self.taken is None else np.flatnonzero(~self.taken)
        dst = parent.trial_pt
        pt = _Point(self.lay, y[rows], self.counts[rows], dst.U, dst.ui[self.parent_rows[rows]])
        self.trial_pt, self.trial_rows = pt, rows
        out = np.full(self.n, np.inf)
        out[rows] = self._nll(y[rows], pt, self.aux_c[rows])
        return out

    # ------------------------------------------------------------------ maths
    def nll(self, y: np.ndarray, pt: _Point) -> np.ndarray:
        """Per-row NLL (+inf where ν ≤ 0 in a bin with n > 0)."""
        return self._nll(y, pt, self.aux_c)

    def _nll(self, y: np.ndarray, pt: _Point, aux_c: np.ndarray) -> np.ndarray:
        d = y - aux_c
        out = pt.pois + 0.5 * np.einsum("np,p->n", d * d, self.lay.prec)
        return np.where(np.isnan(out), np.inf, out)

    def gradient(self, y: np.ndarray, pt: _Point) -> tuple[np.ndarray, tuple]:
        """Gradient ``(n, p)`` and (W·C,) for :meth:`hessian` (their Poisson parts were formed with
        the point: :func:`lzflow.stats._logmorph_kernels.point_grad`)."""
        return pt.gp + self.lay.prec * (y - self.aux_c), (pt.WC,)

    def hessian(self, pt: _Point, ratios: tuple, rows: np.ndarray | None = None) -> np.ndarray:
        """Hessians ``(p, p, k)`` (toy-last, float64) at the point of the last gradient (all rows or
        the boolean mask ``rows``), formed in the layout's precision."""
        from ._logmorph_kernels import hessian

        lay = self.lay
        idx = np.arange(self.n) if rows is None else np.flatnonzero(rows)
        H = np.empty((lay.p, lay.p, idx.size))
        D = np.zeros((lay.K, lay.Tx.size), dtype=lay.wt)
        J = np.empty((lay.p, 2 * lay.L), dtype=lay.wt)
        hessian(idx, pt.U, pt.ui, pt.nu, self.counts, pt.c, *lay.groups(), lay.Cw, pt.Bv1, pt.Bv2, pt.Ri, ratios[0],
                   lay.col_of, lay.nc, lay.prec, H, D, J, lay.runs, pt.Rs)
        return H


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
