r"""The reference family: the fixed spectra a response matrix's event allocation is sized for.

A response matrix never depends on the configured source list: its allocation of NEST events over
energy (:func:`lzflow.response.allocation.plan_allocation`) makes every member of a fixed
*reference family* reach the requested effective n_samples. The family mixes generic shapes
(WIMP-like SHM spectra from 6 GeV to 1 TeV, CEvNS-like steep exponentials, flat/rising/falling ER)
with the shapes of every background *registered* in :mod:`lzflow.spectra` (not the configured
subset); the configured WIMP masses never enter, so a new mass needs only a fold. Costs with the
default projection detector: C ≈ 1.02 (NR), 0.20 (beta, gammaRay): a matrix for n_samples = 1e7
holds ≈ 1.1e7 NR and 2e6 + 1.7e6 ER events, where the direct approach needs 1e7 events for each
of the 20 PDFs.

Frozen arithmetic. The WIMP-like shapes (:func:`shm_wimp_shape`) are a simpler SHM than
:func:`lzflow.spectra.wimp_rate` (fixed Earth speed 254 km/s, u = :data:`REFERENCE_AMU_GEV`).
Only their shape matters, but it sets every matrix's allocation and its recorded
``reference_cost``, so it is kept bit for bit: evaluating it with
:func:`lzflow.spectra.nuclear.helm_form_factor_sq` (6e-11 relative difference) or
:func:`lzflow.spectra.wimp.vmin_km_s` (last-bit differences) would change the matrices. The
constants that are exactly equal (c, ħc, A of natural xenon) come from
:mod:`lzflow.spectra.constants`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..space import base_interaction, canonical_interaction
from ..spectra import BACKGROUND_NAMES, background_model
from ..spectra.constants import HBARC_KEV_FM, SPEED_OF_LIGHT_KM_S, XE_MOLAR_MASS_G
from .allocation import bin_integrals, clipped_spectrum, integrate_spectrum

__all__ = [
    "ReferenceSpectrum",
    "REFERENCE_WIMP_MASSES_GEV",
    "REFERENCE_AMU_GEV",
    "reference_family",
    "reference_probabilities",
    "reference_helm_form_factor_sq",
    "shm_wimp_shape",
]

#: Atomic mass unit (GeV) of the reference WIMP shapes, 7 digits and frozen: CODATA's
#: :data:`lzflow.spectra.constants.AMU_GEV` (0.93149410242) would change every matrix.
REFERENCE_AMU_GEV = 0.9314941
# ħc in MeV fm: 197.3269804, exactly the value the reference shapes always used.
_HBARC_MEV_FM = HBARC_KEV_FM / 1e3


@dataclass(frozen=True)
class ReferenceSpectrum:
    """A reference shape f (arbitrary normalisation) defined on ``range_keV`` (0 outside)."""

    name: str
    shape: Callable[[np.ndarray], np.ndarray]
    range_keV: tuple[float, float]


def reference_helm_form_factor_sq(E_keV: np.ndarray, A: float = XE_MOLAR_MASS_G) -> np.ndarray:
    r"""Helm |F(q)|² (Lewin & Smith): c = 1.23 A^{1/3} − 0.60 fm, a = 0.52 fm, s = 0.9 fm,
    :math:`r_n^2 = c^2 + \tfrac73\pi^2a^2 - 5s^2`, F = 3 j₁(q r_n)/(q r_n) e^{−q²s²/2}, q = √(2 m_N E).

    The form factor of :func:`lzflow.spectra.nuclear.helm_form_factor_sq` (which the analysis'
    spectra use) in the reference family's frozen arithmetic: m_N = A · :data:`REFERENCE_AMU_GEV`,
    F formed before squaring, no small-x series (the two agree to 6e-11 relative).
    """
    E = np.asarray(E_keV, dtype=float)
    m_N_MeV = A * REFERENCE_AMU_GEV * 1e3
    q = np.sqrt(2.0 * m_N_MeV * E * 1e-3) / _HBARC_MEV_FM  # fm^-1
    c = 1.23 * A ** (1 / 3) - 0.60
    a, s = 0.52, 0.9
    rn = math.sqrt(c * c + 7 / 3 * math.pi ** 2 * a * a - 5 * s * s)
    x = q * rn
    with np.errstate(invalid="ignore", divide="ignore"):
        j1 = (np.sin(x) - x * np.cos(x)) / x ** 2
        F = np.where(x > 1e-6, 3 * j1 / x, 1.0) * np.exp(-(q * s) ** 2 / 2)
    return F * F


def shm_wimp_shape(E_keV: np.ndarray, mass_GeV: float, v0_km_s: float = 238.0, vesc_km_s: float = 544.0,
                   vE_km_s: float = 254.0, A: float = XE_MOLAR_MASS_G) -> np.ndarray:
    r"""Shape of the SI WIMP recoil spectrum in the standard halo model (arbitrary units):
    :math:`F^2(E)\,\eta(v_\mathrm{min})`, :math:`v_\mathrm{min} = \sqrt{m_N E/2\mu^2}`, with the
    truncated-Maxwellian mean inverse speed (x = v_min/v0, y = v_E/v0, z = v_esc/v0)

    .. math::
        \eta \propto \begin{cases}
        \mathrm{erf}(x+y) - \mathrm{erf}(x-y) - \frac{4y}{\sqrt\pi}e^{-z^2} & x < z - y\\
        \mathrm{erf}(z) - \mathrm{erf}(x-y) - \frac{2(z+y-x)}{\sqrt\pi}e^{-z^2} & z-y \le x < z+y\\
        0 & \text{otherwise.}\end{cases}

    Used only to shape the reference family. The analysis' signal comes from
    :func:`lzflow.spectra.wimp_rate`, whose shape agrees to ~3 % (it uses the computed Earth speed,
    252 km/s, and the Lewin & Smith normalisation instead of a fixed ``vE_km_s``).
    """
    from scipy.special import erf

    E = np.asarray(E_keV, dtype=float)
    m_N = A * REFERENCE_AMU_GEV
    mu = mass_GeV * m_N / (mass_GeV + m_N)
    vmin = np.sqrt(np.clip(E, 0, None) * 1e-6 * m_N / (2 * mu * mu)) * SPEED_OF_LIGHT_KM_S
    x, y, z = vmin / v0_km_s, vE_km_s / v0_km_s, vesc_km_s / v0_km_s
    ez = math.exp(-z * z) / math.sqrt(math.pi)
    low = erf(x + y) - erf(x - y) - 4 * y * ez
    mid = math.erf(z) - erf(x - y) - 2 * (z + y - x) * ez
    eta = np.where(x < z - y, low, np.where(x < z + y, mid, 0.0))
    return np.clip(eta, 0, None) * reference_helm_form_factor_sq(E, A)


#: Masses (GeV) of the WIMP-like NR reference shapes: 6 GeV – 1 TeV, denser at low mass.
REFERENCE_WIMP_MASSES_GEV: tuple[float, ...] = (6, 8, 10, 13, 17, 22, 30, 40, 55, 75, 100, 150, 250, 500, 1000)


def _exp_shape(E0: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(E: np.ndarray) -> np.ndarray:
        return np.exp(-np.asarray(E, dtype=float) / E0)
    return f


def _wimp_shape(m: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(E: np.ndarray) -> np.ndarray:
        return shm_wimp_shape(E, m)
    return f


def _power_shape(k: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(E: np.ndarray) -> np.ndarray:
        return np.asarray(E, dtype=float) ** k
    return f


def _linear_falling(E1: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(E: np.ndarray) -> np.ndarray:
        return np.clip(1.0 - np.asarray(E, dtype=float) / E1, 0.0, None)
    return f


#: Backgrounds whose shapes join each interaction type's reference family (the assignment the
#: matrices were tuned with; a background configured with another ER yield model is still covered
#: there, since both ER families hold the generic flat, rising and falling shapes; DetER is flat).
FAMILY_BACKGROUNDS: dict[str, tuple[str, ...]] = {
    "NR": ("B8", "DSN", "DetNR", "atm", "hep"),
    "beta": ("Kr85", "Rn220", "Rn222", "pp", "vvBB"),
    "gammaRay": ("DetER",),
}


def _background_shapes(interaction: str) -> list[ReferenceSpectrum]:
    """Shapes of the registered backgrounds assigned to this NEST interaction type's family
    (:data:`FAMILY_BACKGROUNDS`: fixed, not the configured subset nor the configured yield models,
    so a matrix never depends on them; normalisation is irrelevant)."""
    out = []
    for name in BACKGROUND_NAMES:
        m = background_model(name)
        if name in FAMILY_BACKGROUNDS[interaction]:
            out.append(ReferenceSpectrum(f"bkg_{name}", m.shape, tuple(map(float, m.energy_range_keV))))
    return out


def reference_family(interaction: str, include_backgrounds: bool = True) -> list[ReferenceSpectrum]:
    """The fixed reference spectra that size and shape a response matrix.

    Generic shapes — NR: SHM WIMP shapes (Helm form factor) for :data:`REFERENCE_WIMP_MASSES_GEV`
    on [0, 200] keV, steep exponentials exp(−E/0.42 keV) on [0, 5] keV and exp(−E/0.8 keV) on
    [0, 6.5] keV (solar-ν CEvNS near threshold), exp(−E/E0) with E0 = 5, 20 keV on [0, 200] keV
    (neutron / atmospheric-ν like). ER (beta, gammaRay): flat on [0, 100], [1, 100] and [5, 100] keV
    (the last two mimic the atomic-binding suppression of ν–e scattering), ∝ E (2νββ-like) and
    ∝ (1 − E/300 keV) (slowly falling, ν–e like) on [0, 100] keV.

    With ``include_backgrounds`` the shapes of every background *registered* in
    :mod:`lzflow.spectra` of this interaction type are added (fixed physics; independent of which
    backgrounds and masses a configuration uses), so the family covers e.g. the ⁸B and hep CEvNS
    spectra, whose cut-off shapes no simple analytic family follows closely.
    """
    it = canonical_interaction(interaction)
    if it == "NR":
        fam = [ReferenceSpectrum(f"wimp_{m:g}GeV", _wimp_shape(m), (0.0, 200.0)) for m in REFERENCE_WIMP_MASSES_GEV]
        fam.append(ReferenceSpectrum("exp0.42keV_to5keV", _exp_shape(0.42), (0.0, 5.0)))
        fam.append(ReferenceSpectrum("exp0.8keV_to6.5keV", _exp_shape(0.8), (0.0, 6.5)))
        fam += [ReferenceSpectrum(f"exp{E0:g}keV", _exp_shape(E0), (0.0, 200.0)) for E0 in (5.0, 20.0)]
    else:
        fam = [ReferenceSpectrum("flat", _power_shape(0.0), (0.0, 100.0)),
               ReferenceSpectrum("flat_above_1keV", _power_shape(0.0), (1.0, 100.0)),
               ReferenceSpectrum("flat_above_5keV", _power_shape(0.0), (5.0, 100.0)),
               ReferenceSpectrum("rising_linear", _power_shape(1.0), (0.0, 100.0)),
               ReferenceSpectrum("falling_linear_300keV", _linear_falling(300.0), (0.0, 100.0))]
    if include_backgrounds:  # a charge-scaled beta model: beta's family (same shapes, other yields)
        fam += _background_shapes(base_interaction(it))
    return fam


def reference_probabilities(family: Sequence[ReferenceSpectrum], edges: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P (K, n_E): bin probabilities normalised to each shape's full integral,
    below (K,), above (K,): probability below / above the grid)."""
    P, below, above = [], [], []
    for ref in family:
        lo, hi = ref.range_keV
        f = clipped_spectrum(ref.shape, lo, hi)
        total = integrate_spectrum(f, lo, hi)
        p = bin_integrals(f, edges) / total
        P.append(p)
        below.append(integrate_spectrum(f, lo, min(hi, edges[0])) / total if lo < edges[0] else 0.0)
        above.append(integrate_spectrum(f, max(lo, edges[-1]), hi) / total if hi > edges[-1] else 0.0)
    return np.array(P), np.array(below), np.array(above)
