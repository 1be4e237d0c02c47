"""Synthetic models for tests and benchmarks (no physics inputs needed).

:func:`lz_like_model` mimics the structure of an LZ WIMP-search likelihood in (cS1, log10 cS2):
an electron-recoil band populated by eleven background components (flat solar-ν pp+⁷Be,
²¹⁴Pb, ²¹²Pb, ⁸⁵Kr, ¹³⁶Xe, detector γ, a ³⁷Ar-like peak), a lower nuclear-recoil band
(⁸B CEvNS, atmospheric ν, detector neutrons), broad accidental coincidences, and a falling NR
signal. The counts are of the order of LZ's projected 1000-live-day exposure (≈1000 background
events, ≈10 signal events at the reference cross section). Gaussian band tails leave many bins
nearly empty, as in real templates. The numbers are illustrative, not LZ's.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from .model import BinnedModel

__all__ = ["lz_like_model", "simple_model"]

#: name, total count, relative uncertainty, band ("ER", "NR", "ACC"), spectrum id
_LZ_LIKE_BACKGROUNDS: tuple[tuple[str, float, float, str, str], ...] = (
    ("pp_7Be", 542.16, 0.02, "ER", "flat"),
    ("Pb214", 250.0, 0.10, "ER", "flat"),
    ("Pb212", 40.0, 0.10, "ER", "flat"),
    ("Kr85", 30.0, 0.20, "ER", "flat"),
    ("Xe136", 60.0, 0.05, "ER", "rising"),
    ("Ar37", 20.0, 0.30, "ER", "peak10"),
    ("det_ER", 35.0, 0.20, "ER", "flat"),
    ("B8", 3.0, 0.20, "NR", "steep"),
    ("atm_nu", 0.6, 0.20, "NR", "flatNR"),
    ("neutron", 1.0, 0.20, "NR", "neutron"),
    ("accidental", 1.5, 0.20, "ACC", "acc"),
)


def _band_template(
    x_edges: np.ndarray, y_edges: np.ndarray, spectrum: np.ndarray, mean: np.ndarray,
    width: np.ndarray,
) -> np.ndarray:
    """Σ over cS1 bins of spectrum × Gaussian(log10 cS2 | mean(cS1), width) bin integrals."""
    z = (y_edges[None, :] - mean[:, None]) / (np.sqrt(2.0) * width[:, None])
    prob = 0.5 * np.diff(erf(z), axis=1)
    t = spectrum[:, None] * np.clip(prob, 0.0, None)
    return t / t.sum()


def lz_like_model(
    n_cs1: int = 40,
    n_logcs2: int = 40,
    signal_events: float = 10.0,
    background_scale: float = 1.0,
    fixed: tuple[str, ...] = (),
) -> BinnedModel:
    """LZ-like (cS1, log10 cS2) model with 1 signal and 11 constrained backgrounds.

    ``fixed`` names backgrounds whose normalisation is fixed (rel_unc set to 0).
    Templates have shape ``(n_cs1, n_logcs2)`` and are flattened in C order.
    """
    x_edges = np.linspace(0.0, 80.0, n_cs1 + 1)
    y_edges = np.linspace(2.6, 4.6, n_logcs2 + 1)
    x = 0.5 * (x_edges[1:] + x_edges[:-1])
    eff = 1.0 / (1.0 + np.exp(-(x - 3.0) / 1.0))  # S1 threshold
    er_mean = 3.05 + 0.011 * x + 0.15 * np.log10(1.0 + x)
    er_width = 0.07 + 0.25 / np.sqrt(3.0 + x)
    nr_mean = er_mean - 0.28 - 0.0015 * x
    nr_width = 0.09 + 0.25 / np.sqrt(3.0 + x)
    spectra = {
        "flat": np.ones_like(x),
        "rising": 0.3 + x / 80.0,
        "peak10": np.exp(-0.5 * ((x - 10.0) / 3.0) ** 2) + 1e-4,
        "steep": np.exp(-x / 1.5),
        "flatNR": np.exp(-x / 60.0),
        "neutron": np.exp(-x / 30.0),
        "acc": np.exp(-x / 6.0),
    }
    bkgs, names, rels = [], [], []
    for name, count, rel, band, spec in _LZ_LIKE_BACKGROUNDS:
        s = spectra[spec] * eff
        if band == "ER":
            t = _band_template(x_edges, y_edges, s, er_mean, er_width)
        elif band == "NR":
            t = _band_template(x_edges, y_edges, s, nr_mean, nr_width)
        else:  # accidentals: broad in log10 cS2
            t = _band_template(x_edges, y_edges, s, np.full_like(x, 3.2), np.full_like(x, 0.3))
        bkgs.append(count * background_scale * t)
        names.append(name)
        rels.append(0.0 if name in fixed else rel)
    sig = _band_template(x_edges, y_edges, np.exp(-x / 15.0) * eff, nr_mean, nr_width)
    return BinnedModel.from_templates(signal_events * sig, bkgs, names, rels)


def simple_model(
    n_bins: int = 20,
    n_bkg: int = 3,
    background_events: float = 100.0,
    signal_events: float = 10.0,
    rel_unc: float | tuple[float, ...] = 0.1,
    seed: int = 1,
) -> BinnedModel:
    """A small 1D model: falling signal, ``n_bkg`` smooth backgrounds of different shapes.

    ``background_events`` is the total over all backgrounds (split 60/30/10 %-like).
    """
    rng = np.random.default_rng(seed)
    x = (np.arange(n_bins) + 0.5) / n_bins
    sig = np.exp(-x / 0.15)
    sig *= signal_events / sig.sum()
    weights = 0.6 ** np.arange(n_bkg)
    weights /= weights.sum()
    bkgs = []
    for b in range(n_bkg):
        slope = rng.uniform(-1.5, 1.5)
        shape = np.exp(slope * x) + 0.2 * rng.uniform(size=n_bins)
        bkgs.append(background_events * weights[b] * shape / shape.sum())
    rel = np.broadcast_to(np.asarray(rel_unc, float), (n_bkg,))
    return BinnedModel(sig, np.array(bkgs), tuple(f"bkg{b}" for b in range(n_bkg)), rel)
