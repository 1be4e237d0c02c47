r"""Detector-level validation quantities, measured on an analysis's own artefacts.

These are the numbers a physicist checks before trusting a sensitivity curve, and the ones the LZ
projection (arXiv:1802.06039) quotes for its detector model:

* the **NR detection efficiency** versus recoil energy, ε(E) = Σ_b c_{Eb} / N_E, read from the NR
  response matrix (every cut of the analysis: S1 coincidence, S1/S2 thresholds, the (cS1, log10 cS2)
  region of interest), and the energy E₅₀ where it crosses 50 %;
* the **ER leakage**: the fraction of an electron-recoil population below the NR band median,
  i.e. ER discrimination at 50 % NR acceptance. Per cS1 bin i the NR median m_i solves
  F_i(m_i) = ½ with F_i the cumulative NR distribution in log10 cS2 (linear within a bin); the ER
  events below it are Σ_i G_i(m_i), G_i the cumulative ER distribution of that row (same
  interpolation). The projection assumes 99.5 % discrimination (0.5 % leakage) for a flat ER
  spectrum in 1.5–6.5 keVee (physics reference §1, background table footnote);
* each background's **expected events in the ROI and below the NR median**, beside the
  projection's table (counts in 1.5–6.5 keVee / 6–30 keVnr, and 5.66 ER + 0.52 NR after 99.5 %
  discrimination at 50 % NR acceptance).

Inputs are plain arrays (templates in events per (cS1, log10 cS2) bin, C order: cS1 rows), so the
functions are pure and testable; :mod:`lzflow.cli` reads the files.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = [
    "nr_efficiency", "half_efficiency_energy", "band_median", "fraction_below", "leakage_below_median",
    "roi_table", "summed", "physics_tables", "physics_markdown", "reference_count", "observable_notes",
]


def nr_efficiency(counts: np.ndarray, n_sim: np.ndarray, energy_edges: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(E, ε): geometric bin centres (keV) and the fraction of simulated events of each energy bin
    that pass every cut and land in the ROI. Bins with nothing simulated (truncated by the
    allocation) are left out."""
    counts = np.asarray(counts)
    n_sim = np.asarray(n_sim, dtype=float)
    edges = np.asarray(energy_edges, dtype=float)
    centres = np.sqrt(edges[1:] * edges[:-1])
    passed = counts.reshape(len(n_sim), -1).sum(axis=1)
    keep = n_sim > 0
    return centres[keep], passed[keep] / n_sim[keep]


def half_efficiency_energy(energy_keV: np.ndarray, efficiency: np.ndarray, level: float = 0.5) -> float:
    """The lowest energy at which ε first reaches ``level`` (linear interpolation in log E between
    the two bins around the crossing); NaN if it never does."""
    e = np.asarray(energy_keV, dtype=float)
    eff = np.asarray(efficiency, dtype=float)
    above = np.flatnonzero(eff >= level)
    if above.size == 0:
        return float("nan")
    i = int(above[0])
    if i == 0:
        return float(e[0])
    x0, x1, y0, y1 = np.log(e[i - 1]), np.log(e[i]), eff[i - 1], eff[i]
    return float(np.exp(x0 + (level - y0) * (x1 - x0) / (y1 - y0)))


def _row_cdf(row: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(row)])


def band_median(template: np.ndarray, log10cs2_edges: np.ndarray) -> np.ndarray:
    """Per cS1 row, the median log10 cS2 of ``template`` (NaN for an empty row), the cumulative
    distribution interpolated linearly within a bin."""
    edges = np.asarray(log10cs2_edges, dtype=float)
    out = np.full(template.shape[0], np.nan)
    for i, row in enumerate(np.asarray(template, dtype=float)):
        total = row.sum()
        if total > 0:
            out[i] = np.interp(0.5, _row_cdf(row) / total, edges)
    return out


def fraction_below(template: np.ndarray, boundary: np.ndarray, log10cs2_edges: np.ndarray) -> np.ndarray:
    """Per cS1 row, the events of ``template`` below ``boundary[i]`` in log10 cS2 (0 where the
    boundary is NaN), interpolating linearly within the boundary's bin."""
    edges = np.asarray(log10cs2_edges, dtype=float)
    out = np.zeros(template.shape[0])
    for i, row in enumerate(np.asarray(template, dtype=float)):
        if np.isfinite(boundary[i]):
            out[i] = np.interp(boundary[i], edges, _row_cdf(row))
    return out


