"""Helpers of the workflow tests that run real Snakemake on a scratch tree: the run itself (failing
the test with the tail of its output) and the dry run's job table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["ENV", "run_snakemake", "job_counts"]

#: the environment of every run (no HTCondor configuration lookup)
ENV = dict(os.environ, CONDOR_CONFIG="/dev/null")


def run_snakemake(repo: Path, configs: list[Path | str], results: Path, *args: str) -> str:
    """``snakemake --cores 2 --configfile CONFIGS --config results_dir=RESULTS ARGS`` in ``repo``;
    its stdout + stderr (the test fails with their tails if it fails)."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", *map(str, configs),
           "--config", f"results_dir={results}", *args]
    run = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=ENV)
    assert run.returncode == 0, f"snakemake failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout + run.stderr


def job_counts(output: str) -> dict[str, int]:
    """{rule: jobs} of a (dry) run's "Job stats" table, without the total."""
    table = output.split("Job stats:")[1].split("\n\n")[0].splitlines()
    return {p[0]: int(p[1]) for p in (line.split() for line in table)
            if len(p) == 2 and p[1].isdigit() and p[0] != "total"}
