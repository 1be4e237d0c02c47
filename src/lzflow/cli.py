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
from typing import Any, Sequence

from . import __version__, combinecli, datacli, fogcli, globalcli, gofstage, layout, massplots, pyhfcli, salt
from .cliparse import config_or_spec, lists, register_all, required, stage
from .exceptions import USER_ERRORS, ConfigError, one_line


def _load(args: argparse.Namespace) -> dict[str, Any]:
    from .config import load_config  # not at the top: ~0.5 s of start-up that only --config needs

    return load_config(args.config)


# --------------------------------------------------------------------------------------- validate
def cmd_validate(args: argparse.Namespace) -> int:
    """check a config (schema, units, cross-field checks) and summarise it.

    Validate an analysis config: JSON schema, units and cross-field checks. Prints a one-line
    summary, or a one-line error naming the key, value and expectation.
    """
    from .config import load_config_stack
    from .variants import expand_studies

    # later files overlay earlier ones, each with its base: chain, exactly as snakemake --configfile A B
    baseline, studies = expand_studies(load_config_stack(args.config))
    cfg = baseline.config
    det = cfg["detector"]
    print(
        f"{' + '.join(args.config)}: OK — tag {cfg['tag']}, detector {det['name']} (g1 {det['nest']['g1']:g}, "
        f"hash {det['hash'][:12]}), exposure {cfg['exposure']['exposure_t_yr']:.2f} t·yr, "
        f"{len(cfg['signal']['masses_GeV'])} masses, {len(cfg['backgrounds'])} backgrounds{datacli.data_status(cfg)}"
    )
    for study in studies:
        print(f"  study {study.name}: {study.parameter} = {[v.value for v in study.variants]} "
              f"(baseline {study.baseline_value}) at {', '.join(study.masses)} GeV")
    return 0


# --------------------------------------------------------------------------------------- detector
def cmd_detector(args: argparse.Namespace) -> int:
    """resolve the detector into detector.json (NEST parameters + derived).

    Resolve the detector description (preset + overrides, units) into every NEST parameter, add
    quantities NEST derives (g2, extraction efficiency, single-electron size, fiducial mass) and a
    parameter hash; write results/<tag>/detector.json.
    """
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
def cmd_response(args: argparse.Namespace) -> int:
    """simulate one NEST interaction type into a response matrix.

    Run NEST (nestpy) once for an interaction type (NR, beta, gammaRay) with energies allocated over
    a fine log grid so that every PDF folded from it reaches the configured effective n_samples;
    histogram the ROI events per (energy bin, cS1, log10 cS2). Bit-identical for any number of
    workers.
    """
    from .io import read_json
    from .response import build_response, load_response, save_response
    from .space import AnalysisSpace

    if args.spec:
        spec = json.loads(args.spec)
    else:
        from .layout import response_spec

        spec = response_spec(_load(args), args.interaction)
    detector = read_json(args.detector)
    detector.pop("derived", None)
    detector.pop("lzflow_version", None)
    if "systematic" in spec:  # detector systematics: common-random-number variation matrices (response.crn)
        from .response.crn import variation_job

        print(variation_job(detector, spec, load_response(args.nominal), args.workers, args.out))
        return 0
    response = build_response(detector, spec["interaction"], n_samples=spec["n_samples"], seed=spec["seed"],
                              n_workers=args.workers, space=AnalysisSpace.from_dict(spec))
    save_response(response, args.out)
    print(f"response {spec['interaction']}: {int(response.n_sim.sum()):,} NEST events, "
          f"{int(response.counts.sum()):,} in the ROI -> {args.out}")
    return 0


