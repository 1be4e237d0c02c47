"""The ``stats.mc_stat`` config key: template MC statistics (:mod:`lzflow.stats.mcstat`).

``stats.mc_stat: {enabled: true, threshold: 0.05}`` gives every analysis bin whose background
templates have a relative MC error ≥ ``threshold`` a Barlow–Beeston-lite γ (docs/method.md), also
with shape ``systematics`` (the γ scale the morphed background, :mod:`lzflow.stats.mcstat_morph`).
The schema checks the keys and types; here the combinations the γ are not implemented for are
refused, in one line: ``runs`` (the combined model would drop them), ``stats.likelihood: unbinned``
(the unbinned NLL has no bins to scale) and ``blind: false`` (the observed-data fits,
:mod:`lzflow.observed`, would be given the θ auxiliary vector only).
"""

from __future__ import annotations

from typing import Any, Mapping

from .exceptions import ConfigError

__all__ = ["check_mc_stat"]


def check_mc_stat(config: Mapping[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """``stats`` unchanged, or :class:`ConfigError` when ``mc_stat`` is enabled with a combination
    that has no γ (module docstring)."""
    if not (stats.get("mc_stat") or {}).get("enabled"):
        return stats
    other = ("runs" if config.get("runs")
             else "stats.likelihood: unbinned" if stats.get("likelihood") == "unbinned"
             else "blind: false (the observed-data fits have no a_γ yet)" if config.get("blind") is False else None)
    if other:
        raise ConfigError(f"stats.mc_stat: enabled: true with {other}; expected mc_stat without it "
                          f"(template MC statistics are implemented for the binned model, with or without shape systematics)")
    return stats
