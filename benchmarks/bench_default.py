"""The default analysis from scratch, timed: wall clock, CPU, and where the CPU goes (issue 16).

Usage::

    python benchmarks/bench_default.py [--rev REV ...] [--repeat N] [--config FILE ...]

Each revision (default: ``HEAD``) is exported with ``git archive`` into a fresh scratch directory for
every run, as a clean clone would be, and runs ``snakemake --cores all`` there with its own package
first on ``PYTHONPATH`` (the dependencies are the active environment's: run it from the installed
virtual environment). Nothing is shared between runs: no ``__pycache__`` of lzflow's sources, no
numba cache, no results. Python writes bytecode as it does by default (``PYTHONDONTWRITEBYTECODE``
is removed from the environment: with it set every job would compile lzflow's modules again).
Revisions run alternately (``--repeat`` rounds), so that load drifting over the runs hits each alike.

Printed per run: wall time; CPU of the Snakemake controller itself and of every process it waited
for (``getrusage``: jobs, their worker pools, the shells); the CPU of each stage summed from
Snakemake's benchmark files (``results/benchmarks/<tag>/``; rules without a benchmark file, e.g. the
plots, are in the total only; Snakemake samples a job's processes while they run, so the response
jobs' short-lived NEST workers are under-counted there, not in the total) and the host's load
average before the run. With two or more
revisions, their results trees are compared bit for bit (``benchmarks/compare_results.py``).

Issue 16's target: ≤ 2 min wall on a quiet 2-core machine for the default configuration.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: runs Snakemake in this process and prints its own and its children's CPU time when it exits
RUSAGE_WRAPPER = """
import atexit, resource, sys
def report():
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"LZFLOW_RUSAGE {own.ru_utime + own.ru_stime:.2f} {kids.ru_utime + kids.ru_stime:.2f}", file=sys.stderr)
atexit.register(report)
from snakemake.cli import main
sys.argv = ["snakemake"] + sys.argv[1:]
main()
"""


def export_revision(rev: str, into: Path) -> str:
    """``git archive`` of ``rev`` unpacked into ``into``; returns the short commit hash."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", rev], check=True,
                         capture_output=True, text=True).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", sha], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return sha


def stage_cpu(bench_dir: Path) -> dict[str, float]:
    """CPU seconds per rule name, summed over Snakemake's benchmark files (``cpu_time`` column)."""
    out: dict[str, float] = defaultdict(float)
    for path in bench_dir.rglob("*.tsv"):
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        stem = path.stem
        stage = next((s for s in ("pdf", "response", "toys_batch") if stem.startswith(f"{s}_") or stem == s), stem)
        out[stage] += sum(float(r["cpu_time"] or 0.0) for r in rows)
    return dict(out)


def run_once(rev: str, configs: list[str], scratch: Path) -> dict:
    """One run of ``rev`` from scratch; its figures and its results directory."""
    workdir = scratch / f"{rev.replace('/', '_')}-{time.time_ns()}"
    sha = export_revision(rev, workdir)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(workdir / "src")
    env.setdefault("CONDOR_CONFIG", "/dev/null")
    cmd = [sys.executable, "-c", RUSAGE_WRAPPER, "--cores", "all", "-q"]
    if configs:
        cmd += ["--configfile", *configs]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench_default: {rev} failed:\n{proc.stderr[-3000:]}")
    usage = next(ln for ln in proc.stderr.splitlines() if ln.startswith("LZFLOW_RUSAGE"))
    own, kids = (float(x) for x in usage.split()[1:])
    tags = [p.name for p in (workdir / "results" / "benchmarks").iterdir()]
    return {"rev": rev, "sha": sha, "wall": wall, "controller": own, "children": kids, "load": load,
            "stages": stage_cpu(workdir / "results" / "benchmarks" / tags[0]),
            "results": workdir / "results" / tags[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", nargs="+", default=["HEAD"], help="revisions to run (alternately)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds over the revisions")
    ap.add_argument("--config", nargs="*", default=[], help="--configfile for Snakemake (default: none)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directories")
    args = ap.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="lzflow-bench-default-"))
    runs = []
    try:
        for _ in range(args.repeat):
            for rev in args.rev:
                r = run_once(rev, args.config, scratch)
                runs.append(r)
                top = sorted(r["stages"].items(), key=lambda kv: -kv[1])
                print(f"{r['rev']} ({r['sha']}): wall {r['wall']:.1f} s; CPU {r['controller'] + r['children']:.1f} s "
                      f"(controller {r['controller']:.1f}, jobs {r['children']:.1f}); load before {r['load']:.2f}; "
                      "benchmarked stages: " + ", ".join(f"{k} {v:.1f}" for k, v in top), flush=True)
        for rev in args.rev:
            walls = sorted(r["wall"] for r in runs if r["rev"] == rev)
            print(f"{rev}: wall {', '.join(f'{w:.1f}' for w in walls)} s (median {walls[len(walls) // 2]:.1f})")
        if len(args.rev) > 1:
            first = next(r for r in runs if r["rev"] == args.rev[0])
            for rev in args.rev[1:]:
                other = next(r for r in runs if r["rev"] == rev)
                cmp = subprocess.run([sys.executable, str(REPO / "benchmarks" / "compare_results.py"),
                                      str(first["results"]), str(other["results"])], capture_output=True, text=True)
                verdict = "identical" if cmp.returncode == 0 else "DIFFERENT"
                print(f"results {args.rev[0]} vs {rev}: {verdict}\n{cmp.stdout.strip()}")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
