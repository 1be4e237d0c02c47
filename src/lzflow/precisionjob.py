"""The workflow's side of toys to a target precision (:mod:`lzflow.precision`): the decision jobs
of the Snakemake checkpoint ``precision`` (one per mass and round) and the extra toy jobs they ask for.

``python -m lzflow.precisionjob decide --spec JSON --workspace W --toys F... [--previous D] --out m<mass>/toys/precision_r<round>.json``
merges the toys so far (:func:`lzflow.merge.merge_mass`: the first batch and the extra files of
the earlier rounds, whose last decision is ``--previous``), measures the relative bootstrap errors
and writes the round's decision (:func:`decide`): the multiplier, whether it is the last round, and
every extra toy file with its job spec (:func:`extra_jobs`). ``python -m lzflow.precisionjob toys
--decision D --workspace W --out F...`` writes extra toy files, each the file its job spec stands for
(:func:`lzflow.toybatch.run_batch`). The merge rule reads every round's decision
(:func:`decisions_before`) and records them in ``limit.json["precision"]["rounds"]``
(:func:`merge_spec_with_rounds`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .precision import MAX_ROUNDS, QUANTITIES, multiplier, relative_errors, target_reached, target_value, worst_relative_error

__all__ = ["precision_spec", "extra_jobs", "decide", "extra_toy_files", "extra_job_spec", "precision_trees_or_exit",
           "merge_extra_inputs", "decisions_before", "checkpoint_decisions", "extra_inputs", "extra_toy_args", "round_record",
           "merge_spec_with_rounds", "main"]


def precision_trees_or_exit(baseline, studies) -> bool:
    """Whether the workflow adds toys to a target precision (the baseline's ``stats.target_precision``).
    A study value's tree has no checkpoint of its own yet: a study with a target precision exits
    with one line ``lzflow: config error: …`` (:func:`lzflow.workflow_gate.config_error_exit`)."""
    from .exceptions import ConfigError
    from .workflow_gate import config_error_exit

    for variant in studies:
        if variant.config["stats"].get("target_precision") is not None:
            config_error_exit(ConfigError(
                f"stats.target_precision: {variant.config['stats']['target_precision']} with study value "
                f"{variant.suffix.strip('/')}; expected null in a configuration with studies (the checkpoint "
                f"that adds toys covers the baseline tree only)"))
    return baseline.config["stats"].get("target_precision") is not None


def precision_spec(cfg: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The decision job of one mass: its merge spec, the target and bound, and the first batch's
    toy jobs (the S+B spec of POI 0 job 0, the B-only spec of job 0, the number of POI files)."""
    from . import layout as L
    from .construction_stage import poi_points

    stats = cfg["stats"]
    return {"mass": label, "target_precision": target_value(stats["target_precision"]),
            "max_toys_per_poi": int(stats["max_toys_per_poi"]), "merge": L.merge_spec(cfg, label),
            "sb": L.toys_sb_spec(cfg, label, 0, 0), "b": L.toys_b_spec(cfg, label, 0),
            "n_poi": poi_points(stats, label)}


def extra_jobs(pspec: Mapping[str, Any], m: int, m_from: int = 1, round: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """(toy file relative to the tree, job spec) of extension round ``round`` from ``m_from`` to ``m``
    times the first batch: jobs m_from·J … m·J−1 of ``m × n_toys`` toys in ``m × J`` jobs, per POI
    and B-only (:mod:`lzflow.precision`; job j holds the same toy indices in every such split)."""
    from . import layout as L

    label, sb, b = pspec["mass"], pspec["sb"], pspec["b"]
    n_jobs = int(sb["n_jobs"])
    jobs = range(m_from * n_jobs, m * n_jobs)
    out = [(L.fill(L.TOYS_SB_EXTRA, mass=label, round=round, poi=k, job=j),
            {**sb, "poi_index": k, "job_index": j, "n_jobs": m * n_jobs, "n_toys": m * int(sb["n_toys"])})
           for k in range(int(pspec["n_poi"])) for j in jobs]
    out += [(L.fill(L.TOYS_B_EXTRA, mass=label, round=round, job=j),
             {**b, "job_index": j, "n_jobs": m * n_jobs, "n_toys": m * int(b["n_toys"])}) for j in jobs]
    return out


def decide(ws: Mapping[str, Any], toy_paths: Sequence[str | Path], pspec: Mapping[str, Any],
           observed: str | Path | None = None, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The decision of one mass in round ``previous["round"] + 1`` (1 without ``previous``) from
    the toys so far, ``toy_paths`` (the first batch and every earlier round's extra files):
    :func:`lzflow.precision.multiplier` on their relative errors; ``last`` when no later round is
    needed (no extra toys, round :data:`lzflow.precision.MAX_ROUNDS`, or ``max_toys_per_poi`` reached)."""
    from .merge import merge_mass

    target, bound = pspec["target_precision"], int(pspec["max_toys_per_poi"])
    n_sb, n_b, n_jobs = int(pspec["sb"]["n_toys"]), int(pspec["b"]["n_toys"]), int(pspec["sb"]["n_jobs"])
    round_, m_from = (1, 1) if previous is None else (int(previous["round"]) + 1, int(previous["multiplier"]))
    if previous is not None and (previous["last"] or previous["mass"] != pspec["mass"]):
        raise ValueError(f"precision round {round_} of mass {pspec['mass']}: the previous decision is "
                         f"{'the last' if previous['last'] else 'of mass ' + str(previous['mass'])}; expected an open round")
    doc, _ = merge_mass(ws, toy_paths, pspec["merge"], observed)
    rel = {q: None for q in QUANTITIES} if doc.get("no_sensitivity") else relative_errors(doc, pspec["merge"]["method"])
    m = multiplier(rel, target, n_sb, bound, m_from)
    extra = extra_jobs(pspec, m, m_from, round_)
    cap = bound // n_sb  # at the bound: a later round could add nothing
    return {"format": "lzflow-precision-2", "mass": pspec["mass"], "round": round_, "target_precision": target,
            "max_toys_per_poi": bound, "method": pspec["merge"]["method"],
            "first_batch": {"toys_per_poi": n_sb, "toys_bonly": n_b, "jobs_per_poi": n_jobs},
            "measured_with": {"toys_per_poi": m_from * n_sb, "toys_bonly": m_from * n_b},
            "relative_error": rel, "multiplier_before": m_from, "multiplier": m,
            "final": {"toys_per_poi": m * n_sb, "toys_bonly": m * n_b, "jobs_per_poi": m * n_jobs},
            "last": not extra or round_ >= MAX_ROUNDS or m >= cap,
            "extra": [{"file": name, "spec": spec} for name, spec in extra]}


def extra_toy_files(decision_path: str | Path, results: str) -> list[str]:
    """The extra toy files a decision asks for, below the tree's results directory ``results``."""
    return [f"{results}/{e['file']}" for e in json.loads(Path(decision_path).read_text())["extra"]]


def merge_extra_inputs(decision_path: str | Path, results: str, batched: bool) -> list[str]:
    """The inputs one decision adds: its extra toy files (the file split), or the directory holding
    them all (``batched``: the mass split, one job writes them), or nothing."""
    from . import layout as L

    files = extra_toy_files(decision_path, results)
    if not files or not batched:
        return files
    d = json.loads(Path(decision_path).read_text())
    return [f"{results}/{L.fill(L.TOYS_EXTRA_DIR, mass=d['mass'], round=d['round'])}"]


def decisions_before(get: Callable[[int], str], round_: int | None = None) -> list[str]:
    """The decision files of rounds 1 … ``round_`` − 1 (``None``: every round to the last), read
    through ``get(round) -> path`` (in the workflow ``checkpoints.precision.get(...).output[0]``,
    which raises until that round's checkpoint has run)."""
    paths, r = [], 1
    while round_ is None or r < round_:
        paths.append(get(r))
        if json.loads(Path(paths[-1]).read_text())["last"]:
            break
        r += 1
    return paths


def checkpoint_decisions(checkpoint: Any, mass: str, round_: int | None = None) -> list[str]:
    """:func:`decisions_before` through the Snakemake checkpoint ``checkpoints.precision`` of mass ``mass``."""
    return decisions_before(lambda r: checkpoint.get(mass=mass, round=r).output[0], round_)


def extra_inputs(decisions: Sequence[str], results: str, batched: bool) -> list[str]:
    """:func:`merge_extra_inputs` of every decision in ``decisions``."""
    return [f for d in decisions for f in merge_extra_inputs(d, results, batched)]


def _paths(decisions: str | Path | Sequence[str | Path] | None) -> list[str | Path]:
    """Decision files as a list: Snakemake passes one path (a str) while a checkpoint is pending.
    Reading a file not made yet raises FileNotFoundError naming it, which Snakemake's dry run
    shows as <TBD> for a parameter that depends on an input."""
    if decisions is None:
        return []
    return [decisions] if isinstance(decisions, (str, Path)) else list(decisions)


def round_record(decision: Mapping[str, Any]) -> dict[str, Any]:
    """One round's entry in ``limit.json["precision"]["rounds"]``: the toys it measured, r_Q, the
    largest r_Q the target covers, whether the target was met there, and the toys per POI it asked
    for (``next_toys_per_poi``)."""
    rel, target = decision["relative_error"], decision["target_precision"]
    return {"round": int(decision["round"]), **decision["measured_with"], "relative_error": rel,
            "worst": worst_relative_error(rel, target), "reached": target_reached(rel, target),
            "next_toys_per_poi": int(decision["final"]["toys_per_poi"]), "extra_files": len(decision["extra"])}


def merge_spec_with_rounds(spec: str, decisions: str | Path | Sequence[str | Path] | None) -> str:
    """The merge spec (JSON text) with ``precision_rounds``: :func:`round_record` of each decision
    file, in round order (read by :func:`lzflow.precision.precision_section`)."""
    from .layout import as_spec

    rounds = [round_record(json.loads(Path(d).read_text())) for d in _paths(decisions)]
    return as_spec({**json.loads(spec), "precision_rounds": rounds})


def extra_toy_args(decisions: str | Path | Sequence[str | Path] | None, results: str) -> str:
    """The extra toy files of ``decisions`` as shell words for ``--toys`` ("" without any)."""
    import shlex

    return " ".join(shlex.quote(f) for d in _paths(decisions) for f in extra_toy_files(d, results))


def extra_job_spec(decision: Mapping[str, Any], out: str | Path) -> dict[str, Any]:
    """The job spec of extra toy file ``out`` in ``decision`` (matched by its path's ending)."""
    out = Path(out).as_posix()
    for entry in decision["extra"]:
        if out == entry["file"] or out.endswith("/" + entry["file"]):
            return entry["spec"]
    raise ValueError(f"{out}: not an extra toy file of the decision for mass {decision['mass']}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lzflow.precisionjob decide|toys``: the checkpoint's decision of one mass and round, or extra toy files."""
    from . import layout as L
    from .exceptions import USER_ERRORS, one_line
    from .io import atomic_path

    parser = argparse.ArgumentParser(prog="python -m lzflow.precisionjob", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dec = sub.add_parser("decide", help="measure the precision of the toys so far, write the round's decision file")
    dec.add_argument("--spec", required=True, help="the decision spec as JSON (precision_spec)")
    dec.add_argument("--toys", required=True, nargs="+", help="the toy files so far (first batch, earlier rounds)")
    dec.add_argument("--previous", help="the previous round's decision file (none in round 1)")
    dec.add_argument("--out", required=True, help="the decision file")
    toys = sub.add_parser("toys", help="write extra toy files listed in a decision file")
    toys.add_argument("--decision", required=True)
    where = toys.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", nargs="+", help="these extra toy files")
    where.add_argument("--out-dir", help="every extra toy file of the decision, below m<mass>/toys/extra = OUT_DIR")
    for p in (dec, toys):
        p.add_argument("--workspace", required=True, help="workspace.json of the mass")
        p.add_argument("--observed", help="the binned event list of an unblinded analysis")
    args = parser.parse_args(argv)
    try:
        from .toybatch import run_batch
        from .workspace import read_workspace

        ws = read_workspace(args.workspace)
        if args.command == "decide":
            previous = json.loads(Path(args.previous).read_text()) if args.previous else None
            decision = decide(ws, args.toys, json.loads(args.spec), args.observed, previous)
            with atomic_path(args.out, suffix=".json") as tmp:
                Path(tmp).write_text(json.dumps(decision, indent=1, sort_keys=True) + "\n")
            print(f"m{decision['mass']} round {decision['round']}: relative errors {decision['relative_error']}, target "
                  f"{decision['target_precision']}: x{decision['multiplier']} ({len(decision['extra'])} extra files)")
        else:
            decision = json.loads(Path(args.decision).read_text())
            if args.out_dir is not None:  # every file: m<mass>/toys/extra/<rest> -> OUT_DIR/<rest>
                below = L.fill(L.TOYS_EXTRA_DIR, mass=decision["mass"], round=decision["round"])
                outs = [str(Path(args.out_dir) / Path(e["file"]).relative_to(below)) for e in decision["extra"]]
                Path(args.out_dir).mkdir(parents=True, exist_ok=True)
            else:
                outs = args.out
            run_batch(ws, [extra_job_spec(decision, o) for o in outs], outs, args.observed)
    except USER_ERRORS as err:
        print(f"lzflow: error: {one_line(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
