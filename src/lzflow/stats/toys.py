"""Pseudo-experiments (toys): generation, fits and test statistics, reproducible per toy.

Generation point (arXiv:1007.1727 §3 and the LHC-style frequentist prescription): S+B toys for a
tested μ are generated at (μ, θ̂̂(μ)) and B-only toys at (0, θ̂̂(0)), where θ̂̂ are the conditional
MLEs on the "observed" dataset (default: the Asimov background-only dataset, counts ν(0, θ=1)
unrounded, aux = 1). Each toy draws

* the auxiliary observables of the floating backgrounds, a_b ~ Gauss(θ̂̂_b, r_b) (multiplier
  scale; stored with the toy — refitting a toy without them would be wrong), and of the shape
  parameters of a model with shape systematics, a_k ~ Gauss(α̂̂_k, 1) — every constrained
  parameter's auxiliary observable is randomised at the generation point;
* the counts n_i ~ Poisson(ν_i) — directly for the fitter's "dense" bins, and for the nearly
  empty "sparse" bins as N_S ~ Poisson(Σ_S ν) events placed with the categorical distribution
  ν_i/Σ_S ν (the same joint distribution, far fewer random numbers).

Random streams: a toy's random numbers are a function of (base_seed, mass_key, poi_index,
hypothesis index h, toy index k) only, with h = 0 (S+B) or 1 (B-only) and
``mass_key = round(mass_GeV × 10⁴)`` (:func:`mass_key`). Default scheme ``"counter"``: word j of
toy k is a keyed SplitMix64 hash of (k, j) with the key from
``SeedSequence([base_seed, mass_key, poi_index, h])`` — vectorised over toys. Alternative
``"seedsequence"``: ``Generator(PCG64(SeedSequence([base_seed, mass_key, poi_index, h, k])))``
per toy, ~10× slower (see :class:`ToySampler`). Either way results are identical however toys
are split into jobs. B-only toys that are shared across the POI grid should all use one
``poi_index`` (:data:`BONLY_POI_INDEX`).

Fits: the unconditional fit starts at the generation point with a first step using the expected
information there (:meth:`BatchedFitter.fit`, ``fisher_at``); each conditional fit starts from a
linear prediction ``θ(μ) ≈ θ̂ + (μ − μ̂) dθ/dμ`` (or from the previous tested μ). Toys are
generated and fitted in canonical blocks of the toy index (bounded memory; bit-identical results
for any split of the indices, see :func:`run_toys`) and blocks are spread over threads. The fits of a
block, and which of them a one-sided limit needs: :mod:`lzflow.stats.toyfits`.

One entry point, :func:`run_toys` ``(model, request)``: the ensemble is a
:class:`~lzflow.stats.request.ToyRequest`; the model is binned (this module's sampler and
:class:`BatchedFitter`) or unbinned (:mod:`lzflow.stats.unbinned`: events drawn from the
full-resolution templates, fitted with the interpolated densities). What differs between the two
sits behind :class:`ToyLikelihood` (:class:`BinnedToys`, :class:`UnbinnedToys`): how a block of
toys is drawn, which fitter fits it (in sub-blocks for events), and which binned fitter gives the
generation point.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np
from scipy.special import ndtri

from ..masskey import mass_key
from ..progress import progress
from ._processes import run_in_processes
from ._rng import PoissonInverse, ensemble_key, poisson_inverse_scalar, uniforms_from_words, words
from ._threads import available_cores, blas_threads
from .binned_nll import PreparedData
from .fit import BatchedFitter
from .fitresult import FitConfig, FitResult
from .mcstat import draw_gamma_aux, gamma_generation
from .model import BinnedModel
from .request import BONLY_POI_INDEX, HYPOTHESES, STREAMS, ToyRequest
from .teststat import evaluate_test_statistic
from .toyfits import StoredUncond, fit_drawn_block, fit_toy_block
from .toyresult import ToyResult
from .unbinned import UnbinnedFitter, sub_block_size
from .unbinned_model import UnbinnedModel, UnbinnedToySampler

__all__ = [
    "HYPOTHESES",
    "BONLY_POI_INDEX",
    "STREAMS",
    "mass_key",
    "toy_generator",
    "observed_asimov",
    "generation_point",
    "ToySampler",
    "generate_toys",
    "ToyRequest",
    "ToyResult",
    "ToyLikelihood",
    "BinnedToys",
    "UnbinnedToys",
    "toy_likelihood",
    "run_toys",
]


def toy_generator(
    base_seed: int, mass_key: int, poi_index: int, hypothesis: int | str, toy_index: int
) -> np.random.Generator:
    """The generator of one toy: ``PCG64(SeedSequence([base_seed, mass_key, poi_index,
    hypothesis_index, toy_index]))``."""
    h = HYPOTHESES[hypothesis] if isinstance(hypothesis, str) else int(hypothesis)
    ss = np.random.SeedSequence([int(base_seed), int(mass_key), int(poi_index), h, int(toy_index)])
    return np.random.Generator(np.random.PCG64(ss))


def observed_asimov(model: BinnedModel) -> tuple[np.ndarray, np.ndarray]:
    """The default "observed" dataset: Asimov background-only (ν(0, θ=1), aux = 1)."""
    return model.asimov(0.0)


def generation_point(
    model: BinnedModel,
    mu: float,
    observed: tuple[np.ndarray, np.ndarray] | None = None,
    fitter: BatchedFitter | None = None,
) -> tuple[np.ndarray, FitResult]:
    """Full parameter vector (μ, θ̂̂(μ)) fitted on ``observed`` = (counts, aux).

    With shape parameters the fit may take many more Newton iterations than a toy fit (quick +
    systematics, 10 GeV, B-only Asimov at μ = 0.0856: 151, with α_nr_light ≈ −1); after
    ``max_iter`` the Migrad fallback ended at a local minimum 2.95 NLL units higher (α_nr_light = 0),
    and the S+B toys of that POI were drawn there. One fit, so it gets 10× the iterations."""
    fitter = fitter or BatchedFitter(model, FitConfig(n_threads=1))
    counts, aux = observed_asimov(model) if observed is None else observed
    if model.n_shape:
        cfg = fitter.config
        fitter = BatchedFitter(model, replace(cfg, n_threads=1, max_iter=10 * cfg.max_iter))
        aux = np.asarray(aux, dtype=np.float64)
        nb = model.n_bkg
        nuis = np.r_[np.where(model.constrained, np.clip(aux[:nb], 0.05, None), 1.0), aux[nb : nb + model.n_shape]]
        init = model.full_params(mu, nuis)
    else:
        init = model.full_params(mu, np.where(model.constrained, np.clip(aux[: model.n_bkg], 0.05, None), 1.0))
    r = fitter.fit(np.asarray(counts)[None, :], np.asarray(aux)[None, :], mu_fixed=float(mu),
                   init=init[None, :])
    return r.params[0].copy(), r


class ToySampler:
    """Draws toys at a generation point, directly in the fitter's dense/sparse bin split.

    Two random-stream schemes, both depending only on (base_seed, mass_key, poi_index,
    hypothesis, toy_index) — hence independent of how toys are split into calls or blocks:

    ``"counter"`` (default, vectorised): counter-based words (:mod:`lzflow.stats._rng`) with the
        ensemble key from ``SeedSequence([base_seed, mass_key, poi_index, hypothesis])`` and the
        toy index as counter; word layout per toy: ``[0, F)`` aux normals (F floating
        backgrounds, inverse CDF), ``[F, F + K)`` the shape parameters' aux normals (only with
        K > 0 shape systematics: for K = 0 the layout is unchanged), ``[F + K, F + K + D)``
        dense-bin Poissons (inverse CDF), ``F + K + D`` the sparse total, ``F + K + D + 1 + e``
        the position of sparse event ``e``.
    ``"seedsequence"``: one ``Generator(PCG64(SeedSequence([base_seed, mass_key, poi_index,
        hypothesis, toy_index])))`` per toy (:func:`toy_generator`), drawing in the same order
        (aux normals of θ then of α, dense Poissons, sparse total, its uniforms). ~10× slower.
    """

    def __init__(self, fitter: BatchedFitter, params: np.ndarray, stream: str = "counter", gamma_gen=None):
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
        m = fitter.model
        self.fitter = fitter
        self.stream = stream
        self.params = np.asarray(params, dtype=np.float64)
        nu = m.expected(self.params[0], self.params[1:])
        if np.any(nu < 0) or not np.all(np.isfinite(nu)):
            raise ValueError("generation point gives negative or non-finite expectations")
        self.nuD = nu[fitter.dense_bins]
        nuS = nu[fitter.sparse_bins]
        self.lamS = float(nuS.sum())
        self.cdfS = np.cumsum(nuS) / self.lamS if self.lamS > 0 else np.ones(nuS.size)
        self.last_pos_S = int(np.flatnonzero(nuS > 0)[-1]) if self.lamS > 0 else 0
        self.free = m.free_bkg
        self.rel_free = m.rel_unc[self.free]
        self.theta_free = self.params[1:][self.free]
        self.n_shape = m.n_shape
        self.alpha_gen, self.gamma_gen = self.params[1 + m.n_bkg :], gamma_gen  # γ̂̂: mcstat.gamma_generation
        self._pois = PoissonInverse(self.nuD) if stream == "counter" else None

    def draw(
        self, base_seed: int, mass_key: int, poi_index: int, hypothesis: int | str,
        toy_indices: np.ndarray,
    ) -> tuple[PreparedData, np.ndarray]:
        """Draw the toys ``toy_indices``; returns (prepared data, aux ``(n, n_aux)``)."""
        h = HYPOTHESES[hypothesis] if isinstance(hypothesis, str) else int(hypothesis)
        toy_indices = np.asarray(toy_indices, dtype=np.int64)
        if self.stream == "counter":
            return self._draw_counter(ensemble_key(base_seed, mass_key, poi_index, h), toy_indices)
        return self._draw_seedsequence(base_seed, mass_key, poi_index, h, toy_indices)

    def _draw_counter(self, key: np.ndarray, toys: np.ndarray) -> tuple[PreparedData, np.ndarray]:
        m = self.fitter.model
        n = toys.size
        nk = self.n_shape
        nf, nd = self.free.size, self.nuD.size
        aux = self._nominal_aux(n)
        u = uniforms_from_words(words(key, toys[:, None], np.arange(nf + nk + nd + 1)[None, :]))
        if nf:
            aux[:, self.free] = self.theta_free + self.rel_free * ndtri(u[:, :nf])
        if nk:
            aux[:, m.n_bkg : m.n_bkg + nk] = self.alpha_gen + ndtri(u[:, nf : nf + nk])
            nf += nk  # the words after the aux normals
        aux = draw_gamma_aux(m, aux, key, toys, centre=self.gamma_gen) if m.n_gamma else aux  # template MC statistics
        nD = self._pois.sample(u[:, nf : nf + nd])
        ns = poisson_inverse_scalar(self.lamS, u[:, nf + nd]) if self.lamS > 0 else np.zeros(n, int)
        tot = int(ns.sum())
        if tot:
            ev_toy = np.repeat(np.arange(n), ns)
            first = np.cumsum(ns) - ns
            ev_j = np.arange(tot) - np.repeat(first, ns)
            ue = uniforms_from_words(words(key, toys[ev_toy], nf + nd + 1 + ev_j))
            b = np.minimum(np.searchsorted(self.cdfS, ue, side="right"), self.last_pos_S)
            code = ev_toy * self.cdfS.size + b
            uc, cnt = np.unique(code, return_counts=True)
            et, eb, en = uc // self.cdfS.size, uc % self.cdfS.size, cnt.astype(np.float64)
        else:
            et = eb = np.zeros(0, dtype=np.intp)
            en = np.zeros(0)
        return self.fitter.prepare_split(nD, et, eb, en, aux), aux

    def _draw_seedsequence(
        self, base_seed: int, mass_key: int, poi_index: int, h: int, toys: np.ndarray,
    ) -> tuple[PreparedData, np.ndarray]:
        m = self.fitter.model
        n = toys.size
        nD = np.empty((n, self.nuD.size), dtype=np.float64)
        aux = self._nominal_aux(n)
        e_toy: list[np.ndarray] = []
        e_bin: list[np.ndarray] = []
        e_n: list[np.ndarray] = []
        nf = self.free.size
        for t, k in enumerate(toys):
            rng = toy_generator(base_seed, mass_key, poi_index, h, int(k))
            if nf:
                aux[t, self.free] = self.theta_free + self.rel_free * rng.standard_normal(nf)
            if self.n_shape:
                aux[t, m.n_bkg : m.n_bkg + self.n_shape] = self.alpha_gen + rng.standard_normal(self.n_shape)
            nD[t] = rng.poisson(self.nuD)
            ns = int(rng.poisson(self.lamS)) if self.lamS > 0 else 0
            if ns:
                b = np.searchsorted(self.cdfS, rng.random(ns), side="right")
                b = np.minimum(b, self.last_pos_S)
                ub, uc = np.unique(b, return_counts=True)
                e_toy.append(np.full(ub.size, t))
                e_bin.append(ub)
                e_n.append(uc)
            aux[t] = draw_gamma_aux(m, aux[t], rng=rng, centre=self.gamma_gen) if m.n_gamma else aux[t]  # after the other draws
        if e_toy:
            et, eb, en = np.concatenate(e_toy), np.concatenate(e_bin), np.concatenate(e_n)
        else:
            et = eb = np.zeros(0, dtype=np.intp)
            en = np.zeros(0)
        return self.fitter.prepare_split(nD, et, eb, en, aux), aux

    def _nominal_aux(self, n: int) -> np.ndarray:
        m = self.fitter.model
        return np.ones((n, m.n_aux)) if not m.n_shape else np.tile(np.r_[m.nominal_nuisance(), np.ones(m.n_gamma)], (n, 1))

    def dense_counts(self, data: PreparedData) -> np.ndarray:
        """Reassemble dense ``(n, n_bins)`` counts from prepared toys (for tests/exports)."""
        f = self.fitter
        out = np.zeros((data.n, f.model.n_bins))
        out[:, f.dense_bins] = data.nD
        np.add.at(out, (data.e_toy, f.sparse_bins[data.e_bin]), data.e_n)
        return out


def generate_toys(
    model: BinnedModel,
    gen_params: np.ndarray,
    toy_indices: Sequence[int] | np.ndarray,
    base_seed: int,
    mass_key: int,
    poi_index: int,
    hypothesis: str | int,
    stream: str = "counter", observed: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense toy data: (counts ``(n, n_bins)``, aux ``(n, n_aux)``) — the same toys :func:`run_toys`
    fits for these seeds, generation point and ``observed`` data (the centre γ̂̂ of the a_γ)."""
    fitter = BatchedFitter(model, FitConfig(n_threads=1))
    gen = np.asarray(gen_params, dtype=np.float64)
    sampler = ToySampler(fitter, gen, stream, gamma_generation(model, gen, observed) if model.n_gamma else None)
    data, aux = sampler.draw(base_seed, mass_key, poi_index, hypothesis,
                             np.asarray(toy_indices, dtype=np.int64))
    return sampler.dense_counts(data), aux


