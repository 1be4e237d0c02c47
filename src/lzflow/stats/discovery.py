r"""Discovery from toys: the background-only tail of q₀ out to 5σ by importance sampling, and the
median discovery potential from toys next to the asymptotic one.

Test statistic (Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727, Eq. 12): q₀ = 2(NLL(0, θ̂̂) −
NLL(μ̂, θ̂)) for μ̂ > 0, else 0; its local p-value p₀(c) = P(q₀ ≥ c | B) with B the background-only
generation point (0, θ̂̂(0)) fitted on the observed data (as :func:`lzflow.stats.toys.run_toys`).

Importance sampling (a *defensive mixture*, Hesterberg, Technometrics 37 (1995) 185; the
*balance heuristic* weights of Veach & Guibas, SIGGRAPH 1995 / Owen & Zhou, JASA 95 (2000) 135)
------------------------------------------------------------------------------------------------
Plain toys cannot reach 5σ (p = 2.87e-7 needs ~10⁹ toys for 10 %). Toys are instead drawn from
K components: component k generates N_k toys at (μ_k, θ̂̂(0)), μ_0 = 0 (the B-only model itself,
the "defensive" component) and μ_k the Asimov μ whose median significance is z_k
(:func:`~lzflow.stats.asymptotic.discovery_potential`, default z = 3 and 5). Every component
shares θ̂̂(0), so the auxiliary observables have the same Gaussian law in all of them and the
likelihood ratio to B involves the Poisson counts only — exactly::

    ln L_k(n)/L_B(n) = −μ_k S + Σ_i n_i ln(1 + μ_k s_i / b_i),    b_i = ν_i(0, θ̂̂(0)),  S = Σ s_i

Each toy gets the weight w = 1 / Σ_k f_k L_k(n)/L_B(n), f_k = N_k / N (the mixture's density
ratio; w ≤ 1/f_0 thanks to the defensive component), and

    p̂₀(c) = (1/N) Σ_t w_t 1[q₀,t ≥ c],     Var p̂₀ ≈ [(1/N) Σ_t w_t² 1[q₀,t ≥ c] − p̂₀²] / N

(unbiased for every c; the variance is that of i.i.d. draws from the mixture, an upper bound for
the stratified draw used here). With a single component μ_0 = 0 this is plain Monte Carlo.

Median discovery potential from toys
------------------------------------
At each μ of a grid, S+B toys at (μ, θ̂̂(0)) give the median q̃₀(μ); its p-value p₀(q̃₀(μ)) from
the weighted B-only ensemble, Z(μ) = Φ⁻¹(1 − p₀). The potential μ_Z is where ln p₀ crosses
ln Φ(−Z) (linear interpolation in μ between grid points); the asymptotic one solves
q₀,A(μ) = Z² (:func:`~lzflow.stats.asymptotic.discovery_potential`). In the asymptotic regime
(many events) both agree; at low counts the discreteness of q₀ and the non-χ² tail separate them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm

from .asymptotic import discovery_potential
from .binned_nll import PreparedData
from .fit import BatchedFitter
from .fitresult import FitConfig
from .model import BinnedModel
from .teststat import evaluate_test_statistic
from .toys import ToySampler, generation_point

__all__ = [
    "DEFAULT_COMPONENTS",
    "Z_TAILS",
    "TailEstimate",
    "ToyDiscovery",
    "discovery_from_toys",
    "discovery_tail",
    "q0_of_toys",
]

#: median significances z_k of the default mixture components (0 = the B-only model itself)
DEFAULT_COMPONENTS: tuple[float, ...] = (0.0, 3.0, 5.0)
#: the tails reported: 3σ (p = 1.35e-3) and 5σ (p = 2.87e-7)
Z_TAILS: tuple[float, ...] = (3.0, 5.0)
_CHUNK = 4096  # toys drawn and fitted at a time (bounds memory for 10⁵-bin models)
_IS_POI_OFFSET = 1000  # random streams of the IS components: poi_index = 1000 + k, hypothesis "b"
_SB_POI_OFFSET = 2000  # S+B toys of the potential: poi_index = 2000 + j, hypothesis "sb"


def q0_of_toys(fitter: BatchedFitter, data: PreparedData) -> np.ndarray:
    """q₀ of prepared toys: unconditional fit (μ ≥ 0) and the fit at μ = 0 started from it."""
    ru = fitter.fit(data, mu_fixed=None, mu_lower=0.0)
    init = ru.params.copy()
    init[:, 0] = 0.0
    rc = fitter.fit(data, mu_fixed=0.0, init=init)
    return evaluate_test_statistic("q0", rc.nll, ru.nll, ru.params[:, 0], 0.0)


def _sum_counts(data: PreparedData, fitter: BatchedFitter, per_bin: np.ndarray) -> np.ndarray:
    """Σ_i n_i per_bin_i for every toy of ``data`` (dense and sparse parts)."""
    out = data.nD @ per_bin[fitter.dense_bins] if fitter.dense_bins.size else np.zeros(data.n)
    if data.e_n.size:
        out = out + np.bincount(data.e_toy, weights=data.e_n * per_bin[fitter.sparse_bins[data.e_bin]],
                                minlength=data.n)
    return out


@dataclass
class TailEstimate:
    """The weighted background-only ensemble of q₀ (module docstring).

    q0, weight: ``(N,)`` per toy; components: (z_k, μ_k, N_k) per mixture component.
    """

    q0: np.ndarray
    weight: np.ndarray
    components: list[tuple[float, float, int]]
    method: str
    n_failed: int = 0

    @property
    def n(self) -> int:
        return int(self.q0.size)

    def pvalue(self, c: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p̂₀(c), its standard error) for thresholds ``c``."""
        c = np.atleast_1d(np.asarray(c, dtype=np.float64))
        order = np.argsort(self.q0)
        qs, w = self.q0[order], self.weight[order]
        # suffix sums: Σ w 1[q ≥ c] = tail from the first index with q ≥ c
        s1 = np.r_[np.cumsum(w[::-1])[::-1], 0.0]
        s2 = np.r_[np.cumsum((w * w)[::-1])[::-1], 0.0]
        k = np.searchsorted(qs, c, side="left")
        p = s1[k] / self.n
        var = np.maximum(s2[k] / self.n - p * p, 0.0) / self.n
        return p, np.sqrt(var)

    def tail_at(self, z: float) -> dict:
        """p̂₀ at q₀ = z² with its relative error, and the exact-normal value Φ(−z) for scale."""
        p, e = self.pvalue(z * z)
        p, e = float(p[0]), float(e[0])
        return {"z": float(z), "p0": p, "p0_err": e, "rel_err": e / p if p > 0 else float("inf"),
                "p0_chi2": float(norm.sf(z))}

    def as_dict(self) -> dict:
        return {"method": self.method, "n_toys": self.n, "n_failed": self.n_failed,
                "components": [{"z": z, "mu": m, "n_toys": n} for z, m, n in self.components],
                "tails": [self.tail_at(z) for z in Z_TAILS]}


