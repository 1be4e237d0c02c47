"""Detector stage: presets, overrides, NEST-derived quantities, the detector hash."""

from __future__ import annotations

import json

import pytest

from lzflow.config import load_yaml
from lzflow.detector import (NEST_PARAMETERS, build_nest_detector, derived_quantities, detector_hash,
                             resolve_detector)


def test_projection_detector_matches_reference(projection_detector):
    derived = derived_quantities(projection_detector)
    # physics.md: single-electron size 83 phd, extraction 95%, g2 ~79.2 phd/e- for the projection
    assert derived["single_electron_phd"] == pytest.approx(83.0, rel=0.02)
    assert derived["extraction_efficiency"] == pytest.approx(0.93, abs=0.03)
    assert derived["g2_phd_per_electron"] == pytest.approx(79.2, rel=0.06)
    # 5.6 t fiducial from r <= 688 mm, 20 <= z <= 1330 mm of liquid xenon
    assert derived["fiducial_mass_t"] == pytest.approx(5.6, rel=0.02)


def test_every_parameter_reaches_nest(projection_detector):
    det = build_nest_detector(projection_detector)
    for key, spec in NEST_PARAMETERS.items():
        want = projection_detector["nest"][key]
        got = getattr(det, key)
        assert got == pytest.approx(want[0] if spec.length else want), key


def test_preset_with_override(repo):
    raw = load_yaml(repo / "config" / "detector" / "lz_ws2024.yaml")
    nominal = resolve_detector(raw)
    assert nominal["nest"]["g1"] == pytest.approx(0.1122)
    assert nominal["drift_field_V_cm"] is None  # the preset's own field map
    assert len(nominal["yields"]["widths"]) == 13
    raw["nest"] = {"g1": 0.09, "eLife_us": "5 ms"}
    changed = resolve_detector(raw)
    assert changed["nest"]["g1"] == 0.09
    assert changed["nest"]["eLife_us"] == pytest.approx(5000.0)
    assert changed["nest"]["radius"] == nominal["nest"]["radius"]
    assert build_nest_detector(changed).g1 == pytest.approx(0.09)


def test_hash_tracks_physics_not_name(projection_detector):
    renamed = dict(projection_detector, name="other")
    assert detector_hash(renamed) == projection_detector["hash"]
    changed = json.loads(json.dumps(projection_detector))
    changed["fiducial"]["r_max_mm"] = 600.0
    assert detector_hash(changed) != projection_detector["hash"]


def test_lower_g1_lowers_g2_independent_quantities(projection_detector):
    changed = json.loads(json.dumps(projection_detector))
    changed["nest"]["g1"] = 0.05
    # g2 depends on the gas side only: unchanged by g1
    assert derived_quantities(changed)["g2_phd_per_electron"] == pytest.approx(
        derived_quantities(projection_detector)["g2_phd_per_electron"])
    changed["nest"]["g1_gas"] = 0.05
    assert derived_quantities(changed)["single_electron_phd"] < derived_quantities(projection_detector)["single_electron_phd"]