def leakage_below_median(er_template: np.ndarray, nr_template: np.ndarray, log10cs2_edges: np.ndarray,
                         rows: slice | np.ndarray | None = None) -> float:
    """Fraction of the ER events (of the selected cS1 ``rows``, default all) below the NR median:
    1 − the ER discrimination at 50 % NR acceptance."""
    er = np.asarray(er_template, dtype=float)
    below = fraction_below(er, band_median(nr_template, log10cs2_edges), log10cs2_edges)
    sel = slice(None) if rows is None else rows
    total = er.sum(axis=1)[sel].sum()
    return float(below[sel].sum() / total) if total > 0 else float("nan")


def roi_table(templates: Mapping[str, np.ndarray], recoils: Mapping[str, str], nr_band: np.ndarray,
              log10cs2_edges: np.ndarray, table_counts: Mapping[str, float] | None = None
              ) -> list[dict[str, float | str | None]]:
    """Per background: its recoil type, the expected events in the ROI, and those below the NR
    median of ``nr_band`` (the events that reach the WIMP region at 50 % NR acceptance), with the
    count ``table_counts`` quotes for its reference energy window where given."""
    medians = band_median(nr_band, log10cs2_edges)
    rows: list[dict[str, float | str | None]] = []
    for name in sorted(templates):
        t = np.asarray(templates[name], dtype=float)
        rows.append({
            "source": name, "recoil": recoils[name], "roi": float(t.sum()),
            "below_nr_median": float(fraction_below(t, medians, log10cs2_edges).sum()),
            "table": None if table_counts is None else table_counts.get(name),
        })
    return rows


def summed(rows: Sequence[Mapping[str, float | str | None]], recoil: str, key: str) -> float:
    """Σ ``key`` over the rows of recoil type ``recoil``."""
    return float(sum(float(r[key]) for r in rows if r["recoil"] == recoil and r[key] is not None))


#: The LZ projection's ER discrimination at 50 % NR acceptance for a flat ER spectrum in
#: 1.5–6.5 keVee (arXiv:1802.06039 background table footnote; physics reference §1 [R]).
PROJECTION_ER_LEAKAGE = 0.005
#: Flat spectra whose leakage the projection quotes: ER 1.5–6.5 keVee below the median of NR
#: 6–30 keVnr (the background table's reference windows, physics reference §1).
LEAKAGE_WINDOWS_KEV = {"ER": (1.5, 6.5), "NR": (6.0, 30.0)}
#: Energies (keVnr) at which the NR efficiency is tabulated.
EFFICIENCY_ENERGIES_KEV = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0)


def _flat(lo: float, hi: float):
    return lambda e: np.where((e >= lo) & (e <= hi), 1.0, 0.0)


def physics_tables(results_dir: str, nr_band_source: str, backgrounds: Sequence[str]) -> dict:
    """The detector-level validation numbers of an analysis's results tree ``results_dir``
    (``response/NR.npz``, ``response/beta.npz``, ``pdfs/<source>.root``): NR efficiency, ER leakage
    of flat spectra, and per background the ROI and below-NR-median counts against the NR band of
    the PDF ``nr_band_source`` (e.g. ``wimp_m40``)."""
    from pathlib import Path

    from . import layout
    from .pdfs import fold_spectrum, read_pdf
    from .response.matrix import load_response

    root = Path(results_dir)
    nr = load_response(root / layout.fill(layout.RESPONSE, interaction="NR"))
    energy, eff = nr_efficiency(nr.counts, nr.n_sim, nr.energy_edges)
    edges = nr.space.log10cs2_edges
    out: dict = {
        "nr_efficiency": {
            "E10_keV": half_efficiency_energy(energy, eff, 0.1), "E50_keV": half_efficiency_energy(energy, eff, 0.5),
            "E90_keV": half_efficiency_energy(energy, eff, 0.9),
            "at": {f"{e:g}": float(np.interp(np.log(e), np.log(energy), eff)) for e in EFFICIENCY_ENERGIES_KEV},
        },
    }
    beta_path = root / layout.fill(layout.RESPONSE, interaction="beta")
    if beta_path.exists():
        lo, hi = LEAKAGE_WINDOWS_KEV["ER"]
        er = fold_spectrum(load_response(beta_path), _flat(lo, hi), full_range_keV=(lo, hi)).expected
        nlo, nhi = LEAKAGE_WINDOWS_KEV["NR"]
        nr_flat = fold_spectrum(nr, _flat(nlo, nhi), full_range_keV=(nlo, nhi)).expected
        band, _ = read_pdf(root / "pdfs", nr_band_source)
        out["er_leakage"] = {
            "flat_er_below_flat_nr_median": leakage_below_median(er, nr_flat, edges),
            f"flat_er_below_{nr_band_source}_median": leakage_below_median(er, band.values(), edges),
            "projection": PROJECTION_ER_LEAKAGE,
        }
    band, _ = read_pdf(root / "pdfs", nr_band_source)
    templates, recoils = {}, {}
    for name in backgrounds:
        hist, meta = read_pdf(root / "pdfs", name)
        templates[name], recoils[name] = hist.values(), meta["recoil"]
    table = {name: reference_count(name) for name in backgrounds}
    out["backgrounds"] = roi_table(templates, recoils, band.values(), edges, table)
    out["nr_band_source"] = nr_band_source
    out["notes"] = observable_notes(backgrounds)
    return out


