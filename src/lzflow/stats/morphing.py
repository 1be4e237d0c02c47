"""Shape nuisance parameters: HistFactory/pyhf ``histosys`` template morphing, interpolation code 4p.

A :class:`ShapeSystematic` k gives, for every sample s of the model ([signal, *backgrounds]), the
templates ``up_ks`` and ``down_ks`` at α_k = +1 and −1 (rows equal to the nominal T_s where a
sample is unaffected). Per bin i and sample s the morphed template is additive over the
systematics (HistFactory, Cranmer et al., CERN-OPEN-2012-016, "piecewise linear" family;
pyhf ≥ 0.7 ``pyhf.interpolators.code4p``)::

    T_si(α) = T_si + Σ_k Δ_ksi(α_k)
    δ⁺ = up − T,  δ⁻ = T − down,  S = (δ⁺ + δ⁻)/2 = (up − down)/2,  A = (δ⁺ − δ⁻)/2 = (up + down)/2 − T

    Δ(α) = α S + f(α) A,   f(α) = α² (3α⁴ − 10α² + 15) / 8     for |α| ≤ 1
                           f(α) = |α|                           for |α| > 1

i.e. a 6th-order polynomial inside ±1σ (pyhf writes it as α S + α²(3α⁴ − 10α² + 15) (δ⁺ − δ⁻)/16)
and linear extrapolation outside (Δ = α δ⁺ for α > 1, α δ⁻ for α < −1). Δ(±1) = ±δ^±, and f is
C² at |α| = 1 (f(1) = f'(1) = 1, f''(1) = 0), so the NLL has a continuous Hessian. The derivatives
used by the fitters::

    f'(α)  = (18α⁵ − 40α³ + 30α)/8  (|α| ≤ 1),   sign(α)  (|α| > 1)
    f''(α) = (90α⁴ − 120α² + 30)/8  (|α| ≤ 1),   0        (|α| > 1)

Morphing is additive, not clipped: far outside ±1σ a bin's expectation can become negative, and
then the likelihood treats it exactly as a non-positive expectation (module :mod:`lzflow.stats.model`).

:class:`MorphBasis` combines the morphed samples into the expected counts the way HistFactory
and pyhf do when the signal carries a ``normfactor`` μ and each background rate an additive linear
modifier (lzflow's rate ``histosys``, :mod:`lzflow.stats.pyhf_export`)::

    ν(μ, θ, α) = μ T_0(α) + Σ_b [θ_b T_b + Σ_k Δ_kb(α_k)]

— μ multiplies the morphed signal; a background's rate θ_b scales its nominal template and its
shape variations add (a ``histosys`` delta is not scaled by another additive modifier; pyhf
cannot express a linear, Gaussian-constrained *multiplicative* rate for more than one sample:
``normsys`` is exponential/polynomial (codes 1/4) and ``lumi`` is a single parameter). The
difference to θ_b T_b(α) is (θ_b − 1) Δ_kb, second order in small quantities. In the fitters'
form ``ν = z @ M`` with the fixed basis ``M = [T_s (S); S_k⁰, A_k⁰ (signal); S_k^B, A_k^B
(Σ over backgrounds)]`` (S + 4K rows) and coefficients ``z = [c; μ α; μ f(α); α; f(α)]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ShapeSystematic", "code4p", "MorphBasis"]


def code4p(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(f, f', f'')`` of the code-4p polynomial part at ``alpha`` (any shape; module docstring)."""
    a = np.asarray(alpha, dtype=np.float64)
    a2 = a * a
    inside = np.abs(a) <= 1.0
    f = np.where(inside, a2 * (a2 * (3.0 * a2 - 10.0) + 15.0) / 8.0, np.abs(a))
    f1 = np.where(inside, a * (a2 * (18.0 * a2 - 40.0) + 30.0) / 8.0, np.sign(a))
    f2 = np.where(inside, (a2 * (90.0 * a2 - 120.0) + 30.0) / 8.0, 0.0)
    return f, f1, f2


