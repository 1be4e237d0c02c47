"""A corpus of malformed (and a few legal edge-case) lzflow configurations.

Each :class:`Case` is a small set of files (a main config, optional overlays or a detector file)
written into a directory; ``stack`` lists the files given to ``lzflow validate --config`` and
``snakemake --configfile``, in order. ``expect`` holds fragments that the one-line error must
contain (the key, the value, what was expected), or is ``None`` for a legal configuration, which
both must accept. Paths inside the configs (``detector:``) are relative to the repository root,
where both commands run; the special text ``@DIR@`` is replaced by the case's directory.

Classes: types, ranges, units, unknown keys, nesting, non-finite, huge, paths, shell
metacharacters, unicode, YAML bombs and hostile YAML, garbage files, bad studies, per-mass
overrides, base chains, overlays, cross-field checks, and legal edge cases.

Run ``python tests/workflow/config_corpus.py DIR`` to write every case into ``DIR/<case>/``.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
DETECTOR = "config/detector/lz_projection.yaml"
#: a file that shell metacharacters in a config would create if they ever reached a shell
MARKER = "LZFLOW_PWNED"


@dataclass
class Case:
    name: str
    kind: str
    files: dict[str, str | bytes]
    stack: list[str]
    expect: list[str] | None  # fragments of the error line; None = legal, must be accepted
    tags: list[str] = field(default_factory=list)

    def write(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in self.files.items():
            path = directory / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content.replace("@DIR@", str(directory)), encoding="utf-8")
        return [directory / name for name in self.stack]


def _dump(raw: Any) -> str:
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


def _edited(edits: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The default config with dotted-path edits (``_DELETE`` removes a key)."""
    raw = copy.deepcopy(DEFAULT)
    raw["results_dir"] = "@DIR@/results"
    for path, value in edits.items():
        node = raw
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    for path in drop:
        node = raw
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        del node[last]
    return raw


CASES: list[Case] = []


def bad(name: str, kind: str, edits: dict[str, Any], *expect: str, drop: tuple[str, ...] = ()) -> None:
    CASES.append(Case(name, kind, {"config.yaml": _dump(_edited(edits, drop))}, ["config.yaml"], list(expect)))


def bad_text(name: str, kind: str, text: str | bytes, *expect: str) -> None:
    CASES.append(Case(name, kind, {"config.yaml": text}, ["config.yaml"], list(expect)))


def good(name: str, kind: str, edits: dict[str, Any], drop: tuple[str, ...] = ()) -> None:
    CASES.append(Case(name, kind, {"config.yaml": _dump(_edited(edits, drop))}, ["config.yaml"], None))


def stacked(name: str, kind: str, files: dict[str, str | bytes], stack: list[str], *expect: str) -> None:
    CASES.append(Case(name, kind, files, stack, list(expect) if expect else None))


def g1_study(values: Any, **extra: Any) -> dict[str, Any]:
    return {"studies": {"s": {"parameter": "detector.g1", "values": values, **extra}}}


# ----------------------------------------------------------------------------------------- types
bad("type_tag_int", "types", {"tag": 5}, "tag", "5", "string")
bad("type_tag_list", "types", {"tag": ["a"]}, "tag", "string")
bad("type_exposure_string", "types", {"exposure": "5.6 t"}, "exposure", "object")
bad("type_fiducial_mass_number", "types", {"exposure.fiducial_mass": 5.6}, "exposure.fiducial_mass", "5.6", "string")
bad("type_masses_string", "types", {"signal.masses_GeV": "10"}, "signal.masses_GeV", "'10'", "array")
bad("type_mass_item_string", "types", {"signal.masses_GeV": [10, "40"]}, "signal.masses_GeV[1]", "'40'", "number")
bad("type_sigma_ref_number", "types", {"signal.sigma_ref": 1e-45}, "signal.sigma_ref", "1e-45", "string")
bad("type_background_number", "types", {"backgrounds.pp": 191}, "backgrounds.pp", "191", "object")
bad("type_counts_string", "types", {"backgrounds.pp.counts": "191"}, "backgrounds.pp.counts", "'191'", "number")
bad("type_rel_unc_string", "types", {"backgrounds.pp.rel_unc": "2%"}, "backgrounds.pp.rel_unc", "'2%'", "number")
bad("type_n_samples_exp_string", "types", {"pdf.n_samples": "1e7"}, "pdf.n_samples", "'1e7'", "integer")
bad("type_n_samples_float", "types", {"pdf.n_samples": 1.5e6}, "pdf.n_samples", "1500000.0", "integer")
bad("type_axis_list", "types", {"pdf.cs1_phd": [3, 80]}, "pdf.cs1_phd", "[3, 80]", "object")
bad("type_bins_float", "types", {"pdf.cs1_phd.bins": 40.5}, "pdf.cs1_phd.bins", "40.5", "integer")
bad("type_cl_string", "types", {"stats.cl": "0.9"}, "stats.cl", "'0.9'", "number")
bad("type_method_case", "types", {"stats.method": "CLs+B"}, "stats.method", "CLs+B", "CLs+b")
bad("type_power_threshold_string", "types", {"stats.power_threshold": "0.16"}, "stats.power_threshold", "'0.16'")
bad("type_toys_bool", "types", {"stats.toys_per_poi": True}, "stats.toys_per_poi", "True", "integer")
bad("type_detector_int", "types", {"detector": 5}, "detector", "5", "string")
bad("type_overrides_list", "types", {"detector_overrides": ["g1"]}, "detector_overrides", "object")
bad("type_studies_list", "types", {"studies": ["g1"]}, "studies", "object")
bad("type_halo_v0_number", "types", {"signal.halo.v0": 220}, "signal.halo.v0", "220", "string")
bad("type_workers_zero", "types", {"pdf.workers": 0}, "pdf.workers", "0", "1 <= workers")
bad("type_seed_negative", "types", {"pdf.seed": -1}, "pdf.seed", "-1", "0 <= seed")
bad("type_test_statistic", "types", {"stats.test_statistic": "q0"}, "stats.test_statistic", "q0", "qtilde")

# ---------------------------------------------------------------------------------------- ranges
bad("range_cl_above_one", "ranges", {"stats.cl": 1.5}, "stats.cl", "1.5", "0 < cl < 1")
bad("range_cl_zero", "ranges", {"stats.cl": 0}, "stats.cl", "0", "0 < cl < 1")
bad("range_power_threshold_one", "ranges", {"stats.power_threshold": 1}, "stats.power_threshold", "1", "< 1")
bad("range_mass_zero", "ranges", {"signal.masses_GeV": [0]}, "signal.masses_GeV[0]", "0", "0.1 <= masses_GeV")
bad("range_mass_negative", "ranges", {"signal.masses_GeV": [10, -10]}, "signal.masses_GeV[1]", "-10")
bad("range_mass_too_light", "ranges", {"signal.masses_GeV": [0.01]}, "signal.masses_GeV[0]", "0.01", "0.1 <= ")
bad("range_rel_unc_negative", "ranges", {"backgrounds.pp.rel_unc": -0.1}, "backgrounds.pp.rel_unc", "-0.1", "0 <= rel_unc")
bad("range_rel_unc_huge", "ranges", {"backgrounds.pp.rel_unc": 5}, "backgrounds.pp.rel_unc", "5", "rel_unc <= 1")
bad("range_counts_negative", "ranges", {"backgrounds.Kr85.counts": -1}, "backgrounds.Kr85.counts", "-1", "0 <= counts")
bad("range_n_samples_small", "ranges", {"pdf.n_samples": 10}, "pdf.n_samples", "10", "1000 <= n_samples")
bad("range_bins_zero", "ranges", {"pdf.cs1_phd.bins": 0}, "pdf.cs1_phd.bins", "0", "1 <= bins")
bad("range_n_points_two", "ranges", {"stats.poi_grid": {"n_points": 2}}, "stats.poi_grid.n_points", "2", "3 <= n_points")
bad("range_min_factor_zero", "ranges", {"stats.poi_grid": {"min_factor": 0}}, "stats.poi_grid.min_factor", "0", "0 <")
bad("range_discovery_sigma_zero", "ranges", {"stats.discovery_sigma": 0}, "stats.discovery_sigma", "0")
bad("range_interpolation_order", "ranges", {"stats.interpolation_order": 4}, "stats.interpolation_order", "4", "<= 3")
bad("range_interpolation_floor", "ranges", {"stats.interpolation_floor": 1}, "stats.interpolation_floor", "1", "< 1")
bad("range_template_rebin_zero", "ranges", {"stats.template_rebin": 0}, "stats.template_rebin", "0")
bad("range_toys_per_poi_small", "ranges", {"stats.toys_per_poi": 5}, "stats.toys_per_poi", "5", "10 <= toys_per_poi")
bad("range_jobs_zero", "ranges", {"stats.jobs_per_poi": 0}, "stats.jobs_per_poi", "0", "1 <= jobs_per_poi")
bad("range_s2_threshold_negative", "ranges", {"pdf.s2_raw_min_phd": -1}, "pdf.s2_raw_min_phd", "-1")
bad("range_g1_above_one", "ranges", {"detector_overrides": {"nest": {"g1": 1.5}}}, "detector_overrides.nest.g1", "1.5",
    "0 < g1 <= 1")
