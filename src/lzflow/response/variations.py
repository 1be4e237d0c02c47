r"""Detector systematics: which detector-model parameters are varied, by how much, and how.

Each *systematic* is one physical knob of the NEST detector model with a Gaussian width σ; the
response stage builds its response matrices at the shifts z ∈ {−2, −1, +1, +2} σ
(:data:`SHIFTS`, :mod:`lzflow.response.crn`) and the PDF stage folds them into the varied templates
of every source it acts on. The knobs (:data:`PARAMETERS`), each a documented transformation of the
resolved detector dictionary (:func:`shifted_detector`):

``g1``
    ``nest.g1 → g1 + zσ`` (σ absolute, phd per photon). NEST's cS1 is position-corrected only, so
    the band moves in cS1 and the S1 threshold acts at another energy.
``g2``
    g2 = ExtEff × SE (phd per extracted electron, NEST ``CalculateG2``) scaled by (1 + z σ_rel)
    through the **extraction efficiency at a fixed single-electron size**: ``nest.E_gas`` is solved
    (bisection on NEST's own ExtEff(E_gas)) for ExtEff' = ExtEff (1 + z σ_rel), and ``nest.g1_gas``
    is rescaled by elYield(E_gas)/elYield(E_gas') so that SE = elYield × g1_gas is unchanged. This
    is the knob an LZ-like calibration leaves free: SE is measured directly (single-electron
    peak), g2 from the Doke plot, so the g2 uncertainty is the extraction efficiency's (and NEST
    draws the extracted electrons binomially, which a pure gain change would not reproduce).
``drift_field``
    ``drift_field_V_cm → F + zσ`` (σ in V/cm; needs a uniform field, not ``nest_map``): moves the
    recombination (ER and NR band positions and widths) and the drift velocity.
``electron_lifetime``
    ``nest.eLife_us → τ + zσ`` (σ in µs). NEST corrects cS2 with the detector's own lifetime, so
    this moves only the raw-S2 threshold and the S2 fluctuations (small; not in the default set).
``nr_light``
    NEST NR total quanta Nq = α E^β (``yields.nr[0]`` = α) scaled by (1 + z σ_rel) at fixed charge
    yield: NEST's light yield is Ly = Nq/E − Qy, so the light yield moves by
    ΔLy/Ly = z σ_rel · Nq/(E·Ly) and the charge yield not at all.
``nr_charge``
    NEST NR charge yield Qy = 1/(γ F^δ (E + ε)^p) × roll-off (``yields.nr[2]`` = γ, the
    Thomas–Imel box normalisation) scaled by (1 + z σ_rel) (γ → γ/(1 + zσ_rel)) at fixed total
    quanta: the light yield absorbs the difference (Ly = Nq/E − Qy, anticorrelated, as in NEST's
    model). γ also enters NEST's exciton/ion split, i.e. the recombination fluctuations.

NR yield scales act on NR-folded sources only (a β or γ response does not read ``yields.nr``): an
ER source is never varied by them and costs no NEST run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..detector import build_nest_detector, detector_hash
from ..exceptions import ConfigError

__all__ = ["SHIFTS", "PARAMETERS", "Parameter", "shift_label", "resolve_systematics", "shifted_detector",
           "systematic_interactions", "acts_on", "NOMINAL"]

#: Shifts, in σ, of every systematic's variation matrices (±1σ define the morphing, ±2σ validate it).
SHIFTS: tuple[int, ...] = (-2, -1, 1, 2)
#: Name of the common-random-number nominal matrix in the variation layout (never a parameter's name).
NOMINAL = "nominal"
#: Largest fraction of a parameter's nominal value one σ may be (a ±2σ shift stays physical).
MAX_REL_SIGMA = 0.25
#: Fewest effective events of a CRN pair (n_samples_fraction × pdf.n_samples), as pdf.n_samples' minimum.
MIN_CRN_SAMPLES = 1000


@dataclass(frozen=True)
class Parameter:
    """One systematic knob: its physical key, how its width is written (``sigma`` with a unit, or
    ``rel_sigma``), the unit of the physical value and which NEST interaction types it changes."""

    key: str
    width: str  # "sigma" | "rel_sigma"
    unit: str  # unit of the physical value ("" = dimensionless)
    interactions: tuple[str, ...]
    description: str


_ALL = ("NR", "beta", "gammaRay")
PARAMETERS: dict[str, Parameter] = {
    "g1": Parameter("detector.nest.g1", "sigma", "", _ALL, "S1 photon detection efficiency (phd/photon)"),
    "g2": Parameter("detector.derived.g2_phd_per_electron", "rel_sigma", "phd/electron", _ALL,
                    "S2 gain via the extraction efficiency at fixed single-electron size"),
    "drift_field": Parameter("detector.drift_field_V_cm", "sigma", "V/cm", _ALL, "uniform drift field"),
    "electron_lifetime": Parameter("detector.nest.eLife_us", "sigma", "us", _ALL, "electron lifetime"),
    "nr_light": Parameter("scale of detector.yields.nr[0]", "rel_sigma", "", ("NR",),
                          "NEST NR total quanta alpha (light yield at fixed charge yield)"),
    "nr_charge": Parameter("scale of 1/detector.yields.nr[2]", "rel_sigma", "", ("NR",),
                           "NEST NR charge yield normalisation 1/gamma (light anticorrelated)"),
}


def shift_label(z: int) -> str:
    """The workspace's key of a shift: ``-2``, ``-1``, ``1``, ``2`` (``0`` for the nominal)."""
    return str(int(z))


