"""Pruning of the further starts (:mod:`lzflow.stats.multistart`): stop a further-start run of a
toy as soon as it is clearly heading into a minimum that toy already knows.

A toy's *known minima* are the converged end points (fitted columns y_k, NLL f_k) of its first
fit and of its further-start runs so far; the lowest is the incumbent f*, and f_k ≥ f* for all k.
A further start can only change the result by ending lower than f* − :data:`~.multistart.MARGIN`.
A run whose point y lies in the box

    |y_j − y_k,j| ≤ :data:`NEAR` · max(1, |y_k,j|)   for every fitted parameter j

around a known minimum k, at an NLL f_k − MARGIN ≤ f ≤ f_k + :data:`NEAR_NLL`, is in that
minimum's well near its bottom: Newton from there converges to y_k (quadratically) and ends at f_k
up to the convergence tolerance (½ λ² < ½ ``FitConfig.tol`` = 5e-10 < MARGIN), which never
replaces the incumbent. The same holds one step earlier for a run whose Newton point y + d (the
full step's end) lies in the box while the quadratic model's minimum f − λ²/2 lies within
[f_k − :data:`PREDICT_SLACK`, f_k + NEAR_NLL]. Such a run is stopped before its line search
(status NOT_RUN, never kept; its iterations are still counted) and a start in a box is not run at
all ("reflect" of a toy with α̂ = 0 is its first result). A point below f_k − MARGIN is never near
k (log_pchip has distinct minima 4 % apart, measured), and the box is small (0.03: a box of 0.1
stopped a run that went on to a lower minimum in 1 of 2,400 toys). The records are the same as
without pruning — every minimum that the full runs find, bit for bit — measured on 1,600 toys per
interpolation (``tests/unit/test_restart_prune.py``; docs/method.md, "Local minima and further
starts"), for 24–31 % fewer Newton iterations. The argument assumes Newton's quadratic convergence
inside the box; it is a measurement, not a proof: the default analysis with the systematics overlay
(432,000 toys) counted 79 fewer fits taking a further start's result than the unpruned code of the
previous revision, whose log-morph kernels also differed in the last bits (the two causes were not
separated; the toy medians agree to three digits, docs/results.md).

Every test is per toy on that toy's own numbers: deterministic and independent of the block split.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["NEAR", "NEAR_NLL", "PREDICT_SLACK", "KnownMinima"]

#: half-width of the box around a known minimum (relative to max(1, |y_k|), each parameter)
NEAR = 0.03
#: a point in the box counts as near the bottom only if its NLL is at most this above f_k
NEAR_NLL = 0.01
#: a Newton point in the box counts only if f − λ²/2 is at least f_k minus this
PREDICT_SLACK = 1e-3
#: NLL units; the same as :data:`lzflow.stats.multistart.MARGIN` (not imported: no cycle)
_MARGIN = 1e-9


class KnownMinima:
    """The converged minima found so far for ``n`` toys, in the fitted columns.

    ``y`` ``(n, p)``, ``f`` ``(n,)``, ``ok`` ``(n,)`` the first fit's results (``ok``: converged)."""

    def __init__(self, y: np.ndarray, f: np.ndarray, ok: np.ndarray):
        self.y = np.array(y, dtype=np.float64)[:, None, :]  # (n, m, p)
        self.f = np.where(ok, f, np.nan)[:, None]  # (n, m); NaN: no minimum in this slot

    def add(self, rows: np.ndarray, y: np.ndarray, f: np.ndarray, ok: np.ndarray) -> None:
        """Record the end points ``y`` ``(len(rows), p)`` of the runs of the toys ``rows``
        (indices into the ``n`` toys) where ``ok`` (converged)."""
        if not ok.any():
            return
        n, _, p = self.y.shape
        new_y = np.zeros((n, 1, p))
        new_f = np.full((n, 1), np.nan)
        new_y[rows[ok], 0], new_f[rows[ok], 0] = y[ok], f[ok]
        self.y = np.concatenate([self.y, new_y], axis=1)
        self.f = np.concatenate([self.f, new_f], axis=1)

    def near(self, rows: np.ndarray, y: np.ndarray, f: np.ndarray | None = None,
             dec: np.ndarray | None = None) -> np.ndarray:
        """``(len(rows),)`` True where the point ``y`` of toy ``rows`` lies in the box of a known
        minimum k (module docstring) and — given the NLL ``f`` of the run's current point (``None``:
        a start, not yet evaluated) — f_k − MARGIN ≤ f ≤ f_k + :data:`NEAR_NLL`; given also the
        run's Newton decrement ``dec`` (λ²; ``y`` is then its Newton point), the quadratic model's
        minimum f − λ²/2 takes the place of f in the upper bound and must not be below
        f_k − :data:`PREDICT_SLACK`."""
        yk, fk = self.y[rows], self.f[rows]  # (k, m, p), (k, m)
        box = np.all(np.abs(y[:, None, :] - yk) <= NEAR * np.maximum(1.0, np.abs(yk)), axis=2)
        with np.errstate(invalid="ignore"):  # NaN f_k: no minimum in that slot, never near
            box &= np.isfinite(fk)
            if f is not None:  # never below f_k: a point in f_k's well near its bottom is not lower
                box &= f[:, None] >= fk - _MARGIN
                f_end = f if dec is None else f - 0.5 * dec  # the quadratic model's minimum
                box &= f_end[:, None] <= fk + NEAR_NLL
                if dec is not None:
                    box &= f_end[:, None] >= fk - PREDICT_SLACK
        return np.any(box, axis=1)

    def pruner(self, rows: np.ndarray) -> Callable[..., np.ndarray]:
        """The ``prune`` hook of :func:`~lzflow.stats.newton.minimise` for a run of the toys
        ``rows`` (its row i is toy ``rows[i]``): stop a row whose current point, or whose Newton
        point (the full step's end) with its decrement, is :meth:`near` a known minimum."""

        def prune(active: np.ndarray, y: np.ndarray, f: np.ndarray, y_newton: np.ndarray,
                  dec: np.ndarray) -> np.ndarray:
            r = rows[active]
            return self.near(r, y, f) | self.near(r, y_newton, f, dec)

        return prune