def _component_points(model: BinnedModel, fitter: BatchedFitter, theta0: np.ndarray,
                      components: Sequence[float], config: FitConfig) -> list[np.ndarray]:
    """Generation point [μ_k, θ_k] of each mixture component (module docstring): μ_k the Asimov
    potential at z_k, θ_k = θ̂̂(0) − δ_k with δ_k = θ̂̂(0 | Asimov(μ_k, θ̂̂(0))) − θ̂̂(0)."""
    out = []
    for z in components:
        if not z >= 0:
            raise ValueError(f"components: median significances must be ≥ 0, got {z}")
        if z == 0:
            out.append(np.r_[0.0, theta0])
            continue
        mu = float(discovery_potential(model, z=float(z), theta=theta0, config=config))
        if not np.isfinite(mu):
            raise ValueError(f"components: no finite μ reaches a median {z}σ (empty signal?)")
        counts, aux = model.asimov(mu, theta0)
        r = fitter.fit(counts[None, :], aux[None, :], mu_fixed=0.0, init=model.full_params(0.0, theta0)[None, :])
        theta_k = 2.0 * theta0 - r.params[0, 1:]
        nb = model.n_bkg
        theta_k[:nb] = np.where(model.constrained, np.clip(theta_k[:nb], 1e-3 * theta0[:nb], None), theta0[:nb])
        out.append(np.r_[mu, theta_k])
    return out


def _aux_precision(model: BinnedModel) -> np.ndarray:
    """Precision of each auxiliary observable (1/r_b² for floating backgrounds, 1 per α, 0 fixed)."""
    return model.constraint_precision[1:]


