"""``lzflow gof-observed``: the goodness of fit of the observed data to one mass's workspace in an
unblinded analysis (rule ``gof``, ``workflow/rules/gof.smk``; docs/data.md), written as
``m<mass>/gof.json`` (:data:`lzflow.layout.GOF`).

The statistic is the Baker–Cousins saturated-model likelihood ratio χ²_λ of
:mod:`lzflow.stats.gof` (NIM 221 (1984) 437, Eq. 13, plus the constraints' χ²) at the data's best
fit (μ ≥ 0), with its pieces ``total``, ``bins``, ``constraints`` and, for a combined workspace
(config ``runs:``), one Poisson piece per run over its bin range
(:func:`lzflow.combinecli.run_pieces`). Its distribution comes from toys generated at the best fit
on their own random stream (:data:`lzflow.stats.gof.GOF_HYPOTHESIS`) and refitted as the data; the
p-value of each piece is p = k/N over the N converged toys, with the binomial error
√(p(1−p)/N) and, when k = 0, the 95 % upper bound 1 − 0.05^(1/N).

Inputs: the mass's workspace and the binned event list (:data:`lzflow.layout.OBSERVED_DATA`,
windows and digest checked by :func:`lzflow.observeddata.observed_counts`). The spec
(:func:`gof_spec`) holds ``blind`` (must be false), ``n_toys`` (the resolved config's
``data.discovery_toys``: one toy count for every observed p-value of the analysis, recorded with
its default in the resolved config) and ``seed`` (``stats.seed``). :func:`register` adds the
subcommand to :mod:`lzflow.cli`; :func:`report_context` is the report's GOF table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .cliparse import required, stage

__all__ = ["GOF_FORMAT", "SPEC_KEYS", "check_spec", "cmd_gof_observed", "gof_document", "gof_spec", "register",
           "report_context"]

#: the ``format`` of gof.json (the document of ``lzflow gof`` with the workflow's provenance)
GOF_FORMAT = "lzflow-gof-1"
#: the spec's keys, all required
SPEC_KEYS = ("blind", "n_toys", "seed")


def gof_spec(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The spec of rule ``gof`` from a resolved, unblinded config: as many toys as the local
    discovery p-value (``data.discovery_toys``), the toys' seed ``stats.seed``."""
    return {"blind": cfg.get("blind"), "n_toys": int(cfg["data"]["discovery_toys"]), "seed": int(cfg["stats"]["seed"])}


