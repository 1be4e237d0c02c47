"""Load, validate and resolve an lzflow analysis configuration.

Loading (:func:`load_config_stack`): each file is read defensively (:mod:`lzflow.safeyaml`: size,
encoding, depth, alias expansion, duplicate keys); a file may start from another with a top-level
``base: <path>`` (relative to the file that names it; ``detector:`` paths are relative to the
working directory); later files overlay earlier ones key by key (``lzflow validate --config A B``
and ``snakemake --configfile A B`` stack them the same way). Nothing else is inherited: a config that lacks a required key is an
error, never silently completed from the default configuration.

Validation happens in four layers, all before any job runs:

1. Every number is finite (YAML's ``.nan``/``.inf`` pass a JSON schema's range checks).
2. JSON schema (``workflow/schemas/config.schema.yaml``, shipped in the package as
   ``lzflow/data/config.schema.yaml``): types, required keys, unknown keys (with a "did you mean"),
   ranges and documented upper bounds (``docs/configuration.md``).
3. Units: every dimensioned value is parsed with its unit (:mod:`lzflow.units`) and bounded.
4. Cross-field checks: ordered ranges, unique masses and run-number keys, fiducial volume inside
   the TPC, safe output paths, per-mass overrides for masses in the list, DAG size.

Every failure is a :class:`ConfigError` with a one-line message ``<key>: <value> ... expected ...``.
"""

from __future__ import annotations

import copy
import math
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

from .detector import DetectorError, check_detector_keys, resolve_detector
from .exceptions import ConfigError, one_line, unknown_key_message
from .stats.bands import CONFIG_POWER_THRESHOLD
from .physics_config import check_charge_scaled_yields, check_interaction, check_nest_yields, check_selection_efficiency, resolve_background, resolve_halo
from .dataconfig import resolve_data
from .construction_stage import check_stats
from .precision import check_precision
from .mcstatconfig import check_mc_stat
from .searchconfig import check_fit_search
from .safeyaml import parse_yaml, read_yaml
from .units import UnitError, to_canonical

__all__ = [
    "ConfigError", "load_yaml",
    "load_config_file", "load_config_stack",
    "load_config",
    "check_finite",
    "validate_schema",
    "validate_raw",
    "resolve_config",
    "deep_merge",
    "mass_label",
    "first_duplicate",
    "DAYS_PER_YEAR",
    "STATS_DEFAULTS",
    "DEFAULT_CONFIG",
]

#: The configuration ``snakemake`` runs when no ``--configfile`` is given.
DEFAULT_CONFIG = "config/config.yaml"

#: Statistical procedure defaults: 90 % CL, CLs+b with a power constraint at -1 sigma (LZ).
STATS_DEFAULTS: dict[str, Any] = {
    "cl": 0.90,
    "method": "CLs+b",
    "power_threshold": CONFIG_POWER_THRESHOLD,
    "test_statistic": "qtilde",
    "seed": 1,
    "poi_grid": {"n_points": 20, "min_factor": 0.02, "max_factor": 3.5},
    "toys_per_poi": 2000,
    "toys_bonly": 4000,
    "jobs_per_poi": 2,
    "discovery_sigma": 3.0,
    "construction": "one_sided", "discovery_from_toys": None,  # lzflow.construction_stage
    "likelihood": "binned", "target_precision": None, "max_toys_per_poi": None,  # lzflow.precision
    "interpolation_order": 0,
    "interpolation_floor": 1e-3,
    "template_rebin": 1, "shape_fit_search": "multistart",  # lzflow.searchconfig
}

#: Julian year, as pint and wimprates use it (t·yr exposure = t × days / 365.25).
DAYS_PER_YEAR = 365.25

