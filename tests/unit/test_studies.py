"""Studies as configuration: variants, validation, reuse of upstream outputs, tables and plots."""

from __future__ import annotations

import pytest

from lzflow.config import ConfigError, deep_merge, load_config_file, load_yaml
from lzflow.study_table import study_markdown, study_rows
from lzflow.variants import expand_studies, value_label


@pytest.fixture(scope="module")
def quick_raw(repo):
    return load_config_file(repo / "config" / "quick.yaml")


def _with_studies(raw, studies):
    return deep_merge(raw, {"studies": studies})


def _owners(variant, prefix):
    return {variant.owner[rel] for rel in variant.keys if rel.startswith(prefix)}


def test_shipped_study_configs_validate(repo, default_config):
    """Every config/studies/*.yaml expands on top of the default analysis, with the values the issue asks."""
    shipped = {p.stem: load_yaml(p) for p in sorted((repo / "config" / "studies").glob("*.yaml"))}
    assert {"g1", "n_samples", "n_toys", "interpolation", "systematics_onoff"} <= set(shipped)
    overlay = load_yaml(repo / "config" / "overlays" / "systematics.yaml")
    for name, extra in shipped.items():
        # the on/off study needs a systematics: block (its header says: with the overlay)
        base = deep_merge(default_config, overlay) if name == "systematics_onoff" else default_config
        _, studies = expand_studies(deep_merge(base, extra), repo)
        assert [s.name for s in studies] == list(extra["studies"])
        for study in studies:
            assert len(study.variants) == len(extra["studies"][study.name]["values"])
    g1 = expand_studies(deep_merge(default_config, shipped["g1"]), repo)[1][0]
    assert [v.config["detector"]["nest"]["g1"] for v in g1.variants] == [0.05, 0.118, 0.13]
    assert g1.baseline_value == pytest.approx(0.118735)
    interp = expand_studies(deep_merge(default_config, shipped["interpolation"]), repo)[1][0]
    assert [v.config["stats"]["interpolation_order"] for v in interp.variants] == [0, 1, 2, 3]
    assert all(v.config["stats"]["likelihood"] == "unbinned" for v in interp.variants)


def test_baseline_is_unchanged_by_adding_studies(repo, quick_raw):
    plain, _ = expand_studies(quick_raw, repo)
    with_studies, _ = expand_studies(_with_studies(quick_raw, {
        "g1": {"parameter": "detector.g1", "values": [0.05]},
        "n_toys": {"parameter": "stats.toys_per_poi", "values": [100]}}), repo)
    assert plain.keys == with_studies.keys
    assert set(with_studies.owner.values()) == {""}


def test_n_toys_study_reuses_pdfs_and_workspaces(repo, quick_raw):
    _, (study,) = expand_studies(_with_studies(quick_raw, {
        "n_toys": {"parameter": "stats.toys_per_poi", "values": [100], "masses_GeV": [40]}}), repo)
    (v,) = study.variants
    assert v.suffix == "/studies/n_toys/100" and v.mass_labels == ["40"]
    for prefix in ("detector", "response/", "pdfs/", "m40/workspace"):
        assert _owners(v, prefix) == {""}, prefix
    assert _owners(v, "m40/toys/poi") == {v.suffix}
    assert _owners(v, "m40/toys/bonly") == {""}  # B-only toys do not depend on toys_per_poi
    assert v.owner["m40/limit.json"] == v.suffix


def test_detector_study_remakes_everything(repo, quick_raw):
    _, (study,) = expand_studies(_with_studies(quick_raw, {
        "g1": {"parameter": "detector.g1", "values": [0.05, 0.13], "masses_GeV": [10]}}), repo)
    for v in study.variants:
        assert set(v.owner.values()) == {v.suffix}
        assert v.config["detector"]["nest"]["g1"] == float(v.label)
        assert v.config["detector"]["hash"] != study.variants[0].config["detector"]["hash"] or v is study.variants[0]


def test_value_equal_to_baseline_reuses_the_baseline_outright(repo, quick_raw):
    _, (study,) = expand_studies(_with_studies(quick_raw, {
        "n_toys": {"parameter": "stats.toys_per_poi", "values": [300, 100]}}), repo)
    same, other = study.variants
    assert set(same.owner.values()) == {""}
    assert other.owner["m10/limit.json"] == other.suffix


def test_likelihood_study_reuses_workspaces(repo, quick_raw):
    _, (study,) = expand_studies(_with_studies(quick_raw, {
        "interp": {"parameter": "stats.interpolation_order", "values": [0, 3],
                   "set": {"stats.likelihood": "unbinned", "stats.template_rebin": 2}}}), repo)
    for v in study.variants:
        assert _owners(v, "m40/workspace") == {""}
        assert _owners(v, "m40/toys/") == {v.suffix}
    assert "stats.likelihood=binned" in str(study.baseline_value)


def test_studies_share_outputs_across_studies(repo, quick_raw):
    """The same value in two studies is made once (by the first)."""
    _, (a, b) = expand_studies(_with_studies(quick_raw, {
        "a": {"parameter": "stats.toys_per_poi", "values": [100]},
        "b": {"parameter": "stats.toys_per_poi", "values": [100, 200]}}), repo)
    assert b.variants[0].owner["m40/limit.json"] == a.variants[0].suffix
    assert b.variants[1].owner["m40/limit.json"] == b.variants[1].suffix


@pytest.mark.parametrize("studies, message", [
    ({"s": {"parameter": "detector.nonsense", "values": [1]}}, "studies.s.parameter: detector.nonsense is not a parameter"),
    ({"s": {"parameter": "tag", "values": ["x"]}}, "studies.s.parameter: 'tag' cannot be studied"),
    ({"s": {"parameter": "signal.masses_GeV", "values": [[10]]}}, "'signal.masses_GeV' cannot be studied"),
    ({"s": {"parameter": "stats.toys_per_poi", "values": []}}, "studies.s.values: [] is out of range; expected at least 1 item(s)"),
    ({"s": {"parameter": "stats.toys_per_poi", "values": [5]}}, "studies.s.values[0] = 5: stats.toys_per_poi"),
    ({"s": {"parameter": "stats.nonsense", "values": [5]}}, "studies.s.values[0] = 5: stats"),
    ({"s": {"parameter": "detector.g1", "values": [2.0]}}, "studies.s.values[0] = 2.0: detector_overrides.nest.g1"),
    ({"s": {"parameter": "exposure.live_time", "values": ["1000"]}}, "studies.s.values[0] = '1000': exposure.live_time"),
    ({"s": {"parameter": "stats.toys_per_poi", "values": [100], "masses_GeV": [33]}},
     "studies.s.masses_GeV: 33 is not a mass of signal.masses_GeV"),
    ({"s": {"parameter": "stats.toys_per_poi", "values": [100, 100.0]}}, "share the directory name '100'"),
    ({"s": {"parameter": "stats.toys_per_poi", "values": [100], "vary": 1}}, "studies.s.vary: unknown key"),
    ({"s b": {"parameter": "stats.toys_per_poi", "values": [100]}}, "bad name"),
    ({"s": {"parameter": "stats.interpolation_order", "values": [1],
            "set": {"stats.likelihood": "unbinned", "stats.template_rebin": 3}}}, "stats.template_rebin: 3 does not divide"),
])
def test_bad_studies_give_one_line_errors(repo, quick_raw, studies, message):
    with pytest.raises(ConfigError) as err:
        expand_studies(_with_studies(quick_raw, studies), repo)
    text = str(err.value)
    assert message in text and "\n" not in text


def test_value_labels():
    assert [value_label(v) for v in (0.05, 1000000, "500 d", True, 1e-45)] == ["0.05", "1000000", "500_d", "true", "1e-45"]


def _limit(mass, median, asym, err=1e-3, n=100):
    return {"mass_GeV": mass, "method": "CLs+b", "sigma_ref_cm2": 1e-45, "no_sensitivity": False,
            "limits": {"CLs+b": {"expected_sigma_cm2": {"0": median, "-1": median / 2, "1": median * 2},
                                 "expected_mu_err": {"0": err}}},
            "asymptotic": {"expected_sigma_cm2": {"0": asym}}, "toys": {"sb_per_poi": [n, n]}}