# --------------------------------------------------------------------------------------------- pdf
def cmd_pdf(args: argparse.Namespace) -> int:
    """fold a source spectrum through its response into a 2D PDF (.root + .json).

    Fold one source's recoil spectrum (a background, or the WIMP signal of one mass at sigma_ref)
    through its interaction type's response matrix; write a TH2D of expected events per (cS1, log10
    cS2) bin with uproot plus a JSON sidecar (expected events, efficiency, effective n_samples,
    seed, detector hash). An empty signal is written with empty: true and a warning.
    """
    import warnings

    from .pdfs import make_pdf
    from .response import load_response
    from .sources import background_source, wimp_source

    spec = json.loads(args.spec)
    source = wimp_source(spec) if "mass_GeV" in spec else background_source(spec)
    if args.variations:  # detector systematics: this source's varied templates (--response: the CRN nominal)
        from .pdfs import make_variation_pdf

        print(make_variation_pdf(source, args.nominal_pdf, args.response, args.variations, args.out)["summary"])
        return 0
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
    """combine one mass's signal PDF with the background PDFs into a workspace.

    Build results/<tag>/m<mass>/workspace.json (templates, expected counts, Gaussian constraint
    widths, fixed parameters removed consistently), solve the asymptotic limits (CLs+b and CLs,
    bands, PCL, 3 sigma discovery potential), choose the POI grid around the asymptotic median, and
    export workspace.pyhf.json and workspace.hs3.json.
    """
    from .workspace import make_workspace, write_workspace

    spec = json.loads(args.spec)
    ws, exports = make_workspace(args.signal, args.backgrounds, spec, args.variations)
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
    """run one toy job (a mass, a POI or B-only, a block of toys).

    Generate and fit one block of pseudo-experiments for one mass: S+B toys at one POI grid point,
    or B-only toys evaluated on the whole grid. Each toy's random stream is derived from (seed,
    mass, POI index, hypothesis, toy index), so the merged result does not depend on the job split.
    Writes per-toy records with the run number and seeds.
    """
    from .toyjobs import run_toy_job, save_toy_job, write_no_sensitivity_file
    from .workspace import read_workspace

    spec = json.loads(args.spec)
    ws = read_workspace(args.workspace)
    if ws["signal"]["empty"]:
        write_no_sensitivity_file(args.out)
        print(f"lzflow: warning: {args.workspace}: empty signal (no sensitivity); no toys run", file=sys.stderr)
        return 0
    result, header = run_toy_job(ws, spec, args.observed)  # --observed: datacli.register
    save_toy_job(args.out, result, header)
    print(f"toys run {header['run_number']}: {header['hypothesis']} POI {header['poi_index']} "
          f"(mu {header['poi_value']:.4g}), toys {header['toy_index_range']} -> {args.out}")
    return 0


# -------------------------------------------------------------------------------------------- merge
def cmd_merge(args: argparse.Namespace) -> int:
    """merge one mass's toys into limit.json (p-values, limits, bands, PCL).

    Merge every toy file of one mass: p-value curves (CLs+b, CLb, CLs) with MC errors, the upper
    limit in mu and cm2 (CLs+b with power constraint by default, CLs too), expected bands from
    B-only experiments, asymptotic comparison, toy counts, fit failures per POI and hypothesis with
    causes. Refuses duplicate run numbers/seeds and corrupt files.
    """
    from .io import write_json
    from .merge import limit_summary, merge_limits, merge_mass
    from .toyjobs import CorruptToyFile, quarantine
    from .workspace import read_workspace

    spec = json.loads(args.spec)
    ws = read_workspace(args.workspace)
    try:
        if args.errors_out:
            doc, errors = merge_mass(ws, args.toys, spec, args.observed)
            write_json(args.errors_out, errors)
        else:
            doc = merge_limits(ws, args.toys, spec, args.observed)
    except CorruptToyFile as err:  # move it aside: the next run sees it missing and makes it again
        try:
            done = f"moved aside to {quarantine(err.path).name}, the next run makes it again"
        except OSError as move:  # e.g. a read-only toy directory: still one line, and what to do
            done = f"could not move it aside ({move.strerror}); delete it and the next run makes it again"
        raise CorruptToyFile(err.path, f"{err.what}; {done}") from None
    doc["mass_label"] = spec.get("mass_label")
    write_json(args.out, doc)
    summary, warnings = limit_summary(doc)
    print(f"{summary} -> {args.out}")
    for warning in warnings:
        print(f"lzflow: warning: {warning}", file=sys.stderr)
    return 0


