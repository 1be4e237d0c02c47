"""DAG-building scale: time `snakemake -n` for a large configuration (>= 10,000 toy jobs).

Writes a config with many masses, POIs and jobs per POI (same physics as the default), runs a dry
run against an empty results directory and prints the number of jobs and the wall time. Side by
side, in the same run, the reference: a bare Snakefile with the same job graph (one toy rule with
the same wildcards, input, output, log and benchmark per job, a merge per mass and a final rule,
no params, resources or input functions) shows what Snakemake itself needs for that many jobs, the
same Snakefile with lzflow's garbage-collector settings (workflow/rules/common.smk) shows what those
settings alone buy, and a dry run of the tiny quick config shows the fixed start-up cost (imports,
parsing, validation).
Each figure is the minimum and median of --repeat runs (the runs alternate, so drifts in the
host's speed hit all of them alike).
Target (issue "Production workflow"): <= 15 s for >= 10,000 toy jobs.

    python benchmarks/bench_dag.py [--masses 20] [--pois 25] [--jobs 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]

GC_SETTINGS = """
import gc
gc.freeze()
gc.set_threshold(50_000, 20, 10)
"""

BARE_SNAKEFILE = '''
MASSES = config["masses"]
POIS = range(config["pois"] + 1)  # + the B-only "POI"
JOBS = range(config["jobs"])

rule all:
    input: expand("res/m{mass}/limit.json", mass=MASSES)

rule toys:
    input: "res/m{mass}/workspace.json"
    output: "res/m{mass}/toys/poi{poi}/job{job}.npz"
    log: "logs/m{mass}/toys_poi{poi}_job{job}.log"
    benchmark: "benchmarks/m{mass}/toys_poi{poi}_job{job}.tsv"
    shell: "touch {output} > {log}"

rule merge:
    input: expand("res/m{{mass}}/toys/poi{poi}/job{job}.npz", poi=POIS, job=JOBS)
    output: "res/m{mass}/limit.json"
    shell: "touch {output}"

rule workspace:
    output: "res/m{mass}/workspace.json"
    shell: "touch {output}"
'''


def dry_run(args: list[str], cwd: Path, split: str = "file") -> tuple[float, str]:
    # one toy job per toy file (LZFLOW_TOY_JOBS=file, the cluster profiles' split): the job graph this
    # benchmark is about; "mass" is the local split (one toy job per mass, lzflow.toysplit)
    env = dict(os.environ, CONDOR_CONFIG="/dev/null", LZFLOW_TOY_JOBS=split)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "2", *args],
                            cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(result.stderr[-2000:])
    total = [line for line in (result.stdout + result.stderr).splitlines() if line.strip().startswith("total")]
    return elapsed, total[-1].split()[-1] if total else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--masses", type=int, default=20)
    parser.add_argument("--pois", type=int, default=25)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    masses = [float(f"{m:.6g}") for m in np.geomspace(8, 5000, args.masses)]
    config["signal"]["masses_GeV"] = masses
    config["stats"] = {"poi_grid": {"n_points": args.pois, "min_factor": 0.02, "max_factor": 3.5},
                       "toys_per_poi": 20 * args.jobs, "toys_bonly": 20 * args.jobs, "jobs_per_poi": args.jobs}
    n_toy_jobs = args.masses * (args.pois + 1) * args.jobs
    times: dict[str, list[float]] = {"lzflow": [], "lzflow_mass": [], "bare": [], "bare_gc": [], "startup": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        config["results_dir"] = str(tmp_path / "results")
        big = tmp_path / "big.yaml"
        big.write_text(yaml.safe_dump(config))
        bare = tmp_path / "bare"
        bare.mkdir()
        (bare / "Snakefile").write_text(BARE_SNAKEFILE)
        bare_gc = tmp_path / "bare_gc"
        bare_gc.mkdir()
        (bare_gc / "Snakefile").write_text(GC_SETTINGS + BARE_SNAKEFILE)
        bare_config = ["--config", f"masses={masses}", f"pois={args.pois}", f"jobs={args.jobs}"]
        quick = ["--configfile", "config/quick.yaml", "--config", f"results_dir={tmp_path / 'quick'}"]
        for _ in range(args.repeat):
            elapsed, jobs = dry_run(["--configfile", str(big)], REPO)
            times["lzflow"].append(elapsed)
            elapsed, mass_jobs = dry_run(["--configfile", str(big)], REPO, split="mass")
            times["lzflow_mass"].append(elapsed)
            elapsed, bare_jobs = dry_run(bare_config, bare)
            times["bare"].append(elapsed)
            elapsed, _ = dry_run(bare_config, bare_gc)
            times["bare_gc"].append(elapsed)
            elapsed, _ = dry_run(quick, REPO)
            times["startup"].append(elapsed)

    def fig(name: str) -> str:
        return f"min {min(times[name]):.1f} s, median {statistics.median(times[name]):.1f} s"

    print(f"masses {args.masses}, POIs {args.pois}, jobs/POI {args.jobs}: {n_toy_jobs:,} toy jobs "
          f"(snakemake: {jobs} jobs in all; bare Snakefile {bare_jobs} jobs); {args.repeat} runs each")
    print(f"lzflow dry run (DAG build):           {fig('lzflow')}   [target <= 15 s]")
    print(f"  local split (one toy job per mass): {fig('lzflow_mass')} ({mass_jobs} jobs in all)")
    print(f"bare Snakefile, same job graph:       {fig('bare')}")
    print(f"  the same with lzflow's GC settings: {fig('bare_gc')}")
    print(f"lzflow quick config (start-up):       {fig('startup')}")


if __name__ == "__main__":
    main()
