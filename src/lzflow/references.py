"""Published reference sensitivities and limits shipped with lzflow, and the comparison of a limit
curve with them.

A reference (registry and files: :mod:`lzflow.reference_data`; list: docs/references.md) is a
published 90 % CL curve σ(m): a median expected sensitivity, with its ±1σ/±2σ bands and the observed
limit where published, or an observed limit; plus the single numbers the paper quotes (its abstract:
e.g. σ at 40 GeV). A reference may hold only such numbers (no public curve). Between the tabulated
points the curve is interpolated linearly in (ln m, ln σ) — limit curves are smooth power laws over
such spans; outside the tabulated range there is no reference value.

The comparison of a limit curve (:mod:`lzflow.curve`) with a reference gives, per mass with a
median expected limit, ``ratio = lzflow / reference`` (> 1: lzflow is less sensitive), and where
the paper quotes a number at that very mass, that number and the ratio to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .exceptions import ConfigError
from .io import write_csv
from .reference_data import (BAND_COLUMNS, EFFICIENCIES, REFERENCES, EfficiencyReference, ReferenceSpec,
                             load_efficiency_reference, read_reference_file)

__all__ = ["REFERENCES", "Reference", "ReferenceSpec", "load_reference", "reference_at", "compare_with_reference",
           "write_comparison", "COMPARISON_COLUMNS", "EFFICIENCIES", "EfficiencyReference",
           "load_efficiency_reference"]

COMPARISON_COLUMNS = ["mass_GeV", "lzflow_cm2", "reference_cm2", "ratio", "published_cm2", "ratio_published"]


@dataclass(frozen=True)
class Reference:
    """A published curve (median sensitivity or observed limit) and the numbers quoted with it."""

    name: str
    label: str
    interaction: str  #: "SI", "SD_n" or "SD_p"
    source: str  #: the comment lines of the curve file (of the points file without a curve)
    mass_GeV: np.ndarray
    sigma_cm2: np.ndarray  #: the reference curve (``kind``)
    points: tuple[tuple[float, float], ...]  #: (mass, σ) quoted by the paper for this interaction and kind
    kind: str = "median"  #: "median" (expected sensitivity) or "limit" (observed)
    citation: str = ""  #: one line: paper and where the numbers come from
    bands: dict[str, np.ndarray] = field(default_factory=dict)  #: {"-2", "-1", "1", "2"} -> σ at mass_GeV
    observed_cm2: np.ndarray | None = None  #: the observed limit at mass_GeV, drawn with a median
    power_constraint: str | None = None  #: how the published observed limit is power constrained
    points_only: bool = False  #: no published curve: mass_GeV/sigma_cm2 are the quoted numbers


def _column(rows: Sequence[Mapping[str, str]], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows])


def _quoted(spec: ReferenceSpec) -> tuple[tuple[float, float], ...]:
    if spec.points_file is None:
        return ()
    _, rows = read_reference_file(spec.points_file)
    return tuple((float(r["mass_GeV"]), float(r["sigma_cm2"])) for r in rows
                 if r["interaction"] == spec.interaction and r.get("kind", spec.kind) == spec.kind)


def load_reference(name: str) -> Reference:
    """The reference ``name`` (one of :data:`REFERENCES`)."""
    if name not in REFERENCES:
        raise ConfigError(f"reference: {name!r} is not a shipped reference; expected one of {', '.join(REFERENCES)}")
    spec = REFERENCES[name]
    points = _quoted(spec)
    if spec.curve_file is None:
        comments, _ = read_reference_file(spec.points_file)
        mass, sigma = np.array([p[0] for p in points]), np.array([p[1] for p in points])
        return Reference(name, spec.label, spec.interaction, " ".join(comments), mass, sigma, points, spec.kind,
                         spec.citation, points_only=True)
    comments, rows = read_reference_file(spec.curve_file)
    mass, sigma = _column(rows, "mass_GeV"), _column(rows, spec.central)
    bands = {n: _column(rows, col) for n, col in BAND_COLUMNS.items()} if spec.bands else {}
    observed = _column(rows, spec.observed) if spec.observed else None
    curves = [sigma, *bands.values(), *([observed] if observed is not None else [])]
    if not (np.all(np.diff(mass) > 0) and all(np.all(c > 0) for c in curves)):
        raise ValueError(f"{spec.curve_file}: masses must increase and cross sections be positive")
    return Reference(name, spec.label, spec.interaction, " ".join(comments), mass, sigma, points, spec.kind,
                     spec.citation, bands, observed, spec.power_constraint)


def reference_at(reference: Reference, mass_GeV: Sequence[float] | np.ndarray) -> np.ndarray:
    """The reference curve at ``mass_GeV``: log-log interpolation, NaN outside the digitised range."""
    m = np.asarray(mass_GeV, dtype=float)
    inside = (m >= reference.mass_GeV[0]) & (m <= reference.mass_GeV[-1])
    log_sigma = np.interp(np.log(np.where(inside, m, reference.mass_GeV[0])), np.log(reference.mass_GeV),
                          np.log(reference.sigma_cm2))
    exact = np.interp(m, reference.mass_GeV, reference.sigma_cm2)  # a digitised mass: its value as written
    on_point = np.isin(m, reference.mass_GeV)
    return np.where(inside, np.where(on_point, exact, np.exp(log_sigma)), np.nan)


def compare_with_reference(rows: Sequence[Mapping[str, Any]], reference: Reference) -> list[dict[str, Any]]:
    """Per mass of a limit curve (:func:`lzflow.curve.curve_rows`) with a median expected limit: the
    median, the reference there, their ratio, and the paper's quoted number at that mass if any."""
    quoted = dict(reference.points)
    out = []
    for row in rows:
        median = row.get("sigma_median_cm2")
        if row.get("no_sensitivity") or median is None:
            continue
        ref = float(reference_at(reference, [row["mass_GeV"]])[0])
        published = quoted.get(float(row["mass_GeV"]))
        out.append({
            "mass_GeV": row["mass_GeV"], "lzflow_cm2": median,
            "reference_cm2": ref if np.isfinite(ref) else None,
            "ratio": median / ref if np.isfinite(ref) else None,
            "published_cm2": published,
            "ratio_published": median / published if published else None,
        })
    return out


def write_comparison(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """The comparison as CSV (:data:`COMPARISON_COLUMNS`), written atomically."""
    write_csv(path, rows, COMPARISON_COLUMNS)
