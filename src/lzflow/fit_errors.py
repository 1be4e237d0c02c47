"""Fit-error diagnostics: count failed or suspicious fits over toy files and replay single toys.

For every toy file (one job: mass, hypothesis, POI, block of toys) each toy carries the final
status of its unconditional and conditional fits, the cause of the first failure when a retry was
needed, and q. :func:`summarise_errors` counts, per (mass, hypothesis, POI, fit, cause):

* ``final:<STATUS>`` — fits that failed in every strategy (the toy is kept, its q may be NaN);
* ``retried:<STATUS>`` — fits whose first strategy failed and a retry succeeded;
* ``nan_q`` — toys whose test statistic is NaN;
* ``excluded`` — toys left out of the p-values at one or more tested μ because a fit that their q
  depends on failed in every strategy or q is NaN (:func:`lzflow.stats.quality.toy_quality`;
  ``limit.json`` counts them per ensemble and cause under ``excluded``);
* ``mu_hat_at_bound`` — unconditional fits with μ̂ on the μ ≥ 0 boundary (expected for about half
  the background-only toys; listed because the old analysis lost days to fits near the boundary);
* ``uncond:alpha_at_bound``, ``cond:alpha_at_bound`` — with shape systematics, toys whose
  unconditional fit (or a conditional one at any tested μ) ends with a shape parameter at its bound
  ±5 (:func:`lzflow.stats.fitresult.alpha_at_bound`): valid fits, as in pyhf, but a sign that the
  morphing is being extrapolated far.

Conditional fits a one-sided limit does not need (status ``NOT_NEEDED``: μ̂ > μ, q = 0 by definition,
not run; :mod:`lzflow.stats.toyfits`) are neither failures nor listed. The summary
lists the offending toys by (file, run number, toy index) so one can be replayed with
:func:`replay_toy`, which regenerates the toy from its seed and refits it.

In the workflow each merge job summarises its own mass from the toys it has already read and the
toys it ran itself to extend the POI grid (rows with hypothesis ``sb`` at the new POI indices and
``b-grid-extension``; not counted as files) (:func:`summarise_loaded`, ``m<mass>/fit_errors.json``) and the ``errors`` rule combines those
(:func:`combine_summaries`): the same document as :func:`summarise_errors` over every toy file,
without a job that depends on every toy file of the analysis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .toyjobs import ToyFileError, load_toy_job

__all__ = ["ensemble_failures", "summarise_errors", "summarise_loaded", "combine_summaries", "replay_toy",
           "errors_markdown"]


def ensemble_failures(records: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Fit failures of one ensemble (``limit.json``'s ``failures``) by final status and by the first
    failure's cause (retried fits), and the fits whose result came from a further start
    (``restart_lower``: a lower minimum). Conditional fits a one-sided limit does not need
    (status ``NOT_NEEDED``, μ̂ > μ: :mod:`lzflow.stats.toyfits`) were not run: they are neither fits
    nor failures, and are counted as ``not_needed`` where there are any."""
    from .stats.fitresult import FitStatus, Strategy

    skip = (FitStatus.CONVERGED, FitStatus.NOT_NEEDED)
    out: dict[str, Any] = {"n_toys": int(records["toy_index"].size)}
    for label in ("uncond", "cond"):
        status, first = np.asarray(records[f"status_{label}"]), np.asarray(records[f"first_failure_{label}"])
        not_needed = int(np.sum(status == FitStatus.NOT_NEEDED))
        out[label] = {
            "n_fits": int(status.size) - not_needed,
            "failed": int(np.sum(~np.isin(status, skip))),
            "retried": int(np.sum(first != FitStatus.CONVERGED)),
            "restart_lower": int(np.sum(np.asarray(records[f"strategy_{label}"]) == Strategy.NEWTON_RESTART)),
            "causes_final": {s.name: int(np.sum(status == s)) for s in FitStatus
                             if s not in skip and np.any(status == s)},
            "causes_first": {s.name: int(np.sum(first == s)) for s in FitStatus
                             if s != FitStatus.CONVERGED and np.any(first == s)},
            **({"not_needed": not_needed} if not_needed else {}),
        }
    out["nan_q"] = int(np.sum(np.isnan(records["q"])))
    return out


def summarise_errors(paths: Iterable[str | Path], max_listed: int = 50) -> dict[str, Any]:
    """Counts of failed/suspicious fits per mass, hypothesis, POI and cause, plus the first toys.

    Files are read one at a time, in sorted path order (the order of the listed toys)."""
    return summarise_loaded(((path, *load_toy_job(path)) for path in sorted(map(str, paths))), max_listed)


