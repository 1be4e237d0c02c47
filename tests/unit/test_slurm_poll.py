"""lzflow.slurm_poll: the ceiling on the Slurm plugin's status-poll interval (profiles/slurm-small)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from lzflow.slurm_poll import (
    cap_from_environment,
    cap_status_poll_interval,
    poll_ceiling,
)

Executor = pytest.importorskip("snakemake_executor_plugin_slurm").Executor


def _poll(executor_self) -> list:
    """One round of the (patched) plugin's check_active_jobs with no active job: its fast path, which
    sets the next wait to slurm-init-seconds-before-status-checks."""

    async def run():
        return [job async for job in Executor.check_active_jobs(executor_self, [])]

    return asyncio.run(run())


def _fake_executor(init_seconds: int) -> SimpleNamespace:
    settings = SimpleNamespace(init_seconds_before_status_checks=init_seconds)
    log = SimpleNamespace(debug=lambda *a, **k: None, info=lambda *a, **k: None)
    return SimpleNamespace(workflow=SimpleNamespace(executor_settings=settings), logger=log,
                           next_seconds_between_status_checks=None)


@pytest.fixture
def restore_plugin(monkeypatch):
    """The plugin's own method during the test (loading profiles/slurm-small in this process patches
    it), and back to what it was afterwards (monkeypatch restores the class attribute)."""
    current = Executor.check_active_jobs
    monkeypatch.setattr(Executor, "check_active_jobs", getattr(current, "__wrapped__", current))
    monkeypatch.delenv("LZFLOW_SLURM_MAX_POLL_S", raising=False)


def test_unpatched_plugin_waits_its_initial_interval(restore_plugin):
    """The reference: the plugin itself sets the next wait to the initial interval (here 40 s)."""
    fake = _fake_executor(40)
    assert _poll(fake) == []
    assert fake.next_seconds_between_status_checks == 40


def test_ceiling_caps_the_plugins_wait(restore_plugin):
    assert cap_status_poll_interval(2.0) is True
    fake = _fake_executor(40)
    assert _poll(fake) == []
    assert fake.next_seconds_between_status_checks == 2.0
    short = _fake_executor(1)  # a shorter wait than the ceiling is left alone
    _poll(short)
    assert short.next_seconds_between_status_checks == 1


def test_patch_is_idempotent_and_uses_the_last_ceiling(restore_plugin):
    original = Executor.check_active_jobs
    cap_status_poll_interval(5.0)
    cap_status_poll_interval(3.0)
    assert Executor.check_active_jobs.__wrapped__ is original  # one wrapper, not two
    fake = _fake_executor(40)
    _poll(fake)
    assert fake.next_seconds_between_status_checks == 3.0


def test_environment_variable(restore_plugin, monkeypatch):
    original = Executor.check_active_jobs
    assert cap_from_environment() is False and Executor.check_active_jobs is original  # unset: no patch
    monkeypatch.setenv("LZFLOW_SLURM_MAX_POLL_S", "4")
    assert cap_from_environment() is True
    fake = _fake_executor(40)
    _poll(fake)
    assert fake.next_seconds_between_status_checks == 4.0


@pytest.mark.parametrize("raw", ["0", "0.5", "-3", "nan", "inf", "two", " "])
def test_bad_ceiling_is_one_line(raw):
    with pytest.raises(SystemExit) as err:
        poll_ceiling(raw)
    assert str(err.value) == (f"lzflow: config error: LZFLOW_SLURM_MAX_POLL_S={raw!r}: "
                              "expected a number of seconds >= 1")


def test_good_ceiling():
    assert poll_ceiling("2") == 2.0 and poll_ceiling("7.5") == 7.5



def test_plugin_without_the_wait_attribute_keeps_its_own_waits(restore_plugin, monkeypatch):
    """A plugin version whose poll sets no ``next_seconds_between_status_checks`` is left alone, with
    one warning (not one per poll) instead of a crash of the workflow."""

    async def other_version(self, active_jobs):  # polls, but keeps its wait under another name
        self.other_wait = 40
        for job in active_jobs:
            yield job

    monkeypatch.setattr(Executor, "check_active_jobs", other_version)  # restored after the test
    assert cap_status_poll_interval(2.0) is True
    warnings: list[str] = []
    fake = SimpleNamespace(logger=SimpleNamespace(warning=warnings.append))

    async def poll():
        return [job async for job in Executor.check_active_jobs(fake, ["job"])]

    for _ in range(3):
        assert asyncio.run(poll()) == ["job"]
    assert fake.other_wait == 40 and not hasattr(fake, "next_seconds_between_status_checks")
    assert len(warnings) == 1 and "LZFLOW_SLURM_MAX_POLL_S" in warnings[0]
