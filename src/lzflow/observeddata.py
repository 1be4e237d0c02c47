"""Observed data in the workflow: the ``data:`` and ``blind:`` config keys, and the binned event
list every mass's toys and merge read (docs/data.md, "Running on data").

Configuration (:mod:`lzflow.dataconfig`)
-----------------------------------------
``data:`` names one event list (:mod:`lzflow.eventlist`: CSV, Parquet or a ROOT TTree with cS1 and
cS2 in phd) and how to read it; ``blind:`` says whether the analysis may look at it. Resolved
(:func:`resolve_data`, recorded in the resolved configuration), with the documented defaults
:data:`DATA_DEFAULTS` filled in explicitly:

* ``path`` (required): relative to the working directory (or absolute); no ``..`` component, no
  shell metacharacters, not starting with ``-``;
* ``format``: ``csv``, ``parquet`` or ``root`` (default: from the suffix, which must name one);
* ``columns``: ``{cS1: NAME, cS2: NAME}`` (default the quantity's name);
* ``units``: units of columns the file does not declare (default none: the file declares them);
* ``tree``: the TTree of a ROOT file (default ``events``);
* ``discovery_toys``: background-only toys for the local discovery p-value (default 10 000).

``blind`` defaults to **true** when ``data`` is set: the workflow then neither bins nor reads the
event list, and every result is the sensitivity computed on the background-only Asimov dataset, as
without data. ``blind: false`` is the explicit unblinding. ``blind`` without ``data`` is refused.

The binned event list
---------------------
:func:`bin_observed` reads the list once (:func:`lzflow.eventlist.read_events`), places it on the
analysis window of the config's ``pdf`` axes (the workspaces' grid: cS1 [phd] × log10 cS2, half-open)
and returns the document written to :data:`lzflow.layout.OBSERVED_DATA`: counts
``[i_cS1][i_log10cS2]``, the out-of-window accounting, the window's edges, the event file's SHA-256
and ``counts_digest`` (what the toy files and ``limit.json`` carry, :func:`observed_digest`), and
``salt``: whether the list is salted (``lzflow salt``) or had its salt removed, from its provenance.

With ``unbinned_events: true`` in the spec (the workflow's single-run analyses) the in-window
events themselves are written beside it (:data:`OBSERVED_EVENTS`) and recorded with their digest
(:func:`events_digest`); :func:`read_observed` reads both, :func:`observed_fit` makes the dataset a
job fits (binned counts, or the events under an unbinned likelihood) and :func:`data_digest` what
its toys record.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import __version__
from .exceptions import MergeError

__all__ = ["DATA_FORMAT", "ObservedDataError", "bin_observed", "bin_observed_runs",
           "observed_digest", "observed_counts", "observed_summary",
           "load_observed", "observed_option", "OBSERVED_EVENTS", "events_digest", "data_digest", "read_observed",
           "observed_fit"]

class ObservedDataError(MergeError):
    """The binned event list cannot be used by a toys or merge job (a user error: one line; a
    :class:`~lzflow.exceptions.MergeError`, so every CLI prints it as one)."""


#: the ``format`` of the binned event list
DATA_FORMAT = "lzflow-observed-1"
#: the in-window events of an unblinded unbinned analysis, written by ``lzflow bin-data`` beside
#: :data:`lzflow.layout.OBSERVED_DATA` (``.npz``: float64 arrays ``cS1`` [phd] and ``log10cS2``, file order)
OBSERVED_EVENTS = "data/observed_events.npz"


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def observed_digest(counts: Any) -> str:
    """SHA-256 (16 hex digits) of binned counts (int64, C order, with their shape)."""
    array = np.ascontiguousarray(np.asarray(counts, dtype=np.int64))
    return hashlib.sha256(f"{array.shape}".encode() + array.tobytes()).hexdigest()[:16]


#: the keys of a binning spec (:func:`lzflow.layout.data_spec`) and of its window
SPEC_KEYS, WINDOW_KEYS = ("format", "columns", "units", "tree", "window"), ("cS1_edges", "log10cS2_edges")


def check_bin_spec(spec: Any, extra: tuple[str, ...] = ()) -> None:
    """A binning spec has exactly :data:`SPEC_KEYS` (plus ``extra``) and its window both edge lists;
    an :class:`ObservedDataError` naming what is missing or unknown otherwise."""
    keys = (*SPEC_KEYS, *extra)
    if not isinstance(spec, Mapping) or set(spec) != set(keys):
        got = sorted(spec) if isinstance(spec, Mapping) else spec
        raise ObservedDataError(f"bin-data --spec: keys {got!r}; expected {', '.join(keys)} (lzflow.layout.data_spec)")
    if not isinstance(spec["window"], Mapping) or set(spec["window"]) != set(WINDOW_KEYS):
        raise ObservedDataError(f"bin-data --spec: window {spec['window']!r}; expected {{{', '.join(WINDOW_KEYS)}}}")


def bin_observed(spec: Mapping[str, Any], events_path: str | Path, events_out: str | Path | None = None
                 ) -> dict[str, Any]:
    """The binned event list (module docstring). ``spec``: the resolved ``data`` keys plus
    ``window`` = ``{"cS1_edges": [...], "log10cS2_edges": [...]}`` (:func:`lzflow.layout.data_spec`),
    and ``unbinned_events: true`` for an unbinned likelihood: the in-window events are then written
    to ``events_out`` (:data:`OBSERVED_EVENTS`, atomically) and the document's ``unbinned_events``
    records its file name (beside the document), the number of events and :func:`events_digest`."""
    from .eventlist import AnalysisWindow, read_events, select_window

    keep = spec.get("unbinned_events", False) if isinstance(spec, Mapping) else False
    if keep is not False and (keep is not True or events_out is None):
        raise ObservedDataError(f"bin-data --spec: unbinned_events {keep!r} (events file {events_out}); expected "
                                f"true with an events file, or no such key")
    check_bin_spec({k: v for k, v in spec.items() if k not in ("run", "unbinned_events")}
                   if isinstance(spec, Mapping) else spec)

    events = read_events(events_path, columns=spec["columns"], units=spec["units"] or None, tree=spec["tree"],
                         fmt=spec["format"])
    window = AnalysisWindow(np.asarray(spec["window"]["cS1_edges"], dtype=np.float64),
                            np.asarray(spec["window"]["log10cS2_edges"], dtype=np.float64))
    from .salt import salt_status

    observed = select_window(events, window)
    report = observed.report()
    unbinned = {"unbinned_events": write_observed_events(events_out, observed.cs1, observed.log10cs2)} if keep else {}
    return {**unbinned, "salt": salt_status(events_path, spec["format"], spec["tree"]), "format": DATA_FORMAT, "lzflow_version": __version__, "events_file": str(events_path),
            "events_sha256": _sha256(events_path), "settings": {k: spec[k] for k in ("format", "columns", "units",
                                                                                     "tree")},
            "n_total": report["n_total"], "n_inside": report["n_inside"], "n_outside": report["n_outside"],
            "outside_by_reason": report["outside_by_reason"], "window": {**report["window"],
                                                                         **spec["window"]},
            "counts_layout": "[i_cS1][i_log10cS2] on the window's edges",
            "counts": observed.counts.tolist(), "counts_digest": observed_digest(observed.counts)}


def bin_observed_runs(spec: Mapping[str, Any], events_paths: list[str | Path]) -> dict[str, Any]:
    """The binned event lists of a runs analysis (:mod:`lzflow.runsconfig`): ``spec["runs"]`` one
    :func:`bin_observed` spec per run with its ``run`` name, in the combined workspace's run order,
    ``events_paths`` one list per run in that order. Each run's list is binned on its own window;
    ``counts`` are the runs' C-order counts concatenated (the combined likelihood's bins) with their
    ``counts_digest``; ``runs`` holds each run's document, the totals sum them, ``salt`` says whether
    any run's list is salted (``salt_removed``: the first run's removed salt)."""
    if set(spec) != {"runs"} or not isinstance(spec["runs"], list) or not spec["runs"]:
        raise ObservedDataError(f"bin-data --spec: keys {sorted(spec)!r}; expected runs: [one spec per run, in run order]")
    for part in spec["runs"]:
        check_bin_spec(part, ("run",))
    if len(events_paths) != len(spec["runs"]):
        raise ObservedDataError(f"observed data: {len(events_paths)} event list(s) for {len(spec['runs'])} runs; "
                                f"expected one per run, in run order")
    docs = [{"run": rs["run"], **bin_observed(rs, path)} for rs, path in zip(spec["runs"], events_paths)]
    counts = np.concatenate([np.asarray(d["counts"], dtype=np.int64).ravel() for d in docs])
    reasons = {k: sum(d["outside_by_reason"][k] for d in docs) for k in docs[0]["outside_by_reason"]}
    removed = next((d["salt"]["salt_removed"] for d in docs if d["salt"]["salt_removed"]), None)
    return {"format": DATA_FORMAT, "lzflow_version": __version__,
            "salt": {"salted": any(d["salt"]["salted"] for d in docs), "salt_removed": removed},
            "n_total": sum(d["n_total"] for d in docs), "n_inside": sum(d["n_inside"] for d in docs),
            "n_outside": sum(d["n_outside"] for d in docs), "outside_by_reason": reasons,
            "counts_layout": "runs in order, each run's [i_cS1][i_log10cS2] flattened in C order, concatenated",
            "counts": counts.tolist(), "counts_digest": observed_digest(counts),
            "runs": [{k: v for k, v in d.items() if k not in ("format", "lzflow_version")} for d in docs]}


def _check_window(window: Mapping[str, Any], axes: Any, what: str) -> None:
    """The binned list's window is the workspace's grid: the workspace's edges are the TH2D's (read
    back through ROOT's axis), equal to the config's linspace edges up to rounding (7e-15 phd at
    80 phd), never a different binning."""
    if not axes or len(axes) != 2:
        raise ObservedDataError(f"observed data: {what} has axes {axes!r}; expected the (cS1, log10 cS2) grid")
    for name, axis in (("cS1_edges", axes[0]), ("log10cS2_edges", axes[1])):
        ours, theirs = np.asarray(window[name], dtype=np.float64), np.asarray(axis["edges"], dtype=np.float64)
        if ours.shape != theirs.shape or not np.allclose(ours, theirs, rtol=1e-12, atol=0.0):
            raise ObservedDataError(f"observed data: window {name} differs from {what}'s {axis['name']} edges; "
                                    f"rebin the event list on this analysis's pdf axes")


def observed_counts(doc: Mapping[str, Any], ws: Mapping[str, Any]) -> np.ndarray:
    """The binned counts of ``doc`` (:func:`bin_observed`, or :func:`bin_observed_runs` for a
    combined workspace: the same runs in the same order) as the binned likelihood takes them
    (float64, C order), after checking the document and that each window is its workspace's grid."""
    if doc.get("format") != DATA_FORMAT:
        raise ObservedDataError(f"observed data: format {doc.get('format')!r}; expected {DATA_FORMAT!r} (lzflow bin-data)")
    ws_runs, doc_runs = ws.get("runs") or [], doc.get("runs") or []
    if [r["name"] for r in ws_runs] != [r["run"] for r in doc_runs]:
        raise ObservedDataError(f"observed data: runs {[r['run'] for r in doc_runs]}, the workspace's runs "
                                f"{[r['name'] for r in ws_runs]}; expected the same runs in the same order")
    if ws_runs:
        for run, part in zip(ws_runs, doc_runs):
            _check_window(part["window"], run["axes"], f"run {run['name']!r} of the workspace")
    else:
        _check_window(doc["window"], ws["axes"], "the workspace")
    counts = np.asarray(doc["counts"], dtype=np.int64)
    if observed_digest(counts) != doc["counts_digest"]:
        raise ObservedDataError("observed data: counts_digest does not match the counts (edited file?); rerun lzflow bin-data")
    return counts.astype(np.float64).ravel()


def observed_option(wildcards: Any, input: Any) -> str:
    """``--observed <binned event list>`` for a workflow job whose input ``observed`` names it (the
    toys, toy batch and merge rules of an unblinded analysis, ``workflow/rules/data.smk``); "" else."""
    import shlex

    files = input.get("observed", [])
    files = [files] if isinstance(files, str) else list(files)
    events = Path(OBSERVED_EVENTS).name  # read through the binned file's record, not given on the command line
    return " ".join(f"--observed {shlex.quote(str(f))}" for f in files if Path(str(f)).name != events)


def observed_summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The accounting of the binned event list, as ``limit.json`` carries it, with its salt status
    (:func:`lzflow.salt.salt_status`: the list's provenance, not its events) where recorded."""
    keys = ("events_file", "events_sha256", "n_total", "n_inside", "n_outside", "outside_by_reason",
            "counts_digest", "unbinned_events", "salt")
    out = {k: doc[k] for k in keys if k in doc}
    if doc.get("runs"):  # a runs analysis: each run's accounting too
        out["runs"] = {r["run"]: {k: r[k] for k in keys if k in r} for r in doc["runs"]}
    return out


def load_observed(path: str | Path | None, ws: Mapping[str, Any], spec: Mapping[str, Any], model: Any = None
                  ) -> tuple[Any, str]:
    """(toy source, :func:`data_digest`) of the event list at ``path`` for a job whose spec asks for
    it (``observed_data``): for a binned job (``model`` None or binned) (counts, aux), the counts
    on the workspace's grid and the observed auxiliary observables, the nominal values
    (:meth:`~lzflow.stats.model.BinnedModel.nominal_nuisance`); for the unbinned ``model`` the
    in-window events as an :class:`~lzflow.stats.unbinned_observed.UnbinnedObserved` (toys at its θ̂̂)."""
    from .workspace import workspace_model

    if not spec.get("observed_data") or path is None:
        raise ObservedDataError(f"observed data: the job spec {'asks for' if path is None else 'does not ask for'} the "
                         f"observed data but {'none was' if path is None else path + ' was'} given; expected "
                         f"--observed exactly when the spec has observed_data (an unblinded analysis)")
    doc = read_observed(path)
    counts = observed_counts(doc, ws)
    binned = workspace_model(ws)
    obs = observed_fit(binned, counts, binned.nominal_nuisance(), doc, lambda: binned if model is None else model)
    return obs.toy_source, obs.digest


# ----------------------------------------------------------------------------- unbinned events
def events_digest(cs1: Any, log10cs2: Any) -> str:
    """SHA-256 (16 hex digits) of in-window events: the float64 bytes of cS1 then log10 cS2, with the count."""
    x, y = (np.ascontiguousarray(np.asarray(v, dtype=np.float64)) for v in (cs1, log10cs2))
    return hashlib.sha256(f"{x.shape}{y.shape}".encode() + x.tobytes() + y.tobytes()).hexdigest()[:16]


def write_observed_events(path: str | Path, cs1: np.ndarray, log10cs2: np.ndarray) -> dict[str, Any]:
    """Write the in-window events to ``path`` (.npz, atomically); their record in the binned document."""
    from .io import atomic_path

    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, cS1=np.asarray(cs1, dtype=np.float64), log10cS2=np.asarray(log10cs2, dtype=np.float64))
    return {"file": Path(path).name, "n": int(np.asarray(cs1).size), "digest": events_digest(cs1, log10cs2),
            "layout": "npz: cS1 [phd], log10cS2 (in-window events, file order)"}


def data_digest(doc: Mapping[str, Any], unbinned: bool) -> str:
    """What the toys of the data record as ``observed_digest``: the events' digest for an
    ``unbinned`` likelihood, else the counts' ``counts_digest`` (binned fits see only the counts)."""
    if not unbinned:
        return str(doc["counts_digest"])
    if "unbinned_events" not in doc:
        raise ObservedDataError("observed data: no events in the binned document for an unbinned likelihood; expected "
                                "lzflow bin-data with unbinned_events (the workflow's observed_data rule writes them)")
    return str(doc["unbinned_events"]["digest"])


def read_observed(path: str | Path) -> dict[str, Any]:
    """The binned event list at ``path`` (:data:`lzflow.layout.OBSERVED_DATA`); with
    ``unbinned_events`` also its events, read from the file beside it and checked against the
    recorded digest, in ``doc["event_arrays"]`` = (cS1, log10 cS2) (in memory only)."""
    from .io import read_json

    doc = read_json(path)
    record = doc.get("unbinned_events")
    if record is None:
        return doc
    events = Path(path).parent / str(record["file"])
    if not events.is_file():
        raise ObservedDataError(f"observed data: {events} missing (the events of {path}); rerun lzflow bin-data")
    with np.load(events, allow_pickle=False) as arrays:
        cs1, y = np.asarray(arrays["cS1"], dtype=np.float64), np.asarray(arrays["log10cS2"], dtype=np.float64)
    if events_digest(cs1, y) != record["digest"]:
        raise ObservedDataError(f"observed data: {events} does not match the digest {record['digest']} recorded in "
                                f"{path} (edited file?); rerun lzflow bin-data")
    return {**doc, "event_arrays": (cs1, y)}


def observed_fit(model: Any, counts: np.ndarray, aux: np.ndarray, doc: Mapping[str, Any] | None,
                 likelihood_model: Any) -> Any:
    """The observed dataset (:class:`lzflow.observedfit.ObservedData`) of a merge or toy job:
    ``(counts, aux)`` of the binned ``model`` without data (the Asimov dataset) or when
    ``likelihood_model()`` is binned; the events of ``doc`` (:func:`read_observed`) under that
    unbinned model when it is unbinned. With data, its ``digest`` is :func:`data_digest` (what the
    toys made at it record)."""
    from .observedfit import BinnedObserved
    from .stats.unbinned_model import UnbinnedModel

    if doc is None:
        return BinnedObserved(model, counts, aux)
    fitted = likelihood_model()
    unbinned = isinstance(fitted, UnbinnedModel)
    digest = data_digest(doc, unbinned)
    if not unbinned:
        obs = BinnedObserved(model, counts, aux)
    elif "event_arrays" not in doc:
        raise ObservedDataError("observed data: the events were not read; expected lzflow.observeddata.read_observed")
    else:
        from .stats.unbinned_observed import UnbinnedObserved

        obs = UnbinnedObserved(fitted, *doc["event_arrays"], aux)
    obs.digest = digest
    return obs
