"""Merge stage: toy files of one mass → p-value curves, upper limits, bands, PCL, discovery.

Inputs are the toy files of every (hypothesis, POI, job) of one mass and its workspace. Merge
refuses, with a message naming the file: corrupt or truncated files, duplicate run numbers,
overlapping toy indices (the same random stream used twice), files from another workspace or POI
grid, and missing toys. Records are ordered by toy index, so the result does not depend on how
the toys were split into jobs.

Everything is computed with :mod:`lzflow.stats.inversion` (CLs+b = P(q ≥ q_obs | μ) from S+B
toys, CLb from B-only toys, CLs = CLs+b/CLb: :mod:`~lzflow.stats.pvalues`; log-linear inversion at
α = 1 − CL with the binomial error propagated: :mod:`~lzflow.stats.crossing`; expected bands =
quantiles of the B-only experiments' limits, PCL floor = the power-threshold quantile:
:mod:`~lzflow.stats.bands`) and :mod:`lzflow.stats.asymptotic` for the asymptotic comparison
(conventions: ``docs/method.md``, "Statistics conventions").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import __version__
from .exceptions import MergeError
from .fit_errors import ensemble_failures
from .progress import progress
from .toyjobs import CorruptToyFile, job_model, load_toy_job, toy_file_identity, workspace_digest

__all__ = ["load_toy_files", "collect_toys", "merge_limits", "merge_mass", "limit_document", "json_safe",
           "limit_summary", "MergeError", "toy_asymptotic_mismatch", "TOY_ASYMPTOTIC_TOLERANCE"]

LoadedToyFile = tuple[str, dict[str, np.ndarray], dict[str, Any]]


def load_toy_files(paths: Iterable[str | Path]) -> list[LoadedToyFile]:
    """Read toy files in sorted path order: [(path, arrays, header)]; a corrupt one raises naming it."""
    return [(path, *load_toy_job(path)) for path in progress(sorted(map(str, paths)), desc="reading toy files", unit="file")]


def _identity_text(identity: tuple) -> str:
    hypothesis, poi, job = identity
    return f"B-only job {job}" if hypothesis == "b" else f"S+B POI {poi} job {job}"


def collect_toys(files: Iterable[LoadedToyFile], ws: Mapping[str, Any]) -> tuple[dict[int, dict], dict | None, list]:
    """Check toy files (:func:`load_toy_files`); return ({poi_index: S+B records}, B-only records, headers)."""
    digest = workspace_digest(ws)
    grid = list(ws["poi_grid"])
    by_run: dict[int, str] = {}
    parts: dict[tuple[str, int], list[tuple[dict, dict, str]]] = {}
    headers = []
    for path, arrays, header in files:
        expected = toy_file_identity(path)
        found = (header.get("hypothesis"), header.get("poi_index"), header.get("job_index"))
        if expected is not None and found != expected:
            raise CorruptToyFile(path, f"holds {_identity_text(found)}, its name stands for {_identity_text(expected)} "
                                       f"(copied from another file?)")
        run = header["run_number"]
        if run in by_run:
            raise MergeError(f"{path}: duplicate run number {run} (also in {by_run[run]})")
        by_run[run] = path
        if header.get("workspace_digest") != digest:
            raise CorruptToyFile(path, f"made from another workspace (digest {header.get('workspace_digest')}, "
                                       f"expected {digest})")
        if header.get("poi_grid") != grid:
            raise CorruptToyFile(path, "made on another POI grid than the workspace's")
        parts.setdefault((header["hypothesis"], header["poi_index"]), []).append((arrays, header, path))
        headers.append(header)

    def combine(key, items):
        items.sort(key=lambda item: int(item[0]["toy_index"][0]) if item[0]["toy_index"].size else -1)
        index = np.concatenate([a["toy_index"] for a, _, _ in items])
        if np.any(np.diff(index) <= 0):
            dup = index[np.flatnonzero(np.diff(index) <= 0)[0] + 1]
            owners = [p for a, _, p in items if dup in a["toy_index"]]
            raise MergeError(f"{owners[-1]}: toy index {dup} (same seed stream) also in {owners[0]}")
        n_total = max(h["n_toys_total"] for _, h, _ in items)  # extended toys (lzflow.precision): the largest
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


def _finite_or_none(x: float | None) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def json_safe(doc: Any) -> tuple[Any, list[str]]:
    """``doc`` with every non-finite float (NaN, ±inf) replaced by ``None``, and the JSON paths of
    the replaced values (so that a null that was a NaN is flagged, never silent)."""
    paths: list[str] = []

    def walk(x: Any, path: str) -> Any:
        if isinstance(x, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, np.ndarray):
            return walk(x.tolist(), path)
        if isinstance(x, (float, np.floating)):
            if not np.isfinite(x):
                paths.append(f"{path} ({x})")
                return None
            return float(x)
        if isinstance(x, np.integer):
            return int(x)
        if isinstance(x, np.bool_):
            return bool(x)
        return x

    return walk(doc, ""), paths


def merge_limits(ws: Mapping[str, Any], toy_paths: Sequence[str | Path], spec: Mapping[str, Any],
                 observed: str | Path | None = None) -> dict[str, Any]:
    """The limit document of one mass (see the module docstring); ``spec`` holds cl, method,
    power_threshold, test_statistic (optionally n_boot, max_refine_rounds; ``blind`` and
    ``discovery_toys`` with observed data, :func:`lzflow.layout.observed_merge_spec`); ``observed``:
    the binned event list of an unblinded analysis."""
    return limit_document(ws, lambda: load_toy_files(toy_paths), spec, _read_observed(spec, observed))[0]


def _read_observed(spec: Mapping[str, Any], path: str | Path | None) -> dict[str, Any] | None:
    """The binned event list when the spec is unblinded (``blind: false``); a blind spec or one
    without data takes none: nothing of the data is read."""
    from .observeddata import read_observed

    if (spec.get("blind") is False) != (path is not None):
        raise MergeError(f"observed data {'missing' if path is None else 'given'} for a merge spec with blind "
                         f"{spec.get('blind')}; expected --observed exactly when blind is false")
    return None if path is None else read_observed(path)


def merge_mass(ws: Mapping[str, Any], toy_paths: Sequence[str | Path], spec: Mapping[str, Any],
               observed: str | Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`merge_limits` and the fit-error summary of the same toys
    (:func:`lzflow.fit_errors.summarise_loaded`), reading each toy file once; the summary includes
    the toys merge ran itself to extend the POI grid."""
    from .fit_errors import summarise_loaded

    files = load_toy_files(toy_paths)
    doc, extra = limit_document(ws, lambda: files, spec, _read_observed(spec, observed))
    return doc, summarise_loaded([*files, *extra])


