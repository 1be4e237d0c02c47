"""`snakemake --profile slurm` on a real (one-node) Slurm cluster gives the same results as a local run.

Needs a running cluster: `bash .ci/slurm.sh start` (root; installs slurm-wlm + munge and starts
../shared/tools/single-node-slurm.sh), `bash .ci/slurm.sh stop` afterwards. Skipped when `sbatch` is
missing or `sinfo` shows no usable node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

TIMESTAMP_KEYS = {"created", "created_at", "timestamp", "date", "time", "datetime", "hostname", "host",
                  "wall_s", "elapsed_s", "runtime_s"}


def _cluster_up() -> str | None:
    """None if a Slurm cluster answers, else the reason to skip."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no Slurm client (sbatch/sinfo not on PATH); start one with `bash .ci/slurm.sh start`"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: no Slurm controller answers"
    if states.returncode != 0:
        first = (states.stderr.strip().splitlines() or ["(no output)"])[0]
        return f"no Slurm controller answers sinfo ({first[:160]}); start one with `bash .ci/slurm.sh start`"
    usable = {"idle", "mixed", "allocated", "completing"}
    if not usable & {s.strip().rstrip("*~#") for s in states.stdout.split()}:
        return f"no usable Slurm node (sinfo states: {states.stdout.split()})"
    return None


_SKIP = _cluster_up()
pytestmark = pytest.mark.skipif(_SKIP is not None, reason=str(_SKIP))


def _stages() -> set[str]:
    from lzflow.cli import build_parser

    action = next(a for a in build_parser()._actions if a.dest == "command")
    return set(action.choices)


def _until() -> list[str]:
    """The whole quick DAG: detector -> responses -> PDFs -> workspaces -> toy arrays -> merge -> curve."""
    return ["all"]


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k.lower() not in TIMESTAMP_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _snapshot(results: Path) -> dict[str, object]:
    """Every JSON output (content, minus timestamp-like keys) and every .npz (arrays), by path."""
    import numpy as np

    snap = {}
    for path in sorted(results.rglob("*")):
        rel = str(path.relative_to(results))
        if rel.startswith("logs/") or not path.is_file():
            continue
        if path.suffix == ".json":
            snap[rel] = _strip(json.loads(path.read_text()))
        elif path.suffix == ".npz":
            with np.load(path) as data:
                snap[rel] = {k: (data[k].dtype.str, data[k].shape, data[k].tobytes()) for k in data.files}
        elif path.suffix in (".root", ".png"):
            snap[rel] = None  # present (ROOT files carry write times; their JSON twins are compared)
    return snap


def _run(repo, results, *args, timeout=1200):
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [sys.executable, "-m", "snakemake", "--configfile", "config/quick.yaml",
           "--config", f"results_dir={results}", *args, "--until", *_until()]
    start = time.monotonic()
    result = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - start


def test_slurm_profile_matches_local_run(repo, tmp_path):
    results = tmp_path / "results"  # the same path for both runs: outputs may record their inputs' paths
    before = set(repo.glob("slurm-*.out"))

    local, t_local = _run(repo, results, "--profile", "local")
    assert local.returncode == 0, (local.stdout + local.stderr)[-4000:]
    reference = _snapshot(results)
    assert "quick/detector.json" in reference
    shutil.move(results, tmp_path / "local")

    slurm, t_slurm = _run(repo, results, "--profile", "slurm", "--seconds-between-status-checks", "2",
                          "--slurm-init-seconds-before-status-checks", "2")
    out = slurm.stdout + slurm.stderr
    assert slurm.returncode == 0, out[-4000:]
    assert "submitted with SLURM jobid" in out  # really went through sbatch
    assert "array" in out.lower()  # toy jobs went as job arrays
    print(f"\nlocal run: {t_local:.1f} s; slurm run: {t_slurm:.1f} s; until: {_until()}")

    assert _snapshot(results) == reference
    assert set(repo.glob("slurm-*.out")) == before, "sbatch wrote slurm-*.out into the repository"
