r"""The discovery limit versus exposure and the neutrino fog (O'Hare, PRL 127 (2021) 251802,
arXiv:2109.03116), on lzflow's binned likelihood (:mod:`lzflow.stats.model`) with the neutrino
fluxes as Gaussian-constrained nuisance parameters.

Discovery limit
---------------
The smallest cross section σ_DL(MT) for which an experiment of exposure MT makes a ``z``σ
discovery (q₀ ≥ z²) with probability ``probability`` (default 90 % at 3σ, issue 14). Asimov fast
path (Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727, Eqs. 12, 53, 97): under S+B at μ the
statistic √q₀ is normal with mean √q₀,A(μ) and unit width, so

    P(q₀ ≥ z² | μ) = Φ(√q₀,A(μ) − z) = P   ⇔   √q₀,A(μ) = z + Φ⁻¹(P)

(= 4.2816 for z = 3, P = 0.9; = 3 for P = 0.5, the *median* discovery limit O'Hare uses). μ is
solved by :func:`lzflow.stats.asymptotic.discovery_potential` on the model at exposure MT, whose
templates are the per-t·yr templates × MT (signal and backgrounds alike; the constraint widths
are relative and do not shrink with exposure: an external flux measurement). σ_DL = μ σ_ref.

Gradient index (O'Hare Eq. 3): n = −(d ln σ_DL / d ln MT)⁻¹, by central differences in ln MT
(one-sided at the ends): n = 1 background-free, n = 2 Poisson background-limited, n > 2 once
the background's systematic uncertainty saturates the limit (the fog). The *floor* in O'Hare's
published definition (``Floor_2D`` in NeutrinoFog ``src/Like.py``): per mass, the largest σ on
the discovery-limit curve at which n reaches 2 (median 3σ discovery, exposures ≤ 1e10 t·yr).

Models
------
* :func:`ideal_fog_model` — O'Hare's ideal xenon detector: perfect energy resolution, 100 %
  efficiency above a recoil threshold (default 1e-4 keV and 200 keV top, 50 log bins: NeutrinoFog
  ``src/runNuFloor_SI.py``), only neutrino backgrounds: CEvNS of every source of
  :data:`lzflow.spectra.neutrino.NEUTRINO_SOURCES` (pp, pep, ⁷Be, ¹³N, ⁸B, hep, DSNB, atmospheric;
  O'Hare also has ¹⁵O, ¹⁷F, geo and reactor ν, which matter below ~1 GeV only), each with its flux
  uncertainty :data:`FLUX_UNCERTAINTY`. WIMP SI rate :func:`lzflow.spectra.wimp.wimp_rate`.
* :func:`workspace_fog_model` — LZ-like: an analysis's workspace (templates in (cS1, log10 cS2)
  for the workspace's exposure, every background with the workspace's constraint: the neutrino
  ones ⁸B, hep, atm, DSN, solar ν–e "pp" with the analysis's flux uncertainties) divided by the
  workspace's exposure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from .exceptions import ConfigError
from .spectra.neutrino import NEUTRINO_SOURCES, cevns_rate
from .spectra.wimp import HaloModel, wimp_rate
from .stats.asymptotic import discovery_potential
from .stats.model import BinnedModel

__all__ = [
    "FLUX_UNCERTAINTY",
    "FOG_COLUMNS",
    "OHARE_FLOOR_CSV",
    "OHARE_HALO",
    "FogCurve",
    "FogModel",
    "default_exposures",
    "discovery_limit",
    "floor_at_n",
    "fog_curve",
    "fog_rows",
    "gradient_index",
    "ideal_fog_model",
    "load_ohare_floor",
    "spot_check",
    "workspace_fog_model",
    "z_required",
]

#: Relative flux uncertainties of O'Hare's neutrino fog, NeutrinoFog ``src/Params.py`` ``NuUnc``
#: (github.com/cajohare/NeutrinoFog, commit 0df3d0cd2322602dc147a66d94055f7f64879d80): solar from the
#: B16-GS98 SSM (Vinyoles et al., ApJ 835 (2017) 202) + Bergström et al. global fit (JHEP 03 (2016) 132),
#: DSNB and atmospheric as in O'Hare's paper. The code has hep 30 % and atm 25 % (the issue quoted
#: 15 % and 20 %); the code's values are the ones his published floor was computed with.
FLUX_UNCERTAINTY: dict[str, float] = {
    "pp": 0.006, "pep": 0.01, "hep": 0.30, "Be7_384": 0.06, "Be7_862": 0.06, "B8": 0.02, "N13": 0.15,
    "DSN": 0.50, "atm": 0.25,
}
#: The SHM of O'Hare's WIMP rate (NeutrinoFog ``src/WIMPFuncs.py`` ``MeanInverseSpeed_SHM`` defaults:
#: σ_v = 167 km/s → v0 = 236.2 km/s, v_esc = 533 km/s, v_lab = 245.6 km/s; ρ0 = 0.3 GeV/cm³)
OHARE_HALO = HaloModel(rho_GeV_cm3=0.3, v0_km_s=167.0 * np.sqrt(2.0), vesc_km_s=533.0, v_earth_fixed_km_s=245.6)
#: the published SI xenon floor shipped with lzflow (its header names the source)
OHARE_FLOOR_CSV = "ohare2021_xe_si_floor.csv"
_SUB = 16  # integration points per bin (geometric) for the ideal detector's binned rates


@dataclass(frozen=True)
class FogModel:
    """Per-t·yr templates of one mass: ``signal`` (at ``sigma_ref_cm2``) and ``backgrounds``
    ``(n_bkg, n_bins)`` in events / (t·yr), their names and relative constraint widths."""

    mass_GeV: float
    signal: np.ndarray
    backgrounds: np.ndarray
    names: tuple[str, ...]
    rel_unc: np.ndarray
    sigma_ref_cm2: float
    kind: str
    meta: dict = field(default_factory=dict)

    def at_exposure(self, exposure_t_yr: float) -> BinnedModel:
        """The binned model of an experiment of ``exposure_t_yr``."""
        e = float(exposure_t_yr)
        return BinnedModel(self.signal * e, self.backgrounds * e, self.names, self.rel_unc)


def _binned(rate, edges: np.ndarray) -> np.ndarray:
    """∫ rate dE over each bin (trapezoid on ``_SUB`` geometric points per bin)."""
    out = np.empty(edges.size - 1)
    for k in range(out.size):
        e = np.geomspace(edges[k], edges[k + 1], _SUB)
        out[k] = np.trapezoid(rate(e), e)
    return out


def ideal_fog_model(mass_GeV: float, threshold_keV: float = 1e-4, e_max_keV: float = 200.0, n_bins: int = 50,
                    sources: Sequence[str] | None = None, halo: HaloModel = OHARE_HALO,
                    sigma_ref_cm2: float = 1e-45,
                    flux_uncertainty: Mapping[str, float] = FLUX_UNCERTAINTY) -> FogModel:
    """O'Hare's ideal xenon detector (module docstring): ``n_bins`` log bins of recoil energy from
    ``threshold_keV`` to ``e_max_keV``, CEvNS of ``sources`` (default: every source of
    ``flux_uncertainty``), templates per t·yr."""
    if not 0 < threshold_keV < e_max_keV:
        raise ConfigError(f"threshold_keV {threshold_keV}: expected 0 < threshold < e_max_keV = {e_max_keV}")
    if n_bins < 1:
        raise ConfigError(f"n_bins {n_bins}: expected ≥ 1")
    names = tuple(flux_uncertainty) if sources is None else tuple(sources)
    for s in names:
        if s not in NEUTRINO_SOURCES or s not in flux_uncertainty:
            raise ConfigError(f"sources: {s!r} is not a neutrino source with a flux uncertainty "
                              f"({', '.join(flux_uncertainty)})")
    edges = np.geomspace(threshold_keV, e_max_keV, n_bins + 1)
    sig = _binned(lambda e: wimp_rate(e, mass_GeV, sigma_ref_cm2, halo), edges)
    bkg = np.stack([_binned(lambda e, s=s: cevns_rate(e, s), edges) for s in names])
    keep = bkg.sum(axis=1) > 0  # a source with no recoil above threshold carries no information
    return FogModel(float(mass_GeV), sig, bkg[keep], tuple(n for n, k in zip(names, keep) if k),
                    np.array([flux_uncertainty[n] for n, k in zip(names, keep) if k]), sigma_ref_cm2, "ideal",
                    {"threshold_keV": threshold_keV, "e_max_keV": e_max_keV, "n_bins": n_bins,
                     "halo": {"rho_GeV_cm3": halo.rho_GeV_cm3, "v0_km_s": halo.v0_km_s,
                              "vesc_km_s": halo.vesc_km_s, "v_earth_km_s": halo.v_earth_km_s}})


def workspace_fog_model(ws: Mapping[str, Any], exposure_t_yr: float) -> FogModel:
    """The LZ-like model of a workspace document made for ``exposure_t_yr`` (module docstring).
    Shape systematics are refused (their templates are not yet scaled with exposure)."""
    from .workspace import workspace_model

    if not exposure_t_yr > 0:
        raise ConfigError(f"exposure_t_yr {exposure_t_yr}: expected the workspace's exposure > 0 t*yr")
    if ws.get("shape_systematics"):
        raise ConfigError("workspace: shape_systematics are not supported by lzflow fog (rate nuisances only); "
                          "use a workspace without a systematics: block")
    m = workspace_model(ws)
    e = float(exposure_t_yr)
    return FogModel(float(ws["mass_GeV"]), m.signal / e, m.backgrounds / e, m.names, np.asarray(m.rel_unc),
                    float(ws["sigma_ref_cm2"]), "workspace", {"workspace_exposure_t_yr": e, "n_bins": m.n_bins})


def z_required(z: float = 3.0, probability: float = 0.9) -> float:
    """√q₀,A at which P(q₀ ≥ z²) = ``probability`` (module docstring): z + Φ⁻¹(P)."""
    if not 0 < probability < 1:
        raise ConfigError(f"probability {probability}: expected between 0 and 1")
    return float(z + norm.ppf(probability))


def discovery_limit(fm: FogModel, exposure_t_yr: float, z: float = 3.0, probability: float = 0.9) -> float:
    """σ_DL (cm²) at ``exposure_t_yr`` (Asimov, module docstring); inf for an empty signal."""
    mu = discovery_potential(fm.at_exposure(exposure_t_yr), z=z_required(z, probability))
    return float(mu * fm.sigma_ref_cm2)


def gradient_index(exposures: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """n = −(d ln σ / d ln MT)⁻¹ by (non-uniform) central differences in ln MT."""
    x, y = np.log(np.asarray(exposures, float)), np.log(np.asarray(sigma, float))
    slope = np.gradient(y, x)
    with np.errstate(divide="ignore"):
        return np.where(slope < 0, -1.0 / slope, np.inf)


@dataclass
class FogCurve:
    """One mass: σ_DL and n at each exposure."""

    mass_GeV: float
    exposures: np.ndarray
    sigma: np.ndarray
    n: np.ndarray


def default_exposures(n: int = 30, lo: float = 0.1, hi: float = 1e4) -> np.ndarray:
    """``n`` exposures geometric from ``lo`` to ``hi`` t·yr (issue 14: 1e-1 to 1e4)."""
    if n < 3 or not 0 < lo < hi:
        raise ConfigError(f"exposures: expected n ≥ 3 and 0 < lo < hi, got n={n}, lo={lo}, hi={hi}")
    return np.geomspace(lo, hi, n)


def fog_curve(fm: FogModel, exposures: Sequence[float], z: float = 3.0, probability: float = 0.9) -> FogCurve:
    """σ_DL(MT) and n(MT) of one mass over ``exposures`` (increasing)."""
    ex = np.asarray(exposures, dtype=np.float64)
    if ex.ndim != 1 or ex.size < 3 or np.any(np.diff(ex) <= 0) or ex[0] <= 0:
        raise ConfigError(f"exposures: expected ≥ 3 increasing positive values, got {ex.tolist()}")
    sig = np.array([discovery_limit(fm, e, z, probability) for e in ex])
    return FogCurve(fm.mass_GeV, ex, sig, gradient_index(ex, sig))


def floor_at_n(curve: FogCurve, n_level: float = 2.0) -> float:
    """The largest σ on the curve at which n reaches ``n_level`` (O'Hare's floor for 2; ln σ
    linear in n between the bracketing exposures); NaN if n stays below it."""
    n, s = curve.n, curve.sigma
    ok = np.isfinite(n) & np.isfinite(s)
    hit = np.flatnonzero(ok & (n >= n_level))
    if not hit.size:
        return float("nan")
    k = int(hit[0])
    if k == 0 or not ok[k - 1]:
        return float(s[k])
    t = (n_level - n[k - 1]) / (n[k] - n[k - 1])
    return float(np.exp(np.log(s[k - 1]) + t * (np.log(s[k]) - np.log(s[k - 1]))))


FOG_COLUMNS = ["mass_GeV", "exposure_t_yr", "sigma_discovery_cm2", "n"]


def fog_rows(curves: Sequence[FogCurve]) -> list[dict[str, float | None]]:
    """The CSV rows (``FOG_COLUMNS``), one per mass and exposure; inf/NaN as empty cells."""
    def fin(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    return [{"mass_GeV": c.mass_GeV, "exposure_t_yr": float(e), "sigma_discovery_cm2": fin(s), "n": fin(n)}
            for c in curves for e, s, n in zip(c.exposures, c.sigma, c.n)]


def spot_check(fm: FogModel, exposure_t_yr: float, *, n_toys_sb: int, n_toys_b: int, seed: int,
               z: float = 3.0, probability: float = 0.9) -> dict[str, float]:
    """Toys at the Asimov σ_DL: the probability of a ``z``σ discovery, from S+B toys at σ_DL and
    the critical q₀ of the importance-sampled B-only tail (:mod:`lzflow.stats.discovery`); the
    Asimov fast path says ``probability``."""
    from .stats.discovery import discovery_tail, q0_of_toys
    from .stats.fit import BatchedFitter
    from .stats.fitresult import FitConfig
    from .stats.toys import ToySampler

    sigma = discovery_limit(fm, exposure_t_yr, z, probability)
    model = fm.at_exposure(exposure_t_yr)
    mu = sigma / fm.sigma_ref_cm2
    mass_key = round(fm.mass_GeV * 1000)
    tail = discovery_tail(model, n_toys_b, seed, mass_key, components=(0.0, z, z + 1.0))
    # the critical value: smallest q0 on the toys' support with p̂0 ≤ Φ(−z)
    qs = np.unique(tail.q0)
    p, _ = tail.pvalue(qs)
    crit = float(qs[np.argmax(p <= norm.sf(z))]) if np.any(p <= norm.sf(z)) else float("inf")
    fitter = BatchedFitter(model, FitConfig(n_threads=1))
    data, _ = ToySampler(fitter, model.full_params(mu)).draw(seed, mass_key, 3000, "sb", np.arange(n_toys_sb))
    q = q0_of_toys(fitter, data)
    frac = float(np.mean(q >= crit))
    return {"mass_GeV": fm.mass_GeV, "exposure_t_yr": float(exposure_t_yr), "sigma_discovery_cm2": sigma,
            "probability_asimov": probability, "probability_toys": frac,
            "probability_toys_err": float(np.sqrt(frac * (1 - frac) / n_toys_sb)), "q0_critical_toys": crit,
            "q0_critical_asymptotic": z * z, "n_toys_sb": n_toys_sb, "n_toys_b": n_toys_b,
            "signal_events": float(model.signal_total * mu), "background_events": float(model.backgrounds.sum())}


def load_ohare_floor() -> tuple[np.ndarray, np.ndarray]:
    """(mass GeV, σ cm²) of O'Hare's published SI xenon floor (``data/references/fog/``; the
    CSV's header names its source; kept out of the curve registry ``reference_data.REFERENCES``)."""
    from importlib.resources import files

    text = files("lzflow").joinpath("data", "references", "fog", OHARE_FLOOR_CSV).read_text()
    rows = [ln.split(",") for ln in text.splitlines() if ln and not ln.startswith("#")][1:]
    arr = np.array(rows, dtype=np.float64)
    return arr[:, 0], arr[:, 1]
