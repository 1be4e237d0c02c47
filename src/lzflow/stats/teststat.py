"""Profile-likelihood test statistics (Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727).

Convention: q = 2 ΔNLL = −2 ln λ (RooStats' ProfileLikelihoodTestStat returns ΔNLL, half of it).

* ``"qtilde"`` — q̃_μ, Eq. 16 (default for upper limits): μ̂ is restricted to μ̂ ≥ 0, so the
  unconditional fit is the bounded fit and q̃_μ = 2[NLL(μ, θ̂̂(μ)) − NLL(μ̂≥0, θ̂)] for μ̂ ≤ μ,
  0 for μ̂ > μ.
* ``"q"`` — q_μ, Eq. 14: the same with an unbounded μ̂ (only ν_i > 0 where n_i > 0 required).
* ``"q0"`` — q₀, Eq. 12 (discovery): 2[NLL(0, θ̂̂(0)) − NLL(μ̂, θ̂)] for μ̂ ≥ 0, else 0.

Tiny negative values from rounding (|2ΔNLL| below ``NEG_TOL``) are set to 0; larger negative
values mean a fit did not reach its minimum and are also clipped but counted by the callers
through the fit statuses. A NaN μ̂ or unconditional NLL (a fit that failed) gives q = NaN — never
the q = 0 of "μ̂ above μ" — and callers leave such toys out (:func:`lzflow.stats.quality.toy_quality`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TEST_STATISTICS", "ONE_SIDED_TEST_STATISTICS", "mu_lower_bound", "evaluate_test_statistic", "NEG_TOL"]

TEST_STATISTICS = ("qtilde", "q", "q0")
#: the upper-limit statistics, 0 for μ̂ > μ whatever the fit at μ gives (arXiv:1007.1727 eqs. 14, 16)
ONE_SIDED_TEST_STATISTICS = ("qtilde", "q")
NEG_TOL = 1e-6


def mu_lower_bound(name: str) -> float | None:
    """Lower bound of μ in the unconditional fit for test statistic ``name``."""
    if name not in TEST_STATISTICS:
        raise ValueError(f"unknown test statistic {name!r}; choose from {TEST_STATISTICS}")
    return None if name == "q" else 0.0


def evaluate_test_statistic(
    name: str,
    nll_cond: np.ndarray,
    nll_uncond: np.ndarray,
    mu_hat: np.ndarray,
    mu: float | np.ndarray,
) -> np.ndarray:
    """Test statistic values from the two fits.

    nll_cond: NLL of the conditional fit at the tested μ (``(n,)`` or ``(n, n_mu)``; for q0 the
    fit at μ = 0); nll_uncond and mu_hat: the unconditional fit (``(n,)``); mu: tested value(s).
    Non-finite NLLs propagate (e.g. +inf for data impossible under the tested hypothesis).
    """
    if name not in TEST_STATISTICS:
        raise ValueError(f"unknown test statistic {name!r}; choose from {TEST_STATISTICS}")
    nll_cond = np.asarray(nll_cond, dtype=np.float64)
    nll_uncond = np.asarray(nll_uncond, dtype=np.float64)
    mu_hat = np.asarray(mu_hat, dtype=np.float64)
    if nll_cond.ndim == nll_uncond.ndim + 1:
        nll_uncond = nll_uncond[..., None]
        mu_hat = mu_hat[..., None]
    with np.errstate(invalid="ignore"):
        q = 2.0 * (nll_cond - nll_uncond)
        q = np.where(q < 0, 0.0, q)  # rounding (or an incomplete conditional fit): clip at 0
        if name == "q0":
            q = np.where(mu_hat > 0, q, 0.0)
            return np.where(np.isnan(mu_hat) | np.isnan(nll_uncond), np.nan, q)
        mu = np.asarray(mu, dtype=np.float64)
        q = np.where(mu_hat <= mu, q, 0.0)
        return np.where(np.isnan(mu_hat) | np.isnan(nll_uncond), np.nan, q)
