"""The integer key of a WIMP mass in seeds and run numbers (light: imported at config time)."""

from __future__ import annotations

__all__ = ["mass_key"]


def mass_key(mass_gev: float) -> int:
    """Integer seed component of a WIMP mass: ``round(mass_GeV × 10⁴)`` (0.1 MeV resolution)."""
    key = int(round(float(mass_gev) * 1e4))
    if key < 0:
        raise ValueError("mass must be non-negative")
    return key
