"""Node scratch <-> shared storage through snakemake-storage-plugin-fs (docs/cluster.md, "Node scratch
and shared storage").

The profiles local-scratch and slurm-scratch make every input, output and log of the workflow an
fs storage object: a job reads its inputs from copies in (node-local) scratch, writes its outputs
there, and Snakemake rsyncs them to the results location once the job has succeeded. These tests run
the real workflow (a copy of the repository's Snakefile, rules, config and profiles in a temporary
directory, so nothing lands in the repository) on a small target of config/quick.yaml:

- local-scratch: the outputs appear under the shared prefix and nowhere else, are identical to a
  plain run's (JSON byte for byte, .npz array by array), scratch holds no result afterwards, no job
  is left incomplete, and a failing job leaves no output, not even half a file, in shared storage;
- slurm-scratch on a real one-node Slurm (skipped unless `sbatch`/`sinfo` answer; start one with
  `bash .ci/slurm.sh start`): the batch jobs stage through a per-job node scratch whose $VARIABLES
  are expanded on the node, and give the same results;
- without rsync (a fresh machine): both scratch profiles stop before any job with one line. The
  staging runs need rsync and are skipped, saying how to install it, where it is missing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_workflow

SCRATCH_PROFILES = {"local-scratch": "local", "slurm-scratch": "slurm"}
STAGING_KEYS = {"default-storage-provider", "default-storage-prefix", "local-storage-prefix",
                "remote-job-local-storage-prefix", "shared-fs-usage"}
# Small but complete chain: detector -> 3 responses -> 12 PDFs -> one workspace (17 jobs).
SMALL = "pdf:\n  n_samples: 1000\n"
TARGET = "quick/m10/workspace.json"


def _env(**extra) -> dict[str, str]:
    env = dict(os.environ, CONDOR_CONFIG="/dev/null", **extra)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    for key in ("LZFLOW_STORAGE_PREFIX", "LZFLOW_SCRATCH", "LZFLOW_NODE_SCRATCH"):
        if key not in extra:
            env.pop(key, None)
    return env


def _snakemake(workdir: Path, *args, env=None, timeout=600):
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env or _env(),
                            capture_output=True, text=True, timeout=timeout, check=False)
    result.wall_s = time.monotonic() - start
    return result


@pytest.fixture(scope="module")
def workdir(repo, tmp_path_factory) -> Path:
    """The workflow (Snakefile, rules, config, profiles and their ./NAME links) in a temporary
    directory: runs there keep their .snakemake/ job database and any stray file out of the repo."""
    dst = copy_workflow(repo, tmp_path_factory.mktemp("workflow") / "lzflow")
    (dst / "small.yaml").write_text(SMALL)
    return dst


@pytest.fixture(scope="module")
def plain_run(workdir, tmp_path_factory) -> Path:
    """The reference: the same target run plainly (--profile local), results written in place."""
    results = tmp_path_factory.mktemp("plain") / "results"
    plain = _snakemake(workdir, "--profile", "local", "--configfile", "config/quick.yaml", "small.yaml",
                       "--config", f"results_dir={results}", "--", f"{results}/{TARGET}")
    assert plain.returncode == 0, (plain.stdout + plain.stderr)[-4000:]
    print(f"\nplain run {plain.wall_s:.1f} s")
    return results


#: real staging needs rsync on this machine; .ci/run installs it for its second pass
needs_rsync = pytest.mark.skipif(
    shutil.which("rsync") is None,
    reason="rsync is not installed (snakemake-storage-plugin-fs stages files with it); install it with "
           "`apt-get install rsync` (or `bash .ci/slurm.sh start`, which installs it with Slurm)")


# --------------------------------------------------------------------------- the profiles


@pytest.mark.parametrize("name", SCRATCH_PROFILES)
def test_scratch_profile_is_found_from_repo_root(repo, name):
    link = repo / name
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == (repo / "profiles" / name).resolve()


@pytest.mark.parametrize("name,base", SCRATCH_PROFILES.items())
def test_scratch_profile_is_its_base_profile_plus_staging(repo, name, base, load_profile):
    """slurm-scratch = slurm + the staging keys (and local-scratch = local + them): no drift."""
    scratch = load_profile(repo / "profiles" / name)
    plain = load_profile(repo / "profiles" / base)
    assert {k: v for k, v in scratch.items() if k not in STAGING_KEYS} == plain
    assert scratch["default-storage-provider"] == "fs"
    # unset prefix must be None: Snakemake would turn a profile value "" into the profile directory
    assert scratch["default-storage-prefix"] is None
    assert load_profile(repo / "profiles" / name, LZFLOW_STORAGE_PREFIX="/shared/lz")[
        "default-storage-prefix"] == "/shared/lz"
    local = scratch["local-storage-prefix"]
    assert os.path.isabs(local) and re.search(r"lzflow-storage-\d+$", local)  # one per controller
    site = load_profile(repo / "profiles" / name, LZFLOW_SCRATCH="/scratch/me")
    assert site["local-storage-prefix"] == "/scratch/me"
    if name == "local-scratch":
        assert "shared-fs-usage" not in scratch  # local execution refuses a restricted one
        assert "remote-job-local-storage-prefix" not in scratch


@needs_rsync
@pytest.mark.parametrize("name", SCRATCH_PROFILES)
def test_scratch_profile_dry_run_maps_every_file_to_storage(workdir, tmp_path, name):
    """Snakemake accepts the profile (option names, values) and sends every result to the prefix."""
    env = _env(LZFLOW_STORAGE_PREFIX=str(tmp_path / "shared"), LZFLOW_SCRATCH=str(tmp_path / "scratch"))
    result = _snakemake(workdir, "--profile", name, "-n", "--configfile", "config/quick.yaml", env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "This was a dry-run" in out
    assert f"output: {tmp_path}/shared/results/quick/detector.json (send to storage)" in out, out[-3000:]
    outputs = re.findall(r"^\s+output: (.*)$", out, re.MULTILINE)
    assert outputs and all("(send to storage)" in line for line in outputs)
    assert not (tmp_path / "shared").exists() and not (workdir / "results").exists()


def test_slurm_scratch_keeps_data_off_the_shared_filesystem(repo, load_profile):
    p = load_profile(repo / "profiles" / "slurm-scratch")
    usage = set(p["shared-fs-usage"])
    assert {"input-output", "storage-local-copies"}.isdisjoint(usage)  # data goes through the plugin
    assert {"persistence", "software-deployment", "sources"} <= usage  # .snakemake/, env, Snakefile

    def decoded(value):
        assert value.startswith("base64//")  # survives the profile's controller-side $-expansion
        return base64.b64decode(value[len("base64//"):]).decode()

    assert decoded(p["remote-job-local-storage-prefix"]) == "/tmp/lzflow-$SLURM_JOB_ID"
    site = load_profile(repo / "profiles" / "slurm-scratch", LZFLOW_NODE_SCRATCH="$TMPDIR/lz")
    assert decoded(site["remote-job-local-storage-prefix"]) == "$TMPDIR/lz"


def test_storage_plugin_is_installed():
    from snakemake_storage_plugin_fs import StorageProvider  # noqa: F401


def test_ci_runs_readme_tests_before_installing_system_tools(repo):
    """CI sees what a newcomer sees: README's test command runs before .ci/run installs anything
    (Slurm, rsync), and the tests that need those run again afterwards."""
    lines = [line.strip() for line in (repo / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    readme_command = next(i for i, line in enumerate(lines) if line.startswith("python3 -m venv"))
    installs = [i for i, line in enumerate(lines) if "slurm.sh start" in line or "apt-get" in line or "rsync" in line]
    assert installs and min(installs) > readme_command, lines
    later = [line for line in lines[min(installs):] if line.startswith("python -m pytest")]
    second_pass = [line for line in later if "tests/infra/test_storage.py" in line and "tests/infra/test_slurm.py" in line]
    slurm_start = next(i for i, line in enumerate(lines) if "slurm.sh start" in line)
    assert second_pass and lines.index(second_pass[-1]) > slurm_start, lines


@pytest.mark.parametrize("name", SCRATCH_PROFILES)
def test_scratch_profile_without_rsync_fails_up_front(workdir, tmp_path, name):
    """A machine without rsync (a fresh one): a run with a scratch profile stops before any job with
    one line saying what is missing and how to install it, instead of failing in the middle of
    staging."""
    bare_path = tmp_path / "bin"  # every command of this PATH but rsync
    bare_path.mkdir()
    for directory in [str(Path(sys.executable).parent), *os.environ.get("PATH", "").split(os.pathsep)]:
        for tool in Path(directory).glob("*") if Path(directory).is_dir() else ():
            if tool.name != "rsync" and not (bare_path / tool.name).exists():
                (bare_path / tool.name).symlink_to(tool)
    env = _env(LZFLOW_STORAGE_PREFIX=str(tmp_path / "shared"), LZFLOW_SCRATCH=str(tmp_path / "scratch"))
    env["PATH"] = str(bare_path)
    results = tmp_path / "results"
    result = _snakemake(workdir, "--profile", name, "--configfile", "config/quick.yaml", "--config",
                        f"results_dir={results}", "--", f"{results}/quick/detector.json", env=env)
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [line for line in errors if line.startswith("lzflow: error: rsync is not installed")]
    assert len(errors) == 1 and "apt-get install rsync" in errors[0]
    assert "Traceback" not in result.stderr
    # Snakemake makes the (empty) scratch directory at start-up; no job ran, nothing was staged
    assert not (tmp_path / "shared").exists() and not results.exists() and not _files(tmp_path / "scratch")



# --------------------------------------------------------------------------- helpers for runs


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _snapshot(tree: Path) -> dict[str, object]:
    """JSON outputs byte for byte, .npz outputs array by array (dtype, shape, bytes), by path."""
    import numpy as np

    snap = {}
    for rel in sorted(_files(tree)):
        path = tree / rel
        if path.suffix == ".json":
            snap[rel] = path.read_bytes()
        elif path.suffix == ".npz":
            with np.load(path) as data:
                snap[rel] = {k: (data[k].dtype.str, data[k].shape, data[k].tobytes()) for k in data.files}
        else:
            snap[rel] = None  # present (.root files carry write times; their .json twins are compared)
    return snap


def _out_paths(output: str) -> list[str]:
    """The --out argument of every job's (printed) shell command."""
    return re.findall(r"^(?:Shell command: )?lzflow \w+ .*--out (\S+)", output, re.MULTILINE)


