"""The data subcommands of the ``lzflow`` console script: ``simulate-data`` (a pseudo-dataset
from a workspace, :mod:`lzflow.simulate`) and ``events`` (read, check and place an event list in
a workspace's window, :mod:`lzflow.eventlist`). :func:`register` adds both to the parser of
:mod:`lzflow.cli`; a :class:`lzflow.eventlist.DataError` is printed as one line
(``lzflow: error: …``) with exit status 2, as the other stages' errors."""

from __future__ import annotations

import argparse
from typing import Any

from .cliparse import lists, required, stage

__all__ = ["register", "cmd_simulate_data", "cmd_events", "cmd_bin_data", "data_status"]


def cmd_simulate_data(args: argparse.Namespace) -> int:
    """write a seeded pseudo-dataset (CSV, Parquet or ROOT) from a workspace.

    Draw Poisson counts per source and bin from the workspace's templates (background only, or
    with a signal injected at --sigma-cm2, mu = sigma / sigma_ref), nuisance parameters at nominal
    or drawn from their constraints, place each event uniformly in cS1 and log10 cS2 within its
    bin, and write cS1, cS2 [phd] with units and provenance in the file. Same seed, same values
    (and the same bytes for CSV).
    """
    from .simulate import load_workspace, simulate, write_pseudo_data

    ws, sha = load_workspace(args.workspace)
    sigma = 0.0 if args.background_only else args.sigma_cm2
    data = simulate(ws, sigma, args.seed, args.nuisance, workspace_sha256=sha)
    fmt = write_pseudo_data(args.out, data, args.format, args.tree)
    print(f"simulate-data m{ws['mass_GeV']:g}: {data.n_events} events (expected {data.expected.sum():.1f}, "
          f"signal {data.expected[0].sum():.3g} at {sigma:.3g} cm2), seed {args.seed}, nuisance {args.nuisance} "
          f"-> {args.out} ({fmt})")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    """check an event list and place it in a workspace's analysis window.

    Read cS1 and cS2 [phd] from a CSV, Parquet or ROOT TTree event list (column names and units
    checked), bin the events on the workspace's (cS1, log10 cS2) grid, and report the events
    outside the window per reason (below/above in cS1, in log10 cS2). With --out, write the report
    and the binned counts as JSON.
    """
    from .eventlist import load_events
    from .io import write_json
    from .simulate import load_workspace

    ws, _ = load_workspace(args.workspace)
    observed = load_events(args.events, ws, columns=args.columns, units=args.units, tree=args.tree,
                           fmt=args.format, run=args.run)
    if args.out:
        write_json(args.out, {**observed.report(), "counts": observed.counts,
                              "counts_layout": "[i_cS1][i_log10cS2] on the workspace's axes"})
    print(observed.summary_line() + (f" -> {args.out}" if args.out else ""))
    return 0


def cmd_bin_data(args: argparse.Namespace) -> int:
    """bin the observed event list on the analysis window (the workflow's observed_data rule).

    Read the event list with the spec's format, columns, units and tree (lzflow.eventlist), place
    it on the spec's window (the pdf axes' edges) and write the counts, the out-of-window
    accounting, the file's SHA-256 and the counts' digest as JSON (lzflow.observeddata); with
    unbinned_events: true in the spec (an unbinned likelihood) also the in-window events, as
    observed_events.npz beside --out, their digest recorded in the JSON.
    """
    import json

    from .io import write_json
    from pathlib import Path

    from .observeddata import OBSERVED_EVENTS, ObservedDataError, bin_observed, bin_observed_runs

    try:
        spec = json.loads(args.spec)
    except ValueError as err:
        raise ObservedDataError(f"bin-data --spec: not JSON ({err}); expected an object (lzflow.layout.data_spec)") from None
    if isinstance(spec, dict) and "runs" in spec:  # a runs analysis: one list per run, in run order (lzflow.runsconfig.runs_data_spec)
        doc = bin_observed_runs(spec, args.events)
    elif len(args.events) != 1:
        raise ObservedDataError(f"--events: {len(args.events)} event lists for a single-run spec; expected one")
    else:  # an unbinned likelihood keeps the in-window events too, beside --out (observeddata.OBSERVED_EVENTS)
        keep = isinstance(spec, dict) and "unbinned_events" in spec
        doc = bin_observed(spec, args.events[0], Path(args.out).parent / Path(OBSERVED_EVENTS).name if keep else None)
    write_json(args.out, doc)
    print(f"bin-data {' '.join(args.events)}: {doc['n_total']} events, {doc['n_inside']} in the window, {doc['n_outside']} "
          f"outside ({', '.join(f'{k} {v}' for k, v in doc['outside_by_reason'].items())}) -> {args.out}")
    return 0


