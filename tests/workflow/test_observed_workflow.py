"""Blinding, proven on a real Snakemake run (issue 13): config/quick_observed.yaml at 40 GeV, first
blind, then unblinded in the same results tree.

The blind run must write no observed quantity anywhere: every file of the results, logs and
benchmarks trees (JSON, CSV, HTML, logs; .npz toy files decoded: their headers and arrays) and
Snakemake's own output are searched for what only the data can give — the numbers of the
unblinded run's ``"observed"`` block (at full and at 4-digit precision), the data's event count,
the event file's SHA-256 and the counts' digest — and for the keys of that block. The same search
finds them in the unblinded tree (so it would have found a leak). Unblinding adds the binning job
and reruns only the toys, merge and what follows them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from snakerun import ENV, job_counts, run_snakemake

#: fewer jobs than the shipped config: one mass (the injected signal's)
SMALL = "signal:\n  masses_GeV: [40]\n"
UNBLINDED_JOBS = {"observed_data": 1, "toys_m40": 1, "merge": 1, "global_pvalue": 1, "gof": 1, "curve": 1, "errors": 1,
                  "mass_plots": 1, "report": 1, "all": 1}


def _texts(root: Path) -> dict[str, str]:
    """Every file below ``root`` as text; .npz archives as their JSON header and array values."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                parts = []
                for name in npz.files:
                    a = npz[name]
                    parts.append(name + " " + (a.tobytes().decode() if name == "header" else
                                               " ".join(repr(float(x)) for x in np.ravel(a)[:20000])))
            out[str(path)] = "\n".join(parts)
        elif path.suffix == ".png":
            with open(path, "rb") as handle:  # text chunks only (matplotlib's metadata)
                out[str(path)] = handle.read().split(b"IDAT")[0].decode("latin-1")
        else:
            out[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    assert not any(zipfile.is_zipfile(p) and not p.endswith(".npz") for p in out)
    return out


def _observed_strings(observed: dict, data: dict, glob: dict) -> list[str]:
    """What only the data can give: (exact: every number of the observed block and of the global
    p-value (global_pvalue.json) as JSON writes them, the event count with its context, the file and
    counts digests, the blocks' keys; short: its cross sections at 4 digits, as the report and logs
    show numbers)."""
    numbers = []

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, float) and x not in (0.0, 1.0) and np.isfinite(x):
            numbers.append(x)

    walk({k: v for k, v in observed.items() if k != "pulls"} | {"best_fit": {k: v for k, v in observed["best_fit"].items()
                                                                            if k != "interval_cl"}})  # a constant
    walk([p["fitted"] for p in observed["pulls"].values()])
    walk({k: glob[k] for k in ("q0_observed", "global", "local_at_max")})
    exact = sorted({repr(x) for x in numbers}) + [
        data["events_sha256"], data["counts_digest"], f'"n_total": {data["n_total"]}', f"{data['n_total']} events",
        '"observed": {', '"best_fit"', '"discovery"', '"pulls"', "sigma_observed_cm2", "unblinded",
        '"trials_factor"', '"q0_max_observed"', "Global discovery p-value", "global p-value"]
    return exact, sorted({f"{x:.4g}" for x in numbers if abs(x) < 1e-40} - set(exact))


