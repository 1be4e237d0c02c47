"""Pseudo-experiments (toys): generation, fits and test statistics, reproducible per toy.

Generation point (arXiv:1007.1727 §3 and the LHC-style frequentist prescription): S+B toys for a
tested μ are generated at (μ, θ̂̂(μ)) and B-only toys at (0, θ̂̂(0)), where θ̂̂ are the conditional
MLEs on the "observed" dataset (default: the Asimov background-only dataset, counts ν(0, θ=1)
unrounded, aux = 1). Each toy draws

* the auxiliary observables of the floating backgrounds, a_b ~ Gauss(θ̂̂_b, r_b) (multiplier
  scale; stored with the toy — refitting a toy without them would be wrong);
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
for any split of the indices, see :func:`run_toys`) and blocks are spread over threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

from scipy.special import ndtri

from ..masskey import mass_key
from ._rng import PoissonInverse, ensemble_key, poisson_inverse_scalar, uniforms_from_words, words
from ._threads import available_cores, blas_threads
from .fit import BatchedFitter, FitConfig, FitResult, FitStatus, PreparedData
from .model import BinnedModel
from ..progress import progress
from .teststat import mu_lower_bound, evaluate_test_statistic

__all__ = [
    "HYPOTHESES",
    "BONLY_POI_INDEX",
    "mass_key",
    "toy_generator",
    "observed_asimov",
    "generation_point",
    "STREAMS",
    "ToySampler",
    "generate_toys",
    "ToyResult",
    "run_toys",
]

#: hypothesis name → index used in the seed
HYPOTHESES = {"sb": 0, "b": 1}
#: POI index used for B-only toys shared across the POI grid
BONLY_POI_INDEX = 0


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
    """Full parameter vector (μ, θ̂̂(μ)) fitted on ``observed`` = (counts, aux)."""
    fitter = fitter or BatchedFitter(model, FitConfig(n_threads=1))
    counts, aux = observed_asimov(model) if observed is None else observed
    init = model.full_params(mu, np.where(model.constrained, np.clip(aux, 0.05, None), 1.0))
    r = fitter.fit(np.asarray(counts)[None, :], np.asarray(aux)[None, :], mu_fixed=float(mu),
                   init=init[None, :])
    return r.params[0].copy(), r


STREAMS = ("counter", "seedsequence")


class ToySampler:
    """Draws toys at a generation point, directly in the fitter's dense/sparse bin split.

    Two random-stream schemes, both depending only on (base_seed, mass_key, poi_index,
    hypothesis, toy_index) — hence independent of how toys are split into calls or blocks:

    ``"counter"`` (default, vectorised): counter-based words (:mod:`lzflow.stats._rng`) with the
        ensemble key from ``SeedSequence([base_seed, mass_key, poi_index, hypothesis])`` and the
        toy index as counter; word layout per toy: ``[0, F)`` aux normals (F floating
        backgrounds, inverse CDF), ``[F, F + D)`` dense-bin Poissons (inverse CDF), ``F + D``
        the sparse total, ``F + D + 1 + e`` the position of sparse event ``e``.
    ``"seedsequence"``: one ``Generator(PCG64(SeedSequence([base_seed, mass_key, poi_index,
        hypothesis, toy_index])))`` per toy (:func:`toy_generator`), drawing in the same order
        (aux normals, dense Poissons, sparse total, its uniforms). ~10× slower.
    """

    def __init__(self, fitter: BatchedFitter, params: np.ndarray, stream: str = "counter"):
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
        self._pois = PoissonInverse(self.nuD) if stream == "counter" else None

    def draw(
        self, base_seed: int, mass_key: int, poi_index: int, hypothesis: int | str,
        toy_indices: np.ndarray,
    ) -> tuple[PreparedData, np.ndarray]:
        """Draw the toys ``toy_indices``; returns (prepared data, aux ``(n, n_bkg)``)."""
        h = HYPOTHESES[hypothesis] if isinstance(hypothesis, str) else int(hypothesis)
        toy_indices = np.asarray(toy_indices, dtype=np.int64)
        if self.stream == "counter":
            return self._draw_counter(ensemble_key(base_seed, mass_key, poi_index, h), toy_indices)
        return self._draw_seedsequence(base_seed, mass_key, poi_index, h, toy_indices)

    def _draw_counter(self, key: np.ndarray, toys: np.ndarray) -> tuple[PreparedData, np.ndarray]:
        m = self.fitter.model
        n = toys.size
        nf, nd = self.free.size, self.nuD.size
        aux = np.ones((n, m.n_bkg))
        u = uniforms_from_words(words(key, toys[:, None], np.arange(nf + nd + 1)[None, :]))
        if nf:
            aux[:, self.free] = self.theta_free + self.rel_free * ndtri(u[:, :nf])
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
        aux = np.ones((n, m.n_bkg))
        e_toy: list[np.ndarray] = []
        e_bin: list[np.ndarray] = []
        e_n: list[np.ndarray] = []
        nf = self.free.size
        for t, k in enumerate(toys):
            rng = toy_generator(base_seed, mass_key, poi_index, h, int(k))
            if nf:
                aux[t, self.free] = self.theta_free + self.rel_free * rng.standard_normal(nf)
            nD[t] = rng.poisson(self.nuD)
            ns = int(rng.poisson(self.lamS)) if self.lamS > 0 else 0
            if ns:
                b = np.searchsorted(self.cdfS, rng.random(ns), side="right")
                b = np.minimum(b, self.last_pos_S)
                ub, uc = np.unique(b, return_counts=True)
                e_toy.append(np.full(ub.size, t))
                e_bin.append(ub)
                e_n.append(uc)
        if e_toy:
            et, eb, en = np.concatenate(e_toy), np.concatenate(e_bin), np.concatenate(e_n)
        else:
            et = eb = np.zeros(0, dtype=np.intp)
            en = np.zeros(0)
        return self.fitter.prepare_split(nD, et, eb, en, aux), aux

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
    stream: str = "counter",
) -> tuple[np.ndarray, np.ndarray]:
    """Dense toy data: (counts ``(n, n_bins)``, aux ``(n, n_bkg)``) — the same toys
    :func:`run_toys` fits for these seeds and generation point."""
    fitter = BatchedFitter(model, FitConfig(n_threads=1))
    sampler = ToySampler(fitter, np.asarray(gen_params, dtype=np.float64), stream)
    data, aux = sampler.draw(base_seed, mass_key, poi_index, hypothesis,
                             np.asarray(toy_indices, dtype=np.int64))
    return sampler.dense_counts(data), aux


@dataclass
class ToyResult:
    """Per-toy records of one (hypothesis, generation point) ensemble.

    ``mu_test`` (n_mu,) are the tested POI values; ``q``, ``nll_cond``, ``status_cond`` have shape
    ``(n_toys, n_mu)``. ``params_uncond`` are the unconditional best fits [μ̂, θ̂].
    Fit status codes are :class:`lzflow.stats.fit.FitStatus`.
    """

    hypothesis: str
    poi_index: int
    base_seed: int
    mass_key: int
    test_stat: str
    gen_params: np.ndarray  # (1 + n_bkg,) generation point
    mu_test: np.ndarray  # (n_mu,)
    toy_index: np.ndarray  # (n,)
    aux: np.ndarray  # (n, n_bkg)
    n_events: np.ndarray  # (n,)
    mu_hat: np.ndarray  # (n,)
    params_uncond: np.ndarray  # (n, 1 + n_bkg)
    nll_uncond: np.ndarray  # (n,)
    status_uncond: np.ndarray  # (n,)
    first_failure_uncond: np.ndarray  # (n,)
    strategy_uncond: np.ndarray  # (n,)
    nll_cond: np.ndarray  # (n, n_mu)
    status_cond: np.ndarray  # (n, n_mu)
    first_failure_cond: np.ndarray  # (n, n_mu)
    strategy_cond: np.ndarray  # (n, n_mu)
    q: np.ndarray  # (n, n_mu)

    _PER_TOY = (
        "toy_index", "aux", "n_events", "mu_hat", "params_uncond", "nll_uncond", "status_uncond",
        "first_failure_uncond", "strategy_uncond", "nll_cond", "status_cond",
        "first_failure_cond", "strategy_cond", "q",
    )

    @classmethod
    def empty(cls, hypothesis: str, poi_index: int, base_seed: int, mass_key: int, test_stat: str,
              gen_params: np.ndarray, mu_test: np.ndarray, toy_indices: np.ndarray, n_bkg: int) -> "ToyResult":
        """Records for ``toy_indices`` before any fit: NaN values, NOT_RUN statuses, aux at nominal."""
        n, n_mu = toy_indices.size, mu_test.size
        return cls(
            hypothesis=hypothesis, poi_index=int(poi_index), base_seed=int(base_seed),
            mass_key=int(mass_key), test_stat=test_stat, gen_params=gen_params, mu_test=mu_test,
            toy_index=toy_indices.copy(), aux=np.ones((n, n_bkg)), n_events=np.zeros(n),
            mu_hat=np.full(n, np.nan), params_uncond=np.full((n, 1 + n_bkg), np.nan),
            nll_uncond=np.full(n, np.nan), status_uncond=np.full(n, FitStatus.NOT_RUN, np.int8),
            first_failure_uncond=np.zeros(n, np.int8), strategy_uncond=np.zeros(n, np.int8),
            nll_cond=np.full((n, n_mu), np.nan),
            status_cond=np.full((n, n_mu), FitStatus.NOT_RUN, np.int8),
            first_failure_cond=np.zeros((n, n_mu), np.int8),
            strategy_cond=np.zeros((n, n_mu), np.int8), q=np.full((n, n_mu), np.nan),
        )

    @property
    def n(self) -> int:
        return int(self.toy_index.size)

    @property
    def ok(self) -> np.ndarray:
        """``(n, n_mu)``: both fits converged."""
        return (self.status_uncond[:, None] == FitStatus.CONVERGED) & (
            self.status_cond == FitStatus.CONVERGED
        )

    def failure_summary(self) -> dict:
        """Failure counts and fractions (final status and first-failure cause) per fit type."""
        out: dict = {"hypothesis": self.hypothesis, "poi_index": self.poi_index, "n_toys": self.n}
        for label, st, ff, strat in (
            ("uncond", self.status_uncond, self.first_failure_uncond, self.strategy_uncond),
            ("cond", self.status_cond, self.first_failure_cond, self.strategy_cond),
        ):
            d: dict = {}
            for s in FitStatus:
                if s == FitStatus.CONVERGED:
                    continue
                k = int(np.sum(st == s))
                if k:
                    d[f"final_{s.name}"] = k
                k = int(np.sum(ff == s))
                if k:
                    d[f"first_{s.name}"] = k
            n_fail = int(np.sum(st != FitStatus.CONVERGED))
            n_retried = int(np.sum(ff != FitStatus.CONVERGED))
            d["n_fits"] = int(st.size)
            d["n_failed"] = n_fail
            d["n_retried"] = n_retried
            d["fraction_failed"] = n_fail / max(st.size, 1)
            d["fraction_retried"] = n_retried / max(st.size, 1)
            out[label] = d
        return out

    @classmethod
    def concat(cls, parts: Sequence["ToyResult"]) -> "ToyResult":
        """Join results of the same ensemble (e.g. from several jobs), ordered by toy index."""
        parts = list(parts)
        first = parts[0]
        for p in parts[1:]:
            if (p.hypothesis, p.poi_index, p.base_seed, p.mass_key, p.test_stat) != (
                first.hypothesis, first.poi_index, first.base_seed, first.mass_key, first.test_stat
            ) or not np.array_equal(p.mu_test, first.mu_test):
                raise ValueError("can only concatenate toys of the same ensemble")
        kw = {f.name: getattr(first, f.name) for f in fields(cls)}
        for name in cls._PER_TOY:
            kw[name] = np.concatenate([getattr(p, name) for p in parts])
        order = np.argsort(kw["toy_index"], kind="stable")
        for name in cls._PER_TOY:
            kw[name] = kw[name][order]
        return cls(**kw)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays (for ``np.savez``); metadata as 0-d arrays."""
        out = {name: getattr(self, name) for name in self._PER_TOY}
        out.update(
            hypothesis=np.array(self.hypothesis), poi_index=np.array(self.poi_index),
            base_seed=np.array(self.base_seed), mass_key=np.array(self.mass_key),
            test_stat=np.array(self.test_stat), gen_params=self.gen_params, mu_test=self.mu_test,
        )
        return out

    @classmethod
    def from_arrays(cls, d: dict) -> "ToyResult":
        kw = {name: np.asarray(d[name]) for name in cls._PER_TOY}
        return cls(
            hypothesis=str(d["hypothesis"]), poi_index=int(d["poi_index"]),
            base_seed=int(d["base_seed"]), mass_key=int(d["mass_key"]),
            test_stat=str(d["test_stat"]), gen_params=np.asarray(d["gen_params"]),
            mu_test=np.asarray(d["mu_test"]), **kw,
        )


