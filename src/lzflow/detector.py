"""Detector stage: resolve the detector YAML into every NEST parameter, build NEST detectors.

The detector description is NEST's ``VDetector`` parameter set (Szydagis et al., NEST v2,
https://github.com/NESTCollaboration/nest) plus the drift field, the NEST yield/width parameter
vectors and the fiducial volume. A detector either starts from scratch (``base: custom``, every
parameter given) or from one of the detectors shipped with nestpy (``LZ_WS2022``, ``LZ_WS2024``),
overridden key by key. The resolved parameters are written to ``detector.json`` together with
quantities derived by NEST itself (extraction efficiency, single-electron size, g2) and a hash
that later stages record so a PDF can always be traced to its detector.

Units follow NEST: lengths in mm (z = 0 at the cathode, increasing upwards), times in µs
(``coinWind`` in ns), gas field in kV/cm, drift field in V/cm.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from .exceptions import DetectorError, unknown_key_message
from .units import to_canonical

__all__ = [
    "NEST_PARAMETERS",
    "DETECTOR_KEYS",
    "check_detector_keys",
    "NEST_PRESETS",
    "DEFAULT_YIELDS",
    "DetectorError",
    "ER_SKEWNESS_MODEL",
    "NEST_MODEL_SENTINEL",
    "check_er_skewness",
    "resolve_detector",
    "build_nest_detector",
    "derived_quantities",
    "detector_hash",
]


@dataclass(frozen=True)
class NestParameter:
    """How one ``VDetector`` parameter is written in YAML.

    unit: canonical unit (pint syntax) or None for dimensionless numbers.
    unit_in_key: NEST's own name carries the unit (``eLife_us``), so a bare number is allowed.
    integer: the parameter is a count.
    """

    unit: str | None = None
    unit_in_key: bool = False
    integer: bool = False
    length: int = 0  # > 0: a vector of this many numbers (NEST's noise arrays)


#: Every scalar ``VDetector`` parameter nestpy exposes, with its unit.
NEST_PARAMETERS: dict[str, NestParameter] = {
    # S1
    "g1": NestParameter(),
    "sPEres": NestParameter(),
    "sPEthr": NestParameter(),
    "sPEeff": NestParameter(),
    "noiseBaseline": NestParameter(length=4),
    "noiseLinear": NestParameter(length=2),
    "noiseQuadratic": NestParameter(length=2),
    "P_dphe": NestParameter(),
    "coinWind": NestParameter(unit="ns"),
    "coinLevel": NestParameter(integer=True),
    "numPMTs": NestParameter(integer=True),
    # S2
    "g1_gas": NestParameter(),
    "s2Fano": NestParameter(),
    "s2_thr": NestParameter(),  # in phe, as in NEST
    "E_gas": NestParameter(unit="kV/cm"),
    "eLife_us": NestParameter(unit="us", unit_in_key=True),
    # thermodynamics
    "T_Kelvin": NestParameter(unit="K", unit_in_key=True),
    "p_bar": NestParameter(unit="bar", unit_in_key=True),
    "molarMass": NestParameter(unit="g/mol"),
    # drift time window and geometry
    **{name: NestParameter(unit="us") for name in ("dtCntr", "dt_min", "dt_max")},
    **{name: NestParameter(unit="mm") for name in ("radius", "radmax", "TopDrift", "anode", "gate", "cathode",
                                                   "PosResFlat", "PosResBase")},
}

#: nestpy's shipped detector classes that a config may start from.
NEST_PRESETS: tuple[str, ...] = ("LZ_WS2022", "LZ_WS2024")

#: NEST's default yield (NR 12, ER 10) and width (13) parameter vectors as nestpy 2.1.3 ships them.
DEFAULT_YIELDS: dict[str, list[float]] = {
    "er": [-1.0] * 10,
    "nr": [11.0, 1.1, 0.048, -0.0533, 12.6, 0.3, 2.0, 0.3, 2.0, 0.5, 1.0, 1.0],
    "widths": [0.4, 0.4, 0.04, 0.5, 0.19, 2.25, -0.001, 0.046452, 0.45, 0.205, -0.2, 0.0, 0.0],
}
_YIELD_LENGTHS = {"er": 10, "nr": 12, "widths": 13}
_FIDUCIAL_KEYS = ("r_max", "z_min", "z_max")
#: Highest drift field accepted (100 kV/cm, far above any liquid-xenon TPC; NEST's yield models are
#: fitted to data below ~4 kV/cm).
MAX_DRIFT_FIELD_V_CM = 1e5
#: Keys of a detector YAML (and of ``detector_overrides``), with the mappings nested under them.
DETECTOR_KEYS: dict[str, tuple[str, ...] | None] = {
    "name": None, "base": None, "nest": tuple(NEST_PARAMETERS), "drift_field": None,
    "fiducial": _FIDUCIAL_KEYS, "yields": tuple(_YIELD_LENGTHS), "s1_mode": None, "s2_mode": None,
    "er_skewness": None,
}
#: A key written one level too high is pointed to where it belongs (e.g. ``g1`` → ``nest.g1``).
_KEY_HINTS = {**{k: f"nest.{k}" for k in NEST_PARAMETERS}, **{k: f"fiducial.{k}" for k in _FIDUCIAL_KEYS},
              **{k: f"yields.{k}" for k in _YIELD_LENGTHS}}
#: ``er_skewness``'s default: NEST's own ER recombination-skewness model (what ``runNESTvec`` applies;
#: a number is NEST's fixed ``SkewnessER``, 0 = Gaussian; lzflow.response.skewness).
ER_SKEWNESS_MODEL = "nest"
#: ``GetQuanta``'s ``SkewnessER`` value meaning "use NEST's model" (src/NEST.cpp).
NEST_MODEL_SENTINEL = -999.0


def check_er_skewness(value: Any, where: str) -> str | float:
    """``"nest"`` or a finite number (NEST's ``SkewnessER``, 0 = Gaussian); anything else is refused
    with one line (an unquoted YAML ``off``/``no`` reads as false and is refused too)."""
    if value == ER_SKEWNESS_MODEL and isinstance(value, str):
        return ER_SKEWNESS_MODEL
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value == NEST_MODEL_SENTINEL:
        hint = " (YAML reads an unquoted off/no as false)" if isinstance(value, bool) else ""
        raise DetectorError(f"{where}: {value!r}{hint}; expected 'nest' (NEST's ER skewness model) or a finite "
                         "number, NEST's SkewnessER (0 = Gaussian recombination fluctuations)")
    return float(value)


_S1_MODES = ("Full", "Parametric", "Hybrid")
_S2_MODES = ("Full", "Parametric")


def check_detector_keys(raw: Any, prefix: str = "detector") -> None:
    """Refuse unknown keys (with a "did you mean") and non-mapping sections of a detector mapping."""
    if not isinstance(raw, Mapping):
        raise DetectorError(f"{prefix}: {raw!r} is not a mapping; expected keys such as nest, fiducial, drift_field")
    for key, value in raw.items():
        if key not in DETECTOR_KEYS:
            raise DetectorError(unknown_key_message(prefix, key, DETECTOR_KEYS, _KEY_HINTS))
        allowed = DETECTOR_KEYS[key]
        if allowed is None:
            continue
        if not isinstance(value, Mapping):
            raise DetectorError(f"{prefix}.{key}: {value!r} is not a mapping; expected keys {', '.join(allowed)}")
        for sub in value:
            if sub not in allowed:
                raise DetectorError(unknown_key_message(f"{prefix}.{key}", sub, allowed))


def _preset_instance(name: str):
    import nestpy

    return getattr(nestpy.detectors, name)()


def _preset_parameters(name: str) -> dict[str, Any]:
    """Read a preset's parameters. nestpy only exposes the first entry of the noise vectors; the
    others are recorded as ``None`` (= keep the preset's own value)."""
    detector = _preset_instance(name)
    params: dict[str, Any] = {}
    for key, spec in NEST_PARAMETERS.items():
        value = float(getattr(detector, key))
        params[key] = [value] + [None] * (spec.length - 1) if spec.length else value
    return params


def _preset_yields(name: str) -> dict[str, list[float]]:
    if name == "LZ_WS2024":
        detector = _preset_instance(name)
        return {
            "er": list(detector.er_parameters),
            "nr": list(detector.nr_parameters),
            "widths": list(detector.nr_er_width_parameters),
        }
    return {key: list(value) for key, value in DEFAULT_YIELDS.items()}


def _parse_nest(nest: Mapping[str, Any], prefix: str) -> dict[str, float]:
    parsed: dict[str, float] = {}
    for key, value in nest.items():
        spec = NEST_PARAMETERS.get(key)
        if spec is None:
            raise DetectorError(
                f"{prefix}.{key}: unknown NEST detector parameter; expected one of "
                f"{', '.join(NEST_PARAMETERS)}"
            )
        full_key = f"{prefix}.{key}"
        if spec.length:
            if not isinstance(value, list) or len(value) != spec.length or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
            ):
                raise DetectorError(f"{full_key}: {value!r} is not a list of {spec.length} numbers; expected e.g. "
                                    f"{[0.0] * spec.length}")
            parsed[key] = [float(v) for v in value]
            continue
        if spec.unit is None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DetectorError(f"{full_key}: {value!r} is not a number; expected a dimensionless number")
            number = float(value)
        else:
            number = to_canonical(value, full_key, spec.unit, unit_in_key=spec.unit_in_key)
        if not math.isfinite(number):
            raise DetectorError(f"{full_key}: {value!r} is not finite; expected a finite number")
        if spec.integer and number != int(number):
            raise DetectorError(f"{full_key}: {value!r} is not an integer; expected a whole number")
        parsed[key] = number
    return parsed


def _check_detector(det: dict[str, Any], prefix: str) -> None:
    """Cross-field physics checks; raise DetectorError naming key, value and expectation."""
    nest = det["nest"]
    fid = det["fiducial"]
    for key in ("g1", "g1_gas"):
        if not 0.0 < nest[key] <= 1.0:
            raise DetectorError(f"{prefix}.nest.{key}: {nest[key]!r} is out of range; expected 0 < {key} <= 1")
    for key in ("sPEeff", "P_dphe"):
        if not 0.0 <= nest[key] <= 1.0:
            raise DetectorError(f"{prefix}.nest.{key}: {nest[key]!r} is out of range; expected 0 <= {key} <= 1")
    for key in ("eLife_us", "E_gas", "T_Kelvin", "p_bar", "numPMTs", "radius", "radmax", "coinWind"):
        if nest[key] <= 0:
            raise DetectorError(f"{prefix}.nest.{key}: {nest[key]!r} must be > 0")
    if nest["coinLevel"] < 1 or nest["coinLevel"] > nest["numPMTs"]:
        raise DetectorError(
            f"{prefix}.nest.coinLevel: {nest['coinLevel']!r} is out of range; expected 1 <= coinLevel <= numPMTs "
            f"({nest['numPMTs']:g})"
        )
    if nest["radius"] > nest["radmax"]:
        raise DetectorError(
            f"{prefix}.nest.radius: {nest['radius']} mm exceeds radmax {nest['radmax']} mm; expected radius <= radmax"
        )
    if not nest["cathode"] < nest["gate"] <= nest["anode"]:
        raise DetectorError(
            f"{prefix}.nest.gate: {nest['gate']} mm; expected cathode ({nest['cathode']} mm) < gate <= anode "
            f"({nest['anode']} mm)"
        )
    if not nest["dt_min"] < nest["dt_max"]:
        raise DetectorError(
            f"{prefix}.nest.dt_min: {nest['dt_min']} us; expected dt_min < dt_max ({nest['dt_max']} us)"
        )
    if not 0.0 < fid["r_max_mm"] <= nest["radmax"]:
        raise DetectorError(
            f"{prefix}.fiducial.r_max: {fid['r_max_mm']} mm is outside the TPC; expected 0 < r_max <= radmax "
            f"({nest['radmax']} mm)"
        )
    if not nest["cathode"] <= fid["z_min_mm"] < fid["z_max_mm"] <= nest["gate"]:
        raise DetectorError(
            f"{prefix}.fiducial.z_max: z range [{fid['z_min_mm']}, {fid['z_max_mm']}] mm is not inside the drift "
            f"region; expected cathode ({nest['cathode']} mm) <= z_min < z_max <= gate ({nest['gate']} mm)"
        )
    field = det["drift_field_V_cm"]
    if field is not None and not 0 < field <= MAX_DRIFT_FIELD_V_CM:
        raise DetectorError(f"{prefix}.drift_field: {field:g} V/cm is out of range; expected 0 < field <= "
                            f"{MAX_DRIFT_FIELD_V_CM:g} V/cm")


def resolve_detector(raw: Mapping[str, Any], prefix: str = "detector") -> dict[str, Any]:
    """Resolve a detector YAML mapping into the canonical detector dictionary.

    The result holds every NEST parameter (floats in NEST units), the drift field in V/cm
    (``None`` = use the preset's own field map ``FitEF``), the yield/width vectors, the fiducial
    volume in mm, the S1/S2 calculation modes and a ``hash`` of all of these.

    Raises
    ------
    DetectorError, UnitError
        One-line messages naming the key, the value and what was expected.
    """
    check_detector_keys(raw, prefix)
    base = raw.get("base", "custom")
    nest_raw = raw.get("nest", {}) or {}
    if base == "custom":
        nest = _parse_nest(nest_raw, f"{prefix}.nest")
        missing = [key for key in NEST_PARAMETERS if key not in nest]
        if missing:
            raise DetectorError(
                f"{prefix}.nest: parameters {', '.join(missing)} are missing; a 'base: custom' detector must set "
                f"every NEST parameter (or start from base: {' / '.join(NEST_PRESETS)})"
            )
        yields = {key: list(value) for key, value in DEFAULT_YIELDS.items()}
    elif base in NEST_PRESETS:
        nest = _preset_parameters(base)
        nest.update(_parse_nest(nest_raw, f"{prefix}.nest"))
        yields = _preset_yields(base)
    else:
        raise DetectorError(f"{prefix}.base: {base!r} is unknown; expected 'custom' or one of {', '.join(NEST_PRESETS)}")

    for key, values in (raw.get("yields") or {}).items():
        if key not in _YIELD_LENGTHS:
            raise DetectorError(f"{prefix}.yields.{key}: unknown vector; expected one of er, nr, widths")
        if not isinstance(values, list) or len(values) != _YIELD_LENGTHS[key]:
            raise DetectorError(
                f"{prefix}.yields.{key}: {values!r} is not a list of {_YIELD_LENGTHS[key]} numbers; expected "
                f"{_YIELD_LENGTHS[key]} entries"
            )
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise DetectorError(f"{prefix}.yields.{key}: {values!r}; expected {_YIELD_LENGTHS[key]} finite numbers")
        yields[key] = [float(v) for v in values]

    field_raw = raw.get("drift_field", "nest_map" if base != "custom" else None)
    if field_raw is None:
        raise DetectorError(f"{prefix}.drift_field: missing; expected a field such as '180 V/cm'")
    if field_raw == "nest_map":
        if base == "custom":
            raise DetectorError(
                f"{prefix}.drift_field: 'nest_map' needs a NEST preset base; expected a field such as '180 V/cm'"
            )
        drift_field = None
    else:
        drift_field = to_canonical(field_raw, f"{prefix}.drift_field", "V/cm")

    fid_raw = raw.get("fiducial")
    if not fid_raw:
        raise DetectorError(f"{prefix}.fiducial: missing; expected r_max, z_min, z_max with length units")
    missing = [name for name in _FIDUCIAL_KEYS if name not in fid_raw]
    if missing:
        raise DetectorError(f"{prefix}.fiducial.{missing[0]}: missing; expected a length such as '688 mm'")
    fiducial = {f"{name}_mm": to_canonical(fid_raw[name], f"{prefix}.fiducial.{name}", "mm") for name in _FIDUCIAL_KEYS}
    s1_mode = raw.get("s1_mode", "Hybrid")
    s2_mode = raw.get("s2_mode", "Full")
    if s1_mode not in _S1_MODES:
        raise DetectorError(f"{prefix}.s1_mode: {s1_mode!r} is unknown; expected one of {', '.join(_S1_MODES)}")
    if s2_mode not in _S2_MODES:
        raise DetectorError(f"{prefix}.s2_mode: {s2_mode!r} is unknown; expected one of {', '.join(_S2_MODES)}")

    # NEST's ER recombination skewness: its model (default) or a fixed SkewnessER (lzflow.response.skewness)
    er_skewness = check_er_skewness(raw.get("er_skewness", ER_SKEWNESS_MODEL), f"{prefix}.er_skewness")

    det = {
        "name": str(raw.get("name", base)),
        "base": base,
        "nest": {key: nest[key] for key in NEST_PARAMETERS},
        "drift_field_V_cm": drift_field,
        "yields": yields,
        "fiducial": fiducial,
        "s1_mode": s1_mode,
        "s2_mode": s2_mode,
        "er_skewness": er_skewness,
    }
    _check_detector(det, prefix)
    det["hash"] = detector_hash(det)
    return det


def detector_hash(det: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the physics content (``name`` and ``hash`` excluded; so is
    ``er_skewness`` at its default ``nest``, which keeps the hash of every detector written before the
    key existed)."""
    content = {k: v for k, v in det.items() if k not in ("hash", "name", "derived")
               and not (k == "er_skewness" and v == ER_SKEWNESS_MODEL)}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def build_nest_detector(det: Mapping[str, Any]):
    """Return a nestpy detector object configured from a resolved detector dictionary.

    Presets instantiate nestpy's class (keeping its field map, S1/S2 light-collection maps and
    timing), custom detectors start from ``VDetector`` (flat maps). Every scalar parameter is then
    set explicitly, so the result is fully determined by ``det``.
    """
    import nestpy

    base = det["base"]
    detector = _preset_instance(base) if base in NEST_PRESETS else nestpy.detectors.VDetector()
    for key, value in det["nest"].items():
        spec = NEST_PARAMETERS[key]
        if spec.length:
            if None not in value:  # a preset's unreadable entries stay as the preset set them
                getattr(detector, f"set_{key}")(*value)
        else:
            setattr(detector, key, int(value) if spec.integer else float(value))
    return detector


def derived_quantities(det: Mapping[str, Any]) -> dict[str, float]:
    """Quantities NEST derives from the parameters: extraction efficiency, SE size, g2, EL yield,
    liquid density and the fiducial mass.

    g2 = ExtEff × SE (phd per extracted electron), from ``NESTcalc::CalculateG2``.
    Fiducial mass = ρ(T, p) × π r_max² (z_max − z_min).
    """
    detector = build_nest_detector(det)
    extraction = detector.extraction_parameters
    nest = det["nest"]
    density = float(detector.calculate_density_liquid(nest["T_Kelvin"], nest["p_bar"], nest["molarMass"]))
    fid = det["fiducial"]
    volume_cm3 = math.pi * (fid["r_max_mm"] / 10.0) ** 2 * (fid["z_max_mm"] - fid["z_min_mm"]) / 10.0
    return {
        "g2_phd_per_electron": float(extraction["g2"]),
        "extraction_efficiency": float(extraction["ExtEff"]),
        "single_electron_phd": float(extraction["SE"]),
        "electroluminescence_yield_photons_per_electron": float(extraction["elYield"]),
        "gas_gap_mm": float(extraction["gasGap"]),
        "liquid_density_g_cm3": density,
        "fiducial_volume_cm3": volume_cm3,
        "fiducial_mass_t": density * volume_cm3 / 1e6,
    }
