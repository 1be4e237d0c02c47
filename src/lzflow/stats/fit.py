"""Batched maximum-likelihood fits: projected Newton vectorised over toys.

The NLL of :mod:`lzflow.stats.model` is linear-in-parameters Poisson + quadratic constraints,
hence convex, with the exact derivatives (x_i = the template values of bin i for the free
parameters, ν = X y + c, y the free parameters, c the fixed part)::

    g = Σ_i x_i (1 − n_i/ν_i) + P (y − a)
    H = Σ_i (n_i/ν_i²) x_i x_iᵀ + P,           P = diag(1/r_b²) (0 for μ)

Algorithm (per toy, all toys of a block advanced together as arrays):

1. projected Newton (Bertsekas 1982): variables at a bound whose gradient pushes outwards are
   held fixed (active set); the Newton system is solved on the free set with a Jacobi-scaled,
   modified Cholesky vectorised over toys (:mod:`lzflow.stats._linalg`). Optionally the first
   step uses the *expected* information at the generation point (one matrix for all toys,
   ``fisher_at``) instead of each toy's Hessian;
2. backtracking Armijo line search along the projection arc ``max(y + t d, lb)``;
3. convergence when the Newton decrement ``λ² = g_Fᵀ H_FF⁻¹ g_F`` (≈ 2 × the NLL distance to
   the minimum) is below ``tol``. After a step, λ² is first estimated with the previous exact
   Hessian factor (one gradient, no new Hessian); if that estimate is already tiny (< 1e-6) one
   chord step reuses the factor, otherwise a fresh Hessian is formed.

Speed: bins are split once per model into *dense* bins (nominal expectation above
``dense_threshold``; BLAS matrix products over all toys of a block) and *sparse* bins (nearly
empty: their few non-zero counts are handled entry by entry with CSR products). Bins with
n_i = 0 contribute only ``Σ_i ν_i`` — a linear term — so no per-toy work is spent on empty sparse
bins. The dense part of the Hessians Σ w_i x_i x_iᵀ is one product ``W @ P`` with the precomputed
pair products P (optionally in single precision, see :class:`FitConfig`). Work arrays are
allocated once per block; converged toys are compacted out of the iteration. Blocks are spread
over threads.

Failures (non-finite values, no convergence within ``max_iter``, failed line search) are
retried: first Newton again from the nominal start with a step cap, then — optionally — one
iminuit Migrad fit per remaining toy (:mod:`lzflow.stats.minuit`). No toy is ever dropped: every
row of the result carries its final status, the strategy that produced it and the cause of the
first failure. Data impossible under every allowed parameter value (counts in bins the model
cannot fill) get status INFEASIBLE and NLL = +inf (a legitimate q = ∞, not a failure).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Iterable

import numpy as np
import scipy.sparse as sp

from ._linalg import newton_direction, reuse_direction, unpack_symmetric
from ._threads import available_cores, blas_threads
from .model import BinnedModel

__all__ = [
    "FitStatus",
    "Strategy",
    "FitConfig",
    "FitResult",
    "BatchedFitter",
    "fit_batch",
]


class FitStatus(IntEnum):
    """Per-fit status codes."""

    CONVERGED = 0
    MAX_ITER = 1  #: no convergence within max_iter
    NON_FINITE = 2  #: NaN/inf in data, auxiliary values, NLL or gradient
    LINE_SEARCH = 3  #: no decrease found along the Newton direction
    INFEASIBLE = 4  #: counts where the model predicts 0 for every allowed parameter: NLL = +inf
    MINUIT_FAILED = 5  #: iminuit fallback did not report a valid minimum
    NOT_RUN = 6  #: placeholder (never returned by a completed fit)


class Strategy(IntEnum):
    """Which strategy produced the final result of a fit."""

    NEWTON = 0
    NEWTON_RETRY = 1  #: Newton restarted from the nominal point with a step cap
    MINUIT = 2  #: iminuit Migrad with analytic gradient
    NONE = 3  #: not fitted (invalid input)


@dataclass(frozen=True)
class FitConfig:
    """Settings of the batched Newton fitter.

    tol: convergence threshold on the squared Newton decrement λ² (NLL units × 2).
    max_iter: Newton iterations per strategy.
    max_backtrack: halvings of the step in the line search.
    armijo: sufficient-decrease constant.
    dense_threshold: bins with nominal expectation (μ = 1, θ = 1) above this are "dense".
    block_size: toys fitted together (memory ∝ block_size × dense bins).
    retry: restart failed fits with Newton from the nominal point (step cap 0.5 relative).
    minuit_fallback: fit what still failed with iminuit, toy by toy.
    n_threads: worker threads over blocks (default: the available cores); with > 1 thread BLAS
        runs single-threaded inside the workers (:mod:`lzflow.stats._threads`).
    hessian_float32: form the dense-bin part of the Hessians Σ w_i x_i x_iᵀ in single precision
        (2× faster matrix product). The Hessian only sets the search direction — gradient, NLL,
        line search and the convergence test stay in double precision — so the fixed point is
        unchanged; a ~1e-7 relative error in H only perturbs the direction (for the LZ-like
        model the Jacobi-scaled Hessian has condition number ≈ 2).
    """

    tol: float = 1e-9
    max_iter: int = 50
    max_backtrack: int = 40
    armijo: float = 1e-4
    dense_threshold: float = 0.05
    block_size: int = 512
    retry: bool = True
    minuit_fallback: bool = True
    n_threads: int | None = None
    hessian_float32: bool = True


@dataclass
class FitResult:
    """Per-toy fit results; every array has the toy axis first.

    params: (n, 1 + n_bkg) full parameter vectors [μ, θ] (multipliers; fixed ones at 1, and μ
        at its fixed value for conditional fits).
    nll: (n,) NLL at the best fit (+inf for infeasible data, NaN if invalid input).
    status: (n,) :class:`FitStatus` of the final attempt.
    strategy: (n,) :class:`Strategy` that produced the result.
    first_failure: (n,) :class:`FitStatus` of the first failed attempt (CONVERGED if none).
    n_iter: (n,) iterations (sum over strategies).
    grad_norm: (n,) Euclidean norm of the projected gradient at the result.
    edm: (n,) ½ λ², the estimated distance to the minimum in NLL units.
    at_bound: (n, 1 + n_bkg) parameter sits at its lower bound.
    """

    params: np.ndarray
    nll: np.ndarray
    status: np.ndarray
    strategy: np.ndarray
    first_failure: np.ndarray
    n_iter: np.ndarray
    grad_norm: np.ndarray
    edm: np.ndarray
    at_bound: np.ndarray

    @property
    def n(self) -> int:
        return int(self.nll.shape[0])

    @property
    def mu(self) -> np.ndarray:
        return self.params[:, 0]

    @property
    def converged(self) -> np.ndarray:
        return self.status == FitStatus.CONVERGED

    @classmethod
    def empty(cls, n: int, n_par: int) -> "FitResult":
        return cls(
            params=np.full((n, n_par), np.nan),
            nll=np.full(n, np.nan),
            status=np.full(n, FitStatus.NOT_RUN, dtype=np.int8),
            strategy=np.full(n, Strategy.NONE, dtype=np.int8),
            first_failure=np.zeros(n, dtype=np.int8),
            n_iter=np.zeros(n, dtype=np.int32),
            grad_norm=np.full(n, np.nan),
            edm=np.full(n, np.nan),
            at_bound=np.zeros((n, n_par), dtype=bool),
        )

    def take(self, idx: np.ndarray) -> "FitResult":
        return FitResult(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def put(self, idx: np.ndarray, other: "FitResult") -> None:
        for f in fields(self):
            getattr(self, f.name)[idx] = getattr(other, f.name)

    def store_newton(self, idx: np.ndarray, out: dict, cols: np.ndarray, mu_fixed: float | None,
                     strategy: "Strategy") -> None:
        """Store the rows ``idx`` of a projected-Newton run (``out``: fitted columns ``cols``; μ set
        to ``mu_fixed`` when fixed, parameters left out of the fit at 1; EDM = decrement / 2)."""
        n_par = self.params.shape[1]
        full = np.ones((idx.size, n_par))
        full[:, cols] = out["y"]
        if mu_fixed is not None:
            full[:, 0] = mu_fixed
        self.params[idx] = full
        self.nll[idx] = out["nll"]
        self.status[idx] = out["status"]
        self.strategy[idx] = strategy
        self.n_iter[idx] = out["n_iter"]
        self.grad_norm[idx] = out["grad_norm"]
        self.edm[idx] = 0.5 * out["dec"]
        at_bound = np.zeros((idx.size, n_par), dtype=bool)
        at_bound[:, cols] = out["at_bound"]
        self.at_bound[idx] = at_bound

    @classmethod
    def concat(cls, parts: Iterable["FitResult"]) -> "FitResult":
        parts = list(parts)
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )

    def failure_summary(self) -> dict[str, int]:
        """Counts of final statuses and of first-failure causes (non-zero entries only)."""
        out: dict[str, int] = {}
        for s in FitStatus:
            k = int(np.sum(self.status == s))
            if k and s != FitStatus.CONVERGED:
                out[f"final:{s.name}"] = k
            k = int(np.sum(self.first_failure == s))
            if k and s != FitStatus.CONVERGED:
                out[f"first:{s.name}"] = k
        for st in (Strategy.NEWTON_RETRY, Strategy.MINUIT):
            k = int(np.sum(self.strategy == st))
            if k:
                out[f"strategy:{st.name}"] = k
        return out


# ----------------------------------------------------------------------------- internals
@dataclass
class _Layout:
    """Free-parameter design for one fit type (μ free, or μ fixed)."""

    cols: np.ndarray  # indices into the full parameter vector of the free parameters
    XDt: np.ndarray  # (p, D) dense-bin templates of the free parameters
    XS: np.ndarray  # (nS, p) sparse-bin templates
    PD: np.ndarray  # (D, p(p+1)/2) products x_j x_k for the Hessian
    PD32: np.ndarray | None  # float32 copy (Hessian products in single precision)
    iu: np.ndarray
    ju: np.ndarray
    tvec: np.ndarray  # (p,) Σ_i x_i
    prec: np.ndarray  # (p,) constraint precisions (0 for μ)

    @property
    def p(self) -> int:
        return int(self.cols.size)


@dataclass
class PreparedData:
    """Counts/aux of a set of toys in the fitter's split (dense/sparse bins) representation."""

    n: int
    nD: np.ndarray  # (n, D) float64 counts in dense bins
    e_toy: np.ndarray  # (E,) toy of each non-zero sparse entry (sorted)
    e_bin: np.ndarray  # (E,) sparse-bin index
    e_n: np.ndarray  # (E,) count
    aux: np.ndarray  # (n, n_bkg) auxiliary observables (multiplier scale)
    valid: np.ndarray  # (n,) finite, non-negative input
    total: np.ndarray  # (n,) total count

    def slice(self, start: int, stop: int) -> "PreparedData":
        """Toys ``start:stop`` (cost independent of the total number of toys)."""
        a, b = np.searchsorted(self.e_toy, [start, stop])
        return PreparedData(
            n=stop - start, nD=self.nD[start:stop], e_toy=self.e_toy[a:b] - start,
            e_bin=self.e_bin[a:b], e_n=self.e_n[a:b], aux=self.aux[start:stop],
            valid=self.valid[start:stop], total=self.total[start:stop],
        )

    def subset(self, idx: np.ndarray) -> "PreparedData":
        """Toys ``idx`` (any order)."""
        idx = np.asarray(idx)
        keep = np.zeros(self.n, dtype=bool)
        keep[idx] = True
        m = keep[self.e_toy]
        remap = np.full(self.n, -1)
        remap[idx] = np.arange(idx.size)
        e_toy = remap[self.e_toy[m]]
        order = np.argsort(e_toy, kind="stable")
        return PreparedData(
            n=int(idx.size), nD=self.nD[idx], e_toy=e_toy[order], e_bin=self.e_bin[m][order],
            e_n=self.e_n[m][order], aux=self.aux[idx], valid=self.valid[idx],
            total=self.total[idx],
        )


