"""Toys to a target precision: measure the Monte Carlo error of the expected limits, add toys where it is too large.

With ``stats.target_precision`` = ε (a relative error, e.g. 0.02) the workflow makes each mass's
toys in rounds:

1. the **first batch**: the configured toys (``toys_per_poi`` = N S+B toys per POI point,
   ``toys_bonly`` = N_B B-only toys, in ``jobs_per_poi`` = J jobs each), exactly the files of a run
   without a target;
2. **round r** (r = 1, 2, …; the Snakemake checkpoint ``precision`` per mass and round,
   :func:`lzflow.precisionjob.decide`): the toys so far (m_{r−1} × the first batch, m_0 = 1) are
   merged as merge would (:func:`lzflow.merge.merge_mass`), and the relative bootstrap MC error of
   each reported quantity Q ∈ {median, −1σ, +1σ expected limit of the primary method}

   .. math:: r_Q = \\sigma^{\\rm boot}_Q / Q

   (``expected_mu_err`` / ``expected_mu`` in ``limit.json``: the standard deviation of Q over
   bootstrap replicates of all S+B and B-only toys, :func:`lzflow.stats.inversion.bootstrap_errors`)
   is compared with its target ε_Q: ε_Q = ε for all three with a number ε; the mapping form
   ``{median: ε_0, minus_1sigma: ε_−, plus_1sigma: ε_+}`` covers only the quantities it names
   (:func:`targets`; e.g. ``{median: 0.02}`` for CLs+b, whose −1σ quantile sits near μ = 0 and needs
   8–17x the median's toys for the same relative error: docs/method.md). A Monte Carlo error falls
   as :math:`1/\\sqrt{N}`, so the mass needs :math:`m_r = \\lceil 1.1\\, m_{r-1} s^2 \\rceil` times its
   first batch, :math:`s = \\max_Q r_Q / ε_Q` over the covered quantities (:func:`shortfall`; 1.1:
   :data:`MARGIN`, room for the scatter of the estimate), at most ``stats.max_toys_per_poi // N``.
   A mass with every covered :math:`r_Q ≤ ε_Q` keeps m_r = m_{r−1}: no extra job, and no later round;
   a round at the bound, or round :data:`MAX_ROUNDS`, is the last too (its toys are still made and merged).
3. the **extension** of round r: the toys of a run with ``m_r × N`` S+B and ``m_r × N_B`` B-only
   toys in ``m_r × J`` jobs per POI, less its first ``m_{r−1} × J`` jobs, which exist: job j of any
   such split holds toy indices ``[⌊m N·j/(m J)⌋, ⌊m N·(j+1)/(m J)⌋)`` = ``[⌊N·j/J⌋, ⌊N·(j+1)/J⌋)``,
   whatever m (:func:`lzflow.toyjobs.toy_block`). Seeds derive from (seed, mass, POI, toy index)
   (:mod:`lzflow.stats.toys`), so each round continues the same streams, no toy is ever remade, and
   the final merge sees toy for toy (and run number for run number) what a run with the fixed
   count ``m_R × toys_per_poi`` sees: the same ``limit.json`` but for the ``precision`` section
   (:func:`precision_section`: the error reached and, per round, the toys measured, r_Q, whether
   ε was met and the toys asked for).

The extra toy files of round r are ``m<mass>/toys/extra/r<r>/poi<k>/job<j>.npz`` and
``…/extra/r<r>/bonly/job<j>.npz`` (:data:`lzflow.layout.TOYS_SB_EXTRA`, :data:`~lzflow.layout.TOYS_B_EXTRA`),
listed with their job specs in the round's decision file ``m<mass>/toys/precision_r<r>.json``
(:data:`lzflow.layout.PRECISION_DECISION`), written and read by :mod:`lzflow.precisionjob`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from .exceptions import ConfigError

#: ``stats.target_precision`` when set: a number, or {quantity name: number} (:func:`targets`)
Target = float | Mapping[str, float]

__all__ = ["MARGIN", "MAX_ROUNDS", "QUANTITIES", "QUANTITY_NAMES", "check_precision", "precision_merge_keys",
           "relative_errors", "multiplier", "precision_section", "worst_relative_error", "extended", "targets",
           "shortfall", "target_reached", "target_value", "Target"]

#: factor on the toys the 1/√N extrapolation asks for (the measured error itself scatters by ~10 %)
MARGIN = 1.1
#: the reported quantities whose precision is measured: expected-limit bands {N σ} (keys of ``expected_mu``)
QUANTITIES = ("-1", "0", "1")
#: the names of :data:`QUANTITIES` in the mapping form of ``stats.target_precision``
QUANTITY_NAMES = {"minus_1sigma": "-1", "median": "0", "plus_1sigma": "1"}
#: most rounds (decisions) per mass; the extension of the last one is merged unmeasured. The error
#: estimate scatters itself, so one 1/√N extrapolation falls short for about half the masses
#: (measured: 3 of 8 seeds reach ε after one round); three rounds left 1 of 12 quick-config seeds at
#: 1.02 ε (tests/unit/test_precision.py, the seed-scatter test), so five
MAX_ROUNDS = 5
#: toy jobs per POI of one mass must stay below this (run numbers, :data:`lzflow.toyjobs.MAX_JOBS`)
MAX_JOBS_PER_POI = 10000


def check_precision(stats: Mapping[str, Any]) -> Mapping[str, Any]:
    """The resolved ``stats`` block, refused (one line naming the key) where the precision keys do
    not fit: ``max_toys_per_poi`` is required with ``target_precision`` (no silent default) and
    meaningless without it, at least every mass's ``toys_per_poi``, and small enough that the
    extended jobs keep their run numbers (< :data:`MAX_JOBS_PER_POI` jobs per POI)."""
    target, bound = stats.get("target_precision"), stats.get("max_toys_per_poi")
    if target is None:
        if bound is not None:
            raise ConfigError(f"stats.max_toys_per_poi: {bound} without stats.target_precision; expected null "
                              f"(it bounds the toys added to reach a target precision)")
        return stats
    targets(target)  # refuses an unknown quantity or a value that is not a positive number
    for key, _, v in _entries(target):
        if not 0 < float(v) < 1:
            raise ConfigError(f"{key}: {v!r}; expected a relative error in (0, 1), e.g. 0.02")
    if bound is None:
        raise ConfigError(f"stats.max_toys_per_poi: null with stats.target_precision {target}; expected the most "
                          f"S+B toys per POI point a mass may reach (an integer >= toys_per_poi)")
    for label, ms in stats["per_mass"].items():
        if int(bound) < int(ms["toys_per_poi"]):
            raise ConfigError(f"stats.max_toys_per_poi: {bound} below toys_per_poi {ms['toys_per_poi']} (mass {label}); "
                              f"expected at least the first batch")
        m = int(bound) // int(ms["toys_per_poi"])
        if m * int(ms["jobs_per_poi"]) >= MAX_JOBS_PER_POI:
            raise ConfigError(f"stats.max_toys_per_poi: {bound} allows {m * int(ms['jobs_per_poi'])} toy jobs per POI "
                              f"(mass {label}); expected fewer than {MAX_JOBS_PER_POI} (lower it or raise toys_per_poi)")
    return stats


def precision_merge_keys(stats: Mapping[str, Any]) -> dict[str, Any]:
    """What the merge spec adds: ``target_precision`` when set, as configured (a number, or the
    mapping of quantity names to numbers; a merge spec without it is unchanged)."""
    target = stats.get("target_precision")
    return {} if target is None else {"target_precision": target_value(target)}


def target_value(target: Target) -> Target:
    """``stats.target_precision`` (not null) in the specs and decision files: a float, or
    {name: float} in the order of :data:`QUANTITY_NAMES` (checked by :func:`targets`)."""
    targets(target)
    if isinstance(target, Mapping):
        return {name: float(target[name]) for name in QUANTITY_NAMES if name in target}
    return float(target)


def targets(target: Target) -> dict[str, float]:
    """The target ε_Q of each quantity it covers (keys of :data:`QUANTITIES`, in their order).

    ``stats.target_precision`` is either a number ε, which covers the median and both ±1σ
    expected limits (ε_Q = ε for every Q), or a mapping naming the quantities it covers, each with
    its own target, e.g. ``{median: 0.02}`` or ``{median: 0.02, plus_1sigma: 0.05}``
    (:data:`QUANTITY_NAMES`). Other forms, and values that are not positive numbers, are refused
    with one line (:class:`~lzflow.exceptions.ConfigError`) naming the key, the value and what was
    expected (a configuration is held to 0 < ε_Q < 1 by the schema and :func:`check_precision`)."""
    entries = _entries(target)
    for key, _, v in entries:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise ConfigError(f"{key}: {v!r}; expected a positive relative error, e.g. 0.02")
    eps = {q: float(v) for _, q, v in entries}
    return {q: eps[q] for q in QUANTITIES if q in eps}


def _entries(target: Target) -> list[tuple[str, str, Any]]:
    """(configuration key, quantity, value) of each quantity ``target`` covers; the mapping form's
    names checked (at least one, none unknown)."""
    if not isinstance(target, Mapping):
        return [("stats.target_precision", q, target) for q in QUANTITIES]
    unknown = sorted(str(k) for k in target if k not in QUANTITY_NAMES)
    if unknown or not target:
        raise ConfigError(f"stats.target_precision: {dict(target)!r}; expected a mapping naming at least one of "
                          f"{', '.join(QUANTITY_NAMES)} (each with its relative error)"
                          + (f", not {', '.join(unknown)}" if unknown else ""))
    return [(f"stats.target_precision.{name}", QUANTITY_NAMES[name], v) for name, v in target.items()]


def relative_errors(doc: Mapping[str, Any], method: str) -> dict[str, float | None]:
    """r_Q = expected_mu_err / expected_mu of ``limit.json``'s method ``method`` for each of
    :data:`QUANTITIES`; None where either is missing, not finite or Q ≤ 0 (a band on a grid edge)."""
    limits = doc["limits"][method]
    out: dict[str, float | None] = {}
    for q in QUANTITIES:
        mu, err = limits["expected_mu"].get(q), limits["expected_mu_err"].get(q)
        ok = mu is not None and err is not None and math.isfinite(mu) and math.isfinite(err) and mu > 0
        out[q] = float(err) / float(mu) if ok else None
    return out


def worst_relative_error(rel: Mapping[str, float | None], target: Target | None = None) -> float | None:
    """The largest measured r_Q (None when none was measured), over the quantities ``target``
    covers (:func:`targets`; every quantity without it)."""
    covered = QUANTITIES if target is None else targets(target)
    values = [r for q, r in rel.items() if r is not None and q in covered]
    return max(values) if values else None


def shortfall(rel: Mapping[str, float | None], target: Target) -> float | None:
    """:math:`s = \\max_Q r_Q / ε_Q` over the covered quantities that were measured (None if none):
    the target is met when s ≤ 1. With a number ε, s = max_Q r_Q / ε exactly (division by one
    positive number keeps the order, also in floating point)."""
    values = [r / eps for q, eps in targets(target).items() if (r := rel.get(q)) is not None]
    return max(values) if values else None


def target_reached(rel: Mapping[str, float | None], target: Target) -> bool:
    """Whether every covered quantity that was measured has r_Q ≤ ε_Q, and at least one was."""
    measured = [(rel[q], eps) for q, eps in targets(target).items() if rel.get(q) is not None]
    return bool(measured) and all(r <= eps for r, eps in measured)


def multiplier(rel: Mapping[str, float | None], target: Target, toys_per_poi: int, max_toys_per_poi: int,
               current: int = 1) -> int:
    """How many times its first batch a mass needs, measured with ``current`` times it: ``current``
    when every covered r_Q ≤ ε_Q (:func:`target_reached`; or none could be measured), else
    ⌈:data:`MARGIN` · current · s²⌉ with s = max_Q r_Q / ε_Q (:func:`shortfall`), at most
    ``max_toys_per_poi // toys_per_poi`` and never fewer than ``current``."""
    s = shortfall(rel, target)
    if s is None or target_reached(rel, target):
        return current
    need = math.ceil(MARGIN * current * s ** 2)
    return max(current, min(need, int(max_toys_per_poi) // int(toys_per_poi)))


def extended(headers: Sequence[Mapping[str, Any]]) -> bool:
    """Whether toy files of one ensemble (hypothesis) disagree on its total: a first batch and an extension."""
    return any(len({int(h["n_toys_total"]) for h in headers if h["hypothesis"] == hyp}) > 1 for hyp in ("sb", "b"))


def precision_section(doc: Mapping[str, Any], spec: Mapping[str, Any],
                      headers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``limit.json``'s ``precision`` (with ``target_precision`` in the merge spec): the relative
    bootstrap error reached per quantity, the target per covered quantity (``targets``), whether
    it is met, and the toys used; ``worst`` is the largest r_Q of the covered quantities."""
    target = spec["target_precision"]
    rel = relative_errors(doc, spec["method"])
    return {"target": target, "targets": targets(target), "method": spec["method"], "relative_error": rel,
            "worst": worst_relative_error(rel, target), "reached": target_reached(rel, target),
            "toys_per_poi": doc["toys"]["sb_per_poi"][0], "toys_bonly": doc["toys"]["bonly"],
            "toy_files": len(headers), "extended": extended(headers),
            # the checkpoint's rounds (lzflow.precisionjob.round_record): toys measured, r_Q, reached, toys asked for
            "rounds": list(spec.get("precision_rounds", [])),
            "measure": "bootstrap standard deviation / value of the expected limit (median, -1 sigma, +1 sigma)"}
