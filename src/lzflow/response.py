r"""NEST detector response matrices: simulate once per interaction type, fold any spectrum.

The (cS1, log10 cS2) PDF of a source with recoil spectrum dN/dE is

.. math::

    \mu_b = \int \frac{dN}{dE}\, R_b(E)\, dE
          \approx \sum_j p_j\, \hat R_{jb}, \qquad
    p_j = \int_{E_j}^{E_{j+1}} \frac{dN}{dE}\, dE, \qquad
    \hat R_{jb} = \frac{c_{jb}}{N_j},

where :math:`R_b(E)` is the probability that a recoil of energy E passes every cut and lands in
analysis bin b, :math:`N_j` the number of NEST events simulated in fine energy bin j and
:math:`c_{jb}` how many of them land in b. :math:`\hat R` is the *response matrix*. It is made once
per NEST interaction type (``NR``, ``beta``, ``gammaRay``) and shared by every source of that type,
so a new WIMP mass costs one matrix–vector product, not a NEST run. The matrix never depends on
the configured source list: its allocation of events over energy comes from a fixed *reference
family* of spectra (:func:`reference_family`).

Statistical precision. The estimate is a weighted sum of simulated events with weight
:math:`w_j = p_j / N_j`. Kish's effective number of in-ROI events is

.. math::

    n_\mathrm{eff} = \frac{(\sum_j p_j \hat\varepsilon_j)^2}{\sum_j p_j^2 \hat\varepsilon_j / N_j},
    \qquad \hat\varepsilon_j = \sum_b c_{jb} / N_j,

and the *effective n_samples* of the PDF is :math:`n_\mathrm{eff}/\varepsilon_\mathrm{tot}` with
:math:`\varepsilon_\mathrm{tot} = \sum_j p_j\hat\varepsilon_j / \int dN/dE` (integral over the
spectrum's *whole* range): the number of events a direct ("naive") simulation of the spectrum
would need for the same in-ROI precision (it gets :math:`n\,\varepsilon_\mathrm{tot}` unweighted
events in the ROI from n draws). The per-bin MC variance is :math:`\sum_j p_j^2 c_{jb}/N_j^2`.

Allocation (how many events per energy bin). With :math:`N_j = N w_j` (:math:`\sum_j w_j = 1`) and
p normalised to the spectrum's full integral, the effective n_samples of spectrum k is
:math:`N / C_k(w)` with

.. math::

    C_k(w) = \frac{1}{\varepsilon_k}\sum_j \frac{p_{kj}^2 \varepsilon_j}{w_j}.

For one spectrum, :math:`C_k` is minimal for :math:`w_j \propto p_{kj}\sqrt{\varepsilon_j}`
(Cauchy–Schwarz), giving :math:`C_k^* = (\sum_j p_{kj}\sqrt{\varepsilon_j})^2/\varepsilon_k \le 1`.
For a family of K spectra we choose w minimising :math:`\max_k C_k(w)` (convex); by minimax
duality the solution is :math:`w_j \propto \sqrt{\sum_k \lambda_k p_{kj}^2\varepsilon_j/\varepsilon_k}`
with :math:`\lambda` on the simplex maximising :math:`(\sum_j \sqrt{\cdot})^2`
(:func:`minimax_allocation`). Every member then reaches ``n_samples`` with

.. math::

    N = n_\mathrm{samples} \cdot \max_k C_k(w) \cdot s, \qquad s = \text{safety factor (1.02)}.

The acceptance :math:`\varepsilon_j` used for the allocation comes from a cheap seeded two-stage
pilot (2e5 events per type: half uniform in ln E, half distributed like the allocation
planned from the first half, which sharpens ε where the plan is sensitive to it). The reference
family mixes generic shapes (WIMP-like SHM spectra from 6 GeV to 1 TeV, CEvNS-like steep
exponentials, flat/rising/falling ER) with the shapes of every background *registered* in
:mod:`lzflow.spectra` (not the configured subset); the configured WIMP masses never enter, so a
new mass needs only a fold. Costs with the default projection detector: C ≈ 1.02 (NR), 0.20
(beta, gammaRay): a matrix for n_samples = 1e7 holds ≈ 1.1e7 NR and 2e6 + 1.7e6 ER events, where
the direct approach needs 1e7 events for each of the 20 PDFs.

Cost of NEST events. NEST's S1 3-fold coincidence probability is computed from binomial
coefficients of numPMTs for 3 ≤ spike ≤ 10, which makes in-ROI events near threshold 3–10× slower
(≈ 25–30 µs per event) than sub-threshold (≈ 3 µs) or larger (≈ 8 µs) ones; the response spends nearly all its events in the ROI,
so its events are the expensive kind — the gain comes from sharing and from not simulating
energies outside the ROI, not from cheaper events.

Truncation. Fine bins whose (pilot, tail-extrapolated) acceptance is so small that dropping them
changes no reference spectrum's in-ROI expectation by more than ``loss_budget`` (default 1e-5,
ten times below the 1e-4 requirement) get no events and are treated as ε = 0. Outside the
energy grid ε = 0 is assumed too; both are bounded with the pilot's acceptance (extrapolated
geometrically from the last well-measured pilot groups, which over-estimates a falling tail) and
recorded: per reference spectrum in the matrix metadata and per folded spectrum in
:attr:`FoldResult.truncation_loss`.

Energy grid. Log-spaced, 200 bins per decade (bin width Δln E = 1.15 %). Events are drawn uniform
in ln E inside their bin, so the fold treats each bin's response as the ln E-average; the bias this
causes is of order :math:`(d\ln\varepsilon/d\ln E)(d\ln f/d\ln E + 1)\,\Delta^2/12 \lesssim 10^{-3}`
even for the steepest case (⁸B near threshold) and far smaller where the detector resolution
(≳ 10 %) smooths the response. Default ranges: NR 0.1–150 keV (⁸B reaches the ROI from ~0.7 keV
through upward fluctuations at g1 ≈ 0.12, and its spectrum keeps rising below: the grid extends to
the 0.1 keV where lzflow's NR spectra start, so the low-energy truncation is decided, and bounded,
inside the grid; the acceptance falls to 0 at the cS1 = 80 phd edge between ≈ 40 and 75 keVnr
at g1 = 0.119, roughly twice higher at g1 = 0.05), ER 0.3–60 keV (threshold ≈ 0.7 keVee; the
cS1 edge is at ≈ 10–20 keVee, ≈ 2× higher at g1 = 0.05). Bins beyond the edges are truncated
automatically by the pilot.

Reproducibility. Events are generated in fixed-size chunks; chunk i of interaction t gets
``numpy.random.SeedSequence([seed, t, stage, i])`` (stage 0/3 = pilot A/B, 1 = main, 2 = direct
simulation; t = NEST's enum value), spawned into one stream for energies/positions and one 31-bit NEST seed. NEST's RNG is
process-global, so chunks run in worker *processes*; integer counts are summed in any order, so
the matrix is bit-identical for any number of workers.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .progress import progress
from .io import atomic_path

__all__ = [
    "AnalysisSpace",
    "ResponseMatrix",
    "FoldResult",
    "ReferenceSpectrum",
    "INTERACTIONS",
    "TYPE_CODES",
    "DEFAULT_ENERGY_RANGES_KEV",
    "BINS_PER_DECADE",
    "CHUNK_SIZE",
    "canonical_interaction",
    "energy_edges",
    "bin_integrals",
    "integrate_spectrum",
    "kish_n_eff",
    "effective_n_samples",
    "allocation_cost",
    "minimax_allocation",
    "smooth_acceptance",
    "plan_allocation",
    "reference_family",
    "helm_form_factor_sq",
    "shm_wimp_shape",
    "sample_positions",
    "run_nest",
    "simulate_direct",
    "build_response",
    "build_responses",
    "fold_spectrum",
    "save_response",
    "load_response",
    "response_key",
    "load_or_build_responses",
]

#: NEST interaction types that get a response matrix.
INTERACTIONS: tuple[str, ...] = ("NR", "beta", "gammaRay")
#: NEST's enum values (``nestpy.interactions``), frozen here so seeds never depend on nestpy.
TYPE_CODES: dict[str, int] = {"NR": 0, "gammaRay": 7, "beta": 8}
#: Default fine-grid ranges (keV); see the module docstring for the reasoning.
DEFAULT_ENERGY_RANGES_KEV: dict[str, tuple[float, float]] = {
    "NR": (0.1, 150.0),
    "beta": (0.3, 60.0),
    "gammaRay": (0.3, 60.0),
}
BINS_PER_DECADE = 200
#: Events per simulation chunk (2**17): the unit of seeding and of parallel work.
CHUNK_SIZE = 1 << 17
#: Pilot events per interaction type (fixed: a smaller pilot measures the acceptance edges less
#: far out, so the conservative tail extrapolation truncates less and the matrix grows); pilot
#: acceptance is estimated per group of ``PILOT_GROUP`` fine bins (20 groups per decade).
N_PILOT = 200_000
PILOT_GROUP = 10
PILOT_CHUNK_SIZE = 1 << 14
FORMAT_VERSION = 1
_STAGE_PILOT, _STAGE_MAIN, _STAGE_DIRECT, _STAGE_PILOT_B = 0, 1, 2, 3

_ALIASES = {
    "nr": "NR", "beta": "beta", "β": "beta", "gammaray": "gammaRay", "gamma": "gammaRay", "γ": "gammaRay",
}


def canonical_interaction(interaction: Any) -> str:
    """``"NR"``, ``"beta"`` or ``"gammaRay"`` from a name (any case, ``gamma`` accepted) or a
    ``nestpy.interactions`` member."""
    name = getattr(interaction, "name", interaction)
    try:
        return _ALIASES[str(name).lower()]
    except KeyError:
        raise ValueError(f"interaction {interaction!r}: expected one of {', '.join(INTERACTIONS)}") from None


# --------------------------------------------------------------------------------------------
# Analysis space
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Energy grid and integration
# --------------------------------------------------------------------------------------------
def energy_edges(lo_keV: float, hi_keV: float, bins_per_decade: int = BINS_PER_DECADE) -> np.ndarray:
    """Log-spaced bin edges from ``lo_keV`` to ``hi_keV``, ``round(bins_per_decade · log10(hi/lo))`` bins."""
    if not 0 < lo_keV < hi_keV:
        raise ValueError(f"energy range ({lo_keV}, {hi_keV}) keV: expected 0 < lo < hi")
    n = max(1, int(round(bins_per_decade * math.log10(hi_keV / lo_keV))))
    return np.geomspace(lo_keV, hi_keV, n + 1)


def _as_spectrum(f: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def g(E: np.ndarray) -> np.ndarray:
        out = np.asarray(f(E), dtype=float)
        out = np.broadcast_to(out, np.shape(E))
        return np.where(np.isfinite(out), out, 0.0)
    return g


def bin_integrals(f: Callable[[np.ndarray], np.ndarray], edges: np.ndarray, order: int = 4) -> np.ndarray:
    r"""∫ f dE over each bin by ``order``-point Gauss–Legendre in ln E: ∫ f dE = ∫ f(E) E d ln E.

    Exact for f(E)·E polynomial in ln E of degree 2·order−1 over each (1.15 %-wide) bin; one
    vectorised call of f on ``order`` × n_bins points.
    """
    f = _as_spectrum(f)
    x, w = np.polynomial.legendre.leggauss(order)
    lo, hi = np.log(edges[:-1]), np.log(edges[1:])
    half, mid = (hi - lo) / 2, (hi + lo) / 2
    E = np.exp(mid[:, None] + half[:, None] * x[None, :])
    vals = f(E.ravel()).reshape(E.shape)
    return (vals * E * w[None, :]).sum(axis=1) * half


def integrate_spectrum(f: Callable[[np.ndarray], np.ndarray], lo_keV: float, hi_keV: float,
                       per_decade: int = 50, order: int = 8, e_floor_keV: float = 1e-4,
                       e_ceiling_keV: float = 1e4) -> float:
    """∫_lo^hi f dE: Gauss–Legendre on log-spaced segments (``per_decade`` per decade) plus a
    linear segment [0, e_floor] when lo = 0. An infinite ``hi`` is cut at ``e_ceiling_keV``
    (10 MeV; every lzflow spectrum vanishes well below)."""
    lo, hi = float(lo_keV), min(float(hi_keV), e_ceiling_keV)
    if not hi > lo:
        return 0.0
    f = _as_spectrum(f)
    total = 0.0
    x, w = np.polynomial.legendre.leggauss(order)
    if lo < e_floor_keV:
        a, b = lo, min(hi, e_floor_keV)
        E = (a + b) / 2 + (b - a) / 2 * x
        total += float((f(E) * w).sum() * (b - a) / 2)
        lo = b
    if hi > lo:
        edges = np.geomspace(lo, hi, max(2, int(math.ceil(per_decade * math.log10(hi / lo)))) + 1)
        total += float(bin_integrals(f, edges, order).sum())
    return total


# --------------------------------------------------------------------------------------------
# Statistics of a weighted response
# --------------------------------------------------------------------------------------------
def kish_n_eff(p: np.ndarray, eps: np.ndarray, n_sim: np.ndarray) -> float:
    r"""Kish effective number of in-ROI events, :math:`(\sum p\varepsilon)^2 / \sum p^2\varepsilon/N`.

    Bins with ``n_sim == 0`` contribute nothing (their ε is taken as 0)."""
    p, eps, n = (np.asarray(a, dtype=float) for a in (p, eps, n_sim))
    use = n > 0
    num = float((p[use] * eps[use]).sum()) ** 2
    den = float((p[use] ** 2 * eps[use] / n[use]).sum())
    return num / den if den > 0 else 0.0


def effective_n_samples(p: np.ndarray, eps: np.ndarray, n_sim: np.ndarray, total: float | None = None) -> float:
    r""":math:`n_\mathrm{eff}/\varepsilon_\mathrm{tot}`, ε_tot = Σ p ε / total (total defaults to Σ p):
    the size of a direct simulation of the spectrum with the same in-ROI precision."""
    p = np.asarray(p, dtype=float)
    total = float(p.sum()) if total is None else float(total)
    use = np.asarray(n_sim) > 0
    eps_tot = float((p[use] * np.asarray(eps, dtype=float)[use]).sum()) / total if total > 0 else 0.0
    return kish_n_eff(p, eps, n_sim) / eps_tot if eps_tot > 0 else 0.0


def allocation_cost(p: np.ndarray, eps: np.ndarray, w: np.ndarray) -> float:
    r""":math:`C(w) = \sum_j p_j^2\varepsilon_j / (w_j\,\varepsilon_\mathrm{tot})` for p normalised to the
    spectrum's full integral and Σw = 1: a matrix of N events gives this spectrum an effective
    n_samples of N / C. ``inf`` when a bin with p ε > 0 gets no events."""
    p, eps, w = (np.asarray(a, dtype=float) for a in (p, eps, w))
    a = p ** 2 * eps
    eps_tot = float((p * eps).sum())
    if eps_tot <= 0:
        return 0.0
    if np.any((a > 0) & (w <= 0)):
        return math.inf
    use = a > 0
    return float((a[use] / w[use]).sum()) / eps_tot


def minimax_allocation(P: np.ndarray, eps: np.ndarray, iters: int = 5000,
                       rtol: float = 1e-4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Allocation w (Σw = 1) minimising :math:`\max_k C_k(w)` over the rows of P (K × J).

    Solved in the dual: :math:`w(\lambda)_j \propto \sqrt{\sum_k \lambda_k a_{kj}}` with
    :math:`a_{kj} = p_{kj}^2\varepsilon_j/\varepsilon_k`; :math:`g(\lambda) = (\sum_j\sqrt{\sum_k\lambda_k a_{kj}})^2`
    is concave with gradient :math:`C_k(w(\lambda))`, maximised by exponentiated gradient on the
    simplex. Stops when the duality gap max_k C_k − g is below ``rtol``.

    Returns (w, C (K,), λ (K,)).
    """
    P = np.atleast_2d(np.asarray(P, dtype=float))
    eps = np.asarray(eps, dtype=float)
    eps_k = P @ eps
    keep = eps_k > 0
    if not keep.any():
        raise ValueError("minimax_allocation: no reference spectrum has any acceptance")
    A = np.zeros_like(P)
    A[keep] = P[keep] ** 2 * eps[None, :] / eps_k[keep, None]
    lam = keep / keep.sum()
    best_w, best_max = None, math.inf
    for _ in range(iters):
        root = np.sqrt(lam @ A)
        g = float(root.sum()) ** 2
        w = root / root.sum()
        safe = np.where(w > 0, w, 1.0)
        C = (A / safe[None, :]).sum(axis=1)
        cmax = float(C.max())
        if cmax < best_max:
            best_w, best_max = w, cmax
        if best_max - g <= rtol * best_max:
            break
        lam = lam * np.exp(2.0 * (C / cmax - 1.0))
        lam = np.where(keep, lam, 0.0)
        lam /= lam.sum()
    safe = np.where(best_w > 0, best_w, 1.0)
    C = (A / safe[None, :]).sum(axis=1)
    return best_w, C, lam


