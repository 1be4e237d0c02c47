r"""A PDF as a ROOT ``TH2D`` with honest statistics, titles and axis titles (uproot models).

A PDF (:mod:`lzflow.pdfs`) is a histogram of weighted Monte-Carlo events: an MC event of fine
energy bin j carries the weight :math:`w_j = p_j/N_j` (expected events it stands for), so a bin
holds :math:`\sum w` (its value, expected events) and :math:`\sum w^2` (its variance). ROOT keeps,
besides the bin contents ``fArray`` and ``fSumw2``, the statistics of the fills
(``TH1::GetStats``); uproot's generic conversion of a ``hist.Hist`` writes ``fTsumw2 = fTsumw``
and ``fEntries = \sum w`` (right only for unit weights), which makes ROOT's statistics box and
``GetEffectiveEntries()`` wrong. :func:`pdf_th2d` writes instead

* ``fTsumw`` = :math:`\sum_b \mathrm{value}_b = \sum w` (the expected events in the ROI);
* ``fTsumw2`` = :math:`\sum_b \mathrm{variance}_b = \sum w^2`, so that ROOT's
  ``GetEffectiveEntries()`` = :math:`(\sum w)^2/\sum w^2` is the Kish effective number of MC
  events (the sidecar's ``n_eff_roi``);
* ``fTsumwx``, ``fTsumwx2``, ``fTsumwy``, ``fTsumwy2``, ``fTsumwxy`` = the weighted moments at
  the bin centres (the events' own cS1 and log10 cS2 are not kept; ROOT's ``TH1::ResetStats``
  computes the same from the bins);
* ``fEntries`` = the number of MC events filled (unweighted, every in-ROI event of an energy bin
  with a non-zero weight), when the caller knows it; otherwise the effective number of entries,
  as ``TH1::ResetStats`` sets it for a weighted histogram.

Bin contents (``fArray``, ``fSumw2``) are those of the ``hist.Hist``, bit for bit, laid out as
ROOT does (flow bins zero, x fastest). ROOT axes have names ``xaxis``/``yaxis`` (their titles
carry ``cS1 [phd]`` and ``log10(cS2 [phd])``), so ``uproot``'s ``.to_hist()`` names them so;
:func:`lzflow.pdfs.read_pdf` restores ``cS1`` and ``log10cS2``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

__all__ = ["ZAXIS_TITLE", "effective_entries", "th2_statistics", "pdf_title", "pdf_th2d"]

#: Z-axis title of every PDF histogram
ZAXIS_TITLE = "expected events / bin"


def effective_entries(values: np.ndarray, variances: np.ndarray) -> float:
    r"""Kish effective number of entries :math:`(\sum w)^2/\sum w^2` (0 for an empty histogram),
    what ROOT's ``TH1::GetEffectiveEntries`` returns from ``fTsumw`` and ``fTsumw2``."""
    sw, sw2 = float(np.sum(values)), float(np.sum(variances))
    return sw * sw / sw2 if sw2 > 0 else 0.0


def th2_statistics(values: np.ndarray, variances: np.ndarray, xedges: np.ndarray,
                   yedges: np.ndarray) -> dict[str, float]:
    r"""``TH2`` fill statistics of a weighted histogram: ``fTsumw`` = Σw, ``fTsumw2`` = Σw²
    (the sum of the bin variances), and the moments Σw·x, Σw·x², Σw·y, Σw·y², Σw·x·y at the
    bin centres. ``values``/``variances`` have shape (n_x, n_y)."""
    w = np.asarray(values, dtype=np.float64)
    xc = 0.5 * (np.asarray(xedges, dtype=np.float64)[1:] + np.asarray(xedges, dtype=np.float64)[:-1])
    yc = 0.5 * (np.asarray(yedges, dtype=np.float64)[1:] + np.asarray(yedges, dtype=np.float64)[:-1])
    wx, wy = w.sum(axis=1), w.sum(axis=0)
    return {"fTsumw": float(w.sum()), "fTsumw2": float(np.sum(variances, dtype=np.float64)),
            "fTsumwx": float(wx @ xc), "fTsumwx2": float(wx @ xc**2),
            "fTsumwy": float(wy @ yc), "fTsumwy2": float(wy @ yc**2), "fTsumwxy": float(xc @ w @ yc)}


