"""Toy-based hypothesis tests: p-values, inversion to upper limits, expected bands, PCL.

p-values (arXiv:1007.1727 §2; right-tail convention for the upper-limit statistics q̃_μ, q_μ):

    CLs+b(μ) = p_μ = P(q_μ ≥ q_obs | μ)         from S+B toys generated at (μ, θ̂̂(μ))
    CLb(μ)       = P(q_μ ≥ q_obs | μ' = 0)     from B-only toys evaluated at the same μ
    CLs          = CLs+b / CLb

each with its binomial Monte-Carlo error √(p(1−p)/N) (CLs: relative errors added in
quadrature). Toys whose q is NaN (a fit that failed in every strategy) are left out of the
ensemble and counted in ``n_excluded``; ``+inf`` (data impossible under μ) counts as ≥ q_obs.

Inversion: the upper limit is the supremum of the confidence set {μ : p(μ) ≥ α}, α = 1 − CL.
On an increasing grid, K is the largest grid point with p ≥ α and the p-value curve is
interpolated to p = α between μ_K and μ_{K+1} **linearly in ln p** (``"loglinear"``, default;
p = 0 is floored at 0.5/N), or with a monotone PCHIP spline in ln p (``"pchip"``, single curves).
(Taking the *first* downward crossing instead would exclude μ values inside the confidence set
when Monte-Carlo noise makes a curve dip below α early, and undercover.) The limit's MC uncertainty propagates the binomial errors of the two
bracketing p-values through the interpolation: for μ = μ₁ + Δ (ln α − a)/(b − a), a = ln p₁,
b = ln p₂: δμ² = Δ²[((ln α − b)/(b − a)² · δp₁/p₁)² + ((ln α − a)/(b − a)² · δp₂/p₂)²].
A p-curve that never falls below α gives +inf ("above_grid"); one below α at the first grid
point gives that point ("below_grid"). A coarse grid biases linear interpolation (refine the grid
near the crossing, :func:`refine_grid`).

Expected limits: every B-only toy is one background-only experiment; its p-value curve over the
grid (its own q_μ compared with the S+B ensembles, and for CLs with the B-only ensemble) gives its
upper limit; the bands are the quantiles Φ(N) (2.275, 15.87, 50, 84.13, 97.725 %) of these
limits. Their uncertainty: order-statistics (the ranks Nq ± √(Nq(1−q)) around each quantile), and
optionally a bootstrap over all toys (``n_boot``), which also includes the S+B ensembles' noise.

Power-constrained limit (Cowan, Cranmer, Gross, Vitells, arXiv:1105.3166): the power of the test
of μ against background-only is M₀(μ) = P(μ_up ≤ μ | 0); μ_min is where it reaches π_crit, i.e.
the π_crit-quantile of the B-only limits (π_crit = Φ(−1) ≈ 0.16 ↔ the −1σ band), and
μ_PCL = max(μ_up, μ_min).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.optimize import brentq
from scipy.stats import norm

from .fit import BatchedFitter, FitConfig
from .model import BinnedModel
from .teststat import mu_lower_bound, evaluate_test_statistic
from .toys import BONLY_POI_INDEX, ToyResult, observed_asimov, run_toys

__all__ = [
    "BANDS",
    "BAND_QUANTILES",
    "POWER_THRESHOLD",
    "Ensemble",
    "PValues",
    "pvalues_from_toys",
    "Crossing",
    "crossing",
    "limits_from_curves",
    "pvalue_curves",
    "quantile_with_error",
    "expected_bands",
    "power_constrained",
    "refine_grid",
    "observed_q",
    "pvalue_table",
    "Inversion",
    "invert_toys",
    "ToyLimits",
    "toy_limits",
    "DiscoveryToys",
    "discovery_potential_toys",
]

BANDS = (-2, -1, 0, 1, 2)
BAND_QUANTILES = tuple(float(norm.cdf(n)) for n in BANDS)
POWER_THRESHOLD = float(norm.cdf(-1.0))


class Ensemble:
    """Sorted finite test-statistic values of one toy ensemble (for fast tail fractions)."""

    def __init__(self, q: np.ndarray):
        q = np.asarray(q, dtype=np.float64).ravel()
        nan = np.isnan(q)
        self.n_excluded = int(nan.sum())
        self.q = np.sort(q[~nan])
        self.n = int(self.q.size)

    def tail(self, q_obs: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """P(q ≥ q_obs) and its binomial error, for each q_obs (NaN q_obs → NaN)."""
        q_obs = np.asarray(q_obs, dtype=np.float64)
        if self.n == 0:
            nanv = np.full(q_obs.shape, np.nan)
            return nanv, nanv
        k = self.n - np.searchsorted(self.q, q_obs, side="left")
        p = k / self.n
        p = np.where(np.isnan(q_obs), np.nan, p)
        return p, np.sqrt(p * (1 - p) / self.n)


@dataclass
class PValues:
    """p-values at one μ (arrays broadcast over observed values)."""

    clsb: np.ndarray
    clsb_err: np.ndarray
    clb: np.ndarray
    clb_err: np.ndarray
    cls: np.ndarray
    cls_err: np.ndarray
    n_sb: int
    n_b: int

    def get(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        if method == "clsb":
            return self.clsb, self.clsb_err
        if method == "cls":
            return self.cls, self.cls_err
        raise ValueError(f"method must be 'clsb' or 'cls', got {method!r}")


def pvalues_from_toys(
    q_obs: np.ndarray | float, q_sb: np.ndarray | Ensemble, q_b: np.ndarray | Ensemble | None = None
) -> PValues:
    """CLs+b, CLb, CLs (+ binomial errors) of ``q_obs`` from S+B and B-only toys at one μ."""
    esb = q_sb if isinstance(q_sb, Ensemble) else Ensemble(q_sb)
    clsb, e1 = esb.tail(q_obs)
    if q_b is None:
        clb = np.ones_like(clsb)
        e2 = np.zeros_like(clsb)
        nb = 0
    else:
        eb = q_b if isinstance(q_b, Ensemble) else Ensemble(q_b)
        clb, e2 = eb.tail(q_obs)
        nb = eb.n
    with np.errstate(divide="ignore", invalid="ignore"):
        cls = np.where(clb > 0, clsb / clb, np.nan)
        rel = np.sqrt(np.where(clsb > 0, (e1 / clsb) ** 2, 0.0) + np.where(clb > 0, (e2 / clb) ** 2, 0.0))
        cls_err = cls * rel
    return PValues(clsb, e1, clb, e2, cls, cls_err, esb.n, nb)


@dataclass
class Crossing:
    """Result of inverting one p-value curve."""

    mu: float
    error: float
    status: str  # "ok", "below_grid", "above_grid", "no_sensitivity"
    bracket: tuple[int, int] | None = None


def _loglinear(mu1, mu2, p1, p2, alpha, e1=None, e2=None):
    a, b, c = np.log(p1), np.log(p2), np.log(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(b != a, (c - a) / (b - a), 0.5)
        mu = mu1 + (mu2 - mu1) * frac
        if e1 is None:
            return mu, None
        da = (c - b) / (b - a) ** 2 * (e1 / p1)
        db = -(c - a) / (b - a) ** 2 * (e2 / p2)
        err = np.abs(mu2 - mu1) * np.sqrt(da**2 + db**2)
    return mu, np.where(np.isfinite(err), err, np.nan)


def crossing(
    mu: Sequence[float] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    alpha: float,
    p_err: Sequence[float] | np.ndarray | None = None,
    method: str = "loglinear",
    p_floor: float = 1e-12,
) -> Crossing:
    """Invert one p-value curve at ``alpha`` (module docstring)."""
    mu = np.asarray(mu, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if mu.size == 0 or not np.all(np.diff(mu) > 0):
        raise ValueError("the POI grid must be non-empty and strictly increasing")
    pe = np.zeros_like(p) if p_err is None else np.asarray(p_err, dtype=np.float64)
    pc = np.maximum(np.where(np.isnan(p), 1.0, p), p_floor)
    inside = pc >= alpha
    if not inside.any():
        return Crossing(float(mu[0]), 0.0, "below_grid", (0, 0))
    if inside[-1]:
        return Crossing(float("inf"), float("nan"), "above_grid", None)
    k = int(mu.size - 1 - np.argmax(inside[::-1])) + 1  # first point after the last p ≥ α
    if method == "loglinear":
        m, e = _loglinear(mu[k - 1], mu[k], pc[k - 1], pc[k], alpha, pe[k - 1], pe[k])
        return Crossing(float(m), float(e), "ok", (k - 1, k))
    if method == "pchip":
        lp = np.log(pc)
        spl = PchipInterpolator(mu, lp)
        m = brentq(lambda x: spl(x) - np.log(alpha), mu[k - 1], mu[k])
        _, e = _loglinear(mu[k - 1], mu[k], pc[k - 1], pc[k], alpha, pe[k - 1], pe[k])
        return Crossing(float(m), float(e), "ok", (k - 1, k))
    raise ValueError(f"unknown interpolation method {method!r}")


def limits_from_curves(
    mu: np.ndarray, p: np.ndarray, alpha: float, p_floor: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised log-linear inversion of many curves ``p`` ``(n, n_mu)``.

    Returns (limits ``(n,)``, status codes ``(n,)``: 0 ok, 1 below grid, 2 above grid).
    """
    mu = np.asarray(mu, dtype=np.float64)
    p = np.maximum(np.where(np.isnan(p), 1.0, np.asarray(p, dtype=np.float64)), p_floor)
    inside = p >= alpha
    n, nm = p.shape
    last = nm - 1 - np.argmax(inside[:, ::-1], axis=1)  # last grid point with p ≥ α
    any_in = inside.any(axis=1)
    lim = np.full(n, np.inf)
    code = np.full(n, 2, dtype=np.int8)
    none = ~any_in
    lim[none] = mu[0]
    code[none] = 1
    ok = any_in & (last < nm - 1)
    k = last + 1
    rows = np.flatnonzero(ok)
    kk = k[ok]
    m, _ = _loglinear(mu[kk - 1], mu[kk], p[rows, kk - 1], p[rows, kk], alpha)
    lim[ok] = m
    code[ok] = 0
    return lim, code


