"""The global discovery p-value over all masses: the look-elsewhere effect (Gross & Vitells,
Eur. Phys. J. C 70 (2010) 525, arXiv:1005.1891).

A search at M masses looks at M signal templates on one dataset. The local p-value of the most
significant mass, ``p_local = P(q₀,m* ≥ q₀,obs,m* | μ = 0)``, ignores that the largest of M
excesses was picked; the global p-value asks how often background alone gives, at *any* mass, an
excess at least as large as the largest one observed:

    q₀,max = max_m q₀,m        (q₀,m the discovery statistic of mass m, arXiv:1007.1727 eq. 12)
    p_global = P(q₀,max ≥ q₀,max,obs | μ = 0),    Z_global = Φ⁻¹(1 − p_global)

estimated from N background-only pseudo-datasets, each fitted at every mass: p_global is the
fraction of datasets whose largest q₀ reaches the observed largest q₀, with its binomial error
√(p(1 − p)/N) and 68.27 % Clopper–Pearson interval. The trials factor is p_global / p_local with
p_local from the same datasets at the observed maximum's mass m*. Taking the largest q₀ (not the
smallest toy p-value) is Gross & Vitells' statistic; for q₀ with the same asymptotic half-χ²₁
distribution at every mass the two orderings agree (Φ(−√q₀) is monotonic).

Shared datasets
---------------
One dataset serves every mass only if the background-only model is the same at every mass: the
per-mass workspaces share the background templates, their names and constraints and the shape
systematics' background templates (:func:`check_same_background`; a difference is refused in one
line). At μ = 0 the signal drops out, so the generation point (0, θ̂̂(0)) — the conditional fit to
the observed data — is one point for all masses. The datasets are drawn once with the first
mass's sampler (:class:`~lzflow.stats.toys.ToySampler`, counter stream keyed by (base_seed,
mass_key, poi_index, B-only), canonical blocks of the toy index) and fitted with each mass's model
exactly as the toy jobs fit q₀ (:func:`~lzflow.stats.toys.fit_toy_block`, starting at the
generation point). The default stream is :data:`GLOBAL_MASS_KEY` (0: no mass has it) with
:data:`~lzflow.observed.DISCOVERY_POI_INDEX`; with one mass and that mass's key the datasets are
its local discovery toys and p_global = its local p-value.

Asymptotic cross-check
----------------------
Gross & Vitells (eq. 4 with s = 1 degree of freedom; one-sided q₀, hence the ½) bound the tail by
the local one plus the expected number of upcrossings of the level c by the scan q₀(m):

    p_global ≈ ½ P(χ²₁ > c) + ⟨N(u₀)⟩ e^{−(c − u₀)/2}

with ⟨N(u₀)⟩ counted on the same datasets at a low level u₀ = :data:`GV_THRESHOLD` (upcrossing:
q₀ < u₀ at one mass, ≥ u₀ at the next, masses ascending). It extrapolates beyond the reach of the
toys; it assumes q₀(m) is a smooth χ² process, so on a coarse mass grid it undercounts.

A dataset is used only if its q₀ is usable at every mass (:func:`lzflow.stats.quality.toy_quality`);
the others are counted per cause. Limits: the observed data must be unblinded (the global p-value
is an observed quantity); masses whose signal has no event in the ROI are left out. This module
fits binned counts; :mod:`lzflow.stats.lookelsewhere_unbinned` fits events with the unbinned
likelihood and shares :func:`global_summary`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy.stats import norm

from ..exceptions import MergeError
from .fit import BatchedFitter
from .fitresult import FitConfig
from .hypotest import observed_q
from .model import BinnedModel
from .pvalues import Ensemble
from .quality import GOOD, cause_counts, toy_quality
from .teststat import evaluate_test_statistic
from .toys import (
    ToySampler,
    canonical_blocks,
    fit_toy_block,
    generation_point,
    run_blocks,
)

__all__ = [
    "GLOBAL_MASS_KEY",
    "GLOBAL_POI_INDEX",
    "GV_THRESHOLD",
    "GlobalToys",
    "discovery_q0",
    "refuse_model_differences",
    "LookElsewhereError",
    "check_same_background",
    "global_pvalue",
    "global_summary",
    "global_toys",
    "gross_vitells",
    "upcrossings",
]

#: the low level u₀ at which upcrossings are counted (Gross & Vitells' c₀)
GV_THRESHOLD = 1.0
#: the mass key of the global datasets' stream (round(mass × 10⁴) = 0 belongs to no mass)
GLOBAL_MASS_KEY = 0
#: their POI index: the discovery toys' (lzflow.observed.DISCOVERY_POI_INDEX; a literal here so
#: that lzflow.stats does not import lzflow.observed)
GLOBAL_POI_INDEX = 999


class LookElsewhereError(MergeError):
    """The masses' models cannot share background-only datasets (one line)."""


