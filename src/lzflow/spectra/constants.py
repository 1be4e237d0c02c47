r"""Physical constants, xenon target data and unit conversions used by :mod:`lzflow.spectra`.

Every number here is a published fact (source in the comment next to it); nothing is fitted.

Units convention of the whole sub-package
-----------------------------------------
* recoil / electron energies: keV;
* neutrino energies: MeV;
* masses: GeV/c² (``*_GEV``) unless the name says otherwise;
* differential rates: events / (tonne · year · keV), with the Julian year (365.25 d, as
  ``wimprates``/``numericalunits`` use) — see :data:`SECONDS_PER_YEAR` and :data:`RATE_UNIT`.
"""

from __future__ import annotations

__all__ = [
    "RATE_UNIT",
    "SECONDS_PER_DAY",
    "SECONDS_PER_YEAR",
    "TONNE_YEAR_PER_TONNE_DAY",
    "KG_PER_GEV",
    "AMU_GEV",
    "ELECTRON_MASS_KEV",
    "ELECTRON_MASS_MEV",
    "FERMI_CONSTANT_GEV2",
    "HBARC_GEV_CM",
    "HBARC_KEV_FM",
    "ALPHA_EM",
    "AVOGADRO",
    "SPEED_OF_LIGHT_KM_S",
    "SIN2_THETA_W",
    "XE_Z",
    "XE_MOLAR_MASS_G",
    "XE_ISOTOPES",
    "XE_SHELLS_KEV",
    "xe_atoms_per_tonne",
]

#: Unit of every differential rate returned by this sub-package.
RATE_UNIT = "events / (tonne * year * keV)"

SECONDS_PER_DAY = 86400.0
#: Julian year, the ``numericalunits.year`` used by wimprates.
SECONDS_PER_YEAR = 365.25 * SECONDS_PER_DAY
#: 1 tonne·day expressed in tonne·year (the LZ exposure 5.6 t × 1000 d = 15.33 t·yr).
TONNE_YEAR_PER_TONNE_DAY = 1.0 / 365.25

# CODATA 2018 / PDG 2022
KG_PER_GEV = 1.78266192e-27          # 1 GeV/c^2 in kg
AMU_GEV = 0.93149410242              # atomic mass unit, GeV/c^2
ELECTRON_MASS_MEV = 0.51099895000    # MeV/c^2
ELECTRON_MASS_KEV = 1.0e3 * ELECTRON_MASS_MEV
FERMI_CONSTANT_GEV2 = 1.1663788e-5   # G_F/(hbar c)^3, GeV^-2
HBARC_GEV_CM = 1.973269804e-14       # hbar c in GeV cm
HBARC_KEV_FM = 1.973269804e5         # hbar c in keV fm
ALPHA_EM = 1.0 / 137.035999084
AVOGADRO = 6.02214076e23
SPEED_OF_LIGHT_KM_S = 299792.458
#: Low-energy weak mixing angle used for CEvNS and nu-e (physics.md §4; Baxter et al. 2105.00599).
SIN2_THETA_W = 0.2387

XE_Z = 54
#: Standard atomic weight of xenon (IUPAC), g/mol — the single-A value wimprates uses.
XE_MOLAR_MASS_G = 131.293

#: Stable/primordial xenon isotopes: (A, atomic mass in u, natural abundance by atom number).
#: Masses: AME2016; abundances: IUPAC 2013 isotopic compositions (sum = 1).
XE_ISOTOPES: tuple[tuple[int, float, float], ...] = (
    (124, 123.905893, 0.000952),
    (126, 125.904274, 0.000890),
    (128, 127.903531, 0.019102),
    (129, 128.904779, 0.264006),
    (130, 129.903508, 0.040710),
    (131, 130.905082, 0.212324),
    (132, 131.904154, 0.269086),
    (134, 133.905395, 0.104357),
    (136, 135.907219, 0.088573),
)

#: Xenon atomic sub-shell electron binding energies (keV) and occupancies, 54 electrons in all.
#: Values: X-ray Data Booklet (LBNL, Table 1-1, electron binding energies; O shells from
#: Carlson, "Photoelectron and Auger Spectroscopy" (1975)). Used for the step-function
#: ("stepping") approximation of atomic binding in nu-e scattering: a shell contributes only
#: when the deposited energy exceeds its binding energy.
XE_SHELLS_KEV: tuple[tuple[str, float, int], ...] = (
    ("1s", 34.5614, 2),
    ("2s", 5.4528, 2),
    ("2p1/2", 5.1037, 2),
    ("2p3/2", 4.7822, 4),
    ("3s", 1.1487, 2),
    ("3p1/2", 1.0021, 2),
    ("3p3/2", 0.9406, 4),
    ("3d3/2", 0.6894, 4),
    ("3d5/2", 0.6764, 6),
    ("4s", 0.2133, 2),
    ("4p1/2", 0.1467, 2),
    ("4p3/2", 0.1455, 4),
    ("4d3/2", 0.0695, 4),
    ("4d5/2", 0.0675, 6),
    ("5s", 0.0233, 2),
    ("5p1/2", 0.0134, 2),
    ("5p3/2", 0.0121, 4),
)
assert sum(n for _, _, n in XE_SHELLS_KEV) == XE_Z


def xe_atoms_per_tonne(abundance: float = 1.0) -> float:
    r"""Number of xenon atoms (optionally of one isotope) in one tonne of natural xenon.

    .. math:: N = a \, \frac{10^6\ \mathrm{g}}{M_\mathrm{Xe}} N_A ,

    with :math:`M_\mathrm{Xe} = 131.293` g/mol and :math:`a` the isotopic abundance (atom
    fraction).
    """
    return float(abundance * 1.0e6 / XE_MOLAR_MASS_G * AVOGADRO)


# Sanity: the isotope table reproduces the standard atomic weight.
assert abs(sum(m * a for _, m, a in XE_ISOTOPES) - XE_MOLAR_MASS_G) < 2e-3
assert abs(sum(a for _, _, a in XE_ISOTOPES) - 1.0) < 1e-6
