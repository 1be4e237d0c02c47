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
           "load_observed", "observed_option"]

class ObservedDataError(MergeError):
    """The binned event list cannot be used by a toys or merge job (a user error: one line; a
    :class:`~lzflow.exceptions.MergeError`, so every CLI prints it as one)."""


#: the ``format`` of the binned event list
DATA_FORMAT = "lzflow-observed-1"


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


def bin_observed(spec: Mapping[str, Any], events_path: str | Path) -> dict[str, Any]:
    """The binned event list (module docstring). ``spec``: the resolved ``data`` keys plus
    ``window`` = ``{"cS1_edges": [...], "log10cS2_edges": [...]}`` (:func:`lzflow.layout.data_spec`)."""
    from .eventlist import AnalysisWindow, read_events, select_window

    check_bin_spec({k: v for k, v in spec.items() if k != "run"} if isinstance(spec, Mapping) else spec)

    events = read_events(events_path, columns=spec["columns"], units=spec["units"] or None, tree=spec["tree"],
                         fmt=spec["format"])
    window = AnalysisWindow(np.asarray(spec["window"]["cS1_edges"], dtype=np.float64),
                            np.asarray(spec["window"]["log10cS2_edges"], dtype=np.float64))
    from .salt import salt_status

    observed = select_window(events, window)
    report = observed.report()
    return {"salt": salt_status(events_path, spec["format"], spec["tree"]), "format": DATA_FORMAT, "lzflow_version": __version__, "events_file": str(events_path),
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
    return " ".join(f"--observed {shlex.quote(str(f))}" for f in files)


def observed_summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The accounting of the binned event list, as ``limit.json`` carries it, with its salt status
    (:func:`lzflow.salt.salt_status`: the list's provenance, not its events) where recorded."""
    keys = ("events_file", "events_sha256", "n_total", "n_inside", "n_outside", "outside_by_reason",
            "counts_digest", "salt")
    out = {k: doc[k] for k in keys if k in doc}
    if doc.get("runs"):  # a runs analysis: each run's accounting too
        out["runs"] = {r["run"]: {k: r[k] for k in keys if k in r} for r in doc["runs"]}
    return out


def load_observed(path: str | Path | None, ws: Mapping[str, Any], spec: Mapping[str, Any]
                  ) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    """((counts, aux), counts_digest) of the binned event list at ``path`` for a job whose spec
    asks for it (``observed_data``): the counts on the workspace's grid, and the observed
    auxiliary observables, the nominal values (:meth:`~lzflow.stats.model.BinnedModel.nominal_nuisance`)."""
    from .io import read_json
    from .workspace import workspace_model

    if not spec.get("observed_data") or path is None:
        raise ObservedDataError(f"observed data: the job spec {'asks for' if path is None else 'does not ask for'} the "
                         f"observed data but {'none was' if path is None else path + ' was'} given; expected "
                         f"--observed exactly when the spec has observed_data (an unblinded analysis)")
    doc = read_json(path)
    counts = observed_counts(doc, ws)
    return (counts, workspace_model(ws).nominal_nuisance()), str(doc["counts_digest"])