bad("range_g1_zero", "ranges", {"detector_overrides": {"nest": {"g1": 0}}}, "detector_overrides.nest.g1", "0 < g1")
bad("range_p_dphe", "ranges", {"detector_overrides": {"nest": {"P_dphe": 2}}}, "detector_overrides.nest.P_dphe", "2")
bad("range_coin_level", "ranges", {"detector_overrides": {"nest": {"coinLevel": 0}}}, "detector_overrides.nest.coinLevel",
    "1 <= coinLevel")
bad("range_elife_negative", "ranges", {"detector_overrides": {"nest": {"eLife_us": -5}}},
    "detector_overrides.nest.eLife_us", "-5", "> 0")
bad("range_live_time_zero", "ranges", {"exposure.live_time": "0 d"}, "exposure.live_time", "'0 d'", "0 day < value")
bad("range_sigma_ref_huge", "ranges", {"signal.sigma_ref": "1 cm**2"}, "signal.sigma_ref", "'1 cm**2'", "1e-30")

# ----------------------------------------------------------------------------------------- units
bad("unit_live_time_missing", "units", {"exposure.live_time": "1000"}, "exposure.live_time", "'1000'", "no unit")
bad("unit_live_time_length", "units", {"exposure.live_time": "1000 mm"}, "exposure.live_time", "wrong dimension")
bad("unit_fiducial_mass_missing", "units", {"exposure.fiducial_mass": "5.6"}, "exposure.fiducial_mass", "no unit")
bad("unit_fiducial_mass_length", "units", {"exposure.fiducial_mass": "5.6 m"}, "exposure.fiducial_mass", "wrong dimension")
bad("unit_sigma_ref_missing", "units", {"signal.sigma_ref": "1e-45"}, "signal.sigma_ref", "no unit")
bad("unit_sigma_ref_length", "units", {"signal.sigma_ref": "1e-45 cm"}, "signal.sigma_ref", "wrong dimension")
bad("unit_rho_energy", "units", {"signal.halo.rho": "0.3 GeV"}, "signal.halo.rho", "wrong dimension")
bad("unit_v0_missing", "units", {"signal.halo.v0": "238"}, "signal.halo.v0", "no unit")
bad("unit_vesc_length", "units", {"signal.halo.vesc": "544 m"}, "signal.halo.vesc", "wrong dimension")
bad("unit_unknown", "units", {"exposure.live_time": "1000 furlongz"}, "exposure.live_time", "not a quantity")
bad("unit_quoted_for", "units", {"exposure.backgrounds_quoted_for": "15 t"}, "exposure.backgrounds_quoted_for",
    "wrong dimension")
bad("unit_r_max_missing", "units", {"detector_overrides": {"fiducial": {"r_max": "688"}}},
    "detector_overrides.fiducial.r_max", "no unit")
bad("unit_r_max_time", "units", {"detector_overrides": {"fiducial": {"r_max": "68.8 s"}}},
    "detector_overrides.fiducial.r_max", "wrong dimension")
bad("unit_drift_field_missing", "units", {"detector_overrides": {"drift_field": "180"}}, "detector_overrides.drift_field",
    "no unit")
bad("unit_drift_field_voltage", "units", {"detector_overrides": {"drift_field": "180 V"}},
    "detector_overrides.drift_field", "wrong dimension")
bad("unit_elife_voltage", "units", {"detector_overrides": {"nest": {"eLife_us": "850 V"}}},
    "detector_overrides.nest.eLife_us", "wrong dimension")
bad("unit_coinwind_bare", "units", {"detector_overrides": {"nest": {"coinWind": 150}}},
    "detector_overrides.nest.coinWind", "no unit")
bad("unit_radius_bare", "units", {"detector_overrides": {"nest": {"radius": 728}}}, "detector_overrides.nest.radius",
    "no unit")

# ---------------------------------------------------------------------------------- unknown keys
bad("unknown_top_level_typo", "unknown keys", {"tagg": "x"}, "tagg", "unknown key", "did you mean tag?")
bad("unknown_override_wrong_nesting", "unknown keys", {"detector_overrides": {"g1": 0.05}}, "detector_overrides.g1",
    "did you mean nest.g1?")
bad("unknown_override_drift_feild", "unknown keys", {"detector_overrides": {"drift_feild": "310 V/cm"}},
    "detector_overrides.drift_feild", "did you mean drift_field?")
bad("unknown_override_nest_typo", "unknown keys", {"detector_overrides": {"nest": {"gg1": 0.1}}},
    "detector_overrides.nest.gg1", "did you mean g1?")
bad("unknown_fiducial_extra", "unknown keys", {"detector_overrides": {"fiducial": {"r_min": "0 mm"}}},
    "detector_overrides.fiducial.r_min", "unknown key")
bad("unknown_override_yields", "unknown keys", {"detector_overrides": {"yields": {"xx": [1]}}},
    "detector_overrides.yields.xx", "unknown key")
bad("unknown_pdf_typo", "unknown keys", {"pdf.n_sample": 100000}, "pdf.n_sample", "did you mean n_samples?")
bad("unknown_stats_case", "unknown keys", {"stats.toys_per_POI": 100}, "stats.toys_per_POI", "did you mean toys_per_poi?")
bad("unknown_per_mass_key", "unknown keys", {"stats.per_mass": {"40": {"toys": 100}}}, "stats.per_mass.40.toys",
    "unknown key")
bad("unknown_background_name", "unknown keys", {"backgrounds.Kr58": {"counts": 1, "rel_unc": 0.1}}, "backgrounds.Kr58",
    "did you mean Kr85?")
bad("unknown_halo_key", "unknown keys", {"signal.halo.v_0": "220 km/s"}, "signal.halo.v_0", "unknown key")
bad("unknown_exposure_key", "unknown keys", {"exposure.live_days": 1000}, "exposure.live_days", "unknown key")
bad("unknown_axis_key", "unknown keys", {"pdf.cs1_phd.nbins": 40}, "pdf.cs1_phd.nbins", "unknown key")
bad("unknown_study_key", "unknown keys", {"studies": {"s": {"parameter": "detector.g1", "values": [0.1], "value": 1}}},
    "studies.s.value", "unknown key")
bad("unknown_use_yte", "unknown keys", {"__use_yte__": True}, "__use_yte__", "unknown key")
bad("unknown_background_field", "unknown keys", {"backgrounds.pp.window": [1, 2]}, "backgrounds.pp.window",
    "did you mean window_keV?")

