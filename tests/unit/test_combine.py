"""Run combination (issue 13 item 5, :mod:`lzflow.stats.combine`): the combined model's NLL is the
sum of the runs' NLLs (shared constraints counted once), the fitter sees just a bigger model, and
two identical runs with shared nuisance parameters give the limits of one run with twice the live
time — exactly for the Asimov (asymptotic) limits, within the toy error for toy limits.

Measured (``pytest -s``, 40 GeV test workspace): asymptotic median 8.6093311042e-4 (doubled run)
vs 8.6093311042e-4 (two runs, shared θ), relative difference ~2e-12; with separate θ the median is
0.19 % lower (two independent auxiliary measurements).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from lzflow.stats.asymptotic import asymptotic_limits
from lzflow.stats.combine import combine_models
from lzflow.stats.hypotest import toy_limits
from lzflow.stats.model import BinnedModel, ModelError, ShapeSystematic
from lzflow.workspace import workspace_model

DATA = Path(__file__).resolve().parents[1] / "data"


def _ws(name: str) -> dict:
    return json.loads(gzip.decompress((DATA / name).read_bytes()))


@pytest.fixture(scope="module")
def m40() -> BinnedModel:
    return workspace_model(_ws("workspace_m40.json.gz"))


@pytest.fixture(scope="module")
def m40s() -> BinnedModel:
    """The 40 GeV workspace with five detector shape systematics (log_quartic)."""
    return workspace_model(_ws("workspace_m40_systematics.json.gz"))


def doubled(m: BinnedModel, factor: float = 2.0) -> BinnedModel:
    """The run with ``factor`` × the live time: every template (nominal and varied) scaled, the
    same relative constraints."""
    systs = tuple(ShapeSystematic(s.name, factor * s.up, factor * s.down,
                                  None if s.up2 is None else factor * s.up2,
                                  None if s.down2 is None else factor * s.down2) for s in m.shape_systematics)
    return BinnedModel(factor * m.signal, factor * m.backgrounds, m.names, m.rel_unc, m.signal_name,
                       m.bin_shape, systs, m.interpolation)


def _other_run(m: BinnedModel) -> BinnedModel:
    """A second, different run: 70 % of the live time, its own background levels and widths."""
    rng = np.random.default_rng(11)
    scale = rng.uniform(0.5, 1.5, m.n_bkg)[:, None]
    systs = tuple(ShapeSystematic(s.name, 0.7 * s.up, 0.7 * s.down,
                                  None if s.up2 is None else 0.7 * s.up2,
                                  None if s.down2 is None else 0.7 * s.down2) for s in m.shape_systematics[:3])
    return BinnedModel(0.7 * m.signal, 0.7 * scale * m.backgrounds, m.names, 1.5 * m.rel_unc, m.signal_name,
                       m.bin_shape, systs, m.interpolation if systs else "code4p")


def _random_points(model: BinnedModel, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = np.c_[rng.uniform(0, 3e-3, (n, 1)), rng.uniform(0.6, 1.4, (n, model.n_bkg)),
                   rng.normal(0, 1, (n, model.n_shape))]
    aux = np.c_[rng.uniform(0.8, 1.2, (n, model.n_bkg)), rng.normal(0, 1, (n, model.n_shape))]
    counts = rng.poisson(model.expected(2e-3, params[0, 1:]), (n, model.n_bins)).astype(float)
    return params, aux, counts


def _constraint(model: BinnedModel, params: np.ndarray, aux: np.ndarray, index: int) -> np.ndarray:
    """The constraint term of full-parameter index ``index`` (θ: (a − θ)²/2r², α: (a − α)²/2)."""
    prec = model.constraint_precision[index]
    return 0.5 * prec * (aux[:, index - 1] - params[:, index]) ** 2


@pytest.mark.parametrize("systematics", [False, True], ids=["rates", "shapes"])
@pytest.mark.parametrize("correlated", [(), ("B8", "pp", "Rn222", "g1", "nr_light")], ids=["separate", "shared"])
def test_combined_nll_is_the_sum_of_the_runs(m40, m40s, systematics, correlated):
    base = m40s if systematics else m40
    runs = {"ws22": base, "ws24": _other_run(base)}
    if correlated:  # the second run's widths must agree for a shared rate: give it the first run's
        runs["ws24"] = runs["ws24"].with_rel_unc(base.rel_unc)
    comb = combine_models(runs, correlated if systematics else tuple(c for c in correlated if c in base.names))
    model = comb.model
    params, aux, counts = _random_points(model, 8, seed=5)
    total = model.nll(params, counts, aux)
    parts = sum(m.nll(comb.run_params(params, r), comb.run_counts(counts, r), comb.run_aux(aux, r))
                for r, m in runs.items())
    multiplicity = comb.shared_multiplicity()
    duplicate = sum((multiplicity[j] - 1) * _constraint(model, params, aux, j)
                    for j in range(1, model.n_par) if multiplicity[j] > 1)
    assert np.all(np.isfinite(total))
    np.testing.assert_allclose(total, parts - duplicate, rtol=1e-10, atol=0)
    assert model.n_bins == 2 * base.n_bins
    if not correlated:
        assert "ws24:B8" in model.par_names and "B8" not in model.par_names
        np.testing.assert_allclose(total, parts, rtol=1e-10, atol=0)
    else:
        assert "B8" in model.par_names and "ws22:B8" not in model.par_names
        assert ("alpha_g1" in model.par_names) == systematics
        assert not systematics or "alpha_ws24.g2" in model.par_names
        assert duplicate is not 0 and np.all(duplicate > 0)


def test_parameter_maps_and_templates(m40):
    other = _other_run(m40).with_rel_unc(1.5 * m40.rel_unc)
    other = other.with_rel_unc(np.r_[m40.rel_unc[0], other.rel_unc[1:]])  # B8 shared: the same width
    comb = combine_models({"a": m40, "b": other}, ("B8",))
    m = comb.model
    a, b = comb.run("a"), comb.run("b")
    assert (a.start, a.stop, b.start, b.stop) == (0, 1600, 1600, 3200)
    assert a.bin_shape == (40, 40)
    k = m.names.index("B8")
    np.testing.assert_array_equal(m.backgrounds[k, :1600], m40.backgrounds[0])
    np.testing.assert_array_equal(m.backgrounds[k, 1600:], other.backgrounds[0])
    j = m.names.index("b:pp")
    assert not m.backgrounds[j, :1600].any()
    np.testing.assert_array_equal(m.backgrounds[j, 1600:], other.backgrounds[m40.names.index("pp")])
    assert m.rel_unc[j] == other.rel_unc[m40.names.index("pp")]
    assert [m.par_names[i] for i in b.par_index] == ["mu", "B8"] + [f"b:{n}" for n in m40.names[1:]]


def test_refusals_are_one_line(m40, m40s):
    other = _other_run(m40)  # rel_unc 1.5 × m40's
    cases = [
        (({"a": m40, "b": other}, ("B8",)), "correlated background B8: rel_unc 0.06 in run b but 0.04 in run a"),
        (({"a": m40, "b": m40}, ("B9",)), "correlated: 'B9' is not a background or shape systematic of any run"),
        (({"a": m40, "b": m40}, "B8"), "correlated: 'B8' is a string"),
        (({"a:x": m40, "b": m40}, ()), "run name 'a:x': expected a non-empty identifier"),
        (({}, ()), "runs: no run given"),
        (({"a": m40, "b": BinnedModel(m40.signal, m40.backgrounds, m40.names, m40.rel_unc, "other")}, ()),
         "signal names differ between runs"),
        (({"a": m40s, "b": m40s.with_shape_systematics(m40s.shape_systematics, "log_code4p")}, ()),
         "shape interpolations differ between runs (log_code4p, log_quartic)"),
    ]
    for (runs, correlated), message in cases:
        with pytest.raises(ModelError) as err:
            combine_models(runs, correlated)
        assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("systematics", [False, True], ids=["rates", "shapes"])
def test_two_identical_runs_equal_doubled_live_time_asimov(m40, m40s, systematics):
    """Shared θ (and α): the Asimov likelihood ratios are those of the doubled run, so every
    asymptotic limit agrees to the solver's precision; separate θ: a lower limit."""
    base = m40s if systematics else m40
    one = asymptotic_limits(doubled(base))
    shared = combine_models({"r1": base, "r2": base}, set(base.names) | {s.name for s in base.shape_systematics})
    two = asymptotic_limits(shared.model)
    for n in (-1, 0, 1, 2):
        assert two.expected[n] == pytest.approx(one.expected[n], rel=1e-6)
    assert two.pcl_floor == pytest.approx(one.pcl_floor, rel=1e-6)
    if not systematics:
        separate = asymptotic_limits(combine_models({"r1": base, "r2": base}, ()).model)
        assert separate.expected[0] < one.expected[0] * (1 - 1e-3)
        print(f"asymptotic median: doubled {one.expected[0]:.10e}, shared {two.expected[0]:.10e}, "
              f"separate {separate.expected[0]:.10e}")