def _background_difference(a: BinnedModel, b: BinnedModel) -> str | None:
    """What differs between the background-only models of ``a`` and ``b`` (None: nothing)."""
    if a.names != b.names:
        return f"background names {list(a.names)} vs {list(b.names)}"
    if a.bin_shape != b.bin_shape:
        return f"bin shape {a.bin_shape} vs {b.bin_shape}"
    for k, name in enumerate(a.names):
        if not np.array_equal(a.backgrounds[k], b.backgrounds[k]):
            return f"background {name!r} template"
        if a.rel_unc[k] != b.rel_unc[k]:
            return f"background {name!r} rel_unc {a.rel_unc[k]:g} vs {b.rel_unc[k]:g}"
    sa, sb = a.shape_systematics, b.shape_systematics
    if [s.name for s in sa] != [s.name for s in sb]:
        return f"shape systematics {[s.name for s in sa]} vs {[s.name for s in sb]}"
    if sa and a.interpolation != b.interpolation:
        return f"interpolation {a.interpolation!r} vs {b.interpolation!r}"
    for x, y in zip(sa, sb):
        for label in ("up", "down", "up2", "down2"):
            tx, ty = getattr(x, label), getattr(y, label)
            if (tx is None) != (ty is None) or (tx is not None and not np.array_equal(tx[1:], ty[1:])):
                return f"shape systematic {x.name!r} background templates ({label})"
    return None


def refuse_model_differences(models: Mapping[float, Any], difference: Callable[[Any, Any], str | None],
                             what: str, expected: str) -> None:
    """Raise :class:`LookElsewhereError` (one line) at the first mass whose model differs from the
    first mass's by ``difference`` (a description, or None when they agree)."""
    items = list(models.items())
    ref_mass, ref = items[0]
    for mass, model in items[1:]:
        diff = difference(ref, model)
        if diff is not None:
            raise LookElsewhereError(f"global p-value: the {what} at {mass:g} GeV differs from {ref_mass:g} GeV's "
                                     f"({diff}); expected {expected}")


def check_same_background(models: Mapping[float, BinnedModel]) -> None:
    """Refuse (one line, :class:`LookElsewhereError`) masses whose background-only models differ:
    templates, names, constraints, shape systematics' background templates (module docstring)."""
    refuse_model_differences(models, _background_difference, "background model",
                             "the same backgrounds at every mass, so that background-only datasets are shared")


@dataclass
class GlobalToys:
    """q₀ of N background-only datasets at every mass: ``q0`` ``(N, M)``, ``good`` ``(N,)`` (usable
    at every mass), ``causes`` (why the others are not, counted over masses), ``gen`` the
    generation point (0, θ̂̂(0))."""

    q0: np.ndarray
    good: np.ndarray
    causes: dict[str, int]
    gen: np.ndarray


