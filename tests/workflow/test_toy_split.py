"""The default analysis with the local toy split (one toy job per mass, LZFLOW_TOY_JOBS unset) and
with the cluster split (one per toy file, LZFLOW_TOY_JOBS=file, what the slurm and htcondor profiles
set) gives byte-identical limits, curve, fit errors and toy records (lzflow.toysplit). The quick
analysis' version of this runs in the fast suite (tests/workflow/test_workflow.py,
test_cluster_split_gives_byte_identical_results); this one takes ~8 minutes on 2 cores."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ENV = dict(os.environ, CONDOR_CONFIG="/dev/null")


def _snakemake(repo: Path, results: Path, split: str, *args: str) -> str:
    env = dict(ENV, LZFLOW_TOY_JOBS=split)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--config", f"results_dir={results}", *args]
    result = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _scheduled_toy_jobs(output: str) -> dict[str, int]:
    return {name: int(n) for name, n in re.findall(r"^(toys\w*)\s+(\d+)$", output.split("Job stats:")[1], re.M)}


@pytest.mark.slow
def test_default_analysis_same_numbers_with_either_split(repo, tmp_path):
    local = tmp_path / "local"
    _snakemake(repo, local, "mass")  # the default config, as `snakemake --cores 2` runs it
    tree = local / "lz_projection"
    masses = sorted(p.name for p in tree.glob("m*") if (p / "limit.json").is_file())
    assert len(masses) == 9
    # the cluster split on a copy: upstream artefacts kept, every toy file and what follows made again
    cluster = tmp_path / "cluster"
    shutil.copytree(tree, cluster / "lz_projection")
    for path in [*cluster.glob("lz_projection/m*/toys"), *cluster.glob("lz_projection/m*/limit.json"),
                 *cluster.glob("lz_projection/m*/fit_errors.json"), cluster / "lz_projection" / "limit_curve.csv",
                 cluster / "lz_projection" / "fit_errors.json"]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert _scheduled_toy_jobs(_snakemake(repo, cluster, "file", "-n")) == {"toys": 9 * 20 * 2, "toys_bonly": 9 * 2}
    _snakemake(repo, cluster, "file")
    other = cluster / "lz_projection"
    for rel in [f"{m}/limit.json" for m in masses] + [f"{m}/fit_errors.json" for m in masses] + \
            ["limit_curve.csv", "fit_errors.json"]:
        assert (other / rel).read_bytes() == (tree / rel).read_bytes(), rel
    spec = importlib.util.spec_from_file_location("compare_results", repo / "benchmarks" / "compare_results.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    same, problems = compare.compare_trees(tree, other)
    assert problems == []
    assert same[".npz"] == 9 * 21 * 2 + 2  # every toy file (and the two response matrices)