# --------------------------------------------------------------------------------------- nesting
bad("nest_exposure_list", "nesting", {"exposure": ["5.6 t", "1000 d"]}, "exposure", "object")
bad("nest_signal_scalar", "nesting", {"signal": "x"}, "signal", "'x'", "object")
bad("nest_overrides_nest_scalar", "nesting", {"detector_overrides": {"nest": 5}}, "detector_overrides.nest", "5",
    "mapping")
bad("nest_overrides_fiducial_list", "nesting", {"detector_overrides": {"fiducial": ["688 mm"]}},
    "detector_overrides.fiducial", "mapping")
bad("nest_poi_grid_scalar", "nesting", {"stats.poi_grid": 5}, "stats.poi_grid", "5", "object")
bad("nest_backgrounds_list", "nesting", {"backgrounds": ["pp"]}, "backgrounds", "object")
bad("nest_study_scalar", "nesting", {"studies": {"s": 5}}, "studies.s", "5", "object")
bad("nest_per_mass_list", "nesting", {"stats.per_mass": [40]}, "stats.per_mass", "object")
bad("nest_halo_list", "nesting", {"signal.halo": ["0.3 GeV/cm**3"]}, "signal.halo", "object")

# ----------------------------------------------------------------------------------- non-finite
NAN, INF = float("nan"), float("inf")
bad("nan_cl", "non-finite", {"stats.cl": NAN}, "stats.cl", "nan", "finite")
bad("inf_power_threshold", "non-finite", {"stats.power_threshold": INF}, "stats.power_threshold", "inf", "finite")
bad("nan_rel_unc", "non-finite", {"backgrounds.pp.rel_unc": NAN}, "backgrounds.pp.rel_unc", "nan", "finite")
bad("nan_window", "non-finite", {"backgrounds.B8.window_keV": [NAN, 30.0]}, "backgrounds.B8.window_keV[0]", "finite")
bad("inf_window", "non-finite", {"backgrounds.B8.window_keV": [1.0, INF]}, "backgrounds.B8.window_keV[1]", "inf")
bad("nan_min_factor", "non-finite", {"stats.poi_grid": {"min_factor": NAN}}, "stats.poi_grid.min_factor", "nan")
bad("inf_max_factor", "non-finite", {"stats.poi_grid": {"max_factor": INF}}, "stats.poi_grid.max_factor", "inf")
bad("nan_mass", "non-finite", {"signal.masses_GeV": [10, NAN]}, "signal.masses_GeV[1]", "nan")
bad("inf_mass", "non-finite", {"signal.masses_GeV": [INF]}, "signal.masses_GeV[0]", "inf")
bad("nan_fiducial_mass_text", "non-finite", {"exposure.fiducial_mass": "nan t"}, "exposure.fiducial_mass", "'nan t'")
bad("overflow_fiducial_mass", "non-finite", {"exposure.fiducial_mass": "1e999 t"}, "exposure.fiducial_mass",
    "'1e999 t'", "finite")
bad("inf_counts", "non-finite", {"backgrounds.pp.counts": INF}, "backgrounds.pp.counts", "inf")
bad("nan_override_g1", "non-finite", {"detector_overrides": {"nest": {"g1": NAN}}}, "detector_overrides.nest.g1", "nan")
bad("inf_rho_text", "non-finite", {"signal.halo.rho": "inf GeV/cm**3"}, "signal.halo.rho", "'inf GeV/cm**3'")
bad("overflow_drift_field", "non-finite", {"detector_overrides": {"drift_field": "1e999 V/cm"}},
    "detector_overrides.drift_field", "finite")
bad("nan_axis", "non-finite", {"pdf.log10_cs2_phd.max": NAN}, "pdf.log10_cs2_phd.max", "nan")

# ------------------------------------------------------------------------------------------- huge
bad("huge_n_samples_1e20", "huge", {"pdf.n_samples": 10**20}, "pdf.n_samples", "100000000000000000000",
    "n_samples <= 1000000000")
bad("huge_n_samples_1e13", "huge", {"pdf.n_samples": 10**13}, "pdf.n_samples", "<= 1000000000")
bad("huge_toys_1e12", "huge", {"stats.toys_per_poi": 10**12}, "stats.toys_per_poi", "1000000000000",
    "toys_per_poi <= 1000000")
bad("huge_toys_bonly", "huge", {"stats.toys_bonly": 10**9}, "stats.toys_bonly", "toys_bonly <= 1000000")
bad("huge_jobs_10001", "huge", {"stats.jobs_per_poi": 10001}, "stats.jobs_per_poi", "10001", "<= 10000")
bad("huge_mass_tiny", "huge", {"signal.masses_GeV": [1e-7]}, "signal.masses_GeV[0]", "1e-07", "0.1 <=")
bad("huge_mass_1e20", "huge", {"signal.masses_GeV": [1e20]}, "signal.masses_GeV[0]", "1e+20", "<= 100000")
bad("huge_many_masses", "huge", {"signal.masses_GeV": [10 + i for i in range(101)]}, "signal.masses_GeV",
    "at most 100")
bad("huge_toy_jobs", "huge", {"signal.masses_GeV": [10 + i for i in range(60)],
                              "stats.poi_grid": {"n_points": 200}, "stats.jobs_per_poi": 10},
    "stats.jobs_per_poi", "toy jobs", "at most 100,000")
bad("huge_toys_per_mass", "huge", {"stats.poi_grid": {"n_points": 200}, "stats.toys_per_poi": 200000},
    "stats.toys_per_poi", "toys for mass", "at most 20,000,000")
bad("huge_bins", "huge", {"pdf.cs1_phd.bins": 500, "pdf.log10_cs2_phd.bins": 500}, "pdf.cs1_phd.bins", "250,000",
    "at most 40,000")
bad("huge_bins_axis", "huge", {"pdf.cs1_phd.bins": 1000}, "pdf.cs1_phd.bins", "1000", "bins <= 500")
bad("huge_counts", "huge", {"backgrounds.pp.counts": 1e12}, "backgrounds.pp.counts", "counts <= 100000000")
bad("huge_live_time", "huge", {"exposure.live_time": "1e9 d"}, "exposure.live_time", "'1e9 d'", "36525 day")
bad("huge_fiducial_mass", "huge", {"exposure.fiducial_mass": "1e6 t"}, "exposure.fiducial_mass", "1000 t")
bad("huge_seed", "huge", {"stats.seed": 2**70}, "stats.seed", "seed <= 4294967295")

# ------------------------------------------------------------------------------------------ paths
bad("path_tag_dotdot", "paths", {"tag": ".."}, "tag", "'..'", "safe path component")
bad("path_tag_dot", "paths", {"tag": "."}, "tag", "'.'", "safe path component")
bad("path_tag_empty", "paths", {"tag": ""}, "tag", "''")
bad("path_tag_slash", "paths", {"tag": "a/b"}, "tag", "'a/b'")
bad("path_tag_option", "paths", {"tag": "-rf"}, "tag", "'-rf'")
bad("path_tag_hidden", "paths", {"tag": ".hidden"}, "tag", "'.hidden'")
bad("path_tag_reserved", "paths", {"tag": "logs"}, "tag", "'logs'", "results subtree")
bad("path_tag_long", "paths", {"tag": "x" * 100}, "tag", "safe path component")
bad("path_results_dir_empty", "paths", {"results_dir": ""}, "results_dir", "''")
bad("path_results_dir_root", "paths", {"results_dir": "/"}, "results_dir", "'/'", "filesystem root")
bad("path_results_dir_dot", "paths", {"results_dir": "."}, "results_dir", "'.'", "working directory")
bad("path_results_dir_parent", "paths", {"results_dir": "../../x"}, "results_dir", "'../../x'", "'..'")
bad("path_results_dir_inner_parent", "paths", {"results_dir": "a/../../b"}, "results_dir", "'..'")
bad("path_results_dir_option", "paths", {"results_dir": "-x"}, "results_dir", "'-x'")
bad("path_detector_missing", "paths", {"detector": "config/detector/nope.yaml"}, "nope.yaml", "file not found")
bad("path_detector_directory", "paths", {"detector": "config"}, "config", "is a directory")
CASES.append(Case("path_detector_binary", "paths",
                  {"config.yaml": _dump(_edited({"detector": "@DIR@/det.yaml"})), "det.yaml": bytes(range(256))},
                  ["config.yaml"], ["det.yaml", "binary file"]))
