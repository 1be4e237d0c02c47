"""Fits of the unbinned extended likelihood (:mod:`lzflow.stats.unbinned_model`), batched over toys.

Fits
----
Every event is a "bin" with count 1 of the binned fitter (:mod:`lzflow.stats.fit`): with
``x_e = (N_j f_j(x_e))_j`` over the free parameters y, ``ν_e = x_eᵀ y + c_e`` (c_e the fixed
part) and ``t = (N_j)_j``::

    g = t − Σ_e x_e / ν_e + P (y − a),        H = Σ_e x_e x_eᵀ / ν_e² + P,    P = diag(1/r_b²)

The per-event template values ``N_s f_s(x_e)`` are computed once per toy into an array
``(n_toys, 1 + n_bkg, E_max)`` padded with zeros (padding events get c_e = 1, so they contribute
ln 1 = 0 and nothing to g or H — no mask in the arithmetic). Toys are fitted in sub-blocks
whose event arrays stay ≲ 16 MiB (:func:`sub_block_size`, ≈ 56 toys of 3100 events): larger
arrays are fresh ``mmap`` allocations whose page faults cost more than the fits. The fitter hands
these toys (:class:`EventRows`) to the projected-Newton engine of the binned fitter
(:mod:`lzflow.stats.newton`: active set at the bounds, Jacobi-scaled modified Cholesky
vectorised over toys, Armijo backtracking along the projection arc, convergence on the Newton
decrement λ² < ``tol`` tested first with the previous Hessian factor, an optional shared
first-step matrix — the expected information at the generation point, taken from the
full-resolution binned model —, converged toys compacted out). Failures are retried from the
nominal start with a step cap, then fitted one by one with iminuit (:func:`fit_minuit_events`);
statuses, strategies and first-failure causes are those of
:class:`lzflow.stats.fitresult.FitResult`. Events that no allowed parameter value can explain
(all densities 0 there) make the toy INFEASIBLE (NLL = +inf, hence q = NaN when both fits are
infeasible), as in the binned fitter: with the ROOT clipping (floor 0) this happens at orders
≥ 2 where every template's interpolant undershoots below 0 inside a populated truth bin (on the
40 GeV workspace ≈ 3e-5 – 1e-3 of the events, i.e. 6 – 60 % of the toys); ``floor > 0`` avoids
it.
"""

from __future__ import annotations

import numpy as np

from ._threads import available_cores
from .fit import BatchedFitter
from .fitresult import FitConfig, FitResult
from .minuit import MigradProblem, fit_toys_minuit
from .newton import fit_in_blocks
from .unbinned_model import EventData, EventToys, UnbinnedModel

__all__ = ["EventRows", "UnbinnedFitter", "fit_minuit_events", "sub_block_size"]

#: target size of the per-block event arrays: glibc serves allocations below its (dynamic, at
#: most 32 MiB) mmap threshold from the heap and reuses them, larger ones are fresh mmaps whose
#: page faults cost more than the fits themselves
_SUB_BLOCK_BYTES = 16 << 20


