"""Execution profiles: `snakemake --profile local|slurm|htcondor` work as typed from the repository
root, hold the settings that matter, and the HTCondor profile drives the real executor plugin
(against an in-process stand-in for the schedd, tests/infra/htcondor_standin.py; see docs/cluster.md for
what that does and does not prove)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROFILES = ("local", "slurm", "htcondor")


def _env(**extra) -> dict[str, str]:
    env = dict(os.environ, CONDOR_CONFIG="/dev/null", **extra)
    bindir = str(Path(sys.executable).parent)  # the env's bin/ (snakemake, lzflow) first on PATH
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def _snakemake(repo, *args, env=None, timeout=600, standin=False):
    cmd = [sys.executable, str(repo / "tests" / "infra" / "htcondor_standin.py")] if standin else [sys.executable, "-m", "snakemake"]
    return subprocess.run([*cmd, *args], cwd=repo, env=env or _env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def profile(repo, load_profile):
    """profile(name, **environ): profiles/<name>/config.yaml as Snakemake reads it."""
    return lambda name, **environ: load_profile(repo / "profiles" / name, **environ)


# --------------------------------------------------------------------------- lookup from repo root


@pytest.mark.parametrize("name", PROFILES)
def test_profile_is_found_from_repo_root(repo, name):
    """Snakemake searches ./NAME (not profiles/NAME): the repo carries relative symlinks."""
    link = repo / name
    assert link.is_symlink(), f"./{name} must be a symlink to profiles/{name}"
    assert not os.path.isabs(os.readlink(link)), "the symlink must be relative (clones elsewhere)"
    assert link.resolve() == (repo / "profiles" / name).resolve()
    assert (link / "config.yaml").is_file()


@pytest.mark.parametrize("name", PROFILES)
def test_profile_dry_run_shows_dag(repo, tmp_path, name):
    if name == "htcondor":
        pytest.importorskip("snakemake_executor_plugin_htcondor", reason="the optional extra [htcondor]")
    result = _snakemake(repo, "--profile", name, "-n", "--configfile", "config/quick.yaml",
                        "--config", f"results_dir={tmp_path}")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "Job stats" in out and "This was a dry-run" in out
    assert re.search(r"^detector\s+1$", out, re.M), out[-3000:]
    assert re.search(r"^total\s+\d+$", out, re.M)
    if name == "slurm":
        assert re.search(r"resources:.*mem_mb=2000.*runtime=60", out)
    if name == "htcondor":
        assert re.search(r"resources:.*getenv=true.*htcondor_request_mem_mb=2000", out)


# --------------------------------------------------------------------------- profile contents


def test_workflow_profile_holds_only_universal_settings(repo, profile):
    """profiles/default is loaded for every run and overrides --profile keys: keep executor and
    resource settings out of it (its default-resources would silently replace the executor's)."""
    default = profile("default")
    assert default.get("printshellcmds") is True
    assert default.get("rerun-incomplete") is True
    forbidden = {"executor", "default-resources", "set-resources", "jobs", "cores", "retries",
                 "group-components"}
    assert not forbidden & set(default), forbidden & set(default)


def test_local_profile(repo, profile):
    assert profile("local") == {"cores": "all"}


@pytest.fixture(scope="module")
def workflow_rules(repo) -> set[str]:
    """The rules of a cluster run (the file split the cluster profiles set: no per-mass toy rules);
    `--list-rules` prints ``name (docstring)`` per line."""
    out = _snakemake(repo, "--list-rules", "--configfile", "config/quick.yaml", env=_env(LZFLOW_TOY_JOBS="file"))
    assert out.returncode == 0, out.stderr[-2000:]
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _toy_split_set_by(directory: Path, **environ: str) -> str | None:
    """LZFLOW_TOY_JOBS after Snakemake has read profile ``directory`` (its YTE definitions run in
    the controller's process, before the workflow is parsed); the environment is restored after."""
    import yte

    saved = dict(os.environ)
    try:
        os.environ.pop("LZFLOW_TOY_JOBS", None)
        os.environ.update(environ)
        text = (directory / "config.yaml").read_text()
        if "__use_yte__" in text:
            yte.process_yaml(text, require_use_yte=True)
        return os.environ.get("LZFLOW_TOY_JOBS")
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize("name,split", [("local", None), ("local-scratch", None), ("slurm", "file"),
                                        ("slurm-scratch", "file"), ("htcondor", "file")])
def test_profiles_choose_the_toy_split(repo, name, split):
    """One machine: one toy job per mass (LZFLOW_TOY_JOBS unset -> lzflow.toysplit's default 'mass');
    a cluster: one per toy file. A split the user exported wins."""
    from lzflow.toysplit import toy_job_split

    directory = repo / "profiles" / name
    assert _toy_split_set_by(directory) == split
    assert toy_job_split({} if split is None else {"LZFLOW_TOY_JOBS": split}) == ("mass" if split is None else "file")
    assert _toy_split_set_by(directory, LZFLOW_TOY_JOBS="mass") == "mass"
    assert "LZFLOW_TOY_JOBS" in (directory / "config.yaml").read_text()


@pytest.mark.parametrize("name,toy_rules", [("local", {"toys_m10", "toys_m40"}), ("slurm", {"toys", "toys_bonly"})])
def test_profile_dry_run_uses_its_toy_split(repo, tmp_path, name, toy_rules):
    """`--profile local` schedules one toy job per mass, `--profile slurm` one per toy file (quick: 2 x (8 x 2 + 2))."""
    result = _snakemake(repo, "--profile", name, "-n", "--configfile", "config/quick.yaml",
                        "--config", f"results_dir={tmp_path}")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    scheduled = dict(re.findall(r"^(toys\w*)\s+(\d+)$", out, re.M))
    assert set(scheduled) == toy_rules
    assert sum(int(n) for n in scheduled.values()) == (2 if name == "local" else 36)


def _assert_twins_match(set_resources: dict, rules: set[str]):
    """Every rule with set resources: its *_study twin (same job for a study's tree) gets the same."""
    assert set(set_resources) <= rules, set(set_resources) - rules
    for name, values in set_resources.items():
        twin = f"{name}_study"
        if twin in rules:
            assert set_resources.get(twin) == values, f"set-resources: {twin} differs from {name}"


def test_htcondor_profile(repo, workflow_rules, profile):
    p = profile("htcondor")
    assert p["executor"] == "htcondor"
    assert int(p["retries"]) >= 1
    res = p["default-resources"]
    # the plugin ignores mem_mb/disk_mb/runtime: memory must come as htcondor_request_mem_mb
    assert str(res["getenv"]).lower() == "true"
    assert "attempt" in str(res["htcondor_request_mem_mb"])
    assert "htcondor_request_disk_mb" in res and "allowed_execute_duration" in res
    assert "attempt" in str(p["set-resources"]["response"]["htcondor_request_mem_mb"])
    # one job dir per controller run (timestamp + pid)
    assert re.fullmatch(r"\.snakemake/htcondor/\d{8}T\d{6}-\d+", p["htcondor-jobdir"])
    assert int(p["group-components"]["toys"]) >= 1
    # the header comment and the code agree on the bundling default
    stated = re.findall(r"LZFLOW_TOYS_PER_JOB[^\n]*?default (\d+)", (repo / "profiles" / "htcondor" / "config.yaml").read_text())
    assert stated and {int(n) for n in stated} == {int(p["group-components"]["toys"])} == {10}
    # every toy rule (baseline and study twins) bundled on HTCondor
    toy_rules = {r for r in workflow_rules if r.startswith("toys")}
    assert toy_rules == {"toys", "toys_bonly", "toys_study", "toys_bonly_study"}
    assert sorted(p["groups"]) == sorted(f"{r}=toys" for r in toy_rules)
    _assert_twins_match(p["set-resources"], workflow_rules)
    assert profile("htcondor", LZFLOW_TOYS_PER_JOB="7")["group-components"]["toys"] == 7


def test_slurm_profile(repo, workflow_rules, profile):
    p = profile("slurm")
    assert p["executor"] == "slurm"
    assert p["slurm-status-command"] == "squeue"  # sacct hangs forever without slurmdbd
    toy_rules = {r for r in workflow_rules if r.startswith("toys")}
    assert {s.strip() for s in str(p["slurm-array-jobs"]).split(",")} == toy_rules  # study twins too
    _assert_twins_match(p["set-resources"], workflow_rules)
    assert "groups" not in p and "group-components" not in p  # arrays, not groups, on Slurm
    assert 0 < int(p["slurm-init-seconds-before-status-checks"]) <= 60
    assert int(p["retries"]) >= 1
    assert "attempt" in str(p["default-resources"]["mem_mb"])
    assert "attempt" in str(p["default-resources"]["runtime"])
    assert "attempt" in str(p["set-resources"]["response"]["mem_mb"])
    assert "slurm_account" not in p["default-resources"]
    site = profile("slurm", LZFLOW_SLURM_ACCOUNT="lz", LZFLOW_SLURM_PARTITION="short")
    assert site["default-resources"]["slurm_account"] == "'lz'"
    assert site["default-resources"]["slurm_partition"] == "'short'"


def test_profile_option_names_exist_in_plugins(profile):
    """Every executor option the profiles set is a real option of the installed plugins."""
    pytest.importorskip("snakemake_executor_plugin_htcondor")
    from snakemake_executor_plugin_htcondor import ExecutorSettings as HT
    from snakemake_executor_plugin_slurm import ExecutorSettings as SL
    import dataclasses

    fields = {"htcondor": {f.name for f in dataclasses.fields(HT)},
              "slurm": {f.name for f in dataclasses.fields(SL)}}
    for name, known in fields.items():
        for key in profile(name):
            if key.startswith(name + "-"):
                assert key.removeprefix(name + "-").replace("-", "_") in known, key


# --------------------------------------------------------------------------- HTCondor, real plugin


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _remove_jobdirs(repo, records):
    for rec in records:
        jobdir = (repo / rec["description"]["log"]).parent
        if jobdir.parent == repo / ".snakemake" / "htcondor":
            shutil.rmtree(jobdir, ignore_errors=True)


def test_htcondor_profile_runs_jobs_with_escalating_memory(repo, tmp_path):
    """`snakemake --profile htcondor` through snakemake-executor-plugin-htcondor: the stand-in holds
    any job requesting < 3000 MB (like a pool holding jobs over their memory), so attempt 1
    (2000 MB) is held, fails, and the retry is a new cluster with 4000 MB that runs and succeeds."""
    pytest.importorskip("snakemake_executor_plugin_htcondor")
    record = tmp_path / "submits.jsonl"
    results = tmp_path / "results"
    target = f"{results}/quick/detector.json"
    env = _env(LZFLOW_STANDIN_RECORD=str(record), LZFLOW_STANDIN_MIN_MEMORY_MB="3000")
    result = _snakemake(repo, target, "--profile", "htcondor", "--configfile", "config/quick.yaml",
                        "--config", f"results_dir={results}", "--seconds-between-status-checks", "1",
                        "--htcondor-held-timeout", "0", env=env, standin=True)
    records = _records(record)
    try:
        out = result.stdout + result.stderr
        assert result.returncode == 0, out[-4000:]
        assert len(records) == 2, records
        first, second = (r["description"] for r in records)
        assert first["request_memory"] == "2000MB" and second["request_memory"] == "4000MB"
        assert "--attempt 1" in first["arguments"] and "--attempt 2" in second["arguments"]
        assert "is held" in out
        for desc in (first, second):
            assert desc["getenv"].lower() == "true"
            # every job runs through the profile's wrapper, which drops Snakemake's `pip install <storage
            # plugins> &&` precommand (installed plugins make Snakemake add it; plugin 0.3.0 cannot split it)
            assert desc["executable"] == "profiles/htcondor/job_wrapper.sh"
            assert desc["request_disk"] == str(2000 * 1024)  # KiB
            assert desc["allowed_execute_duration"] in ("3600", "7200")
            assert "--target-jobs detector:" in desc["arguments"]
            assert re.fullmatch(r"\.snakemake/htcondor/\d{8}T\d{6}-\d+/snakemake-rules\.log", desc["log"])
        assert first["log"] == second["log"]  # one controller run -> one job dir
        assert all(r["submit_dir"] == str(repo) for r in records)

        # the output is the one a local run makes
        local = tmp_path / "local"
        ok = _snakemake(repo, f"{local}/quick/detector.json", "--cores", "1", "--configfile",
                        "config/quick.yaml", "--config", f"results_dir={local}")
        assert ok.returncode == 0, ok.stderr[-2000:]
        assert json.loads(Path(target).read_text()) == json.loads((local / "quick/detector.json").read_text())
    finally:
        _remove_jobdirs(repo, records)


def test_htcondor_without_getenv_cannot_run_the_job(repo, tmp_path):
    """Control for the test above: with getenv=false (HTCondor's default) the execute point does
    not get the submitter's PATH/env, and the job fails — so the stand-in does not leak the env."""
    pytest.importorskip("snakemake_executor_plugin_htcondor")
    record = tmp_path / "submits.jsonl"
    results = tmp_path / "results"
    target = f"{results}/quick/detector.json"
    result = _snakemake(repo, target, "--profile", "htcondor", "--configfile", "config/quick.yaml",
                        "--config", f"results_dir={results}", "--seconds-between-status-checks", "1",
                        "--retries", "0", "--default-resources", "htcondor_request_mem_mb=2000",
                        env=_env(LZFLOW_STANDIN_RECORD=str(record)), standin=True)
    records = _records(record)
    try:
        assert result.returncode != 0
        assert len(records) == 1 and records[0]["description"]["getenv"].lower() == "false"
        assert not Path(target).exists()
    finally:
        _remove_jobdirs(repo, records)


# --------------------------------------------------------------------------- the CONDOR_CONFIG warning


def _dependency_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ]", r.strip(), maxsplit=1)[0].lower() for r in requirements}


