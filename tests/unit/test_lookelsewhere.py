"""The global p-value over masses (lzflow.stats.lookelsewhere): one mass gives its local p-value on
the same toys, identical masses give the local p-value, independent masses give
1 − Π(1 − p_local,m) (Gross & Vitells 2010), and masses with different backgrounds are refused."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from lzflow.observed import DISCOVERY_POI_INDEX, discovery_pvalue
from lzflow.observedfit import BinnedObserved
from lzflow.stats.lookelsewhere import (
    LookElsewhereError,
    check_same_background,
    global_pvalue,
    global_toys,
    gross_vitells,
    upcrossings,
)
from lzflow.stats.model import BinnedModel
from lzflow.stats.toys import mass_key
from lzflow.workspace import workspace_model

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def m40() -> BinnedModel:
    return workspace_model(json.loads(gzip.decompress((DATA / "workspace_m40.json.gz").read_bytes())))


def _data(model: BinnedModel, mu: float) -> tuple[np.ndarray, np.ndarray]:
    """Asimov background plus μ × the signal (unrounded): q₀ ≈ 4 at μ = 0.0021 for the 40 GeV workspace."""
    return model.asimov(0.0)[0] + mu * model.signal, model.nominal_nuisance()


def test_one_mass_is_its_local_discovery_pvalue(m40):
    """With one mass and its own seed stream the global datasets are the local discovery toys
    (lzflow.observed.discovery_pvalue): the same q₀, the same count, p_global = p_local, trials 1."""
    counts, aux = _data(m40, 0.0021)
    key = mass_key(40.0)
    res = global_pvalue({40.0: m40}, counts, aux, 2048, 11, mass_key=key, poi_index=DISCOVERY_POI_INDEX)
    disc = discovery_pvalue(BinnedObserved(m40, counts, aux), 2048, 11, key, 256)
    assert res["q0_observed"][0] == pytest.approx(disc["q0"], rel=1e-12)
    assert 2.0 < disc["q0"] < 6.0
    assert res["global"]["toys_at_or_above"] == disc["toys_at_or_above"] > 5
    assert res["global"]["p_value"] == res["local_at_max"]["p_value"] == pytest.approx(disc["p_value"], rel=1e-12)
    assert res["trials_factor"] == 1.0
    assert res["global"]["p_value_error"] == pytest.approx(
        np.sqrt(disc["p_value"] * (1 - disc["p_value"]) / 2048), rel=1e-12)


def test_identical_masses_give_the_local_pvalue(m40):
    """Three masses with the same signal template: q₀ the same at each, p_global = p_local."""
    counts, aux = _data(m40, 0.0021)
    res = global_pvalue({10.0: m40, 20.0: m40, 40.0: m40}, counts, aux, 1024, 3)
    assert res["q0_observed"][0] == res["q0_observed"][1] == res["q0_observed"][2]
    assert res["global"]["p_value"] == res["local_at_max"]["p_value"] > 0
    assert res["trials_factor"] == 1.0
    gv = res["gross_vitells"]  # no upcrossing between identical masses: the asymptotic local p-value
    assert gv["mean_upcrossings"] == 0.0 and gv["p_value"] == res["local_at_max"]["p_value_asymptotic"]


def _disjoint_models(k: int, bins_per_mass: int = 4, bkg: float = 2.0, sig: float = 5.0) -> list[BinnedModel]:
    """K masses whose signals sit in disjoint bins over a fixed flat background (rel_unc 0): their q₀
    on a background-only dataset are independent."""
    n = k * bins_per_mass
    models = []
    for j in range(k):
        s = np.zeros(n)
        s[j * bins_per_mass:(j + 1) * bins_per_mass] = sig
        models.append(BinnedModel(signal=s, backgrounds=np.full((1, n), bkg), names=("flat",), rel_unc=[0.0]))
    return models


def test_independent_masses_follow_one_minus_product():
    """K = 5 independent masses: p_global = 1 − Π_m (1 − p_local,m(c)) at the observed largest q₀ c,
    with p_local,m from the same datasets, within 3 binomial errors; ≈ 1 − (1 − p_local)^K; and
    p_global > 3 p_local (the trials factor)."""
    k, n_toys = 5, 4000
    models = _disjoint_models(k)
    counts = np.full(k * 4, 2.0)
    counts[:4] = [4.0, 3.0, 3.0, 3.0]  # an excess in the first mass's bins
    aux = models[0].nominal_nuisance()
    res = global_pvalue(dict(zip([5.0, 10.0, 20.0, 40.0, 80.0], models)), counts, aux, n_toys, 5)
    assert res["max_mass_GeV"] == 5.0 and res["n_toys_used"] == n_toys
    c = res["q0_max_observed"]
    toys = global_toys(models, counts, aux, n_toys, 5)
    p_m = (toys.q0 >= c).mean(axis=0)
    expected = 1.0 - np.prod(1.0 - p_m)
    p_g, err = res["global"]["p_value"], res["global"]["p_value_error"]
    assert abs(p_g - expected) < 3 * err
    p_l = res["local_at_max"]["p_value"]
    assert p_l == pytest.approx(p_m[0], rel=1e-12)
    assert 0.01 < p_l < 0.1
    assert abs(p_g - (1.0 - (1.0 - p_l) ** k)) < 3 * err + 0.2 * p_l  # p_local differs between masses by its MC error
    assert res["trials_factor"] > 3.0
    assert res["global"]["significance"] < res["local_at_max"]["significance"]


def test_upcrossings_and_gross_vitells():
    q0 = np.array([[0.0, 2.0, 0.5, 3.0], [1.0, 1.0, 1.0, 1.0], [0.9, 0.2, 0.0, 4.0]])
    assert upcrossings(q0, 1.0).tolist() == [2, 0, 1]  # a row starting above the level has no upcrossing there
    # 1/2 P(chi2_1 > 9) + 2 e^{-(9 - 1)/2}
    assert gross_vitells(9.0, 2.0, 1.0) == pytest.approx(0.0013498980316301 + 2.0 * np.exp(-4.0), rel=1e-12)
    assert gross_vitells(0.0, 5.0, 1.0) == 1.0


def test_threads_do_not_change_the_datasets():
    models = _disjoint_models(3)
    counts, aux = np.full(12, 2.0), models[0].nominal_nuisance()
    one = global_toys(models, counts, aux, 700, 9, block_size=128, n_threads=1)
    two = global_toys(models, counts, aux, 700, 9, block_size=128, n_threads=2)
    assert np.array_equal(one.q0, two.q0) and np.array_equal(one.good, two.good)


def test_different_backgrounds_are_refused(m40):
    other = BinnedModel(signal=m40.signal, backgrounds=m40.backgrounds * 1.01, names=m40.names, rel_unc=m40.rel_unc,
                        bin_shape=m40.bin_shape)
    with pytest.raises(LookElsewhereError, match=r"background model at 20 GeV differs from 40 GeV's \(background "):
        check_same_background({40.0: m40, 20.0: other})
    widths = BinnedModel(signal=m40.signal, backgrounds=m40.backgrounds, names=m40.names, rel_unc=m40.rel_unc * 2,
                         bin_shape=m40.bin_shape)
    with pytest.raises(LookElsewhereError, match="rel_unc"):
        check_same_background({40.0: m40, 20.0: widths})
    with pytest.raises(LookElsewhereError, match=r"bin shape \(40, 40\) vs \(1600,\)"):
        check_same_background({40.0: m40, 20.0: BinnedModel(signal=m40.signal, backgrounds=m40.backgrounds,
                                                            names=m40.names, rel_unc=m40.rel_unc)})
    check_same_background({40.0: m40, 20.0: m40.with_signal(m40.signal[::-1].copy())})  # signal may differ


# ----------------------------------------------------------------------------- lzflow global-pvalue
def _analysis(tmp_path, m40):
    """Two masses sharing the 40 GeV workspace's backgrounds (the second signal: the 40 GeV template
    mirrored in log10 cS2), a seeded dataset with a 40 GeV excess, each mass's limit.json with its
    discovery block (lzflow.observed.discovery_pvalue, as merge writes it)."""
    from lzflow.observeddata import DATA_FORMAT, observed_digest

    ws40 = json.loads(gzip.decompress((DATA / "workspace_m40.json.gz").read_bytes()))
    ws20 = json.loads(json.dumps(ws40))
    ws20["mass_GeV"] = 20.0
    ws20["signal"]["template"] = np.asarray(ws40["signal"]["template"])[:, ::-1].tolist()
    nu = m40.asimov(0.0)[0] + 0.0025 * m40.signal
    counts = np.random.default_rng(5).poisson(nu).reshape(m40.bin_shape)
    data = {"format": DATA_FORMAT, "counts": counts.tolist(), "counts_digest": observed_digest(counts),
            "window": {"cS1_edges": ws40["axes"][0]["edges"], "log10cS2_edges": ws40["axes"][1]["edges"]},
            "events_file": "x.csv", "events_sha256": "0" * 64, "n_total": int(counts.sum()),
            "n_inside": int(counts.sum()), "n_outside": 0, "outside_by_reason": {},
            "settings": {"format": "csv", "columns": {}, "units": {}, "tree": "events"}}
    limits = []
    for ws in (ws20, ws40):
        model = workspace_model(ws)
        disc = discovery_pvalue(BinnedObserved(model, counts.ravel().astype(float), model.nominal_nuisance()), 300,
                                11, mass_key(ws["mass_GeV"]), 256)
        limits.append({"mass_GeV": ws["mass_GeV"],
                       "observed": {"events": {"counts_digest": data["counts_digest"]}, "discovery": disc}})
    paths = {}
    for name, doc in (("ws20", ws20), ("ws40", ws40), ("lim20", limits[0]), ("lim40", limits[1]), ("data", data)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(doc))
    return [ws20, ws40], limits, data, paths


def test_global_pvalue_command(tmp_path, m40):
    """lzflow global-pvalue on two masses: the largest excess where the signal was injected, each
    mass's q0 equal to its limit.json's, p_global >= p_local, the file written; the report's text."""
    from lzflow.cli import main
    from lzflow.globalcli import global_document, report_context

    wss, limits, data, paths = _analysis(tmp_path, m40)
    spec = {"blind": False, "n_toys": 300, "seed": 11}
    out = tmp_path / "global_pvalue.json"
    assert main(["global-pvalue", "--spec", json.dumps(spec), "--workspaces", str(paths["ws20"]), str(paths["ws40"]),
                 "--limits", str(paths["lim20"]), str(paths["lim40"]), "--observed", str(paths["data"]),
                 "--out", str(out), "--threads", "2"]) == 0
    doc = json.loads(out.read_text())
    assert doc == json.loads(json.dumps(global_document(wss, limits, ["a", "b"], data, spec)))  # threads: same
    assert doc["masses_GeV"] == [20.0, 40.0] and doc["max_mass_GeV"] == 40.0
    assert [m["q0"] for m in doc["per_mass"]] == doc["q0_observed"]
    assert doc["q0_observed"][1] == pytest.approx(limits[1]["observed"]["discovery"]["q0"], rel=1e-12)
    assert doc["q0_observed"][1] > doc["q0_observed"][0]
    assert doc["global"]["p_value"] >= doc["local_at_max"]["p_value"]
    assert doc["events"]["counts_digest"] == data["counts_digest"] and doc["blind"] is False
    ctx = report_context(str(tmp_path / "limit_curve.csv"), [{"mass": 40.0}])
    assert ctx["mass"] == 40.0 and ctx["n_masses"] == 2 and ctx["n_toys"] == doc["n_toys_used"]
    assert not ctx["salted"] and ctx["salt_removed"] is None and "salt" not in doc  # no --events
    assert report_context(str(tmp_path / "limit_curve.csv"), None) is None  # blind: nothing read
    with pytest.raises(FileNotFoundError, match="global_pvalue.json is missing"):
        report_context(str(tmp_path / "sub" / "limit_curve.csv"), [{"mass": 40.0}])