# -------------------------------------------------------------------------------------------- curve
def cmd_curve(args: argparse.Namespace) -> int:
    """limit curve over masses: CSV and plots.

    Collect every mass's limit.json into limit_curve.csv and plot sigma_SI vs mass with the median
    and +-1/2 sigma bands, the asymptotic median and the LZ projection reference point (the per-mass
    plots are lzflow mass-plots).
    """
    from .curve import curve_rows, plot_limit_curve, summary_line, write_curve_csv
    from .io import read_json
    from .references import compare_with_reference, load_reference, write_comparison

    docs = [read_json(p) for p in args.limits]
    rows = curve_rows(docs)
    write_curve_csv(args.out, rows)
    reference = load_reference(args.reference) if args.reference else None
    # the plots go where lzflow.layout puts them: the curve beside the CSV, per mass beside limit.json
    plot_limit_curve(rows, Path(args.out).with_name(Path(layout.CURVE_PLOT).name), title=args.title or "",
                     reference=reference)
    if reference is not None:
        write_comparison(Path(args.out).with_name(layout.REFERENCE_COMPARISON), compare_with_reference(rows, reference))
    for row in rows:
        print(summary_line(row))
    print(f"-> {args.out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """compare a limit curve with a published reference: ratio per mass (CSV).

    Read a limit_curve.csv and write, per mass with a median expected limit, lzflow's median, the
    named published reference there (log-log interpolation of the digitised curve), their ratio, and
    the number the paper quotes at that mass if any. References ship with lzflow (lzflow.references).
    """
    from .curve import read_curve_csv
    from .references import compare_with_reference, load_reference, write_comparison

    reference = load_reference(args.reference)
    table = compare_with_reference(read_curve_csv(args.curve), reference)
    write_comparison(args.out, table)
    print(f"{reference.label}: {reference.source}")
    for row in table:
        ratio = "n/a (outside the reference)" if row["ratio"] is None else f"{row['ratio']:.3f}"
        print(f"{row['mass_GeV']:>10g} GeV: lzflow {row['lzflow_cm2']:.3g} cm2, lzflow/reference {ratio}")
    print(f"-> {args.out}")
    return 0


# ------------------------------------------------------------------------------------------- errors
def cmd_errors(args: argparse.Namespace) -> int:
    """count failed or suspicious fits over toy files; replay one toy.

    Count failed or suspicious fits over toy files per mass, hypothesis, POI and cause (final
    failure, retried, NaN q, mu-hat at the boundary) and list the toys (file, run number, toy index)
    to replay. With --replay FILE INDEX, regenerate that toy from its seed, refit it and compare
    with the stored record (exit 1 if they differ).
    """
    from .fit_errors import combine_summaries, errors_markdown, replay_toy, summarise_errors
    from .io import atomic_path, read_json, write_json
    from .workspace import read_workspace

    if args.replay:
        if not args.workspace:
            raise ConfigError("--replay needs --workspace (the workspace.json the toy file was made from)")
        path, index = args.replay
        result = replay_toy(read_workspace(args.workspace), path, int(index), args.observed)  # datacli.register
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
    """one study's table (CSV + Markdown) and overlay plot from its variants' limits.

    Tabulate the median expected limit per mass for the baseline and each value of a study, with the
    %% change from the baseline and the toy run time (from Snakemake benchmark files), and plot the
    variants' limit curves over the baseline band. The spec (JSON) is written by the workflow.
    """
    from .study_table import study_from_files, write_study

    study, rows = study_from_files(json.loads(args.spec), args.limits, args.benchmarks or [])
    print(write_study(args.out, study, rows), end="")
    return 0


# ------------------------------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    """self-contained HTML report: curve, p-values, studies, fit errors, provenance.

    Write one self-contained HTML page (images embedded) with the limit curve and its table,
    per-mass p-value scans and test-statistic distributions, the study tables and overlays, the
    fit-error summary and the provenance (resolved config, detector parameters, software versions,
    code hashes, seeds and run numbers).
    """
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
                        title=spec.get("title", ""), reference_comparison=args.reference_comparison,
                        impact_paths=args.impacts)
    write_report(args.out, page)
    print(f"report: {len(args.limits)} masses, {len(studies)} studies, {len(page) / 1e6:.1f} MB -> {args.out}")
    return 0


# ---------------------------------------------------------------------------------------- physics
def cmd_physics(args: argparse.Namespace) -> int:
    """detector-level validation tables of a results tree: NR efficiency, ER leakage, background counts.

    Read results/<tag>/response and pdfs and write the NR detection efficiency (E10/E50/E90),
    the leakage of flat ER below the NR median, and each background's expected events in the ROI
    and below the NR median, as Markdown (and JSON beside it). docs/validation.md quotes them.
    """
    from .io import atomic_path, write_json
    from .validation import physics_markdown, physics_tables

    tables = physics_tables(args.results, args.nr_band, args.backgrounds)
    with atomic_path(args.out) as tmp:
        tmp.write_text(physics_markdown(tables))
    write_json(Path(args.out).with_suffix(".json"), tables)
    print(f"physics tables -> {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lzflow",
        description="Projected WIMP sensitivity for a liquid-xenon TPC: detector YAML -> NEST response -> "
        "2D PDFs -> likelihood -> toys -> limits. Each subcommand is one stage of the Snakemake workflow.",
    )
    parser.add_argument("--version", action="version", version=f"lzflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    p = stage(sub, "validate", cmd_validate)
    p.add_argument("--config", required=True, nargs="+",
                   help="analysis config YAML(s); later files override earlier ones (e.g. a config/studies/ file)")

    p = stage(sub, "detector", cmd_detector)
    config_or_spec(p, "resolved detector dictionary as JSON (what the Snakemake rule passes)")
    required(p, out="output detector.json")

    p = stage(sub, "response", cmd_response)
    config_or_spec(p, "response job spec as JSON (interaction, n_samples, seed, binning, ROI)")
    p.add_argument("--interaction", default="NR", choices=list(layout.INTERACTIONS),
                   help="interaction type (with --config)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (does not change the result)")
    p.add_argument("--nominal", help="the nominal response .npz (variation jobs: a spec with 'systematic')")
    required(p, detector="detector.json from the detector stage", out="output .npz")

    p = stage(sub, "pdf", cmd_pdf)
    required(p, spec="source job spec as JSON (what the Snakemake rule passes)",
              response="response .npz of the source's interaction type",
              out="output <source>.root (the .json is written beside it)")
    lists(p, False, variations="variation .npz files: write the source's varied templates (JSON) to --out")
    p.add_argument("--nominal-pdf", help="the source's nominal PDF .root (with --variations)")

    p = stage(sub, "workspace", cmd_workspace)
    required(p, spec="workspace job spec as JSON", signal="signal PDF .root of this mass",
              out="output workspace.json")
    lists(p, True, backgrounds="background PDF .root files")
    lists(p, False, variations="varied templates (pdfs/variations/<source>.json) of the detector systematics")

    p = stage(sub, "toys", cmd_toys)
    required(p, spec="toy job spec as JSON (hypothesis, poi_index, job_index, n_jobs, n_toys, seed, test_statistic)",
              workspace="workspace.json of the mass", out="output job<j>.npz")

    p = stage(sub, "merge", cmd_merge)
    required(p, spec="merge spec as JSON (cl, method, power_threshold, test_statistic)",
              workspace="workspace.json of the mass", out="output limit.json")
    lists(p, False, toys="toy files of this mass")
    p.add_argument("--errors-out", help="also write the fit-error summary of these toys (as 'lzflow errors --out')")

    p = stage(sub, "curve", cmd_curve)
    lists(p, True, limits="limit.json files")
    required(p, out="output limit_curve.csv (plots go beside it)")
    p.add_argument("--title", default="", help="plot title")
    p.add_argument("--reference", help="a shipped published reference (lzflow.references) to draw and compare with")

    p = stage(sub, "compare", cmd_compare)
    required(p, curve="limit_curve.csv", reference="a shipped published reference, e.g. lz_projection_2018",
              out="output CSV (mass_GeV, lzflow_cm2, reference_cm2, ratio, published_cm2, ratio_published)")

    p = stage(sub, "physics", cmd_physics)
    required(p, results="a results tree (results/<tag>) with response/ and pdfs/", out="output .md (the .json goes beside it)")
    p.add_argument("--nr-band", default="wimp_m40", help="the NR PDF whose median defines 50 %% NR acceptance")
    lists(p, True, backgrounds="background sources to tabulate")

    p = stage(sub, "errors", cmd_errors)
    lists(p, False, toys="toy files (job*.npz)",
           summaries="per-mass summaries (m<mass>/fit_errors.json from 'lzflow merge --errors-out') to combine "
           "instead of reading toy files")
    p.add_argument("--out", help="write the summary as JSON (and a .md table beside it)")
    p.add_argument("--replay", nargs=2, metavar=("TOY_FILE", "TOY_INDEX"), help="replay one toy")
    p.add_argument("--workspace", help="workspace.json (for --replay)")

    p = stage(sub, "study", cmd_study)
    required(p, spec="study spec (JSON): name, parameter, baseline_value, masses, variants [{label, value, "
              "n_benchmarks per mass}] (the baseline first)",
              out="output table.csv (table.md and overlay.png go beside it)")
    lists(p, True, limits="limit.json per variant and mass (variant-major)")
    lists(p, False, benchmarks="toy jobs' benchmark .tsv files, in the same order")

    p = stage(sub, "report", cmd_report)
    required(p, spec="JSON (or @file): {config: resolved config, studies: [names], title}", curve="limit_curve.csv",
              curve_plot="limit_curve.png", errors="fit_errors.json", detector="detector.json",
              out="output report.html")
    lists(p, True, limits="limit.json per mass", pvalues="pvalues.png per mass (same order as --limits)",
           teststat="teststat.png per mass (same order as --limits)")
    lists(p, False, study_tables="table.csv per study (spec order)",
           study_overlays="overlay.png per study (spec order)", impacts="impacts.json per mass (lzflow.impacts)")
    p.add_argument("--reference-comparison", help="reference_comparison.csv of 'lzflow curve --reference'")
    # simulate-data, events, bin-data and --observed of toys/merge; pyhf-limits; fog; combine, gof; global-pvalue;
    register_all(sub, datacli, pyhfcli, fogcli, combinecli, globalcli, gofstage, salt, massplots)  # salt, unsalt
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"lzflow: config error: {one_line(err)}", file=sys.stderr)
        return 2
    except USER_ERRORS as err:
        print(f"lzflow: error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
