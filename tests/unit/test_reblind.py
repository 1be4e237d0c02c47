"""Re-blinding (lzflow.reblind): a blind analysis removes every output of an earlier unblinded run
from its results, logs and benchmarks trees, and nothing else; an unblinded analysis without an
events file (runs:) drops only a stale one."""

from __future__ import annotations

from pathlib import Path

from lzflow import layout as L
from lzflow.observeddata import OBSERVED_EVENTS
from lzflow.reblind import remove_stale_observed, stale_observed_files

OBSERVED_OUTPUTS = [f"results/{L.OBSERVED_DATA}", f"results/{OBSERVED_EVENTS}", f"results/{L.GLOBAL_PVALUE}",
                    "results/m10/gof.json", "results/m40/gof.json", "results/m7/gof.json",  # m7: no longer configured
                    f"logs/{L.LOGS['observed_data']}", f"logs/{L.LOGS['global_pvalue']}", "logs/m40/gof.log",
                    f"benchmarks/{L.BENCHMARKS['observed_data']}", "benchmarks/m40/gof.tsv"]
KEPT = ["results/m40/limit.json", "results/m40/workspace.json", "results/limit_curve.csv", "results/report.html",
        "logs/merge_m40.log", "benchmarks/m40/merge.tsv", "results/m40/toys/bonly/job0.npz"]


def _tree(root: Path) -> tuple[Path, Path, Path]:
    for rel in OBSERVED_OUTPUTS + KEPT:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    return root / "results", root / "logs", root / "benchmarks"


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_blind_run_removes_every_observed_output_and_nothing_else(tmp_path, capsys):
    dirs = _tree(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in stale_observed_files(*dirs, False, False)) \
        == sorted(OBSERVED_OUTPUTS)
    removed = remove_stale_observed(*dirs, False, False)
    assert len(removed) == len(OBSERVED_OUTPUTS) and _files(tmp_path) == set(KEPT)
    assert not (tmp_path / "results" / "data").exists()  # the emptied data directory too
    assert capsys.readouterr().out.count("removed") == len(OBSERVED_OUTPUTS)
    assert remove_stale_observed(*dirs, False, True) == []  # a second run has nothing to do


def test_unblinded_runs_keep_their_outputs(tmp_path):
    dirs = _tree(tmp_path)
    assert remove_stale_observed(*dirs, True, True) == []  # every file is one of its outputs
    assert _files(tmp_path) == set(OBSERVED_OUTPUTS + KEPT)
    assert remove_stale_observed(*dirs, True, False) == [tmp_path / "results" / OBSERVED_EVENTS]  # runs:
