"""lzflow.stats.special evaluates what scipy.stats.norm / scipy.stats.beta evaluate, bit for bit, without
importing scipy.stats (a second of every merge job's start-up)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from scipy.stats import beta, norm

from lzflow.stats.special import beta_isf, beta_ppf, norm_cdf, norm_isf, norm_ppf, norm_sf


def test_normal_functions_equal_scipy_stats_bit_for_bit():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 4, 100_000), np.linspace(-40, 40, 4001), [0.0, np.inf, -np.inf, np.nan]])
    p = np.concatenate([rng.random(100_000), np.geomspace(1e-300, 1, 3001), [0.0, 1.0, np.nan]])
    for ours, theirs, arg in ((norm_cdf, norm.cdf, x), (norm_sf, norm.sf, x), (norm_ppf, norm.ppf, p),
                              (norm_isf, norm.isf, p)):
        np.testing.assert_array_equal(ours(arg), theirs(arg))
        assert type(ours(0.3)) is type(theirs(0.3)) and ours(0.3) == theirs(0.3)


def test_clopper_pearson_edges_equal_scipy_stats_bit_for_bit():
    rng = np.random.default_rng(4)
    n = rng.integers(1, 50_000, 100_000)
    k = rng.integers(0, n + 1)
    a = float(norm.sf(1.0))
    pos, under = k > 0, k < n
    np.testing.assert_array_equal(beta_ppf(a, k[pos], n[pos] - k[pos] + 1), beta.ppf(a, k[pos], n[pos] - k[pos] + 1))
    np.testing.assert_array_equal(beta_isf(a, k[under] + 1, n[under] - k[under]), beta.isf(a, k[under] + 1, n[under] - k[under]))


def test_a_merge_does_not_import_scipy_stats():
    code = ("import sys, lzflow.merge, lzflow.observed, lzflow.stats.hypotest, lzflow.stats.asymptotic, lzflow.cli; "
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
