"""The bootstrap of the MC errors (:func:`lzflow.stats.inversion.bootstrap_errors`) reweights
pre-sorted ensembles instead of re-sorting resampled arrays; its replicates must equal the plain
resampling's bit for bit. The plain resampling is written out here as the reference."""

from __future__ import annotations

import numpy as np
import pytest

from lzflow.stats.bands import BAND_QUANTILES, POWER_THRESHOLD, band_quantiles, pcl_with_status, quantile_with_error
from lzflow.stats.crossing import crossing, limits_from_curves
from lzflow.stats.inversion import ToyGrid, bootstrap_errors
from lzflow.stats.pvalues import Ensemble, cls_ratio, pvalue_curves
from lzflow.stats.quality import GOOD


def reference_replicates(grid: ToyGrid, alpha: float, methods, n_boot: int, seed) -> dict[str, np.ndarray]:
    """Each replicate resamples the arrays and builds new sorted ensembles (the definition)."""
    rng = np.random.default_rng(seed)
    levels = [*BAND_QUANTILES, POWER_THRESHOLD]
    good_sb = [q[c == GOOD] for q, c in zip(grid.q_sb, grid.cause_sb)]
    n_b, n_mu = grid.q_b.shape
    res = {m: np.full((n_boot, len(levels) + 2), np.nan) for m in methods}
    for i in range(n_boot):
        e_sb = [Ensemble(x[rng.integers(0, x.size, x.size)]) for x in good_sb]
        jb = rng.integers(0, n_b, n_b)
        qb, cb = grid.q_b[jb], grid.cause_b[jb]
        e_b = [Ensemble(qb[:, k], cb[:, k] == GOOD) for k in range(n_mu)]
        rows = np.all(cb == GOOD, axis=1)
        floor = 0.5 / max(min(e.n for e in e_sb), 1)
        clsb_obs = np.array([e.fraction(grid.q_obs[k]) for k, e in enumerate(e_sb)], dtype=np.float64)
        clb_obs = np.array([e.fraction(grid.q_obs[k]) for k, e in enumerate(e_b)], dtype=np.float64)
        for m in methods:
            lim, codes = limits_from_curves(grid.mu, pvalue_curves(qb[rows], e_sb, e_b, m), alpha, floor)
            bands = band_quantiles(lim, codes, levels, grid.mu[0], grid.mu[-1])
            p_obs = clsb_obs if m == "clsb" else cls_ratio(clsb_obs, clb_obs)[0]
            obs = crossing(grid.mu, p_obs, alpha, None, "loglinear", p_floor=floor)
            pcl, status = pcl_with_status(obs, bands[-1])
            res[m][i, :len(levels)] = [bd.value for bd in bands]
            res[m][i, -2] = obs.mu if obs.status == "ok" else np.nan
            res[m][i, -1] = pcl if status == "ok" else np.nan
    return res


def synthetic_grid(seed: int, n_sb: int = 300, n_b: int = 400, ties: bool = False) -> ToyGrid:
    """q̃-like toys on 8 points: S+B q grows with μ, B-only q falls; some fits failed (cause ≠ GOOD),
    some q NaN, and with ``ties`` the values are rounded so that many toys share one q."""
    rng = np.random.default_rng(seed)
    mu = np.linspace(0.5, 8.0, 8)
    q_sb, c_sb = [], []
    for m in mu:
        q = np.where(rng.random(n_sb) < 0.5, 0.0, rng.chisquare(1, n_sb))
        c = np.where(rng.random(n_sb) < 0.02, 3, GOOD)
        q[rng.random(n_sb) < 0.01] = np.nan
        q_sb.append(np.round(q, 1) if ties else q)
        c_sb.append(c)
    q_b = (mu[None, :] * 0.6 + rng.normal(0, 1.2, (n_b, 1))).clip(0) ** 2
    q_b = np.round(q_b, 1) if ties else q_b
    cause_b = np.where(rng.random((n_b, mu.size)) < 0.01, 2, GOOD)
    q_obs = (mu * 0.6) ** 2
    return ToyGrid(mu, q_obs, q_sb, c_sb, q_b, cause_b, np.arange(mu.size))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [1, 2])
def test_fast_bootstrap_equals_plain_resampling_bit_for_bit(seed, ties, monkeypatch):
    grid = synthetic_grid(seed, ties=ties)
    captured = {}
    import lzflow.stats.inversion as inv

    real_std = np.std

    def spy_std(a, *args, **kwargs):  # the replicates reach the output only through np.std
        captured.setdefault("calls", []).append(np.array(a))
        return real_std(a, *args, **kwargs)

    monkeypatch.setattr(inv.np, "std", spy_std)
    out = bootstrap_errors(grid, 0.1, ("clsb", "cls"), n_boot=40, seed=[7, seed])
    monkeypatch.undo()
    ref = reference_replicates(grid, 0.1, ("clsb", "cls"), 40, [7, seed])
    expected = []
    for m in ("clsb", "cls"):
        r = ref[m]
        fin = np.isfinite(r)
        for j in range(r.shape[1]):
            if fin[:, j].sum() >= max(2, 40 / 2):
                expected.append(r[fin[:, j], j])
    assert len(captured["calls"]) == len(expected) > 10
    for got, want in zip(captured["calls"], expected):
        np.testing.assert_array_equal(got, want)
    assert np.isfinite(out["cls"]["expected"][0]) and out["cls"]["expected"][0] > 0


def test_limits_from_curves_shortcut_for_fully_usable_curves_equals_general_path():
    """All points usable (the bootstrap's case) takes a shortcut for the next point after the last
    p ≥ α; it must give the general path's limits and codes bit for bit: the general path runs
    when one extra row has a NaN point."""
    rng = np.random.default_rng(3)
    mu = np.geomspace(0.05, 5.0, 20)
    curves = np.sort(rng.uniform(0.0, 1.0, (500, mu.size)), axis=1)[:, ::-1]  # decreasing in μ
    curves[:25] = 0.5    # never crossing: above the grid
    curves[25:50] = 0.01  # already below α at the first point
    nan_row = np.full((1, mu.size), 0.5)
    nan_row[0, 3] = np.nan
    fast = limits_from_curves(mu, curves, 0.1, 1e-4)
    general = limits_from_curves(mu, np.vstack([curves, nan_row]), 0.1, 1e-4)
    np.testing.assert_array_equal(fast[0], general[0][:-1])
    np.testing.assert_array_equal(fast[1], general[1][:-1])
    assert {0, 1, 2} <= set(fast[1].tolist())


def test_band_error_from_sorted_sample_equals_quantile_with_error():
    """band_quantiles takes a band's order-statistics error from the sorted sample directly
    (order_statistics_error) instead of quantile_with_error's second sort: the same number."""
    x = np.random.default_rng(5).exponential(1.0, 4001)
    bands = band_quantiles(x, np.zeros(x.size, dtype=np.int8), [*BAND_QUANTILES, POWER_THRESHOLD], 1e-9, 1e9)
    for b in bands:
        v, e = quantile_with_error(x, [b.level])
        assert b.status == "ok" and b.value == v[0] and b.error == e[0]