#: Bounds of dimensioned values, (low, high, unit), low exclusive, high inclusive; the reasons are
#: in docs/configuration.md. Values outside are refused before any job runs.
QUANTITY_BOUNDS: dict[str, tuple[float, float, str]] = {
    "exposure.fiducial_mass": (0.0, 1000.0, "t"),
    "exposure.live_time": (0.0, 36525.0, "day"),
    "exposure.backgrounds_quoted_for": (0.0, 1e5, "t*yr"),
    "signal.sigma_ref": (1e-60, 1e-30, "cm**2"),
    "signal.halo.rho": (0.0, 100.0, "GeV/cm**3"),
    "signal.halo.v0": (0.0, 2000.0, "km/s"),
    "signal.halo.vesc": (0.0, 3000.0, "km/s"),
    "signal.halo.v_earth": (0.0, 2000.0, "km/s"),
}
#: Most toy jobs one configuration may ask for (Snakemake needs minutes to build a larger DAG).
MAX_TOY_JOBS = 100_000
#: Most toys one mass may ask for (S+B over the grid plus B-only): bounds merge memory (~1.6 GB).
MAX_TOYS_PER_MASS = 20_000_000
#: Most analysis bins (cS1 × log10 cS2): bounds the toy fitter's memory per block.
MAX_BINS = 40_000
#: Deepest chain of ``base:`` files.
MAX_BASE_DEPTH = 8
#: Mass labels must match the workflow's ``{mass}`` wildcard.
MASS_LABEL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
#: Directory names the results tree uses for its own subtrees.
RESERVED_TAGS = ("logs", "benchmarks")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping defensively (:func:`lzflow.safeyaml.read_yaml`); anything else is a ConfigError."""
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: empty file; expected a YAML mapping")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level is a {type(data).__name__}; expected a mapping")
    return data


def load_config_file(path: str | Path, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """One config file with its ``base:`` chain resolved (the file overlays its base, key by key)."""
    data = load_yaml(path)
    if "base" not in data:
        return data
    base = data.pop("base")
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: base: {base!r}; expected the path of the config file this one starts from")
    chain = (*_chain, str(Path(path).resolve()))
    base_path = Path(path).parent / base  # relative to the file that names it
    if str(base_path.resolve()) in chain:
        raise ConfigError(f"{path}: base: {base!r} is a cycle ({' -> '.join(chain)} -> {base}); expected a chain "
                          f"of files that ends")
    if len(chain) > MAX_BASE_DEPTH:
        raise ConfigError(f"{path}: base: {base!r}; a chain of more than {MAX_BASE_DEPTH} base files; expected "
                          f"a shorter chain")
    return deep_merge(load_config_file(base_path, chain), data)


def load_config_stack(paths: Sequence[str | Path], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The raw configuration of files ``paths`` stacked in order (each with its ``base:``), then
    ``overrides`` (e.g. Snakemake's ``--config key=value``)."""
    if not paths:
        raise ConfigError("no configuration file given; expected at least one, e.g. config/config.yaml")
    raw: dict[str, Any] = {}
    for path in paths:
        raw = deep_merge(raw, load_config_file(path))
    if overrides:
        raw = deep_merge(raw, overrides)
    return raw


