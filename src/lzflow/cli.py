"""The ``lzflow`` console script: one subcommand per stage.

Every stage can be run alone from a config file (``--config``) or, as the Snakemake rules do,
from a JSON job specification (``--spec``) that holds exactly what that job needs. User mistakes
print one line (``lzflow: error: <key>: <value> ... expected ...``) and exit with status 2; no
tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import __version__
from .config import ConfigError, load_config
from .exceptions import OutputError, one_line
from .detector import DetectorError
from .units import UnitError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DetectorError, UnitError, FileNotFoundError, OutputError)


def _user_errors() -> tuple[type[Exception], ...]:
    from .merge import MergeError
    from .toyjobs import ToyFileError
    from .workspace import WorkspaceError

    return USER_ERRORS + (MergeError, ToyFileError, WorkspaceError)


def _load(args: argparse.Namespace) -> dict[str, Any]:
    return load_config(args.config)


# --------------------------------------------------------------------------------------- validate
def cmd_validate(args: argparse.Namespace) -> int:
    from .config import load_config_stack
    from .variants import expand_studies

    # later files overlay earlier ones, each with its base: chain, exactly as snakemake --configfile A B
    baseline, studies = expand_studies(load_config_stack(args.config))
    cfg = baseline.config
    det = cfg["detector"]
    print(
        f"{' + '.join(args.config)}: OK — tag {cfg['tag']}, detector {det['name']} (g1 {det['nest']['g1']:g}, "
        f"hash {det['hash'][:12]}), exposure {cfg['exposure']['exposure_t_yr']:.2f} t·yr, "
        f"{len(cfg['signal']['masses_GeV'])} masses, {len(cfg['backgrounds'])} backgrounds"
    )
    for study in studies:
        print(f"  study {study.name}: {study.parameter} = {[v.value for v in study.variants]} "
              f"(baseline {study.baseline_value}) at {', '.join(study.masses)} GeV")
    return 0


# --------------------------------------------------------------------------------------- detector
def cmd_detector(args: argparse.Namespace) -> int:
    from .detector import derived_quantities
    from .io import write_json

    det = json.loads(args.spec) if args.spec else _load(args)["detector"]
    out = dict(det)
    out["derived"] = derived_quantities(det)
    out["lzflow_version"] = __version__
    write_json(args.out, out)
    d = out["derived"]
    print(
        f"detector {det['name']}: g1 {det['nest']['g1']:g}, g2 {d['g2_phd_per_electron']:.2f} phd/e, "
        f"SE {d['single_electron_phd']:.2f} phd, extraction {d['extraction_efficiency']:.3f}, "
        f"fiducial {d['fiducial_mass_t']:.3f} t -> {args.out}"
    )
    return 0


# --------------------------------------------------------------------------------------- response
def analysis_space(spec: dict[str, Any]):
    from .response import AnalysisSpace

    return AnalysisSpace(
        cs1_min=spec["cs1_phd"]["min"], cs1_max=spec["cs1_phd"]["max"], cs1_bins=spec["cs1_phd"]["bins"],
        log10cs2_min=spec["log10_cs2_phd"]["min"], log10cs2_max=spec["log10_cs2_phd"]["max"],
        log10cs2_bins=spec["log10_cs2_phd"]["bins"], s2_raw_min_phd=spec["s2_raw_min_phd"],
    )


def cmd_response(args: argparse.Namespace) -> int:
    from .io import read_json
    from .response import build_response, save_response

    if args.spec:
        spec = json.loads(args.spec)
    else:
        from .layout import response_spec

        spec = response_spec(_load(args), args.interaction)
    detector = read_json(args.detector)
    detector.pop("derived", None)
    detector.pop("lzflow_version", None)
    response = build_response(detector, spec["interaction"], n_samples=spec["n_samples"], seed=spec["seed"],
                              n_workers=args.workers, space=analysis_space(spec))
    save_response(response, args.out)
    print(f"response {spec['interaction']}: {int(response.n_sim.sum()):,} NEST events, "
          f"{int(response.counts.sum()):,} in the ROI -> {args.out}")
    return 0


# --------------------------------------------------------------------------------------------- pdf
def cmd_pdf(args: argparse.Namespace) -> int:
    import warnings

    from .pdfs import make_pdf
    from .response import load_response
    from .sources import background_source, wimp_source

    spec = json.loads(args.spec)
    source = wimp_source(spec) if "mass_GeV" in spec else background_source(spec)
    response = load_response(args.response)
    if response.interaction != source.interaction:
        raise ConfigError(f"{source.name}: needs the {source.interaction} response, got {args.response} "
                          f"({response.interaction})")
    out = Path(args.out)
    expected_name = f"{source.name}.root"
    if out.name != expected_name:
        raise ConfigError(f"--out: {out} must be named {expected_name}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        meta = make_pdf(response, source.name, source.spectrum, out.parent, n_samples=spec.get("n_samples"),
                        full_range_keV=source.energy_range_keV,
                        source_metadata=dict(source.metadata))
    for warning in caught:
        print(f"lzflow: warning: {warning.message}", file=sys.stderr)
    print(f"pdf {source.name}: {meta['expected_events']:.4g} events in the ROI, efficiency "
          f"{meta['efficiency']:.3g}, effective n_samples {meta['n_samples_effective']:.3g} -> {out}")
    return 0


# ---------------------------------------------------------------------------------------- workspace
def cmd_workspace(args: argparse.Namespace) -> int:
    from .workspace import make_workspace, write_workspace

    spec = json.loads(args.spec)
    ws, exports = make_workspace(args.signal, args.backgrounds, spec)
    write_workspace(args.out, ws, exports)
    if ws["signal"]["empty"]:
        print(f"lzflow: warning: {ws['signal']['name']}: no signal events in the ROI; this mass has no sensitivity",
              file=sys.stderr)
    else:
        a = ws["asymptotic"]
        print(f"workspace m{spec['mass_label']}: signal {ws['signal']['expected_events']:.4g} events at "
              f"{ws['sigma_ref_cm2']:.3g} cm2; asymptotic median {a['expected_sigma_cm2']['0']:.3g} cm2 "
              f"({spec['method']}); POI grid {ws['poi_grid'][0]:.3g}..{ws['poi_grid'][-1]:.3g} -> {args.out}")
    return 0


# --------------------------------------------------------------------------------------------- toys
def cmd_toys(args: argparse.Namespace) -> int:
    from .toyjobs import run_toy_job, save_toy_job
    from .workspace import read_workspace

    spec = json.loads(args.spec)
    ws = read_workspace(args.workspace)
    if ws["signal"]["empty"]:
        from .io import atomic_path

        with atomic_path(args.out, suffix=".npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, no_sensitivity=np.array(True))
        print(f"lzflow: warning: {args.workspace}: empty signal (no sensitivity); no toys run", file=sys.stderr)
        return 0
    result, header = run_toy_job(ws, spec)
    save_toy_job(args.out, result, header)
    print(f"toys run {header['run_number']}: {header['hypothesis']} POI {header['poi_index']} "
          f"(mu {header['poi_value']:.4g}), toys {header['toy_index_range']} -> {args.out}")
    return 0


# -------------------------------------------------------------------------------------------- merge
def cmd_merge(args: argparse.Namespace) -> int:
    from .io import write_json
    from .merge import merge_limits, merge_mass
    from .toyjobs import CorruptToyFile, quarantine
    from .workspace import read_workspace

    spec = json.loads(args.spec)
    ws = read_workspace(args.workspace)
    try:
        if args.errors_out:
            doc, errors = merge_mass(ws, args.toys, spec)
            write_json(args.errors_out, errors)
        else:
            doc = merge_limits(ws, args.toys, spec)
    except CorruptToyFile as err:  # move it aside: the next run sees it missing and makes it again
        try:
            done = f"moved aside to {quarantine(err.path).name}, the next run makes it again"
        except OSError as move:  # e.g. a read-only toy directory: still one line, and what to do
            done = f"could not move it aside ({move.strerror}); delete it and the next run makes it again"
        raise CorruptToyFile(err.path, f"{err.what}; {done}") from None
    doc["mass_label"] = spec.get("mass_label")
    write_json(args.out, doc)
    if doc.get("no_sensitivity"):
        print(f"merge: {doc['warning']} -> {args.out}")
    else:
        lim = doc["limits"][doc["method"]]
        median = lim["expected_sigma_cm2"]["0"]
        print(f"merge {doc['mass_GeV']:g} GeV: median expected {_g(median)} cm2 "
              f"(asymptotic {_g(doc['asymptotic']['expected_sigma_cm2']['0'])}), PCL {_g(doc['upper_limit_sigma_cm2'])} "
              f"cm2 -> {args.out}")
        if median is None:
            grid = doc["poi_grid"]
            print(f"lzflow: warning: the median expected limit is outside the POI grid [{grid[0]:.3g}, {grid[-1]:.3g}] "
                  f"(in units of sigma_ref); widen stats.poi_grid (min_factor/max_factor)", file=sys.stderr)
        for warning in doc.get("warnings", []):  # toys left out, grid extended, bounds, nulls
            print(f"lzflow: warning: merge {doc['mass_GeV']:g} GeV: {warning}", file=sys.stderr)
    return 0


def _g(x: float | None) -> str:
    """A number for a log line; None (e.g. a limit outside the POI grid) as 'n/a'."""
    return "n/a" if x is None else f"{x:.3g}"


# -------------------------------------------------------------------------------------------- curve
def cmd_curve(args: argparse.Namespace) -> int:
    from .curve import curve_rows, plot_limit_curve, plot_pvalues, plot_teststat, write_curve_csv
    from .io import read_json

    docs = [read_json(p) for p in args.limits]
    rows = curve_rows(docs)
    write_curve_csv(args.out, rows)
    out_dir = Path(args.out).parent
    plot_limit_curve(rows, out_dir / "limit_curve.png", title=args.title or "")
    for path, doc in zip(args.limits, docs):
        plot_pvalues(doc, Path(path).with_name("pvalues.png"))
        plot_teststat(doc, Path(path).with_name("teststat.png"))
    for row in rows:
        if row["no_sensitivity"]:
            print(f"{row['mass_GeV']:>10g} GeV: no sensitivity")
        else:
            print(f"{row['mass_GeV']:>10g} GeV: median {row['sigma_median_cm2']:.3g} cm2 "
                  f"[-1s {row['sigma_m1_cm2']:.3g}, +1s {row['sigma_p1_cm2']:.3g}], asymptotic "
                  f"{row['sigma_asymptotic_median_cm2']:.3g}")
    print(f"-> {args.out}")
    return 0


# ------------------------------------------------------------------------------------------- errors
def cmd_errors(args: argparse.Namespace) -> int:
    from .fit_errors import combine_summaries, errors_markdown, replay_toy, summarise_errors
    from .io import atomic_path, read_json, write_json
    from .workspace import read_workspace

    if args.replay:
        if not args.workspace:
            raise ConfigError("--replay needs --workspace (the workspace.json the toy file was made from)")
        path, index = args.replay
        result = replay_toy(read_workspace(args.workspace), path, int(index))
        print(json.dumps(result, indent=1))
        return 0 if result["identical"] else 1
    if args.toys and args.summaries:
        raise ConfigError("errors: give --toys or --summaries, not both")
    if args.summaries:
        summary = combine_summaries(read_json(p) for p in sorted(args.summaries))
    else:
        summary = summarise_errors(args.toys)
    if args.out:
        write_json(args.out, summary)
        with atomic_path(Path(args.out).with_suffix(".md")) as tmp:
            tmp.write_text(errors_markdown(summary))
    print(errors_markdown(summary), end="")
    for toy in summary["toys_to_replay"][:10]:
        print(f"replay: lzflow errors --workspace <workspace.json> --replay {toy['file']} {toy['toy_index']}"
              f"   # run {toy['run_number']}: {', '.join(toy['causes'])}")
    return 0


# -------------------------------------------------------------------------------------------- study
def cmd_study(args: argparse.Namespace) -> int:
    from .io import atomic_path, read_json
    from .study_table import plot_study_overlay, read_benchmarks, study_markdown, study_rows, write_study_table

    spec = json.loads(args.spec)
    masses = spec["masses"]
    limits = iter(args.limits)
    benchmarks = iter(args.benchmarks or [])
    entries = []
    for v in spec["variants"]:
        entry = {"label": v["label"], "value": v["value"], "limits": {}, "timing": {}}
        for mass, n_bench in zip(masses, v.get("n_benchmarks", [0] * len(masses))):
            entry["limits"][mass] = read_json(next(limits))
            files = [next(benchmarks) for _ in range(n_bench)]
            entry["timing"][mass] = read_benchmarks(files) if files else (None, None)
        entries.append(entry)
    if next(limits, None) is not None or next(benchmarks, None) is not None:
        raise ValueError("lzflow study: more --limits/--benchmarks files than the spec's variants x masses")
    base, variants = entries[0], entries[1:]
    study = {k: spec[k] for k in ("name", "parameter", "baseline_value", "description")}
    study["baseline_timing"] = base["timing"]
    rows = study_rows(study, base["limits"], variants)
    out = Path(args.out)
    write_study_table(out, rows)
    markdown = study_markdown(study, rows)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown)
    plot_study_overlay(study, rows, out.with_name("overlay.png"))
    print(markdown, end="")
    return 0


# ------------------------------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    from .layout import STAGE_MODULES, stage_code_hash
    from .report import build_report, write_report

    spec = json.loads(Path(args.spec[1:]).read_text()) if args.spec.startswith("@") else json.loads(args.spec)
    names = spec.get("studies", [])
    if not len(names) == len(args.study_tables or []) == len(args.study_overlays or []):
        raise ValueError(f"lzflow report: {len(names)} studies in the spec but {len(args.study_tables or [])} tables "
                         f"and {len(args.study_overlays or [])} overlays")
    studies = [{"name": n, "table": t, "overlay": o} for n, t, o in zip(names, args.study_tables, args.study_overlays)]
    page = build_report(config=spec["config"], curve_csv=args.curve, curve_png=args.curve_plot,
                        limit_paths=args.limits, pvalue_pngs=args.pvalues, teststat_pngs=args.teststat,
                        errors_json=args.errors, detector_json=args.detector, studies=studies,
                        code_hashes={stage: stage_code_hash(stage) for stage in STAGE_MODULES},
                        title=spec.get("title", ""))
    write_report(args.out, page)
    print(f"report: {len(args.limits)} masses, {len(studies)} studies, {len(page) / 1e6:.1f} MB -> {args.out}")
    return 0


def _add_source(parser: argparse.ArgumentParser, spec_help: str) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", help="analysis config YAML (e.g. config/config.yaml)")
    group.add_argument("--spec", help=spec_help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lzflow",
        description="Projected WIMP sensitivity for a liquid-xenon TPC: detector YAML -> NEST response -> "
        "2D PDFs -> likelihood -> toys -> limits. Each subcommand is one stage of the Snakemake workflow.",
    )
    parser.add_argument("--version", action="version", version=f"lzflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    p = sub.add_parser("validate", help="check a config (schema, units, cross-field checks) and summarise it",
                       description="Validate an analysis config: JSON schema, units and cross-field checks. "
                       "Prints a one-line summary, or a one-line error naming the key, value and expectation.")
    p.add_argument("--config", required=True, nargs="+",
                   help="analysis config YAML(s); later files override earlier ones (e.g. a config/studies/ file)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("detector", help="resolve the detector into detector.json (NEST parameters + derived)",
                       description="Resolve the detector description (preset + overrides, units) into every NEST "
                       "parameter, add quantities NEST derives (g2, extraction efficiency, single-electron size, "
                       "fiducial mass) and a parameter hash; write results/<tag>/detector.json.")
    _add_source(p, "resolved detector dictionary as JSON (what the Snakemake rule passes)")
    p.add_argument("--out", required=True, help="output detector.json")
    p.set_defaults(func=cmd_detector)

    p = sub.add_parser("response", help="simulate one NEST interaction type into a response matrix",
                       description="Run NEST (nestpy) once for an interaction type (NR, beta, gammaRay) with energies "
                       "allocated over a fine log grid so that every PDF folded from it reaches the configured "
                       "effective n_samples; histogram the ROI events per (energy bin, cS1, log10 cS2). "
                       "Bit-identical for any number of workers.")
    _add_source(p, "response job spec as JSON (interaction, n_samples, seed, binning, ROI)")
    p.add_argument("--interaction", default="NR", choices=["NR", "beta", "gammaRay"],
                   help="interaction type (with --config)")
    p.add_argument("--detector", required=True, help="detector.json from the detector stage")
    p.add_argument("--workers", type=int, default=1, help="worker processes (does not change the result)")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=cmd_response)

    p = sub.add_parser("pdf", help="fold a source spectrum through its response into a 2D PDF (.root + .json)",
                       description="Fold one source's recoil spectrum (a background, or the WIMP signal of one mass "
                       "at sigma_ref) through its interaction type's response matrix; write a TH2D of expected "
                       "events per (cS1, log10 cS2) bin with uproot plus a JSON sidecar (expected events, "
                       "efficiency, effective n_samples, seed, detector hash). An empty signal is written with "
                       "empty: true and a warning.")
    p.add_argument("--spec", required=True, help="source job spec as JSON (what the Snakemake rule passes)")
    p.add_argument("--response", required=True, help="response .npz of the source's interaction type")
    p.add_argument("--out", required=True, help="output <source>.root (the .json is written beside it)")
    p.set_defaults(func=cmd_pdf)

    p = sub.add_parser("workspace", help="combine one mass's signal PDF with the background PDFs into a workspace",
                       description="Build results/<tag>/m<mass>/workspace.json (templates, expected counts, Gaussian "
                       "constraint widths, fixed parameters removed consistently), solve the asymptotic limits "
                       "(CLs+b and CLs, bands, PCL, 3 sigma discovery potential), choose the POI grid around the "
                       "asymptotic median, and export workspace.pyhf.json and workspace.hs3.json.")
    p.add_argument("--spec", required=True, help="workspace job spec as JSON")
    p.add_argument("--signal", required=True, help="signal PDF .root of this mass")
    p.add_argument("--backgrounds", nargs="+", required=True, help="background PDF .root files")
    p.add_argument("--out", required=True, help="output workspace.json")
    p.set_defaults(func=cmd_workspace)

    p = sub.add_parser("toys", help="run one toy job (a mass, a POI or B-only, a block of toys)",
                       description="Generate and fit one block of pseudo-experiments for one mass: S+B toys at one "
                       "POI grid point, or B-only toys evaluated on the whole grid. Each toy's random stream is "
                       "derived from (seed, mass, POI index, hypothesis, toy index), so the merged result does not "
                       "depend on the job split. Writes per-toy records with the run number and seeds.")
    p.add_argument("--spec", required=True, help="toy job spec as JSON (hypothesis, poi_index, job_index, n_jobs, "
                   "n_toys, seed, test_statistic)")
    p.add_argument("--workspace", required=True, help="workspace.json of the mass")
    p.add_argument("--out", required=True, help="output job<j>.npz")
    p.set_defaults(func=cmd_toys)

    p = sub.add_parser("merge", help="merge one mass's toys into limit.json (p-values, limits, bands, PCL)",
                       description="Merge every toy file of one mass: p-value curves (CLs+b, CLb, CLs) with MC "
                       "errors, the upper limit in mu and cm2 (CLs+b with power constraint by default, CLs too), "
                       "expected bands from B-only experiments, asymptotic comparison, toy counts, fit failures "
                       "per POI and hypothesis with causes. Refuses duplicate run numbers/seeds and corrupt files.")
    p.add_argument("--spec", required=True, help="merge spec as JSON (cl, method, power_threshold, test_statistic)")
    p.add_argument("--workspace", required=True, help="workspace.json of the mass")
    p.add_argument("--toys", nargs="*", default=[], help="toy files of this mass")
    p.add_argument("--out", required=True, help="output limit.json")
    p.add_argument("--errors-out", help="also write the fit-error summary of these toys (as 'lzflow errors --out')")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("curve", help="limit curve over masses: CSV and plots",
                       description="Collect every mass's limit.json into limit_curve.csv and plot sigma_SI vs mass "
                       "with the median and +-1/2 sigma bands, the asymptotic median and the LZ projection "
                       "reference point; per mass, p-values vs mu and the test-statistic distributions.")
    p.add_argument("--limits", nargs="+", required=True, help="limit.json files")
    p.add_argument("--out", required=True, help="output limit_curve.csv (plots go beside it)")
    p.add_argument("--title", default="", help="plot title")
    p.set_defaults(func=cmd_curve)

    p = sub.add_parser("errors", help="count failed or suspicious fits over toy files; replay one toy",
                       description="Count failed or suspicious fits over toy files per mass, hypothesis, POI and "
                       "cause (final failure, retried, NaN q, mu-hat at the boundary) and list the toys (file, run "
                       "number, toy index) to replay. With --replay FILE INDEX, regenerate that toy from its seed, "
                       "refit it and compare with the stored record (exit 1 if they differ).")
    p.add_argument("--toys", nargs="*", default=[], help="toy files (job*.npz)")
    p.add_argument("--summaries", nargs="*", default=[],
                   help="per-mass summaries (m<mass>/fit_errors.json from 'lzflow merge --errors-out') to combine "
                   "instead of reading toy files")
    p.add_argument("--out", help="write the summary as JSON (and a .md table beside it)")
    p.add_argument("--replay", nargs=2, metavar=("TOY_FILE", "TOY_INDEX"), help="replay one toy")
    p.add_argument("--workspace", help="workspace.json (for --replay)")
    p.set_defaults(func=cmd_errors)

    p = sub.add_parser("study", help="one study's table (CSV + Markdown) and overlay plot from its variants' limits",
                       description="Tabulate the median expected limit per mass for the baseline and each value of a "
                       "study, with the %% change from the baseline and the toy run time (from Snakemake benchmark "
                       "files), and plot the variants' limit curves over the baseline band. The spec (JSON) is "
                       "written by the workflow.")
    p.add_argument("--spec", required=True, help="study spec (JSON): name, parameter, baseline_value, masses, "
                   "variants [{label, value, n_benchmarks per mass}] (the baseline first)")
    p.add_argument("--limits", nargs="+", required=True, help="limit.json per variant and mass (variant-major)")
    p.add_argument("--benchmarks", nargs="*", default=[], help="toy jobs' benchmark .tsv files, in the same order")
    p.add_argument("--out", required=True, help="output table.csv (table.md and overlay.png go beside it)")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("report", help="self-contained HTML report: curve, p-values, studies, fit errors, provenance",
                       description="Write one self-contained HTML page (images embedded) with the limit curve and "
                       "its table, per-mass p-value scans and test-statistic distributions, the study tables and "
                       "overlays, the fit-error summary and the provenance (resolved config, detector parameters, "
                       "software versions, code hashes, seeds and run numbers).")
    p.add_argument("--spec", required=True, help="JSON (or @file): {config: resolved config, studies: [names], title}")
    p.add_argument("--curve", required=True, help="limit_curve.csv")
    p.add_argument("--curve-plot", required=True, help="limit_curve.png")
    p.add_argument("--limits", nargs="+", required=True, help="limit.json per mass")
    p.add_argument("--pvalues", nargs="+", required=True, help="pvalues.png per mass (same order as --limits)")
    p.add_argument("--teststat", nargs="+", required=True, help="teststat.png per mass (same order as --limits)")
    p.add_argument("--study-tables", nargs="*", default=[], help="table.csv per study (spec order)")
    p.add_argument("--study-overlays", nargs="*", default=[], help="overlay.png per study (spec order)")
    p.add_argument("--errors", required=True, help="fit_errors.json")
    p.add_argument("--detector", required=True, help="detector.json")
    p.add_argument("--out", required=True, help="output report.html")
    p.set_defaults(func=cmd_report)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


#: Stage modules append a ``register(subparsers)`` function here.
_EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"lzflow: config error: {one_line(err)}", file=sys.stderr)
        return 2
    except _user_errors() as err:
        print(f"lzflow: error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
