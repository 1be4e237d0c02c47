"""Tests for lzflow.spectra: WIMP signal vs wimprates, background shapes, normalisation and
absolute rates vs the orders of magnitude / LZ table numbers of docs physics.md §1, §4."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from scipy.integrate import quad

from lzflow.spectra import (
    BACKGROUND_NAMES,
    LZ_EXPOSURE_T_YR,
    BackgroundModel,
    HaloModel,
    background_model,
    background_spectrum,
    expected_counts,
    reference_window_keV,
    wimp_rate,
)
from lzflow.spectra.beta import (
    BETA_EMITTERS,
    XE136_HALF_LIFE_YR,
    fermi_function,
    normalised_beta_spectrum,
    vvbb_rate,
    vvbb_spectrum,
)
from lzflow.spectra.constants import xe_atoms_per_tonne
from lzflow.spectra.neutrino import (
    NEUTRINO_SOURCES,
    cevns_cross_section,
    neutrino_spectrum,
    nu_e_cross_section,
    nu_e_rate,
    xe_active_electrons,
)
from lzflow.spectra.nuclear import XE_AVERAGE, XE_NATURAL, helm_form_factor_sq
from lzflow.spectra.wimp import (
    escape_normalisation,
    mean_inverse_speed,
    speed_distribution,
    vmin_km_s,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # wimprates announces changed defaults
    import wimprates

#: Windows for sources with ~nothing in the 6–30 keVnr reference window.
LOW_NR_WINDOW = (1.0, 30.0)


def _window(name: str) -> tuple[float, float]:
    return LOW_NR_WINDOW if name in ("B8", "hep") else reference_window_keV(
        background_model(name).recoil
    )


# ------------------------------------------------------------------------------------------------
# API
# ------------------------------------------------------------------------------------------------
def test_public_api_and_defaults():
    assert BACKGROUND_NAMES == (
        "B8", "DSN", "DetER", "DetNR", "Kr85", "Rn220", "Rn222", "atm", "hep", "pp", "vvBB"
    )
    h = HaloModel()
    assert (h.rho_GeV_cm3, h.v0_km_s, h.vesc_km_s) == (0.3, 238.0, 544.0)
    assert h.v_pec_km_s == (11.1, 12.2, 7.3) and h.v_earth_orbit_km_s == 29.8
    with pytest.raises(Exception):
        h.v0_km_s = 220.0  # frozen
    # wimprates' t=None Earth speed (time-averaged convention) is reproduced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import numericalunits as nu
    assert h.v_earth_km_s == pytest.approx(wimprates.v_earth() / (nu.km / nu.s), rel=1e-6)
    assert reference_window_keV("ER") == (1.5, 6.5)
    assert reference_window_keV("NR") == (6.0, 30.0)
    with pytest.raises(ValueError):
        reference_window_keV("XX")
    assert LZ_EXPOSURE_T_YR == pytest.approx(15.33, abs=0.01)


@pytest.mark.parametrize("name", BACKGROUND_NAMES)
def test_background_model_fields(name):
    m = background_model(name)
    assert isinstance(m, BackgroundModel) and m.name == name
    nr = {"B8", "DSN", "DetNR", "atm", "hep"}
    assert m.recoil == ("NR" if name in nr else "ER")
    # the yield model is configuration (backgrounds.<name>.nest_yields), among those of the recoil type
    assert m.yield_models == (("NR",) if name in nr else ("beta", "gammaRay"))
    lo, hi = m.energy_range_keV
    assert 0 < lo < hi
    has_abs = name in ("B8", "hep", "DSN", "atm", "pp", "vvBB")
    assert (m.absolute_rate is not None) == has_abs
    # models travel to worker processes
    m2 = pickle.loads(pickle.dumps(m))
    E = np.array([1.0, 3.0])
    np.testing.assert_allclose(m2.shape(E), m.shape(E))


def test_unknown_background_errors():
    with pytest.raises(ValueError, match="valid names"):
        background_model("Ar39")
    with pytest.raises(ValueError):
        background_spectrum("nope", np.array([1.0]), 1.0)
    with pytest.raises(ValueError):
        expected_counts("Kr85", 1.0)  # no absolute rate
    with pytest.raises(ValueError):
        background_spectrum("pp", np.array([1.0]), -1.0)
    with pytest.raises(ValueError):
        background_spectrum("pp", np.array([1.0]), 1.0, window_keV=(5.0, 2.0))


# ------------------------------------------------------------------------------------------------
# WIMP signal
# ------------------------------------------------------------------------------------------------
def _endpoint_keV(mass_GeV: float, halo: HaloModel) -> float:
    mN = XE_AVERAGE[0].mass_GeV
    mu = mass_GeV * mN / (mass_GeV + mN)
    v = halo.v_max_km_s / 299792.458
    return 2.0 * mu**2 * v**2 / mN * 1e6


@pytest.mark.parametrize("mass", [10.0, 40.0, 100.0, 1000.0])
def test_wimp_rate_matches_wimprates(mass):
    E = np.geomspace(1.0, 100.0, 60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.asarray(wimprates.rate_wimp_std(E, mass, 1e-45), dtype=float)
    use = (ref > 0) & (E < 0.99 * _endpoint_keV(mass, HaloModel()))
    assert use.sum() >= 5
    # same convention as wimprates (its speed distribution is multiplied by N_esc) ...
    ours_wr = wimp_rate(E, mass, 1e-45, HaloModel(normalisation="wimprates"))
    np.testing.assert_allclose(ours_wr[use], ref[use], rtol=0.01)
    # ... and the correctly normalised default differs by exactly 1/N_esc^2 (= 1.031)
    k2 = escape_normalisation() ** 2
    np.testing.assert_allclose(wimp_rate(E, mass, 1e-45)[use] * k2, ref[use], rtol=0.01)


def test_speed_distribution_normalised():
    h = HaloModel()
    pts = [h.vesc_km_s - h.v_earth_km_s]
    norm = quad(lambda v: speed_distribution(v, h), 0, h.v_max_km_s, points=pts, limit=200)[0]
    assert norm == pytest.approx(1.0, abs=1e-6)
    hw = HaloModel(normalisation="wimprates")
    norm_w = quad(lambda v: speed_distribution(v, hw), 0, h.v_max_km_s, points=pts, limit=200)[0]
    assert norm_w == pytest.approx(escape_normalisation() ** 2, rel=1e-6)


@pytest.mark.parametrize("vmin", [0.0, 150.0, 400.0, 600.0, 700.0, 790.0, 900.0])
def test_mean_inverse_speed_closed_form(vmin):
    h = HaloModel()
    vmax = h.v_max_km_s
    if vmin >= vmax:
        assert mean_inverse_speed(vmin, h) == 0.0
        return
    pts = [p for p in (h.vesc_km_s - h.v_earth_km_s,) if vmin < p < vmax]
    num = quad(lambda v: speed_distribution(v, h) / v if v > 0 else 0.0, vmin, vmax,
               points=pts or None, limit=200, epsabs=1e-14)[0]
    assert float(mean_inverse_speed(vmin, h)) == pytest.approx(num, rel=1e-6, abs=1e-12)


def test_wimp_rate_robustness_and_scaling():
    E = np.array([-1.0, 0.0, 1e-6, 1.0, 10.0, 50.0, 500.0, 1e5, np.nan, np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning either
        r = wimp_rate(E, 40.0, 1e-45)
    assert np.all(np.isfinite(r)) and np.all(r >= 0)
    assert r[0] == 0 and r[1] == 0 and np.all(r[-4:] == 0)  # above the endpoint / invalid
    assert r[3] > r[4] > r[5] > 0
    np.testing.assert_allclose(wimp_rate(E, 40.0, 3e-45), 3 * r)
    np.testing.assert_allclose(wimp_rate(E, 40.0, 1e-45, HaloModel(rho_GeV_cm3=0.6)), 2 * r)
    # 10 GeV: endpoint near 10 keV (v_max = 796 km/s)
    end = _endpoint_keV(10.0, HaloModel())
    assert 8.0 < end < 12.0
    assert wimp_rate(np.array([1.001 * end]), 10.0, 1e-45)[0] == 0.0
    assert wimp_rate(np.array([0.99 * end]), 10.0, 1e-45)[0] > 0.0
    with pytest.raises(ValueError):
        wimp_rate(E, 0.0, 1e-45)


def test_wimp_isotope_sum_close_to_average_nucleus():
    E = np.linspace(1.0, 50.0, 50)
    avg = wimp_rate(E, 40.0, 1e-45)
    nat = wimp_rate(E, 40.0, 1e-45, isotopes="natural")
    np.testing.assert_allclose(nat, avg, rtol=0.01)


def test_wimp_integrated_rate_order_of_magnitude():
    # 40 GeV, 1e-45 cm2, 5-40 keVnr: O(100)/t/yr is the textbook number (~4.8 with 1e-47)
    n = quad(lambda e: wimp_rate(np.array([e]), 40.0, 1e-45)[0], 5.0, 40.0)[0]
    assert 200 < n < 500


def test_vmin_and_helm():
    assert vmin_km_s(np.array([0.0]), 40.0)[0] == 0.0
    for nuc in XE_NATURAL[:2] + XE_AVERAGE:
        assert helm_form_factor_sq(np.array([0.0]), nuc.A, nuc.mass_GeV)[0] == pytest.approx(1.0)
    F2 = helm_form_factor_sq(np.linspace(0, 200, 400), XE_AVERAGE[0].A, XE_AVERAGE[0].mass_GeV)
    assert np.all((F2 >= 0) & (F2 <= 1.0 + 1e-12))
    assert F2.min() < 1e-4  # first zero of Helm F for Xe (~95 keV)


# ------------------------------------------------------------------------------------------------
# Background normalisation
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKGROUND_NAMES)
def test_background_spectrum_integrates_to_counts(name):
    lo, hi = _window(name)
    counts = 123.4
    m = background_model(name)
    pts = [p for p in m.breakpoints_keV if lo < p < hi] or None
    val = quad(lambda e: background_spectrum(name, np.array([e]), counts, (lo, hi))[0],
               lo, hi, points=pts, limit=400, epsrel=1e-6)[0]
    assert val == pytest.approx(counts, rel=1e-4)
    if name not in ("B8", "hep"):  # default window = reference window of its recoil type
        default = background_spectrum(name, np.array([lo + 0.3 * (hi - lo)]), counts)
        explicit = background_spectrum(name, np.array([lo + 0.3 * (hi - lo)]), counts, (lo, hi))
        np.testing.assert_allclose(default, explicit)


@pytest.mark.parametrize("name", BACKGROUND_NAMES)
def test_background_spectrum_finite_nonnegative(name):
    E = np.concatenate([[-5.0, 0.0, 1e-9], np.geomspace(0.05, 300.0, 2000), [1e4, np.inf, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning either
        s = background_spectrum(name, E, 10.0, _window(name))
        m = background_model(name)
        if m.absolute_rate is not None:
            a = m.absolute_rate(E)
            assert np.all(np.isfinite(a)) and np.all(a >= 0)
    assert s.shape == E.shape
    assert np.all(np.isfinite(s)) and np.all(s >= 0)
    lo, hi = background_model(name).energy_range_keV
    assert np.all(s[(E < lo) | (E > hi)] == 0)
    assert np.any(s > 0)


@pytest.mark.parametrize("name", ["B8", "hep"])
def test_cevns_solar_has_nothing_in_nr_reference_window(name):
    with pytest.raises(ValueError, match="window"):
        background_spectrum(name, np.array([2.0]), 1.0)
    assert background_spectrum(name, np.array([2.0]), 1.0, LOW_NR_WINDOW)[0] > 0


def test_counts_scale_linearly():
    E = np.linspace(1, 20, 5)
    np.testing.assert_allclose(
        background_spectrum("Kr85", E, 49.0), 2 * background_spectrum("Kr85", E, 24.5)
    )
    assert np.all(background_spectrum("Kr85", E, 0.0) == 0)


# ------------------------------------------------------------------------------------------------
# Shape physics
# ------------------------------------------------------------------------------------------------
def test_b8_hep_fall_steeply_and_end():
    b8 = background_model("B8").shape
    r = b8(np.array([1.0, 4.0, 6.0, 10.0]))
    assert r[0] / r[1] > 100  # ≫ 10
    assert r[2] == 0 and r[3] == 0  # kinematic end ~5 keVnr
    hep = background_model("hep").shape(np.array([1.0, 4.0, 7.0]))
    assert hep[0] / hep[1] > 10 and hep[2] == 0


@pytest.mark.parametrize("name", ["DSN", "atm", "DetNR"])
def test_nr_backgrounds_fall(name):
    E = np.linspace(1.0, 60.0, 120)
    s = background_model(name).shape(E)
    assert np.all(np.diff(s) < 0)


def test_detnr_exponential_and_detector_er_flat():
    s = background_model("DetNR").shape(np.array([10.0, 30.0]))
    assert s[0] / s[1] == pytest.approx(np.e, rel=1e-9)
    f = background_model("DetER").shape(np.linspace(0.5, 90, 50))
    assert np.ptp(f) == 0 and f[0] > 0


def test_vvbb_rises_with_energy():
    E = np.linspace(1.0, 20.0, 60)
    s = background_model("vvBB").shape(E)
    assert np.all(np.diff(s) > 0)
    assert 15 < s[-1] / s[0] < 25  # ∝ roughly E at low energy
    pr = vvbb_spectrum(E, method="primakoff_rosen")
    assert np.all(np.diff(pr) > 0) and 15 < pr[-1] / pr[0] < 25


@pytest.mark.parametrize("name", ["Kr85", "Rn220", "Rn222"])
def test_beta_backgrounds_flat_below_20keV(name):
    s = background_model(name).shape(np.linspace(1.0, 20.0, 60))
    assert s.max() / s.min() < 1.03


def test_beta_spectra_normalised_and_fermi_function():
    for emitter, (Q, _, _, _) in BETA_EMITTERS.items():
        n = quad(lambda t: normalised_beta_spectrum(np.array([t]), emitter)[0], 0, Q, limit=200)[0]
        assert n == pytest.approx(1.0, rel=1e-5)
    T = np.array([1.0, 100.0])
    np.testing.assert_allclose(fermi_function(T, 0, 1), 1.0)
    assert np.all(fermi_function(T, 37, 85) > 1)
    assert np.all(fermi_function(T, 6, 13, beta_plus=True) < 1)


def test_pp_shape_slow_fall_and_binding_steps():
    pp = background_model("pp").shape
    E = np.linspace(6.0, 30.0, 100)  # no atomic step in this range
    s = pp(E)
    assert np.all(np.diff(s) < 0)
    assert 0.85 < s[-1] / s[0] < 1.0  # falls slowly
    # L1 (5.453 keV) and K (34.56 keV) steps: the rate jumps by the ratio of active electrons
    for edge, ratio in ((5.4528, 52 / 50), (34.5614, 54 / 52)):
        below, above = pp(np.array([edge - 1e-4, edge + 1e-4]))
        assert above / below == pytest.approx(ratio, rel=2e-3)
    assert xe_active_electrons(np.array([100.0]))[0] == 54
    free = nu_e_rate(np.array([3.0]), binding="free")[0]
    step = nu_e_rate(np.array([3.0]))[0]
    assert step / free == pytest.approx(44 / 54, rel=1e-9)  # K and L shells closed at 3 keV


# ------------------------------------------------------------------------------------------------
# Neutrino fluxes and cross sections
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pp", "N13", "B8", "hep", "DSN", "atm"])
def test_flux_spectra_integrate_to_total(name):
    src = NEUTRINO_SOURCES[name]
    E = np.geomspace(*src.range_MeV, 200001)
    total = np.trapezoid(neutrino_spectrum(name, E), E)
    assert total == pytest.approx(src.flux_cm2_s, rel=2e-3)


def test_b8_spectrum_matches_published_moments():
    E = np.linspace(0.01, 17.0, 40001)
    phi = neutrino_spectrum("B8", E)
    mean = np.trapezoid(phi * E, E) / np.trapezoid(phi, E)
    assert mean == pytest.approx(6.735, rel=0.05)  # Bahcall et al. PRC 54 (1996) 411
    # tail shape vs the Winter et al. (2006) spectrum, relative to its value at 8 MeV
    published = {10.0: 0.0773 / 0.1200, 12.0: 0.0281 / 0.1200, 14.0: 0.00183 / 0.1200}
    at8 = neutrino_spectrum("B8", np.array([8.0]))[0]
    for e, rel in published.items():
        assert neutrino_spectrum("B8", np.array([e]))[0] / at8 == pytest.approx(rel, rel=0.2)


def test_nu_e_total_cross_section():
    # sigma(nu_e e) ≈ 9.3e-44 cm2 at 10 MeV (e.g. Marciano & Parsa 2003); ν_μ ≈ 1/6 of it
    Enu = 10.0
    Tmax = 2 * Enu**2 / (0.511 + 2 * Enu) * 1e3
    T = np.linspace(0, Tmax, 20001)
    s_e = np.trapezoid(nu_e_cross_section(T, Enu, p_ee=1.0), T)
    s_mu = np.trapezoid(nu_e_cross_section(T, Enu, p_ee=0.0), T)
    assert s_e == pytest.approx(9.3e-44, rel=0.06)
    assert 0.12 < s_mu / s_e < 0.2


def test_cevns_total_cross_section_low_energy_limit():
    # ∫ dσ/dE = G_F² Q_W² E_ν² / (4π) (F ≈ 1 at 1 MeV)
    nuc = XE_NATURAL[5]  # 131Xe
    Enu = 1.0
    Emax = 2 * Enu**2 / (nuc.mass_GeV * 1e3 + 2 * Enu) * 1e3
    E = np.linspace(0, Emax, 20001)
    total = np.trapezoid(cevns_cross_section(E, Enu, nuc), E)
    qw = nuc.N - (1 - 4 * 0.2387) * nuc.Z
    expect = (1.1663788e-5) ** 2 * qw**2 * (Enu * 1e-3) ** 2 / (4 * np.pi) * (1.973269804e-14) ** 2
    assert total == pytest.approx(expect, rel=0.01)


# ------------------------------------------------------------------------------------------------
# Absolute rates vs physics.md orders of magnitude and the LZ projection table
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, target, factor",
    [("B8", 90.0, 1.5), ("hep", 1.0, 2.0), ("atm", 0.06, 2.0), ("DSN", 0.01, 2.0)],
)
def test_cevns_rates_above_1keV(name, target, factor):
    # physics.md §4: events per t·yr above 1 keVnr (no efficiency)
    n = expected_counts(name, 1.0, (1.0, 200.0))
    assert target / factor < n < target * factor


def test_cevns_rates_vs_lz_table():
    # LZ table (15.3 t·yr, 6–30 keVnr): atm 0.46, DSN 0.05, B8/hep ≈ 0.
    assert expected_counts("atm") == pytest.approx(0.46, rel=0.5)
    # DSNB spectra differ between authors by ×2 in this window (ours follows Billard et al. 2014)
    assert 0.05 / 3 < expected_counts("DSN") < 0.05 * 3
    assert expected_counts("B8") == 0.0
    assert expected_counts("hep") < 1e-6
    # …but B8 dominates below a few keVnr: (1, 30) keV holds O(1000) events
    assert 1000 < expected_counts("B8", window_keV=LOW_NR_WINDOW) < 2500


def test_pp_rate_vs_lz_table():
    # LZ: 191 counts in 1.5–6.5 keVee for 15.3 t·yr; we get 220 (+15 %). Tolerance −5 % … +20 %:
    # the atomic treatment alone moves this number by tens of per cent (free electrons: 257, +34 %;
    # step approximation used here: 220; ab-initio calculations differ from the step approximation
    # by O(10 %) at a few keV, Chen et al. PLB 774 (2017) 656), and P_ee / fluxes add ~3 %.
    n = expected_counts("pp")
    assert 0.95 * 191 < n < 1.20 * 191
    free = LZ_EXPOSURE_T_YR * quad(
        lambda t: nu_e_rate(np.array([t]), binding="free")[0], 1.5, 6.5
    )[0]
    assert free > n * 1.1


def test_vvbb_rate_vs_lz_table():
    # total decay rate: N(136Xe) ln2 / T½ = 1.30e5 per t·yr
    decays = xe_atoms_per_tonne(0.08857) * np.log(2) / XE136_HALF_LIFE_YR
    assert decays == pytest.approx(1.30e5, rel=0.01)
    tot = quad(lambda t: vvbb_rate(np.array([t]))[0], 0, 2458, limit=400, epsrel=1e-6)[0]
    assert tot == pytest.approx(decays, rel=1e-4)
    # LZ table: 67 counts in 1.5–6.5 keV for 15.3 t·yr. This module gives ≈46 (relativistic Fermi
    # functions) or ≈37 (closed Primakoff–Rosen form): the few-keV tail of 2νββ depends on the
    # electron wave functions (exact Dirac/screening, Kotila & Iachello 2012) not modelled here.
    # The disagreement (×0.7) is documented in lzflow.spectra.beta; config normalises vvBB to 67.
    n = expected_counts("vvBB")
    assert 0.55 * 67 < n < 1.0 * 67
    pr = LZ_EXPOSURE_T_YR * quad(
        lambda t: vvbb_rate(np.array([t]), method="primakoff_rosen")[0], 1.5, 6.5
    )[0]
    assert pr < n


# ------------------------------------------------------------------------------------------------
# Halo presets (signal.halo.preset)
# ------------------------------------------------------------------------------------------------
def test_halo_presets_documented_values():
    from lzflow.spectra.wimp import HALO_PRESETS, halo_preset

    s18 = halo_preset("standard_2018")
    assert (s18.rho_GeV_cm3, s18.v0_km_s, s18.vesc_km_s, s18.v_earth_km_s) == (0.3, 220.0, 544.0, 232.0)
    # baxter_2021 is exactly the previous default (computed Earth velocity): numbers bit-identical
    b21 = halo_preset("baxter_2021")
    assert b21 == HaloModel() and b21.v_earth_fixed_km_s is None
    E = np.geomspace(0.5, 80.0, 40)
    assert np.array_equal(wimp_rate(E, 40.0, 1e-45, b21), wimp_rate(E, 40.0, 1e-45))
    assert set(HALO_PRESETS) == {"standard_2018", "baxter_2021"}
    with pytest.raises(ValueError, match="unknown halo preset 'shm'"):
        halo_preset("shm")
    with pytest.raises(ValueError, match="v_earth_fixed_km_s"):
        HaloModel(v_earth_fixed_km_s=0.0)


@pytest.mark.parametrize("mass", [10.0, 40.0, 1000.0])
def test_standard_2018_matches_wimprates_with_fixed_earth_speed(mass, monkeypatch):
    """wimprates with v0 220, vesc 544, rho 0.3 and its Earth speed fixed at 232 km/s (its
    ``v_earth`` replaced: both its speed distribution and its v_max call it)."""
    import dataclasses

    import numericalunits as nu
    from lzflow.spectra.wimp import halo_preset

    monkeypatch.setattr(wimprates.halo, "v_earth", lambda t=None, v_0=None: 232.0 * nu.km / nu.s)
    model = wimprates.StandardHaloModel(v_0=220.0 * nu.km / nu.s, v_esc=544.0 * nu.km / nu.s,
                                        rho_dm=0.3 * nu.GeV / nu.c0**2 / nu.cm**3)
    E = np.geomspace(1.0, 100.0, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.asarray(wimprates.rate_wimp_std(E, mass, 1e-45, halo_model=model), dtype=float)
    h = halo_preset("standard_2018")
    use = (ref > 0) & (E < 0.99 * _endpoint_keV(mass, h))
    assert use.sum() >= 5
    ours = wimp_rate(E, mass, 1e-45, dataclasses.replace(h, normalisation="wimprates"))
    np.testing.assert_allclose(ours[use], ref[use], rtol=1e-3)
    # the older halo gives fewer low-mass events (slower WIMPs): ~0.56x at 5 keV for 10 GeV
    ratio = wimp_rate(np.array([5.0]), 10.0, 1e-45, h)[0] / wimp_rate(np.array([5.0]), 10.0, 1e-45)[0]
    assert 0.5 < ratio < 0.62
