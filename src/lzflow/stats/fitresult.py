"""Vocabulary shared by every fitter: fit statuses, strategies, settings and per-toy results.

:class:`FitConfig` configures the projected-Newton engine (:mod:`lzflow.stats.newton`) of the
binned (:mod:`lzflow.stats.fit`) and the unbinned (:mod:`lzflow.stats.unbinned`) fitters;
:class:`FitResult` is what every fitter returns — one row per toy, never dropped, with its
final :class:`FitStatus`, the :class:`Strategy` that produced it and the cause of its first
failure. :func:`lower_bounds`, :func:`upper_bounds` and :func:`fittable_toys` are the conventions
on bounds and on invalid input shared by the Newton and the iminuit (:mod:`lzflow.stats.minuit`)
fits.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Iterable, Iterator

import numpy as np

__all__ = ["FitStatus", "Strategy", "FitConfig", "FitResult", "ALPHA_BOUND", "lower_bounds", "upper_bounds",
           "alpha_at_bound", "fittable_toys"]

#: |α| ≤ ALPHA_BOUND for the shape parameters: pyhf's ``suggested_bounds`` of constrained
#: ``histosys``/``normsys`` modifiers (``pyhf.modifiers.histosys``/``normsys``: ``[-5.0, 5.0]``);
#: a fit that ends there is valid (as in pyhf) and flagged in ``FitResult.at_bound``
ALPHA_BOUND = 5.0


class FitStatus(IntEnum):
    """Per-fit status codes."""

    CONVERGED = 0
    MAX_ITER = 1  #: no convergence within max_iter
    NON_FINITE = 2  #: NaN/inf in data, auxiliary values, NLL or gradient
    LINE_SEARCH = 3  #: no decrease found along the Newton direction
    INFEASIBLE = 4  #: counts where the model predicts 0 for every allowed parameter: NLL = +inf
    MINUIT_FAILED = 5  #: iminuit fallback did not report a valid minimum
    NOT_RUN = 6  #: placeholder (never returned by a completed fit)
    NOT_NEEDED = 7  #: a conditional fit a one-sided limit never reads (μ̂ > μ: q = 0), not run (:mod:`lzflow.stats.toyfits`)


class Strategy(IntEnum):
    """Which strategy produced the final result of a fit."""

    NEWTON = 0
    NEWTON_RETRY = 1  #: Newton restarted from the nominal point with a step cap
    MINUIT = 2  #: iminuit Migrad with analytic gradient
    NONE = 3  #: not fitted (invalid input, or not needed: :attr:`FitStatus.NOT_NEEDED`)
    NEWTON_RESTART = 4  #: a further start (``FitConfig.extra_starts``) reached a lower minimum


@dataclass(frozen=True)
class FitConfig:
    """Settings of the batched Newton fitter.

    tol: convergence threshold on the squared Newton decrement λ² (NLL units × 2).
    max_iter: Newton iterations per strategy.
    max_backtrack: halvings of the step in the line search.
    armijo: sufficient-decrease constant.
    dense_threshold: bins with nominal expectation (μ = 1, θ = 1) above this are "dense".
    block_size: toys fitted together (memory ∝ block_size × dense bins).
    retry: restart failed fits with Newton from the nominal point (step cap 0.5 relative).
    minuit_fallback: fit what still failed with iminuit, toy by toy.
    n_threads: worker threads over blocks (default: the available cores); with > 1 thread BLAS
        runs single-threaded inside the workers (:mod:`lzflow.stats._threads`).
    extra_starts: further starts of the μ-free fits with shape systematics, whose NLL is not
        convex in α (:mod:`lzflow.stats.multistart`: ``"aux"``, ``"alpha0"``, ``"reflect"``); every
        toy keeps the lowest converged minimum. Unused by the rate-only fits (convex).
    extra_starts_fixed: the same for the fits at fixed μ (which start from the μ-free result).
    hessian_float32: form the dense-bin part of the Hessians Σ w_i x_i x_iᵀ in single precision
        (2× faster matrix product). The Hessian only sets the search direction — gradient, NLL,
        line search and the convergence test stay in double precision — so the fixed point is
        unchanged; a ~1e-7 relative error in H only perturbs the direction (for the LZ-like
        model the Jacobi-scaled Hessian has condition number ≈ 2).
    """

    tol: float = 1e-9
    max_iter: int = 50
    max_backtrack: int = 40
    armijo: float = 1e-4
    dense_threshold: float = 0.05
    block_size: int = 512
    retry: bool = True
    minuit_fallback: bool = True
    n_threads: int | None = None
    hessian_float32: bool = True
    extra_starts: tuple[str, ...] = ("aux", "alpha0", "reflect")
    extra_starts_fixed: tuple[str, ...] = ("reflect",)

    def __post_init__(self) -> None:
        known = ("aux", "alpha0", "reflect", "half")  # lzflow.stats.multistart.START_KINDS
        for name in ("extra_starts", "extra_starts_fixed"):
            val = getattr(self, name)
            if isinstance(val, str) or any(k not in known for k in val):
                raise ValueError(f"FitConfig.{name}: got {val!r}; expected a tuple of {', '.join(known)}")


@dataclass
class FitResult:
    """Per-toy fit results; every array has the toy axis first.

    params: (n, n_par) full parameter vectors [μ, θ(, α)] (multipliers; fixed ones at 1, and μ
        at its fixed value for conditional fits; α of the shape systematics last).
    nll: (n,) NLL at the best fit (+inf for infeasible data, NaN if invalid input).
    status: (n,) :class:`FitStatus` of the final attempt.
    strategy: (n,) :class:`Strategy` that produced the result.
    first_failure: (n,) :class:`FitStatus` of the first failed attempt (CONVERGED if none).
    n_iter: (n,) iterations (sum over strategies).
    grad_norm: (n,) Euclidean norm of the projected gradient at the result.
    edm: (n,) ½ λ², the estimated distance to the minimum in NLL units.
    at_bound: (n, n_par) parameter sits at its lower or upper bound (a shape parameter α at
        ±:data:`ALPHA_BOUND`: a valid fit, reported by :func:`alpha_at_bound`).
    """

    params: np.ndarray
    nll: np.ndarray
    status: np.ndarray
    strategy: np.ndarray
    first_failure: np.ndarray
    n_iter: np.ndarray
    grad_norm: np.ndarray
    edm: np.ndarray
    at_bound: np.ndarray

    @property
    def n(self) -> int:
        return int(self.nll.shape[0])

    @property
    def mu(self) -> np.ndarray:
        return self.params[:, 0]

    @property
    def converged(self) -> np.ndarray:
        return self.status == FitStatus.CONVERGED

    @classmethod
    def empty(cls, n: int, n_par: int) -> "FitResult":
        return cls(
            params=np.full((n, n_par), np.nan),
            nll=np.full(n, np.nan),
            status=np.full(n, FitStatus.NOT_RUN, dtype=np.int8),
            strategy=np.full(n, Strategy.NONE, dtype=np.int8),
            first_failure=np.zeros(n, dtype=np.int8),
            n_iter=np.zeros(n, dtype=np.int32),
            grad_norm=np.full(n, np.nan),
            edm=np.full(n, np.nan),
            at_bound=np.zeros((n, n_par), dtype=bool),
        )

    def take(self, idx: np.ndarray) -> "FitResult":
        return FitResult(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def put(self, idx: np.ndarray, other: "FitResult") -> None:
        for f in fields(self):
            getattr(self, f.name)[idx] = getattr(other, f.name)

    @classmethod
    def concat(cls, parts: Iterable["FitResult"]) -> "FitResult":
        parts = list(parts)
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )

    def failure_summary(self) -> dict[str, int]:
        """Counts of final statuses and of first-failure causes (non-zero entries only); fits not
        needed (:attr:`FitStatus.NOT_NEEDED`) are no failures and are not counted."""
        out: dict[str, int] = {}
        for s in FitStatus:
            k = int(np.sum(self.status == s))
            if k and s not in (FitStatus.CONVERGED, FitStatus.NOT_NEEDED):
                out[f"final:{s.name}"] = k
            k = int(np.sum(self.first_failure == s))
            if k and s != FitStatus.CONVERGED:
                out[f"first:{s.name}"] = k
        for st in (Strategy.NEWTON_RETRY, Strategy.NEWTON_RESTART, Strategy.MINUIT):
            k = int(np.sum(self.strategy == st))
            if k:
                out[f"strategy:{st.name}"] = k
        return out


def lower_bounds(n_cols: int, mu_fixed: float | None, mu_lower: float | None, n_shape: int = 0) -> np.ndarray:
    """Lower bounds of the fitted parameters (μ first when free, then the free θ, then the
    ``n_shape`` shape parameters α): θ ≥ 0 (rates cannot be negative); μ ≥ ``mu_lower`` (``None``:
    unbounded, e.g. for q_μ without the bound); α ≥ −:data:`ALPHA_BOUND`."""
    lb = np.zeros(n_cols)
    if mu_fixed is None:
        lb[0] = -np.inf if mu_lower is None else float(mu_lower)
    if n_shape:
        lb[n_cols - n_shape :] = -ALPHA_BOUND
    return lb


def upper_bounds(n_cols: int, n_shape: int = 0) -> np.ndarray | None:
    """Upper bounds of the fitted parameters: α ≤ :data:`ALPHA_BOUND` for the ``n_shape`` shape
    parameters (last), none for μ and θ. ``None`` without shape parameters (no upper bound at
    all: the rate-only and unbinned fits run exactly as before)."""
    if not n_shape:
        return None
    ub = np.full(n_cols, np.inf)
    ub[n_cols - n_shape :] = ALPHA_BOUND
    return ub


def alpha_at_bound(params: np.ndarray, n_shape: int) -> np.ndarray:
    """Fits whose shape parameters (the last ``n_shape`` of ``params`` ``(..., n_par)``, e.g. a
    toy file's ``params_uncond``, or ``alpha_cond`` ``(..., K)`` with ``n_shape = K``) sit at
    ±:data:`ALPHA_BOUND`: boolean ``(...)``. Valid fits (pyhf's convention); counted by merge."""
    if not n_shape:
        return np.zeros(np.shape(params)[:-1], dtype=bool)
    a = np.asarray(params, dtype=np.float64)[..., -n_shape:]
    return np.any(np.abs(a) >= ALPHA_BOUND * (1.0 - 1e-12), axis=-1)


def fittable_toys(res: FitResult, valid: np.ndarray) -> Iterator[int]:
    """Indices of the toys to fit one at a time (reference fits); toys with non-finite auxiliary
    values are marked NON_FINITE in ``res`` (kept, never fitted)."""
    for t in range(valid.size):
        if valid[t]:
            yield t
        else:
            res.status[t] = FitStatus.NON_FINITE
            res.first_failure[t] = FitStatus.NON_FINITE