def fit_in_blocks(fitter, data, res: FitResult, init: np.ndarray | None, mu_fixed: float | None,
                  mu_lower: float | None, fisher_at: np.ndarray | None, block_size: int) -> FitResult:
    """Fit ``data`` in blocks of ``block_size`` toys (``fitter._fit_block``), spread over the fitter's
    threads with single-threaded BLAS, into ``res``. ``init``: full start vectors (default
    ``fitter.default_init``); μ is set to ``mu_fixed`` for conditional fits. Shared by the binned and
    the unbinned fitter (:mod:`lzflow.stats.unbinned`)."""
    n_par = fitter.model.n_par
    if init is None:
        init = fitter.default_init(data, mu_fixed)
    init = np.array(init, dtype=np.float64, copy=True)
    if init.shape != (data.n, n_par):
        raise ValueError(f"init must have shape ({data.n}, {n_par})")
    if mu_fixed is not None:
        init[:, 0] = mu_fixed
    blocks = [np.arange(s, min(s + block_size, data.n)) for s in range(0, data.n, block_size)]

    def work(idx: np.ndarray) -> None:
        sub = data if idx.size == data.n else data.slice(int(idx[0]), int(idx[-1]) + 1)
        res.put(idx, fitter._fit_block(sub, mu_fixed, init[idx], mu_lower, fisher_at))

    n_threads = min(fitter.n_threads, len(blocks))
    if n_threads > 1:
        with blas_threads(1), ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(work, blocks))
    else:
        for idx in blocks:
            work(idx)
    return res