def global_toys(models: Sequence[BinnedModel], counts: np.ndarray, aux: np.ndarray, n_toys: int,
                base_seed: int, mass_key: int = GLOBAL_MASS_KEY, poi_index: int = GLOBAL_POI_INDEX,
                block_size: int = 256, n_threads: int | None = 1) -> GlobalToys:
    """Draw ``n_toys`` background-only datasets once at the data's (0, θ̂̂(0)) and fit q₀ of each
    at every model's signal (module docstring); bit-identical for any ``n_threads``."""
    config = FitConfig(n_threads=1)
    counts, aux = np.asarray(counts, float), np.asarray(aux, float)
    ref_fitter = BatchedFitter(models[0], config)
    gen, _ = generation_point(models[0], 0.0, (counts, aux), ref_fitter)
    sampler = ToySampler(ref_fitter, gen)
    fitters = [ref_fitter] + [BatchedFitter(m, config) for m in models[1:]]
    slopes = [f.profile_slope(gen) for f in fitters]
    n, n_m = int(n_toys), len(models)
    q0 = np.full((n, n_m), np.nan)
    codes = np.zeros((n, n_m), dtype=np.int16)
    indices = np.arange(n, dtype=np.int64)
    zero = np.zeros(1)

    def work(item: tuple[int, np.ndarray]) -> None:
        blk, rows = item
        data, block_aux = sampler.draw(base_seed, mass_key, poi_index, "b",
                                       np.arange(blk * block_size, (blk + 1) * block_size, dtype=np.int64))
        dense = sampler.dense_counts(data)
        pos = indices[rows] - blk * block_size
        for j, (fitter, slope) in enumerate(zip(fitters, slopes)):
            prepared = data if j == 0 else fitter.prepare(dense, block_aux)
            ru, (rc,) = fit_toy_block(fitter, prepared, gen, zero, "q0", slope)
            q0[rows, j], codes[rows, j] = discovery_q0(ru, rc, pos, zero)

    run_blocks(work, canonical_blocks(indices, int(block_size)), n_threads, n, "global p-value toys")
    good = np.all(codes == GOOD, axis=1)
    return GlobalToys(q0=q0, good=good, causes=cause_counts(codes), gen=gen)