def _assert_nothing_half_written(workdir: Path, shared: Path, scratch: Path):
    incomplete = workdir / ".snakemake" / "incomplete"
    assert not _files(incomplete), f"jobs left incomplete: {_files(incomplete)}"
    from lzflow.locking import LOCK_NAME  # the results lock (lzflow.locking) is no temporary file

    hidden = [f for f in _files(shared) if any(part.startswith(".") for part in Path(f).parts)
              and Path(f).name != LOCK_NAME]
    assert not hidden, f"temporary files left in shared storage: {hidden}"
    for rel in _files(shared):
        assert (shared / rel).stat().st_size > 0 or rel.endswith(".log"), rel
        if rel.endswith(".json"):
            json.loads((shared / rel).read_text())
    # Snakemake deletes the scratch copies of inputs and outputs after each job; 9.27 keeps the
    # scratch copies of log and benchmark files, which must be complete duplicates of the stored ones.
    for rel in _files(scratch):
        copy, parts = scratch / rel, Path(rel).parts  # [<job id>/]fs/<absolute path in storage>
        stored = Path("/", *parts[parts.index("fs") + 1:])
        assert copy.suffix in (".log", ".tsv"), f"result left in scratch: {copy}"
        assert stored.is_file() and stored.read_bytes() == copy.read_bytes(), f"{copy} differs from {stored}"


