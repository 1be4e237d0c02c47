"""Packaging invariants: pyproject and environment.yml agree; README's test command is CI's;
every console-script stage answers --help."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest
import yaml


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_pyproject_dependencies(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    wanted = {r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((repo / "environment.yml").read_text())
    pip_block = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    listed = {r.replace(" ", "") for r in pip_block if not r.startswith("-e")}
    assert listed == wanted
    assert any(str(dep).startswith("python>=3.11") for dep in env["dependencies"] if isinstance(dep, str))


def test_readme_test_command_is_what_ci_runs(repo):
    readme = (repo / "README.md").read_text()
    ci_lines = [l for l in (repo / ".ci" / "run").read_text().splitlines() if l.startswith("python3 -m venv")]
    assert len(ci_lines) == 1
    assert ci_lines[0] in readme


def _subcommands() -> list[str]:
    from lzflow.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_core_stages_exist():
    assert {"validate", "detector", "response", "pdf"} <= set(_subcommands())


@pytest.mark.parametrize("stage", _subcommands())
def test_every_stage_answers_help(stage):
    result = subprocess.run([sys.executable, "-m", "lzflow.cli", stage, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "usage: lzflow " + stage in result.stdout
    assert len(result.stdout.splitlines()) > 4
