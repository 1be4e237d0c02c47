r"""β-decay spectra: Fermi function, allowed / unique-first-forbidden single-β shapes (⁸⁵Kr, ²¹⁴Pb,
²¹²Pb "naked" β), and the ¹³⁶Xe two-neutrino double-β (2νββ) summed-electron spectrum.

Single β (kinetic energy :math:`T`, total energy :math:`W = 1 + T/m_e`, momentum
:math:`p = \sqrt{W^2-1}`, endpoint :math:`W_0 = 1 + Q/m_e`, all in :math:`m_e` units):

.. math:: \frac{dN}{dT} \propto F(Z', W)\, p\, W\, (W_0 - W)^2\, C(W),

with :math:`C = 1` (allowed) or :math:`C = p^2 + (W_0-W)^2` (unique first forbidden, e.g. ⁸⁵Kr
9/2⁺ → 5/2⁻; Konopinski 1966). :math:`F` is the relativistic Fermi function for a uniformly charged
nucleus evaluated at its radius :math:`R = 1.2 A^{1/3}` fm (e.g. Wilkinson, NIM A 275 (1989) 378;
Hayen et al., RMP 90 (2018) 015008, eq. 13):

.. math:: F(Z', W) = 2(1+\gamma)(2pR)^{2(\gamma-1)} e^{\pi\eta}
          \frac{|\Gamma(\gamma+i\eta)|^2}{\Gamma(2\gamma+1)^2}, \quad
          \gamma = \sqrt{1-(\alpha Z')^2},\ \eta = \pm\alpha Z' W/p,

(+ for β⁻, − for β⁺; :math:`Z'` = daughter charge). At low :math:`T`, :math:`F p \to` const, so
the β spectra used here are flat to a few per cent below 20 keV, as physics.md §4 expects.

2νββ summed kinetic energy :math:`K = T_1 + T_2` of the two electrons. With the closure
approximation and the lepton phase space of Primakoff & Rosen (Rep. Prog. Phys. 22 (1959) 121),
integrating out the two neutrinos:

.. math:: \frac{dN}{dK} \propto (T_0 - K)^5 \int_0^K dT_1\,
          F(Z', W_1) p_1 W_1\; F(Z', W_2) p_2 W_2, \qquad T_2 = K - T_1,\ T_0 = Q_{\beta\beta}/m_e .

* ``method="primakoff_rosen"``: the classic closed form, obtained with the non-relativistic
  Coulomb factor :math:`F \propto W/p`:
  :math:`dN/dK \propto K (T_0-K)^5 (1 + 2K + \tfrac43 K^2 + \tfrac13 K^3 + \tfrac1{30} K^4)`.
* ``method="fermi"`` (default): the same phase-space integral evaluated numerically with the
  relativistic Fermi function above (Z' = 56). At a few keV each electron's Coulomb enhancement
  relative to the MeV region is larger than in the non-relativistic form, and the rate in
  1.5–6.5 keV is 1.24× the closed form.

Both rise ∝ K at low energy. The absolute rate uses :math:`T_{1/2}` and the ¹³⁶Xe abundance.

.. warning:: **Cross-check with the LZ projection table (arXiv:1802.06039).** For 15.3 t·yr and
   1.5–6.5 keV this module gives 46 counts (``"fermi"``) or 37 (``"primakoff_rosen"``) whereas
   LZ lists 67. The low-energy tail of 2νββ is sensitive to the electron wave functions (exact
   Dirac solutions with finite size and screening, Kotila & Iachello PRC 85 (2012) 034316) and to
   SSD/HSD nuclear assumptions, none of which are modelled here; the table's number may also
   include energy-resolution smearing. The analysis should therefore normalise vvBB from
   configuration (the table's 67 counts) and use this module for the *shape* and as an
   order-of-magnitude check.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
from scipy.special import gammaln, loggamma

from ._integrate import integrate
from .constants import ALPHA_EM, ELECTRON_MASS_KEV, HBARC_KEV_FM, xe_atoms_per_tonne

__all__ = [
    "fermi_function",
    "beta_spectrum",
    "normalised_beta_spectrum",
    "primakoff_rosen",
    "vvbb_fermi_shape",
    "vvbb_spectrum",
    "vvbb_rate",
    "BETA_EMITTERS",
    "XE136_HALF_LIFE_YR",
    "XE136_ABUNDANCE",
    "XE136_QBB_KEV",
]

#: β emitters of the LZ background model: name → (Q keV, daughter Z, daughter A, forbiddenness).
#: Q values (ground-state transitions) from ENSDF / NNDC; ⁸⁵Kr is unique first forbidden
#: (9/2⁺ → 5/2⁻, 99.56 %), the Pb ground-state transitions are treated as allowed.
BETA_EMITTERS: dict[str, tuple[float, int, int, str]] = {
    "Kr85": (687.0, 37, 85, "unique_first"),
    "Pb214": (1019.0, 83, 214, "allowed"),  # Rn222 chain
    "Pb212": (570.0, 83, 212, "allowed"),  # Rn220 chain
}

#: ¹³⁶Xe 2νββ half-life (yr; EXO-200, PRC 89 (2014) 015502) and natural abundance (atom fraction).
XE136_HALF_LIFE_YR = 2.165e21
XE136_ABUNDANCE = 0.08857
#: ¹³⁶Xe double-β Q value (keV; Redshaw et al., PRL 98 (2007) 053003).
XE136_QBB_KEV = 2458.0

_FM_PER_ME = HBARC_KEV_FM / ELECTRON_MASS_KEV  # reduced Compton wavelength, 386.16 fm


def fermi_function(
    T_keV: np.ndarray, Z_daughter: int, A: int, beta_plus: bool = False
) -> np.ndarray:
    """Relativistic Fermi function F(Z', W) (see module docstring) at electron/positron kinetic
    energy ``T_keV``; ``A`` sets the nuclear radius R = 1.2 A^(1/3) fm. Returns 1 for Z' = 0."""
    T = np.clip(np.asarray(T_keV, dtype=float), 1e-6, None)
    if Z_daughter == 0:
        return np.ones_like(T)
    W = 1.0 + T / ELECTRON_MASS_KEV
    p = np.sqrt(W * W - 1.0)
    aZ = ALPHA_EM * Z_daughter
    gamma = np.sqrt(1.0 - aZ * aZ)
    eta = (-1.0 if beta_plus else 1.0) * aZ * W / p
    R = 1.2 * A ** (1.0 / 3.0) / _FM_PER_ME
    logF = (
        np.log(2.0 * (1.0 + gamma))
        + 2.0 * (gamma - 1.0) * np.log(2.0 * p * R)
        + np.pi * eta
        + 2.0 * np.real(loggamma(gamma + 1j * eta))
        - 2.0 * gammaln(2.0 * gamma + 1.0)
    )
    return np.exp(logF)


def beta_spectrum(
    T_keV: np.ndarray,
    Q_keV: float,
    Z_daughter: int,
    A: int,
    forbiddenness: Literal["allowed", "unique_first"] = "allowed",
    beta_plus: bool = False,
) -> np.ndarray:
    """Unnormalised single-β kinetic-energy spectrum dN/dT (arbitrary units), zero outside
    0 < T < Q."""
    T = np.asarray(T_keV, dtype=float)
    inside = (T > 0) & (T < Q_keV)
    Tc = np.clip(np.where(inside, T, 1.0), 1e-6, Q_keV)
    W = 1.0 + Tc / ELECTRON_MASS_KEV
    W0 = 1.0 + Q_keV / ELECTRON_MASS_KEV
    p = np.sqrt(W * W - 1.0)
    q = W0 - W
    shape = fermi_function(Tc, Z_daughter, A, beta_plus) * p * W * q * q
    if forbiddenness == "unique_first":
        shape = shape * (p * p + q * q)
    elif forbiddenness != "allowed":
        raise ValueError(
            f"forbiddenness must be 'allowed' or 'unique_first', got {forbiddenness!r}"
        )
    return np.where(inside, shape, 0.0)


@lru_cache(maxsize=32)
def _beta_norm(Q_keV: float, Z: int, A: int, forbiddenness: str, beta_plus: bool) -> float:
    return integrate(
        lambda t: beta_spectrum(t, Q_keV, Z, A, forbiddenness, beta_plus), 0.0, Q_keV,
        n_panels=256,
    )


def normalised_beta_spectrum(T_keV: np.ndarray, emitter: str) -> np.ndarray:
    """Spectrum of one of :data:`BETA_EMITTERS`, unit integral over [0, Q] (per keV)."""
    Q, Z, A, forb = BETA_EMITTERS[emitter]
    return beta_spectrum(T_keV, Q, Z, A, forb) / _beta_norm(Q, Z, A, forb, False)


def primakoff_rosen(T_keV: np.ndarray, Q_keV: float = XE136_QBB_KEV) -> np.ndarray:
    """Unnormalised Primakoff–Rosen 2νββ summed-electron spectrum (module docstring)."""
    T = np.asarray(T_keV, dtype=float)
    K = np.clip(np.where(np.isfinite(T), T, 0.0), 0.0, Q_keV) / ELECTRON_MASS_KEV
    T0 = Q_keV / ELECTRON_MASS_KEV
    poly = 1.0 + 2.0 * K + 4.0 / 3.0 * K**2 + K**3 / 3.0 + K**4 / 30.0
    return np.where((T > 0) & (T < Q_keV), K * (T0 - K) ** 5 * poly, 0.0)


@lru_cache(maxsize=8)
def _pr_norm_keV(Q_keV: float) -> float:
    """Exact integral of :func:`primakoff_rosen` over [0, Q] in keV (polynomial integration)."""
    P = np.polynomial.Polynomial
    T0 = Q_keV / ELECTRON_MASS_KEV
    integrand = P([0.0, 1.0]) * P([T0, -1.0]) ** 5 * P([1.0, 2.0, 4.0 / 3.0, 1.0 / 3.0, 1.0 / 30.0])
    anti = integrand.integ()
    return float((anti(T0) - anti(0.0)) * ELECTRON_MASS_KEV)


def _pwf(T_keV: np.ndarray, Z: int = 56, A: int = 136) -> np.ndarray:
    """F(Z', W) p W for one electron of kinetic energy ``T_keV`` (β⁻, Z' = 56 for ¹³⁶Xe)."""
    T = np.clip(T_keV, 1e-9, None)
    W = 1.0 + T / ELECTRON_MASS_KEV
    return fermi_function(T, Z, A) * np.sqrt(W * W - 1.0) * W


def _coulomb_convolution(K_keV: np.ndarray, order: int = 48) -> np.ndarray:
    """G(K) = (1/K) ∫_0^K F p W(T1) · F p W(K − T1) dT1 (Gauss–Legendre), K > 0."""
    x, w = np.polynomial.legendre.leggauss(order)
    K = np.asarray(K_keV, dtype=float)[..., None]
    t1 = 0.5 * K * (x + 1.0)
    return 0.5 * np.sum(w * _pwf(t1) * _pwf(K - t1), axis=-1)


@lru_cache(maxsize=4)
def _fermi_table(Q_keV: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Tabulated G(K) on a log+linear grid and the normalisation of K (Q−K)^5 G(K) (keV)."""
    K = np.unique(np.concatenate([np.geomspace(1e-4, 50.0, 600), np.linspace(50.0, Q_keV, 800)]))
    G = _coulomb_convolution(K)

    def f(t: np.ndarray) -> np.ndarray:
        return t * (Q_keV - t) ** 5 * np.interp(t, K, G)

    norm = integrate(f, 0.0, Q_keV, n_panels=256)
    return K, G, norm


def vvbb_fermi_shape(T_keV: np.ndarray, Q_keV: float = XE136_QBB_KEV) -> np.ndarray:
    """2νββ summed-energy spectrum with relativistic Fermi functions, unit integral (per keV)."""
    T = np.asarray(T_keV, dtype=float)
    K, G, norm = _fermi_table(Q_keV)
    Tc = np.clip(np.where(np.isfinite(T), T, 0.0), 0.0, Q_keV)
    val = Tc * (Q_keV - Tc) ** 5 * np.interp(Tc, K, G) / norm
    return np.where((T > 0) & (T < Q_keV), val, 0.0)


def vvbb_spectrum(
    T_keV: np.ndarray,
    Q_keV: float = XE136_QBB_KEV,
    method: Literal["fermi", "primakoff_rosen"] = "fermi",
) -> np.ndarray:
    """2νββ summed-energy spectrum normalised to unit integral over [0, Q] (per keV)."""
    if method == "fermi":
        return vvbb_fermi_shape(T_keV, Q_keV)
    if method == "primakoff_rosen":
        return primakoff_rosen(T_keV, Q_keV) / _pr_norm_keV(Q_keV)
    raise ValueError(f"method must be 'fermi' or 'primakoff_rosen', got {method!r}")


def vvbb_rate(
    T_keV: np.ndarray,
    half_life_yr: float = XE136_HALF_LIFE_YR,
    abundance: float = XE136_ABUNDANCE,
    method: Literal["fermi", "primakoff_rosen"] = "fermi",
) -> np.ndarray:
    r"""¹³⁶Xe 2νββ rate in natural xenon, events / (tonne · year · keV):
    :math:`N_{136}\,\ln 2/T_{1/2}\; \hat f(T)`, with :math:`N_{136}` = 4.06e26 per tonne of
    natural Xe (8.857 %), i.e. 1.30e5 decays / (t · yr) in total."""
    decays_per_t_yr = xe_atoms_per_tonne(abundance) * np.log(2.0) / half_life_yr
    return decays_per_t_yr * vvbb_spectrum(T_keV, method=method)