def fit_toy_block(
    fitter: BatchedFitter, data: PreparedData, gen: np.ndarray, mu_test: np.ndarray,
    test_stat: str, slope: np.ndarray,
) -> tuple[FitResult, list[FitResult]]:
    """Unconditional fit + conditional fits at each tested μ for one block of toys (any fitter with
    the :meth:`BatchedFitter.fit` interface: binned, or :class:`lzflow.stats.unbinned.UnbinnedFitter`)."""
    n = data.n
    init = np.broadcast_to(gen, (n, gen.size))
    lower = mu_lower_bound(test_stat)
    start = init.copy()
    if lower is not None:
        start[:, 0] = np.maximum(start[:, 0], lower)
    ru = fitter.fit(data, mu_fixed=None, init=start, mu_lower=lower, fisher_at=gen)
    conds: list[FitResult] = []
    prev_params, prev_mu = ru.params, ru.params[:, 0]
    bad_prev = ~np.all(np.isfinite(prev_params), axis=1)
    for mu in mu_test:
        ci = prev_params + (mu - prev_mu)[:, None] * slope
        ci[:, 1:] = np.maximum(ci[:, 1:], 0.0)
        ci[bad_prev] = gen
        ci[:, 0] = mu
        rc = fitter.fit(data, mu_fixed=float(mu), init=ci)
        conds.append(rc)
        prev_params, prev_mu = rc.params, np.full(n, float(mu))
        bad_prev = ~np.all(np.isfinite(prev_params), axis=1)
    return ru, conds


