"""Toy p-values and their Monte-Carlo errors.

p-values (arXiv:1007.1727 §2; right-tail convention for the upper-limit statistics q̃_μ, q_μ):

    CLs+b(μ) = p_μ = P(q_μ ≥ q_obs | μ)         from S+B toys generated at (μ, θ̂̂(μ))
    CLb(μ)       = P(q_μ ≥ q_obs | μ' = 0)     from B-only toys evaluated at the same μ
    CLs          = CLs+b / CLb

``+inf`` (data impossible under μ) counts as ≥ q_obs. MC errors: a tail fraction k/N is a binomial
proportion; its interval is the central 68.27 % **Clopper–Pearson** interval (exact, never
undercovering; at k = 0 it is [0, 1 − 0.1587^{1/N}], not the Wald 0 ± 0), from the beta quantiles
B(0.1587; k, N − k + 1) and B(0.8413; k + 1, N − k) (:func:`binomial_interval`; equal to scipy's
``binomtest(k, N).proportion_ci(method="exact")``, tested). ``*_err`` is half its width; CLs's
error is first-order propagation, δCLs² = (δCLs+b/CLb)² + (CLs δCLb/CLb)².
CLb = 0 (q_obs beyond every B-only toy): CLs = 0/0 when CLs+b = 0 too — taken as **0**, "excluded"
(the data are beyond every toy of both hypotheses; asymptotically CLs = Φ((μ̂ − μ)/σ)/Φ(μ̂/σ) → 0
there for any μ above a few σ_μ), and **+inf** ("not excluded") when CLs+b > 0 (a ratio with a
resolved numerator over a denominator below 1/N_b cannot be below α). Neither is NaN.

p-values are fractions of the **used** toys (:mod:`lzflow.stats.quality`): the denominator N of
an :class:`Ensemble` is its number of used toys (reported next to the number generated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .bands import ONE_SIGMA_CL
from .special import beta_isf, beta_ppf

__all__ = [
    "binomial_interval",
    "Ensemble",
    "cls_ratio",
    "PValues",
    "pvalues_from_toys",
    "pvalue_curves",
    "pvalue_table",
]


def binomial_interval(k: np.ndarray | float, n: np.ndarray | float,
                      cl: float = ONE_SIGMA_CL) -> tuple[np.ndarray, np.ndarray]:
    """Central Clopper–Pearson interval of a binomial proportion k/n at confidence ``cl``.

    lo = B⁻¹((1 − cl)/2; k, n − k + 1) (0 at k = 0), hi = B⁻¹((1 + cl)/2; k + 1, n − k) (1 at
    k = n), with B⁻¹ the beta quantile (Clopper & Pearson, Biometrika 26 (1934) 404). NaN where
    k is NaN or n ≤ 0.
    """
    k, n = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64))
    a = 0.5 * (1.0 - cl)
    lo = np.zeros(k.shape)
    hi = np.ones(k.shape)
    valid = (n > 0) & ~np.isnan(k)
    pos = valid & (k > 0)
    lo[pos] = beta_ppf(a, k[pos], n[pos] - k[pos] + 1)
    under = valid & (k < n)
    hi[under] = beta_isf(a, k[under] + 1, n[under] - k[under])
    lo[~valid] = np.nan
    hi[~valid] = np.nan
    return lo, hi


class Ensemble:
    """Sorted usable test-statistic values of one toy ensemble (for fast tail fractions).

    ``good`` (optional, same shape as ``q``) marks the toys that may be used
    (:func:`~lzflow.stats.quality.toy_quality`); NaN values are never used. ``n`` = used toys (the
    denominator), ``n_total`` = all toys, ``n_excluded`` = ``n_total − n``.
    """

    def __init__(self, q: np.ndarray, good: np.ndarray | None = None):
        q = np.asarray(q, dtype=np.float64).ravel()
        use = ~np.isnan(q)
        if good is not None:
            use &= np.asarray(good, dtype=bool).ravel()
        self.n_total = int(q.size)
        self.q = np.sort(q[use])
        self.n = int(self.q.size)
        self.n_excluded = self.n_total - self.n

    def count(self, q_obs: np.ndarray | float) -> np.ndarray:
        """Number of used toys with q ≥ q_obs (NaN for NaN q_obs)."""
        q_obs = np.asarray(q_obs, dtype=np.float64)
        k = (self.n - np.searchsorted(self.q, q_obs, side="left")).astype(np.float64)
        return np.where(np.isnan(q_obs), np.nan, k)

    def fraction(self, q_obs: np.ndarray | float) -> np.ndarray:
        """P(q ≥ q_obs) (NaN for NaN q_obs or an empty ensemble)."""
        if self.n == 0:
            return np.full(np.shape(q_obs), np.nan)
        return self.count(q_obs) / self.n

    def interval(self, q_obs: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """68.27 % Clopper–Pearson interval of P(q ≥ q_obs)."""
        return binomial_interval(self.count(q_obs), self.n)

    def tail(self, q_obs: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """P(q ≥ q_obs) and its 1σ MC error (half the Clopper–Pearson interval)."""
        lo, hi = self.interval(q_obs)
        return self.fraction(q_obs), 0.5 * (hi - lo)


def cls_ratio(clsb: np.ndarray, clb: np.ndarray, clsb_err: np.ndarray | None = None,
              clb_err: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """CLs = CLs+b/CLb with CLb = 0 resolved as in the module docstring (0/0 → 0, x/0 → +inf),
    and its first-order error (NaN where CLb = 0) if the errors are given."""
    clsb = np.asarray(clsb, dtype=np.float64)
    clb = np.asarray(clb, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        cls = np.where(clb > 0, clsb / clb, np.where(clsb > 0, np.inf, 0.0))
        cls = np.where(np.isnan(clsb) | np.isnan(clb), np.nan, cls)
        if clsb_err is None or clb_err is None:
            return cls, None
        err = np.where(clb > 0, np.sqrt((clsb_err / clb) ** 2 + (cls * clb_err / clb) ** 2), np.nan)
    return cls, err


@dataclass
class PValues:
    """p-values at one μ (arrays broadcast over observed values); ``*_lo``/``*_hi``: the
    68.27 % Clopper–Pearson interval, ``*_err`` half its width (CLs: propagated)."""

    clsb: np.ndarray
    clsb_err: np.ndarray
    clb: np.ndarray
    clb_err: np.ndarray
    cls: np.ndarray
    cls_err: np.ndarray
    n_sb: int
    n_b: int
    clsb_lo: np.ndarray | None = None
    clsb_hi: np.ndarray | None = None
    clb_lo: np.ndarray | None = None
    clb_hi: np.ndarray | None = None

    def get(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        if method == "clsb":
            return self.clsb, self.clsb_err
        if method == "cls":
            return self.cls, self.cls_err
        raise ValueError(f"method must be 'clsb' or 'cls', got {method!r}")


def pvalues_from_toys(
    q_obs: np.ndarray | float, q_sb: np.ndarray | Ensemble, q_b: np.ndarray | Ensemble | None = None
) -> PValues:
    """CLs+b, CLb, CLs (+ Clopper–Pearson intervals and errors) of ``q_obs`` from S+B and B-only
    toys at one μ (module docstring)."""
    esb = q_sb if isinstance(q_sb, Ensemble) else Ensemble(q_sb)
    clsb, e1 = esb.tail(q_obs)
    lo1, hi1 = esb.interval(q_obs)
    if q_b is None:
        clb, e2, lo2, hi2 = (np.ones_like(clsb), np.zeros_like(clsb), np.ones_like(clsb), np.ones_like(clsb))
        nb = 0
    else:
        eb = q_b if isinstance(q_b, Ensemble) else Ensemble(q_b)
        clb, e2 = eb.tail(q_obs)
        lo2, hi2 = eb.interval(q_obs)
        nb = eb.n
    cls, cls_err = cls_ratio(clsb, clb, e1, e2)
    return PValues(clsb, e1, clb, e2, cls, cls_err, esb.n, nb, lo1, hi1, lo2, hi2)


def pvalue_curves(
    q: np.ndarray,
    sb: Sequence[Ensemble],
    b: Sequence[Ensemble] | None = None,
    method: str = "clsb",
) -> np.ndarray:
    """p-value curves ``(n, n_mu)`` for experiments with test statistics ``q`` ``(n, n_mu)``,
    from S+B ensembles (one per μ) and, for CLs, B-only ensembles (one per μ). NaN q → NaN."""
    if method not in ("clsb", "cls"):
        raise ValueError(f"method must be 'clsb' or 'cls', got {method!r}")
    if method == "cls" and b is None:
        raise ValueError("CLs needs the B-only ensembles")
    q = np.atleast_2d(np.asarray(q, dtype=np.float64))
    out = np.empty_like(q)
    for k, e in enumerate(sb):
        psb = e.fraction(q[:, k])
        out[:, k] = psb if method == "clsb" else cls_ratio(psb, b[k].fraction(q[:, k]))[0]
    return out


def pvalue_table(q_obs: np.ndarray, sb: Sequence[Ensemble], b: Sequence[Ensemble]) -> dict[str, np.ndarray]:
    """CLs+b, CLb, CLs, their MC errors and the Clopper–Pearson intervals of CLs+b and CLb, of
    the observed q at every grid point."""
    q_obs = np.asarray(q_obs, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for name, ens in (("clsb", sb), ("clb", b)):
        k = np.array([float(e.count(q_obs[j])) for j, e in enumerate(ens)])
        n = np.array([float(e.n) for e in ens])
        lo, hi = binomial_interval(k, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(n > 0, k / n, np.nan)
        out[name + "_err"], out[name + "_lo"], out[name + "_hi"] = 0.5 * (hi - lo), lo, hi
    out["cls"], out["cls_err"] = cls_ratio(out["clsb"], out["clb"], out["clsb_err"], out["clb_err"])
    return out