@dataclass(frozen=True, eq=False)
class ShapeSystematic:
    """One shape nuisance parameter α (unit Gaussian constraint, nominal 0).

    ``up``/``down``: ``(1 + n_bkg, n_bins)`` (or ``(1 + n_bkg, *bin_shape)``, flattened in C
    order) templates of [signal, *backgrounds] at α = +1 and −1, finite and ≥ 0; ``up2``/``down2``
    (optional, same shape) those at α = +2 and −2, used by the ``log_quartic`` morphing
    (:mod:`lzflow.stats.logmorph`). Its parameter is called ``alpha_<name>`` (the pyhf modifier of
    the same name). ``segments`` (optional): the bin boundaries ``(0, n_1, …, n_bins)`` of independent
    blocks of bins (the runs of a combined model, :mod:`lzflow.stats.combine`), within which the
    log morphings' sample-ratio rule takes its ratios (:func:`lzflow.stats.logmorph.log_ratios`);
    empty = one block.
    """

    name: str
    up: np.ndarray
    down: np.ndarray
    up2: np.ndarray | None = None
    down2: np.ndarray | None = None
    segments: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        name = str(self.name)
        if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"shape systematic name must be a non-empty identifier, got {name!r}")
        if (self.up2 is None) != (self.down2 is None):
            raise ValueError(f"shape systematic {name!r}: give both up2 and down2 (the ±2σ templates) or neither")
        arrs = []
        for label in ("up", "down", "up2", "down2"):
            if getattr(self, label) is None:
                arrs.append(None)
                continue
            a = np.array(getattr(self, label), dtype=np.float64, copy=True)
            if a.ndim < 2:
                raise ValueError(f"shape systematic {name!r}: {label} must have shape (1 + n_bkg, n_bins), "
                                 f"got {a.shape}")
            a = a.reshape(a.shape[0], -1)
            if not np.all(np.isfinite(a)):
                raise ValueError(f"shape systematic {name!r}: {label} contains NaN or infinite values")
            if np.any(a < 0):
                raise ValueError(f"shape systematic {name!r}: {label} contains negative values (min {a.min():.3g})")
            a.setflags(write=False)
            arrs.append(a)
        for label, a in zip(("down", "up2", "down2"), arrs[1:]):
            if a is not None and a.shape != arrs[0].shape:
                raise ValueError(f"shape systematic {name!r}: up {arrs[0].shape} and {label} {a.shape} differ")
        object.__setattr__(self, "name", name)
        for label, a in zip(("up", "down", "up2", "down2"), arrs):
            object.__setattr__(self, label, a)
        seg = tuple(int(b) for b in self.segments)
        if seg and (seg[0] != 0 or seg[-1] != arrs[0].shape[1] or any(b <= a for a, b in zip(seg, seg[1:]))):
            raise ValueError(f"shape systematic {name!r}: segments {seg} must rise from 0 to n_bins = {arrs[0].shape[1]}")
        object.__setattr__(self, "segments", seg)

    @property
    def has_2sigma(self) -> bool:
        """Whether the ±2σ templates are given."""
        return self.up2 is not None

    def rows_scaled(self, row: int, factor: np.ndarray, replacement: np.ndarray) -> "ShapeSystematic":
        """This systematic with template row ``row`` of every anchor multiplied by ``factor`` where
        the old nominal is > 0 (``replacement`` where it is 0, i.e. unaffected there); used by
        :meth:`lzflow.stats.model.BinnedModel.with_signal`."""
        def one(t: np.ndarray | None) -> np.ndarray | None:
            if t is None:
                return None
            out = np.array(t, copy=True)
            out[row] = np.where(np.isnan(factor), replacement, t[row] * np.nan_to_num(factor))
            return out

        return ShapeSystematic(self.name, one(self.up), one(self.down), one(self.up2), one(self.down2))

    @property
    def parameter(self) -> str:
        return f"alpha_{self.name}"

    def affected(self, nominal: np.ndarray) -> np.ndarray:
        """``(n_samples,)`` samples whose up or down template differs from ``nominal``."""
        return np.any(self.up != nominal, axis=1) | np.any(self.down != nominal, axis=1)


