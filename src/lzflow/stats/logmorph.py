"""Shape nuisance parameters with multiplicative morphing: interpolation in ln T (positive templates).

The additive ``histosys`` morphing of :mod:`lzflow.stats.morphing` (pyhf code 4p) extrapolates
linearly outside ±1σ, so a sample's template goes negative where a variation removes events: at
10 GeV the NR light-yield template loses 39 % of the signal at α = −1, and the linear
extrapolation has no signal left at α ≈ −2.6 (a negative signal beyond). In bins with no event
a negative expectation *lowers* the Poisson NLL (−n ln ν + ν), so fits use it to hide a signal:
the quick analysis's 10 GeV toy median came out 2.8× its asymptotic one. ROOT's HistFactory clips
each sample at 0 (``PiecewiseInterpolation::setPositiveDefinite``), which leaves kinks a Newton
fitter stalls on. This module interpolates ln T instead: smooth, and every template stays > 0
wherever the nominal is, for every α.

Per sample s, bin i and systematic k, with T the nominal template and r_a = T(α = a)/T the
relative variations at the anchors a, ln T is a sum over the systematics of M basis functions of
α_k with per-bin coefficients::

    T_si(α) = T_si · exp( Σ_k Σ_m B_m(α_k) C_mksi )

* ``log_quartic``: the quartic in α through
  ln r at all four computed anchors α = −2, −1, +1, +2 (and 0 at α = 0): B_m(α) = α^m,
  m = 1..4, C = V⁻¹ ln r with V_am = a^m; beyond ±2σ ln T continues linearly with the quartic's
  slope at ±2 (exponential extrapolation, C¹). Exact at every template the response stage made.
* ``log_pchip`` (the choice of ``config/overlays/systematics.yaml``): per bin the piecewise cubic
  Hermite interpolant of ln T through the five knots α = −2, −1, 0, +1, +2 (ln r_a, and 0 at 0),
  exact at every template. The slopes at −1, 0, +1 are the Fritsch–Carlson (PCHIP) ones of
  :func:`pchip_slopes` (those of :class:`scipy.interpolate.PchipInterpolator`; 0 where a bin's
  anchors change direction, no overshoot between −1 and +1). The slopes at the end knots ±2 are
  the sample's *normalisation* response, ±½ ln r̄_{±2} with r̄_a = Σ_i T^(a)_si / Σ_i T_si over the
  sample's well-measured bins (below), and beyond ±2σ ln T continues linearly with them (C¹)::

      T_si(α) = T_si(±2) · r̄_{s,±2}^{(|α| − 2)/2}     (|α| ≥ 2)

  No template was computed beyond ±2σ, so no bin's *shape* response is measured there: the shape
  is frozen at the outermost template and the sample's total follows HistFactory's exponential
  extrapolation of its measured ±2σ normalisation, Σ_i T_si(α) = Σ_i T_si · r̄_{s,±2}^{|α|/2}
  (codes 1/4 of ``PiecewiseInterpolation``, with the ±2σ knot). So every bin's growth beyond ±2σ
  is bounded by measured quantities, T_si(α)/T_si(±2) = r̄^{(|α|−2)/2}: at most 2.88^{1.5} = 4.9
  at |α| = 3 on the default 40 GeV workspace (its B8 sample gains 2.88× at α(nr_light) = +2:
  CEvNS events cross the S1 threshold). Between ±1 and ±2 the cubic may overshoot its knots by at
  most (4/27)(|d_±1| + |d_±2|) in ln T (the extrema of the Hermite slope functions). B = (the
  Hermite value functions of the knots −2, −1, +1, +2; the slope functions of the knots −2 … +2),
  M = 9; C = (ln r_a; the knot slopes). Its curvature jumps at the knots, and its slope is 0 at
  every interior knot where a bin's anchors change direction (sparse, noisy bins): the NLL gets
  shallow local minima near the knots.
* ``log_code4p``: code 4p (:func:`lzflow.stats.morphing.code4p`) on ln T through the ±1σ anchors
  only: B = (α, f(α)), C = (SL, AL) with SL = (ln r₊₁ − ln r₋₁)/2, AL = (ln r₊₁ + ln r₋₁)/2;
  ln T is C², (r_{±1})^{|α|} outside ±1σ — HistFactory's multiplicative codes 1/5 of
  ``PiecewiseInterpolation`` (Cranmer et al., CERN-OPEN-2012-016) agree with it at α = 0, ±1 and
  outside ±1σ; inside, its polynomial acts on ln T, not on T as ROOT's code 5 does.

The factors of several systematics multiply (as with ROOT's multiplicative codes). Against the
real ±2σ templates of the quick analysis, log_code4p's exponential extrapolation overshoots where
events migrate into a bin (additive in truth): the 40 GeV signal at α(nr_charge) = −2 is 4902
events against the template's 3704, code 4p's linear extrapolation 3735; log_quartic is exact there
by construction (docs/method.md, "Interpolation"). pyhf can express neither (its ``histosys`` codes
are additive), so these workspaces are not exported to pyhf.

MC-empty variations (issue 12). A varied template that is exactly 0 in a bin the nominal fills
(the few common-random-number events of that bin all leave at that shift,
:func:`lzflow.pdfs.varied_template`) is an MC-statistics artefact, not a measured ×0 response:
the CRN sample (``n_samples_fraction`` of the nominal's) has no event left there to measure the
ratio with, its one-event resolution is coarser than the effect. Such a sample-bin carries no
shape information at *any* knot (its filled anchors rest on the same handful of events, and a
lone empty knot between filled ones is what made the steep secants), so, as HistFactory analyses
prune shape effects below MC precision to their normalisation part, the bin takes at every anchor
a the ratio of its coarsest neighbourhood, the sample's well-measured bins (every anchor filled):
r̄_sa = Σ_good T^(a)_si / Σ_good T_si (:func:`log_ratios`). The morphed sample total at each
anchor is then r̄_sa Σ_i T_si exactly; every other bin reproduces its templates exactly. The
number of such sample-bins is reported (:attr:`LogMorphBasis.floored`, the workspace's
``shape_ratio_floored``). This replaces a floor of the ratio at 10⁻³ (until issue 12), which made
secants of ln 10³ per σ next to a filled knot: one α at 3σ multiplied the default 40 GeV
workspace's expected events (median signal) by 159 with log_pchip and 4e11 with log_quartic; now
by 1.06 with log_pchip (1.10 at 5σ) and 451 with log_quartic (whose quartic slope at ±2 follows
the noisy knots of bins that *are* filled). The rule needs only the templates: bins that are
filled but rest on one or two MC events (ratios up to 10⁸ where the nominal holds 10⁻²⁰ events)
are kept as measured; telling them apart needs per-bin MC counts, which the varied templates do
not carry. A variation that fills a bin the nominal leaves empty cannot be a factor and is
refused (the varied templates never do that).

Expected counts, as in :mod:`lzflow.stats.morphing`: ν(μ, θ, α) = μ T_0(α) + Σ_b θ_b T_b(α), here
with the rate θ_b multiplying the morphed template (HistFactory's product of modifiers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .morphing import ShapeSystematic, code4p

__all__ = ["LOG_INTERPOLATIONS", "LogMorphBasis", "basis_functions", "pchip_slopes"]

#: the multiplicative morphings of this module and their number of basis functions M
LOG_INTERPOLATIONS = {"log_quartic": 4, "log_code4p": 2, "log_pchip": 9}

_QUARTIC_ANCHORS = np.array([-2.0, -1.0, 1.0, 2.0])
#: V⁻¹ of the quartic through the anchors: C_m = Σ_a _QUARTIC_INV[m, a] ln r_a
_QUARTIC_INV = np.linalg.inv(_QUARTIC_ANCHORS[:, None] ** np.arange(1, 5)[None, :])


#: the knots of log_pchip (unit spacing); ln T = 0 at α = 0, so that knot's value has no basis function
_PCHIP_KNOTS = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
_PCHIP_VALUE_KNOTS = [0, 1, 3, 4]


def pchip_slopes(y: np.ndarray) -> np.ndarray:
    """Fritsch–Carlson (PCHIP) slopes ``(5, ...)`` of the values ``y`` ``(5, ...)`` at the unit-spaced
    knots α = −2 … +2, as :class:`scipy.interpolate.PchipInterpolator` (Fritsch & Carlson, SIAM J.
    Numer. Anal. 17 (1980) 238; Moler, *Numerical Computing with MATLAB* §3.6): with the secants
    m_j = y_{j+1} − y_j, an interior slope is 0 where m_{j−1} m_j ≤ 0, else the harmonic mean
    2 / (1/m_{j−1} + 1/m_j); an end slope is the three-point d = (3 m_0 − m_1)/2, set to 0 if its
    sign differs from m_0's and to 3 m_0 if m_0, m_1 differ in sign and |d| > 3 |m_0|. So
    |d_j| ≤ 2 min(|m_{j−1}|, |m_j|) inside and |d_end| ≤ 3 |m_end|: the interpolant is monotone
    between knots where the data are, and its linear continuation beyond ±2σ no steeper than 3
    end secants."""
    y = np.asarray(y, dtype=np.float64)
    m = np.diff(y, axis=0)
    sm = np.sign(m)
    d = np.zeros_like(y)
    same = (sm[1:] == sm[:-1]) & (m[1:] != 0) & (m[:-1] != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d[1:-1] = np.where(same, 2.0 / (1.0 / np.where(same, m[:-1], 1.0) + 1.0 / np.where(same, m[1:], 1.0)), 0.0)
    for end, m0, m1 in ((0, m[0], m[1]), (-1, m[-1], m[-2])):
        e = (3.0 * m0 - m1) / 2.0
        e = np.where(np.sign(e) != np.sign(m0), 0.0,
                     np.where((np.sign(m0) != np.sign(m1)) & (np.abs(e) > 3.0 * np.abs(m0)), 3.0 * m0, e))
        d[end] = e
    return d


#: log_pchip's basis columns that can be non-zero in each interval j (α ∈ [j − 2, j − 1], clipped to
#: ±2σ): the values of knots j, j+1 and the slopes of knots j, j+1; knot 0's value has no column,
#: so column 4 stands in for it with weight 0 (:data:`_PCHIP_MASK`)
_PCHIP_ACTIVE = np.array([[0, 1, 4, 5], [1, 4, 5, 6], [4, 2, 6, 7], [2, 3, 7, 8]])
_PCHIP_MASK = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])


def _pchip_interval(x: np.ndarray) -> np.ndarray:
    """Index 0 … 3 of the knot interval holding ``x`` (clipped to ±2; NaN: 0)."""
    return np.clip(np.floor(np.where(np.isnan(x), 0.0, x) + 2.0), 0, 3).astype(np.int64)


def active_basis(alpha: np.ndarray, interpolation: str) -> tuple[np.ndarray, np.ndarray] | None:
    """For ``log_pchip``: ``(columns, mask)`` ``(..., K, 4)`` — the only basis columns that can be
    non-zero at ``alpha`` (B, B' and B'' vanish elsewhere) and 0 for a stand-in column; ``None``
    for the other morphings (every column is used)."""
    if interpolation != "log_pchip":
        return None
    j = _pchip_interval(np.clip(np.asarray(alpha, dtype=np.float64), -2.0, 2.0))
    return _PCHIP_ACTIVE[j], _PCHIP_MASK[j]


def _pchip_basis(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log_pchip's ``(B, B', B'')`` ``(..., 9)``: the cubic Hermite basis of the interval holding α
    (t = α − α_j ∈ [0, 1]: h00 = 2t³ − 3t² + 1, h10 = t³ − 2t² + t, h01 = −2t³ + 3t², h11 = t³ − t²)
    for the values at α = −2, −1, +1, +2 (columns 0–3) and the slopes at −2 … +2 (columns 4–8);
    beyond ±2σ the value of the end knot plus its slope times (α ∓ 2)."""
    x = np.clip(a, -2.0, 2.0)
    j = _pchip_interval(x)
    t = x + 2.0 - j
    t2, t3 = t * t, t * t * t
    h = np.stack([2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t, -2 * t3 + 3 * t2, t3 - t2], axis=-1)
    h1 = np.stack([6 * t2 - 6 * t, 3 * t2 - 4 * t + 1, -6 * t2 + 6 * t, 3 * t2 - 2 * t], axis=-1)
    h2 = np.stack([12 * t - 6, 6 * t - 4, -12 * t + 6, 6 * t - 2], axis=-1)
    beyond = a - x  # 0 inside ±2σ
    knots = np.arange(5)
    left, right = (j[..., None] == knots), (j[..., None] + 1 == knots)  # one-hot (..., 5)
    end = np.where(a > 0, 4, 0)[..., None] == knots
    inside = (np.abs(a) <= 2.0)[..., None]
    out = []
    for hh, order in ((h, 0), (h1, 1), (h2, 2)):
        vals = left * hh[..., :1] + right * hh[..., 2:3]
        slopes = left * hh[..., 1:2] + right * hh[..., 3:4]
        if order == 0:  # linear continuation with the end slope
            slopes = slopes + end * beyond[..., None]
        elif order == 1:  # outside: d/dα is the end slope's coefficient 1 (the Hermite h' there give just that)
            vals, slopes = np.where(inside, vals, 0.0), np.where(inside, slopes, end * 1.0)
        else:
            vals, slopes = np.where(inside, vals, 0.0), np.where(inside, slopes, 0.0)
        out.append(np.concatenate([vals[..., _PCHIP_VALUE_KNOTS], slopes], axis=-1) + (0.0 * a)[..., None])  # NaN α: NaN
    return out[0], out[1], out[2]


def basis_functions(alpha: np.ndarray, interpolation: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(B, B', B'')`` ``(..., K, M)`` of the basis functions at ``alpha`` ``(..., K)`` (module docstring)."""
    a = np.asarray(alpha, dtype=np.float64)
    if interpolation == "log_pchip":
        return _pchip_basis(a)
    if interpolation == "log_code4p":
        f, f1, f2 = code4p(a)
        return (np.stack([a, f], axis=-1), np.stack([np.ones_like(a), f1], axis=-1),
                np.stack([np.zeros_like(a), f2], axis=-1))
    m = np.arange(1, 5, dtype=np.float64)
    inside = (np.abs(a) <= 2.0)[..., None]
    x = np.clip(a, -2.0, 2.0)[..., None]  # the anchor ±2 outside
    xm1 = x ** (m - 1)
    d1 = m * xm1
    d2 = m * (m - 1) * np.where(m >= 2, x ** np.maximum(m - 2, 0), 0.0)
    val = x * xm1 + np.where(inside, 0.0, d1 * (a[..., None] - x))
    return val, d1, np.where(inside, d2, 0.0)


def log_ratios(nominal: np.ndarray, anchors: Mapping[str, np.ndarray], name: str, segments: Sequence[int] = ()
               ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """``ln(varied/nominal)`` ``(S, n_bins)`` per anchor label (0 where the nominal is 0), with the
    MC-empty rule of the module docstring: a sample-bin the nominal fills where *any* anchor's
    varied template is empty takes, at every anchor a, the ratio r̄_sa = Σ_good T^(a)_s / Σ_good T_s
    of its sample's well-measured bins (those with every anchor filled) in the same block of bins
    (``segments``: boundaries ``(0, …, n_bins)``, the runs of a combined model, each with its own
    templates; empty = one block). Returns ``(logs, pruned, ln r̄)``: ``pruned`` ``(S, n_bins)`` marks
    the sample-bins on that rule, ``ln r̄`` ``{label: (S, n_bins)}`` (each bin its block's value).
    A variation filling an empty nominal bin is refused, and so is a sample whose well-measured bins
    in a block are all empty at an anchor while that block needs the ratio."""
    filled = nominal > 0
    for label, varied in anchors.items():
        bad = ~filled & (varied > 0)
        if bad.any():
            s, i = (int(v[0]) for v in np.nonzero(bad))
            raise ValueError(f"shape systematic {name!r}: its {label} template has {varied[s, i]:.3g} events in bin {i} "
                             f"of sample {s}, where the nominal is empty; expected no support outside the nominal's "
                             f"for a multiplicative (log) interpolation")
    pruned = filled & np.any([~(v > 0) for v in anchors.values()], axis=0)
    good = filled & ~pruned
    bounds = tuple(segments) or (0, nominal.shape[-1])
    logs, log_rbar = {}, {}
    for label, varied in anchors.items():
        ratio = np.divide(varied, nominal, out=np.ones_like(nominal), where=good)
        lr = np.zeros_like(nominal)
        for a, b in zip(bounds, bounds[1:]):
            g = good[:, a:b]
            norm = np.where(g, nominal[:, a:b], 0.0).sum(axis=-1)
            num = np.where(g, varied[:, a:b], 0.0).sum(axis=-1)
            need = pruned[:, a:b].any(axis=-1)
            if np.any(need & ~(num > 0)):
                s = int(np.flatnonzero(need & ~(num > 0))[0])
                raise ValueError(f"shape systematic {name!r}: its {label} template of sample {s} is empty in every bin "
                                 f"whose variations are all filled; expected events there to estimate the ratio of "
                                 f"its {int(pruned[s, a:b].sum())} MC-empty bins")
            rbar = np.divide(num, norm, out=np.ones_like(num), where=(num > 0) & (norm > 0))
            lr[:, a:b] = np.log(rbar)[:, None]
        logs[label] = np.where(pruned, lr, np.log(ratio))
        log_rbar[label] = lr
    return logs, pruned, log_rbar


class LogMorphBasis:
    """The multiplicative morphing of ``nominal`` ``(S, n_bins)`` templates ([signal, *backgrounds])
    by ``systematics`` with ``interpolation`` (module docstring); the interface of
    :class:`lzflow.stats.morphing.MorphBasis` (``templates``, ``expected``, ``jacobian``).

    ``C``: ``(M, K, S, n_bins)`` coefficients; ``floored``: ``{name: MC-empty sample-bins on their sample's ratio}`` (module docstring)."""

    def __init__(self, nominal: np.ndarray, systematics: Sequence[ShapeSystematic], interpolation: str):
        if interpolation not in LOG_INTERPOLATIONS:
            raise ValueError(f"interpolation {interpolation!r} is not one of {', '.join(LOG_INTERPOLATIONS)}")
        T = np.asarray(nominal, dtype=np.float64)
        self.T, self.interpolation = T, interpolation
        self.S, self.n_bins = T.shape
        self.K, self.M = len(systematics), LOG_INTERPOLATIONS[interpolation]
        self.C = np.zeros((self.M, self.K) + T.shape)
        self.floored: dict[str, int] = {}
        for k, sy in enumerate(systematics):
            if interpolation != "log_code4p" and not sy.has_2sigma:
                raise ValueError(f"shape systematic {sy.name!r} has no ±2 sigma templates; expected them for the "
                                 f"{interpolation} interpolation (or use log_code4p)")
            anchors = {"+1 sigma": sy.up, "-1 sigma": sy.down}
            if interpolation != "log_code4p":
                anchors = {"-2 sigma": sy.down2, "-1 sigma": sy.down, "+1 sigma": sy.up, "+2 sigma": sy.up2}
            logs, pruned, log_rbar = log_ratios(T, anchors, sy.name, sy.segments)
            self.floored[sy.name] = int(pruned.sum())
            if interpolation == "log_code4p":
                self.C[0, k] = 0.5 * (logs["+1 sigma"] - logs["-1 sigma"])
                self.C[1, k] = 0.5 * (logs["+1 sigma"] + logs["-1 sigma"])
            elif interpolation == "log_pchip":
                y = np.stack([logs["-2 sigma"], logs["-1 sigma"], np.zeros_like(T), logs["+1 sigma"], logs["+2 sigma"]])
                self.C[:4, k] = y[_PCHIP_VALUE_KNOTS]
                self.C[4:, k] = pchip_slopes(y)
                # the end slopes: the sample's normalisation response beyond ±2σ (module docstring)
                self.C[4, k] = np.where(T > 0, -0.5 * log_rbar["-2 sigma"], 0.0)
                self.C[8, k] = np.where(T > 0, 0.5 * log_rbar["+2 sigma"], 0.0)
            else:
                y = np.stack([logs[label] for label in anchors])  # (4 anchors, S, n)
                self.C[:, k] = np.tensordot(_QUARTIC_INV, y, axes=1)

    def basis(self, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`basis_functions` of this morphing."""
        return basis_functions(alpha, self.interpolation)

    def log_factors(self, alpha: np.ndarray) -> np.ndarray:
        """``Σ_k Σ_m B_m(α_k) C_mk`` ``(..., S, n_bins)`` at ``alpha`` ``(..., K)``."""
        return np.einsum("...km,mksi->...si", self.basis(alpha)[0], self.C)

    def templates(self, alpha: np.ndarray) -> np.ndarray:
        """Morphed templates T_s(α) ``(..., S, n_bins)`` at ``alpha`` ``(..., K)``."""
        return self.T * np.exp(self.log_factors(alpha))

    def expected(self, c: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """ν ``(..., n_bins)`` = Σ_s c_s T_s(α) for sample coefficients ``c`` = [μ, θ] ``(..., S)``."""
        c = np.asarray(c, dtype=np.float64)
        return np.einsum("...s,...si->...i", c, self.templates(alpha))

    def jacobian(self, c: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """``(S + K, n_bins)`` derivatives of ν w.r.t. [μ, θ_b (S); α_k (K)] at one point:
        ∂ν/∂c_s = T_s(α), ∂ν/∂α_k = Σ_s c_s T_s(α) D_ks with D_k = Σ_m B'_m(α_k) C_mk."""
        c = np.asarray(c, dtype=np.float64)
        U = self.templates(alpha)
        D = np.einsum("km,mksi->ksi", self.basis(alpha)[1], self.C)
        return np.concatenate([U, np.einsum("s,si,ksi->ki", c, U, D)])
