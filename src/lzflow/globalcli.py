"""``lzflow global-pvalue``: the global discovery p-value over every mass of an unblinded analysis
(the look-elsewhere effect, :mod:`lzflow.stats.lookelsewhere`; docs/data.md), written as
``results/<tag>/global_pvalue.json`` (:data:`lzflow.layout.GLOBAL_PVALUE`) by the workflow rule
``global_pvalue`` (``workflow/rules/global.smk``).

Inputs: every mass's workspace, its ``limit.json`` (the merge's observed block: its q₀ must be the
one computed here on the same binned data, its local p-value is listed beside the global one) and
the binned event list (:data:`lzflow.layout.OBSERVED_DATA`). The spec
(:func:`lzflow.layout.global_pvalue_spec`) holds ``blind`` (must be false), ``n_toys`` (the
config's ``data.discovery_toys``) and ``seed`` (``stats.seed``), and for an unbinned likelihood
the toy jobs' likelihood keys (:func:`lzflow.layout.likelihood_spec`: ``likelihood: unbinned``,
interpolation order and floor, template rebin): the in-window events (read beside the binned
list, digest checked) are then fitted with the unbinned likelihood at every mass
(:mod:`lzflow.stats.lookelsewhere_unbinned`), their q₀ checked equal to each limit.json's.
:func:`register` adds the subcommand to :mod:`lzflow.cli`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .cliparse import lists, required, stage

__all__ = ["GLOBAL_FORMAT", "SPEC_KEYS", "TOY_BLOCK", "cmd_global_pvalue", "global_document", "register", "report_context"]

#: the ``format`` of global_pvalue.json
GLOBAL_FORMAT = "lzflow-global-pvalue-1"
#: the spec's keys, all required
SPEC_KEYS = ("blind", "n_toys", "seed")
#: optional keys: the likelihood of the toy jobs (lzflow.layout.LIKELIHOOD_KEYS; absent: binned)
LIKELIHOOD_KEYS = ("likelihood", "interpolation_order", "interpolation_floor", "template_rebin")
#: the datasets' canonical block size (the toy jobs' lzflow.toyjobs.TOY_BLOCK)
TOY_BLOCK = 256
#: relative agreement required between this job's observed q0 and limit.json's
Q0_RTOL = 1e-9


def check_spec(spec: Mapping[str, Any]) -> None:
    """Refuse (one line) a spec with unknown or missing keys, a blind analysis or a bad toy count/seed."""
    from .exceptions import MergeError

    unknown = sorted(set(spec) - set(SPEC_KEYS) - set(LIKELIHOOD_KEYS))
    missing = [k for k in SPEC_KEYS if k not in spec]
    if "likelihood" in spec:
        missing += [k for k in LIKELIHOOD_KEYS if k not in spec and spec["likelihood"] != "binned"]
    elif set(spec) & set(LIKELIHOOD_KEYS):
        missing.append("likelihood")
    if unknown or missing:
        raise MergeError(f"global p-value spec: unknown keys {unknown}, missing keys {missing}; expected {list(SPEC_KEYS)}")
    if spec["blind"] is not False:
        raise MergeError(f"global p-value spec: blind {spec['blind']!r}; expected false (the global p-value is "
                         f"an observed quantity, computed only after unblinding)")
    if not isinstance(spec["n_toys"], int) or spec["n_toys"] < 1:
        raise MergeError(f"global p-value spec: n_toys {spec['n_toys']!r}; expected an integer >= 1")
    if not isinstance(spec["seed"], int) or spec["seed"] < 0:
        raise MergeError(f"global p-value spec: seed {spec['seed']!r}; expected an integer >= 0")
    if spec.get("likelihood", "binned") not in ("binned", "unbinned"):
        raise MergeError(f"global p-value spec: likelihood {spec['likelihood']!r}; expected 'binned' or 'unbinned'")


def _likelihood(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's likelihood settings (:func:`lzflow.toyjobs.likelihood_settings`; binned by default)."""
    from .toyjobs import likelihood_settings

    return likelihood_settings(spec)


