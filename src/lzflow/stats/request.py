"""A request for one toy ensemble: which toys (seeds, indices), at which hypothesis, tested where.

:class:`ToyRequest` is what :func:`lzflow.stats.toys.run_toys` takes besides the model. A toy's
random numbers are a function of (``base_seed``, ``mass_key``, ``poi_index``, hypothesis index,
toy index) only (:mod:`lzflow.stats.toys`), with the hypothesis index h = 0 (S+B) or 1 (B-only)
(:data:`HYPOTHESES`). The request is checked when it is made: a bad hypothesis, test statistic,
random stream, toy index, block size or worker count raises a one-line :class:`ValueError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .fitresult import FitConfig
from .teststat import ONE_SIDED_TEST_STATISTICS, TEST_STATISTICS

__all__ = ["HYPOTHESES", "BONLY_POI_INDEX", "STREAMS", "COND_FITS", "ToyRequest", "check_cond_fits"]

#: hypothesis name → index used in the seed
HYPOTHESES = {"sb": 0, "b": 1}
#: POI index used for B-only toys shared across the POI grid
BONLY_POI_INDEX = 0
#: random-stream schemes of the toys (:class:`lzflow.stats.toys.ToySampler`)
STREAMS = ("counter", "seedsequence")


@dataclass(frozen=True, eq=False, kw_only=True)
class ToyRequest:
    """One ensemble of toys to generate and fit (all arguments by keyword).

    base_seed, mass_key, poi_index: the seed of the ensemble (with the hypothesis index).
    hypothesis: ``"sb"`` — generated at (μ, θ̂̂(μ)); ``"b"`` — at (0, θ̂̂(0)) (``mu`` is then only
        the default tested value).
    toy_indices: the toys to run (non-negative; any order, any subset — records come back in this
        order); stored as a read-only flat int64 array.
    mu: the POI value of the hypothesis.
    mu_test: POI values at which q is evaluated (default ``[mu]``; for B-only toys pass the whole
        grid — the unconditional fit is shared). For ``test_stat="q0"`` it is forced to [0]. Stored
        as the tested values, a float64 array.
    test_stat: ``"qtilde"``, ``"q"`` or ``"q0"`` (:mod:`lzflow.stats.teststat`).
    block_size: toys are generated and fitted in canonical blocks
        ``[k·block_size, (k+1)·block_size)`` of the toy index (see :func:`lzflow.stats.toys.run_toys`).
    observed: (counts, aux) used to fit θ̂̂ (default Asimov background-only).
    gen_params: explicit generation point [μ, θ] (overrides the θ̂̂ fit).
    config: fit settings (default :class:`FitConfig`); its ``n_threads`` is ignored (each block
        is fitted single-threaded).
    n_threads: worker threads over blocks in this process (default: the available cores).
    stream: ``"counter"`` (vectorised) or ``"seedsequence"`` (one numpy Generator per toy,
        binned toys only).
    n_procs: > 1 spreads the blocks over that many worker processes.
    cond_fits: ``"all"`` (a conditional fit at every tested μ) or ``"needed"`` (not where μ̂ > μ, whose
        q̃ and q are 0 whatever that fit gives; ``qtilde`` and ``q`` only: :mod:`lzflow.stats.toyfits`).
    """

    base_seed: int
    mass_key: int
    poi_index: int
    hypothesis: str
    toy_indices: np.ndarray
    mu: float
    mu_test: np.ndarray | None = None
    test_stat: str = "qtilde"
    block_size: int = 512
    observed: tuple[np.ndarray, np.ndarray] | None = None
    gen_params: np.ndarray | None = None
    config: FitConfig | None = None
    n_threads: int | None = None
    stream: str = "counter"
    n_procs: int = 1
    cond_fits: str = "all"

    def __post_init__(self) -> None:
        if self.hypothesis not in HYPOTHESES:
            raise ValueError(f"hypothesis must be one of {tuple(HYPOTHESES)}, got {self.hypothesis!r}")
        if self.test_stat not in TEST_STATISTICS:
            raise ValueError(f"unknown test statistic {self.test_stat!r}; choose from {TEST_STATISTICS}")
        if self.stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {self.stream!r}")
        if int(self.block_size) < 1:
            raise ValueError(f"block_size must be at least 1, got {self.block_size}")
        check_cond_fits(self.cond_fits, self.test_stat)
        if int(self.n_procs) < 1:
            raise ValueError(f"n_procs must be at least 1, got {self.n_procs}")
        if self.n_threads is not None and int(self.n_threads) < 1:
            raise ValueError(f"n_threads must be at least 1 (or None for all cores), got {self.n_threads}")
        indices = np.array(self.toy_indices, dtype=np.int64).ravel()
        if indices.size and indices.min() < 0:
            raise ValueError("toy indices must be non-negative")
        indices.flags.writeable = False
        set_field = object.__setattr__  # a frozen dataclass normalises its fields here only
        set_field(self, "toy_indices", indices)
        set_field(self, "mu_test", tested_mus(self.mu, self.mu_test, self.test_stat))
        for name in ("base_seed", "mass_key", "poi_index", "block_size", "n_procs"):
            set_field(self, name, int(getattr(self, name)))

    @property
    def hypothesis_index(self) -> int:
        """h = 0 (S+B) or 1 (B-only), the hypothesis entry of the seed."""
        return HYPOTHESES[self.hypothesis]

    @property
    def mu_generation(self) -> float:
        """The POI value at which the toys are generated: μ for S+B, 0 for B-only."""
        return float(self.mu) if self.hypothesis == "sb" else 0.0

    @property
    def fit_config(self) -> FitConfig:
        """The fit settings of one block: ``config`` (default :class:`FitConfig`), single-threaded."""
        return FitConfig(**{**(self.config or FitConfig()).__dict__, "n_threads": 1})


def tested_mus(mu: float, mu_test: float | Sequence[float] | np.ndarray | None, test_stat: str) -> np.ndarray:
    """The POI values at which q is evaluated: [0] for q0, else ``mu_test`` (default [mu])."""
    if test_stat == "q0":
        return np.zeros(1)
    if mu_test is None:
        return np.array([float(mu)])
    return np.atleast_1d(np.asarray(mu_test, dtype=np.float64))


#: which conditional fits a toy gets: every tested μ, or only where q can be non-zero (:mod:`lzflow.stats.toyfits`)
COND_FITS = ("all", "needed")


def check_cond_fits(cond_fits: str, test_stat: str) -> None:
    """Refuse an unknown ``cond_fits``, and ``"needed"`` with a statistic that does not vanish for μ̂ > μ."""
    if cond_fits not in COND_FITS:
        raise ValueError(f"cond_fits must be one of {COND_FITS}, got {cond_fits!r}")
    if cond_fits == "needed" and test_stat not in ONE_SIDED_TEST_STATISTICS:
        raise ValueError(f"cond_fits 'needed' with test statistic {test_stat!r}: only {ONE_SIDED_TEST_STATISTICS} "
                         "vanish for mu_hat > mu")