class BatchedFitter:
    """Vectorised projected-Newton fitter for a :class:`BinnedModel`.

    Build once per model (it precomputes the dense/sparse split and the Hessian products), then
    call :meth:`fit` on arrays of toys. See the module docstring for the algorithm.
    """

    def __init__(self, model: BinnedModel, config: FitConfig | None = None):
        self.model = model
        self.config = config or FitConfig()
        nt = self.config.n_threads
        self.n_threads = available_cores() if nt is None else max(1, int(nt))
        ref = model.signal + model.backgrounds.sum(axis=0)
        self.dense_bins = np.flatnonzero(ref > self.config.dense_threshold)
        self.sparse_bins = np.flatnonzero(~(ref > self.config.dense_threshold))
        self._fixed_bkg = np.flatnonzero(~model.constrained)
        self._free_bkg = model.free_bkg
        self._fixed_template = model.backgrounds[self._fixed_bkg].sum(axis=0)
        rel = model.rel_unc
        full_prec = np.r_[0.0, np.where(rel > 0, 1.0 / np.where(rel > 0, rel, 1.0) ** 2, 0.0)]
        templates = np.vstack([model.signal[None, :], model.backgrounds])  # (n_par, n_bins)
        self._templates = templates
        self._full_prec = full_prec
        cols_u = np.r_[0, 1 + self._free_bkg].astype(int)
        cols_c = (1 + self._free_bkg).astype(int)
        self._layouts = {
            "uncond": self._make_layout(cols_u),
            "cond": self._make_layout(cols_c),
        }

    # ------------------------------------------------------------------ setup
    def _make_layout(self, cols: np.ndarray) -> _Layout:
        X = self._templates[cols].T  # (n_bins, p)
        XD = X[self.dense_bins]
        iu, ju = np.triu_indices(cols.size)
        return _Layout(
            cols=cols,
            XDt=np.ascontiguousarray(XD.T),
            XS=np.ascontiguousarray(X[self.sparse_bins]),
            PD=np.ascontiguousarray(XD[:, iu] * XD[:, ju]),
            PD32=(np.ascontiguousarray(XD[:, iu] * XD[:, ju], dtype=np.float32)
                  if self.config.hessian_float32 else None),
            iu=iu, ju=ju, tvec=X.sum(axis=0), prec=self._full_prec[cols],
        )

    def prepare(self, counts: np.ndarray, aux: np.ndarray | None = None) -> PreparedData:
        """Convert dense counts ``(n, n_bins)`` and aux ``(n, n_bkg)`` (default: nominal 1).

        Rows with negative/non-finite counts or non-finite aux of a floating background are
        flagged invalid (their fits get status NON_FINITE; they are kept, never dropped).
        """
        counts = np.asarray(counts)
        if counts.ndim == 1:
            counts = counts[None, :]
        n = counts.shape[0]
        if counts.ndim != 2 or counts.shape[1] != self.model.n_bins:
            raise ValueError(f"counts must have shape (n, {self.model.n_bins}), got {counts.shape}")
        aux = self._check_aux(aux, n)
        if np.issubdtype(counts.dtype, np.integer) or counts.dtype == bool:
            valid = counts.min(axis=1) >= 0 if counts.size else np.ones(n, bool)
            cnt = counts
        else:
            cnt = counts.astype(np.float64, copy=False)
            with np.errstate(invalid="ignore"):
                valid = np.isfinite(cnt).all(axis=1) & ~(cnt < 0).any(axis=1)
        valid &= np.isfinite(aux[:, self._free_bkg]).all(axis=1)
        if not valid.all():
            cnt = np.where(valid[:, None], cnt, 0)
        nD = np.ascontiguousarray(cnt[:, self.dense_bins], dtype=np.float64)
        cS = cnt[:, self.sparse_bins]
        e_toy, e_bin = np.nonzero(cS)
        e_n = cS[e_toy, e_bin].astype(np.float64)
        total = nD.sum(axis=1) + np.bincount(e_toy, weights=e_n, minlength=n)
        return PreparedData(n=n, nD=nD, e_toy=e_toy, e_bin=e_bin, e_n=e_n, aux=aux, valid=valid,
                            total=total)

    def prepare_split(
        self, nD: np.ndarray, e_toy: np.ndarray, e_bin: np.ndarray, e_n: np.ndarray,
        aux: np.ndarray | None = None,
    ) -> PreparedData:
        """Build :class:`PreparedData` from counts already split into dense bins ``nD``
        ``(n, len(dense_bins))`` and sorted sparse entries (toy, index into ``sparse_bins``,
        count) — what the toy generator produces, avoiding dense ``(n, n_bins)`` arrays."""
        nD = np.ascontiguousarray(nD, dtype=np.float64)
        n = nD.shape[0]
        aux = self._check_aux(aux, n)
        valid = np.isfinite(aux[:, self._free_bkg]).all(axis=1)
        e_n = np.asarray(e_n, dtype=np.float64)
        total = nD.sum(axis=1) + np.bincount(e_toy, weights=e_n, minlength=n)
        return PreparedData(n=n, nD=nD, e_toy=np.asarray(e_toy), e_bin=np.asarray(e_bin),
                            e_n=e_n, aux=aux, valid=valid, total=total)

    def _check_aux(self, aux: np.ndarray | None, n: int) -> np.ndarray:
        if aux is None:
            return np.ones((n, self.model.n_bkg))
        aux = np.asarray(aux, dtype=np.float64)
        if aux.ndim == 1:
            aux = np.broadcast_to(aux, (n, aux.size))
        if aux.shape != (n, self.model.n_bkg):
            raise ValueError(f"aux must have shape ({n}, {self.model.n_bkg}), got {aux.shape}")
        return aux

    def expected_information(self, params: np.ndarray, mu_free: bool = True) -> np.ndarray:
        """Expected (Fisher) information of the free parameters at full parameter vector
        ``params``: ``Σ_i x_i x_iᵀ / ν_i + P`` (bins with ν_i > 0), the expectation of the
        Hessian for data generated at ``params``."""
        lay = self._layouts["uncond" if mu_free else "cond"]
        nu = self.model.expected(params[0], np.asarray(params[1:]))
        X = self._templates[lay.cols].T
        pos = nu > 0
        Xp = X[pos]
        return (Xp / nu[pos, None]).T @ Xp + np.diag(lay.prec)

    def profile_slope(self, params: np.ndarray) -> np.ndarray:
        """dθ̂̂/dμ (full-length vector, 0 for μ and fixed backgrounds) from the expected
        information at ``params``: ``−I_θθ⁻¹ I_θμ``. Used to predict conditional start points
        ``θ(μ) ≈ θ(μ₀) + (μ − μ₀) dθ/dμ``."""
        info = self.expected_information(params, mu_free=True)
        out = np.zeros(self.model.n_par)
        if info.shape[0] > 1:
            itt = info[1:, 1:]
            itm = info[1:, 0]
            out[1 + self._free_bkg] = -np.linalg.solve(itt, itm)
        return out

    # ------------------------------------------------------------------ public API
    def default_init(self, data: PreparedData, mu_fixed: float | None = None) -> np.ndarray:
        """Start point: θ = aux clipped to [0.05, ∞) (1 for fixed backgrounds); μ from the
        excess over the background (at least 0.5 signal events, so that signal-only bins have
        ν > 0)."""
        m = self.model
        init = np.ones((data.n, m.n_par))
        th = np.clip(data.aux, 0.05, None)
        init[:, 1:] = np.where(m.constrained, th, 1.0)
        if mu_fixed is not None:
            init[:, 0] = mu_fixed
        elif m.signal_is_empty:
            init[:, 0] = 0.0
        else:
            stot = m.signal_total
            excess = (data.total - init[:, 1:] @ m.nominal_counts) / stot
            init[:, 0] = np.maximum(excess, 0.5 / stot)
        return init

    def fit(
        self,
        data: PreparedData | np.ndarray,
        aux: np.ndarray | None = None,
        mu_fixed: float | None = None,
        init: np.ndarray | None = None,
        mu_lower: float | None = 0.0,
        fisher_at: np.ndarray | None = None,
    ) -> FitResult:
        """Fit every toy; μ free (``mu_fixed is None``, bounded below by ``mu_lower``; ``None``
        = unbounded, only ν_i > 0 where n_i > 0 is enforced) or fixed at ``mu_fixed``.

        ``data``: a :class:`PreparedData` or dense counts ``(n, n_bins)`` (then ``aux`` is used).
        ``init``: ``(n, 1 + n_bkg)`` start points (full parameter vectors); default
        :meth:`default_init`.
        ``fisher_at``: a full parameter vector; if given, the first Newton step uses the
        expected information there (one matrix shared by all toys, :meth:`expected_information`)
        instead of each toy's Hessian — ideal when the toys were generated at that point and
        start there.
        """
        if not isinstance(data, PreparedData):
            data = self.prepare(data, aux)
        cfg = self.config
        res = FitResult.empty(data.n, self.model.n_par)
        return fit_in_blocks(self, data, res, init, mu_fixed, mu_lower, fisher_at, max(1, int(cfg.block_size)))

    # ------------------------------------------------------------------ block fit
    def _fit_block(
        self, data: PreparedData, mu_fixed: float | None, init: np.ndarray,
        mu_lower: float | None, fisher_at: np.ndarray | None = None,
    ) -> FitResult:
        cfg = self.config
        m = self.model
        res = FitResult.empty(data.n, m.n_par)
        lay = self._layouts["uncond" if mu_fixed is None else "cond"]
        # fixed part of ν
        offset = self._fixed_template.copy()
        if mu_fixed is not None:
            offset = offset + mu_fixed * m.signal
        lb = lower_bounds(lay.cols.size, mu_fixed, mu_lower)
        # invalid input: never fitted, reported as NON_FINITE
        bad_in = ~data.valid
        res.status[bad_in] = FitStatus.NON_FINITE
        res.first_failure[bad_in] = FitStatus.NON_FINITE
        # infeasible data: counts in bins that no free parameter nor the fixed part can fill
        dead = ~(np.any(self._templates[lay.cols] > 0, axis=0) | (offset > 0))
        infeasible = np.zeros(data.n, dtype=bool)
        if dead.any():
            deadD = dead[self.dense_bins]
            if deadD.any():
                infeasible |= np.any(data.nD[:, deadD] > 0, axis=1)
            deadS = dead[self.sparse_bins]
            if deadS.any() and data.e_toy.size:
                hit = deadS[data.e_bin]
                infeasible[np.unique(data.e_toy[hit])] = True
        infeasible &= ~bad_in
        if infeasible.any():
            res.status[infeasible] = FitStatus.INFEASIBLE
            res.first_failure[infeasible] = FitStatus.INFEASIBLE
            res.strategy[infeasible] = Strategy.NONE
            res.nll[infeasible] = np.inf
            res.params[infeasible] = init[infeasible]
        todo = np.flatnonzero(~bad_in & ~infeasible)
        if todo.size == 0:
            return res
        sub = data if todo.size == data.n else data.subset(todo)
        y0 = init[todo][:, lay.cols]
        y0 = np.maximum(y0, lb)
        fisher = None
        if fisher_at is not None:
            fa = np.array(fisher_at, dtype=np.float64, copy=True)
            if mu_fixed is not None:
                fa[0] = mu_fixed
            fisher = self.expected_information(fa, mu_free=mu_fixed is None)
        out = _newton(self, lay, sub, offset, y0, lb, cfg, cfg.max_iter, step_cap=None,
                      fisher=fisher)
        res.store_newton(todo, out, lay.cols, mu_fixed, Strategy.NEWTON)
        failed = todo[out["status"] != FitStatus.CONVERGED]
        if failed.size:
            res.first_failure[failed] = out["status"][out["status"] != FitStatus.CONVERGED]
        if failed.size and cfg.retry:
            sub2 = data.subset(failed)
            start = self.default_init(sub2, mu_fixed)[:, lay.cols]
            start = np.maximum(start, np.where(np.isfinite(lb), lb, -np.inf))
            out2 = _newton(self, lay, sub2, offset, start, lb, cfg, 4 * cfg.max_iter, step_cap=0.5)
            prev_iter = res.n_iter[failed].copy()
            res.store_newton(failed, out2, lay.cols, mu_fixed, Strategy.NEWTON_RETRY)
            res.n_iter[failed] += prev_iter
            failed = failed[out2["status"] != FitStatus.CONVERGED]
        if failed.size and cfg.minuit_fallback:
            from .minuit import fit_minuit_prepared

            for i in failed:
                one = data.subset(np.array([i]))
                r = fit_minuit_prepared(
                    self, one, mu_fixed=mu_fixed, init=init[i : i + 1], mu_lower=mu_lower
                )
                keep_first = res.first_failure[i]
                prev_iter = res.n_iter[i]
                res.put(np.array([i]), r)
                res.first_failure[i] = keep_first
                res.n_iter[i] += prev_iter
        return res


