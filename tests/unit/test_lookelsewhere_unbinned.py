"""The global p-value over masses with the unbinned likelihood (lzflow.stats.lookelsewhere_unbinned)
on the quick 10 and 40 GeV workspaces (20 x 20 templates, interpolation order 0) and one seeded
event list with 40 GeV signal: one mass on its own seed stream reproduces its local discovery
toys exactly, on the global stream within binomial errors; two masses give p_global >= the
smallest local p, a trials factor >= 1, the same q0 as each mass's observed fit, the same datasets
for any thread count; different fit densities are refused; ``lzflow global-pvalue`` fits the
events and checks q0 against each limit.json."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from lzflow.observed import DISCOVERY_POI_INDEX, discovery_pvalue
from lzflow.stats.lookelsewhere import LookElsewhereError
from lzflow.stats.lookelsewhere_unbinned import (
    check_same_unbinned_background,
    global_pvalue_unbinned,
    global_toys_unbinned,
)
from lzflow.stats.toys import mass_key
from lzflow.stats.unbinned_model import UnbinnedModel, UnbinnedToySampler
from lzflow.stats.unbinned_observed import UnbinnedObserved

DATA = Path(__file__).resolve().parents[1] / "data"
#: injected 40 GeV signal events (expected, before the Poisson draw): q0 ~ 1-4 on this list
N_SIGNAL = 6.0


def _ws(mass: int) -> dict:
    return json.loads(gzip.decompress((DATA / f"workspace_quick_m{mass}.json.gz").read_bytes()))


@pytest.fixture(scope="module")
def setup():
    """The two masses' order-0 unbinned models and one event list drawn at μ N_sig = 6 (40 GeV), θ = 1."""
    wss = {10.0: _ws(10), 40.0: _ws(40)}
    models = {m: UnbinnedModel.from_workspace(ws, 0) for m, ws in wss.items()}
    m40 = models[40.0]
    gen = np.r_[N_SIGNAL / m40.truth.signal_total, np.ones(m40.n_bkg)]
    events = UnbinnedToySampler(m40, gen).draw(5, 1, 1, "sb", np.arange(1))
    x, y = events.events(0)
    return wss, models, x.copy(), y.copy(), np.ones(m40.n_bkg)


def test_one_mass_is_its_local_discovery_pvalue(setup):
    """One mass on its own discovery stream: the global datasets are its local discovery toys
    (lzflow.observed.discovery_pvalue of the UnbinnedObserved events) — the same q0 and count;
    on the global stream p_global agrees with the local p within 3 binomial errors."""
    _, models, x, y, aux = setup
    key = mass_key(40.0)
    one = {40.0: models[40.0]}
    res = global_pvalue_unbinned(one, x, y, aux, 256, 11, mass_key=key, poi_index=DISCOVERY_POI_INDEX)
    disc = discovery_pvalue(UnbinnedObserved(models[40.0], x, y, aux), 256, 11, key, 256)
    assert res["likelihood"] == "unbinned" and res["n_toys_used"] == disc["n_toys_used"] == 256
    assert res["q0_observed"][0] == disc["q0"] and 0.5 < disc["q0"] < 8.0
    assert res["global"]["toys_at_or_above"] == disc["toys_at_or_above"] > 3
    assert res["global"]["p_value"] == res["local_at_max"]["p_value"] == disc["p_value"]
    assert res["trials_factor"] == 1.0
    glob = global_pvalue_unbinned(one, x, y, aux, 256, 11)  # the global stream: other datasets
    p, err = glob["global"]["p_value"], glob["global"]["p_value_error"]
    assert glob["seed_stream"] == [11, 0, 999, 1] and abs(p - disc["p_value"]) < 3 * np.sqrt(2.0) * err  # two independent ensembles


def test_two_masses(setup):
    """10 and 40 GeV: the largest excess at 40 GeV (where the signal is), each q0 the observed fit's,
    p_global >= the local p at the maximum, trials factor >= 1; threads do not change the datasets."""
    _, models, x, y, aux = setup
    res = global_pvalue_unbinned(models, x, y, aux, 256, 3)
    q_fit = [float(UnbinnedObserved(models[m], x, y, aux).q([0.0], "q0")[0]) for m in (10.0, 40.0)]
    assert res["q0_observed"] == pytest.approx(q_fit, rel=0, abs=0)
    assert res["masses_GeV"] == [10.0, 40.0] and res["max_mass_GeV"] == 40.0
    assert res["global"]["p_value"] >= res["local_at_max"]["p_value"] > 0
    assert res["trials_factor"] >= 1.0 and res["n_toys_used"] == 256
    obs = UnbinnedObserved(models[10.0], x, y, aux)
    one = global_toys_unbinned(list(models.values()), obs, 100, 3, block_size=32, n_threads=1)
    two = global_toys_unbinned(list(models.values()), obs, 100, 3, block_size=32, n_threads=2)
    assert np.array_equal(one.q0, two.q0) and np.array_equal(one.good, two.good) and one.good.all()
    assert np.all(one.q0 >= 0) and np.any(one.q0[:, 0] != one.q0[:, 1])


def test_different_fit_densities_are_refused(setup):
    wss, models, *_ = setup
    with pytest.raises(LookElsewhereError, match=r"unbinned model at 40 GeV differs from 10 GeV's \(order 0 vs 1\)"):
        check_same_unbinned_background({10.0: models[10.0], 40.0: UnbinnedModel.from_workspace(wss[40.0], 1)})
    with pytest.raises(LookElsewhereError, match=r"unbinned model at 40 GeV differs from 10 GeV's \(template_rebin"):
        check_same_unbinned_background({10.0: models[10.0], 40.0: UnbinnedModel.from_workspace(wss[40.0], 0, 2)})


