"""Expected-limit bands, their grid-edge bounds and the power-constrained limit (PCL).

The one home of the band constants: :data:`BANDS` (N σ), :data:`BAND_QUANTILES` = Φ(N),
:data:`POWER_THRESHOLD` = Φ(−1) and :data:`ONE_SIGMA_CL` (the ±1σ content, the confidence level
of the p-value intervals of :mod:`lzflow.stats.pvalues`).

Expected limits: every B-only toy is one background-only experiment; its p-value curve over the
grid (its own q_μ compared with the S+B ensembles, and for CLs with the B-only ensemble) gives its
upper limit; the bands are the quantiles Φ(N) (2.275, 15.87, 50, 84.13, 97.725 %) of these
limits (linear interpolation between order statistics). A quantile whose order statistics include
an experiment below (above) the grid is only an **upper (lower) bound** — "≤ lowest tested μ" —
and is reported as such (:class:`Band`, status ``upper_bound``/``lower_bound``, value NaN), never
as a number. For CLs+b this is unavoidable below α: as μ → 0⁺ the p-value of an experiment tends
to P(μ̂' ≤ μ̂ | 0), uniform under B, so a fraction α of background-only experiments exclude every
μ > 0 (limit 0) and the quantiles below α (the −2σ band at 90 % CL) have no value to resolve.

The power-constrained limit (Cowan, Cranmer, Gross, Vitells, arXiv:1105.3166): the power of the
test of μ against background-only is M₀(μ) = P(μ_up ≤ μ | 0); μ_min is where it reaches π_crit,
i.e. the π_crit-quantile of the B-only limits (π_crit = Φ(−1) ≈ 0.16 ↔ the −1σ band), and
μ_PCL = max(μ_up, μ_min).

The order-statistics error of a quantile is half the distance between the values at ranks
Nq ± √(Nq(1−q)) (:func:`quantile_with_error`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .crossing import LIMIT_ABOVE, LIMIT_BELOW, LIMIT_UNDEFINED, Crossing
from .special import norm_cdf

__all__ = [
    "BANDS",
    "BAND_QUANTILES",
    "POWER_THRESHOLD",
    "ONE_SIGMA_CL",
    "quantile_with_error",
    "expected_bands",
    "Band",
    "band_quantiles",
    "power_constrained",
    "CONFIG_POWER_THRESHOLD",
    "order_statistics_error",
    "pcl_with_status",
]

#: expected-band labels (N σ)
BANDS = (-2, -1, 0, 1, 2)
#: quantile levels Φ(N) of the bands
BAND_QUANTILES = tuple(float(norm_cdf(n)) for n in BANDS)
#: π_crit of the PCL, Φ(−1) ≈ 0.1587 (arXiv:1105.3166: the −1σ band)
POWER_THRESHOLD = float(norm_cdf(-1.0))
#: the configured π_crit default (``stats.power_threshold``, :data:`lzflow.config.STATS_DEFAULTS`):
#: Φ(−1) to four digits (LZ's power constraint at −1σ; ../shared statistics conventions); here so
#: that merge reads it without importing the config module (and through it the spectra)
CONFIG_POWER_THRESHOLD = 0.1587
#: probability content of ±1σ: the confidence level of the p-value intervals
ONE_SIGMA_CL = float(norm_cdf(1.0) - norm_cdf(-1.0))


def quantile_with_error(x: np.ndarray, qs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles of ``x`` and their order-statistics 1σ errors (half the distance between the
    values at ranks N q ± √(N q (1 − q)))."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    qs = np.asarray(qs, dtype=np.float64)
    if x.size == 0:
        return np.full(qs.shape, np.nan), np.full(qs.shape, np.nan)
    return np.quantile(x, qs), order_statistics_error(x, qs)


def order_statistics_error(xs: np.ndarray, qs: Sequence[float] | np.ndarray) -> np.ndarray:
    """Order-statistics 1σ errors of the quantiles ``qs`` of the sorted, non-empty ``xs``: half
    the distance between the values at ranks N q ± √(N q (1 − q)) (clipped to the sample)."""
    n = xs.size
    qs = np.asarray(qs, dtype=np.float64)
    half = np.sqrt(n * qs * (1 - qs))
    lo = np.clip(np.floor(n * qs - half).astype(int), 0, n - 1)
    hi = np.clip(np.ceil(n * qs + half).astype(int), 0, n - 1)
    with np.errstate(invalid="ignore"):
        return 0.5 * (xs[hi] - xs[lo])


def expected_bands(
    limits: np.ndarray, bands: Sequence[int] = BANDS
) -> tuple[dict[int, float], dict[int, float]]:
    """Expected-limit bands {N: value} and order-statistics errors {N: error} from B-only
    experiments' limits (no grid-edge bookkeeping: see :func:`band_quantiles`)."""
    qs = [float(norm_cdf(n)) for n in bands]
    val, err = quantile_with_error(limits, qs)
    return ({int(n): float(v) for n, v in zip(bands, val)},
            {int(n): float(e) for n, e in zip(bands, err)})


