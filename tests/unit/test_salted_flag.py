"""A salted event list says so beyond global_pvalue.json: the binned list (data/observed.json), the
accounting every limit.json's observed block carries, its ``salted`` flag and the report's header."""

import gzip
import json
from pathlib import Path

from lzflow.cli import main
from lzflow.observeddata import bin_observed, observed_summary

DATA = Path(__file__).resolve().parents[1] / "data"
EVENTS, WS_PATH = DATA / "quick_observed_events.csv", DATA / "workspace_m40.json.gz"


def _spec() -> dict:
    ws = json.loads(gzip.decompress(WS_PATH.read_bytes()))
    return {"format": "csv", "columns": {"cS1": "cS1", "cS2": "cS2"}, "units": {}, "tree": "events",
            "window": {"cS1_edges": ws["axes"][0]["edges"], "log10cS2_edges": ws["axes"][1]["edges"]}}


def test_binned_list_and_limit_accounting_carry_the_salt(tmp_path):
    salted, record = tmp_path / "salted.csv", tmp_path / "salt.json"
    assert main(["salt", "--events", str(EVENTS), "--workspace", str(WS_PATH), "--sigma-cm2", "1e-47", "--seed", "8",
                 "--out", str(salted), "--record", str(record)]) == 0
    doc, real = bin_observed(_spec(), salted), bin_observed(_spec(), EVENTS)
    assert doc["salt"] == {"salted": True, "salt_removed": None}
    assert real["salt"] == {"salted": False, "salt_removed": None}
    assert doc["n_total"] == 3310 + json.loads(record.read_text())["truth"]["n_salt"] and real["n_total"] == 3310
    assert observed_summary(doc)["salt"]["salted"] is True and observed_summary(real)["salt"]["salted"] is False


def test_report_header_says_salted_only_for_a_salted_observed_block():
    from lzflow.report import _data_note

    config = {"data": {"path": "run.csv"}, "blind": False}
    salted = [{"mass_GeV": 40.0, "observed": {"salted": True}}]
    assert "SALTED data" in _data_note(config, salted)
    assert "SALTED" not in _data_note(config, [{"mass_GeV": 40.0, "observed": {"salted": False}}])
    assert "SALTED" not in _data_note({**config, "blind": True}, salted)  # blind: nothing of the data shown