def _extraction(det: Mapping[str, Any]) -> dict[str, float]:
    return dict(build_nest_detector(det).extraction_parameters)


def _nominal_value(name: str, det: Mapping[str, Any]) -> float | None:
    if name == "g1":
        return float(det["nest"]["g1"])
    if name == "g2":
        return float(_extraction(det)["g2"])
    if name == "drift_field":
        return None if det["drift_field_V_cm"] is None else float(det["drift_field_V_cm"])
    if name == "electron_lifetime":
        return float(det["nest"]["eLife_us"])
    return 1.0  # NR yield scales: a dimensionless factor on yields.nr[0] (nr_light) or 1/yields.nr[2] (nr_charge)


def _sigma(name: str, entry: Mapping[str, Any], nominal: float, where: str) -> tuple[float, float]:
    """(σ in the parameter's unit, σ relative to the nominal) from the config entry."""
    from ..units import UnitError, to_canonical

    par = PARAMETERS[name]
    raw = entry[par.width]
    if par.width == "rel_sigma" or not par.unit:  # a relative width, or an absolute dimensionless one
        sigma = float(raw) if par.width == "sigma" else float(raw) * nominal
    else:
        try:
            sigma = to_canonical(raw, f"{where}.sigma", par.unit)
        except UnitError as err:
            raise ConfigError(str(err)) from None
    rel = sigma / nominal
    if not 0 < rel <= MAX_REL_SIGMA:
        raise ConfigError(f"{where}.{par.width}: {raw!r} is {rel:.3g} of the nominal {nominal:g}"
                          f"{' ' + par.unit if par.unit else ''}; expected 0 < sigma <= {MAX_REL_SIGMA:g} x nominal")
    return sigma, rel


def acts_on(spec: Mapping[str, Any], source: str, interaction: str) -> bool:
    """Whether a resolved systematic varies ``source`` (a background name or ``wimp_m<mass>``)
    folded with ``interaction``."""
    listed = "signal" if source.startswith("wimp_m") else source
    return listed in spec["sources"] and interaction in spec["interactions"]


def systematic_interactions(spec: Mapping[str, Any], source_interactions: Mapping[str, str]) -> list[str]:
    """The interaction types whose variation matrices a systematic needs: those of the sources it
    acts on (``source_interactions``: source → interaction; ``signal`` → NR)."""
    return sorted({inter for src, inter in source_interactions.items()
                   if src in spec["sources"] and inter in spec["interactions"]})


def resolve_systematics(raw: Mapping[str, Any] | None, detector: Mapping[str, Any],
                        backgrounds: Mapping[str, Mapping[str, Any]], n_samples: float) -> dict[str, Any] | None:
    """The resolved ``systematics`` block (None without one): per parameter its physical key,
    nominal, σ (unit) and σ_rel, the interaction types it changes and the sources it acts on (default
    all those it can change); every ±2σ detector is built once here, so an unphysical shift is a
    one-line ConfigError before any job runs."""
    if raw is None:
        return None
    sources_of = {"signal": "NR", **{name: b["nest_yields"] for name, b in backgrounds.items()}}
    fraction = float(raw["n_samples_fraction"])
    if fraction * n_samples < MIN_CRN_SAMPLES:
        raise ConfigError(f"systematics.n_samples_fraction: {raw['n_samples_fraction']!r} x pdf.n_samples {n_samples:g} = "
                          f"{fraction * n_samples:g} effective events; expected at least {MIN_CRN_SAMPLES:g}")
    out: dict[str, Any] = {"n_samples_fraction": fraction, "parameters": {}}
    for name, entry in raw["parameters"].items():
        where = f"systematics.parameters.{name}"
        par = PARAMETERS[name]
        nominal = _nominal_value(name, detector)
        if nominal is None:
            raise ConfigError(f"{where}: the detector's drift_field is 'nest_map'; expected a uniform field "
                              f"such as '310 V/cm' to vary")
        sigma, rel = _sigma(name, entry, nominal, where)
        able = [s for s, inter in sources_of.items() if inter in par.interactions]
        chosen = list(entry.get("sources", able))
        for src in chosen:
            if src not in sources_of:
                raise ConfigError(f"{where}.sources: {src!r} is not a source of this analysis; expected signal or "
                                  f"one of {', '.join(sorted(backgrounds))}")
            if src not in able:
                raise ConfigError(f"{where}.sources: {src!r} is folded with the {sources_of[src]} response, which "
                                  f"{name} does not change; expected sources folded with {'/'.join(par.interactions)}")
        spec = {"key": par.key, "nominal": nominal, "sigma": sigma, "rel_sigma": rel, "unit": par.unit,
                "interactions": list(par.interactions), "sources": sorted(set(chosen))}
        for z in (SHIFTS[0], SHIFTS[-1]):
            try:
                shifted_detector(detector, name, spec, z)
            except ValueError as err:
                raise ConfigError(f"{where}.{par.width}: {entry[par.width]!r}: {err}") from None
        out["parameters"][name] = spec
    return out