def summarise_loaded(files: Iterable[tuple[str, Mapping[str, np.ndarray], Mapping[str, Any]]],
                     max_listed: int = 50) -> dict[str, Any]:
    """:func:`summarise_errors` of toy files already read: (path, arrays, header) in listing order."""
    rows: dict[tuple, dict[str, int]] = {}
    listed: list[dict[str, Any]] = []
    n_files = 0
    for path, arrays, header in files:
        n_files += "source" not in header  # entries made by merge itself are not files
        key = (header["mass_GeV"], header["hypothesis"], header["poi_index"])
        row = rows.setdefault(key, {"toys": 0})
        for i, causes in _count_file(arrays, row, header.get("test_statistic", "qtilde")):
            if len(listed) < max_listed:
                listed.append({"file": str(path), "run_number": header["run_number"],
                               "toy_index": int(arrays["toy_index"][i]), "causes": causes})
    return _summary(rows, n_files, listed)


def _count_file(arrays: Mapping[str, np.ndarray], row: dict[str, int],
                test_stat: str = "qtilde") -> list[tuple[int, list[str]]]:
    """Add one file's counts to ``row``; return its flagged toys (position in file, causes)."""
    from .stats.fitresult import FitStatus, Strategy, alpha_at_bound
    from .stats.quality import GOOD, toy_quality

    n = arrays["toy_index"].size
    row["toys"] += int(n)
    flagged: dict[int, list[str]] = {}
    for fit in ("uncond", "cond"):
        status = arrays[f"status_{fit}"].reshape(n, -1)
        first = arrays[f"first_failure_{fit}"].reshape(n, -1)
        for code in FitStatus:
            if code in (FitStatus.CONVERGED, FitStatus.NOT_NEEDED):  # not needed: no fit, no error
                continue
            for label, values in (("final", status), ("retried", first)):
                hit = np.any(values == code, axis=1)
                if label == "retried":
                    hit &= ~np.any(status == code, axis=1)
                if hit.any():
                    cause = f"{fit}:{label}:{code.name}"
                    row[cause] = row.get(cause, 0) + int(hit.sum())
                    for i in np.flatnonzero(hit):
                        flagged.setdefault(int(i), []).append(cause)
    nan_q = np.any(np.isnan(arrays["q"]), axis=1)
    if nan_q.any():
        row["nan_q"] = row.get("nan_q", 0) + int(nan_q.sum())
        for i in np.flatnonzero(nan_q):
            flagged.setdefault(int(i), []).append("nan_q")
    excluded = np.any(toy_quality(arrays, test_stat) != GOOD, axis=1)
    if excluded.any():
        row["excluded"] = row.get("excluded", 0) + int(excluded.sum())
    row["mu_hat_at_bound"] = row.get("mu_hat_at_bound", 0) + int(np.sum(arrays["mu_hat"] <= 0.0))
    alpha_cond = arrays.get("alpha_cond")
    if alpha_cond is not None and alpha_cond.size:  # shape systematics: α̂ or α̂̂ at ±ALPHA_BOUND (valid fits)
        k = alpha_cond.shape[-1]
        uncond = alpha_at_bound(arrays["params_uncond"], k)
        cond = np.any(alpha_at_bound(alpha_cond, k).reshape(n, -1), axis=1)
        row["uncond:alpha_at_bound"] = row.get("uncond:alpha_at_bound", 0) + int(uncond.sum())
        row["cond:alpha_at_bound"] = row.get("cond:alpha_at_bound", 0) + int(cond.sum())
    for fit in ("uncond", "cond"):  # a further start reached a lower minimum (shape fits; lzflow.stats.multistart)
        lower = np.any(arrays[f"strategy_{fit}"].reshape(n, -1) == Strategy.NEWTON_RESTART, axis=1)
        if lower.any():
            row[f"{fit}:restart_lower"] = row.get(f"{fit}:restart_lower", 0) + int(lower.sum())
    return sorted(flagged.items())


def _summary(rows: Mapping[tuple, Mapping[str, int]], n_files: int, listed: list[dict[str, Any]]) -> dict[str, Any]:
    table = [dict(zip(("mass_GeV", "hypothesis", "poi_index"), key), **counts)
             for key, counts in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2]))]
    return {"files": n_files, "toys": sum(r["toys"] for r in table),
            "failed_fits": sum(v for r in table for k, v in r.items() if ":final:" in k),
            "retried_fits": sum(v for r in table for k, v in r.items() if ":retried:" in k),
            "restart_lower_fits": sum(v for r in table for k, v in r.items() if k.endswith(":restart_lower")),
            "nan_q": sum(r.get("nan_q", 0) for r in table),
            "excluded_toys": sum(r.get("excluded", 0) for r in table), "table": table, "toys_to_replay": listed}


