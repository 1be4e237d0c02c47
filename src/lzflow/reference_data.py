"""The registry of published references shipped in ``lzflow/data/references/`` and the reading of
their files (lzflow.references compares a limit curve with them; docs/references.md lists them).

Every file opens with ``#`` comment lines that cite its source precisely (paper, table or figure,
HEPData record, or the public repository, path and commit that holds the numbers, and whether they
were released by the collaboration or digitised) and the check of the paper's headline numbers.

A reference is one curve of a file (:class:`ReferenceSpec`): its ``central`` column is the median
expected sensitivity (``kind="median"``) or the observed limit (``kind="limit"``); where the file
has them, the ±1σ/±2σ bands of the expected sensitivity and the observed limit are drawn with it.
A reference without a curve file holds only the numbers the paper quotes (``kind`` still says
which). NR signal efficiencies vs recoil energy are in :data:`EFFICIENCIES`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .exceptions import ConfigError

__all__ = ["ReferenceSpec", "REFERENCES", "KINDS", "INTERACTIONS", "BAND_COLUMNS", "read_reference_file",
           "EfficiencyReference", "EFFICIENCIES", "load_efficiency_reference"]

KINDS = ("median", "limit")
INTERACTIONS = ("SI", "SD_n", "SD_p")
#: band (N σ, as in lzflow.curve.BAND_COLUMNS) -> column of a reference file
BAND_COLUMNS = {"-2": "m2_cm2", "-1": "m1_cm2", "1": "p1_cm2", "2": "p2_cm2"}

_WS2024_PCL = ("LZ's power-constrained observed limit (HEPData 'limit'; 1-3 % below the -1 sigma edge "
               "at every mass); the unconstrained one is the file's limit_unconstrained_cm2")
_WS2022_PCL = ("the released observed limit carries no -1 sigma power constraint (it lies below the "
               "-1 sigma edge at 13-36 GeV); the abstract's 9.2e-48 cm2 at 36 GeV is not in this table")


@dataclass(frozen=True)
class ReferenceSpec:
    """Where a reference's numbers are and what they are."""

    kind: str  #: "median" (expected sensitivity) or "limit" (observed)
    interaction: str  #: "SI", "SD_n" or "SD_p"
    label: str  #: plot legend
    citation: str  #: one line: paper and where the numbers come from
    curve_file: str | None = None  #: None: only the quoted numbers (``points_file``)
    central: str = "sigma_cm2"  #: column of the reference curve
    points_file: str | None = None  #: numbers quoted by the paper (interaction[, kind], mass_GeV, sigma_cm2)
    bands: bool = False  #: the file has the ±1σ/±2σ columns of :data:`BAND_COLUMNS`
    observed: str | None = None  #: column of the observed limit drawn with a median reference
    power_constraint: str | None = None  #: how the observed limit is power constrained


_P18 = "LZ projection, arXiv:1802.06039 / PRD 101 052002"
_WS22 = "LZ WS2022, arXiv:2207.03764 / PRL 131 041002"
_WS24 = "LZ WS2022+WS2024 (4.2 t yr), arXiv:2410.17036 / PRL 135 011802"