# ----------------------------------------------------------------------------- likelihoods
@dataclass
class DrawnBlock:
    """One canonical block of drawn toys: aux ``(n, n_aux)``, event counts ``(n,)`` and the toys
    in the fitter's representation, as sub-blocks fitted one after the other (made lazily)."""

    aux: np.ndarray
    n_events: np.ndarray
    sub_blocks: Iterable[Any]


class ToyLikelihood(Protocol):
    """What :func:`run_toys` needs of a likelihood.

    ``fitter`` fits drawn toys (the :meth:`BatchedFitter.fit` interface); ``truth_fitter`` is the
    binned fitter of the model the toys are drawn from (generation point, profile slope);
    ``drawer(gen, request)`` returns a function drawing the toys of one canonical block at the
    generation point ``gen``; ``label`` names the toys on progress bars.
    """

    label: str
    fitter: Any
    truth_fitter: BatchedFitter
    toys_independent: bool  # fit only the requested toys of a canonical block (same bits)

    def drawer(self, gen: np.ndarray, request: ToyRequest) -> Callable[[np.ndarray], DrawnBlock]: ...


class BinnedToys:
    """Binned likelihood: counts per bin (:class:`ToySampler`), each block fitted whole by the
    :class:`BatchedFitter` of the model."""

    label = "toys"

    def __init__(self, model: BinnedModel, config: FitConfig):
        self.fitter = BatchedFitter(model, config)
        self.truth_fitter = self.fitter
        self.toys_independent = self.fitter.toys_independent

    def drawer(self, gen: np.ndarray, request: ToyRequest) -> Callable[[np.ndarray], DrawnBlock]:
        m = self.fitter.model  # template MC statistics: the a_γ centred at γ̂̂ (mcstat.gamma_generation)
        sampler = ToySampler(self.fitter, gen, request.stream, gamma_generation(m, gen, request.observed) if m.n_gamma else None)
        seed = (request.base_seed, request.mass_key, request.poi_index, request.hypothesis_index)

        def draw(toys: np.ndarray) -> DrawnBlock:
            data, aux = sampler.draw(*seed, toys)
            return DrawnBlock(aux, data.total, [data])

        return draw


