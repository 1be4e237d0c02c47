"""The few distribution functions the statistics needs, from :mod:`scipy.special` directly.

``scipy.stats`` costs about a second to import (its whole distribution zoo), which every merge,
workspace and plot job paid for four functions. These are the very ufuncs ``scipy.stats`` evaluates
(``norm``: ``ndtr``/``ndtri``; ``beta``: Boost's ``ibeta_inv``/``ibetac_inv``), called without its
argument handling, so the numbers are bit-identical (tests/unit/test_special.py compares them with
``scipy.stats`` on 10⁵ random arguments).

* Φ(x) = :func:`norm_cdf`, 1 − Φ(x) = :func:`norm_sf` (= Φ(−x), exact by symmetry),
  Φ⁻¹(p) = :func:`norm_ppf`, Φ⁻¹(1 − p) = :func:`norm_isf` (= −Φ⁻¹(p));
* the Beta(a, b) quantile :func:`beta_ppf` (I⁻¹_p(a, b)) and upper quantile :func:`beta_isf`
  (the x with 1 − I_x(a, b) = p), the Clopper–Pearson edges of :mod:`lzflow.stats.pvalues`.
"""

from __future__ import annotations

import numpy as np
from scipy import special as _sc

__all__ = ["norm_cdf", "norm_sf", "norm_ppf", "norm_isf", "beta_ppf", "beta_isf"]


def norm_cdf(x):
    """Φ(x), the standard normal CDF (``scipy.stats.norm.cdf``)."""
    return _sc.ndtr(x)


def norm_sf(x):
    """1 − Φ(x) = Φ(−x) (``scipy.stats.norm.sf``)."""
    return _sc.ndtr(np.negative(x))


def norm_ppf(p):
    """Φ⁻¹(p) (``scipy.stats.norm.ppf``)."""
    return _sc.ndtri(p)


def norm_isf(p):
    """Φ⁻¹(1 − p) = −Φ⁻¹(p) (``scipy.stats.norm.isf``)."""
    return -_sc.ndtri(p)


def beta_ppf(p, a, b):
    """The p-quantile of Beta(a, b) (``scipy.stats.beta.ppf(p, a, b)``)."""
    return _sc.betaincinv(a, b, p)


def beta_isf(p, a, b):
    """The upper p-quantile of Beta(a, b) (``scipy.stats.beta.isf(p, a, b)``)."""
    return _sc.betainccinv(a, b, p)
