"""Configuration: schema, units and cross-field checks give one-line errors naming key and value."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from lzflow.config import ConfigError, deep_merge, load_config_file, mass_label, resolve_config
from lzflow.units import UnitError, to_canonical


def resolved(repo, raw):
    return resolve_config(raw, base_dir=repo)


def test_default_config_is_the_lz_projection(repo, default_config):
    cfg = resolved(repo, default_config)
    assert cfg["exposure"]["fiducial_mass_t"] == pytest.approx(5.6)
    assert cfg["exposure"]["live_time_days"] == pytest.approx(1000)
    assert cfg["exposure"]["exposure_t_yr"] == pytest.approx(15.33, abs=0.01)
    assert cfg["signal"]["masses_GeV"] == [10, 16.2222, 27.8256, 40, 46.4159, 66.6667, 100, 200, 1000]
    assert sorted(cfg["backgrounds"]) == sorted(
        ["B8", "DSN", "DetER", "DetNR", "Kr85", "Rn220", "Rn222", "atm", "hep", "pp", "vvBB"]
    )
    assert cfg["signal"]["sigma_ref_cm2"] == pytest.approx(1e-45)
    det = cfg["detector"]
    assert det["nest"]["g1"] == 0.118735
    assert det["nest"]["g1_gas"] == 0.1018
    assert det["nest"]["eLife_us"] == 850
    assert det["fiducial"] == {"r_max_mm": 688.0, "z_min_mm": 20.0, "z_max_mm": 1330.0}
    # the projection's drift field (G3's drift window implies 310 V/cm; G3's own 180 was the old value)
    assert det["drift_field_V_cm"] == 310.0
    # the projection's halo (issue 11; was Baxter et al.'s 238 km/s before): every value resolved
    assert cfg["signal"]["halo"] == {"preset": "standard_2018", "rho_GeV_cm3": 0.3, "v0_km_s": 220.0,
                                     "vesc_km_s": 544.0, "v_earth_model": "fixed", "v_earth_km_s": 232.0}
    # DetER's Compton scatters use beta yields; every background states its yield model
    assert {k: v["nest_yields"] for k, v in cfg["backgrounds"].items()} == {
        **{k: "NR" for k in ("B8", "DSN", "DetNR", "atm", "hep")},
        **{k: "beta" for k in ("DetER", "Kr85", "Rn220", "Rn222", "pp", "vvBB")}}


def test_quick_config_is_valid(repo):
    cfg = resolved(repo, load_config_file(repo / "config" / "quick.yaml"))
    assert cfg["tag"] == "quick"


@pytest.mark.parametrize(
    "value, unit, expected",
    [("688 mm", "mm", 688.0), ("68.8 cm", "mm", 688.0), ("0.85 ms", "us", 850.0), ("1000 d", "day", 1000.0),
     ("5600 kg", "t", 5.6), ("10821 V/cm", "kV/cm", 10.821), ("1e-45 cm**2", "cm**2", 1e-45)],
)
def test_units_convert(value, unit, expected):
    assert to_canonical(value, "k", unit) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value, fragment",
    [(688, "has no unit"), ("688 s", "wrong dimension"), ("688 furlongz", "not a quantity"), ("mm", "not a quantity")],
)
def test_units_reject(value, fragment):
    with pytest.raises(UnitError, match=fragment):
        to_canonical(value, "detector.fiducial.r_max", "mm")


def test_unit_in_key_allows_bare_number():
    assert to_canonical(850, "detector.nest.eLife_us", "us", unit_in_key=True) == 850.0
    assert to_canonical("0.85 ms", "detector.nest.eLife_us", "us", unit_in_key=True) == pytest.approx(850.0)


def _broken(default_config, path, value):
    raw = copy.deepcopy(default_config)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    "path, value, fragments",
    [
        (("signal", "masses_GeV"), [10, -4], ["signal.masses_GeV[1]", "-4", "0.1 <= masses_GeV"]),
        (("signal", "masses_GeV"), [10, 10.0], ["signal.masses_GeV", "10", "unique"]),
        (("exposure", "live_time"), "1000", ["exposure.live_time", "no unit"]),
        (("exposure", "live_time"), "1000 mm", ["exposure.live_time", "wrong dimension"]),
        (("pdf", "cs1_phd"), {"min": 80, "max": 3, "bins": 10}, ["pdf.cs1_phd", "min < max"]),
        (("pdf", "n_samples"), 10, ["pdf.n_samples", "10", "1000 <= n_samples"]),
        (("backgrounds", "pp"), {"counts": 191, "rel_unc": -0.1, "nest_yields": "beta"}, ["backgrounds.pp.rel_unc", "-0.1", "0 <= rel_unc"]),
        (("backgrounds", "B8"), {"counts": 1, "rel_unc": 0.1, "window_keV": [30, 1], "nest_yields": "NR"}, ["backgrounds.B8.window_keV", "low < high"]),
        (("tag",), "bad tag!", ["tag", "bad tag!"]),
        (("pdf", "seeed"), 3, ["pdf.seeed", "unknown key"]),
    ],
)
def test_bad_config_one_line_error(repo, default_config, path, value, fragments):
    with pytest.raises(ConfigError) as info:
        resolved(repo, _broken(default_config, path, value))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_background_subset_unknown_and_empty(repo, default_config):
    """A config picks any subset of the registered sources; an unknown name is refused with the valid
    names, on one line; no background at all is refused."""
    raw = copy.deepcopy(default_config)
    del raw["backgrounds"]["Kr85"]
    assert "Kr85" not in resolved(repo, raw)["backgrounds"]
    raw["backgrounds"]["Ar39"] = {"counts": 1.0, "rel_unc": 0.1, "nest_yields": "beta"}
    with pytest.raises(ConfigError, match=r"^backgrounds\.Ar39: unknown key; .*expected one of Ar37, B8, DSN") as err:
        resolved(repo, raw)
    assert "\n" not in str(err.value) and "Xe127" in str(err.value)
    raw["backgrounds"] = {}
    with pytest.raises(ConfigError, match=r"^backgrounds: "):
        resolved(repo, raw)


@pytest.mark.parametrize(
    "override, fragments",
    [
        ({"nest": {"g1": 1.3}}, ["detector_overrides.nest.g1", "1.3", "0 < g1 <= 1"]),
        ({"nest": {"g1": 0.0}}, ["detector_overrides.nest.g1", "0 < g1 <= 1"]),
        ({"fiducial": {"r_max": "800 mm"}}, ["detector_overrides.fiducial.r_max", "800", "radmax"]),
        ({"fiducial": {"z_max": "1500 mm"}}, ["detector_overrides.fiducial.z_max", "gate"]),
        ({"fiducial": {"r_max": "68.8"}}, ["detector_overrides.fiducial.r_max", "no unit"]),
        ({"nest": {"radius": 728}}, ["detector_overrides.nest.radius", "no unit"]),
        ({"nest": {"eLife_us": "850 V"}}, ["detector_overrides.nest.eLife_us", "wrong dimension"]),
        ({"nest": {"gg1": 0.1}}, ["detector_overrides.nest.gg1", "unknown key", "did you mean g1?"]),
        ({"base": "XENON1T"}, ["detector_overrides.base", "XENON1T"]),
        ({"drift_field": "180"}, ["detector_overrides.drift_field", "no unit"]),
        ({"yields": {"nr": [1.0, 2.0]}}, ["detector_overrides.yields.nr", "12 numbers"]),
    ],
)
def test_bad_detector_one_line_error(repo, default_config, override, fragments):
    raw = copy.deepcopy(default_config)
    raw["detector_overrides"] = override
    with pytest.raises(ConfigError) as info:
        resolved(repo, raw)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_g1_change_is_a_config_edit(repo, default_config):
    raw = copy.deepcopy(default_config)
    raw["detector_overrides"] = {"nest": {"g1": 0.05}}
    changed = resolved(repo, raw)["detector"]
    nominal = resolved(repo, default_config)["detector"]
    assert changed["nest"]["g1"] == 0.05
    assert changed["hash"] != nominal["hash"]
    assert {k: v for k, v in changed["nest"].items() if k != "g1"} == {
        k: v for k, v in nominal["nest"].items() if k != "g1"
    }


def test_deep_merge_and_mass_label():
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}
    assert [mass_label(m) for m in (10, 40.0, 16.2222, 1000)] == ["10", "40", "16.2222", "1000"]


def test_cli_reports_bad_config_without_traceback(repo, tmp_path, default_config):
    import yaml

    raw = _broken(default_config, ("signal", "masses_GeV"), [0])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = subprocess.run(
        [sys.executable, "-m", "lzflow.cli", "validate", "--config", str(path)],
        cwd=repo, capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert "signal.masses_GeV[0]" in result.stderr


@pytest.mark.parametrize("name", ["B8", "hep"])
def test_solar_cevns_counts_in_config_follow_from_the_flux(repo, default_config, name):
    """B8/hep have ~0 events in the 6-30 keVnr table window; their config counts come from the
    CEvNS rate with the published fluxes (physics.md §4) and must stay in step with it."""
    from lzflow.spectra import expected_counts

    cfg = resolved(repo, default_config)
    entry = cfg["backgrounds"][name]
    physics = expected_counts(name, cfg["exposure"]["exposure_t_yr"], tuple(entry["window_keV"]))
    assert entry["counts"] == pytest.approx(physics, rel=0.02)


def test_stats_defaults_and_per_mass_override(repo, default_config):
    raw = copy.deepcopy(default_config)
    raw["stats"] = {"toys_per_poi": 500, "per_mass": {40: {"toys_per_poi": 5000, "poi_grid": {"n_points": 20}}}}
    stats = resolved(repo, raw)["stats"]
    assert stats["cl"] == 0.9 and stats["method"] == "CLs+b" and stats["test_statistic"] == "qtilde"
    assert stats["per_mass"]["40"]["toys_per_poi"] == 5000
    assert stats["per_mass"]["40"]["poi_grid"]["n_points"] == 20
    assert stats["per_mass"]["40"]["poi_grid"]["max_factor"] == stats["poi_grid"]["max_factor"]
    assert stats["per_mass"]["10"]["toys_per_poi"] == 500


@pytest.mark.parametrize(
    "stats, fragments",
    [({"per_mass": {33: {"toys_per_poi": 100}}}, ["stats.per_mass.33", "not a mass"]),
     ({"method": "Bayes"}, ["stats.method", "Bayes"]),
     ({"cl": 1.2}, ["stats.cl", "1.2"]),
     ({"poi_grid": {"min_factor": 3.0, "max_factor": 1.0}}, ["stats.poi_grid", "min_factor < max_factor"])],
)
def test_bad_stats_one_line_error(repo, default_config, stats, fragments):
    raw = copy.deepcopy(default_config)
    raw["stats"] = stats
    with pytest.raises(ConfigError) as info:
        resolved(repo, raw)
    assert "\n" not in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_rule_shell_placeholders_are_quoted(repo):
    """Every {input}/{output}/{log} in a rule's shell command is quoted (:q), so a path from the
    config can never be split or interpreted by the shell (issue 17: results_dir with ';' ran a
    command in a real run before)."""
    import re

    placeholder = re.compile(r"\{(input|output|log)(\.[A-Za-z_]+|\[[0-9]+\])?(:[a-z]+)?\}")
    found = []
    for path in [repo / "Snakefile", *sorted((repo / "workflow" / "rules").glob("*.smk"))]:
        for match in placeholder.finditer(path.read_text()):
            found.append((path.name, match.group(0)))
    assert len(found) >= 40
    unquoted = [f for f in found if not f[1].endswith(":q}")]
    assert not unquoted, unquoted


def test_docs_list_every_bound(repo):
    """docs/configuration.md states every upper bound the schema and lzflow.config enforce."""
    from lzflow import config as cfg
    from lzflow.config import _schema

    doc = (repo / "docs" / "configuration.md").read_text()
    text = doc.replace(",", "")

    def maxima(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("maximum", "exclusiveMaximum", "maxItems"):
                    yield value
                else:
                    yield from maxima(value)
        elif isinstance(node, list):
            for value in node:
                yield from maxima(value)

    bounds = set(maxima(_schema())) - {1}
    bounds |= {hi for _, hi, _ in cfg.QUANTITY_BOUNDS.values()}
    bounds |= {cfg.MAX_TOY_JOBS, cfg.MAX_TOYS_PER_MASS, cfg.MAX_BINS, cfg.MAX_BASE_DEPTH}
    missing = [b for b in sorted(bounds) if f"{b:g}" not in text and str(b) not in text]
    assert not missing, f"bounds not in docs/configuration.md: {missing}"


def _with_halo(default_config, halo):
    raw = copy.deepcopy(default_config)
    raw["signal"]["halo"] = halo
    return raw


def test_halo_presets_resolve(repo, default_config):
    b21 = resolved(repo, _with_halo(default_config, {"preset": "baxter_2021"}))["signal"]["halo"]
    assert b21["preset"] == "baxter_2021" and (b21["v0_km_s"], b21["v_earth_model"]) == (238.0, "computed")
    assert b21["v_earth_km_s"] == pytest.approx(252.1289, abs=1e-4)
    # a preset's own value may be written beside it; all four written out, no preset: a custom halo
    same = {"preset": "standard_2018", "v0": "220 km/s", "v_earth": "232000 m/s"}
    assert resolved(repo, _with_halo(default_config, same))["signal"]["halo"]["v_earth_km_s"] == 232.0
    custom = {"rho": "0.4 GeV/cm**3", "v0": "230 km/s", "vesc": "550 km/s", "v_earth": "computed"}
    h = resolved(repo, _with_halo(default_config, custom))["signal"]["halo"]
    assert h["preset"] is None and h["v_earth_model"] == "computed" and h["rho_GeV_cm3"] == 0.4


@pytest.mark.parametrize("halo, fragments", [
    ({"preset": "shm_2010"}, ["signal.halo.preset", "'shm_2010'", "standard_2018, baxter_2021"]),
    ({"preset": "standard_2018", "v0": "238 km/s"}, ["signal.halo.v0", "'238 km/s'", "conflicts with preset "
                                                     "standard_2018", "expected 220 km/s"]),
    ({"preset": "baxter_2021", "v_earth": "232 km/s"}, ["signal.halo.v_earth", "expected computed"]),
    ({"preset": "standard_2018", "v_earth": "-232 km/s"}, ["signal.halo.v_earth", "0 km/s < value <= 2000 km/s"]),
    ({"preset": "standard_2018", "v_earth": "232 m"}, ["signal.halo.v_earth", "wrong dimension"]),
    ({"rho": "0.3 GeV/cm**3", "v0": "220 km/s", "vesc": "544 km/s"}, ["signal.halo.v_earth: missing", "preset"]),
])
def test_bad_halo_one_line_error(repo, default_config, halo, fragments):
    with pytest.raises(ConfigError) as info:
        resolved(repo, _with_halo(default_config, halo))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("name, value, fragments", [
    ("DetNR", "beta", ["backgrounds.DetNR.nest_yields", "'beta'", "expected NR", "nuclear-recoil"]),
    ("DetER", "NR", ["backgrounds.DetER.nest_yields", "'NR'", "expected beta or gammaRay"]),
    ("DetER", "gamma", ["backgrounds.DetER.nest_yields", "'gamma'", "beta, gammaRay, NR"]),
])
def test_bad_nest_yields_one_line_error(repo, default_config, name, value, fragments):
    raw = copy.deepcopy(default_config)
    raw["backgrounds"][name]["nest_yields"] = value
    with pytest.raises(ConfigError) as info:
        resolved(repo, raw)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_nest_yields_choose_the_response_of_a_background(repo, default_config):
    """The yield model is in the background's job spec and picks its response matrix; changing
    DetER's changes DetER's PDF key only (the other PDFs and every response keep theirs)."""
    from lzflow import layout as L
    from lzflow.variants import artefact_keys

    cfg = resolved(repo, default_config)
    raw = copy.deepcopy(default_config)
    raw["backgrounds"]["DetER"]["nest_yields"] = "gammaRay"
    gam = resolved(repo, raw)
    assert L.background_interaction(cfg, "DetER") == "beta" and L.background_interaction(gam, "DetER") == "gammaRay"
    assert L.background_spec(gam, "DetER")["nest_yields"] == "gammaRay"
    a, b = artefact_keys(cfg), artefact_keys(gam)
    changed = {k for k in a if a[k] != b[k]}
    assert {L.pdf_path("DetER"), L.pdf_meta_path("DetER")} <= changed
    assert not any(k.startswith("response/") or k.startswith("pdfs/") and "DetER" not in k for k in changed)
