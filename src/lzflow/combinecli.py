"""``lzflow combine`` (science runs' workspaces → one combined workspace) and ``lzflow gof``
(goodness of fit of data to a workspace, per run and combined). :func:`register` adds both to the
parser of :mod:`lzflow.cli`.

Combined workspace document
---------------------------
The format of :mod:`lzflow.workspace` (``lzflow-workspace-1``) with the combined model of
:mod:`lzflow.stats.combine`: templates are **flat** lists over the concatenated bins (each run's
bins in C order, cS1 slow, inside its range), backgrounds and shape systematics under their
combined names (shared by name, or ``<run>:<name>`` / ``<run>.<name>``), the asymptotic limits and
the POI grid of the combination — so ``lzflow toys``, ``lzflow merge`` and
:func:`lzflow.workspace.workspace_model` read it as they read one run. There is no top-level
``axes``: ``runs`` lists per run its ``name``, ``bin_offset``, ``n_bins``, ``bin_shape``, ``axes``,
``detector_hash``, ``source`` (file, sha256) and ``parameters`` (run-local name → combined name);
``correlated`` the shared names. Readers that need one (cS1, log10 cS2) grid — the unbinned
likelihood, ``simulate-data``, ``events``, the HS3 export — refuse such a document in one line.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

from .cliparse import required, stage

__all__ = ["register", "cmd_combine", "cmd_gof", "write_document", "combine_workspaces",
           "observed_counts", "run_pieces", "SPEC_KEYS"]

#: the keys of ``lzflow combine --spec`` (the procedure keys of :func:`lzflow.workspace.asymptotic_summary`
#: and the POI grid of :func:`lzflow.workspace.poi_grid`)
SPEC_KEYS = ("cl", "method", "test_statistic", "power_threshold", "discovery_sigma", "poi_grid")
GRID_KEYS = ("n_points", "min_factor", "max_factor")
#: optional POI-grid key: μ = 0 in front of the grid (``stats.construction: two_sided``)
GRID_OPTIONAL = ("include_zero",)
#: suffixes of binned counts accepted by ``lzflow gof --data`` (others are event lists)
COUNT_SUFFIXES = (".npz", ".json")


def write_document(path: str | Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` as key-sorted JSON, gzipped (reproducibly: no time stamp) if ``path`` ends in
    ``.gz``, atomically."""
    from .io import atomic_path

    text = (json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(text, mtime=0) if str(path).endswith(".gz") else text)


def check_spec(spec: Any) -> dict[str, Any]:
    """``--spec`` of ``lzflow combine``: exactly :data:`SPEC_KEYS`, ``poi_grid`` with :data:`GRID_KEYS`."""
    from .exceptions import ConfigError

    if not isinstance(spec, dict):
        raise ConfigError(f"--spec: {type(spec).__name__}; expected a JSON object with {', '.join(SPEC_KEYS)}")
    for where, got, want in (("spec", spec, SPEC_KEYS), ("spec.poi_grid", spec.get("poi_grid", {}), GRID_KEYS)):
        if not isinstance(got, dict):
            raise ConfigError(f"{where}: {got!r}; expected an object with {', '.join(want)}")
        optional = GRID_OPTIONAL if where == "spec.poi_grid" else ()
        extra, missing = sorted(set(got) - set(want) - set(optional)), [k for k in want if k not in got]
        if extra or missing:
            raise ConfigError(f"{where}: {'unknown key ' + extra[0] if extra else 'missing key ' + missing[0]}; "
                              f"expected exactly {', '.join(want)}" + (f" (optional: {', '.join(optional)})" if optional else ""))
    if not isinstance(spec["poi_grid"].get("include_zero", False), bool):
        raise ConfigError(f"spec.poi_grid.include_zero: {spec['poi_grid']['include_zero']!r}; expected true or false")
    if spec["method"] not in ("CLs+b", "CLs"):
        raise ConfigError(f"spec.method: {spec['method']!r}; expected 'CLs+b' or 'CLs'")
    return dict(spec)


def _same(docs: Mapping[str, Mapping[str, Any]], key: str) -> Any:
    from .exceptions import WorkspaceError

    values = {run: doc[key] for run, doc in docs.items()}
    if len(set(values.values())) > 1:
        raise WorkspaceError(f"{key} differs between runs ({', '.join(f'{r}: {v}' for r, v in values.items())}); "
                             f"expected one value for a combination")
    return next(iter(values.values()))


