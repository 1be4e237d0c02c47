"""Unbinned extended likelihood with interpolated histogram densities, batched over toys.

Model
-----
Sources ``s`` = signal (parameter μ) and backgrounds ``b`` (multipliers θ_b, nominal 1) with
expected counts ``ν_sig = μ N_sig``, ``ν_b = θ_b N_b`` (``N`` = template totals in the ROI, from
the full-resolution workspace templates) and shapes ``f_s`` = the normalised, interpolated
densities of :class:`lzflow.stats.interpolate.HistDensity2D` built from the templates rebinned
by ``template_rebin`` along each axis (RooHistPdf ``intOrder`` = ``order``, ROOT's mirrored
edges by default, clipped at 0 — or floored at η × the bin value — and renormalised). For
events ``x_e = (cS1, log10 cS2)`` (Barlow, NIM A297 (1990) 496; Cowan,
*Statistical Data Analysis*, §6.9)::

    NLL(μ, θ) = Σ_s ν_s − Σ_e ln( Σ_s ν_s f_s(x_e) ) + Σ_{b: r_b>0} (a_b − θ_b)² / (2 r_b²)

(the constants ``ln n!`` and the Gaussian normalisation dropped). Same parameter vector
``[μ, θ_1..θ_B]``, bounds and fixed-background handling (r_b = 0 ⇒ θ_b ≡ 1, removed from every
fit) as :class:`lzflow.stats.model.BinnedModel`.

Relation to the binned likelihood: with ``order = 0`` and ``template_rebin = 1``,
``ν_s f_s(x_e) = ν_{s,i}/A_i`` for the bin ``i`` containing x_e (area A_i), so
``NLL_unbinned = NLL_binned(n) + Σ_e ln A_{i(e)}`` — a data-dependent constant: the fits and
every test statistic coincide (checked in the tests to 1e-7; observed ~1e-11).

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
arrays are fresh ``mmap`` allocations whose page faults cost more than the fits. The Newton
iteration is the binned one: projected Newton with an active set at the bounds, Jacobi-scaled modified Cholesky
vectorised over toys (:mod:`lzflow.stats._linalg`), Armijo backtracking along the projection arc,
convergence on the Newton decrement λ² < ``tol`` (tested first with the previous Hessian
factor), an optional shared first-step matrix (the expected information at the generation
point, taken from the full-resolution binned model), converged toys compacted out. Failures are
retried from the nominal start with a step cap, then fitted one by one with iminuit
(:func:`fit_minuit_events`); statuses, strategies and first-failure causes are those of
:class:`lzflow.stats.fit.FitResult`. Events that no allowed parameter value can explain
(all densities 0 there) make the toy INFEASIBLE (NLL = +inf, hence q = NaN when both fits are
infeasible), as in the binned fitter: with the ROOT clipping (floor 0) this happens at orders
≥ 2 where every template's interpolant undershoots below 0 inside a populated truth bin (on the
40 GeV workspace ≈ 3e-5 – 1e-3 of the events, i.e. 6 – 60 % of the toys); ``floor > 0`` avoids
it.

Toys ("truth" = full-resolution templates)
------------------------------------------
The generation point is that of the binned toys — the conditional MLEs θ̂̂(μ) on the Asimov
background-only dataset, computed with the **full-resolution binned model** (the truth model;
:func:`lzflow.stats.toys.generation_point`), so binned and unbinned ensembles share it. Each toy
draws, from counter-based words (:mod:`lzflow.stats._rng`, key
``SeedSequence([base_seed, mass_key, poi_index, hypothesis])``, counter = toy index):

* words ``[0, F)``: a_b ~ Gauss(θ̂̂_b, r_b) for the F floating backgrounds (same words — hence
  the same aux values — as the binned toys of that index);
* word ``F``: the number of events N ~ Poisson(Λ), Λ = Σ_i ν_i(gen) over the truth bins;
* words ``F + 1 + 3e + {0, 1, 2}`` for event e: its truth bin from the categorical distribution
  ν_i/Λ, then its position uniform within that bin (x and y).

A Poisson total with a categorical choice of bin is the same joint distribution as independent
Poisson counts per source and bin (the categorical draw uses a guide table, Chen & Asau 1974).
A toy's events depend only on (seed, mass_key, poi, hypothesis, toy index);
:func:`lzflow.stats.toys.run_toys` generates canonical blocks of ``block_size`` toy indices and fits them
in fixed sub-blocks (BLAS single-threaded), so records are bit-identical under any split of the
indices into calls or threads, and replaying one toy (``toy_indices=[k]``) reproduces its
record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import ndtri

from ._linalg import newton_direction, reuse_direction
from ._rng import ensemble_key, poisson_inverse_scalar, uniforms_from_words, words
from ._threads import available_cores
from .fit import (BatchedFitter, FitConfig, FitResult, FitStatus, Strategy, _armijo, _backtrack, _cap_step,
                  _end_failed_search, fit_in_blocks, fittable_toys, lower_bounds)
from .interpolate import HistDensity2D, rebin
from .model import BinnedModel
from .request import HYPOTHESES

__all__ = [
    "UnbinnedModel",
    "EventToys",
    "EventData",
    "UnbinnedToySampler",
    "generate_unbinned_toys",
    "UnbinnedFitter",
    "fit_minuit_events",
    "sub_block_size",
]


# ----------------------------------------------------------------------------- model
@dataclass(frozen=True)
class UnbinnedModel:
    """Unbinned model: truth templates (full resolution) + interpolated fit densities.

    truth: the full-resolution :class:`BinnedModel` (toy generation, generation point, totals
        ``N_s``, constraints); densities: stacked ``[signal, bkg_1..B]`` fit densities on the
        (possibly coarser) template binning; edges: the full-resolution ``(x_edges, y_edges)``.
    """

    truth: BinnedModel
    densities: HistDensity2D
    edges: tuple[np.ndarray, np.ndarray]
    order: int
    template_rebin: int
    edge: str = "mirror"
    floor: float = 0.0

    @classmethod
    def from_templates(
        cls, signal: np.ndarray, backgrounds: Sequence[np.ndarray] | np.ndarray,
        edges: Sequence[np.ndarray], names: Sequence[str], rel_unc: Sequence[float] | np.ndarray,
        order: int, template_rebin: int = 1, edge: str = "mirror", floor: float = 0.0,
        signal_name: str = "signal",
    ) -> "UnbinnedModel":
        """From 2D templates ``(nx, ny)`` (expected events per bin) and their edges; ``edge``
        and ``floor`` as in :class:`HistDensity2D` (defaults: ROOT's mirror, clip at 0)."""
        sig = np.asarray(signal, dtype=np.float64)
        bkg = np.stack([np.asarray(b, dtype=np.float64) for b in backgrounds])
        ex, ey = (np.asarray(e, dtype=np.float64) for e in edges)
        if sig.shape != (ex.size - 1, ey.size - 1):
            raise ValueError(f"signal shape {sig.shape} does not match the edges")
        truth = BinnedModel.from_templates(sig, list(bkg), names, rel_unc, signal_name)
        coarse, cedges = rebin(np.concatenate([sig[None], bkg]), [ex, ey], template_rebin)
        dens = HistDensity2D(coarse, cedges, order=order, edge=edge, floor=floor)
        return cls(truth, dens, (ex, ey), int(order), int(template_rebin), edge, float(floor))

    @classmethod
    def from_workspace(
        cls, ws: Mapping[str, Any], order: int, template_rebin: int = 1, edge: str = "mirror",
        floor: float = 0.0,
    ) -> "UnbinnedModel":
        """From a workspace document (:func:`lzflow.workspace.build_workspace`): fit densities
        from the templates rebinned by ``template_rebin`` per axis, interpolated with
        ``order``; totals, constraints and the truth from the full-resolution templates."""
        return cls.from_templates(
            np.asarray(ws["signal"]["template"], dtype=np.float64),
            [np.asarray(b["template"], dtype=np.float64) for b in ws["backgrounds"]],
            [np.asarray(a["edges"], dtype=np.float64) for a in ws["axes"]],
            [b["name"] for b in ws["backgrounds"]], [b["rel_unc"] for b in ws["backgrounds"]],
            order, template_rebin, edge, floor, ws["signal"]["name"],
        )

    # ------------------------------------------------------------------ properties
    @property
    def n_par(self) -> int:
        return self.truth.n_par

    @property
    def n_bkg(self) -> int:
        return self.truth.n_bkg

    @property
    def par_names(self) -> tuple[str, ...]:
        return self.truth.par_names

    @property
    def rel_unc(self) -> np.ndarray:
        return self.truth.rel_unc

    @property
    def constrained(self) -> np.ndarray:
        return self.truth.constrained

    @property
    def free_bkg(self) -> np.ndarray:
        return self.truth.free_bkg

    @property
    def totals(self) -> np.ndarray:
        """``(n_par,)`` template totals ``[N_sig, N_1..N_B]`` (full resolution)."""
        return np.r_[self.truth.signal_total, self.truth.nominal_counts]

    @property
    def bin_shape(self) -> tuple[int, int]:
        return (self.edges[0].size - 1, self.edges[1].size - 1)

    # ------------------------------------------------------------------ maths
    def event_values(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``(E, n_par)`` values ``N_s f_s(x_e)``: ``ν_e = Σ_s params_s · value_es``."""
        v = self.densities.pdf_points(x, y)
        v *= self.totals[None, :]
        return v

    def bin_index(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Flat (C order) full-resolution bin of each event (−1 outside the range)."""
        ex, ey = self.edges
        ix = np.searchsorted(ex, x, side="right") - 1
        iy = np.searchsorted(ey, y, side="right") - 1
        ix = np.where(np.asarray(x) == ex[-1], ex.size - 2, ix)
        iy = np.where(np.asarray(y) == ey[-1], ey.size - 2, iy)
        ok = (ix >= 0) & (ix < ex.size - 1) & (iy >= 0) & (iy < ey.size - 1)
        return np.where(ok, ix * (ey.size - 1) + iy, -1)

    def nll(self, params: np.ndarray, x: np.ndarray, y: np.ndarray,
            aux: np.ndarray | None = None) -> np.ndarray:
        """Reference NLL of one dataset (events x, y) at parameter vectors ``(..., n_par)``."""
        params = np.asarray(params, dtype=np.float64)
        aux = np.ones(self.n_bkg) if aux is None else np.asarray(aux, dtype=np.float64)
        vals = self.event_values(x, y)  # (E, P)
        nu = params @ vals.T  # (..., E)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.where(nu > 0, np.log(np.where(nu > 0, nu, 1.0)), -np.inf).sum(axis=-1)
        c = self.constrained
        rel = np.where(c, self.rel_unc, 1.0)
        cons = np.where(c, 0.5 * ((aux - params[..., 1:]) / rel) ** 2, 0.0).sum(axis=-1)
        return params @ self.totals - logs + cons


# ----------------------------------------------------------------------------- toys
@dataclass
class EventToys:
    """Events of a set of toys, flattened: toy ``t`` owns ``x[offsets[t]:offsets[t+1]]``."""

    toy_index: np.ndarray  # (n,)
    offsets: np.ndarray  # (n + 1,)
    x: np.ndarray  # (E,)
    y: np.ndarray  # (E,)
    aux: np.ndarray  # (n, n_bkg)
    truth_bin: np.ndarray | None = None  # (E,) flat truth bin of each event (if generated)

    @property
    def n(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def n_events(self) -> np.ndarray:
        return np.diff(self.offsets)

    def events(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[t], self.offsets[t + 1]
        return self.x[a:b], self.y[a:b]

    @classmethod
    def from_lists(cls, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], aux: np.ndarray,
                   toy_index: np.ndarray | None = None) -> "EventToys":
        n = len(xs)
        counts = np.array([len(v) for v in xs], dtype=np.int64)
        off = np.r_[0, np.cumsum(counts)]
        x = np.concatenate([np.asarray(v, float) for v in xs]) if n else np.zeros(0)
        y = np.concatenate([np.asarray(v, float) for v in ys]) if n else np.zeros(0)
        ti = np.arange(n) if toy_index is None else np.asarray(toy_index)
        return cls(ti, off, x, y, np.asarray(aux, dtype=np.float64).reshape(n, -1))

    def take(self, rows: np.ndarray) -> "EventToys":
        rows = np.asarray(rows, dtype=np.int64)
        sl = [np.arange(self.offsets[r], self.offsets[r + 1]) for r in rows]
        idx = np.concatenate(sl) if sl else np.zeros(0, dtype=np.int64)
        off = np.r_[0, np.cumsum(self.n_events[rows])]
        tb = None if self.truth_bin is None else self.truth_bin[idx]
        return EventToys(self.toy_index[rows], off, self.x[idx], self.y[idx], self.aux[rows], tb)

    def binned_counts(self, model: UnbinnedModel) -> np.ndarray:
        """``(n, nx·ny)`` counts in the full-resolution bins (C order)."""
        b = model.bin_index(self.x, self.y)
        toy = np.repeat(np.arange(self.n), self.n_events)
        nb = model.bin_shape[0] * model.bin_shape[1]
        ok = b >= 0
        return np.bincount(toy[ok] * nb + b[ok], minlength=self.n * nb).reshape(self.n, nb)


class UnbinnedToySampler:
    """Draws unbinned toys from the full-resolution templates at a generation point
    (word layout in the module docstring)."""

    def __init__(self, model: UnbinnedModel, params: np.ndarray):
        self.model = model
        self.params = np.asarray(params, dtype=np.float64)
        nu = model.truth.expected(self.params[0], self.params[1:])
        if np.any(nu < 0) or not np.all(np.isfinite(nu)):
            raise ValueError("generation point gives negative or non-finite expectations")
        self.lam = float(nu.sum())
        self.cdf = np.cumsum(nu) / self.lam if self.lam > 0 else np.ones(nu.size)
        self.last_pos = int(np.flatnonzero(nu > 0)[-1]) if self.lam > 0 else 0
        # guide table (Chen & Asau 1974): guide[g] = min{i : cdf_i > g/G}
        self._G = 4 * nu.size
        self._guide = np.minimum(np.searchsorted(self.cdf, np.arange(self._G) / self._G,
                                                 side="right"), self.last_pos)
        self.free = model.free_bkg
        self.rel_free = model.rel_unc[self.free]
        self.theta_free = self.params[1:][self.free]

    def draw(self, base_seed: int, mass_key: int, poi_index: int, hypothesis: int | str,
             toy_indices: np.ndarray) -> EventToys:
        h = HYPOTHESES[hypothesis] if isinstance(hypothesis, str) else int(hypothesis)
        return self.draw_key(ensemble_key(base_seed, mass_key, poi_index, h),
                             np.asarray(toy_indices, dtype=np.int64))

    def draw_key(self, key: np.ndarray, toys: np.ndarray) -> EventToys:
        m = self.model
        n = toys.size
        nf = self.free.size
        aux = np.ones((n, m.n_bkg))
        u = uniforms_from_words(words(key, toys[:, None], np.arange(nf + 1)[None, :]))
        if nf:
            aux[:, self.free] = self.theta_free + self.rel_free * ndtri(u[:, :nf])
        ns = (poisson_inverse_scalar(self.lam, u[:, nf]) if self.lam > 0
              else np.zeros(n, dtype=np.int64)).astype(np.int64)
        off = np.r_[0, np.cumsum(ns)]
        tot = int(off[-1])
        ev_toy = np.repeat(np.arange(n), ns)
        ev_j = (np.arange(tot) - off[:-1][ev_toy]).astype(np.uint64)
        j0 = np.uint64(nf + 1) + np.uint64(3) * ev_j
        ue = uniforms_from_words(words(key, toys[ev_toy][:, None],
                                       j0[:, None] + np.arange(3, dtype=np.uint64)[None, :]))
        b = self._categorical(ue[:, 0])
        ex, ey = m.edges
        ix, iy = np.divmod(b, ey.size - 1)
        x = _uniform_in(ex, ix, ue[:, 1])
        y = _uniform_in(ey, iy, ue[:, 2])
        return EventToys(toys.copy(), off, x, y, aux, b)

    def _categorical(self, u: np.ndarray) -> np.ndarray:
        """Truth bin min{i : u < cdf_i} (capped at the last populated bin) — the same result as
        ``searchsorted(cdf, u, "right")``, via the guide table and a short forward search."""
        i = self._guide[np.minimum((u * self._G).astype(np.intp), self._G - 1)]
        pos = np.flatnonzero((u >= self.cdf[i]) & (i < self.last_pos))
        while pos.size:
            i[pos] += 1
            pos = pos[(u[pos] >= self.cdf[i[pos]]) & (i[pos] < self.last_pos)]
        return i


def _uniform_in(edges: np.ndarray, i: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Uniform point in bin ``i`` from u ∈ (0, 1), kept strictly below the upper edge."""
    lo, hi = edges[i], edges[i + 1]
    return np.minimum(lo + u * (hi - lo), np.nextafter(hi, -np.inf))


def generate_unbinned_toys(
    model: UnbinnedModel, gen_params: np.ndarray, toy_indices: Sequence[int] | np.ndarray,
    base_seed: int, mass_key: int, poi_index: int, hypothesis: str | int,
) -> EventToys:
    """The toys :func:`lzflow.stats.toys.run_toys` fits for these seeds and generation point."""
    return UnbinnedToySampler(model, gen_params).draw(
        base_seed, mass_key, poi_index, hypothesis, np.asarray(toy_indices, dtype=np.int64))


# ----------------------------------------------------------------------------- fit data
@dataclass
class EventData:
    """Toys in the fitter's padded representation.

    V: ``(n, n_par, E_max)`` values ``N_s f_s(x_e)`` (0 in the padding); pad: ``(n, E_max)``
    True for padding; n_events ``(n,)``; aux ``(n, n_bkg)``; valid ``(n,)`` finite aux.
    """

    V: np.ndarray
    pad: np.ndarray
    n_events: np.ndarray
    aux: np.ndarray
    valid: np.ndarray

    @property
    def n(self) -> int:
        return int(self.V.shape[0])

    def subset(self, idx: np.ndarray) -> "EventData":
        idx = np.asarray(idx)
        return EventData(self.V[idx], self.pad[idx], self.n_events[idx], self.aux[idx],
                         self.valid[idx])

    def slice(self, a: int, b: int) -> "EventData":
        return EventData(self.V[a:b], self.pad[a:b], self.n_events[a:b], self.aux[a:b],
                         self.valid[a:b])


# ----------------------------------------------------------------------------- the fitter
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


@dataclass
class _Problem:
    """One fit type on a set of toys: ν = X y + c (per toy), NLL constants."""

    X: np.ndarray  # (n, p, E) free-parameter event values (C-contiguous)
    c: np.ndarray  # (n, E) fixed part of ν; 1 in the padding
    tvec: np.ndarray  # (p,) Σ_s ν_s coefficients of the free parameters
    const: float  # Σ_s ν_s of the fixed part
    prec: np.ndarray  # (p,) constraint precisions (0 for μ)
    aux_c: np.ndarray  # (n, p) constraint centres (0 for μ)
    work: _Work | None = None

    def take(self, keep: np.ndarray) -> "_Problem":
        """Rows where ``keep`` is True (a fresh, small problem: no work buffers)."""
        return _Problem(np.compress(keep, self.X, axis=0), np.compress(keep, self.c, axis=0),
                        self.tvec, self.const, self.prec, self.aux_c[keep])

    def compact(self, keep: np.ndarray) -> "_Problem":
        """Rows where ``keep`` is True, X moved into a work buffer (no allocation)."""
        if self.work is None:
            self.work = _Work(self.X.shape)
        X = self.work.compact(keep, self.X)
        return _Problem(X, np.compress(keep, self.c, axis=0), self.tvec, self.const, self.prec,
                        self.aux_c[keep], self.work)

    def nu(self, y: np.ndarray) -> np.ndarray:
        return np.matmul(y[:, None, :], self.X)[:, 0, :] + self.c

    def nll(self, y: np.ndarray, nu: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(nu).sum(axis=1)
        logs = np.where(np.isnan(logs), -np.inf, logs)  # ν < 0 somewhere: impossible
        cons = 0.5 * (((y - self.aux_c) ** 2) @ self.prec)
        return y @ self.tvec + self.const - logs + cons

    def grad(self, y: np.ndarray, nu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient ``(n, p)`` and the ratios ``1/ν`` ``(n, E)`` (for :meth:`hess`)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            r = 1.0 / nu
        g = self.tvec - np.matmul(self.X, r[:, :, None])[:, :, 0]
        g += self.prec * (y - self.aux_c)
        return g, r

    def hess(self, r: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Hessians ``(p, p, k)`` (toy-last) from the ratios ``1/ν`` of :meth:`grad`, for all
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


_EPS_ACTIVE = 1e-12
_CHORD_THRESHOLD = 1e-6
#: target size of the per-block event arrays: glibc serves allocations below its (dynamic, at
#: most 32 MiB) mmap threshold from the heap and reuses them, larger ones are fresh mmaps whose
#: page faults cost more than the fits themselves
_SUB_BLOCK_BYTES = 16 << 20


def sub_block_size(n_par: int, e_max: int) -> int:
    """Toys fitted together so that an ``(n, n_par, E_max)`` float64 array stays ≲ 16 MiB."""
    return max(4, int(_SUB_BLOCK_BYTES // max(8 * n_par * max(e_max, 1), 1)))


def _newton_events(prob: _Problem, y0: np.ndarray, lb: np.ndarray, cfg: FitConfig,
                   max_iter: int, step_cap: float | None, fisher: np.ndarray | None,
                   mu_start: float) -> dict:
    """Projected Newton with Armijo backtracking for all toys of ``prob`` (module docstring).

    Rows are compacted out of every array as they finish. Returns the binned fitter's dict
    (y, nll, status, n_iter, grad_norm, dec, at_bound)."""
    n, p = y0.shape
    y = y0.copy()
    f = np.full(n, np.nan)
    status = np.full(n, FitStatus.NOT_RUN, dtype=np.int8)
    n_iter = np.zeros(n, dtype=np.int32)
    dec_out = np.full(n, np.nan)
    g_out = np.zeros((n, p))
    nu = prob.nu(y)
    f = prob.nll(y, nu)
    bad = ~np.isfinite(f)
    if bad.any():  # a start with ν ≤ 0 at some event: move inside the domain
        y[bad] = np.maximum(y[bad], np.where(prob.prec > 0, 0.05, mu_start))
        nu = prob.nu(y)
        f = prob.nll(y, nu)
    active = np.arange(n)
    fin = np.isfinite(f)
    status[~fin] = FitStatus.NON_FINITE
    st_y, st_f, st_nu = y[fin], f[fin], nu[fin]
    pr = prob if fin.all() else prob.compact(fin)
    active = active[fin]
    k = active.size
    L = np.zeros((p, p, k))
    scale = np.zeros((p, k))
    free_prev = np.zeros((k, p), dtype=bool)
    exact = np.zeros(k, dtype=bool)
    n_chord = np.zeros(k, dtype=np.int32)

    def finish(mask, code, dec, g):
        ids = active[mask]
        status[ids] = code
        y[ids] = st_y[mask]
        f[ids] = st_f[mask]
        dec_out[ids] = dec[mask]
        g_out[ids] = g[mask]

    for it in range(max_iter):
        if not active.size:
            break
        g, r = pr.grad(st_y, st_nu)
        done = ~np.all(np.isfinite(g), axis=1)
        if done.any():
            finish(done, FitStatus.NON_FINITE, np.full(done.size, np.nan), g)
        free = ~((st_y <= lb + _EPS_ACTIVE) & (g > 0))
        st_y = np.where(free, st_y, np.maximum(st_y, lb))
        gm = np.where(free, g, 0.0)
        k = active.size
        d = np.zeros((k, p))
        dec = np.full(k, np.inf)
        need_h = ~done
        same = exact & np.all(free == free_prev, axis=1) & ~done
        if same.any():
            with np.errstate(all="ignore"):  # rows without a factor are not used
                d_c, dec_c = reuse_direction(L, scale, gm)
            conv = same & (dec_c < cfg.tol)
            if conv.any():
                finish(conv, FitStatus.CONVERGED, dec_c, g)
                done |= conv
            chord = same & ~conv & (dec_c < _CHORD_THRESHOLD) & (n_chord < 1)
            d[chord], dec[chord] = d_c[chord], dec_c[chord]
            need_h = ~done & ~chord
        n_chord[~need_h] += 1
        use_fisher = fisher is not None and it == 0
        if need_h.any():
            kh = int(need_h.sum())
            if use_fisher:
                h = np.repeat(fisher[:, :, None], kh, axis=2)
            else:
                h = pr.hess(r, None if kh == k else need_h)
            d_n, dec_n, L_n, s_n = newton_direction(h, gm[need_h], free[need_h])
            d[need_h], dec[need_h] = d_n, dec_n
            L[..., need_h], scale[:, need_h] = L_n, s_n
            exact[need_h] = not use_fisher
            n_chord[need_h] = 0
            if not use_fisher:
                conv = need_h & (dec < cfg.tol)
                if conv.any():
                    finish(conv, FitStatus.CONVERGED, dec, g)
                    done |= conv
        free_prev = free
        if done.any():  # compact the finished rows out of every array
            keep = ~done
            active, st_y, st_f, st_nu = active[keep], st_y[keep], st_f[keep], st_nu[keep]
            g, d, dec, free_prev = g[keep], d[keep], dec[keep], free_prev[keep]
            L, scale, exact, n_chord = L[..., keep], scale[:, keep], exact[keep], n_chord[keep]
            pr = pr.compact(keep)
            if not active.size:
                break
        if step_cap is not None:
            d = _cap_step(d, st_y, step_cap)
        # ---- line search along the projection arc
        cand = np.maximum(st_y + d, lb)
        nuc = pr.nu(cand)
        fc = pr.nll(cand, nuc)
        ok = _armijo(fc, st_f, g, cand - st_y, dec, cfg)
        if not ok.all():
            fail = np.flatnonzero(~ok)
            sub = pr.take(~ok)

            def evaluate(c_s):
                nu_s = sub.nu(c_s)
                return sub.nll(c_s, nu_s), nu_s

            def accept(ok_s, c_s, f_c, nu_s):
                rows = fail[ok_s]
                cand[rows], fc[rows], nuc[rows] = c_s[ok_s], f_c[ok_s], nu_s[ok_s]
                ok[rows] = True

            _backtrack(st_y[fail], d[fail], g[fail], st_f[fail], dec[fail], lb, cfg, evaluate, accept)
        if not ok.all():
            _end_failed_search(ok, dec, g, finish)
            n_iter[active[~ok]] += 1
            active, cand, fc, nuc = active[ok], cand[ok], fc[ok], nuc[ok]
            L, scale, exact, n_chord = L[..., ok], scale[:, ok], exact[ok], n_chord[ok]
            free_prev = free_prev[ok]
            pr = pr.compact(ok)
        st_y, st_f, st_nu = cand, fc, nuc
        n_iter[active] += 1
    if active.size:
        g, _ = pr.grad(st_y, st_nu)
        finish(np.ones(active.size, dtype=bool), FitStatus.MAX_ITER,
               np.full(active.size, np.nan), g)
    at_bound = y <= lb + _EPS_ACTIVE
    gp = np.where(at_bound & (g_out > 0), 0.0, g_out)
    return {"y": np.maximum(y, lb), "nll": f, "status": status, "n_iter": n_iter,
            "grad_norm": np.sqrt(np.einsum("ti,ti->t", gp, gp)), "dec": dec_out,
            "at_bound": at_bound}


class UnbinnedFitter:
    """Vectorised projected-Newton fitter of the unbinned NLL (see the module docstring).

    ``config`` is the binned fitter's :class:`FitConfig` (tol, max_iter, max_backtrack, armijo,
    block_size, retry, minuit_fallback, n_threads; the dense/sparse and float32 settings do not
    apply).
    """

    def __init__(self, model: UnbinnedModel, config: FitConfig | None = None):
        self.model = model
        self.config = config or FitConfig()
        nt = self.config.n_threads
        self.n_threads = available_cores() if nt is None else max(1, int(nt))
        self._binned = BatchedFitter(model.truth, FitConfig(n_threads=1))
        rel = model.rel_unc
        self._full_prec = np.r_[0.0, np.where(rel > 0, 1.0 / np.where(rel > 0, rel, 1.0) ** 2, 0.0)]
        self._fixed_cols = (1 + np.flatnonzero(~model.constrained)).astype(int)
        self._cols = {
            "uncond": np.r_[0, 1 + model.free_bkg].astype(int),
            "cond": (1 + model.free_bkg).astype(int),
        }

    @property
    def binned_fitter(self) -> BatchedFitter:
        """Binned fitter of the full-resolution truth model (generation point, profile slope,
        expected information)."""
        return self._binned

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
        return self._binned.expected_information(params, mu_free)

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

    def _problem(self, data: EventData, mu_fixed: float | None) -> _Problem:
        cols = self._cols["uncond" if mu_fixed is None else "cond"]
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
        return _Problem(X, c, tot[cols].copy(), const, self._full_prec[cols], aux_c)

    # ------------------------------------------------------------------ fits
    def fit(self, data: EventData, mu_fixed: float | None = None,
            init: np.ndarray | None = None, mu_lower: float | None = 0.0,
            fisher_at: np.ndarray | None = None) -> FitResult:
        """Fit every toy; μ free (bounded below by ``mu_lower``, ``None`` = unbounded) or fixed
        at ``mu_fixed``. ``fisher_at``: full parameter vector whose expected information makes
        the first Newton step (see :meth:`BatchedFitter.fit`). Blocks of ``config.block_size``
        toys are spread over threads."""
        cfg = self.config
        res = FitResult.empty(data.n, self.model.n_par)
        bs = min(max(1, int(cfg.block_size)), sub_block_size(data.V.shape[1], data.V.shape[2]))
        return fit_in_blocks(self, data, res, init, mu_fixed, mu_lower, fisher_at, bs)

    def _fit_block(self, data: EventData, mu_fixed: float | None, init: np.ndarray,
                   mu_lower: float | None, fisher_at: np.ndarray | None) -> FitResult:
        cfg = self.config
        m = self.model
        res = FitResult.empty(data.n, m.n_par)
        key = "uncond" if mu_fixed is None else "cond"
        cols = self._cols[key]
        lb = lower_bounds(cols.size, mu_fixed, mu_lower)
        bad_in = ~data.valid
        res.status[bad_in] = FitStatus.NON_FINITE
        res.first_failure[bad_in] = FitStatus.NON_FINITE
        prob = self._problem(data, mu_fixed)
        # infeasible: a real event where every free value and the fixed part vanish
        dead = ~(prob.X > 0).any(axis=1) & ~(prob.c > 0) & ~data.pad
        infeasible = dead.any(axis=1) & ~bad_in
        if infeasible.any():
            res.status[infeasible] = FitStatus.INFEASIBLE
            res.first_failure[infeasible] = FitStatus.INFEASIBLE
            res.nll[infeasible] = np.inf
            res.params[infeasible] = init[infeasible]
        todo = ~bad_in & ~infeasible
        ids = np.flatnonzero(todo)
        if not ids.size:
            return res
        pr = prob if todo.all() else prob.take(todo)
        y0 = np.maximum(init[ids][:, cols], lb)
        fisher = None
        if fisher_at is not None:
            fa = np.array(fisher_at, dtype=np.float64, copy=True)
            if mu_fixed is not None:
                fa[0] = mu_fixed
            fisher = self.expected_information(fa, mu_free=mu_fixed is None)
        mu_start = 0.5 / m.totals[0] if m.totals[0] > 0 else 0.0
        out = _newton_events(pr, y0, lb, cfg, cfg.max_iter, None, fisher, mu_start)
        res.store_newton(ids, out, cols, mu_fixed, Strategy.NEWTON)
        failed = ids[out["status"] != FitStatus.CONVERGED]
        if failed.size:
            res.first_failure[failed] = out["status"][out["status"] != FitStatus.CONVERGED]
        if failed.size and cfg.retry:
            sub = data.subset(failed)
            start = np.maximum(self.default_init(sub, mu_fixed)[:, cols],
                               np.where(np.isfinite(lb), lb, -np.inf))
            out2 = _newton_events(self._problem(sub, mu_fixed), start, lb, cfg, 4 * cfg.max_iter,
                                  0.5, None, mu_start)
            prev = res.n_iter[failed].copy()
            res.store_newton(failed, out2, cols, mu_fixed, Strategy.NEWTON_RETRY)
            res.n_iter[failed] += prev
            failed = failed[out2["status"] != FitStatus.CONVERGED]
        if failed.size and cfg.minuit_fallback:
            for i in failed:
                r = fit_minuit_events(self, data.subset(np.array([i])), mu_fixed=mu_fixed,
                                      init=init[i : i + 1], mu_lower=mu_lower)
                keep_first, prev = res.first_failure[i], res.n_iter[i]
                res.put(np.array([i]), r)
                res.first_failure[i] = keep_first
                res.n_iter[i] += prev
        return res


# ----------------------------------------------------------------------------- iminuit
def fit_minuit_events(
    fitter: UnbinnedFitter, data: EventData, mu_fixed: float | None = None,
    init: np.ndarray | None = None, mu_lower: float | None = 0.0, tol: float = 1e-6,
) -> FitResult:
    """Reference fits of the same unbinned NLL with iminuit Migrad (analytic gradient), one toy
    at a time; conventions and outputs as :func:`lzflow.stats.minuit.fit_minuit_prepared`."""
    from .minuit import migrad_into

    m = fitter.model
    res = FitResult.empty(data.n, m.n_par)
    if init is None:
        init = fitter.default_init(data, mu_fixed)
    key = "uncond" if mu_fixed is None else "cond"
    cols = fitter._cols[key]
    lb = lower_bounds(cols.size, mu_fixed, mu_lower)
    for t in fittable_toys(res, data.valid):
        prob = fitter._problem(data.subset(np.array([t])), mu_fixed)
        ne = int(data.n_events[t])
        X = prob.X[0, :, :ne]
        c = prob.c[0, :ne]
        a = prob.aux_c[0]
        if np.any(~(X > 0).any(axis=0) & ~(c > 0)):  # an event no parameter value can explain
            res.status[t] = res.first_failure[t] = FitStatus.INFEASIBLE
            res.nll[t] = np.inf
            res.params[t] = init[t]
            continue

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

        migrad_into(res, t, nll, grad, fitter, init[t], lb, cols, mu_fixed, tol)
    return res
