"""Several toy jobs in one process: the toy files of one mass written by one workflow job.

How many toy files one workflow job writes is an execution choice (:mod:`lzflow.toysplit`): on one
machine a job per mass, so that the ~1 s of process start-up, imports and workspace reading is
paid once per mass instead of once per file; on a cluster a job per file. Each file is the file
its own toy job would write (:func:`lzflow.toyjobs.run_toy_job` on the same job spec: the same
run number, seeds, toy indices, header and records), so merge sees the same toys and writes the
same ``limit.json`` whichever way the files were made.

The Snakemake rules of the local split run::

    python -m lzflow.toybatch --spec PACKED_JSON --workspace m40/workspace.json --out F1 F2 ...

where ``PACKED_JSON`` is :func:`pack_specs` of the per-file job specs
(:func:`lzflow.layout.toys_sb_spec` / :func:`~lzflow.layout.toys_b_spec`), in the order of ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Mapping, Sequence

__all__ = ["pack_specs", "unpack_specs", "run_batch", "main"]


def pack_specs(specs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The job specs of a batch, column-wise: ``{"common": {key: value shared by every spec},
    "columns": {key: [value per spec, None where a spec lacks the key]}}``. A mass of the default
    analysis packs into 0.6 kB instead of 7 kB (the whole shell command of a job is one argument,
    limited to 128 kB on Linux). :func:`unpack_specs` inverts it exactly (no job spec holds None)."""
    if not specs:
        raise ValueError("a toy batch needs at least one job spec")
    keys = sorted({k for s in specs for k in s})
    common = {k: specs[0][k] for k in keys if all(k in s and s[k] == specs[0][k] for s in specs)}
    return {"common": common, "columns": {k: [s.get(k) for s in specs] for k in keys if k not in common}}


def unpack_specs(packed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-job specs of :func:`pack_specs`, in order."""
    if set(packed) != {"common", "columns"}:
        raise ValueError(f"toy batch spec: keys {sorted(packed)}; expected ['columns', 'common']")
    columns = packed["columns"]
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"toy batch spec: columns of lengths {sorted(lengths)}; expected one length")
    n = lengths.pop() if lengths else 1
    return [{**packed["common"], **{k: v[i] for k, v in columns.items() if v[i] is not None}} for i in range(n)]


def _check_identity(spec: Mapping[str, Any], out: str) -> None:
    """A file's name must stand for its job spec (hypothesis, POI, job index), as merge checks."""
    from .toyjobs import toy_file_identity

    expected = (spec["hypothesis"], int(spec.get("poi_index", 0)) if spec["hypothesis"] == "sb" else 0,
                int(spec["job_index"]))
    if toy_file_identity(out) != expected:
        raise ValueError(f"toy batch: output {out} is not the file of job {expected} (hypothesis, POI, job)")


def run_batch(ws: Mapping[str, Any], specs: Sequence[Mapping[str, Any]], outs: Sequence[str],
              observed: str | None = None) -> list[dict]:
    """Run the toy jobs ``specs`` on workspace document ``ws`` one after the other and write job
    ``i``'s file to ``outs[i]`` (:func:`lzflow.toyjobs.save_toy_job`, atomically). A workspace with
    an empty signal gets the no-sensitivity file at every output, as the single-file job writes.
    ``observed``: the binned event list of an unblinded analysis (:func:`lzflow.toyjobs.run_toy_job`).
    Returns the headers written (empty for no sensitivity)."""
    from .toyjobs import run_toy_job, save_toy_job, workspace_digest, write_no_sensitivity_file

    if len(specs) != len(outs):
        raise ValueError(f"toy batch: {len(specs)} job specs for {len(outs)} outputs; expected one spec per output")
    for spec, out in zip(specs, outs):
        _check_identity(spec, out)
    if ws["signal"]["empty"]:
        for out in outs:
            write_no_sensitivity_file(out)
        return []
    headers, digest = [], workspace_digest(ws)  # once: the canonical JSON of the workspace is ~5 ms
    for spec, out in zip(specs, outs):
        result, header = run_toy_job(ws, spec, observed, digest)
        save_toy_job(out, result, header)
        headers.append(header)
        print(f"toys run {header['run_number']}: {header['hypothesis']} POI {header['poi_index']} "
              f"(mu {header['poi_value']:.4g}), toys {header['toy_index_range']} -> {out}", flush=True)
    return headers


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lzflow.toybatch``: see the module docstring. User errors print one line and
    exit with status 2, as the ``lzflow`` console script does."""
    from .exceptions import USER_ERRORS, one_line

    parser = argparse.ArgumentParser(prog="python -m lzflow.toybatch",
                                     description="run several toy jobs of one mass in one process")
    parser.add_argument("--spec", required=True, help="packed job specs as JSON (lzflow.toybatch.pack_specs)")
    parser.add_argument("--workspace", required=True, help="workspace.json of the mass")
    parser.add_argument("--out", required=True, nargs="+", help="output toy files, one per job spec, in order")
    parser.add_argument("--observed", help="the binned event list (data/observed.json) of an unblinded analysis")
    args = parser.parse_args(argv)
    try:
        from .workspace import read_workspace

        ws = read_workspace(args.workspace)
        run_batch(ws, unpack_specs(json.loads(args.spec)), args.out, args.observed)
    except USER_ERRORS as err:
        print(f"lzflow: error: {one_line(err)}", file=sys.stderr)
        return 2
    if ws["signal"]["empty"]:
        print(f"lzflow: warning: {args.workspace}: empty signal (no sensitivity); no toys run", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
