r"""The fits of a block of toys: the unconditional fit, then one conditional fit per tested μ.

:func:`fit_toy_block` fits the unconditional MLE (μ̂, θ̂) of every toy of a block, then the
conditional MLE θ̂̂(μ) at each tested μ in increasing order, each starting from the linear prediction
:math:`\theta(\mu) \approx \hat\theta + (\mu - \mu_\mathrm{prev})\,d\theta/d\mu` from the toy's
previous fit (the profile slope at the generation point).

**Only the needed fits** (``cond_fits="needed"``, :data:`lzflow.stats.request.COND_FITS`). The upper-limit test
statistics vanish above the best fit: :math:`\tilde q_\mu = q_\mu = 0` for :math:`\hat\mu > \mu`
(Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727, eqs. 14 and 16), whatever the conditional fit
gives, so a one-sided limit never reads that fit. With ``"needed"`` it is not run: its record has
status :attr:`~lzflow.stats.fitresult.FitStatus.NOT_NEEDED`, NLL and parameters NaN, and q = 0 as
before; the toy's next fit starts from its last fitted point (the unconditional fit, or a lower μ).
A toy whose μ̂ is NaN (failed unconditional fit) is fitted at every μ, as before. In the default
analysis 47 % of the S+B toys and 7 % of the B-only (toy, μ) pairs have μ̂ > μ (40 GeV). The
records then lack what the two-sided construction reads (t_μ needs the fit at every μ,
:func:`lzflow.stats.construction.records_t` refuses them), so the workflow asks for ``"needed"``
only for a one-sided construction (:func:`lzflow.layout.cond_fits_spec`). The q values agree with
``"all"`` (the remaining fits start where they did, up to the rows' order in the batched products;
a B-only toy that skips a low μ starts its first needed fit from θ̂ instead of θ̂̂ at that μ).

**Stored unconditional fits** (:class:`StoredUncond`). The unconditional fit of a toy depends only on
its data, so a caller that already has it (merge, evaluating the B-only toys of their files at new POI
points) passes it instead of fitting again: the conditional fits start from the same θ̂ and the records
are the same bit for bit. A block with a toy the store lacks (the toys past the last requested one in
a canonical block, fitted whole where fits depend on the block: rate-only and additive morphing) is
fitted as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .binned_nll import PreparedData
from .fitresult import FitResult, FitStatus
from .request import check_cond_fits
from .teststat import mu_lower_bound

__all__ = ["needed_rows", "fit_toy_block", "fit_drawn_block", "StoredUncond", "UNCOND_FIELDS"]

#: the record fields ``<name>_uncond`` of a toy file that :class:`StoredUncond` takes, in its order
UNCOND_FIELDS = ("params", "nll", "status", "strategy", "first_failure")


@dataclass(frozen=True)
class StoredUncond:
    """Unconditional fits already made, per toy index (the fields of the toy-file records:
    ``params_uncond``, ``nll_uncond``, ``status_uncond``, ``strategy_uncond``,
    ``first_failure_uncond``); :meth:`block` gives them as the unconditional fit of a block."""

    toy_index: np.ndarray  # (n,)
    params: np.ndarray  # (n, n_par)
    nll: np.ndarray
    status: np.ndarray
    strategy: np.ndarray
    first_failure: np.ndarray

    @cached_property
    def _order(self) -> np.ndarray:
        """The rows sorted by toy index (computed once, used for every block)."""
        return np.argsort(self.toy_index, kind="stable")

    def block(self, toys: np.ndarray) -> FitResult | None:
        """The fits of toys ``toys`` (toy indices) in their order, or None if any is not stored."""
        pos = np.searchsorted(self.toy_index, toys, sorter=self._order)
        if np.any(pos >= self.toy_index.size):
            return None
        rows = self._order[pos]
        if not np.array_equal(self.toy_index[rows], toys):
            return None
        res = FitResult.empty(toys.size, self.params.shape[1])
        res.params[:], res.nll[:], res.status[:] = self.params[rows], self.nll[rows], self.status[rows]
        res.strategy[:], res.first_failure[:] = self.strategy[rows], self.first_failure[rows]
        return res


def needed_rows(mu_hat: np.ndarray, mu: float) -> np.ndarray:
    """The toys whose conditional fit at ``mu`` can change q: μ̂ ≤ μ, or μ̂ NaN (not ``μ̂ > μ``, the
    same rule as :func:`lzflow.stats.quality.toy_quality`)."""
    return ~(np.asarray(mu_hat, dtype=np.float64) > float(mu))


def fit_toy_block(
    fitter: Any, data: PreparedData | Any, gen: np.ndarray, mu_test: np.ndarray,
    test_stat: str, slope: np.ndarray, cond_fits: str = "all", uncond: FitResult | None = None,
) -> tuple[FitResult, list[FitResult]]:
    """Unconditional fit + conditional fits at each tested μ for one block of toys (any fitter with
    the :meth:`~lzflow.stats.fit.BatchedFitter.fit` interface: binned, or
    :class:`lzflow.stats.unbinned.UnbinnedFitter`); ``cond_fits="needed"``: only where q can be
    non-zero; ``uncond``: the block's unconditional fits, already made (module docstring)."""
    check_cond_fits(cond_fits, test_stat)
    n = data.n
    nb = fitter.model.n_bkg
    init = np.broadcast_to(gen, (n, gen.size))
    lower = mu_lower_bound(test_stat)
    start = init.copy()
    if lower is not None:
        start[:, 0] = np.maximum(start[:, 0], lower)
    if uncond is None:
        ru = fitter.fit(data, mu_fixed=None, init=start, mu_lower=lower, fisher_at=gen)
    elif uncond.n != n:
        raise ValueError(f"stored unconditional fits: {uncond.n} for a block of {n} toys")
    else:
        ru = uncond
    conds: list[FitResult] = []
    prev_params, prev_mu = ru.params, ru.params[:, 0]
    bad_prev = ~np.all(np.isfinite(prev_params), axis=1)
    for mu in mu_test:
        ci = prev_params + (mu - prev_mu)[:, None] * slope
        ci[:, 1 : 1 + nb] = np.maximum(ci[:, 1 : 1 + nb], 0.0)  # θ ≥ 0 (α: clipped by the fit)
        ci[bad_prev] = gen
        ci[:, 0] = mu
        need = needed_rows(ru.params[:, 0], mu) if cond_fits == "needed" else np.ones(n, dtype=bool)
        if need.all():
            rc = fitter.fit(data, mu_fixed=float(mu), init=ci)
            prev_params, prev_mu = rc.params, np.full(n, float(mu))
        else:
            rc = FitResult.empty(n, ru.params.shape[1])
            rc.status[:] = FitStatus.NOT_NEEDED
            idx = np.flatnonzero(need)
            if idx.size:
                rc.put(idx, fitter.fit(data.subset(idx), mu_fixed=float(mu), init=ci[idx]))
            prev_params = np.where(need[:, None], rc.params, prev_params)
            prev_mu = np.where(need, float(mu), prev_mu)
        conds.append(rc)
        bad_prev = ~np.all(np.isfinite(prev_params), axis=1)
    return ru, conds


def fit_drawn_block(
    fitter: Any, block: Any, gen: np.ndarray, mu_test: np.ndarray, test_stat: str, slope: np.ndarray,
    cond_fits: str = "all", uncond: FitResult | None = None,
) -> tuple[FitResult, list[FitResult]]:
    """:func:`fit_toy_block` over the sub-blocks of a drawn block (:class:`lzflow.stats.toys.DrawnBlock`);
    the fits joined in toy order. ``uncond``: the whole block's unconditional fits, already made."""
    fits, start = [], 0
    for data in block.sub_blocks:
        part = None if uncond is None else uncond.take(np.arange(start, start + data.n))
        fits.append(fit_toy_block(fitter, data, gen, mu_test, test_stat, slope, cond_fits, part))
        start += data.n
    if len(fits) == 1:
        return fits[0]
    ru = FitResult.concat([uncond for uncond, _ in fits])
    conds = [FitResult.concat([cond[j] for _, cond in fits]) for j in range(mu_test.size)]
    return ru, conds
