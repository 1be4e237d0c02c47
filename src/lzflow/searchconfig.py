"""``stats.shape_fit_search``: the minimum search of the shape fits in the toys (issue 12).

With shape systematics the NLL has several minima (:mod:`lzflow.stats.multistart`), and by
default every toy fit is started again from further points and keeps the lowest minimum
(``multistart``). ``single_start`` fits each toy once, from its generation point:

* the toys cost ≈ 4× less (one whole 40 GeV mass of the default analysis with the systematics
  overlay: 23 instead of 97 s on 2 cores; ``benchmarks/bench_search.py`` per toy);
* q̃ is then the likelihood ratio at the minimum that Newton reaches from the generation point,
  not the lowest one: it differs from the searched q̃ in 4–5 % of S+B toys and ≈ 10 % of the
  B-only (toy, μ) fits, by up to tens of units;
* the expected limits move by far less than their MC error (−0.03 % median, −0.4 % −1σ, −0.2 %
  +1σ on those toys, against 2.3 %, 8 % and 1.2 % MC error; docs/method.md "What the search
  buys"), because the S+B ensembles and the B-only experiments use the same statistic: the toy
  construction is valid for any deterministic test statistic applied alike to both.

The observed dataset of a projection (the Asimov background-only dataset, whose fits sit at the
nominal α) keeps the full search; on the 40 GeV workspace both searches give its q̃ at every grid
point bit for bit. Refused, in one line: without a ``systematics`` block (rate-only
fits are convex and have one start anyway), with ``blind: false`` (the observed data's q̃ must be
the toys' statistic, and the observed fits search), with ``stats.likelihood: unbinned`` (the
unbinned likelihood has no shape parameters) and with ``stats.discovery_from_toys`` (its toys are fitted
outside the toy jobs, with the full search).
"""

from __future__ import annotations

from typing import Any, Mapping

from .exceptions import ConfigError

__all__ = ["SHAPE_FIT_SEARCHES", "check_fit_search", "fit_search_spec"]

#: the values of ``stats.shape_fit_search``; the first is the default (lzflow.config.STATS_DEFAULTS)
SHAPE_FIT_SEARCHES = ("multistart", "single_start")


def check_fit_search(config: Mapping[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """``stats`` unchanged, or :class:`ConfigError` for a ``single_start`` the analysis cannot
    honour (module docstring)."""
    search = stats.get("shape_fit_search", SHAPE_FIT_SEARCHES[0])
    if search == SHAPE_FIT_SEARCHES[0]:
        return stats
    other = ("no systematics: block (rate-only fits have one start already)" if config.get("systematics") is None
             else "blind: false (the observed data's fits search every start)" if config.get("blind") is False
             else "stats.likelihood: unbinned" if stats.get("likelihood") == "unbinned"
             else "stats.discovery_from_toys (fitted outside the toy jobs)" if stats.get("discovery_from_toys")
             else None)
    if other:
        raise ConfigError(f"stats.shape_fit_search: {search!r} with {other}; expected multistart there")
    return stats


def fit_search_spec(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The toy-job spec entry: nothing for the default search (those specs and files stay as they
    were), ``{"shape_fit_search": "single_start"}`` otherwise."""
    search = stats.get("shape_fit_search", SHAPE_FIT_SEARCHES[0])
    return {} if search == SHAPE_FIT_SEARCHES[0] else {"shape_fit_search": search}
