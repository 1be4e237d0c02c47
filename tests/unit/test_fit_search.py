"""``stats.shape_fit_search`` (lzflow.searchconfig): single_start toys are fitted once from their
generation point, the choice travels config → toy spec → toy-file header → merge (grid extension
and limit.json), toy files that disagree are refused, and the default search changes nothing."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy.stats import norm

from lzflow.config import ConfigError, deep_merge, load_yaml, resolve_config
from lzflow.layout import toys_b_spec, toys_sb_spec
from lzflow.searchconfig import check_fit_search
from lzflow.stats import FitConfig
from lzflow.stats.fitresult import Strategy
from lzflow.toyjobs import job_request, run_toy_job
from test_merge import toy_files  # tests/unit is on sys.path under pytest

SPEC = {"cl": 0.9, "method": "CLs+b", "power_threshold": float(norm.cdf(-1)), "test_statistic": "qtilde"}


def _with_systematics(repo, default_config, **stats):
    raw = deep_merge(copy.deepcopy(default_config), load_yaml(repo / "config" / "overlays" / "systematics.yaml"))
    raw["stats"] = {**raw.get("stats", {}), **stats}
    return raw


def test_the_search_reaches_the_toy_specs_only_when_single_start(repo, default_config):
    single = resolve_config(_with_systematics(repo, default_config, shape_fit_search="single_start"), base_dir=repo)
    default = resolve_config(_with_systematics(repo, default_config), base_dir=repo)
    assert default["stats"]["shape_fit_search"] == "multistart"  # recorded in the resolved config
    assert toys_sb_spec(single, "40", 3, 1)["shape_fit_search"] == "single_start"
    assert toys_b_spec(single, "40", 0)["shape_fit_search"] == "single_start"
    # the default search leaves the toy specs (and so the toy files) as they were
    assert "shape_fit_search" not in toys_sb_spec(default, "40", 3, 1)
    assert {k: v for k, v in toys_b_spec(single, "40", 0).items() if k != "shape_fit_search"} == \
        toys_b_spec(default, "40", 0)


def test_single_start_without_systematics_is_refused_in_one_line(repo, default_config):
    raw = copy.deepcopy(default_config)
    raw["stats"] = {**raw.get("stats", {}), "shape_fit_search": "single_start"}
    with pytest.raises(ConfigError, match=r"^stats.shape_fit_search: 'single_start' with no systematics: block") as info:
        resolve_config(raw, base_dir=repo)
    assert "\n" not in str(info.value)


def test_an_unknown_search_is_refused_naming_the_key(repo, default_config):
    with pytest.raises(ConfigError) as info:
        resolve_config(_with_systematics(repo, default_config, shape_fit_search="fast"), base_dir=repo)
    assert "stats.shape_fit_search" in str(info.value) and "fast" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("config, stats, fragment", [
    ({"systematics": {}, "blind": False}, {}, "blind: false"),
    ({"systematics": {}}, {"likelihood": "unbinned"}, "stats.likelihood: unbinned"),
    ({"systematics": {}}, {"discovery_from_toys": {"n_bonly": 1000, "n_sb": 200}}, "stats.discovery_from_toys"),
])
def test_single_start_where_the_analysis_fits_with_every_start_is_refused(config, stats, fragment):
    with pytest.raises(ConfigError, match=r"^stats.shape_fit_search: 'single_start' with " + fragment):
        check_fit_search(config, {"shape_fit_search": "single_start", **stats})
    assert check_fit_search(config, {"shape_fit_search": "multistart", **stats})["shape_fit_search"] == "multistart"


@pytest.fixture(scope="module")
def ws_sys(repo):
    from lzflow.workspace import read_workspace

    return read_workspace(repo / "tests" / "data" / "workspace_m40_systematics.json.gz")


def _job(ws, **extra):
    spec = dict(hypothesis="sb", poi_index=9, job_index=0, n_jobs=1, n_toys=128, seed=3, test_statistic="qtilde",
                cond_fits="needed", **extra)
    return run_toy_job(ws, spec)


def test_single_start_toy_jobs_fit_once_and_record_it(ws_sys):
    """The header says single_start and the job's request carries FitConfig without further starts;
    the default job's header has no such key and its fits do restart, to lower minima only."""
    single, h_single = _job(ws_sys, shape_fit_search="single_start")
    default, h_default = _job(ws_sys)
    assert h_single["shape_fit_search"] == "single_start" and "shape_fit_search" not in h_default
    request = job_request(h_single, np.arange(128))
    assert request.config == FitConfig(extra_starts=(), extra_starts_fixed=())
    assert job_request(h_default, np.arange(128)).config is None  # the FitConfig defaults
    assert not np.any(single.strategy_uncond == Strategy.NEWTON_RESTART)
    assert not np.any(single.strategy_cond == Strategy.NEWTON_RESTART)
    assert np.any(default.strategy_uncond == Strategy.NEWTON_RESTART)  # the search changed some results
    # where the search found a lower minimum, the single start stayed above it
    lower = default.nll_uncond < single.nll_uncond - 1e-6
    assert lower.any() and not np.any(single.nll_uncond < default.nll_uncond - 1e-6)
    assert np.array_equal(single.aux, default.aux) and np.array_equal(single.n_events, default.n_events)


def test_merge_records_the_search_extends_with_it_and_refuses_a_mix(ws_sys):
    from lzflow.exceptions import MergeError
    from lzflow.merge import limit_document

    ws = copy.deepcopy(ws_sys)
    median = ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"]
    ws["poi_grid"] = (np.linspace(0.3, 1.0, 4) * median).tolist()  # too short: merge extends it
    single = toy_files(ws, 96, 128, cond_fits="needed", shape_fit_search="single_start")
    doc, extra = limit_document(ws, lambda: single, {**SPEC, "n_boot": 0})
    assert doc["shape_fit_search"] == "single_start"
    assert any("single_start" in note for note in doc["notes"])  # the report shows a mass's notes
    assert len(doc["poi_grid"]) > 4 and extra  # merge ran toys of its own
    for _, arrays, _ in extra:
        assert not np.any(arrays["strategy_uncond"] == Strategy.NEWTON_RESTART)
    default = toy_files(ws, 96, 128, cond_fits="needed")
    doc_default, extra_default = limit_document(ws, lambda: default, {**SPEC, "n_boot": 0})
    assert any(np.any(a["strategy_uncond"] == Strategy.NEWTON_RESTART) for _, a, _ in extra_default)  # would show
    assert "shape_fit_search" not in doc_default and not any("single_start" in n for n in doc_default["notes"])
    with pytest.raises(MergeError, match="toy files disagree on the shape fits' search"):
        limit_document(ws, lambda: single[:-1] + default[-1:], {**SPEC, "n_boot": 0})