def pvalue_curves(
    q: np.ndarray,
    sb: Sequence[Ensemble],
    b: Sequence[Ensemble] | None = None,
    method: str = "clsb",
) -> np.ndarray:
    """p-value curves ``(n, n_mu)`` for experiments with test statistics ``q`` ``(n, n_mu)``,
    from S+B ensembles (one per μ) and, for CLs, B-only ensembles (one per μ)."""
    q = np.atleast_2d(np.asarray(q, dtype=np.float64))
    out = np.empty_like(q)
    for k, e in enumerate(sb):
        psb, _ = e.tail(q[:, k])
        if method == "cls":
            if b is None:
                raise ValueError("CLs needs the B-only ensembles")
            pb, _ = b[k].tail(q[:, k])
            with np.errstate(divide="ignore", invalid="ignore"):
                out[:, k] = np.where(pb > 0, psb / pb, np.nan)
        elif method == "clsb":
            out[:, k] = psb
        else:
            raise ValueError(f"method must be 'clsb' or 'cls', got {method!r}")
    return out


def quantile_with_error(x: np.ndarray, qs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles of ``x`` and their order-statistics 1σ errors (half the distance between the
    values at ranks N q ± √(N q (1 − q)))."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = x.size
    qs = np.asarray(qs, dtype=np.float64)
    if n == 0:
        return np.full(qs.shape, np.nan), np.full(qs.shape, np.nan)
    val = np.quantile(x, qs)
    half = np.sqrt(n * qs * (1 - qs))
    lo = np.clip(np.floor(n * qs - half).astype(int), 0, n - 1)
    hi = np.clip(np.ceil(n * qs + half).astype(int), 0, n - 1)
    with np.errstate(invalid="ignore"):
        err = 0.5 * (x[hi] - x[lo])
    return val, err


def expected_bands(
    limits: np.ndarray, bands: Sequence[int] = BANDS
) -> tuple[dict[int, float], dict[int, float]]:
    """Expected-limit bands {N: value} and order-statistics errors {N: error} from B-only
    experiments' limits."""
    qs = [float(norm.cdf(n)) for n in bands]
    val, err = quantile_with_error(limits, qs)
    return ({int(n): float(v) for n, v in zip(bands, val)},
            {int(n): float(e) for n, e in zip(bands, err)})


def power_constrained(mu_up: float, mu_min: float) -> float:
    """μ_PCL = max(μ_up, μ_min) (arXiv:1105.3166)."""
    return float(max(mu_up, mu_min))


def refine_grid(mu: np.ndarray, p: np.ndarray, alpha: float, n_new: int = 4) -> np.ndarray:
    """``n_new`` extra POI points evenly inside the interval bracketing the crossing of ``p``
    (to reduce the interpolation bias of a coarse grid); empty if there is no crossing."""
    c = crossing(mu, p, alpha)
    if c.status != "ok" or c.bracket is None:
        return np.zeros(0)
    a, b = np.asarray(mu, float)[list(c.bracket)]
    return np.linspace(a, b, n_new + 2)[1:-1]


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

    observed/observed_err/observed_status: inversion of the observed p-value curve;
    expected/expected_err: bands {N: μ_N} from B-only experiments; pcl: power-constrained
    observed limit with floor ``pcl_floor`` (the ``power_threshold`` quantile of the B-only
    limits); pvalues: per grid point (clsb, clsb_err, clb, clb_err, cls, cls_err); failures: fit
    failure summaries per ensemble (hypothesis, POI index) with causes; n_excluded: toys left out
    of p-values because their q is NaN; limits_b_outside: B-only experiments whose limit is
    below the first / above the last grid point (then set to the first point / +inf — extend
    the grid if these matter for a band).
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

    def as_dict(self) -> dict:
        return {
            "cl": self.cl, "method": self.method, "test_stat": self.test_stat,
            "mu_grid": self.mu_grid.tolist(), "q_obs": self.q_obs.tolist(),
            "pvalues": {k: np.asarray(v).tolist() for k, v in self.pvalues.items()},
            "observed": self.observed, "observed_err": self.observed_err,
            "observed_status": self.observed_status,
            "expected": {str(k): v for k, v in self.expected.items()},
            "expected_err": {str(k): v for k, v in self.expected_err.items()},
            "pcl": self.pcl, "pcl_floor": self.pcl_floor, "power_threshold": self.power_threshold,
            "failures": self.failures, "n_excluded": self.n_excluded,
            "no_sensitivity": self.no_sensitivity, "limits_b_outside": self.limits_b_outside,
        }


def pvalue_table(q_obs: np.ndarray, sb: Sequence[Ensemble], b: Sequence[Ensemble]) -> dict[str, np.ndarray]:
    """CLs+b, CLb, CLs and their MC errors of the observed q at every grid point."""
    pv = [pvalues_from_toys(q_obs[k], sb[k], b[k]) for k in range(len(sb))]
    return {name: np.array([float(getattr(x, name)) for x in pv])
            for name in ("clsb", "clsb_err", "clb", "clb_err", "cls", "cls_err")}


@dataclass
class Inversion:
    """Observed limit, B-only experiments' limits, their bands and the PCL floor for one method."""

    observed: Crossing
    limits_b: np.ndarray
    outside: dict[str, int]
    expected: dict[int, float]
    expected_err: dict[int, float]
    pcl_floor: float
    p_floor: float

    @property
    def pcl(self) -> float:
        return power_constrained(self.observed.mu, self.pcl_floor)


def invert_toys(mus: np.ndarray, table: dict[str, np.ndarray], q_b: np.ndarray, sb: Sequence[Ensemble],
                b: Sequence[Ensemble], alpha: float, method: str = "clsb",
                power_threshold: float = POWER_THRESHOLD, interpolation: str = "loglinear") -> Inversion:
    """Invert the observed p-value curve (``table`` from :func:`pvalue_table`) and every B-only
    experiment's curve (its q on the grid, ``q_b`` (n_b, n_mu)) at ``alpha`` (module docstring)."""
    floor = 0.5 / max(min(e.n for e in sb), 1)
    observed = crossing(mus, table[method], alpha, table[method + "_err"], interpolation, p_floor=floor)
    limits_b, codes = limits_from_curves(mus, pvalue_curves(q_b, sb, b, method), alpha, p_floor=floor)
    expected, expected_err = expected_bands(limits_b)
    pcl_floor = float(np.quantile(limits_b, power_threshold)) if limits_b.size else float("nan")
    return Inversion(observed, limits_b, {"below_grid": int(np.sum(codes == 1)), "above_grid": int(np.sum(codes == 2))},
                     expected, expected_err, pcl_floor, floor)


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
) -> ToyLimits:
    """Toy-based observed limit, expected bands and PCL on a POI grid (module docstring).

    S+B toys: ``n_toys_sb`` per grid point (poi_index = grid index, hypothesis 0); B-only toys:
    ``n_toys_b`` shared across the grid (poi_index :data:`BONLY_POI_INDEX`, hypothesis 1).
    ``observed`` = (counts, aux), default the Asimov background-only dataset.
    ``n_boot`` > 0 adds bootstrap errors (over S+B and B-only toys) to the expected bands.
    """
    if test_stat == "q0":
        raise ValueError("upper limits use 'qtilde' or 'q'")
    alpha = 1.0 - cl
    mus = np.asarray(mu_grid, dtype=np.float64)
    if mus.size < 2 or not np.all(np.diff(mus) > 0):
        raise ValueError("mu_grid must have ≥ 2 strictly increasing values")
    if model.signal_is_empty:
        inf = float("inf")
        return ToyLimits(cl, method, test_stat, mus, np.zeros(mus.size), {}, inf, float("nan"),
                         "no_sensitivity", {n: inf for n in BANDS}, {n: float("nan") for n in BANDS},
                         inf, inf, power_threshold, np.zeros(0), [], {}, no_sensitivity=True)
    obs = observed_asimov(model) if observed is None else observed
    kw = dict(test_stat=test_stat, config=config, block_size=block_size, n_threads=n_threads,
              stream=stream, observed=obs, n_procs=n_procs)
    sb_res = [run_toys(model, float(mu), k, np.arange(n_toys_sb), base_seed, mass_key, "sb", **kw)
              for k, mu in enumerate(mus)]
    b_res = run_toys(model, 0.0, BONLY_POI_INDEX, np.arange(n_toys_b), base_seed, mass_key, "b",
                     mu_test=mus, **kw)
    sb_ens = [Ensemble(r.q[:, 0]) for r in sb_res]
    b_ens = [Ensemble(b_res.q[:, k]) for k in range(mus.size)]
    q_obs, _info = observed_q(model, obs[0], obs[1], mus, test_stat, config)
    table = pvalue_table(q_obs, sb_ens, b_ens)
    inv = invert_toys(mus, table, b_res.q, sb_ens, b_ens, alpha, method, power_threshold, interpolation)
    c, limits_b, outside, floor = inv.observed, inv.limits_b, inv.outside, inv.p_floor
    exp, exp_err = inv.expected, inv.expected_err
    if n_boot > 0:
        rng = np.random.default_rng([int(base_seed), int(mass_key), 999])
        boots = np.empty((n_boot, len(BANDS)))
        qsb = [r.q[:, 0] for r in sb_res]
        for i in range(n_boot):
            e_sb = [Ensemble(x[rng.integers(0, x.size, x.size)]) for x in qsb]
            jb = rng.integers(0, b_res.n, b_res.n)
            qb = b_res.q[jb]
            e_b = [Ensemble(qb[:, k]) for k in range(mus.size)]
            lb, _ = limits_from_curves(mus, pvalue_curves(qb, e_sb, e_b, method), alpha, floor)
            boots[i] = np.quantile(lb, BAND_QUANTILES)
        with np.errstate(invalid="ignore"):
            sd = np.nanstd(np.where(np.isfinite(boots), boots, np.nan), axis=0)
        exp_err = {n: float(s) for n, s in zip(BANDS, sd)}
    pcl_floor = inv.pcl_floor
    failures = [r.failure_summary() for r in sb_res] + [b_res.failure_summary()]
    n_excl = {f"sb{k}": e.n_excluded for k, e in enumerate(sb_ens)}
    n_excl.update({f"b@{k}": e.n_excluded for k, e in enumerate(b_ens)})
    return ToyLimits(
        cl=cl, method=method, test_stat=test_stat, mu_grid=mus, q_obs=q_obs, pvalues=table,
        observed=c.mu, observed_err=c.error, observed_status=c.status, expected=exp,
        expected_err=exp_err, pcl=power_constrained(c.mu, pcl_floor), pcl_floor=pcl_floor,
        power_threshold=power_threshold, limits_b=limits_b, failures=failures, n_excluded=n_excl,
        ensembles_sb=sb_res if keep_ensembles else [], ensemble_b=b_res if keep_ensembles else None,
        limits_b_outside=outside,
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


def discovery_potential_toys(
    model: BinnedModel,
    mu_grid: Sequence[float],
    n_toys_sb: int,
    n_toys_b: int,
    base_seed: int,
    mass_key: int,
    z: float = 3.0,
    observed: tuple[np.ndarray, np.ndarray] | None = None,
    **run_kw,
) -> DiscoveryToys:
    """Median discovery significance from toys (q₀ of S+B toys at each μ, p₀ from B-only toys).

    A 3σ p-value is 1.35e-3: ``n_toys_b`` ≳ 10⁵ resolves it (cheap with the batched fitter).
    """
    mus = np.asarray(mu_grid, dtype=np.float64)
    obs = observed_asimov(model) if observed is None else observed
    b = run_toys(model, 0.0, BONLY_POI_INDEX, np.arange(n_toys_b), base_seed, mass_key, "b",
                 test_stat="q0", observed=obs, **run_kw)
    eb = Ensemble(b.q[:, 0])
    med = np.empty(mus.size)
    for k, mu in enumerate(mus):
        r = run_toys(model, float(mu), k, np.arange(n_toys_sb), base_seed, mass_key, "sb",
                     test_stat="q0", observed=obs, **run_kw)
        med[k] = np.nanmedian(r.q[:, 0])
    p0, _ = eb.tail(med)
    with np.errstate(divide="ignore"):
        z_toys = np.where(p0 > 0, norm.isf(p0), np.nan)
    z_asym = np.sqrt(np.maximum(med, 0.0))
    return DiscoveryToys(z, mus, med, z_asym, z_toys, _first_reach(mus, z_asym, z),
                         _first_reach(mus, z_toys, z), eb.n)
