"""Checks the Snakemake controller makes before any job runs (the workflow's ``Snakefile``).

* :func:`require_storage_tools`, while the workflow is parsed: the node-scratch profiles
  (``--default-storage-provider fs``) stage every file with ``rsync``; where it is missing the run
  stops with one line instead of failing in the middle of the first job's staging.
* :func:`lock_results_or_exit`, in ``onstart:`` (after the DAG is built, before any job runs or
  any old output is removed; dry runs never get there): one run at a time per results tree, from
  any checkout (:mod:`lzflow.locking`), and a tree that can be written (:func:`check_writable`).

Each failure is one line ``lzflow: error: <what>`` and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from .exceptions import one_line

__all__ = ["require_storage_tools", "check_writable", "lock_results_or_exit", "STORAGE_TOOLS"]


#: System tools a Snakemake storage provider needs on every machine that stages files.
STORAGE_TOOLS = {"fs": ("rsync", "snakemake-storage-plugin-fs stages every input and output with it")}


def require_storage_tools(provider: str | None) -> None:
    """With ``--default-storage-provider fs`` (the ``*-scratch`` profiles), refuse to start, in one
    line, where ``rsync`` is missing: otherwise the first job fails in the middle of staging. On a
    cluster every job re-reads the workflow on its node, so a node without rsync says so too."""
    import shutil

    if provider not in STORAGE_TOOLS:
        return
    tool, why = STORAGE_TOOLS[provider]
    if shutil.which(tool) is None:
        sys.stderr.write(f"lzflow: error: {tool} is not installed ({why}); install it (Debian/Ubuntu: apt-get "
                         f"install {tool}) or run without a *-scratch profile\n")
        sys.stderr.flush()
        sys.exit(2)


def check_writable(root: Path) -> None:
    """Every existing directory below ``root`` takes a new file (a probe, removed at once); raise
    :class:`~lzflow.exceptions.OutputError` naming the first that does not (a read-only file
    system or mount, a full disk, no permission). Snakemake itself would fail on such a directory
    with a traceback when it clears a job's old outputs."""
    import os
    import tempfile

    from .exceptions import OutputError

    for directory, _, _ in os.walk(root):
        try:
            with tempfile.TemporaryFile(dir=directory, prefix=".lzflow-probe-"):
                pass
        except OSError as err:
            raise OutputError(err.errno, f"cannot write in {directory}: {err.strerror}") from None


def lock_results_or_exit(results: str, storage_provider: str | None = None, storage_prefix: str | None = None,
                         also_writable: Sequence[str] = ()) -> None:
    """Hold the results tree's lock (:func:`lzflow.locking.hold_results_lock`) for this run, where
    the results really are (under the storage prefix with ``--default-storage-provider fs``), and
    check that the tree (and ``also_writable``: the log and benchmark trees) can be written
    (:func:`check_writable`); otherwise stop with one line (the holder and the lock file, or the
    directory that cannot be written)."""
    from .exceptions import OutputError
    from .locking import ResultsLocked, hold_results_lock

    def located(path: str) -> Path:
        return Path(storage_prefix) / path if storage_provider == "fs" and storage_prefix else Path(path)

    try:
        hold_results_lock(located(results))
        for tree in (results, *also_writable):
            check_writable(located(tree))
    except (ResultsLocked, OutputError) as err:
        sys.stderr.write(f"lzflow: error: {one_line(err)}\n")
        sys.stderr.flush()
        sys.exit(2)