CASES.append(Case("path_detector_unknown_key", "paths",
                  {"config.yaml": _dump(_edited({"detector": "@DIR@/det.yaml"})),
                   "det.yaml": (REPO / DETECTOR).read_text() + "drift_feild: 310 V/cm\n"},
                  ["config.yaml"], ["detector.drift_feild", "did you mean drift_field?", "det.yaml"]))

# --------------------------------------------------------------------------- shell metacharacters
bad("shell_results_dir_semicolon", "shell", {"results_dir": f"res;touch {MARKER};x"}, "results_dir", MARKER,
    "not a safe path")
bad("shell_results_dir_subst", "shell", {"results_dir": f"res$(touch {MARKER})"}, "results_dir", MARKER)
bad("shell_results_dir_backtick", "shell", {"results_dir": f"res`touch {MARKER}`"}, "results_dir", MARKER)
bad("shell_results_dir_pipe", "shell", {"results_dir": "res|tee x"}, "results_dir", "'res|tee x'")
bad("shell_results_dir_space", "shell", {"results_dir": "my results"}, "results_dir", "'my results'")
bad("shell_results_dir_newline", "shell", {"results_dir": f"res\ntouch {MARKER}"}, "results_dir")
bad("shell_tag_semicolon", "shell", {"tag": f"a;touch {MARKER}"}, "tag", MARKER)
bad("shell_tag_quote", "shell", {"tag": "a'b"}, "tag", "a'b")
bad("shell_study_name", "shell", {"studies": {f"s;touch {MARKER}": {"parameter": "detector.g1", "values": [0.1]}}},
    "studies", MARKER, "bad name")
bad("shell_study_value_dotdot", "shell", g1_study([".."]), "studies.s.values[0]", "'..'", "directory name")
bad("shell_study_value_quantity", "shell",
    {"studies": {"s": {"parameter": "exposure.live_time", "values": [f"1000 d;touch {MARKER}"]}}},
    "studies.s.values[0]", "exposure.live_time")

# ---------------------------------------------------------------------------------------- unicode
bad("unicode_tag", "unicode", {"tag": "résumé"}, "tag", "résumé")
bad("unicode_results_dir", "unicode", {"results_dir": "résultats"}, "results_dir", "résultats")
bad("unicode_key", "unicode", {"tág": "x"}, "tág", "unknown key", "did you mean tag?")
bad("unicode_study_name", "unicode", {"studies": {"g1é": {"parameter": "detector.g1", "values": [0.1]}}}, "g1é")
bad("unicode_quantity", "unicode", {"exposure.live_time": "1000 Ω"}, "exposure.live_time", "1000 Ω")
bad("unicode_minus", "unicode", {"exposure.live_time": "−1000 d"}, "exposure.live_time", "−1000 d")
bad_text("unicode_latin1_bytes", "unicode", "tag: caf\xe9\n".encode("latin-1"), "config.yaml", "not UTF-8", "0xe9")

# ------------------------------------------------------------------------------ hostile YAML, bombs
_bomb = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]'] + [
    f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
bad_text("yaml_alias_bomb", "yaml", "\n".join(_bomb) + "\n", "config.yaml", "alias")
bad_text("yaml_deep_nesting", "yaml", "tag: " + "[" * 5000 + "]" * 5000 + "\n", "config.yaml", "nesting deeper")
bad_text("yaml_deep_mapping", "yaml", "".join("  " * i + f"k{i}:\n" for i in range(60)) + "  " * 60 + "v: 1\n",
         "config.yaml", "nesting deeper")
bad_text("yaml_huge_file", "yaml", "# " + "x" * (2 << 20) + "\ntag: a\n", "config.yaml", "bytes", "1,048,576")
bad_text("yaml_duplicate_top", "yaml", _dump(_edited({})) + "tag: other\n", "config.yaml", "duplicate key 'tag'",
         "line")
bad_text("yaml_duplicate_nested", "yaml",
         _dump(_edited({})).replace("  n_samples: 10000000\n", "  n_samples: 10000000\n  n_samples: 1000\n"),
         "config.yaml", "duplicate key 'n_samples'")
bad_text("yaml_python_tag", "yaml", "tag: !!python/object/apply:os.system ['touch LZFLOW_PWNED']\n", "config.yaml",
         "not valid YAML", "python")
bad_text("yaml_binary", "yaml", bytes(range(256)) * 4, "config.yaml", "binary file")
bad_text("yaml_nul_byte", "yaml", b"tag: a\x00b\n", "config.yaml", "NUL byte")
bad_text("yaml_tabs", "yaml", "tag: a\n\tdetector: x\n", "config.yaml", "not valid YAML")
bad_text("yaml_empty", "yaml", "", "config.yaml", "empty")
bad_text("yaml_comment_only", "yaml", "# nothing\n", "config.yaml", "empty")
bad_text("yaml_top_list", "yaml", "- tag\n- detector\n", "config.yaml", "list", "mapping")
bad_text("yaml_top_scalar", "yaml", "just text\n", "config.yaml", "str", "mapping")
bad_text("yaml_unhashable_key", "yaml", "? [1, 2]\n: 3\n", "config.yaml", "mapping key")
bad_text("yaml_two_documents", "yaml", "tag: a\n---\ntag: b\n", "config.yaml", "not valid YAML")
bad_text("yaml_unclosed_flow", "yaml", "tag: [a, b\n", "config.yaml", "not valid YAML")

# ------------------------------------------------------------------------------------ garbage files
bad_text("garbage_png", "garbage", b"\x89PNG\r\n\x1a\n" + bytes(200), "config.yaml", "binary file")
bad_text("garbage_gzip", "garbage", b"\x1f\x8b\x08\x00" + bytes(range(1, 200)), "config.yaml")
bad_text("garbage_brackets", "garbage", "]]]\n", "config.yaml", "not valid YAML")
bad_text("garbage_json_broken", "garbage", '{"tag": "a", \n', "config.yaml", "not valid YAML")
bad_text("garbage_truncated", "garbage", _dump(_edited({}))[:200] + '"unterminated\n', "config.yaml")
bad_text("garbage_random_text", "garbage", "lorem ipsum: dolor: sit amet\n", "config.yaml", "not valid YAML")

# ---------------------------------------------------------------------------------- bad studies
bad("study_parameter_tag", "studies", {"studies": {"s": {"parameter": "tag", "values": ["x"]}}}, "studies.s.parameter",
    "'tag'", "cannot be studied")
bad("study_parameter_masses", "studies", {"studies": {"s": {"parameter": "signal.masses_GeV", "values": [[10]]}}},
    "studies.s.parameter", "cannot be studied")
bad("study_parameter_results_dir", "studies", {"studies": {"s": {"parameter": "results_dir", "values": ["/tmp"]}}},
    "studies.s.parameter", "cannot be studied")
bad("study_parameter_unknown", "studies", {"studies": {"s": {"parameter": "foo.bar", "values": [1]}}},
    "studies.s.values[0] = 1", "foo", "unknown key")
bad("study_parameter_detector_unknown", "studies", {"studies": {"s": {"parameter": "detector.gg1", "values": [1]}}},
    "studies.s.parameter", "detector.gg1")
bad("study_parameter_not_string", "studies", {"studies": {"s": {"parameter": 5, "values": [1]}}},
    "studies.s.parameter", "5")
