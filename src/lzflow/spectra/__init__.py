"""Recoil-energy spectra for lzflow: WIMP signal and the LZ-projection backgrounds.

Units: energies in keV (recoil / electron-equivalent as the source's type says), differential
rates in events / (tonne · year · keV) (Julian year; :data:`RATE_UNIT`), background spectra from
:func:`background_spectrum` in events / keV for the whole exposure.

Modules: :mod:`.wimp` (SHM, SI rate), :mod:`.spin_dependent` (SD neutron-/proton-only rate, Klos
et al. 2013 structure factors; :func:`signal_rate` picks the rate of a ``signal.interaction``), :mod:`.neutrino` (fluxes, CEvNS, ν–e), :mod:`.beta`
(β and 2νββ spectra), :mod:`.backgrounds` (registry + normalisation), :mod:`.nuclear` (Helm form
factor, Xe isotopes), :mod:`.constants`, :mod:`.capture` (electron-capture lines), :mod:`.accidentals`
(accidental coincidences: a template in (cS1, log10 cS2), not a recoil spectrum).
"""

from .backgrounds import (
    BACKGROUND_NAMES,
    DETNR_SCALE_KEV,
    ER_RANGE_KEV,
    LZ_EXPOSURE_T_YR,
    NR_RANGE_KEV,
    BackgroundModel,
    background_model,
    background_spectrum,
    expected_counts,
    reference_window_keV,
)
from .constants import RATE_UNIT, SECONDS_PER_YEAR, TONNE_YEAR_PER_TONNE_DAY
from .neutrino import cevns_rate, neutrino_spectrum, nu_e_rate
from .beta import normalised_beta_spectrum, vvbb_rate, vvbb_spectrum
from .wimp import SIGMA_REF_CM2, HaloModel, mean_inverse_speed, wimp_rate
from .spin_dependent import SIGNAL_INTERACTIONS, sd_wimp_rate, signal_rate, structure_factor

__all__ = [
    "BACKGROUND_NAMES",
    "BackgroundModel",
    "DETNR_SCALE_KEV",
    "ER_RANGE_KEV",
    "HaloModel",
    "LZ_EXPOSURE_T_YR",
    "NR_RANGE_KEV",
    "RATE_UNIT",
    "SECONDS_PER_YEAR",
    "SIGMA_REF_CM2",
    "SIGNAL_INTERACTIONS",
    "TONNE_YEAR_PER_TONNE_DAY",
    "background_model",
    "background_spectrum",
    "cevns_rate",
    "expected_counts",
    "mean_inverse_speed",
    "neutrino_spectrum",
    "normalised_beta_spectrum",
    "nu_e_rate",
    "reference_window_keV",
    "sd_wimp_rate",
    "signal_rate",
    "structure_factor",
    "vvbb_rate",
    "vvbb_spectrum",
    "wimp_rate",
]