# ----------------------------------------------------------------------------- the Newton core
class _Buffers:
    """Work arrays ``(n_max, D)`` reused across iterations (sliced to the active rows), so the
    iteration does not allocate — and page-fault in — fresh multi-MB temporaries each time."""

    def __init__(self, n: int, d: int, f32: bool):
        wt = np.float32 if f32 else np.float64
        self.nu = np.empty((n, d))  # spare ν buffer (candidate points)
        self.tmp = np.empty((n, d))  # logs; compacted ratios
        self.r = np.empty((n, d))  # n/ν
        self.w = np.empty((n, d), dtype=wt)  # n/ν²
        self.w2 = np.empty((n, d), dtype=wt)  # n/ν² of a row subset
        self.nd = (np.empty((n, d)), np.empty((n, d)))  # ping-pong targets for compacted counts


class _Eval:
    """NLL, gradient and Hessian for a set of toys ("rows") under one layout and fixed offset.

    Dense bins are arrays ``(n, D)``; ν there is one matrix product with the free templates
    augmented by the fixed offset (``[y, 1] @ [X; c]``). Sparse-bin entries are stored
    row-sorted (``e_row``).
    """

    def __init__(self, lay: _Layout, nD, e_row, e_n, Xe, Pe, ce, aux_c, XDa, const, bufs,
                 nd_slot: int = -1):
        self.nd_slot = nd_slot  # which ping-pong buffer holds nD (-1: not a buffer)
        self.lay, self.nD, self.e_row, self.e_n = lay, nD, e_row, e_n
        self.Xe, self.Pe, self.ce, self.aux_c, self.XDa, self.const = Xe, Pe, ce, aux_c, XDa, const
        self.n = nD.shape[0]
        self.has_entries = e_row.size > 0
        self.bufs = bufs
        self.XDT = XDa[:-1].T
        self._sel = None

    def segsum(self, weights: np.ndarray, M: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Σ over the sparse entries of each row of ``weights[e] · M[e]`` → ``(n, M.shape[1])``
        (a CSR product; ``rows``: restrict to the rows of this boolean mask)."""
        if rows is None:
            if self._sel is None:
                indptr = np.searchsorted(self.e_row, np.arange(self.n + 1))
                self._sel = sp.csr_matrix(
                    (np.ones(self.e_row.size), np.arange(self.e_row.size), indptr),
                    shape=(self.n, self.e_row.size),
                )
            self._sel.data = np.ascontiguousarray(weights, dtype=np.float64)
            return np.asarray(self._sel @ M)
        em = self.entry_mask(rows)
        k = int(rows.sum())
        e_row = (np.cumsum(rows) - 1)[self.e_row[em]]
        indptr = np.searchsorted(e_row, np.arange(k + 1))
        sel = sp.csr_matrix((np.asarray(weights, float)[em], np.arange(e_row.size), indptr),
                            shape=(k, e_row.size))
        return np.asarray(sel @ M[em])

    @classmethod
    def build(cls, lay: _Layout, data: PreparedData, offset: np.ndarray, fitter: BatchedFitter):
        cS = offset[fitter.sparse_bins]
        Xe = lay.XS[data.e_bin]
        aux_c = np.zeros((data.n, lay.p))
        bkg_cols = lay.cols > 0
        aux_c[:, bkg_cols] = data.aux[:, lay.cols[bkg_cols] - 1]
        XDa = np.vstack([lay.XDt, offset[fitter.dense_bins][None, :]])
        bufs = _Buffers(data.n, data.nD.shape[1], lay.PD32 is not None)
        return cls(
            lay, data.nD, data.e_toy, data.e_n, Xe, Xe[:, lay.iu] * Xe[:, lay.ju], cS[data.e_bin],
            aux_c, XDa, float(offset.sum()), bufs,
        )

    def entry_mask(self, keep: np.ndarray) -> np.ndarray:
        """Boolean mask over entries belonging to rows with ``keep`` True."""
        return keep[self.e_row]

    def _entries_of(self, keep: np.ndarray) -> tuple:
        """Sparse entries of the kept rows, with row indices renumbered to the kept order."""
        if not self.has_entries:
            return (self.e_row, self.e_n, self.Xe, self.Pe, self.ce)
        em = self.entry_mask(keep)
        remap = np.cumsum(keep) - 1
        return (remap[self.e_row[em]], self.e_n[em], self.Xe[em], self.Pe[em], self.ce[em])

    def subset(self, keep: np.ndarray) -> "_Eval":
        """Rows where the boolean ``keep`` is True (order preserved)."""
        e = self._entries_of(keep)
        return _Eval(self.lay, self.nD[keep], *e, self.aux_c[keep], self.XDa, self.const, self.bufs)

    def compact(self, keep: np.ndarray) -> "_Eval":
        """Like :meth:`subset`, but the counts go into a work buffer (no allocation)."""
        k = int(keep.sum())
        slot = 1 if self.nd_slot == 0 else 0
        nD = np.compress(keep, self.nD, axis=0, out=self.bufs.nd[slot][:k])
        e = self._entries_of(keep)
        return _Eval(self.lay, nD, *e, self.aux_c[keep], self.XDa, self.const, self.bufs, slot)

    def nu(self, y: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """ν in dense bins ``(n, D)`` (into ``out`` if given) and at the sparse entries ``(E,)``."""
        p = y.shape[1]
        ya = np.empty((y.shape[0], p + 1))
        ya[:, :p] = y
        ya[:, p] = 1.0
        nuD = np.matmul(ya, self.XDa, out=out)
        if self.has_entries:
            nue = np.einsum("ep,ep->e", self.Xe, y[self.e_row]) + self.ce
        else:
            nue = np.empty(0)
        return nuD, nue

    def nll(self, y: np.ndarray, nuD: np.ndarray, nue: np.ndarray) -> np.ndarray:
        """Per-row NLL (+inf where ν ≤ 0 in a bin with n > 0)."""
        nD = self.nD
        with np.errstate(divide="ignore", invalid="ignore"):
            tD = np.vecdot(nD, np.log(nuD, out=self.bufs.tmp[: self.n]))
            bad = ~np.isfinite(tD)
            if bad.any():  # ν ≤ 0 somewhere: 0·ln(·) = 0, but ν ≤ 0 with n > 0 → NLL = +inf
                nb, vb = nD[bad], nuD[bad]
                pos = nb > 0
                infeasible = np.any(pos & ~(vb > 0), axis=1)
                safe = np.where(pos & (vb > 0), vb, 1.0)
                tD[bad] = np.where(infeasible, -np.inf, np.sum(nb * np.log(safe), axis=1))
            if self.has_entries:
                le = np.where(nue > 0, np.log(np.where(nue > 0, nue, 1.0)), -np.inf)
                tD += np.bincount(self.e_row, weights=self.e_n * le, minlength=self.n)
        cons = 0.5 * (((y - self.aux_c) ** 2) @ self.lay.prec)
        lin = y @ self.lay.tvec + self.const
        return lin - tD + cons

    def grad(self, y: np.ndarray, nuD: np.ndarray, nue: np.ndarray):
        """Gradient ``(n, p)`` plus the ratios ``r = n/ν`` (dense, entries) for :meth:`hess`.

        ``r`` lives in a shared work buffer: valid until the next call of :meth:`grad`."""
        lay = self.lay
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.divide(self.nD, nuD, out=self.bufs.r[: self.n])
            g = r @ self.XDT
            re = self.e_n / nue if self.has_entries else nue
            if self.has_entries:
                g += self.segsum(re, self.Xe)
            bad = ~np.isfinite(g).all(axis=1)
            if bad.any():  # 0/0 in bins with n = ν = 0 contributes 0
                r[bad] = np.where(self.nD[bad] > 0, r[bad], 0.0)
                g[bad] = r[bad] @ self.XDT
                if self.has_entries:
                    g[bad] += self.segsum(re, self.Xe)[bad]
        g = lay.tvec - g
        g += lay.prec * (y - self.aux_c)
        return g, r, re

    def hess(
        self, r: np.ndarray, re: np.ndarray, nuD: np.ndarray, nue: np.ndarray,
        rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """Hessians ``(p, p, k)`` (toy-last) from the ratios of :meth:`grad`, for all rows or
        for the rows selected by the boolean mask ``rows``."""
        lay = self.lay
        nD, nrow = self.nD, self.n
        PD = lay.PD if lay.PD32 is None else lay.PD32
        with np.errstate(divide="ignore", invalid="ignore"):
            # w = n/ν² (single precision if configured: it only steers the direction)
            w = np.divide(r, nuD, out=self.bufs.w[:nrow], casting="same_kind")
            if rows is not None:
                nrow = int(rows.sum())
                w = np.compress(rows, w, axis=0, out=self.bufs.w2[:nrow])
                nD = nD[rows]
            hf = (w @ PD).astype(np.float64, copy=False)
            we = re / nue if self.has_entries else None
            if self.has_entries:
                hf += self.segsum(we, self.Pe, rows)
            bad = ~np.isfinite(hf).all(axis=1)
            if bad.any():
                wb = np.where(nD[bad] > 0, w[bad], 0.0).astype(PD.dtype)
                hf[bad] = wb @ PD
                if self.has_entries:
                    we = np.where(self.e_n > 0, we, 0.0)
                    hf[bad] += self.segsum(we, self.Pe, rows)[bad]
        h = unpack_symmetric(hf, lay.iu, lay.ju, lay.p)  # (p, p, n)
        idx = np.arange(lay.p)
        h[idx, idx] += lay.prec[:, None]
        return h


def _projected_grad(y: np.ndarray, g: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """Projected gradient: components pushing a variable below its bound are dropped."""
    return np.where((y <= lb) & (g > 0), 0.0, g)


_EPS_ACTIVE = 1e-12


class _State:
    """Iteration state of the still-active rows (global ids in ``active``).

    Besides the point (y, NLL f, ν) it keeps, per row, the last Hessian factor (``L`` toy-last,
    ``scale``), the free set it was formed with, whether it is an exact Hessian (not the shared
    Fisher matrix) and how many chord steps have reused it.
    """

    def __init__(self, ev: _Eval, active, y, f, nuD, nue):
        self.ev, self.active, self.y, self.f, self.nuD, self.nue = ev, active, y, f, nuD, nue
        self.spare = ev.bufs.nu  # ν buffer for candidate points (swapped with nuD on accept)
        k, p = y.shape
        self.L = np.zeros((p, p, k))
        self.scale = np.zeros((p, k))
        self.free = np.zeros((k, p), dtype=bool)
        self.exact = np.zeros(k, dtype=bool)
        self.n_chord = np.zeros(k, dtype=np.int32)

    def keep(self, keep: np.ndarray, *extra: np.ndarray, entries: tuple = (),
             ratios: np.ndarray | None = None) -> list[np.ndarray]:
        """Drop the rows where ``keep`` is False from the state, from the row arrays ``extra``
        and from the sparse-entry arrays ``entries``; returns the filtered arrays in order
        (then the compacted ``ratios`` array, if given — it goes into the ``tmp`` buffer).
        Counts and ν are compacted into work buffers (no allocation)."""
        if keep.all():
            return list(extra) + list(entries) + ([ratios] if ratios is not None else [])
        k = int(keep.sum())
        em = self.ev.entry_mask(keep)
        self.ev = self.ev.compact(keep)
        nu_new = np.compress(keep, self.nuD, axis=0, out=self.spare[:k])
        self.spare, self.nuD = self.nuD, nu_new
        self.active, self.y, self.f = self.active[keep], self.y[keep], self.f[keep]
        self.nue = self.nue[em]
        self.L, self.scale, self.free = self.L[..., keep], self.scale[:, keep], self.free[keep]
        self.exact, self.n_chord = self.exact[keep], self.n_chord[keep]
        out = [e[keep] for e in extra] + [e[em] for e in entries]
        if ratios is not None:
            tmp = self.ev.bufs.tmp
            out.append(ratios[keep] if np.shares_memory(ratios, tmp)
                       else np.compress(keep, ratios, axis=0, out=tmp[:k]))
        return out


#: chord steps (reusing the last Hessian factor) are taken when the decrement estimated with
#: that factor is below this, at most _MAX_CHORD times in a row
_CHORD_THRESHOLD = 1e-6
_MAX_CHORD = 1


def _newton(
    fitter: BatchedFitter, lay: _Layout, data: PreparedData, offset: np.ndarray, y0: np.ndarray,
    lb: np.ndarray, cfg: FitConfig, max_iter: int, step_cap: float | None,
    fisher: np.ndarray | None = None,
) -> dict:
    """Projected Newton with Armijo backtracking for all toys of ``data`` (see module doc).

    Each iteration, per toy: gradient g; if the previous exact Hessian factor (same free set)
    gives a decrement below ``tol`` → converged; below ``_CHORD_THRESHOLD`` → chord step with
    that factor (no new Hessian); otherwise a fresh Hessian (or, in the first iteration, the
    shared ``fisher`` matrix if given). Then a line search along the projection arc.
    """
    n, p = y0.shape
    ev = _Eval.build(lay, data, offset, fitter)
    y = y0.copy()
    status = np.full(n, FitStatus.NOT_RUN, dtype=np.int8)
    n_iter = np.zeros(n, dtype=np.int32)
    dec_out = np.full(n, np.nan)
    g_out = np.zeros((n, p))
    nuD, nue = ev.nu(y)
    f = ev.nll(y, nuD, nue)
    bad_start = ~np.isfinite(f)
    if bad_start.any() and lay.cols[0] == 0:  # only possible with μ < 0 allowed: move μ up
        y[bad_start, 0] = np.maximum(y[bad_start, 0], 0.5 / max(fitter.model.signal_total, 1e-300))
        y[bad_start, 1:] = np.maximum(y[bad_start, 1:], 0.05)
        nuD, nue = ev.nu(y)
        f = ev.nll(y, nuD, nue)
    st = _State(ev, np.arange(n), y.copy(), f.copy(), nuD, nue)
    fin = np.isfinite(f)
    status[~fin] = FitStatus.NON_FINITE
    st.keep(fin)

    def finish(mask: np.ndarray, code: int, dec: np.ndarray, g: np.ndarray) -> None:
        ids = st.active[mask]
        status[ids] = code
        y[ids] = st.y[mask]
        f[ids] = st.f[mask]
        dec_out[ids] = dec[mask]
        g_out[ids] = g[mask]

    for it in range(max_iter):
        if not st.active.size:
            break
        g, r, re = st.ev.grad(st.y, st.nuD, st.nue)
        badg = ~np.all(np.isfinite(g), axis=1)
        if badg.any():
            finish(badg, FitStatus.NON_FINITE, np.full(badg.size, np.nan), g)
            g, re, r = st.keep(~badg, g, entries=(re,), ratios=r)
            if not st.active.size:
                break
        free = ~((st.y <= lb + _EPS_ACTIVE) & (g > 0))
        st.y = np.where(free, st.y, np.maximum(st.y, lb))  # snap held variables onto the bound
        gm = np.where(free, g, 0.0)
        k = st.active.size
        d = np.empty((k, p))
        dec = np.empty(k)
        need_h = np.ones(k, dtype=bool)
        same = st.exact & np.all(free == st.free, axis=1)
        if same.any():  # decrement with the previous exact factor: convergence test / chord step
            d_c, dec_c = reuse_direction(st.L, st.scale, gm)
            conv = same & (dec_c < cfg.tol)
            if conv.any():
                finish(conv, FitStatus.CONVERGED, dec_c, g)
                g, gm, free, d, dec, d_c, dec_c, same, re, r = st.keep(
                    ~conv, g, gm, free, d, dec, d_c, dec_c, same, entries=(re,), ratios=r
                )
                if not st.active.size:
                    break
            chord = same & (dec_c < _CHORD_THRESHOLD) & (st.n_chord < _MAX_CHORD)
            d[chord], dec[chord] = d_c[chord], dec_c[chord]
            need_h = ~chord
        st.n_chord[~need_h] += 1
        use_fisher = fisher is not None and it == 0
        if need_h.any():
            kh = int(need_h.sum())
            if use_fisher:
                h = np.repeat(fisher[:, :, None], kh, axis=2)
            else:
                h = st.ev.hess(r, re, st.nuD, st.nue, rows=None if kh == need_h.size else need_h)
            d_n, dec_n, L_n, s_n = newton_direction(h, gm[need_h], free[need_h])
            d[need_h], dec[need_h] = d_n, dec_n
            st.L[..., need_h], st.scale[:, need_h] = L_n, s_n
            st.exact[need_h] = not use_fisher
            st.n_chord[need_h] = 0
            conv = need_h & (dec < cfg.tol) & (not use_fisher)
            if conv.any():
                finish(conv, FitStatus.CONVERGED, dec, g)
                g, free, d, dec = st.keep(~conv, g, free, d, dec)
                if not st.active.size:
                    break
        st.free = free
        if step_cap is not None:
            d = _cap_step(d, st.y, step_cap)
        # ---- line search along the projection arc (candidate ν goes into the spare buffer)
        cand = np.maximum(st.y + d, lb)
        nuDc, nuec = st.ev.nu(cand, out=st.spare[: st.active.size])
        fc = st.ev.nll(cand, nuDc, nuec)
        ok = _armijo(fc, st.f, g, cand - st.y, dec, cfg)
        if not ok.all():
            fail = ~ok
            sub = st.ev.subset(fail)
            ids = np.flatnonzero(fail)
            entry_ids = np.flatnonzero(st.ev.entry_mask(fail))

            def evaluate(c_s):
                nu_s = sub.nu(c_s)
                return sub.nll(c_s, *nu_s), nu_s

            def accept(ok_s, c_s, f_c, nu_s):
                rows = ids[ok_s]
                cand[rows], fc[rows], nuDc[rows] = c_s[ok_s], f_c[ok_s], nu_s[0][ok_s]
                if sub.has_entries:
                    e_ok = sub.entry_mask(ok_s)
                    nuec[entry_ids[e_ok]] = nu_s[1][e_ok]
                ok[rows] = True

            _backtrack(st.y[fail], d[fail], g[fail], st.f[fail], dec[fail], lb, cfg, evaluate, accept)
        if not ok.all():
            _end_failed_search(ok, dec, g, finish)
            n_iter[st.active[~ok]] += 1
            cand, fc, nuDc, g, nuec = st.keep(ok, cand, fc, nuDc, g, entries=(nuec,))
        st.spare = st.nuD  # the old state's ν array (≥ k rows) holds the next candidate
        st.y, st.f, st.nuD, st.nue = cand, fc, nuDc, nuec
        n_iter[st.active] += 1
    if st.active.size:
        g, _, _ = st.ev.grad(st.y, st.nuD, st.nue)
        finish(np.ones(st.active.size, dtype=bool), FitStatus.MAX_ITER,
               np.full(st.active.size, np.nan), g)
    at_bound = y <= lb + _EPS_ACTIVE
    gp = _projected_grad(np.where(at_bound, lb, y), g_out, lb)
    return {
        "y": np.maximum(y, lb), "nll": f, "status": status, "n_iter": n_iter,
        "grad_norm": np.sqrt(np.einsum("ti,ti->t", gp, gp)), "dec": dec_out,
        "at_bound": at_bound,
    }


def lower_bounds(n_cols: int, mu_fixed: float | None, mu_lower: float | None) -> np.ndarray:
    """Lower bounds of the fitted parameters (μ first when free, then the free θ): θ ≥ 0 (rates
    cannot be negative); μ ≥ ``mu_lower`` (``None``: unbounded, e.g. for q_μ without the bound)."""
    lb = np.zeros(n_cols)
    if mu_fixed is None:
        lb[0] = -np.inf if mu_lower is None else float(mu_lower)
    return lb


def fittable_toys(res: FitResult, valid: np.ndarray):
    """Indices of the toys to fit one at a time (reference fits); toys with non-finite auxiliary
    values are marked NON_FINITE in ``res`` (kept, never fitted)."""
    for t in range(valid.size):
        if valid[t]:
            yield t
        else:
            res.status[t] = FitStatus.NON_FINITE
            res.first_failure[t] = FitStatus.NON_FINITE


def _cap_step(d: np.ndarray, y: np.ndarray, step_cap: float) -> np.ndarray:
    """Retry strategy: scale each row's step so that no parameter moves by more than
    ``step_cap · max(|y|, 1)``."""
    lim = step_cap * np.maximum(np.abs(y), 1.0)
    ad = np.abs(d)
    fac = np.min(np.where(ad > lim, lim / np.where(ad > lim, ad, 1.0), 1.0), axis=1)
    return d * fac[:, None]


def _backtrack(y, d, g, f, dec, lb, cfg: FitConfig, evaluate, accept) -> None:
    """Backtracking along the projection arc for the rows whose full step failed :func:`_armijo`.

    Candidates are ``max(y + t d, lb)`` with t = 1/2, 1/4, … (at most ``cfg.max_backtrack``
    halvings). ``evaluate(c) -> (nll, payload)`` computes the NLL (and whatever the fitter keeps,
    e.g. the expected counts) at the candidates; ``accept(ok, c, nll, payload)`` takes the rows
    (mask ``ok``) that passed at this t. Shared by the binned and the unbinned fitter."""
    pending = np.ones(y.shape[0], dtype=bool)
    t = 1.0
    for _ in range(cfg.max_backtrack):
        t *= 0.5
        c = np.maximum(y + t * d, lb)
        f_c, payload = evaluate(c)
        ok = pending & _armijo(f_c, f, g, c - y, dec, cfg)
        if ok.any():
            accept(ok, c, f_c, payload)
            pending &= ~ok
        if not pending.any():
            break


def _end_failed_search(ok: np.ndarray, dec: np.ndarray, g: np.ndarray, finish) -> None:
    """Rows (``~ok``) where no step decreased the NLL: at the rounding-noise level (Newton
    decrement < 1e-6) the point is the minimum (CONVERGED), otherwise LINE_SEARCH."""
    noise = ~ok & (dec < 1e-6)
    if noise.any():
        finish(noise, FitStatus.CONVERGED, dec, g)
    hard = ~ok & ~noise
    if hard.any():
        finish(hard, FitStatus.LINE_SEARCH, dec, g)


def _armijo(fc, f0, g, step, dec, cfg: FitConfig) -> np.ndarray:
    """Sufficient decrease along the projection arc (or no increase below the noise level)."""
    slope = np.einsum("ti,ti->t", g, step)
    ok = np.isfinite(fc) & (fc <= f0 + cfg.armijo * slope)
    ok |= np.isfinite(fc) & (dec < 1e-6) & (fc <= f0 + 1e-12 * np.maximum(1.0, np.abs(f0)))
    return ok


def fit_batch(
    model: BinnedModel,
    counts: np.ndarray,
    aux: np.ndarray | None = None,
    mu_fixed: float | None = None,
    init: np.ndarray | None = None,
    mu_lower: float | None = 0.0,
    config: FitConfig | None = None,
) -> FitResult:
    """Convenience wrapper: build a :class:`BatchedFitter` and fit ``counts`` ``(n, n_bins)``."""
    return BatchedFitter(model, config).fit(counts, aux, mu_fixed=mu_fixed, init=init, mu_lower=mu_lower)
