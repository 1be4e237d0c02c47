r"""Electron-capture lines: ³⁷Ar EC, ¹²⁴Xe two-neutrino double EC, ¹²⁷Xe EC, and the tritium β.

Electron capture leaves a vacancy in the daughter atom whose X-ray/Auger cascade deposits the
vacancy's binding energy at one point: a *line*. A line is monoenergetic (natural width ~ eV),
while the response matrix integrates a spectrum over fine energy bins of :math:`\Delta\ln E =
\ln 10/200 = 1.15\,\%` with a 4-point Gauss–Legendre rule per bin
(:func:`lzflow.response.allocation.bin_integrals`), which cannot see a δ function. Each line is
therefore represented by a *narrow normalised shape*, a log-normal of width
:data:`LINE_WIDTH_LN` = 0.015 in ln E:

.. math:: \frac{dN}{dE} = \sum_i b_i\,\frac{1}{\sqrt{2\pi}\,\sigma E}
          \exp\!\Big[-\frac{(\ln E - \ln E_i)^2}{2\sigma^2}\Big],
          \qquad \int_0^\infty \frac{dN}{dE}\,dE = \sum_i b_i = 1 .

Its window integrals are exact (erf, :func:`line_integral`), so a configured count is conserved,
and the per-bin quadrature of the fold sums to 1 within 1e-9 on the default grid of 200 bins per
decade and 1e-6 on 100 (tests/unit/test_capture_lines.py). The 1.5 % width is negligible next to the detector's energy resolution at a few
keV (≳ 15 %: adds < 0.5 % in quadrature); it only spreads each line over a few fine bins so that
the fold averages their simulated responses.

Lines (energy = deposit of the daughter's vacancy cascade; fractions sum to 1):

* **³⁷Ar** → ³⁷Cl, T½ = 35.0 d: K 2.8224 keV (90.2 %), L 0.2702 keV (8.7 %), M 0.0175 keV (1.1 %).
  K/L energies and fractions as in the XENON1T ³⁷Ar calibration (arXiv:2211.14191) and the LZ
  WS2022 model (as quoted by the diamx reproduction notes, Liu 2025); M energy and the remaining
  1.1 % [R]. LZ modelled ³⁷Ar as a decaying population (rate ∝ e^{−t/τ} over WS2022); here the
  configured count is the run-integrated total (no time dimension in lzflow).
* **¹²⁴Xe** 2νECEC → ¹²⁴Te: KK 64.3 keV, KL 36.7 keV, KM 33.0 keV, LL 10.0 keV, LM 5.98 keV.
  LL (1.4 %) and LM (0.8 %) are the LZ WS2024 ROI lines (energies and fractions as quoted by the
  diamx notes for the LZ model); KK ≈ 74 % (Nitescu et al., J. Phys. G 2024, arXiv:2402.13784);
  the split of the remaining K channels KL 18.8 %, KM 5.0 % and all K-line energies [R]. Only LL
  and LM reach the ROI (cS1 < 80 phd is ≈ 15–20 keVee).
* **¹²⁷Xe** EC → ¹²⁷I (cosmogenic, T½ = 36.3 d): K 33.17 keV (84.5 %), L 5.19 keV (12.2 %),
  M 1.07 keV (3.3 %) [R: ENSDF-like values, recalled]. The EC populates excited ¹²⁷I states whose
  γ rays (203, 375 keV) leave the event outside the ROI unless they escape the TPC; only events
  whose γ escaped (near the walls) contribute, and the configured count is that escaping-γ count
  (the published ROI count), so the template is the vacancy line alone. ¹²⁵Xe (L 5.2 keV too)
  is folded in, as in the LZ table.
* **H3** (tritium, from the CH₃T calibration): allowed β, Q = 18.591 keV, daughter ³He (Z = 2)
  (:func:`lzflow.spectra.beta.beta_spectrum`); LZ's "tritium + ¹⁴C" (8:1) has the ¹⁴C β
  (Q = 156 keV, flat below 20 keV) folded in as a flat 1/9 share [diamx notes].

* **Xe124LL**, **Xe124LM**: the ¹²⁴Xe LL (10.0 keV) and LM (5.98 keV) lines alone (one line each, fraction
  1: a count is the number of decays through that channel), so that each can have its own yield model.

Charge yield of captures. The X-ray/Auger cascade that fills an inner-shell vacancy deposits its energy
densely, recombination is stronger, and the event has less charge and more light than a β of the same
energy, i.e. it lies closer to the NR band. Measured: ¹²⁷Xe L-shell (5.2 keV) captures in XELDA
(Temples et al., PRD 104 (2021) 112001, arXiv:2109.11487; 6.9σ / 9.2σ from the tritium-tuned β response
at 363 / 258 V/cm, abstract [V]); in LZ itself the M-shell (1.1 keV), L-shell (5.2 keV) and K-shell
(33.2 keV) EC charge yields at 193 and 96.5 V/cm, with the ¹²⁴Xe LL double capture shifted further
(LZ, "Measurements and models of enhanced recombination following inner-shell vacancies in liquid
xenon", arXiv:2503.05679, PRD 112 (2025) 012024, abstract [V]; its numbers are not read here). lzflow
models it as NEST's β yields with the charge × Q, the quanta conserved (``nest_yields: {model: beta,
charge_yield_scale: Q}``, :func:`lzflow.response.nest.charge_scaled_er_params`). The Q of each line,
:data:`LZ_CHARGE_YIELD_SCALE`, is LZ's WS2024 model as reproduced by diamx [S] (M. Liu,
github.com/mhliu0001/diamx, ``diamx/experiments/lz.py`` ``quenching_factor`` @fe60e5e; its NEST driver
multiplies the β electron yield by Q and gives the difference to the photons): LL 0.71 (a fitted shape
parameter, nominal 71 %, range 65–87 %), LM 0.87, ¹²⁷Xe/¹²⁵Xe L 0.87. The ¹²⁷Xe M line (≈ 9 % of its ROI
events with Q = 0.87) takes the L-shell value (an assumption: diamx models ¹²⁷Xe as the L line alone).
"""

