"""DAG-building scale: time `snakemake -n` for a large configuration (>= 10,000 toy jobs).

Writes a config with many masses, POIs and jobs per POI (same physics as the default), runs a dry
run against an empty results directory and prints the number of jobs and the wall time.
Target (issue "Production workflow"): <= 15 s for >= 10,000 toy jobs.

    python benchmarks/bench_dag.py [--masses 20] [--pois 25] [--jobs 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--masses", type=int, default=20)
    parser.add_argument("--pois", type=int, default=25)
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["signal"]["masses_GeV"] = [float(f"{m:.6g}") for m in np.geomspace(8, 5000, args.masses)]
    config["stats"] = {"poi_grid": {"n_points": args.pois, "min_factor": 0.02, "max_factor": 3.5},
                       "toys_per_poi": 20 * args.jobs, "toys_bonly": 20 * args.jobs, "jobs_per_poi": args.jobs}
    n_toy_jobs = args.masses * (args.pois + 1) * args.jobs
    with tempfile.TemporaryDirectory() as tmp:
        config["results_dir"] = tmp
        path = Path(tmp) / "big.yaml"
        path.write_text(yaml.safe_dump(config))
        env = dict(os.environ, CONDOR_CONFIG="/dev/null")
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "2",
                                 "--configfile", str(path)], cwd=REPO, capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(result.stderr[-2000:])
    total = [l for l in (result.stdout + result.stderr).splitlines() if l.strip().startswith("total")]
    print(f"masses {args.masses}, POIs {args.pois}, jobs/POI {args.jobs}: {n_toy_jobs:,} toy jobs "
          f"(snakemake: {total[-1].split()[-1] if total else '?'} jobs in all)")
    print(f"dry run (DAG build): {elapsed:.1f} s   [target <= 15 s]")


if __name__ == "__main__":
    main()