def load_config(path: str | Path | Sequence[str | Path], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Load config file(s) (plus optional overrides) and resolve them; paths are relative to the CWD."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return resolve_config(load_config_stack(paths, overrides))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, the rest replaces)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _key_path(path: Sequence[Any]) -> str:
    parts = []
    for item in path:
        parts.append(f"[{item}]" if isinstance(item, int) else f".{item}")
    return "".join(parts).lstrip(".") or "<top level>"


def check_finite(node: Any, path: tuple[Any, ...] = ()) -> None:
    """Refuse NaN and ±inf anywhere (YAML's ``.nan``/``.inf``): no config value is one; NaN passes every schema range check."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{_key_path(path)}: {node!r} is not finite; expected a finite number")
    if isinstance(node, Mapping):
        for key, value in node.items():
            check_finite(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_finite(value, (*path, i))


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    text = resources.files("lzflow").joinpath("data/config.schema.yaml").read_text()
    return parse_yaml(text, "config.schema.yaml")


def _range_text(schema: Mapping[str, Any], name: str = "value") -> str | None:
    """'0 < cl < 1', '10 <= toys_per_poi <= 1000000', ... from a schema's numeric bounds."""
    lo = [f"{schema['minimum']} <=" if "minimum" in schema else None,
          f"{schema['exclusiveMinimum']} <" if "exclusiveMinimum" in schema else None]
    hi = [f"<= {schema['maximum']}" if "maximum" in schema else None,
          f"< {schema['exclusiveMaximum']}" if "exclusiveMaximum" in schema else None]
    lo_text = next((x for x in lo if x), None)
    hi_text = next((x for x in hi if x), None)
    if not lo_text and not hi_text:
        return None
    return " ".join(x for x in (lo_text, name, hi_text) if x)


def _expectation(error) -> str:
    validator, value, schema = error.validator, error.validator_value, error.schema
    if validator == "type":
        kinds = value if isinstance(value, list) else [value]
        return "a value of type " + " or ".join(str(k) for k in kinds)
    if validator == "enum":
        return f"one of {', '.join(map(str, value))}"
    if validator in _RANGE_VALIDATORS[:4]:
        name = next((str(p) for p in reversed(error.absolute_path) if isinstance(p, str)), "value")
        return _range_text(schema, name) or one_line(error.message)
    if validator in _EXPECTED:
        return _EXPECTED[validator].format(value)
    return one_line(error.message)


_EXPECTED = {"minItems": "at least {} item(s)", "maxItems": "at most {} items", "minLength": "at least {} characters",
             "maxLength": "at most {} characters", "pattern": "a string matching {}"}
_RANGE_VALIDATORS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "minItems", "maxItems",
                     "minLength", "maxLength")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@lru_cache(maxsize=1)
