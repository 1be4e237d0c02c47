"""Pseudo-datasets (lzflow.simulate, ``lzflow simulate-data``): round trips through every format,
reproducibility from the seed, the injected signal's statistics, nuisance draws, bad requests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from lzflow.eventlist import DataError, load_events, read_events
from lzflow.simulate import load_workspace, simulate, write_pseudo_data

WS40 = Path(__file__).resolve().parents[1] / "data" / "workspace_m40.json.gz"
FORMATS = ("csv", "parquet", "root")


@pytest.fixture(scope="module")
def ws():
    return load_workspace(WS40)[0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_gives_the_drawn_counts(ws, tmp_path, fmt):
    data = simulate(ws, 1e-46, seed=11)  # mu = 0.1: ~370 signal events
    assert data.signal_events > 0 and data.n_events == data.source_counts.sum()
    write_pseudo_data(tmp_path / f"d.{fmt}", data)
    obs = load_events(tmp_path / f"d.{fmt}", ws)
    assert obs.n_outside == 0 and obs.n_total == data.n_events
    np.testing.assert_array_equal(obs.counts, data.source_counts.sum(axis=0))
    back = read_events(tmp_path / f"d.{fmt}")
    np.testing.assert_array_equal(back.cs1, data.cs1)  # the values themselves, not only their bins
    np.testing.assert_array_equal(back.cs2, data.cs2)


def test_same_seed_same_bytes_and_values(ws, tmp_path):
    from lzflow.cli import main

    args = ["simulate-data", "--workspace", str(WS40), "--seed", "5", "--sigma-cm2", "2e-47"]
    for name in ("a", "b"):
        for fmt in FORMATS:
            assert main(args + ["--out", str(tmp_path / f"{name}.{fmt}")]) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    for fmt in FORMATS:
        a, b = read_events(tmp_path / f"a.{fmt}"), read_events(tmp_path / f"b.{fmt}")
        np.testing.assert_array_equal(a.cs1, b.cs1)
        np.testing.assert_array_equal(a.cs2, b.cs2)
    same = read_events(tmp_path / "a.csv")
    np.testing.assert_array_equal(same.cs1, read_events(tmp_path / "a.root").cs1)  # every format, one dataset
    assert main(args[:4] + ["6"] + args[5:] + ["--out", str(tmp_path / "c.csv")]) == 0
    assert not np.array_equal(read_events(tmp_path / "c.csv").cs1[:50], same.cs1[:50])
    header = (tmp_path / "a.csv").read_text().splitlines()[:2]
    meta = json.loads(header[0].removeprefix("# lzflow: "))
    assert header[1] == "cS1[phd],cS2[phd]"
    assert meta["seed"] == 5 and meta["sigma_cm2"] == 2e-47 and meta["mu"] == pytest.approx(0.02)
    assert meta["nuisance"] == "nominal" and meta["workspace_sha256"] == load_workspace(WS40)[1]


def test_injected_signal_matches_mu_times_s(ws):
    """Signal events over 40 seeds: mean = μ·S within 4 standard errors (measured 375.05 against
    369.64, 1.8 of them); backgrounds are the same events as the background-only dataset of the
    seed (streams per source)."""
    sigma = 1e-46
    mu_s = sigma / ws["sigma_ref_cm2"] * ws["signal"]["expected_events"]  # 369.6 events
    n_sig, n_bkg = [], []
    for seed in range(40):
        data = simulate(ws, sigma, seed)
        n_sig.append(data.signal_events)
        n_bkg.append(data.source_counts[1:].sum())
        if seed < 3:
            bonly = simulate(ws, 0.0, seed)
            assert bonly.signal_events == 0
            np.testing.assert_array_equal(bonly.source_counts[1:], data.source_counts[1:])
            assert data.n_events == bonly.n_events + data.signal_events
            assert set(bonly.cs1.tolist()) <= set(data.cs1.tolist())
    assert data.expected[0].sum() == pytest.approx(mu_s, rel=1e-12)
    assert abs(np.mean(n_sig) - mu_s) < 4 * np.sqrt(mu_s / 40)
    b_total = sum(b["expected_events"] for b in ws["backgrounds"])
    assert abs(np.mean(n_bkg) - b_total) < 4 * np.sqrt(b_total / 40)
    # Poisson: variance = mean (40 seeds: the ratio's standard deviation is sqrt(2/39) = 0.23; measured 0.59)
    assert 0.3 < np.var(n_sig, ddof=1) / mu_s < 1.7


def test_events_are_uniform_within_their_bins(ws):
    """Fractional position inside the bin, in cS1 and in log10 cS2: uniform (KS)."""
    from scipy.stats import kstest

    data = simulate(ws, 1e-45, seed=3)  # ~3700 signal + ~3100 background events
    x = np.asarray(ws["axes"][0]["edges"])
    y = np.asarray(ws["axes"][1]["edges"])
    ly = np.log10(data.cs2)
    fx = (data.cs1 - x[0]) / (x[1] - x[0]) % 1.0
    fy = (ly - y[0]) / (y[1] - y[0]) % 1.0
    assert kstest(fx, "uniform").pvalue > 1e-3
    assert kstest(fy, "uniform").pvalue > 1e-3
    # shuffled: the file order is not the bin order
    assert not np.all(np.diff(np.searchsorted(x, data.cs1, "right")) >= 0)


def test_drawn_nuisance_parameters(ws):
    thetas = []
    for seed in range(60):
        data = simulate(ws, 0.0, seed, nuisance="drawn")
        theta = np.array([data.parameters[f"theta_{b['name']}"] for b in ws["backgrounds"]])
        totals = data.expected[1:].sum(axis=(1, 2))
        np.testing.assert_allclose(totals, theta * [b["expected_events"] for b in ws["backgrounds"]], rtol=1e-12)
        thetas.append(theta)
    thetas = np.array(thetas)
    rel = np.array([b["rel_unc"] for b in ws["backgrounds"]])
    assert np.all(thetas >= 0)
    ok = rel <= 0.2  # no clipping at 0 to speak of: mean 1, sd r_b
    assert np.all(np.abs(thetas[:, ok].mean(axis=0) - 1) < 4 * rel[ok] / np.sqrt(60))
    assert np.all((thetas[:, ok].std(axis=0, ddof=1) / rel[ok] > 0.65) & (thetas[:, ok].std(axis=0, ddof=1) / rel[ok] < 1.35))
    nominal = simulate(ws, 0.0, 0)
    assert set(nominal.parameters.values()) == {1.0} and nominal.clipped_bins == 0


def _systematics_workspace():
    """Two backgrounds on a 4x3 grid and one shape systematic acting on the first."""
    sig = np.arange(12, dtype=float).reshape(4, 3) + 1
    b1 = np.full((4, 3), 20.0)
    b2 = np.full((4, 3), 5.0)
    up, down = b1 * np.linspace(0.8, 1.2, 3), b1 * np.linspace(1.2, 0.8, 3)
    return {"format": "lzflow-workspace-1", "mass_GeV": 30.0, "sigma_ref_cm2": 1e-45,
            "axes": [{"name": "cS1", "unit": "phd", "edges": [3.0, 10.0, 20.0, 40.0, 80.0]},
                     {"name": "log10cS2", "unit": "log10(phd)", "edges": [2.5, 3.0, 4.0, 5.0]}],
            "signal": {"name": "wimp", "expected_events": sig.sum(), "empty": False, "template": sig.tolist()},
            "backgrounds": [{"name": "A", "expected_events": 240.0, "rel_unc": 0.1, "template": b1.tolist()},
                            {"name": "B", "expected_events": 60.0, "rel_unc": 0.0, "template": b2.tolist()}],
            "shape_systematics": [{"name": "g1", "parameter": "alpha_g1", "physical": {},
                                   "templates": {"A": {"1": up.tolist(), "-1": down.tolist()}}}]}


def test_shape_systematics_are_drawn_and_morph_the_templates(tmp_path):
    from lzflow.workspace import workspace_model

    ws = _systematics_workspace()
    data = simulate(ws, 2e-46, seed=4, nuisance="drawn")
    alpha = data.parameters["alpha_g1"]
    assert alpha != 0.0 and data.parameters["theta_B"] == 1.0  # a fixed background is not drawn
    model = workspace_model(ws)
    theta = np.array([data.parameters["theta_A"], 1.0])
    np.testing.assert_allclose(data.expected.sum(axis=0).ravel(), model.expected(0.2, np.r_[theta, alpha]), rtol=1e-12)
    np.testing.assert_allclose(data.expected[2], 5.0)  # B: untouched
    write_pseudo_data(tmp_path / "s.parquet", data)
    np.testing.assert_array_equal(load_events(tmp_path / "s.parquet", ws).counts, data.source_counts.sum(axis=0))


@pytest.mark.parametrize("kwargs, message", [
    ({"sigma_cm2": -1e-47}, r"sigma_cm2: -1e-47; expected a finite cross section >= 0 in cm2 \(0: background only\)"),
    ({"sigma_cm2": float("nan")}, r"sigma_cm2: nan; expected a finite cross section"),
    ({"seed": -3}, r"seed: -3; expected an integer >= 0"),
    ({"seed": 1.5}, r"seed: 1.5; expected an integer >= 0"),
    ({"nuisance": "profiled"}, r"nuisance: 'profiled'; expected one of nominal, drawn"),
])
def test_bad_requests(ws, kwargs, message):
    args = {"sigma_cm2": 0.0, "seed": 1, **kwargs}
    with pytest.raises(DataError, match=message):
        simulate(ws, **args)


def test_bad_workspace_and_cli_errors(tmp_path, capsys):
    from lzflow.cli import main

    (tmp_path / "x.json").write_text('{"format": "other"}')
    with pytest.raises(DataError, match=r"x.json: format 'other'; expected lzflow-workspace-1 or lzflow-workspace-2"):
        load_workspace(tmp_path / "x.json")
    (tmp_path / "y.json.gz").write_bytes(gzip.compress(b"{not json"))
    with pytest.raises(DataError, match=r"y.json.gz: not a workspace JSON"):
        load_workspace(tmp_path / "y.json.gz")
    assert main(["simulate-data", "--workspace", str(WS40), "--seed", "1", "--sigma-cm2", "-1",
                 "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert err == "lzflow: error: sigma_cm2: -1.0; expected a finite cross section >= 0 in cm2 (0: background only)\n"
    assert not (tmp_path / "o.csv").exists()
    assert main(["simulate-data", "--workspace", str(WS40), "--seed", "1", "--background-only",
                 "--out", str(tmp_path / "o.txt")]) == 2
    assert "o.txt: suffix '.txt' names no event-list format" in capsys.readouterr().err
    assert main(["simulate-data", "--workspace", str(WS40), "--seed", "1", "--background-only", "--format", "root",
                 "--tree", "run1", "--out", str(tmp_path / "o.dat")]) == 0
    assert read_events(tmp_path / "o.dat", fmt="root", tree="run1").cs1.size > 3000
    with pytest.raises(SystemExit):  # argparse: a cross section or --background-only, not both
        main(["simulate-data", "--workspace", str(WS40), "--seed", "1", "--background-only", "--sigma-cm2", "1e-47",
              "--out", str(tmp_path / "o.csv")])


@pytest.mark.parametrize("interpolation", ["log_quartic", "log_pchip", "log_code4p"])
def test_multiplicative_morphings_scale_the_morphed_template_by_its_rate(interpolation):
    """With every log morphing a drawn rate θ ≠ 1 multiplies the morphed template (ν_b = θ_b T_b(α));
    the per-source expectations add up to the model's ν (they used to be refused for all but log_code4p)."""
    from lzflow.workspace import workspace_model

    ws = _systematics_workspace()
    b1 = np.asarray(ws["backgrounds"][0]["template"])
    tmpl = ws["shape_systematics"][0]["templates"]["A"]
    tmpl["2"], tmpl["-2"] = (b1 * np.linspace(0.7, 1.3, 3)).tolist(), (b1 * np.linspace(1.3, 0.7, 3)).tolist()
    ws["shape_interpolation"] = interpolation
    data = simulate(ws, 2e-46, seed=4, nuisance="drawn")
    model = workspace_model(ws)
    theta_a, alpha = data.parameters["theta_A"], data.parameters["alpha_g1"]
    assert theta_a != 1.0 and alpha != 0.0
    np.testing.assert_allclose(data.expected.sum(axis=0).ravel(),
                               model.expected(0.2, np.r_[theta_a, 1.0, alpha]), rtol=1e-12)
    np.testing.assert_allclose(data.expected[1].ravel(), theta_a * model.morph.templates(np.array([alpha]))[1],
                               rtol=1e-12)