def _solve_e_gas(det: Mapping[str, Any], target: float) -> float:
    """E_gas [kV/cm] at which NEST's extraction efficiency is ``target`` (bisection, 60 steps)."""
    trial = copy.deepcopy(dict(det))
    lo, hi = 0.6 * det["nest"]["E_gas"], 3.0 * det["nest"]["E_gas"]  # NEST warns below ~3 kV/cm

    def eff(e_gas: float) -> float:
        trial["nest"]["E_gas"] = e_gas
        return float(_extraction(trial)["ExtEff"])

    if not eff(lo) < target < eff(hi) or target >= 1.0:
        raise ValueError(f"extraction efficiency {target:.4f} is out of NEST's reach ({eff(lo):.3f} to "
                         f"{min(eff(hi), 1.0):.3f} for E_gas {lo:g} to {hi:g} kV/cm, and < 1); expected a smaller g2 shift")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if eff(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


def shifted_detector(det: Mapping[str, Any], name: str, spec: Mapping[str, Any], z: float) -> dict[str, Any]:
    """The resolved detector with systematic ``name`` shifted by ``z`` σ (module docstring); its
    ``hash`` recomputed. ValueError for an unphysical value."""
    out = copy.deepcopy(dict(det))
    out.pop("derived", None)
    step = z * spec["sigma"]
    if name == "g1":
        value = spec["nominal"] + step
        if not 0 < value <= 1:
            raise ValueError(f"g1 {value:g} at {z:+g} sigma; expected 0 < g1 <= 1")
        out["nest"]["g1"] = value
    elif name == "g2":
        before = _extraction(det)
        try:
            e_gas = _solve_e_gas(det, before["ExtEff"] * (1 + z * spec["rel_sigma"]))
        except ValueError as err:
            raise ValueError(f"at {z:+g} sigma: {err}") from None
        out["nest"]["E_gas"] = e_gas
        out["nest"]["g1_gas"] = det["nest"]["g1_gas"] * before["elYield"] / _extraction(out)["elYield"]
        if not 0 < out["nest"]["g1_gas"] <= 1:
            raise ValueError(f"g1_gas {out['nest']['g1_gas']:g} at {z:+g} sigma; expected 0 < g1_gas <= 1")
    elif name == "drift_field":
        if spec["nominal"] + step <= 0:
            raise ValueError(f"drift field {spec['nominal'] + step:g} V/cm at {z:+g} sigma; expected > 0")
        out["drift_field_V_cm"] = spec["nominal"] + step
    elif name == "electron_lifetime":
        if spec["nominal"] + step <= 0:
            raise ValueError(f"electron lifetime {spec['nominal'] + step:g} us at {z:+g} sigma; expected > 0")
        out["nest"]["eLife_us"] = spec["nominal"] + step
    elif name in ("nr_light", "nr_charge"):
        scale = 1 + z * spec["rel_sigma"]
        if scale <= 0:
            raise ValueError(f"yield scale {scale:g} at {z:+g} sigma; expected > 0")
        nr = list(out["yields"]["nr"])
        if name == "nr_light":
            nr[0] = nr[0] * scale
        else:
            nr[2] = nr[2] / scale
        out["yields"]["nr"] = nr
    else:
        raise ValueError(f"unknown systematic {name!r}; expected one of {', '.join(PARAMETERS)}")
    out["hash"] = detector_hash(out)
    return out


def physical_values(name: str, spec: Mapping[str, Any], shifts: Sequence[int] = SHIFTS) -> dict[str, float]:
    """The physical value of the parameter at each shift (``nominal + z σ``), keyed by shift label."""
    return {shift_label(z): spec["nominal"] + z * spec["sigma"] for z in shifts}
