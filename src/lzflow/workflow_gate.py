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

How the toy files are bundled into jobs is not configuration (it changes no number) but a choice
of the executor: :func:`toy_split_or_exit` reads it from the environment (``LZFLOW_TOY_JOBS``, set
by the cluster profiles; :mod:`lzflow.toysplit`) with the same one-line error for a bad value.

No default configuration is merged under a user's: ``snakemake --configfile mine.yaml`` runs
``mine.yaml`` (and its ``base:`` chain) only, so ``lzflow validate`` and ``snakemake`` accept and
reject exactly the same configurations.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, NoReturn, Sequence

from .exceptions import ConfigError, one_line

__all__ = ["configfiles_from_argv", "check_command_line", "workflow_config", "config_error_exit", "toy_split_or_exit"]

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
    from .dataconfig import check_data_files
    from .variants import expand_studies

    files = [str(f) for f in configfiles] or [DEFAULT_CONFIG]
    try:
        raw = load_config_stack(files, dict(cli_config or {}))
        baseline, studies = expand_studies(raw)
        check_data_files(baseline.config)  # the event list's file and columns, blind-safe (names only)
    except ConfigError as err:
        config_error_exit(err)
    return raw, baseline, studies


def toy_split_or_exit(environ: Mapping[str, str] | None = None) -> str:
    """The toy split of this run (:func:`lzflow.toysplit.toy_job_split`: ``"mass"`` or ``"file"``);
    a bad ``LZFLOW_TOY_JOBS`` exits with one line ``lzflow: config error: …``."""
    from .toysplit import toy_job_split

    try:
        return toy_job_split(environ)
    except ConfigError as err:
        config_error_exit(err)