def _median_with_error(model: BinnedModel, n_sb: int, n_b: int, seed: int, grid: np.ndarray) -> tuple[float, float]:
    t = toy_limits(model, grid, n_sb, n_b, base_seed=seed, mass_key=400_000, n_boot=100, n_threads=1)
    return t.expected[0], t.expected_err[0]


def _compare_toys(base: BinnedModel, n_sb: int, n_b: int, n_points: int) -> tuple[float, float, float]:
    """Toy median limits (bootstrap errors: they include the S+B toys' noise, which moves every
    B-only limit together) of the doubled run and two identical runs with shared θ."""
    asym = asymptotic_limits(doubled(base)).expected[0]
    grid = asym * np.linspace(0.1, 3.0, n_points)
    one, e1 = _median_with_error(doubled(base), n_sb, n_b, 1, grid)
    two, e2 = _median_with_error(combine_models({"r1": base, "r2": base}, set(base.names)).model, n_sb, n_b, 2, grid)
    print(f"toy median: doubled {one:.4e} ± {e1:.2e}, two runs {two:.4e} ± {e2:.2e}, "
          f"pull {(two - one) / np.hypot(e1, e2):.2f}; asymptotic {asym:.4e}")
    return one, two, float(np.hypot(e1, e2))


def test_two_identical_runs_equal_doubled_live_time_toys(m40):
    one, two, err = _compare_toys(m40, 400, 1200, 12)
    assert abs(two - one) < 3 * err
    assert err < 0.15 * one  # the comparison means something