class UnbinnedToys:
    """Unbinned likelihood (:mod:`lzflow.stats.unbinned`): events drawn from the full-resolution
    templates (counter stream only), fitted in sub-blocks whose event arrays stay small
    (:func:`~lzflow.stats.unbinned.sub_block_size`); generation point and profile slope from the
    binned fitter of the truth model."""

    label = "unbinned toys"
    toys_independent = False  # not measured for the unbinned rows: whole canonical blocks

    def __init__(self, model: UnbinnedModel, config: FitConfig):
        self.model = model
        self.fitter = UnbinnedFitter(model, config)
        self.truth_fitter = self.fitter.binned_fitter

    def drawer(self, gen: np.ndarray, request: ToyRequest) -> Callable[[np.ndarray], DrawnBlock]:
        if request.stream != "counter":
            raise ValueError(f"unbinned toys use the 'counter' stream only, got {request.stream!r}")
        sampler = UnbinnedToySampler(self.model, gen)
        key = ensemble_key(request.base_seed, request.mass_key, request.poi_index, request.hypothesis_index)

        def draw(toys: np.ndarray) -> DrawnBlock:
            events = sampler.draw_key(key, toys)
            size = sub_block_size(self.model.n_par, int(events.n_events.max()) if events.n else 0)
            sub_blocks = (self.fitter.prepare(events.take(np.arange(s0, min(s0 + size, events.n))))
                          for s0 in range(0, events.n, size))
            return DrawnBlock(events.aux, events.n_events, sub_blocks)

        return draw


