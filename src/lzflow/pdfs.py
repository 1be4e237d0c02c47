r"""2D PDFs of every source in (cS1, log10 cS2): fold, histogram, write (ROOT + JSON sidecar).

Each PDF is a :class:`hist.Hist` with two regular axes, ``cS1`` [phd] and ``log10cS2``
[log10 phd], and ``Weight`` storage:

* value = expected events per bin for the whole exposure (signal: at the reference cross section
  ``sigma_ref_cm2``), :math:`\mu_b = \sum_j p_j c_{jb}/N_j` (:func:`lzflow.response.fold_spectrum`);
* variance = its Monte-Carlo variance :math:`\sum_j p_j^2 c_{jb}/N_j^2`.

It is written as a ``TH2D`` named after the source to ``<dir>/<source>.root`` (uproot), with a
JSON sidecar ``<dir>/<source>.json`` (:func:`pdf_metadata`). Both files are written atomically
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
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .io import atomic_path

from .response import (
    AnalysisSpace,
    FoldResult,
    ResponseMatrix,
    build_responses,
    canonical_interaction,
    fold_spectrum,
)

__all__ = [
    "RECOIL_OF",
    "pdf_histogram",
    "pdf_metadata",
    "write_pdf",
    "read_pdf",
    "make_pdf",
    "make_pdfs",
]

#: NEST interaction type → recoil type.
RECOIL_OF: dict[str, str] = {"NR": "NR", "beta": "ER", "gammaRay": "ER"}


def pdf_histogram(fold: FoldResult, space: AnalysisSpace, name: str = "", label: str = ""):
    """The folded PDF as a ``hist.Hist`` (Regular axes ``cS1``, ``log10cS2``; Weight storage)."""
    import hist

    nx, ny = space.shape
    h = hist.Hist(
        hist.axis.Regular(nx, space.cs1_min, space.cs1_max, name="cS1", label="cS1 [phd]",
                          underflow=False, overflow=False),
        hist.axis.Regular(ny, space.log10cs2_min, space.log10cs2_max, name="log10cS2",
                          label="log10(cS2 [phd])", underflow=False, overflow=False),
        storage=hist.storage.Weight(), name=name or None, label=label or None,
    )
    view = h.view()
    view.value = np.asarray(fold.expected, dtype=float)
    view.variance = np.asarray(fold.variance, dtype=float)
    return h


def _lzflow_version() -> str:
    from . import __version__

    return __version__


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def pdf_metadata(*, source: str, interaction: str, fold: FoldResult, space: AnalysisSpace, n_samples: float | None,
                 seed: int | None = None, detector: Mapping[str, Any] | None = None,
                 response: ResponseMatrix | None = None,
                 source_metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON sidecar of a PDF.

    ``expected_events`` is the in-ROI expectation for the whole exposure (for a signal at
    ``sigma_ref_cm2``), ``efficiency`` = ε_tot (in-ROI / all events of the spectrum over its full
    energy range), ``n_samples_effective`` = n_eff_roi / ε_tot (module :mod:`lzflow.response`).
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
        "recoil": RECOIL_OF[it],
        "interaction": it,
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
                      "value": "expected events", "variance": "MC variance"},
        "empty": bool(empty),
        "lzflow_version": _lzflow_version(),
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
    """Write ``<directory>/<source>.root`` (TH2D ``source``) and ``<directory>/<source>.json``.

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
    directory = Path(directory)
    root_path, json_path = directory / f"{source}.root", directory / f"{source}.json"
    with atomic_path(json_path) as tmp_json, atomic_path(root_path, suffix=".root") as tmp_root:
        with uproot.recreate(tmp_root) as f:
            f[source] = histogram
        tmp_json.write_text(text)
        with open(tmp_json, "rb") as fh:
            os.fsync(fh.fileno())
    # on exit the ROOT file is renamed into place first, then its sidecar (inner context first);
    # both renames happen only after both files were written completely.
    return root_path, json_path


def read_pdf(directory: str | Path, source: str):
    """(``hist.Hist``, metadata) read back from :func:`write_pdf`'s files (axes renamed to ``cS1``
    and ``log10cS2``)."""
    import hist
    import uproot

    directory = Path(directory)
    meta = json.loads((directory / f"{source}.json").read_text())
    with uproot.open(directory / f"{source}.root") as f:
        obj = f[meta.get("histogram", {}).get("object", source)]
        values, variances = obj.values(), obj.variances()
        ex, ey = obj.axis(0).edges(), obj.axis(1).edges()
    h = hist.Hist(
        hist.axis.Regular(len(ex) - 1, ex[0], ex[-1], name="cS1", label="cS1 [phd]", underflow=False, overflow=False),
        hist.axis.Regular(len(ey) - 1, ey[0], ey[-1], name="log10cS2", label="log10(cS2 [phd])",
                          underflow=False, overflow=False),
        storage=hist.storage.Weight(), name=source,
    )
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
