"""Which configuration a ``snakemake`` run means, checked before Snakemake or any job reads it.

``snakemake`` reads every ``--configfile`` itself, with PyYAML's ``FullLoader`` and YTE templating,
before the Snakefile runs: a binary file, a deeply nested one or an alias bomb would end in a
traceback or a hang there, and a config with ``__use_yte__: true`` would have its expressions
evaluated. Two checks close that gap:

* :func:`check_command_line` runs while Snakemake parses the workflow profile
  (``profiles/default/config.yaml``, loaded for every run from this repository), i.e. before
  Snakemake opens any config file. It reads each ``--configfile`` with lzflow's defensive loader
  and checks it against the schema; a bad file ends the run with one line
  ``lzflow: config error: …`` and exit status 2.
* :func:`workflow_config` runs in ``workflow/rules/common.smk``: the configuration is the stack of
  ``--configfile`` files (or :data:`lzflow.config.DEFAULT_CONFIG` when none is given) plus
  ``--config key=value`` overrides, loaded exactly as ``lzflow validate --config A B`` loads it
  (:func:`lzflow.config.load_config_stack`), then fully validated with every study value.

No default configuration is merged under a user's: ``snakemake --configfile mine.yaml`` runs
``mine.yaml`` (and its ``base:`` chain) only, so ``lzflow validate`` and ``snakemake`` accept and
reject exactly the same configurations.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, NoReturn, Sequence

from .exceptions import ConfigError, one_line

__all__ = ["configfiles_from_argv", "check_command_line", "workflow_config", "config_error_exit",
           "require_storage_tools", "lock_results_or_exit"]

_CONFIGFILE_FLAGS = ("--configfile", "--configfiles")


def configfiles_from_argv(argv: Sequence[str]) -> list[str]:
    """The ``--configfile A B`` / ``--configfiles=A`` values of a snakemake command line, in order."""
    files: list[str] = []
    taking = False
    for arg in argv:
        if taking and not arg.startswith("-"):
            files.append(arg)
            continue
        taking = False
        flag, eq, value = arg.partition("=")
        if flag in _CONFIGFILE_FLAGS:
            if eq:
                files.append(value)
            else:
                taking = True
    return files


def config_error_exit(err: Exception) -> NoReturn:
    """Print ``lzflow: config error: <one line>`` and exit with status 2."""
    sys.stderr.write(f"lzflow: config error: {one_line(err)}\n")
    sys.stderr.flush()
    sys.exit(2)


def check_command_line(argv: Sequence[str] | None = None) -> None:
    """Refuse bad ``--configfile`` files before Snakemake reads them (see the module docstring)."""
    from .config import load_config_stack, validate_raw

    files = configfiles_from_argv(sys.argv[1:] if argv is None else argv)
    if not files:
        return
    try:
        validate_raw(load_config_stack(files))
    except ConfigError as err:
        config_error_exit(err)


def workflow_config(configfiles: Sequence[str | Path], cli_config: Mapping[str, Any] | None = None):
    """(raw configuration, baseline variant, studies) of a snakemake run; a config error exits
    with one line (see the module docstring)."""
    from .config import DEFAULT_CONFIG, load_config_stack
    from .studies import expand_studies

    files = [str(f) for f in configfiles] or [DEFAULT_CONFIG]
    try:
        raw = load_config_stack(files, dict(cli_config or {}))
        baseline, studies = expand_studies(raw)
    except ConfigError as err:
        config_error_exit(err)
    return raw, baseline, studies


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