def test_htcondor_plugin_is_an_optional_extra(repo):
    """Snakemake imports every installed executor plugin on every call; the HTCondor one imports
    htcondor2, which warns about CONDOR_CONFIG wherever HTCondor is not configured. So it is the
    extra [htcondor] (for the access point), not a dependency, and not in environment.yml."""
    import tomllib

    import yaml

    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    plugin = "snakemake-executor-plugin-htcondor"
    assert plugin not in _dependency_names(project["dependencies"])
    assert plugin not in _dependency_names(project["optional-dependencies"]["test"])
    assert _dependency_names(project["optional-dependencies"]["htcondor"]) == {plugin}
    assert "snakemake-executor-plugin-slurm" in _dependency_names(project["dependencies"])
    env = yaml.safe_load((repo / "environment.yml").read_text())
    pip_block = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert plugin not in _dependency_names([r for r in pip_block if not r.startswith("-")])
    assert "[htcondor]" in (repo / "docs" / "cluster.md").read_text()


def test_condor_config_warning_comes_only_with_the_htcondor_plugin(repo, tmp_path):
    """A plain `snakemake` call (no CONDOR_CONFIG, no ~/.condor) prints the warning exactly when the
    HTCondor plugin is installed (its htcondor2 import is the one source), and never otherwise."""
    import importlib.util

    env = {k: v for k, v in _env().items() if k != "CONDOR_CONFIG"}
    env["HOME"] = str(tmp_path)
    condor_configured = any(Path(p).is_file() for p in ("/etc/condor/condor_config", "/usr/local/etc/condor_config"))
    result = _snakemake(repo, "-n", "--configfile", "config/quick.yaml", "--config", f"results_dir={tmp_path}",
                        env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    warned = [line for line in result.stderr.splitlines() if "CONDOR_CONFIG is unset" in line]
    if importlib.util.find_spec("snakemake_executor_plugin_htcondor") is None or condor_configured:
        assert warned == []
    else:
        assert len(warned) == 1 and "htcondor2" in warned[0]
