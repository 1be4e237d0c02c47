"""The combine job of a runs analysis (``workflow/rules/runs.smk``, :mod:`lzflow.runsconfig`):
``python -m lzflow.runsjob --spec <json> --workspace A B … --out m<mass>/workspace.json``.

It reads each run's single-run workspace of one mass (in the order of ``spec["runs"]``), builds the
combined workspace document (:func:`lzflow.combinecli.combine_workspaces`: the product of the runs'
likelihoods, μ shared, the ``correlated`` parameters shared by name, every other one per run) and
writes it where the analysis tree's workspace lies, so that the toy, merge, curve and report jobs
read it unchanged; beside it ``impacts.json`` (:func:`lzflow.impacts.impacts` on the combined
model: every run's and every shared parameter's impact on the median expected limit), which the
report reads. Both written atomically; the spec's keys are :func:`lzflow.runsconfig.combine_spec`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["combine_job", "main"]


def combine_job(spec: Mapping[str, Any], workspaces: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Write the combined workspace of ``workspaces`` (one per run of ``spec["runs"]``, in order) at
    ``out`` and its impacts beside it; return the combined document."""
    from .combinecli import SPEC_KEYS, combine_workspaces, write_document
    from .workspace import load_workspace_file
    from .exceptions import ConfigError
    from .impacts import impacts
    from .io import write_json
    from .workspace import EXPORT_NAMES, workspace_model

    runs = list(spec["runs"])
    if len(runs) != len(workspaces):
        raise ConfigError(f"--workspace: {len(workspaces)} files for {len(runs)} runs ({', '.join(runs)}); expected "
                          f"one per run, in order")
    docs, sources = {}, {}
    for run, path in zip(runs, workspaces):
        docs[run], sha = load_workspace_file(path)
        sources[run] = {"path": str(path), "sha256": sha}
    ws = combine_workspaces(docs, spec["correlated"], {k: spec[k] for k in SPEC_KEYS}, sources)
    if ws["signal"]["empty"]:
        ranked: dict[str, Any] = {"no_sensitivity": True}
    else:
        ranked = {"mass_GeV": ws["mass_GeV"], **impacts(workspace_model(ws), spec, ws["sigma_ref_cm2"])}
    write_json(Path(out).with_name(EXPORT_NAMES["impacts"]), ranked)
    write_document(out, ws)
    return ws


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lzflow.runsjob``: see the module docstring. User errors print one line and exit
    with status 2, as the ``lzflow`` console script does."""
    from .exceptions import USER_ERRORS, one_line

    parser = argparse.ArgumentParser(prog="python -m lzflow.runsjob",
                                     description="combine the runs' workspaces of one mass into the analysis workspace")
    parser.add_argument("--spec", required=True, help="JSON job spec (lzflow.runsconfig.combine_spec)")
    parser.add_argument("--workspace", required=True, nargs="+", help="each run's workspace.json, in run order")
    parser.add_argument("--out", required=True, help="output workspace.json (impacts.json goes beside it)")
    args = parser.parse_args(argv)
    try:
        ws = combine_job(json.loads(args.spec), args.workspace, args.out)
    except USER_ERRORS as err:
        print(f"lzflow: error: {one_line(err)}", file=sys.stderr)
        return 2
    median = ws.get("asymptotic", {}).get("expected_sigma_cm2", {}).get("0")
    print(f"combine m{ws['mass_GeV']:g}: runs {', '.join(r['name'] for r in ws['runs'])}, shared "
          f"{', '.join(ws['correlated']) or 'none'}; asymptotic median "
          f"{'none' if median is None else f'{median:.4g} cm2'} -> {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