def run_toys(
    model: BinnedModel,
    mu: float,
    poi_index: int,
    toy_indices: Sequence[int] | np.ndarray,
    base_seed: int,
    mass_key: int,
    hypothesis: str = "sb",
    mu_test: float | Sequence[float] | np.ndarray | None = None,
    observed: tuple[np.ndarray, np.ndarray] | None = None,
    gen_params: np.ndarray | None = None,
    test_stat: str = "qtilde",
    config: FitConfig | None = None,
    block_size: int = 512,
    n_threads: int | None = None,
    stream: str = "counter",
    n_procs: int = 1,
) -> ToyResult:
    """Generate and fit toys ``toy_indices`` of one ensemble; return per-toy records.

    hypothesis: ``"sb"`` — generated at (μ, θ̂̂(μ)); ``"b"`` — at (0, θ̂̂(0)) (``mu`` is then only
        the default tested value).
    mu_test: POI values at which q is evaluated (default ``[mu]``; for B-only toys pass the whole
        grid — the unconditional fit is shared). For ``test_stat="q0"`` it is forced to [0].
    observed: (counts, aux) used to fit θ̂̂ (default Asimov background-only).
    gen_params: explicit generation point [μ, θ] (overrides the θ̂̂ fit).
    block_size: toys are generated and fitted in *canonical* blocks
        ``[k·block_size, (k+1)·block_size)`` of the toy index — always whole blocks, requested
        or not — and BLAS runs single-threaded, so every floating-point operation on a toy is the
        same however the indices are split over calls: results are bit-identical for the same
        ``block_size``, ``stream``, machine and BLAS (partial blocks cost the full block).
    stream: ``"counter"`` (vectorised) or ``"seedsequence"`` (one numpy Generator per toy), see
        :class:`ToySampler`.
    n_threads: worker threads over blocks in this process (default: the available cores).
        numpy releases the GIL only inside its kernels, so threads scale imperfectly.
    n_procs: > 1 spreads the blocks over that many worker processes (``spawn`` context, pool
        kept for later calls); each runs single-threaded. Results are bit-identical to
        ``n_procs=1``.
    Returns a :class:`ToyResult` (records ordered like ``toy_indices``).
    """
    toy_indices = checked_toy_request(hypothesis, test_stat, toy_indices)
    cfg = config or FitConfig()
    fitter = BatchedFitter(model, FitConfig(**{**cfg.__dict__, "n_threads": 1}))
    mu_gen = float(mu) if hypothesis == "sb" else 0.0
    if gen_params is None:
        with blas_threads(1):
            gen, _ = generation_point(model, mu_gen, observed, fitter)
    else:
        gen = np.asarray(gen_params, dtype=np.float64).copy()
    mus = tested_mus(mu, mu_test, test_stat)
    n = toy_indices.size
    bs = max(1, int(block_size))
    if n_procs > 1 and n > bs:
        return _run_toys_processes(
            model, mu, poi_index, toy_indices, base_seed, mass_key, hypothesis, mus, gen,
            test_stat, cfg, bs, stream, int(n_procs),
        )
    slope = fitter.profile_slope(gen)
    sampler = ToySampler(fitter, gen, stream)
    res = ToyResult.empty(hypothesis, poi_index, base_seed, mass_key, test_stat, gen, mus, toy_indices,
                          model.n_bkg)
    hyp = HYPOTHESES[hypothesis]

    def work(item: tuple[int, np.ndarray]) -> None:
        blk, rows = item
        toys = np.arange(blk * bs, (blk + 1) * bs, dtype=np.int64)
        data, aux = sampler.draw(base_seed, mass_key, poi_index, hyp, toys)
        ru, conds = fit_toy_block(fitter, data, gen, mus, test_stat, slope)
        pos = toy_indices[rows] - blk * bs  # position of each requested toy in the block
        store_block(res, rows, pos, aux, data.total, ru, conds)

    run_blocks(work, canonical_blocks(toy_indices, bs), n_threads, n, f"toys {hypothesis} poi{poi_index}")
    return res