# --------------------------------------------------------------------------- local-scratch runs


@needs_rsync
def test_local_scratch_run_stages_results_identical_to_a_plain_run(workdir, plain_run, tmp_path):
    """(a) outputs appear under the shared prefix, (b) equal to a plain run's, (c) nothing half-written."""
    common = ["--configfile", "config/quick.yaml", "small.yaml", "--printshellcmds"]
    plain_results = plain_run
    shared, scratch = tmp_path / "shared", tmp_path / "scratch"
    env = _env(LZFLOW_STORAGE_PREFIX=str(shared), LZFLOW_SCRATCH=str(scratch))
    staged = _snakemake(workdir, "--profile", "local-scratch", *common, "--config", "results_dir=results",
                        "--", f"results/{TARGET}", env=env)
    out = staged.stdout + staged.stderr
    assert staged.returncode == 0, out[-4000:]
    print(f"\nstaged run {staged.wall_s:.1f} s")

    # every job wrote into scratch, and Snakemake copied its outputs to the shared location
    n_jobs = int(re.search(r"^total\s+(\d+)$", out, re.MULTILINE).group(1))
    outs = _out_paths(out)
    assert len(outs) == n_jobs >= 15, out[-4000:]
    assert all(p.startswith(f"{scratch}/fs{shared}/results/") for p in outs), outs
    assert out.count("Storing in storage:") >= 2 * n_jobs  # outputs and logs
    assert "retrieve from storage" in out  # downstream jobs read their inputs back into scratch

    # (a) the results are under the shared prefix, and nothing landed in the working directory
    results = shared / "results"
    assert (results / TARGET).is_file()
    assert not (workdir / "results").exists()
    assert (results / "quick" / ".lzflow.lock").is_file()  # the results lock, where the results really are
    # (b) the same files as the plain run, with identical contents
    assert _files(results) == _files(plain_results)
    reference = _snapshot(plain_results / "quick")
    assert reference[TARGET.removeprefix("quick/")] and "response/NR.npz" in reference
    assert _snapshot(results / "quick") == reference
    # (c) nothing half-written or left over, and Snakemake considers the target complete
    _assert_nothing_half_written(workdir, shared, scratch)
    again = _snakemake(workdir, "--profile", "local-scratch", *common, "--config", "results_dir=results",
                       "-n", "--", f"results/{TARGET}", env=env)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stderr[-3000:]


