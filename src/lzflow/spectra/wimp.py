r"""Spin-independent WIMP–xenon elastic recoil spectrum in the standard halo model.

Conventions follow Baxter et al., "Recommended conventions for reporting results from direct dark
matter searches", arXiv:2105.00599 (EPJC 81 (2021) 907), and the reference implementation
``wimprates`` 0.5.0 (``wimprates.rate_wimp_std``), against which this module is tested.

Differential rate per unit detector mass (natural xenon, isotope weights :math:`w_i`):

.. math::

    \frac{dR}{dE_R} = \frac{\rho_0\,\sigma_n}{2\,m_\chi\,\mu_n^2}
        \sum_i w_i\, A_i^2\, F_i^2(E_R)\; \eta\big(v_\mathrm{min,i}(E_R)\big),
    \qquad v_\mathrm{min} = \sqrt{\frac{m_N E_R}{2\mu_N^2}},

where :math:`\mu_n` is the WIMP–nucleon reduced mass (nucleon mass = 1 u, as in wimprates),
:math:`F` the Helm form factor (:mod:`.nuclear`) and
:math:`\eta(v_\mathrm{min}) = \int_{v>v_\mathrm{min}} f_E(v)/v\,d^3v` the mean inverse speed of the
truncated Maxwellian boosted to the Earth frame, evaluated in closed form (erf form; e.g.
Savage, Freese & Gondolo, PRD 74 (2006) 043531; McCabe, PRD 82 (2010) 023530):

.. math::

    \eta = \frac{1}{N_\mathrm{esc}\sqrt{\pi}v_0 v_E}\Big[
        \tfrac{\sqrt\pi v_0}{2}\big(\mathrm{erf}\tfrac{v_\mathrm{esc}}{v_0}
                                    - \mathrm{erf}\tfrac{v_\mathrm{min}-v_E}{v_0}\big)
      - \Theta(v_\mathrm{esc}-v_E-v_\mathrm{min})\tfrac{\sqrt\pi v_0}{2}
            \big(\mathrm{erf}\tfrac{v_\mathrm{esc}}{v_0}
                 - \mathrm{erf}\tfrac{v_\mathrm{min}+v_E}{v_0}\big)
      - e^{-z^2}\big(v_\mathrm{esc}+v_E-\max(v_\mathrm{min}, v_\mathrm{esc}-v_E)\big)\Big]

for :math:`v_\mathrm{min} < v_\mathrm{esc}+v_E` (zero above: the kinematic endpoint), with
:math:`z = v_\mathrm{esc}/v_0` and the Lewin & Smith (Astropart. Phys. 6 (1996) 87, eq. 3.3)
truncation normalisation :math:`N_\mathrm{esc} = \mathrm{erf}(z) - 2z e^{-z^2}/\sqrt{\pi}`.

.. note:: **wimprates normalisation.** ``wimprates.observed_speed_dist`` (0.5.0) *multiplies* by
   :math:`N_\mathrm{esc}` instead of dividing, so its speed distribution integrates to
   :math:`N_\mathrm{esc}^2 = 0.970` (SHM defaults) and its rates are 3.0 % low at every energy.
   The default here is the correctly normalised Lewin & Smith SHM; set
   ``HaloModel(normalisation="wimprates")`` to reproduce wimprates bit-for-bit in convention.

Earth velocity: galactic frame :math:`\vec v_E = (0, v_0, 0) + \vec v_\odot + v_\oplus(\hat e_1
\cos\omega(t-t_1) + \hat e_2 \sin\omega(t-t_1))` with :math:`\hat e_{1,2}` from
McCabe, arXiv:1312.1355 (also Lee, Lisanti & Safdi, arXiv:1307.5323), :math:`t_1` = 21 March 2000,
:math:`\omega = 2\pi/365.25` d. The default epoch ``t_j2000_days = 59.37`` (29 Feb 2000) is the one
``wimprates`` uses for ``t=None``: the date on which :math:`|\vec v_E|` (= 252.1 km/s) is
representative of the annual average. Rates are therefore *time-averaged* in the wimprates sense.

Fixed Earth speed: ``HaloModel(v_earth_fixed_km_s=232.0)`` replaces the computed speed by a fixed
mean Earth speed in the galactic frame (the convention of the pre-2021 standard halo, Lewin & Smith
and the LZ projection era); only the speed enters the rate, so nothing else changes.

Presets (:data:`HALO_PRESETS`, chosen in the configuration as ``signal.halo.preset``):

- ``standard_2018``: the standard halo of the LZ projection (arXiv:1802.06039) and the LZ TDR
  (arXiv:1703.09144): ρ₀ 0.3 GeV/cm³, v₀ 220 km/s, v_esc 544 km/s (Smith et al. 2007, RAVE),
  fixed mean Earth speed 232 km/s (the annual mean of Lewin & Smith, Astropart. Phys. 6 (1996)
  87, eq. 3.6, for v₀ = 220 km/s: v₀ + 12 km/s solar motion + the orbital projection).
  v_E is **[R] recalled**: the projection's text was not available to check it; it is a config
  key (``signal.halo.v_earth``), so a better-sourced value is one edit.
- ``baxter_2021``: Baxter et al. arXiv:2105.00599 §2: ρ₀ 0.3 GeV/cm³, v₀ 238 km/s, v_esc 544 km/s,
  Earth velocity *computed* from v₀ + solar peculiar (11.1, 12.2, 7.3) km/s + orbital 29.8 km/s at
  the wimprates epoch (|v_E| = 252.1 km/s): the :class:`HaloModel` defaults.

Target: by default the single averaged nucleus A = 131.293, :math:`m_N = A`·u (exactly what
wimprates does); ``isotopes="natural"`` sums the nine natural isotopes instead. The two agree to
< 1 % below ~60 keV and differ near the Helm zero (~95 keV, where the isotope sum fills the dip).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import erf

from .constants import AMU_GEV, KG_PER_GEV, SECONDS_PER_YEAR, SPEED_OF_LIGHT_KM_S
from .nuclear import XE_AVERAGE, XE_NATURAL, Nucleus, helm_form_factor_sq

__all__ = [
    "HaloModel",
    "HALO_PRESETS",
    "halo_preset",
    "earth_velocity_km_s",
    "escape_normalisation",
    "mean_inverse_speed",
    "speed_distribution",
    "wimp_rate",
    "vmin_km_s",
    "rate_prefactor",
    "SIGMA_REF_CM2",
]

#: A convenient reference cross section for signal templates (cm²).
SIGMA_REF_CM2 = 1.0e-45

_KEV_IN_J = 1.602176634e-16

# Direction of the Earth's orbital velocity at the vernal equinox and a quarter-year later,
# galactic coordinates (McCabe arXiv:1312.1355, Lee et al. arXiv:1307.5323).
_E1 = np.array([0.9931, 0.1170, -0.01032])
_E2 = np.array([-0.0670, 0.4927, -0.8676])
_T_EQUINOX_J2000 = 79.5  # 2000-03-21 00:00 UT in days since J2000.0
_OMEGA_PER_DAY = 2.0 * np.pi / 365.25


@dataclass(frozen=True)
class HaloModel:
    """Standard halo model parameters (defaults: Baxter et al. 2105.00599, physics.md §3).

    Attributes
    ----------
    rho_GeV_cm3 : local dark-matter density.
    v0_km_s : Maxwellian most-probable speed; also the local-standard-of-rest speed.
    vesc_km_s : galactic escape speed (sharp truncation in the galactic frame).
    v_pec_km_s : solar peculiar velocity (U, V, W) w.r.t. the LSR.
    v_earth_orbit_km_s : Earth's mean orbital speed around the Sun.
    t_j2000_days : epoch (days since J2000.0) at which the Earth velocity is evaluated;
        59.37 is wimprates' "annual average" choice (``t=None``).
    v_lsr_km_s : LSR circular speed; ``None`` means equal to ``v0_km_s`` (wimprates convention).
    normalisation : ``"lewin_smith"`` (divide by N_esc, default, correct) or ``"wimprates"``
        (multiply by N_esc, reproduces wimprates 0.5.0 which is 3 % low).
    v_earth_fixed_km_s : a fixed mean Earth speed (galactic frame) used instead of the computed
        one (pre-2021 convention, e.g. 232 km/s); ``None`` (default) computes it at ``t_j2000_days``.
    """

    rho_GeV_cm3: float = 0.3
    v0_km_s: float = 238.0
    vesc_km_s: float = 544.0
    v_pec_km_s: tuple[float, float, float] = (11.1, 12.2, 7.3)
    v_earth_orbit_km_s: float = 29.8
    t_j2000_days: float = 59.37
    v_lsr_km_s: float | None = None
    normalisation: Literal["lewin_smith", "wimprates"] = "lewin_smith"
    v_earth_fixed_km_s: float | None = None

    def __post_init__(self) -> None:
        if self.normalisation not in ("lewin_smith", "wimprates"):
            raise ValueError(
                f"normalisation must be 'lewin_smith' or 'wimprates', got {self.normalisation!r}"
            )
        if not (self.v0_km_s > 0 and self.vesc_km_s > 0 and self.rho_GeV_cm3 >= 0):
            raise ValueError("HaloModel needs v0 > 0, vesc > 0 and rho >= 0")
        if self.v_earth_fixed_km_s is not None and not self.v_earth_fixed_km_s > 0:
            raise ValueError(f"v_earth_fixed_km_s must be > 0, got {self.v_earth_fixed_km_s!r}")

    @property
    def v_earth_km_s(self) -> float:
        """Speed of the Earth in the galactic rest frame: ``v_earth_fixed_km_s`` if set, else the
        computed velocity's norm at ``t_j2000_days``."""
        if self.v_earth_fixed_km_s is not None:
            return float(self.v_earth_fixed_km_s)
        return float(np.linalg.norm(earth_velocity_km_s(self)))

    @property
    def v_max_km_s(self) -> float:
        """Largest WIMP speed in the Earth frame, v_esc + v_E."""
        return self.vesc_km_s + self.v_earth_km_s


