"""Merge stage: toy files of one mass → p-value curves, upper limits, bands, PCL, discovery.

Inputs are the toy files of every (hypothesis, POI, job) of one mass and its workspace. Merge
refuses, with a message naming the file: corrupt or truncated files, duplicate run numbers,
overlapping toy indices (the same random stream used twice), files from another workspace or POI
grid, and missing toys. Records are ordered by toy index, so the result does not depend on how
the toys were split into jobs.

Everything is computed with :mod:`lzflow.stats.hypotest` (CLs+b = P(q ≥ q_obs | μ) from S+B toys,
CLb from B-only toys, CLs = CLs+b/CLb; log-linear inversion at α = 1 − CL with the binomial error
propagated; expected bands = quantiles of the B-only experiments' limits; PCL floor = the
power-threshold quantile) and :mod:`lzflow.stats.asymptotic` for the asymptotic comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import __version__
from .progress import progress
from .toyjobs import load_toy_job, workspace_digest

__all__ = ["load_toy_files", "collect_toys", "merge_limits", "merge_mass", "MergeError"]

LoadedToyFile = tuple[str, dict[str, np.ndarray], dict[str, Any]]


class MergeError(ValueError):
    """The set of toy files is inconsistent."""


def load_toy_files(paths: Iterable[str | Path]) -> list[LoadedToyFile]:
    """Read toy files in sorted path order: [(path, arrays, header)]; a corrupt one raises naming it."""
    return [(path, *load_toy_job(path))
            for path in progress(sorted(map(str, paths)), desc="reading toy files", unit="file")]


def collect_toys(files: Iterable[LoadedToyFile], ws: Mapping[str, Any]) -> tuple[dict[int, dict], dict | None, list]:
    """Check toy files (:func:`load_toy_files`); return ({poi_index: S+B records}, B-only records, headers)."""
    digest = workspace_digest(ws)
    grid = list(ws["poi_grid"])
    by_run: dict[int, str] = {}
    parts: dict[tuple[str, int], list[tuple[dict, dict, str]]] = {}
    headers = []
    for path, arrays, header in files:
        run = header["run_number"]
        if run in by_run:
            raise MergeError(f"{path}: duplicate run number {run} (also in {by_run[run]})")
        by_run[run] = path
        if header.get("workspace_digest") != digest:
            raise MergeError(f"{path}: made from another workspace (digest {header.get('workspace_digest')}, "
                             f"expected {digest}); rerun its toys")
        if header.get("poi_grid") != grid:
            raise MergeError(f"{path}: POI grid differs from the workspace's; rerun its toys")
        parts.setdefault((header["hypothesis"], header["poi_index"]), []).append((arrays, header, path))
        headers.append(header)

    def combine(key, items):
        items.sort(key=lambda item: int(item[0]["toy_index"][0]) if item[0]["toy_index"].size else -1)
        index = np.concatenate([a["toy_index"] for a, _, _ in items])
        if np.any(np.diff(index) <= 0):
            dup = index[np.flatnonzero(np.diff(index) <= 0)[0] + 1]
            owners = [p for a, _, p in items if dup in a["toy_index"]]
            raise MergeError(f"{owners[-1]}: toy index {dup} (same seed stream) also in {owners[0]}")
        n_total = items[0][1]["n_toys_total"]
        if index.size != n_total or (index.size and (index[0] != 0 or index[-1] != n_total - 1)):
            raise MergeError(f"{key[0]} POI {key[1]}: {index.size} toys found, expected indices 0..{n_total - 1}; "
                             f"a toy job is missing")
        keys = [k for k in items[0][0] if k not in ("mu_test", "gen_params")]
        merged = {k: np.concatenate([a[k] for a, _, _ in items]) for k in keys}
        merged["mu_test"] = items[0][0]["mu_test"]
        merged["gen_params"] = items[0][0]["gen_params"]
        merged["run_numbers"] = sorted(h["run_number"] for _, h, _ in items)
        return merged

    sb = {poi: combine(("sb", poi), items) for (hyp, poi), items in parts.items() if hyp == "sb"}
    b_items = [items for (hyp, _), items in parts.items() if hyp == "b"]
    b = combine(("b", 0), b_items[0]) if b_items else None
    return sb, b, headers


def _failures(records: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Fit failures of one ensemble by final status and by the first failure's cause (retried fits)."""
    from .stats.fit import FitStatus

    out: dict[str, Any] = {"n_toys": int(records["toy_index"].size)}
    for label in ("uncond", "cond"):
        status = records[f"status_{label}"]
        first = records[f"first_failure_{label}"]
        out[label] = {
            "n_fits": int(status.size),
            "failed": int(np.sum(status != FitStatus.CONVERGED)),
            "retried": int(np.sum(first != FitStatus.CONVERGED)),
            "causes_final": {s.name: int(np.sum(status == s)) for s in FitStatus
                             if s != FitStatus.CONVERGED and np.any(status == s)},
            "causes_first": {s.name: int(np.sum(first == s)) for s in FitStatus
                             if s != FitStatus.CONVERGED and np.any(first == s)},
        }
    out["nan_q"] = int(np.sum(np.isnan(records["q"])))
    return out


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def merge_limits(ws: Mapping[str, Any], toy_paths: Sequence[str | Path], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The limit document of one mass (see the module docstring); ``spec`` holds cl, method,
    power_threshold, test_statistic."""
    return _limit_document(ws, lambda: load_toy_files(toy_paths), spec)


def merge_mass(ws: Mapping[str, Any], toy_paths: Sequence[str | Path],
               spec: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`merge_limits` and the fit-error summary of the same toys
    (:func:`lzflow.errors.summarise_loaded`), reading each toy file once."""
    from .errors import summarise_loaded

    files = load_toy_files(toy_paths)
    return _limit_document(ws, lambda: files, spec), summarise_loaded(files)


def _limit_document(ws: Mapping[str, Any], toy_files: Callable[[], list[LoadedToyFile]],
                    spec: Mapping[str, Any]) -> dict[str, Any]:
    """The limit document; ``toy_files()`` supplies the read toy files, and is not called for a
    mass whose signal has no events in the ROI (no limit, nothing to merge)."""
    from .stats.hypotest import BANDS, Ensemble, invert_toys, observed_q, pvalue_table
    from .stats.toys import observed_asimov
    from .workspace import workspace_model

    cl = float(spec["cl"])
    alpha = 1.0 - cl
    threshold = spec.get("power_threshold")
    sigma_ref = float(ws["sigma_ref_cm2"])
    doc: dict[str, Any] = {
        "format": "lzflow-limit-1", "lzflow_version": __version__, "mass_GeV": ws["mass_GeV"], "cl": cl,
        "method": spec["method"], "test_statistic": spec["test_statistic"], "power_threshold": threshold,
        "sigma_ref_cm2": sigma_ref, "signal_expected_events_at_sigma_ref": ws["signal"]["expected_events"],
        "asymptotic": ws.get("asymptotic"), "poi_grid": ws["poi_grid"],
    }
    if ws["signal"]["empty"]:
        doc.update(no_sensitivity=True, warning=f"{ws['signal']['name']}: no signal events in the ROI; no limit")
        return doc
    model = workspace_model(ws)
    mus = np.asarray(ws["poi_grid"], dtype=np.float64)
    sb, b, headers = collect_toys(toy_files(), ws)
    missing = [k for k in range(mus.size) if k not in sb]
    if missing:
        raise MergeError(f"S+B toys missing for POI indices {missing}")
    if b is None:
        raise MergeError("B-only toys missing")
    sb_ens = [Ensemble(sb[k]["q"][:, 0]) for k in range(mus.size)]
    b_ens = [Ensemble(b["q"][:, k]) for k in range(mus.size)]
    counts, aux = observed_asimov(model)
    q_obs, _ = observed_q(model, counts, aux, mus, spec["test_statistic"])
    table = pvalue_table(q_obs, sb_ens, b_ens)
    threshold_or_default = threshold if threshold else 0.1587

    def summary(which: str) -> dict[str, Any]:
        inv = invert_toys(mus, table, b["q"], sb_ens, b_ens, alpha, which, threshold_or_default)
        obs = inv.observed
        pcl = inv.pcl if threshold else obs.mu
        return {
            "observed_mu": _finite_or_none(obs.mu), "observed_mu_err": _finite_or_none(obs.error),
            "observed_status": obs.status,
            "pcl_mu": _finite_or_none(pcl), "pcl_floor_mu": inv.pcl_floor if threshold else None,
            "expected_mu": {str(n): _finite_or_none(inv.expected[n]) for n in BANDS},
            "expected_mu_err": {str(n): _finite_or_none(inv.expected_err[n]) for n in BANDS},
            "expected_sigma_cm2": {str(n): _finite_or_none(inv.expected[n] * sigma_ref) for n in BANDS},
            "observed_sigma_cm2": _finite_or_none(obs.mu * sigma_ref),
            "pcl_sigma_cm2": _finite_or_none(pcl * sigma_ref),
            "experiments_outside_grid": inv.outside,
        }

    doc["pvalues"] = {k: v.tolist() for k, v in table.items()}
    doc["q_obs"] = [float(x) for x in q_obs]
    doc["toys"] = {
        "sb_per_poi": [int(sb[k]["toy_index"].size) for k in range(mus.size)],
        "bonly": int(b["toy_index"].size),
        "run_numbers": sorted(h["run_number"] for h in headers),
        "seeds": sorted({tuple(h["seed_entropy"]) for h in headers}),
    }
    doc["limits"] = {"CLs+b": summary("clsb"), "CLs": summary("cls")}
    primary = doc["limits"][spec["method"]]
    doc["upper_limit_mu"] = primary["pcl_mu"]
    doc["upper_limit_sigma_cm2"] = primary["pcl_sigma_cm2"]
    doc["median_expected_sigma_cm2"] = primary["expected_sigma_cm2"]["0"]
    doc["failures"] = {"sb": {str(k): _failures(sb[k]) for k in range(mus.size)}, "bonly": _failures(b)}
    doc["q_distributions"] = {
        "sb": [np.round(np.sort(sb[k]["q"][:, 0]), 6).tolist()[:: max(1, sb[k]["q"].shape[0] // 500)]
               for k in range(mus.size)],
        "bonly": [np.round(np.sort(b["q"][:, k]), 6).tolist()[:: max(1, b["q"].shape[0] // 500)]
                  for k in range(mus.size)],
    }
    return doc
