"""Inversion of a grid of toys: observed limit, expected bands, PCL floor, MC errors, grid edges.

A :class:`ToyGrid` holds, per POI point, the observed q, the S+B toys generated there and the
B-only toys evaluated there, with their :mod:`~lzflow.stats.quality` cause codes.
:func:`invert_toys` turns it into an :class:`Inversion`: the observed p-value curve
(:mod:`~lzflow.stats.pvalues`) inverted at α (:mod:`~lzflow.stats.crossing`), every usable B-only
experiment's limit, and their quantiles — the bands and the PCL floor (:mod:`~lzflow.stats.bands`).
The p-value floor of the interpolation in ln p is 0.5/N (N the smallest used S+B ensemble).

Grid edges (:func:`refine_toy_grid`): when a reported quantile that can be resolved (all of them
for CLs; those above α for CLs+b; the PCL floor) or the observed limit sits on — or within two
order-statistics errors of — a grid edge, POI points are added beyond that edge (μ₀/2, μ₀/4
below; 1.5 μ_max, 2.25 μ_max above), with S+B toys at the new points and the existing B-only toys
evaluated there, for at most :data:`MAX_REFINE_ROUNDS` rounds; what is still on an edge after that
is flagged. New points get new POI (seed) indices beyond the existing ones, so no existing toy
changes.

MC errors of the limits (:func:`bootstrap_errors`, the default in merge): a bootstrap over all
toys — each S+B ensemble resampled, and the B-only toys resampled as rows (they are both the CLb
ensembles and the experiments) — repeating the whole inversion; the error is the standard
deviation of the replicates. It includes the S+B ensembles' noise, which shifts every
experiment's limit coherently and which the order-statistics error of a quantile (half the
distance between the values at ranks Nq ± √(Nq(1−q)), :func:`~lzflow.stats.bands.quantile_with_error`)
leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .bands import BAND_QUANTILES, BANDS, POWER_THRESHOLD, Band, band_quantiles, pcl_with_status
from .crossing import LIMIT_ABOVE, LIMIT_BELOW, LIMIT_UNDEFINED, Crossing, crossing, limits_from_curves
from .pvalues import Ensemble, cls_ratio, pvalue_curves, pvalue_table
from .quality import GOOD, cause_counts, record_field, toy_quality
from .toyresult import ToyResult

__all__ = [
    "MAX_REFINE_ROUNDS",
    "N_BOOT",
    "EXTEND_BELOW",
    "EXTEND_ABOVE",
    "ToyGrid",
    "toy_grid",
    "Inversion",
    "invert_toys",
    "bootstrap_errors",
    "edge_extension",
    "refine_toy_grid",
]

#: rounds of POI points :func:`refine_toy_grid` may add beyond a grid edge
MAX_REFINE_ROUNDS = 3
#: bootstrap replicates of the MC errors in merge
N_BOOT = 200


@dataclass
class ToyGrid:
    """Everything an inversion needs, per POI point (sorted by μ).

    mu ``(n_mu,)``; q_obs ``(n_mu,)``: the observed data's q; q_sb / cause_sb: per point, the q
    of the S+B toys generated there and their :func:`toy_quality` codes; q_b / cause_b
    ``(n_b, n_mu)``: the B-only toys' q at every point; poi_index ``(n_mu,)``: the seed index of
    each point's S+B ensemble.
    """

    mu: np.ndarray
    q_obs: np.ndarray
    q_sb: list[np.ndarray]
    cause_sb: list[np.ndarray]
    q_b: np.ndarray
    cause_b: np.ndarray
    poi_index: np.ndarray

    def __post_init__(self) -> None:
        self.mu = np.asarray(self.mu, dtype=np.float64)
        self.q_obs = np.asarray(self.q_obs, dtype=np.float64)
        self.poi_index = np.asarray(self.poi_index, dtype=np.int64)
        self.q_b = np.asarray(self.q_b, dtype=np.float64).reshape(-1, self.mu.size)
        self.cause_b = np.asarray(self.cause_b).reshape(self.q_b.shape)
        if self.mu.size == 0 or not np.all(np.diff(self.mu) > 0):
            raise ValueError("the POI grid must be non-empty and strictly increasing")
        if not (len(self.q_sb) == len(self.cause_sb) == self.q_obs.size == self.poi_index.size == self.mu.size):
            raise ValueError("ToyGrid: one S+B ensemble, q_obs and POI index per grid point expected")

    @cached_property
    def sb(self) -> list[Ensemble]:
        return [Ensemble(q, c == GOOD) for q, c in zip(self.q_sb, self.cause_sb)]

    @cached_property
    def b(self) -> list[Ensemble]:
        return [Ensemble(self.q_b[:, k], self.cause_b[:, k] == GOOD) for k in range(self.mu.size)]

    @property
    def experiments(self) -> np.ndarray:
        """``(n_b,)``: B-only toys usable at every point (the experiments of the bands)."""
        return np.all(self.cause_b == GOOD, axis=1)

    def extended(self, other: "ToyGrid") -> "ToyGrid":
        """The union of two grids of the same B-only toys (sorted by μ)."""
        mu = np.r_[self.mu, other.mu]
        order = np.argsort(mu, kind="stable")
        if np.any(np.diff(mu[order]) <= 0):
            raise ValueError("ToyGrid.extended: a POI value appears twice")
        if other.q_b.shape[0] != self.q_b.shape[0]:
            raise ValueError("ToyGrid.extended: different numbers of B-only toys")
        pick = lambda a, b: [(list(a) + list(b))[i] for i in order]  # noqa: E731
        return ToyGrid(mu[order], np.r_[self.q_obs, other.q_obs][order], pick(self.q_sb, other.q_sb),
                       pick(self.cause_sb, other.cause_sb), np.hstack([self.q_b, other.q_b])[:, order],
                       np.hstack([self.cause_b, other.cause_b])[:, order],
                       np.r_[self.poi_index, other.poi_index][order])

    def subset(self, keep: np.ndarray) -> "ToyGrid":
        """The grid restricted to the points ``keep`` (boolean mask)."""
        keep = np.asarray(keep, dtype=bool)
        sel = np.flatnonzero(keep)
        return ToyGrid(self.mu[keep], self.q_obs[keep], [self.q_sb[i] for i in sel],
                       [self.cause_sb[i] for i in sel], self.q_b[:, keep], self.cause_b[:, keep],
                       self.poi_index[keep])


def toy_grid(mu: np.ndarray, q_obs: np.ndarray, sb: Sequence[Mapping[str, np.ndarray] | ToyResult],
             b: Mapping[str, np.ndarray] | ToyResult, test_stat: str,
             poi_index: Sequence[int] | None = None) -> ToyGrid:
    """A :class:`ToyGrid` from toy records: ``sb[k]`` the S+B ensemble generated at ``mu[k]``
    (q at that μ only), ``b`` the B-only toys evaluated at every ``mu``."""
    cause_sb = [toy_quality(r, test_stat)[:, 0] for r in sb]
    q_sb = [np.asarray(record_field(r, "q"), dtype=np.float64)[:, 0] for r in sb]
    idx = np.arange(len(sb)) if poi_index is None else np.asarray(poi_index)
    return ToyGrid(np.asarray(mu, dtype=np.float64), q_obs, q_sb, cause_sb,
                   np.asarray(record_field(b, "q"), dtype=np.float64), toy_quality(b, test_stat), idx)


@dataclass
class Inversion:
    """Observed limit, B-only experiments' limits, their bands and the PCL floor for one method.

    limits_b / codes_b ``(n_b,)``: each B-only toy's limit and :func:`limits_from_curves` code
    (NaN / 3 for toys left out); bands {N: :class:`Band`}; pcl_floor: the power-threshold
    quantile (:class:`Band`); excluded_experiments: {cause: count} of the B-only toys left out.
    """

    method: str
    observed: Crossing
    limits_b: np.ndarray
    codes_b: np.ndarray
    bands: dict[int, Band]
    pcl_floor_band: Band
    p_floor: float
    n_experiments: int
    excluded_experiments: dict[str, int]

    @property
    def outside(self) -> dict[str, int]:
        return {"below_grid": int(np.sum(self.codes_b == LIMIT_BELOW)),
                "above_grid": int(np.sum(self.codes_b == LIMIT_ABOVE))}

    @property
    def expected(self) -> dict[int, float]:
        return {n: b.value for n, b in self.bands.items()}

    @property
    def expected_err(self) -> dict[int, float]:
        return {n: b.error for n, b in self.bands.items()}

    @property
    def pcl_floor(self) -> float:
        return self.pcl_floor_band.bound

    @property
    def pcl(self) -> float:
        return pcl_with_status(self.observed, self.pcl_floor_band)[0]

    @property
    def pcl_status(self) -> str:
        return pcl_with_status(self.observed, self.pcl_floor_band)[1]


def _p_floor(sb: Sequence[Ensemble]) -> float:
    return 0.5 / max(min(e.n for e in sb), 1)


def invert_toys(grid: ToyGrid, alpha: float, method: str = "clsb", power_threshold: float = POWER_THRESHOLD,
                interpolation: str = "loglinear", table: Mapping[str, np.ndarray] | None = None) -> Inversion:
    """Invert the observed p-value curve and every usable B-only experiment's curve at ``alpha``,
    with the bands and the PCL floor (module docstring). ``table``: :func:`pvalue_table` of the
    grid if already computed."""
    sb, b = grid.sb, grid.b
    floor = _p_floor(sb)
    table = pvalue_table(grid.q_obs, sb, b) if table is None else table
    observed = crossing(grid.mu, table[method], alpha, table[method + "_err"], interpolation, p_floor=floor)
    rows = grid.experiments
    lim, codes = limits_from_curves(grid.mu, pvalue_curves(grid.q_b[rows], sb, b, method), alpha, floor)
    limits_b = np.full(rows.size, np.nan)
    codes_b = np.full(rows.size, LIMIT_UNDEFINED, dtype=np.int8)
    limits_b[rows], codes_b[rows] = lim, codes
    *bands, pcl_band = band_quantiles(lim, codes, [*BAND_QUANTILES, power_threshold], grid.mu[0], grid.mu[-1])
    bad = grid.cause_b[~rows]
    first_bad = bad[np.arange(bad.shape[0]), np.argmax(bad != GOOD, axis=1)] if bad.size else bad.ravel()
    return Inversion(method, observed, limits_b, codes_b, dict(zip(BANDS, bands)), pcl_band, floor,
                     int(np.sum(codes != LIMIT_UNDEFINED)), cause_counts(first_bad))


class _ResampledTails:
    """Tail counts of one ensemble under bootstrap resampling, without re-sorting per replicate.

    A replicate that draws the indices ``j`` (with replacement) from the ``n`` values ``x`` has
    ``w = bincount(rank(x)[j])`` copies of each sorted value; the number of resampled usable values
    with q ≥ q_obs is the suffix sum of ``w`` from ``searchsorted(sorted(x), q_obs, "left")``, which
    is exactly :meth:`lzflow.stats.pvalues.Ensemble.count` of the resampled array (same integers,
    so the same fractions bit for bit). ``use`` marks the usable values (NaN never is).
    """

    def __init__(self, x: np.ndarray, use: np.ndarray):
        x = np.asarray(x, dtype=np.float64)
        use = np.asarray(use, dtype=bool) & ~np.isnan(x)
        self.n_values = x.size
        self.rows = np.flatnonzero(use)                       # usable values' indices in x
        order = np.argsort(x[self.rows], kind="stable")
        self.rows = self.rows[order]                          # ... in sorted order of q
        self.sorted = x[self.rows]
        self.slot = np.full(x.size, self.rows.size, dtype=np.int64)   # unusable values → past the end
        self.slot[self.rows] = np.arange(self.rows.size)

    def weights(self, draws: np.ndarray) -> np.ndarray:
        """Copies of each sorted usable value in a replicate drawing the indices ``draws``."""
        return np.bincount(self.slot[draws], minlength=self.rows.size + 1)[:self.rows.size]

    def weights_of_rows(self, row_weights: np.ndarray) -> np.ndarray:
        """Copies of each sorted usable value given the copies of every original value."""
        return row_weights[self.rows]

    def positions(self, q: np.ndarray) -> np.ndarray:
        """Insertion points of the queries (``len(sorted) + 1`` for NaN: :meth:`tail_fractions`
        keeps a NaN there, so one gather serves every query)."""
        q = np.asarray(q, dtype=np.float64)
        return np.where(np.isnan(q), self.rows.size + 1, np.searchsorted(self.sorted, q, side="left"))

    @staticmethod
    def used(w: np.ndarray) -> int:
        return int(w.sum())

    @staticmethod
    def tail_fractions(w: np.ndarray, *positions: np.ndarray) -> list[np.ndarray]:
        """P(q ≥ q_obs) of the replicate with weights ``w`` for queries at each ``positions`` array
        (NaN for NaN queries, or everywhere for an empty ensemble)."""
        n = int(w.sum())
        if n == 0:
            return [np.full(pos.shape, np.nan) for pos in positions]
        suffix = np.zeros(w.size + 2)  # [suffix sums..., 0 (past the end), NaN (a NaN query)]
        suffix[:-2] = np.cumsum(w[::-1])[::-1]
        suffix[-1] = np.nan
        return [suffix[pos] / n for pos in positions]


def bootstrap_errors(grid: ToyGrid, alpha: float, methods: Sequence[str], power_threshold: float = POWER_THRESHOLD,
                     n_boot: int = N_BOOT, seed: Sequence[int] | int = 0,
                     interpolation: str = "loglinear") -> dict[str, dict[str, Any]]:
    """Bootstrap MC errors of everything an inversion reports (module docstring).

    Each replicate resamples every S+B ensemble's usable toys and the B-only toys (rows, with
    their usability), and inverts again. Returns per method {"expected": {N: σ}, "pcl_floor": σ,
    "observed": σ, "pcl": σ, "n_boot": n_boot}: the standard deviation over the replicates
    where the quantity is a value (NaN if that is fewer than half of them, e.g. a bound).
    Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    levels = [*BAND_QUANTILES, power_threshold]
    good_sb = [q[c == GOOD] for q, c in zip(grid.q_sb, grid.cause_sb)]
    n_b, n_mu = grid.q_b.shape
    tails_sb = [_ResampledTails(x, np.ones(x.size, dtype=bool)) for x in good_sb]
    tails_b = [_ResampledTails(grid.q_b[:, k], grid.cause_b[:, k] == GOOD) for k in range(n_mu)]
    all_good = np.all(grid.cause_b == GOOD, axis=1)
    # queries: every B-only row's q at every point, and the observed q (fixed; only the weights change)
    pos_sb = [t.positions(grid.q_b[:, k]) for k, t in enumerate(tails_sb)]
    pos_b = [t.positions(grid.q_b[:, k]) for k, t in enumerate(tails_b)]
    obs_sb = [t.positions(np.atleast_1d(grid.q_obs[k])) for k, t in enumerate(tails_sb)]
    obs_b = [t.positions(np.atleast_1d(grid.q_obs[k])) for k, t in enumerate(tails_b)]
    res = {m: np.full((n_boot, len(levels) + 2), np.nan) for m in methods}
    for i in range(n_boot):
        # the same draws, in the same order, as resampling the arrays themselves (rng calls unchanged)
        w_sb = [t.weights(rng.integers(0, x.size, x.size)) for t, x in zip(tails_sb, good_sb)]
        jb = rng.integers(0, n_b, n_b)
        w_b = np.bincount(jb, minlength=n_b)
        w_bk = [t.weights_of_rows(w_b) for t in tails_b]
        rows_jb = jb[all_good[jb]]
        floor = 0.5 / max(min(t.used(w) for t, w in zip(tails_sb, w_sb)), 1)
        sb_frac = [t.tail_fractions(w, p, o) for t, w, p, o in zip(tails_sb, w_sb, pos_sb, obs_sb)]
        b_frac = [t.tail_fractions(w, p, o) for t, w, p, o in zip(tails_b, w_bk, pos_b, obs_b)]
        clsb_obs = np.array([f[1][0] for f in sb_frac], dtype=np.float64)
        clb_obs = np.array([f[1][0] for f in b_frac], dtype=np.float64)
        psb = np.column_stack([f[0] for f in sb_frac])[rows_jb]
        pb = np.column_stack([f[0] for f in b_frac])[rows_jb]
        for m in methods:
            curves = psb if m == "clsb" else cls_ratio(psb, pb)[0]
            lim, codes = limits_from_curves(grid.mu, curves.reshape(-1, n_mu), alpha, floor)
            bands = band_quantiles(lim, codes, levels, grid.mu[0], grid.mu[-1])
            p_obs = clsb_obs if m == "clsb" else cls_ratio(clsb_obs, clb_obs)[0]
            obs = crossing(grid.mu, p_obs, alpha, None, interpolation, p_floor=floor)
            pcl, pcl_status = pcl_with_status(obs, bands[-1])
            res[m][i, :len(levels)] = [bd.value for bd in bands]
            res[m][i, -2] = obs.mu if obs.status == "ok" else np.nan
            res[m][i, -1] = pcl if pcl_status == "ok" else np.nan
    out: dict[str, dict[str, Any]] = {}
    for m, r in res.items():
        fin = np.isfinite(r)
        enough = fin.sum(axis=0) >= max(2, n_boot / 2)
        sd = np.full(r.shape[1], np.nan)
        for j in np.flatnonzero(enough):
            sd[j] = np.std(r[fin[:, j], j], ddof=1)
        out[m] = {"expected": {n: float(s) for n, s in zip(BANDS, sd[:len(BANDS)])},
                  "pcl_floor": float(sd[len(BANDS)]), "observed": float(sd[-2]), "pcl": float(sd[-1]),
                  "n_boot": int(n_boot)}
    return out


