"""Faults during a run: each ends in one clear line, and the next run completes the analysis with
results byte-identical to a clean run.

The faults: SIGKILL of the whole run mid-toy; a corrupt toy file (flipped bytes, an edited number,
a copy of another toy file: each moved aside by merge and made again); a full disk and a
read-only file system under the toy outputs (a real tmpfs mount; skipped where mounting is not
allowed); two concurrent runs from two checkouts sharing one results directory; deleted
intermediates. Every scenario starts from a copy of one clean run of a small configuration
(the quick config at 40 GeV with 4 POIs and 100 toys per POI).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_workflow

from lzflow.toyjobs import CorruptToyFile, content_digest, load_toy_job

# One toy job per toy file (the cluster split, lzflow.toysplit): the faults below hit toy jobs
# mid-run, which needs many short ones; the local split's one job per mass is written the same way.
ENV = dict(os.environ, CONDOR_CONFIG="/dev/null", LZFLOW_TOY_JOBS="file")
SMALL = ("signal: {masses_GeV: [40]}\n"
         "stats: {poi_grid: {n_points: 4, min_factor: 0.02, max_factor: 3.5}, toys_per_poi: 100, toys_bonly: 200,"
         " jobs_per_poi: 2}\n")
#: outputs compared byte for byte with the clean run (the report and plots carry dates and fonts)
COMPARED = ("m40/limit.json", "m40/fit_errors.json", "fit_errors.json", "limit_curve.csv", "m40/workspace.json")


def _command(workdir: Path, results: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/quick.yaml",
            str(workdir / "small.yaml"), "--config", f"results_dir={results}", *args]


def run(workdir: Path, results: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(workdir, results, *args), cwd=workdir, env=ENV, capture_output=True, text=True,
                          timeout=900)


def _ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


@pytest.fixture(scope="module")
def workdir(repo, tmp_path_factory) -> Path:
    dst = copy_workflow(repo, tmp_path_factory.mktemp("faults") / "lzflow")
    (dst / "small.yaml").write_text(SMALL)
    return dst


@pytest.fixture(scope="module")
def reference(workdir, tmp_path_factory) -> Path:
    """One clean run: the results every faulty run must end with."""
    results = tmp_path_factory.mktemp("reference") / "results"
    _ok(run(workdir, results))
    return results


@pytest.fixture
def results(reference, tmp_path) -> Path:
    """A copy of the clean run (file times kept, so Snakemake sees it up to date)."""
    copy = tmp_path / "results"
    shutil.copytree(reference, copy, symlinks=True)
    return copy


def _toy_files(results: Path) -> list[Path]:
    return sorted((results / "quick" / "m40" / "toys").rglob("job*.npz"))


def assert_like_reference(results: Path, reference: Path) -> None:
    """The analysis is complete, and its results are byte-identical to the clean run's (toy records
    array by array: the npz container itself carries zip timestamps)."""
    for rel in COMPARED:
        assert (results / "quick" / rel).read_bytes() == (reference / "quick" / rel).read_bytes(), rel
    assert [p.relative_to(results) for p in _toy_files(results)] == \
        [p.relative_to(reference) for p in _toy_files(reference)]
    for mine, theirs in zip(_toy_files(results), _toy_files(reference)):
        (a, ha), (b, hb) = load_toy_job(mine), load_toy_job(theirs)
        assert ha == hb and a.keys() == b.keys(), mine
        assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a), mine
    assert (results / "quick" / "report.html").is_file()


def _error_lines(text: str, prefix: str = "lzflow: error: ") -> list[str]:
    return sorted({line.strip() for line in text.splitlines() if line.strip().startswith(prefix)})


# ----------------------------------------------------------------------------------------- SIGKILL
def _session_processes(session: int, needle: str) -> list[int]:
    """Processes of a session whose command line contains ``needle`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[3]) == session and needle in cmdline:
            found.append(int(entry.name))
    return found


def _start_and_wait_for_toys(workdir: Path, results: Path, n_done: int) -> subprocess.Popen:
    """A run with the toys of the copy removed, once ``n_done`` toy files are back."""
    toys = results / "quick" / "m40" / "toys"
    shutil.rmtree(toys)
    proc = subprocess.Popen(_command(workdir, results), cwd=workdir, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and len(list(toys.rglob("job*.npz"))) < n_done:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    return proc


def _whole_toy_files(results: Path) -> list[Path]:
    """Every toy file under a valid name loads whole (checksum and all)."""
    done = _toy_files(results)
    for path in done:
        load_toy_job(path)
    return done


def test_sigkill_of_toy_jobs_mid_run_then_rerun(workdir, results, reference):
    """Toy jobs killed mid-way (the OOM killer, a preempted node): the run fails, naming the jobs;
    nothing half-written under a valid name; the next run redoes them and ends identical."""
    proc = _start_and_wait_for_toys(workdir, results, 2)
    killed = []
    deadline = time.monotonic() + 60
    while not killed and time.monotonic() < deadline and proc.poll() is None:
        for pid in _session_processes(proc.pid, "toys --spec"):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    output, _ = proc.communicate(timeout=600)
    assert killed, "no toy job was running"
    assert proc.returncode != 0
    assert "Error in rule toys" in output and "Traceback" not in output
    assert len(_whole_toy_files(results)) < 10
    _ok(run(workdir, results))
    assert_like_reference(results, reference)


@pytest.mark.slow
def test_sigkill_of_the_whole_run_then_unlock_and_rerun(workdir, results, reference):
    """The controller and every job killed (a power loss): nothing half-written under a valid name.
    Snakemake's own working-directory lock stays behind and it says to remove it with --unlock
    (lzflow's results lock is the kernel's and goes with the process); then the run completes."""
    proc = _start_and_wait_for_toys(workdir, results, 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= len(_whole_toy_files(results)) < 10
    stale = run(workdir, results)
    assert stale.returncode != 0 and "--unlock" in stale.stderr
    _ok(run(workdir, results, "--unlock"))
    _ok(run(workdir, results))
    assert_like_reference(results, reference)


# ----------------------------------------------------------------------------- corrupt toy files
def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_a_number(path: Path) -> None:
    """A valid .npz with one q changed and the old header (checksum) kept: an edited result."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["q"] = arrays["q"].copy()
    arrays["q"][0, 0] += 1.0
    np.savez_compressed(path, **arrays)


def _copy_of_another(path: Path) -> None:
    shutil.copy(path.with_name("job0.npz"), path)  # a new file time, as a copy by hand has


@pytest.mark.parametrize("damage, what", [(_flip_bytes, "not a readable .npz"),
                                          (_edit_a_number, "content checksum mismatch"),
                                          (_copy_of_another, "holds S+B POI 2 job 0, its name stands for S+B POI 2 job 1")],
                         ids=["flipped-bytes", "edited-number", "copy-of-another"])
def test_corrupt_toy_file_is_moved_aside_and_made_again(workdir, results, reference, damage, what):
    victim = results / "quick" / "m40" / "toys" / "poi2" / "job1.npz"
    damage(victim)
    failed = run(workdir, results)
    assert failed.returncode != 0
    log = (results / "logs" / "quick" / "merge_m40.log").read_text()
    errors = _error_lines(log)
    assert len(errors) == 1, log
    assert errors[0].startswith(f"lzflow: error: corrupt toy file {victim}: {what}"), errors
    assert "moved aside to job1.npz.corrupt" in errors[0] and "Traceback" not in log
    assert errors[0] in failed.stderr  # Snakemake shows the failed job's log
    assert not victim.exists() and victim.with_name("job1.npz.corrupt").is_file()
    assert not (results / "quick" / "m40" / "limit.json").exists()
    _ok(run(workdir, results))
    assert_like_reference(results, reference)


def _rewrite(path: Path, edit) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(arrays.pop("header").tobytes().decode())
    edit(arrays)
    header["content_sha256"] = content_digest(arrays, header)  # consistent checksum: only the structure is wrong
    arrays["header"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    np.savez_compressed(path, **arrays)


@pytest.mark.parametrize("edit, what", [(lambda a: a.update(q=a["q"][:-1]), "array 'q' has shape"),
                                        (lambda a: a.pop("mu_hat"), "array 'mu_hat' missing"),
                                        (lambda a: a.update(toy_index=a["toy_index"][::-1].copy()),
                                         "toy indices are not increasing")],
                         ids=["wrong-shape", "missing-array", "unordered"])
def test_structurally_broken_toy_file_is_named(reference, tmp_path, edit, what):
    path = tmp_path / "job0.npz"
    shutil.copy2(reference / "quick" / "m40" / "toys" / "poi1" / "job0.npz", path)
    _rewrite(path, edit)
    with pytest.raises(CorruptToyFile, match=f"corrupt toy file {path}: {what}"):
        load_toy_job(path)


# --------------------------------------------------------------------------- disk full, read-only
def _mount_tmpfs(directory: Path, size: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}); needs root with "
                    f"CAP_SYS_ADMIN")


def _umount(directory: Path) -> None:
    subprocess.run(["umount", "-l", str(directory)], capture_output=True)


@pytest.fixture
def toys_on_tmpfs(results):
    """The toy directory of the copy on its own small tmpfs (its files copied in, times kept)."""
    toys = results / "quick" / "m40" / "toys"
    saved = results.parent / "toys-saved"
    shutil.move(toys, saved)
    _mount_tmpfs(toys, "4m")
    try:
        for path in saved.rglob("*"):
            target = toys / path.relative_to(saved)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        yield toys
    finally:
        _umount(toys)


def test_corrupt_toy_file_that_cannot_be_moved_aside(workdir, reference, tmp_path, capsys):
    """A corrupt toy file on a read-only file system: merge cannot move it aside and says so, still
    in one line, with what to do (before: a traceback from the failed rename)."""
    from lzflow.cli import main
    from lzflow.config import load_config_stack
    from lzflow.layout import merge_spec
    from lzflow.variants import expand_studies

    toys = tmp_path / "m40" / "toys"
    _mount_tmpfs(toys, "4m")
    try:
        shutil.copytree(reference / "quick" / "m40" / "toys", toys, dirs_exist_ok=True)
        victim = toys / "poi2" / "job1.npz"
        _flip_bytes(victim)
        remount = subprocess.run(["mount", "-o", "remount,ro", str(toys)], capture_output=True, text=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
        baseline, _ = expand_studies(load_config_stack([workdir / "config" / "quick.yaml", workdir / "small.yaml"]))
        code = main(["merge", "--spec", json.dumps(merge_spec(baseline.config, "40")),
                     "--workspace", str(reference / "quick" / "m40" / "workspace.json"),
                     "--toys", *map(str, sorted(toys.rglob("job*.npz"))),
                     "--out", str(tmp_path / "limit.json"), "--errors-out", str(tmp_path / "fit_errors.json")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err, err
        assert err.startswith(f"lzflow: error: corrupt toy file {victim}: not a readable .npz"), err
        assert err.endswith("; could not move it aside (Read-only file system); delete it and the next run makes "
                            "it again"), err
        assert victim.is_file() and not (tmp_path / "limit.json").exists()
    finally:
        _umount(toys)


def _job_log_errors(results: Path) -> list[str]:
    logs = (results / "logs" / "quick" / "m40").glob("toys_*.log")
    return [line for log in logs for line in _error_lines(log.read_text())]


def test_disk_full_then_rerun(workdir, results, reference, toys_on_tmpfs):
    """The toy outputs' file system is full: each toy job fails with one line naming its output,
    nothing half-written is left under a valid name; with space freed the next run completes."""
    for path in _toy_files(results)[:3]:
        path.unlink()
    ballast = toys_on_tmpfs / "ballast"
    subprocess.run(["dd", "if=/dev/zero", f"of={ballast}", "bs=64k"], capture_output=True)  # until ENOSPC
    failed = run(workdir, results)
    assert failed.returncode != 0
    errors = _job_log_errors(results)
    assert errors and all(": No space left on device" in e and "lzflow: error: cannot write" in e for e in errors), \
        errors
    assert not [p for p in toys_on_tmpfs.rglob("*") if p.name.endswith(".tmp")]
    for path in _toy_files(results):
        load_toy_job(path)
    ballast.unlink()
    _ok(run(workdir, results))
    assert_like_reference(results, reference)


def test_read_only_results_then_rerun(workdir, results, reference, toys_on_tmpfs):
    """The toy outputs' file system is read-only: the run stops before any job with one line naming
    the directory (Snakemake itself would fail with a traceback clearing the jobs' old outputs);
    made writable again, the next run completes."""
    for path in _toy_files(results)[:3]:
        path.unlink()
    remount = subprocess.run(["mount", "-o", "remount,ro", str(toys_on_tmpfs)], capture_output=True, text=True)
    if remount.returncode != 0:
        pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
    failed = run(workdir, results)
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr, failed.stderr[-4000:]
    errors = [line for line in failed.stderr.splitlines() if "error:" in line.lower() or "Error" in line]
    assert errors == [f"lzflow: error: cannot write in {toys_on_tmpfs}: Read-only file system"], errors
    subprocess.run(["mount", "-o", "remount,rw", str(toys_on_tmpfs)], check=True)
    _ok(run(workdir, results))
    assert_like_reference(results, reference)


# ------------------------------------------------------------------------------ concurrent runs
def test_second_checkout_is_refused_while_a_run_holds_the_results(repo, workdir, results, reference, tmp_path):
    """Two checkouts, one results directory: the second run stops before touching anything, with
    one line naming the holder and the lock file, while a dry run from it still works; the first
    completes; so does the second later."""
    other = copy_workflow(repo, tmp_path / "second-checkout")
    (other / "small.yaml").write_text(SMALL)
    shutil.rmtree(results / "quick" / "m40" / "toys")
    lock = results / "quick" / ".lzflow.lock"
    first = subprocess.Popen(_command(workdir, results), cwd=workdir, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if lock.is_file() and f'"pid": {first.pid}' in lock.read_text():
                break
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second started"
        toys_before = {p: p.stat().st_mtime_ns for p in _toy_files(results)}
        second = run(other, results)
        assert second.returncode == 2
        errors = [line for line in second.stderr.splitlines() if "error:" in line.lower() or "Error" in line]
        assert len(errors) == 1, second.stderr[-3000:]
        assert errors[0].startswith(f"lzflow: error: {results / 'quick'} is in use by another lzflow run "
                                    f"(pid {first.pid} on ")
        assert f"run from {workdir}" in errors[0] and f"lock file {lock}" in errors[0]
        assert all(p.stat().st_mtime_ns == t for p, t in toys_before.items() if p.exists())
        dry = run(other, results, "-n")  # a dry run takes no lock: it works while the tree is in use
        assert dry.returncode == 0 and "Job stats" in dry.stdout + dry.stderr, dry.stderr[-3000:]
        assert first.poll() is None, "the first run ended before the dry run was checked; give it more work"
        assert first.wait(timeout=600) == 0
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert_like_reference(results, reference)
    again = run(other, results)
    _ok(again)
    assert "Nothing to be done" in again.stdout + again.stderr


# ------------------------------------------------------------------------ deleted intermediates
def test_deleted_intermediates_are_made_again(workdir, results, reference):
    """A deleted toy file, limit and fit-error summary are made again (before, the next run said
    'Nothing to be done' while limit.json was missing)."""
    for rel in ("m40/toys/poi0/job1.npz", "m40/toys/bonly/job0.npz", "m40/limit.json", "m40/fit_errors.json"):
        (results / "quick" / rel).unlink()
    dry = run(workdir, results, "-n")
    assert "Nothing to be done" not in dry.stdout + dry.stderr
    _ok(run(workdir, results))
    assert_like_reference(results, reference)


@pytest.mark.slow
def test_deleted_response_matrix_is_made_again(workdir, results, reference):
    (results / "quick" / "response" / "NR.npz").unlink()
    _ok(run(workdir, results))
    assert_like_reference(results, reference)
