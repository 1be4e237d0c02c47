"""The ``stats.mc_stat`` config key (lzflow.mcstatconfig, schema): on, the workspace spec asks for the
γ; off or absent, the resolved config and the spec are those of before; malformed or combined with
what has no γ, refused in one line."""

from __future__ import annotations

import copy

import pytest

from lzflow.config import ConfigError, resolve_config
from lzflow.layout import workspace_spec


def _resolve(repo, default_config, stats, **extra):
    raw = copy.deepcopy(default_config)
    raw["stats"] = stats
    raw.update(extra)
    return resolve_config(raw, base_dir=repo)


def test_mc_stat_reaches_the_workspace_spec_only_when_enabled(repo, default_config):
    on = _resolve(repo, default_config, {"mc_stat": {"enabled": True, "threshold": 0.05}})
    assert workspace_spec(on, "40")["mc_stat"] == {"threshold": 0.05}
    off = _resolve(repo, default_config, {"mc_stat": {"enabled": False, "threshold": 0.05}})
    default = _resolve(repo, default_config, {})
    assert "mc_stat" not in default["stats"]
    assert workspace_spec(off, "40") == workspace_spec(default, "40")  # no rerun, same bytes


@pytest.mark.parametrize("mc_stat, fragments", [
    ({"enabled": True}, ["stats.mc_stat", "threshold"]),
    ({"enabled": "yes", "threshold": 0.05}, ["stats.mc_stat.enabled", "yes"]),
    ({"enabled": True, "threshold": 1.5}, ["stats.mc_stat.threshold", "1.5"]),
    ({"enabled": True, "threshold": 0.05, "relative": True}, ["stats.mc_stat", "relative"]),
])
def test_malformed_mc_stat_refused_in_one_line(repo, default_config, mc_stat, fragments):
    with pytest.raises(ConfigError) as info:
        _resolve(repo, default_config, {"mc_stat": mc_stat})
    assert "\n" not in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_mc_stat_with_unbinned_likelihood_refused(repo, default_config):
    with pytest.raises(ConfigError, match=r"^stats.mc_stat: enabled: true with stats.likelihood: unbinned;"):
        _resolve(repo, default_config, {"mc_stat": {"enabled": True, "threshold": 0.05}, "likelihood": "unbinned"})


def test_mc_stat_unblinded_refused(repo, default_config):
    with pytest.raises(ConfigError, match=r"^stats.mc_stat: enabled: true with blind: false"):
        _resolve(repo, default_config, {"mc_stat": {"enabled": True, "threshold": 0.05}}, blind=False,
                 data={"path": "tests/data/quick_observed_events.csv", "format": "csv",
                       "columns": {"cS1": "cS1", "cS2": "cS2"}})


def test_mc_stat_with_shape_systematics_reaches_the_workspace_spec(repo, default_config):
    """Once refused, now a model (lzflow.stats.mcstat_morph): the spec asks for the γ and the α."""
    from lzflow.config import deep_merge, load_yaml

    raw = deep_merge(copy.deepcopy(default_config), load_yaml(repo / "config" / "overlays" / "systematics.yaml"))
    raw["stats"] = {**raw.get("stats", {}), "mc_stat": {"enabled": True, "threshold": 0.05}}
    spec = workspace_spec(resolve_config(raw, base_dir=repo), "40")
    assert spec["mc_stat"] == {"threshold": 0.05}
    assert spec["systematics"] and spec["interpolation"] == "log_pchip"
