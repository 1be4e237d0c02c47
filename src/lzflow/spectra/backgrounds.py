r"""Background registry: the eleven LZ-projection background sources, their recoil-energy shapes,
absolute physics rates where defined, and normalisation to table counts.

The LZ projection (arXiv:1802.06039; physics.md §1) quotes each background as a count in a
reference energy window for the whole 15.3 t·yr exposure: 1.5–6.5 keVee for ER, 6–30 keVnr for NR.
:func:`background_spectrum` turns such a count into dN/dE (events/keV, whole exposure) with the
source's physics shape, so the detector model decides what lands in the (S1, S2) region of
interest. Sources with (almost) nothing in the reference window (⁸B, hep CEvNS) must be given
another window, e.g. (1, 30) keVnr.

=======  ====  ==================================================================
name     type  shape
=======  ====  ==================================================================
B8       NR    ⁸B CEvNS (:mod:`.neutrino`)
DSN      NR    diffuse supernova ν CEvNS
DetER    ER    flat: Compton scatters of detector γ rays
DetNR    NR    exp(−E/20 keV): neutron single scatters (no public spectrum; assumed)
Kr85     ER    ⁸⁵Kr unique-first-forbidden β, Q = 687 keV
Rn220    ER    ²¹²Pb "naked" β (ground-state branch, Q = 570 keV)
Rn222    ER    ²¹⁴Pb "naked" β (ground-state branch, Q = 1019 keV)
atm      NR    atmospheric ν CEvNS
hep      NR    hep ν CEvNS
pp       ER    solar ν–e scattering: pp + ⁷Be (384, 862 keV) + ¹³N, P_ee = 0.55
vvBB     ER    ¹³⁶Xe 2νββ summed electrons
=======  ====  ==================================================================

Further registered sources (:data:`EXTRA_BACKGROUND_NAMES`, for the LZ WS2022/WS2024-like
analysis, docs/ws2024.md; physics and sources in :mod:`.capture`):

=======  ====  ==================================================================
Ar37     ER    ³⁷Ar electron capture: K 2.82, L 0.27, M 0.02 keV lines
H3       ER    ³H β (Q = 18.591 keV) + ¹⁴C β, 8:1 (CH₃T calibration residue)
Xe124    ER    ¹²⁴Xe 2νECEC: KK 64.3, KL 36.7, KM 33.0, LL 10.0, LM 5.98 keV lines
Xe124LL  ER    ¹²⁴Xe 2νECEC LL line (10.0 keV) alone, to give it its own yield model
Xe124LM  ER    ¹²⁴Xe 2νECEC LM line (5.98 keV) alone, to give it its own yield model
Xe127    ER    ¹²⁷Xe EC with escaping γ: K 33.2, L 5.19, M 1.07 keV lines
=======  ====  ==================================================================

A configuration picks any subset of :data:`REGISTERED_BACKGROUNDS`; :data:`BACKGROUND_NAMES`
stays the projection's eleven (its order and the reference family of the response matrices, in
:mod:`lzflow.response.reference`, do not change). Lines are narrow normalised log-normals with
exact window integrals (:attr:`BackgroundModel.integral`), see :mod:`.capture`.

The NEST yield model of each source is configuration (``backgrounds.<name>.nest_yields``), among
:data:`YIELD_MODELS` of its recoil type: ``beta`` or ``gammaRay`` for ER, ``NR`` for NR. NEST's
``gammaRay`` yields describe photo-absorption of a γ; a low-energy Compton scatter (DetER) leaves a
recoiling electron, whose yields are β-like (NEST documentation; physics.md §4).

Choices to note: the ²¹⁴Pb/²¹²Pb spectra use only the ground-state endpoints (the excited-state
branches have lower endpoints but are equally flat below 20 keV); ³⁹Ar (2.5 counts in the LZ
table) is not a separate source and may be folded into Kr85 via configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Callable, Literal

import numpy as np

from ._integrate import integrate
from .beta import normalised_beta_spectrum, vvbb_rate
from .capture import CAPTURE_LINES, H3_Q_KEV, capture_shape, line_breakpoints, line_integral, tritium_c14_shape
from .constants import XE_SHELLS_KEV
from .neutrino import cevns_rate, nu_e_rate

__all__ = [
    "BACKGROUND_NAMES",
    "EXTRA_BACKGROUND_NAMES",
    "REGISTERED_BACKGROUNDS",
    "BackgroundModel",
    "YIELD_MODELS",
    "background_model",
    "background_spectrum",
    "expected_counts",
    "reference_window_keV",
    "LZ_EXPOSURE_T_YR",
    "ER_RANGE_KEV",
    "NR_RANGE_KEV",
    "DETNR_SCALE_KEV",
]

BACKGROUND_NAMES: tuple[str, ...] = (
    "B8", "DSN", "DetER", "DetNR", "Kr85", "Rn220", "Rn222", "atm", "hep", "pp", "vvBB",
)
#: Sources beyond the projection's eleven (LZ WS2022/WS2024 background model).
EXTRA_BACKGROUND_NAMES: tuple[str, ...] = ("Ar37", "H3", "Xe124", "Xe124LL", "Xe124LM", "Xe127")
#: Every name a configuration may use.
REGISTERED_BACKGROUNDS: tuple[str, ...] = tuple(sorted(BACKGROUND_NAMES + EXTRA_BACKGROUND_NAMES))

#: LZ projection exposure: 5.6 t fiducial × 1000 live days, in tonne·year (Julian year).
LZ_EXPOSURE_T_YR = 5.6 * 1000.0 / 365.25
#: Energy ranges over which the ER / NR shapes are defined for the analysis (keV). They are wide
#: enough to cover the S1 < 80 phd region of interest (≈ 20 keVee, ≈ 80 keVnr) with margin.
ER_RANGE_KEV: tuple[float, float] = (0.1, 100.0)
NR_RANGE_KEV: tuple[float, float] = (0.1, 200.0)
#: Assumed e-folding energy of the detector-neutron NR spectrum (keV); no public LZ spectrum.
DETNR_SCALE_KEV = 20.0

#: NEST yield models (interaction types) a source of each recoil type may be folded with.
YIELD_MODELS: dict[str, tuple[str, ...]] = {"ER": ("beta", "gammaRay"), "NR": ("NR",)}

_REFERENCE_WINDOWS: dict[str, tuple[float, float]] = {"ER": (1.5, 6.5), "NR": (6.0, 30.0)}
_SHELL_STEPS = tuple(sorted(b for _, b, _ in XE_SHELLS_KEV))


def reference_window_keV(recoil: str) -> tuple[float, float]:
    """Energy window of the LZ projection background table: ER (1.5, 6.5) keVee,
    NR (6.0, 30.0) keVnr."""
    try:
        return _REFERENCE_WINDOWS[recoil]
    except KeyError:
        raise ValueError(f"recoil must be 'ER' or 'NR', got {recoil!r}") from None


@dataclass(frozen=True)
class BackgroundModel:
    """One background source.

    Attributes
    ----------
    name : one of :data:`BACKGROUND_NAMES`.
    recoil : ``"ER"`` or ``"NR"``.
    yield_models : the ``nestpy.interactions`` members its yields may come from (the choice is
        configuration): ``("beta", "gammaRay")`` for ER, ``("NR",)`` for NR.
    energy_range_keV : (lo, hi) over which the shape is defined; ``shape`` is 0 outside.
    shape : E_keV → unnormalised dR/dE (≥ 0, finite); for sources with an absolute rate it *is*
        that rate (events / (t·yr·keV)) restricted to ``energy_range_keV``.
    absolute_rate : E_keV → events / (tonne·year·keV) from published fluxes / half-lives, or
        ``None`` where the normalisation is only known from the LZ table (configuration).
    description : one line on the physics and its source.
    breakpoints_keV : energies where the shape has steps or kinks (used for integration).
    lz_table_counts : count in the reference window for the 15.3 t·yr LZ projection
        (arXiv:1802.06039 as summarised in physics.md §1) — information only, configuration is
        authoritative; ``None`` where the table gives ≈ 0.
    integral : (lo, hi) → exact ∫ shape dE, for shapes that generic quadrature resolves only
        with care (lines); ``None``: composite Gauss–Legendre with ``breakpoints_keV``.
    """

    name: str
    recoil: Literal["ER", "NR"]
    yield_models: tuple[str, ...]
    energy_range_keV: tuple[float, float]
    shape: Callable[[np.ndarray], np.ndarray]
    absolute_rate: Callable[[np.ndarray], np.ndarray] | None
    description: str = ""
    breakpoints_keV: tuple[float, ...] = field(default=())
    lz_table_counts: float | None = None
    integral: Callable[[float, float], float] | None = None


def _restricted(f: Callable[[np.ndarray], np.ndarray], lo: float, hi: float,
                E_keV: np.ndarray) -> np.ndarray:
    E = np.asarray(E_keV, dtype=float)
    inside = (E >= lo) & (E <= hi)
    val = np.asarray(f(np.where(inside, E, lo)), dtype=float)  # never evaluate outside
    ok = inside & np.isfinite(val)
    return np.where(ok, np.clip(val, 0.0, None), 0.0)


def _flat(E_keV: np.ndarray) -> np.ndarray:
    return np.ones_like(np.asarray(E_keV, dtype=float))


def _exponential(E_keV: np.ndarray, scale_keV: float = DETNR_SCALE_KEV) -> np.ndarray:
    return np.exp(-np.asarray(E_keV, dtype=float) / scale_keV)


def _make(name: str, recoil: Literal["ER", "NR"],
          rng: tuple[float, float], physics: Callable[[np.ndarray], np.ndarray],
          absolute: bool, description: str, breakpoints: tuple[float, ...] = (),
          lz_counts: float | None = None,
          integral: Callable[[float, float], float] | None = None) -> BackgroundModel:
    lo, hi = rng
    return BackgroundModel(
        name=name,
        recoil=recoil,
        yield_models=YIELD_MODELS[recoil],
        energy_range_keV=rng,
        shape=partial(_restricted, physics, lo, hi),
        absolute_rate=physics if absolute else None,
        description=description,
        breakpoints_keV=tuple(b for b in breakpoints if lo < b < hi),
        lz_table_counts=lz_counts,
        integral=integral,
    )


#: Energy range (keV) of the line sources: down to the ³⁷Ar M line (0.0175 keV).
LINE_RANGE_KEV: tuple[float, float] = (0.01, 100.0)


def _line(name: str, description: str) -> BackgroundModel:
    lines = CAPTURE_LINES[name]
    return _make(name, "ER", LINE_RANGE_KEV, capture_shape(name), False, description,
                 breakpoints=line_breakpoints(lines), integral=partial(_clipped_line_integral, name))


def _clipped_line_integral(name: str, lo: float, hi: float) -> float:
    a, b = max(lo, LINE_RANGE_KEV[0]), min(hi, LINE_RANGE_KEV[1])
    return line_integral(CAPTURE_LINES[name], a, b) if b > a else 0.0


_REGISTRY: dict[str, BackgroundModel] = {
    m.name: m
    for m in (
        _make("B8", "NR", (0.1, 5.0), partial(cevns_rate, sources="B8"), True,
              "8B solar-neutrino CEvNS, flux 5.16e6 /cm2/s (kinematic end ~5 keVnr)"),
        _make("DSN", "NR", NR_RANGE_KEV, partial(cevns_rate, sources="DSN"), True,
              "diffuse supernova neutrino background CEvNS, flux 85.7 /cm2/s", lz_counts=0.05),
        _make("DetER", "ER", ER_RANGE_KEV, _flat, False,
              "detector/surface/lab gamma-ray Compton scatters, flat in energy", lz_counts=54.0),
        _make("DetNR", "NR", NR_RANGE_KEV, _exponential, False,
              f"detector neutron single scatters, exp(-E/{DETNR_SCALE_KEV:g} keV) (assumed shape)",
              lz_counts=0.52),
        _make("Kr85", "ER", ER_RANGE_KEV,
              partial(normalised_beta_spectrum, emitter="Kr85"), False,
              "85Kr unique-first-forbidden beta, Q = 687 keV", lz_counts=24.5),
        _make("Rn220", "ER", ER_RANGE_KEV,
              partial(normalised_beta_spectrum, emitter="Pb212"), False,
              "212Pb naked beta (220Rn chain), Q = 570 keV", lz_counts=111.0),
        _make("Rn222", "ER", ER_RANGE_KEV,
              partial(normalised_beta_spectrum, emitter="Pb214"), False,
              "214Pb naked beta (222Rn chain), Q = 1019 keV", lz_counts=681.0),
        _make("atm", "NR", NR_RANGE_KEV, partial(cevns_rate, sources="atm"), True,
              "atmospheric-neutrino CEvNS, flux 10.7 /cm2/s", lz_counts=0.46),
        _make("hep", "NR", (0.1, 6.2), partial(cevns_rate, sources="hep"), True,
              "hep solar-neutrino CEvNS, flux 7.98e3 /cm2/s (kinematic end ~6 keVnr)"),
        _make("pp", "ER", ER_RANGE_KEV, nu_e_rate, True,
              "solar nu-e scattering: pp + 7Be + 13N, P_ee = 0.55, atomic-shell steps",
              breakpoints=_SHELL_STEPS, lz_counts=191.0),
        _make("vvBB", "ER", ER_RANGE_KEV, vvbb_rate, True,
              "136Xe 2nu-double-beta, T1/2 = 2.165e21 yr, Q = 2458 keV", lz_counts=67.0),
        _line("Ar37", "37Ar electron capture lines K 2.82 / L 0.27 / M 0.02 keV (90.2/8.7/1.1 %)"),
        _make("H3", "ER", (0.1, 160.0), tritium_c14_shape, False,
              "tritium beta (Q = 18.591 keV) + 14C beta, 8:1 (CH3T calibration residue)",
              breakpoints=(H3_Q_KEV,)),
        _line("Xe124", "124Xe 2nuECEC lines KK 64.3 / KL 36.7 / KM 33.0 / LL 10.0 / LM 5.98 keV"),
        _line("Xe124LL", "124Xe 2nuECEC LL line 10.0 keV (1.4 % of the decays) alone"),
        _line("Xe124LM", "124Xe 2nuECEC LM line 5.98 keV (0.8 % of the decays) alone"),
        _line("Xe127", "127Xe EC with escaping gamma: K 33.2 / L 5.19 / M 1.07 keV lines"),
    )
}
assert tuple(sorted(_REGISTRY)) == REGISTERED_BACKGROUNDS


def background_model(name: str) -> BackgroundModel:
    """The :class:`BackgroundModel` called ``name``; ``ValueError`` if unknown."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown background {name!r}; valid names: {', '.join(REGISTERED_BACKGROUNDS)}"
        ) from None