#: Halo presets: the values each convention fixes ("computed" Earth speed: from v0 + solar peculiar +
#: orbital velocity, :func:`earth_velocity_km_s`). Sources in the module docstring.
HALO_PRESETS: dict[str, dict[str, float | str]] = {
    # LZ projection arXiv:1802.06039 / LZ TDR arXiv:1703.09144 (v_E [R] recalled, see docstring)
    "standard_2018": {"rho_GeV_cm3": 0.3, "v0_km_s": 220.0, "vesc_km_s": 544.0, "v_earth": 232.0},
    # Baxter et al. arXiv:2105.00599, section 2 (Earth velocity computed, |v_E| = 252.1 km/s)
    "baxter_2021": {"rho_GeV_cm3": 0.3, "v0_km_s": 238.0, "vesc_km_s": 544.0, "v_earth": "computed"},
}


def halo_preset(name: str) -> HaloModel:
    """The :class:`HaloModel` of a preset of :data:`HALO_PRESETS`; ``ValueError`` if unknown."""
    if name not in HALO_PRESETS:
        raise ValueError(f"unknown halo preset {name!r}; expected one of {', '.join(HALO_PRESETS)}")
    p = HALO_PRESETS[name]
    fixed = None if p["v_earth"] == "computed" else float(p["v_earth"])
    return HaloModel(rho_GeV_cm3=float(p["rho_GeV_cm3"]), v0_km_s=float(p["v0_km_s"]),
                     vesc_km_s=float(p["vesc_km_s"]), v_earth_fixed_km_s=fixed)


