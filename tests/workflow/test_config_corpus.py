"""The malformed-config corpus (tests/workflow/config_corpus.py): every case is refused by both
``lzflow validate --config FILE...`` and ``snakemake -n --configfile FILE...`` with one line
``lzflow: config error: …`` naming the key, the value and what was expected; no traceback;
nothing written or executed outside the results directory; the legal edge cases are accepted.

In CI: every case through ``lzflow validate`` in-process (the console script's own ``main``), and
one case per class through both real commands. ``-m slow``: every case through both commands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from config_corpus import CASES, MARKER, Case

REPO = Path(__file__).resolve().parents[2]
ERROR_PREFIX = "lzflow: config error: "


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


def _paths(case: Case, corpus_dir: Path) -> list[str]:
    return [str(p) for p in case.write(corpus_dir / case.name)]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]


def _check_refusal(case: Case, stderr: str, what: str) -> None:
    assert "Traceback" not in stderr, f"{case.name}: {what} printed a traceback:\n{stderr[-2000:]}"
    lines = _error_lines(stderr)
    assert len(lines) == 1, f"{case.name}: {what} gave {len(lines)} error lines:\n{stderr[-2000:]}"
    others = [line for line in stderr.splitlines() if "error" in line.lower() and not line.startswith(ERROR_PREFIX)]
    assert not others, f"{case.name}: {what} printed other error lines: {others}"
    for fragment in case.expect:
        assert fragment in lines[0], f"{case.name}: {what}: {fragment!r} not in {lines[0]!r}"


def _no_marker(*directories: Path) -> None:
    for directory in directories:
        assert not list(directory.rglob(MARKER)), f"{MARKER} created under {directory}: a config reached a shell"


def test_corpus_covers_every_class():
    kinds = Counter(case.kind for case in CASES)
    assert sum(case.expect is not None for case in CASES) >= 150
    for kind in ("types", "ranges", "units", "unknown keys", "nesting", "non-finite", "huge", "paths", "shell",
                 "unicode", "yaml", "garbage", "studies", "per-mass", "base", "overlays", "cross-field", "legal"):
        assert kinds[kind] >= 3, (kind, kinds[kind])
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_validate_in_process(case, corpus_dir, monkeypatch, capsys):
    from lzflow.cli import main

    paths = _paths(case, corpus_dir)
    monkeypatch.chdir(REPO)
    rc = main(["validate", "--config", *paths])
    captured = capsys.readouterr()
    if case.expect is None:
        assert rc == 0, f"{case.name} (legal) refused: {captured.err}"
        assert captured.err == ""
        return
    assert rc == 2
    assert captured.err.count("\n") == 1 and captured.err.startswith(ERROR_PREFIX), captured.err
    _check_refusal(case, captured.err, "lzflow validate")
    assert not (corpus_dir / case.name / "results").exists()


def _lzflow() -> list[str]:
    script = Path(sys.executable).parent / "lzflow"
    return [str(script)] if script.exists() else [shutil.which("lzflow") or "lzflow"]


def _run_both(case: Case, corpus_dir: Path) -> None:
    """``lzflow validate`` and ``snakemake -n`` as real commands, from the repository root."""
    paths = _paths(case, corpus_dir)
    env = {**os.environ, "CONDOR_CONFIG": "/dev/null"}
    validate = subprocess.run([*_lzflow(), "validate", "--config", *paths], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
    snake = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--configfile", *paths],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    _no_marker(REPO, corpus_dir / case.name)
    if case.expect is None:
        assert validate.returncode == 0, f"{case.name}: lzflow validate refused a legal config: {validate.stderr}"
        assert snake.returncode == 0, f"{case.name}: snakemake refused a legal config: {snake.stderr[-2000:]}"
        return
    assert validate.returncode == 2, (case.name, validate.returncode, validate.stderr)
    assert validate.stderr.count("\n") == 1, validate.stderr
    _check_refusal(case, validate.stderr, "lzflow validate")
    assert snake.returncode != 0, f"{case.name}: snakemake accepted it:\n{snake.stderr[-2000:]}"
    _check_refusal(case, snake.stderr, "snakemake -n")
    assert not (corpus_dir / case.name / "results").exists(), f"{case.name}: results written"


def _one_per_kind() -> list[Case]:
    chosen: dict[str, Case] = {}
    for case in CASES:
        chosen.setdefault(case.kind, case)
    # the hostile ones Snakemake's own loader would choke on, and the injection attempt
    for name in ("yaml_alias_bomb", "yaml_deep_nesting", "yaml_binary", "yaml_duplicate_top",
                 "shell_results_dir_semicolon", "unknown_use_yte", "unknown_override_wrong_nesting",
                 "no_base_partial_config", "legal_quick_with_study"):
        chosen[name] = next(case for case in CASES if case.name == name)
    return list(chosen.values())


SAMPLE = _one_per_kind()


@pytest.mark.parametrize("case", SAMPLE, ids=[case.name for case in SAMPLE])
def test_both_commands_refuse_sample(case, corpus_dir):
    _run_both(case, corpus_dir)


@pytest.mark.slow
def test_both_commands_refuse_every_case(corpus_dir):
    failures = []

    def check(case: Case) -> None:
        try:
            _run_both(case, corpus_dir)
        except AssertionError as err:
            failures.append(f"{case.name}: {str(err).splitlines()[0]}")

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(check, CASES))
    assert not failures, "\n".join(failures)