def combine_summaries(summaries: Iterable[Mapping[str, Any]], max_listed: int = 50) -> dict[str, Any]:
    """One summary from summaries of disjoint sets of toy files (e.g. the per-mass ones that merge writes).

    Given the per-mass summaries in the sorted order of their paths (``.../m<mass>/fit_errors.json``),
    this equals :func:`summarise_errors` over all the toy files at once (the listed toys included)."""
    rows: dict[tuple, dict[str, int]] = {}
    listed: list[dict[str, Any]] = []
    n_files = 0
    for summary in summaries:
        n_files += int(summary["files"])
        for entry in summary["table"]:
            key = (entry["mass_GeV"], entry["hypothesis"], entry["poi_index"])
            if key in rows:
                raise ValueError(f"mass {key[0]:g} GeV, {key[1]} POI {key[2]} appears in two summaries")
            rows[key] = {k: v for k, v in entry.items() if k not in ("mass_GeV", "hypothesis", "poi_index")}
        listed.extend(summary["toys_to_replay"][: max(0, max_listed - len(listed))])
    return _summary(rows, n_files, listed)


def replay_toy(ws: Mapping[str, Any], toy_file: str | Path, toy_index: int,
               observed: str | Path | None = None) -> dict[str, Any]:
    """Regenerate toy ``toy_index`` of ``toy_file`` from its seed, refit it, and compare with the stored
    record. Returns both records and ``identical`` (bit equality of q, μ̂, NLLs, statuses, aux).
    A toy generated at observed data (its header's ``observed_digest``) needs ``observed``, the
    data/observed.json it was generated at (binned counts, or the events beside it when unbinned):
    its digest must be the header's."""
    from .stats.toys import run_toys
    from .toyjobs import job_model, job_request, likelihood_settings

    arrays, header = load_toy_job(toy_file)
    where = np.flatnonzero(arrays["toy_index"] == toy_index)
    if where.size != 1:
        have = arrays["toy_index"]
        raise ToyFileError(f"{toy_file}: no toy with index {toy_index}; expected one of "
                           f"{int(have.min())}..{int(have.max())}" if have.size else f"{toy_file}: no toys")
    i = int(where[0])
    likelihood = likelihood_settings(header.get("likelihood", {}))
    model, data = job_model(ws, likelihood), None
    if "observed_digest" in header or observed is not None:
        data = _replay_data(ws, toy_file, header, observed, model)
    res = run_toys(model, job_request(header, np.array([toy_index], dtype=np.int64), data))
    keys = ("q", "mu_hat", "nll_uncond", "nll_cond", "status_uncond", "status_cond", "aux", "n_events")
    stored = {k: np.asarray(arrays[k][i]) for k in keys}
    replayed = {k: np.asarray(getattr(res, k)[0]) for k in keys}
    identical = all(np.array_equal(stored[k], replayed[k], equal_nan=True) for k in keys)
    return {"run_number": header["run_number"], "toy_index": toy_index, "identical": identical,
            "stored": {k: v.tolist() for k, v in stored.items()},
            "replayed": {k: v.tolist() for k, v in replayed.items()}}


def _replay_data(ws: Mapping[str, Any], toy_file: str | Path, header: Mapping[str, Any],
                 observed: str | Path | None, model: Any) -> Any:
    """The observed data a toy was generated at (:func:`lzflow.observeddata.load_observed`), checked
    against its header's ``observed_digest``; a one-line ToyFileError otherwise."""
    from .observeddata import load_observed

    digest = header.get("observed_digest")
    if observed is None or digest is None:
        raise ToyFileError(f"{toy_file}: generated at {'observed data ' + digest if digest else 'the Asimov dataset'}"
                           f"; expected --observed {'<data/observed.json it was made at>' if digest else 'not given'}")
    data, got = load_observed(observed, ws, {"observed_data": True}, model)
    if got != digest:
        raise ToyFileError(f"{toy_file}: generated at observed data {digest}, {observed} has {got}; expected the "
                           f"observed file the toys were made at")
    return data


def errors_markdown(summary: Mapping[str, Any]) -> str:
    """The error summary as a Markdown table (for reports)."""
    causes = sorted({k for r in summary["table"] for k in r if k not in ("mass_GeV", "hypothesis", "poi_index", "toys")})
    head = "| mass [GeV] | hypothesis | POI | toys | " + " | ".join(causes) + " |"
    lines = [head, "|" + "---|" * (4 + len(causes))]
    for r in summary["table"]:
        lines.append(f"| {r['mass_GeV']:g} | {r['hypothesis']} | {r['poi_index']} | {r['toys']} | "
                     + " | ".join(str(r.get(c, 0)) for c in causes) + " |")
    lines.append("")
    lines.append(f"{summary['toys']} toys in {summary['files']} files: {summary['failed_fits']} fits failed in every "
                 f"strategy, {summary['retried_fits']} needed a retry, {summary.get('restart_lower_fits', 0)} reached a "
                 f"lower minimum from a further start, {summary['nan_q']} toys with NaN q, "
                 f"{summary.get('excluded_toys', 0)} toys left out of the p-values.")
    return "\n".join(lines) + "\n"