bad("study_values_empty", "studies", g1_study([]), "studies.s.values", "at least 1 item")
bad("study_values_scalar", "studies", g1_study(0.1), "studies.s.values", "0.1", "array")
bad("study_values_duplicate", "studies", g1_study([0.05, 0.05]), "studies.s.values", "0.05", "distinct")
bad("study_value_out_of_range", "studies", g1_study([2.0]), "studies.s.values[0] = 2.0", "g1", "0 < g1 <= 1")
bad("study_masses_not_in_list", "studies", g1_study([0.1], masses_GeV=[33]), "studies.s.masses_GeV", "33",
    "not a mass")
bad("study_set_forbidden", "studies", g1_study([0.1], set={"tag": "x"}), "studies.s.set", "'tag'", "cannot be studied")
bad("study_set_bad_value", "studies", g1_study([0.1], set={"stats.cl": 2}), "studies.s.values[0]", "stats.cl", "2")
bad("study_name_dotdot", "studies", {"studies": {"..": {"parameter": "detector.g1", "values": [0.1]}}}, "'..'",
    "bad name")
bad("study_missing_values", "studies", {"studies": {"s": {"parameter": "detector.g1"}}}, "studies.s.values", "missing")
bad("study_value_nan", "studies", g1_study([NAN]), "studies.s.values[0]", "nan", "finite")

# ------------------------------------------------------------------------------ per-mass overrides
bad("per_mass_not_in_list", "per-mass", {"stats.per_mass": {33: {"toys_per_poi": 100}}}, "stats.per_mass.33",
    "not a mass")
bad("per_mass_name", "per-mass", {"stats.per_mass": {"forty": {"toys_per_poi": 100}}}, "stats.per_mass.forty",
    "not a mass")
bad("per_mass_near_miss", "per-mass", {"stats.per_mass": {40.5: {"toys_per_poi": 100}}}, "stats.per_mass.40.5",
    "not a mass")
bad("per_mass_bad_value", "per-mass", {"stats.per_mass": {40: {"toys_per_poi": 1}}}, "stats.per_mass.40.toys_per_poi",
    "10 <= toys_per_poi")
bad("per_mass_jobs_exceed_toys", "per-mass", {"stats.per_mass": {40: {"toys_per_poi": 10, "jobs_per_poi": 20}}},
    "stats.jobs_per_poi", "20", "at most one job per toy")

# ----------------------------------------------------------------------------------- base chains
stacked("base_missing_file", "base", {"config.yaml": "base: nope.yaml\ntag: a\n"}, ["config.yaml"], "nope.yaml",
        "file not found")
stacked("base_cycle", "base", {"config.yaml": "base: other.yaml\ntag: a\n", "other.yaml": "base: config.yaml\n"},
        ["config.yaml"], "cycle")
stacked("base_self", "base", {"config.yaml": "base: config.yaml\ntag: a\n"}, ["config.yaml"], "cycle")
stacked("base_not_string", "base", {"config.yaml": "base: 5\ntag: a\n"}, ["config.yaml"], "base: 5")
stacked("base_too_deep", "base",
        {f"c{i}.yaml": (f"base: c{i + 1}.yaml\n" if i < 10 else "tag: a\n") for i in range(11)}, ["c0.yaml"],
        "chain of more than 8")
stacked("base_partial_config", "base", {"config.yaml": f"base: {REPO / 'config' / 'config.yaml'}\ntag: t\n"
                                                       "pdf: {n_samples: 1}\n"}, ["config.yaml"], "pdf.n_samples", "1")
bad("missing_n_samples", "base", {}, "pdf.n_samples", "missing", drop=("pdf.n_samples",))
bad("missing_tag", "base", {}, "tag", "missing", drop=("tag",))
bad("missing_results_detector", "base", {}, "detector", "missing", drop=("detector",))
stacked("no_base_partial_config", "base", {"config.yaml": "tag: mine\nsignal: {masses_GeV: [10]}\n"}, ["config.yaml"],
        "missing", "required")

# --------------------------------------------------------------------------------------- overlays
_full = _dump(_edited({}))
stacked("overlay_typo", "overlays", {"config.yaml": _full, "overlay.yaml": "stats: {toys_per_poii: 10}\n"},
        ["config.yaml", "overlay.yaml"], "stats.toys_per_poii", "did you mean toys_per_poi?")
stacked("overlay_override_typo", "overlays", {"config.yaml": _full, "overlay.yaml": "detector_overrides: {g1: 0.05}\n"},
        ["config.yaml", "overlay.yaml"], "detector_overrides.g1", "did you mean nest.g1?")
stacked("overlay_override_range", "overlays",
        {"config.yaml": _full, "overlay.yaml": "detector_overrides: {nest: {g1: 1.5}}\n"},
        ["config.yaml", "overlay.yaml"], "detector_overrides.nest.g1", "1.5")
stacked("overlay_binary", "overlays", {"config.yaml": _full, "overlay.yaml": bytes(range(256))},
        ["config.yaml", "overlay.yaml"], "overlay.yaml", "binary file")
stacked("overlay_list", "overlays", {"config.yaml": _full, "overlay.yaml": "- a\n"}, ["config.yaml", "overlay.yaml"],
        "overlay.yaml", "mapping")
stacked("overlay_bad_study", "overlays",
        {"config.yaml": _full, "overlay.yaml": "studies: {g1: {parameter: detector.g1, values: [5.0]}}\n"},
        ["config.yaml", "overlay.yaml"], "studies.g1.values[0] = 5.0")
stacked("overlay_missing", "overlays", {"config.yaml": _full}, ["config.yaml", "overlay.yaml"], "overlay.yaml",
        "file not found")

# ----------------------------------------------------------------------------------- cross-field
# stats.construction and stats.discovery_from_toys (lzflow.construction_stage)
bad("construction_unknown", "types", {"stats.construction": "feldman_cousins"}, "stats.construction",
    "'feldman_cousins'", "one_sided, two_sided")
bad("construction_two_sided_q", "cross-field", {"stats.construction": "two_sided", "stats.test_statistic": "q"},
    "stats.construction", "two_sided", "'q'", "expected qtilde")
bad("construction_two_sided_unbinned", "cross-field", {"stats.construction": "two_sided", "stats.likelihood": "unbinned"},
    "stats.construction", "'unbinned'", "expected binned")
bad("discovery_toys_missing_key", "cross-field", {"stats.discovery_from_toys": {"n_bonly": 30000}},
    "stats.discovery_from_toys.n_sb", "missing")
bad("discovery_toys_zero", "types", {"stats.discovery_from_toys": 0}, "stats.discovery_from_toys", "0", "object or null")
bad("discovery_toys_too_few", "ranges", {"stats.discovery_from_toys": {"n_bonly": 100, "n_sb": 2000}},
    "stats.discovery_from_toys.n_bonly", "100", "300 <= n_bonly")
bad("discovery_toys_unknown", "unknown keys", {"stats.discovery_from_toys": {"n_bonly": 30000, "n_sb": 2000, "z": 5}},
    "stats.discovery_from_toys.z")
good("construction_two_sided_with_discovery_toys", "legal", {"stats.construction": "two_sided",
                                                               "stats.discovery_from_toys": {"n_bonly": 30000, "n_sb": 2000}})
good("construction_one_sided_explicit", "legal", {"stats.construction": "one_sided", "stats.discovery_from_toys": None})
# toys to a target precision (lzflow.precision): the bound is required, never defaulted
bad("precision_without_bound", "cross-field", {"stats.target_precision": 0.02}, "stats.max_toys_per_poi", "null",
    "with stats.target_precision 0.02", "expected the most S+B toys per POI")
bad("precision_bound_without_target", "cross-field", {"stats.max_toys_per_poi": 20000}, "stats.max_toys_per_poi",
    "20000 without stats.target_precision", "expected null")
bad("precision_bound_below_first_batch", "cross-field", {"stats.target_precision": 0.02, "stats.max_toys_per_poi": 1000},
    "stats.max_toys_per_poi", "1000 below toys_per_poi 2000")
bad("range_target_precision_one", "ranges", {"stats.target_precision": 1, "stats.max_toys_per_poi": 20000},
    "stats.target_precision", "1", "< 1")
