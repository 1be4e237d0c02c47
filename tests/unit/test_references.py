"""Published references shipped with lzflow (lzflow.references) and the comparison of a limit curve
with them (lzflow compare, the curve's ratio panel)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from lzflow.cli import main
from lzflow.curve import plot_limit_curve, read_curve_csv, write_curve_csv
from lzflow.exceptions import ConfigError
from lzflow.references import REFERENCES, compare_with_reference, load_reference, reference_at


def _rows(medians: dict[float, float | None]) -> list[dict]:
    return [{"mass_GeV": m, "sigma_median_cm2": s, "no_sensitivity": s is None, "method": "CLs+b", "cl": 0.9}
            for m, s in medians.items()]


def test_every_shipped_reference_loads_with_its_source():
    for name in REFERENCES:
        ref = load_reference(name)
        assert "arXiv" in ref.source and ref.mass_GeV.size > 5
        assert np.all(np.diff(ref.mass_GeV) > 0) and np.all(ref.sigma_cm2 > 0)


def test_lz_projection_numbers():
    """The projection's quoted numbers (PRD 101 052002 abstract) and the digitised v1 curve."""
    ref = load_reference("lz_projection_2018")
    assert ref.interaction == "SI" and dict(ref.points) == {40.0: 1.4e-48}
    assert reference_at(ref, [40.0])[0] == 1.55966e-48  # a digitised point is returned as written
    # the curve has its minimum near 40 GeV and rises steeply below 10 GeV
    assert ref.mass_GeV[np.argmin(ref.sigma_cm2)] == 40.0
    assert reference_at(ref, [9.0])[0] / reference_at(ref, [13.0])[0] > 5


def test_interpolation_is_log_log_and_nan_outside():
    ref = load_reference("lz_projection_2018")
    lo, hi = 36.0, 40.0
    mid = np.sqrt(lo * hi)
    expected = np.sqrt(reference_at(ref, [lo])[0] * reference_at(ref, [hi])[0])  # geometric mean at the log midpoint
    assert reference_at(ref, [mid])[0] == pytest.approx(expected, rel=1e-12)
    out = reference_at(ref, [1.0, 1e5])
    assert np.all(np.isnan(out))


def test_comparison_ratios_and_published_points():
    ref = load_reference("lz_projection_2018")
    table = compare_with_reference(_rows({10.0: 2e-47, 40.0: 1.4e-48, 5.0: None, 3000.0: 1e-46}), ref)
    by_mass = {row["mass_GeV"]: row for row in table}
    assert set(by_mass) == {10.0, 40.0, 3000.0}  # no sensitivity: no row
    assert by_mass[10.0]["ratio"] == pytest.approx(2e-47 / reference_at(ref, [10.0])[0])
    assert by_mass[40.0]["ratio_published"] == pytest.approx(1.0) and by_mass[10.0]["published_cm2"] is None
    assert by_mass[3000.0]["ratio"] is None  # outside the digitised curve


def test_unknown_reference_is_one_line():
    with pytest.raises(ConfigError, match="lz_projection_2018"):
        load_reference("lz_projection_2019")


def test_compare_command_and_plot(tmp_path):
    rows = _rows({10.0: 2e-47, 40.0: 1.5e-48})
    for row in rows:
        row.update({k: None for k in ("sigma_m2_cm2", "sigma_m1_cm2", "sigma_p1_cm2", "sigma_p2_cm2", "sigma_pcl_cm2",
                                      "sigma_asymptotic_median_cm2", "sigma_discovery_3sigma_cm2")})
        row.update({f"{c}_bound": None for c in ("sigma_m2", "sigma_m1", "sigma_median", "sigma_p1", "sigma_p2")})
        row["pcl_status"] = None
    curve = tmp_path / "limit_curve.csv"
    write_curve_csv(curve, rows)
    assert [r["sigma_median_cm2"] for r in read_curve_csv(curve)] == [2e-47, 1.5e-48]
    out = tmp_path / "reference_comparison.csv"
    assert main(["compare", "--curve", str(curve), "--reference", "lz_projection_2018", "--out", str(out)]) == 0
    written = list(csv.DictReader(out.read_text().splitlines()))
    assert [float(r["ratio_published"] or "nan") for r in written][1] == pytest.approx(1.5 / 1.4)
    assert main(["compare", "--curve", str(curve), "--reference", "nope", "--out", str(out)]) == 2
    plot = tmp_path / "limit_curve.png"
    plot_limit_curve(read_curve_csv(curve), plot, reference=load_reference("lz_projection_2018"))
    assert plot.stat().st_size > 10_000