from __future__ import annotations

import math
from functools import lru_cache, partial
from typing import Callable

import numpy as np
from ._integrate import integrate
from .beta import beta_spectrum

__all__ = [
    "LINE_WIDTH_LN",
    "CAPTURE_LINES",
    "LZ_CHARGE_YIELD_SCALE",
    "H3_Q_KEV",
    "line_spectrum",
    "line_integral",
    "line_breakpoints",
    "capture_shape",
    "tritium_c14_shape",
]

#: Width σ of a line in ln E (1.5 %), see the module docstring.
LINE_WIDTH_LN = 0.015

#: Lines of each capture source: name → ((label, energy keV, fraction), ...). Sources: see the
#: module docstring ([R] = recalled, not read in a primary text).
CAPTURE_LINES: dict[str, tuple[tuple[str, float, float], ...]] = {
    "Ar37": (("K", 2.8224, 0.902), ("L", 0.2702, 0.087), ("M", 0.0175, 0.011)),
    "Xe124": (("KK", 64.3, 0.740), ("KL", 36.7, 0.188), ("KM", 33.0, 0.050),
              ("LL", 10.0, 0.014), ("LM", 5.98, 0.008)),
    "Xe127": (("K", 33.17, 0.845), ("L", 5.19, 0.122), ("M", 1.07, 0.033)),
    "Xe124LL": (("LL", 10.0, 1.0),),
    "Xe124LM": (("LM", 5.98, 1.0),),
}
for _name, _lines in CAPTURE_LINES.items():
    assert abs(sum(f for _, _, f in _lines) - 1.0) < 1e-12, _name

#: Charge yield / β charge yield at the same energy of the lines LZ's WS2024 model quenches, by source
#: (LZ's model as reproduced by diamx [S], module docstring): the ``charge_yield_scale`` of
#: ``config/lz_ws2024.yaml`` (tests/unit/test_capture_yields.py checks the two agree).
LZ_CHARGE_YIELD_SCALE: dict[str, float] = {"Xe124LL": 0.71, "Xe124LM": 0.87, "Xe127": 0.87}