def pdf_title(metadata: Mapping[str, Any]) -> str:
    """A descriptive histogram title from a PDF's sidecar (``source`` and, where present, ``kind``,
    ``recoil``/``interaction``, ``mass_GeV``, ``sigma_ref_cm2``, ``exposure_t_yr``, ``empty``), e.g.
    ``wimp_m40 signal (NR, 40 GeV WIMP): expected events per bin at sigma_{ref} = 1e-45 cm^{2},
    4.216 t yr`` or ``Kr85 background (ER from beta): expected events per bin, 4.216 t yr``
    (ROOT TLatex: ``_{}``/``^{}`` are sub/superscripts)."""
    m = metadata
    bits = []
    if "recoil" in m:
        it = m.get("interaction")
        bits.append(str(m["recoil"]) + (f" from {it}" if it not in (None, m["recoil"]) else ""))
    elif "interaction" in m:
        bits.append(str(m["interaction"]))
    if "mass_GeV" in m:
        bits.append(f"{float(m['mass_GeV']):g} GeV WIMP")
    head = str(m.get("source", "PDF")) + (f" {m['kind']}" if "kind" in m else "")
    if bits:
        head += f" ({', '.join(bits)})"
    text = f"{head}: expected events per bin"
    if "sigma_ref_cm2" in m:
        text += f" at sigma_{{ref}} = {float(m['sigma_ref_cm2']):g} cm^{{2}}"
    if "exposure_t_yr" in m:
        text += f", {float(m['exposure_t_yr']):.4g} t yr"
    if m.get("empty") is True:
        text += ", empty (no event in the ROI)"
    return text


def _flat(a: np.ndarray) -> np.ndarray:
    """(n_x, n_y) bin array → ROOT's flat (n_x+2)(n_y+2) layout, flow bins zero, x fastest."""
    out = np.zeros((a.shape[0] + 2, a.shape[1] + 2), dtype=">f8")
    out[1:-1, 1:-1] = a
    return out.T.reshape(-1)


def pdf_th2d(histogram: Any, *, title: str, entries: float | None, ztitle: str = ZAXIS_TITLE) -> Any:
    """The uproot ``TH2D`` model of a 2D ``hist.Hist`` with Regular axes and Weight storage
    (module docstring): bin contents and variances unchanged, statistics from
    :func:`th2_statistics`, ``fEntries`` = ``entries`` (the MC events filled) or, when None, the
    effective number of entries; histogram, axis and Z-axis titles set."""
    import uproot.writing.identify as ident

    values = np.asarray(histogram.values(), dtype=np.float64)
    variances = np.asarray(histogram.variances(), dtype=np.float64)
    if values.ndim != 2 or variances.shape != values.shape:
        raise ValueError(f"pdf_th2d: values {values.shape} / variances {variances.shape}; expected two equal 2D shapes")
    number = isinstance(entries, (int, float, np.integer, np.floating)) and not isinstance(entries, bool)
    if entries is not None and not (number and math.isfinite(entries) and entries >= 0):
        raise ValueError(f"pdf_th2d: entries = {entries!r}; expected a finite number >= 0")
    axes = []
    for axis, name in zip(histogram.axes, ("xaxis", "yaxis")):
        edges = np.asarray(axis.edges, dtype=np.float64)
        if not np.allclose(edges, np.linspace(edges[0], edges[-1], len(edges)), rtol=1e-12, atol=1e-12):
            raise ValueError(f"pdf_th2d: axis {axis.name!r} is not regular; expected Regular PDF axes")
        axes.append(ident.to_TAxis(fName=name, fTitle=str(axis.label or axis.name), fNbins=len(edges) - 1,
                                   fXmin=float(edges[0]), fXmax=float(edges[-1]),
                                   fXbins=np.array([], dtype=">f8")))
    zaxis = ident.to_TAxis(fName="zaxis", fTitle=ztitle, fNbins=1, fXmin=0.0, fXmax=1.0)
    stats = th2_statistics(values, variances, histogram.axes[0].edges, histogram.axes[1].edges)
    n = float(entries) if entries is not None else effective_entries(values, variances)
    return ident.to_TH2x(fName=None, fTitle=title, data=_flat(values), fEntries=n, fSumw2=_flat(variances),
                         fXaxis=axes[0], fYaxis=axes[1], fZaxis=zaxis, **stats)