bad("type_max_toys_per_poi_float", "types", {"stats.target_precision": 0.02, "stats.max_toys_per_poi": 2.5e4},
    "stats.max_toys_per_poi", "25000.0", "integer")
good("precision_target_legal", "legal", {"stats.target_precision": 0.02, "stats.max_toys_per_poi": 20000})
good("precision_null_explicit", "legal", {"stats.target_precision": None, "stats.max_toys_per_poi": None})
# the mapping form names the quantities the target covers (lzflow.precision.targets)
good("precision_target_mapping_legal", "legal", {"stats.target_precision": {"median": 0.02, "plus_1sigma": 0.05},
                                                  "stats.max_toys_per_poi": 20000})
bad("precision_target_mapping_unknown", "unknown keys", {"stats.target_precision": {"mean": 0.02}, "stats.max_toys_per_poi": 20000},
    "stats.target_precision.mean", "median, minus_1sigma, plus_1sigma")
bad("precision_target_mapping_range", "ranges", {"stats.target_precision": {"median": 1.5}, "stats.max_toys_per_poi": 20000},
    "stats.target_precision.median", "1.5", "< 1")
bad("precision_target_mapping_type", "types", {"stats.target_precision": {"median": True}, "stats.max_toys_per_poi": 20000},
    "stats.target_precision.median", "True", "number")
bad("precision_target_mapping_empty", "cross-field", {"stats.target_precision": {}, "stats.max_toys_per_poi": 20000},
    "stats.target_precision", "{}", "at least one of")

bad("cross_axis_order", "cross-field", {"pdf.cs1_phd": {"min": 80, "max": 3, "bins": 10}}, "pdf.cs1_phd", "min < max")
bad("cross_log_axis_order", "cross-field", {"pdf.log10_cs2_phd": {"min": 5, "max": 5, "bins": 10}},
    "pdf.log10_cs2_phd", "min < max")
bad("cross_vesc_below_v0", "cross-field", {"signal.halo": {"rho": "0.3 GeV/cm**3", "v0": "220 km/s", "vesc": "200 km/s",
                                                          "v_earth": "232 km/s"}}, "signal.halo.vesc", "vesc > v0")
# halo presets (signal.halo.preset): unknown, a key that contradicts the preset, a bad Earth speed,
# a halo with neither a preset nor every value
bad("halo_unknown_preset", "cross-field", {"signal.halo.preset": "shm_2010"}, "signal.halo.preset", "'shm_2010'",
    "standard_2018, baxter_2021")
bad("halo_conflicts_preset", "cross-field", {"signal.halo.v0": "238 km/s"}, "signal.halo.v0", "'238 km/s'",
    "conflicts with preset standard_2018", "expected 220 km/s")
bad("halo_earth_speed_negative", "cross-field", {"signal.halo.v_earth": "-232 km/s"}, "signal.halo.v_earth",
    "0 km/s < value <= 2000 km/s")
bad("halo_earth_speed_unit", "units", {"signal.halo.v_earth": "232"}, "signal.halo.v_earth", "no unit")
bad("halo_no_preset_incomplete", "cross-field", {"signal.halo": {"rho": "0.3 GeV/cm**3", "v0": "220 km/s",
                                                                 "vesc": "544 km/s"}},
    "signal.halo.v_earth", "missing", "preset")
# WIMP coupling (signal.interaction): unknown, lower case, not a string
bad("interaction_unknown", "cross-field", {"signal.interaction": "SD"}, "signal.interaction", "'SD'",
    "expected one of SI, SD_n, SD_p")
bad("interaction_lower_case", "cross-field", {"signal.interaction": "sd_n"}, "signal.interaction", "'sd_n'", "SD_n")
bad("interaction_number", "types", {"signal.interaction": 1}, "signal.interaction", "1", "SI, SD_n, SD_p")
bad("interaction_missing", "base", {}, "signal.interaction", "missing", drop=("signal.interaction",))
# NEST yield models: unknown, NR yields for an ER source, ER yields for an NR source, missing
bad("yields_unknown_model", "cross-field", {"backgrounds.DetER.nest_yields": "compton"}, "backgrounds.DetER.nest_yields",
    "'compton'", "beta, gammaRay, NR")
bad("yields_nr_for_er_source", "cross-field", {"backgrounds.DetER.nest_yields": "NR"}, "backgrounds.DetER.nest_yields",
    "'NR'", "expected beta or gammaRay")
bad("yields_er_for_nr_source", "cross-field", {"backgrounds.DetNR.nest_yields": "gammaRay"},
    "backgrounds.DetNR.nest_yields", "'gammaRay'", "expected NR")
bad("yields_missing", "cross-field", {}, "backgrounds.pp.nest_yields", "missing", drop=("backgrounds.pp.nest_yields",))
# charge-scaled beta (electron-capture lines): Q out of range, not beta, an NR source, NEST's -1 ER defaults
bad("yields_scaled_q_one", "range", {"backgrounds.pp.nest_yields": {"model": "beta", "charge_yield_scale": 1.0}},
    "backgrounds.pp.nest_yields")
bad("yields_scaled_gamma", "cross-field", {"backgrounds.pp.nest_yields": {"model": "gammaRay", "charge_yield_scale": 0.7}},
    "backgrounds.pp.nest_yields")
bad("yields_scaled_nr_source", "cross-field", {"backgrounds.B8.nest_yields": {"model": "beta", "charge_yield_scale": 0.7}},
    "backgrounds.B8.nest_yields", "B8 is NR")
bad("yields_scaled_default_er", "cross-field", {"backgrounds.pp.nest_yields": {"model": "beta", "charge_yield_scale": 0.71}},
    "backgrounds.pp.nest_yields", "charge_yield_scale 0.71", "m1, m2, m5")
bad("cross_window_reversed", "cross-field", {"backgrounds.B8.window_keV": [30, 1]}, "backgrounds.B8.window_keV",
    "low < high")
bad("cross_window_no_rate", "cross-field", {"backgrounds.B8.window_keV": [200, 300]}, "backgrounds.B8.window_keV",
    "no rate")
bad("cross_rebin_divides", "cross-field", {"stats.likelihood": "unbinned", "stats.template_rebin": 3},
    "stats.template_rebin", "3", "divisor")
bad("cross_jobs_exceed_toys", "cross-field", {"stats.toys_per_poi": 10, "stats.jobs_per_poi": 20},
    "stats.jobs_per_poi", "at most one job per toy")
bad("cross_poi_factors", "cross-field", {"stats.poi_grid": {"min_factor": 3.0, "max_factor": 1.0}}, "stats.poi_grid",
    "min_factor < max_factor")
bad("cross_masses_duplicate", "cross-field", {"signal.masses_GeV": [10, 10.0]}, "signal.masses_GeV", "10", "unique")
bad("cross_masses_same_key", "cross-field", {"signal.masses_GeV": [40, 40.00001]}, "signal.masses_GeV", "40.00001",
    "run-number key")
bad("cross_r_max_outside", "cross-field", {"detector_overrides": {"fiducial": {"r_max": "800 mm"}}},
    "detector_overrides.fiducial.r_max", "800", "radmax")
bad("cross_z_outside", "cross-field", {"detector_overrides": {"fiducial": {"z_max": "1500 mm"}}},
    "detector_overrides.fiducial.z_max", "gate")
bad("cross_detector_base", "cross-field", {"detector_overrides": {"base": "XENON1T"}}, "detector_overrides.base",
    "XENON1T")
bad("cross_drift_field_huge", "cross-field", {"detector_overrides": {"drift_field": "1e9 V/cm"}},
    "detector_overrides.drift_field", "1e+09 V/cm")
good("legal_background_subset", "legal", {}, drop=("backgrounds.Kr85",))  # any subset of the registered sources
good("legal_background_ws2024_source", "legal", {"backgrounds.Xe124": {"counts": 24.4, "window_keV": [1.0, 100.0],
                                                                    "rel_unc": 0.2, "nest_yields": "beta"}})
