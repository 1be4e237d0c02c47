"""The analysis space and the NEST interaction types: what every stage from response to fit shares.

* :data:`INTERACTIONS` — the NEST interaction types that get a response matrix (``NR`` for WIMPs,
  CEvNS and neutrons; ``beta`` for β decays, 2νββ and ν–e scattering; ``gammaRay`` for Compton γ),
  their frozen ``nestpy.interactions`` codes :data:`TYPE_CODES` and :func:`canonical_interaction`;
* charge-scaled β models ``beta_Q<Q>`` (:func:`scaled_beta`, :func:`base_interaction`,
  :func:`charge_yield_scale`): NEST's β yields with the charge yield × Q and the quanta conserved,
  for lines whose vacancy cascade recombines more than a β (electron captures); each used Q gets
  its own response matrix (``backgrounds.<name>.nest_yields: {model: beta, charge_yield_scale: Q}``);
* :class:`AnalysisSpace` — binning and cuts of the (cS1, log10 cS2) analysis space (the ROI).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

__all__ = ["INTERACTIONS", "TYPE_CODES", "SCALED_BETA_PATTERN", "canonical_interaction", "scaled_beta",
           "base_interaction", "charge_yield_scale", "AnalysisSpace"]

#: NEST interaction types that get a response matrix.
INTERACTIONS: tuple[str, ...] = ("NR", "beta", "gammaRay")
#: NEST's enum values (``nestpy.interactions``), frozen here so seeds never depend on nestpy.
TYPE_CODES: dict[str, int] = {"NR": 0, "gammaRay": 7, "beta": 8}

_ALIASES = {
    "nr": "NR", "beta": "beta", "β": "beta", "gammaray": "gammaRay", "gamma": "gammaRay", "γ": "gammaRay",
}


#: Name of a charge-scaled β model: ``beta_Q`` and Q written with :func:`scaled_beta` (0 < Q < 1).
SCALED_BETA_PATTERN = r"beta_Q0\.[0-9]+"


def scaled_beta(q: float) -> str:
    """The interaction name of NEST's β model with its charge yield scaled by ``q`` (0 < q < 1):
    ``beta_Q`` + ``format(q, "g")``, e.g. ``beta_Q0.71``."""
    q = float(q)
    if not 0.0 < q < 1.0:
        raise ValueError(f"charge_yield_scale {q!r}; expected 0 < Q < 1 (Q = 1 is the beta model itself)")
    name = f"beta_Q{q:g}"
    if re.fullmatch(SCALED_BETA_PATTERN, name) is None:
        raise ValueError(f"charge_yield_scale {q!r}; expected a plain decimal such as 0.71")
    return name


def charge_yield_scale(interaction: str) -> float:
    """Q of a charge-scaled β model (``beta_Q0.71`` → 0.71); 1 for every other interaction."""
    return float(interaction[len("beta_Q"):]) if re.fullmatch(SCALED_BETA_PATTERN, str(interaction)) else 1.0


def base_interaction(interaction: Any) -> str:
    """The NEST interaction type NEST runs: ``beta`` for a charge-scaled β model, else
    :func:`canonical_interaction`."""
    return "beta" if re.fullmatch(SCALED_BETA_PATTERN, str(interaction)) else canonical_interaction(interaction)


def canonical_interaction(interaction: Any) -> str:
    """``"NR"``, ``"beta"`` or ``"gammaRay"`` from a name (any case, ``gamma`` accepted) or a
    ``nestpy.interactions`` member; a charge-scaled β model's name (``beta_Q0.71``) as
    :func:`scaled_beta` writes it."""
    name = getattr(interaction, "name", interaction)
    if re.fullmatch(SCALED_BETA_PATTERN, str(name)):
        return scaled_beta(float(str(name)[len("beta_Q"):]))
    try:
        return _ALIASES[str(name).lower()]
    except KeyError:
        raise ValueError(f"interaction {interaction!r}: expected one of {', '.join(INTERACTIONS)}") from None


@dataclass(frozen=True)
class AnalysisSpace:
    """Binning and region of interest of the (cS1, log10 cS2) analysis space.

    An event is in the ROI when: S1 coincidence ``s1_nhits_thr >= coinLevel`` (from the detector),
    raw S2 ``s2r_phd >= s2_raw_min_phd``, ``cs1_min <= cS1 < cs1_max`` and
    ``log10cs2_min <= log10 cS2 < log10cs2_max`` (all values finite). The histogram axes are
    regular over exactly these ranges.
    """

    cs1_min: float = 3.0
    cs1_max: float = 80.0
    cs1_bins: int = 40
    log10cs2_min: float = 2.5
    log10cs2_max: float = 5.0
    log10cs2_bins: int = 40
    s2_raw_min_phd: float = 600.0

    def __post_init__(self) -> None:
        if not (self.cs1_min < self.cs1_max and self.log10cs2_min < self.log10cs2_max):
            raise ValueError(f"AnalysisSpace: empty range in {self}")
        if self.cs1_bins < 1 or self.log10cs2_bins < 1:
            raise ValueError(f"AnalysisSpace: need >= 1 bin per axis, got {self}")

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.cs1_bins), int(self.log10cs2_bins))

    @property
    def cs1_edges(self) -> np.ndarray:
        return np.linspace(self.cs1_min, self.cs1_max, int(self.cs1_bins) + 1)

    @property
    def log10cs2_edges(self) -> np.ndarray:
        return np.linspace(self.log10cs2_min, self.log10cs2_max, int(self.log10cs2_bins) + 1)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "cs1_min": float(self.cs1_min), "cs1_max": float(self.cs1_max), "cs1_bins": int(self.cs1_bins),
            "log10cs2_min": float(self.log10cs2_min), "log10cs2_max": float(self.log10cs2_max),
            "log10cs2_bins": int(self.log10cs2_bins), "s2_raw_min_phd": float(self.s2_raw_min_phd),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AnalysisSpace":
        """Accept :meth:`to_dict`'s flat form or the config's ``pdf`` section
        (``cs1_phd: {min, max, bins}``, ``log10_cs2_phd: {min, max, bins}``, ``s2_raw_min_phd``)."""
        if "cs1_phd" in d:
            c, s = d["cs1_phd"], d["log10_cs2_phd"]
            return cls(float(c["min"]), float(c["max"]), int(c["bins"]),
                       float(s["min"]), float(s["max"]), int(s["bins"]), float(d["s2_raw_min_phd"]))
        return cls(**{k: d[k] for k in cls().to_dict()})

    def bin_events(self, cs1: np.ndarray, log10cs2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(in_range mask, cS1 bin index, log10cS2 bin index) for events; indices valid where mask."""
        nx, ny = self.shape
        with np.errstate(invalid="ignore"):
            ok = (np.isfinite(cs1) & np.isfinite(log10cs2) & (cs1 >= self.cs1_min) & (cs1 < self.cs1_max)
                  & (log10cs2 >= self.log10cs2_min) & (log10cs2 < self.log10cs2_max))
        ix = np.zeros(cs1.shape, dtype=np.int64)
        iy = np.zeros(cs1.shape, dtype=np.int64)
        ix[ok] = np.minimum(((cs1[ok] - self.cs1_min) * (nx / (self.cs1_max - self.cs1_min))).astype(np.int64), nx - 1)
        iy[ok] = np.minimum(
            ((log10cs2[ok] - self.log10cs2_min) * (ny / (self.log10cs2_max - self.log10cs2_min))).astype(np.int64),
            ny - 1)
        return ok, ix, iy
