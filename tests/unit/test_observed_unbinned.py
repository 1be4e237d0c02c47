"""Observed results with the unbinned likelihood (lzflow.stats.unbinned_observed, lzflow.observedfit,
lzflow.observeddata's events file): the issue-13 physics targets on the default 40 GeV workspace
(tests/data/workspace_m40.json.gz) with simulated events, the observed q̃ against an iminuit fit of
the same NLL, and merge against the direct toy inversion of the same events.

The unbinned model is interpolated (order 2 on templates rebinned by 2, floor 1e-3), so its fits
differ from the binned ones; at order 0 without rebinning they coincide (checked)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from lzflow.eventlist import AnalysisWindow, EventList, select_window, write_events
from lzflow.observed import best_fit, discovery_pvalue, postfit_pulls
from lzflow.observeddata import (ObservedDataError, bin_observed, data_digest, events_digest, observed_counts,
                                 read_observed)
from lzflow.observedfit import BinnedObserved, observed_toy_limit
from lzflow.simulate import simulate
from lzflow.stats.teststat import evaluate_test_statistic
from lzflow.stats.toys import mass_key
from lzflow.stats.unbinned_model import UnbinnedModel
from lzflow.stats.unbinned_observed import UnbinnedObserved
from lzflow.workspace import workspace_model

DATA = Path(__file__).resolve().parents[1] / "data"
#: the unbinned likelihood of these tests (toy-job spec keys, lzflow.toyjobs.likelihood_settings)
LIKELIHOOD = {"likelihood": "unbinned", "interpolation_order": 2, "template_rebin": 2, "interpolation_floor": 1e-3}


@pytest.fixture(scope="module")
def ws():
    return json.loads(gzip.decompress((DATA / "workspace_m40.json.gz").read_bytes()))


@pytest.fixture(scope="module")
def umodel(ws):
    return UnbinnedModel.from_workspace(ws, LIKELIHOOD["interpolation_order"], LIKELIHOOD["template_rebin"],
                                        floor=LIKELIHOOD["interpolation_floor"])


def _events(ws, sigma_cm2: float, seed: int):
    data = simulate(ws, sigma_cm2, seed, "nominal")
    return select_window(EventList(data.cs1, data.cs2, "", ""), AnalysisWindow.from_workspace(ws))


def _observed(ws, model, sigma_cm2: float, seed: int) -> UnbinnedObserved:
    ev = _events(ws, sigma_cm2, seed)
    return UnbinnedObserved(model, ev.cs1, ev.log10cs2, workspace_model(ws).nominal_nuisance())


def _median_mu(ws) -> float:
    return ws["asymptotic"]["expected_sigma_cm2"]["0"] / ws["sigma_ref_cm2"]


def _limit(ws, obs):
    mu0 = _median_mu(ws)
    return observed_toy_limit(obs, np.geomspace(0.15 * mu0, 4.0 * mu0, 8), 300, 600, base_seed=3,
                              mass_key=mass_key(40.0), cl=0.9, method="clsb")


def test_order_zero_equals_the_binned_fits(ws):
    """Order 0 without rebinning: NLL_unbinned = NLL_binned + a constant of the data, so q̃, the
    best fit and its interval equal the binned ones on the same events (to 1e-7)."""
    ev = _events(ws, 3 * _median_mu(ws) * ws["sigma_ref_cm2"], 13)
    binned = workspace_model(ws)
    unb = UnbinnedObserved(UnbinnedModel.from_workspace(ws, 0, 1), ev.cs1, ev.log10cs2, binned.nominal_nuisance())
    b = BinnedObserved(binned, ev.flat_counts(), binned.nominal_nuisance())
    grid = np.geomspace(0.5, 6.0, 6) * _median_mu(ws)
    np.testing.assert_allclose(unb.q(grid), b.q(grid), rtol=0, atol=1e-7)
    fu, fb = best_fit(unb), best_fit(b)
    assert fu["mu_hat"] == pytest.approx(fb["mu_hat"], rel=1e-6)
    np.testing.assert_allclose(fu["interval_mu"], fb["interval_mu"], rtol=1e-6)


def test_observed_qtilde_equals_an_iminuit_fit_of_the_same_nll(ws, umodel):
    """(b) q̃(μ) of the events from the projected-Newton fits equals the one from iminuit Migrad
    fits of the same unbinned NLL (lzflow.stats.unbinned.fit_minuit_events) within 1e-6, at μ
    below, near and above μ̂; the reference NLL of the model agrees with the fitter's at the minimum."""
    obs = _observed(ws, umodel, 2 * _median_mu(ws) * ws["sigma_ref_cm2"], 21)
    ru, rm = obs.fit(), obs.fit_minuit()
    assert ru.nll[0] == pytest.approx(rm.nll[0], abs=1e-7)
    mu_hat = float(ru.params[0, 0])
    assert mu_hat > 0 and obs.nll(ru.params[0]) == pytest.approx(ru.nll[0], abs=1e-6)
    grid = mu_hat * np.array([0.5, 1.2, 2.0, 3.0, 4.0])
    q = obs.q(grid)
    ref = []
    for mu in grid:
        init = rm.params.copy()
        init[:, 0] = mu
        rc = obs.fit_minuit(mu_fixed=float(mu), init=init)
        ref.append(evaluate_test_statistic("qtilde", rc.nll, rm.nll, rm.params[:, 0], float(mu))[0])
    assert q[0] == 0.0 and np.all(q[1:] > 0.05)
    np.testing.assert_allclose(q, ref, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_background_only_unbinned_limit_inside_its_expected_band(ws, umodel):
    """(a) A simulated background-only dataset: the unbinned observed limit lies in the ±2σ band of
    unbinned toys generated at the same events' fits (seed 5, the first tried, as the binned test)."""
    obs = _observed(ws, umodel, 0.0, 5)
    inv = _limit(ws, obs)
    lo = inv.expected[-2] if np.isfinite(inv.expected[-2]) else 0.0
    assert lo <= inv.observed.mu <= inv.expected[2], (lo, inv.observed.mu, inv.expected)
    fit = best_fit(obs)
    assert fit["interval_mu"][0] == 0.0 or fit["interval_mu"][0] < 2 * (fit["interval_mu"][1] - fit["mu_hat"])


@pytest.mark.slow
def test_signal_at_three_times_the_median_is_found_unbinned(ws, umodel):
    """(a) A signal injected at 3× the median expected limit: the unbinned best-fit interval
    excludes 0, the local p-value from 10 000 unbinned background-only toys at the events' θ̂̂(0)
    is < 1e-3, the observed limit lies above the median expected one; the pulls are finite."""
    mu_inj = 3 * _median_mu(ws)
    obs = _observed(ws, umodel, mu_inj * ws["sigma_ref_cm2"], 13)
    fit = best_fit(obs)
    lo, hi = fit["interval_mu"]
    assert 0 < lo < fit["mu_hat"] < hi
    assert lo < mu_inj < hi + 2 * (hi - lo)
    disc = discovery_pvalue(obs, 10_000, 1, mass_key(40.0), 256)
    assert disc["p_value"] < 1e-3 and disc["significance"] > 3.09, disc
    assert disc["q0"] == pytest.approx(disc["significance_asymptotic"] ** 2)
    pulls = postfit_pulls(obs, fit["params"])
    assert all(np.isfinite(p["pull"]) and 0 < p["constraint"] <= 1.0 + 1e-6 for p in pulls["parameters"].values())
    inv = _limit(ws, obs)
    assert inv.observed.mu > inv.expected[0]


def _spec(ws, keep: bool) -> dict:
    axes = ws["axes"]
    return {"format": "csv", "columns": {"cS1": "cS1", "cS2": "cS2"}, "units": {}, "tree": "events",
            "window": {"cS1_edges": axes[0]["edges"], "log10cS2_edges": axes[1]["edges"]},
            **({"unbinned_events": True} if keep else {})}


def test_events_file_round_trip_digest_and_outside_accounting(tmp_path, ws):
    """bin-data with unbinned_events writes the in-window events beside the binned file, records
    their digest, counts the events outside the window; an edited events file is refused; a spec
    asking for events without an events file is refused."""
    from lzflow.io import write_json

    data = simulate(ws, 0.0, 2, "nominal")
    events = tmp_path / "events.csv"
    write_events(events, np.r_[data.cs1, 1.0, 90.0], np.r_[data.cs2, 1000.0, 1e4])  # two outside
    doc = bin_observed(_spec(ws, True), events, tmp_path / "observed_events.npz")
    assert doc["n_outside"] == 2 and doc["unbinned_events"]["n"] == doc["n_inside"] == data.n_events
    write_json(tmp_path / "observed.json", doc)
    back = read_observed(tmp_path / "observed.json")
    x, y = back["event_arrays"]
    ev = _events(ws, 0.0, 2)
    np.testing.assert_array_equal(x, ev.cs1)
    np.testing.assert_array_equal(y, ev.log10cs2)
    assert data_digest(back, True) == events_digest(x, y) != doc["counts_digest"] == data_digest(back, False)
    assert observed_counts(back, ws).sum() == x.size
    plain = bin_observed(_spec(ws, False), events)
    assert "unbinned_events" not in plain and data_digest(plain, False) == plain["counts_digest"]
    with pytest.raises(ObservedDataError, match="no events"):
        data_digest(plain, True)
    np.savez(tmp_path / "observed_events.npz", cS1=x, log10cS2=np.r_[y[:-1], y[-1] + 1e-9])
    with pytest.raises(ObservedDataError, match="does not match the digest"):
        read_observed(tmp_path / "observed.json")
    with pytest.raises(ObservedDataError, match="unbinned_events"):
        bin_observed(_spec(ws, True), events)


@pytest.mark.slow
def test_merge_on_unbinned_data_equals_the_direct_inversion_of_the_same_events(tmp_path, ws, umodel):
    """(c) Toy files made by the workflow's toy jobs (unbinned, --observed) and merged with the
    observed file and its events give the observed limit of the direct toy inversion of the same
    events (:func:`lzflow.observedfit.observed_toy_limit`: same seeds, blocks, generation points);
    the observed block says which likelihood was fitted; binned observed data (no events) for
    unbinned toy jobs are refused."""
    from lzflow.io import write_json
    from lzflow.merge import merge_limits
    from lzflow.toyjobs import TOY_BLOCK, run_toy_job, save_toy_job

    mu_inj = 3 * _median_mu(ws)
    data = simulate(ws, mu_inj * ws["sigma_ref_cm2"], 13, "nominal")
    events = tmp_path / "events.csv"
    write_events(events, data.cs1, data.cs2)
    doc = bin_observed(_spec(ws, True), events, tmp_path / "observed_events.npz")
    observed = tmp_path / "observed.json"
    write_json(observed, doc)
    common = {"n_jobs": 1, "job_index": 0, "seed": 7, "test_statistic": "qtilde", "observed_data": True, **LIKELIHOOD}
    ws = {**ws, "poi_grid": ws["poi_grid"][4::2]}  # 8 of the 20 points, around the limits
    grid = ws["poi_grid"]
    specs = [{**common, "hypothesis": "sb", "poi_index": k, "n_toys": 100} for k in range(len(grid))]
    specs.append({**common, "hypothesis": "b", "n_toys": 200})
    paths = []
    for spec in specs:
        name = f"toys/poi{spec['poi_index']}/job0.npz" if spec["hypothesis"] == "sb" else "toys/bonly/job0.npz"
        result, header = run_toy_job(ws, spec, observed)
        assert header["observed_digest"] == doc["unbinned_events"]["digest"]
        save_toy_job(tmp_path / "m40" / name, result, header)
        paths.append(tmp_path / "m40" / name)
    merge_spec = {"cl": 0.9, "method": "CLs+b", "power_threshold": 0.1587, "test_statistic": "qtilde",
                  "blind": False, "discovery_toys": 1000, "n_boot": 1}
    limit = merge_limits(ws, paths, merge_spec, observed)
    x, y = read_observed(observed)["event_arrays"]
    obs = UnbinnedObserved(umodel, x, y, workspace_model(ws).nominal_nuisance())
    inv = observed_toy_limit(obs, grid, 100, 200, base_seed=7, mass_key=mass_key(40.0), cl=0.9, method="clsb",
                             block_size=TOY_BLOCK)
    assert limit["limits"]["CLs+b"]["observed_mu"] == pytest.approx(inv.observed.mu, rel=1e-12)
    assert limit["q_obs"] == pytest.approx(obs.q(limit["poi_grid"]).tolist(), abs=1e-12)
    section = limit["observed"]
    assert section["likelihood"] == "unbinned"
    assert section["best_fit"]["mu"] == pytest.approx(best_fit(obs)["mu_hat"], rel=1e-12)
    assert section["events"]["unbinned_events"]["n"] == x.size == data.n_events
    binned = BinnedObserved(workspace_model(ws), observed_counts(doc, ws), obs.aux)
    assert abs(section["best_fit"]["mu"] - best_fit(binned)["mu_hat"]) > 1e-6  # the events were fitted, not bins
    plain = tmp_path / "plain" / "observed.json"
    write_json(plain, bin_observed(_spec(ws, False), events))
    with pytest.raises(ObservedDataError, match="no events"):
        run_toy_job(ws, specs[0], plain)


@pytest.mark.slow
def test_replay_of_a_toy_generated_at_the_events(tmp_path, ws):
    """``lzflow errors --replay`` of a toy made at observed events: with the observed file it is
    regenerated at the same θ̂̂ and refitted bit for bit; without it, or with other data, one line."""
    from lzflow.exceptions import ToyFileError
    from lzflow.fit_errors import replay_toy
    from lzflow.io import write_json
    from lzflow.toyjobs import run_toy_job, save_toy_job

    ws = {**ws, "poi_grid": ws["poi_grid"][8:10]}
    data = simulate(ws, 2 * _median_mu(ws) * ws["sigma_ref_cm2"], 4, "nominal")
    events = tmp_path / "events.csv"
    write_events(events, data.cs1, data.cs2)
    observed, other = tmp_path / "observed.json", tmp_path / "other" / "observed.json"
    write_json(observed, bin_observed(_spec(ws, True), events, tmp_path / "observed_events.npz"))
    spec = {"n_jobs": 1, "job_index": 0, "seed": 7, "test_statistic": "qtilde", "observed_data": True,
            "hypothesis": "sb", "poi_index": 1, "n_toys": 8, **LIKELIHOOD}
    result, header = run_toy_job(ws, spec, observed)
    toy_file = tmp_path / "m40" / "toys" / "poi1" / "job0.npz"
    save_toy_job(toy_file, result, header)
    replay = replay_toy(ws, toy_file, 5, observed)
    assert replay["identical"] and replay["stored"]["q"] == result.q[5].tolist()
    with pytest.raises(ToyFileError, match="expected --observed"):
        replay_toy(ws, toy_file, 5)
    write_events(tmp_path / "other.csv", data.cs1[:-1], data.cs2[:-1])
    write_json(other, bin_observed(_spec(ws, True), tmp_path / "other.csv", other.parent / "observed_events.npz"))
    with pytest.raises(ToyFileError, match="expected the observed file the toys were made at"):
        replay_toy(ws, toy_file, 5, other)