def test_infeasible_observed_fit_is_refused(setup):
    """Order 3 with ROOT's clipping (floor 0): the interpolants vanish under some of these events, the
    observed q0 is NaN at both masses — refused in one line before any dataset is drawn."""
    wss, _, x, y, aux = setup
    cubic = {m: UnbinnedModel.from_workspace(ws, 3) for m, ws in wss.items()}
    with pytest.raises(LookElsewhereError, match=r"observed q0 at 10, 40 GeV is not finite"):
        global_pvalue_unbinned(cubic, x, y, aux, 8, 1)


# ----------------------------------------------------------------------------- lzflow global-pvalue
UNBINNED_SPEC = {"likelihood": "unbinned", "interpolation_order": 0, "interpolation_floor": 0.0, "template_rebin": 1}


def _analysis(tmp_path, setup):
    """The binned list with its events beside it (lzflow.observeddata.write_observed_events) and each
    mass's limit.json with its unbinned discovery block (as merge writes it)."""
    from lzflow.observeddata import DATA_FORMAT, observed_digest, write_observed_events

    wss, models, x, y, aux = setup
    counts = np.histogram2d(x, y, bins=[np.asarray(a["edges"]) for a in wss[40.0]["axes"]])[0].astype(np.int64)
    record = write_observed_events(tmp_path / "observed_events.npz", x, y)
    data = {"format": DATA_FORMAT, "counts": counts.tolist(), "counts_digest": observed_digest(counts),
            "window": {"cS1_edges": wss[40.0]["axes"][0]["edges"], "log10cS2_edges": wss[40.0]["axes"][1]["edges"]},
            "events_file": "x.csv", "events_sha256": "0" * 64, "n_total": int(x.size), "n_inside": int(x.size),
            "n_outside": 0, "outside_by_reason": {}, "unbinned_events": record,
            "settings": {"format": "csv", "columns": {}, "units": {}, "tree": "events"}}
    paths = {"data": tmp_path / "observed.json"}
    paths["data"].write_text(json.dumps(data))
    for m, ws in wss.items():
        disc = discovery_pvalue(UnbinnedObserved(models[m], x, y, aux), 64, 11, mass_key(m), 256)
        limit = {"mass_GeV": ws["mass_GeV"], "observed": {"likelihood": "unbinned", "discovery": disc, "events": {
            "counts_digest": data["counts_digest"], "unbinned_events": record}}}
        for name, doc in ((f"ws{m:g}", ws), (f"lim{m:g}", limit)):
            paths[name] = tmp_path / f"{name}.json"
            paths[name].write_text(json.dumps(doc))
    return paths


def test_global_pvalue_command_unbinned(tmp_path, setup):
    """lzflow global-pvalue with likelihood unbinned: the events' q0 per mass equal to each limit.json's
    (checked inside, and here), "likelihood": "unbinned" without the old binned note; a binned spec on
    unbinned limits, or limits of other events, are refused."""
    from lzflow.cli import main
    from lzflow.exceptions import MergeError
    from lzflow.globalcli import global_document
    from lzflow.observeddata import read_observed

    paths = _analysis(tmp_path, setup)
    spec = {"blind": False, "n_toys": 128, "seed": 11, **UNBINNED_SPEC}
    out = tmp_path / "global_pvalue.json"
    args = ["global-pvalue", "--workspaces", str(paths["ws10"]), str(paths["ws40"]), "--limits", str(paths["lim10"]),
            str(paths["lim40"]), "--observed", str(paths["data"]), "--out", str(out)]
    assert main([*args, "--spec", json.dumps(spec), "--threads", "2"]) == 0
    doc = json.loads(out.read_text())
    assert doc["likelihood"] == "unbinned" and "note" not in doc and doc["max_mass_GeV"] == 40.0
    lims = [json.loads(paths[f"lim{m}"].read_text()) for m in (10, 40)]
    assert [m["q0"] for m in doc["per_mass"]] == [m["local_q0"] for m in doc["per_mass"]] == \
        [lim["observed"]["discovery"]["q0"] for lim in lims]
    assert doc["global"]["p_value"] >= doc["local_at_max"]["p_value"] and doc["trials_factor"] >= 1.0
    assert doc["events"]["unbinned_events"]["digest"] == lims[0]["observed"]["events"]["unbinned_events"]["digest"]
    wss = [json.loads(paths[f"ws{m}"].read_text()) for m in (10, 40)]
    data = read_observed(paths["data"])
    assert doc == json.loads(json.dumps(global_document(wss, lims, ["a", "b"], data, spec)))  # threads: same
    with pytest.raises(MergeError, match="a: observed likelihood 'unbinned', the global p-value spec 'binned'"):
        global_document(wss, lims, ["a", "b"], data, {"blind": False, "n_toys": 8, "seed": 1})
    lims[1]["observed"]["events"]["unbinned_events"] = {**lims[1]["observed"]["events"]["unbinned_events"],
                                                        "digest": "0123456789abcdef"}
    with pytest.raises(MergeError, match="b: observed unbinned_events digest 0123456789abcdef, the events have"):
        global_document(wss, lims, ["a", "b"], data, spec)
    with pytest.raises(MergeError, match=r"missing keys \['interpolation_order'"):
        global_document(wss, lims, ["a", "b"], data, {"blind": False, "n_toys": 8, "seed": 1,
                                                       "likelihood": "unbinned"})
