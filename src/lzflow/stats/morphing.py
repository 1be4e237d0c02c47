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

:class:`MorphBasis` stacks the morphing in the fitters' form: the expected counts of a full
parameter vector are ``ν = z(c, α) @ M`` with the fixed basis ``M = [T_s; S_ks; A_ks]``
(``(S(1 + 2K), n_bins)``) and the per-toy coefficients ``z = [c_s; c_s α_k; c_s f(α_k)]``
(c = [μ, θ]).
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
    order) templates of [signal, *backgrounds] at α = +1 and −1, finite and ≥ 0. Its parameter is
    called ``alpha_<name>`` (the pyhf modifier of the same name).
    """

    name: str
    up: np.ndarray
    down: np.ndarray

    def __post_init__(self) -> None:
        name = str(self.name)
        if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"shape systematic name must be a non-empty identifier, got {name!r}")
        arrs = []
        for label in ("up", "down"):
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
        if arrs[0].shape != arrs[1].shape:
            raise ValueError(f"shape systematic {name!r}: up {arrs[0].shape} and down {arrs[1].shape} differ")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "up", arrs[0])
        object.__setattr__(self, "down", arrs[1])

    @property
    def parameter(self) -> str:
        return f"alpha_{self.name}"

    def affected(self, nominal: np.ndarray) -> np.ndarray:
        """``(n_samples,)`` samples whose up or down template differs from ``nominal``."""
        return np.any(self.up != nominal, axis=1) | np.any(self.down != nominal, axis=1)


class MorphBasis:
    """The morphing of ``nominal`` ``(S, n_bins)`` templates by ``systematics`` as a linear basis.

    ``M`` ``(R, n_bins)``, R = S(1 + 2K), rows ``[T_s (S); S_ks (K·S, k-major); A_ks (K·S)]``;
    ``coefficients(c, α)`` gives ``z`` with ``ν = z @ M`` (module docstring).
    """

    def __init__(self, nominal: np.ndarray, systematics: tuple[ShapeSystematic, ...]):
        T = np.asarray(nominal, dtype=np.float64)
        self.S, self.n_bins = T.shape
        self.K = len(systematics)
        up = np.stack([s.up for s in systematics]) if systematics else np.zeros((0,) + T.shape)
        dn = np.stack([s.down for s in systematics]) if systematics else np.zeros((0,) + T.shape)
        self.Sd = 0.5 * (up - dn)  # (K, S, n_bins)
        self.Ad = 0.5 * (up + dn) - T[None]  # (K, S, n_bins)
        self.M = np.concatenate([T, self.Sd.reshape(-1, self.n_bins), self.Ad.reshape(-1, self.n_bins)])
        self.T = T

    @property
    def R(self) -> int:
        return self.S * (1 + 2 * self.K)

    def coefficients(self, c: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """``z`` ``(..., R)`` for sample coefficients ``c`` ``(..., S)`` and ``alpha`` ``(..., K)``."""
        c = np.asarray(c, dtype=np.float64)
        alpha = np.asarray(alpha, dtype=np.float64)
        f = code4p(alpha)[0]
        lead = np.broadcast_shapes(c.shape[:-1], alpha.shape[:-1])
        z = np.empty(lead + (self.R,))
        S, K = self.S, self.K
        z[..., :S] = c
        z[..., S : S + K * S] = (alpha[..., :, None] * c[..., None, :]).reshape(lead + (K * S,))
        z[..., S + K * S :] = (f[..., :, None] * c[..., None, :]).reshape(lead + (K * S,))
        return z

    def expected(self, c: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """ν ``(..., n_bins)`` = Σ_s c_s T_s(α)."""
        return self.coefficients(c, alpha) @ self.M

    def templates(self, alpha: np.ndarray) -> np.ndarray:
        """Morphed templates ``(..., S, n_bins)`` at ``alpha`` ``(..., K)``."""
        alpha = np.asarray(alpha, dtype=np.float64)
        f = code4p(alpha)[0]
        return (self.T + np.einsum("...k,ksi->...si", alpha, self.Sd)
                + np.einsum("...k,ksi->...si", f, self.Ad))

    def jacobian(self, c: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """``(S + K, n_bins)`` derivatives of ν w.r.t. [c_s (S); α_k (K)] at one point."""
        c = np.asarray(c, dtype=np.float64)
        alpha = np.asarray(alpha, dtype=np.float64)
        f1 = code4p(alpha)[1]
        dalpha = np.einsum("s,ksi->ki", c, self.Sd) + f1[:, None] * np.einsum("s,ksi->ki", c, self.Ad)
        return np.concatenate([self.templates(alpha), dalpha])
