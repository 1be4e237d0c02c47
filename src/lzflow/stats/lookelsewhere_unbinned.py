"""The global discovery p-value over all masses with the unbinned likelihood (look-elsewhere
effect, Gross & Vitells, Eur. Phys. J. C 70 (2010) 525, arXiv:1005.1891): the statistic and the
summary of :mod:`lzflow.stats.lookelsewhere`, on event datasets.

    q₀,max = max_m q₀,m,    p_global = P(q₀,max ≥ q₀,max,obs | μ = 0)

with q₀,m the unbinned discovery statistic (arXiv:1007.1727 eq. 12) of the events under mass
m's :class:`~lzflow.stats.unbinned_model.UnbinnedModel` — the q₀ of each mass's observed fit
(:meth:`~lzflow.stats.unbinned_observed.UnbinnedObserved.q`, as ``limit.json`` reports it).

Shared event datasets
---------------------
At μ = 0 the signal drops out of the extended likelihood, so the background-only model is one
model for every mass when the masses share their full-resolution background templates, names
and constraints (:func:`~lzflow.stats.lookelsewhere.check_same_background` on the truth models)
and their grid and fit densities (edges, interpolation order, floor, edge rule, template
rebin; :func:`check_same_unbinned_background`). The generation point (0, θ̂̂(0)) is the
conditional fit of the observed events at μ = 0 under the first mass's model
(:meth:`UnbinnedObserved.generation_point`, where that mass's local discovery toys are made).
The event datasets are drawn once per canonical block of the toy index with the unbinned
sampler (:class:`~lzflow.stats.unbinned_model.UnbinnedToySampler`, counter stream keyed by
(base_seed, mass_key, poi_index, B-only)) and fitted with each mass's
:class:`~lzflow.stats.unbinned.UnbinnedFitter` exactly as the unbinned toy jobs fit q₀
(:class:`~lzflow.stats.toys.UnbinnedToys`: same sub-blocks, start at the generation point,
profile slope of the truth model; :func:`~lzflow.stats.toys.fit_drawn_block`), one thread per
block: the q₀ are bit-identical for any number of threads, and with one mass and that mass's
seed stream the datasets are its local discovery toys (p_global = p_local).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .fitresult import FitConfig
from .lookelsewhere import (
    GLOBAL_MASS_KEY,
    GLOBAL_POI_INDEX,
    GlobalToys,
    LookElsewhereError,
    check_same_background,
    discovery_q0,
    global_summary,
    refuse_model_differences,
)
from .quality import GOOD, cause_counts
from .toys import DrawnBlock, UnbinnedToys, canonical_blocks, fit_drawn_block, run_blocks
from .unbinned import sub_block_size
from .unbinned_model import UnbinnedModel, UnbinnedToySampler
from .unbinned_observed import UnbinnedObserved

__all__ = ["check_same_unbinned_background", "global_pvalue_unbinned", "global_toys_unbinned"]


def _density_difference(a: UnbinnedModel, b: UnbinnedModel) -> str | None:
    """What differs between the unbinned fit settings and grids of ``a`` and ``b`` (None: nothing)."""
    for name in ("order", "template_rebin", "edge", "floor"):
        if getattr(a, name) != getattr(b, name):
            return f"{name} {getattr(a, name)!r} vs {getattr(b, name)!r}"
    for axis, (ea, eb) in enumerate(zip(a.edges, b.edges)):
        if not np.array_equal(ea, eb):
            return f"axis {axis} edges"
    return None


def check_same_unbinned_background(models: Mapping[float, UnbinnedModel]) -> None:
    """Refuse (one line, :class:`~lzflow.stats.lookelsewhere.LookElsewhereError`) masses whose
    background-only unbinned models differ: truth backgrounds (binned check), grid edges, interpolation
    order, template rebin, edge rule and floor (module docstring)."""
    check_same_background({m: model.truth for m, model in models.items()})
    refuse_model_differences(models, _density_difference, "unbinned model",
                             "the same grid and fit densities at every mass, so that event datasets are shared")


def global_toys_unbinned(models: Sequence[UnbinnedModel], observed: UnbinnedObserved, n_toys: int, base_seed: int,
                         mass_key: int = GLOBAL_MASS_KEY, poi_index: int = GLOBAL_POI_INDEX, block_size: int = 256,
                         n_threads: int | None = 1, config: FitConfig | None = None) -> GlobalToys:
    """Draw ``n_toys`` background-only event datasets once at the events' (0, θ̂̂(0)) under
    ``observed.model`` (the first mass's) and fit q₀ of each at every model (module docstring);
    bit-identical for any ``n_threads``. ``config``: the fits' settings (default
    :class:`FitConfig`, as the toy jobs; its thread count is ignored)."""
    fit_config = FitConfig(**{**(config or FitConfig()).__dict__, "n_threads": 1})
    gen = observed.generation_point(0.0)
    sampler = UnbinnedToySampler(models[0], gen)
    likelihoods = [UnbinnedToys(m, fit_config) for m in models]
    slopes = [lk.truth_fitter.profile_slope(gen) for lk in likelihoods]
    n, n_m = int(n_toys), len(models)
    q0 = np.full((n, n_m), np.nan)
    codes = np.zeros((n, n_m), dtype=np.int16)
    indices = np.arange(n, dtype=np.int64)
    zero = np.zeros(1)

    def work(item: tuple[int, np.ndarray]) -> None:
        blk, rows = item
        events = sampler.draw(base_seed, mass_key, poi_index, "b",
                              np.arange(blk * block_size, (blk + 1) * block_size, dtype=np.int64))
        size = sub_block_size(models[0].n_par, int(events.n_events.max()) if events.n else 0)
        pos = indices[rows] - blk * block_size
        for j, (lk, slope) in enumerate(zip(likelihoods, slopes)):
            subs = (lk.fitter.prepare(events.take(np.arange(s0, min(s0 + size, events.n))))
                    for s0 in range(0, events.n, size))
            ru, (rc,) = fit_drawn_block(lk.fitter, DrawnBlock(events.aux, events.n_events, subs), gen, zero, "q0",
                                        slope)
            q0[rows, j], codes[rows, j] = discovery_q0(ru, rc, pos, zero)

    run_blocks(work, canonical_blocks(indices, int(block_size)), n_threads, n, "global p-value unbinned toys")
    good = np.all(codes == GOOD, axis=1)
    return GlobalToys(q0=q0, good=good, causes=cause_counts(codes), gen=gen)


def global_pvalue_unbinned(models: Mapping[float, UnbinnedModel], x: np.ndarray, y: np.ndarray, aux: np.ndarray,
                           n_toys: int, base_seed: int, mass_key: int = GLOBAL_MASS_KEY,
                           poi_index: int = GLOBAL_POI_INDEX, block_size: int = 256, n_threads: int | None = 1,
                           config: FitConfig | None = None) -> dict[str, Any]:
    """The global p-value of the in-window events (``x`` = cS1 [phd], ``y`` = log10 cS2) with the
    auxiliary observables ``aux`` over the masses of ``models`` ``{mass_GeV: UnbinnedModel}``:
    observed unbinned q₀ per mass, and the document of
    :func:`~lzflow.stats.lookelsewhere.global_summary` (p_global, local p at the largest q₀,
    trials factor, Gross & Vitells) from the shared event datasets (module docstring), with
    ``"likelihood": "unbinned"``."""
    if not models:
        raise LookElsewhereError("global p-value: no mass with signal events in the ROI")
    check_same_unbinned_background(models)
    models = dict(sorted(models.items()))  # masses ascending (the upcrossings follow the scan)
    observed = [UnbinnedObserved(m, x, y, aux, config) for m in models.values()]
    q_obs = np.array([float(o.q([0.0], "q0")[0]) for o in observed])
    bad = [m for m, q in zip(models, q_obs) if not np.isfinite(q)]
    if bad:
        raise LookElsewhereError(f"global p-value: the observed q0 at {', '.join(f'{m:g}' for m in bad)} GeV is not "
                                 f"finite (events no allowed parameter explains: infeasible fits); expected a finite "
                                 f"q0 at every mass (an interpolation_floor > 0 avoids it)")
    q_obs = np.maximum(q_obs, 0.0)
    toys = global_toys_unbinned(list(models.values()), observed[0], n_toys, base_seed, mass_key, poi_index,
                                block_size, n_threads, config)
    doc = global_summary(list(models), q_obs, toys, n_toys, base_seed, mass_key, poi_index)
    doc["generated_at"] = ("mu = 0, the observed events' conditional fit theta_hat_hat(0) under the unbinned "
                           "likelihood (one point for every mass)")
    return {**doc, "likelihood": "unbinned", "n_events_observed": int(np.asarray(x).size)}
