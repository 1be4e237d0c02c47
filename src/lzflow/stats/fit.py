"""Batched maximum-likelihood fits of the binned model: the binned side of the Newton engine.

The NLL of :mod:`lzflow.stats.model` is linear-in-parameters Poisson + quadratic constraints,
hence convex, with the exact derivatives (x_i = the template values of bin i for the free
parameters, ν = X y + c, y the free parameters, c the fixed part)::

    g = Σ_i x_i (1 − n_i/ν_i) + P (y − a)
    H = Σ_i (n_i/ν_i²) x_i x_iᵀ + P,           P = diag(1/r_b²) (0 for μ)

:class:`BatchedFitter` prepares toys in its dense/sparse representation
(:mod:`lzflow.stats.binned_nll`), hands their NLL, gradient and Hessians
(:class:`~lzflow.stats.binned_nll.BinnedRows`) to the projected-Newton engine
(:mod:`lzflow.stats.newton`: active set at the bounds, Jacobi-scaled modified Cholesky, Armijo
backtracking along the projection arc, Newton-decrement convergence, retries, blocks over
threads) and, for the iminuit fallback and reference fits, one toy's NLL and gradient as
closures (:mod:`lzflow.stats.minuit`). Data impossible under every allowed parameter value
(counts in bins the model cannot fill) get status INFEASIBLE and NLL = +inf.

A model with shape systematics (K > 0) is fitted by the same engine with the rows of
:mod:`lzflow.stats.morph_nll` (ν non-linear in α: exact gradient and Hessian of the code-4p
morphing); every α is fitted in every fit, within |α| ≤ 5 (pyhf's bounds), and the NLL is +inf
outside the physical region ν ≥ 0 in every bin. With K = 0 nothing of that path runs.
"""

from __future__ import annotations

import numpy as np

from ._threads import available_cores
from .binned_nll import BinnedRows, PreparedData, make_layout
from .fitresult import ALPHA_BOUND, FitConfig, FitResult
from .minuit import MigradProblem, fit_toys_minuit
from .model import BinnedModel
from .mcstat import McStatLayout, McStatRows, mcstat_information, mcstat_problem
from .mcstat_morph import GammaMorphLayout, GammaMorphRows, gamma_morph_information, gamma_morph_problem
from .logmorph_nll import LogMorphLayout, LogMorphRows, log_morph_problem, sub_block
from .morph_nll import MorphLayout, MorphRows, morph_problem
from .newton import fit_in_blocks

