r"""Accidental coincidences: an isolated S1 paired at random with an isolated S2.

An accidental-coincidence (AC) event is not a recoil: an S1 and an S2 from different (often
instrumental or partly lost) interactions are paired into one event. It has no recoil energy and
no NEST response, so its PDF is built directly in the analysis space (cS1, log10 cS2) and never
folded (:class:`ObservableTemplate`, :func:`lzflow.pdfs.fold_spectrum`).

**Count.** The published ROI count after all cuts (LZ Table I: PRL24, arXiv:2410.17036, 2.8 ± 0.6;
PRL22, arXiv:2207.03764, 1.2 ± 0.3 [S: as quoted in the diamx notes, see docs/ws2024.md]) is the
configured ``counts``; the template has unit sum over the ROI, so that count lands in the ROI.

**Shape.** Random pairing makes the pair density the product of the isolated-S1 and isolated-S2
spectra. We take each as a power law (an assumption: both spectra fall steeply above threshold),

.. math:: \frac{dN}{d\,cS1\; d\,cS2} \propto cS1^{-\alpha}\; cS2^{-\beta},
          \qquad cS1 \ge 3\ \mathrm{phd},\quad cS2 \ge 600\ \mathrm{phd},

i.e. in (u = ln cS1, y = log10 cS2) the density :math:`\propto e^{-A(u-u_0) - B(y-y_0)}` with
:math:`A = \alpha - 1`, :math:`B = (\beta - 1)\ln 10`: its contours are straight lines in
(ln cS1, log10 cS2), as the published ones nearly are. The lower edges are the ROI's cS1 > 3 phd
and the raw S2 threshold of 600 phd (PRL22; cS2 ≈ raw S2 at the edge, corrections neglected).

**Parameters** (:data:`AC_S1_INDEX`, :data:`AC_S2_INDEX`) are fitted to the 1σ and 2σ contours of
LZ's AC component in the WS2024 (cS1, log10 cS2) figure of PRL24, as digitised by the diamx project
(M. Liu, github.com/mhliu0001/diamx, ``diamx/data/lz_ws2024_ac_{1,2}sigma.csv`` @fe60e5e, copied
to ``tests/data/lz_ws2024_ac_contours.csv``) [S]: A and B such that the template puts 68.27 % of
the ROI events inside the 1σ polygon and 95.45 % inside the 2σ polygon (least squares on the two
fractions). The two-parameter law cannot meet both exactly: it gives 67.6 % and 97.2 %. A fit of
the contour *lines* instead (straight lines at the Gamma(2) levels 2.36 and 4.86 of the truncated
exponentials) gives A = 1.48, B = 2.06, a broader template with 60 % / 94 % inside the polygons;
its effect on the limit is quoted in docs/validation.md as the shape's uncertainty.
``tests/unit/test_accidentals.py`` refits both from the digitised contours.

The template is exact per bin (the law is separable and integrates in closed form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "OBSERVABLE_BACKGROUNDS",
    "AC_S1_INDEX",
    "AC_S2_INDEX",
    "AC_CS1_MIN_PHD",
    "AC_S2_THRESHOLD_PHD",
    "ObservableTemplate",
    "accidental_template",
    "observable_source_template",
]

#: Background sources whose PDF is a template in (cS1, log10 cS2), not a folded recoil spectrum.
OBSERVABLE_BACKGROUNDS: tuple[str, ...] = ("accidentals",)

#: α: isolated-S1 spectrum ∝ cS1^-α (A = α − 1 = 1.667), fitted to PRL24's AC contours (docstring).
AC_S1_INDEX = 2.667
#: β: isolated-S2 spectrum ∝ cS2^-β (B = (β − 1) ln 10 = 3.885 per decade), fitted as above.
AC_S2_INDEX = 2.687
#: Lower cS1 edge of the AC population: the ROI's 3 phd (PRL22/PRL24).
AC_CS1_MIN_PHD = 3.0
#: Lower cS2 edge: the raw S2 threshold, 600 phd (PRL22).
AC_S2_THRESHOLD_PHD = 600.0


def _power_integrals(edges: np.ndarray, lo: float, index: float) -> np.ndarray:
    r"""∫ x^-index dx over each interval of ``edges`` clipped to [lo, ∞) (index > 1)."""
    e = np.clip(np.asarray(edges, dtype=float), lo, None)
    g = e ** (1.0 - index) / (1.0 - index)
    return np.diff(g)


def accidental_template(cs1_edges: np.ndarray, log10cs2_edges: np.ndarray, *,
                        s1_index: float = AC_S1_INDEX, s2_index: float = AC_S2_INDEX,
                        cs1_min: float = AC_CS1_MIN_PHD,
                        s2_threshold: float = AC_S2_THRESHOLD_PHD) -> np.ndarray:
    r"""Fraction of the ROI's accidental events per (cS1, log10 cS2) bin, unit sum.

    .. math:: T_{ij} \propto \int_{cS1_i} x^{-\alpha} dx \;\int_{cS2_j} z^{-\beta} dz,

    with both integrals clipped to the population's lower edges (``cs1_min``, ``s2_threshold``)
    and cS2 = 10^y. ``ValueError`` if the ROI holds none of the population.
    """
    if not (s1_index > 1 and s2_index > 1):
        raise ValueError(f"accidental template: indices {s1_index}, {s2_index}; expected both > 1")
    if not (cs1_min > 0 and s2_threshold > 0):
        raise ValueError(f"accidental template: lower edges cS1 {cs1_min:g} phd, S2 {s2_threshold:g} phd; expected both "
                         "> 0 (the power laws diverge at 0: set pdf.s2_raw_min_phd)")
    x = _power_integrals(cs1_edges, cs1_min, s1_index)
    z = _power_integrals(10.0 ** np.asarray(log10cs2_edges, dtype=float), s2_threshold, s2_index)
    t = np.outer(x, z)
    total = float(t.sum())
    if not total > 0:
        raise ValueError("accidental template: the ROI lies outside the accidental population "
                         f"(cS1 >= {cs1_min:g} phd, cS2 >= {s2_threshold:g} phd)")
    return t / total


@dataclass(frozen=True)
class ObservableTemplate:
    """A background given directly in the analysis space: ``counts`` events in the ROI, spread by
    :func:`accidental_template`. It is not an energy spectrum: calling it is refused."""

    name: str
    counts: float

    def binned(self, space: Any) -> np.ndarray:
        """Expected events per analysis bin of ``space`` (an :class:`lzflow.space.AnalysisSpace`), the
        cS2 edge at the space's own raw S2 threshold (``s2_raw_min_phd``; the fit used 600 phd)."""
        cs1 = np.linspace(space.cs1_min, space.cs1_max, int(space.cs1_bins) + 1)
        cs2 = np.linspace(space.log10cs2_min, space.log10cs2_max, int(space.log10cs2_bins) + 1)
        return self.counts * accidental_template(cs1, cs2, s2_threshold=float(space.s2_raw_min_phd))

    def __call__(self, energy_keV: np.ndarray) -> np.ndarray:
        raise TypeError(f"{self.name} is a template in (cS1, log10 cS2), not a recoil spectrum: "
                        "it has no energy to fold")


def observable_source_template(name: str, counts: float) -> ObservableTemplate:
    """The :class:`ObservableTemplate` of background ``name`` (one of :data:`OBSERVABLE_BACKGROUNDS`)
    with ``counts`` events in the ROI."""
    if name not in OBSERVABLE_BACKGROUNDS:
        raise ValueError(f"{name!r} is not an observable-space background; expected one of "
                         f"{', '.join(OBSERVABLE_BACKGROUNDS)}")
    counts = float(counts)
    if not (math.isfinite(counts) and counts >= 0):
        raise ValueError(f"{name}: counts {counts!r}; expected finite and >= 0")
    return ObservableTemplate(name=name, counts=counts)