def checked_toy_request(hypothesis: str, test_stat: str, toy_indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Validate a toy request (hypothesis, test-statistic name, non-negative indices); the indices
    as a flat int64 array."""
    if hypothesis not in HYPOTHESES:
        raise ValueError(f"hypothesis must be one of {tuple(HYPOTHESES)}, got {hypothesis!r}")
    mu_lower_bound(test_stat)  # validates the name
    toy_indices = np.asarray(toy_indices, dtype=np.int64).ravel()
    if toy_indices.size and toy_indices.min() < 0:
        raise ValueError("toy indices must be non-negative")
    return toy_indices


def tested_mus(mu: float, mu_test: float | Sequence[float] | np.ndarray | None, test_stat: str) -> np.ndarray:
    """The POI values at which q is evaluated: [0] for q0, else ``mu_test`` (default [mu])."""
    if test_stat == "q0":
        return np.zeros(1)
    if mu_test is None:
        return np.array([float(mu)])
    return np.atleast_1d(np.asarray(mu_test, dtype=np.float64))


def canonical_blocks(toy_indices: np.ndarray, block_size: int) -> list[tuple[int, np.ndarray]]:
    """Group requested toys by canonical block ``[k·block_size, (k+1)·block_size)``:
    [(k, rows of ``toy_indices`` in block k)], blocks ascending, rows in request order."""
    block_of = toy_indices // block_size
    order = np.argsort(block_of, kind="stable")
    blk_ids, starts = np.unique(block_of[order], return_index=True)
    groups = np.split(order, starts[1:]) if toy_indices.size else []
    return list(zip(blk_ids.tolist(), groups))


def store_block(res: "ToyResult", rows: np.ndarray, pos: np.ndarray, aux: np.ndarray, n_events: np.ndarray,
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
    res.q[rows] = evaluate_test_statistic(res.test_stat, ncond, ru.nll[pos], ru.params[pos, 0], res.mu_test)


def run_blocks(work, items: list[tuple[int, np.ndarray]], n_threads: int | None, n_toys: int, desc: str) -> None:
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


# ----------------------------------------------------------------------------- process pool
_POOLS: dict[int, object] = {}


def _pool(n: int):
    """A cached ``spawn`` process pool with ``n`` workers."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if n not in _POOLS:
        _POOLS[n] = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))
    return _POOLS[n]


