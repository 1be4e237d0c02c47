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

from .model import BinnedModel, ShapeSystematic

__all__ = ["lz_like_model", "lz_like_systematics_model", "LZ_LIKE_SHAPE_SYSTEMATICS", "simple_model"]

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
) -> tuple[np.ndarray, float]:
    """Σ over cS1 bins of spectrum × Gaussian(log10 cS2 | mean(cS1), width) bin integrals,
    unit-normalised, and the normalisation."""
    z = (y_edges[None, :] - mean[:, None]) / (np.sqrt(2.0) * width[:, None])
    prob = 0.5 * np.diff(erf(z), axis=1)
    t = spectrum[:, None] * np.clip(prob, 0.0, None)
    total = t.sum()
    return t / total, total


#: shape systematics of :func:`lz_like_systematics_model`: name → (knob, relative change at +1σ)
LZ_LIKE_SHAPE_SYSTEMATICS: dict[str, tuple[str, float]] = {
    "g1": ("light", 0.03),  # light collection: cS1 of every recoil scales (threshold, band positions)
    "g2": ("charge", 0.04),  # charge gain: every band moves in log10 cS2
    "er_width": ("er_width", 0.10),  # ER band width (recombination fluctuations): leakage into the NR region
    "nr_yield": ("nr_yield", 0.06),  # NR light and charge yield: NR bands and signal move in cS1 and cS2
}


def _lz_like_templates(
    n_cs1: int, n_logcs2: int, light: float = 1.0, charge: float = 1.0, er_width: float = 1.0,
    nr_yield: float = 1.0,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """(signal, backgrounds) unit-normalised at the nominal knobs, plus their raw sums; the knobs
    (1 = nominal) scale cS1 (``light``; NR only: ``nr_yield``), cS2 (``charge``; NR: ``nr_yield``)
    and the ER band width. At the nominal knobs every operation is an exact identity."""
    x_edges = np.linspace(0.0, 80.0, n_cs1 + 1)
    y_edges = np.linspace(2.6, 4.6, n_logcs2 + 1)
    x = 0.5 * (x_edges[1:] + x_edges[:-1])
    eff = 1.0 / (1.0 + np.exp(-(x - 3.0) / 1.0))  # S1 threshold
    shift = np.log10(charge)

    def bands(xe: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        er_mean = 3.05 + 0.011 * xe + 0.15 * np.log10(1.0 + xe)
        er_w = 0.07 + 0.25 / np.sqrt(3.0 + xe)
        nr_mean = er_mean - 0.28 - 0.0015 * xe
        nr_w = 0.09 + 0.25 / np.sqrt(3.0 + xe)
        return er_mean, er_w, nr_mean, nr_w

    xer = x / light  # the recoil that gives cS1 = x
    xnr = xer / nr_yield
    er_mean, er_w, _, _ = bands(xer)
    _, _, nr_mean, nr_w = bands(xnr)
    er_mean, er_w = er_mean + shift, er_w * er_width
    nr_mean = nr_mean + shift + np.log10(nr_yield)
    jac_er, jac_nr = 1.0 / light, 1.0 / (light * nr_yield)

    def spectra(xe: np.ndarray, jac: float) -> dict[str, np.ndarray]:
        return {
            "flat": np.ones_like(xe) * jac,
            "rising": (0.3 + xe / 80.0) * jac,
            "peak10": (np.exp(-0.5 * ((xe - 10.0) / 3.0) ** 2) + 1e-4) * jac,
            "steep": np.exp(-xe / 1.5) * jac,
            "flatNR": np.exp(-xe / 60.0) * jac,
            "neutron": np.exp(-xe / 30.0) * jac,
            "acc": np.exp(-x / 6.0),
        }

    sp_er, sp_nr = spectra(xer, jac_er), spectra(xnr, jac_nr)
    bkgs, sums = [], []
    for _name, _count, _rel, band, spec in _LZ_LIKE_BACKGROUNDS:
        if band == "ER":
            t = _band_template(x_edges, y_edges, sp_er[spec] * eff, er_mean, er_w)
        elif band == "NR":
            t = _band_template(x_edges, y_edges, sp_nr[spec] * eff, nr_mean, nr_w)
        else:  # accidentals: broad in log10 cS2
            t = _band_template(x_edges, y_edges, sp_er[spec] * eff, np.full_like(x, 3.2) + shift,
                               np.full_like(x, 0.3))
        bkgs.append(t[0])
        sums.append(t[1])
    sig = _band_template(x_edges, y_edges, np.exp(-xnr / 15.0) * jac_nr * eff, nr_mean, nr_w)
    return sig[0], bkgs, sig[1], sums


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
    sig, templates, _, _ = _lz_like_templates(n_cs1, n_logcs2)
    bkgs, names, rels = [], [], []
    for (name, count, rel, _band, _spec), t in zip(_LZ_LIKE_BACKGROUNDS, templates):
        bkgs.append(count * background_scale * t)
        names.append(name)
        rels.append(0.0 if name in fixed else rel)
    return BinnedModel.from_templates(signal_events * sig, bkgs, names, rels)


def lz_like_systematics_model(
    n_cs1: int = 40,
    n_logcs2: int = 40,
    signal_events: float = 10.0,
    systematics: tuple[str, ...] = tuple(LZ_LIKE_SHAPE_SYSTEMATICS),
    scale: float = 1.0,
    fixed: tuple[str, ...] = (),
) -> BinnedModel:
    """:func:`lz_like_model` with shape systematics (default all four of
    :data:`LZ_LIKE_SHAPE_SYSTEMATICS`: g1-like light scale, g2-like charge scale, ER band width,
    NR yield; ``scale`` multiplies their 1σ sizes). Each template at ±1σ is recomputed with the
    knob moved and keeps the nominal normalisation constant, so a variation moves events in
    (cS1, log10 cS2), across the S1 threshold and out of the window: shape and rate together."""
    base = lz_like_model(n_cs1, n_logcs2, signal_events, fixed=fixed)
    _, _, sig_sum, sums = _lz_like_templates(n_cs1, n_logcs2)
    counts = np.r_[signal_events, [b[1] for b in _LZ_LIKE_BACKGROUNDS]]
    norm = counts / np.r_[sig_sum, sums]
    out = []
    for name in systematics:
        knob, size = LZ_LIKE_SHAPE_SYSTEMATICS[name]
        pair = []
        for sign in (1.0, -1.0):
            sig, bk, s_sum, b_sums = _lz_like_templates(n_cs1, n_logcs2, **{knob: 1.0 + sign * scale * size})
            raw = np.stack([sig * s_sum] + [b * bs for b, bs in zip(bk, b_sums)]).reshape(len(bk) + 1, -1)
            pair.append(raw * norm[:, None])
        out.append(ShapeSystematic(name, pair[0], pair[1]))
    return base.with_shape_systematics(out)


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
