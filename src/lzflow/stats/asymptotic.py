"""Asymptotic (Asimov) formulae of Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727.

Asimov dataset (§5): counts = ν(μ', θ) unrounded, aux = θ. For limits the background-only Asimov
dataset is built at (0, θ̂̂(0)) with θ̂̂(0) fitted to the observed data (as pyhf does), and
σ² = μ² / q_{μ,A} with q_{μ,A} the test statistic evaluated on it (Eq. 32).

p-values for q̃_μ (Eqs. 65–67, with √q_{μ,A} = μ/σ):

    CLs+b = p_μ = 1 − Φ(√q̃)                          q̃ ≤ q_A
                = 1 − Φ((q̃ + q_A) / (2√q_A))         q̃ > q_A
    CLb       = 1 − Φ(√q̃ − √q_A)                      q̃ ≤ q_A
                = 1 − Φ((q̃ − q_A) / (2√q_A))         q̃ > q_A

(CLb = P(q ≥ q_obs | μ' = 0), the right-tail convention; CLs = CLs+b / CLb). For q_μ (Eq. 14)
the first lines apply for all q. Discovery: p₀ = 1 − Φ(√q₀).

Expected limits (band N, N = 0 the median, ±1, ±2): the limit μ_N satisfies

    CLs+b:  √q_{μ,A}(μ_N) = Φ⁻¹(1 − α) + N
    CLs:    √q_{μ,A}(μ_N) = Φ⁻¹(1 − α Φ(N)) + N

i.e. μ_N = σ(Φ⁻¹(…) + N) with σ = σ(μ_N); σ depends on μ, so the equations are solved
self-consistently by root finding on q_{μ,A}(μ) (refitting the Asimov data at each μ), not with a
single σ. At 90 % CL the median is 1.282σ (CLs+b) and 1.645σ (CLs).

Median discovery potential (Eq. 97 generalised): the smallest μ whose Asimov dataset at
(μ, θ) gives q₀,A = Z² (Z = 3 → q₀,A = 9).

Power constraint (arXiv:1105.3166): μ_PCL = max(μ_up, μ_min) with μ_min the expected limit at
band N = Φ⁻¹(π_crit) (π_crit = Φ(−1) ≈ 0.16 ↔ the −1σ band).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq

from .bands import BANDS, POWER_THRESHOLD, power_constrained
from .fit import BatchedFitter
from .fitresult import FitConfig, FitResult, FitStatus
from .model import BinnedModel
from .special import norm_cdf, norm_isf, norm_ppf, norm_sf
from .teststat import mu_lower_bound, evaluate_test_statistic

__all__ = [
    "asimov_dataset",
    "AsimovProfile",
    "pvalues_asymptotic",
    "qtilde_cdf",
    "band_target",
    "AsymptoticLimits",
    "asymptotic_limits",
    "discovery_potential",
]


def asimov_dataset(model: BinnedModel, mu: float, theta: np.ndarray | None = None):
    """(counts, aux) of the Asimov dataset at (μ, θ)."""
    return model.asimov(mu, theta)


def _single_fit(fitter: BatchedFitter, counts, aux, mu_fixed, mu_lower, init=None) -> FitResult:
    init = None if init is None else np.asarray(init, float)[None, :]
    return fitter.fit(np.asarray(counts, float)[None, :], np.asarray(aux, float)[None, :],
                      mu_fixed=mu_fixed, init=init, mu_lower=mu_lower)


class AsimovProfile:
    """q_{μ,A}(μ) on the background-only Asimov dataset built at (0, θ̂̂(0)) of ``observed``,
    and q_obs(μ) on the observed data; results are cached per μ."""

    def __init__(
        self,
        model: BinnedModel,
        observed: tuple[np.ndarray, np.ndarray] | None = None,
        test_stat: str = "qtilde",
        config: FitConfig | None = None,
    ):
        if test_stat not in ("qtilde", "q"):
            raise ValueError("asymptotic limits use test_stat 'qtilde' or 'q'")
        self.model = model
        self.test_stat = test_stat
        self.mu_lower = mu_lower_bound(test_stat)
        cfg = config or FitConfig()
        self.fitter = BatchedFitter(model, FitConfig(**{**cfg.__dict__, "n_threads": 1}))
        self.observed = model.asimov(0.0) if observed is None else (
            np.asarray(observed[0], float).ravel(), np.asarray(observed[1], float).ravel()
        )
        # θ̂̂(0) on the observed data → Asimov B-only dataset
        r0 = _single_fit(self.fitter, *self.observed, mu_fixed=0.0, mu_lower=self.mu_lower)
        self.theta0 = r0.params[0, 1:].copy()
        self.asimov = model.asimov(0.0, self.theta0)
        self._uncond_A = _single_fit(self.fitter, *self.asimov, mu_fixed=None, mu_lower=self.mu_lower)
        self._uncond_obs = _single_fit(self.fitter, *self.observed, mu_fixed=None,
                                       mu_lower=self.mu_lower)
        self._cache_A: dict[float, float] = {}
        self._cache_obs: dict[float, float] = {}
        self.fit_failures: list[tuple[str, float, int]] = []
        for label, r in (("theta0", r0), ("uncond_asimov", self._uncond_A),
                         ("uncond_observed", self._uncond_obs)):
            if r.status[0] != FitStatus.CONVERGED:
                self.fit_failures.append((label, float("nan"), int(r.status[0])))

    @property
    def mu_hat_obs(self) -> float:
        return float(self._uncond_obs.params[0, 0])

    def _q(self, data, uncond: FitResult, mu: float, cache: dict, label: str) -> float:
        mu = float(mu)
        if mu not in cache:
            init = uncond.params[0].copy()
            init[0] = mu
            rc = _single_fit(self.fitter, *data, mu_fixed=mu, mu_lower=self.mu_lower, init=init)
            if rc.status[0] != FitStatus.CONVERGED:
                self.fit_failures.append((label, mu, int(rc.status[0])))
            cache[mu] = float(evaluate_test_statistic(self.test_stat, rc.nll, uncond.nll,
                                             uncond.params[:, 0], mu)[0])
        return cache[mu]

    def q_asimov(self, mu: float) -> float:
        """q_{μ,A}: the test statistic at μ on the background-only Asimov dataset."""
        return self._q(self.asimov, self._uncond_A, mu, self._cache_A, "cond_asimov")

    def q_observed(self, mu: float) -> float:
        """The test statistic at μ on the observed data."""
        return self._q(self.observed, self._uncond_obs, mu, self._cache_obs, "cond_observed")

    def sigma(self, mu: float) -> float:
        """σ(μ) = μ / √q_{μ,A}."""
        qa = self.q_asimov(mu)
        return mu / np.sqrt(qa) if qa > 0 else np.inf

    def pvalues(self, mu: float) -> tuple[float, float, float]:
        """(CLs+b, CLb, CLs) of the observed data at μ."""
        return pvalues_asymptotic(self.q_observed(mu), self.q_asimov(mu), self.test_stat)

    def fisher_sigma(self) -> float:
        """σ of μ̂ from the expected information at μ = 0 (starting guess for root finding)."""
        info = self.fitter.expected_information(self.model.full_params(0.0, self.theta0))
        cov = np.linalg.inv(info)
        return float(np.sqrt(cov[0, 0]))


def pvalues_asymptotic(
    q_obs: float | np.ndarray, q_asimov: float | np.ndarray, test_stat: str = "qtilde"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(CLs+b, CLb, CLs) from the observed test statistic and q_{μ,A} (module docstring)."""
    q = np.maximum(np.asarray(q_obs, dtype=np.float64), 0.0)
    qa = np.maximum(np.asarray(q_asimov, dtype=np.float64), 0.0)
    sq, sqa = np.sqrt(q), np.sqrt(qa)
    if test_stat == "q0":
        p0 = norm_sf(sq)
        return p0, np.ones_like(p0), p0
    with np.errstate(divide="ignore", invalid="ignore"):
        if test_stat == "qtilde":
            big = q > qa
            safe = np.where(sqa > 0, sqa, 1.0)
            clsb = np.where(big, norm_sf((q + qa) / (2 * safe)), norm_sf(sq))
            clb = np.where(big, norm_sf((q - qa) / (2 * safe)), norm_sf(sq - sqa))
        elif test_stat == "q":
            clsb = norm_sf(sq)
            clb = norm_sf(sq - sqa)
        else:
            raise ValueError(f"unknown test statistic {test_stat!r}")
        cls = np.where(clb > 0, clsb / clb, np.where(clsb > 0, np.inf, 0.0))
    return clsb, clb, cls


