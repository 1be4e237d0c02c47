r"""2D PDFs of every source in (cS1, log10 cS2): fold, histogram, write (ROOT + JSON sidecar).

A PDF is a fold: :func:`fold_spectrum` integrates a source's recoil spectrum over each fine energy
bin of its interaction type's response matrix (:mod:`lzflow.response`) and sums the matrix rows
with these weights (:class:`FoldResult`). Each PDF is a :class:`hist.Hist` with two regular axes,
``cS1`` [phd] and ``log10cS2`` [log10 phd], and ``Weight`` storage:

* value = expected events per bin for the whole exposure (signal: at the reference cross section
  ``sigma_ref_cm2``), :math:`\mu_b = \sum_j p_j c_{jb}/N_j` (:func:`fold_spectrum`);
* variance = its Monte-Carlo variance :math:`\sum_j p_j^2 c_{jb}/N_j^2`.

It is written as a ``TH2D`` named after the source to ``<dir>/<source>.root`` (uproot), with a
JSON sidecar ``<dir>/<source>.json`` (:func:`pdf_metadata`). The ``TH2D`` carries the statistics of
its weighted MC fills (:mod:`lzflow.roothist`: ``fTsumw`` = Σw, ``fTsumw2`` = Σw², ``fEntries`` =
the MC events filled, so ROOT's ``GetEffectiveEntries()`` is the sidecar's ``n_eff_roi``), a
descriptive title and the Z-axis title "expected events / bin". ROOT axes cannot store names:
:func:`read_pdf` gives the ``hist.Hist`` with axes ``cS1`` and ``log10cS2`` (uproot's
``.to_hist()`` names them ``xaxis``/``yaxis``). Both files are written atomically
(temporary file in the same directory, then ``os.replace``), ROOT first, so a sidecar never
points at a missing or partial histogram.

Empty PDFs: a source with no expected event in the ROI (e.g. a 2 GeV WIMP) gets an all-zero
histogram *only* together with ``"empty": true``, ``"expected_events": 0`` and a ``"warning"``
in its sidecar; :func:`write_pdf` refuses an all-zero histogram without that flag (and a
non-zero one with it).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import __version__
from .io import atomic_path
from .response import ResponseMatrix, build_responses
from .response.allocation import bin_integrals, clipped_spectrum, integrate_spectrum, kish_n_eff
from .roothist import pdf_th2d, pdf_title
from .space import AnalysisSpace, base_interaction, canonical_interaction
from .spectra.accidentals import ObservableTemplate

__all__ = [
    "FoldResult",
    "fold_spectrum",
    "RECOIL_OF",
    "pdf_histogram",
    "pdf_metadata",
    "write_pdf",
    "read_pdf",
    "make_pdf",
    "make_pdfs",
    "varied_template",
    "make_variation_pdf",
    "VARIATIONS_FORMAT",
]

#: NEST interaction type → recoil type.
RECOIL_OF: dict[str, str] = {"NR": "NR", "beta": "ER", "gammaRay": "ER"}


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
    n_mc_events : MC events filled into the PDF (unweighted): the in-ROI events of every energy bin
        with a non-zero weight p_j/N_j (ROOT's ``fEntries``).
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
    n_mc_events: int

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

    A :class:`lzflow.spectra.accidentals.ObservableTemplate` (a background given in (cS1, log10
    cS2), e.g. accidental coincidences) is not folded: its template is taken on the response's space.

    The PDF is :math:`\mu_b = \sum_j p_j c_{jb}/N_j`, its variance
    :math:`\sum_j p_j^2 c_{jb}/N_j^2`; n_eff as in :mod:`lzflow.response.allocation`.
    """
    if isinstance(spectrum, ObservableTemplate):  # a template in (cS1, log10 cS2): nothing to fold
        return _template_fold(response, spectrum, scale)
    edges = response.energy_edges
    nE = response.n_energy
    if callable(spectrum) and full_range_keV is not None:
        spectrum = clipped_spectrum(spectrum, *map(float, full_range_keV))
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
        truncation_loss_events=lost, p=p, n_mc_events=int(fc.sum()),
    )


