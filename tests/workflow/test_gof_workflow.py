"""The goodness of fit in the workflow (rule ``gof``, lzflow.gofstage; issue 13 item 6), on a real
Snakemake run of config/quick_observed.yaml at 40 GeV: first blind (no gof job is scheduled and
nothing of it is written), then unblinded in the same tree: ``m40/gof.json`` holds the data's
Baker–Cousins χ²_λ — equal to :mod:`lzflow.stats.gof` called directly on the same workspace and
binned counts — with its toy p-value, and the report's observed section shows it. The χ²_λ values
of the unblinded run appear in no file of the blind run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from snakerun import job_counts, run_snakemake

#: one mass (the injected signal's) and fewer discovery toys (the GOF reuses data.discovery_toys)
N_TOYS = 400
SMALL = f"signal:\n  masses_GeV: [40]\ndata:\n  discovery_toys: {N_TOYS}\n"
QUICK_OBSERVED = "config/quick_observed.yaml"
#: stats.seed of config/quick.yaml, the GOF toys' seed
SEED = 11


def _texts(root: Path) -> dict[str, str]:
    """Every file below ``root`` as text (binary files as latin-1: a number written in them as text is found)."""
    return {str(p): p.read_bytes().decode("latin-1") for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_gof_only_when_unblinded_and_equal_to_the_direct_statistic(repo, tmp_path):
    from lzflow.io import read_json
    from lzflow.observeddata import observed_counts
    from lzflow.stats.gof import best_fit, statistic_pieces
    from lzflow.stats.fitresult import FitStatus
    from lzflow.workspace import read_workspace, workspace_model

    results, tree = tmp_path / "results", tmp_path / "results" / "quick_observed"
    small, blind = tmp_path / "small.yaml", tmp_path / "blind.yaml"
    small.write_text(SMALL)
    blind.write_text(SMALL + "blind: true\n")

    # blind: no gof job, no gof file, log or benchmark, no GOF table
    jobs = job_counts(run_snakemake(repo, [QUICK_OBSERVED, blind], results, "-n"))
    assert "gof" not in jobs and jobs["merge"] == 1
    blind_log = run_snakemake(repo, [QUICK_OBSERVED, blind], results)
    assert not [p for p in results.rglob("*gof*")]
    blind_texts = _texts(results)
    blind_texts["snakemake output"] = blind_log
    assert "Goodness of fit" not in (tree / "report.html").read_text()

    # unblinded: one gof job for the one mass
    jobs = job_counts(run_snakemake(repo, [QUICK_OBSERVED, small], results, "-n"))
    assert jobs["gof"] == 1 and jobs["report"] == 1
    unblind_log = run_snakemake(repo, [QUICK_OBSERVED, small], results)
    doc = json.loads((tree / "m40" / "gof.json").read_text())
    assert doc["format"] == "lzflow-gof-1" and doc["blind"] is False and doc["mass_GeV"] == 40.0
    assert doc["runs"] == [] and set(doc["observed"]) == {"total", "bins", "constraints"}
    assert doc["n_toys"] == N_TOYS and doc["seed"]["base_seed"] == SEED and doc["n_failed"] < N_TOYS // 100
    n_used = doc["n_toys"] - doc["n_failed"]
    for name in doc["observed"]:
        p = doc["p_value"][name]
        assert 0.0 <= p <= 1.0
        assert doc["p_error"][name] == pytest.approx(math.sqrt(p * (1 - p) / n_used), rel=1e-12, abs=1e-15)
        assert (doc["p_upper95"][name] is None) == (p > 0)

    # the data's χ²_λ: lzflow.stats.gof directly on the same workspace and binned counts
    ws = read_workspace(tree / "m40" / "workspace.json")
    data = read_json(tree / "data" / "observed.json")
    model, counts = workspace_model(ws), observed_counts(data, ws)
    assert doc["n_events"] == int(counts.sum()) == data["n_inside"]
    fit = best_fit(model, counts)
    assert fit.status[0] == FitStatus.CONVERGED
    direct = statistic_pieces(model, fit.params, counts[None], model.nominal_nuisance()[None])
    for name in ("total", "bins", "constraints"):
        assert doc["observed"][name] == pytest.approx(float(direct[name][0]), rel=1e-10, abs=1e-10)
    assert doc["best_fit"] == pytest.approx(dict(zip(model.par_names, fit.params[0].tolist())), rel=1e-10, abs=1e-12)
    assert doc["best_fit"]["mu"] > 0  # the injected signal (3x the median limit) is fitted
    assert doc["events"]["counts_digest"] == data["counts_digest"]

    # the report's GOF table, the job's log line
    report = (tree / "report.html").read_text()
    assert "Goodness of fit" in report and f"{doc['observed']['total']:.1f}" in report
    log = (results / "logs" / "quick_observed" / "m40" / "gof.log").read_text()
    assert f"chi2_lambda {doc['observed']['total']:.1f}" in log

    # nothing of the GOF in the blind run's files; the same search finds it after unblinding
    secrets = [repr(doc["observed"][k]) for k in ("total", "bins", "constraints")] + [
        f"chi2_lambda {doc['observed']['total']:.1f}", '"toy_quantiles"', '"p_upper95"', "Goodness of fit"]
    leaks = [(s, p) for s in secrets for p, t in blind_texts.items() if s in t]
    assert not leaks, leaks[:10]
    unblind_texts = _texts(results)
    unblind_texts["snakemake output"] = unblind_log
    assert all(any(s in t for t in unblind_texts.values()) for s in secrets)