def edge_extension(inversions: Mapping[str, Inversion], alpha: float, margin: float = 2.0
                   ) -> tuple[bool, bool, list[str]]:
    """Whether POI points are needed below / above the grid, and why (module docstring).

    A quantile at level p of N experiments, n_lo below and n_hi above the grid, needs the
    lower edge moved if the rank N p − margin·√(N p (1 − p)) reaches the below-grid experiments
    (n_lo), the upper edge likewise; CLs+b quantiles at p ≤ α are not chased (unresolvable).
    """
    below = above = False
    why: list[str] = []
    for method, inv in inversions.items():
        n, n_lo, n_hi = inv.n_experiments, inv.outside["below_grid"], inv.outside["above_grid"]
        named = [(f"{n_sig:+d}σ", bd) for n_sig, bd in inv.bands.items()] + [("PCL floor", inv.pcl_floor_band)]
        for name, bd in named:
            p = bd.level
            if method == "clsb" and p <= alpha:
                continue
            half = margin * np.sqrt(n * p * (1 - p))
            if n_lo and n * p - half < n_lo + 1:
                below = True
                why.append(f"{method} {name}: {n_lo} of {n} experiments below the grid")
            if n_hi and n * p + half > n - n_hi - 1:
                above = True
                why.append(f"{method} {name}: {n_hi} of {n} experiments above the grid")
        if inv.observed.status == "below_grid":
            below = True
            why.append(f"{method} observed limit below the grid")
        elif inv.observed.status == "above_grid":
            above = True
            why.append(f"{method} observed limit above the grid")
    return below, above, why


