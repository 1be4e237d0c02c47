"""Per-toy records of one toy ensemble (:class:`ToyResult`): fits, test statistics, statuses.

The records are what :func:`lzflow.stats.toys.run_toys` returns and what a toy job writes
(:mod:`lzflow.toyjobs`): for every toy its index, auxiliary observables, event count, the
unconditional fit (μ̂, parameters, NLL, status, first-failure cause, strategy) and, at each
tested μ, the conditional fit and the test statistic q. Fit status codes are
:class:`lzflow.stats.fitresult.FitStatus`. Results of one ensemble made by several calls or jobs are
joined with :meth:`ToyResult.concat`; :meth:`ToyResult.to_arrays` / :meth:`ToyResult.from_arrays`
convert to and from flat arrays (``np.savez``).

With K > 0 shape systematics the records carry the α's like the θ's: the auxiliary observables
``aux = [a_θ, a_α]``, the unconditional fit's ``params_uncond = [μ̂, θ̂, α̂]``, and in addition
``alpha_cond`` ``(n, n_mu, K)``, α̂̂ at each tested μ (:data:`ToyResult.PER_TOY_SHAPE`, listed by
:attr:`ToyResult.per_toy`). For K = 0 ``alpha_cond`` is empty and the arrays are exactly those of
a rate-only model (:data:`ToyResult.PER_TOY`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Sequence

import numpy as np

from .fitresult import FitStatus

__all__ = ["ToyResult"]


@dataclass
class ToyResult:
    """Per-toy records of one (hypothesis, generation point) ensemble.

    ``mu_test`` (n_mu,) are the tested POI values; ``q``, ``nll_cond``, ``status_cond`` have shape
    ``(n_toys, n_mu)``. ``params_uncond`` are the unconditional best fits [μ̂, θ̂(, α̂)];
    ``alpha_cond`` ``(n_toys, n_mu, K)`` the conditional α̂̂ (K = 0: empty).
    Fit status codes are :class:`lzflow.stats.fitresult.FitStatus`.
    """

    hypothesis: str
    poi_index: int
    base_seed: int
    mass_key: int
    test_stat: str
    gen_params: np.ndarray  # (n_par,) generation point
    mu_test: np.ndarray  # (n_mu,)
    toy_index: np.ndarray  # (n,)
    aux: np.ndarray  # (n, n_bkg + K)
    n_events: np.ndarray  # (n,)
    mu_hat: np.ndarray  # (n,)
    params_uncond: np.ndarray  # (n, n_par)
    nll_uncond: np.ndarray  # (n,)
    status_uncond: np.ndarray  # (n,)
    first_failure_uncond: np.ndarray  # (n,)
    strategy_uncond: np.ndarray  # (n,)
    nll_cond: np.ndarray  # (n, n_mu)
    status_cond: np.ndarray  # (n, n_mu)
    first_failure_cond: np.ndarray  # (n, n_mu)
    strategy_cond: np.ndarray  # (n, n_mu)
    q: np.ndarray  # (n, n_mu)
    alpha_cond: np.ndarray | None = None  # (n, n_mu, K); None → empty (K = 0)

    #: names of the per-toy arrays (one row per toy), in file order
    PER_TOY: ClassVar[tuple[str, ...]] = (
        "toy_index", "aux", "n_events", "mu_hat", "params_uncond", "nll_uncond", "status_uncond",
        "first_failure_uncond", "strategy_uncond", "nll_cond", "status_cond",
        "first_failure_cond", "strategy_cond", "q",
    )
    #: per-toy arrays that exist only with shape systematics (K > 0)
    PER_TOY_SHAPE: ClassVar[tuple[str, ...]] = ("alpha_cond",)

    def __post_init__(self) -> None:
        if self.alpha_cond is None:
            self.alpha_cond = np.zeros((self.toy_index.size, np.asarray(self.mu_test).size, 0))

    @property
    def n_shape(self) -> int:
        return int(self.alpha_cond.shape[2])

    @property
    def per_toy(self) -> tuple[str, ...]:
        """The per-toy arrays of these records: :data:`PER_TOY`, plus :data:`PER_TOY_SHAPE` when K > 0."""
        return self.PER_TOY + (self.PER_TOY_SHAPE if self.n_shape else ())

    @classmethod
    def empty(cls, hypothesis: str, poi_index: int, base_seed: int, mass_key: int, test_stat: str,
              gen_params: np.ndarray, mu_test: np.ndarray, toy_indices: np.ndarray, n_bkg: int,
              n_shape: int = 0, n_gamma: int = 0) -> "ToyResult":
        """Records for ``toy_indices`` before any fit: NaN values, NOT_RUN statuses, aux at nominal
        (θ = 1, α = 0; the a_γ of template MC statistics, :mod:`lzflow.stats.mcstat`, 1)."""
        n, n_mu = toy_indices.size, mu_test.size
        aux = np.ones((n, n_bkg + n_gamma)) if not n_shape else np.tile(np.r_[np.ones(n_bkg), np.zeros(n_shape), np.ones(n_gamma)], (n, 1))
        return cls(
            hypothesis=hypothesis, poi_index=int(poi_index), base_seed=int(base_seed),
            mass_key=int(mass_key), test_stat=test_stat, gen_params=gen_params, mu_test=mu_test,
            toy_index=toy_indices.copy(), aux=aux, n_events=np.zeros(n),
            mu_hat=np.full(n, np.nan), params_uncond=np.full((n, 1 + n_bkg + n_shape), np.nan),
            nll_uncond=np.full(n, np.nan), status_uncond=np.full(n, FitStatus.NOT_RUN, np.int8),
            first_failure_uncond=np.zeros(n, np.int8), strategy_uncond=np.zeros(n, np.int8),
            nll_cond=np.full((n, n_mu), np.nan),
            status_cond=np.full((n, n_mu), FitStatus.NOT_RUN, np.int8),
            first_failure_cond=np.zeros((n, n_mu), np.int8),
            strategy_cond=np.zeros((n, n_mu), np.int8), q=np.full((n, n_mu), np.nan),
            alpha_cond=np.full((n, n_mu, n_shape), np.nan),
        )

    @property
    def n(self) -> int:
        return int(self.toy_index.size)

    @property
    def ok(self) -> np.ndarray:
        """``(n, n_mu)``: the fits q rests on converged — the unconditional one, and the conditional
        one unless it was not needed (μ̂ > μ with ``cond_fits: needed``: q = 0 without it)."""
        return (self.status_uncond[:, None] == FitStatus.CONVERGED) & np.isin(
            self.status_cond, (FitStatus.CONVERGED, FitStatus.NOT_NEEDED)
        )

    def failure_summary(self) -> dict:
        """Failure counts and fractions (final status and first-failure cause) per fit type; fits
        not needed (:attr:`FitStatus.NOT_NEEDED`, q = 0 by definition) are counted apart, as
        ``n_not_needed``, neither fits nor failures."""
        out: dict = {"hypothesis": self.hypothesis, "poi_index": self.poi_index, "n_toys": self.n}
        for label, st, ff, strat in (
            ("uncond", self.status_uncond, self.first_failure_uncond, self.strategy_uncond),
            ("cond", self.status_cond, self.first_failure_cond, self.strategy_cond),
        ):
            d: dict = {}
            for s in FitStatus:
                if s in (FitStatus.CONVERGED, FitStatus.NOT_NEEDED):
                    continue
                k = int(np.sum(st == s))
                if k:
                    d[f"final_{s.name}"] = k
                k = int(np.sum(ff == s))
                if k:
                    d[f"first_{s.name}"] = k
            n_not_needed = int(np.sum(st == FitStatus.NOT_NEEDED))
            n_fits = int(st.size) - n_not_needed
            n_fail = int(np.sum((st != FitStatus.CONVERGED) & (st != FitStatus.NOT_NEEDED)))
            n_retried = int(np.sum(ff != FitStatus.CONVERGED))
            d["n_fits"] = n_fits
            d["n_failed"] = n_fail
            d["n_retried"] = n_retried
            d["fraction_failed"] = n_fail / max(n_fits, 1)
            d["fraction_retried"] = n_retried / max(n_fits, 1)
            if n_not_needed:
                d["n_not_needed"] = n_not_needed
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
        names = cls.PER_TOY + cls.PER_TOY_SHAPE
        for name in names:
            kw[name] = np.concatenate([getattr(p, name) for p in parts])
        order = np.argsort(kw["toy_index"], kind="stable")
        for name in names:
            kw[name] = kw[name][order]
        return cls(**kw)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays (for ``np.savez``); metadata as 0-d arrays."""
        out = {name: getattr(self, name) for name in self.per_toy}
        out.update(
            hypothesis=np.array(self.hypothesis), poi_index=np.array(self.poi_index),
            base_seed=np.array(self.base_seed), mass_key=np.array(self.mass_key),
            test_stat=np.array(self.test_stat), gen_params=self.gen_params, mu_test=self.mu_test,
        )
        return out

    @classmethod
    def from_arrays(cls, d: dict) -> "ToyResult":
        kw = {name: np.asarray(d[name]) for name in cls.PER_TOY}
        if "alpha_cond" in d:
            kw["alpha_cond"] = np.asarray(d["alpha_cond"])
        return cls(
            hypothesis=str(d["hypothesis"]), poi_index=int(d["poi_index"]),
            base_seed=int(d["base_seed"]), mass_key=int(d["mass_key"]),
            test_stat=str(d["test_stat"]), gen_params=np.asarray(d["gen_params"]),
            mu_test=np.asarray(d["mu_test"]), **kw,
        )