@needs_rsync
def test_command_line_options_without_prefix_use_results_dir_as_is(workdir, tmp_path):
    """The bare options (no profile, no --default-storage-prefix): the results location is exactly
    results_dir (here an absolute 'shared' path); the job itself wrote into --local-storage-prefix."""
    shared, scratch = tmp_path / "shared" / "lz", tmp_path / "scratch"
    result = _snakemake(workdir, "--cores", "1", "--default-storage-provider", "fs", "--local-storage-prefix",
                        str(scratch), "--printshellcmds", "--configfile", "config/quick.yaml",
                        "--config", f"results_dir={shared}", "--", f"{shared}/quick/detector.json")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert _out_paths(out) == [f"{scratch}/fs{shared}/quick/detector.json"]
    assert _files(shared) >= {"quick/detector.json", "logs/quick/detector.log"}
    _assert_nothing_half_written(workdir, shared, scratch)


@needs_rsync
def test_failed_job_leaves_nothing_in_shared_storage(workdir, tmp_path):
    """A job that dies after writing half its output: nothing reaches the shared location (the
    upload happens only after success) and the half-written scratch copy is deleted."""
    fake = tmp_path / "bin" / "lzflow"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = --out ] && printf \'{"half": \' > "$2"; shift; done\n'
                    "exit 1\n")
    fake.chmod(0o755)
    shared, scratch = tmp_path / "shared", tmp_path / "scratch"
    env = _env(LZFLOW_STORAGE_PREFIX=str(shared), LZFLOW_SCRATCH=str(scratch))
    env["PATH"] = f"{fake.parent}{os.pathsep}{env['PATH']}"
    result = _snakemake(workdir, "--profile", "local-scratch", "--configfile", "config/quick.yaml",
                        "--printshellcmds", "--config", "results_dir=failing", "--", "failing/quick/detector.json",
                        env=env)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert re.search(r"Error in rule detector", out), out[-3000:]
    (written,) = _out_paths(out)
    assert written.startswith(f"{scratch}/fs/")  # the half file went to scratch ...
    assert not Path(written).exists()  # ... and was removed there
    assert not any(f.endswith(".json") for f in _files(shared)), _files(shared)  # ... and never shared
    assert "failing/logs/quick/detector.log" in _files(shared)  # the log is, for debugging
    assert not (workdir / "failing").exists()


