"""In-process stand-in for an HTCondor schedd, for testing `snakemake --profile htcondor` here.

HTCondor daemons cannot be installed on the test machines; the Python bindings (htcondor2) can.
snakemake-executor-plugin-htcondor 0.3.0 builds a real ``htcondor2.Submit``, hands it to
``htcondor2.Schedd().submit()`` and then learns each job's fate by reading the job event log named
in the description (``log = <jobdir>/snakemake-rules.log``) with the real ``htcondor2.JobEventLog``.

This module replaces only ``htcondor2.Schedd``. Its ``submit()``:
  * records the submit description (one JSON object per line in $LZFLOW_STANDIN_RECORD);
  * runs ``executable`` + ``arguments`` (split the way HTCondor splits old-syntax arguments:
    on whitespace) in the submit directory, like a shared-filesystem vanilla-universe job;
  * gives the job the environment an execute point would: the submitter's environment only if
    ``getenv`` is true (or the variables a getenv list names), plus the ``environment`` string;
    otherwise (HTCondor's default) nothing but that string and _CONDOR_SCRATCH_DIR;
  * writes stdout/stderr to ``output``/``error`` ($(ClusterId) expanded);
  * writes SUBMIT / EXECUTE / TERMINATED (or HELD) events in HTCondor's user-log text format to
    ``log``, which the plugin's real JobEventLog reader parses.
  * If $LZFLOW_STANDIN_MIN_MEMORY_MB is set, a job whose request_memory is below it is not run
    but put on hold ("over memory limit"), like a pool that holds jobs exceeding their request.

Use:  python tests/infra/htcondor_standin.py <snakemake arguments>   (runs snakemake.cli.main)
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading

_HARNESS_VARS = ("LZFLOW_STANDIN_RECORD", "LZFLOW_STANDIN_MIN_MEMORY_MB")
_cluster_ids = itertools.count(int(os.environ.get("LZFLOW_STANDIN_FIRST_CLUSTER", "1001")))
_log_lock = threading.Lock()
_TRUE = {"true", "yes", "1", "t", "y"}
_FALSE = {"false", "no", "0", "f", "n", ""}


def parse_environment(text: str) -> dict[str, str]:
    """HTCondor new-style `environment`: KEY="value" (a literal " doubled) or KEY=value, spaced."""
    env = {}
    for m in re.finditer(r'(\w+)=(?:"((?:[^"]|"")*)"|(\S*))', text or ""):
        env[m.group(1)] = m.group(2).replace('""', '"') if m.group(2) is not None else m.group(3)
    return env


def job_environment(desc: dict, scratch: str) -> dict[str, str]:
    getenv = str(desc.get("getenv", "false")).strip()
    if getenv.lower() in _TRUE:
        env = dict(os.environ)
    elif getenv.lower() in _FALSE:
        env = {}
    else:  # a list of variable names / patterns (HTCondor >= 10)
        patterns = [p for p in re.split(r"[\s,]+", getenv) if p]
        env = {k: v for k, v in os.environ.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    for var in _HARNESS_VARS:
        env.pop(var, None)
    env.update(parse_environment(desc.get("environment", "")))
    env["_CONDOR_SCRATCH_DIR"] = scratch
    return env


def memory_mb(value) -> float | None:
    """request_memory as MB ('4GB', '2000MB', 2000, '2000')."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)B?\s*", str(value), re.I)
    if not m:
        return None
    scale = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[m.group(2).upper()]
    return float(m.group(1)) * scale


def _event(path: str, code: int, cluster: int, text: str, body: str = "") -> None:
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    record = f"{code:03d} ({cluster:03d}.000.000) {stamp} {text}\n{body}...\n"
    with _log_lock, open(path, "a") as fh:
        fh.write(record)


_TERMINATED_BODY = (
    "\t(1) Normal termination (return value {rv})\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Remote Usage\n"
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Local Usage\n"
    "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n"
    "\t0  -  Total Bytes Sent By Job\n\t0  -  Total Bytes Received By Job\n"
)
_HOST = "<127.0.0.1:9618?addrs=127.0.0.1-9618>"


class _SubmitResult:
    def __init__(self, cluster: int):
        self._cluster = cluster

    def cluster(self) -> int:
        return self._cluster

    def num_procs(self) -> int:
        return 1


class StandInSchedd:
    """Replaces htcondor2.Schedd: submit() runs the job locally in a thread."""

    processes: dict[int, subprocess.Popen] = {}

    def __init__(self, *args, **kwargs):
        pass

    def submit(self, description, count: int = 1, spool: bool = False, **kwargs) -> _SubmitResult:
        desc = {k: str(v) for k, v in dict(description).items()}
        cluster = next(_cluster_ids)
        submit_dir = os.getcwd()
        record = {"cluster": cluster, "submit_dir": submit_dir, "description": desc}
        if path := os.environ.get("LZFLOW_STANDIN_RECORD"):
            with _log_lock, open(path, "a") as fh:
                fh.write(json.dumps(record, sort_keys=True) + "\n")

        def resolve(p: str) -> str:
            p = p.replace("$(ClusterId)", str(cluster)).replace("$(Cluster)", str(cluster))
            return p if os.path.isabs(p) else os.path.join(desc.get("initialdir", submit_dir), p)

        log = resolve(desc["log"])
        os.makedirs(os.path.dirname(log), exist_ok=True)
        _event(log, 0, cluster, f"Job submitted from host: {_HOST}")
        threading.Thread(target=self._run, args=(cluster, desc, submit_dir, log, resolve), daemon=True).start()
        return _SubmitResult(cluster)

    def _run(self, cluster, desc, submit_dir, log, resolve):
        limit = os.environ.get("LZFLOW_STANDIN_MIN_MEMORY_MB")
        requested = memory_mb(desc.get("request_memory"))
        if limit and (requested is None or requested < float(limit)):
            _event(log, 12, cluster, "Job was held.",
                   f"\tJob has gone over memory limit of {requested} megabytes.\n\tCode 34 Subcode 0\n")
            return
        _event(log, 1, cluster, f"Job executing on host: {_HOST}")
        scratch = tempfile.mkdtemp(prefix=f"condor_scratch_{cluster}_")
        args = desc.get("arguments", "").split()  # old syntax: whitespace separated, no quoting
        with open(resolve(desc["output"]), "w") as out, open(resolve(desc["error"]), "w") as err:
            proc = subprocess.Popen([desc["executable"], *args], cwd=desc.get("initialdir", submit_dir),
                                    env=job_environment(desc, scratch), stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL)
            self.processes[cluster] = proc
            rv = proc.wait()
        _event(log, 5, cluster, "Job terminated.", _TERMINATED_BODY.format(rv=rv))

    def act(self, action, job_spec, *args, **kwargs):
        for spec in job_spec if isinstance(job_spec, (list, tuple)) else [job_spec]:
            proc = self.processes.get(int(str(spec).split(".")[0]))
            if proc and proc.poll() is None:
                proc.terminate()

    def query(self, *args, **kwargs):
        return []

    def history(self, *args, **kwargs):
        return []


def install() -> None:
    import htcondor2

    htcondor2.Schedd = StandInSchedd


def main(argv: list[str]) -> int:
    install()
    from snakemake.cli import main as snakemake_main

    sys.argv = ["snakemake", *argv]
    try:
        snakemake_main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