def toy_likelihood(model: BinnedModel | UnbinnedModel, config: FitConfig) -> ToyLikelihood:
    """The :class:`ToyLikelihood` of a binned or unbinned model, fitting with ``config``."""
    if isinstance(model, UnbinnedModel):
        return UnbinnedToys(model, config)
    if isinstance(model, BinnedModel):
        return BinnedToys(model, config)
    raise TypeError(f"toys need a BinnedModel or an UnbinnedModel, got {type(model).__name__}")


# ----------------------------------------------------------------------------- ensembles
def run_toys(model: BinnedModel | UnbinnedModel, request: ToyRequest, stored_uncond: StoredUncond | None = None
             ) -> ToyResult:
    """Generate and fit the toys of ``request`` (:class:`~lzflow.stats.request.ToyRequest`) with
    ``model`` — a :class:`BinnedModel`, or an :class:`~lzflow.stats.unbinned_model.UnbinnedModel` whose
    toys are drawn from its full-resolution templates (:mod:`lzflow.stats.unbinned`); return the
    per-toy records, ordered like ``request.toy_indices``.

    The generation point is ``request.gen_params``, else (μ, θ̂̂(μ)) for S+B and (0, θ̂̂(0)) for
    B-only, fitted with the binned (truth) model on ``request.observed`` (default Asimov
    background-only). Toys are generated and fitted in *canonical* blocks
    ``[k·block_size, (k+1)·block_size)`` of the toy index — always whole blocks, requested or
    not — and BLAS runs single-threaded, so every floating-point operation on a toy is the same
    however the indices are split over calls: results are bit-identical for the same
    ``block_size``, ``stream``, machine and BLAS (partial blocks cost the full block). Where a toy's
    fits do not depend on the toys fitted with it (``likelihood.toys_independent``: the multiplicative
    shape morphings, :attr:`lzflow.stats.fit.BatchedFitter.toys_independent`) only the requested toys
    of a block are drawn and fitted, with the same bits (the draws are per toy: :mod:`lzflow.stats._rng`;
    tested). Blocks are
    spread over ``request.n_threads`` threads (default: the available cores; numpy releases the
    GIL only inside its kernels, so threads scale imperfectly) or, with ``n_procs`` > 1, over that
    many single-threaded worker processes (:mod:`lzflow.stats._processes`; bit-identical too).
    ``stored_uncond``: unconditional fits already made (:class:`~lzflow.stats.toyfits.StoredUncond`),
    used for every block it covers whole (one process only).
    """
    likelihood = toy_likelihood(model, request.fit_config)
    if request.gen_params is None:
        with blas_threads(1):
            truth = likelihood.truth_fitter
            gen, _ = generation_point(truth.model, request.mu_generation, request.observed, truth)
    else:
        gen = np.asarray(request.gen_params, dtype=np.float64).copy()
    indices, size = request.toy_indices, request.block_size
    if request.n_procs > 1 and indices.size > size:
        if stored_uncond is not None:
            raise ValueError("run_toys: stored unconditional fits are used in one process only (n_procs 1)")
        return run_in_processes(run_toys, model, request, gen)
    slope = likelihood.truth_fitter.profile_slope(gen)
    draw = likelihood.drawer(gen, request)
    res = ToyResult.empty(request.hypothesis, request.poi_index, request.base_seed, request.mass_key,
                          request.test_stat, gen, request.mu_test, indices, model.n_bkg, model.n_shape,
                          getattr(model, "n_gamma", 0))

    def work(item: tuple[int, np.ndarray]) -> None:
        blk, rows = item
        toys = block_toys(blk, size, indices[rows], likelihood.toys_independent)
        block = draw(toys)
        ru, conds = fit_drawn_block(likelihood.fitter, block, gen, request.mu_test, request.test_stat, slope,
                                    request.cond_fits, None if stored_uncond is None else stored_uncond.block(toys))
        pos = np.searchsorted(toys, indices[rows])  # position of each requested toy in the block
        store_block(res, rows, pos, block.aux, block.n_events, ru, conds)

    run_blocks(work, canonical_blocks(indices, size), request.n_threads, indices.size,
               f"{likelihood.label} {request.hypothesis} poi{request.poi_index}")
    return res