def discovery_tail(
    model: BinnedModel,
    n_toys: int,
    base_seed: int,
    mass_key: int,
    components: Sequence[float] = DEFAULT_COMPONENTS,
    observed: tuple[np.ndarray, np.ndarray] | None = None,
    config: FitConfig | None = None,
) -> TailEstimate:
    """The weighted B-only q₀ ensemble from ``n_toys`` toys split evenly over the mixture
    ``components`` (median significances z_k; ``(0,)`` = plain toys). Module docstring."""
    if not components or n_toys < len(components):
        raise ValueError(f"n_toys: need at least one toy per component ({len(components)}), got {n_toys}")
    if 0.0 not in [float(z) for z in components]:
        raise ValueError("components: the B-only component z = 0 must be included (defensive mixture)")
    base = config or FitConfig()
    cfg = FitConfig(**{**base.__dict__, "n_threads": base.n_threads or 1})
    fitter = BatchedFitter(model, cfg)
    gen0, _ = generation_point(model, 0.0, observed, fitter)
    theta0 = gen0[1:]
    points = _component_points(model, fitter, theta0, components, cfg)
    b = model.expected(0.0, theta0)
    prec = _aux_precision(model)
    lratio, const = [], []
    for g in points:
        nu = model.expected(g[0], g[1:])
        # ln(ν_k/b) per bin (ν_k floored at 1e-300: a count there is all but impossible under k)
        lratio.append(np.where(b > 0, np.log(np.maximum(nu, 1e-300) / np.where(b > 0, b, 1.0)), 0.0))
        const.append(-(nu - b).sum() + 0.5 * np.sum(prec * (theta0 ** 2 - g[1:] ** 2)))
    impossible = (b <= 0) & np.any([model.expected(g[0], g[1:]) > 0 for g in points], axis=0)
    sizes = np.full(len(points), n_toys // len(points))
    sizes[: n_toys % len(points)] += 1
    logf = np.log(sizes / n_toys)
    q_all, w_all = [], []
    for k, g in enumerate(points):
        sampler = ToySampler(fitter, g)
        for start in range(0, int(sizes[k]), _CHUNK):
            idx = np.arange(start, min(start + _CHUNK, int(sizes[k])))
            data, aux = sampler.draw(base_seed, mass_key, _IS_POI_OFFSET + k, "b", idx)
            q_all.append(q0_of_toys(fitter, data))
            # ln L_k/L_B: Poisson part Σ n ln(ν_k/b) − Σ(ν_k − b); Gaussian aux part
            # Σ prec [(a − θ0)² − (a − θ_k)²]/2 = Σ prec [a (θ_k − θ0)] + Σ prec (θ0² − θ_k²)/2; the a_γ
            # of template MC statistics (after a_θ, a_α) are drawn at γ = 1 in every component: they cancel
            ell = np.stack([c + _sum_counts(data, fitter, lr) + aux[:, :prec.size] @ (prec * (g[1:] - theta0))
                            for g, lr, c in zip(points, lratio, const)])
            logw = -logsumexp(ell + logf[:, None], axis=0)
            if impossible.any():
                logw = np.where(_sum_counts(data, fitter, impossible.astype(float)) > 0, -np.inf, logw)
            w_all.append(np.exp(logw))
    q0 = np.concatenate(q_all)
    bad = ~np.isfinite(q0)
    method = "plain toys" if len(points) == 1 else \
        "importance sampling (defensive mixture, balance-heuristic weights)"
    return TailEstimate(np.where(bad, 0.0, q0), np.concatenate(w_all),
                        [(float(z), float(g[0]), int(n)) for z, g, n in zip(components, points, sizes)], method,
                        int(bad.sum()))


@dataclass
class ToyDiscovery:
    """Median discovery potential from toys and asymptotically (module docstring).

    mu_grid, median_q0, p0, p0_err, z_toys, z_asymptotic: per grid point; mu_toys / mu_asymptotic:
    the μ reaching ``z`` (inf when the grid's top does not reach it); tail: the B-only ensemble.
    """

    z: float
    mu_grid: np.ndarray
    median_q0: np.ndarray
    p0: np.ndarray
    p0_err: np.ndarray
    z_toys: np.ndarray
    z_asymptotic: np.ndarray
    mu_toys: float
    mu_asymptotic: float
    n_toys_sb: int
    tail: TailEstimate
    sigma_ref_cm2: float | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        ref = self.sigma_ref_cm2

        def cm2(mu: float) -> float | None:
            return None if ref is None or not np.isfinite(mu) else mu * ref

        return {
            "z": self.z, "mu_toys": _finite(self.mu_toys), "mu_asymptotic": _finite(self.mu_asymptotic),
            "sigma_cm2_toys": cm2(self.mu_toys), "sigma_cm2_asymptotic": cm2(self.mu_asymptotic),
            "ratio_toys_to_asymptotic": _finite(self.mu_toys / self.mu_asymptotic),
            "n_toys_sb": self.n_toys_sb,
            "grid": {"mu": self.mu_grid.tolist(), "median_q0": self.median_q0.tolist(),
                     "p0": self.p0.tolist(), "p0_err": self.p0_err.tolist(),
                     "z_toys": [_finite(v) for v in self.z_toys],
                     "z_asymptotic": self.z_asymptotic.tolist()},
            "background_only": self.tail.as_dict(),
        }


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _crossing(mu: np.ndarray, p: np.ndarray, target: float) -> float:
    """Smallest μ where p falls to ``target`` (log-linear between grid points)."""
    below = p <= target
    if not below.any():
        return float("inf")
    k = int(np.argmax(below))
    if k == 0:
        return float(mu[0])
    l0, l1 = np.log(max(p[k - 1], 1e-300)), np.log(max(p[k], 1e-300))
    if l1 == l0:
        return float(mu[k])
    return float(mu[k - 1] + (mu[k] - mu[k - 1]) * (np.log(target) - l0) / (l1 - l0))


def discovery_from_toys(
    model: BinnedModel,
    *,
    n_toys_b: int,
    n_toys_sb: int,
    base_seed: int,
    mass_key: int,
    z: float = 3.0,
    mu_grid: Sequence[float] | None = None,
    components: Sequence[float] = DEFAULT_COMPONENTS,
    observed: tuple[np.ndarray, np.ndarray] | None = None,
    sigma_ref_cm2: float | None = None,
    config: FitConfig | None = None,
) -> ToyDiscovery:
    """Median ``z``σ discovery potential from toys beside the asymptotic one (module docstring).

    ``mu_grid`` default: 16 points from 0.3 to 3 × the asymptotic μ_z (geometric). This is the
    function the merge stage calls per mass (``as_dict()`` is JSON-ready; with
    ``sigma_ref_cm2`` the potentials are also given in cm²).
    """
    cfg = config or FitConfig(n_threads=1)
    tail = discovery_tail(model, n_toys_b, base_seed, mass_key, components, observed, cfg)
    fitter = BatchedFitter(model, FitConfig(**{**cfg.__dict__, "n_threads": cfg.n_threads or 1}))
    gen0, _ = generation_point(model, 0.0, observed, fitter)
    theta0 = gen0[1:]
    mu_as = float(discovery_potential(model, z=z, theta=theta0, config=cfg))
    if mu_grid is None:
        if not np.isfinite(mu_as):
            raise ValueError("mu_grid: the asymptotic potential is infinite (empty signal); give a grid")
        mu_grid = mu_as * np.geomspace(0.3, 3.0, 16)
    mus = np.asarray(mu_grid, dtype=np.float64)
    if mus.ndim != 1 or mus.size < 2 or np.any(np.diff(mus) <= 0) or mus[0] <= 0:
        raise ValueError(f"mu_grid: expected ≥ 2 increasing positive values, got {mus.tolist()}")
    med = np.empty(mus.size)
    z_as = np.empty(mus.size)
    for j, mu in enumerate(mus):
        data, _ = ToySampler(fitter, np.r_[mu, theta0]).draw(base_seed, mass_key, _SB_POI_OFFSET + j, "sb",
                                                             np.arange(n_toys_sb))
        med[j] = np.nanmedian(q0_of_toys(fitter, data))
        z_as[j] = np.sqrt(max(_asimov_q0(fitter, model, mu, theta0), 0.0))
    p, perr = tail.pvalue(med)
    with np.errstate(divide="ignore"):
        zt = np.where(p > 0, norm.isf(p), np.inf)
    return ToyDiscovery(float(z), mus, med, p, perr, zt, z_as, _crossing(mus, p, float(norm.sf(z))), mu_as,
                        int(n_toys_sb), tail, sigma_ref_cm2)


def _asimov_q0(fitter: BatchedFitter, model: BinnedModel, mu: float, theta0: np.ndarray) -> float:
    counts, aux = model.asimov(mu, theta0)
    return float(q0_of_toys(fitter, fitter.prepare(counts[None, :], aux[None, :]))[0])
