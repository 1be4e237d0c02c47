r"""Spin-dependent (SD) WIMP–xenon elastic recoil spectrum: neutron-only and proton-only couplings.

Only the two odd isotopes scatter: ¹²⁹Xe (J = 1/2) and ¹³¹Xe (J = 3/2), natural abundances
26.4006 % and 21.2324 % (IUPAC 2013, :data:`lzflow.spectra.constants.XE_ISOTOPES`).

**Structure factors** (Klos, Menéndez, Gazit & Schwenk, PRD 88 (2013) 083516, arXiv:1304.7684;
"Klos 2013" below; its text was not available here, so the equation and table numbers are **[R]
recalled**, and the numbers are checked as described at :data:`XE_SD_ISOTOPES`). The SD cross
section of a nucleus of spin J (Klos 2013 §II, eqs. 8–10 [R], with the isoscalar/isovector
couplings :math:`a_0 = a_p + a_n`, :math:`a_1 = a_p - a_n`):

.. math::

    \frac{d\sigma}{dq^2} = \frac{8 G_F^2}{(2J+1)\,v^2}\,S_A(q), \qquad
    S_A(q) = a_0^2 S_{00}(q) + a_0 a_1 S_{01}(q) + a_1^2 S_{11}(q),

and each :math:`S_{ij}` is given as the fit (Klos 2013 §IV and its appendix table of fit
coefficients for ¹²⁹Xe and ¹³¹Xe, 1b + 2b currents [R])

.. math:: S_{ij}(u) = e^{-u} \sum_{k=0}^{9} c_{ij,k}\, u^k, \qquad u = q^2 b^2 / 2,

with the harmonic-oscillator length b = 2.2853 fm (¹²⁹Xe) and 2.2905 fm (¹³¹Xe) (Klos 2013, the
caption of the fit table). The two-body currents make :math:`S_{01}` and :math:`S_{11}` bands
(min, max); ``band="central"`` (default) takes their mean, ``"min"``/``"max"`` the edges of
:math:`S_n` or :math:`S_p` (see :func:`structure_factor` for which fits pair up).
**Convention used here**: "neutron-only" is :math:`a_n = 1, a_p = 0`, i.e. :math:`a_0 = 1,
a_1 = -1`, and "proton-only" :math:`a_p = 1, a_n = 0` (:math:`a_0 = a_1 = 1`):

.. math::

    S_n = S_{00} - S_{01} + S_{11}, \qquad S_p = S_{00} + S_{01} + S_{11}.

At :math:`q = 0`, :math:`S_{n}(0) = \frac{(2J+1)(J+1)}{\pi J}\langle S_n\rangle^2` (from
:math:`S_A(0) = \frac{(2J+1)(J+1)}{4\pi J}|(a_0+a_1)\langle S_p\rangle + (a_0-a_1)\langle S_n\rangle|^2`
with :math:`a_0 - a_1 = 2`): the 1b spin expectation value ⟨S_n⟩ = 0.329 of ¹²⁹Xe (Klos 2013
Table I [R]) gives 0.207; with 2b currents the fit gives 0.163 (central): the 2b currents lower
the SD response by ~20 %.

**Cross section per nucleon.** With :math:`\sigma_n = \frac{24}{\pi} G_F^2 \mu_n^2 a_n^2`
(neutron-only; the proton analogue with :math:`\mu_p`), the recoil spectrum is

.. math::

    \frac{d\sigma}{dE_R} = 2 m_N \frac{d\sigma}{dq^2}
      = \frac{2\pi\, m_N\, \sigma_n}{3\,\mu_n^2 v^2 (2J+1)}\, S_n(q),

which integrates, at :math:`q \to 0` over :math:`0 < E_R < 2\mu_N^2 v^2/m_N`, to the textbook
:math:`\sigma_N(0) = \frac{4}{3}\frac{J+1}{J}\frac{\mu_N^2}{\mu_n^2}\langle S_n\rangle^2\sigma_n`
(e.g. Jungman, Kamionkowski & Griest, Phys. Rep. 267 (1996) 195, §7).

**Rate** per unit detector mass (mass fractions :math:`w_i = a_i m_i / \bar m`, the velocity
integral :math:`\eta` of :func:`lzflow.spectra.wimp.mean_inverse_speed`, Lewin & Smith,
Astropart. Phys. 6 (1996) 87, eq. 3.10; the same halo model as the SI signal):

.. math::

    \frac{dR}{dE_R} = \frac{\rho_0\,\sigma_n}{2\,m_\chi\,\mu_n^2}
        \sum_{i\in\{129,131\}} w_i\, \frac{4\pi}{3}\frac{S_{n,i}(q)}{2J_i+1}\;
        \eta\big(v_\mathrm{min,i}(E_R)\big),

i.e. the SI rate of :func:`lzflow.spectra.wimp.wimp_rate` with :math:`A^2F^2(q)` replaced by
:math:`\frac{4\pi}{3}\frac{S(q)}{2J+1}` (at q = 0: :math:`\frac{4}{3}\frac{J+1}{J}\langle S\rangle^2`).
The reduced mass :math:`\mu_n` (:math:`\mu_p`) is the WIMP–neutron (proton) one (CODATA 2018
nucleon masses), each isotope has its own :math:`v_\mathrm{min}` and :math:`m_N`.

**Against wimprates 0.5** (``rate_wimp_std(..., interaction='SD_n_central')``): its structure
functions are a table (``sd/structure_f_erec_xe.pkl``, also Klos 2013, 1b + 2b, central), it uses
the proton mass in :math:`\mu` for both couplings and one averaged nucleus for :math:`v_\mathrm{min}`,
and its halo is 3.0 % low (:math:`N_\mathrm{esc}^2`, see :mod:`lzflow.spectra.wimp`). With the same
halo convention the two agree to a few % (tests/unit/test_spin_dependent.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .constants import HBARC_KEV_FM
from .nuclear import XE_NATURAL, Nucleus
from .wimp import HaloModel, mean_inverse_speed, rate_prefactor, vmin_km_s, wimp_rate

__all__ = [
    "SIGNAL_INTERACTIONS",
    "SDIsotope",
    "XE_SD_ISOTOPES",
    "PROTON_MASS_GEV",
    "NEUTRON_MASS_GEV",
    "structure_factor",
    "sd_wimp_rate",
    "signal_rate",
]

#: The WIMP couplings lzflow computes (``signal.interaction``): spin-independent (σ per nucleon,
#: isospin-conserving), spin-dependent neutron-only (σ_n) and proton-only (σ_p).
SIGNAL_INTERACTIONS = ("SI", "SD_n", "SD_p")

# CODATA 2018 (PDG 2022): proton and neutron masses in GeV/c^2
PROTON_MASS_GEV = 0.93827208816
NEUTRON_MASS_GEV = 0.93956542052

Band = Literal["central", "min", "max"]


@dataclass(frozen=True)
class SDIsotope:
    """An odd xenon isotope: its target nucleus, spin J, oscillator length b (fm) and the Klos 2013
    fit coefficients c_0..c_9 of S00, of the S11 band (min, max) and of the S01 band (min, max)."""

    nucleus: Nucleus
    J: float
    b_fm: float
    s00: tuple[float, ...]
    s11: tuple[tuple[float, ...], tuple[float, ...]]
    s01: tuple[tuple[float, ...], tuple[float, ...]]


def _isotope(A: int) -> Nucleus:
    return next(n for n in XE_NATURAL if n.A == A)


# Klos, Menendez, Gazit & Schwenk, PRD 88 (2013) 083516 (arXiv:1304.7684), table of the fit
# coefficients of S00, S11 (min, max) and S01 (min, max) for 129Xe and 131Xe with 1b + 2b currents,
# and the oscillator lengths b of its caption ([R]: the paper's text was not available here). The
# coefficients are copied as tabulated in DDCalc (GambitBSM/DDCalc, data/SDFF/54_129.dat and
# 54_131.dat, columns S00, S11min, S11max, S01min, S01max; DDCalc computes b from A instead,
# 2.2872 and 2.2923 fm, a 0.2 % change of u). Checks: S00(0) of 129Xe, 0.0547, equals
# (2J+1)(J+1)/(4 pi J) (<S_p> + <S_n>)^2 = 0.0549 with Klos 2013 Table I's 1b <S_n> = 0.329,
# <S_p> = 0.010 [R]; S_n and S_p agree with wimprates' independent table of the same paper's
# central curves to 2-4 % per isotope at q = 0 (tests/unit/test_spin_dependent.py).
XE_SD_ISOTOPES: tuple[SDIsotope, ...] = (
    SDIsotope(
        nucleus=_isotope(129), J=0.5, b_fm=2.2853,
        s00=(0.0547144, -0.146407, 0.180603, -0.125526, 0.0521484, -0.0126363, 0.00176284,
             -0.000132501, 4.23423e-06, -1.68052e-09),
        s11=((0.0221559, -0.06561, 0.086392, -0.0631729, 0.0278792, -0.00756661, 0.00126767,
              -0.000127755, 7.10322e-06, -1.67272e-07),
             (0.0357742, -0.107895, 0.145055, -0.108549, 0.0490401, -0.0136169, 0.00233283,
              -0.000239926, 1.35553e-05, -3.21404e-07)),
        s01=((-0.0885644, 0.254049, -0.332322, 0.244981, -0.109298, 0.0296705, -0.00492657,
              0.000488467, -2.65022e-05, 5.98909e-07),
             (-0.0696691, 0.19738, -0.254839, 0.185896, -0.0825294, 0.0224322, -0.00375109,
              0.000377179, -2.0951e-05, 4.92362e-07)),
    ),
    SDIsotope(
        nucleus=_isotope(131), J=1.5, b_fm=2.2905,
        s00=(0.0417857, -0.111132, 0.171306, -0.132481, 0.0630161, -0.0177684, 0.00282192,
             -0.000232247, 7.81471e-06, 1.25984e-09),
        s11=((0.0167361, -0.0472853, 0.0684924, -0.0514413, 0.0237858, -0.00692778, 0.0012437,
              -0.000131617, 7.46669e-06, -1.73484e-07),
             (0.0271052, -0.0812985, 0.12296, -0.0940491, 0.0439746, -0.0128013, 0.00227407,
              -0.000235642, 1.28691e-05, -2.77011e-07)),
        s01=((-0.0675438, 0.19571, -0.306688, 0.243678, -0.118395, 0.0351428, -0.00622577,
              0.000631685, -3.33272e-05, 6.825e-07),
             (-0.0529487, 0.146987, -0.225003, 0.179499, -0.0888278, 0.0271514, -0.0049928,
              0.000531148, -2.99162e-05, 6.81902e-07)),
    ),
)


def _fit(coefficients: tuple[float, ...], u: np.ndarray) -> np.ndarray:
    r""":math:`e^{-u}\sum_k c_k u^k` (Horner)."""
    total = np.zeros_like(u)
    for c in reversed(coefficients):
        total = total * u + c
    return total * np.exp(-u)


def _isotope_by_A(A: int) -> SDIsotope:
    for iso in XE_SD_ISOTOPES:
        if iso.nucleus.A == A:
            return iso
    raise ValueError(f"no spin-dependent structure factor for A = {A}; expected 129 or 131")


def structure_factor(E_keV: np.ndarray, A: int, coupling: Literal["n", "p"], band: Band = "central") -> np.ndarray:
    r"""Neutron-only (``"n"``: :math:`S_{00} - S_{01} + S_{11}`) or proton-only (``"p"``:
    :math:`S_{00} + S_{01} + S_{11}`) structure factor :math:`S(q)` of ¹²⁹Xe or ¹³¹Xe at the
    momentum transfer of a recoil of ``E_keV`` (:math:`q = \sqrt{2 m_N E_R}`, :math:`u = q^2b^2/2`).

    ``band``: ``"central"`` (mean of the 2b-current bands of S01 and S11), ``"min"`` or ``"max"``: the
    lower/upper of the two edges of the band, (S01 min, S11 max) — the stronger isovector coupling:
    S_n up, S_p down — and (S01 max, S11 min). The tabulated "min" fits of S01 and S11 do not belong
    together: S01 (most negative) and S11 grow together with the 2b-current correction to a_1.
    """
    if coupling not in ("n", "p"):
        raise ValueError(f"coupling must be 'n' or 'p', got {coupling!r}")
    if band not in ("central", "min", "max"):
        raise ValueError(f"band must be 'central', 'min' or 'max', got {band!r}")
    iso = _isotope_by_A(A)
    E = np.clip(np.asarray(E_keV, dtype=float), 0.0, None)
    q_fm = np.sqrt(2.0 * iso.nucleus.mass_GeV * 1.0e6 * E) / HBARC_KEV_FM  # fm^-1
    u = 0.5 * (q_fm * iso.b_fm) ** 2
    sign = -1.0 if coupling == "n" else 1.0  # a1 = a_p - a_n = -1 (neutron-only) or +1 (proton-only)
    s00 = _fit(iso.s00, u)
    strong = s00 + sign * _fit(iso.s01[0], u) + _fit(iso.s11[1], u)
    weak = s00 + sign * _fit(iso.s01[1], u) + _fit(iso.s11[0], u)
    if band == "central":
        return 0.5 * (strong + weak)
    return np.minimum(strong, weak) if band == "min" else np.maximum(strong, weak)


def sd_wimp_rate(
    E_keV: np.ndarray,
    mass_GeV: float,
    sigma_cm2: float,
    halo: HaloModel = HaloModel(),
    *,
    coupling: Literal["n", "p"] = "n",
    band: Band = "central",
) -> np.ndarray:
    r"""Spin-dependent WIMP differential rate on natural xenon, events / (tonne · year · keV).

    Parameters
    ----------
    E_keV : nuclear-recoil energies (keV); any shape.
    mass_GeV : WIMP mass (GeV/c²).
    sigma_cm2 : WIMP–neutron (``coupling="n"``) or WIMP–proton (``"p"``) SD cross section (cm²).
    halo : :class:`lzflow.spectra.wimp.HaloModel` (the SI signal's halo, same conventions).
    coupling, band : see :func:`structure_factor`.

    Formula in the module docstring. Zero above each isotope's kinematic endpoint and for E ≤ 0;
    linear in ``sigma_cm2`` and ``halo.rho_GeV_cm3``.
    """
    if not mass_GeV > 0:
        raise ValueError(f"mass_GeV must be > 0, got {mass_GeV}")
    if coupling not in ("n", "p"):
        raise ValueError(f"coupling must be 'n' or 'p', got {coupling!r}")
    E_in = np.asarray(E_keV, dtype=float)
    E = np.where(np.isfinite(E_in), E_in, 0.0)
    nucleon = NEUTRON_MASS_GEV if coupling == "n" else PROTON_MASS_GEV
    prefactor = rate_prefactor(mass_GeV, sigma_cm2, halo, nucleon_mass_GeV=nucleon)
    mean_mass = sum(t.abundance * t.mass_GeV for t in XE_NATURAL)  # per tonne of natural xenon
    total = np.zeros_like(E, dtype=float)
    for iso in XE_SD_ISOTOPES:
        t = iso.nucleus
        weight = t.abundance * t.mass_GeV / mean_mass
        eta_s_per_m = mean_inverse_speed(vmin_km_s(E, mass_GeV, t), halo) * 1.0e-3
        spin = (4.0 * np.pi / 3.0) * structure_factor(E, int(t.A), coupling, band) / (2.0 * iso.J + 1.0)
        total += weight * spin * eta_s_per_m
    rate = prefactor * total
    return np.where((E > 0) & np.isfinite(rate), np.clip(rate, 0.0, None), 0.0)


def signal_rate(E_keV: np.ndarray, mass_GeV: float, sigma_cm2: float, halo: HaloModel, interaction: str) -> np.ndarray:
    """The WIMP rate (events / (tonne · year · keV)) of a ``signal.interaction``: ``SI``
    (:func:`lzflow.spectra.wimp.wimp_rate`, σ per nucleon), ``SD_n`` (σ_n) or ``SD_p`` (σ_p)
    (:func:`sd_wimp_rate`, central 1b + 2b structure factors)."""
    if interaction == "SI":
        return wimp_rate(E_keV, mass_GeV, sigma_cm2, halo)
    if interaction in ("SD_n", "SD_p"):
        return sd_wimp_rate(E_keV, mass_GeV, sigma_cm2, halo, coupling="n" if interaction == "SD_n" else "p")
    raise ValueError(f"interaction {interaction!r}; expected one of {', '.join(SIGNAL_INTERACTIONS)}")