def _template_fold(response: ResponseMatrix, template: ObservableTemplate, scale: float) -> FoldResult:
    """A :class:`FoldResult` for a background given in the analysis space
    (:mod:`lzflow.spectra.accidentals`): its template on the response's space, no Monte-Carlo
    (variance 0, no MC events, n_eff 0), every event in the ROI (efficiency 1). The response
    supplies only the space and the detector identity."""
    expected = np.asarray(template.binned(response.space), dtype=float) * scale
    total = float(expected.sum())
    return FoldResult(
        interaction=response.interaction, expected=expected, variance=np.zeros_like(expected),
        expected_total=total, spectrum_total=total, efficiency=1.0 if total > 0 else 0.0, n_eff_roi=0.0,
        n_samples_effective=0.0, truncation_loss=0.0, truncation_loss_events=0.0,
        p=np.zeros(response.n_energy), n_mc_events=0,
    )


def _pdf_hist(cs1: tuple[int, float, float], log10cs2: tuple[int, float, float], name: str | None = None,
              label: str | None = None):
    """An empty PDF ``hist.Hist``: Regular axes ``cS1`` and ``log10cS2`` given as (bins, min, max),
    no flow bins, Weight storage."""
    import hist

    return hist.Hist(
        hist.axis.Regular(*cs1, name="cS1", label="cS1 [phd]", underflow=False, overflow=False),
        hist.axis.Regular(*log10cs2, name="log10cS2", label="log10(cS2 [phd])", underflow=False, overflow=False),
        storage=hist.storage.Weight(), name=name, label=label,
    )