def _validator_class():
    """Draft 2020-12, except that an integer must be written as one (JSON schema would take 1.5e6
    for an integer; a count written as a float is a typo worth a line)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    return jsonschema.validators.extend(base, type_checker=checker)


def validate_schema(config: Mapping[str, Any]) -> None:
    """Validate against the JSON schema; raise ConfigError (one line) on the first problem."""
    validator = _validator_class()(_schema())
    errors = sorted(validator.iter_errors(config),
                    key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)), e.validator))
    if not errors:
        return
    error = errors[0]
    where = _key_path(error.absolute_path)
    prefix = f"{where}." if error.absolute_path else ""
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        raise ConfigError(f"{prefix}{missing[0]}: missing; this key is required (nothing is filled in from "
                          f"other configs unless you say so with base: or a second --configfile)")
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        raise ConfigError(unknown_key_message(where if error.absolute_path else "", extra[0], allowed))
    if "propertyNames" in error.schema_path:
        raise ConfigError(f"{prefix}{error.instance!r}: bad name; expected letters, digits, '_', '.', '-', "
                          f"starting with a letter, digit or '_' (it becomes a directory name)")
    if error.validator == "pattern" and where in ("tag", "results_dir"):
        raise ConfigError(f"{where}: {_shown(error.instance)} is not a safe path"
                          f"{' component' if where == 'tag' else ''}; expected letters, digits, '_', '.', '-'"
                          f"{', /' if where == 'results_dir' else ''} (not starting with '.' or '-')")
    problem = "is out of range" if error.validator in _RANGE_VALIDATORS else "is invalid"
    raise ConfigError(f"{where}: {_shown(error.instance)} {problem}; expected {_expectation(error)}")


def validate_raw(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """Finite numbers and the schema, on a raw (stacked) configuration; returns it with
    ``stats.per_mass`` keys as mass labels (YAML reads ``40:`` as a number)."""
    check_finite(config)
    stats_raw = config.get("stats")
    per_mass_keys = stats_raw.get("per_mass") if isinstance(stats_raw, Mapping) else None
    if isinstance(per_mass_keys, Mapping) and any(not isinstance(k, str) for k in per_mass_keys):
        config = {**config, "stats": {**stats_raw, "per_mass": {
            (mass_label(float(k)) if isinstance(k, (int, float)) and not isinstance(k, bool) else str(k)): v
            for k, v in per_mass_keys.items()}}}
    validate_schema(config)
    return config


def _quantity(raw: Any, key: str, unit: str) -> float:
    """A dimensioned config value in ``unit``, within :data:`QUANTITY_BOUNDS` where listed."""
    try:
        value = to_canonical(raw, key, unit)
    except UnitError as err:
        raise ConfigError(str(err)) from None
    if not math.isfinite(value):
        raise ConfigError(f"{key}: {raw!r} is not finite; expected a finite quantity in {unit}")
    if key in QUANTITY_BOUNDS:
        lo, hi, _ = QUANTITY_BOUNDS[key]
        if not lo < value <= hi:
            raise ConfigError(f"{key}: {raw!r} is out of range; expected {lo:g} {unit} < value <= {hi:g} {unit}")
    return value


def _check_results_dir(value: str) -> None:
    parts = PurePosixPath(value).parts
    if ".." in parts:
        raise ConfigError(f"results_dir: {value!r} contains '..'; expected a path that does not climb out of its parent")
    if value.startswith("-"):
        raise ConfigError(f"results_dir: {value!r} starts with '-'; expected a directory name")
    if all(p in ("/", ".") for p in parts):
        raise ConfigError(f"results_dir: {value!r} is the filesystem root or the working directory; expected a "
                          f"directory of its own for lzflow's outputs, e.g. results")


def first_duplicate(items: Sequence[Any]) -> Any | None:
    """The first item that appears more than once in ``items`` (by position of its first copy), or None."""
    return next((item for item in items if items.count(item) > 1), None)


def mass_label(mass_GeV: float) -> str:
    """Canonical text of a mass for file names: ``40`` → ``"40"``, ``16.2222`` → ``"16.2222"``."""
    return f"{mass_GeV:g}" if abs(mass_GeV - float(f"{mass_GeV:g}")) < 1e-9 else repr(float(mass_GeV))


def _masses(raw_masses: Sequence[float]) -> tuple[list[float], list[str]]:
    from .masskey import mass_key

    masses = [float(m) for m in raw_masses]
    labels = [mass_label(m) for m in masses]
    for m, label in zip(raw_masses, labels):
        if not MASS_LABEL.match(label):
            raise ConfigError(f"signal.masses_GeV: {m!r} has no plain decimal name ({label!r}); expected a mass "
                              f"written with at most a few decimals, e.g. 16.2222")
    dup = first_duplicate(labels)
    if dup is not None:
        raise ConfigError(f"signal.masses_GeV: {dup} appears twice; expected unique masses")
    keys = [mass_key(m) for m in masses]
    if len(set(keys)) != len(keys):
        a, b = [labels[i] for i, k in enumerate(keys) if keys.count(k) > 1][:2]
        raise ConfigError(f"signal.masses_GeV: {a} and {b} share a seed/run-number key (mass rounded to 0.1 MeV); "
                          f"expected masses at least 0.0001 GeV apart")
    return masses, labels


def _ordered_axis(axis: Mapping[str, Any], key: str) -> None:
    if not axis["min"] < axis["max"]:
        raise ConfigError(f"{key}: min {axis['min']!r} >= max {axis['max']!r}; expected min < max")


def _background(name: str, entry: Mapping[str, Any], scale: float) -> dict[str, Any]:
    from .spectra.backgrounds import background_spectrum

    window = entry.get("window_keV")
    if window is not None and not window[0] < window[1]:
        raise ConfigError(f"backgrounds.{name}.window_keV: {window!r}; expected [low, high] with low < high")
    try:  # the shape must have a rate in the window it is normalised in (else the PDF job divides by 0)
        background_spectrum(name, [1.0], 1.0, tuple(window) if window is not None else None)
    except ValueError as err:
        raise ConfigError(f"backgrounds.{name}.window_keV: {window!r}: {one_line(err)}") from None
    return {"counts": float(entry["counts"]) * scale,
            "window_keV": [float(w) for w in window] if window is not None else None,
            "rel_unc": float(entry["rel_unc"]), "nest_yields": check_nest_yields(name, entry["nest_yields"])}


def _stats(config: Mapping[str, Any], labels: list[str], pdf: Mapping[str, Any]) -> dict[str, Any]:
    stats = deep_merge(STATS_DEFAULTS, {k: v for k, v in (config.get("stats") or {}).items() if k != "per_mass"})
    per_mass_raw = (config.get("stats") or {}).get("per_mass") or {}
    unknown = [k for k in per_mass_raw if k not in labels]
    if unknown:
        raise ConfigError(f"stats.per_mass.{unknown[0]}: not a mass of signal.masses_GeV; expected one of "
                          f"{', '.join(labels)}")
    per_mass = {}
    n_toy_jobs = 0
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
        n_toys = grid["n_points"] * entry["toys_per_poi"] + entry["toys_bonly"]
        if n_toys > MAX_TOYS_PER_MASS:
            raise ConfigError(f"stats.toys_per_poi: {entry['toys_per_poi']} toys at {grid['n_points']} POI points + "
                              f"{entry['toys_bonly']} B-only = {n_toys:,} toys for mass {label}; expected at most "
                              f"{MAX_TOYS_PER_MASS:,} per mass")
        n_toy_jobs += (grid["n_points"] + 1) * entry["jobs_per_poi"]
        per_mass[label] = entry
    if n_toy_jobs > MAX_TOY_JOBS:
        raise ConfigError(f"stats.jobs_per_poi: {n_toy_jobs:,} toy jobs over {len(labels)} masses; expected at most "
                          f"{MAX_TOY_JOBS:,} (fewer jobs_per_poi, POI points or masses)")
    stats["per_mass"] = per_mass
    if stats["likelihood"] == "unbinned":
        for axis in ("cs1_phd", "log10_cs2_phd"):
            if pdf[axis]["bins"] % stats["template_rebin"]:
                raise ConfigError(f"stats.template_rebin: {stats['template_rebin']} does not divide pdf.{axis}.bins "
                                  f"{pdf[axis]['bins']}; expected a divisor of both axes' bin counts")
    return check_fit_search(config, check_mc_stat(config, check_precision(check_stats(stats))))


def _get(node: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _detector(config: Mapping[str, Any], base_dir: str | Path) -> dict[str, Any]:
    """The resolved detector: the detector file with ``detector_overrides`` applied. An error
    names where its key was written: ``detector_overrides.<key>`` or ``detector.<key> (in <file>)``."""
    file = config["detector"]
    overrides = config.get("detector_overrides") or {}
    try:
        check_detector_keys(overrides, "detector_overrides")
    except DetectorError as err:
        raise ConfigError(str(err)) from None
    try:
        return resolve_detector(deep_merge(load_yaml(Path(base_dir) / file), overrides), prefix="detector")
    except (DetectorError, UnitError) as err:
        message = str(err)
        key = message.split(":", 1)[0]
        if key.startswith("detector.") and _get(overrides, key.split(".")[1:]) is not None:
            raise ConfigError("detector_overrides." + message[len("detector."):]) from None
        raise ConfigError(f"{message} (in {file}{', with detector_overrides applied' if overrides else ''})") from None


def resolve_config(config: Mapping[str, Any], base_dir: str | Path = ".") -> dict[str, Any]:
    """Validate a raw config mapping and return the resolved analysis (numbers in canonical units).

    The resolved mapping holds ``tag``, ``results_dir``, ``detector`` (the resolved detector
    dictionary, see :func:`lzflow.detector.resolve_detector`), ``exposure`` (t, days, t·yr),
    ``signal`` (masses, σ_ref in cm², the coupling ``interaction`` (SI, SD_n or SD_p: σ_ref is then per
    nucleon, neutron or proton), halo in GeV/cm³ and km/s, :func:`lzflow.physics_config.resolve_halo`),
    ``backgrounds`` (with each one's NEST yield model), ``pdf``, ``stats`` (and ``data``, ``blind``: dataconfig).
    """
    config = validate_raw(config)
    if config["tag"] in RESERVED_TAGS:
        raise ConfigError(f"tag: {config['tag']!r} is the name of a results subtree; expected another name")
    results_dir = config.get("results_dir", "results")
    _check_results_dir(results_dir)

    ex = config["exposure"]
    exposure = {"fiducial_mass_t": _quantity(ex["fiducial_mass"], "exposure.fiducial_mass", "t"),
                "live_time_days": _quantity(ex["live_time"], "exposure.live_time", "day")}
    exposure["exposure_t_yr"] = exposure["fiducial_mass_t"] * exposure["live_time_days"] / DAYS_PER_YEAR
    quoted = ex.get("backgrounds_quoted_for")
    quoted_t_yr = (_quantity(quoted, "exposure.backgrounds_quoted_for", "t*yr") if quoted is not None
                   else exposure["exposure_t_yr"])
    # background counts are quoted for this exposure; they scale with the analysed one (factor exactly 1
    # when not given)
    background_scale = exposure["exposure_t_yr"] / quoted_t_yr if quoted is not None else 1.0
    exposure["backgrounds_quoted_for_t_yr"] = quoted_t_yr

    signal = config["signal"]
    sigma_ref = _quantity(signal["sigma_ref"], "signal.sigma_ref", "cm**2")
    halo = resolve_halo(signal["halo"], _quantity)  # preset or every value written out
    interaction = check_interaction(signal["interaction"])  # required: nothing filled in
    masses, labels = _masses(signal["masses_GeV"])

    backgrounds = {name: resolve_background(name, entry, background_scale, _background)  # accidentals: physics_config
                   for name, entry in sorted(config["backgrounds"].items())}

    pdf = copy.deepcopy(dict(config["pdf"]))
    pdf.setdefault("workers", 2)
    _ordered_axis(pdf["cs1_phd"], "pdf.cs1_phd")
    _ordered_axis(pdf["log10_cs2_phd"], "pdf.log10_cs2_phd")
    n_bins = pdf["cs1_phd"]["bins"] * pdf["log10_cs2_phd"]["bins"]
    if n_bins > MAX_BINS:
        raise ConfigError(f"pdf.cs1_phd.bins: {pdf['cs1_phd']['bins']} x {pdf['log10_cs2_phd']['bins']} = {n_bins:,} "
                          f"analysis bins; expected at most {MAX_BINS:,}")

    stats = _stats(config, labels, pdf)
    detector = check_charge_scaled_yields(_detector(config, base_dir), backgrounds)
    systematics = config.get("systematics")  # detector systematics (docs/configuration.md)
    if systematics is not None:  # (imported only then: NEST and the response package)
        from .response.variations import resolve_systematics
        resolved = resolve_systematics(systematics, detector, backgrounds, pdf["n_samples"])
        systematics = {**resolved, "interpolation": systematics["interpolation"]}  # the workspace's morphing

    return {
        "tag": config["tag"],
        "results_dir": results_dir,
        "reference": config.get("reference"),
        "detector_file": str(config["detector"]),
        "detector": detector,
        "exposure": exposure,
        "signal": {"masses_GeV": masses, "mass_labels": labels, "sigma_ref_cm2": sigma_ref,
                   "interaction": interaction, "halo": halo,  # selection_efficiency: optional, 1 recorded
                   "selection_efficiency": check_selection_efficiency(signal.get("selection_efficiency"))},
        "backgrounds": backgrounds,
        "pdf": pdf,
        "stats": stats,
        **({} if systematics is None else {"systematics": systematics}), **resolve_data(config, stats),
    }