bad("cross_no_background", "cross-field", {"backgrounds": {}}, "backgrounds", "{}")
bad("yields_nr_for_line_source", "cross-field", {"backgrounds.Ar37": {"counts": 1.0, "rel_unc": 0.1, "nest_yields": "NR"}},
    "backgrounds.Ar37.nest_yields", "expected beta or gammaRay")
bad("cross_missing_halo", "cross-field", {}, "signal.halo", "missing", drop=("signal.halo",))
bad("selection_efficiency_above_one", "ranges", {"signal.selection_efficiency": 1.2}, "signal.selection_efficiency",
    "1.2", "<= 1")
bad("selection_efficiency_zero", "ranges", {"signal.selection_efficiency": 0}, "signal.selection_efficiency", "0 <")
bad("selection_efficiency_string", "types", {"signal.selection_efficiency": "0.9"}, "signal.selection_efficiency",
    "'0.9'", "number")
bad("accidentals_window", "cross-field", {"backgrounds.accidentals": {"counts": 4.0, "rel_unc": 0.17, "nest_yields": "beta",
                                                                      "window_keV": [1, 2]}},
    "backgrounds.accidentals.window_keV", "unknown key")
bad("accidentals_yields_nr", "cross-field", {"backgrounds.accidentals": {"counts": 4.0, "rel_unc": 0.17, "nest_yields": "NR"}},
    "backgrounds.accidentals.nest_yields", "'NR'", "beta")
good("legal_selection_efficiency", "legal", {"signal.selection_efficiency": 0.943})
good("legal_accidentals", "legal", {"backgrounds.accidentals": {"counts": 4.0, "rel_unc": 0.168, "nest_yields": "beta"}})

# ------------------------------------------------------------------------------ legal edge cases
good("legal_default", "legal", {})
good("legal_mass_bounds", "legal", {"signal.masses_GeV": [0.1, 100000]})
good("legal_mass_many_decimals", "legal", {"signal.masses_GeV": [40.000000001]})
good("legal_per_mass_int_key", "legal", {"stats.per_mass": {40: {"toys_per_poi": 500}}})
good("legal_power_threshold_null", "legal", {"stats.power_threshold": None, "stats.method": "CLs"})
good("legal_results_dir_nested", "legal", {"results_dir": "@DIR@/out/lz-run_1.2"})
good("legal_tag_characters", "legal", {"tag": "lz_run-1.2"})
good("legal_unicode_description", "legal", g1_study([0.1], description="lumière — g1 scan ✓"))
good("legal_jobs_equal_toys", "legal", {"stats.toys_per_poi": 10, "stats.toys_bonly": 10, "stats.jobs_per_poi": 10})
good("legal_study_string_value", "legal", {"studies": {"lt": {"parameter": "exposure.live_time",
                                                              "values": ["500 d", "2000 d"]}}})
CASES.append(Case("legal_bom", "legal", {"config.yaml": "\ufeff" + _dump(_edited({}))}, ["config.yaml"], None))
_anchored = (_dump(_edited({}))
             .replace("  DSN:\n    counts: 0.05\n", "  DSN: &dsn\n    counts: 0.05\n")
             .replace("  atm:\n    counts: 0.46\n", "  atm:\n    <<: *dsn\n    counts: 0.46\n"))
assert "&dsn" in _anchored and "<<: *dsn" in _anchored
CASES.append(Case("legal_anchors_and_merge_keys", "legal", {"config.yaml": _anchored}, ["config.yaml"], None))
stacked("legal_overlay_stack", "legal", {"config.yaml": _full,
                                         "overlay.yaml": "detector_overrides: {nest: {g1: 0.1}}\ntag: overlaid\n"},
        ["config.yaml", "overlay.yaml"])
stacked("legal_base_chain", "legal", {"config.yaml": f"base: {REPO / 'config' / 'quick.yaml'}\ntag: chained\n"
                                                     "results_dir: @DIR@/results\n"}, ["config.yaml"])
stacked("legal_quick_with_study", "legal",
        {"config.yaml": f"base: {REPO / 'config' / 'quick.yaml'}\nresults_dir: @DIR@/results\n"
                        "studies: {g1: {parameter: detector.g1, values: [0.05], masses_GeV: [10]}}\n"},
        ["config.yaml"])

# -------------------------------------------------------------------------- detector systematics (issue 12)
_SYS = (REPO / "config" / "overlays" / "systematics.yaml").read_text()


def syst(**parameters: Any) -> dict[str, Any]:
    return {"systematics": {"n_samples_fraction": 0.05, "interpolation": "log_quartic", "parameters": parameters}}


bad("syst_unknown_parameter", "systematics", syst(g3={"sigma": 0.01}), "systematics.parameters", "g3", "g1")
bad("syst_missing_sigma", "systematics", syst(g1={}), "systematics.parameters.g1.sigma", "missing")
bad("syst_g1_sigma_string", "systematics", syst(g1={"sigma": "0.002"}), "systematics.parameters.g1.sigma", "number")
bad("syst_g1_sigma_too_large", "systematics", syst(g1={"sigma": 0.05}), "systematics.parameters.g1.sigma", "0.05",
    "0.25 x nominal")
bad("syst_g1_sigma_negative", "systematics", syst(g1={"sigma": -0.002}), "systematics.parameters.g1.sigma",
    "-0.002", "0 < sigma")
bad("syst_rel_sigma_on_g1", "systematics", syst(g1={"rel_sigma": 0.02}), "systematics.parameters.g1", "rel_sigma")
bad("syst_field_no_unit", "systematics", syst(drift_field={"sigma": 31}), "systematics.parameters.drift_field.sigma",
    "31", "string")
bad("syst_field_bare_string", "systematics", syst(drift_field={"sigma": "31"}),
    "systematics.parameters.drift_field.sigma", "'31'", "unit")
bad("syst_field_wrong_unit", "systematics", syst(drift_field={"sigma": "31 us"}),
    "systematics.parameters.drift_field.sigma", "31 us", "V/cm")
bad("syst_g2_too_large", "systematics", syst(g2={"rel_sigma": 0.2}), "systematics.parameters.g2.rel_sigma", "0.2",
    "extraction efficiency")
bad("syst_nr_on_er_source", "systematics", syst(nr_light={"rel_sigma": 0.1, "sources": ["pp"]}),
    "systematics.parameters.nr_light.sources", "'pp'", "NR")
bad("syst_unknown_source", "systematics", syst(g1={"sigma": 0.002, "sources": ["Ar39"]}),
    "systematics.parameters.g1.sources", "'Ar39'", "signal")
bad("syst_empty_parameters", "systematics", syst(), "systematics.parameters", "non-empty")
bad("syst_interpolation_unknown", "systematics", {**syst(g1={"sigma": 0.002}), "systematics.interpolation": "code5"},
    "systematics.interpolation", "code5", "log_quartic")
bad("syst_interpolation_missing", "systematics", syst(g1={"sigma": 0.002}), "systematics.interpolation", "missing",
    drop=("systematics.interpolation",))
bad("syst_fraction_zero", "systematics", {**syst(g1={"sigma": 0.002}), "systematics.n_samples_fraction": 0},
    "systematics.n_samples_fraction", "0", "0 < n_samples_fraction")
bad("syst_fraction_too_few_events", "systematics",
    {**syst(g1={"sigma": 0.002}), "systematics.n_samples_fraction": 1e-5}, "systematics.n_samples_fraction",
    "1e-05", "at least 1000")
bad("syst_field_nest_map", "systematics", {**syst(drift_field={"sigma": "31 V/cm"}), "detector_overrides":
    {"base": "LZ_WS2022", "drift_field": "nest_map"}}, "systematics.parameters.drift_field", "nest_map",
    "uniform field")