@pytest.mark.parametrize(("change", "message"), [
    ({"blind": True}, "blind True; expected false"),
    ({"toys": 3}, r"unknown keys \['toys'\]"),
    ({"n_toys": 0}, "n_toys 0; expected an integer >= 1"),
])
def test_global_pvalue_spec_refused(tmp_path, m40, change, message):
    from lzflow.exceptions import MergeError
    from lzflow.globalcli import global_document

    wss, limits, data, _ = _analysis(tmp_path, m40)
    with pytest.raises(MergeError, match=message):
        global_document(wss, limits, ["a", "b"], data, {"blind": False, "n_toys": 10, "seed": 1, **change})


def test_global_pvalue_refuses_limits_of_other_data(tmp_path, m40):
    from lzflow.exceptions import MergeError
    from lzflow.globalcli import global_document

    wss, limits, data, _ = _analysis(tmp_path, m40)
    limits[0]["observed"]["events"]["counts_digest"] = "0123456789abcdef"
    with pytest.raises(MergeError, match="a: observed counts_digest 0123456789abcdef, the binned data has"):
        global_document(wss, limits, ["a", "b"], data, {"blind": False, "n_toys": 10, "seed": 1})


def test_shape_systematics_background_templates_must_agree():
    """With shape systematics the background rows of the varied templates are part of the background
    model (a difference is refused); the signal rows may differ; the global toys fit the morphed models."""
    ws = json.loads(gzip.decompress((DATA / "workspace_m40_systematics.json.gz").read_bytes()))
    model = workspace_model(ws)
    sy = model.shape_systematics[0]
    up = sy.up.copy()
    up[1] *= 1.01  # the first background's +1 sigma template
    changed = model.with_shape_systematics([type(sy)(sy.name, up, sy.down, sy.up2, sy.down2),
                                            *model.shape_systematics[1:]], model.interpolation)
    with pytest.raises(LookElsewhereError, match=rf"shape systematic '{sy.name}' background templates \(up\)"):
        check_same_background({40.0: model, 20.0: changed})
    up = sy.up.copy()
    up[0] *= 1.01  # the signal's: allowed
    check_same_background({40.0: model, 20.0: model.with_shape_systematics(
        [type(sy)(sy.name, up, sy.down, sy.up2, sy.down2), *model.shape_systematics[1:]], model.interpolation)})
    counts = model.expected(0.0, model.nominal_nuisance()) + 0.003 * model.signal
    res = global_pvalue({40.0: model}, counts, model.nominal_nuisance(), 256, 3)
    assert res["n_toys_used"] == 256 and res["q0_observed"][0] > 4.0


