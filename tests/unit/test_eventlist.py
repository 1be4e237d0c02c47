"""Event lists (lzflow.eventlist): the three formats, units and columns checked, the analysis
window's accounting exact on a hand-made list, one-line errors for every bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from lzflow.eventlist import (OUTSIDE_REASONS, AnalysisWindow, DataError, load_events, read_events, select_window,
                              write_events)

WS40 = Path(__file__).resolve().parents[1] / "data" / "workspace_m40.json.gz"
FORMATS = ("csv", "parquet", "root")


@pytest.fixture(scope="module")
def ws():
    return json.loads(gzip.decompress(WS40.read_bytes()))


def hand_made(ws):
    """Events with a known place: (cS1, cS2, expected reasons, expected bin or None)."""
    x = np.asarray(ws["axes"][0]["edges"])
    y = np.asarray(ws["axes"][1]["edges"])
    mid_y = 0.5 * (y[8] + y[9])  # inside log10cS2 bin 8
    rows = [
        (10.0, 10 ** mid_y, set(), (3, 8)),  # (10 − 3)/1.925 = 3.64 → bin 3
        (x[0], 10 ** mid_y, set(), (0, 8)),  # the lower edge is inside
        (np.nextafter(x[-1], 0), 10 ** mid_y, set(), (39, 8)),  # just below the upper edge
        (x[-1], 10 ** mid_y, {"cS1_above"}, None),  # the upper edge is outside (half-open)
        (2.9, 10 ** mid_y, {"cS1_below"}, None),
        (0.0, 10 ** mid_y, {"cS1_below"}, None),
        (250.0, 10 ** mid_y, {"cS1_above"}, None),
        (10.0, 100.0, {"log10cS2_below"}, None),  # log10 = 2 < 2.5
        (10.0, 0.0, {"log10cS2_below"}, None),  # cS2 = 0: log10 = −inf
        (10.0, 1e6, {"log10cS2_above"}, None),  # log10 = 6 ≥ 5
        (1.0, 1e6, {"cS1_below", "log10cS2_above"}, None),  # fails two: once in n_outside
        (90.0, 10.0, {"cS1_above", "log10cS2_below"}, None),
        (10.0, 10 ** mid_y, set(), (3, 8)),  # a second event in bin (3, 8)
    ]
    cs1 = np.array([r[0] for r in rows], dtype=np.float64)
    cs2 = np.array([r[1] for r in rows], dtype=np.float64)
    return rows, cs1, cs2


@pytest.mark.parametrize("fmt", FORMATS)
def test_out_of_window_accounting_is_exact(ws, tmp_path, fmt):
    rows, cs1, cs2 = hand_made(ws)
    path = tmp_path / f"events.{fmt}"
    write_events(path, cs1, cs2)
    obs = load_events(path, ws, run="ws2024")
    assert obs.n_total == len(rows) == 13
    assert obs.outside == {r: sum(r in row[2] for row in rows) for r in OUTSIDE_REASONS}
    assert obs.outside == {"cS1_below": 3, "cS1_above": 3, "log10cS2_below": 3, "log10cS2_above": 2}
    assert obs.n_outside == sum(bool(row[2]) for row in rows) == 9  # two events fail two reasons
    assert obs.n_inside + obs.n_outside == obs.n_total
    expected = np.zeros((40, 40), dtype=np.int64)
    for row in rows:
        if row[3] is not None:
            expected[row[3]] += 1
    np.testing.assert_array_equal(obs.counts, expected)
    inside = [i for i, row in enumerate(rows) if not row[2]]
    np.testing.assert_array_equal(obs.cs1, cs1[inside])  # in file order, values unchanged
    np.testing.assert_allclose(obs.log10cs2, np.log10(cs2[inside]), rtol=0, atol=0)
    report = obs.report()
    assert report["run"] == "ws2024" and report["n_outside"] == 9 and report["format"] == fmt
    assert report["outside_by_reason"]["log10cS2_above"] == 2
    assert "9 outside (cS1_below 3, cS1_above 3, log10cS2_below 3, log10cS2_above 2)" in obs.summary_line()


def test_binned_and_unbinned_views_agree(ws, tmp_path):
    """The flat counts are the C-order layout the binned model uses, and the unbinned model bins
    the in-window events into the same counts."""
    from lzflow.stats.unbinned_model import UnbinnedModel
    from lzflow.workspace import workspace_model

    rng = np.random.default_rng(7)
    cs1 = rng.uniform(0.0, 90.0, 500)
    cs2 = 10 ** rng.uniform(2.0, 5.5, 500)
    obs = select_window(read_events(_csv(tmp_path / "e.csv", cs1, cs2)), AnalysisWindow.from_workspace(ws))
    model = workspace_model(ws)
    flat = obs.flat_counts()
    assert flat.shape == (model.n_bins,) and flat.sum() == obs.n_inside
    np.testing.assert_array_equal(flat.reshape(model.bin_shape), obs.counts)
    toys = obs.event_toys(model.nominal_nuisance())
    assert toys.n == 1 and toys.aux.shape == (1, model.n_aux)
    unbinned = UnbinnedModel.from_workspace(ws, order=0)
    np.testing.assert_array_equal(toys.binned_counts(unbinned)[0], flat)
    # the window agrees with lzflow.space's ROI cuts: inside iff 3 <= cS1 < 80 and 2.5 <= log10 cS2 < 5
    inside = (cs1 >= 3) & (cs1 < 80) & (np.log10(cs2) >= 2.5) & (np.log10(cs2) < 5)
    assert obs.n_inside == int(inside.sum()) and obs.n_outside == 500 - int(inside.sum())


def _csv(path: Path, cs1, cs2, header: str = "cS1[phd],cS2[phd]") -> Path:
    path.write_text(header + "\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(np.asarray(cs1).tolist(), np.asarray(cs2).tolist())))
    return path


def test_configurable_columns_and_units_in_each_format(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import uproot

    cs1 = np.array([5.0, 12.5, 40.0])
    cs2 = np.array([800.0, 2000.0, 9000.0])
    # CSV: other names, an extra column, spaces in the header, comments and blank lines
    text = "# a comment\n\n run , s1c [ phd ] ,s2c[PHD]\n7,5.0,800\n\n7,12.5,2000\n7,40,9000\n"
    (tmp_path / "a.csv").write_text(text)
    ev = read_events(tmp_path / "a.csv", columns={"cS1": "s1c", "cS2": "s2c"})
    np.testing.assert_array_equal(ev.cs1, cs1)
    np.testing.assert_array_equal(ev.cs2, cs2)
    # Parquet written by plain pyarrow without unit metadata: units given by the caller
    pq.write_table(pa.table({"s1": cs1, "s2": cs2.astype(np.int64)}), tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"column 's1' \(cS1\) declares no unit; expected the field metadata unit"):
        read_events(tmp_path / "b.parquet", columns=["cS1=s1", "cS2=s2"])
    ev = read_events(tmp_path / "b.parquet", columns=["cS1=s1", "cS2=s2"], units=["cS1=phd", "cS2=phd"])
    np.testing.assert_array_equal(ev.cs2, cs2)
    # ROOT: a tree of another name, units in its title, an integer branch
    with uproot.recreate(tmp_path / "c.root") as f:
        f.mktree("data", {"s1": np.float32, "s2": np.float64, "evt": np.int32}, title="s1[phd] s2[phd] evt[]")
        f["data"].extend({"s1": cs1.astype(np.float32), "s2": cs2, "evt": np.arange(3, dtype=np.int32)})
    ev = read_events(tmp_path / "c.root", tree="data", columns={"cS1": "s1", "cS2": "s2"}, run="r1")
    np.testing.assert_array_equal(ev.cs1, cs1)
    assert ev.run == "r1" and ev.fmt == "root" and len(ev) == 3


def test_empty_event_list_is_zero_counts(ws, tmp_path):
    for fmt in FORMATS:
        path = tmp_path / f"none.{fmt}"
        write_events(path, np.zeros(0), np.zeros(0))
        obs = load_events(path, ws)
        assert obs.n_total == obs.n_inside == obs.n_outside == 0 and obs.counts.sum() == 0


# ----------------------------------------------------------------------------- bad input
def _bad_csv(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, kwargs, message", [
    ("cS1[phd],S2[phd]\n5,800\n", {}, r"bad.csv: column 'cS2' not found; columns there: cS1, S2$"),
    ("cS1[phd],cS2[phd]\n5,800\nnan,900\n", {}, r"column 'cS1' \(cS1\) has 1 non-finite value\(s\), first at line 3: "
                                                 r"nan; expected finite values >= 0 in phd"),
    ("cS1[phd],cS2[phd]\n5,800\n6,inf\n7,-inf\n", {}, r"column 'cS2' \(cS2\) has 2 non-finite value\(s\), first at line 3"),
    ("cS1[phd],cS2[phd]\n5,800\n-0.5,900\n", {}, r"column 'cS1' \(cS1\) has 1 negative value\(s\), first at line 3: -0.5"),
    ("cS1[phe],cS2[phd]\n5,800\n", {}, r"column 'cS1' \(cS1\) has unit 'phe'; expected phd \(photons detected; phe "
                                      r"differ by the double-photoelectron fraction: convert first\)"),
    ("cS1[phd],cS2[keV]\n5,800\n", {}, r"column 'cS2' \(cS2\) has unit 'keV'; expected phd"),
    ("cS1,cS2\n5,800\n", {}, r"column 'cS1' \(cS1\) declares no unit; expected a header cell 'NAME\[phd\]' or units "
                             r"cS1=phd"),
    ("cS1[phd],cS2[phd]\n5,800\n", {"units": {"cS1": "phe"}},
     r"column 'cS1' \(cS1\) declares unit 'phd' but units.cS1 = 'phe'; expected them to agree"),
    ("cS1[phd],cS2[phd]\n5,abc\n", {}, r"bad.csv line 2: column 'cS2' = 'abc' is not a number; expected a value in phd"),
    ("cS1[phd],cS2[phd]\n5,800\n6\n", {}, r"bad.csv line 3: 1 fields; expected 2 as in the header"),
    ("cS1[phd],cS1[phd],cS2[phd]\n5,5,800\n", {}, r"column 'cS1' appears 2 times in the header"),
    ("# only a comment\n", {}, r"no header line; expected e.g. 'cS1\[phd\],cS2\[phd\]'"),
    ("a[phd],b[phd]\n5,800\n", {"columns": {"cS1": "a", "S2": "b"}},
     r"^columns.S2: unknown quantity; expected one of cS1, cS2$"),
    ("a[phd],b[phd]\n5,800\n", {"columns": ["cS1"]}, r"^columns: 'cS1' is not QUANTITY=VALUE; expected e.g. cS1=s1c$"),
    ("a[phd],b[phd]\n5,800\n", {"columns": {"cS1": "a", "cS2": "a"}},
     r"columns: cS1 and cS2 both read column 'a'; expected two columns"),
])
def test_bad_csv_is_one_line_naming_the_problem(tmp_path, text, kwargs, message):
    with pytest.raises(DataError, match=message) as err:
        read_events(_bad_csv(tmp_path, text), **kwargs)
    assert "\n" not in str(err.value)


def test_bad_parquet_and_root(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import uproot

    unit = {"unit": "phd"}
    schema = pa.schema([pa.field("cS1", pa.float64(), metadata=unit), pa.field("cS2", pa.float64(), metadata=unit)])
    pq.write_table(pa.table({"cS1": [1.0, None], "cS2": [800.0, 900.0]}, schema=schema), tmp_path / "null.parquet")
    with pytest.raises(DataError, match=r"null.parquet: column 'cS1' has 1 null value\(s\)"):
        read_events(tmp_path / "null.parquet")
    schema = pa.schema([pa.field("cS1", pa.float64(), metadata={"unit": "PE"}), pa.field("cS2", pa.float64(), metadata=unit)])
    pq.write_table(pa.table({"cS1": [1.0], "cS2": [800.0]}, schema=schema), tmp_path / "pe.parquet")
    with pytest.raises(DataError, match=r"column 'cS1' \(cS1\) has unit 'PE'; expected phd"):
        read_events(tmp_path / "pe.parquet")
    pq.write_table(pa.table({"cS1": ["a"], "cS2": [800.0]}), tmp_path / "str.parquet")
    with pytest.raises(DataError, match=r"column 'cS1' has type string; expected numbers"):
        read_events(tmp_path / "str.parquet")
    write_events(tmp_path / "neg.parquet", np.array([1.0, 2.0]), np.array([800.0, -1.0]))
    with pytest.raises(DataError, match=r"column 'cS2' \(cS2\) has 1 negative value\(s\), first at row 1: -1.0"):
        read_events(tmp_path / "neg.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"junk.parquet: not a readable Parquet file"):
        read_events(tmp_path / "junk.parquet")

    write_events(tmp_path / "ok.root", np.array([1.0]), np.array([800.0]), tree="events")
    with pytest.raises(DataError, match=r"ok.root: no TTree 'run2'; TTrees there: events"):
        read_events(tmp_path / "ok.root", tree="run2")
    with pytest.raises(DataError, match=r"ok.root TTree 'events': column 's1c' not found; columns there: cS1, cS2"):
        read_events(tmp_path / "ok.root", columns={"cS1": "s1c"})
    with uproot.recreate(tmp_path / "nounit.root") as f:
        f.mktree("events", {"cS1": np.float64, "cS2": np.float64}, title="cS1[phd]")
        f["events"].extend({"cS1": np.array([1.0]), "cS2": np.array([np.nan])})
    with pytest.raises(DataError, match=r"column 'cS2' \(cS2\) declares no unit; expected a token 'NAME\[phd\]' in the "
                                        r"TTree title"):
        read_events(tmp_path / "nounit.root")
    with pytest.raises(DataError, match=r"column 'cS2' \(cS2\) has 1 non-finite value\(s\), first at entry 0: nan"):
        read_events(tmp_path / "nounit.root", units={"cS2": "phd"})
    (tmp_path / "junk.root").write_text("not root")
    with pytest.raises(DataError, match=r"junk.root: not a readable ROOT file"):
        read_events(tmp_path / "junk.root")

    with pytest.raises(DataError, match=r"events.txt: suffix '.txt' names no event-list format; expected one of "
                                        r".csv, .parquet, .pq, .root \(or give the format\)"):
        read_events(tmp_path / "events.txt")
    with pytest.raises(DataError, match=r"missing.csv: no such event-list file"):
        read_events(tmp_path / "missing.csv")


def test_window_refuses_a_foreign_workspace(ws):
    bad = {**ws, "axes": [{**ws["axes"][0], "unit": "keV"}, ws["axes"][1]]}
    with pytest.raises(DataError, match=r"workspace axes \[\('cS1', 'keV'\), \('log10cS2', 'log10\(phd\)'\)\]: expected"):
        AnalysisWindow.from_workspace(bad)


def test_cli_events_reports_and_errors_in_one_line(ws, tmp_path, capsys):
    from lzflow.cli import main

    rows, cs1, cs2 = hand_made(ws)
    write_events(tmp_path / "ev.csv", cs1, cs2)
    (tmp_path / "ws.json").write_text(json.dumps(ws))
    assert main(["events", "--events", str(tmp_path / "ev.csv"), "--workspace", str(WS40),
                 "--out", str(tmp_path / "r.json"), "--run", "A"]) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["n_total"] == 13 and doc["n_outside"] == 9 and doc["run"] == "A"
    assert np.asarray(doc["counts"]).sum() == 4 and np.asarray(doc["counts"])[3, 8] == 2
    assert "13 events, 4 in the window, 9 outside" in capsys.readouterr().out
    _bad_csv(tmp_path, "cS1[phd],cS2[phd]\n5,-800\n")
    assert main(["events", "--events", str(tmp_path / "bad.csv"), "--workspace", str(tmp_path / "ws.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lzflow: error: ") and err.count("\n") == 1 and "has 1 negative value(s)" in err
