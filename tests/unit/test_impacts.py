"""Nuisance-parameter impacts (lzflow.impacts) on an LZ-like model with shape systematics."""

from __future__ import annotations

import numpy as np
import pytest

from lzflow.impacts import impacts
from lzflow.stats.asymptotic import asymptotic_limits
from lzflow.stats.synthetic import lz_like_systematics_model

SPEC = {"method": "CLs+b", "test_statistic": "qtilde"}


@pytest.fixture(scope="module")
def model():
    return lz_like_systematics_model(n_cs1=20, n_logcs2=20, systematics=("g1", "nr_yield"))


@pytest.fixture(scope="module")
def result(model):
    return impacts(model, SPEC, 1e-45)


def test_profiled_median_is_the_asymptotic_median(model, result):
    expected = asymptotic_limits(model, method="clsb", test_stat="qtilde").expected[0]
    assert result["median_sigma_cm2_profiled"] == pytest.approx(expected * 1e-45, rel=1e-6)


def test_every_constrained_parameter_is_ranked_and_profiling_never_tightens(model, result):
    names = [p["parameter"] for p in result["parameters"]]
    floating = [n for n, r in zip(model.names, model.rel_unc) if r > 0]
    assert sorted(names) == sorted(floating + ["alpha_g1", "alpha_nr_yield"])
    impact = [p["impact"] for p in result["parameters"]]
    assert impact == sorted(impact, reverse=True) and min(impact) > -1e-6
    kinds = {p["parameter"]: p["kind"] for p in result["parameters"]}
    assert kinds["alpha_g1"] == "shape" and all(kinds[n] == "rate" for n in floating)


def test_fixing_a_shape_parameter_is_dropping_it(model, result):
    row = next(p for p in result["parameters"] if p["parameter"] == "alpha_nr_yield")
    without = model.with_shape_systematics([s for s in model.shape_systematics if s.name != "nr_yield"])
    fixed = asymptotic_limits(without, method="clsb", test_stat="qtilde", bands=(0,)).expected[0]
    assert row["median_sigma_cm2_fixed"] == pytest.approx(fixed * 1e-45, rel=1e-9)
    assert row["impact"] == pytest.approx(result["median_sigma_cm2_profiled"] / row["median_sigma_cm2_fixed"] - 1)


def test_asimov_pulls_vanish_and_constraints_are_at_most_the_prior(result):
    for p in result["parameters"]:
        assert abs(p["asimov_pull"]) < 1e-3
        assert 0.0 < p["asimov_constraint"] <= 1.0 + 1e-9
    assert np.isfinite([p["median_sigma_cm2_fixed"] for p in result["parameters"]]).all()


def test_with_and_without_all_shape_systematics(model, result):
    """The analysis without its shape systematics: the rate-only Asimov median, never below it."""
    base = asymptotic_limits(model.with_shape_systematics(), method="clsb", test_stat="qtilde").expected[0]
    assert result["median_sigma_cm2_without_shape_systematics"] == pytest.approx(base * 1e-45, rel=1e-9)
    assert result["shape_systematics_impact"] == pytest.approx(
        result["median_sigma_cm2_profiled"] / result["median_sigma_cm2_without_shape_systematics"] - 1)
    assert result["shape_systematics_impact"] >= max(p["impact"] for p in result["parameters"] if p["kind"] == "shape") - 1e-6
    rate_only = impacts(model.with_shape_systematics(), SPEC, 1e-45)
    assert "median_sigma_cm2_without_shape_systematics" not in rate_only
