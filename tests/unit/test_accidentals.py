"""Accidental-coincidence background (lzflow.spectra.accidentals): the template's normalisation and
exact bin integrals, its fit to LZ WS2024's published 1σ/2σ contours, the config and PDF plumbing
(no fold, counts land in the ROI) and the one-line refusals."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as Polygon
from scipy.optimize import least_squares
from scipy.special import gammaincinv

from lzflow.exceptions import ConfigError
from lzflow.pdfs import fold_spectrum, pdf_metadata
from lzflow.physics_config import check_nest_yields, observable_background
from lzflow.sources import background_source
from lzflow.space import AnalysisSpace
from lzflow.spectra.accidentals import (AC_CS1_MIN_PHD, AC_S1_INDEX, AC_S2_INDEX, AC_S2_THRESHOLD_PHD,
                                        ObservableTemplate, accidental_template)

CONTOURS = Path(__file__).parents[1] / "data" / "lz_ws2024_ac_contours.csv"
U0, Y0 = math.log(AC_CS1_MIN_PHD), math.log10(AC_S2_THRESHOLD_PHD)


def _contours() -> dict[str, np.ndarray]:
    rows = list(csv.DictReader(line for line in CONTOURS.open() if not line.startswith("#")))
    return {name: np.array([[float(r["cS1_phd"]), float(r["log10_cS2_phd"])] for r in rows if r["contour"] == name])
            for name in ("1sigma", "2sigma")}


def _grid(n: int = 600):
    """Midpoints of an n x n grid over the ROI above the population's edges, in (ln cS1, log10 cS2)."""
    u = U0 + (np.arange(n) + 0.5) * (math.log(80.0) - U0) / n
    y = Y0 + (np.arange(n) + 0.5) * (5.0 - Y0) / n
    return np.meshgrid(u, y, indexing="ij")


def _inside_fractions(a: float, b: float, U, Y, inside) -> tuple[float, float]:
    w = np.exp(-a * (U - U0) - b * (Y - Y0))
    w /= w.sum()
    return tuple(float(w[m].sum()) for m in inside)


def test_template_unit_sum_and_exact_bins():
    space = AnalysisSpace()
    t = accidental_template(space.cs1_edges, np.linspace(2.5, 5.0, 41))
    assert t.shape == (40, 40) and math.isclose(t.sum(), 1.0, rel_tol=1e-12) and np.all(t >= 0)
    # below the 600 phd S2 edge (log10 = 2.778) nothing; the edge bin holds only its upper part
    y = np.linspace(2.5, 5.0, 41)
    assert np.all(t[:, y[1:] <= Y0] == 0) and np.all(t[:, (y[:-1] < Y0) & (y[1:] > Y0)] > 0)
    # separable closed form = brute-force midpoint integration of the power laws
    xs = np.linspace(3.0, 80.0, 77001)
    xm = 0.5 * (xs[1:] + xs[:-1])
    px = np.histogram(xm, bins=space.cs1_edges, weights=xm ** -AC_S1_INDEX)[0]
    assert np.allclose(t.sum(axis=1), px / px.sum(), rtol=1e-5)
    # most events at low cS1 and low cS2: the first five cS1 bins (3-12.6 phd) hold > 85 %
    assert t[:5].sum() > 0.85
    with pytest.raises(ValueError, match="expected both > 0"):
        accidental_template(space.cs1_edges, y, s2_threshold=0.0)


def test_fit_to_published_contours():
    """The stored indices reproduce the 68.27 % / 95.45 % enclosed fractions as well as the
    two-parameter law can, and refitting the digitised contours gives them back."""
    c = _contours()
    U, Y = _grid()
    pts = np.column_stack([np.exp(U).ravel(), Y.ravel()])
    inside = [Polygon(c[k]).contains_points(pts).reshape(U.shape) for k in ("1sigma", "2sigma")]
    a, b = AC_S1_INDEX - 1.0, (AC_S2_INDEX - 1.0) * math.log(10.0)
    f1, f2 = _inside_fractions(a, b, U, Y, inside)
    assert abs(f1 - 0.6827) < 0.015 and abs(f2 - 0.9545) < 0.025, (f1, f2)
    fit = least_squares(lambda p: np.array(_inside_fractions(*p, U, Y, inside)) - [0.6827, 0.9545], [1.5, 2.0])
    assert np.allclose(fit.x, [a, b], rtol=0.02), fit.x
    # the alternative (docstring): straight lines at the Gamma(2) levels through the contours' free edges
    levels = {"1sigma": gammaincinv(2, 0.6827), "2sigma": gammaincinv(2, 0.9545)}
    free = {k: v[(v[:, 0] > 3.4) & (v[:, 1] > Y0 + 0.11) & (v[:, 1] < 4.45)] for k, v in c.items()}

    def lines(p):
        return np.concatenate([p[0] * (np.log(v[:, 0]) - U0) + p[1] * (v[:, 1] - Y0) - levels[k] for k, v in free.items()])

    alt = least_squares(lines, [1.5, 2.0]).x
    assert np.allclose(alt, [1.48, 2.06], atol=0.01), alt


def test_pdf_is_the_template_not_a_fold():
    """The accidental source's PDF is counts x template on the response's space, whatever the response."""
    space = AnalysisSpace(s2_raw_min_phd=600.0)

    class Stand:  # what fold_spectrum reads of a response for a template: space, interaction, energy bins
        interaction, n_energy = "beta", 7

    Stand.space = space
    src = background_source({"name": "accidentals", "counts": 4.0, "rel_unc": 0.17, "nest_yields": "beta",
                             "window_keV": None})
    assert isinstance(src.spectrum, ObservableTemplate) and src.interaction == "beta"
    fold = fold_spectrum(Stand(), src.spectrum, full_range_keV=src.energy_range_keV)
    assert math.isclose(fold.expected_total, 4.0, rel_tol=1e-12) and fold.efficiency == 1.0
    assert np.all(fold.variance == 0) and fold.n_mc_events == 0
    with pytest.raises(TypeError, match="not a recoil spectrum"):
        src.spectrum(np.array([1.0]))
    meta = pdf_metadata(source="accidentals", interaction="beta", fold=fold, space=space, n_samples=None,
                        source_metadata=src.metadata)
    assert (meta["recoil"], meta["interaction"], meta["expected_events"]) == ("accidental", "template", 4.0)
    assert json.loads(json.dumps(meta, allow_nan=False)) == meta  # the sidecar is plain JSON


def test_config_refusals():
    assert check_nest_yields("accidentals", "beta") == "beta"
    with pytest.raises(ConfigError, match=r"^backgrounds\.accidentals\.nest_yields: 'NR'; expected beta"):
        check_nest_yields("accidentals", "NR")
    with pytest.raises(ConfigError, match=r"^backgrounds\.accidentals\.window_keV: \[1, 2\]; expected none"):
        observable_background("accidentals", {"counts": 4.0, "rel_unc": 0.1, "nest_yields": "beta",
                                              "window_keV": [1, 2]}, 1.0)
    assert observable_background("accidentals", {"counts": 4.0, "rel_unc": 0.1, "nest_yields": "beta"}, 2.0) == {
        "counts": 8.0, "window_keV": None, "rel_unc": 0.1, "nest_yields": "beta"}
