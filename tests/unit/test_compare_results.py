"""benchmarks/compare_results.py: the bit-for-bit comparison of two results trees finds every
changed number and nothing else (run times of study tables, figures)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def compare(repo):
    spec = importlib.util.spec_from_file_location("compare_results", repo / "benchmarks" / "compare_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def trees(tmp_path):
    a = tmp_path / "a"
    (a / "m40" / "toys" / "poi0").mkdir(parents=True)
    (a / "studies" / "g1").mkdir(parents=True)
    np.savez(a / "m40" / "toys" / "poi0" / "job0.npz", q=np.array([0.5, np.nan]), toy_index=np.arange(2))
    (a / "m40" / "limit.json").write_text(json.dumps({"mu": 1.25, "band": [float("nan"), 2.0]}))
    (a / "limit_curve.csv").write_text("mass_GeV,sigma\n40,1.39e-48\n")
    (a / "limit_curve.png").write_bytes(b"png-1")
    (a / "studies" / "g1" / "table.csv").write_text("study,sigma_median_cm2,toy_jobs_wall_s\ng1,1e-47,15.3\n")
    (a / "studies" / "g1" / "table.md").write_text("| mass | median | toy jobs [s] |\n| 10 | 1e-47 | 15.3 |\n")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    return a, b


def test_identical_trees_and_what_is_not_compared(compare, trees):
    a, b = trees
    (b / "limit_curve.png").write_bytes(b"png-2")  # figures embed times: not compared
    (b / "studies" / "g1" / "table.csv").write_text("study,sigma_median_cm2,toy_jobs_wall_s\ng1,1e-47,16.2\n")
    (b / "studies" / "g1" / "table.md").write_text("| mass | median | toy jobs [s] |\n| 10 | 1e-47 | 16.2 |\n")
    same, problems = compare.compare_trees(a, b)
    assert problems == []
    assert sum(same.values()) == 5  # npz, json, curve csv, table csv, table md


def test_every_changed_number_is_found(compare, trees):
    a, b = trees
    np.savez(b / "m40" / "toys" / "poi0" / "job0.npz", q=np.array([0.5 + 1e-16, np.nan]), toy_index=np.arange(2))
    (b / "m40" / "limit.json").write_text(json.dumps({"mu": 1.2500000000000002, "band": [float("nan"), 2.0]}))
    (b / "studies" / "g1" / "table.csv").write_text("study,sigma_median_cm2,toy_jobs_wall_s\ng1,1.0000001e-47,15.3\n")
    (b / "limit_curve.csv").unlink()
    _, problems = compare.compare_trees(a, b)
    text = "\n".join(problems)
    assert "job0.npz: array 'q' differs" in text
    assert "limit.json: JSON differs" in text
    assert "table.csv: table differs" in text
    assert "only in" in text and "limit_curve.csv" in text
    assert compare.main([str(a), str(b)]) == 1
