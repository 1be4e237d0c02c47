"""Published reference sensitivities shipped with lzflow, and the comparison of a limit curve with them.

A reference is a published median expected 90 % CL limit curve σ(m) (files in
``lzflow/data/references/``, each opening with comment lines that name its source: paper, figure,
and who digitised it) plus the single numbers the paper quotes (its abstract: e.g. σ at 40 GeV).
Between the digitised points the curve is interpolated linearly in (ln m, ln σ) — limit curves
are smooth power laws over such spans; outside the digitised range there is no reference value.

The comparison of a limit curve (:mod:`lzflow.curve`) with a reference gives, per mass with a
median expected limit, ``ratio = lzflow / reference`` (> 1: lzflow is less sensitive), and where
the paper quotes a number at that very mass, that number and the ratio to it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from typing import Any, Mapping, Sequence

import numpy as np

from .exceptions import ConfigError
from .io import write_csv

__all__ = ["REFERENCES", "Reference", "load_reference", "reference_at", "compare_with_reference",
           "write_comparison", "COMPARISON_COLUMNS"]

#: name -> (curve file, points file, interaction, plot label)
REFERENCES: dict[str, tuple[str, str, str, str]] = {
    "lz_projection_2018": ("lz_projection_2018_si.csv", "lz_projection_2018_points.csv", "SI",
                           "LZ projection (arXiv:1802.06039, median)"),
}

COMPARISON_COLUMNS = ["mass_GeV", "lzflow_cm2", "reference_cm2", "ratio", "published_cm2", "ratio_published"]


@dataclass(frozen=True)
class Reference:
    """A published median sensitivity curve and the numbers quoted with it."""

    name: str
    label: str
    interaction: str
    source: str  #: the comment lines of the curve file
    mass_GeV: np.ndarray
    sigma_cm2: np.ndarray
    points: tuple[tuple[float, float], ...]  #: (mass, σ) quoted by the paper for this interaction


def _read(filename: str) -> tuple[list[str], list[dict[str, str]]]:
    text = resources.files("lzflow").joinpath("data", "references", filename).read_text()
    comments = [line[1:].strip() for line in text.splitlines() if line.startswith("#")]
    rows = list(csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#")))
    return comments, rows


def load_reference(name: str) -> Reference:
    """The reference ``name`` (one of :data:`REFERENCES`)."""
    if name not in REFERENCES:
        raise ConfigError(f"reference: {name!r} is not a shipped reference; expected one of {', '.join(REFERENCES)}")
    curve_file, points_file, interaction, label = REFERENCES[name]
    comments, rows = _read(curve_file)
    _, point_rows = _read(points_file)
    mass = np.array([float(r["mass_GeV"]) for r in rows])
    sigma = np.array([float(r["sigma_cm2"]) for r in rows])
    if not (np.all(np.diff(mass) > 0) and np.all(sigma > 0)):
        raise ValueError(f"{curve_file}: masses must increase and cross sections be positive")
    points = tuple((float(r["mass_GeV"]), float(r["sigma_cm2"])) for r in point_rows if r["interaction"] == interaction)
    return Reference(name, label, interaction, " ".join(comments), mass, sigma, points)


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