def discovery_q0(ru: Any, rc: Any, pos: np.ndarray, zero: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """q₀ of the rows ``pos`` of a block's unconditional fit ``ru`` and its μ = 0 fit ``rc``
    (``zero`` = ``[0.]``), and their :func:`~lzflow.stats.quality.toy_quality` codes."""
    mu_hat = ru.params[pos, 0]
    q = evaluate_test_statistic("q0", rc.nll[pos][:, None], ru.nll[pos], mu_hat, zero)[:, 0]
    records = {"q": q[:, None], "mu_hat": mu_hat, "mu_test": zero, "status_uncond": ru.status[pos],
               "status_cond": rc.status[pos][:, None]}
    return q, toy_quality(records, "q0")[:, 0]


def _pvalue(ens: Ensemble, q_obs: float) -> dict[str, Any]:
    """Toy p-value P(q ≥ q_obs), its binomial error, Clopper–Pearson interval and Z; the interval's
    upper bound (and Z a lower bound) when no toy reaches q_obs."""
    k = int(ens.count(q_obs))
    p = float(ens.fraction(q_obs))
    lo, hi = (float(v) for v in ens.interval(q_obs))
    bound = k == 0
    p_rep = hi if bound else p
    return {"p_value": p_rep, "p_value_error": float(np.sqrt(p * (1.0 - p) / ens.n)),
            "p_value_interval": [lo, hi], "p_value_is_upper_bound": bound, "toys_at_or_above": k,
            "significance": float(norm.isf(p_rep)) if p_rep > 0 else float("inf"),
            "significance_is_lower_bound": bound}


def upcrossings(q0: np.ndarray, level: float) -> np.ndarray:
    """Upcrossings of ``level`` by each row of ``q0`` ``(n, M)`` (masses ascending): the number of
    m with q₀[m − 1] < level ≤ q₀[m]."""
    q0 = np.asarray(q0, dtype=np.float64)
    return np.sum((q0[:, :-1] < level) & (q0[:, 1:] >= level), axis=1)


def gross_vitells(q0_max: float, mean_upcrossings: float, level: float = GV_THRESHOLD) -> float:
    """½ P(χ²₁ > c) + ⟨N(u₀)⟩ e^{−(c − u₀)/2} at c = ``q0_max`` (module docstring), at most 1."""
    c = max(float(q0_max), 0.0)
    return min(1.0, float(norm.sf(np.sqrt(c))) + float(mean_upcrossings) * float(np.exp(-(c - level) / 2.0)))


def global_pvalue(models: Mapping[float, BinnedModel], counts: np.ndarray, aux: np.ndarray, n_toys: int,
                  base_seed: int, mass_key: int = GLOBAL_MASS_KEY, poi_index: int = GLOBAL_POI_INDEX,
                  block_size: int = 256, n_threads: int | None = 1) -> dict[str, Any]:
    """The global p-value of the data (``counts``, ``aux``) over the masses of ``models``
    ``{mass_GeV: model}`` (module docstring): observed q₀ per mass, the mass of the largest, its
    local p-value from the same datasets, p_global with its binomial error and interval, Z_global
    and the trials factor p_global / p_local."""
    if not models:
        raise LookElsewhereError("global p-value: no mass with signal events in the ROI")
    check_same_background(models)
    models = dict(sorted(models.items()))  # masses ascending (the upcrossings follow the scan)
    masses = list(models)
    q_obs = np.array([max(float(observed_q(m, counts, aux, [0.0], "q0")[0][0]), 0.0) for m in models.values()])
    toys = global_toys(list(models.values()), counts, aux, n_toys, base_seed, mass_key, poi_index, block_size,
                       n_threads)
    return global_summary(masses, q_obs, toys, n_toys, base_seed, mass_key, poi_index)


def global_summary(masses: Sequence[float], q_obs: np.ndarray, toys: GlobalToys, n_toys: int, base_seed: int,
                   mass_key: int, poi_index: int) -> dict[str, Any]:
    """The global p-value document of :func:`global_pvalue` from the observed q₀ per mass
    (``masses`` ascending) and the datasets' q₀ ``toys`` (binned or unbinned likelihood alike):
    p_global, the local p-value at the largest observed q₀, the trials factor, Gross & Vitells."""
    q_obs = np.asarray(q_obs, dtype=np.float64)
    star = int(np.argmax(q_obs))
    glob = _pvalue(Ensemble(np.max(toys.q0, axis=1), toys.good), float(q_obs[star]))
    local = _pvalue(Ensemble(toys.q0[:, star], toys.good), float(q_obs[star]))
    p_l, p_g = local["p_value"], glob["p_value"]
    n_up = float(np.mean(upcrossings(toys.q0[toys.good], GV_THRESHOLD))) if toys.good.any() else None
    p_gv = None if n_up is None else gross_vitells(q_obs[star], n_up)
    return {
        "masses_GeV": [float(m) for m in masses],
        "q0_observed": [float(q) for q in q_obs],
        "max_mass_GeV": float(masses[star]), "q0_max_observed": float(q_obs[star]),
        "global": glob, "local_at_max": {**local, "p_value_asymptotic": float(norm.sf(np.sqrt(q_obs[star]))),
                                         "significance_asymptotic": float(np.sqrt(q_obs[star]))},
        "trials_factor": p_g / p_l if p_l > 0 else None,
        "trials_factor_is_bound": bool(glob["p_value_is_upper_bound"] or local["p_value_is_upper_bound"]),
        "gross_vitells": {"level_u0": GV_THRESHOLD, "mean_upcrossings": n_up, "p_value": p_gv,
                          "significance": float(norm.isf(p_gv)) if p_gv is not None and 0.0 < p_gv < 1.0 else None,
                          "note": "asymptotic extrapolation; assumes a smooth q0(m) scan (a coarse grid undercounts)"},
        "n_toys": int(n_toys), "n_toys_used": int(toys.good.sum()), "excluded": toys.causes,
        "seed_stream": [int(base_seed), int(mass_key), int(poi_index), 1],
        "generated_at": "mu = 0, the observed data's conditional fit theta_hat_hat(0) (one point for every mass)",
        "statistic": "max over masses of q0 (Gross & Vitells 2010); p_global = P(max q0 >= observed max q0 | mu = 0)",
    }
