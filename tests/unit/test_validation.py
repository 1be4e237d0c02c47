"""Detector-level validation quantities (lzflow.validation): invariants on known templates."""

from __future__ import annotations

import numpy as np
import pytest

from lzflow.validation import (band_median, fraction_below, half_efficiency_energy, leakage_below_median,
                               nr_efficiency, roi_table, summed)

EDGES = np.linspace(2.5, 5.0, 41)


def _gaussian_rows(centre: float, width: float, n_rows: int = 5) -> np.ndarray:
    from scipy.stats import norm

    cdf = norm.cdf(EDGES, centre, width)
    return np.tile(np.diff(cdf), (n_rows, 1))


def test_efficiency_is_passed_over_simulated_and_skips_empty_bins():
    edges = np.array([1.0, 2.0, 4.0, 8.0])
    counts = np.zeros((3, 2, 2), dtype=int)
    counts[0, 0, 0], counts[2, 1, 1], counts[2, 0, 1] = 5, 30, 10
    energy, eff = nr_efficiency(counts, np.array([50, 0, 40]), edges)
    np.testing.assert_allclose(energy, [np.sqrt(2.0), np.sqrt(32.0)])
    np.testing.assert_allclose(eff, [0.1, 1.0])


def test_half_efficiency_energy_interpolates_in_log_energy():
    energy = np.array([1.0, 2.0, 4.0, 8.0])
    eff = np.array([0.0, 0.25, 0.75, 1.0])
    assert half_efficiency_energy(energy, eff) == pytest.approx(np.sqrt(8.0))  # halfway in log between 2 and 4
    assert half_efficiency_energy(energy, eff, 0.25) == pytest.approx(2.0)
    assert np.isnan(half_efficiency_energy(energy, eff * 0.4))


def test_a_band_has_half_of_itself_below_its_median():
    band = _gaussian_rows(3.6, 0.12)
    med = band_median(band, EDGES)
    np.testing.assert_allclose(med, 3.6, atol=2e-3)  # linear interpolation within a 0.0625 bin
    assert leakage_below_median(band, band, EDGES) == pytest.approx(0.5, abs=1e-12)


def test_leakage_of_a_separated_band_is_its_gaussian_tail():
    from scipy.stats import norm

    nr, er = _gaussian_rows(3.5, 0.1), _gaussian_rows(3.9, 0.1)
    # ER at 4 sigma above the NR median: Phi(-4) = 3.2e-5 below it
    assert leakage_below_median(er, nr, EDGES) == pytest.approx(norm.cdf(-4.0), rel=0.05)
    # an empty row has no median and contributes nothing
    nr[2] = 0.0
    assert np.isnan(band_median(nr, EDGES)[2]) and fraction_below(er, band_median(nr, EDGES), EDGES)[2] == 0.0


def test_roi_table_sums_per_recoil_type():
    nr = _gaussian_rows(3.5, 0.1)
    rows = roi_table({"a": nr * 2.0, "b": _gaussian_rows(4.2, 0.1) * 10.0}, {"a": "NR", "b": "ER"}, nr, EDGES,
                     {"a": 1.0, "b": None})
    a, b = rows
    assert a["roi"] == pytest.approx(2.0 * nr.sum()) and a["below_nr_median"] == pytest.approx(nr.sum())
    assert b["below_nr_median"] < 1e-6 * b["roi"] and b["table"] is None
    assert summed(rows, "NR", "table") == 1.0 and summed(rows, "ER", "table") == 0.0