REFERENCES: dict[str, ReferenceSpec] = {
    "lz_projection_2018": ReferenceSpec(
        "median", "SI", "LZ projection (arXiv:1802.06039, median)",
        f"{_P18}: arXiv v1 Fig. 6 digitised (dtemps123/DarkMatterLimits); journal 40 GeV number",
        "lz_projection_2018_si.csv", points_file="lz_projection_2018_points.csv"),
    "lz_projection_2018_sd_n": ReferenceSpec(
        "median", "SD_n", "LZ projection SD-n (PRD 101 052002, 40 GeV)",
        f"{_P18}: abstract of the journal version (no public digitised SD curve)",
        points_file="lz_projection_2018_points.csv"),
    "lz_projection_2018_sd_p": ReferenceSpec(
        "median", "SD_p", "LZ projection SD-p (PRD 101 052002, 40 GeV)",
        f"{_P18}: abstract of the journal version (no public digitised SD curve)",
        points_file="lz_projection_2018_points.csv"),
    "lz_ws2022_si_sensitivity": ReferenceSpec(
        "median", "SI", "LZ WS2022 median sensitivity (arXiv:2207.03764)",
        f"{_WS22}: LZ data-release table (Fig5_SpinIndependentLimitandSensitivity)",
        "lz_ws2022_si.csv", "median_cm2", "lz_ws2022_points.csv", True, "limit_cm2", _WS2022_PCL),
    "lz_ws2022_si_limit": ReferenceSpec(
        "limit", "SI", "LZ WS2022 observed limit (arXiv:2207.03764)",
        f"{_WS22}: LZ data-release table (Fig5_SpinIndependentLimitandSensitivity)",
        "lz_ws2022_si.csv", "limit_cm2", "lz_ws2022_points.csv", power_constraint=_WS2022_PCL),
    "lz_ws2022_sd_n_sensitivity": ReferenceSpec(
        "median", "SD_n", "LZ WS2022 SD-n median sensitivity (arXiv:2207.03764)",
        f"{_WS22}: LZ data-release table (Fig7_SpinDependentneutronLimitandSensitivity)",
        "lz_ws2022_sd_n.csv", "median_cm2", None, True, "limit_cm2", "no -1 sigma power constraint in the table"),
    "lz_ws2022_sd_p_sensitivity": ReferenceSpec(
        "median", "SD_p", "LZ WS2022 SD-p median sensitivity (arXiv:2207.03764)",
        f"{_WS22}: LZ data-release table (Fig8_SpinDependentprotonLimitandSensitivity)",
        "lz_ws2022_sd_p.csv", "median_cm2", None, True, "limit_cm2", "no -1 sigma power constraint in the table"),
    "lz_ws2024_si_sensitivity": ReferenceSpec(
        "median", "SI", "LZ 4.2 t yr median sensitivity (arXiv:2410.17036)",
        f"{_WS24}: HEPData 155182 v2 table 1 (doi:10.17182/hepdata.155182.v2/t1)",
        "lz_ws2024_si.csv", "median_cm2", "lz_ws2024_points.csv", True, "limit_cm2", _WS2024_PCL),
    "lz_ws2024_si_limit": ReferenceSpec(
        "limit", "SI", "LZ 4.2 t yr observed limit (arXiv:2410.17036)",
        f"{_WS24}: HEPData 155182 v2 table 1 (doi:10.17182/hepdata.155182.v2/t1)",
        "lz_ws2024_si.csv", "limit_cm2", "lz_ws2024_points.csv", power_constraint=_WS2024_PCL),
    "lz_ws2024_sd_n_limit": ReferenceSpec(
        "limit", "SD_n", "LZ 4.2 t yr SD-n observed limit (arXiv:2410.17036, digitised)",
        f"{_WS24}: figure digitised by C. O'Hare (cajohare/DirectDetectionPlots)",
        "lz_ws2024_sd_n_limit.csv", "limit_cm2"),
    "lz_ws2024_sd_p_limit": ReferenceSpec(
        "limit", "SD_p", "LZ 4.2 t yr SD-p observed limit (arXiv:2410.17036, digitised)",
        f"{_WS24}: figure digitised by C. O'Hare (cajohare/DirectDetectionPlots)",
        "lz_ws2024_sd_p_limit.csv", "limit_cm2"),
}


def read_reference_file(filename: str) -> tuple[list[str], list[dict[str, str]]]:
    """(comment lines without the ``#``, rows as dicts) of a file in ``lzflow/data/references/``."""
    text = resources.files("lzflow").joinpath("data", "references", filename).read_text()
    comments = [line[1:].strip() for line in text.splitlines() if line.startswith("#")]
    rows = list(csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#")))
    return comments, rows


@dataclass(frozen=True)
class EfficiencyReference:
    """A published (or recast) NR signal efficiency vs true recoil energy."""

    name: str
    label: str
    cuts: str  #: what the efficiency includes
    source: str  #: the comment lines of the file
    energy_keV: np.ndarray
    efficiency: np.ndarray


#: name -> (file, label, what the efficiency includes)
EFFICIENCIES: dict[str, tuple[str, str, str]] = {
    "lz_ws2022_nr_efficiency_ddcalc": (
        "lz_ws2022_nr_efficiency_ddcalc.csv", "LZ WS2022 NR efficiency (DDCalc recast, not LZ's table)",
        "total: detection threshold x selection cuts x ROI (cS1 < 80 phd upper edge), as in DDCalc's LZ_2022"),
}


def load_efficiency_reference(name: str) -> EfficiencyReference:
    """The NR signal efficiency ``name`` (one of :data:`EFFICIENCIES`): energy_keV (increasing) and
    efficiency (in [0, 1]) arrays."""
    if name not in EFFICIENCIES:
        raise ConfigError(f"efficiency reference: {name!r} is not shipped; expected one of {', '.join(EFFICIENCIES)}")
    filename, label, cuts = EFFICIENCIES[name]
    comments, rows = read_reference_file(filename)
    energy = np.array([float(r["energy_keV"]) for r in rows])
    eff = np.array([float(r["efficiency"]) for r in rows])
    if not (np.all(np.diff(energy) > 0) and np.all((eff >= 0) & (eff <= 1))):
        raise ValueError(f"{filename}: energies must increase and efficiencies lie in [0, 1]")
    return EfficiencyReference(name, label, cuts, " ".join(comments), energy, eff)
