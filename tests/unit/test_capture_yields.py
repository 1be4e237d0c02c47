"""Charge-scaled β yields for electron-capture lines (``nest_yields: {model: beta, charge_yield_scale: Q}``).

NEST's β charge yield is linear in the ER parameters m1, m2, m5, so scaling them by Q must scale the
electrons by exactly Q at every energy with the quanta conserved (checked on NEST's own output at the
WS2024-like lines), and the configuration must resolve and refuse the model in one line.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from lzflow import layout as L
from lzflow.config import load_config
from lzflow.exceptions import ConfigError
from lzflow.physics_config import check_charge_scaled_yields, check_nest_yields
from lzflow.response.nest import charge_scaled_er_params, simulate_direct
from lzflow.space import SCALED_BETA_PATTERN, base_interaction, canonical_interaction, charge_yield_scale, scaled_beta

ROOT = Path(__file__).resolve().parents[2]
WS2024 = ROOT / "config" / "lz_ws2024_quick.yaml"
#: The WS2024-like lines in the ROI: 124Xe LL 10.0 and LM 5.98 keV, 127Xe L 5.19 and M 1.07 keV.
LINES_KEV = (10.0, 5.98, 5.19, 1.07)


@pytest.fixture(scope="module")
def ws2024():
    return load_config(WS2024)


def _yields(detector: dict, er: list[float], energy: float):
    import nestpy

    from lzflow.detector import build_nest_detector

    calc = nestpy.NESTcalc(build_nest_detector(detector))
    field = detector.get("drift_field_V_cm") or 96.5  # LZ WS2024's 96.5 V/cm (PRL24) where NEST's map is used
    return calc.GetYields(nestpy.interactions.beta, energy, 2.8885, field, 131.293, 54.0,
                          [float(v) for v in detector["yields"]["nr"]], er)


@pytest.mark.parametrize("q", [0.71, 0.87])
def test_scaled_charge_yield_is_q_times_beta_with_quanta_conserved(ws2024, q):
    det = ws2024["detector"]
    er = [float(v) for v in det["yields"]["er"]]
    scaled = charge_scaled_er_params(er, q)
    assert scaled[2:4] == er[2:4] and scaled[5:] == er[5:]  # only m1, m2, m5 change
    for energy in LINES_KEV:
        beta, quenched = _yields(det, er, energy), _yields(det, scaled, energy)
        assert quenched.ElectronYield / beta.ElectronYield == pytest.approx(q, rel=1e-9)
        assert quenched.ElectronYield + quenched.PhotonYield == pytest.approx(
            beta.ElectronYield + beta.PhotonYield, rel=1e-12)
        assert quenched.PhotonYield > beta.PhotonYield


def test_q_one_is_bit_identical_and_defaults_are_refused():
    er = [12.4886, 85.0, 0.605, 2.14687, 25.721, -1.0, 59.651, 3.6869, 0.2872, 0.1121]
    assert charge_scaled_er_params(er, 1.0) == er
    with pytest.raises(ValueError, match=r"yields.er\[0\] = -1.*explicit"):
        charge_scaled_er_params([-1.0] * 10, 0.71)


def test_direct_simulation_moves_charge_to_light(ws2024):
    """Through the response code path (run_nest): the mean cS2 of the 10 keV LL line drops by ≈ Q
    (cS2 ∝ electrons up to gain fluctuations) and cS1 rises; the same events (common seeds)."""
    det = ws2024["detector"]
    E = np.full(20000, 10.0)
    s1b, yb, okb = simulate_direct(det, "beta", E, seed=3)
    s1q, yq, okq = simulate_direct(det, "beta_Q0.71", E, seed=3)
    ratio = np.mean(10 ** yq[okq]) / np.mean(10 ** yb[okb])
    assert ratio == pytest.approx(0.71, abs=0.02)
    assert np.mean(s1q[okq]) / np.mean(s1b[okb]) > 1.10


def test_interaction_names():
    assert scaled_beta(0.71) == "beta_Q0.71" and scaled_beta(0.875) == "beta_Q0.875"
    assert canonical_interaction("beta_Q0.710") == "beta_Q0.71"
    assert base_interaction("beta_Q0.71") == "beta" and base_interaction("gamma") == "gammaRay"
    assert charge_yield_scale("beta_Q0.71") == 0.71 and charge_yield_scale("beta") == 1.0
    for bad in (1.0, 0.0, 1e-5):
        with pytest.raises(ValueError, match="charge_yield_scale"):
            scaled_beta(bad)
    assert "beta_Q0.71" not in L.INTERACTIONS and SCALED_BETA_PATTERN


def test_config_resolves_a_response_per_q(ws2024):
    raw = {"Xe124": {"model": "beta", "charge_yield_scale": 0.71}}
    assert check_nest_yields("Xe124", raw["Xe124"]) == "beta_Q0.71"
    assert L.used_interactions(ws2024) == ["NR", "beta", "beta_Q0.71", "beta_Q0.87"]
    assert L.background_interaction(ws2024, "Xe124LL") == "beta_Q0.71"
    cfg = copy.deepcopy(ws2024)  # without a scaled model, no scaled response
    for b in cfg["backgrounds"].values():
        b["nest_yields"] = base_interaction(b["nest_yields"])
    assert L.used_interactions(cfg) == ["NR", "beta"]


@pytest.mark.parametrize("name, value, expect", [
    ("Xe124", {"model": "beta", "charge_yield_scale": 1.0}, "0 < Q < 1"),
    ("Xe124", {"model": "beta", "charge_yield_scale": 0}, "0 < Q < 1"),
    ("Xe124", {"model": "beta", "charge_yield_scale": True}, "0 < Q < 1"),
    ("Xe124", {"model": "gammaRay", "charge_yield_scale": 0.7}, "expected beta"),
    ("Xe124", {"model": "beta"}, "exactly the keys model and charge_yield_scale"),
    ("B8", {"model": "beta", "charge_yield_scale": 0.7}, "B8 is NR"),
])
def test_bad_models_are_refused_in_one_line(name, value, expect):
    with pytest.raises(ConfigError, match=expect) as err:
        check_nest_yields(name, value)
    assert f"backgrounds.{name}.nest_yields" in str(err.value) and "\n" not in str(err.value)


def test_default_er_parameters_cannot_be_scaled():
    det = {"yields": {"er": [-1.0] * 10}}
    with pytest.raises(ConfigError, match=r"backgrounds.Xe124.nest_yields: charge_yield_scale 0.71 needs"):
        check_charge_scaled_yields(det, {"Xe124": {"nest_yields": "beta_Q0.71"}, "pp": {"nest_yields": "beta"}})
    assert check_charge_scaled_yields(det, {"pp": {"nest_yields": "beta"}}) is det


def test_ws2024_config_uses_the_documented_charge_yields(ws2024):
    """config/lz_ws2024.yaml's charge_yield_scale of each capture line is LZ_CHARGE_YIELD_SCALE (cited there)."""
    from lzflow.spectra.capture import LZ_CHARGE_YIELD_SCALE

    got = {name: charge_yield_scale(b["nest_yields"]) for name, b in ws2024["backgrounds"].items()
           if charge_yield_scale(b["nest_yields"]) != 1.0}
    assert got == LZ_CHARGE_YIELD_SCALE


def test_default_config_is_unchanged():
    """The default analysis makes no charge-scaled response: same interactions, same response specs."""
    cfg = load_config(ROOT / "config" / "config.yaml")
    assert L.used_interactions(cfg) == ["NR", "beta"]
    assert all(charge_yield_scale(b["nest_yields"]) == 1.0 for b in cfg["backgrounds"].values())
