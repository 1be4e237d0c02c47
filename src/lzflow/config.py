"""Load, validate and resolve an lzflow analysis configuration.

Validation happens in three layers, all before any job runs:

1. JSON schema (``workflow/schemas/config.schema.yaml``, shipped in the package as
   ``lzflow/data/config.schema.yaml``): types, required keys, ranges.
2. Units: every dimensioned value is parsed with its unit (:mod:`lzflow.units`).
3. Cross-field checks: ordered ranges, unique masses, fiducial volume inside the TPC, ...

Every failure is a :class:`ConfigError` with a one-line message ``<key>: <value> ... expected ...``.
"""

from __future__ import annotations

import copy
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from .detector import DetectorError, resolve_detector
from .units import UnitError, to_canonical

__all__ = [
    "ConfigError",
    "load_yaml",
    "load_config",
    "validate_schema",
    "resolve_config",
    "deep_merge",
    "mass_label",
    "DAYS_PER_YEAR",
]

#: Statistical procedure defaults: 90 % CL, CLs+b with a power constraint at -1 sigma (LZ).
STATS_DEFAULTS: dict[str, Any] = {
    "cl": 0.90,
    "method": "CLs+b",
    "power_threshold": 0.1587,
    "test_statistic": "qtilde",
    "seed": 1,
    "poi_grid": {"n_points": 20, "min_factor": 0.02, "max_factor": 3.5},
    "toys_per_poi": 2000,
    "toys_bonly": 4000,
    "jobs_per_poi": 2,
    "discovery_sigma": 3.0,
    "likelihood": "binned",
    "interpolation_order": 0,
    "interpolation_floor": 1e-3,
    "template_rebin": 1,
}

#: Julian year, as pint and wimprates use it (t·yr exposure = t × days / 365.25).
DAYS_PER_YEAR = 365.25


class ConfigError(ValueError):
    """A user mistake in a configuration file: one line naming key, value and expectation."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or broken YAML is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level is {type(data).__name__}; expected a mapping")
    return data


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    text = resources.files("lzflow").joinpath("data/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _format_path(path) -> str:
    parts = []
    for item in path:
        parts.append(f"[{item}]" if isinstance(item, int) else f".{item}")
    return "".join(parts).lstrip(".") or "<top level>"


def _expectation(error) -> str:
    validator, value = error.validator, error.validator_value
    if validator == "type":
        return f"a value of type {value}"
    if validator == "enum":
        return f"one of {value}"
    if validator == "minimum":
        return f">= {value}"
    if validator == "exclusiveMinimum":
        return f"> {value}"
    if validator == "maximum":
        return f"<= {value}"
    if validator in ("minItems", "maxItems"):
        return f"{validator} {value}"
    if validator == "pattern":
        return f"a string matching {value}"
    return error.message


def validate_schema(config: Mapping[str, Any]) -> None:
    """Validate against the JSON schema; raise ConfigError (one line) on the first problem."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if not errors:
        return
    error = errors[0]
    where = _format_path(error.absolute_path)
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        prefix = f"{where}." if error.absolute_path else ""
        raise ConfigError(f"{prefix}{missing[0]}: missing; this key is required")
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed and not _matches_pattern(error.schema, k)]
        prefix = f"{where}." if error.absolute_path else ""
        hint = f"expected one of {', '.join(allowed)}" if allowed else "not allowed here"
        raise ConfigError(f"{prefix}{extra[0]}: unknown key; {hint}")
    raise ConfigError(f"{where}: {error.instance!r} is invalid; expected {_expectation(error)}")


def _matches_pattern(schema: Mapping[str, Any], key: str) -> bool:
    import re

    return any(re.search(p, key) for p in schema.get("patternProperties", {}))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, the rest replaces)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def mass_label(mass_GeV: float) -> str:
    """Canonical text of a mass for file names: ``40`` → ``"40"``, ``16.2222`` → ``"16.2222"``."""
    return f"{mass_GeV:g}" if abs(mass_GeV - float(f"{mass_GeV:g}")) < 1e-9 else repr(float(mass_GeV))