def earth_velocity_km_s(halo: HaloModel = HaloModel()) -> np.ndarray:
    """Earth velocity vector (km/s, galactic coordinates) at ``halo.t_j2000_days`` (circular
    orbit)."""
    v_lsr = halo.v0_km_s if halo.v_lsr_km_s is None else halo.v_lsr_km_s
    phase = _OMEGA_PER_DAY * (halo.t_j2000_days - _T_EQUINOX_J2000)
    v_orbit = halo.v_earth_orbit_km_s * (_E1 * np.cos(phase) + _E2 * np.sin(phase))
    return np.array([0.0, v_lsr, 0.0]) + np.asarray(halo.v_pec_km_s, dtype=float) + v_orbit


def escape_normalisation(halo: HaloModel = HaloModel()) -> float:
    r"""Lewin & Smith truncation factor :math:`N_\mathrm{esc} = \mathrm{erf}(z) -
    2 z e^{-z^2}/\sqrt\pi`, :math:`z = v_\mathrm{esc}/v_0`."""
    z = halo.vesc_km_s / halo.v0_km_s
    return float(erf(z) - 2.0 * z * np.exp(-z * z) / np.sqrt(np.pi))


def _norm_factor(halo: HaloModel) -> float:
    n = escape_normalisation(halo)
    return 1.0 / n if halo.normalisation == "lewin_smith" else n