@pytest.mark.slow
def test_blind_run_writes_no_observed_number_and_unblinding_reruns_only_the_data_chain(repo, tmp_path):
    results = tmp_path / "results"
    small = tmp_path / "small.yaml"
    small.write_text(SMALL)
    blind = tmp_path / "blind.yaml"
    blind.write_text(SMALL + "blind: true\n")
    blind_log = run_snakemake(repo, ["config/quick_observed.yaml", blind], results)
    tree = results / "quick_observed"
    assert not (tree / "data").exists()  # the event list was neither binned nor read
    assert not (tree / "global_pvalue.json").exists()  # nor the global p-value over the masses computed
    limit = json.loads((tree / "m40" / "limit.json").read_text())
    assert limit["blind"] is True and "observed" not in limit
    blind_texts = _texts(results)
    blind_texts["snakemake output"] = blind_log
    assert not any("observed_digest" in t for p, t in blind_texts.items() if p.endswith(".npz"))
    assert "blind" in (results / "logs" / "quick_observed" / "merge_m40.log").read_text()
    upstream = [tree / "detector.json", *(tree / "response").rglob("*.npz"), *(tree / "pdfs").rglob("*.*"),
                *(tree / "m40").glob("workspace*.json"), tree / "m40" / "impacts.json"]
    before = {p: p.stat().st_mtime_ns for p in upstream}
    assert len(before) > 20

    dry = run_snakemake(repo, ["config/quick_observed.yaml", small], results, "-n")
    assert job_counts(dry) == UNBLINDED_JOBS
    unblind_log = run_snakemake(repo, ["config/quick_observed.yaml", small], results)
    assert {p: p.stat().st_mtime_ns for p in before} == before  # detector, responses, pdfs, workspaces kept
    limit = json.loads((tree / "m40" / "limit.json").read_text())
    data = json.loads((tree / "data" / "observed.json").read_text())
    obs = limit["observed"]
    assert limit["blind"] is False
    assert obs["sigma_cm2"] == limit["upper_limit_sigma_cm2"] > 0
    assert obs["best_fit"]["interval_excludes_zero"] and obs["discovery"]["p_value"] < 1e-3
    assert obs["events"]["n_total"] == data["n_total"] == 3310
    backgrounds = json.loads((tree / "m40" / "workspace.json").read_text())["backgrounds"]
    assert set(obs["pulls"]) == {b["name"] for b in backgrounds if b["rel_unc"] > 0}
    curve = (tree / "limit_curve.csv").read_text().splitlines()
    assert "sigma_observed_cm2" in curve[0] and f"{obs['sigma_cm2']!r}" in curve[1]
    assert "Observed results (unblinded)" in (tree / "report.html").read_text()

    glob = json.loads((tree / "global_pvalue.json").read_text())
    assert glob["masses_GeV"] == [40.0] and glob["q0_observed"] == [obs["discovery"]["q0"]]
    assert glob["trials_factor"] == 1.0  # one mass: global and local p-value from the same datasets
    assert glob["n_toys"] == obs["discovery"]["n_toys"] and glob["global"]["p_value"] < 1e-3
    assert "global p-value" in (results / "logs" / "quick_observed" / "global_pvalue.log").read_text()

    exact, short = _observed_strings(obs, data, glob)
    leaks = [(s, p) for s in exact + short for p, t in blind_texts.items() if s in t]
    assert not leaks, leaks[:10]
    unblind_texts = _texts(results)
    unblind_texts["snakemake output"] = unblind_log
    found = {s for s in exact if any(s in t for t in unblind_texts.values())}
    assert found == set(exact), sorted(set(exact) - found)  # the search finds each one after unblinding
    assert len(exact) > 25 and len(short) >= 5


def test_committed_event_list_is_the_documented_command(repo, tmp_path):
    """tests/data/quick_observed_events.csv is what its first line's command writes (from the quick
    analysis's 40 GeV workspace, rebuilt here only when a results tree has it; else its header and
    accounting are checked)."""
    from lzflow.eventlist import read_events

    path = repo / "tests" / "data" / "quick_observed_events.csv"
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# made by: lzflow simulate-data --workspace results/quick/m40/workspace.json "
                               "--seed 13 --sigma-cm2 3.4e-48")
    provenance = json.loads(lines[1].removeprefix("# lzflow: "))
    assert provenance["seed"] == 13 and provenance["sigma_cm2"] == 3.4e-48 and provenance["mass_GeV"] == 40.0
    events = read_events(path)
    assert len(events) == 3310
    ws = repo / "results" / "quick" / "m40" / "workspace.json"
    if ws.is_file():
        out = tmp_path / "events.csv"
        subprocess.run([sys.executable, "-m", "lzflow.cli", "simulate-data", "--workspace", str(ws), "--seed", "13",
                        "--sigma-cm2", "3.4e-48", "--out", str(out)], check=True, env=ENV)
        assert out.read_text().splitlines() == lines[1:]