def sub_block_size(n_par: int, e_max: int) -> int:
    """Toys fitted together so that an ``(n, n_par, E_max)`` float64 array stays ≲ 16 MiB."""
    return max(4, int(_SUB_BLOCK_BYTES // max(8 * n_par * max(e_max, 1), 1)))


# ----------------------------------------------------------------------------- the problem
class _Work:
    """Work arrays of one block, allocated once and sliced to the active rows (fresh multi-MB
    temporaries in every iteration would cost more in page faults than the arithmetic)."""

    def __init__(self, shape: tuple[int, int, int]):
        self.shape = shape
        self.xs = np.empty(shape)  # X/ν for the Hessian
        self.ping: list[np.ndarray | None] = [None, None]  # targets for compacted X
        self.slot = -1  # which ping buffer holds the current X (-1: none)

    def compact(self, keep: np.ndarray, X: np.ndarray) -> np.ndarray:
        slot = 1 if self.slot == 0 else 0
        if self.ping[slot] is None:
            self.ping[slot] = np.empty(self.shape)
        idx = np.flatnonzero(keep)
        # take with mode="clip": the default mode="raise" buffers ``out`` (a full extra copy)
        out = np.take(X, idx, axis=0, out=self.ping[slot][: idx.size], mode="clip")
        self.slot = slot
        return out


class EventRows:
    """One fit type on a set of toys: ν = X y + c per toy and event, NLL constants (a
    :class:`lzflow.stats.newton.NewtonRows`). ν at the current and at the trial points, and the
    ratios 1/ν of the last gradient, are kept inside."""

    def __init__(self, X: np.ndarray, c: np.ndarray, tvec: np.ndarray, const: float,
                 prec: np.ndarray, aux_c: np.ndarray):
        self.X = X  # (n, p, E) free-parameter event values (C-contiguous)
        self.c = c  # (n, E) fixed part of ν; 1 in the padding
        self.tvec = tvec  # (p,) Σ_s ν_s coefficients of the free parameters
        self.const = const  # Σ_s ν_s of the fixed part
        self.prec = prec  # (p,) constraint precisions (0 for μ)
        self.aux_c = aux_c  # (n, p) constraint centres (0 for μ)
        self.work: _Work | None = None
        self.nu_now: np.ndarray | None = None  # (n, E) ν at the current point
        self.r: np.ndarray | None = None  # (n, E) 1/ν of the last gradient
        self.trial_nu: np.ndarray | None = None  # (n, E) ν at the trial points
        self.parent_rows: np.ndarray | None = None  # of a subset: its rows in the parent

    def infeasible(self) -> np.ndarray:
        """Toys with a real event where every free value and the fixed part vanish (padding
        events have c = 1)."""
        dead = ~(self.X > 0).any(axis=1) & ~(self.c > 0)
        return dead.any(axis=1)

    def subset(self, keep: np.ndarray) -> "EventRows":
        """Rows where ``keep`` is True (a fresh, small problem: no work buffers, no ν)."""
        sub = EventRows(np.compress(keep, self.X, axis=0), np.compress(keep, self.c, axis=0),
                        self.tvec, self.const, self.prec, self.aux_c[keep])
        sub.parent_rows = np.flatnonzero(keep)
        return sub

    def compact(self, keep: np.ndarray, ratios: bool) -> None:
        """Drop the rows where ``keep`` is False; X moves into a work buffer (no allocation).
        While trial points are held, the current ν is stale (replaced on :meth:`advance`)."""
        if self.work is None:
            self.work = _Work(self.X.shape)
        self.X = self.work.compact(keep, self.X)
        self.c = np.compress(keep, self.c, axis=0)
        self.aux_c = self.aux_c[keep]
        if self.trial_nu is not None:
            self.trial_nu, self.nu_now = self.trial_nu[keep], None
        else:
            self.nu_now = self.nu_now[keep]
        if ratios:
            self.r = self.r[keep]

    # ------------------------------------------------------------------ NewtonRows
    def start(self, y: np.ndarray) -> np.ndarray:
        self.nu_now = self.nu(y)
        return self.nll(y, self.nu_now)

    def grad(self, y: np.ndarray) -> np.ndarray:
        g, self.r = self.gradient(y, self.nu_now)
        return g

    def hess(self, rows: np.ndarray | None) -> np.ndarray:
        return self.hessian(self.r, rows)

    def trial(self, y: np.ndarray) -> np.ndarray:
        self.trial_nu = self.nu(y)
        return self.nll(y, self.trial_nu)

    def take_trial(self, sub: "EventRows", ok: np.ndarray) -> None:
        self.trial_nu[sub.parent_rows[ok]] = sub.trial_nu[ok]

    def advance(self) -> None:
        self.nu_now, self.trial_nu = self.trial_nu, None

    # ------------------------------------------------------------------ maths
    def nu(self, y: np.ndarray) -> np.ndarray:
        return np.matmul(y[:, None, :], self.X)[:, 0, :] + self.c

    def nll(self, y: np.ndarray, nu: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(nu).sum(axis=1)
        logs = np.where(np.isnan(logs), -np.inf, logs)  # ν < 0 somewhere: impossible
        cons = 0.5 * (((y - self.aux_c) ** 2) @ self.prec)
        return y @ self.tvec + self.const - logs + cons

    def gradient(self, y: np.ndarray, nu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient ``(n, p)`` and the ratios ``1/ν`` ``(n, E)`` (for :meth:`hessian`)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            r = 1.0 / nu
        g = self.tvec - np.matmul(self.X, r[:, :, None])[:, :, 0]
        g += self.prec * (y - self.aux_c)
        return g, r

    def hessian(self, r: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Hessians ``(p, p, k)`` (toy-last) from the ratios ``1/ν`` of :meth:`gradient`, for all
        rows or the rows of the boolean mask ``rows``: ``Σ_e (x_e/ν_e)(x_e/ν_e)ᵀ + P``."""
        X = self.X if rows is None else self.X[rows]
        if rows is not None:
            r = r[rows]
        if self.work is None:
            self.work = _Work(self.X.shape)
        xs = np.multiply(X, r[:, None, :], out=self.work.xs[: X.shape[0]])
        h = np.matmul(xs, xs.transpose(0, 2, 1))
        idx = np.arange(h.shape[1])
        h[:, idx, idx] += self.prec
        return np.ascontiguousarray(h.transpose(1, 2, 0))


# ----------------------------------------------------------------------------- the fitter
class UnbinnedFitter:
    """Vectorised projected-Newton fitter of the unbinned NLL (see the module docstring).

    ``config`` is the binned fitter's :class:`FitConfig` (tol, max_iter, max_backtrack, armijo,
    block_size, retry, minuit_fallback, n_threads; the dense/sparse and float32 settings do not
    apply). ``binned_fitter``: the binned fitter of the full-resolution truth model (generation
    point, profile slope, expected information).
    """

    def __init__(self, model: UnbinnedModel, config: FitConfig | None = None):
        self.model = model
        self.config = config or FitConfig()
        nt = self.config.n_threads
        self.n_threads = available_cores() if nt is None else max(1, int(nt))
        self.binned_fitter = BatchedFitter(model.truth, FitConfig(n_threads=1))
        self._prec = model.truth.constraint_precision
        self._fixed_cols = (1 + np.flatnonzero(~model.constrained)).astype(int)
        self._cols = {mu_free: model.truth.fit_columns(mu_free) for mu_free in (True, False)}

    # ------------------------------------------------------------------ data
    def prepare(self, toys: EventToys) -> EventData:
        """Per-event template values of every toy, padded to ``(n, n_par, E_max)``."""
        m = self.model
        n = toys.n
        ne = toys.n_events
        emax = int(ne.max()) if n else 0
        vals = m.event_values(toys.x, toys.y)  # (E, P)
        V = np.zeros((n, m.n_par, emax))
        toy = np.repeat(np.arange(n), ne)
        pos = np.arange(toys.x.size) - toys.offsets[:-1][toy]
        V.transpose(0, 2, 1)[toy, pos] = vals
        pad = np.arange(emax)[None, :] >= ne[:, None]
        aux = np.asarray(toys.aux, dtype=np.float64)
        valid = np.isfinite(aux[:, m.free_bkg]).all(axis=1)
        return EventData(V, pad, ne.astype(np.float64), aux, valid)

    def expected_information(self, params: np.ndarray, mu_free: bool = True) -> np.ndarray:
        """Expected information at ``params`` of the full-resolution binned model (the truth),
        used as the shared first-step matrix."""
        return self.binned_fitter.expected_information(params, mu_free)

    def default_init(self, data: EventData, mu_fixed: float | None = None) -> np.ndarray:
        """θ = aux clipped to [0.05, ∞) (1 if fixed); μ from the excess over the background
        (at least 0.5 signal events)."""
        m = self.model
        init = np.ones((data.n, m.n_par))
        init[:, 1:] = np.where(m.constrained, np.clip(data.aux, 0.05, None), 1.0)
        stot = m.totals[0]
        if mu_fixed is not None:
            init[:, 0] = mu_fixed
        elif not stot > 0:
            init[:, 0] = 0.0
        else:
            excess = (data.n_events - init[:, 1:] @ m.totals[1:]) / stot
            init[:, 0] = np.maximum(excess, 0.5 / stot)
        return init

    # ------------------------------------------------------------------ problems
    def free_columns(self, mu_fixed: float | None) -> np.ndarray:
        """Indices into the full parameter vector of the fitted parameters."""
        return self._cols[mu_fixed is None]

    def newton_rows(self, data: EventData, mu_fixed: float | None) -> EventRows:
        """ν = X y + c of the toys of ``data`` for the free parameters, for the Newton engine."""
        cols = self.free_columns(mu_fixed)
        V, tot = data.V, self.model.totals
        if cols.size == V.shape[1]:
            X = V
        else:
            X = np.ascontiguousarray(V[:, cols, :])
        fixed = self._fixed_cols
        c = np.where(data.pad, 1.0, 0.0)
        const = float(tot[fixed].sum())
        if fixed.size:
            c += V[:, fixed, :].sum(axis=1)
        if mu_fixed is not None:
            c += mu_fixed * V[:, 0, :]
            const += mu_fixed * tot[0]
        aux_c = np.zeros((data.n, cols.size))
        bk = cols > 0
        aux_c[:, bk] = data.aux[:, cols[bk] - 1]
        return EventRows(X, c, tot[cols].copy(), const, self._prec[cols], aux_c)

    def start_floor(self, mu_fixed: float | None) -> np.ndarray:
        """Values that a start with ν ≤ 0 at some event is raised to: θ to 0.05, μ to 0.5 signal
        events."""
        tot0 = self.model.totals[0]
        mu_start = 0.5 / tot0 if tot0 > 0 else 0.0
        return np.where(self._prec[self.free_columns(mu_fixed)] > 0, 0.05, mu_start)

    def minuit_problem(self, data: EventData, t: int, mu_fixed: float | None) -> MigradProblem | None:
        """NLL and gradient of toy ``t`` for Migrad; ``None`` if an event no parameter value can
        explain."""
        prob = self.newton_rows(data.subset(np.array([t])), mu_fixed)
        ne = int(data.n_events[t])
        X = prob.X[0, :, :ne]
        c = prob.c[0, :ne]
        a = prob.aux_c[0]
        if np.any(~(X > 0).any(axis=0) & ~(c > 0)):
            return None

        def nll(y: np.ndarray) -> float:
            nu = y @ X + c
            if np.any(nu <= 0):
                return 1e300
            return float(y @ prob.tvec + prob.const - np.log(nu).sum()
                         + 0.5 * prob.prec @ (y - a) ** 2)

        def grad(y: np.ndarray) -> np.ndarray:
            nu = y @ X + c
            with np.errstate(divide="ignore", invalid="ignore"):
                return prob.tvec - X @ (1.0 / nu) + prob.prec * (y - a)

        return MigradProblem(nll, grad)

    # ------------------------------------------------------------------ fits
    def fit(self, data: EventData, mu_fixed: float | None = None,
            init: np.ndarray | None = None, mu_lower: float | None = 0.0,
            fisher_at: np.ndarray | None = None) -> FitResult:
        """Fit every toy; μ free (bounded below by ``mu_lower``, ``None`` = unbounded) or fixed
        at ``mu_fixed``. ``fisher_at``: full parameter vector whose expected information makes
        the first Newton step (see :meth:`BatchedFitter.fit`). Blocks of ``config.block_size``
        toys are spread over threads."""
        bs = min(max(1, int(self.config.block_size)), sub_block_size(data.V.shape[1], data.V.shape[2]))
        return fit_in_blocks(self, data, init, mu_fixed, mu_lower, fisher_at, bs)


def fit_minuit_events(
    fitter: UnbinnedFitter, data: EventData, mu_fixed: float | None = None,
    init: np.ndarray | None = None, mu_lower: float | None = 0.0, tol: float = 1e-6,
) -> FitResult:
    """Reference fits of the same unbinned NLL with iminuit Migrad (analytic gradient), one toy
    at a time; conventions and outputs as :func:`lzflow.stats.fit.fit_minuit`."""
    return fit_toys_minuit(fitter, data, mu_fixed=mu_fixed, init=init, mu_lower=mu_lower, tol=tol)