def qtilde_cdf(
    q: np.ndarray, mu_over_sigma: float, mu_prime_over_sigma: float | None = None
) -> np.ndarray:
    """Asymptotic CDF F(q̃_μ | μ') of q̃_μ (Eq. 66), with μ/σ and μ'/σ given.

    Default μ' = μ (the S+B distribution, Eq. 67's integrand). Includes the atom at q̃ = 0.
    """
    q = np.maximum(np.asarray(q, dtype=np.float64), 0.0)
    a = float(mu_over_sigma)
    b = a if mu_prime_over_sigma is None else float(mu_prime_over_sigma)
    sq = np.sqrt(q)
    low = norm_cdf(sq - (a - b))
    with np.errstate(divide="ignore", invalid="ignore"):
        high = norm_cdf((q - (a * a - 2 * a * b)) / (2 * a)) if a > 0 else np.ones_like(q)
    return np.where(q <= a * a, low, high)


def band_target(n_sigma: float, alpha: float, method: str) -> float:
    """√q_{μ,A} at which band ``n_sigma`` is reached (module docstring)."""
    if method == "clsb":
        return float(norm_isf(alpha) + n_sigma)
    if method == "cls":
        return float(norm_isf(alpha * norm_cdf(n_sigma)) + n_sigma)
    raise ValueError(f"method must be 'clsb' or 'cls', got {method!r}")


