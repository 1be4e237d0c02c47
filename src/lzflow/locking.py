"""One run at a time per results tree, whichever checkout or machine it comes from.

Snakemake locks a working directory (``.snakemake/locks``), not a results directory: two
checkouts that share one ``results_dir`` (a shared file system, a second clone, a colleague's
run) would each rerun, delete and rewrite the other's files; one run deleted the other's toy file
mid-merge. The workflow therefore holds an exclusive lock on ``<results>/.lzflow.lock`` from the
start of execution (Snakemake's ``onstart``, after the DAG is built and before any job runs or
any output is removed) to the end of the controller process. Dry runs take no lock.

The lock is a POSIX record lock (``fcntl.lockf``): the kernel drops it when the holding process
ends however it ends (no stale lock after a crash or SIGKILL), and NFS carries it between
machines through its lock manager. The lock file also says who holds it (pid, host, working
directory, start time) so that a refused run can say whom it waits for.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .exceptions import OutputError

__all__ = ["ResultsLocked", "hold_results_lock", "LOCK_NAME"]

LOCK_NAME = ".lzflow.lock"
_HELD: dict[str, int] = {}  # lock path -> open file descriptor, for the life of the process


class ResultsLocked(RuntimeError):
    """Another run holds the results tree."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return (f"pid {info['pid']} on {info['host']}, run from {info['cwd']}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['since']))}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a run that has not said who it is"


def hold_results_lock(directory: str | Path) -> Path:
    """Take the lock of results tree ``directory`` for the rest of this process (idempotent);
    raise :class:`ResultsLocked` naming the holder if another process has it."""
    directory = Path(directory)
    path = directory / LOCK_NAME
    key = str(path.resolve())
    if key in _HELD:
        return path
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise OutputError(err.errno, f"cannot write {path}: {err.strerror}") from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EACCES, errno.EAGAIN):
            raise ResultsLocked(f"{directory} is in use by another lzflow run ({_holder(path)}; lock file {path}); "
                                f"wait for it to finish, or give this run another tag or results_dir") from None
        raise OutputError(err.errno, f"cannot lock {path}: {err.strerror}") from None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "cwd": os.getcwd(), "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    _HELD[key] = fd
    return path