def check_spec(spec: Any) -> dict[str, Any]:
    """Refuse (one line) a spec with unknown or missing keys, a blind analysis or a bad toy count/seed."""
    from .exceptions import MergeError

    if not isinstance(spec, dict):
        raise MergeError(f"gof spec: {spec!r}; expected a JSON object with {list(SPEC_KEYS)}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    missing = [k for k in SPEC_KEYS if k not in spec]
    if unknown or missing:
        raise MergeError(f"gof spec: unknown keys {unknown}, missing keys {missing}; expected {list(SPEC_KEYS)}")
    if spec["blind"] is not False:
        raise MergeError(f"gof spec: blind {spec['blind']!r}; expected false (the goodness of fit of the data is "
                         f"an observed quantity, computed only after unblinding)")
    for key, low in (("n_toys", 1), ("seed", 0)):
        if isinstance(spec[key], bool) or not isinstance(spec[key], int) or spec[key] < low:
            raise MergeError(f"gof spec: {key} {spec[key]!r}; expected an integer >= {low}")
    return dict(spec)


def gof_document(ws: Mapping[str, Any], data: Mapping[str, Any], spec: Mapping[str, Any],
                 workspace_sha256: str | None = None) -> dict[str, Any]:
    """gof.json of one mass: :func:`lzflow.stats.gof.goodness_of_fit` of the binned data ``data``
    (data/observed.json) to the workspace ``ws`` with ``spec`` (:func:`check_spec`); raises
    MergeError (one line) if the data's fit or every toy's fit fails."""
    from . import __version__
    from .combinecli import run_pieces
    from .exceptions import MergeError
    from .masskey import mass_key
    from .observeddata import observed_counts, observed_summary
    from .stats.gof import goodness_of_fit
    from .workspace import workspace_model

    spec = check_spec(spec)
    counts = observed_counts(data, ws)
    pieces = run_pieces(ws)
    try:
        res = goodness_of_fit(workspace_model(ws), counts, None, n_toys=spec["n_toys"], base_seed=spec["seed"],
                              mass_key=mass_key(ws["mass_GeV"]), pieces=pieces)
    except ValueError as err:
        raise MergeError(f"gof m{ws['mass_GeV']:g}: {err}") from None
    if res.n_failed == res.n_toys:
        raise MergeError(f"gof m{ws['mass_GeV']:g}: every one of {res.n_toys} toy fits failed; expected converged toys")
    return {"format": GOF_FORMAT, "lzflow_version": __version__, "blind": False, "mass_GeV": ws["mass_GeV"],
            "workspace": {"sha256": workspace_sha256}, "n_bins": int(counts.size), "n_events": int(counts.sum()),
            "events": observed_summary(data), "runs": list(pieces), **res.as_dict()}


def summary_line(doc: Mapping[str, Any]) -> str:
    """One line: the total χ²_λ and its p-value, each run's, the toys."""

    def p(name: str) -> str:
        up = doc["p_upper95"][name]
        return f"< {up:.2g} (95 %)" if up is not None else f"{doc['p_value'][name]:.3g} +- {doc['p_error'][name]:.2g}"

    runs = "".join(f"; {r}: chi2_lambda {doc['observed'][r]:.1f}, p {p(r)}" for r in doc["runs"])
    return (f"gof m{doc['mass_GeV']:g}: chi2_lambda {doc['observed']['total']:.1f} over {doc['n_bins']} bins, "
            f"p {p('total')}{runs} ({doc['n_toys']} toys, {doc['n_failed']} failed)")


def report_context(limit_paths: Sequence[str | Path], observed: Sequence[Mapping[str, Any]] | None
                   ) -> list[list[Any]] | None:
    """The report's GOF table: None without observed results; else one row per mass (and per run
    of a combined workspace): piece, χ²_λ, toys' median, p-value — from ``gof.json`` beside each
    ``limit.json`` (the report rule's inputs in an unblinded analysis; missing: an error)."""
    from .io import read_json
    from .layout import GOF

    if not observed:
        return None
    rows = []
    for limit in limit_paths:
        path = Path(limit).with_name(Path(GOF).name)
        if not path.is_file():
            raise FileNotFoundError(f"lzflow report: input {path} is missing (lzflow gof-observed of the unblinded analysis)")
        doc = read_json(path)
        for name in ["total", *doc["runs"]]:
            up, q = doc["p_upper95"][name], doc["toy_quantiles"][name]
            p = f"< {up:.2g}" if up is not None else f"{doc['p_value'][name]:.3g} ± {doc['p_error'][name]:.2g}"
            rows.append([f"{doc['mass_GeV']:g}", "all" if name == "total" else f"run {name}",
                         f"{doc['observed'][name]:.1f}", "–" if q is None else f"{q['50']:.1f}", p,
                         f"{doc['n_toys'] - doc['n_failed']}"])
    return sorted(rows, key=lambda r: float(r[0])) or None


def cmd_gof_observed(args: argparse.Namespace) -> int:
    """goodness of fit of the observed data to one mass's workspace (unblinded analyses; rule gof).

    Fit the binned event list (lzflow bin-data), compute the Baker-Cousins saturated-model
    statistic chi2_lambda (bins and constraints; per run for a combined workspace) and its
    distribution over toys generated at the best fit and refitted; write the statistic, the
    p-values with their errors, the toy count and the best-fit point as JSON (docs/data.md).
    """
    from .workspace import load_workspace_file
    from .exceptions import MergeError
    from .io import read_json, write_json

    try:
        spec = json.loads(args.spec)
    except json.JSONDecodeError as err:
        raise MergeError(f"--spec: not JSON ({err.msg})") from None
    ws, sha = load_workspace_file(args.workspace)
    doc = gof_document(ws, read_json(args.observed), spec, sha)
    write_json(args.out, doc)
    print(f"{summary_line(doc)} -> {args.out}")
    return 0


def register(sub: Any) -> None:
    """Add ``gof-observed`` to the console script's subparsers."""
    p = stage(sub, "gof-observed", cmd_gof_observed)
    required(p, spec="JSON: blind (false), n_toys, seed (lzflow.gofstage.gof_spec)",
             workspace="the mass's workspace.json (one run or combined)",
             observed="the binned event list (data/observed.json, lzflow bin-data)", out="output gof.json")
