"""Toy-based hypothesis tests: the functions that run the fits and toys of a limit or a
discovery test, on a model in memory (:func:`toy_limits`, :func:`discovery_potential_toys`;
:func:`observed_q`: the observed data's test statistic on a POI grid).

The statistics they use live in one module per concern (conventions: ``docs/method.md``,
"Statistics conventions"):

* :mod:`~lzflow.stats.pvalues` — CLs+b, CLb, CLs of toy ensembles (:class:`Ensemble`) with
  Clopper–Pearson errors (:func:`binomial_interval`), p-value curves and tables;
* :mod:`~lzflow.stats.quality` — which toys count: the exclusion policy of failed fits and its
  cause codes (:func:`toy_quality`, :func:`cause_counts`);
* :mod:`~lzflow.stats.crossing` — inverting p-value curves at α (log-linear in ln p, with the
  propagated error; :func:`crossing`, :func:`limits_from_curves`);
* :mod:`~lzflow.stats.bands` — :data:`BANDS`, :data:`BAND_QUANTILES`, :data:`POWER_THRESHOLD`
  = Φ(−1), :data:`ONE_SIGMA_CL`; expected bands and their grid-edge bounds (:class:`Band`), the
  power-constrained limit (arXiv:1105.3166, :func:`pcl_with_status`);
* :mod:`~lzflow.stats.inversion` — a grid of toys (:class:`ToyGrid`) inverted into observed limit,
  bands and PCL floor (:func:`invert_toys`), bootstrap MC errors (:func:`bootstrap_errors`),
  grid-edge extension (:func:`refine_toy_grid`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .bands import BANDS, POWER_THRESHOLD, pcl_with_status
from .fit import BatchedFitter
from .fitresult import FitConfig
from .inversion import MAX_REFINE_ROUNDS, ToyGrid, bootstrap_errors, invert_toys, refine_toy_grid, toy_grid
from .model import BinnedModel
from .pvalues import Ensemble, pvalue_table
from .quality import cause_counts
from .special import norm_isf
from .teststat import mu_lower_bound, evaluate_test_statistic
from .request import ToyRequest
from .toys import BONLY_POI_INDEX, ToyResult, observed_asimov, run_toys

__all__ = [
    "observed_q",
    "ToyLimits",
    "toy_limits",
    "DiscoveryToys",
    "discovery_potential_toys",
]


def observed_q(
    model: BinnedModel,
    counts: np.ndarray,
    aux: np.ndarray,
    mu_grid: Sequence[float],
    test_stat: str = "qtilde",
    config: FitConfig | None = None,
) -> tuple[np.ndarray, dict]:
    """Test statistic of one dataset at every grid point; returns (q ``(n_mu,)``, fit info)."""
    cfg = config or FitConfig()
    fitter = BatchedFitter(model, FitConfig(**{**cfg.__dict__, "n_threads": 1}))
    lower = mu_lower_bound(test_stat)
    c = np.asarray(counts, float).ravel()[None, :]
    a = np.asarray(aux, float).ravel()[None, :]
    ru = fitter.fit(c, a, mu_fixed=None, mu_lower=lower)
    mus = np.asarray(mu_grid, float)
    qs = np.empty(mus.size)
    statuses = []
    for k, mu in enumerate(mus):
        mu_eval = 0.0 if test_stat == "q0" else float(mu)
        init = ru.params.copy()
        init[:, 0] = mu_eval
        rc = fitter.fit(c, a, mu_fixed=mu_eval, init=init)
        qs[k] = evaluate_test_statistic(test_stat, rc.nll, ru.nll, ru.params[:, 0], mu_eval)[0]
        statuses.append(int(rc.status[0]))
    return qs, {"mu_hat": float(ru.params[0, 0]), "status_uncond": int(ru.status[0]),
                "status_cond": statuses}


@dataclass
class ToyLimits:
    """Toy-based upper limits on μ and everything needed to report them.

    observed/observed_err/observed_status: inversion of the observed p-value curve (error:
    bootstrap if ``n_boot`` > 0, else propagated); expected/expected_err: bands {N: μ_N} from
    B-only experiments (NaN where only a bound is known: expected_status / expected_bound, see
    :class:`~lzflow.stats.bands.Band`); pcl: power-constrained observed limit (status pcl_status) with floor
    ``pcl_floor`` (the ``power_threshold`` quantile of the B-only limits, status
    pcl_floor_status); pvalues: per grid point (clsb, clsb_err, clb, clb_err, cls, cls_err and the
    Clopper–Pearson bounds); failures: fit failure summaries per ensemble (hypothesis, POI index)
    with causes; n_excluded: toys left out per ensemble (``sb<poi index>``, ``b@<grid position>``);
    excluded: the same with causes; limits_b_outside: B-only experiments whose limit is below the
    first / above the last grid point; refinement: the POI points added beyond the grid edges;
    mu_grid: the final grid (configured + added points), poi_index: the seed index of each point;
    grid: the :class:`ToyGrid` (to invert it with the other method, :func:`invert_toys`).
    """

    cl: float
    method: str
    test_stat: str
    mu_grid: np.ndarray
    q_obs: np.ndarray
    pvalues: dict[str, np.ndarray]
    observed: float
    observed_err: float
    observed_status: str
    expected: dict[int, float]
    expected_err: dict[int, float]
    pcl: float
    pcl_floor: float
    power_threshold: float
    limits_b: np.ndarray
    failures: list[dict]
    n_excluded: dict[str, int]
    no_sensitivity: bool = False
    limits_b_outside: dict[str, int] = field(default_factory=dict)
    ensembles_sb: list[ToyResult] = field(default_factory=list, repr=False)
    ensemble_b: ToyResult | None = field(default=None, repr=False)
    expected_status: dict[int, str] = field(default_factory=dict)
    expected_bound: dict[int, float] = field(default_factory=dict)
    pcl_status: str = "ok"
    pcl_floor_status: str = "ok"
    excluded: dict[str, Any] = field(default_factory=dict)
    refinement: list[dict] = field(default_factory=list)
    poi_index: np.ndarray | None = None
    error_method: str = "propagated"
    expected_err_order_stats: dict[int, float] = field(default_factory=dict)
    grid: ToyGrid | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {
            "cl": self.cl, "method": self.method, "test_stat": self.test_stat,
            "mu_grid": self.mu_grid.tolist(), "q_obs": self.q_obs.tolist(),
            "pvalues": {k: np.asarray(v).tolist() for k, v in self.pvalues.items()},
            "observed": self.observed, "observed_err": self.observed_err,
            "observed_status": self.observed_status,
            "expected": {str(k): v for k, v in self.expected.items()},
            "expected_err": {str(k): v for k, v in self.expected_err.items()},
            "expected_status": {str(k): v for k, v in self.expected_status.items()},
            "expected_bound": {str(k): v for k, v in self.expected_bound.items()},
            "pcl": self.pcl, "pcl_status": self.pcl_status, "pcl_floor": self.pcl_floor,
            "pcl_floor_status": self.pcl_floor_status, "power_threshold": self.power_threshold,
            "failures": self.failures, "n_excluded": self.n_excluded, "excluded": self.excluded,
            "no_sensitivity": self.no_sensitivity, "limits_b_outside": self.limits_b_outside,
            "refinement": self.refinement, "error_method": self.error_method,
        }


def toy_limits(
    model: BinnedModel,
    mu_grid: Sequence[float],
    n_toys_sb: int,
    n_toys_b: int,
    base_seed: int,
    mass_key: int,
    cl: float = 0.90,
    method: str = "clsb",
    test_stat: str = "qtilde",
    observed: tuple[np.ndarray, np.ndarray] | None = None,
    power_threshold: float = POWER_THRESHOLD,
    interpolation: str = "loglinear",
    n_boot: int = 0,
    config: FitConfig | None = None,
    block_size: int = 512,
    n_threads: int | None = None,
    stream: str = "counter",
    keep_ensembles: bool = False,
    n_procs: int = 1,
    max_refine_rounds: int = MAX_REFINE_ROUNDS,
) -> ToyLimits:
    """Toy-based observed limit, expected bands and PCL on a POI grid (:func:`invert_toys`) — the
    procedure of ``lzflow merge``, on a model in memory.

    S+B toys: ``n_toys_sb`` per grid point (poi_index = grid index, hypothesis 0); B-only toys:
    ``n_toys_b`` shared across the grid (poi_index :data:`BONLY_POI_INDEX`, hypothesis 1).
    ``observed`` = (counts, aux), default the Asimov background-only dataset; toys are generated
    at its θ̂̂(μ). Grid edges are extended (:func:`refine_toy_grid`, at most
    ``max_refine_rounds`` rounds, 0 = never) with S+B toys at new seed indices len(grid), … .
    ``n_boot`` > 0: bootstrap errors (:func:`bootstrap_errors`) for the bands, the observed
    limit and the PCL (else order statistics and propagated binomial errors).
    """
    if test_stat == "q0":
        raise ValueError("upper limits use 'qtilde' or 'q'")
    alpha = 1.0 - cl
    mus = np.asarray(mu_grid, dtype=np.float64)
    if mus.size < 2 or not np.all(np.diff(mus) > 0):
        raise ValueError("mu_grid must have ≥ 2 strictly increasing values")
    if mus[0] <= 0:
        raise ValueError(f"mu_grid must be positive (q̃ at μ = 0 is 0 for every dataset); got {mus[0]:g}")
    if model.signal_is_empty:
        inf = float("inf")
        return ToyLimits(cl, method, test_stat, mus, np.zeros(mus.size), {}, inf, float("nan"),
                         "no_sensitivity", {n: inf for n in BANDS}, {n: float("nan") for n in BANDS},
                         inf, inf, power_threshold, np.zeros(0), [], {}, no_sensitivity=True)
    obs = observed_asimov(model) if observed is None else observed
    ensemble = dict(base_seed=base_seed, mass_key=mass_key, test_stat=test_stat, config=config,
                    block_size=block_size, n_threads=n_threads, stream=stream, observed=obs, n_procs=n_procs)

    def sb_toys(k: int, mu: float) -> ToyResult:
        return run_toys(model, ToyRequest(poi_index=int(k), hypothesis="sb", mu=float(mu),
                                          toy_indices=np.arange(n_toys_sb), **ensemble))

    def b_toys(mu_test: np.ndarray) -> ToyResult:
        return run_toys(model, ToyRequest(poi_index=BONLY_POI_INDEX, hypothesis="b", mu=0.0, mu_test=mu_test,
                                          toy_indices=np.arange(n_toys_b), **ensemble))

    sb_res = [sb_toys(k, mu) for k, mu in enumerate(mus)]
    b_res = b_toys(mus)
    q_obs, _info = observed_q(model, obs[0], obs[1], mus, test_stat, config)
    grid = toy_grid(mus, q_obs, sb_res, b_res, test_stat)
    extra: list[ToyResult] = []

    def add_points(mu_new: np.ndarray, idx_new: np.ndarray) -> ToyGrid:
        sb_new = [sb_toys(k, mu) for mu, k in zip(mu_new, idx_new)]
        b_new = b_toys(mu_new)
        if not (np.array_equal(b_new.aux, b_res.aux) and np.array_equal(b_new.n_events, b_res.n_events)):
            raise RuntimeError("B-only toys could not be reproduced from their seeds")
        extra.extend(sb_new + [b_new])
        q_new, _ = observed_q(model, obs[0], obs[1], mu_new, test_stat, config)
        return toy_grid(mu_new, q_new, sb_new, b_new, test_stat, idx_new)

    grid, rounds = refine_toy_grid(grid, add_points, alpha, ("clsb", "cls"), power_threshold, interpolation,
                                   max_refine_rounds)
    table = pvalue_table(grid.q_obs, grid.sb, grid.b)
    inv = invert_toys(grid, alpha, method, power_threshold, interpolation, table)
    c = inv.observed
    exp, exp_err = inv.expected, inv.expected_err
    obs_err, error_method = c.error, "propagated"
    pcl, pcl_status = pcl_with_status(c, inv.pcl_floor_band)
    if n_boot > 0:
        boot = bootstrap_errors(grid, alpha, (method,), power_threshold, n_boot,
                                [int(base_seed), int(mass_key), 999], interpolation)[method]
        exp_err = {n: (boot["expected"][n] if inv.bands[n].status == "ok" else float("nan")) for n in BANDS}
        obs_err, error_method = boot["observed"], f"bootstrap ({n_boot})"
    failures = [r.failure_summary() for r in sb_res] + [b_res.failure_summary()]
    failures += [r.failure_summary() for r in extra]
    sb_ens, b_ens = grid.sb, grid.b
    n_excl = {f"sb{int(k)}": e.n_excluded for k, e in zip(grid.poi_index, sb_ens)}
    n_excl.update({f"b@{k}": e.n_excluded for k, e in enumerate(b_ens)})
    excluded = {"sb": {int(k): cause_counts(c_) for k, c_ in zip(grid.poi_index, grid.cause_sb)},
                "experiments": inv.excluded_experiments, "n_experiments": inv.n_experiments}
    return ToyLimits(
        cl=cl, method=method, test_stat=test_stat, mu_grid=grid.mu, q_obs=grid.q_obs, pvalues=table,
        observed=c.mu, observed_err=obs_err, observed_status=c.status, expected=exp,
        expected_err=exp_err, pcl=pcl, pcl_floor=inv.pcl_floor,
        power_threshold=power_threshold, limits_b=inv.limits_b, failures=failures, n_excluded=n_excl,
        ensembles_sb=sb_res if keep_ensembles else [], ensemble_b=b_res if keep_ensembles else None,
        limits_b_outside=inv.outside,
        expected_status={n: bd.status for n, bd in inv.bands.items()},
        expected_bound={n: bd.bound for n, bd in inv.bands.items()},
        pcl_status=pcl_status, pcl_floor_status=inv.pcl_floor_band.status, excluded=excluded,
        refinement=rounds, poi_index=grid.poi_index, error_method=error_method,
        expected_err_order_stats=inv.expected_err, grid=grid,
    )


@dataclass
class DiscoveryToys:
    """Toy-based median discovery significance vs μ and the μ reaching ``z``.

    z_median_asymptotic: √(median q₀) of S+B toys (p₀ from the asymptotic q₀ distribution);
    z_median_toys: Φ⁻¹(1 − p₀) with p₀ = P(q₀ ≥ median q₀ | B-only toys) (NaN where the B-only
    ensemble has no toy that far out); mu_z_*: smallest μ reaching z (linear interpolation of Z
    between grid points; inf if not reached).
    """

    z: float
    mu_grid: np.ndarray
    median_q0: np.ndarray
    z_median_asymptotic: np.ndarray
    z_median_toys: np.ndarray
    mu_z_asymptotic: float
    mu_z_toys: float
    n_toys_b: int


def _first_reach(mu: np.ndarray, zs: np.ndarray, z: float) -> float:
    ok = np.isfinite(zs) & (zs >= z)
    if not ok.any():
        return float("inf")
    k = int(np.argmax(ok))
    if k == 0:
        return float(mu[0])
    z0, z1 = zs[k - 1], zs[k]
    if not np.isfinite(z0):
        return float(mu[k])
    return float(mu[k - 1] + (mu[k] - mu[k - 1]) * (z - z0) / (z1 - z0))


def discovery_potential_toys(model: BinnedModel, mu_grid: Sequence[float], n_toys_sb: int, n_toys_b: int,
                             base_seed: int, mass_key: int, z: float = 3.0,
                             observed: tuple[np.ndarray, np.ndarray] | None = None, **run_kw) -> DiscoveryToys:
    """Median discovery significance from toys (q₀ of S+B toys at each μ, p₀ from B-only toys).

    A 3σ p-value is 1.35e-3: ``n_toys_b`` ≳ 10⁵ resolves it (cheap with the batched fitter).
    """
    mus = np.asarray(mu_grid, dtype=np.float64)
    obs = observed_asimov(model) if observed is None else observed
    ensemble = dict(base_seed=base_seed, mass_key=mass_key, test_stat="q0", observed=obs, **run_kw)
    b = run_toys(model, ToyRequest(poi_index=BONLY_POI_INDEX, hypothesis="b", mu=0.0,
                                   toy_indices=np.arange(n_toys_b), **ensemble))
    eb = Ensemble(b.q[:, 0])
    med = np.empty(mus.size)
    for k, mu in enumerate(mus):
        r = run_toys(model, ToyRequest(poi_index=k, hypothesis="sb", mu=float(mu),
                                       toy_indices=np.arange(n_toys_sb), **ensemble))
        med[k] = np.nanmedian(r.q[:, 0])
    p0, _ = eb.tail(med)
    with np.errstate(divide="ignore"):
        z_toys = np.where(p0 > 0, norm_isf(p0), np.nan)
    z_asym = np.sqrt(np.maximum(med, 0.0))
    return DiscoveryToys(z, mus, med, z_asym, z_toys, _first_reach(mus, z_asym, z),
                         _first_reach(mus, z_toys, z), eb.n)