def _ordered_axis(axis: Mapping[str, Any], key: str) -> None:
    if not axis["min"] < axis["max"]:
        raise ConfigError(f"{key}: min {axis['min']!r} >= max {axis['max']!r}; expected min < max")


def resolve_config(config: Mapping[str, Any], base_dir: str | Path = ".") -> dict[str, Any]:
    """Validate a raw config mapping and return the resolved analysis (numbers in canonical units).

    The resolved mapping holds ``tag``, ``results_dir``, ``detector`` (the resolved detector
    dictionary, see :func:`lzflow.detector.resolve_detector`), ``exposure`` (t, days, t·yr),
    ``signal`` (masses, σ_ref in cm², halo in GeV/cm³ and km/s), ``backgrounds`` and ``pdf``.
    """
    per_mass_keys = ((config.get("stats") or {}).get("per_mass") or {}) if isinstance(config.get("stats"), Mapping) else {}
    if per_mass_keys and any(not isinstance(k, str) for k in per_mass_keys):
        config = deep_merge(config, {})
        config["stats"]["per_mass"] = {(mass_label(float(k)) if isinstance(k, (int, float)) else k): v
                                       for k, v in per_mass_keys.items()}
    validate_schema(config)
    try:
        exposure = {
            "fiducial_mass_t": to_canonical(config["exposure"]["fiducial_mass"], "exposure.fiducial_mass", "t"),
            "live_time_days": to_canonical(config["exposure"]["live_time"], "exposure.live_time", "day"),
        }
        sigma_ref = to_canonical(config["signal"]["sigma_ref"], "signal.sigma_ref", "cm**2")
        halo_raw = config["signal"].get("halo", {})
        halo = {
            "rho_GeV_cm3": to_canonical(halo_raw.get("rho", "0.3 GeV/cm**3"), "signal.halo.rho", "GeV/cm**3"),
            "v0_km_s": to_canonical(halo_raw.get("v0", "238 km/s"), "signal.halo.v0", "km/s"),
            "vesc_km_s": to_canonical(halo_raw.get("vesc", "544 km/s"), "signal.halo.vesc", "km/s"),
        }
    except UnitError as err:
        raise ConfigError(str(err)) from None
    for key, value in exposure.items():
        if not value > 0:
            raise ConfigError(f"exposure.{key.rsplit('_', 1)[0]}: {value!r} must be > 0")
    exposure["exposure_t_yr"] = exposure["fiducial_mass_t"] * exposure["live_time_days"] / DAYS_PER_YEAR
    quoted = config["exposure"].get("backgrounds_quoted_for")
    try:
        quoted_t_yr = (to_canonical(quoted, "exposure.backgrounds_quoted_for", "t*yr") if quoted is not None
                       else exposure["exposure_t_yr"])
    except UnitError as err:
        raise ConfigError(str(err)) from None
    if not quoted_t_yr > 0:
        raise ConfigError(f"exposure.backgrounds_quoted_for: {quoted!r} must be > 0")
    # background counts are quoted for this exposure; they scale with the analysed one (factor exactly 1
    # when not given)
    background_scale = exposure["exposure_t_yr"] / quoted_t_yr if quoted is not None else 1.0
    exposure["backgrounds_quoted_for_t_yr"] = quoted_t_yr
    if not sigma_ref > 0:
        raise ConfigError(f"signal.sigma_ref: {config['signal']['sigma_ref']!r} must be > 0")
    for key, value in halo.items():
        if not value > 0:
            raise ConfigError(f"signal.halo.{key.split('_')[0]}: {value!r} must be > 0")
    if not halo["vesc_km_s"] > halo["v0_km_s"]:
        raise ConfigError(f"signal.halo.vesc: {halo['vesc_km_s']} km/s; expected vesc > v0 ({halo['v0_km_s']} km/s)")

    masses = [float(m) for m in config["signal"]["masses_GeV"]]
    labels = [mass_label(m) for m in masses]
    if len(set(labels)) != len(labels):
        dup = next(l for l in labels if labels.count(l) > 1)
        raise ConfigError(f"signal.masses_GeV: {dup} appears twice; expected unique masses")

    backgrounds = {}
    for name, entry in sorted(config["backgrounds"].items()):
        window = entry.get("window_keV")
        if window is not None and not window[0] < window[1]:
            raise ConfigError(f"backgrounds.{name}.window_keV: {window!r}; expected [low, high] with low < high")
        if not math.isfinite(entry["counts"]):
            raise ConfigError(f"backgrounds.{name}.counts: {entry['counts']!r}; expected a finite number")
        backgrounds[name] = {
            "counts": float(entry["counts"]) * background_scale,
            "window_keV": [float(w) for w in window] if window is not None else None,
            "rel_unc": float(entry["rel_unc"]),
        }

    pdf = copy.deepcopy(dict(config["pdf"]))
    pdf.setdefault("workers", 2)
    _ordered_axis(pdf["cs1_phd"], "pdf.cs1_phd")
    _ordered_axis(pdf["log10_cs2_phd"], "pdf.log10_cs2_phd")
    if pdf["cs1_phd"]["min"] < 0:
        raise ConfigError(f"pdf.cs1_phd.min: {pdf['cs1_phd']['min']!r} must be >= 0")

    stats = deep_merge(STATS_DEFAULTS, {k: v for k, v in (config.get("stats") or {}).items() if k != "per_mass"})
    per_mass_raw = (config.get("stats") or {}).get("per_mass") or {}
    unknown = [k for k in per_mass_raw if k not in labels]
    if unknown:
        raise ConfigError(f"stats.per_mass.{unknown[0]}: not a mass of signal.masses_GeV; expected one of "
                          f"{', '.join(labels)}")
    per_mass = {}
    for label in labels:
        entry = deep_merge({k: stats[k] for k in ("poi_grid", "toys_per_poi", "toys_bonly", "jobs_per_poi")},
                           per_mass_raw.get(label, {}))
        grid = entry["poi_grid"]
        if not grid["min_factor"] < grid["max_factor"]:
            raise ConfigError(f"stats.poi_grid: min_factor {grid['min_factor']} >= max_factor {grid['max_factor']} "
                              f"(mass {label}); expected min_factor < max_factor")
        for key in ("toys_per_poi", "toys_bonly"):
            if entry["jobs_per_poi"] > entry[key]:
                raise ConfigError(f"stats.jobs_per_poi: {entry['jobs_per_poi']} exceeds {key} {entry[key]} "
                                  f"(mass {label}); expected at most one job per toy")
        per_mass[label] = entry
    stats["per_mass"] = per_mass
    if stats["likelihood"] == "unbinned":
        for axis in ("cs1_phd", "log10_cs2_phd"):
            if pdf[axis]["bins"] % stats["template_rebin"]:
                raise ConfigError(f"stats.template_rebin: {stats['template_rebin']} does not divide pdf.{axis}.bins "
                                  f"{pdf[axis]['bins']}; expected a divisor of both axes' bin counts")

    detector_path = Path(base_dir) / config["detector"]
    detector_raw = deep_merge(load_yaml(detector_path), config.get("detector_overrides") or {})
    try:
        detector = resolve_detector(detector_raw, prefix="detector")
    except (DetectorError, UnitError) as err:
        raise ConfigError(f"{err} (in {config['detector']})") from None

    return {
        "tag": config["tag"],
        "results_dir": config.get("results_dir", "results"),
        "detector_file": str(config["detector"]),
        "detector": detector,
        "exposure": exposure,
        "signal": {"masses_GeV": masses, "mass_labels": labels, "sigma_ref_cm2": sigma_ref, "halo": halo},
        "backgrounds": backgrounds,
        "pdf": pdf,
        "stats": stats,
    }


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Load a config YAML (plus optional overrides) and resolve it; paths are relative to the CWD."""
    raw = load_yaml(path)
    if overrides:
        raw = deep_merge(raw, overrides)
    return resolve_config(raw)
