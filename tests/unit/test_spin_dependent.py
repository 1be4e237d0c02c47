"""Spin-dependent WIMP signals: Klos et al. 2013 structure factors, the SD rate against wimprates and
against lzflow's own SI rate, the signal.interaction configuration and what reruns when it changes."""

from __future__ import annotations

import ast
import dataclasses
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import lzflow
from lzflow import layout, stagecode
from lzflow.config import ConfigError, load_config, load_config_stack, resolve_config
from lzflow.spectra.constants import AMU_GEV
from lzflow.spectra.nuclear import XE_NATURAL
from lzflow.spectra.spin_dependent import (
    NEUTRON_MASS_GEV,
    PROTON_MASS_GEV,
    SIGNAL_INTERACTIONS,
    XE_SD_ISOTOPES,
    sd_wimp_rate,
    signal_rate,
    structure_factor,
)
from lzflow.spectra.wimp import HaloModel, escape_normalisation, halo_preset, wimp_rate

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # wimprates announces changed defaults
    import numericalunits as nu
    import wimprates

REPO = Path(__file__).resolve().parents[2]
ENERGIES = np.geomspace(1.0, 60.0, 30)  # keVnr


def _endpoint_keV(mass_GeV: float, halo: HaloModel, A: float = 131.293) -> float:
    mN = A * AMU_GEV
    mu = mass_GeV * mN / (mass_GeV + mN)
    return 2.0 * mu**2 * (halo.v_max_km_s / 299792.458) ** 2 / mN * 1e6


