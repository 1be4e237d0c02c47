"""The unbinned model (interpolated histogram densities) and its toys (events).

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
The per-event words and draws run in one compiled loop
(:func:`lzflow.stats._unbinned_kernels.draw_events`; the same operations as the numpy
definitions above, bit for bit — tested).
A toy's events depend only on (seed, mass_key, poi, hypothesis, toy index);
:func:`lzflow.stats.toys.run_toys` generates canonical blocks of ``block_size`` toy indices and fits them
in fixed sub-blocks (BLAS single-threaded), so records are bit-identical under any split of the
indices into calls or threads, and replaying one toy (``toy_indices=[k]``) reproduces its
record. The fits of these toys: :mod:`lzflow.stats.unbinned`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import ndtri

from ._rng import ensemble_key, poisson_inverse_scalar, uniforms_from_words, words
from .interpolate import HistDensity2D
from .stencil import rebin
from .model import BinnedModel
from .request import HYPOTHESES

__all__ = [
    "UnbinnedModel",
    "EventToys",
    "EventData",
    "UnbinnedToySampler",
    "generate_unbinned_toys",
]


# ----------------------------------------------------------------------------- model
def _from_truth(name: str) -> property:
    """Read-only property ``truth.<name>`` (the full-resolution :class:`BinnedModel`)."""
    return property(lambda self: getattr(self.truth, name), doc=f"``truth.{name}``")


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

    def __post_init__(self) -> None:
        if self.truth.n_shape:
            raise ValueError("the unbinned likelihood has no shape systematics; use the binned one")

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
    #: read from the truth model
    n_par = _from_truth("n_par")
    n_bkg = _from_truth("n_bkg")
    n_shape = _from_truth("n_shape")
    par_names = _from_truth("par_names")
    rel_unc = _from_truth("rel_unc")
    constrained = _from_truth("constrained")
    free_bkg = _from_truth("free_bkg")

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
        if rows.size and np.array_equal(rows, np.arange(rows[0], rows[0] + rows.size)):
            a, b = self.offsets[rows[0]], self.offsets[rows[-1] + 1]  # a range of toys: slices
            tb = None if self.truth_bin is None else self.truth_bin[a:b]
            return EventToys(self.toy_index[rows], self.offsets[rows[0] : rows[-1] + 2] - a,
                             self.x[a:b], self.y[a:b], self.aux[rows], tb)
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
        # positions stay strictly below a bin's upper edge
        self._below = tuple(np.nextafter(e[1:], -np.inf) for e in model.edges)

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
        b = np.empty(tot, dtype=np.int64)
        x, y = np.empty(tot), np.empty(tot)
        from ._unbinned_kernels import draw_events  # numba: compiled on first use

        ex, ey = m.edges
        draw_events(np.asarray(key, dtype=np.uint64), np.ascontiguousarray(toys, dtype=np.int64), off, nf,
                    self.cdf, self._guide, self.last_pos, ex, self._below[0], ey, self._below[1], True, b, x, y)
        return EventToys(toys.copy(), off, x, y, aux, b)


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
    """Toys in the fitter's padded representation: per toy, columns with the template values
    of one event each — or, for order 0 (:meth:`lzflow.stats.unbinned.UnbinnedFitter.prepare`),
    of one template bin with ``weight`` = its number of events.

    V: ``(n, n_par, C)`` values ``N_s f_s`` (0 in the padding); pad: ``(n, C)`` True for padding;
    n_events ``(n,)``; aux ``(n, n_bkg)``; valid ``(n,)`` finite aux; bits ``(n, C)``
    Σ_s 2^s [V_s > 0] (which templates can explain the column); n_cols ``(n,)`` filled columns;
    dead ``(n,)`` a column where every template vanishes; weight ``(n, C)`` events per column
    (``None``: one each).
    """

    V: np.ndarray
    pad: np.ndarray
    n_events: np.ndarray
    aux: np.ndarray
    valid: np.ndarray
    bits: np.ndarray
    n_cols: np.ndarray
    dead: np.ndarray
    weight: np.ndarray | None = None

    def subset(self, idx: np.ndarray) -> "EventData":
        idx = np.asarray(idx)
        return EventData(self.V[idx], self.pad[idx], self.n_events[idx], self.aux[idx],
                         self.valid[idx], self.bits[idx], self.n_cols[idx], self.dead[idx],
                         None if self.weight is None else self.weight[idx])

    def slice(self, a: int, b: int) -> "EventData":
        return EventData(self.V[a:b], self.pad[a:b], self.n_events[a:b], self.aux[a:b],
                         self.valid[a:b], self.bits[a:b], self.n_cols[a:b], self.dead[a:b],
                         None if self.weight is None else self.weight[a:b])

    @property
    def n(self) -> int:
        return int(self.V.shape[0])