@pytest.mark.slow
def test_two_identical_runs_equal_doubled_live_time_many_toys(m40):
    one, two, err = _compare_toys(m40, 3000, 8000, 24)
    assert abs(two - one) < 3 * err
    assert err < 0.05 * one


# ----------------------------------------------------------------------------- lzflow combine
SPEC = {"cl": 0.9, "method": "CLs+b", "test_statistic": "qtilde", "power_threshold": 0.1587, "discovery_sigma": 3.0,
        "poi_grid": {"n_points": 3, "min_factor": 0.3, "max_factor": 2.5}}


def _combine_cli(tmp_path: Path, files: list[Path], names: list[str], correlated: list[str], out: str) -> Path:
    from lzflow.cli import main

    argv = ["combine", *[a for f in files for a in ("--workspace", str(f))], "--run-names", *names,
            "--correlated", *correlated, "--spec", json.dumps(SPEC), "--out", str(tmp_path / out)]
    assert main(argv) == 0
    return tmp_path / out


def _same_model(a: BinnedModel, b: BinnedModel) -> None:
    assert a.par_names == b.par_names and a.interpolation == b.interpolation
    for x, y in ((a.signal, b.signal), (a.backgrounds, b.backgrounds), (a.rel_unc, b.rel_unc)):
        np.testing.assert_array_equal(x, y)
    for s, t in zip(a.shape_systematics, b.shape_systematics):
        for label in ("up", "down", "up2", "down2"):
            np.testing.assert_array_equal(getattr(s, label), getattr(t, label))


def test_combine_cli_document_round_trip_with_shapes(tmp_path, m40, m40s):
    from lzflow.combinecli import run_pieces
    from lzflow.workspace import read_workspace

    files = [DATA / "workspace_m40.json.gz", DATA / "workspace_m40_systematics.json.gz"]
    out = _combine_cli(tmp_path, files, ["ws22", "ws24"], ["B8", "pp", "g1"], "comb.json.gz")
    again = _combine_cli(tmp_path, files, ["ws22", "ws24"], ["B8", "pp", "g1"], "again.json.gz")
    assert out.read_bytes() == again.read_bytes()  # reproducible bit for bit
    ws = read_workspace(out)
    comb = combine_models({"ws22": m40, "ws24": m40s}, {"B8", "pp", "g1"})
    _same_model(workspace_model(ws), comb.model)
    assert "axes" not in ws and [r["name"] for r in ws["runs"]] == ["ws22", "ws24"]
    assert run_pieces(ws) == {"ws22": slice(0, 1600), "ws24": slice(1600, 3200)}
    assert ws["runs"][1]["parameters"]["alpha_g2"] == "alpha_ws24.g2" and ws["runs"][0]["parameters"]["pp"] == "pp"
    assert ws["runs"][1]["axes"] == _ws("workspace_m40_systematics.json.gz")["axes"]
    assert set(next(s for s in ws["shape_systematics"] if s["name"] == "g1")["physical"]) == {"ws24"}
    expected = asymptotic_limits(comb.model).expected[0]
    assert ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"] == pytest.approx(expected, rel=1e-9)
    assert ws["poi_grid"] == pytest.approx(list(expected * np.linspace(0.3, 2.5, 3)), rel=1e-12)