def reference_count(name: str) -> float | None:
    """The projection table's count of background ``name`` in its reference energy window, or
    None for a background with no recoil spectrum (an observable-space template such as
    ``accidentals``, :data:`lzflow.spectra.accidentals.OBSERVABLE_BACKGROUNDS`: no energy window)."""
    from .spectra import background_model
    from .spectra.accidentals import OBSERVABLE_BACKGROUNDS

    return None if name in OBSERVABLE_BACKGROUNDS else background_model(name).lz_table_counts


def observable_notes(backgrounds: Sequence[str]) -> list[str]:
    """One line per background given as a (cS1, log10 cS2) template: what of the tables applies."""
    from .spectra.accidentals import OBSERVABLE_BACKGROUNDS

    return [f"{name}: a (cS1, log10 cS2) template with no recoil spectrum: its ROI and below-NR-median counts "
            f"apply; no reference-window count, and it is in neither the ER nor the NR total"
            for name in backgrounds if name in OBSERVABLE_BACKGROUNDS]


def physics_markdown(tables: Mapping) -> str:
    """Markdown tables of :func:`physics_tables`."""
    eff = tables["nr_efficiency"]
    lines = ["## NR detection efficiency (every cut, ROI)", "",
             f"E10 = {eff['E10_keV']:.2f} keVnr, E50 = {eff['E50_keV']:.2f} keVnr, E90 = {eff['E90_keV']:.2f} keVnr", "",
             "| E [keVnr] | " + " | ".join(eff["at"]) + " |", "|---" * (len(eff["at"]) + 1) + "|",
             "| efficiency | " + " | ".join(f"{v:.3f}" for v in eff["at"].values()) + " |", ""]
    if "er_leakage" in tables:
        lines += ["## ER leakage below the NR median (1 − discrimination at 50 % NR acceptance)", ""]
        lines += [f"- {k.replace('_', ' ')}: {100 * v:.3f} %" for k, v in tables["er_leakage"].items()] + [""]
    rows = tables["backgrounds"]
    lines += [f"## Backgrounds: expected events (NR band: {tables['nr_band_source']})", "",
              "| source | recoil | projection table (ref. window) | lzflow in ROI | lzflow below NR median |",
              "|---|---|---|---|---|"]
    for r in rows:
        ref = "–" if r["table"] is None else f"{r['table']:g}"
        lines.append(f"| {r['source']} | {r['recoil']} | {ref} | {r['roi']:.3g} | {r['below_nr_median']:.3g} |")
    for rec in ("ER", "NR"):
        lines.append(f"| **{rec} total** | | {summed(rows, rec, 'table'):.4g} | {summed(rows, rec, 'roi'):.4g} | "
                     f"{summed(rows, rec, 'below_nr_median'):.3g} |")
    lines += [""] + [f"Note: {note}" for note in tables.get("notes", [])] if tables.get("notes") else []
    return "\n".join(lines) + "\n"