#: the note of a mass whose toys were fitted with ``stats.shape_fit_search: single_start`` (lzflow.searchconfig)
SINGLE_START_NOTE = ("toys fitted from one start each (stats.shape_fit_search: single_start): q̃ at the minimum Newton "
                     "reaches from the generation point, alike for the S+B and B-only toys")


def _toy_settings(headers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Seed, test statistic, toy block, likelihood, conditional fits and the shape fits' search shared by every toy
    file of the mass."""
    from .toyjobs import TOY_BLOCK, likelihood_settings

    def one(name: str, get: Callable[[Mapping[str, Any]], Any]) -> Any:
        values = {json.dumps(get(h), sort_keys=True) for h in headers}
        if len(values) != 1:
            raise MergeError(f"toy files disagree on {name}: {sorted(values)}; rerun the toys of this mass")
        return get(headers[0])

    return {"seed": int(one("the seed", lambda h: h["seed_entropy"][0])),
            "test_statistic": one("the test statistic", lambda h: h["test_statistic"]),
            "toy_block": int(one("the toy block", lambda h: h.get("toy_block", TOY_BLOCK))),
            "likelihood": likelihood_settings(one("the likelihood", lambda h: h.get("likelihood", {}))),
            "observed_digest": one("the observed data", lambda h: h.get("observed_digest")),
            "cond_fits": one("the conditional fits", lambda h: h.get("cond_fits", "all")),
            "shape_fit_search": one("the shape fits' search", lambda h: h.get("shape_fit_search", "multistart"))}


def _records(result: Any) -> dict[str, np.ndarray]:
    """A :class:`lzflow.stats.toyresult.ToyResult` as toy-file arrays."""
    arrays = {name: np.asarray(getattr(result, name)) for name in result.PER_TOY}
    arrays["mu_test"] = np.asarray(result.mu_test)
    return arrays


def limit_document(ws: Mapping[str, Any], toy_files: Callable[[], list[LoadedToyFile]], spec: Mapping[str, Any],
                   data: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[LoadedToyFile]]:
    """The limit document, and the records of the toys merge ran to extend the POI grid (as (label, arrays,
    header) entries for the fit-error summary). ``toy_files()`` supplies the read toy files, and is not
    called for a mass whose signal has no events in the ROI (no limit, nothing to merge).

    Toys whose fits failed (every strategy) or whose q is NaN are left out and counted
    (``excluded``, per ensemble, with causes; module :mod:`lzflow.stats.quality`). When a
    reported quantile or the observed limit sits on a grid edge, POI points are added beyond it
    (:func:`lzflow.stats.inversion.refine_toy_grid`): S+B toys there with new POI indices after
    the configured ones, and the B-only toys regenerated from their seeds (checked against their
    files) and evaluated there, from the unconditional fits in their files (not fitted again);
    deterministic, so the same config gives the same document. The MC errors are bootstrap errors
    over all toys (``n_boot`` replicates, default :data:`lzflow.stats.inversion.N_BOOT`; relative,
    per quantity, in ``precision`` with a ``target_precision``: :mod:`lzflow.precision`).
    Non-finite numbers become null and are listed in ``non_finite_to_null``. With ``data`` (the binned event list of an unblinded analysis) the
    observed dataset is the data (toys generated at its fits, checked by their ``observed_digest``)
    and ``"observed"`` holds :func:`lzflow.observed.observed_section`; else it is the Asimov
    background-only dataset and nothing of any data is read.
    """
    from .construction_stage import add_limit_sections
    from .stats.bands import BANDS, CONFIG_POWER_THRESHOLD, pcl_with_status
    from .stats.inversion import (MAX_REFINE_ROUNDS, N_BOOT, ToyGrid, bootstrap_errors, invert_toys, refine_toy_grid,
                                  toy_grid)
    from .stats.pvalues import pvalue_table
    from .stats.quality import EXCLUSION_POLICY, GOOD, cause_counts
    from .observedfit import toy_request
    from .stats.multistart import search_fit_config
    from .stats.toyfits import UNCOND_FIELDS, StoredUncond
    from .stats.toys import BONLY_POI_INDEX, mass_key, observed_asimov, run_toys
    from .observed import observed_results
    from .observeddata import observed_counts, observed_fit
    from .precision import precision_section
    from .workspace import workspace_model

    cl = float(spec["cl"])
    alpha = 1.0 - cl
    threshold = spec.get("power_threshold")
    sigma_ref = float(ws["sigma_ref_cm2"])
    doc: dict[str, Any] = {
        "format": "lzflow-limit-1", "lzflow_version": __version__, "mass_GeV": ws["mass_GeV"], "cl": cl,
        # which cross section sigma_* are (signal.interaction; the merge spec omits SI, layout.interaction_spec)
        "interaction": spec.get("interaction", "SI"),
        "method": spec["method"], "test_statistic": spec["test_statistic"], "power_threshold": threshold,
        "sigma_ref_cm2": sigma_ref, "signal_expected_events_at_sigma_ref": ws["signal"]["expected_events"],
        "asymptotic": ws.get("asymptotic"), "poi_grid": ws["poi_grid"],
        **({"blind": spec["blind"]} if "blind" in spec else {}),
    }
    if ws["signal"]["empty"]:
        doc.update(no_sensitivity=True, warning=f"{ws['signal']['name']}: no signal events in the ROI; no limit")
        return doc, []
    model = workspace_model(ws)
    mus = np.asarray(ws["poi_grid"], dtype=np.float64)
    sb, b, headers = collect_toys(toy_files(), ws)
    missing = [k for k in range(mus.size) if k not in sb]
    if missing:
        raise MergeError(f"S+B toys missing for POI indices {missing}")
    if b is None:
        raise MergeError("B-only toys missing")
    settings = _toy_settings(headers)
    test_stat = settings["test_statistic"]
    if test_stat != spec["test_statistic"]:
        raise MergeError(f"toys use test statistic {test_stat!r}, the merge spec {spec['test_statistic']!r}; "
                         f"rerun the toys")
    if settings["shape_fit_search"] != "multistart":  # lzflow.searchconfig: recorded; observed data's fits search
        if data is not None:
            raise MergeError("toys fitted with shape_fit_search single_start and observed data, whose fits search every "
                             "start; expected multistart toys (rerun them)")
        doc["shape_fit_search"] = settings["shape_fit_search"]
    counts, aux = observed_asimov(model) if data is None else (observed_counts(data, ws), model.nominal_nuisance())
    obs = observed_fit(model, counts, aux, data, lambda: job_model(ws, settings["likelihood"]))  # binned or events
    if settings["observed_digest"] != (None if data is None else obs.digest):
        raise MergeError(f"toy files generated at observed data {settings['observed_digest']}, the merge has "
                         f"{None if data is None else obs.digest}; rerun the toys of this mass")
    q_obs = obs.q(mus, test_stat)
    grid = toy_grid(mus, q_obs, [sb[k] for k in range(mus.size)], b, test_stat)
    grid = grid.subset(mus > 0) if spec.get("construction") == "two_sided" else grid  # q̃ = 0 at μ = 0
    warnings: list[str] = []  # notes are shown with the mass in the report
    notes = [SINGLE_START_NOTE] if "shape_fit_search" in doc else []
    usable = np.array([e.n > 0 for e in grid.sb]) & np.array([e.n > 0 for e in grid.b])
    if not usable.all():
        dropped = [int(k) for k in np.flatnonzero(~usable)]
        warnings.append(f"POI indices {dropped}: no usable S+B or B-only toy there (every fit failed); "
                        f"those points are left out")
        if usable.sum() < 2:
            raise MergeError(f"fewer than two POI points with usable toys (POI indices {dropped} have none); "
                             f"see fit_errors.json")
        grid = grid.subset(usable)

    key = mass_key(ws["mass_GeV"])
    n_sb_new = max(int(h["n_toys_total"]) for h in headers if h["hypothesis"] == "sb")
    b_index = np.asarray(b["toy_index"])
    extra: list[LoadedToyFile] = []
    refined: dict[str, Any] = {"sb": {}, "bonly": []}

    def add_points(mu_new: np.ndarray, idx_new: np.ndarray) -> ToyGrid:
        toys = job_model(ws, settings["likelihood"])
        ensemble = dict(base_seed=settings["seed"], mass_key=key, test_stat=test_stat, cond_fits=settings["cond_fits"],
                        config=search_fit_config(settings["shape_fit_search"]),
                        block_size=settings["toy_block"], n_threads=1, observed=None if data is None else obs.toy_source)
        sb_new = [run_toys(toys, toy_request(poi_index=int(k), hypothesis="sb", mu=float(mu),
                                            toy_indices=np.arange(n_sb_new), **ensemble))
                  for mu, k in zip(mu_new, idx_new)]
        stored = StoredUncond(b_index, *(np.asarray(b[f"{k}_uncond"]) for k in UNCOND_FIELDS))  # no refit
        b_new = run_toys(toys, toy_request(poi_index=BONLY_POI_INDEX, hypothesis="b", mu=float(mu_new[0]),
                                          mu_test=mu_new, toy_indices=b_index, **ensemble), stored)
        if not (np.array_equal(b_new.aux, b["aux"]) and np.array_equal(b_new.n_events, b["n_events"])
                and np.allclose(b_new.nll_uncond, b["nll_uncond"], rtol=1e-9, atol=1e-9, equal_nan=True)):
            raise MergeError("the B-only toys could not be regenerated from their seeds (toy files made by other "
                             "code?); rerun the toys of this mass")
        q_new = obs.q(mu_new, test_stat)
        label = f"merge m{ws['mass_GeV']:g} grid extension"
        for mu, k, r in zip(mu_new, idx_new, sb_new):
            recs = _records(r)
            refined["sb"][str(int(k))] = {"mu": float(mu), "failures": ensemble_failures(recs)}
            extra.append((label, recs, {"mass_GeV": float(ws["mass_GeV"]), "hypothesis": "sb",
                                        "poi_index": int(k), "run_number": None, "source": "merge",
                                        "test_statistic": test_stat}))
        recs = _records(b_new)
        refined["bonly"].append({"mu": mu_new.tolist(), "failures": ensemble_failures(recs)})
        extra.append((label, recs, {"mass_GeV": float(ws["mass_GeV"]), "hypothesis": "b-grid-extension",
                                    "poi_index": int(idx_new[0]), "run_number": None, "source": "merge",
                                    "test_statistic": test_stat}))
        return toy_grid(mu_new, q_new, sb_new, b_new, test_stat, idx_new)

    # without a power constraint the PCL floor is still computed (grid edges, bootstrap) at the configured
    # default π_crit (0.1587, Φ(−1) to four digits), not at stats.bands.POWER_THRESHOLD (exact Φ(−1))
    threshold_or_default = threshold if threshold else CONFIG_POWER_THRESHOLD
    methods = ("clsb", "cls")
    grid, rounds = refine_toy_grid(grid, add_points, alpha, methods, threshold_or_default,
                                   max_rounds=int(spec.get("max_refine_rounds", MAX_REFINE_ROUNDS)))
    table = pvalue_table(grid.q_obs, grid.sb, grid.b)
    invs = {m: invert_toys(grid, alpha, m, threshold_or_default, table=table) for m in methods}
    n_boot = int(spec.get("n_boot", N_BOOT))
    boots = bootstrap_errors(grid, alpha, methods, threshold_or_default, n_boot, [settings["seed"], key, 999]) \
        if n_boot > 1 else None
    if rounds:
        warnings.append(f"POI grid extended beyond its edges in {len(rounds)} round(s): "
                        + "; ".join("mu [" + ", ".join(f"{m:.4g}" for m in r["mu"]) + "]" for r in rounds))

    def summary(which: str) -> dict[str, Any]:
        inv = invs[which]
        obs = inv.observed
        if threshold:
            pcl, pcl_status = pcl_with_status(obs, inv.pcl_floor_band)
        else:
            pcl, pcl_status = obs.mu, "ok" if obs.status == "ok" else obs.status
        boot = boots[which] if boots else None
        name = {"clsb": "CLs+b", "cls": "CLs"}[which]
        for n, band in inv.bands.items():
            if band.status != "ok":
                text = (f"{name} {n:+d}σ band: {band.status.replace('_', ' ')} "
                        f"{'≤' if band.status == 'upper_bound' else '≥'} {band.bound:.4g} (grid edge)")
                if which == "clsb" and band.level <= alpha and band.status == "upper_bound":
                    notes.append(text + f"; expected: ≈ α of background-only experiments exclude every μ > 0, so "
                                        f"CLs+b quantiles below α = {alpha:g} have no value")
                else:
                    warnings.append(text)
        if threshold and inv.pcl_floor_band.status != "ok":
            warnings.append(f"{name} PCL floor: {inv.pcl_floor_band.status.replace('_', ' ')} {inv.pcl_floor_band.bound:.4g}")
        return {
            "observed_mu": _finite_or_none(obs.mu),
            "observed_mu_err": _finite_or_none(boot["observed"] if boot else obs.error),
            "observed_mu_err_propagated": _finite_or_none(obs.error),
            "observed_status": obs.status,
            "pcl_mu": _finite_or_none(pcl), "pcl_status": pcl_status,
            # without a power constraint the "PCL" is the observed limit, and so is its error
            "pcl_mu_err": _finite_or_none(boot["pcl"] if threshold else boot["observed"]) if boot else None,
            "pcl_floor_mu": _finite_or_none(inv.pcl_floor) if threshold else None,
            "pcl_floor_status": inv.pcl_floor_band.status if threshold else None,
            "pcl_floor_mu_err": _finite_or_none(boot["pcl_floor"]) if threshold and boot else None,
            "expected_mu": {str(n): _finite_or_none(inv.expected[n]) for n in BANDS},
            "expected_mu_err": {str(n): _finite_or_none(boot["expected"][n] if boot else inv.expected_err[n])
                                for n in BANDS},
            "expected_mu_err_order_stats": {str(n): _finite_or_none(inv.expected_err[n]) for n in BANDS},
            "expected_status": {str(n): inv.bands[n].status for n in BANDS},
            "expected_bound_mu": {str(n): _finite_or_none(inv.bands[n].bound) for n in BANDS
                                  if inv.bands[n].status != "ok"},
            "expected_sigma_cm2": {str(n): _finite_or_none(inv.expected[n] * sigma_ref) for n in BANDS},
            "expected_bound_sigma_cm2": {str(n): _finite_or_none(inv.bands[n].bound * sigma_ref) for n in BANDS
                                         if inv.bands[n].status != "ok"},
            "observed_sigma_cm2": _finite_or_none(obs.mu * sigma_ref),
            "pcl_sigma_cm2": _finite_or_none(pcl * sigma_ref),
            "experiments_outside_grid": inv.outside,
            "n_experiments": inv.n_experiments,
            "excluded_experiments": inv.excluded_experiments,
            "error_method": (f"bootstrap ({n_boot} replicates over all S+B and B-only toys)" if boot
                             else "order statistics (bands), propagated binomial (observed)"),
        }

    doc["poi_grid"] = grid.mu.tolist()
    doc["poi_index"] = grid.poi_index.tolist()
    doc["poi_grid_configured"] = mus.tolist()
    doc["pvalues"] = {k: v.tolist() for k, v in table.items()}
    doc["pvalue_interval"] = "68.27 % Clopper-Pearson (exact binomial); *_err = half its width, CLs propagated"
    doc["q_obs"] = [float(x) for x in grid.q_obs]
    doc["toys"] = {
        "sb_per_poi": [int(q.size) for q in grid.q_sb],
        "sb_used_per_poi": [int(e.n) for e in grid.sb],
        "bonly": int(b["toy_index"].size),
        "bonly_used_per_poi": [int(e.n) for e in grid.b],
        "run_numbers": sorted(h["run_number"] for h in headers),
        "seeds": sorted({tuple(h["seed_entropy"]) for h in headers}),
    }
    doc["limits"] = {"CLs+b": summary("clsb"), "CLs": summary("cls")}
    doc.update({"precision": precision_section(doc, spec, headers)} if "target_precision" in spec else {})
    primary = doc["limits"][spec["method"]]
    doc["upper_limit_mu"] = primary["pcl_mu"]
    doc["upper_limit_sigma_cm2"] = primary["pcl_sigma_cm2"]
    doc["median_expected_sigma_cm2"] = primary["expected_sigma_cm2"]["0"]
    doc["failures"] = {"sb": {str(k): ensemble_failures(sb[k]) for k in range(mus.size)}, "bonly": ensemble_failures(b)}
    excluded = {
        "policy": EXCLUSION_POLICY,
        "sb": {str(int(k)): {"n_toys": int(q.size), "n_used": int(e.n), "causes": cause_counts(c)}
               for k, q, c, e in zip(grid.poi_index, grid.q_sb, grid.cause_sb, grid.sb)},
        "bonly": {str(int(k)): {"n_toys": int(grid.q_b.shape[0]), "n_used": int(e.n),
                                "causes": cause_counts(grid.cause_b[:, j])}
                  for j, (k, e) in enumerate(zip(grid.poi_index, grid.b))},
        "bonly_experiments": {"n_toys": int(grid.q_b.shape[0]), "n_used": int(grid.experiments.sum()),
                              "causes": invs["clsb"].excluded_experiments},
    }
    doc["excluded"] = excluded
    for label, ens in (("S+B", excluded["sb"]), ("B-only", excluded["bonly"])):
        for k, e in ens.items():
            if e["n_used"] < e["n_toys"]:
                warnings.append(f"{label} POI {k}: {e['n_toys'] - e['n_used']} of {e['n_toys']} toys left out "
                                f"({', '.join(f'{c} {n}' for c, n in e['causes'].items())}); p-values use the "
                                f"{e['n_used']} others")
    if refined["sb"] or refined["bonly"]:
        doc["refinement"] = {"rounds": rounds, "toys": refined,
                             "note": "POI points added by merge beyond the grid edges: S+B toys with new POI "
                                     "indices (seeds) after the configured ones, the B-only toys regenerated "
                                     "from their seeds and evaluated there"}
        doc["failures"]["sb"].update({k: v["failures"] for k, v in refined["sb"].items()})
        doc["failures"]["bonly_grid_extension"] = [r["failures"] for r in refined["bonly"]]
    q_sb_used = [q[c == GOOD] for q, c in zip(grid.q_sb, grid.cause_sb)]
    q_b_used = [grid.q_b[grid.cause_b[:, j] == GOOD, j] for j in range(grid.mu.size)]

    def sample(q: np.ndarray) -> list[float]:
        q = np.sort(q[np.isfinite(q)])
        return np.round(q, 6).tolist()[:: max(1, q.size // 500)]

    doc["q_distributions"] = {
        "sb": [sample(q) for q in q_sb_used], "bonly": [sample(q) for q in q_b_used],
        "sb_n_inf": [int(np.sum(np.isinf(q))) for q in q_sb_used],
        "bonly_n_inf": [int(np.sum(np.isinf(q))) for q in q_b_used],
        "note": "used toys only, finite q (every ~N/500-th); +inf q (data impossible under mu) counted in *_n_inf",
    }
    if data is not None:
        doc["observed"] = observed_results(obs, doc, spec, settings, data, key)
    add_limit_sections(doc, warnings, model, ws, counts, aux, sb, b, spec, settings, key, data is not None,
                       (add_points, extra))
    mismatch = toy_asymptotic_mismatch(doc)
    if mismatch:
        warnings.append(mismatch)
    doc["warnings"], doc["notes"] = warnings, notes
    safe, replaced = json_safe(doc)
    if replaced:
        safe["non_finite_to_null"] = replaced[:50] + ([f"... {len(replaced) - 50} more"] if len(replaced) > 50 else [])
        safe["warnings"].append(f"{len(replaced)} non-finite number(s) written as null (non_finite_to_null)")
    return safe, extra


#: a toy median expected limit further than this factor from the asymptotic one is reported: with
#: these toy counts they agree to ~20 % (docs/results.md), a larger gap means the model or the fits
#: misbehave (e.g. shape systematics whose additive morphing goes negative, docs/method.md)
TOY_ASYMPTOTIC_TOLERANCE = 1.5


def toy_asymptotic_mismatch(doc: Mapping[str, Any], tolerance: float = TOY_ASYMPTOTIC_TOLERANCE) -> str | None:
    """A warning when the toy median expected limit and the asymptotic one differ by more than
    ``tolerance`` (a factor), else None (also when either is missing)."""
    try:
        toys = doc["limits"][doc["method"]]["expected_sigma_cm2"]["0"]
        asymptotic = doc["asymptotic"]["expected_sigma_cm2"]["0"]
    except (KeyError, TypeError):
        return None
    if not (toys and asymptotic and toys > 0 and asymptotic > 0):
        return None
    ratio = toys / asymptotic
    if 1 / tolerance <= ratio <= tolerance:
        return None
    return (f"the toy median expected limit is {ratio:.2f} x the asymptotic one (beyond the usual ~20 %): check the "
            f"fits (lzflow errors) and, with shape systematics, the morphing (docs/method.md, Shape systematics)")


def _g(x: float | None) -> str:
    """A number for a log line; None (e.g. a limit outside the POI grid) as 'n/a'."""
    return "n/a" if x is None else f"{x:.3g}"


def limit_summary(doc: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(one summary line, warnings) of a limit document, for the merge job's log: the median
    expected, asymptotic and PCL limits; a median outside the POI grid; toys left out, grid
    extensions, bounds (the document's ``warnings``)."""
    if doc.get("no_sensitivity"):
        return f"merge: {doc['warning']}", []
    median = doc["limits"][doc["method"]]["expected_sigma_cm2"]["0"]
    line = (f"merge {doc['mass_GeV']:g} GeV: median expected {_g(median)} cm2 (asymptotic "
            f"{_g(doc['asymptotic']['expected_sigma_cm2']['0'])}), PCL {_g(doc['upper_limit_sigma_cm2'])} cm2"
            + {True: " [blind: data not read]", False: " [unblinded: PCL on the data]"}.get(doc.get("blind"), ""))
    warnings = []
    if median is None:
        grid = doc["poi_grid"]
        warnings.append(f"the median expected limit is outside the POI grid [{grid[0]:.3g}, {grid[-1]:.3g}] (in units "
                        f"of sigma_ref); widen stats.poi_grid (min_factor/max_factor)")
    warnings += [f"merge {doc['mass_GeV']:g} GeV: {w}" for w in doc.get("warnings", [])]
    return line, warnings