@dataclass
class AsymptoticLimits:
    """Asymptotic upper limits on μ (cross-section multiplier).

    observed: limit on the observed data (default observed = Asimov B-only → equals the median);
    expected: {N: μ_N} for N in :data:`~lzflow.stats.bands.BANDS`; pcl: observed limit power-constrained at the band
    Φ⁻¹(power_threshold); sigma_median: σ at the median limit; no_sensitivity: signal empty.
    """

    cl: float
    method: str
    test_stat: str
    observed: float
    expected: dict[int, float]
    pcl: float
    power_threshold: float
    pcl_floor: float
    sigma_median: float
    no_sensitivity: bool = False
    fit_failures: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "cl": self.cl, "method": self.method, "test_stat": self.test_stat,
            "observed": self.observed, "expected": {str(k): v for k, v in self.expected.items()},
            "pcl": self.pcl, "power_threshold": self.power_threshold, "pcl_floor": self.pcl_floor,
            "sigma_median": self.sigma_median, "no_sensitivity": self.no_sensitivity,
            "fit_failures": self.fit_failures,
        }


def _solve_increasing(f, guess: float, lo: float = 0.0, xtol: float = 1e-10, rtol: float = 1e-10,
                      max_expand: int = 80) -> float:
    """Root of an increasing function f on (lo, ∞), starting from ``guess`` > lo."""
    a, b = lo, max(guess, 1e-12)
    fb = f(b)
    k = 0
    while fb < 0 and k < max_expand:
        a, b = b, b * 2.0
        fb = f(b)
        k += 1
    if fb < 0:
        return np.inf
    # shrink the lower end towards the root for a tight bracket
    if a == lo:
        c = b / 2.0
        while c > 1e-12 * max(b, 1.0):
            fc = f(c)
            if fc < 0:
                a = c
                break
            b, c = c, c / 2.0
    return float(brentq(f, a, b, xtol=xtol, rtol=rtol, maxiter=200))