def _wimprates(E: np.ndarray, mass: float, coupling: str, halo_model=None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(wimprates.rate_wimp_std(E, mass, 1e-40, interaction=f"SD_{coupling}_central",
                                                  halo_model=halo_model), dtype=float)


# ------------------------------------------------------------------------------------ structure factors
@pytest.mark.parametrize("A, J, s_p, s_n", [(129, 0.5, 0.010, 0.329), (131, 1.5, -0.009, -0.272)])
def test_isoscalar_structure_factor_at_zero_is_the_one_body_spin(A, J, s_p, s_n):
    """S00(0) = (2J+1)(J+1)/(4 pi J) (<S_p> + <S_n>)^2: 2b currents enter the isovector part only, so
    the fit's S00(0) must match Klos 2013 Table I's 1b spin expectation values (recalled)."""
    iso = next(i for i in XE_SD_ISOTOPES if i.nucleus.A == A)
    expected = (2 * J + 1) * (J + 1) / (4 * np.pi * J) * (s_p + s_n) ** 2
    assert iso.s00[0] == pytest.approx(expected, rel=0.01)
    assert iso.J == J and iso.nucleus.abundance == pytest.approx({129: 0.264006, 131: 0.212324}[A])
    # neutron-only >> proton-only (odd neutron); S_n = S00 - S01 + S11 at q = 0
    sn, sp = structure_factor(0.0, A, "n"), structure_factor(0.0, A, "p")
    assert sn == pytest.approx(iso.s00[0] - np.mean([c[0] for c in iso.s01]) + np.mean([c[0] for c in iso.s11]))
    assert sn > 25 * sp > 0
    # the 2b-current band brackets the central value; all three fall with q
    E = np.array([0.0, 10.0, 30.0])
    lo, hi = structure_factor(E, A, "n", "min"), structure_factor(E, A, "n", "max")
    mid = structure_factor(E, A, "n")
    assert np.all(np.minimum(lo, hi) <= mid) and np.all(mid <= np.maximum(lo, hi))
    assert np.all(np.diff(mid) < 0)


@pytest.mark.parametrize("A", [129, 131])
@pytest.mark.parametrize("coupling", ["n", "p"])
def test_structure_factors_match_wimprates_table(A, coupling):
    """wimprates ships its own table of the same paper's central curves: 2-4 % apart, per isotope."""
    table = wimprates.load_pickle("sd/structure_f_erec_xe.pkl")
    E = np.array([0.0, 1.0, 5.0, 10.0, 20.0, 40.0, 60.0])
    ref = np.interp(E, table["_energies"], table[(A, coupling, "central")])
    ratio = structure_factor(E, A, coupling) / ref
    assert np.all(np.abs(ratio - 1.0) < 0.05), ratio


@pytest.mark.parametrize("A", [129, 131])
@pytest.mark.parametrize("coupling", ["n", "p"])
def test_structure_factor_band_edges_match_wimprates(A, coupling):
    """The 2b band's edges pair S01 "min" with S11 "max" (and vice versa): wimprates' "down"/"up"
    curves within 15 % (measured 0.90-1.13, the largest where S_p of 131Xe is smallest). Pairing the
    two "min" fits instead would make S_p of 129Xe negative at q = 0."""
    table = wimprates.load_pickle("sd/structure_f_erec_xe.pkl")
    E = np.array([0.0, 5.0, 10.0, 20.0, 40.0])
    for band, theirs in (("min", "down"), ("max", "up")):
        ref = np.interp(E, table["_energies"], table[(A, coupling, theirs)])
        assert np.all(np.abs(structure_factor(E, A, coupling, band) / ref - 1.0) < 0.15)
    assert np.all(structure_factor(E, A, coupling, "min") > 0)


def test_structure_factor_refuses_bad_arguments():
    with pytest.raises(ValueError, match="coupling"):
        structure_factor(1.0, 129, "x")
    with pytest.raises(ValueError, match="band"):
        structure_factor(1.0, 129, "n", "upper")
    with pytest.raises(ValueError, match="129 or 131"):
        structure_factor(1.0, 132, "n")


# ------------------------------------------------------------------------------------------ rates
@pytest.mark.parametrize("mass", [10.0, 40.0, 1000.0])
@pytest.mark.parametrize("coupling", ["n", "p"])
def test_sd_rate_matches_wimprates(mass, coupling):
    """Same halo on both sides (wimprates' defaults), 1-60 keVnr below half the endpoint. Measured
    lzflow/wimprates: 0.96-1.04 (n), 0.96-1.03 (p); the rest is wimprates' table (2-4 %), its proton
    mass in mu for SD_n (0.3 %) and its single averaged nucleus for v_min (near the endpoint)."""
    E = ENERGIES[ENERGIES < 0.5 * _endpoint_keV(mass, HaloModel())]
    assert E.size >= 10
    ref = _wimprates(E, mass, coupling)
    ours = sd_wimp_rate(E, mass, 1e-40, HaloModel(normalisation="wimprates"), coupling=coupling)
    ratio = ours / ref
    assert np.all(np.abs(ratio - 1.0) < 0.045), ratio
    assert 0.965 < np.mean(ratio) < 1.02
    # the correctly normalised default is wimprates x 1/N_esc^2 (its halo is 3.0 % low, as for SI)
    k2 = escape_normalisation() ** 2
    np.testing.assert_allclose(sd_wimp_rate(E, mass, 1e-40, coupling=coupling) * k2, ours, rtol=1e-12)


@pytest.mark.parametrize("coupling", ["n", "p"])
def test_sd_rate_with_the_projection_halo_matches_wimprates(coupling, monkeypatch):
    """standard_2018 (v0 220, vesc 544, rho 0.3, Earth speed fixed at 232 km/s) on both sides."""
    monkeypatch.setattr(wimprates.halo, "v_earth", lambda t=None, v_0=None: 232.0 * nu.km / nu.s)
    model = wimprates.StandardHaloModel(v_0=220.0 * nu.km / nu.s, v_esc=544.0 * nu.km / nu.s,
                                        rho_dm=0.3 * nu.GeV / nu.c0**2 / nu.cm**3)
    h = halo_preset("standard_2018")
    E = ENERGIES[ENERGIES < 0.5 * _endpoint_keV(40.0, h)]
    ratio = sd_wimp_rate(E, 40.0, 1e-40, dataclasses.replace(h, normalisation="wimprates"),
                         coupling=coupling) / _wimprates(E, 40.0, coupling, model)
    assert np.all(np.abs(ratio - 1.0) < 0.045), ratio


@pytest.mark.parametrize("coupling, nucleon", [("n", NEUTRON_MASS_GEV), ("p", PROTON_MASS_GEV)])
def test_sd_rate_at_zero_recoil_against_the_si_rate(coupling, nucleon):
    """At q -> 0 every isotope has the same eta, so SD/SI = (mu_u/mu_N)^2 sum_SD w (4/3)(J+1)/J <S>^2
    / sum_all w A^2, with (4/3)(J+1)/J <S>^2 = (4 pi/3) S(0)/(2J+1) (the textbook sigma_SD(0))."""
    mass, E = 40.0, np.array([1e-6])
    mean_mass = sum(t.abundance * t.mass_GeV for t in XE_NATURAL)
    si = sum(t.abundance * t.mass_GeV / mean_mass * t.A**2 for t in XE_NATURAL)
    sd = sum(i.nucleus.abundance * i.nucleus.mass_GeV / mean_mass * (4 * np.pi / 3)
             * structure_factor(0.0, int(i.nucleus.A), coupling) / (2 * i.J + 1) for i in XE_SD_ISOTOPES)
    mu = lambda m: mass * m / (mass + m)  # noqa: E731
    expected = (mu(AMU_GEV) / mu(nucleon)) ** 2 * sd / si
    got = sd_wimp_rate(E, mass, 1e-40, coupling=coupling)[0] / wimp_rate(E, mass, 1e-40, isotopes="natural")[0]
    assert got == pytest.approx(expected, rel=1e-6)
    # the coupling picks the nucleon: per unit sigma, xenon's SD-neutron rate is ~30x its SD-proton rate
    ratio = sd_wimp_rate(np.array([5.0]), mass, 1e-40, coupling="n")[0] / sd_wimp_rate(np.array([5.0]), mass, 1e-40,
                                                                                        coupling="p")[0]
    assert 25 < ratio < 45


def test_sd_rate_edges_and_dispatch():
    E = np.array([-1.0, 0.0, np.nan, 5.0, 500.0])
    r = sd_wimp_rate(E, 40.0, 1e-40)
    assert r[0] == r[1] == r[2] == r[4] == 0.0 and r[3] > 0
    np.testing.assert_allclose(sd_wimp_rate(E, 40.0, 2e-40), 2 * r)
    h = HaloModel()
    np.testing.assert_array_equal(signal_rate(E, 40.0, 1e-45, h, "SI"), wimp_rate(E, 40.0, 1e-45, h))
    np.testing.assert_array_equal(signal_rate(E, 40.0, 1e-40, h, "SD_p"), sd_wimp_rate(E, 40.0, 1e-40, h, coupling="p"))
    with pytest.raises(ValueError, match="SI, SD_n, SD_p"):
        signal_rate(E, 40.0, 1e-40, h, "SD")
    with pytest.raises(ValueError, match="mass_GeV"):
        sd_wimp_rate(E, 0.0, 1e-40)


def test_wimp_source_folds_the_configured_coupling():
    from lzflow.sources import wimp_source

    cfg = load_config([REPO / "config/config.yaml", REPO / "config/overlays/sd_neutron.yaml"])
    spec = layout.signal_spec(cfg, "40")
    src = wimp_source(spec)
    assert src.interaction == "NR" and src.metadata["interaction"] == "SD_n"
    E = np.array([2.0, 10.0])
    np.testing.assert_allclose(src.spectrum(E), cfg["exposure"]["exposure_t_yr"]
                               * sd_wimp_rate(E, 40.0, 1e-40, halo_preset("standard_2018"), coupling="n"))
    si = wimp_source(layout.signal_spec(load_config([REPO / "config/config.yaml"]), "40"))
    assert "interaction" not in si.metadata  # SI sidecars stay as they were
    with pytest.raises(ValueError, match="interaction"):
        wimp_source(dict(spec, interaction="SD"))


# ------------------------------------------------------------------------------------ configuration
def _raw(*files: str) -> dict:
    return load_config_stack([REPO / f for f in files])


def test_interaction_is_required_and_checked():
    raw = _raw("config/config.yaml")
    assert resolve_config(raw, REPO)["signal"]["interaction"] == "SI"
    del raw["signal"]["interaction"]
    with pytest.raises(ConfigError, match=r"^signal\.interaction: missing"):
        resolve_config(raw, REPO)
    raw["signal"]["interaction"] = "SD_x"
    with pytest.raises(ConfigError) as err:
        resolve_config(raw, REPO)
    assert str(err.value) == "signal.interaction: 'SD_x' is invalid; expected one of SI, SD_n, SD_p"
    assert "\n" not in str(err.value)


def test_schema_enum_is_the_code_list():
    import yaml

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    signal = schema["properties"]["signal"]
    assert tuple(signal["properties"]["interaction"]["enum"]) == SIGNAL_INTERACTIONS
    assert "interaction" in signal["required"]


@pytest.mark.parametrize("overlay, interaction, reference", [("sd_neutron", "SD_n", "lz_projection_2018_sd_n"),
                                                           ("sd_proton", "SD_p", "lz_projection_2018_sd_p")])
@pytest.mark.parametrize("base", ["config/config.yaml", "config/quick.yaml"])
def test_overlays_stack(overlay, interaction, reference, base):
    from lzflow.workflow_gate import check_command_line

    files = [base, f"config/overlays/{overlay}.yaml"]
    cfg = resolve_config(_raw(*files), REPO)
    assert cfg["signal"]["interaction"] == interaction and cfg["signal"]["sigma_ref_cm2"] == pytest.approx(1e-40)
    assert cfg["reference"] == reference and cfg["tag"] == f"lz_projection_{interaction.lower()}"
    assert cfg["signal"]["masses_GeV"] == _raw(base)["signal"]["masses_GeV"]  # the base's masses
    check_command_line(["--cores", "all", "--configfile", *[str(REPO / f) for f in files]])  # the gate passes


# ------------------------------------------------------------------------------------ what reruns
def test_specs_of_si_are_unchanged_and_sd_says_its_coupling():
    si = load_config([REPO / "config/config.yaml"])
    sd = load_config([REPO / "config/config.yaml", REPO / "config/overlays/sd_proton.yaml"])
    assert "interaction" not in layout.signal_spec(si, "40") and "interaction" not in layout.merge_spec(si, "40")
    assert layout.signal_spec(sd, "40")["interaction"] == "SD_p" and layout.merge_spec(sd, "40")["interaction"] == "SD_p"
    # the coupling reaches neither the response, the backgrounds nor the toys
    for spec in (layout.response_spec, ):
        assert spec(si, "NR") == spec(sd, "NR")
    assert layout.background_spec(si, "pp") == layout.background_spec(sd, "pp")
    assert layout.used_interactions(si) == layout.used_interactions(sd)


def test_response_hash_covers_exactly_the_spectra_it_reads(tmp_path, monkeypatch):
    package = Path(lzflow.__file__).resolve().parent
    reference = (package / "response" / "reference.py").read_text()
    assert "from ..spectra import BACKGROUND_NAMES, background_model" in reference
    read = set(stagecode.RESPONSE_SPECTRA)
    assert {"spectra/backgrounds.py", "spectra/neutrino.py", "spectra/beta.py", "spectra/nuclear.py",
            "spectra/constants.py"} <= read
    assert not read & {"spectra/wimp.py", "spectra/spin_dependent.py", "spectra/__init__.py"}
    # editing the signal spectra (or adding one) reruns the PDFs, never the response matrices
    copy = tmp_path / "lzflow"
    shutil.copytree(package, copy)
    monkeypatch.setattr(stagecode, "PACKAGE_DIR", copy)
    stagecode.stage_code_hash.cache_clear()
    try:
        before = {stage: stagecode.stage_code_hash(stage) for stage in stagecode.STAGE_MODULES}
        (copy / "spectra" / "wimp.py").write_text((copy / "spectra" / "wimp.py").read_text() + "\n# edited\n")
        (copy / "spectra" / "new_signal.py").write_text('"""another signal"""\n')
        stagecode.stage_code_hash.cache_clear()
        after = {stage: stagecode.stage_code_hash(stage) for stage in stagecode.STAGE_MODULES}
        assert {s for s in before if before[s] != after[s]} == {"pdf"}
        (copy / "spectra" / "neutrino.py").write_text((copy / "spectra" / "neutrino.py").read_text() + "\n# edited\n")
        stagecode.stage_code_hash.cache_clear()
        again = {stage: stagecode.stage_code_hash(stage) for stage in stagecode.STAGE_MODULES}
        assert {s for s in after if after[s] != again[s]} == {"response", "pdf"}
    finally:
        stagecode.stage_code_hash.cache_clear()


# ------------------------------------------------------------------------------------ curve labels
def test_curve_rows_and_label_say_the_cross_section():
    from lzflow.curve import COLUMNS, cross_section_label, curve_rows

    doc = {"mass_GeV": 40.0, "method": "CLs+b", "cl": 0.9, "no_sensitivity": True, "interaction": "SD_n"}
    rows = curve_rows([doc])
    assert rows[0]["interaction"] == "SD_n" and "interaction" in COLUMNS
    assert cross_section_label(rows) == "SD WIMP-neutron"
    assert cross_section_label(curve_rows([{k: v for k, v in doc.items() if k != "interaction"}])) == "SI WIMP-nucleon"
    with pytest.raises(ValueError, match="different couplings"):
        cross_section_label(rows + [dict(rows[0], interaction="SD_p")])