def test_combined_workspace_through_toys_and_merge(tmp_path):
    """The combined document is read by ``lzflow toys`` and ``lzflow merge`` as any workspace."""
    from lzflow.cli import main

    ws_file = _combine_cli(tmp_path, [DATA / "workspace_m40.json.gz"] * 2, ["a", "b"], ["B8", "atm"], "c.json.gz")
    files = []
    for k in range(3):
        spec = {"hypothesis": "sb", "poi_index": k, "job_index": 0, "n_jobs": 1, "n_toys": 60, "seed": 1,
                "test_statistic": "qtilde"}
        files.append(tmp_path / f"sb{k}.npz")
        assert main(["toys", "--workspace", str(ws_file), "--spec", json.dumps(spec), "--out", str(files[-1])]) == 0
    spec = {"hypothesis": "b", "job_index": 0, "n_jobs": 1, "n_toys": 120, "seed": 1, "test_statistic": "qtilde"}
    files.append(tmp_path / "b.npz")
    assert main(["toys", "--workspace", str(ws_file), "--spec", json.dumps(spec), "--out", str(files[-1])]) == 0
    merge = {"cl": 0.9, "method": "CLs+b", "power_threshold": 0.1587, "test_statistic": "qtilde"}
    assert main(["merge", "--workspace", str(ws_file), "--spec", json.dumps(merge), "--toys", *map(str, files),
                 "--out", str(tmp_path / "limit.json")]) == 0
    limit = json.loads((tmp_path / "limit.json").read_text())
    asym = limit["asymptotic"]["expected_sigma_cm2"]["0"]
    assert 0.5 * asym < limit["median_expected_sigma_cm2"] < 2 * asym


def test_combine_cli_refusals_one_line(tmp_path, capsys):
    from lzflow.cli import main
    from lzflow.exceptions import WorkspaceError
    from lzflow.toyjobs import job_model
    from lzflow.workspace import read_workspace, to_hs3

    w = str(DATA / "workspace_m40.json.gz")
    other = _ws("workspace_m40.json.gz")
    other["mass_GeV"] = 50.0
    (tmp_path / "m50.json").write_text(json.dumps(other))
    spec = json.dumps(SPEC)
    cases = [
        (["--workspace", w, "--run-names", "a", "b", "--correlated", "--spec", spec], "--run-names: 2 names for 1"),
        (["--workspace", w, "--workspace", str(tmp_path / "m50.json"), "--run-names", "a", "b", "--correlated",
          "--spec", spec], "mass_GeV differs between runs (a: 40.0, b: 50.0)"),
        (["--workspace", w, "--workspace", w, "--run-names", "a", "b", "--correlated", "--spec",
          json.dumps({**SPEC, "bins": 3})], "spec: unknown key bins"),
        (["--workspace", w, "--workspace", w, "--run-names", "a", "a", "--correlated", "--spec", spec],
         "expected distinct names"),
    ]
    for argv, message in cases:
        assert main(["combine", *argv, "--out", str(tmp_path / "x.json")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    combined = read_workspace(_combine_cli(tmp_path, [Path(w)] * 2, ["a", "b"], [], "c.json"))
    assert main(["combine", "--workspace", str(tmp_path / "c.json"), "--workspace", w, "--run-names", "a", "b",
                 "--correlated", "--spec", spec, "--out", str(tmp_path / "y.json")]) == 2
    assert "run a: already a combined workspace" in capsys.readouterr().err
    with pytest.raises(WorkspaceError, match="no single axis set for HS3"):
        to_hs3(combined)
    with pytest.raises(WorkspaceError, match="likelihood unbinned: a combined workspace"):
        job_model(combined, {"likelihood": "unbinned", "interpolation_order": 0, "template_rebin": 1,
                             "interpolation_floor": 0.0})


def test_runs_with_different_backgrounds(m40):
    """A background only one run has (shared by name or not) acts in that run's bins only."""
    keep = [i for i, n in enumerate(m40.names) if n != "DSN"]
    extra = np.roll(m40.backgrounds[m40.names.index("Kr85")], 7)
    second = BinnedModel(0.5 * m40.signal, np.vstack([m40.backgrounds[keep], extra[None]]),
                         tuple(m40.names[i] for i in keep) + ("accidentals",), np.r_[m40.rel_unc[keep], 0.17],
                         m40.signal_name, m40.bin_shape)
    comb = combine_models({"a": m40, "b": second}, ("DSN", "accidentals", "pp"))
    m = comb.model
    assert "DSN" in m.names and "accidentals" in m.names and "b:DSN" not in m.names
    assert not m.backgrounds[m.names.index("DSN"), 1600:].any()
    assert not m.backgrounds[m.names.index("accidentals"), :1600].any()
    params, aux, counts = _random_points(m, 5, seed=9)
    parts = sum(mm.nll(comb.run_params(params, r), comb.run_counts(counts, r), comb.run_aux(aux, r))
                for r, mm in {"a": m40, "b": second}.items())
    pp = m.par_names.index("pp")
    np.testing.assert_allclose(m.nll(params, counts, aux), parts - _constraint(m, params, aux, pp), rtol=1e-10, atol=0)
