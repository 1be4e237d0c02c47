"""Sources of the analysis: what each PDF is made of.

A source is a recoil spectrum for the whole exposure (events/keV) and the NEST interaction type
that turns it into (cS1, cS2): ``NR`` for WIMPs, whatever their coupling (``signal.interaction``:
``SI``, ``SD_n`` or ``SD_p``, :func:`lzflow.spectra.spin_dependent.signal_rate`; every coupling is
folded with the same NR response matrix); for a background, its configured yield model
(``backgrounds.<name>.nest_yields``: ``NR`` for CEvNS and detector neutrons, ``beta`` or
``gammaRay`` for ER sources; see :mod:`lzflow.spectra.backgrounds`).

An accidental-coincidence background (``accidentals``, :func:`observable_source`) is not a recoil
spectrum: its "spectrum" is an :class:`lzflow.spectra.accidentals.ObservableTemplate`, the ROI count
spread over (cS1, log10 cS2), which the PDF stage takes as it is (no fold).

The WIMP source is normalised at the reference cross section σ_ref (per nucleon for SI, per
neutron for SD_n, per proton for SD_p), so its PDF holds the expected events at σ_ref and the
signal strength μ converts as σ = μ σ_ref.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["Source", "wimp_source", "background_source", "observable_source", "source_name"]


@dataclass(frozen=True)
class Source:
    """A spectrum (events/keV for the whole exposure) and its NEST interaction type."""

    name: str
    interaction: str
    spectrum: Callable[[np.ndarray], np.ndarray]
    energy_range_keV: tuple[float, float]
    metadata: Mapping[str, Any]


def source_name(mass_label: str) -> str:
    """File stem of a WIMP source, e.g. ``wimp_m40``."""
    return f"wimp_m{mass_label}"


def wimp_source(spec: Mapping[str, Any]) -> Source:
    """WIMP source from a job spec with ``mass_GeV``, ``mass_label``, ``sigma_ref_cm2``, ``halo``
    (resolved, :func:`lzflow.physics_config.resolve_halo`), ``exposure_t_yr`` and ``interaction``
    (``SI`` when absent: an SI spec has no such key, :func:`lzflow.layout.signal_spec`) and
    ``selection_efficiency`` ε_sel (1 when absent, the default):
    dN/dE = ε_sel × exposure × dR/dE(σ_ref) [events/keV].

    ε_sel is the flat acceptance of the analysis cuts that NEST does not model (``signal.selection_efficiency``,
    docs/ws2024.md): NEST's response already holds the detection threshold (S1 coincidence, raw S2
    threshold, ROI), so only the cut acceptance on the plateau of a published efficiency multiplies it."""
    from .spectra import HaloModel
    from .spectra.spin_dependent import SIGNAL_INTERACTIONS, signal_rate

    h = spec["halo"]
    if h["v_earth_model"] not in ("fixed", "computed"):
        raise ValueError(f"halo.v_earth_model: {h['v_earth_model']!r}; expected fixed or computed")
    halo = HaloModel(rho_GeV_cm3=h["rho_GeV_cm3"], v0_km_s=h["v0_km_s"], vesc_km_s=h["vesc_km_s"],
                     v_earth_fixed_km_s=h["v_earth_km_s"] if h["v_earth_model"] == "fixed" else None)
    mass, sigma, exposure = float(spec["mass_GeV"]), float(spec["sigma_ref_cm2"]), float(spec["exposure_t_yr"])
    coupling = spec.get("interaction", "SI")
    if coupling not in SIGNAL_INTERACTIONS:
        raise ValueError(f"interaction: {coupling!r}; expected one of {', '.join(SIGNAL_INTERACTIONS)}")
    eff = float(spec.get("selection_efficiency", 1.0))  # absent: 1, NEST's detection only (layout.signal_spec)
    if not 0.0 < eff <= 1.0:
        raise ValueError(f"selection_efficiency: {eff!r}; expected 0 < value <= 1")
    weight = exposure * eff

    def spectrum(energy_keV: np.ndarray) -> np.ndarray:
        return weight * signal_rate(np.asarray(energy_keV, dtype=float), mass, sigma, halo, coupling)

    return Source(
        name=source_name(spec["mass_label"]),
        interaction="NR",
        spectrum=spectrum,
        energy_range_keV=(0.0, np.inf),
        metadata={"kind": "signal", "mass_GeV": mass, "sigma_ref_cm2": sigma, "exposure_t_yr": exposure,
                  "halo": dict(spec["halo"]), **({} if coupling == "SI" else {"interaction": coupling}),
                  **({} if eff == 1.0 else {"selection_efficiency": eff})},
    )


def background_source(spec: Mapping[str, Any]) -> Source:
    """Background source from a job spec with ``name``, ``counts``, ``window_keV`` (or None),
    ``rel_unc`` and ``nest_yields``: its shape normalised to ``counts`` events in the window,
    folded with the ``nest_yields`` interaction (one of the source's yield models)."""
    from .spectra import background_model, background_spectrum, reference_window_keV
    from .spectra.accidentals import OBSERVABLE_BACKGROUNDS

    if spec["name"] in OBSERVABLE_BACKGROUNDS:
        return observable_source(spec)
    from .space import base_interaction

    model = background_model(spec["name"])
    if base_interaction(spec["nest_yields"]) not in model.yield_models:  # beta_Q<Q>: a charge-scaled beta
        raise ValueError(f"{model.name}: nest_yields {spec['nest_yields']!r}; expected one of "
                         f"{', '.join(model.yield_models)}")
    window = tuple(spec["window_keV"]) if spec.get("window_keV") else reference_window_keV(model.recoil)
    counts = float(spec["counts"])

    def spectrum(energy_keV: np.ndarray) -> np.ndarray:
        return background_spectrum(model.name, np.asarray(energy_keV, dtype=float), counts, window)

    return Source(
        name=model.name,
        interaction=spec["nest_yields"],
        spectrum=spectrum,
        energy_range_keV=tuple(model.energy_range_keV),
        metadata={"kind": "background", "recoil": model.recoil, "counts_in_window": counts,
                  "window_keV": list(window), "rel_unc": float(spec["rel_unc"])},
    )


def observable_source(spec: Mapping[str, Any]) -> Source:
    """A background given in the analysis space (:data:`lzflow.spectra.accidentals.OBSERVABLE_BACKGROUNDS`,
    accidental coincidences): ``counts`` events in the ROI spread by its template, never folded. Its
    ``nest_yields`` (``beta``) names the response that supplies only the analysis space and detector
    identity of its PDF job."""
    from .spectra.accidentals import observable_source_template

    if spec.get("window_keV"):
        raise ValueError(f"{spec['name']}: window_keV {spec['window_keV']!r}; an accidental background has no "
                         "energy: its counts are ROI events")
    template = observable_source_template(spec["name"], spec["counts"])
    return Source(
        name=spec["name"],
        interaction=spec["nest_yields"],
        spectrum=template,
        energy_range_keV=(0.0, 0.0),
        metadata={"kind": "background", "recoil": "none (accidental coincidence)", "counts_in_roi": template.counts,
                  "rel_unc": float(spec["rel_unc"]), "template": "isolated-S1 x isolated-S2 power laws "
                  "(lzflow.spectra.accidentals)"},
    )
