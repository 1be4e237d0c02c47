"""The LZ WS2024-like configuration (config/lz_ws2024.yaml and its reduced variant): it validates,
models the published background sources with their yield models, and a dry run builds its DAG."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lzflow.config import load_config

WS2024_SOURCES = {"Ar37", "B8", "DetER", "H3", "Rn220", "Rn222", "Xe124LL", "Xe124LM", "Xe127", "accidentals", "atm", "pp",
                  "vvBB"}
#: charge-scaled beta models of the L/M-shell capture lines (lzflow.spectra.capture.LZ_CHARGE_YIELD_SCALE)
SCALED = {"Xe124LL": "beta_Q0.71", "Xe124LM": "beta_Q0.87", "Xe127": "beta_Q0.87"}


@pytest.mark.parametrize("path", ["config/lz_ws2024.yaml", "config/lz_ws2024_quick.yaml"])
def test_ws2024_config_validates(repo, monkeypatch, path):
    monkeypatch.chdir(repo)
    cfg = load_config(path)
    assert cfg["tag"] == ("lz_ws2024" if path.endswith("lz_ws2024.yaml") else "lz_ws2024_quick")
    assert cfg["detector"]["name"] == "LZ_WS2024"
    # arXiv:2410.17036: 4.2 t*yr over 280 live days (WS2022 60 d + WS2024 220 d, as one run)
    assert cfg["exposure"]["live_time_days"] == pytest.approx(280.0)
    assert cfg["exposure"]["exposure_t_yr"] == pytest.approx(4.2, abs=0.05)
    assert cfg["signal"]["halo"]["preset"] == "baxter_2021"
    assert 40.0 in cfg["signal"]["masses_GeV"]
    bkg = cfg["backgrounds"]
    assert set(bkg) == WS2024_SOURCES
    assert all(b["nest_yields"] == ("NR" if name in ("B8", "atm") else SCALED.get(name, "beta"))
               for name, b in bkg.items())
    # the lines are normalised to their decays: a window holding every line
    for name in ("Ar37", "Xe124LL", "Xe124LM", "Xe127"):
        assert bkg[name]["window_keV"] == [0.01, 100.0]
    assert all(0 < b["rel_unc"] <= 1 for b in bkg.values())
    assert cfg["stats"]["power_threshold"] == pytest.approx(0.1587)  # PCL at -1 sigma
    # LZ's two-sided construction (the config's comment: Baxter et al.; the diamx reproduction)
    assert cfg["stats"]["construction"] == "two_sided"


def test_two_run_ws2024_config_is_two_sided_too(repo, monkeypatch):
    from lzflow.config import load_config_stack
    from lzflow.variants import expand_studies

    monkeypatch.chdir(repo)
    for path in ("config/lz_ws2022_ws2024.yaml", "config/lz_ws2022_ws2024_quick.yaml"):
        baseline, _ = expand_studies(load_config_stack([path]))
        assert baseline.config["stats"]["construction"] == "two_sided", path


def test_default_analysis_keeps_its_eleven(repo, monkeypatch):
    monkeypatch.chdir(repo)
    cfg = load_config("config/config.yaml")
    assert set(cfg["backgrounds"]) == {"B8", "DSN", "DetER", "DetNR", "Kr85", "Rn220", "Rn222", "atm", "hep",
                                       "pp", "vvBB"}


def test_ws2024_dry_run_builds_a_dag(repo, tmp_path):
    env = dict(os.environ, CONDOR_CONFIG="/dev/null")
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--configfile", "config/lz_ws2024.yaml",
           "--config", f"results_dir={tmp_path}"]
    result = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "background_pdf" in out and "signal_pdf" in out and "merge" in out
    table = out.split("Job stats:")[1].split("\n\n")[0]
    counts = {p[0]: int(p[1]) for p in (line.split() for line in table.splitlines())
              if len(p) == 2 and p[1].isdigit()}
    assert counts["background_pdf"] == len(WS2024_SOURCES)
    assert counts["signal_pdf"] == 5 and counts["merge"] == 5
