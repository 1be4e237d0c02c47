"""Fits of the unbinned extended likelihood (:mod:`lzflow.stats.unbinned_model`).

Fits
----
Every event is a "bin" with count 1 of the binned fitter (:mod:`lzflow.stats.fit`): with
``x_e = (N_j f_j(x_e))_j`` over the free parameters y, ``ν_e = x_eᵀ y + c_e`` (c_e the fixed
part) and ``t = (N_j)_j``::

    g = t − Σ_e w_e x_e / ν_e + P (y − a),    H = Σ_e w_e x_e x_eᵀ / ν_e² + P,    P = diag(1/r_b²)

with w_e = 1. The template values ``N_s f_s(x_e)`` do not depend on the parameters: they are
computed once per toy (:meth:`UnbinnedFitter.prepare`, compiled loops of
:mod:`lzflow.stats._unbinned_kernels`) into an array ``(n_toys, n_par, C)`` of columns padded
with zeros, and every Newton iteration is one pass over it. **Order 0** is constant on each
template bin, so the events of a bin are one column with weight w = its number of events
(``Σ_e ln ν(x_e) = Σ_B n_B ln ν_B`` exactly): ≈ 340 columns per toy on the 40 GeV workspace
(40×40 templates; 110 on 20×20) instead of ≈ 3,300 events.

Each toy is fitted to convergence by the compiled projected Newton of
:mod:`lzflow.stats.unbinned_newton` (the iteration of the binned fitter's engine,
:mod:`lzflow.stats.newton`: active set at the bounds, Jacobi-scaled modified Cholesky, Armijo
backtracking along the projection arc — certified there by a log-free bound of the NLL
decrease —, convergence on the Newton decrement λ² < ``tol`` tested first with the previous
Hessian factor, an optional shared first-step matrix — the expected information at the generation
point, taken from the full-resolution binned model); its values stay in cache across the
iterations and no Python runs per iteration. Toys it leaves unconverged go to the batched engine
(:func:`lzflow.stats.newton.fit_block` on :class:`EventRows`: the toys vectorised, one compiled
pass per point for ν and the gradient), which also serves as the reference
(``UnbinnedFitter.fit(..., batched=True)``). The compiled fits form the Hessians in single
precision when ``FitConfig.hessian_float32`` (as the binned fitter: they only set the search
direction), the batched ones in double (:func:`~lzflow.stats._unbinned_kernels.hessians`). Toys are fitted in sub-blocks whose column arrays stay ≲ 16 MiB
(:func:`sub_block_size`, ≈ 52 toys of 3,300 events). Failures are retried from the nominal
start with a step cap, then fitted one by one with iminuit (:func:`fit_minuit_events`);
statuses, strategies and first-failure causes are those of
:class:`lzflow.stats.fitresult.FitResult`. Events that no allowed parameter value can explain
(all densities 0 there) make the toy INFEASIBLE (NLL = +inf, hence q = NaN when both fits are
infeasible), as in the binned fitter: with the ROOT clipping (floor 0) this happens at orders
≥ 2 where every template's interpolant undershoots below 0 inside a populated truth bin (on the
40 GeV workspace ≈ 3e-5 – 1e-3 of the events, i.e. 6 – 60 % of the toys); ``floor > 0`` avoids
it.

Records are bit-identical under any split of the toys into calls, threads or sub-blocks (each
toy's arithmetic is its own; the compiled sums are deterministic on a given machine). Against the
numpy implementation before (2026-12) the NLLs differ at the rounding level (≈ 1e-12 relative:
the order of the sums) and the fitted points within the convergence tolerance (float32 Hessian
products: other iterates, same minimum); the compiled per-toy Newton gives the batched engine's
q̃ within 2e-9 (both stop at λ² < 1e-9; ``tests/unit/test_unbinned_newton.py``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._threads import available_cores, blas_threads
from .fit import BatchedFitter
from .fitresult import FitConfig, FitResult
from .minuit import MigradProblem, fit_toys_minuit
from .newton import fit_in_blocks
from .stencil import bin_centres, right_index, stencil_tables
from .unbinned_model import EventData, EventToys, UnbinnedModel

__all__ = ["EventRows", "UnbinnedFitter", "fit_minuit_events", "power_tables", "sub_block_size"]

#: target size of the per-block column arrays: glibc serves allocations below its (dynamic, at
#: most 32 MiB) mmap threshold from the heap and reuses them, larger ones are fresh mmaps whose
#: page faults cost more than the fits themselves
_SUB_BLOCK_BYTES = 16 << 20


def sub_block_size(n_par: int, e_max: int) -> int:
    """Toys fitted together so that an ``(n, n_par, E_max)`` float64 array stays ≲ 16 MiB."""
    return max(4, int(_SUB_BLOCK_BYTES // max(8 * n_par * max(e_max, 1), 1)))


# ----------------------------------------------------------------------------- the problem
class EventRows:
    """One fit type on a set of toys (a :class:`lzflow.stats.newton.NewtonRows`).

    The toys' arrays are never copied: the rows are *stored* toys of the data (``V`` and its
    companions, shared with every subset) and the active rows an index array ``sel`` into them;
    compacting or sub-setting changes only ``sel``. ν at the current and at the trial points and
    the gradients there are kept per stored row (one compiled pass over V computes both,
    :func:`~lzflow.stats._unbinned_kernels.nu_and_sums`: the gradient at an accepted trial point
    is already known). ν = Σ_s z_s V_s with z the full parameter vector (fixed backgrounds at 1,
    μ at its fixed value in conditional fits).
    """

    def __init__(self, data: EventData, cols: np.ndarray, z_fixed: np.ndarray, totals: np.ndarray,
                 prec: np.ndarray, aux_c: np.ndarray, hessian_float32: bool = True):
        self.data = data  # V (n, C, P), n_cols, weight, bits, pad
        self.cols = cols  # (p,) free columns of the full parameter vector
        self.z_fixed = z_fixed  # (P,) full vector with the fixed values (free entries ignored)
        self.tvec = totals[cols]  # (p,) Σ_s ν_s coefficients of the free parameters
        self.totals = totals  # (P,)
        self.prec = prec  # (p,) constraint precisions (0 for μ)
        self.aux_c = aux_c  # (n, p) constraint centres (0 for μ), per stored row
        self.f32 = hessian_float32  # kept for the interface: the unbinned Hessians are float64
        self.sel = np.arange(data.n)  # active stored rows
        self.parent_rows: np.ndarray | None = None  # of a subset: its rows in the parent
        n, c_max = data.pad.shape
        self._bufs: list[np.ndarray] | None = None  # [ν now, ν trial] (n, C)
        self._grads: list[np.ndarray] | None = None  # [g now, g trial] (n, p)
        self._points: list[np.ndarray] | None = None  # [y now, y trial] (n, p)

    # ------------------------------------------------------------------ rows
    def infeasible(self) -> np.ndarray:
        """Active toys with a column that no free template and no positive fixed term can
        explain (``bits``: the templates positive there)."""
        d = self.data
        free_bits = _bits(self.cols)
        fixed = np.setdiff1d(np.arange(self.totals.size), self.cols)
        if free_bits | _bits(fixed[self.z_fixed[fixed] > 0]) == _bits(np.arange(self.totals.size)):
            return d.dead[self.sel]  # every template counts: a column where all vanish
        if np.any(self.z_fixed[fixed] < 0):  # a negative fixed term: test the fixed part itself
            c = (d.V[self.sel][:, fixed, :] * self.z_fixed[fixed][:, None]).sum(axis=1)
            explained = c > 0
        else:
            explained = (d.bits[self.sel] & _bits(fixed[self.z_fixed[fixed] > 0])) != 0
        dead = ((d.bits[self.sel] & free_bits) == 0) & ~explained & ~d.pad[self.sel]
        return dead.any(axis=1)

    def subset(self, keep: np.ndarray) -> "EventRows":
        """The active rows where ``keep`` is True (same stored arrays, own ν buffers)."""
        sub = EventRows(self.data, self.cols, self.z_fixed, self.totals, self.prec, self.aux_c, self.f32)
        sub.sel = self.sel[keep]
        sub.parent_rows = np.flatnonzero(keep)
        return sub

    def compact(self, keep: np.ndarray, ratios: bool) -> None:
        """Drop the active rows where ``keep`` is False."""
        self.sel = self.sel[keep]

    # ------------------------------------------------------------------ NewtonRows
    def start(self, y: np.ndarray) -> np.ndarray:
        return self._evaluate(y, 0)

    def grad(self, y: np.ndarray) -> np.ndarray:
        if not np.array_equal(self._points[0][self.sel], y):  # not the point of ν: evaluate there
            self._evaluate(y, 0)
        return self._grads[0][self.sel]

    def hess(self, rows: np.ndarray | None) -> np.ndarray:
        return self.hessian(self._bufs[0], self.sel if rows is None else self.sel[rows])

    def trial(self, y: np.ndarray) -> np.ndarray:
        return self._evaluate(y, 1)

    def take_trial(self, sub: "EventRows", ok: np.ndarray) -> None:
        rows = sub.sel[ok]
        for mine, theirs in zip((self._bufs, self._grads, self._points), (sub._bufs, sub._grads, sub._points)):
            mine[1][rows] = theirs[1][rows]

    def advance(self) -> None:
        for pair in (self._bufs, self._grads, self._points):
            pair.reverse()

    # ------------------------------------------------------------------ maths
    def _evaluate(self, y: np.ndarray, slot: int) -> np.ndarray:
        """ν and the gradient at ``y`` (active rows) into buffer ``slot``; returns the NLL."""
        from ._unbinned_kernels import nu_and_sums

        d = self.data
        if self._bufs is None:
            n, c_max = d.pad.shape
            self._bufs = [np.empty((n, c_max)), np.empty((n, c_max))]
            self._grads = [np.empty((n, self.cols.size)), np.empty((n, self.cols.size))]
            self._points = [np.full((n, self.cols.size), np.nan), np.full((n, self.cols.size), np.nan)]
        z = np.repeat(self.z_fixed[None, :], y.shape[0], axis=0)
        z[:, self.cols] = y
        sums = np.empty_like(z)
        nu = self._bufs[slot]
        nu_and_sums(d.V, self.sel, z, d.n_cols, d.weight, nu, sums)
        aux_c = self.aux_c[self.sel]
        self._grads[slot][self.sel] = self.tvec - sums[:, self.cols] + self.prec * (y - aux_c)
        self._points[slot][self.sel] = y
        with np.errstate(divide="ignore", invalid="ignore"):
            lg = np.log(nu[self.sel])
            if d.weight is not None:
                lg *= d.weight[self.sel]
            logs = lg.sum(axis=1)
        logs = np.where(np.isnan(logs), -np.inf, logs)  # ν < 0 somewhere: impossible
        cons = 0.5 * (((y - aux_c) ** 2) @ self.prec)
        return z @ self.totals - logs + cons

    def hessian(self, nu: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Hessians ``(p, p, k)`` (toy-last) of the stored ``rows`` at ν:
        ``Σ_e w_e x_e x_eᵀ / ν_e² + P`` in double precision, one compiled pass per toy
        (:func:`~lzflow.stats._unbinned_kernels.hessians`; faster here than the single-precision
        BLAS product of scaled columns it replaces, so ``hessian_float32`` does not apply)."""
        from ._unbinned_kernels import hessians

        d = self.data
        p = self.cols.size
        out = np.empty((p, p, rows.size))
        hessians(d.V, rows, self.cols, d.n_cols, d.weight, nu, self.prec, out)
        return out