def speed_distribution(v_km_s: np.ndarray, halo: HaloModel = HaloModel()) -> np.ndarray:
    r"""Earth-frame WIMP speed distribution :math:`f(v)` (per km/s); integrates to 1 for the
    default Lewin & Smith normalisation.

    .. math:: f(v) = \frac{v}{N_\mathrm{esc}\sqrt\pi v_0 v_E}\Big[e^{-(v-v_E)^2/v_0^2}
        - e^{-\min\left((v+v_E)^2,\ v_\mathrm{esc}^2\right)/v_0^2}\Big],
        \quad 0 \le v \le v_\mathrm{esc}+v_E .
    """
    v = np.asarray(v_km_s, dtype=float)
    v0, vesc, ve = halo.v0_km_s, halo.vesc_km_s, halo.v_earth_km_s
    second = np.minimum((v + ve) ** 2, vesc**2)
    f = (
        _norm_factor(halo)
        * v
        / (np.sqrt(np.pi) * v0 * ve)
        * (np.exp(-((v - ve) ** 2) / v0**2) - np.exp(-second / v0**2))
    )
    return np.where((v >= 0) & (v < vesc + ve), np.clip(f, 0.0, None), 0.0)


def mean_inverse_speed(vmin_km_s: np.ndarray, halo: HaloModel = HaloModel()) -> np.ndarray:
    r"""Mean inverse speed :math:`\eta(v_\mathrm{min}) = \int_{v_\mathrm{min}} f(v)/v\,dv` in s/km
    (closed form, see module docstring); zero for :math:`v_\mathrm{min} \ge v_\mathrm{esc}+v_E`."""
    vmin = np.clip(np.asarray(vmin_km_s, dtype=float), 0.0, None)
    v0, vesc, ve = halo.v0_km_s, halo.vesc_km_s, halo.v_earth_km_s
    z = vesc / v0
    half = 0.5 * np.sqrt(np.pi) * v0
    erf_esc = erf(z)
    term1 = half * (erf_esc - erf((vmin - ve) / v0))
    low = vmin < vesc - ve
    term2 = np.where(low, half * (erf_esc - erf((vmin + ve) / v0)), 0.0)
    term3 = np.exp(-z * z) * (vesc + ve - np.maximum(vmin, vesc - ve))
    eta = _norm_factor(halo) / (np.sqrt(np.pi) * v0 * ve) * (term1 - term2 - term3)
    return np.where(vmin < vesc + ve, np.clip(eta, 0.0, None), 0.0)


def _reduced_mass(m1: float, m2: float) -> float:
    return m1 * m2 / (m1 + m2)


def vmin_km_s(E_keV: np.ndarray, mass_GeV: float, nucleus: Nucleus = XE_AVERAGE[0]) -> np.ndarray:
    r"""Minimum WIMP speed (km/s) for a nuclear recoil of ``E_keV``:
    :math:`v_\mathrm{min} = c\sqrt{m_N E_R/(2\mu_N^2)}`."""
    E = np.clip(np.asarray(E_keV, dtype=float), 0.0, None)
    mu = _reduced_mass(mass_GeV, nucleus.mass_GeV)
    return SPEED_OF_LIGHT_KM_S * np.sqrt(nucleus.mass_GeV * E * 1.0e-6 / (2.0 * mu**2))


