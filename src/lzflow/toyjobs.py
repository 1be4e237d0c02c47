"""Toy stage: one job = one mass, one hypothesis/POI, one block of toy indices.

Run numbers and seeds are functions of *values*, never of list positions or scheduler job ids:

* ``mass_key = round(mass_GeV × 10⁴)`` (:func:`lzflow.stats.toys.mass_key`);
* hypothesis index h = 0 (S+B at POI grid point k) or 1 (B-only, evaluated on the whole grid);
* each toy's random stream is keyed by ``SeedSequence([base_seed, mass_key, poi_index, h])`` and the
  toy index (:mod:`lzflow.stats.toys`), so the merged result does not depend on how the toys are
  split into jobs;
* ``run_number = ((mass_key × 10 + h) × 1000 + poi_index) × 10000 + job_index`` — unique over a
  configuration as long as POI indices stay below 1000 and job indices below 10000 (checked).

Each job writes ``m<mass>/toys/poi<k>/job<j>.npz`` (S+B) or ``m<mass>/toys/bonly/job<j>.npz`` (B-only;
:data:`lzflow.layout.TOYS_SB`, :data:`~lzflow.layout.TOYS_B`) atomically:
the per-toy records of :class:`lzflow.stats.toyresult.ToyResult` (μ̂, NLLs, q, fit statuses and
strategies, auxiliary observables, toy index) plus a JSON header with the run number, seeds, lzflow
version, the workspace hash and a SHA-256 of the header and every array (:func:`content_digest`).
:func:`load_toy_job` checks a file whole (readable, complete, one row per toy, checksum); merge
also checks that a file is the one its name stands for, and moves a corrupt file aside
(:func:`quarantine`) so that the next run makes it again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import __version__
from .exceptions import CorruptToyFile, ToyFileError, WorkspaceError
from .io import atomic_path

__all__ = ["run_number", "toy_block", "run_toy_job", "job_model", "job_request", "likelihood_settings",
           "save_toy_job", "write_no_sensitivity_file", "load_toy_job", "ToyFileError", "CorruptToyFile",
           "content_digest", "toy_file_identity", "quarantine", "workspace_digest"]

#: Toys are generated and fitted in canonical blocks of this many toy indices; it must be the same
#: for every job of a configuration for the merged result to be bit-identical under any job split
#: (a job fits the whole blocks its toys touch, except where toys are fitted independently of each
#: other: :func:`lzflow.stats.toys.block_toys`).
TOY_BLOCK = 256
MAX_POI = 1000
MAX_JOBS = 10000


def run_number(mass_key: int, hypothesis_index: int, poi_index: int, job_index: int) -> int:
    """Run number derived from values (see module docstring)."""
    if not (0 <= poi_index < MAX_POI and 0 <= job_index < MAX_JOBS and hypothesis_index in (0, 1)):
        raise ValueError(f"run number out of range: poi {poi_index}, job {job_index}, hypothesis {hypothesis_index}")
    return ((int(mass_key) * 10 + hypothesis_index) * MAX_POI + poi_index) * MAX_JOBS + job_index


def toy_block(n_toys: int, n_jobs: int, job_index: int) -> np.ndarray:
    """Toy indices of job ``job_index`` when ``n_toys`` toys are split into ``n_jobs`` contiguous blocks."""
    if not 0 <= job_index < n_jobs:
        raise ValueError(f"job index {job_index} not in [0, {n_jobs})")
    lo = (n_toys * job_index) // n_jobs
    hi = (n_toys * (job_index + 1)) // n_jobs
    return np.arange(lo, hi, dtype=np.int64)


def workspace_digest(ws: Mapping[str, Any]) -> str:
    """SHA-256 (16 hex digits) of a workspace document's canonical JSON."""
    return hashlib.sha256(json.dumps(ws, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def likelihood_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The likelihood of a toy job: binned (default) or unbinned with interpolation order and template rebin."""
    kind = spec.get("likelihood", "binned")
    if kind == "binned":
        return {"likelihood": "binned"}
    if kind != "unbinned":
        raise ValueError(f"likelihood: {kind!r}; expected 'binned' or 'unbinned'")
    return {"likelihood": "unbinned", "interpolation_order": int(spec.get("interpolation_order", 0)),
            "interpolation_floor": float(spec.get("interpolation_floor", 0.0)),
            "template_rebin": int(spec.get("template_rebin", 1))}


def job_model(ws: Mapping[str, Any], likelihood: Mapping[str, Any]):
    """The model a toy job fits (:func:`lzflow.stats.toys.run_toys`): the workspace's
    :class:`~lzflow.stats.model.BinnedModel`, or its :class:`~lzflow.stats.unbinned_model.UnbinnedModel`
    with the interpolation order, floor and template rebin of ``likelihood``
    (:func:`likelihood_settings`)."""
    if likelihood["likelihood"] == "unbinned":
        from .stats.unbinned_model import UnbinnedModel

        if ws.get("runs"):  # a combined workspace (lzflow.combinecli): its runs have separate grids
            raise WorkspaceError(f"likelihood unbinned: a combined workspace (runs {', '.join(r['name'] for r in ws['runs'])}) "
                                 f"has no single (cS1, log10cS2) grid; expected likelihood binned")

        return UnbinnedModel.from_workspace(ws, likelihood["interpolation_order"], likelihood["template_rebin"],
                                            floor=likelihood["interpolation_floor"])
    from .workspace import workspace_model

    return workspace_model(ws)


def job_request(header: Mapping[str, Any], toy_indices: np.ndarray, observed: tuple | None = None):
    """The :class:`~lzflow.stats.request.ToyRequest` of the toys ``toy_indices`` of a toy job with
    this header (:func:`run_toy_job`): S+B toys generated at its POI value, B-only toys evaluated
    on the whole POI grid; one thread, canonical blocks of the header's ``toy_block``. A header
    with an ``observed_digest`` (toys generated at the observed data's θ̂̂) needs ``observed`` =
    (counts, aux) of those data, or their events for an unbinned likelihood
    (:func:`lzflow.observeddata.load_observed`; :func:`lzflow.observedfit.toy_request`)."""
    from .observedfit import toy_request
    from .stats.multistart import search_fit_config

    if ("observed_digest" in header) != (observed is not None):
        raise ToyFileError(f"toy job m{header['mass_GeV']:g}: generated at the observed data's fits but no observed "
                           f"data given (or the reverse); expected --observed exactly when the spec has observed_data")
    seed = dict(observed=observed, base_seed=int(header["seed_entropy"][0]), mass_key=int(header["mass_key"]),
                poi_index=int(header["poi_index"]), toy_indices=toy_indices,
                test_stat=header["test_statistic"], block_size=int(header.get("toy_block", TOY_BLOCK)), n_threads=1,
                cond_fits=header.get("cond_fits", "all"), config=search_fit_config(header.get("shape_fit_search", "multistart")))
    if header["hypothesis"] == "sb":
        return toy_request(hypothesis="sb", mu=float(header["poi_value"]), **seed)
    grid = np.asarray(header["poi_grid"], dtype=np.float64)
    return toy_request(hypothesis="b", mu=float(grid[0]), mu_test=grid, **seed)


def run_toy_job(ws: Mapping[str, Any], spec: Mapping[str, Any], observed: str | Path | None = None,
                ws_digest: str | None = None):
    """Run one toy job; returns (ToyResult, header dict). ``ws_digest``: :func:`workspace_digest` of
    ``ws`` if already computed (a batch of jobs on one workspace computes it once).

    ``observed``: the binned event list (:data:`lzflow.layout.OBSERVED_DATA`), required when the
    spec has ``observed_data`` (an unblinded analysis): the toys are then generated at the observed
    data's θ̂̂(μ) and the header records its ``observed_digest``.

    spec: ``hypothesis`` ("sb" | "b"), ``poi_index`` (S+B only), ``job_index``, ``n_jobs``,
    ``n_toys``, ``seed``, ``test_statistic``; optionally ``likelihood`` ("binned" | "unbinned") with
    ``interpolation_order`` (0–3) and ``template_rebin`` (:mod:`lzflow.stats.unbinned`), and
    ``cond_fits: needed`` (no conditional fit where μ̂ > μ, for a one-sided limit; recorded in the
    header: :mod:`lzflow.stats.toyfits`) and ``shape_fit_search: single_start`` (no further starts of
    the shape fits; recorded in the header: :mod:`lzflow.searchconfig`).
    """
    from .stats.toys import BONLY_POI_INDEX, HYPOTHESES, mass_key, run_toys

    grid = np.asarray(ws["poi_grid"], dtype=np.float64)
    hypothesis = spec["hypothesis"]
    h = HYPOTHESES[hypothesis]
    key = mass_key(ws["mass_GeV"])
    likelihood = likelihood_settings(spec)
    indices = toy_block(int(spec["n_toys"]), int(spec["n_jobs"]), int(spec["job_index"]))
    poi_index = int(spec["poi_index"]) if hypothesis == "sb" else BONLY_POI_INDEX
    mu = float(grid[poi_index]) if hypothesis == "sb" else 0.0
    header = {
        "format": "lzflow-toys-1",
        "lzflow_version": __version__,
        "mass_GeV": float(ws["mass_GeV"]),
        "mass_key": key,
        "hypothesis": hypothesis,
        "poi_index": poi_index,
        "poi_value": mu,
        "poi_grid": grid.tolist(),
        "job_index": int(spec["job_index"]),
        "n_jobs": int(spec["n_jobs"]),
        "n_toys_total": int(spec["n_toys"]),
        "toy_index_range": [int(indices[0]), int(indices[-1]) + 1] if indices.size else [0, 0],
        "run_number": run_number(key, h, poi_index, int(spec["job_index"])),
        "seed_entropy": [int(spec["seed"]), key, poi_index, h],
        "test_statistic": spec["test_statistic"],
        "toy_block": TOY_BLOCK,
        "workspace_digest": workspace_digest(ws) if ws_digest is None else ws_digest,
    }
    if likelihood["likelihood"] != "binned":  # binned headers stay as they were (bit-identical files)
        header["likelihood"] = likelihood
    if spec.get("cond_fits", "all") != "all":
        header["cond_fits"] = spec["cond_fits"]
    if "shape_fit_search" in spec:  # single_start (lzflow.searchconfig); the default search adds nothing
        header["shape_fit_search"] = spec["shape_fit_search"]
    data, model = None, job_model(ws, likelihood)
    if spec.get("observed_data") or observed is not None:  # without data the header is as it was
        from .observeddata import load_observed

        data, header["observed_digest"] = load_observed(observed, ws, spec, model)  # binned counts or events
    return run_toys(model, job_request(header, indices, data)), header


def _required_arrays() -> tuple[str, ...]:
    """The arrays every toy file holds besides its header: per-toy records, then per-ensemble values."""
    from .stats.toyresult import ToyResult

    return (*ToyResult.PER_TOY, "mu_test", "gen_params")


def content_digest(arrays: Mapping[str, np.ndarray], header: Mapping[str, Any]) -> str:
    """SHA-256 over the header (without its ``content_sha256``) and every array's name, dtype,
    shape and bytes, in name order: any edit of a number, a shape or a header field changes it."""
    digest = hashlib.sha256()
    head = {k: v for k, v in header.items() if k != "content_sha256"}
    digest.update(json.dumps(head, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_toy_job(path: str | Path, result, header: Mapping[str, Any]) -> None:
    """Write the per-toy records (with shape systematics also ``alpha_cond``, the conditional α̂̂:
    ``result.per_toy``) and the header, with the content checksum (:func:`content_digest`), to
    ``path`` (.npz, stored uncompressed: the records are mostly random doubles, which zlib shrank by
    ≈ 18 % for ≈ 9 CPU-ms per file, 0.37 CPU-s per toy job of the default analysis; issue 16) atomically."""
    arrays = {name: np.asarray(getattr(result, name)) for name in result.per_toy}
    arrays["mu_test"] = np.asarray(result.mu_test)
    arrays["gen_params"] = np.asarray(result.gen_params)
    header = dict(header, content_sha256=content_digest(arrays, header))
    arrays["header"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def write_no_sensitivity_file(path: str | Path) -> None:
    """The toy file of a mass whose signal is empty (no sensitivity; no toys are run): one array
    ``no_sensitivity = True``, written atomically."""
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, no_sensitivity=np.array(True))


def load_toy_job(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a toy file and check it whole: readable, every array present with one row per toy,
    toy indices increasing, and the content checksum of the header and arrays as written. A missing
    file raises :class:`ToyFileError`, any other problem :class:`CorruptToyFile` naming the file."""
    if not Path(path).is_file():
        raise ToyFileError(f"{path}: toy file missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as err:  # a damaged archive fails in zipfile, zlib, numpy's header parser, ...
        raise CorruptToyFile(path, f"not a readable .npz ({type(err).__name__}: {err})") from None
    missing = [name for name in ("header", *_required_arrays()) if name not in arrays]
    if missing:
        raise CorruptToyFile(path, f"array {missing[0]!r} missing")
    try:
        header = json.loads(arrays.pop("header").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptToyFile(path, "header is not JSON") from None
    if not isinstance(header, dict) or "content_sha256" not in header:
        raise CorruptToyFile(path, "no content checksum (written before lzflow checked toy files); rerun its toy job")
    if content_digest(arrays, header) != header["content_sha256"]:
        raise CorruptToyFile(path, "content checksum mismatch: the file was edited or damaged")
    n = arrays["toy_index"].shape[0] if arrays["toy_index"].ndim == 1 else -1
    per_toy = _required_arrays()[:-2]  # toy_index first: a toy_index that is not 1-d is named itself
    per_toy += tuple(name for name in ("alpha_cond",) if name in arrays)  # with shape systematics
    bad = next((name for name in per_toy if n < 0 or arrays[name].ndim == 0 or arrays[name].shape[0] != n), None)
    if bad is not None:
        raise CorruptToyFile(path, f"array {bad!r} has shape {arrays[bad].shape}; expected one row per toy ({n})")
    if not np.all(np.diff(arrays["toy_index"]) > 0):
        raise CorruptToyFile(path, "toy indices are not increasing")
    return arrays, header


def toy_file_identity(path: str | Path) -> tuple[str, int, int] | None:
    """(hypothesis, POI index, job index) that a toy file's name stands for, read with the toy-file
    templates of :mod:`lzflow.layout` (``.../toys/poi3/job1.npz`` → ("sb", 3, 1),
    ``.../toys/bonly/job0.npz`` → ("b", 0, 0); the extra files of :mod:`lzflow.precision` alike,
    ``.../toys/extra/r1/poi3/job5.npz`` → ("sb", 3, 5)), or None for another name."""
    from . import layout

    for sb_template, b_template in ((layout.TOYS_SB, layout.TOYS_B), (layout.TOYS_SB_EXTRA, layout.TOYS_B_EXTRA)):
        sb = layout.within_mass_pattern(sb_template).search(str(path))
        if sb:
            return "sb", int(sb["poi"]), int(sb["job"])
        b = layout.within_mass_pattern(b_template).search(str(path))
        if b:
            return "b", 0, int(b["job"])
    return None


def quarantine(path: str | Path) -> Path:
    """Move a corrupt toy file aside to ``<name>.corrupt`` (``.corrupt.1``, ... if taken); the
    workflow then sees the toy file missing and its job is run again."""
    path = Path(path)
    target, k = path.with_name(path.name + ".corrupt"), 0
    while target.exists():
        k += 1
        target = path.with_name(f"{path.name}.corrupt.{k}")
    os.replace(path, target)
    return target