def test_study_rows_percent_change_and_markdown():
    study = {"name": "g1", "parameter": "detector.g1", "baseline_value": 0.118}
    baseline = {"10": _limit(10, 1e-47, 1.1e-47), "40": _limit(40, 1e-48, 1e-48)}
    variants = [{"label": "0.05", "value": 0.05, "limits": {"10": _limit(10, 3e-47, 3.3e-47), "40": _limit(40, 1.5e-48, 1.4e-48)},
                 "timing": {"10": (12.0, 20.0), "40": (10.0, 18.0)}}]
    rows = study_rows(study, baseline, variants)
    assert len(rows) == 4
    by = {(r["variant"], r["mass_GeV"]): r for r in rows}
    assert by[("0.05", 10)]["change_median_pct"] == pytest.approx(200.0)
    assert by[("0.05", 40)]["change_median_pct"] == pytest.approx(50.0)
    assert by[("0.05", 40)]["change_asymptotic_pct"] == pytest.approx(40.0)
    assert by[("baseline", 10)]["change_median_pct"] == pytest.approx(0.0)
    assert by[("0.05", 10)]["sigma_median_err_cm2"] == pytest.approx(1e-48)
    assert by[("0.05", 10)]["toy_jobs_wall_s"] == 12.0 and by[("baseline", 10)]["toy_jobs_wall_s"] is None
    md = study_markdown(study, rows)
    assert "| 10 | 0.05 | 0.05 | 3e-47 |" in md and "+200.0 %" in md and "+50.0 %" in md


def test_exposure_study_scales_signal_and_backgrounds(repo, quick_raw):
    """Background counts are quoted for the baseline's exposure: half the live time halves them too."""
    base, (study,) = expand_studies(_with_studies(quick_raw, {
        "exposure": {"parameter": "exposure.live_time", "values": ["500 d", "1000 d"]}}), repo)
    half, same = study.variants
    assert half.label == "500_d"
    assert half.config["exposure"]["exposure_t_yr"] == pytest.approx(base.config["exposure"]["exposure_t_yr"] / 2)
    for name, entry in base.config["backgrounds"].items():
        assert half.config["backgrounds"][name]["counts"] == pytest.approx(entry["counts"] / 2)
    assert _owners(half, "pdfs/") == {half.suffix} and _owners(half, "response/") == {""}
    assert set(same.owner.values()) == {""}  # 1000 d is the baseline


def test_background_study_remakes_only_that_pdf(repo, quick_raw):
    _, (study,) = expand_studies(_with_studies(quick_raw, {
        "pp_unc": {"parameter": "backgrounds.pp.rel_unc", "values": [0.10]}}), repo)
    (v,) = study.variants
    assert v.owner["pdfs/pp.root"] == v.suffix
    assert {v.owner[f"pdfs/{n}.root"] for n in v.config["backgrounds"] if n != "pp"} == {""}
    assert v.owner["pdfs/wimp_m40.root"] == "" and v.owner["m40/workspace.json"] == v.suffix


def test_studies_with_detector_systematics_key_the_varied_templates(repo, quick_raw):
    """A study of a systematic's width remakes that systematic's variation matrices, the varied
    templates it acts on and the workspaces (never reusing the baseline's workspace, whose templates
    differ), but shares the CRN nominal and the other systematics' matrices; a toys study shares
    every variation file and workspace with the baseline."""
    raw = deep_merge(quick_raw, load_yaml(repo / "config" / "overlays" / "systematics.yaml"))
    _, (width, toys) = expand_studies(_with_studies(raw, {
        "width": {"parameter": "systematics.parameters.g1.sigma", "values": [0.004], "masses_GeV": [40],
                  "description": "g1 width"},
        "toys": {"parameter": "stats.toys_per_poi", "values": [200], "masses_GeV": [40], "description": "toys"},
    }), repo)
    (w,), (t,) = width.variants, toys.variants
    assert _owners(w, "response/variations/NR/g1") == _owners(w, "response/variations/beta/g1") == {w.suffix}
    for other in ("nominal", "g2", "drift_field", "nr_light"):
        assert _owners(w, f"response/variations/NR/{other}") == {""}
    assert _owners(w, "pdfs/variations/wimp_m40") == _owners(w, "pdfs/variations/pp") == {w.suffix}
    assert _owners(w, "pdfs/wimp_m40") == {""} and _owners(w, "m40/workspace") == {w.suffix}
    assert _owners(t, "response/variations/") == _owners(t, "pdfs/variations/") == {""}
    assert _owners(t, "m40/workspace") == {""}