def _systematic_entry(syst: Any, model: Any, physical: dict[str, Any]) -> dict[str, Any]:
    """``shape_systematics`` entry of a combined systematic: the varied rows of the samples it affects."""
    import numpy as np

    nominal = np.vstack([model.signal[None, :], model.backgrounds])
    samples = (model.signal_name,) + model.names
    labels = {"1": syst.up, "-1": syst.down, "2": syst.up2, "-2": syst.down2}
    labels = {k: v for k, v in labels.items() if v is not None}
    templates = {samples[s]: {k: v[s].tolist() for k, v in labels.items()}
                 for s in range(len(samples)) if any(np.any(v[s] != nominal[s]) for v in labels.values())}
    return {"name": syst.name, "parameter": syst.parameter, "physical": physical, "templates": templates}


def combine_workspaces(docs: Mapping[str, Mapping[str, Any]], correlated: Collection[str], spec: Mapping[str, Any],
                       sources: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """The combined workspace document of the runs ``docs`` (run name → workspace document, in bin
    order) sharing ``correlated`` (module docstring), with its asymptotic limits and POI grid
    (``spec``: :func:`check_spec`); ``sources``: run → {path, sha256} recorded in ``runs``."""
    from . import __version__
    from .exceptions import WorkspaceError
    from .stats.combine import combine_models, separate_name
    from .stats.model import ModelError
    from .workspace import FORMAT, asymptotic_summary, poi_grid, workspace_model

    spec = check_spec(spec)
    for run, doc in docs.items():
        if doc.get("runs"):
            raise WorkspaceError(f"run {run}: already a combined workspace (runs {[r['name'] for r in doc['runs']]}); "
                                 f"expected single-run workspaces")
    mass, sigma_ref = _same(docs, "mass_GeV"), _same(docs, "sigma_ref_cm2")
    try:
        comb = combine_models({run: workspace_model(doc) for run, doc in docs.items()}, correlated)
    except ModelError as err:
        raise WorkspaceError(str(err)) from None
    model = comb.model
    physical: dict[str, dict[str, Any]] = {}
    for run, doc in docs.items():
        for entry in doc.get("shape_systematics") or []:
            combined = entry["name"] if entry["name"] in comb.correlated else separate_name(run, entry["name"], shape=True)
            physical.setdefault(combined, {})[run] = entry["physical"]
    empty = all(doc["signal"]["empty"] for doc in docs.values())
    out: dict[str, Any] = {
        "format": FORMAT, "lzflow_version": __version__, "mass_GeV": mass, "sigma_ref_cm2": sigma_ref,
        "detector_hash": None,
        "flattening": "runs concatenated in order (runs[k].bin_offset); inside a run C order: cS1 slow, log10cS2 fast",
        "signal": {"name": model.signal_name, "expected_events": model.signal_total, "empty": empty,
                   "template": model.signal.tolist()},
        "backgrounds": [{"name": n, "expected_events": float(t.sum()), "rel_unc": float(r),
                         "sigma_events": float(r * t.sum()), "fixed": bool(r == 0.0), "template": t.tolist()}
                        for n, t, r in zip(model.names, model.backgrounds, model.rel_unc)],
        "correlated": list(comb.correlated),
        "runs": [{"name": rb.name, "bin_offset": rb.start, "n_bins": rb.stop - rb.start, "bin_shape": list(rb.bin_shape),
                  "axes": doc.get("axes"), "detector_hash": doc.get("detector_hash"),
                  "source": dict((sources or {}).get(rb.name, {})),
                  "parameters": dict(zip(workspace_model(doc).par_names, (model.par_names[i] for i in rb.par_index)))}
                 for (run, doc), rb in zip(docs.items(), comb.runs)],
    }
    if model.n_shape:
        out["shape_systematics"] = [_systematic_entry(s, model, physical.get(s.name, {}))
                                    for s in model.shape_systematics]
        out["shape_interpolation"] = model.interpolation
    if empty:
        out.update(poi_grid=[], asymptotic={"no_sensitivity": True})
        return out
    out["asymptotic"] = asymptotic_summary(model, spec, sigma_ref)
    out["poi_grid"] = poi_grid(out["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"], spec["poi_grid"])
    return out


def run_pieces(ws: Mapping[str, Any]) -> dict[str, slice]:
    """Bin range of each run of a combined workspace document (none for a single run)."""
    return {r["name"]: slice(r["bin_offset"], r["bin_offset"] + r["n_bins"]) for r in ws.get("runs") or []}


def _counts_file(path: Path, n_bins: int) -> Any:
    import numpy as np

    from .eventlist import DataError

    try:
        if path.suffix == ".npz":
            with np.load(path) as f:
                counts = np.asarray(f["counts"], dtype=np.float64)
        else:
            counts = np.asarray(json.loads(path.read_text())["counts"], dtype=np.float64)
    except (KeyError, ValueError, OSError) as err:
        raise DataError(f"{path}: no readable 'counts' array ({' '.join(str(err).split())}); expected an .npz with "
                        f"'counts' or the JSON of 'lzflow events --out'") from None
    if counts.size != n_bins or not np.all(np.isfinite(counts)) or np.any(counts < 0) \
            or np.any(counts != np.round(counts)):
        raise DataError(f"{path}: counts of shape {counts.shape}; expected {n_bins} finite integers >= 0")
    return counts.ravel()


def observed_counts(ws: Mapping[str, Any], paths: Sequence[str | Path], **read_options: Any) -> tuple[Any, list]:
    """Flat counts of the data ``paths`` for the workspace ``ws`` and a report per file.

    One file for a single run; for a combined workspace one file per run (run order) or one counts
    file with every bin. A counts file: ``.npz`` with ``counts`` or the ``.json`` of ``lzflow events
    --out``; any other file is an event list (:func:`lzflow.eventlist.load_events`, on its run's
    axes, ``read_options`` passed on) whose outside-window events are reported."""
    import numpy as np

    from .eventlist import DataError, load_events

    runs = ws.get("runs") or [{"name": None, "n_bins": _n_bins(ws), "axes": ws.get("axes")}]
    total = sum(r["n_bins"] for r in runs)
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and paths[0].suffix in COUNT_SUFFIXES:
        return _counts_file(paths[0], total), [{"file": str(paths[0]), "counts": "binned"}]
    if len(paths) != len(runs):
        raise DataError(f"--data: {len(paths)} files for {len(runs)} run(s) "
                        f"({', '.join(str(r['name']) for r in runs)}); expected one per run, in run order")
    parts, reports = [], []
    for path, run in zip(paths, runs):
        if path.suffix in COUNT_SUFFIXES:
            parts.append(_counts_file(path, run["n_bins"]))
            reports.append({"file": str(path), "run": run["name"], "counts": "binned"})
            continue
        events = load_events(path, {"axes": run["axes"]}, run=run["name"], **read_options)
        parts.append(events.flat_counts())
        reports.append(events.report())
    return np.concatenate(parts), reports


def _n_bins(ws: Mapping[str, Any]) -> int:
    import numpy as np

    return int(np.asarray(ws["signal"]["template"]).size)


def cmd_combine(args: argparse.Namespace) -> int:
    """combine science runs' workspaces into one workspace (mu shared; nuisances shared by name or per run).

    Read one workspace per run (same mass and reference cross section), build the combined binned
    likelihood (the product over runs: the runs' bins concatenated, mu shared, each nuisance
    parameter named in --correlated shared with one constraint, every other one kept per run as
    <run>:<name>), solve its asymptotic limits and POI grid (--spec) and write a workspace that
    lzflow toys and lzflow merge read as any other.
    """
    from .exceptions import ConfigError
    from .workspace import load_workspace_file

    if len(args.run_names) != len(args.workspace):
        raise ConfigError(f"--run-names: {len(args.run_names)} names for {len(args.workspace)} --workspace files; "
                          f"expected one name per workspace")
    if len(set(args.run_names)) != len(args.run_names):
        raise ConfigError(f"--run-names: {args.run_names}; expected distinct names")
    docs, sources = {}, {}
    for name, path in zip(args.run_names, args.workspace):
        docs[name], sha = load_workspace_file(path)
        sources[name] = {"path": str(path), "sha256": sha}
    try:
        spec = json.loads(args.spec)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--spec: not JSON ({err.msg})") from None
    ws = combine_workspaces(docs, args.correlated, spec, sources)
    write_document(args.out, ws)
    shared = ", ".join(ws["correlated"]) or "none"
    median = ws["asymptotic"].get("expected_sigma_cm2", {}).get("0")
    print(f"combine m{ws['mass_GeV']:g}: runs {', '.join(args.run_names)} ({len(ws['signal']['template'])} bins, "
          f"{len(ws['backgrounds'])} rates, {len(ws.get('shape_systematics', []))} shapes; shared {shared}); "
          f"asymptotic median {median if median is None else f'{median:.3g} cm2'} -> {args.out}")
    return 0


def cmd_gof(args: argparse.Namespace) -> int:
    """goodness of fit of data to a workspace: saturated-model chi2 with its toy distribution.

    Fit the data (binned counts or event lists, one per run of a combined workspace), compute the
    Baker-Cousins saturated-model statistic (bins and constraints; per run for a combined
    workspace) and its distribution over --toys toys generated at the best fit and refitted; write
    the statistic, the p-values and the toy quantiles as JSON.
    """
    from .eventlist import DataError
    from .io import write_json
    from .masskey import mass_key
    from .stats.gof import goodness_of_fit
    from .workspace import load_workspace_file, workspace_model

    ws, sha = load_workspace_file(args.workspace)
    if args.toys < 1 or args.seed < 0:
        raise DataError(f"--toys {args.toys} --seed {args.seed}: expected toys >= 1 and seed >= 0")
    counts, reports = observed_counts(ws, args.data, columns=args.columns, units=args.units, tree=args.tree)
    model = workspace_model(ws)
    try:
        res = goodness_of_fit(model, counts, None, n_toys=args.toys, base_seed=args.seed,
                              mass_key=mass_key(ws["mass_GeV"]), pieces=run_pieces(ws))
    except ValueError as err:
        raise DataError(f"{args.data}: {err}") from None
    doc = {"format": "lzflow-gof-1", "workspace": {"path": str(args.workspace), "sha256": sha},
           "mass_GeV": ws["mass_GeV"], "data": reports, "runs": list(run_pieces(ws)), **res.as_dict()}
    write_json(args.out, doc)
    per_run = "".join(f", {r} p {res.p_value[r]:.3g}" for r in run_pieces(ws))
    print(f"gof m{ws['mass_GeV']:g}: chi2_lambda {res.observed['total']:.1f}, p {res.p_value['total']:.3g} "
          f"± {res.p_error['total']:.2g} ({res.n_toys} toys, {res.n_failed} failed){per_run} -> {args.out}")
    return 0


def register(sub: Any) -> None:
    """Add ``combine`` and ``gof`` to the console script's subparsers."""
    p = stage(sub, "combine", cmd_combine)
    p.add_argument("--workspace", action="append", required=True, help="a run's workspace.json(.gz); once per run")
    p.add_argument("--run-names", nargs="+", required=True, help="one name per --workspace, in the same order")
    p.add_argument("--correlated", nargs="*", required=True, metavar="NAME",
                   help="nuisance parameters (backgrounds, shape systematics) shared by name; every other one is "
                        "kept per run as <run>:<name>. Required: give it with no name to share none")
    required(p, spec=f"JSON with {', '.join(SPEC_KEYS)} (as the workspace job's)",
             out="output combined workspace (.json or .json.gz)")

    p = stage(sub, "gof", cmd_gof)
    required(p, workspace="workspace.json(.gz), one run or combined", out="output gof.json")
    p.add_argument("--data", nargs="+", required=True,
                   help="counts (.npz with 'counts', or the JSON of 'lzflow events --out') or event lists; one per "
                        "run of a combined workspace, or one counts file with every bin")
    p.add_argument("--toys", type=int, required=True, help="number of toys (>= 1)")
    p.add_argument("--seed", type=int, required=True, help="random seed of the toys (>= 0)")
    p.add_argument("--columns", nargs="+", metavar="Q=NAME", help="event-list columns, e.g. cS1=s1c cS2=s2c")
    p.add_argument("--units", nargs="+", metavar="Q=UNIT", help="units of event-list columns the file does not declare")
    p.add_argument("--tree", default="events", help="TTree name (ROOT event lists)")