def _window(model: BackgroundModel, window_keV: tuple[float, float] | None) -> tuple[float, float]:
    lo, hi = reference_window_keV(model.recoil) if window_keV is None else window_keV
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo >= 0):
        raise ValueError(f"window_keV must be (lo, hi) with 0 <= lo < hi, got {window_keV!r}")
    return lo, hi


@lru_cache(maxsize=256)
def _shape_integral(name: str, lo: float, hi: float) -> float:
    m = background_model(name)
    if m.integral is not None:
        return float(m.integral(lo, hi))
    return integrate(m.shape, lo, hi, breakpoints=m.breakpoints_keV)


def background_spectrum(
    name: str,
    E_keV: np.ndarray,
    counts: float,
    window_keV: tuple[float, float] | None = None,
) -> np.ndarray:
    r"""dN/dE (events / keV, whole exposure) of background ``name`` at ``E_keV``, normalised so
    that :math:`\int_{\mathrm{window}} dN/dE\, dE = \mathrm{counts}`.

    ``window_keV`` defaults to :func:`reference_window_keV` of the source's recoil type.
    Raises ``ValueError`` for an unknown name, a negative/non-finite ``counts``, a bad window, or a
    window in which the shape integrates to (numerically) zero — e.g. B8 or hep in 6–30 keVnr;
    use a window such as (1, 30) keVnr for those.
    """
    model = background_model(name)
    counts = float(counts)
    if not (np.isfinite(counts) and counts >= 0):
        raise ValueError(f"counts must be finite and >= 0, got {counts!r}")
    lo, hi = _window(model, window_keV)
    norm = _shape_integral(name, lo, hi)
    full = _shape_integral(name, *model.energy_range_keV)
    if not (norm > 1e-9 * full and norm > 0):
        raise ValueError(
            f"background {name!r} has (almost) no rate in window {lo:g}-{hi:g} keV "
            f"(fraction {norm / full if full > 0 else 0:.1e} of its {model.energy_range_keV} keV "
            "range); choose another normalisation window, e.g. (1, 30) keV"
        )
    return counts / norm * model.shape(np.asarray(E_keV, dtype=float))


def expected_counts(
    name: str,
    exposure_t_yr: float = LZ_EXPOSURE_T_YR,
    window_keV: tuple[float, float] | None = None,
) -> float:
    """Expected events of ``name`` in ``window_keV`` (default: reference window) for
    ``exposure_t_yr`` tonne·years, from its :attr:`BackgroundModel.absolute_rate`
    (no detector efficiency). ``ValueError`` if the source has no absolute rate."""
    model = background_model(name)
    if model.absolute_rate is None:
        raise ValueError(f"background {name!r} has no absolute physics rate (set it from config)")
    lo, hi = _window(model, window_keV)
    steps = model.breakpoints_keV if model.breakpoints_keV else ()
    return float(exposure_t_yr) * integrate(model.absolute_rate, lo, hi, breakpoints=steps)