def _local(limit: Mapping[str, Any], data: Mapping[str, Any], path: str, likelihood: str) -> dict[str, Any]:
    """The merge's local discovery result of one mass, checked to be on the same data (the same
    counts; for the unbinned likelihood the same events too) with the same likelihood."""
    from .exceptions import MergeError

    obs = limit.get("observed")
    if not obs:
        raise MergeError(f"{path}: no observed block; expected the limit of an unblinded merge (blind: false)")
    digest = data["counts_digest"]
    if obs["events"]["counts_digest"] != digest:
        raise MergeError(f"{path}: observed counts_digest {obs['events']['counts_digest']}, the binned data has "
                         f"{digest}; rerun the merge of this mass")
    theirs = obs.get("likelihood", "binned")
    if theirs != likelihood:
        raise MergeError(f"{path}: observed likelihood {theirs!r}, the global p-value spec {likelihood!r}; expected "
                         f"the likelihood of the merges (the config's stats.likelihood)")
    if likelihood == "unbinned":
        mine, recorded = data["unbinned_events"]["digest"], obs["events"].get("unbinned_events", {}).get("digest")
        if recorded != mine:
            raise MergeError(f"{path}: observed unbinned_events digest {recorded}, the events have {mine}; rerun "
                             f"the merge of this mass")
    return obs["discovery"]