def asymptotic_limits(
    model: BinnedModel,
    observed: tuple[np.ndarray, np.ndarray] | None = None,
    cl: float = 0.90,
    method: str = "clsb",
    test_stat: str = "qtilde",
    power_threshold: float = POWER_THRESHOLD,
    bands: tuple[int, ...] = BANDS,
    config: FitConfig | None = None,
) -> AsymptoticLimits:
    """Observed and expected asymptotic upper limits (module docstring).

    ``method``: ``"clsb"`` (LZ default) or ``"cls"``. The PCL floor is the expected limit at
    band Φ⁻¹(power_threshold), solved like the other bands.
    """
    alpha = 1.0 - cl
    if model.signal_is_empty:
        inf = float("inf")
        return AsymptoticLimits(cl, method, test_stat, inf, {int(n): inf for n in bands}, inf,
                                power_threshold, inf, inf, no_sensitivity=True)
    prof = AsimovProfile(model, observed, test_stat, config)
    s0 = prof.fisher_sigma()

    def band(nsig: float) -> float:
        target = band_target(nsig, alpha, method)
        if target <= 0:
            return 0.0
        return _solve_increasing(lambda mu: np.sqrt(prof.q_asimov(mu)) - target, target * s0)

    expected = {int(n): band(float(n)) for n in bands}
    n_floor = float(norm_ppf(power_threshold))
    floor = band(n_floor)

    def pobs(mu: float) -> float:
        clsb, _, cls = prof.pvalues(mu)
        p = float(cls if method == "cls" else clsb)
        return np.log(alpha) - np.log(max(p, 1e-300))

    guess = max(expected.get(0, band(0.0)), prof.mu_hat_obs + s0)
    obs = _solve_increasing(pobs, guess)
    return AsymptoticLimits(
        cl=cl, method=method, test_stat=test_stat, observed=obs, expected=expected,
        pcl=power_constrained(obs, floor), power_threshold=power_threshold, pcl_floor=floor,
        sigma_median=prof.sigma(expected[0]) if 0 in expected else prof.sigma(band(0.0)),
        fit_failures=prof.fit_failures,
    )


def discovery_potential(
    model: BinnedModel,
    z: float = 3.0,
    theta: np.ndarray | None = None,
    config: FitConfig | None = None,
) -> float:
    """Smallest μ whose median (Asimov) discovery significance reaches ``z`` σ: q₀,A(μ) = z².

    The Asimov dataset at (μ, θ) (θ default nominal) is fitted with μ ≥ 0 and with μ = 0.
    Returns +inf for an empty signal.
    """
    if model.signal_is_empty:
        return float("inf")
    cfg = config or FitConfig()
    fitter = BatchedFitter(model, FitConfig(**{**cfg.__dict__, "n_threads": 1}))
    theta = model.nominal_theta() if theta is None else np.asarray(theta, float)

    def q0(mu: float) -> float:
        counts, aux = model.asimov(mu, theta)
        init = model.full_params(mu, theta)
        ru = _single_fit(fitter, counts, aux, None, 0.0, init)
        rc = _single_fit(fitter, counts, aux, 0.0, 0.0, init)
        return float(evaluate_test_statistic("q0", rc.nll, ru.nll, ru.params[:, 0], 0.0)[0])

    info = fitter.expected_information(model.full_params(0.0, theta))
    s0 = float(np.sqrt(np.linalg.inv(info)[0, 0]))
    return _solve_increasing(lambda mu: np.sqrt(q0(mu)) - z, z * s0)
