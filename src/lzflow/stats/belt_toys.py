"""The toys and fits of a two-sided construction (:mod:`lzflow.stats.construction`) on a model in
memory — the same records the workflow's toy jobs write, so nothing here is needed to *merge*.

* :func:`belt_toys` — S+B toys at every grid point (seed index = grid index, hypothesis 0, each
  evaluated at its own μ) and background-only toys evaluated on the whole grid (seed index
  :data:`~lzflow.stats.request.BONLY_POI_INDEX`, hypothesis 1): exactly the ensembles of the
  one-sided :func:`~lzflow.stats.hypotest.toy_limits`, test statistic q̃_μ (μ̂ bounded at 0), from
  whose fits t_μ is computed. A grid that starts at μ = 0 has S+B toys generated at μ = 0.
* :func:`observed_t` — one dataset's t_μ on the grid (the bounded unconditional fit and one
  conditional fit per μ, as a toy is fitted: :func:`~lzflow.stats.toys.fit_toy_block`).
* :func:`two_sided_limits` — both, then :func:`~lzflow.stats.construction.two_sided_result`.
* :func:`one_sided_on_same_toys` — the one-sided CLs+b inversion of q̃_μ from the same records
  (μ > 0 points only), for comparisons.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .bands import POWER_THRESHOLD
from .construction import SOURCE_TEST_STAT, TwoSidedResult, two_sided_result, two_sided_t
from .fit import BatchedFitter
from .fitresult import FitConfig, FitStatus
from .inversion import Inversion, invert_toys, toy_grid
from .model import BinnedModel
from .request import BONLY_POI_INDEX, ToyRequest
from .toyresult import ToyResult
from .toys import fit_toy_block, generation_point, observed_asimov, run_toys

__all__ = ["belt_toys", "observed_t", "two_sided_limits", "one_sided_on_same_toys"]


def belt_toys(model: Any, mu_grid: Sequence[float] | np.ndarray, n_toys_sb: int, n_toys_b: int,
              base_seed: int, mass_key: int, observed: tuple[np.ndarray, np.ndarray] | None = None,
              **run_kw: Any) -> tuple[list[ToyResult], ToyResult]:
    """(S+B ensembles, one per grid point; the B-only ensemble on the whole grid) — module
    docstring. ``observed`` = (counts, aux) fixes the generation points θ̂̂(μ) (default Asimov
    background-only); ``run_kw``: further :class:`~lzflow.stats.request.ToyRequest` fields
    (``n_procs``, ``n_threads``, ``block_size``, ``config``, ``stream``)."""
    mus = np.asarray(mu_grid, dtype=np.float64)
    obs = observed_asimov(model) if observed is None and isinstance(model, BinnedModel) else observed
    common = dict(base_seed=base_seed, mass_key=mass_key, test_stat=SOURCE_TEST_STAT, observed=obs, **run_kw)
    sb = [run_toys(model, ToyRequest(poi_index=k, hypothesis="sb", mu=float(mu), toy_indices=np.arange(n_toys_sb),
                                     **common)) for k, mu in enumerate(mus)]
    b = run_toys(model, ToyRequest(poi_index=BONLY_POI_INDEX, hypothesis="b", mu=0.0, mu_test=mus,
                                   toy_indices=np.arange(n_toys_b), **common))
    return sb, b


def observed_t(model: BinnedModel, counts: np.ndarray, aux: np.ndarray, mu_grid: Sequence[float] | np.ndarray,
               config: FitConfig | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """t_μ ``(n_mu,)`` of one binned dataset at every grid value, and the fits' info (μ̂,
    statuses). NaN where a fit it needs did not converge (an infeasible conditional fit: +inf).
    The fits start at the dataset's background-only fit (0, θ̂̂(0))."""
    cfg = config or FitConfig()
    fitter = BatchedFitter(model, FitConfig(**{**cfg.__dict__, "n_threads": 1}))
    mus = np.asarray(mu_grid, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64).reshape(1, -1)
    a = np.asarray(aux, dtype=np.float64).reshape(1, -1)
    start, _ = generation_point(model, 0.0, (c[0], a[0]), fitter)
    ru, conds = fit_toy_block(fitter, fitter.prepare(c, a), start, mus, SOURCE_TEST_STAT,
                              fitter.profile_slope(start))
    nll_cond = np.array([rc.nll[0] for rc in conds])
    st_cond = np.array([int(rc.status[0]) for rc in conds])
    t = two_sided_t(nll_cond, ru.nll[0], ru.params[0, 0])
    bad = (st_cond != FitStatus.CONVERGED) & (st_cond != FitStatus.INFEASIBLE)
    if int(ru.status[0]) != FitStatus.CONVERGED:
        bad[:] = True
    t = np.where(bad, np.nan, t)
    return t, {"mu_hat": float(ru.params[0, 0]), "status_uncond": int(ru.status[0]),
               "status_cond": st_cond.tolist()}


def two_sided_limits(model: BinnedModel, mu_grid: Sequence[float] | np.ndarray, n_toys_sb: int, n_toys_b: int,
                     base_seed: int, mass_key: int, cl: float = 0.90, power_threshold: float = POWER_THRESHOLD,
                     observed: tuple[np.ndarray, np.ndarray] | None = None, **run_kw: Any) -> TwoSidedResult:
    """The two-sided construction on a binned model: :func:`belt_toys`, :func:`observed_t` of
    ``observed`` (default the Asimov background-only dataset), :func:`two_sided_result`."""
    obs = observed_asimov(model) if observed is None else observed
    sb, b = belt_toys(model, mu_grid, n_toys_sb, n_toys_b, base_seed, mass_key, obs, **run_kw)
    t_obs, _ = observed_t(model, obs[0], obs[1], mu_grid, run_kw.get("config"))
    return two_sided_result(mu_grid, sb, b, t_obs, cl, power_threshold)


def one_sided_on_same_toys(mu_grid: Sequence[float] | np.ndarray, sb_toys: Sequence[ToyResult], b_toys: ToyResult,
                           cl: float = 0.90, power_threshold: float = POWER_THRESHOLD,
                           q_obs: np.ndarray | None = None) -> Inversion:
    """The one-sided CLs+b inversion (:func:`~lzflow.stats.inversion.invert_toys`) of the q̃_μ of
    the same records, on the grid points μ > 0 (q̃ at μ = 0 is 0 for every dataset). ``q_obs``:
    the observed q̃ on those points (default zeros: only the expected bands are then meaningful)."""
    mus = np.asarray(mu_grid, dtype=np.float64)
    keep = mus > 0
    sel = np.flatnonzero(keep)
    cols = [int(np.flatnonzero(b_toys.mu_test == m)[0]) for m in mus[keep]]
    b_view = {"q": b_toys.q[:, cols], "mu_hat": b_toys.mu_hat, "mu_test": b_toys.mu_test[cols],
              "status_uncond": b_toys.status_uncond, "status_cond": b_toys.status_cond[:, cols]}
    q = np.zeros(sel.size) if q_obs is None else np.asarray(q_obs, dtype=np.float64)
    grid = toy_grid(mus[keep], q, [sb_toys[i] for i in sel], b_view, SOURCE_TEST_STAT, sel)
    return invert_toys(grid, 1.0 - cl, "clsb", power_threshold)