def rate_prefactor(mass_GeV: float, sigma_cm2: float, halo: HaloModel = HaloModel(), *,
                   nucleon_mass_GeV: float = AMU_GEV) -> float:
    r"""The factor :math:`\rho_0\sigma/(2 m_\chi \mu^2)` of an elastic WIMP rate, converted so that
    multiplied by a dimensionless nuclear factor (:math:`A^2F^2` for SI, :math:`\frac{4\pi}{3}
    \frac{S(q)}{2J+1}` for SD, :mod:`.spin_dependent`), a mass fraction and :math:`\eta` in s/m it
    gives events / (tonne · year · keV). :math:`\mu` is the WIMP–nucleon reduced mass with
    ``nucleon_mass_GeV`` (1 u for SI, as wimprates)."""
    mu_n_kg = _reduced_mass(mass_GeV, nucleon_mass_GeV) * KG_PER_GEV
    n_chi_m3 = halo.rho_GeV_cm3 / mass_GeV * 1.0e6
    sigma_m2 = sigma_cm2 * 1.0e-4
    prefactor = n_chi_m3 * sigma_m2 / (2.0 * mu_n_kg**2)
    return prefactor * (1.0e3 * SECONDS_PER_YEAR * _KEV_IN_J)  # -> per tonne, per year, per keV


def wimp_rate(
    E_keV: np.ndarray,
    mass_GeV: float,
    sigma_cm2: float,
    halo: HaloModel = HaloModel(),
    *,
    isotopes: Literal["average", "natural"] = "average",
) -> np.ndarray:
    r"""Spin-independent WIMP differential rate on natural xenon, events / (tonne · year · keV).

    Parameters
    ----------
    E_keV : nuclear-recoil energies (keV); any shape.
    mass_GeV : WIMP mass (GeV/c²).
    sigma_cm2 : spin-independent WIMP–nucleon cross section (cm²).
    halo : :class:`HaloModel` (SHM defaults of arXiv:2105.00599).
    isotopes : ``"average"`` — one nucleus with A = 131.293 (wimprates' choice, default);
        ``"natural"`` — sum over the nine natural isotopes weighted by abundance.

    Returns an array of the shape of ``E_keV``; exactly zero above the kinematic endpoint and for
    E ≤ 0, never negative or NaN. The rate is linear in ``sigma_cm2`` and in ``halo.rho_GeV_cm3``.
    """
    if not mass_GeV > 0:
        raise ValueError(f"mass_GeV must be > 0, got {mass_GeV}")
    E_in = np.asarray(E_keV, dtype=float)
    E = np.where(np.isfinite(E_in), E_in, 0.0)  # non-finite energies give 0
    targets = XE_AVERAGE if isotopes == "average" else XE_NATURAL
    if isotopes not in ("average", "natural"):
        raise ValueError(f"isotopes must be 'average' or 'natural', got {isotopes!r}")
    mean_mass = sum(t.abundance * t.mass_GeV for t in targets)
    # SI: events / (kg s J) = n sigma A^2 F^2 eta / (2 mu_n^2)
    prefactor = rate_prefactor(mass_GeV, sigma_cm2, halo)
    total = np.zeros_like(E, dtype=float)
    for t in targets:
        weight = t.abundance * t.mass_GeV / mean_mass  # share of detector mass in this isotope
        eta_s_per_m = mean_inverse_speed(vmin_km_s(E, mass_GeV, t), halo) * 1.0e-3
        total += weight * t.A**2 * helm_form_factor_sq(E, t.A, t.mass_GeV) * eta_s_per_m
    rate = prefactor * total
    return np.where((E > 0) & np.isfinite(rate), np.clip(rate, 0.0, None), 0.0)