@pytest.mark.slow
def test_runs_analysis_fits_each_runs_data_and_a_blind_run_writes_nothing_observed(repo, tmp_path):
    """config/quick_two_runs.yaml at 40 GeV with one simulated list per run (lzflow simulate-data on
    each run's own workspace, a 40 GeV signal at 3.4e-48 cm2, 3x the median): blind, no observed
    number anywhere (the same search as above, plus each run's file digest and count); unblinded,
    each run's list binned on its own window and concatenated in run order gives an observed limit
    above the median with the best-fit interval excluding zero, and each run's accounting."""
    results = tmp_path / "results"
    small = tmp_path / "small.yaml"
    small.write_text(SMALL)
    tree = results / "quick_two_runs"
    runs = ("early", "late")
    targets = [str(tree / "runs" / r / "m40" / "workspace.json") for r in runs]  # the runs' workspaces only
    subprocess.run([sys.executable, "-m", "snakemake", *targets, "--cores", "2", "--configfile",
                    "config/quick_two_runs.yaml", str(small), "--config", f"results_dir={results}"],
                   cwd=repo, check=True, env=ENV, capture_output=True)
    lists = {}
    for seed, run in enumerate(runs, start=5):
        lists[run] = tmp_path / f"{run}.csv"
        subprocess.run([sys.executable, "-m", "lzflow.cli", "simulate-data", "--workspace",
                        str(tree / "runs" / run / "m40" / "workspace.json"), "--seed", str(seed),
                        "--sigma-cm2", "3.4e-48", "--out", str(lists[run])], check=True, env=ENV, capture_output=True)
    data_yaml = "runs:\n" + "".join(f"  {r}:\n    data: {{path: {lists[r]}}}\n" for r in runs)
    blind, unblind = tmp_path / "blind.yaml", tmp_path / "unblind.yaml"
    blind.write_text(SMALL + "blind: true\n" + data_yaml)
    unblind.write_text(SMALL + "blind: false\n" + data_yaml)

    blind_log = run_snakemake(repo, ["config/quick_two_runs.yaml", blind], results)
    assert not (tree / "data").exists() and not (tree / "global_pvalue.json").exists()
    limit = json.loads((tree / "m40" / "limit.json").read_text())
    assert limit["blind"] is True and "observed" not in limit
    blind_texts = _texts(results)
    blind_texts["snakemake output"] = blind_log

    unblind_log = run_snakemake(repo, ["config/quick_two_runs.yaml", unblind], results)
    limit = json.loads((tree / "m40" / "limit.json").read_text())
    data = json.loads((tree / "data" / "observed.json").read_text())
    obs = limit["observed"]
    assert [r["run"] for r in data["runs"]] == list(runs)
    ws = json.loads((tree / "m40" / "workspace.json").read_text())
    assert [r["name"] for r in ws["runs"]] == list(runs) and len(data["counts"]) == sum(r["n_bins"] for r in ws["runs"])
    for part in data["runs"]:  # each run's list on its own run's grid, every simulated event inside
        n = len(lists[part["run"]].read_text().splitlines()) - 2  # provenance and header lines
        assert part["n_total"] == part["n_inside"] == n == obs["events"]["runs"][part["run"]]["n_total"]
    assert obs["events"]["n_total"] == sum(r["n_total"] for r in data["runs"]) and obs["salted"] is False
    assert obs["sigma_cm2"] == limit["upper_limit_sigma_cm2"] > limit["median_expected_sigma_cm2"]
    assert obs["best_fit"]["interval_excludes_zero"] and obs["discovery"]["p_value"] < 0.05
    assert "early: " in (tree / "report.html").read_text()  # the header names each run's list

    glob = json.loads((tree / "global_pvalue.json").read_text())
    exact, short = _observed_strings(obs, {**data, "events_sha256": data["runs"][0]["events_sha256"]}, glob)
    exact += [data["runs"][1]["events_sha256"], *(r["counts_digest"] for r in data["runs"]),
              *(f'"n_total": {r["n_total"]}' for r in data["runs"])]
    # a number is found as a whole token: a toy p-value such as 0.0046 (46 of 10 000 toys) is also the
    # first digits of unrelated numbers (0.00461...), which are no leak
    pattern = {s: re.compile(r"(?<![\d.])" + re.escape(s) + r"(?![\d])") for s in exact + short}
    leaks = [(s, p) for s in exact + short for p, t in blind_texts.items() if pattern[s].search(t)]
    assert not leaks, sorted({s for s, _ in leaks})
    unblind_texts = _texts(results)
    unblind_texts["snakemake output"] = unblind_log
    found = {s for s in exact if any(pattern[s].search(t) for t in unblind_texts.values())}
    assert found == set(exact), sorted(set(exact) - found)