# --------------------------------------------------------------------------------------------
# Reference family (fixed: the matrix never depends on the configured sources)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceSpectrum:
    """A reference shape f (arbitrary normalisation) defined on ``range_keV`` (0 outside)."""

    name: str
    shape: Callable[[np.ndarray], np.ndarray]
    range_keV: tuple[float, float]


_AMU_GEV = 0.9314941
_HBARC_MEV_FM = 197.3269804
_C_KM_S = 299792.458


def helm_form_factor_sq(E_keV: np.ndarray, A: float = 131.293) -> np.ndarray:
    r"""Helm |F(q)|² (Lewin & Smith): c = 1.23 A^{1/3} − 0.60 fm, a = 0.52 fm, s = 0.9 fm,
    :math:`r_n^2 = c^2 + \tfrac73\pi^2a^2 - 5s^2`, F = 3 j₁(q r_n)/(q r_n) e^{−q²s²/2}, q = √(2 m_N E)."""
    E = np.asarray(E_keV, dtype=float)
    m_N_MeV = A * _AMU_GEV * 1e3
    q = np.sqrt(2.0 * m_N_MeV * E * 1e-3) / _HBARC_MEV_FM  # fm^-1
    c = 1.23 * A ** (1 / 3) - 0.60
    a, s = 0.52, 0.9
    rn = math.sqrt(c * c + 7 / 3 * math.pi ** 2 * a * a - 5 * s * s)
    x = q * rn
    with np.errstate(invalid="ignore", divide="ignore"):
        j1 = (np.sin(x) - x * np.cos(x)) / x ** 2
        F = np.where(x > 1e-6, 3 * j1 / x, 1.0) * np.exp(-(q * s) ** 2 / 2)
    return F * F


