r"""Nuclear physics shared by the WIMP and CEvNS spectra: Helm form factor and xenon targets.

Helm form factor (Helm 1956; parametrisation of Lewin & Smith, Astropart. Phys. 6 (1996) 87,
as recommended by Baxter et al., arXiv:2105.00599 §3):

.. math::

    F(q) = \frac{3 j_1(q r_n)}{q r_n} e^{-q^2 s^2/2}, \qquad
    r_n^2 = c^2 + \tfrac{7}{3}\pi^2 a^2 - 5 s^2,

with :math:`c = 1.23 A^{1/3} - 0.60` fm, :math:`a = 0.52` fm, :math:`s = 0.9` fm and momentum
transfer :math:`q = \sqrt{2 m_N E_R}` (natural units; divided by :math:`\hbar c` to get fm⁻¹).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import AMU_GEV, HBARC_KEV_FM, XE_ISOTOPES, XE_MOLAR_MASS_G, XE_Z

__all__ = ["Nucleus", "XE_NATURAL", "XE_AVERAGE", "helm_form_factor_sq", "spherical_j1_over_x"]


@dataclass(frozen=True)
class Nucleus:
    """A target nucleus: mass number ``A`` (may be non-integer for the averaged target), proton
    number ``Z``, nuclear mass in GeV/c² and abundance (fraction of atoms)."""

    A: float
    Z: int
    mass_GeV: float
    abundance: float = 1.0

    @property
    def N(self) -> float:
        """Neutron number A − Z."""
        return self.A - self.Z


#: Natural xenon as nine isotopes (masses = atomic mass × u; electron masses are irrelevant here).
XE_NATURAL: tuple[Nucleus, ...] = tuple(
    Nucleus(A=float(a), Z=XE_Z, mass_GeV=m * AMU_GEV, abundance=ab) for a, m, ab in XE_ISOTOPES
)
#: Natural xenon as one averaged nucleus, A = 131.293, m_N = A·u (the ``wimprates`` convention).
XE_AVERAGE: tuple[Nucleus, ...] = (
    Nucleus(A=XE_MOLAR_MASS_G, Z=XE_Z, mass_GeV=XE_MOLAR_MASS_G * AMU_GEV, abundance=1.0),
)


def spherical_j1_over_x(x: np.ndarray) -> np.ndarray:
    r""":math:`3 j_1(x)/x = 3(\sin x - x\cos x)/x^3`, with its Taylor series below x = 1e-2
    (avoids the cancellation; equals 1 at x = 0)."""
    x = np.asarray(x, dtype=float)
    small = np.abs(x) < 1e-2
    xs = np.where(small, 1.0, x)
    exact = 3.0 * (np.sin(xs) - xs * np.cos(xs)) / xs**3
    x2 = x * x
    series = 1.0 - x2 / 10.0 + x2 * x2 / 280.0
    return np.where(small, series, exact)


def helm_form_factor_sq(E_keV: np.ndarray, A: float, mass_GeV: float) -> np.ndarray:
    r"""Helm form factor squared :math:`F^2(E_R)` for a nucleus of mass number ``A`` and mass
    ``mass_GeV``; ``E_keV`` is the nuclear-recoil energy (keV). Equals 1 at zero recoil."""
    E = np.clip(np.asarray(E_keV, dtype=float), 0.0, None)
    c = 1.23 * A ** (1.0 / 3.0) - 0.60
    a, s = 0.52, 0.9
    rn = np.sqrt(c**2 + (7.0 / 3.0) * np.pi**2 * a**2 - 5.0 * s**2)
    q = np.sqrt(2.0 * mass_GeV * 1.0e6 * E) / HBARC_KEV_FM  # fm^-1
    return spherical_j1_over_x(q * rn) ** 2 * np.exp(-((q * s) ** 2))