def block_toys(block: int, block_size: int, requested: np.ndarray, independent: bool) -> np.ndarray:
    """The toy indices drawn and fitted for canonical block ``block``: all of
    ``[block·block_size, (block+1)·block_size)``, or, where toys are fitted independently of each
    other, only the ``requested`` ones (ascending, each once)."""
    if independent:
        return np.unique(np.asarray(requested, dtype=np.int64))
    return np.arange(block * block_size, (block + 1) * block_size, dtype=np.int64)


def canonical_blocks(toy_indices: np.ndarray, block_size: int) -> list[tuple[int, np.ndarray]]:
    """Group requested toys by canonical block ``[k·block_size, (k+1)·block_size)``:
    [(k, rows of ``toy_indices`` in block k)], blocks ascending, rows in request order."""
    block_of = toy_indices // block_size
    order = np.argsort(block_of, kind="stable")
    blk_ids, starts = np.unique(block_of[order], return_index=True)
    groups = np.split(order, starts[1:]) if toy_indices.size else []
    return list(zip(blk_ids.tolist(), groups))


def store_block(res: ToyResult, rows: np.ndarray, pos: np.ndarray, aux: np.ndarray, n_events: np.ndarray,
                ru: FitResult, conds: Sequence[FitResult]) -> None:
    """Write the records of the requested toys of one fitted block: rows ``rows`` of ``res`` take
    positions ``pos`` of the block (its aux, event counts, unconditional and conditional fits, q)."""
    res.aux[rows] = aux[pos]
    res.n_events[rows] = n_events[pos]
    res.mu_hat[rows] = ru.params[pos, 0]
    res.params_uncond[rows] = ru.params[pos]
    res.nll_uncond[rows] = ru.nll[pos]
    res.status_uncond[rows] = ru.status[pos]
    res.first_failure_uncond[rows] = ru.first_failure[pos]
    res.strategy_uncond[rows] = ru.strategy[pos]
    ncond = np.stack([rc.nll[pos] for rc in conds], axis=1)
    res.nll_cond[rows] = ncond
    res.status_cond[rows] = np.stack([rc.status[pos] for rc in conds], axis=1)
    res.first_failure_cond[rows] = np.stack([rc.first_failure[pos] for rc in conds], axis=1)
    res.strategy_cond[rows] = np.stack([rc.strategy[pos] for rc in conds], axis=1)
    if res.alpha_cond.shape[2]:  # α̂̂ at each tested μ (shape systematics only)
        k = res.alpha_cond.shape[2]
        res.alpha_cond[rows] = np.stack([rc.params[pos, -k:] for rc in conds], axis=1)
    res.q[rows] = evaluate_test_statistic(res.test_stat, ncond, ru.nll[pos], ru.params[pos, 0], res.mu_test)


def run_blocks(work: Callable[[tuple[int, np.ndarray]], None], items: list[tuple[int, np.ndarray]],
               n_threads: int | None, n_toys: int, desc: str) -> None:
    """``work((block, rows))`` for every block, over threads (BLAS single-threaded inside), with a
    progress bar on terminals (:mod:`lzflow.progress`)."""
    nt = available_cores() if n_threads is None else max(1, int(n_threads))
    bar = progress(total=n_toys, desc=desc, unit="toy")
    with blas_threads(1), bar:
        def work_and_count(item: tuple[int, np.ndarray]) -> None:
            work(item)
            bar.update(item[1].size)

        if min(nt, len(items)) > 1:
            with ThreadPoolExecutor(min(nt, len(items))) as pool:
                list(pool.map(work_and_count, items))
        else:
            for item in items:
                work_and_count(item)