def test_systematics_switch_study_reuses_everything_but_the_workspaces(repo, quick_raw):
    """``parameter: systematics``: 'on' is the baseline itself; 'off' removes the whole block, so its
    artefact keys are exactly those of the configuration without the overlay, and it reuses the
    baseline's detector, responses and nominal PDFs and owns only its workspaces, toys and limits."""
    from lzflow.config import resolve_config
    from lzflow.variants import artefact_keys

    raw = deep_merge(quick_raw, load_yaml(repo / "config" / "overlays" / "systematics.yaml"))
    baseline, (study,) = expand_studies(_with_studies(raw, {
        "systematics": {"parameter": "systematics", "values": [True, "off"]}}), repo)
    on, off = study.variants
    assert (on.label, on.value, off.label, off.value, study.baseline_value) == ("on", "on", "off", "off", "on")
    assert set(on.owner.values()) == {""} and on.keys == baseline.keys
    assert "systematics" not in off.config and "systematics" in baseline.config
    assert off.keys == artefact_keys(resolve_config(quick_raw, repo))  # off == the analysis without the block
    assert not any("variations" in rel for rel in off.keys)
    for prefix in ("detector", "response/", "pdfs/"):
        assert _owners(off, prefix) == {""}, prefix
    for mass in ("10", "40"):
        assert _owners(off, f"m{mass}/") == {off.suffix}  # workspace, impacts, every toy file, limit
    assert off.keys["m40/workspace.json"] != baseline.keys["m40/workspace.json"]


@pytest.mark.parametrize("with_overlay, values, message", [
    (False, ["off"], ("studies.s.parameter: 'systematics' switches the systematics: block on and off, but the "
                      "configuration has no systematics: block")),
    (True, ["none"], "studies.s.values[0]: 'none'; expected on or off"),
    (True, [0], "studies.s.values[0]: 0; expected on or off"),
])
def test_systematics_switch_refusals(repo, quick_raw, with_overlay, values, message):
    raw = deep_merge(quick_raw, load_yaml(repo / "config" / "overlays" / "systematics.yaml")) if with_overlay else quick_raw
    with pytest.raises(ConfigError) as err:
        expand_studies(_with_studies(raw, {"s": {"parameter": "systematics", "values": values}}), repo)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_systematics_study_markdown_says_the_widening(tmp_path):
    """The on/off study's Markdown states σ_on / σ_off − 1 per mass (toys and asymptotic) and its
    plot labels the curves 'shape systematics on (baseline)' / 'off'; another study has no such line."""
    from lzflow.study_table import plot_study_overlay, systematics_summary

    study = {"name": "systematics", "parameter": "systematics", "baseline_value": "on"}
    baseline = {"10": _limit(10, 3.0e-47, 3.05e-47), "40": _limit(40, 1.15e-48, 1.24e-48)}
    variants = [{"label": "off", "value": "off", "limits": {"10": _limit(10, 2.0e-47, 2.1e-47),
                                                             "40": _limit(40, 1.0e-48, 1.0e-48)}}]
    rows = study_rows(study, baseline, variants)
    line = ("Profiling the shape systematics widens the median expected limit (toys) by +50.0 % at 10 GeV "
            "(asymptotic +45.2 %); +15.0 % at 40 GeV (asymptotic +24.0 %).")
    assert systematics_summary(rows) == line
    assert line in study_markdown(study, rows)
    assert "widens" not in study_markdown({**study, "parameter": "stats.toys_per_poi"}, rows)
    assert systematics_summary(study_rows(study, baseline, [])) == ""  # no 'off' variant: nothing to say
    plot_study_overlay(study, rows, tmp_path / "overlay.png")
    assert (tmp_path / "overlay.png").stat().st_size > 10_000