__all__ = ["BatchedFitter", "fit_batch", "fit_minuit"]


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
        self._free_bkg = model.free_bkg
        K = model.n_shape
        # auxiliary observables that must be finite: the floating backgrounds' (and every α's)
        self._aux_used = np.r_[model.free_bkg, model.n_bkg + np.arange(K)].astype(int) if K else model.free_bkg
        # template MC statistics (lzflow.stats.mcstat): γ profiled in the rows, aux a_γ after a_θ
        self._mcstat = {mu_free: McStatLayout(model, mu_free) for mu_free in (True, False)} \
            if model.n_gamma and not K else None
        # γ with shape systematics (lzflow.stats.mcstat_morph): dense rows, γ profiled
        self._gmorph = {mu_free: GammaMorphLayout(model, None if mu_free else 1.0) for mu_free in (True, False)} \
            if model.n_gamma and K else None
        if self._gmorph:
            self._aux_used = np.r_[self._aux_used, self._gmorph[True].aux_gamma].astype(int)
        if self._mcstat:
            self._aux_used = np.r_[self._aux_used, self._mcstat[True].aux_gamma].astype(int)
        self._fixed_template = model.backgrounds[np.flatnonzero(~model.constrained)].sum(axis=0)
        self._templates = np.vstack([model.signal[None, :], model.backgrounds])  # (n_par, n_bins)
        self._layouts = {
            mu_free: make_layout(self._templates, model.fit_columns(mu_free), self.dense_bins,
                                 self.sparse_bins, model.constraint_precision,
                                 self.config.hessian_float32)
            for mu_free in (True, False)
        } if not K else None
        self._log = bool(K) and model.interpolation != "code4p"
        if self._log:
            self._morph = {mu_free: LogMorphLayout(model, None if mu_free else 1.0, self.dense_bins, self.sparse_bins,
                                                   self.config.hessian_float32)
                           for mu_free in (True, False)}
        else:
            self._morph = {
                mu_free: MorphLayout(model, None if mu_free else 1.0, self.dense_bins, self.sparse_bins,
                                     self.config.hessian_float32)
                for mu_free in (True, False)
            } if K else None

    @property
    def toys_independent(self) -> bool:
        """True when a toy's fits do not depend on the toys fitted with it, bit for bit: the
        multiplicatively morphed rows (:mod:`lzflow.stats.logmorph_nll`) without template-statistics γ,
        whose compiled loops run toy by toy and whose line-search subsets evaluate only their pending
        rows (tested across block sizes, sub-blocks and threads in ``tests/unit/test_logmorph.py``,
        and for partial canonical blocks in ``tests/unit/test_stats_toys.py``). The rate-only and
        additive-morphing rows form products over a block's toys with BLAS, whose last bits can depend
        on the block: there :func:`lzflow.stats.toys.run_toys` fits whole canonical blocks."""
        return self._log and self._gmorph is None

    # ------------------------------------------------------------------ data
    def prepare(self, counts: np.ndarray, aux: np.ndarray | None = None) -> PreparedData:
        """Convert dense counts ``(n, n_bins)`` and aux ``(n, n_aux)`` (default: nominal).

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
        valid &= np.isfinite(aux[:, self._aux_used]).all(axis=1)
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
        valid = np.isfinite(aux[:, self._aux_used]).all(axis=1)
        e_n = np.asarray(e_n, dtype=np.float64)
        total = nD.sum(axis=1) + np.bincount(e_toy, weights=e_n, minlength=n)
        return PreparedData(n=n, nD=nD, e_toy=np.asarray(e_toy), e_bin=np.asarray(e_bin),
                            e_n=e_n, aux=aux, valid=valid, total=total)

    def _check_aux(self, aux: np.ndarray | None, n: int) -> np.ndarray:
        m = self.model
        if aux is None:
            return np.ones((n, m.n_aux)) if not m.n_shape else \
                np.tile(np.r_[m.nominal_nuisance(), np.ones(m.n_gamma)], (n, 1))
        aux = np.asarray(aux, dtype=np.float64)
        if aux.ndim == 1:
            aux = np.broadcast_to(aux, (n, aux.size))
        if aux.shape != (n, m.n_aux):
            raise ValueError(f"aux must have shape ({n}, {m.n_aux}), got {aux.shape}")
        return aux

    def expected_information(self, params: np.ndarray, mu_free: bool = True) -> np.ndarray:
        """Expected (Fisher) information of the free parameters at full parameter vector
        ``params``: ``Σ_i x_i x_iᵀ / ν_i + P`` (bins with ν_i > 0), the expectation of the
        Hessian for data generated at ``params``."""
        if self._gmorph:
            return gamma_morph_information(self.model, self._gmorph[mu_free], np.asarray(params, dtype=np.float64))
        if self._morph is not None:
            return self._morph_information(np.asarray(params, dtype=np.float64), mu_free)
        if self._mcstat:
            return mcstat_information(self.model, self._mcstat[mu_free], np.asarray(params, dtype=np.float64))
        lay = self._layouts[mu_free]
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
        if self._morph is not None:
            out[self._morph[True].cols[1:]] = -np.linalg.solve(info[1:, 1:], info[1:, 0])
            return out
        if info.shape[0] > 1:
            itt = info[1:, 1:]
            itm = info[1:, 0]
            out[1 + self._free_bkg] = -np.linalg.solve(itt, itm)
        return out

    def default_init(self, data: PreparedData, mu_fixed: float | None = None) -> np.ndarray:
        """Start point: θ = aux clipped to [0.05, ∞) (1 for fixed backgrounds); μ from the
        excess over the background (at least 0.5 signal events, so that signal-only bins have
        ν > 0)."""
        m = self.model
        init = np.ones((data.n, m.n_par))
        if m.n_shape:  # α from its auxiliary observable (within the bounds ±5)
            init[:, 1 + m.n_bkg :] = np.clip(data.aux[:, m.n_bkg : m.n_bkg + m.n_shape], -ALPHA_BOUND, ALPHA_BOUND)
        th = np.clip(data.aux[:, : m.n_bkg], 0.05, None)
        init[:, 1 : 1 + m.n_bkg] = np.where(m.constrained, th, 1.0)
        if mu_fixed is not None:
            init[:, 0] = mu_fixed
        elif m.signal_is_empty:
            init[:, 0] = 0.0
        else:
            stot = m.signal_total
            excess = (data.total - init[:, 1 : 1 + m.n_bkg] @ m.nominal_counts) / stot
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
        block = max(1, int(self.config.block_size))
        return fit_in_blocks(self, data, init, mu_fixed, mu_lower, fisher_at,
                             sub_block(self.model, block) if self._log else block)

    # ------------------------------------------------------------------ problems
    def free_columns(self, mu_fixed: float | None) -> np.ndarray:
        """Indices into the full parameter vector of the fitted parameters."""
        if self._morph is not None:
            return self._morph[mu_fixed is None].cols
        return self._layouts[mu_fixed is None].cols

    def _offset(self, mu_fixed: float | None) -> np.ndarray:
        """``(n_bins,)`` fixed part of ν: fixed backgrounds (+ μ s when μ is fixed)."""
        offset = self._fixed_template.copy()
        if mu_fixed is not None:
            offset = offset + mu_fixed * self.model.signal
        return offset

    def newton_rows(self, data: PreparedData, mu_fixed: float | None) -> BinnedRows:
        """NLL, gradient and Hessians of the toys of ``data`` for the Newton engine."""
        if self._gmorph:
            return GammaMorphRows.build(self._gmorph[mu_fixed is None].at(mu_fixed), data, self.dense_bins,
                                        self.sparse_bins)
        if self._log:
            return LogMorphRows.build(self._morph[mu_fixed is None].at(mu_fixed), data)
        if self._morph is not None:
            return MorphRows.build(self._morph[mu_fixed is None].at(mu_fixed), data)
        if self._mcstat:
            return McStatRows.build(self._mcstat[mu_fixed is None].at(mu_fixed), data, self.dense_bins, self.sparse_bins)
        return BinnedRows.build(self._layouts[mu_fixed is None], data, self._offset(mu_fixed),
                                self.dense_bins, self.sparse_bins)

    def start_floor(self, mu_fixed: float | None) -> np.ndarray | None:
        """Values that a start with a non-finite NLL is raised to: μ to 0.5 signal events, θ to
        0.05 (only possible with μ < 0 allowed; none for conditional fits)."""
        if mu_fixed is not None:
            return None
        if self._morph is not None:
            n_theta = self._morph[True].nc - 1
            return np.r_[0.5 / max(self.model.signal_total, 1e-300), np.full(n_theta, 0.05),
                         np.full(self.model.n_shape, -np.inf)]
        lay = self._layouts[True]
        return np.r_[0.5 / max(self.model.signal_total, 1e-300), np.full(lay.p - 1, 0.05)]

    def minuit_problem(self, data: PreparedData, t: int, mu_fixed: float | None) -> MigradProblem:
        """NLL and gradient of toy ``t`` over the free parameters, for Migrad (bins with
        n_i > 0 only in the log term; the others enter through the linear term Σ_i ν_i)."""
        if self._morph is not None:
            counts = np.zeros(self.model.n_bins)
            counts[self.dense_bins] = data.nD[t]
            sel = data.e_toy == t
            counts[self.sparse_bins[data.e_bin[sel]]] = data.e_n[sel]
            if self._gmorph:
                return MigradProblem(*gamma_morph_problem(self._gmorph[mu_fixed is None].at(mu_fixed), counts, data.aux[t]))
            problem = log_morph_problem if self._log else morph_problem
            return MigradProblem(*problem(self.model, self._morph[mu_fixed is None].at(mu_fixed), counts, data.aux[t]))
        if self._mcstat:
            counts = np.zeros(self.model.n_bins)
            counts[self.dense_bins] = data.nD[t]
            sel = data.e_toy == t
            counts[self.sparse_bins[data.e_bin[sel]]] = data.e_n[sel]
            return MigradProblem(*mcstat_problem(self._mcstat[mu_fixed is None].at(mu_fixed), counts, data.aux[t]))
        cols = self.free_columns(mu_fixed)
        offset = self._offset(mu_fixed)
        prec = self.model.constraint_precision[cols]
        X = self._templates[cols].T  # (n_bins, p)
        nD = data.nD[t]
        posD = np.flatnonzero(nD > 0)
        sel = data.e_toy == t
        b = np.concatenate([self.dense_bins[posD], self.sparse_bins[data.e_bin[sel]]])
        nn = np.concatenate([nD[posD], data.e_n[sel]])
        Xn, cn, tvec, const = X[b], offset[b], X.sum(axis=0), float(offset.sum())
        a = np.zeros(cols.size)
        bk = cols > 0
        a[bk] = data.aux[t, cols[bk] - 1]

        def nll(y: np.ndarray) -> float:
            nu = Xn @ y + cn
            if np.any(nu <= 0):
                return 1e300
            return float(y @ tvec + const - nn @ np.log(nu) + 0.5 * prec @ (y - a) ** 2)

        def grad(y: np.ndarray) -> np.ndarray:
            nu = Xn @ y + cn
            return tvec - (nn / nu) @ Xn + prec * (y - a)

        return MigradProblem(nll, grad)


    def _morph_information(self, params: np.ndarray, mu_free: bool) -> np.ndarray:
        """Expected information of a morphed model: Σ_i J_i J_iᵀ/ν_i + P (bins with ν_i > 0; the
        second-derivative terms have expectation 0)."""
        m = self.model
        lay = self._morph[mu_free]
        n1 = 1 + m.n_bkg
        J = m.morph.jacobian(params[:n1], params[n1:])  # (S + K, n_bins)
        X = J[np.r_[lay.cfree, n1 + np.arange(m.n_shape)]].T
        nu = m.expected(params[0], params[1:])
        pos = nu > 0
        Xp = X[pos]
        return (Xp / nu[pos, None]).T @ Xp + np.diag(lay.prec)


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


def fit_minuit(model: BinnedModel, counts: np.ndarray, aux: np.ndarray | None = None,
               mu_fixed: float | None = None, init: np.ndarray | None = None,
               mu_lower: float | None = 0.0, tol: float = 1e-6,
               extra_starts: tuple[str, ...] = ()) -> FitResult:
    """iminuit reference path: fit each row of ``counts`` ``(n, n_bins)`` separately (Migrad,
    strategy 1 then 2). Same conventions and outputs as :func:`fit_batch`. ``extra_starts``: Migrad
    also from these further starts (:func:`lzflow.stats.minuit.fit_toys_minuit`), e.g.
    ``FitConfig().extra_starts`` for μ-free and ``FitConfig().extra_starts_fixed`` for fixed-μ fits:
    the batched fits' own search, done with Migrad."""
    fitter = BatchedFitter(model, FitConfig(minuit_fallback=False))
    data = fitter.prepare(counts, aux)
    return fit_toys_minuit(fitter, data, mu_fixed=mu_fixed, init=init, mu_lower=mu_lower, tol=tol,
                           extra_starts=extra_starts)