@dataclass
class Band:
    """One quantile (level) of the B-only experiments' limits.

    status ``"ok"``: ``value`` is the quantile, ``error`` its order-statistics error;
    ``"upper_bound"``/``"lower_bound"``: the order statistics it needs include experiments below
    /above the grid, so the quantile is only known to be ≤/≥ ``bound`` (``value`` and ``error``
    NaN); ``"unresolved"``: no usable experiment, or both edges involved.
    """

    level: float
    value: float
    bound: float
    status: str
    error: float


def band_quantiles(limits: np.ndarray, codes: np.ndarray, levels: Sequence[float],
                   mu_lo: float, mu_hi: float) -> list[Band]:
    """Quantiles (numpy's linear rule, position (N−1)·level) of the experiments' limits with
    their grid-edge status (:class:`Band`). Experiments with code 3 (no usable point) are left
    out; below-grid ones count as ``mu_lo`` and above-grid ones as ``mu_hi`` for the bound."""
    codes = np.asarray(codes)
    use = codes != LIMIT_UNDEFINED
    x = np.where(codes == LIMIT_BELOW, mu_lo, np.where(codes == LIMIT_ABOVE, mu_hi, limits))[use]
    n = int(x.size)
    n_lo = int(np.sum(codes[use] == LIMIT_BELOW))
    n_hi = int(np.sum(codes[use] == LIMIT_ABOVE))
    out = []
    if n == 0:
        return [Band(float(p), np.nan, np.nan, "unresolved", np.nan) for p in levels]
    xs = np.sort(x)
    for p in levels:
        pos = (n - 1) * float(p)
        i = int(np.floor(pos))
        frac = pos - i
        j = min(i + 1, n - 1)
        val = float(xs[i] + frac * (xs[j] - xs[i]))
        low = i < n_lo
        high = i >= n - n_hi or (frac > 0 and j >= n - n_hi)
        if low and high:
            out.append(Band(float(p), np.nan, val, "unresolved", np.nan))
        elif low:
            out.append(Band(float(p), np.nan, val, "upper_bound", np.nan))
        elif high:
            out.append(Band(float(p), np.nan, val, "lower_bound", np.nan))
        else:
            # xs is sorted: its error directly (quantile_with_error would sort and interpolate again)
            out.append(Band(float(p), val, val, "ok", float(order_statistics_error(xs, [p])[0])))
    return out


def power_constrained(mu_up: float, mu_min: float) -> float:
    """μ_PCL = max(μ_up, μ_min) (arXiv:1105.3166)."""
    return float(max(mu_up, mu_min))


def pcl_with_status(observed: Crossing, floor: Band) -> tuple[float, str]:
    """μ_PCL = max(μ_up, μ_min) and whether it is a value (``"ok"``) or a bound: an observed limit
    below the grid is ≤ its first point, a floor may be a bound (:class:`Band`)."""
    if observed.status == "above_grid":
        return float("inf"), "lower_bound"
    if observed.status not in ("ok", "below_grid") or floor.status == "unresolved":
        return float("nan"), "unresolved"
    value = power_constrained(observed.mu, floor.bound)
    obs_exact = observed.status == "ok"
    if floor.status == "ok":
        return value, "ok" if obs_exact or floor.bound >= observed.mu else "upper_bound"
    if floor.status == "upper_bound":
        return value, "ok" if obs_exact and observed.mu >= floor.bound else "upper_bound"
    return value, "lower_bound"
