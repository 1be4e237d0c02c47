r"""Template Monte-Carlo statistics: Barlow–Beeston-lite γ per bin, profiled analytically.

The templates are folds of NEST response matrices with finite MC samples (:mod:`lzflow.pdfs`: the
fold's per-bin variance Σ_j p_j² c_jb / N_j²), so the background prediction of a bin carries a
relative MC error δ_{s,b} per source s. Following Barlow & Beeston (Comput. Phys. Commun. 77 (1993)
219) in the "lite" form of HistFactory's StatError / pyhf's ``staterror`` (one parameter per bin for
the total, Conway, arXiv:1103.0354 §2), bin b gets one multiplier γ_b of the **total background**
(every background sample, floating or fixed; the signal is not scaled — its MC error would be a
constraint tied to the arbitrary reference cross section of μ = 1) with a Gaussian constraint::

    ν_b(μ, θ, γ) = u_b + γ_b v_b,        u_b = μ s_b,     v_b = Σ_k θ_k B_kb
    δ_b = sqrt(Σ_k (B_kb δ_kb)²) / Σ_k B_kb                           (nominal θ = 1)
    NLL = Σ_b [ν_b − n_b ln ν_b] + Σ_{b ∈ Γ} (a_b − γ_b)² / (2 δ_b²) + (θ, α constraints)

with a_b the auxiliary measurement of γ_b (nominal 1; toys draw a_b ~ Gauss(γ_b^gen, δ_b)). Γ, the
bins given a γ, are those with δ_b ≥ ``threshold`` (HistFactory's relative StatError threshold);
the others keep γ_b ≡ 1. lzflow stores δ_b (0 outside Γ) as ``BinnedModel.mc_stat``.

Analytic profiling (Conway §2, generalised to an unscaled part u): for fixed (μ, θ) the γ_b
decouple; ∂NLL/∂γ_b = v − n v/ν + (γ − a)/δ² = 0, times δ² ν, is the quadratic::

    v γ² + (u + v² δ² − a v) γ + (δ² v (u − n) − a u) = 0
    γ̂_b = the larger root  (= [(a − vδ²) + sqrt((a − vδ²)² + 4 n δ²)] / 2 for u = 0),

computed without cancellation (2C/(−B − √D) when B > 0). At γ = −u/v (ν = 0) the quadratic equals
−n v δ² ≤ 0, so the larger root is the unique stationary point in the domain ν > 0 (the NLL in γ
is strictly convex there); it is clipped at γ ≥ 0 (pyhf's bound is 1e-10), which can bind only
for n_b = 0.

Derivatives of the profiled NLL f(y) = min_γ F(y, γ) (y the free μ, θ; ν bilinear in (y, γ)):

* gradient (envelope theorem, ∂F/∂γ = 0 at γ̂): ∇f = ∇_y F at γ̂, i.e. the rate-only gradient
  Σ_b (1 − n_b/ν̂_b) x̃_b + P (y − a) with the effective templates x̃_b = ∂ν_b/∂y = s_b for μ and
  γ̂_b B_kb for θ_k;
* Hessian (implicit function theorem, dγ̂/dy = −F_γγ⁻¹ F_γy; Schur complement of the diagonal
  γγ block)::

      ∇²f = F_yy − Σ_{b ∈ Γ, γ̂_b > 0} c_b c_bᵀ / F_γγ,b + P
      F_yy = Σ_b w_b x̃_b x̃_bᵀ,   w = n/ν̂²
      c_b = F_yγ,b = w_b v_b x̃_b + (1 − n_b/ν̂_b) ∂v_b/∂y,   F_γγ,b = w_b v_b² + 1/δ_b²

  (where γ̂_b is clipped at 0 it does not move with y: no correction).

The batched fitter's dimension does not grow: :class:`McStatRows` is a
:class:`lzflow.stats.newton.NewtonRows` over (μ, θ) only. The reference path with explicit γ
parameters (:func:`explicit_gamma_fit`, iminuit, slow) and pyhf's ``staterror``
(:mod:`lzflow.stats.pyhf_export`) give the same q̃ (tests/unit/test_mcstat.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .binned_nll import PointRows, PreparedData

__all__ = ["gamma_hat", "total_delta", "McStatLayout", "GammaRows", "McStatRows", "profiled_nll", "mcstat_problem",
           "mcstat_information", "explicit_gamma_fit", "dense_counts", "MCSTAT_KEYS", "draw_gamma_aux",
           "GAMMA_WORD0", "poisson_terms", "expected_parts", "gamma_generation"]

#: counter-stream word index of a toy's first γ auxiliary normal: far above the words its θ, α,
#: dense-bin and sparse-event draws use (< 2⁴⁰), so those stay the words they are without γ
GAMMA_WORD0 = 1 << 62

#: the keys of the ``systematics.mc_stat`` config block
MCSTAT_KEYS = ("enabled", "threshold")

#: toys per chunk of the Hessian's (toys, bins, p) work array
_CHUNK = 64


def gamma_hat(u: np.ndarray, v: np.ndarray, n: np.ndarray, a: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """γ̂ ≥ 0 of each bin (module docstring): the larger root of
    v γ² + (u + v² δ² − a v) γ + (δ² v (u − n) − a u) = 0; ``d2`` = δ² > 0. Where v = 0 the
    Poisson term does not depend on γ and γ̂ = max(a, 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        B = u + v * v * d2 - a * v
        C = d2 * v * (u - n) - a * u
        sq = np.sqrt(np.maximum(B * B - 4.0 * v * C, 0.0))
        root = np.where(B > 0, 2.0 * C / (-B - sq), (-B + sq) / (2.0 * v))
    root = np.where(v > 0, root, a)
    return np.maximum(np.where(np.isfinite(root), root, 0.0), 0.0)


def total_delta(templates: np.ndarray, rel_errors: np.ndarray, threshold: float) -> np.ndarray:
    """δ_b of the total background (module docstring) from the background ``templates`` ``(k, bins)``
    and their relative MC errors ``(k, bins)``; 0 where δ_b < ``threshold`` or the total is 0."""
    t = np.asarray(templates, float)
    tot = t.sum(axis=0)
    err = np.sqrt(((t * np.asarray(rel_errors, float)) ** 2).sum(axis=0))
    d = np.where(tot > 0, err / np.where(tot > 0, tot, 1.0), 0.0)
    return np.where(d >= threshold, d, 0.0)


def dense_counts(data: PreparedData, dense_bins: np.ndarray, sparse_bins: np.ndarray, n_bins: int) -> np.ndarray:
    """``(n, n_bins)`` counts of prepared toys."""
    out = np.zeros((data.n, n_bins))
    out[:, dense_bins] = data.nD
    np.add.at(out, (data.e_toy, sparse_bins[data.e_bin]), data.e_n)
    return out


class McStatLayout:
    """One fit type of a model with γ bins: free columns ``cols`` (μ if free, floating θ), their
    templates ``X`` ``(bins, p)``, which are background (γ-scaled) columns, the fixed unscaled part
    u₀ (μ s when μ is fixed) and scaled part v₀ (fixed backgrounds), δ² per bin (0: no γ)."""

    def __init__(self, model: Any, mu_free: bool):
        self.cols = model.fit_columns(mu_free)
        self.p = int(self.cols.size)
        templates = np.vstack([model.signal[None, :], model.backgrounds])
        self.X = np.ascontiguousarray(templates[self.cols].T)
        self.scaled = self.cols > 0
        self.signal = model.signal
        self.u0 = np.zeros(model.n_bins)
        self.v0 = model.backgrounds[np.flatnonzero(~model.constrained)].sum(axis=0)
        delta = np.asarray(model.mc_stat, float)
        self.gbins = np.flatnonzero(delta > 0)
        self.d2 = delta[self.gbins] ** 2
        self.aux_gamma = model.n_bkg + model.n_shape + np.arange(self.gbins.size)
        self.prec = model.constraint_precision[self.cols]

    def at(self, mu_fixed: float | None) -> "McStatLayout":
        """This layout with μ fixed at ``mu_fixed`` (a no-op for μ free)."""
        if mu_fixed is None:
            return self
        out = object.__new__(McStatLayout)
        out.__dict__.update(self.__dict__)
        out.u0 = mu_fixed * self.signal
        return out

    def parts(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u, v) ``(n, bins)`` at free parameters ``y`` ``(n, p)``."""
        s = self.scaled
        return y[:, ~s] @ self.X[:, ~s].T + self.u0, y[:, s] @ self.X[:, s].T + self.v0


class _Point:
    __slots__ = ("u", "v", "g", "nu")

    def __init__(self, lay: McStatLayout, y: np.ndarray, counts: np.ndarray, ag: np.ndarray):
        self.u, self.v = lay.parts(y)
        gb = lay.gbins
        self.g = gamma_hat(self.u[:, gb], self.v[:, gb], counts[:, gb], ag, lay.d2)
        self.nu = self.u + self.v
        self.nu[:, gb] = self.u[:, gb] + self.g * self.v[:, gb]

    def take(self, keep: np.ndarray) -> "_Point":
        out = _Point.__new__(_Point)
        for name in _Point.__slots__:
            setattr(out, name, getattr(self, name)[keep])
        return out


def poisson_terms(counts: np.ndarray, nu: np.ndarray) -> np.ndarray:
    """Σ_b [ν − n ln ν] per row (0 ln 0 = 0; +inf where ν ≤ 0 with n > 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = counts > 0
        log = np.where(pos, counts * np.log(np.where(pos & (nu > 0), nu, 1.0)), 0.0)
        bad = np.any(pos & ~(nu > 0), axis=-1)
    return np.where(bad, np.inf, nu.sum(axis=-1) - log.sum(axis=-1))


class GammaRows(PointRows):
    """The part of the γ-profiled rows that does not depend on how ν is built (shared by
    :class:`McStatRows` and :class:`lzflow.stats.mcstat_morph.GammaMorphRows`): per-toy counts,
    constraint centres ``aux_c`` of the fitted parameters and γ auxiliary measurements ``ag``; the
    NLL Σ Poisson + Σ_b (γ̂_b − a_b)²/(2δ_b²) + ½ (y − a)ᵀ P (y − a) at a point with ``nu`` and ``g``."""

    def __init__(self, lay: Any, counts: np.ndarray, aux_c: np.ndarray, ag: np.ndarray):
        self.lay, self.counts, self.aux_c, self.ag = lay, counts, aux_c, ag
        self.n = counts.shape[0]
        self.cur = self.trial_pt = self.ratios = None
        self.parent_rows = None

    def subset(self, keep: np.ndarray) -> "GammaRows":
        sub = type(self)(self.lay, self.counts[keep], self.aux_c[keep], self.ag[keep])
        sub.parent_rows = np.flatnonzero(keep)
        return sub

    def nll(self, y: np.ndarray, pt: Any) -> np.ndarray:
        lay = self.lay
        cons = 0.5 * (((y - self.aux_c) ** 2) @ lay.prec)
        return poisson_terms(self.counts, pt.nu) + 0.5 * (((pt.g - self.ag) ** 2) / lay.d2).sum(axis=1) + cons


class McStatRows(GammaRows):
    """NLL, gradient and Hessians of toys under a model with γ bins, γ profiled analytically (a
    :class:`lzflow.stats.newton.NewtonRows`; maths in the module docstring). Dense arrays
    ``(toys, bins)``: every bin is evaluated (the optional path; the rate-only fitter keeps its
    dense/sparse split)."""

    @classmethod
    def build(cls, lay: McStatLayout, data: PreparedData, dense_bins: np.ndarray,
              sparse_bins: np.ndarray) -> "McStatRows":
        counts = dense_counts(data, dense_bins, sparse_bins, lay.X.shape[0])
        aux_c = np.zeros((data.n, lay.p))
        aux_c[:, lay.scaled] = data.aux[:, lay.cols[lay.scaled] - 1]
        return cls(lay, counts, aux_c, data.aux[:, lay.aux_gamma])

    def infeasible(self) -> np.ndarray:
        live = np.any(self.lay.X > 0, axis=1) | (self.lay.u0 > 0) | (self.lay.v0 > 0)
        return np.any(self.counts[:, ~live] > 0, axis=1)

    def compact(self, keep: np.ndarray, ratios: bool) -> None:
        self.counts, self.aux_c, self.ag = self.counts[keep], self.aux_c[keep], self.ag[keep]
        self.n = int(keep.sum())
        if self.cur is not None:
            self.cur = self.cur.take(keep)
        if self.trial_pt is not None:
            self.trial_pt = self.trial_pt.take(keep)

    def point(self, y: np.ndarray) -> _Point:
        return _Point(self.lay, y, self.counts, self.ag)

    def take_trial(self, sub: "McStatRows", ok: np.ndarray) -> None:
        rows = sub.parent_rows[ok]
        for name in _Point.__slots__:
            getattr(self.trial_pt, name)[rows] = getattr(sub.trial_pt, name)[ok]

    def gradient(self, y: np.ndarray, pt: _Point) -> tuple[np.ndarray, tuple]:
        """∇f = Σ_b (1 − r_b) x̃_b + P (y − a), r = n/ν̂ (0 where n = 0)."""
        lay = self.lay
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(self.counts > 0, self.counts / pt.nu, 0.0)
        one_r = 1.0 - r
        gam = np.ones_like(pt.nu)
        gam[:, lay.gbins] = pt.g
        g = np.where(lay.scaled, (one_r * gam) @ lay.X, one_r @ lay.X)
        return g + lay.prec * (y - self.aux_c), (r, gam)

    def hessian(self, pt: _Point, ratios: tuple, rows: np.ndarray | None) -> np.ndarray:
        """``(p, p, k)`` Hessians: Gauss–Newton term minus the Schur correction of each γ bin."""
        lay = self.lay
        r, gam = ratios
        nu, v, counts, g = pt.nu, pt.v, self.counts, pt.g
        if rows is not None:
            r, gam, nu, v, counts, g = r[rows], gam[rows], nu[rows], v[rows], counts[rows], g[rows]
        k = r.shape[0]
        gb = lay.gbins
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(counts > 0, r / nu, 0.0)
        wg, vg = w[:, gb], v[:, gb]
        fgg = wg * vg * vg + 1.0 / lay.d2
        live = g > 0
        h = np.empty((lay.p, lay.p, k))
        sc = lay.scaled.astype(float)
        for a in range(0, k, _CHUNK):
            sl = slice(a, a + _CHUNK)
            xt = lay.X[None, :, :] * np.where(lay.scaled, gam[sl, :, None], 1.0)  # (c, bins, p)
            hh = np.einsum("cb,cbj,cbk->cjk", w[sl], xt, xt)
            c = (wg[sl] * vg[sl])[:, :, None] * xt[:, gb] + (1.0 - r[sl][:, gb])[:, :, None] * lay.X[None, gb] * sc
            c = c * np.sqrt(np.where(live[sl], 1.0 / fgg[sl], 0.0))[:, :, None]
            hh -= np.einsum("cbj,cbk->cjk", c, c)
            h[:, :, sl] = np.moveaxis(hh, 0, -1)
        idx = np.arange(lay.p)
        h[idx, idx] += lay.prec[:, None]
        return h


def expected_parts(model: Any, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) ``(..., n_bins)`` at full parameters ``params`` ``(..., n_par)``: ν = u + γ v, u the
    signal part (μ s; with shape systematics ν(μ, θ, α) − v), v the background part the γ scale
    (θ B; with shape systematics ν(0, θ, α), :mod:`lzflow.stats.mcstat_morph`)."""
    params = np.asarray(params, float)
    if model.n_shape:
        v = model.expected(np.zeros(params.shape[:-1]), params[..., 1:])
        return model.expected(params[..., 0], params[..., 1:]) - v, v
    return params[..., :1] * model.signal, params[..., 1 : 1 + model.n_bkg] @ model.backgrounds


def gamma_generation(model: Any, params: np.ndarray, observed: tuple[np.ndarray, np.ndarray] | None = None
                     ) -> np.ndarray:
    """γ̂̂ ``(G,)``: the γ̂ of the conditional fit whose (μ, θ̂̂, α̂̂) are ``params``, on ``observed`` =
    (counts, aux) (default: the Asimov background-only data, :meth:`BinnedModel.asimov` at μ = 0) —
    the centre of the toys' a_γ (:func:`draw_gamma_aux`), as θ̂̂ and α̂̂ are of theirs. Where γ = 1
    solves the quadratic of :func:`gamma_hat` exactly in floating point, i.e.
    (1 − a)(u + v) + δ² v (u + v − n) = 0 (a = 1 and n = u + v: background-only Asimov data at μ = 0),
    γ̂̂ is 1 exactly (it is then the larger root, ν = u + v > 0), not the root formula's 1 ± 1 ulp:
    those toys stay those drawn at the nominal γ, bit for bit."""
    counts, aux = model.asimov(0.0) if observed is None else observed
    counts, aux = np.asarray(counts, float), np.asarray(aux, float)
    u, v = expected_parts(model, params)
    gb = np.flatnonzero(np.asarray(model.mc_stat, float) > 0)
    u, v, n = u[gb], v[gb], counts[gb]
    a = aux[model.n_bkg + model.n_shape :]
    d2 = model.mc_stat[gb] ** 2
    exact = ((1.0 - a) * (u + v) + d2 * v * (u + v - n) == 0.0) & (u + v > 0)
    return np.where(exact, 1.0, gamma_hat(u, v, n, a, d2))


def draw_gamma_aux(model: Any, aux: np.ndarray, key: np.ndarray | None = None, toys: np.ndarray | None = None,
                   rng: np.random.Generator | None = None, centre: np.ndarray | None = None) -> np.ndarray:
    """Toys' γ auxiliary measurements a_γ ~ Gauss(γ_gen, δ) (the global observables of the γ, drawn at
    ``centre`` = γ_gen ``(G,)``, :func:`gamma_generation`; ``None``: the nominal γ = 1) written into
    ``aux[..., n_bkg + K:]``: from the counter stream ``key`` at words :data:`GAMMA_WORD0` + g of each
    of ``toys`` (``(n, n_aux)`` aux), or from one toy's ``rng`` after its other draws (``(n_aux,)`` aux)."""
    from scipy.special import ndtri

    from ._rng import uniforms_from_words, words

    delta = model.mc_stat[model.mc_stat > 0]
    start = model.n_bkg + model.n_shape
    if rng is not None:
        aux[start:] = (1.0 if centre is None else centre) + delta * rng.standard_normal(delta.size)
        return aux
    u = uniforms_from_words(words(key, np.asarray(toys)[:, None], GAMMA_WORD0 + np.arange(delta.size)[None, :]))
    aux[:, start:] = (1.0 if centre is None else centre) + delta * ndtri(u)
    return aux


def profiled_nll(model: Any, params: np.ndarray, counts: np.ndarray, aux: np.ndarray | None = None) -> np.ndarray:
    """The model's NLL at full parameter vectors ``params`` ``(..., n_par)`` with every γ at γ̂ (dense
    reference of :class:`McStatRows` and :class:`lzflow.stats.mcstat_morph.GammaMorphRows`); aux
    ``(..., n_aux)`` = [a_θ, a_α, a_γ], default nominal."""
    params = np.atleast_2d(np.asarray(params, float))
    counts = np.atleast_2d(np.asarray(counts, float))
    nb, K = model.n_bkg, model.n_shape
    aux = np.r_[np.ones(nb), np.zeros(K), np.ones(model.n_gamma)] if aux is None else np.asarray(aux, float)
    aux = np.broadcast_to(aux, counts.shape[:-1] + (model.n_aux,))
    delta = np.asarray(model.mc_stat, float)
    gb = np.flatnonzero(delta > 0)
    u, v = expected_parts(model, params)  # with shape systematics: v = ν(0, θ, α), u = ν − v
    if K:
        params, alpha = params[..., : 1 + nb], params[..., 1 + nb :]
    ag = aux[..., nb + K :]
    g = gamma_hat(u[..., gb], v[..., gb], counts[..., gb], ag, delta[gb] ** 2)
    nu = u + v
    nu[..., gb] = u[..., gb] + g * v[..., gb]
    c = model.constrained
    rel = np.where(c, model.rel_unc, 1.0)
    cons = np.where(c, 0.5 * ((aux[..., :nb] - params[..., 1:]) / rel) ** 2, 0.0).sum(axis=-1)
    if K:
        cons = cons + 0.5 * ((aux[..., nb : nb + K] - alpha) ** 2).sum(axis=-1)
    return poisson_terms(counts, nu) + 0.5 * (((g - ag) / delta[gb]) ** 2).sum(axis=-1) + cons


def mcstat_problem(lay: McStatLayout, counts: np.ndarray, aux: np.ndarray):
    """(nll, grad) of one toy over the free parameters, for Migrad (γ profiled)."""
    rows = McStatRows(lay, counts[None, :], np.zeros((1, lay.p)), aux[None, lay.aux_gamma])
    rows.aux_c[0, lay.scaled] = aux[lay.cols[lay.scaled] - 1]

    def nll(y: np.ndarray) -> float:
        val = float(rows.nll(y[None, :], rows.point(y[None, :]))[0])
        return val if np.isfinite(val) else 1e300

    def grad(y: np.ndarray) -> np.ndarray:
        return rows.gradient(y[None, :], rows.point(y[None, :]))[0][0]

    return nll, grad


def mcstat_information(model: Any, lay: McStatLayout, params: np.ndarray) -> np.ndarray:
    """Expected information of the profiled likelihood at full parameters ``params`` (γ = 1, the
    Asimov values): Σ_b x xᵀ/ν − Σ_{b∈Γ} c cᵀ/(v²/ν + 1/δ²) + P, c = v x/ν (E[1 − n/ν] = 0)."""
    u = params[0] * model.signal
    v = params[1:] @ model.backgrounds
    nu = u + v
    pos = nu > 0
    X = lay.X
    info = (X[pos] / nu[pos, None]).T @ X[pos]
    gb = lay.gbins[pos[lay.gbins]]
    c = (v[gb] / nu[gb])[:, None] * X[gb]
    fgg = v[gb] ** 2 / nu[gb] + 1.0 / (model.mc_stat[gb] ** 2)
    info -= (c / fgg[:, None]).T @ c
    return info + np.diag(lay.prec)


def explicit_gamma_fit(model: Any, counts: np.ndarray, aux: np.ndarray, mu_fixed: float | None = None,
                       mu_lower: float | None = 0.0, tol: float = 1e-8) -> tuple[float, np.ndarray]:
    """Reference fit with every γ_b an explicit Migrad parameter (bounded ≥ 0): (NLL at the
    minimum, fitted ``[μ, θ (n_bkg), γ (G)]``). Slow (p + G parameters); for tests."""
    from iminuit import Minuit

    lay = McStatLayout(model, mu_fixed is None).at(mu_fixed)
    counts = np.asarray(counts, float)
    aux = np.asarray(aux, float)
    gb, G, p = lay.gbins, lay.gbins.size, lay.p
    a_y = np.zeros(p)
    a_y[lay.scaled] = aux[lay.cols[lay.scaled] - 1]
    ag = aux[lay.aux_gamma]
    pos = counts > 0

    def split(z: np.ndarray):
        y = z[:p][None, :]
        u, v = lay.parts(y)
        gam = np.ones(model.n_bins)
        gam[gb] = z[p:]
        return y[0], u[0], v[0], gam

    def nll(z: np.ndarray) -> float:
        y, u, v, gam = split(z)
        nu = u + gam * v
        if np.any(pos & ~(nu > 0)):
            return 1e300
        val = nu.sum() - counts[pos] @ np.log(nu[pos])
        return float(val + 0.5 * (((z[p:] - ag) ** 2) / lay.d2).sum() + 0.5 * lay.prec @ (y - a_y) ** 2)

    def grad(z: np.ndarray) -> np.ndarray:
        y, u, v, gam = split(z)
        nu = u + gam * v
        one_r = 1.0 - np.where(pos, counts / np.where(pos, nu, 1.0), 0.0)
        gy = np.where(lay.scaled, (one_r * gam) @ lay.X, one_r @ lay.X) + lay.prec * (y - a_y)
        return np.r_[gy, (one_r * v)[gb] + (z[p:] - ag) / lay.d2]

    y0 = np.ones(p)
    if mu_fixed is None:
        y0[0] = max(0.5 / max(model.signal_total, 1e-300), 1e-3)
    y0[lay.scaled] = np.clip(a_y[lay.scaled], 0.05, None)
    z0 = np.r_[y0, np.clip(ag, 0.05, None)]
    mn = Minuit(nll, z0, grad=grad)
    mn.errordef = Minuit.LIKELIHOOD
    mn.tol = tol
    mn.print_level = 0
    lo = 0.0 if mu_lower is None else mu_lower
    mn.limits = ([(lo if mu_lower is not None else None, None)] if mu_fixed is None else []) + \
        [(0.0, None)] * (p - (mu_fixed is None)) + [(0.0, None)] * G
    mn.strategy = 2
    mn.migrad()
    mn.migrad()
    z = np.array(mn.values)
    full = np.ones(1 + model.n_bkg + G)
    full[lay.cols] = z[:p]
    if mu_fixed is not None:
        full[0] = mu_fixed
    full[1 + model.n_bkg :] = z[p:]
    return nll(z), full