good("legal_systematics_subset_of_sources", "legal", syst(g1={"sigma": 0.002, "sources": ["signal", "pp"]}))
stacked("legal_systematics_overlay", "legal", {"config.yaml": _full, "systematics.yaml": _SYS},
        ["config.yaml", "systematics.yaml"])
stacked("legal_quick_with_systematics_overlay", "legal",
        {"config.yaml": f"base: {REPO / 'config' / 'quick.yaml'}\nresults_dir: @DIR@/results\n", "systematics.yaml": _SYS},
        ["config.yaml", "systematics.yaml"])


# ------------------------------------------------------------------------------ observed data (issue 13)
bad("data_blind_without_data", "data", {"blind": False}, "blind", "False", "without data")
bad("data_path_missing", "data", {"data": {"format": "csv"}}, "data", "path")
bad("data_path_parent", "data", {"data": {"path": "../events.csv"}}, "data.path", "'../events.csv'", "'..'")
bad("data_path_option", "data", {"data": {"path": "-events.csv"}}, "data.path", "'-events.csv'", "'-'")
bad("data_path_suffix", "data", {"data": {"path": "events.txt"}}, "data.path", "'.txt'", "data.format")
bad("data_path_shell", "data", {"data": {"path": f"ev;touch {MARKER};.csv"}}, "data.path", MARKER)
bad("data_unknown_key", "data", {"data": {"path": "events.csv", "column": {"cS1": "s1"}}}, "data.column",
    "unknown key")
bad("data_unit_phe", "data", {"data": {"path": "events.csv", "units": {"cS1": "phe"}}}, "data.units.cS1", "phe",
    "phd")
bad("data_same_column", "data", {"data": {"path": "events.csv", "columns": {"cS1": "s", "cS2": "s"}}},
    "data.columns", "'s'", "two columns")
bad("data_blind_string", "data", {"data": {"path": "events.csv"}, "blind": "no"}, "blind", "'no'", "boolean")
bad("data_unblinded_unbinned_discovery_toys", "data", {"data": {"path": "events.csv"}, "blind": False,
                                                        "stats": {"likelihood": "unbinned",
                                                                  "discovery_from_toys": {"n_bonly": 1000, "n_sb": 100}}},
    "stats.discovery_from_toys", "unbinned", "None")
good("legal_data_unblinded_unbinned", "legal", {"data": {"path": "tests/data/quick_observed_events.csv"},
                                                "blind": False, "stats": {"likelihood": "unbinned"}})
good("legal_data_blind_by_default", "legal", {"data": {"path": "tests/data/quick_observed_events.csv"}})


# -------------------------------------------------------------------- science runs (issue 13 item 5)
def two_runs(correlated: Any = ("pp", "B8"), **top: Any) -> dict[str, Any]:
    """The default analysis as two runs ``a`` and ``b`` (its detector, exposure and backgrounds each)."""
    raw = _edited({})
    run = {k: raw.pop(k) for k in ("detector", "detector_overrides", "exposure", "backgrounds")}
    raw["runs"] = {"a": copy.deepcopy(run), "b": copy.deepcopy(run)}
    if correlated is not None:
        raw["correlated"] = list(correlated) if isinstance(correlated, tuple) else correlated
    raw.update(top)
    return raw


def runs_case(name: str, raw: dict[str, Any], *expect: str) -> None:
    CASES.append(Case(name, "runs" if expect else "legal", {"config.yaml": _dump(raw)}, ["config.yaml"],
                      list(expect) if expect else None))


_unbinned_runs = two_runs()
_unbinned_runs["stats"] = {**_unbinned_runs.get("stats", {}), "likelihood": "unbinned"}
runs_case("runs_unbinned", _unbinned_runs, "stats.likelihood", "unbinned", "binned")
_one = two_runs()
del _one["runs"]["b"]
runs_case("runs_one_run", _one, "runs", "1 run(s)", "at least 2")
_bad_name = two_runs()
_bad_name["runs"]["ws-2022"] = _bad_name["runs"].pop("b")
runs_case("runs_bad_name", _bad_name, "runs.ws-2022", "identifier")
_digit_name = two_runs()
_digit_name["runs"]["2022"] = _digit_name["runs"].pop("b")
runs_case("runs_name_starts_with_digit", _digit_name, "runs.2022", "identifier")
runs_case("runs_without_correlated", two_runs(correlated=None), "correlated", "missing", "nothing is shared")
runs_case("runs_correlated_without_runs", _edited({"correlated": ["pp"]}), "correlated", "without runs")
runs_case("runs_correlated_unknown", two_runs(correlated=("pp", "Ar39")), "correlated", "'Ar39'", "no run")
_widths = two_runs()
_widths["runs"]["b"]["backgrounds"]["B8"]["rel_unc"] = 0.1
runs_case("runs_correlated_widths_differ", _widths, "correlated", "'B8'", "runs.b.backgrounds.B8.rel_unc 0.1",
          "one rel_unc")
runs_case("runs_correlated_string", two_runs(correlated="pp"), "correlated", "'pp'", "array")
runs_case("runs_top_level_exposure", two_runs(exposure={"fiducial_mass": "5.6 t", "live_time": "1000 d"}),
          "exposure", "top level", "runs.<run>.exposure")
runs_case("runs_top_level_detector", two_runs(detector=DETECTOR), "detector", "top level")
_unknown = two_runs()
_unknown["runs"]["a"]["live_time"] = "10 d"
runs_case("runs_unknown_key", _unknown, "runs.a.live_time", "unknown key")
_missing = two_runs()
del _missing["runs"]["b"]["exposure"]
runs_case("runs_missing_exposure", _missing, "runs.b.exposure", "missing")
_bad_unit = two_runs()
_bad_unit["runs"]["b"]["exposure"]["live_time"] = "10 kg"
runs_case("runs_bad_live_time_unit", _bad_unit, "runs.b.exposure.live_time", "10 kg")
_bad_override = two_runs()
_bad_override["runs"]["b"]["detector_overrides"] = {"nest": {"g1": 2.0}}
runs_case("runs_bad_detector_override", _bad_override, "runs.b.detector_overrides.nest.g1", "2")
runs_case("runs_with_studies", two_runs(**g1_study([0.1])), "studies", "runs")
_data = two_runs()
_data["runs"]["a"]["data"] = {"path": "tests/data/quick_observed_events.csv"}
runs_case("runs_data_some_runs", _data, "runs.b.data", "missing while run(s) a have one")
runs_case("runs_top_level_data", two_runs(data={"path": "tests/data/quick_observed_events.csv"}), "data",
          "top level with runs", "runs.<run>.data")
_toys = copy.deepcopy(_data)
_toys["runs"]["b"]["data"] = {"path": "tests/data/quick_observed_events.csv", "discovery_toys": 500}
runs_case("runs_data_discovery_toys_differ", _toys, "data.discovery_toys", "runs.b.data.discovery_toys 500",
          "one number")
_both = copy.deepcopy(_data)
_both["runs"]["b"]["data"] = {"path": "tests/data/quick_observed_events.csv"}
runs_case("legal_two_runs_with_data", _both)
runs_case("runs_not_mapping", two_runs(runs=["a", "b"]), "runs", "object")
runs_case("legal_two_runs", two_runs())
runs_case("legal_two_runs_share_none", two_runs(correlated=()))
_other_detector = two_runs()
_other_detector["runs"]["b"]["detector_overrides"] = {"nest": {"g1": 0.1}}
_other_detector["runs"]["b"]["exposure"]["live_time"] = "200 d"
runs_case("legal_two_runs_different_detectors", _other_detector)


def write_corpus(directory: Path) -> list[tuple[Case, list[Path]]]:
    """Write every case into ``directory/<case name>/``; returns (case, stack paths)."""
    return [(case, case.write(directory / case.name)) for case in CASES]


if __name__ == "__main__":  # pragma: no cover
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "config_corpus")
    written = write_corpus(out)
    print(f"{len(written)} cases ({sum(c.expect is not None for c, _ in written)} malformed) -> {out}")