#: Tritium β endpoint (keV): 18.591 keV (Myers et al., PRL 114 (2015) 013003).
H3_Q_KEV = 18.591
#: ¹⁴C β endpoint (keV), ENSDF 156.476 keV; flat below 20 keV.
C14_Q_KEV = 156.476
#: Tritium : ¹⁴C events in LZ's CH₃T-induced component (8:1, diamx notes for the LZ WS2024 model).
H3_FRACTION = 8.0 / 9.0


def _gauss_ln(E_keV: np.ndarray, E0: float, sigma: float) -> np.ndarray:
    E = np.asarray(E_keV, dtype=float)
    safe = np.where(E > 0, E, 1.0)
    z = (np.log(safe) - math.log(E0)) / sigma
    return np.where(E > 0, np.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * sigma * safe), 0.0)


def line_spectrum(E_keV: np.ndarray, lines: tuple[tuple[str, float, float], ...],
                  sigma: float = LINE_WIDTH_LN) -> np.ndarray:
    r"""Σ_i b_i × log-normal(E; E_i, σ) per keV, unit integral over (0, ∞) when Σ b_i = 1."""
    E = np.asarray(E_keV, dtype=float)
    out = np.zeros_like(E)
    for _, energy, fraction in lines:
        out = out + fraction * _gauss_ln(E, energy, sigma)
    return out


def line_integral(lines: tuple[tuple[str, float, float], ...], lo_keV: float, hi_keV: float,
                  sigma: float = LINE_WIDTH_LN) -> float:
    r"""Exact :math:`\int_{lo}^{hi}` of :func:`line_spectrum`:
    :math:`\sum_i b_i\,[\Phi(z_{hi}) - \Phi(z_{lo})]`, :math:`z = (\ln E - \ln E_i)/\sigma`."""
    total = 0.0
    for _, energy, fraction in lines:
        def cdf(e: float) -> float:
            if e <= 0:
                return 0.0
            if math.isinf(e):
                return 1.0
            return 0.5 * (1.0 + math.erf((math.log(e) - math.log(energy)) / (sigma * math.sqrt(2.0))))
        total += fraction * (cdf(hi_keV) - cdf(lo_keV))
    return float(total)


def line_breakpoints(lines: tuple[tuple[str, float, float], ...],
                     sigma: float = LINE_WIDTH_LN) -> tuple[float, ...]:
    """Energies E_i·e^{kσ}, k = −8, −4, 0, 4, 8: cuts that let generic quadrature resolve each line."""
    return tuple(sorted(e * math.exp(k * sigma) for _, e, _ in lines for k in (-8, -4, 0, 4, 8)))


def capture_shape(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Unit-integral line spectrum (per keV) of capture source ``name`` (:data:`CAPTURE_LINES`)."""
    try:
        lines = CAPTURE_LINES[name]
    except KeyError:
        raise ValueError(f"capture source {name!r}; expected one of {', '.join(CAPTURE_LINES)}") from None
    return partial(line_spectrum, lines=lines)


def tritium_c14_shape(E_keV: np.ndarray) -> np.ndarray:
    r"""Unnormalised ³H + ¹⁴C β spectrum: (8/9)·f_H3(E) + (1/9)·f_C14(E), each f of unit integral.

    f_H3 is the allowed β shape (Q = 18.591 keV, Z' = 2, A = 3); f_C14 is flat on [0, Q_C14]
    (the allowed ¹⁴C shape varies by < 10 % below 20 keV, and only 1/9 of the events are ¹⁴C).
    """
    E = np.asarray(E_keV, dtype=float)
    h3 = beta_spectrum(E, H3_Q_KEV, 2, 3) / _h3_norm()
    c14 = np.where((E > 0) & (E < C14_Q_KEV), 1.0 / C14_Q_KEV, 0.0)
    return H3_FRACTION * h3 + (1.0 - H3_FRACTION) * c14


@lru_cache(maxsize=1)
def _h3_norm() -> float:
    return integrate(lambda t: beta_spectrum(t, H3_Q_KEV, 2, 3), 0.0, H3_Q_KEV, n_panels=256)