def shm_wimp_shape(E_keV: np.ndarray, mass_GeV: float, v0_km_s: float = 238.0, vesc_km_s: float = 544.0,
                   vE_km_s: float = 254.0, A: float = 131.293) -> np.ndarray:
    r"""Shape of the SI WIMP recoil spectrum in the standard halo model (arbitrary units):
    :math:`F^2(E)\,\eta(v_\mathrm{min})`, :math:`v_\mathrm{min} = \sqrt{m_N E/2\mu^2}`, with the
    truncated-Maxwellian mean inverse speed (x = v_min/v0, y = v_E/v0, z = v_esc/v0)

    .. math::
        \eta \propto \begin{cases}
        \mathrm{erf}(x+y) - \mathrm{erf}(x-y) - \frac{4y}{\sqrt\pi}e^{-z^2} & x < z - y\\
        \mathrm{erf}(z) - \mathrm{erf}(x-y) - \frac{2(z+y-x)}{\sqrt\pi}e^{-z^2} & z-y \le x < z+y\\
        0 & \text{otherwise.}\end{cases}

    Used only to shape the reference family (the analysis' signal comes from :mod:`lzflow.spectra`).
    """
    from scipy.special import erf

    E = np.asarray(E_keV, dtype=float)
    m_N = A * _AMU_GEV
    mu = mass_GeV * m_N / (mass_GeV + m_N)
    vmin = np.sqrt(np.clip(E, 0, None) * 1e-6 * m_N / (2 * mu * mu)) * _C_KM_S
    x, y, z = vmin / v0_km_s, vE_km_s / v0_km_s, vesc_km_s / v0_km_s
    ez = math.exp(-z * z) / math.sqrt(math.pi)
    low = erf(x + y) - erf(x - y) - 4 * y * ez
    mid = math.erf(z) - erf(x - y) - 2 * (z + y - x) * ez
    eta = np.where(x < z - y, low, np.where(x < z + y, mid, 0.0))
    return np.clip(eta, 0, None) * helm_form_factor_sq(E, A)


#: Masses (GeV) of the WIMP-like NR reference shapes: 6 GeV – 10 TeV, denser at low mass.
REFERENCE_WIMP_MASSES_GEV: tuple[float, ...] = (6, 8, 10, 13, 17, 22, 30, 40, 55, 75, 100, 150, 250, 500, 1000)