def data_status(cfg: Any) -> str:
    """The observed data of a resolved config for ``lzflow validate``'s line: "" without data, else
    ", data <path> (blind)" or ", data <path> (unblinded: blind false)", after the blind-safe checks
    of the event list(s) (:func:`lzflow.dataconfig.check_data_files`: a ConfigError if one fails)."""
    if cfg.get("data") is None:
        return ""
    from .dataconfig import check_data_files, data_label

    check_data_files(cfg)

    return f", data {data_label(cfg)} ({'blind' if cfg['blind'] else 'unblinded: blind false'})"


def register(sub: Any) -> None:
    """Add ``simulate-data``, ``events`` and ``bin-data`` to the console script's subparsers, and
    ``--observed`` (the binned event list of an unblinded analysis) to its ``toys``, ``merge`` and
    ``errors`` (``--replay`` of a toy generated at the data)."""
    for name in ("toys", "merge", "errors"):  # errors: --replay of a toy generated at the data
        sub.choices[name].add_argument("--observed", help="the binned event list (data/observed.json, lzflow "
                                                          "bin-data) of an unblinded analysis")
    p = stage(sub, "bin-data", cmd_bin_data)
    required(p, spec="JSON: format, columns, units, tree and window {cS1_edges, log10cS2_edges} (layout.data_spec),"
                     " or {runs: [one such spec with its run name per run]} (runsconfig.runs_data_spec)",
             out="output observed.json")
    lists(p, True, events="the event list (a runs analysis: one per run, in run order)")
    formats = ["csv", "parquet", "root"]
    p = stage(sub, "simulate-data", cmd_simulate_data)
    required(p, workspace="workspace.json (or .json.gz) of one mass",
             out="output event list (.csv, .parquet or .root; the format follows the suffix unless --format)")
    p.add_argument("--seed", type=int, required=True, help="random seed (an integer >= 0)")
    signal = p.add_mutually_exclusive_group(required=True)
    signal.add_argument("--sigma-cm2", type=float, help="inject a signal at this cross section [cm2]")
    signal.add_argument("--background-only", action="store_true", help="no signal")
    p.add_argument("--nuisance", choices=["nominal", "drawn"], default="nominal",
                   help="nuisance parameters at nominal (default) or drawn from their constraints")
    p.add_argument("--format", choices=formats, help="output format (default: from the suffix of --out)")
    p.add_argument("--tree", default="events", help="TTree name (ROOT output)")

    p = stage(sub, "events", cmd_events)
    required(p, events="event list (.csv, .parquet or .root)", workspace="workspace.json (or .json.gz) of one mass")
    p.add_argument("--columns", nargs="+", metavar="Q=NAME",
                   help="column of each quantity, e.g. cS1=s1c cS2=s2c (default: cS1, cS2)")
    p.add_argument("--units", nargs="+", metavar="Q=UNIT",
                   help="units of columns the file does not declare, e.g. cS1=phd cS2=phd")
    p.add_argument("--tree", default="events", help="TTree name (ROOT input)")
    p.add_argument("--format", choices=formats, help="input format (default: from the suffix)")
    p.add_argument("--run", help="a run label carried into the report")
    p.add_argument("--out", help="write the report and the binned counts as JSON")
