"""Two-sided (Feldman–Cousins-style) Neyman construction with the profile likelihood ratio.

The convention of LZ's results since 2022 (Baxter et al., "Recommended conventions for reporting
results from direct dark matter searches", arXiv:2105.00599, EPJC 81 (2021) 907), built on the
unified approach of Feldman & Cousins (arXiv:physics/9711021, PRD 57 (1998) 3873) with nuisance
parameters profiled (the "profile construction", RooStats' ``FeldmanCousins``):

* **Test statistic** (Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727, Eq. 11, t̃_μ), with μ̂
  restricted to the physical region μ̂ ≥ 0 and **no** one-sided zeroing:

      t_μ = −2 ln λ̃(μ) = 2 [NLL(μ, θ̂̂(μ)) − NLL(μ̂, θ̂)],   μ̂ ≥ 0,

  i.e. the q̃_μ of :mod:`lzflow.stats.teststat` without "0 for μ̂ > μ". Every toy record of a
  q̃_μ ensemble (:class:`~lzflow.stats.toyresult.ToyResult`, ``test_stat="qtilde"``) holds the
  bounded unconditional fit and the conditional fit at every tested μ (both are always run), so
  t_μ is computed from the same toys as the one-sided limit (:func:`two_sided_t`).
* **Belt.** For each μ_k of a grid, the critical value t_c(μ_k) is the CL quantile of t_{μ_k}
  under S+B toys generated at (μ_k, θ̂̂(μ_k)) (numpy's linear rule between order statistics); its
  MC error is the order-statistics error, half the distance between the values at ranks
  N·CL ± √(N·CL(1−CL)) (:func:`~lzflow.stats.bands.quantile_with_error`). The acceptance region
  of μ_k is {x : t_{μ_k}(x) ≤ t_c(μ_k)}; large t_μ means the data prefer another μ, above *or*
  below, so the ordering is two-sided and the intervals go from upper limits to two-sided
  intervals without the experimenter choosing ("flip-flopping", Feldman & Cousins §II).
* **Interval** of a dataset x: [μ_lo, μ_up] = {μ : t_μ(x) ≤ t_c(μ)} — its infimum and supremum
  (a set with holes from MC noise is not split; taking the supremum never undercovers, as for the
  one-sided limit, :mod:`lzflow.stats.crossing`). Between grid points f(μ) = √t_μ(x) − √t_c(μ)
  is interpolated linearly (√t_μ ≈ |μ − μ̂|/σ is linear in μ away from μ̂ in the asymptotic
  regime; interpolating t itself, convex in μ, shrinks the intervals and undercovers between grid
  points: −0.6 % at a grid step of 0.3 × the median limit, measured): the end between an accepted
  μ_a (f_a ≤ 0) and a rejected μ_b (f_b > 0) is μ_a + (μ_b − μ_a) f_a/(f_a − f_b) (μ_a when
  f_b = +inf). Accepted at the last grid point:
  μ_up = +inf ("above_grid"); accepted at a first grid point μ₀ = 0: μ_lo = 0 exactly ("zero", an
  upper limit); accepted at a first grid point μ₀ > 0: μ_lo ≤ μ₀ only ("below_grid"); nothing
  accepted: "empty". Points where t or t_c is NaN (no usable fit) are skipped.
* **Power constraint** (arXiv:1105.3166; Baxter et al. report the PCL, the issue asks for it at
  −1σ): μ_up,PCL = max(μ_up, μ_min), μ_min the π_crit = Φ(−1) quantile of the background-only
  μ_up distribution — applied to the upper end only.
* **Expected bands**: the quantiles Φ(N), N = −2 … 2, of μ_up over background-only pseudo-
  experiments (B-only toys evaluated on the whole grid), with the grid-edge bound rules of
  :func:`~lzflow.stats.bands.band_quantiles`; and the fraction of them with μ_lo > 0 (μ = 0
  rejected: "discovery-like" intervals, ≈ 1 − CL by construction when the grid starts at 0), with
  its Clopper–Pearson ±1σ interval.

Which toys count follows :mod:`lzflow.stats.quality`, except that the conditional fit always
enters t_μ (there is no μ̂ > μ shortcut): a toy is used at μ if its unconditional fit and its
conditional fit at μ converged (INFEASIBLE: t = +inf, valid) and t is not NaN; a background-only
experiment with an unusable t anywhere on the grid is left out of the bands (counted by cause).

One call for the merge stage: :func:`two_sided_result` → :class:`TwoSidedResult`
(``as_dict()``/``to_json()``). Running the toys on a model in memory: :mod:`lzflow.stats.belt_toys`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .bands import BAND_QUANTILES, BANDS, POWER_THRESHOLD, Band, band_quantiles, pcl_with_status, quantile_with_error
from .crossing import LIMIT_ABOVE, LIMIT_OK, LIMIT_UNDEFINED, Crossing
from .fitresult import FitStatus
from .pvalues import binomial_interval
from .quality import GOOD, cause_counts, record_field, toy_quality
from .toyresult import ToyResult

__all__ = [
    "SOURCE_TEST_STAT",
    "END_STATUS",
    "two_sided_t",
    "records_t",
    "Belt",
    "belt_from_toys",
    "interval_ends",
    "TwoSidedResult",
    "two_sided_result",
]

#: the toy records' test statistic whose fits t_μ is computed from (μ̂ bounded at 0)
SOURCE_TEST_STAT = "qtilde"
#: interval-end codes of :func:`interval_ends` → status names
END_OK, END_ZERO, END_BELOW, END_ABOVE, END_UNDEFINED, END_EMPTY = range(6)
END_STATUS = {END_OK: "ok", END_ZERO: "zero", END_BELOW: "below_grid", END_ABOVE: "above_grid",
              END_UNDEFINED: "undefined", END_EMPTY: "empty"}

Records = ToyResult | Mapping[str, np.ndarray]


def two_sided_t(nll_cond: np.ndarray, nll_uncond: np.ndarray, mu_hat: np.ndarray) -> np.ndarray:
    """t_μ = 2[NLL(μ, θ̂̂) − NLL(μ̂ ≥ 0, θ̂)] from the fits (shapes as
    :func:`~lzflow.stats.teststat.evaluate_test_statistic`: ``nll_cond`` ``(n,)`` or ``(n, n_mu)``).

    Negative values (rounding, or an incomplete conditional fit, then flagged by its status) are
    clipped at 0; a NaN μ̂ or unconditional NLL gives NaN; +inf (infeasible conditional fit) stays +inf.
    """
    nll_cond = np.asarray(nll_cond, dtype=np.float64)
    nll_uncond = np.asarray(nll_uncond, dtype=np.float64)
    mu_hat = np.asarray(mu_hat, dtype=np.float64)
    if nll_cond.ndim == nll_uncond.ndim + 1:
        nll_uncond, mu_hat = nll_uncond[..., None], mu_hat[..., None]
    with np.errstate(invalid="ignore"):
        t = 2.0 * (nll_cond - nll_uncond)
        t = np.where(t < 0, 0.0, t)
    return np.where(np.isnan(mu_hat) | np.isnan(nll_uncond), np.nan, t)


def _columns(records: Records, mus: np.ndarray, what: str) -> np.ndarray:
    mu_test = record_field(records, "mu_test").astype(np.float64).reshape(-1)
    cols = np.empty(mus.size, dtype=np.int64)
    for k, mu in enumerate(mus):
        hit = np.flatnonzero(np.isclose(mu_test, mu, rtol=1e-12, atol=0.0))
        if hit.size == 0:
            raise ValueError(f"{what}: tested mu values {mu_test.tolist()} lack mu = {float(mu)!r}; "
                             "expected the records to be evaluated there")
        cols[k] = hit[0]
    return cols


def _test_stat(records: Records, given: str | None, what: str) -> str:
    """The records' test statistic: their own ``test_stat`` (a :class:`ToyResult`) or ``given``
    (a toy file's arrays, whose header carries it); both present must agree."""
    own = records.get("test_stat") if isinstance(records, Mapping) else getattr(records, "test_stat", None)
    own = None if own is None else str(np.asarray(own))
    if own is not None and given is not None and own != given:
        raise ValueError(f"{what}: test_stat = {own!r} in the records, {given!r} given; expected them to agree")
    if own is None and given is None:
        raise ValueError(f"{what}: no test_stat in the records; pass test_stat={SOURCE_TEST_STAT!r} "
                         "(a toy file's header says which)")
    return own if own is not None else str(given)


def records_t(records: Records, mus: Sequence[float] | np.ndarray, what: str = "toys",
              test_stat: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(t ``(n, len(mus))``, cause codes ``(n, len(mus))``) of toy records at the values ``mus``.

    ``records``: a :class:`ToyResult` or a toy file's arrays of a ``"qtilde"`` ensemble (bounded
    μ̂; ``test_stat`` names it when the arrays do not); every value of ``mus`` must be one of its
    tested μ. Codes as
    :func:`~lzflow.stats.quality.toy_quality` (0 usable), with the conditional fit always used.
    """
    stat = _test_stat(records, test_stat, what)
    if stat != SOURCE_TEST_STAT:
        raise ValueError(f"{what}: test_stat = {stat!r}; the two-sided t_mu needs {SOURCE_TEST_STAT!r} "
                         "records (mu_hat bounded at 0)")
    mus = np.atleast_1d(np.asarray(mus, dtype=np.float64))
    cols = _columns(records, mus, what)
    nll_cond = np.atleast_2d(record_field(records, "nll_cond").astype(np.float64))
    n = nll_cond.shape[0]
    if np.any(np.atleast_2d(record_field(records, "status_cond")).reshape(n, -1)[:, cols] == FitStatus.NOT_NEEDED):
        raise ValueError(f"{what}: toys made for a one-sided limit (no fit at mu < mu_hat, cond_fits 'needed'); "
                         "t_mu needs the fit at every mu: rerun the toys with cond_fits 'all'")
    mu_hat = record_field(records, "mu_hat").astype(np.float64).reshape(n)
    t = two_sided_t(nll_cond[:, cols], record_field(records, "nll_uncond").astype(np.float64).reshape(n), mu_hat)
    view = {"q": t, "mu_hat": mu_hat, "mu_test": np.full(mus.size, np.inf),  # μ̂ > μ never: cond fit used
            "status_uncond": record_field(records, "status_uncond"),
            "status_cond": np.atleast_2d(record_field(records, "status_cond")).reshape(n, -1)[:, cols]}
    return t, toy_quality(view, "q")


@dataclass
class Belt:
    """The confidence belt on a POI grid: critical values t_c(μ_k) at confidence level ``cl``.

    mu ``(n_mu,)`` increasing, ≥ 0; t_crit / t_crit_err ``(n_mu,)`` (NaN where no toy is usable);
    n_toys / n_used: S+B toys generated and used per point; excluded: {cause: count} per point.
    """

    cl: float
    mu: np.ndarray
    t_crit: np.ndarray
    t_crit_err: np.ndarray
    n_toys: np.ndarray
    n_used: np.ndarray
    excluded: list[dict[str, int]] = field(default_factory=list)

    def accepts(self, t: np.ndarray) -> np.ndarray:
        """``t`` ``(..., n_mu)`` → whether each grid point's acceptance region holds it
        (t ≤ t_c; False where t or t_c is NaN)."""
        with np.errstate(invalid="ignore"):
            return np.asarray(t, dtype=np.float64) <= self.t_crit


def _check_grid(mu_grid: Sequence[float] | np.ndarray) -> np.ndarray:
    mus = np.asarray(mu_grid, dtype=np.float64).reshape(-1)
    if mus.size < 2 or not np.all(np.isfinite(mus)) or not np.all(np.diff(mus) > 0) or mus[0] < 0:
        raise ValueError(f"mu_grid = {mus.tolist()}: expected >= 2 finite, strictly increasing values >= 0")
    return mus


def belt_from_toys(mu_grid: Sequence[float] | np.ndarray, sb_toys: Sequence[Records], cl: float = 0.90,
                   test_stat: str | None = None) -> Belt:
    """The belt from ``sb_toys[k]``, the S+B ensemble generated at ``mu_grid[k]`` (evaluated at
    least there): t_c(μ_k) = the ``cl`` quantile of its usable t_{μ_k} (module docstring)."""
    mus = _check_grid(mu_grid)
    if not 0.0 < cl < 1.0:
        raise ValueError(f"cl = {cl!r}: expected a confidence level strictly between 0 and 1")
    if len(sb_toys) != mus.size:
        raise ValueError(f"sb_toys: {len(sb_toys)} ensembles for {mus.size} grid points; expected one per point")
    tc, err = np.full(mus.size, np.nan), np.full(mus.size, np.nan)
    n_toys, n_used = np.zeros(mus.size, np.int64), np.zeros(mus.size, np.int64)
    excluded = []
    for k, (mu, rec) in enumerate(zip(mus, sb_toys)):
        t, codes = records_t(rec, [mu], f"sb_toys[{k}]", test_stat)
        use = codes[:, 0] == GOOD
        n_toys[k], n_used[k] = t.shape[0], int(use.sum())
        excluded.append(cause_counts(codes[:, 0]))
        if n_used[k]:
            v, e = quantile_with_error(t[use, 0], [cl])
            tc[k], err[k] = v[0], e[0]
    return Belt(float(cl), mus, tc, err, n_toys, n_used, excluded)


def _root(t: np.ndarray) -> np.ndarray:
    """√t, the interpolation variable of the interval ends (NaN stays NaN, +inf stays +inf)."""
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.asarray(t, dtype=np.float64))


def _end(mu_a, mu_b, f_a, f_b):
    """Where f, linear between (μ_a, f_a ≤ 0) and (μ_b, f_b > 0), crosses 0 (μ_a if f_b = inf)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(np.isfinite(f_b), f_a / (f_a - f_b), 0.0)
        return mu_a + (mu_b - mu_a) * frac


def interval_ends(belt: Belt, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(μ_lo, μ_up, lo codes, up codes) ``(n,)`` of datasets with t_μ ``(n, n_mu)`` on the belt's
    grid (codes: :data:`END_STATUS`; rules in the module docstring). Vectorised."""
    mu = belt.mu
    t = np.atleast_2d(np.asarray(t, dtype=np.float64))
    n, nm = t.shape
    if nm != mu.size:
        raise ValueError(f"t has {nm} columns; expected one per grid point ({mu.size})")
    f = _root(t) - _root(belt.t_crit)[None, :]
    valid = ~np.isnan(f)
    acc = valid & (f <= 0.0)
    any_valid, any_acc = valid.any(axis=1), acc.any(axis=1)
    lo, up = np.full(n, np.nan), np.full(n, np.nan)
    lo_code = np.where(any_valid, END_EMPTY, END_UNDEFINED).astype(np.int8)
    up_code = lo_code.copy()
    rows = np.flatnonzero(any_acc)
    if rows.size == 0:
        return lo, up, lo_code, up_code
    idx = np.arange(nm)
    pos = np.where(valid, idx, nm)  # next valid point at or after each position (nm: none)
    nxt = np.minimum.accumulate(pos[:, ::-1], axis=1)[:, ::-1]
    pre = np.maximum.accumulate(np.where(valid, idx, -1), axis=1)  # previous valid at or before
    a_up = nm - 1 - np.argmax(acc[rows, ::-1], axis=1)
    a_lo = np.argmax(acc[rows], axis=1)
    b_up = np.where(a_up + 1 < nm, nxt[rows, np.minimum(a_up + 1, nm - 1)], nm)
    b_lo = np.where(a_lo > 0, pre[rows, np.maximum(a_lo - 1, 0)], -1)
    fr = f[rows]
    above = b_up >= nm
    up_r = np.where(above, np.inf, _end(mu[a_up], mu[np.minimum(b_up, nm - 1)], fr[np.arange(rows.size), a_up],
                                        fr[np.arange(rows.size), np.minimum(b_up, nm - 1)]))
    first = b_lo < 0
    lo_r = np.where(first, mu[a_lo], _end(mu[a_lo], mu[np.maximum(b_lo, 0)], fr[np.arange(rows.size), a_lo],
                                          fr[np.arange(rows.size), np.maximum(b_lo, 0)]))
    up[rows], lo[rows] = up_r, lo_r
    up_code[rows] = np.where(above, END_ABOVE, END_OK)
    lo_code[rows] = np.where(first, np.where(mu[a_lo] == 0.0, END_ZERO, END_BELOW), END_OK)
    return lo, up, lo_code, up_code


def _observed_up_error(belt: Belt, t_obs: np.ndarray, up: float) -> float:
    """Error of the observed μ_up propagated from the critical values' errors at its bracket."""
    f = _root(t_obs) - _root(belt.t_crit)
    acc = np.flatnonzero(~np.isnan(f) & (f <= 0))
    if not np.isfinite(up) or acc.size == 0:
        return float("nan")
    a = int(acc[-1])
    later = np.flatnonzero(~np.isnan(f[a + 1:]))
    if later.size == 0 or not np.isfinite(f[a + 1 + later[0]]):
        return float("nan")
    b = a + 1 + int(later[0])
    d = (f[a] - f[b]) ** 2
    dmu = belt.mu[b] - belt.mu[a]
    with np.errstate(divide="ignore", invalid="ignore"):
        e = belt.t_crit_err / (2.0 * _root(belt.t_crit))  # δ√t_c
    return float(abs(dmu) * math.hypot(f[b] / d * e[a], f[a] / d * e[b]))


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


@dataclass
class TwoSidedResult:
    """Everything the two-sided construction reports for one mass (module docstring).

    belt: the :class:`Belt`; t_obs ``(n_mu,)`` or None; observed: {"mu_lo", "mu_lo_status",
    "mu_up", "mu_up_err", "mu_up_status", "pcl_mu_up", "pcl_status"} or None; bands {N: :class:`Band`}
    of the B-only μ_up; pcl_floor: the power-threshold quantile (:class:`Band`); lo_b, up_b,
    lo_code_b, up_code_b ``(n_b,)``: each background-only experiment's interval (NaN / undefined for
    the experiments left out); lo_positive: (fraction of experiments with μ_lo > 0, its
    Clopper–Pearson ±1σ lo, hi), None when the grid does not start at μ = 0.
    """

    belt: Belt
    power_threshold: float
    t_obs: np.ndarray | None
    observed: dict[str, Any] | None
    bands: dict[int, Band]
    pcl_floor: Band
    lo_b: np.ndarray = field(repr=False)
    up_b: np.ndarray = field(repr=False)
    lo_code_b: np.ndarray = field(repr=False)
    up_code_b: np.ndarray = field(repr=False)
    n_experiments: int = 0
    excluded_experiments: dict[str, int] = field(default_factory=dict)
    lo_positive: tuple[float, float, float] | None = None

    @property
    def expected(self) -> dict[int, float]:
        """{N: median-type quantile of μ_up} (NaN where only a bound is known)."""
        return {n: b.value for n, b in self.bands.items()}

    def as_dict(self) -> dict[str, Any]:
        """Plain types (non-finite floats kept: merge's writer turns them into null and lists them)."""
        b = self.belt
        lp = self.lo_positive
        return {
            "construction": "two_sided", "test_stat": "t_mu (two-sided, mu_hat >= 0)",
            "reference": "Baxter et al., arXiv:2105.00599; Feldman & Cousins, arXiv:physics/9711021",
            "cl": b.cl, "mu_grid": b.mu.tolist(),
            "belt": {"t_crit": b.t_crit.tolist(), "t_crit_err": b.t_crit_err.tolist(),
                     "n_toys": b.n_toys.tolist(), "n_used": b.n_used.tolist(), "excluded": b.excluded},
            "t_obs": None if self.t_obs is None else np.asarray(self.t_obs, float).tolist(),
            "observed": self.observed,
            "expected_mu_up": {str(n): bd.value for n, bd in self.bands.items()},
            "expected_mu_up_err": {str(n): bd.error for n, bd in self.bands.items()},
            "expected_status": {str(n): bd.status for n, bd in self.bands.items()},
            "expected_bound_mu_up": {str(n): bd.bound for n, bd in self.bands.items()},
            "power_threshold": self.power_threshold, "pcl_floor_mu_up": self.pcl_floor.bound,
            "pcl_floor_status": self.pcl_floor.status,
            "n_experiments": self.n_experiments, "excluded_experiments": self.excluded_experiments,
            "experiments_mu_up": {s: int(np.sum(self.up_code_b == c)) for c, s in END_STATUS.items()},
            "experiments_mu_lo": {s: int(np.sum(self.lo_code_b == c)) for c, s in END_STATUS.items()},
            "mu_lo_positive_fraction": None if lp is None else lp[0],
            "mu_lo_positive_interval": None if lp is None else [lp[1], lp[2]],
        }

    def to_json(self) -> str:
        """Strict JSON (non-finite numbers → null) of :meth:`as_dict`."""
        return json.dumps(_finite_or_none(self.as_dict()), allow_nan=False, sort_keys=True)


def _observed(belt: Belt, t_obs: np.ndarray, floor: Band) -> dict[str, Any]:
    lo, up, lc, uc = (v[0] for v in interval_ends(belt, t_obs[None, :]))
    status = {END_OK: "ok", END_ABOVE: "above_grid"}.get(int(uc), "undefined")
    pcl, pcl_status = pcl_with_status(Crossing(float(up), 0.0, status), floor)
    return {"mu_lo": float(lo), "mu_lo_status": END_STATUS[int(lc)], "mu_up": float(up),
            "mu_up_err": _observed_up_error(belt, t_obs, float(up)), "mu_up_status": END_STATUS[int(uc)],
            "pcl_mu_up": pcl, "pcl_status": pcl_status}


def two_sided_result(mu_grid: Sequence[float] | np.ndarray, sb_toys: Sequence[Records], b_toys: Records,
                     observed_t: np.ndarray | None = None, cl: float = 0.90,
                     power_threshold: float = POWER_THRESHOLD, test_stat: str | None = None) -> TwoSidedResult:
    """The two-sided construction of one mass from toy records (module docstring).

    mu_grid: increasing μ ≥ 0 (start it at 0 for μ_lo and the fraction with μ_lo > 0 to be
    resolved); sb_toys[k]: the S+B ensemble generated at mu_grid[k]; b_toys: background-only toys
    evaluated at every grid value (the pseudo-experiments of the bands); observed_t: the observed
    data's t_μ on the grid (:func:`lzflow.stats.belt_toys.observed_t`), or None; test_stat: the
    records' test statistic when they do not carry it (toy files: their header's), ``"qtilde"``.
    """
    if not 0.0 < power_threshold < 1.0:
        raise ValueError(f"power_threshold = {power_threshold!r}: expected a probability strictly between 0 and 1")
    belt = belt_from_toys(mu_grid, sb_toys, cl, test_stat)
    mu = belt.mu
    t_b, codes_b = records_t(b_toys, mu, "b_toys", test_stat)
    rows = np.all(codes_b == GOOD, axis=1)
    n_b = rows.size
    lo_b, up_b = np.full(n_b, np.nan), np.full(n_b, np.nan)
    lo_code_b = np.full(n_b, END_UNDEFINED, np.int8)
    up_code_b = lo_code_b.copy()
    lo_b[rows], up_b[rows], lo_code_b[rows], up_code_b[rows] = interval_ends(belt, t_b[rows])
    used = up_code_b != END_UNDEFINED
    band_codes = np.where(up_code_b == END_OK, LIMIT_OK, np.where(up_code_b == END_ABOVE, LIMIT_ABOVE, LIMIT_UNDEFINED))
    *bands, floor = band_quantiles(up_b, band_codes, [*BAND_QUANTILES, power_threshold], mu[0], mu[-1])
    bad = codes_b[~rows]
    first_bad = bad[np.arange(bad.shape[0]), np.argmax(bad != GOOD, axis=1)] if bad.size else bad.ravel()
    excluded = cause_counts(first_bad)
    n_empty = int(np.sum(up_code_b == END_EMPTY))
    if n_empty:
        excluded["empty_interval"] = n_empty
    lo_positive = None
    n_used = int(np.sum(used & (up_code_b != END_EMPTY)))
    if mu[0] == 0.0 and n_used:
        k = int(np.sum(lo_code_b == END_OK))
        ci = binomial_interval(k, n_used)
        lo_positive = (k / n_used, float(ci[0]), float(ci[1]))
    t_obs = None if observed_t is None else np.asarray(observed_t, dtype=np.float64).reshape(-1)
    if t_obs is not None and t_obs.size != mu.size:
        raise ValueError(f"observed_t has {t_obs.size} values; expected one per grid point ({mu.size})")
    observed = None if t_obs is None else _observed(belt, t_obs, floor)
    return TwoSidedResult(belt, float(power_threshold), t_obs, observed, dict(zip(BANDS, bands)), floor,
                          lo_b, up_b, lo_code_b, up_code_b, n_used, excluded, lo_positive)