def pdf_histogram(fold: FoldResult, space: AnalysisSpace, name: str = "", label: str = ""):
    """The folded PDF as a ``hist.Hist`` (Regular axes ``cS1``, ``log10cS2``; Weight storage)."""
    nx, ny = space.shape
    h = _pdf_hist((nx, space.cs1_min, space.cs1_max), (ny, space.log10cs2_min, space.log10cs2_max),
                  name=name or None, label=label or None)
    view = h.view()
    view.value = np.asarray(fold.expected, dtype=float)
    view.variance = np.asarray(fold.variance, dtype=float)
    return h


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def pdf_metadata(*, source: str, interaction: str, fold: FoldResult, space: AnalysisSpace, n_samples: float | None,
                 seed: int | None = None, detector: Mapping[str, Any] | None = None,
                 response: ResponseMatrix | None = None,
                 source_metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON sidecar of a PDF.

    ``expected_events`` is the in-ROI expectation for the whole exposure (for a signal at
    ``sigma_ref_cm2``), ``efficiency`` = ε_tot (in-ROI / all events of the spectrum over its full
    energy range), ``n_samples_effective`` = n_eff_roi / ε_tot (:mod:`lzflow.response.allocation`).
    Detector facts (hash, name, coincidence level, fiducial volume) and the seed come from
    ``detector`` / ``seed`` when given, else from the response matrix's metadata.
    """
    it = canonical_interaction(interaction)
    smeta = dict(source_metadata or {})
    rmeta = response.metadata if response is not None else {}
    if detector is not None:
        det = {"hash": detector.get("hash"), "name": detector.get("name"),
               "coin_level": int(detector["nest"]["coinLevel"]) if "nest" in detector else None,
               "fiducial": dict(detector.get("fiducial", {}))}
        if rmeta.get("detector_hash") not in (None, det["hash"]):
            raise ValueError(f"{source}: response made for detector {rmeta.get('detector_hash')}, "
                             f"not {det['hash']}")
    else:
        det = {"hash": rmeta.get("detector_hash"), "name": rmeta.get("detector_name"),
               "coin_level": rmeta.get("coin_level"), "fiducial": dict(rmeta.get("fiducial") or {})}
    if seed is None:
        seed = rmeta.get("seed")
    empty = fold.empty
    meta: dict[str, Any] = {
        "source": source,
        "kind": smeta.get("kind", "signal" if source.startswith("wimp") else "background"),
        "recoil": "accidental" if "template" in smeta else RECOIL_OF[base_interaction(it)],  # a (cS1, log10 cS2) template: no recoil
        "interaction": "template" if "template" in smeta else it,
        "expected_events": 0.0 if empty else float(fold.expected_total),
        "efficiency": float(fold.efficiency),
        "spectrum_events": float(fold.spectrum_total),
        "n_samples": None if n_samples is None else float(n_samples),
        "n_samples_effective": float(fold.n_samples_effective),
        "n_eff_roi": float(fold.n_eff_roi),
        "truncation_loss": _finite(fold.truncation_loss),
        "seed": None if seed is None else int(seed),
        "detector_hash": det["hash"],
        "detector_name": det["name"],
        "binning": {
            "cS1": {"bins": space.cs1_bins, "min": space.cs1_min, "max": space.cs1_max, "unit": "phd"},
            "log10cS2": {"bins": space.log10cs2_bins, "min": space.log10cs2_min, "max": space.log10cs2_max,
                         "unit": "log10(phd)"},
        },
        "roi": {
            "cs1_min_phd": space.cs1_min, "cs1_max_phd": space.cs1_max,
            "log10cs2_min": space.log10cs2_min, "log10cs2_max": space.log10cs2_max,
            "s2_raw_min_phd": space.s2_raw_min_phd,
            "s1_coincidence": det["coin_level"],
            "fiducial": det["fiducial"],
        },
        "histogram": {"file": f"{source}.root", "object": source, "class": "TH2D",
                      "value": "expected events", "variance": "MC variance", "mc_events": int(fold.n_mc_events)},
        "empty": bool(empty),
        "lzflow_version": __version__,
    }
    for key in ("sigma_ref_cm2", "mass_GeV", "exposure_t_yr"):
        if key in smeta:
            meta[key] = smeta[key]
    if response is not None:
        meta["response"] = {k: response.metadata.get(k) for k in (
            "n_total", "seed", "n_samples_target", "energy_range_keV", "active_range_keV", "bins_per_decade",
            "nest_version")}
    if smeta:
        meta["source_metadata"] = json.loads(json.dumps(smeta, default=str))
    if empty:
        meta["warning"] = (f"{source}: no expected event in the ROI (efficiency 0 for this detector and ROI); "
                           f"the PDF is all zeros and must not enter a fit as a shape")
    elif fold.truncation_loss > 1e-4:
        meta["warning"] = (f"{source}: estimated truncation loss {fold.truncation_loss:.2e} of the in-ROI "
                           f"expectation exceeds 1e-4; widen the response's energy grid")
    return meta


def write_pdf(directory: str | Path, source: str, histogram: Any, metadata: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``<directory>/<source>.root`` (TH2D ``source``, :func:`lzflow.roothist.pdf_th2d`:
    title from the metadata, ``fEntries`` = ``metadata["histogram"]["mc_events"]`` or, where the
    metadata does not record it, the effective number of entries) and ``<directory>/<source>.json``.

    Raises ValueError for an all-zero histogram without ``metadata["empty"] is True``, for a
    non-zero one with it, or for non-finite values.
    """
    import uproot

    values = np.asarray(histogram.values(), dtype=float)
    if not np.all(np.isfinite(values)) or not np.all(np.isfinite(histogram.variances())):
        raise ValueError(f"{source}: the PDF has non-finite values")
    is_zero = not np.any(values != 0)
    if is_zero and metadata.get("empty") is not True:
        raise ValueError(f"{source}: refusing to write an all-zero PDF without 'empty': true in its metadata")
    if not is_zero and metadata.get("empty"):
        raise ValueError(f"{source}: metadata says empty but the histogram has non-zero bins")
    text = json.dumps(dict(metadata), indent=1, sort_keys=True, allow_nan=False) + "\n"  # fail before writing
    th2d = pdf_th2d(histogram, title=pdf_title({**metadata, "source": source}),
                     entries=(metadata.get("histogram") or {}).get("mc_events"))
    directory = Path(directory)
    root_path, json_path = directory / f"{source}.root", directory / f"{source}.json"
    with atomic_path(json_path) as tmp_json, atomic_path(root_path, suffix=".root") as tmp_root:
        with uproot.recreate(tmp_root) as f:
            f[source] = th2d
        tmp_json.write_text(text)
        with open(tmp_json, "rb") as fh:
            os.fsync(fh.fileno())
    # on exit the ROOT file is renamed into place first, then its sidecar (inner context first);
    # both renames happen only after both files were written completely.
    return root_path, json_path


def read_pdf(directory: str | Path, source: str):
    """(``hist.Hist``, metadata) read back from :func:`write_pdf`'s files (axes renamed to ``cS1``
    and ``log10cS2``)."""
    import uproot

    directory = Path(directory)
    meta = json.loads((directory / f"{source}.json").read_text())
    with uproot.open(directory / f"{source}.root") as f:
        obj = f[meta.get("histogram", {}).get("object", source)]
        values, variances = obj.values(), obj.variances()
        ex, ey = obj.axis(0).edges(), obj.axis(1).edges()
    h = _pdf_hist((len(ex) - 1, ex[0], ex[-1]), (len(ey) - 1, ey[0], ey[-1]), name=source)
    h.view().value = values
    h.view().variance = variances
    return h, meta


def make_pdf(response: ResponseMatrix, source: str, spectrum: Callable[[np.ndarray], np.ndarray], directory: str | Path,
             *, n_samples: float | None = None, detector: Mapping[str, Any] | None = None, seed: int | None = None,
             full_range_keV: tuple[float, float] | None = None, source_metadata: Mapping[str, Any] | None = None,
             ) -> dict[str, Any]:
    """Fold ``spectrum`` (events/keV for the whole exposure) through ``response`` and write
    ``<directory>/<source>.root`` and ``.json``; returns the metadata. ``n_samples``, ``detector``
    and ``seed`` default to what the response records; warns (RuntimeWarning) for an empty PDF or a
    truncation loss above 1e-4."""
    if n_samples is None:
        n_samples = response.metadata.get("n_samples_target")
    fold = fold_spectrum(response, spectrum, full_range_keV=full_range_keV)
    meta = pdf_metadata(source=source, interaction=response.interaction, fold=fold, space=response.space,
                        n_samples=n_samples, seed=seed, detector=detector, response=response,
                        source_metadata=source_metadata)
    h = pdf_histogram(fold, response.space, name=source)
    write_pdf(directory, source, h, meta)
    if "warning" in meta:
        warnings.warn(meta["warning"], RuntimeWarning, stacklevel=2)
    return meta


def make_pdfs(detector: Mapping[str, Any], sources: Sequence[Any], directory: str | Path, *, n_samples: float,
              seed: int, n_workers: int = 1, space: AnalysisSpace | None = None,
              responses: Mapping[str, ResponseMatrix] | None = None, **response_kwargs: Any) -> dict[str, dict]:
    """Write the PDFs of ``sources`` (objects with ``name``, ``interaction``, ``spectrum``,
    ``energy_range_keV`` and optionally ``metadata``, e.g. :class:`lzflow.sources.Source`).

    Response matrices are built for the interaction types needed unless given in ``responses``.
    """
    space = space or AnalysisSpace()
    needed = sorted({canonical_interaction(s.interaction) for s in sources})
    have = dict(responses or {})
    missing = [t for t in needed if t not in have]
    if missing:
        have.update(build_responses(detector, missing, n_samples=n_samples, seed=seed, n_workers=n_workers,
                                    space=space, **response_kwargs))
    out = {}
    for s in sources:
        out[s.name] = make_pdf(have[canonical_interaction(s.interaction)], s.name, s.spectrum, directory,
                               detector=detector, n_samples=n_samples, seed=seed,
                               full_range_keV=tuple(s.energy_range_keV),
                               source_metadata=getattr(s, "metadata", None))
    return out


# ------------------------------------------------------------------------------------ detector systematics
#: format tag of a source's varied templates (``pdfs/variations/<source>.json``)
VARIATIONS_FORMAT = "lzflow-variations-1"


def varied_template(nominal: np.ndarray, crn_nominal: np.ndarray, crn_shifted: np.ndarray) -> np.ndarray:
    r"""A varied template at full statistics from a common-random-number pair
    (:mod:`lzflow.response.crn`): per analysis bin b, with T the full-statistics nominal template
    and S^{(0)}, S^{(z)} the same spectrum folded through the CRN nominal and shifted matrices,

    .. math::

        T_b^{(z)} = T_b + (S_b^{(z)} - S_b^{(0)}) \quad \text{if that is} \ge 0, \qquad
        T_b^{(z)} = T_b \, S_b^{(z)} / S_b^{(0)} \quad \text{otherwise}.

    The difference is the estimator: unbiased, and with common random numbers its variance is that
    of the events a shift moves across a bin edge or a threshold, not of all events (a ratio
    S^{(z)}/S^{(0)} explodes in bins where the CRN pair has a handful of events). Where the
    difference would make the bin negative (T_b < S_b^{(0)} − S_b^{(z)}: the CRN nominal has more
    there than the full-statistics one) the ratio is used instead, which is ≥ 0 and < T_b there; no
    bin is clipped. A zero shift (S^{(z)} = S^{(0)} bit for bit) returns T exactly.

    A bin the full-statistics nominal leaves empty (T_b = 0) stays empty: its CRN difference comes
    from a sample ``n_samples_fraction`` times smaller and is noise there, and a varied template with
    support where the nominal has none lets the additive code-4p morphing (pyhf ``histosys``) go
    negative for α of the other sign (e.g. T = 0, up > 0, down = 0: ν = α·up/2 + … < 0 for small
    α < 0), which made every Asimov fit of the quick analysis fail."""
    nominal, s0, sz = (np.asarray(a, dtype=np.float64) for a in (nominal, crn_nominal, crn_shifted))
    additive = nominal + (sz - s0)
    ratio = np.divide(sz, s0, out=np.ones_like(sz), where=s0 > 0)
    return np.where(nominal > 0, np.where(additive >= 0, additive, nominal * ratio), 0.0)


def make_variation_pdf(source: Any, nominal_pdf: str | Path, crn_nominal: str | Path, variations: Sequence[str | Path],
                       out: str | Path) -> dict[str, Any]:
    """The varied templates of one source (``source``: :class:`lzflow.sources.Source`): its spectrum
    folded through the CRN nominal matrix and through every shift of each variation file, combined
    with its full-statistics PDF by :func:`varied_template`; written to ``out`` (JSON) and returned
    (with a log line, ``summary``)."""
    from .io import write_json
    from .response.crn import load_variations
    from .response.variations import shift_label

    values = np.asarray(read_pdf(Path(nominal_pdf).parent, Path(nominal_pdf).stem)[0].values(), dtype=np.float64)
    base = load_variations(crn_nominal)
    kwargs = {"full_range_keV": tuple(source.energy_range_keV)}
    s0 = fold_spectrum(base.response(0), source.spectrum, **kwargs).expected
    entries = []
    for path in variations:
        vs = load_variations(path)
        if vs.interaction != base.interaction or not np.array_equal(vs.n_sim, base.n_sim) \
                or vs.metadata["seed"] != base.metadata["seed"]:
            raise ValueError(f"{path}: not on the events of {crn_nominal} (interaction, allocation or seed differ)")
        shifts = {}
        for z in vs.shifts:
            sz = fold_spectrum(vs.response(z), source.spectrum, **kwargs).expected
            varied = varied_template(values, s0, sz)
            shifts[shift_label(z)] = {"expected_events": float(varied.sum()),
                                      "ratio_bins": int(np.count_nonzero(values + (sz - s0) < 0)),
                                      "crn_ratio": float(sz.sum() / s0.sum()) if s0.sum() > 0 else None,
                                      "template": varied.tolist()}
        par = vs.metadata["parameter"]
        entries.append({"name": vs.systematic, "physical": {k: par[k] for k in ("key", "nominal", "sigma", "unit")},
                        "shifts": shifts})
    doc = {"format": VARIATIONS_FORMAT, "source": source.name, "interaction": base.interaction,
           "nominal_expected_events": float(values.sum()), "crn_nominal_expected_events": float(s0.sum()),
           "n_samples_fraction": base.metadata["n_samples_fraction"], "crn_events": int(base.n_sim.sum()),
           "systematics": entries, "lzflow_version": __version__}
    write_json(out, doc)
    names = ", ".join(e["name"] for e in entries)
    return {**doc, "summary": f"variations {source.name}: {names} on {float(values.sum()):.4g} events -> {out}"}
