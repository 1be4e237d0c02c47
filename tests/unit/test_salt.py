"""Salting (lzflow.salt): fake signal events hidden in an event list with a sealed seed and removed
by lzflow unsalt; the round trip gives back the real list event for event."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from lzflow.cli import main
from lzflow.eventlist import (
    AnalysisWindow,
    DataError,
    EventList,
    read_events,
    select_window,
    write_events,
)
from lzflow.salt import (
    events_digest,
    make_salt,
    remove_salt,
    salt_precision,
    salt_status,
)
from lzflow.simulate import simulate
from lzflow.stats.hypotest import observed_q
from lzflow.workspace import workspace_model

DATA = Path(__file__).resolve().parents[1] / "data"
WS_PATH = DATA / "workspace_m40.json.gz"
EVENTS = DATA / "quick_observed_events.csv"


@pytest.fixture(scope="module")
def ws() -> dict:
    return json.loads(gzip.decompress(WS_PATH.read_bytes()))


def test_round_trip_and_the_salt_count(ws):
    """Salting keeps the real events in order among the fake ones; removing the salt gives them back
    exactly; the fake count is Poisson around mu * s (sigma 3e-47 cm2: mu s = 110.9 at 40 GeV)."""
    real = read_events(EVENTS)
    cs1, cs2, truth = make_salt(real.cs1, real.cs2, ws, sigma_cm2=3e-47, seed=5)
    expected = 3e-47 / ws["sigma_ref_cm2"] * ws["signal"]["expected_events"]
    assert abs(truth["n_salt"] - expected) < 4 * np.sqrt(expected) and truth["n_salt"] > 50
    assert cs1.size == len(real) + truth["n_salt"] and truth["n_real"] == len(real)
    back1, back2 = remove_salt(cs1, cs2, truth)
    assert np.array_equal(back1, real.cs1) and np.array_equal(back2, real.cs2)
    again = make_salt(real.cs1, real.cs2, ws, sigma_cm2=3e-47, seed=5)
    assert np.array_equal(again[0], cs1) and again[2] == truth  # the seed fixes everything
    other = make_salt(real.cs1, real.cs2, ws, sigma_cm2=3e-47)  # seed from OS entropy, kept in the record
    assert other[2]["seed"] != 5 and np.array_equal(make_salt(real.cs1, real.cs2, ws, 3e-47, seed=other[2]["seed"])[0],
                                                    other[0])
    with pytest.raises(DataError, match="not the real list"):
        remove_salt(cs1[::-1].copy(), cs2[::-1].copy(), truth)


def test_salted_results_show_the_salt(ws):
    """A 40 GeV salt raises the 40 GeV discovery statistic of a background-only list."""
    model = workspace_model(ws)
    bkg = simulate(ws, 0.0, 3)
    cs1, cs2, truth = make_salt(bkg.cs1, bkg.cs2, ws, sigma_cm2=1e-47, seed=2)
    counts = {}
    for label, (a, b) in {"real": (bkg.cs1, bkg.cs2), "salted": (cs1, cs2)}.items():
        counts[label] = select_window(EventList(a, b, "", "csv"), AnalysisWindow.from_workspace(ws)).flat_counts()
    assert counts["salted"].sum() - counts["real"].sum() == truth["n_salt"]
    q = {k: observed_q(model, c.astype(float), model.nominal_nuisance(), [0.0], "q0")[0][0] for k, c in counts.items()}
    assert q["salted"] > q["real"] + 9.0


def test_fake_values_take_the_real_precision(ws):
    real = read_events(EVENTS)
    r1, r2 = np.round(real.cs1, 2), np.round(real.cs2, 1)
    cs1, cs2, truth = make_salt(r1, r2, ws, sigma_cm2=3e-47, seed=1)
    assert truth["decimals"] == {"cS1": 2, "cS2": 1}
    assert salt_precision(cs1) == 2 and salt_precision(cs2) == 1
    assert salt_precision(np.array([0.1 + 0.2])) is None  # 0.30000000000000004 needs 17 digits


def test_sigma_range_is_drawn_from_the_seed(ws):
    real = read_events(EVENTS)
    sig = [make_salt(real.cs1[:10], real.cs2[:10], ws, sigma_range=(1e-48, 1e-46), seed=s)[2]["sigma_cm2"]
           for s in range(20)]
    assert all(1e-48 <= s <= 1e-46 for s in sig) and len(set(sig)) == 20
    with pytest.raises(DataError, match="exactly one of sigma_cm2 and sigma_range"):
        make_salt(real.cs1, real.cs2, ws, sigma_cm2=1e-47, sigma_range=(1e-48, 1e-46))


def test_salt_and_unsalt_commands(tmp_path, capsys):
    salted, record, unsalted = tmp_path / "salted.csv", tmp_path / "salt.json", tmp_path / "unsalted.parquet"
    assert main(["salt", "--events", str(EVENTS), "--workspace", str(WS_PATH), "--sigma-range", "1e-47", "3e-47",
                 "--out", str(salted), "--record", str(record)]) == 0
    head = salted.read_text().splitlines()[0]
    assert head.startswith('# lzflow: {"generator":"lzflow salt","lzflow_version"') and "sigma" not in head
    rec = json.loads(record.read_text())
    assert rec["truth"]["n_salt"] > 0 and len(read_events(salted)) == 3310 + rec["truth"]["n_salt"]
    assert main(["unsalt", "--events", str(salted), "--record", str(record), "--out", str(unsalted)]) == 0
    assert "salt revealed:" in capsys.readouterr().out
    real, back = read_events(EVENTS), read_events(unsalted)
    assert events_digest(back.cs1, back.cs2) == events_digest(real.cs1, real.cs2)
    ev = read_events(salted)
    write_events(salted, ev.cs1[:-1], ev.cs2[:-1])  # another list than the record's
    assert main(["unsalt", "--events", str(salted), "--record", str(record), "--out", str(unsalted)]) == 2
    assert "SHA-256 differs from the salt record's salted_sha256" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".root"])
def test_round_trip_in_every_format(tmp_path, suffix):
    salted, record, back = tmp_path / f"s{suffix}", tmp_path / "salt.json", tmp_path / f"u{suffix}"
    assert main(["salt", "--events", str(EVENTS), "--workspace", str(WS_PATH), "--sigma-cm2", "1e-47", "--seed", "4",
                 "--out", str(salted), "--record", str(record)]) == 0
    assert main(["unsalt", "--events", str(salted), "--record", str(record), "--out", str(back)]) == 0
    real, out = read_events(EVENTS), read_events(back)
    assert np.array_equal(out.cs1, real.cs1) and np.array_equal(out.cs2, real.cs2)
    assert salt_status(salted) == {"salted": True, "salt_removed": None}
    removed = salt_status(back)["salt_removed"]
    truth = json.loads(record.read_text())["truth"]
    assert removed == {k: truth[k] for k in ("mass_GeV", "sigma_cm2", "n_salt", "n_real", "seed")}
    assert salt_status(EVENTS) == {"salted": False, "salt_removed": None}  # lzflow simulate-data's list