#: factors of the first / last grid point at which an edge extension adds POI points
EXTEND_BELOW = (0.5, 0.25)
EXTEND_ABOVE = (1.5, 2.25)


def refine_toy_grid(grid: ToyGrid, add_points: Callable[[np.ndarray, np.ndarray], ToyGrid], alpha: float,
                    methods: Sequence[str] = ("clsb", "cls"), power_threshold: float = POWER_THRESHOLD,
                    interpolation: str = "loglinear", max_rounds: int = MAX_REFINE_ROUNDS
                    ) -> tuple[ToyGrid, list[dict[str, Any]]]:
    """Extend ``grid`` beyond its edges until no reported quantile (or observed limit) sits on
    one (:func:`edge_extension`), for at most ``max_rounds`` rounds.

    ``add_points(mu_new, poi_index_new)`` returns the :class:`ToyGrid` of the new points (S+B
    toys generated there with those seed indices, the same B-only toys evaluated there, q_obs).
    New seed indices continue after the largest existing one. Returns (grid, rounds): one
    record per round with the points added and why.
    """
    rounds: list[dict[str, Any]] = []
    for r in range(max_rounds):
        table = pvalue_table(grid.q_obs, grid.sb, grid.b)
        invs = {m: invert_toys(grid, alpha, m, power_threshold, interpolation, table) for m in methods}
        below, above, why = edge_extension(invs, alpha)
        new = []
        if below:
            new += [grid.mu[0] * f for f in EXTEND_BELOW]
        if above:
            new += [grid.mu[-1] * f for f in EXTEND_ABOVE]
        if not new:
            break
        mu_new = np.sort(np.asarray(new, dtype=np.float64))
        idx_new = int(grid.poi_index.max()) + 1 + np.arange(mu_new.size)
        part = add_points(mu_new, idx_new)
        grid = grid.extended(part)
        rounds.append({"round": r + 1, "mu": mu_new.tolist(), "poi_index": idx_new.tolist(), "reasons": why})
    return grid, rounds
