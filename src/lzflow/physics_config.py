"""Resolution of the physics-model choices of a configuration: the WIMP halo and each
background's NEST yield model (called by :func:`lzflow.config.resolve_config`).

**Halo** (``signal.halo``). Either a ``preset`` (:data:`lzflow.spectra.wimp.HALO_PRESETS`:
``standard_2018`` for the LZ projection, ``baxter_2021`` for results from 2021 on), or all four of
``rho``, ``v0``, ``vesc`` and ``v_earth`` written out. Beside a preset, a key may be written only
with the preset's own value (to show it in the file); any other value is refused, never silently
preferred to or overridden by the preset. ``v_earth`` is a fixed mean Earth speed in the galactic
frame (e.g. ``232 km/s``) or ``computed`` (v0 + solar peculiar + orbital velocity,
:func:`lzflow.spectra.wimp.earth_velocity_km_s`). The resolved halo records the preset and every
value used, the computed Earth speed included.

**Coupling** (``signal.interaction``, required): ``SI``, ``SD_n`` or ``SD_p``
(:data:`lzflow.spectra.spin_dependent.SIGNAL_INTERACTIONS`); ``signal.sigma_ref`` is then the
WIMP–nucleon, WIMP–neutron or WIMP–proton cross section. Every coupling folds with the NR response.

**Yield model** (``backgrounds.<name>.nest_yields``): the NEST interaction whose yields (and
response matrix) a background is folded with: ``beta`` or ``gammaRay`` for an electron-recoil
source, ``NR`` for a nuclear-recoil one, or ``{model: beta, charge_yield_scale: Q}`` (0 < Q < 1) for
an electron-recoil source whose charge yield is Q times β's at the same energy, the quanta conserved
(electron-capture lines: the vacancy cascade recombines more; resolved to the interaction
``beta_Q<Q>``, :func:`lzflow.space.scaled_beta`, one response matrix per Q used). It needs the
detector's ER yield parameters m1, m2, m5 written out (:func:`check_charge_scaled_yields`). An accidental-coincidence background (``accidentals``,
:mod:`lzflow.spectra.accidentals`) is not folded; it takes ``beta``, whose response gives its PDF job
only the analysis space and the detector identity.

**Selection efficiency** (``signal.selection_efficiency``, optional): a flat factor 0 < ε ≤ 1 on the
signal for the analysis cuts NEST does not model; absent = 1, recorded in the resolved config.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from .exceptions import ConfigError
from .spectra.accidentals import OBSERVABLE_BACKGROUNDS

__all__ = ["HALO_KEYS", "OBSERVABLE_BACKGROUNDS", "resolve_halo", "check_interaction", "check_nest_yields",
           "check_charge_scaled_yields",
           "check_selection_efficiency", "observable_background", "resolve_background"]

#: config key → (resolved key, unit)
HALO_KEYS: dict[str, tuple[str, str]] = {
    "rho": ("rho_GeV_cm3", "GeV/cm**3"), "v0": ("v0_km_s", "km/s"), "vesc": ("vesc_km_s", "km/s"),
    "v_earth": ("v_earth_km_s", "km/s"),
}

Quantity = Callable[[Any, str, str], float]


def _value(raw: Mapping[str, Any], key: str, quantity: Quantity) -> float | str:
    value = raw[key]
    if key == "v_earth" and isinstance(value, str) and value.strip() == "computed":
        return "computed"
    return quantity(value, f"signal.halo.{key}", HALO_KEYS[key][1])


def _text(value: float | str, unit: str) -> str:
    return value if isinstance(value, str) else f"{value:g} {unit}"


def resolve_halo(raw: Mapping[str, Any], quantity: Quantity) -> dict[str, Any]:
    """The resolved halo of ``signal.halo``: ``preset`` (or None), ``rho_GeV_cm3``, ``v0_km_s``,
    ``vesc_km_s``, ``v_earth_model`` (``fixed`` | ``computed``) and ``v_earth_km_s`` (the speed the
    rate uses). ``quantity(raw, key, unit)`` parses a dimensioned value within its bounds."""
    from .spectra.wimp import HALO_PRESETS, HaloModel

    preset = raw.get("preset")
    given = {key: _value(raw, key, quantity) for key in HALO_KEYS if key in raw}
    if preset is None:
        missing = [key for key in HALO_KEYS if key not in given]
        if missing:
            raise ConfigError(f"signal.halo.{missing[0]}: missing; expected it written out, or signal.halo.preset "
                              f"(one of {', '.join(HALO_PRESETS)})")
        values = given
    else:
        p = HALO_PRESETS[preset]
        values = {key: p[resolved] if key != "v_earth" else p["v_earth"] for key, (resolved, _) in HALO_KEYS.items()}
        for key, value in given.items():
            want, unit = values[key], HALO_KEYS[key][1]
            same = (value == want if isinstance(value, str) or isinstance(want, str)
                    else math.isclose(value, float(want), rel_tol=1e-9))
            if not same:
                raise ConfigError(f"signal.halo.{key}: {raw[key]!r} conflicts with preset {preset} "
                                  f"({_text(want, unit)}); expected {_text(want, unit)} or no {key} key (for another "
                                  f"halo, drop preset and write rho, v0, vesc and v_earth)")
    rho, v0, vesc = (float(values[k]) for k in ("rho", "v0", "vesc"))
    if not vesc > v0:
        raise ConfigError(f"signal.halo.vesc: {vesc:g} km/s; expected vesc > v0 ({v0:g} km/s)")
    computed = values["v_earth"] == "computed"
    v_earth = (HaloModel(rho_GeV_cm3=rho, v0_km_s=v0, vesc_km_s=vesc).v_earth_km_s if computed
               else float(values["v_earth"]))
    return {"preset": preset, "rho_GeV_cm3": rho, "v0_km_s": v0, "vesc_km_s": vesc,
            "v_earth_model": "computed" if computed else "fixed", "v_earth_km_s": v_earth}


def check_interaction(value: Any) -> str:
    """``value`` if it is a WIMP coupling lzflow computes (``signal.interaction``); else a ConfigError."""
    from .spectra.spin_dependent import SIGNAL_INTERACTIONS

    if value not in SIGNAL_INTERACTIONS:
        raise ConfigError(f"signal.interaction: {value!r} is invalid; expected one of {', '.join(SIGNAL_INTERACTIONS)}")
    return value


def check_selection_efficiency(value: Any) -> float:
    """``signal.selection_efficiency`` as a float: the flat acceptance of the analysis cuts NEST does not
    model, multiplying the signal (0 < value <= 1); absent = 1 (NEST's detection only, recorded in the
    resolved config). Anything else is a ConfigError."""
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < float(value) <= 1.0):
        raise ConfigError(f"signal.selection_efficiency: {value!r}; expected a number with 0 < value <= 1 "
                          "(the analysis-cut acceptance on the signal)")
    return float(value)


def _scaled_beta(name: str, value: Mapping[str, Any], recoil: str) -> str:
    """The interaction name (``beta_Q<Q>``) of ``{model: beta, charge_yield_scale: Q}``; else a ConfigError."""
    from .space import scaled_beta

    where = f"backgrounds.{name}.nest_yields"
    if set(value) != {"model", "charge_yield_scale"}:
        raise ConfigError(f"{where}: {dict(value)!r}; expected exactly the keys model and charge_yield_scale")
    if value["model"] != "beta" or recoil != "ER":
        raise ConfigError(f"{where}.model: {value['model']!r}; expected beta (a charge-yield scale applies to "
                          f"NEST's beta yields of an electron-recoil source; {name} is {recoil})")
    q = value["charge_yield_scale"]
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 < float(q) < 1.0:
        raise ConfigError(f"{where}.charge_yield_scale: {q!r}; expected a number with 0 < Q < 1 "
                          "(Q = 1 is nest_yields: beta)")
    try:
        return scaled_beta(float(q))
    except ValueError as err:
        raise ConfigError(f"{where}.charge_yield_scale: {err}") from None


def check_nest_yields(name: str, value: Any) -> str:
    """``value`` if it is a yield model for background ``name``'s recoil type, the interaction name
    ``beta_Q<Q>`` for ``{model: beta, charge_yield_scale: Q}``; else a ConfigError."""
    from .spectra.backgrounds import background_model

    if isinstance(value, Mapping) and name not in OBSERVABLE_BACKGROUNDS:
        return _scaled_beta(name, value, background_model(name).recoil)
    if name in OBSERVABLE_BACKGROUNDS:  # not folded: the beta response only gives its PDF job the space
        if value != "beta":
            raise ConfigError(f"backgrounds.{name}.nest_yields: {value!r}; expected beta ({name} is not folded: "
                              "its template is in (cS1, log10 cS2) and the beta response only gives it the analysis space)")
        return value
    model = background_model(name)
    recoil, allowed = model.recoil, model.yield_models
    if value not in allowed:
        kind = "an electron-recoil" if recoil == "ER" else "a nuclear-recoil"
        raise ConfigError(f"backgrounds.{name}.nest_yields: {value!r}; expected {' or '.join(allowed)} "
                          f"({name} is {kind} source)")
    return value


def observable_background(name: str, entry: Mapping[str, Any], scale: float) -> dict[str, Any]:
    """The resolved entry of a background given in (cS1, log10 cS2) (:data:`OBSERVABLE_BACKGROUNDS`):
    ``counts`` are events in the ROI (times the exposure ``scale``), so a ``window_keV`` is refused."""
    if entry.get("window_keV") is not None:
        raise ConfigError(f"backgrounds.{name}.window_keV: {entry['window_keV']!r}; expected none ({name} has no "
                          "recoil energy: its counts are events in the ROI)")
    return {"counts": float(entry["counts"]) * scale, "window_keV": None, "rel_unc": float(entry["rel_unc"]),
            "nest_yields": check_nest_yields(name, entry["nest_yields"])}


def resolve_background(name: str, entry: Mapping[str, Any], scale: float,
                       folded: Callable[[str, Mapping[str, Any], float], dict[str, Any]]) -> dict[str, Any]:
    """The resolved ``backgrounds.<name>`` entry: :func:`observable_background` for a background given in
    (cS1, log10 cS2), else ``folded(name, entry, scale)`` (a recoil spectrum, :mod:`lzflow.config`)."""
    return observable_background(name, entry, scale) if name in OBSERVABLE_BACKGROUNDS else folded(name, entry, scale)


def check_charge_scaled_yields(detector: Mapping[str, Any], backgrounds: Mapping[str, Mapping[str, Any]]
                               ) -> Mapping[str, Any]:
    """``detector`` if every charge-scaled β model (``beta_Q<Q>``) of ``backgrounds`` can be made with it:
    its ER yield parameters m1, m2, m5 (``yields.er[0, 1, 4]``) written out, not NEST's −1 default
    (:func:`lzflow.response.nest.charge_scaled_er_params`); else a ConfigError naming the background."""
    from .space import charge_yield_scale

    er = detector.get("yields", {}).get("er")
    for name, entry in sorted(backgrounds.items()):
        q = charge_yield_scale(entry["nest_yields"])
        if q != 1.0 and (er is None or not all(float(er[i]) > 0 for i in (0, 1, 4))):
            raise ConfigError(f"backgrounds.{name}.nest_yields: charge_yield_scale {q:g} needs the detector's ER yield "
                              f"parameters m1, m2, m5 written out; the detector has yields.er {er!r} (NEST's -1 = "
                              "built-in default, which cannot be scaled)")
    return detector