def _worker(kwargs: dict) -> ToyResult:
    return run_toys(**kwargs)


def _run_toys_processes(
    model, mu, poi_index, toy_indices, base_seed, mass_key, hypothesis, mus, gen, test_stat,
    cfg, bs, stream, n_procs,
) -> ToyResult:
    """Split the canonical blocks of ``toy_indices`` into ``n_procs`` groups of whole blocks,
    run each in a worker process and reassemble the records in the requested order."""
    blocks = toy_indices // bs
    ub = np.unique(blocks)
    groups = [g for g in np.array_split(ub, n_procs) if g.size]
    rows_of = [np.flatnonzero(np.isin(blocks, g)) for g in groups]
    common = dict(
        model=model, mu=mu, poi_index=poi_index, base_seed=base_seed, mass_key=mass_key,
        hypothesis=hypothesis, mu_test=mus, gen_params=gen, test_stat=test_stat, config=cfg,
        block_size=bs, n_threads=1, stream=stream, n_procs=1,
    )
    jobs = [dict(common, toy_indices=toy_indices[r]) for r in rows_of]
    parts = list(_pool(n_procs).map(_worker, jobs))
    first = parts[0]
    kw = {f.name: getattr(first, f.name) for f in fields(ToyResult)}
    for name in ToyResult._PER_TOY:
        arr = getattr(first, name)
        out = np.empty((toy_indices.size,) + arr.shape[1:], dtype=arr.dtype)
        for r, part in zip(rows_of, parts):
            out[r] = getattr(part, name)
        kw[name] = out
    return ToyResult(**kw)