class MorphBasis:
    """The morphing of ``nominal`` ``(S, n_bins)`` templates ([signal, *backgrounds]) by
    ``systematics`` as a linear basis (module docstring): ``M`` ``(S + 4K, n_bins)``, rows
    ``[T_s; S_k⁰ (k); A_k⁰ (k); S_k^B (k); A_k^B (k)]``; ``coefficients(c, α)`` gives ``z`` with
    ``ν = z @ M``."""

    def __init__(self, nominal: np.ndarray, systematics: tuple[ShapeSystematic, ...]):
        T = np.asarray(nominal, dtype=np.float64)
        self.S, self.n_bins = T.shape
        self.K = len(systematics)
        up = np.stack([s.up for s in systematics]) if systematics else np.zeros((0,) + T.shape)
        dn = np.stack([s.down for s in systematics]) if systematics else np.zeros((0,) + T.shape)
        self.Sd = 0.5 * (up - dn)  # (K, S, n_bins)
        self.Ad = 0.5 * (up + dn) - T[None]  # (K, S, n_bins)
        self.T = T
        self.M = np.concatenate([T, self.Sd[:, 0], self.Ad[:, 0], self.Sd[:, 1:].sum(axis=1),
                                 self.Ad[:, 1:].sum(axis=1)])

    @property
    def R(self) -> int:
        return self.S + 4 * self.K

    def coefficients(self, c: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """``z`` ``(..., R)`` for sample coefficients ``c`` = [μ, θ] ``(..., S)`` and ``alpha``
        ``(..., K)``."""
        c = np.asarray(c, dtype=np.float64)
        alpha = np.asarray(alpha, dtype=np.float64)
        f = code4p(alpha)[0]
        lead = np.broadcast_shapes(c.shape[:-1], alpha.shape[:-1])
        mu = c[..., :1]
        return np.concatenate([np.broadcast_to(c, lead + c.shape[-1:]), np.broadcast_to(mu * alpha, lead + alpha.shape[-1:]),
                               np.broadcast_to(mu * f, lead + alpha.shape[-1:]),
                               np.broadcast_to(alpha, lead + alpha.shape[-1:]), np.broadcast_to(f, lead + alpha.shape[-1:])],
                              axis=-1)

    def expected(self, c: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """ν ``(..., n_bins)`` = μ T_0(α) + Σ_b [θ_b T_b + Δ_b(α)]."""
        return self.coefficients(c, alpha) @ self.M

    def templates(self, alpha: np.ndarray) -> np.ndarray:
        """Morphed templates T_s(α) ``(..., S, n_bins)`` at ``alpha`` ``(..., K)``."""
        alpha = np.asarray(alpha, dtype=np.float64)
        f = code4p(alpha)[0]
        return (self.T + np.einsum("...k,ksi->...si", alpha, self.Sd)
                + np.einsum("...k,ksi->...si", f, self.Ad))

    def jacobian(self, c: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """``(S + K, n_bins)`` derivatives of ν w.r.t. [μ, θ_b (S); α_k (K)] at one point."""
        c = np.asarray(c, dtype=np.float64)
        alpha = np.asarray(alpha, dtype=np.float64)
        f1 = code4p(alpha)[1]
        K = self.K
        Ms, Ma = self.M[self.S :].reshape(4, K, self.n_bins)[[0, 2]], self.M[self.S :].reshape(4, K, self.n_bins)[[1, 3]]
        dalpha = c[0] * (Ms[0] + f1[:, None] * Ma[0]) + Ms[1] + f1[:, None] * Ma[1]
        sig = self.templates(alpha)[0]
        return np.concatenate([sig[None], self.T[1:], dalpha])