#: orders evaluated in the power basis per stencil cell (higher orders: the Lagrange form)
_MAX_POWER_ORDER = 3


def power_tables(d) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """The interpolant of :class:`~lzflow.stats.interpolate.HistDensity2D` ``d`` (order N ≤ 3)
    per pair of stencil rows ``(r, q)`` (:func:`lzflow.stats.stencil.stencil_tables`) as a
    polynomial in ``u = x − ref_x[r]``, ``v = y − ref_y[q]`` (refs: the stencils' mean nodes):
    with the Lagrange weights ``w_a(x) = inv_a Π_{b≠a} (x − t_b) = Σ_k L[r, a, k] u^k``,
    ``coef[r, q, k(N+1) + l, s] = Σ_{a,b} L_x[r, a, k] L_y[q, b, l] d[i_a, j_b, s]``. Returns
    ``(lo_x, lo_y, ref_x, ref_y, coef)`` for :func:`~lzflow.stats._unbinned_kernels.event_values_power`."""
    m = d.order + 1
    nx, ny = (e.size - 1 for e in d.edges)
    out = []
    for e in d.edges:
        lo, idx, nodes, inv = stencil_tables(e, d.order, d.edge)
        ref = nodes.mean(axis=1)
        lag = np.zeros((nodes.shape[0], m, m))
        for r in range(nodes.shape[0]):
            for a in range(m):  # np.poly: highest power first
                lag[r, a] = np.poly(np.delete(nodes[r], a) - ref[r])[::-1] * inv[r, a]
        out.append((lo, idx, ref, lag))
    (lox, ix, refx, lx), (loy, iy, refy, ly) = out
    t3 = d.table.reshape(nx, ny, -1)
    sub = t3[ix[:, :, None, None], iy[None, None, :, :]]  # (Rx, m, Ry, m, S)
    coef = np.einsum("rak,qbl,raqbs->rqkls", lx, ly, sub)
    coef = np.ascontiguousarray(coef.reshape(coef.shape[0], coef.shape[1], m * m, -1))
    return int(lox), int(loy), refx, refy, coef


