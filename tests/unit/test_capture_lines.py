"""Capture lines and the WS2024 sources (Ar37, Xe124, Xe127, H3): fractions, normalisation, shapes,
and a line's expected count conserved by the fold through a response matrix."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.integrate import quad

from lzflow.pdfs import fold_spectrum
from lzflow.response import ResponseMatrix
from lzflow.response.allocation import energy_edges
from lzflow.response.reference import reference_family
from lzflow.space import AnalysisSpace
from lzflow.spectra.backgrounds import (
    BACKGROUND_NAMES,
    EXTRA_BACKGROUND_NAMES,
    REGISTERED_BACKGROUNDS,
    background_model,
    background_spectrum,
)
from lzflow.spectra.capture import (
    CAPTURE_LINES,
    H3_Q_KEV,
    LINE_WIDTH_LN,
    line_integral,
    line_spectrum,
    tritium_c14_shape,
)

LINES = tuple(CAPTURE_LINES)


def test_registry_keeps_the_projection_names():
    assert BACKGROUND_NAMES == ("B8", "DSN", "DetER", "DetNR", "Kr85", "Rn220", "Rn222", "atm", "hep", "pp", "vvBB")
    assert set(REGISTERED_BACKGROUNDS) == set(BACKGROUND_NAMES) | {"Ar37", "H3", "Xe124", "Xe124LL", "Xe124LM", "Xe127"}
    assert EXTRA_BACKGROUND_NAMES == ("Ar37", "H3", "Xe124", "Xe124LL", "Xe124LM", "Xe127")
    with pytest.raises(ValueError, match="valid names: Ar37, B8"):
        background_model("Ar39")
    # the response matrices' reference family holds only the projection's sources (bit-identical matrices)
    names = {ref.name for it in ("NR", "beta", "gammaRay") for ref in reference_family(it)}
    assert not any(n.startswith(f"bkg_{x}") for n in names for x in EXTRA_BACKGROUND_NAMES)


@pytest.mark.parametrize("name", LINES)
def test_line_fractions_sum_to_one(name):
    lines = CAPTURE_LINES[name]
    assert sum(f for _, _, f in lines) == pytest.approx(1.0, abs=1e-12)
    assert all(e > 0 and 0 < f <= 1 for _, e, f in lines)  # a single-line source (Xe124LL, Xe124LM): f = 1
    assert line_integral(lines, 0.0, np.inf) == pytest.approx(1.0, abs=1e-12)


def test_line_energies():
    """The ROI lines at the energies of their sources (module docstring of lzflow.spectra.capture)."""
    e = {n: {label: energy for label, energy, _ in lines} for n, lines in CAPTURE_LINES.items()}
    assert e["Ar37"]["K"] == 2.8224 and e["Xe127"]["L"] == 5.19
    assert e["Xe124"]["LL"] == 10.0 and e["Xe124"]["LM"] == 5.98
    assert e["Xe124LL"] == {"LL": 10.0} and e["Xe124LM"] == {"LM": 5.98}  # the same lines, alone


@pytest.mark.parametrize("name", LINES)
def test_each_line_holds_its_fraction(name):
    lines = CAPTURE_LINES[name]
    within_3_sigma = 0.9973002039367398  # Φ(3) − Φ(−3)
    for _, energy, fraction in lines:
        lo, hi = energy * np.exp(-3 * LINE_WIDTH_LN), energy * np.exp(3 * LINE_WIDTH_LN)
        assert line_integral(lines, lo, hi) == pytest.approx(fraction * within_3_sigma, rel=1e-4)
        num = quad(lambda x: line_spectrum(np.array([x]), lines)[0], lo, hi, points=[energy], limit=200)[0]
        assert num == pytest.approx(line_integral(lines, lo, hi), rel=1e-8)


@pytest.mark.parametrize("name", EXTRA_BACKGROUND_NAMES)
def test_shapes_positive_finite_and_counts_normalised(name):
    m = background_model(name)
    assert m.recoil == "ER" and m.yield_models == ("beta", "gammaRay") and m.absolute_rate is None
    E = np.concatenate([[-1.0, 0.0], np.geomspace(0.005, 300.0, 5000), [np.inf, np.nan]])
    s = background_spectrum(name, E, 10.0, (1.0, 100.0))
    assert np.all(np.isfinite(s)) and np.all(s >= 0) and np.any(s > 0)
    lo, hi = m.energy_range_keV
    assert np.all(s[(E < lo) | (E > hi)] == 0)
    # counts in the window: exact for lines (erf), quadrature for H3; checked with scipy
    window = (1.0, 100.0)
    pts = [b for b in m.breakpoints_keV if window[0] < b < window[1]]
    val = quad(lambda x: background_spectrum(name, np.array([x]), 10.0, window)[0], *window,
               points=pts or None, limit=500, epsrel=1e-9)[0]
    assert val == pytest.approx(10.0, rel=1e-6)
    m2 = pickle.loads(pickle.dumps(m))  # travels to worker processes
    np.testing.assert_allclose(m2.shape(E[2:-2]), m.shape(E[2:-2]))


def test_tritium_shape():
    E = np.array([0.5, 2.0, 5.0, 10.0, 18.0, 18.6, 30.0])
    s = tritium_c14_shape(E)
    assert np.all(s > 0)
    assert s[1] > s[3] > s[4]  # tritium falls towards its endpoint
    assert s[-1] == pytest.approx(s[-2])  # above 18.59 keV only the flat 14C share remains
    assert quad(tritium_c14_shape, 0, 160, points=[H3_Q_KEV], limit=200)[0] == pytest.approx(1.0, rel=1e-6)


def _unit_response(bins_per_decade: int) -> ResponseMatrix:
    """Every simulated event of the ER grid (0.3–60 keV) lands in one ROI bin: ε = 1."""
    space = AnalysisSpace(cs1_bins=4, log10cs2_bins=4)
    edges = energy_edges(0.3, 60.0, bins_per_decade)
    n = len(edges) - 1
    counts = np.zeros((n, *space.shape), dtype=np.int64)
    counts[:, 1, 2] = 100
    return ResponseMatrix(interaction="beta", energy_edges=edges, space=space, counts=counts,
                          n_sim=np.full(n, 100, dtype=np.int64), eps_pilot=np.ones(n))


@pytest.mark.parametrize("bins_per_decade", [100, 200, 400])
@pytest.mark.parametrize("name", ["Ar37", "Xe124", "Xe127"])
def test_fold_conserves_a_line_count(name, bins_per_decade):
    """With ε = 1 the fold's expected events equal the configured count of the lines on the grid."""
    resp = _unit_response(bins_per_decade)
    m = background_model(name)
    counts = 37.0
    lines = CAPTURE_LINES[name]
    rel = 1e-6 if bins_per_decade < 200 else 1e-9  # 4-point Gauss-Legendre per bin on a 1.5 % line
    on_grid = line_integral(lines, 0.3, 60.0)  # exact share of the lines inside the grid
    fold = fold_spectrum(resp, lambda E: background_spectrum(name, E, counts, (0.01, 100.0)),
                         full_range_keV=m.energy_range_keV)
    assert fold.expected_total == pytest.approx(counts * on_grid, rel=rel)
    assert fold.spectrum_total == pytest.approx(counts, rel=rel)
    if name == "Ar37":  # the K line alone: its configured count comes back
        k_only = fold_spectrum(resp, lambda E: background_spectrum(name, E, counts, (2.0, 4.0)))
        assert k_only.expected_total == pytest.approx(counts * on_grid / line_integral(lines, 2.0, 4.0), rel=rel)
        assert k_only.expected_total == pytest.approx(counts / 0.902 * on_grid, rel=1e-6)