def global_document(workspaces: Sequence[Mapping[str, Any]], limits: Sequence[Mapping[str, Any]],
                    limit_paths: Sequence[str], data: Mapping[str, Any], spec: Mapping[str, Any],
                    n_threads: int | None = 1, salt: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """global_pvalue.json: :func:`lzflow.stats.lookelsewhere.global_pvalue` over the masses with
    signal events, each mass's local result from its limit.json beside it (q₀ checked equal);
    ``salt``: the event list's salt status (:func:`lzflow.salt.salt_status`), if read."""
    from . import __version__
    from .exceptions import MergeError
    from .observeddata import observed_counts, observed_summary
    from .stats.lookelsewhere import global_pvalue
    from .toyjobs import job_model
    from .workspace import workspace_model

    check_spec(spec)
    settings = _likelihood(spec)
    unbinned = settings["likelihood"] == "unbinned"
    if unbinned and "event_arrays" not in data:
        raise MergeError("global p-value: likelihood unbinned but the binned list's events were not read; expected "
                         "the binned list with unbinned_events (lzflow.observeddata.read_observed)")
    if len(workspaces) != len(limits):
        raise MergeError(f"global p-value: {len(workspaces)} workspaces but {len(limits)} limit files; expected one each")
    models, fitted, local, empty, counts = {}, {}, {}, [], None
    for ws, limit, path in zip(workspaces, limits, limit_paths):
        mass = float(ws["mass_GeV"])
        if limit["mass_GeV"] != ws["mass_GeV"]:
            raise MergeError(f"{path}: mass {limit['mass_GeV']} GeV, its workspace {ws['mass_GeV']} GeV; expected "
                             f"--limits in the order of --workspaces")
        if ws["signal"]["empty"]:
            empty.append(mass)
            continue
        c = observed_counts(data, ws)
        counts = c if counts is None else counts
        models[mass] = workspace_model(ws)
        fitted[mass] = job_model(ws, settings) if unbinned else models[mass]
        local[mass] = _local(limit, data, path, settings["likelihood"])
    model0 = next(iter(models.values()), None)
    aux = None if model0 is None else model0.nominal_nuisance()  # the observed auxiliary observables (merge's)
    if unbinned:
        from .stats.lookelsewhere_unbinned import global_pvalue_unbinned

        res = global_pvalue_unbinned(fitted, *data["event_arrays"], aux, spec["n_toys"], spec["seed"],
                                     block_size=TOY_BLOCK, n_threads=n_threads)
    else:
        res = global_pvalue(models, counts, aux, spec["n_toys"], spec["seed"], block_size=TOY_BLOCK,
                            n_threads=n_threads)
    for mass, q0 in zip(res["masses_GeV"], res["q0_observed"]):
        theirs = float(local[mass]["q0"])
        if abs(q0 - theirs) > Q0_RTOL * max(1.0, abs(theirs)):
            raise MergeError(f"global p-value: q0 at {mass:g} GeV is {q0!r} here, {theirs!r} in its limit.json; "
                             f"expected the same fit of the same data")
    per_mass = [{"mass_GeV": m, "q0": q, "local_p_value": local[m]["p_value"],
                 "local_p_value_is_upper_bound": local[m]["p_value_is_upper_bound"],
                 "local_significance": local[m]["significance"], "local_q0": float(local[m]["q0"])}
                for m, q in zip(res["masses_GeV"], res["q0_observed"])]
    return {"format": GLOBAL_FORMAT, "lzflow_version": __version__, "blind": False, **res, "per_mass": per_mass,
            "masses_without_signal_GeV": empty, "events": observed_summary(data),
            **({"salt": dict(salt)} if salt is not None else {})}


def summary_line(doc: Mapping[str, Any]) -> str:
    """One line: p_global with its error, Z_global, the mass of the largest excess, the trials factor."""
    g, loc = doc["global"], doc["local_at_max"]
    bound = "<= " if g["p_value_is_upper_bound"] else ""
    tf = doc["trials_factor"]
    return (f"global p-value {bound}{g['p_value']:.3g} +- {g['p_value_error']:.2g} (Z {g['significance']:.2f}) over "
            f"{len(doc['masses_GeV'])} masses from {doc['n_toys_used']} datasets; largest excess at "
            f"{doc['max_mass_GeV']:g} GeV (q0 {doc['q0_max_observed']:.3g}, local p {loc['p_value']:.3g}); "
            f"trials factor {'n/a' if tf is None else format(tf, '.3g')}")


def report_context(curve_csv: str, observed: Sequence[Mapping[str, Any]] | None) -> dict[str, Any] | None:
    """The report's global p-value: None without observed results; else global_pvalue.json beside
    the curve CSV (the report rule's input in an unblinded analysis; missing: an error), as text."""
    from pathlib import Path

    from .io import read_json
    from .layout import GLOBAL_PVALUE

    if not observed:
        return None
    path = Path(curve_csv).with_name(GLOBAL_PVALUE)
    if not path.is_file():
        raise FileNotFoundError(f"lzflow report: input {path} is missing (lzflow global-pvalue of the unblinded analysis)")
    doc = read_json(path)
    g, loc = doc["global"], doc["local_at_max"]

    def p(r: Mapping[str, Any]) -> str:
        return f"{'≤ ' if r['p_value_is_upper_bound'] else ''}{r['p_value']:.3g}"

    def z(r: Mapping[str, Any]) -> str:
        return f"{'≥ ' if r['significance_is_lower_bound'] else ''}{r['significance']:.2f}"

    tf = doc["trials_factor"]
    salt = doc.get("salt") or {}
    removed = salt.get("salt_removed")
    return {"salted": bool(salt.get("salted")),
            "salt_removed": None if not removed else (f"{removed['n_salt']} fake events of a {removed['mass_GeV']:g} GeV "
                                                      f"signal at {removed['sigma_cm2']:.3g} cm²"),
            "n_masses": len(doc["masses_GeV"]), "mass": doc["max_mass_GeV"], "q0": doc["q0_max_observed"],
            "p_local": p(loc), "z_local": z(loc), "p_global": p(g), "p_global_error": f"{g['p_value_error']:.2g}",
            "z_global": z(g), "n_toys": doc["n_toys_used"],
            "trials": "undefined (no dataset reaches the observed excess)" if tf is None else
                      f"{'≈ ' if doc['trials_factor_is_bound'] else ''}{tf:.3g}"}


def cmd_global_pvalue(args: argparse.Namespace) -> int:
    """global discovery p-value over all masses of an unblinded analysis (look-elsewhere effect).

    Draw background-only datasets once at the observed data's conditional fit theta_hat_hat(0),
    fit q0 at every mass's signal, and report the fraction whose largest q0 reaches the observed
    largest q0 (p_global, binomial error, Z_global), the mass of the largest excess and the trials
    factor p_global / p_local (Gross & Vitells 2010; docs/data.md).
    """
    from .io import read_json, write_json
    from .observeddata import read_observed
    from .salt import salt_status
    from .workspace import read_workspace

    spec = json.loads(args.spec)
    # the unbinned likelihood reads the events beside the binned list too (their digest checked)
    data = read_observed(args.observed) if spec.get("likelihood") == "unbinned" else read_json(args.observed)
    salt = None
    if data.get("runs"):  # a runs analysis: bin-data recorded every run's list's salt status (any salted)
        salt = data["salt"]
    elif args.events:  # the list's provenance only: is it salted (lzflow salt) or unsalted (lzflow unsalt)?
        salt = salt_status(args.events, data["settings"]["format"], data["settings"]["tree"])
    doc = global_document([read_workspace(p) for p in args.workspaces], [read_json(p) for p in args.limits],
                          args.limits, data, spec, args.threads, salt)
    write_json(args.out, doc)
    print(f"{summary_line(doc)} -> {args.out}")
    return 0


def register(sub: Any) -> None:
    """Add ``global-pvalue`` to the console script's subparsers."""
    p = stage(sub, "global-pvalue", cmd_global_pvalue)
    required(p, spec="JSON: blind (false), n_toys, seed (layout.global_pvalue_spec)",
             observed="the binned event list (data/observed.json, lzflow bin-data)", out="output global_pvalue.json")
    lists(p, True, workspaces="workspace.json per mass", limits="limit.json per mass (order of --workspaces)")
    p.add_argument("--events", help="the event list itself, for its salt status (lzflow salt / unsalt provenance)")
    p.add_argument("--threads", type=int, default=1, help="threads over blocks of datasets (does not change the result)")