# --------------------------------------------------------------------------- slurm-scratch, real Slurm


def _cluster_up() -> str | None:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no Slurm client (sbatch/sinfo not on PATH); start one with `bash .ci/slurm.sh start`"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: no Slurm controller answers"
    if states.returncode != 0:
        first = (states.stderr.strip().splitlines() or ["(no output)"])[0]
        return f"no Slurm controller answers sinfo ({first[:160]}); start one with `bash .ci/slurm.sh start`"
    if not {"idle", "mixed", "allocated", "completing"} & {s.strip().rstrip("*~#") for s in states.stdout.split()}:
        return f"no usable Slurm node (sinfo states: {states.stdout.split()})"
    return None


@pytest.mark.slow
@needs_rsync
def test_slurm_scratch_profile_stages_batch_jobs_through_node_scratch(workdir, plain_run, tmp_path):
    """Two batch jobs (detector -> NR response): each retrieves its inputs into its own node scratch
    ($SLURM_JOB_ID expanded on the node), stores its outputs; results equal a local run's."""
    reason = _cluster_up()
    if reason:
        pytest.skip(reason)
    target = "quick/response/NR.npz"
    common = ["--configfile", "config/quick.yaml", "small.yaml", "--printshellcmds"]
    shared, node, controller = tmp_path / "shared", tmp_path / "node", tmp_path / "controller"
    env = _env(LZFLOW_STORAGE_PREFIX=str(shared), LZFLOW_NODE_SCRATCH=f"{node}/$SLURM_JOB_ID",
               LZFLOW_SCRATCH=str(controller))
    result = _snakemake(workdir, "--profile", "slurm-scratch", *common, "--config", "results_dir=results",
                        "--seconds-between-status-checks", "2", "--slurm-init-seconds-before-status-checks", "2",
                        "--slurm-keep-successful-logs", "--", f"results/{target}", env=env, timeout=900)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    print(f"\nslurm-scratch run {result.wall_s:.1f} s")
    job_ids = set(re.findall(r"submitted with SLURM jobid (\d+)", out))
    assert len(job_ids) == 2, out[-4000:]  # really went through sbatch, one batch job per step

    # each batch job used its own scratch directory, named by the job id expanded on the node
    dirs = {p.name for p in node.iterdir()} if node.exists() else set()
    assert dirs == job_ids, (dirs, job_ids)
    slurm_logs = "\n".join(p.read_text() for p in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    outs = set(_out_paths(slurm_logs))  # the jobs' shell commands, as printed inside the batch jobs
    assert len(outs) == 2, slurm_logs[-4000:]
    for path in outs:
        assert path.startswith(f"{node}/") and "$" not in path, path

    results = shared / "results"
    # the two outputs, and the results lock (lzflow.locking) where the results really are
    assert _files(results / "quick") == {"detector.json", "response/NR.npz", ".lzflow.lock"}
    reference = _snapshot(plain_run / "quick")  # the plain run of the larger target made these too
    assert _snapshot(results / "quick") == {k: reference[k] for k in ("detector.json", "response/NR.npz", ".lzflow.lock")}
    assert not (workdir / "results").exists() and not _files(controller)
    _assert_nothing_half_written(workdir, shared, node)