def _exp_shape(E0: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(E: np.ndarray) -> np.ndarray:
        return np.exp(-np.asarray(E, dtype=float) / E0)
    return f


def _wimp_shape(m: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(E: np.ndarray) -> np.ndarray:
        return shm_wimp_shape(E, m)
    return f


def _power_shape(k: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(E: np.ndarray) -> np.ndarray:
        return np.asarray(E, dtype=float) ** k
    return f


def _background_shapes(interaction: str) -> list[ReferenceSpectrum]:
    """Shapes of *all* backgrounds registered in :mod:`lzflow.spectra` with this NEST interaction
    type (the registry, not the configured subset; normalisation is irrelevant). Empty if the
    spectra package is unavailable."""
    try:
        from .spectra import BACKGROUND_NAMES, background_model
    except ImportError:  # pragma: no cover - spectra is part of lzflow
        return []
    out = []
    for name in BACKGROUND_NAMES:
        m = background_model(name)
        if canonical_interaction(m.nest_interaction) == interaction:
            out.append(ReferenceSpectrum(f"bkg_{name}", m.shape, tuple(map(float, m.energy_range_keV))))
    return out


def reference_family(interaction: str, include_backgrounds: bool = True) -> list[ReferenceSpectrum]:
    """The fixed reference spectra that size and shape a response matrix.

    Generic shapes — NR: SHM WIMP shapes (Helm form factor) for :data:`REFERENCE_WIMP_MASSES_GEV`
    on [0, 200] keV, steep exponentials exp(−E/0.42 keV) on [0, 5] keV and exp(−E/0.8 keV) on
    [0, 6.5] keV (solar-ν CEvNS near threshold), exp(−E/E0) with E0 = 5, 20 keV on [0, 200] keV
    (neutron / atmospheric-ν like). ER (beta, gammaRay): flat on [0, 100], [1, 100] and [5, 100] keV
    (the last two mimic the atomic-binding suppression of ν–e scattering), ∝ E (2νββ-like) and
    ∝ (1 − E/300 keV) (slowly falling, ν–e like) on [0, 100] keV.

    With ``include_backgrounds`` the shapes of every background *registered* in
    :mod:`lzflow.spectra` of this interaction type are added (fixed physics; independent of which
    backgrounds and masses a configuration uses), so the family covers e.g. the ⁸B and hep CEvNS
    spectra, whose cut-off shapes no simple analytic family follows closely.
    """
    it = canonical_interaction(interaction)
    if it == "NR":
        fam = [ReferenceSpectrum(f"wimp_{m:g}GeV", _wimp_shape(m), (0.0, 200.0)) for m in REFERENCE_WIMP_MASSES_GEV]
        fam.append(ReferenceSpectrum("exp0.42keV_to5keV", _exp_shape(0.42), (0.0, 5.0)))
        fam.append(ReferenceSpectrum("exp0.8keV_to6.5keV", _exp_shape(0.8), (0.0, 6.5)))
        fam += [ReferenceSpectrum(f"exp{E0:g}keV", _exp_shape(E0), (0.0, 200.0)) for E0 in (5.0, 20.0)]
    else:
        fam = [ReferenceSpectrum("flat", _power_shape(0.0), (0.0, 100.0)),
               ReferenceSpectrum("flat_above_1keV", _power_shape(0.0), (1.0, 100.0)),
               ReferenceSpectrum("flat_above_5keV", _power_shape(0.0), (5.0, 100.0)),
               ReferenceSpectrum("rising_linear", _power_shape(1.0), (0.0, 100.0)),
               ReferenceSpectrum("falling_linear_300keV", _linear_falling(300.0), (0.0, 100.0))]
    if include_backgrounds:
        fam += _background_shapes(it)
    return fam


def _linear_falling(E1: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(E: np.ndarray) -> np.ndarray:
        return np.clip(1.0 - np.asarray(E, dtype=float) / E1, 0.0, None)
    return f


def _restricted(ref: ReferenceSpectrum) -> Callable[[np.ndarray], np.ndarray]:
    lo, hi = ref.range_keV

    def f(E: np.ndarray) -> np.ndarray:
        E = np.asarray(E, dtype=float)
        inside = (E >= lo) & (E <= hi)
        return np.where(inside, ref.shape(np.where(inside, E, max(lo, 1e-6))), 0.0)
    return f


def _reference_probabilities(family: Sequence[ReferenceSpectrum], edges: np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P (K, n_E): bin probabilities normalised to each shape's full integral,
    below (K,), above (K,): probability below / above the grid)."""
    P, below, above = [], [], []
    for ref in family:
        f = _restricted(ref)
        lo, hi = ref.range_keV
        total = integrate_spectrum(f, lo, hi)
        p = bin_integrals(f, edges) / total
        P.append(p)
        below.append(integrate_spectrum(f, lo, min(hi, edges[0])) / total if lo < edges[0] else 0.0)
        above.append(integrate_spectrum(f, max(lo, edges[-1]), hi) / total if hi > edges[-1] else 0.0)
    return np.array(P), np.array(below), np.array(above)


# --------------------------------------------------------------------------------------------
# Pilot acceptance and allocation plan
# --------------------------------------------------------------------------------------------
def smooth_acceptance(k: np.ndarray, n: np.ndarray, k_min: int = 10, span: int = 3) -> np.ndarray:
    """Acceptance per pilot group, with tails extrapolated.

    Between the first and last group with ≥ ``k_min`` passing events: (k + ½)/(n + 1). Beyond
    them, geometric extrapolation with the mean ratio per group over the ``span`` outermost
    well-measured groups (clamped to ≥ 1), and never below the observed k/n. A threshold
    (or cS1-edge) tail falls ever faster away from the ROI, so the mean ratio measured where ε
    is already larger under-states the fall and the extrapolation over-estimates ε: the
    truncation bound built on it is conservative.
    """
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    good = np.flatnonzero(k >= k_min)
    raw = np.where(n > 0, k / np.maximum(n, 1), 0.0)
    if good.size == 0:
        return raw
    eps = (k + 0.5) / (n + 1.0)
    lo, hi = good[0], good[-1]
    out = eps.copy()
    m = min(span, hi - lo)
    r_lo = max((eps[lo + m] / eps[lo]) ** (1.0 / m), 1.0) if m > 0 else 1.0
    r_hi = max((eps[hi - m] / eps[hi]) ** (1.0 / m), 1.0) if m > 0 else 1.0
    g = np.arange(len(k))
    out[:lo] = np.maximum(eps[lo] / r_lo ** (lo - g[:lo]), raw[:lo])
    out[hi + 1:] = np.maximum(eps[hi] / r_hi ** (g[hi + 1:] - hi), raw[hi + 1:])
    return out


def _group_acceptance(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Per-fine-bin acceptance from pilot counts pooled in groups of :data:`PILOT_GROUP` bins."""
    g = np.arange(len(k)) // PILOT_GROUP
    kg = np.bincount(g, weights=k).astype(np.int64)
    ng = np.bincount(g, weights=n).astype(np.int64)
    return smooth_acceptance(kg, np.maximum(ng, 1))[g]


@dataclass(frozen=True)
class AllocationPlan:
    """Events per fine energy bin and the numbers behind them."""

    n_sim: np.ndarray            # (n_E,) int64, 0 = truncated
    eps: np.ndarray              # (n_E,) acceptance used (pilot, smoothed, tails extrapolated)
    cost: np.ndarray             # (K,) C_k(w) of each reference spectrum
    lam: np.ndarray              # (K,) dual weights
    truncation_loss: np.ndarray  # (K,) estimated fraction of in-ROI expectation lost
    n_total: int


def plan_allocation(eps: np.ndarray, P: np.ndarray, n_samples: float, *, below: np.ndarray | None = None,
                    above: np.ndarray | None = None, safety: float = 1.02, loss_budget: float = 1e-5,
                    min_per_bin: int = 16, n_total: int | None = None) -> AllocationPlan:
    """Plan N_j from per-bin acceptance ``eps`` and reference probabilities ``P`` (K × n_E).

    1. Truncation: from each grid edge inwards, drop bins while every reference spectrum's lost
       share Σ p ε / Σ p ε (including its mass outside the grid times the edge bin's ε) stays
       ≤ ``loss_budget``/2 per side.
    2. w = :func:`minimax_allocation` on the kept bins.
    3. N = ``n_total`` if given, else ⌈safety · n_samples · max_k C_k(w)⌉; N_j = max(⌈N w_j⌉, min_per_bin).
    """
    eps = np.asarray(eps, dtype=float)
    P = np.atleast_2d(np.asarray(P, dtype=float))
    K, J = P.shape
    below = np.zeros(K) if below is None else np.asarray(below, dtype=float)
    above = np.zeros(K) if above is None else np.asarray(above, dtype=float)
    inroi = P @ eps
    inroi_safe = np.where(inroi > 0, inroi, np.inf)
    share = P * eps[None, :] / inroi_safe[:, None]
    keep = np.ones(J, dtype=bool)
    half = loss_budget / 2
    loss = np.zeros(K)
    # low side
    lost = below * eps[0] / inroi_safe
    j = 0
    while j < J and np.all(lost + share[:, j] <= half):
        lost = lost + share[:, j]
        keep[j] = False
        j += 1
    loss += lost
    lost = above * eps[-1] / inroi_safe
    j = J - 1
    while j >= 0 and keep[j] and np.all(lost + share[:, j] <= half):
        lost = lost + share[:, j]
        keep[j] = False
        j -= 1
    loss += lost
    eps_kept = np.where(keep, eps, 0.0)
    w, C, lam = minimax_allocation(P, eps_kept)
    w = np.where(keep, w, 0.0)
    w /= w.sum()
    if n_total is None:
        n_total = int(math.ceil(safety * float(n_samples) * float(C.max())))
    n_sim = np.where(keep & (w > 0), np.maximum(np.ceil(n_total * w), min_per_bin), 0).astype(np.int64)
    return AllocationPlan(n_sim=n_sim, eps=eps, cost=C, lam=lam, truncation_loss=loss, n_total=int(n_sim.sum()))


# --------------------------------------------------------------------------------------------
# NEST
# --------------------------------------------------------------------------------------------
def _default_builder() -> Callable[[Mapping[str, Any]], Any]:
    from .detector import build_nest_detector

    return build_nest_detector


def sample_positions(rng: np.random.Generator, n: int, fiducial: Mapping[str, float]) -> np.ndarray:
    """(n, 3) positions [mm] uniform in the fiducial cylinder: r = r_max √u, φ uniform, z uniform in
    [z_min, z_max] (z from the cathode, upwards)."""
    r = fiducial["r_max_mm"] * np.sqrt(rng.random(n))
    phi = rng.random(n) * (2 * math.pi)
    z = fiducial["z_min_mm"] + (fiducial["z_max_mm"] - fiducial["z_min_mm"]) * rng.random(n)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def run_nest(nest_detector: Any, detector: Mapping[str, Any], interaction: str, energies_keV: np.ndarray,
             positions_mm: np.ndarray, seed: int, space: AnalysisSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``nestpy.array.runNESTvec`` with the detector dict's field, yields, widths and S1/S2 modes.

    Returns (cS1 [phd], log10 cS2 [phd], passes) where ``passes`` is the S1 coincidence
    (``s1_nhits_thr >= coinLevel``) and raw-S2 (``s2r_phd >= s2_raw_min_phd``) cut; the cS1/cS2
    ROI is applied by :meth:`AnalysisSpace.bin_events`.
    """
    import nestpy

    field = detector.get("drift_field_V_cm")
    yields = detector["yields"]
    res = nestpy.array.runNESTvec(
        nest_detector, getattr(nestpy.interactions, interaction),
        np.ascontiguousarray(energies_keV, dtype=np.float64), np.ascontiguousarray(positions_mm, dtype=np.float64),
        -1.0 if field is None else float(field), int(seed),
        [float(v) for v in yields["er"]], [float(v) for v in yields["nr"]], [float(v) for v in yields["widths"]],
        getattr(nestpy.S1CalculationMode, detector.get("s1_mode", "Hybrid")),
        getattr(nestpy.S2CalculationMode, detector.get("s2_mode", "Full")),
        False,
    )
    cs1 = np.asarray(res.s1c_phd, dtype=float)
    cs2 = np.asarray(res.s2c_phd, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(cs2 > 0, np.log10(np.where(cs2 > 0, cs2, 1.0)), np.nan)
    passes = ((np.asarray(res.s1_nhits_thr) >= int(detector["nest"]["coinLevel"]))
              & (np.asarray(res.s2r_phd, dtype=float) >= space.s2_raw_min_phd))
    return cs1, y, passes


def _chunk_streams(seed: int, interaction: str, stage: int, chunk: int) -> tuple[np.random.Generator, int]:
    ss = np.random.SeedSequence([int(seed), TYPE_CODES[interaction], stage, int(chunk)])
    a, b = ss.spawn(2)
    return np.random.default_rng(a), int(b.generate_state(1, np.uint32)[0] >> 1)


# Worker state (one per process; NEST's RNG is process-global, never use threads).
_WORKER: dict[str, Any] = {}


def _init_worker(detector: Mapping[str, Any], builder: Callable | None, space: AnalysisSpace,
                 edges: Mapping[str, np.ndarray], seed: int) -> None:
    builder = builder or _default_builder()
    _WORKER.clear()
    _WORKER.update(detector=dict(detector), nest=builder(detector), space=space, edges=dict(edges), seed=int(seed))


def _run_chunk(task: tuple[str, int, int, int, np.ndarray]) -> tuple[str, int, int, int, Any]:
    """Simulate one chunk: ``counts[m]`` events in fine bins j0 + m. Pilot chunks return passing
    events per bin (1-D); main chunks the (bins, n_cS1, n_log10cS2) counts block; direct chunks
    (given energies) return (cS1, log10 cS2, in-ROI mask)."""
    interaction, stage, chunk, j0, counts = task
    det, space = _WORKER["detector"], _WORKER["space"]
    rng, nest_seed = _chunk_streams(_WORKER["seed"], interaction, stage, chunk)
    if stage == _STAGE_DIRECT:
        E = np.asarray(counts, dtype=float)
        pos = sample_positions(rng, E.size, det["fiducial"])
        cs1, y, passes = run_nest(_WORKER["nest"], det, interaction, E, pos, nest_seed, space)
        ok = space.bin_events(cs1, y)[0] & passes
        return interaction, stage, chunk, j0, (cs1, y, ok)
    edges = _WORKER["edges"][interaction]
    nb = len(counts)
    jrel = np.repeat(np.arange(nb), counts)
    lnlo = np.log(edges[j0:j0 + nb])
    lnw = np.log(edges[j0 + 1:j0 + nb + 1]) - lnlo
    E = np.exp(lnlo[jrel] + lnw[jrel] * rng.random(jrel.size))
    pos = sample_positions(rng, jrel.size, det["fiducial"])
    cs1, y, passes = run_nest(_WORKER["nest"], det, interaction, E, pos, nest_seed, space)
    ok, ix, iy = space.bin_events(cs1, y)
    ok &= passes
    if stage in (_STAGE_PILOT, _STAGE_PILOT_B):
        return interaction, stage, chunk, j0, np.bincount(jrel[ok], minlength=nb).astype(np.int64)
    nx, ny = space.shape
    flat = (jrel[ok] * nx + ix[ok]) * ny + iy[ok]
    block = np.bincount(flat, minlength=nb * nx * ny).astype(np.int64).reshape(nb, nx, ny)
    return interaction, stage, chunk, j0, block


def _chunk_tasks(interaction: str, stage: int, n_per_bin: np.ndarray, chunk_size: int) -> list[tuple]:
    """Cut the concatenated per-bin event list into chunks of ``chunk_size`` events."""
    n_per_bin = np.asarray(n_per_bin, dtype=np.int64)
    cum = np.concatenate([[0], np.cumsum(n_per_bin)])
    total = int(cum[-1])
    tasks = []
    for c, start in enumerate(range(0, total, chunk_size)):
        stop = min(start + chunk_size, total)
        j0 = int(np.searchsorted(cum, start, side="right") - 1)
        j1 = int(np.searchsorted(cum, stop, side="left"))
        counts = np.minimum(cum[j0 + 1:j1 + 1], stop) - np.maximum(cum[j0:j1], start)
        tasks.append((interaction, stage, c, j0, counts.astype(np.int64)))
    return tasks


class _Runner:
    """Runs chunk tasks in-process (n_workers = 1) or on a process pool."""

    def __init__(self, n_workers: int, initargs: tuple, mp_context: str | None):
        self.n_workers = max(1, int(n_workers))
        self.initargs = initargs
        self.pool = None
        if self.n_workers > 1:
            import multiprocessing as mp

            ctx = mp.get_context(mp_context or ("fork" if "fork" in mp.get_all_start_methods() else "spawn"))
            self.pool = ProcessPoolExecutor(self.n_workers, mp_context=ctx, initializer=_init_worker,
                                            initargs=initargs)
        else:
            _init_worker(*initargs)

    def map_unordered(self, tasks: Iterable[tuple]):
        if self.pool is None:
            for t in tasks:
                yield _run_chunk(t)
        else:
            futures = [self.pool.submit(_run_chunk, t) for t in tasks]
            for fut in as_completed(futures):
                yield fut.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        else:
            _WORKER.clear()


def simulate_direct(detector: Mapping[str, Any], interaction: str, energies_keV: np.ndarray, *, seed: int = 0,
                    space: AnalysisSpace | None = None, n_workers: int = 1, chunk_size: int = CHUNK_SIZE,
                    builder: Callable[[Mapping[str, Any]], Any] | None = None,
                    mp_context: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Direct NEST simulation of given recoil energies (positions uniform in the fiducial volume),
    chunked and seeded like the response matrix (stage 2), so identical for any ``n_workers``.

    Returns (cS1, log10 cS2, in_roi) per event, in input order. This is the "naive" approach
    the response matrix replaces; used for validation and benchmarks.
    """
    t = canonical_interaction(interaction)
    space = space or AnalysisSpace()
    E = np.asarray(energies_keV, dtype=float)
    tasks = [(t, _STAGE_DIRECT, c, start, E[start:start + chunk_size])
             for c, start in enumerate(range(0, E.size, chunk_size))]
    cs1, y, ok = np.empty(E.size), np.empty(E.size), np.zeros(E.size, dtype=bool)
    runner = _Runner(n_workers, (dict(detector), builder, space, {}, int(seed)), mp_context)
    try:
        for _, _, _, start, (a, b, c) in progress(runner.map_unordered(tasks), total=len(tasks),
                                                  desc=f"NEST {t} direct", unit="chunk"):
            cs1[start:start + a.size], y[start:start + a.size], ok[start:start + a.size] = a, b, c
    finally:
        runner.close()
    return cs1, y, ok


# --------------------------------------------------------------------------------------------
# Response matrix
# --------------------------------------------------------------------------------------------
@dataclass
class ResponseMatrix:
    """Counts of simulated events per (fine energy bin, cS1 bin, log10 cS2 bin) for one NEST
    interaction type.

    counts : (n_E, n_cS1, n_log10cS2) int64, events passing every cut.
    n_sim : (n_E,) int64 events simulated per energy bin (0 = truncated: ε assumed 0).
    eps_pilot : (n_E,) acceptance from the pilot (tails extrapolated), used for the allocation
        and for truncation bounds.
    metadata : detector hash/name, seed, n_samples target, allocation and pilot summaries,
        versions (independent of the number of workers).
    """

    interaction: str
    energy_edges: np.ndarray
    space: AnalysisSpace
    counts: np.ndarray
    n_sim: np.ndarray
    eps_pilot: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_energy(self) -> int:
        return len(self.energy_edges) - 1

    @property
    def acceptance(self) -> np.ndarray:
        """ε̂_j = Σ_b c_jb / N_j (0 where nothing was simulated)."""
        c = self.counts.reshape(self.n_energy, -1).sum(axis=1)
        return np.where(self.n_sim > 0, c / np.maximum(self.n_sim, 1), 0.0)

    @property
    def n_total(self) -> int:
        return int(self.n_sim.sum())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResponseMatrix):
            return NotImplemented
        return (self.interaction == other.interaction and self.space == other.space
                and np.array_equal(self.energy_edges, other.energy_edges)
                and np.array_equal(self.counts, other.counts) and np.array_equal(self.n_sim, other.n_sim)
                and np.array_equal(self.eps_pilot, other.eps_pilot) and self.metadata == other.metadata)


def _lzflow_version() -> str:
    from . import __version__

    return __version__


def _nest_version() -> str:
    try:
        import nestpy

        return str(getattr(nestpy, "__nest_version__", "unknown"))
    except ImportError:  # pragma: no cover
        return "unavailable"


def build_responses(detector: Mapping[str, Any], interactions: Sequence[str] = INTERACTIONS, *,
                    n_samples: float = 1e7, seed: int = 0, n_workers: int = 1,
                    space: AnalysisSpace | None = None,
                    energy_ranges_keV: Mapping[str, tuple[float, float]] | None = None,
                    bins_per_decade: int = BINS_PER_DECADE, n_pilot: int | None = None,
                    chunk_size: int = CHUNK_SIZE, safety: float = 1.02, loss_budget: float = 1e-5,
                    n_total: Mapping[str, int] | int | None = None,
                    family: Mapping[str, Sequence[ReferenceSpectrum]] | None = None,
                    builder: Callable[[Mapping[str, Any]], Any] | None = None,
                    mp_context: str | None = None) -> dict[str, ResponseMatrix]:
    """Build the response matrices of several interaction types with one process pool.

    Steps: (1) seeded two-stage pilot (half uniform in ln E, half where the stage-A plan puts
    events) → per-group acceptance, tails extrapolated (:func:`smooth_acceptance`); (2) allocation
    from the reference family (:func:`plan_allocation`); (3) main simulation in fixed chunks.

    Parameters
    ----------
    detector : resolved detector dictionary (:func:`lzflow.detector.resolve_detector`).
    n_samples : target effective n_samples of every reference spectrum (module docstring).
    seed : base seed; the matrices are bit-identical for any ``n_workers``.
    space : analysis space / ROI (default :class:`AnalysisSpace`).
    n_pilot : pilot events per type (default :data:`N_PILOT` = 2e5).
    n_total : fix the total number of main events (per type or for all) instead of sizing from
        ``n_samples`` (tests, studies).
    family : reference spectra per interaction type (default :func:`reference_family`).
    builder : detector dict → nestpy detector (default :func:`lzflow.detector.build_nest_detector`);
        must be picklable (module-level) when ``n_workers > 1`` with the spawn context.
    """
    space = space or AnalysisSpace()
    n_pilot = N_PILOT if n_pilot is None else int(n_pilot)
    types = [canonical_interaction(t) for t in interactions]
    ranges = dict(DEFAULT_ENERGY_RANGES_KEV)
    ranges.update({canonical_interaction(k): tuple(v) for k, v in (energy_ranges_keV or {}).items()})
    edges = {t: energy_edges(*ranges[t], bins_per_decade) for t in types}
    runner = _Runner(n_workers, (dict(detector), builder, space, edges, int(seed)), mp_context)
    try:
        # 1. pilot, stage A: half the pilot with equal events per fine bin (uniform in ln E)
        fams = {t: list(family[t]) if family and t in family else reference_family(t) for t in types}
        probs = {t: _reference_probabilities(fams[t], edges[t]) for t in types}
        n_a = int(n_pilot) // 2
        pilot_n = {t: np.full(len(edges[t]) - 1, max(1, -(-n_a // (len(edges[t]) - 1))), dtype=np.int64)
                   for t in types}
        pilot_k = {t: np.zeros(len(edges[t]) - 1, dtype=np.int64) for t in types}
        tasks = [task for t in types for task in _chunk_tasks(t, _STAGE_PILOT, pilot_n[t], PILOT_CHUNK_SIZE)]
        for t, _, _, j0, k in progress(runner.map_unordered(tasks), total=len(tasks), desc="NEST pilot A",
                                        unit="chunk"):
            pilot_k[t][j0:j0 + len(k)] += k
        # stage B: the other half distributed like the allocation planned from stage A, i.e. where
        # the plan is sensitive to ε (threshold and cS1-edge regions included)
        n_b = {}
        for t in types:
            P, below, above = probs[t]
            eps_a = _group_acceptance(pilot_k[t], pilot_n[t])
            n_b[t] = plan_allocation(eps_a, P, 1.0, below=below, above=above, loss_budget=loss_budget,
                                     n_total=int(n_pilot) - n_a, min_per_bin=0).n_sim
        tasks = [task for t in types for task in _chunk_tasks(t, _STAGE_PILOT_B, n_b[t], PILOT_CHUNK_SIZE)]
        for t, _, _, j0, k in progress(runner.map_unordered(tasks), total=len(tasks), desc="NEST pilot B",
                                        unit="chunk"):
            pilot_k[t][j0:j0 + len(k)] += k
        for t in types:
            pilot_n[t] = pilot_n[t] + n_b[t]
        # 2. plan from the pooled pilot
        plans = {}
        for t in types:
            P, below, above = probs[t]
            eps = _group_acceptance(pilot_k[t], pilot_n[t])
            fixed = n_total.get(t) if isinstance(n_total, Mapping) else n_total
            plans[t] = plan_allocation(eps, P, n_samples, below=below, above=above, safety=safety,
                                       loss_budget=loss_budget, n_total=fixed)
        # 3. main simulation
        counts = {t: np.zeros((len(edges[t]) - 1, *space.shape), dtype=np.int64) for t in types}
        tasks = [task for t in types for task in _chunk_tasks(t, _STAGE_MAIN, plans[t].n_sim, chunk_size)]
        for t, _, _, j0, block in progress(runner.map_unordered(tasks), total=len(tasks),
                                           desc=f"NEST {'+'.join(types)}", unit="chunk"):
            counts[t][j0:j0 + block.shape[0]] += block
    finally:
        runner.close()

    out = {}
    for t in types:
        plan = plans[t]
        P, below, above = probs[t]
        resp = ResponseMatrix(interaction=t, energy_edges=edges[t], space=space, counts=counts[t],
                              n_sim=plan.n_sim, eps_pilot=plan.eps)
        acc = resp.acceptance
        achieved = [effective_n_samples(p, acc, plan.n_sim, total=1.0) for p in P]
        active = np.flatnonzero(plan.n_sim > 0)
        resp.metadata = {
            "format_version": FORMAT_VERSION,
            "interaction": t,
            "detector_hash": detector.get("hash"),
            "detector_name": detector.get("name"),
            "coin_level": int(detector["nest"]["coinLevel"]),
            "fiducial": {k: float(v) for k, v in detector["fiducial"].items()},
            "drift_field_V_cm": detector.get("drift_field_V_cm"),
            "s1_mode": detector.get("s1_mode", "Hybrid"),
            "s2_mode": detector.get("s2_mode", "Full"),
            "seed": int(seed),
            "n_samples_target": (float(n_samples) if (n_total.get(t) if isinstance(n_total, Mapping) else n_total)
                                 is None else None),  # None: n_total was fixed by the caller
            "n_total": resp.n_total,
            "safety": float(safety),
            "chunk_size": int(chunk_size),
            "bins_per_decade": int(bins_per_decade),
            "energy_range_keV": [float(edges[t][0]), float(edges[t][-1])],
            "active_range_keV": ([float(edges[t][active[0]]), float(edges[t][active[-1] + 1])]
                                 if active.size else None),
            "n_pilot": int(pilot_n[t].sum()),
            "pilot_passed": int(pilot_k[t].sum()),
            "loss_budget": float(loss_budget),
            "reference_family": [r.name for r in fams[t]],
            "reference_cost": [float(c) for c in plan.cost],
            "reference_truncation_loss": [float(x) for x in plan.truncation_loss],
            "reference_n_samples_effective": [float(a) for a in achieved],
            "lzflow_version": _lzflow_version(),
            "nest_version": _nest_version(),
        }
        out[t] = resp
    return out


def build_response(detector: Mapping[str, Any], interaction: str, **kwargs: Any) -> ResponseMatrix:
    """Build one interaction type's response matrix; keyword arguments as :func:`build_responses`."""
    t = canonical_interaction(interaction)
    return build_responses(detector, [t], **kwargs)[t]


# --------------------------------------------------------------------------------------------
# Fold
# --------------------------------------------------------------------------------------------
def _clipped(f: Callable[[np.ndarray], np.ndarray], lo: float, hi: float) -> Callable[[np.ndarray], np.ndarray]:
    """f on [lo, hi], 0 outside (f is never evaluated outside)."""
    def g(E: np.ndarray) -> np.ndarray:
        E = np.asarray(E, dtype=float)
        inside = (E >= lo) & (E <= hi)
        safe = np.where(inside, E, min(max(lo, 1e-6), hi))
        return np.where(inside, np.asarray(f(safe), dtype=float), 0.0)
    return g


@dataclass(frozen=True)
class FoldResult:
    """A spectrum folded through a response matrix.

    expected : (n_cS1, n_log10cS2) expected events per analysis bin (× ``scale``).
    variance : MC variance of ``expected``: Σ_j p_j² c_jb / N_j².
    expected_total : expected events in the ROI. spectrum_total : ∫ dN/dE over the full range.
    efficiency : ε_tot = expected_total / spectrum_total.
    n_eff_roi : Kish effective number of in-ROI MC events. n_samples_effective : n_eff_roi / ε_tot.
    truncation_loss : estimated fraction of the in-ROI expectation missed by truncated bins and
        the energies outside the grid (pilot acceptance, conservative); ``inf`` when nothing
        reaches the ROI but the bound is non-zero.
    p : (n_E,) spectrum integral per fine energy bin (× scale).
    """

    interaction: str
    expected: np.ndarray
    variance: np.ndarray
    expected_total: float
    spectrum_total: float
    efficiency: float
    n_eff_roi: float
    n_samples_effective: float
    truncation_loss: float
    truncation_loss_events: float
    p: np.ndarray

    @property
    def empty(self) -> bool:
        return not self.expected_total > 0


def fold_spectrum(response: ResponseMatrix, spectrum: Callable[[np.ndarray], np.ndarray] | np.ndarray, *,
                  full_range_keV: tuple[float, float] | None = None, total: float | None = None,
                  scale: float = 1.0, order: int = 4) -> FoldResult:
    r"""Fold a recoil spectrum through a response matrix.

    Parameters
    ----------
    spectrum : dN/dE (vectorised callable of E in keV) or an array of per-bin integrals
        :math:`p_j` (length n_E).
    full_range_keV : the spectrum's own energy range (e.g. ``Source.energy_range_keV``); its
        integral is the denominator of ε_tot and gives the mass outside the grid for the
        truncation bound. Default: the grid range.
    total : ∫ dN/dE over the full range, if known (skips the integration).
    scale : multiplies the spectrum (e.g. exposure in t·yr for a rate per t·yr·keV).

    The PDF is :math:`\mu_b = \sum_j p_j c_{jb}/N_j`, its variance
    :math:`\sum_j p_j^2 c_{jb}/N_j^2`; see the module docstring for n_eff.
    """
    edges = response.energy_edges
    nE = response.n_energy
    if callable(spectrum) and full_range_keV is not None:
        spectrum = _clipped(spectrum, *map(float, full_range_keV))
    if callable(spectrum):
        p = bin_integrals(spectrum, edges, order) * scale
    else:
        p = np.asarray(spectrum, dtype=float) * scale
        if p.shape != (nE,):
            raise ValueError(f"fold_spectrum: per-bin array has shape {p.shape}; expected ({nE},)")
    below = above = 0.0
    if full_range_keV is not None and callable(spectrum):
        lo, hi = map(float, full_range_keV)
        if lo < edges[0]:
            below = integrate_spectrum(spectrum, lo, min(hi, edges[0])) * scale
        if hi > edges[-1]:
            above = integrate_spectrum(spectrum, max(lo, edges[-1]), hi) * scale
    spectrum_total = float(total) * scale if total is not None else below + float(p.sum()) + above
    if np.any(p < 0):
        raise ValueError("fold_spectrum: the spectrum is negative somewhere")

    n = response.n_sim.astype(float)
    use = n > 0
    wgt = np.where(use, p / np.where(use, n, 1.0), 0.0)
    flat = response.counts.reshape(nE, -1)
    rows = np.flatnonzero(wgt > 0)
    fc = flat[rows].astype(float)
    expected = (wgt[rows] @ fc).reshape(response.space.shape)
    variance = ((wgt[rows] ** 2) @ fc).reshape(response.space.shape)
    expected_total = float(expected.sum())
    acc = response.acceptance
    n_eff = kish_n_eff(p, acc, response.n_sim)
    eff = expected_total / spectrum_total if spectrum_total > 0 else 0.0
    lost = float((p[~use] * response.eps_pilot[~use]).sum()) + below * float(response.eps_pilot[0]) \
        + above * float(response.eps_pilot[-1])
    loss = lost / expected_total if expected_total > 0 else (math.inf if lost > 0 else 0.0)
    return FoldResult(
        interaction=response.interaction, expected=expected, variance=variance, expected_total=expected_total,
        spectrum_total=spectrum_total, efficiency=eff, n_eff_roi=n_eff,
        n_samples_effective=(n_eff / eff if eff > 0 else 0.0), truncation_loss=loss,
        truncation_loss_events=lost, p=p,
    )


# --------------------------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------------------------
def _atomic_write(path: Path, write: Callable[[Any], None], binary: bool = True) -> None:
    """Write through ``write(handle)`` to a temporary file, then rename it onto ``path``."""
    with atomic_path(path, suffix=path.suffix) as tmp, open(tmp, "wb" if binary else "w") as handle:
        write(handle)


def save_response(response: ResponseMatrix, path: str | Path) -> Path:
    """Save to ``.npz`` (compressed) atomically."""
    path = Path(path)

    def write(fh: Any) -> None:
        np.savez_compressed(
            fh, counts=response.counts, n_sim=response.n_sim, eps_pilot=response.eps_pilot,
            energy_edges=response.energy_edges,
            header=np.array(json.dumps({"interaction": response.interaction, "space": response.space.to_dict(),
                                        "metadata": response.metadata}, sort_keys=True)),
        )
    _atomic_write(path, write)
    return path


def response_key(detector: Mapping[str, Any], interaction: str, **settings: Any) -> str:
    """SHA-256 (hex) of everything a response matrix depends on: the detector hash, the
    interaction, the format version, the reference family and ``settings`` (n_samples, seed,
    space, grid, ...; the number of workers must *not* be passed — it changes nothing)."""
    import hashlib

    t = canonical_interaction(interaction)
    norm = {k: (v.to_dict() if isinstance(v, AnalysisSpace) else v) for k, v in sorted(settings.items())}
    content = {"detector": detector.get("hash"), "interaction": t, "format": FORMAT_VERSION,
               "family": [r.name for r in reference_family(t)], "settings": norm}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def load_or_build_responses(detector: Mapping[str, Any], interactions: Sequence[str], cache_dir: str | Path, *,
                            n_samples: float, seed: int, space: AnalysisSpace | None = None, n_workers: int = 1,
                            **kwargs: Any) -> dict[str, ResponseMatrix]:
    """Response matrices from ``cache_dir`` (``response_<type>_<key[:16]>.npz``, see
    :func:`response_key`), building and saving the missing ones in one pool."""
    space = space or AnalysisSpace()
    cache_dir = Path(cache_dir)
    settings = dict(n_samples=float(n_samples), seed=int(seed), space=space,
                    **{k: v for k, v in kwargs.items() if k not in ("builder", "mp_context")})
    paths = {canonical_interaction(t): cache_dir / (f"response_{canonical_interaction(t)}_"
                                                    f"{response_key(detector, t, **settings)[:16]}.npz")
             for t in interactions}
    out = {t: load_response(p) for t, p in paths.items() if p.is_file()}
    missing = [t for t in paths if t not in out]
    if missing:
        built = build_responses(detector, missing, n_samples=n_samples, seed=seed, space=space,
                                n_workers=n_workers, **kwargs)
        for t, r in built.items():
            save_response(r, paths[t])
        out.update(built)
    return out


def load_response(path: str | Path) -> ResponseMatrix:
    """Load a matrix written by :func:`save_response`."""
    with np.load(Path(path), allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        if header["metadata"].get("format_version") not in (None, FORMAT_VERSION):
            raise ValueError(f"{path}: response format {header['metadata'].get('format_version')} "
                             f"is not {FORMAT_VERSION}")
        return ResponseMatrix(
            interaction=header["interaction"], energy_edges=z["energy_edges"].copy(),
            space=AnalysisSpace.from_dict(header["space"]), counts=z["counts"].copy(), n_sim=z["n_sim"].copy(),
            eps_pilot=z["eps_pilot"].copy(), metadata=header["metadata"],
        )