def test_global_pvalue_says_when_the_data_are_salted(tmp_path, m40):
    """--events: the list's salt status (lzflow salt / unsalt provenance) in global_pvalue.json and
    the report's text."""
    from lzflow.cli import main
    from lzflow.globalcli import report_context
    from lzflow.report import environment

    _, _, _, paths = _analysis(tmp_path, m40)
    events, salted, record, unsalted = (DATA / "quick_observed_events.csv", tmp_path / "s.csv", tmp_path / "r.json",
                                        tmp_path / "u.csv")
    assert main(["salt", "--events", str(events), "--workspace", str(DATA / "workspace_m40.json.gz"),
                 "--sigma-cm2", "1e-47", "--seed", "3", "--out", str(salted), "--record", str(record)]) == 0
    assert main(["unsalt", "--events", str(salted), "--record", str(record), "--out", str(unsalted)]) == 0
    n_salt = json.loads(record.read_text())["truth"]["n_salt"]
    for listed, salted_flag, removed in ((salted, True, None), (unsalted, False, f"{n_salt} fake events of a 40 GeV")):
        out = tmp_path / "global_pvalue.json"
        assert main(["global-pvalue", "--spec", json.dumps({"blind": False, "n_toys": 50, "seed": 1}), "--workspaces",
                     str(paths["ws20"]), str(paths["ws40"]), "--limits", str(paths["lim20"]), str(paths["lim40"]),
                     "--observed", str(paths["data"]), "--events", str(listed), "--out", str(out)]) == 0
        assert json.loads(out.read_text())["salt"]["salted"] is salted_flag
        ctx = report_context(str(tmp_path / "limit_curve.csv"), [{"mass": 40.0}])
        assert ctx["salted"] is salted_flag
        assert (ctx["salt_removed"] is None) if removed is None else ctx["salt_removed"].startswith(removed)
        html = environment().get_template("global.html.j2").render(global_pvalue=ctx)
        assert ("Salted data:" in html) is salted_flag and ("The salt was removed" in html) is (not salted_flag)
        assert "Global discovery p-value over 2 masses" in html
