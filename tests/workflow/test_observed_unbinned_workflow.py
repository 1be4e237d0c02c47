"""Observed data with the unbinned likelihood on a real Snakemake run (issue 13): config/quick.yaml +
config/quick_observed.yaml + ``stats.likelihood: unbinned``, both masses, first blind, then unblinded
in the same results tree, then blind again.

Blind: no data file, no observed block, and none of the unblinded run's observed numbers, digests
or keys anywhere in the results, logs and benchmarks trees or Snakemake's output (the search of
tests/workflow/test_observed_workflow.py). Unblinded: the observed_data job writes the in-window
events beside the binned file, every mass's toys record the events' digest (toys generated at the
events' fits) and every limit.json has an ``"observed"`` block fitted unbinned; at 40 GeV (a signal
injected at ~3x the median) the best-fit interval excludes zero and the local p-value is < 1e-3.
Blind again (lzflow.reblind): the data's outputs are removed and the same search finds nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from snakerun import run_snakemake
from test_observed_workflow import _observed_strings, _texts

UNBINNED = "stats:\n  likelihood: unbinned\n"


def _limits(tree: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(tree.glob("m*/limit.json"))}


@pytest.mark.slow
def test_unbinned_data_run_fits_the_events_and_its_blind_run_leaks_nothing(repo, tmp_path):
    # (no "unblinded" in the name: the blind logs hold the test's tmp path, searched for that word)
    from lzflow.observeddata import OBSERVED_EVENTS, events_digest

    results = tmp_path / "results"
    blind, unblind = tmp_path / "blind.yaml", tmp_path / "unbinned.yaml"
    blind.write_text(UNBINNED + "blind: true\n")
    unblind.write_text(UNBINNED)
    base = ["config/quick.yaml", "config/quick_observed.yaml"]
    blind_log = run_snakemake(repo, [*base, blind], results)
    tree = results / "quick_observed"
    assert not (tree / "data").exists() and not (tree / "global_pvalue.json").exists()
    limits = _limits(tree)
    assert set(limits) == {"m10", "m40"} and all(d["blind"] is True and "observed" not in d for d in limits.values())
    blind_texts = _texts(results)
    blind_texts["snakemake output"] = blind_log

    unblind_log = run_snakemake(repo, [*base, unblind], results)
    data = json.loads((tree / "data" / "observed.json").read_text())
    with np.load(tree / OBSERVED_EVENTS) as npz:
        digest = events_digest(npz["cS1"], npz["log10cS2"])
        assert npz["cS1"].size == data["unbinned_events"]["n"] == data["n_inside"]
    assert digest == data["unbinned_events"]["digest"]
    limits = _limits(tree)
    assert set(limits) == {"m10", "m40"}
    for label, doc in limits.items():
        obs = doc["observed"]
        assert doc["blind"] is False and obs["likelihood"] == "unbinned", label
        assert obs["events"]["unbinned_events"]["digest"] == digest and obs["events"]["n_total"] == 3310
        assert obs["sigma_cm2"] == doc["upper_limit_sigma_cm2"] > 0
        header = json.loads(np.load(tree / label / "toys" / "bonly" / "job0.npz")["header"].tobytes())
        assert header["observed_digest"] == digest and header["likelihood"]["likelihood"] == "unbinned"
    obs = limits["m40"]["observed"]
    assert obs["best_fit"]["interval_excludes_zero"] and obs["discovery"]["p_value"] < 1e-3
    assert limits["m40"]["limits"]["CLs+b"]["observed_mu"] > limits["m40"]["limits"]["CLs+b"]["expected_mu"]["0"]
    glob = json.loads((tree / "global_pvalue.json").read_text())
    # the global p-value fits the events with the unbinned likelihood: each mass's q0 is its limit.json's
    assert glob["likelihood"] == "unbinned" and "note" not in glob
    for m in glob["per_mass"]:
        assert m["q0"] == pytest.approx(limits[f"m{m['mass_GeV']:g}"]["observed"]["discovery"]["q0"], rel=1e-9)
    assert glob["global"]["p_value"] >= glob["local_at_max"]["p_value"] and glob["max_mass_GeV"] == 40.0

    exact, short = _observed_strings(obs, data, glob)
    exact += [digest]
    leaks = [(s, p) for s in exact + short for p, t in blind_texts.items() if s in t]
    assert not leaks, leaks[:10]
    unblind_texts = _texts(results)
    unblind_texts["snakemake output"] = unblind_log
    found = {s for s in exact if any(s in t for t in unblind_texts.values())}
    assert found == set(exact), sorted(set(exact) - found)

    # re-blinding: the data's outputs are removed before any job, every result is blind again
    reblind_log = run_snakemake(repo, [*base, blind], results)
    assert reblind_log.count("blind analysis: removed") >= 6  # data (2), global p-value, gof (2), logs, benchmarks
    assert not (tree / "data").exists() and not (tree / "global_pvalue.json").exists()
    assert not list(tree.glob("m*/gof.json"))
    assert all(d["blind"] is True and "observed" not in d for d in _limits(tree).values())
    reblind_texts = _texts(results)
    reblind_texts["snakemake output"] = reblind_log
    leaks = [(s, p) for s in exact + short for p, t in reblind_texts.items() if s in t]
    assert not leaks, leaks[:10]
