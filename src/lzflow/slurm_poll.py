"""A ceiling on the Slurm executor plugin's status-poll interval (profiles/slurm-small).

snakemake-executor-plugin-slurm (2.8.0, and its main branch in July 2026) waits
``slurm-init-seconds-before-status-checks`` after a status poll that saw a job end and 10 s longer
after each poll that saw none, up to 180 s: after a submission it polls at about
:math:`t = 1, 13, 35, 67, 109, \\dots` s, :math:`t_k = t_{k-1} + i + 10 (k-1)` with :math:`i` the
initial interval. A job that ends at :math:`t` is seen at the next :math:`t_k`; a 20 s job is
seen ~15 s late. The growth has no setting (``--seconds-between-status-checks`` only sets the first
wait, ``--max-status-checks-per-second`` only paces the queries inside one poll), so on a small
cluster with an empty queue the poll lag is a large part of a short run.

:func:`cap_status_poll_interval` wraps the plugin's ``check_active_jobs`` so that after each poll the
wait it chose is at most ``ceiling`` seconds. Nothing else changes: which jobs are polled, how
(``squeue``/``sacct``) and what a status means stay the plugin's. It is called from a profile's YTE
``__definitions__`` (profiles/slurm-small) before Snakemake starts the executor; without the plugin
installed it does nothing. No result depends on it (docs/cluster.md, "Small Slurm clusters").
"""

from __future__ import annotations

import functools
import math
import os

ENV = "LZFLOW_SLURM_MAX_POLL_S"


def poll_ceiling(raw: str) -> float:
    """The ceiling in seconds from ``LZFLOW_SLURM_MAX_POLL_S``: a finite number >= 1, else one line."""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise SystemExit(f"lzflow: config error: {ENV}={raw!r}: expected a number of seconds >= 1")
    return value


def cap_status_poll_interval(ceiling: float) -> bool:
    """Cap the slurm plugin's wait between status polls at ``ceiling`` seconds (see the module
    docstring). Idempotent. Returns False when the plugin is not installed, True otherwise."""
    try:
        from snakemake_executor_plugin_slurm import Executor
    except ImportError:
        return False
    original = getattr(Executor.check_active_jobs, "__wrapped__", Executor.check_active_jobs)

    @functools.wraps(original)
    async def check_active_jobs(self, active_jobs):
        async for job in original(self, active_jobs):
            yield job
        wait = getattr(self, "next_seconds_between_status_checks", None)
        if isinstance(wait, (int, float)):
            self.next_seconds_between_status_checks = min(wait, ceiling)
        elif not getattr(self, "_lzflow_poll_warned", False):  # another plugin version: its own waits
            self._lzflow_poll_warned = True
            self.logger.warning(f"lzflow: {ENV} has no effect with this snakemake-executor-plugin-slurm "
                                "(no next_seconds_between_status_checks); polling at the plugin's own intervals")

    Executor.check_active_jobs = check_active_jobs
    return True


def cap_from_environment() -> bool:
    """:func:`cap_status_poll_interval` with ``LZFLOW_SLURM_MAX_POLL_S`` when it is set (and not empty)."""
    raw = os.environ.get(ENV, "")
    return cap_status_poll_interval(poll_ceiling(raw)) if raw else False
