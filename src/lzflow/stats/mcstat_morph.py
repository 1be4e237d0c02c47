r"""Template MC statistics with shape systematics: Barlow–Beeston-lite γ on a morphed model.

The γ of :mod:`lzflow.stats.mcstat` scale the total background of their bin. With shape
systematics (:mod:`lzflow.stats.morphing`, code 4p; :mod:`lzflow.stats.logmorph`, the log
morphings) the expected counts split the same way, u the signal part and v the background part::

    ν_b(μ, θ, α, γ) = u_b + γ_b v_b,     u_b = μ T_0b(α),
    v_b = Σ_k θ_k T_kb + Σ_k Δ_kb(α)   (code 4p)   or   Σ_k θ_k T_kb(α)   (log morphings)

(v = ν(0, θ, α), u = ν − v: ν is linear in μ). For fixed y = (μ, θ, α) the γ_b decouple and γ̂_b
is the root of the same quadratic as for the rate-only model (:func:`lzflow.stats.mcstat.gamma_hat`
with u_b(y), v_b(y)). The derivatives of the profiled NLL f(y) = min_γ F(y, γ) follow as there,
now with the second derivatives of ν (x̃_b = ∂u_b/∂y + γ̂_b ∂v_b/∂y, r = n/ν̂, w = n/ν̂²)::

    ∇f   = Σ_b (1 − r_b) x̃_b + P (y − a)                               (envelope theorem)
    ∇²f  = Σ_b w_b x̃_b x̃_bᵀ + Σ_b (1 − r_b) (∂²u_b + γ̂_b ∂²v_b) + P
           − Σ_{b ∈ Γ, γ̂_b > 0} c_b c_bᵀ / F_γγ,b                       (Schur complement)
    c_b = w_b v_b x̃_b + (1 − r_b) ∂v_b/∂y,       F_γγ,b = w_b v_b² + 1/δ_b²

The second derivatives are those of :mod:`lzflow.stats.morph_nll` (code 4p: ∂²u/∂μ∂α_k = S⁰_k + f'A⁰_k,
∂²u/∂α_k² = μ f'' A⁰_k, ∂²v/∂α_k² = f'' A^B_k) and :mod:`lzflow.stats.logmorph_nll` (U_s = T_s e^{L_s},
D_ks = Σ_m B'_m C_mks, E_ks = Σ_m B''_m C_mks: ∂²u/∂μ∂α_k = U_0 D_k0, ∂²u/∂α_k∂α_l = μ U_0 (D_k0 D_l0 +
δ_kl E_k0), ∂²v/∂θ_s∂α_k = U_s D_ks, ∂²v/∂α_k∂α_l = Σ_s θ_s U_s (D_ks D_ls + δ_kl E_ks)), split
into the signal and the background part. Where v_b ≤ 0 (code 4p far outside ±1σ) γ̂_b = max(a_b, 0)
(:func:`~lzflow.stats.mcstat.gamma_hat`) and the envelope theorem does not hold there: such points
have a negative background expectation (unphysical; not met in the tests).

This path evaluates every bin densely, per toy (``(toys, bins, p)`` Jacobians, in chunks of toys; the
log morphings' templates, D and E on the templates' non-zero entries only); it wraps the public
morphing bases (``model.morph``) and :class:`lzflow.stats.morph_nll.FreeParameters`, and leaves the
optimised kernels of the γ-less morphed fits untouched. Cost: 0.10 CPU-s per S+B toy on the 40 GeV
systematics workspace (log_quartic, 5 α, 1600 bins) with 308 γ bins, 0.014 without γ (docs/method.md).
The reference path (:func:`explicit_gamma_morph_fit`, every γ an explicit Migrad parameter, ν from ``model.expected`` and
its Jacobian from ``model.morph.jacobian``) gives the same q̃ (tests/unit/test_mcstat_morph.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .binned_nll import PreparedData
from .mcstat import GammaRows, dense_counts, expected_parts, gamma_hat
from .morph_nll import FreeParameters
from .morphing import code4p

__all__ = ["GammaMorphLayout", "GammaMorphRows", "gamma_morph_problem", "gamma_morph_information",
           "explicit_gamma_morph_fit"]

#: toys per chunk of the (toys, bins, p) work arrays
_CHUNK = 32


class GammaMorphLayout(FreeParameters):
    """One fit type (μ free, or fixed) of a morphed model with γ bins: the free parameters of
    :class:`~lzflow.stats.morph_nll.FreeParameters` (μ, floating θ, every α), the morphing basis,
    the γ bins and their δ², and the bins some allowed parameter value can fill."""

    def __init__(self, model: Any, mu_fixed: float | None):
        super().__init__(model, mu_fixed)
        self.basis = model.morph
        self.log = model.interpolation != "code4p"
        delta = np.asarray(model.mc_stat, float)
        self.gbins = np.flatnonzero(delta > 0)
        self.d2 = delta[self.gbins] ** 2
        self.aux_gamma = model.n_bkg + model.n_shape + np.arange(self.gbins.size)
        b = self.basis
        if self.log:
            sig_live, bkg_live = b.T[0] > 0, np.any(b.T[1:] > 0, axis=0)
            self._entries(b)
        else:
            sig_live = np.any(np.vstack([b.T[:1], b.Sd[:, 0], b.Ad[:, 0]]) != 0, axis=0)
            bkg_live = np.any(np.vstack([b.T[1:], b.Sd[:, 1:].reshape(-1, b.n_bins),
                                         b.Ad[:, 1:].reshape(-1, b.n_bins)]) != 0, axis=0)
        self._live = {True: sig_live | bkg_live, False: bkg_live}
        self.live = self._live[mu_fixed is None or mu_fixed != 0]

    def _fix_mu(self, mu_fixed: float) -> None:
        self.live = self._live[mu_fixed != 0]

    def _entries(self, b: Any) -> None:
        """The log morphings act on the templates' non-zero entries (sample s_e, bin i_e) only (a
        morphed template is 0 where the nominal is): the signal's (``sig``, bins ``isig``, unique)
        and the backgrounds' (``bkg``; ``Pb`` ``(E_B, bins)`` sums them into bins), C_mk per entry."""
        s_e, i_e = np.nonzero(b.T)
        self.s_e, self.i_e, self.T_e = s_e, i_e, b.T[s_e, i_e]
        self.sig, self.bkg = np.flatnonzero(s_e == 0), np.flatnonzero(s_e > 0)
        self.isig = i_e[self.sig]
        self.Pb = sp.csr_matrix((np.ones(self.bkg.size), (np.arange(self.bkg.size), i_e[self.bkg])),
                                shape=(self.bkg.size, b.n_bins))
        self.Ck = [np.ascontiguousarray(b.C[:, k, s_e, i_e]) for k in range(b.K)]  # (M, E) each
        self.theta_entries = [np.flatnonzero(s_e == sj) for sj in self.cfree[self.cfree > 0]]

    def _to_bins(self, X: np.ndarray) -> np.ndarray:
        """Σ over the background entries of each bin: ``(..., E_B)`` → ``(..., bins)``."""
        lead = X.shape[:-1]
        return np.asarray((self.Pb.T @ X.reshape(-1, X.shape[-1]).T).T).reshape(lead + (self.basis.n_bins,))

    # ------------------------------------------------------------------ morphing
    def _contract(self, Bx: np.ndarray) -> np.ndarray:
        """Σ_m Bx_m(α_k) C_mke ``(n, K, E)`` at the entries for basis values ``Bx`` ``(n, K, M)``."""
        out = np.empty((Bx.shape[0], len(self.Ck), self.s_e.size))
        for k, Ck in enumerate(self.Ck):
            out[:, k] = Bx[:, k] @ Ck
        return out

    def parts(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
        """(u, v) ``(n, bins)`` at free-parameter rows ``y`` ``(n, p)`` and what :meth:`jacobians`
        and :meth:`curvature` need."""
        c, al = self.split(y)
        b = self.basis
        mu = c[:, :1]
        if self.log:
            B, B1, B2 = b.basis(al)  # (n, K, M)
            U = self.T_e * np.exp(self._contract(B).sum(axis=1))  # (n, E): the morphed entries
            u = np.zeros((y.shape[0], b.n_bins))
            u[:, self.isig] = mu * U[:, self.sig]
            return u, self._to_bins(c[:, self.s_e[self.bkg]] * U[:, self.bkg]), (c, al, B1, B2, U)
        f, f1, f2 = code4p(al)
        S0, A0 = b.Sd[:, 0], b.Ad[:, 0]
        SB, AB = b.Sd[:, 1:].sum(axis=1), b.Ad[:, 1:].sum(axis=1)
        T0a = b.T[0] + al @ S0 + f @ A0
        v = c[:, 1:] @ b.T[1:] + al @ SB + f @ AB
        return mu * T0a, v, (c, al, f1, f2, T0a)

    def jacobians(self, ex: tuple) -> tuple[np.ndarray, ...]:
        """(∂u/∂y, ∂v/∂y) ``(n, bins, p)`` (module docstring), then for the log morphings D and E
        ``(n, K, E)`` at the entries for :meth:`curvature`."""
        nc = self.nc
        c = ex[0]
        n, bins = c.shape[0], self.basis.n_bins
        Ju, Jv = np.zeros((n, bins, self.p)), np.zeros((n, bins, self.p))
        th = np.flatnonzero(self.cfree > 0)
        mu = c[:, :1, None]
        if self.log:
            U = ex[4]
            D, E = self._contract(ex[2]), self._contract(ex[3])
            sig, bkg = self.sig, self.bkg
            if self.mu_free:
                Ju[:, self.isig, 0] = U[:, sig]
            for j, e in zip(th, self.theta_entries):
                Jv[:, self.i_e[e], j] = U[:, e]
            Ju[:, self.isig, nc:] = (mu * U[:, None, sig] * D[:, :, sig]).transpose(0, 2, 1)
            W = c[:, self.s_e[bkg]] * U[:, bkg]  # θ_s U_s at the background entries (n, E_B)
            Jv[:, :, nc:] = self._to_bins(W[:, None] * D[:, :, bkg]).transpose(0, 2, 1)
            return Ju, Jv, D, E
        b = self.basis
        f1, T0a = ex[2], ex[4]
        if self.mu_free:
            Ju[:, :, 0] = T0a
        Jv[:, :, th] = b.T[self.cfree[th]].T[None]
        dS = b.Sd[None, :, 0] + f1[:, :, None] * b.Ad[None, :, 0]  # (n, K, bins)
        dB = b.Sd[:, 1:].sum(axis=1)[None] + f1[:, :, None] * b.Ad[:, 1:].sum(axis=1)[None]
        Ju[:, :, nc:] = (mu * dS).transpose(0, 2, 1)
        Jv[:, :, nc:] = dB.transpose(0, 2, 1)
        return Ju, Jv

    def curvature(self, ex: tuple, jac: tuple, lu: np.ndarray, lv: np.ndarray) -> np.ndarray:
        """Σ_b (lu_b ∂²u_b + lv_b ∂²v_b) ``(n, p, p)`` for per-bin weights ``(n, bins)`` (``jac``: what
        :meth:`jacobians` returned)."""
        nc, K = self.nc, self.K
        c = ex[0]
        n = c.shape[0]
        h = np.zeros((n, self.p, self.p))
        ia = np.arange(nc, self.p)
        mu = c[:, :1]
        if self.log:
            U, (D, E) = ex[4], jac[2:]
            sig, bkg = self.sig, self.bkg
            Wu = lu[:, self.isig] * U[:, sig]  # (n, E_s)
            Wv = lv[:, self.i_e[bkg]] * U[:, bkg] * c[:, self.s_e[bkg]]  # θ_s lv U_s (n, E_B)
            D0, E0, Dv, Ev = D[:, :, sig], E[:, :, sig], D[:, :, bkg], E[:, :, bkg]
            if self.mu_free:
                cross = (D0 * Wu[:, None]).sum(axis=-1)
                h[:, 0, ia] += cross
                h[:, ia, 0] += cross
            aa = mu[:, :, None] * ((D0 * Wu[:, None]) @ D0.transpose(0, 2, 1))
            aa += (Dv * Wv[:, None]) @ Dv.transpose(0, 2, 1)
            diag = mu * (E0 * Wu[:, None]).sum(axis=-1) + (Ev * Wv[:, None]).sum(axis=-1)
            aa[:, np.arange(K), np.arange(K)] += diag
            h[:, nc:, nc:] += aa
            for j, e in zip(np.flatnonzero(self.cfree > 0), self.theta_entries):  # ∂²v/∂θ_s∂α_k = U_s D_ks
                ta = ((lv[:, self.i_e[e]] * U[:, e])[:, None] * D[:, :, e]).sum(axis=-1)  # (n, K)
                h[:, ia, j] += ta
                h[:, j, ia] += ta
            return h
        b = self.basis
        f1, f2 = ex[2], ex[3]
        if self.mu_free:
            cross = lu @ b.Sd[:, 0].T + f1 * (lu @ b.Ad[:, 0].T)
            h[:, 0, ia] += cross
            h[:, ia, 0] += cross
        h[:, ia, ia] += f2 * (mu * (lu @ b.Ad[:, 0].T) + lv @ b.Ad[:, 1:].sum(axis=1).T)
        return h


class _Point:
    __slots__ = ("u", "v", "g", "nu", "ex", "jac")

    def __init__(self, lay: GammaMorphLayout, y: np.ndarray, counts: np.ndarray, ag: np.ndarray):
        self.u, self.v, self.ex = lay.parts(y)
        gb = lay.gbins
        self.g = gamma_hat(self.u[:, gb], self.v[:, gb], counts[:, gb], ag, lay.d2)
        self.nu = self.u + self.v
        self.nu[:, gb] = self.u[:, gb] + self.g * self.v[:, gb]
        self.jac = None

    def take(self, keep: np.ndarray) -> "_Point":
        out = _Point.__new__(_Point)
        for name in ("u", "v", "g", "nu"):
            setattr(out, name, getattr(self, name)[keep])
        out.ex = tuple(e[keep] for e in self.ex)
        out.jac = None if self.jac is None else tuple(j[keep] for j in self.jac)
        return out


class GammaMorphRows(GammaRows):
    """NLL, gradient and Hessians of toys under a morphed model with γ bins, γ profiled
    analytically (a :class:`lzflow.stats.newton.NewtonRows`; module docstring). Dense ``(toys, bins)``."""

    @classmethod
    def build(cls, lay: GammaMorphLayout, data: PreparedData, dense_bins: np.ndarray,
              sparse_bins: np.ndarray) -> "GammaMorphRows":
        counts = dense_counts(data, dense_bins, sparse_bins, lay.basis.n_bins)
        aux_c = np.zeros((data.n, lay.p))
        nuis = lay.cols > 0
        aux_c[:, nuis] = data.aux[:, lay.cols[nuis] - 1]
        return cls(lay, counts, aux_c, data.aux[:, lay.aux_gamma])

    def infeasible(self) -> np.ndarray:
        return np.any(self.counts[:, ~self.lay.live] > 0, axis=1)

    def compact(self, keep: np.ndarray, ratios: bool) -> None:
        self.counts, self.aux_c, self.ag = self.counts[keep], self.aux_c[keep], self.ag[keep]
        self.n = int(keep.sum())
        if self.cur is not None:
            self.cur = self.cur.take(keep)
        if self.trial_pt is not None:
            self.trial_pt = self.trial_pt.take(keep)
        if ratios and self.ratios is not None:
            self.ratios = tuple(r[keep] for r in self.ratios)

    def point(self, y: np.ndarray) -> _Point:
        return _Point(self.lay, y, self.counts, self.ag)

    def take_trial(self, sub: "GammaMorphRows", ok: np.ndarray) -> None:
        rows = sub.parent_rows[ok]
        dst, src = self.trial_pt, sub.trial_pt
        for name in ("u", "v", "g", "nu"):
            getattr(dst, name)[rows] = getattr(src, name)[ok]
        for d, s in zip(dst.ex, src.ex):
            d[rows] = s[ok]
        dst.jac = None

    def _gam(self, pt: _Point) -> np.ndarray:
        gam = np.ones_like(pt.nu)
        gam[:, self.lay.gbins] = pt.g
        return gam

    def gradient(self, y: np.ndarray, pt: _Point) -> tuple[np.ndarray, tuple]:
        """∇f = Σ_b (1 − r_b) x̃_b + P (y − a) and (r, γ) for :meth:`hessian`."""
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(self.counts > 0, self.counts / pt.nu, 0.0)
        if pt.jac is None:
            pt.jac = self.lay.jacobians(pt.ex)
        Ju, Jv = pt.jac[:2]
        gam = self._gam(pt)
        one_r = 1.0 - r
        g = (one_r[:, None, :] @ Ju)[:, 0] + ((one_r * gam)[:, None, :] @ Jv)[:, 0]
        return g + self.lay.prec * (y - self.aux_c), (r, gam)

    def hessian(self, pt: _Point, ratios: tuple, rows: np.ndarray | None) -> np.ndarray:
        """``(p, p, k)`` Hessians: Gauss–Newton + curvature terms minus the Schur correction."""
        lay = self.lay
        r, gam = ratios
        if pt.jac is None:
            pt.jac = lay.jacobians(pt.ex)
        nu, v, counts, g, jac, ex = pt.nu, pt.v, self.counts, pt.g, pt.jac, pt.ex
        if rows is not None:
            r, gam, nu, v, counts, g = (a[rows] for a in (r, gam, nu, v, counts, g))
            ex, jac = tuple(e[rows] for e in ex), tuple(j[rows] for j in jac)
        Ju, Jv = jac[:2]
        k = r.shape[0]
        gb = lay.gbins
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(counts > 0, r / nu, 0.0)
        one_r = 1.0 - r
        wg, vg = w[:, gb], v[:, gb]
        scale = np.sqrt(np.where(g > 0, 1.0 / (wg * vg * vg + 1.0 / lay.d2), 0.0))
        h = np.empty((lay.p, lay.p, k))
        for a in range(0, k, _CHUNK):
            sl = slice(a, a + _CHUNK)
            xt = Ju[sl] + gam[sl, :, None] * Jv[sl]
            hh = (xt * w[sl][:, :, None]).transpose(0, 2, 1) @ xt
            hh += lay.curvature(tuple(e[sl] for e in ex), tuple(j[sl] for j in jac), one_r[sl], one_r[sl] * gam[sl])
            cc = (wg[sl] * vg[sl])[:, :, None] * xt[:, gb] + one_r[sl][:, gb, None] * Jv[sl][:, gb]
            cc *= scale[sl][:, :, None]
            hh -= cc.transpose(0, 2, 1) @ cc
            h[:, :, sl] = np.moveaxis(hh, 0, -1)
        idx = np.arange(lay.p)
        h[idx, idx] += lay.prec[:, None]
        return h


def gamma_morph_problem(lay: GammaMorphLayout, counts: np.ndarray, aux: np.ndarray):
    """(nll, grad) of one toy over the free parameters, for Migrad (γ profiled)."""
    rows = GammaMorphRows(lay, counts[None, :], np.zeros((1, lay.p)), aux[None, lay.aux_gamma])
    nuis = lay.cols > 0
    rows.aux_c[0, nuis] = aux[lay.cols[nuis] - 1]

    def nll(y: np.ndarray) -> float:
        val = float(rows.nll(y[None, :], rows.point(y[None, :]))[0])
        return val if np.isfinite(val) else 1e300

    def grad(y: np.ndarray) -> np.ndarray:
        return rows.gradient(y[None, :], rows.point(y[None, :]))[0][0]

    return nll, grad


def gamma_morph_information(model: Any, lay: GammaMorphLayout, params: np.ndarray) -> np.ndarray:
    """Expected information of the profiled likelihood at full parameters ``params`` (γ = 1, the
    Asimov values): Σ_b x xᵀ/ν − Σ_{b∈Γ} c cᵀ/(v²/ν + 1/δ²) + P, c = v x/ν, x = ∂ν/∂y (the
    curvature terms have expectation 0, E[1 − n/ν] = 0)."""
    params = np.asarray(params, float)
    lay = lay if lay.mu_free else lay.at(float(params[0]))  # a fixed μ: the value of params
    y = params[lay.cols][None, :]
    u, v, ex = lay.parts(y)
    Ju, Jv = lay.jacobians(ex)[:2]
    X, u, v = (Ju + Jv)[0], u[0], v[0]
    nu = u + v
    pos = nu > 0
    info = (X[pos] / nu[pos, None]).T @ X[pos]
    gb = lay.gbins[pos[lay.gbins]]
    c = (v[gb] / nu[gb])[:, None] * X[gb]
    fgg = v[gb] ** 2 / nu[gb] + 1.0 / (model.mc_stat[gb] ** 2)
    info -= (c / fgg[:, None]).T @ c
    return info + np.diag(lay.prec)


def explicit_gamma_morph_fit(model: Any, counts: np.ndarray, aux: np.ndarray, mu_fixed: float | None = None,
                             mu_lower: float | None = 0.0, tol: float = 1e-9) -> tuple[float, np.ndarray]:
    """Reference fit with every γ_b an explicit Migrad parameter (≥ 0) and (μ, θ, α) explicit too:
    (NLL at the minimum, fitted ``[μ, θ, α, γ]``). ν from ``model.expected`` (u, v by
    :func:`lzflow.stats.mcstat.expected_parts`), its gradient from ``model.morph.jacobian``; independent of
    :class:`GammaMorphRows`. Slow; for tests."""
    from iminuit import Minuit

    from .fitresult import ALPHA_BOUND

    counts, aux = np.asarray(counts, float), np.asarray(aux, float)
    nb, K, S = model.n_bkg, model.n_shape, 1 + model.n_bkg
    cols = model.fit_columns(mu_fixed is None)
    p = cols.size
    delta = np.asarray(model.mc_stat, float)
    gb = np.flatnonzero(delta > 0)
    d2 = delta[gb] ** 2
    ag = aux[nb + K:]
    prec = model.constraint_precision
    a_full = np.r_[0.0, aux[: nb + K]]
    pos = counts > 0
    base = model.full_params(0.0 if mu_fixed is None else mu_fixed)

    def unpack(z):
        full = base.copy()
        full[cols] = z[:p]
        gam = np.ones(model.n_bins)
        gam[gb] = z[p:]
        u, v = expected_parts(model, full)
        return full, gam, u, v, u + gam * v

    def nll(z):
        full, _, _, _, nu = unpack(z)
        if np.any(pos & ~(nu > 0)):
            return 1e300
        return float(nu.sum() - counts[pos] @ np.log(nu[pos]) + 0.5 * (((z[p:] - ag) ** 2) / d2).sum()
                     + 0.5 * prec @ (full - a_full) ** 2)

    def grad(z):
        full, gam, _, v, nu = unpack(z)
        one_r = 1.0 - np.where(pos, counts / np.where(pos, nu, 1.0), 0.0)
        c, al = full[:S], full[S:]
        J = model.morph.jacobian(c, al)  # (S + K, bins): ∂ν/∂[μ, θ, α]
        Jv = model.morph.jacobian(np.r_[0.0, c[1:]], al)  # ∂v/∂[·]; row 0 (∂/∂μ) unused
        Jv[0] = 0.0
        xt = (J - Jv) + gam * Jv
        gy = xt @ one_r + prec * (full - a_full)
        return np.r_[gy[cols], (one_r * v)[gb] + (z[p:] - ag) / d2]

    z0 = np.r_[model.full_params(0.5 / max(model.signal_total, 1e-300), aux[: nb + K])[cols], np.clip(ag, 0.05, None)]
    if mu_fixed is None:
        z0[0] = max(0.5 / max(model.signal_total, 1e-300), 1e-3)
    th = (cols >= 1) & (cols <= nb)
    z0[:p][th] = np.clip(z0[:p][th], 0.05, None)
    z0[:p][cols > nb] = np.clip(z0[:p][cols > nb], -ALPHA_BOUND, ALPHA_BOUND)
    mn = Minuit(nll, z0, grad=grad)
    mn.errordef = Minuit.LIKELIHOOD
    mn.tol = tol
    mn.print_level = 0
    lim = [(mu_lower, None)] if mu_fixed is None else []
    lim += [(0.0, None)] * int(th.sum()) + [(-ALPHA_BOUND, ALPHA_BOUND)] * K + [(0.0, None)] * gb.size
    mn.limits = lim
    mn.strategy = 2
    mn.migrad()
    mn.migrad()
    z = np.array(mn.values)
    return nll(z), np.r_[unpack(z)[0], z[p:]]
