"""Fit-error summaries: per-mass summaries (written by merge) combine into the all-files summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lzflow.cli import main
from lzflow.fit_errors import combine_summaries, errors_markdown, summarise_errors, summarise_loaded
from lzflow.merge import load_toy_files
from lzflow.stats.fitresult import FitStatus, Strategy


def _write_toy_file(path: Path, mass: float, hypothesis: str, poi: int, run: int, first_toy: int, n: int,
                    rng: np.random.Generator) -> None:
    """A complete toy file (lzflow.toyjobs.save_toy_job) with injected failures, retries and NaN q."""
    from lzflow.stats.toys import ToyResult
    from lzflow.toyjobs import save_toy_job

    result = ToyResult.empty(hypothesis, poi, 1, round(mass * 1e4), "qtilde", np.ones(3), np.array([1.0]),
                             np.arange(first_toy, first_toy + n), 2)
    for fit in ("uncond", "cond"):
        status = np.zeros(n, dtype=np.int8)
        first = np.zeros(n, dtype=np.int8)
        failed = rng.random(n) < 0.15
        status[failed] = rng.choice([FitStatus.MAX_ITER, FitStatus.LINE_SEARCH], failed.sum())
        retried = ~failed & (rng.random(n) < 0.15)
        first[retried] = FitStatus.NON_FINITE
        first[failed] = status[failed]
        per_fit = (lambda a: a) if fit == "uncond" else (lambda a: a[:, None])  # cond: one column per μ
        setattr(result, f"status_{fit}", per_fit(status))
        setattr(result, f"first_failure_{fit}", per_fit(first))
        strategy = np.where(~failed & (rng.random(n) < 0.1), Strategy.NEWTON_RESTART, Strategy.NEWTON).astype(np.int8)
        setattr(result, f"strategy_{fit}", per_fit(strategy))
    result.q = rng.exponential(size=(n, 1))
    result.q[rng.random(n) < 0.1] = np.nan
    result.mu_hat = rng.normal(size=n)
    header = {"mass_GeV": mass, "hypothesis": hypothesis, "poi_index": poi, "run_number": run}
    save_toy_job(path, result, header)


@pytest.fixture
def toy_tree(tmp_path):
    """Toy files of three masses (labels 9, 10, 100: string order differs from numeric order)."""
    rng = np.random.default_rng(5)
    run = 0
    for mass in (9.0, 10.0, 100.0):
        for poi in range(3):
            for job in range(2):
                run += 1
                _write_toy_file(tmp_path / f"m{mass:g}" / "toys" / f"poi{poi}" / f"job{job}.npz", mass, "sb", poi,
                                run, 40 * job, 40, rng)
        run += 1
        _write_toy_file(tmp_path / f"m{mass:g}" / "toys" / "bonly" / "job0.npz", mass, "b", -1, run, 0, 50, rng)
    return tmp_path


@pytest.mark.parametrize("max_listed", [3, 50, 1000])
def test_per_mass_summaries_combine_to_the_all_files_summary(toy_tree, max_listed):
    everything = summarise_errors(toy_tree.rglob("job*.npz"), max_listed=max_listed)
    assert everything["failed_fits"] > 0 and everything["retried_fits"] > 0 and everything["nan_q"] > 0
    # fits whose result came from a further start are counted per fit type, never silently
    restarts = 0
    for path in toy_tree.rglob("job*.npz"):
        with np.load(path) as arrays:
            restarts += sum(int(np.sum(arrays[f"strategy_{f}"] == Strategy.NEWTON_RESTART)) for f in ("uncond", "cond"))
    assert everything["restart_lower_fits"] == restarts > 0
    assert f"{restarts} reached a lower minimum from a further start" in errors_markdown(everything)
    per_mass = {}
    for mass_dir in toy_tree.glob("m*"):
        files = load_toy_files(mass_dir.rglob("job*.npz"))
        per_mass[str(mass_dir / "fit_errors.json")] = json.loads(json.dumps(summarise_loaded(files, max_listed)))
    combined = combine_summaries((per_mass[p] for p in sorted(per_mass)), max_listed=max_listed)
    assert json.dumps(combined, sort_keys=True) == json.dumps(everything, sort_keys=True)
    assert errors_markdown(combined) == errors_markdown(everything)
    assert len(combined["toys_to_replay"]) == min(max_listed, sum(len(s["toys_to_replay"]) for s in per_mass.values()))
    assert combined["files"] == 3 * 7 and combined["toys"] == 3 * (6 * 40 + 50)


def test_combining_overlapping_summaries_is_refused(toy_tree):
    summary = summarise_errors((toy_tree / "m10").rglob("job*.npz"))
    with pytest.raises(ValueError, match="mass 10 GeV, b POI -1 appears in two summaries"):
        combine_summaries([summary, summary])


def test_errors_cli_combines_summaries(toy_tree, tmp_path, capsys):
    summaries = []
    for mass_dir in toy_tree.glob("m*"):
        path = mass_dir / "fit_errors.json"
        path.write_text(json.dumps(summarise_errors(mass_dir.rglob("job*.npz"))))
        summaries.append(str(path))
    out = tmp_path / "out" / "fit_errors.json"
    out.parent.mkdir()
    assert main(["errors", "--summaries", *summaries, "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads(json.dumps(summarise_errors(toy_tree.rglob("job*.npz"))))
    assert out.with_suffix(".md").read_text() == errors_markdown(json.loads(out.read_text()))
    assert main(["errors", "--summaries", *summaries, "--toys", str(next(toy_tree.rglob("job*.npz")))]) == 2
    assert "give --toys or --summaries, not both" in capsys.readouterr().err


def test_shape_parameters_at_their_bound_are_counted(tmp_path):
    """With shape systematics, toys whose α̂ (unconditional) or α̂̂ (any tested μ) sits at ±5 are counted."""
    from lzflow.stats.fitresult import ALPHA_BOUND
    from lzflow.stats.toys import ToyResult
    from lzflow.toyjobs import save_toy_job

    n, n_mu, k = 6, 2, 2
    result = ToyResult.empty("sb", 0, 1, 400000, "qtilde", np.ones(3 + k), np.array([1.0, 2.0]), np.arange(n), 3)
    result.q = np.zeros((n, n_mu))
    result.params_uncond = np.zeros((n, 1 + 3 + k))
    result.params_uncond[[1, 4], -1] = -ALPHA_BOUND  # two unconditional fits at α = −5
    result.alpha_cond = np.zeros((n, n_mu, k))
    result.alpha_cond[2, 1, 0] = ALPHA_BOUND  # one toy's conditional fit at the second μ
    result.alpha_cond[3, 0, 1] = 0.5 * ALPHA_BOUND  # inside: not counted
    path = tmp_path / "m40" / "toys" / "poi0" / "job0.npz"
    save_toy_job(path, result, {"mass_GeV": 40.0, "hypothesis": "sb", "poi_index": 0, "run_number": 1})
    row = summarise_errors([path])["table"][0]
    assert row["uncond:alpha_at_bound"] == 2 and row["cond:alpha_at_bound"] == 1