def _bits(cols: np.ndarray) -> int:
    """Σ_{j ∈ cols} 2^j."""
    return int(sum(1 << int(j) for j in cols))


# ----------------------------------------------------------------------------- the fitter
class UnbinnedFitter:
    """Vectorised projected-Newton fitter of the unbinned NLL (see the module docstring).

    ``config`` is the binned fitter's :class:`FitConfig` (tol, max_iter, max_backtrack, armijo,
    block_size, retry, minuit_fallback, n_threads, hessian_float32; the dense/sparse setting
    does not apply). ``binned_fitter``: the binned fitter of the full-resolution truth model (generation
    point, profile slope, expected information).
    """

    def __init__(self, model: UnbinnedModel, config: FitConfig | None = None):
        self.model = model
        self.config = config or FitConfig()
        nt = self.config.n_threads
        self.n_threads = available_cores() if nt is None else max(1, int(nt))
        self.binned_fitter = BatchedFitter(model.truth, FitConfig(n_threads=1))
        self._prec = model.truth.constraint_precision
        self._cols = {mu_free: model.truth.fit_columns(mu_free) for mu_free in (True, False)}
        d = model.densities
        if d.order == 0:  # values and bits of each template bin (+ one for outside: 0)
            vals = np.zeros((d.table.shape[0] + 1, model.n_par))
            vals[:-1] = np.maximum(d.table, 0.0) * d.inv_norm[None, :] * model.totals[None, :]
            self._bin_values = (vals, ((vals > 0) << np.arange(model.n_par)).sum(axis=1))
            (nx, ny), k = model.bin_shape, model.template_rebin
            ix, iy = np.divmod(np.arange(nx * ny), ny)
            self._truth_to_bin = (ix // k) * (ny // k) + iy // k
        self._kernel_tables = (*(bin_centres(e) for e in d.edges),
                               *(stencil_tables(e, max(d.order, 1), d.edge) for e in d.edges), d.table)
        self._power = power_tables(d) if 1 <= d.order <= _MAX_POWER_ORDER else None
        #: densities at the events from the power basis per stencil cell (orders 1–3; ≈ 1e-15
        #: of each template's scale from the Lagrange form, ~15 % faster); False: Lagrange form
        self.power_basis = self._power is not None

    # ------------------------------------------------------------------ data
    def prepare(self, toys: EventToys, aggregate: bool | None = None) -> EventData:
        """Template values of every toy in the padded layout ``(n, n_par, C)``.

        ``aggregate`` (default: for order 0): one column per template bin holding events, with
        its number of events as weight — at order 0 the density is constant on the template
        bins, so ``Σ_e ln ν(x_e) = Σ_B n_B ln ν_B`` exactly (same values, far fewer columns).
        Otherwise one column per event (:func:`lzflow.stats._unbinned_kernels.event_values`)."""
        m = self.model
        if aggregate is None:
            aggregate = m.order == 0
        if aggregate and m.order != 0:
            raise ValueError(f"aggregate=True needs interpolation order 0, got order {m.order}")
        n = toys.n
        aux = np.asarray(toys.aux, dtype=np.float64)
        valid = np.isfinite(aux[:, m.free_bkg]).all(axis=1)
        if aggregate:
            V, bits, w, ncol = self._bin_columns(toys)
        else:
            from ._unbinned_kernels import event_values  # numba: compiled on first use

            ncol = toys.n_events
            V = np.empty((n, m.n_par, int(ncol.max()) if n else 0))
            bits = np.empty((n, V.shape[2]), dtype=np.int64)
            d = m.densities
            x, y = (np.ascontiguousarray(v, dtype=np.float64) for v in (toys.x, toys.y))
            if self.power_basis and self._power is not None:
                from ._unbinned_kernels import event_values_power

                event_values_power(x, y, toys.offsets, d.order, *d.edges, *self._kernel_tables[:2],
                                   *self._power, d.table, d.floor, d.inv_norm, m.totals, V, bits)
            else:
                event_values(x, y, toys.offsets, d.order, *d.edges, *self._kernel_tables, d.floor,
                             d.inv_norm, m.totals, V, bits)
            w = None
        pad = np.arange(V.shape[2])[None, :] >= ncol[:, None]
        dead = ((bits == 0) & ~pad).any(axis=1)
        return EventData(V, pad, toys.n_events.astype(np.float64), aux, valid, bits, ncol, dead, w)

    def _bin_columns(self, toys: EventToys) -> tuple[np.ndarray, ...]:
        """Order 0: per toy the template bins holding events (ascending; one more column for
        events outside the range, value 0), their values ``(n, P, C)``, bits and event counts.
        A generated event lies inside its truth bin, hence in the template bin containing it."""
        m = self.model
        d = m.densities
        ex, ey = d.edges
        nb = (ex.size - 1) * (ey.size - 1)
        if toys.truth_bin is not None:
            key = self._truth_to_bin[toys.truth_bin]
        else:
            ix = np.clip(right_index(toys.x, ex), 0, ex.size - 2)
            iy = np.clip(right_index(toys.y, ey), 0, ey.size - 2)
            inside = (toys.x >= ex[0]) & (toys.x <= ex[-1]) & (toys.y >= ey[0]) & (toys.y <= ey[-1])
            key = np.where(inside, ix * (ey.size - 1) + iy, nb)
        from ._unbinned_kernels import bin_columns  # numba: compiled on first use

        vals, bit_of = self._bin_values
        V, bits, w, ncol = bin_columns(np.ascontiguousarray(key, dtype=np.int64), toys.offsets, nb,
                                       vals, np.ascontiguousarray(bit_of, dtype=np.int64))
        return V, bits, w, ncol

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
        """The toys of ``data`` as Newton rows for the free parameters (no copy of V)."""
        cols = self.free_columns(mu_fixed)
        z_fixed = np.ones(self.model.n_par)
        if mu_fixed is not None:
            z_fixed[0] = mu_fixed
        aux_c = np.zeros((data.n, cols.size))
        bk = cols > 0
        aux_c[:, bk] = data.aux[:, cols[bk] - 1]
        return EventRows(data, cols, z_fixed, self.model.totals, self._prec[cols], aux_c,
                         self.config.hessian_float32)

    def start_floor(self, mu_fixed: float | None) -> np.ndarray:
        """Values that a start with ν ≤ 0 at some event is raised to: θ to 0.05, μ to 0.5 signal
        events."""
        tot0 = self.model.totals[0]
        mu_start = 0.5 / tot0 if tot0 > 0 else 0.0
        return np.where(self._prec[self.free_columns(mu_fixed)] > 0, 0.05, mu_start)

    def minuit_problem(self, data: EventData, t: int, mu_fixed: float | None) -> MigradProblem | None:
        """NLL and gradient of toy ``t`` for Migrad; ``None`` if an event no parameter value can
        explain."""
        cols = self.free_columns(mu_fixed)
        nc = int(data.n_cols[t])
        V = data.V[t, :, :nc]  # (P, columns)
        w = np.ones(nc) if data.weight is None else data.weight[t, :nc]
        z0 = np.ones(self.model.n_par)
        if mu_fixed is not None:
            z0[0] = mu_fixed
        prec = self._prec[cols]
        a = np.zeros(cols.size)
        a[cols > 0] = data.aux[t, cols[cols > 0] - 1]
        tot = self.model.totals
        fixed = np.setdiff1d(np.arange(z0.size), cols)
        c = z0[fixed] @ V[fixed]
        X = V[cols]
        if np.any(~(X > 0).any(axis=0) & ~(c > 0)):
            return None

        def nll(y: np.ndarray) -> float:
            nu = y @ X + c
            if np.any(nu <= 0):
                return 1e300
            return float(y @ tot[cols] + z0[fixed] @ tot[fixed] - w @ np.log(nu)
                         + 0.5 * prec @ (y - a) ** 2)

        def grad(y: np.ndarray) -> np.ndarray:
            nu = y @ X + c
            with np.errstate(divide="ignore", invalid="ignore"):
                return tot[cols] - X @ (w / nu) + prec * (y - a)

        return MigradProblem(nll, grad)

    # ------------------------------------------------------------------ fits
    def fit(self, data: EventData, mu_fixed: float | None = None,
            init: np.ndarray | None = None, mu_lower: float | None = 0.0,
            fisher_at: np.ndarray | None = None, batched: bool = False) -> FitResult:
        """Fit every toy; μ free (bounded below by ``mu_lower``, ``None`` = unbounded) or fixed
        at ``mu_fixed``. ``fisher_at``: full parameter vector whose expected information makes
        the first Newton step (see :meth:`BatchedFitter.fit`). Blocks of ``config.block_size``
        toys are spread over threads. Each toy is fitted by the compiled Newton of
        :mod:`lzflow.stats.unbinned_newton` (the batched engine for the rare toys it leaves
        unconverged); ``batched=True``: the batched engine for all (the reference)."""
        bs = min(max(1, int(self.config.block_size)), sub_block_size(data.V.shape[1], data.V.shape[2]))
        if batched:
            return fit_in_blocks(self, data, init, mu_fixed, mu_lower, fisher_at, bs)
        from .unbinned_newton import fit_block_compiled  # numba: compiled on first use

        n_par = self.model.n_par
        init = self.default_init(data, mu_fixed) if init is None else init
        init = np.array(init, dtype=np.float64, copy=True)
        if init.shape != (data.n, n_par):
            raise ValueError(f"init must have shape ({data.n}, {n_par})")
        if mu_fixed is not None:
            init[:, 0] = mu_fixed
        res = FitResult.empty(data.n, n_par)
        blocks = [(s, min(s + bs, data.n)) for s in range(0, data.n, bs)]

        def work(block: tuple[int, int]) -> None:
            a, b = block
            sub = data if (a, b) == (0, data.n) else data.slice(a, b)
            res.put(np.arange(a, b), fit_block_compiled(self, sub, mu_fixed, init[a:b], mu_lower, fisher_at))

        n_threads = min(self.n_threads, len(blocks))
        if n_threads > 1:
            with blas_threads(1), ThreadPoolExecutor(n_threads) as pool:
                list(pool.map(work, blocks))
        else:
            for block in blocks:
                work(block)
        return res


def fit_minuit_events(
    fitter: UnbinnedFitter, data: EventData, mu_fixed: float | None = None,
    init: np.ndarray | None = None, mu_lower: float | None = 0.0, tol: float = 1e-6,
) -> FitResult:
    """Reference fits of the same unbinned NLL with iminuit Migrad (analytic gradient), one toy
    at a time; conventions and outputs as :func:`lzflow.stats.fit.fit_minuit`."""
    return fit_toys_minuit(fitter, data, mu_fixed=mu_fixed, init=init, mu_lower=mu_lower, tol=tol)
