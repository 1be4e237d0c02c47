"""Binned extended likelihood with Gaussian-constrained background normalisations.

Model
-----
For bins ``i`` (the 2D analysis space flattened in C order, last axis fastest) and
backgrounds ``b``::

    ν_i(μ, θ) = μ s_i + Σ_b θ_b B_bi

* ``s``   — signal template, expected events at the reference cross section (μ = 1), so μ is a
  cross-section multiplier;
* ``B_b`` — background templates, expected events at nominal normalisation;
* ``θ_b`` — background normalisation **multipliers** (nominal 1). An expected count is
  ``θ_b × B_b.sum()``.

Likelihood (arXiv:1007.1727, Eq. 2 with Gaussian auxiliary measurements)::

    L(μ, θ) = Π_i Pois(n_i | ν_i) × Π_b Gauss(a_b | θ_b, r_b)

with ``r_b = rel_unc_b`` the relative width, i.e. on the count scale the constraint is
Gauss(a_b N_b | θ_b N_b, r_b N_b) with ``N_b`` the nominal count (pp: N = 542.16, r = 2 % →
σ = 10.8 events). The auxiliary ("global") observables ``a_b`` are stored on the multiplier scale
(nominal value 1).

Negative log-likelihood used everywhere in :mod:`lzflow.stats` (constants ``ln n_i!`` and the
Gaussian normalisation dropped, identically in every fit)::

    NLL(μ, θ; n, a) = Σ_i [ν_i − n_i ln ν_i] + Σ_{b: r_b>0} (a_b − θ_b)² / (2 r_b²)

with the convention ``0 · ln 0 = 0`` (bins with ν_i = n_i = 0 contribute 0); a bin with
``n_i > 0`` and ``ν_i ≤ 0`` makes the NLL ``+inf``.

Fixed backgrounds
-----------------
``rel_unc_b == 0`` means the normalisation is *fixed* at nominal (θ_b ≡ 1): the parameter is
removed from every fit (conditional and unconditional alike), so the number of free parameters
differs only by μ between the two fits. It has no constraint term and no auxiliary observable.

Parameter vector
----------------
Full parameter vectors are laid out as ``[μ, θ_1, …, θ_B]`` (length ``1 + n_bkg``); fixed
backgrounds sit at 1.0. Bounds: μ ≥ 0 (unless a fit asks otherwise), θ_b ≥ 0.

Shape nuisance parameters
-------------------------
With ``shape_systematics`` (K :class:`~lzflow.stats.morphing.ShapeSystematic` objects, templates
of every sample at α_k = ±1) the parameter vector is ``[μ, θ_1..θ_B, α_1..α_K]`` and::

    ν_i(μ, θ, α) = μ s_i(α) + Σ_b [θ_b B_bi + Σ_k Δ_kbi(α_k)],    B_b(α) = B_b + Σ_k Δ_kb(α_k)
    NLL = Σ_i [ν_i − n_i ln ν_i] + Σ_{b: r_b>0} (a_b − θ_b)²/(2 r_b²) + Σ_k (a_k − α_k)²/2

with the templates morphed per bin and sample by pyhf's ``histosys`` interpolation code 4p
(:mod:`lzflow.stats.morphing`) — μ multiplies the morphed signal, a background's rate θ_b its
nominal template while its shape variations add, as in HistFactory/pyhf with lzflow's linear rate
``histosys`` (the exported pyhf workspace is this model exactly; θ_b B_b(α) would differ by
(θ_b − 1) Δ_kb, second order) — a unit Gaussian constraint on each α_k (nominal 0) whose
auxiliary observable a_k (nominal 0) follows the θ ones: ``aux = [a_θ (n_bkg), a_α (K)]``. Every α
is fitted, in the conditional and the unconditional fits alike, and is unbounded (the line search
keeps ν_i > 0 where n_i > 0). Methods taking ``theta`` accept the nuisance vector ``[θ, α]``
(``n_bkg + K``) or ``θ`` alone (then α = 0). With ``shape_systematics=()`` (the default) the
model and every number computed from it are exactly those of the rate-only model.

``interpolation`` chooses the morphing: ``"code4p"`` (additive, above; pyhf's ``histosys``,
exported exactly, but linear outside ±1σ, so a template can go negative), or a multiplicative one
of :mod:`lzflow.stats.logmorph` — ``"log_quartic"`` (ln T through the ±1σ and ±2σ templates) or
``"log_code4p"`` (code 4p on ln T) or ``"log_pchip"`` (shape-preserving cubic in ln T through the
±1σ and ±2σ templates) — with every template > 0 where the nominal is and
ν = μ s(α) + Σ_b θ_b B_b(α), the rate multiplying the morphed template.

Template MC statistics
----------------------
With ``mc_stat`` (``(n_bins,)`` relative MC errors δ_b of the total background, 0 = no parameter)
each bin with δ_b > 0 gets a Barlow–Beeston-lite multiplier γ_b of the total background with a
Gaussian constraint of width δ_b, **profiled analytically** (:mod:`lzflow.stats.mcstat`): the
parameter vector stays ``[μ, θ]``, the auxiliary vector grows to ``[a_θ (n_bkg), a_γ (G)]`` (nominal
1), and every NLL of the model is the one with γ at γ̂(μ, θ). ``mc_stat=None`` (the default) is
exactly the model above. With shape systematics γ_b scales the background part ν(0, θ, α) of its
bin (:mod:`lzflow.stats.mcstat_morph`), the auxiliary vector is ``[a_θ, a_α, a_γ]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .morphing import MorphBasis, ShapeSystematic

__all__ = ["BinnedModel", "ModelError", "ShapeSystematic", "INTERPOLATIONS"]

#: shape-morphing choices (module docstring): additive pyhf code 4p, or multiplicative on ln T
INTERPOLATIONS = ("code4p", "log_quartic", "log_code4p", "log_pchip")


class ModelError(ValueError):
    """The model's arrays are inconsistent or unphysical."""


def _as_readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class BinnedModel:
    """Signal + backgrounds binned model (see the module docstring for the maths).

    Parameters
    ----------
    signal:
        ``(n_bins,)`` expected signal events at μ = 1.
    backgrounds:
        ``(n_bkg, n_bins)`` expected background events at nominal normalisation.
    names:
        ``n_bkg`` background names (unique).
    rel_unc:
        ``(n_bkg,)`` relative Gaussian constraint widths; 0 ⇒ normalisation fixed.
    signal_name:
        Name of the signal sample (used in exports only).
    shape_systematics:
        Shape nuisance parameters (module docstring, "Shape nuisance parameters"); default none.
    interpolation:
        Their morphing, ``"code4p"`` (additive, the default) or ``"log_code4p"`` (multiplicative).

    Multi-dimensional templates are accepted and flattened in C order (``ravel()``, last axis
    fastest); ``bin_shape`` keeps the original shape.
    """

    signal: np.ndarray
    backgrounds: np.ndarray
    names: tuple[str, ...]
    rel_unc: np.ndarray
    signal_name: str = "signal"
    bin_shape: tuple[int, ...] = field(default=())
    shape_systematics: tuple[ShapeSystematic, ...] = ()
    interpolation: str = "code4p"
    mc_stat: np.ndarray | None = None

    def __post_init__(self) -> None:
        sig = np.asarray(self.signal, dtype=np.float64)
        bkg = np.asarray(self.backgrounds, dtype=np.float64)
        shape = tuple(self.bin_shape) or sig.shape
        if sig.ndim == 0:
            raise ModelError("signal must be an array of bins, got a scalar")
        if bkg.ndim == sig.ndim:  # a single background given without the leading axis
            bkg = bkg[None, ...]
        if bkg.ndim != sig.ndim + 1 or bkg.shape[1:] != sig.shape:
            raise ModelError(
                f"backgrounds must have shape (n_bkg, *signal.shape) = (n_bkg, {sig.shape}), "
                f"got {bkg.shape}"
            )
        sig = sig.ravel()
        bkg = bkg.reshape(bkg.shape[0], -1)
        names = tuple(str(n) for n in self.names)
        rel = np.atleast_1d(np.asarray(self.rel_unc, dtype=np.float64))
        n_bkg = bkg.shape[0]
        if sig.size == 0:
            raise ModelError("the model has no bins")
        if n_bkg == 0:
            raise ModelError("the model needs at least one background")
        if len(names) != n_bkg:
            raise ModelError(f"{len(names)} background names for {n_bkg} background templates")
        if len(set(names)) != n_bkg:
            raise ModelError(f"background names must be unique, got {names}")
        if self.signal_name in names or self.signal_name == "mu":
            raise ModelError(f"signal name {self.signal_name!r} clashes with a background name")
        if rel.shape != (n_bkg,):
            raise ModelError(f"rel_unc must have shape ({n_bkg},), got {rel.shape}")
        for label, arr in (("signal", sig), ("backgrounds", bkg), ("rel_unc", rel)):
            if not np.all(np.isfinite(arr)):
                raise ModelError(f"{label} contains NaN or infinite values")
            if np.any(arr < 0):
                raise ModelError(f"{label} contains negative values (min {arr.min():.3g})")
        if int(np.prod(shape)) != sig.size:
            raise ModelError(f"bin_shape {shape} does not match {sig.size} bins")
        object.__setattr__(self, "signal", _as_readonly(sig))
        object.__setattr__(self, "backgrounds", _as_readonly(bkg))
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "rel_unc", _as_readonly(rel))
        object.__setattr__(self, "bin_shape", shape)
        object.__setattr__(self, "shape_systematics", self._check_systematics(sig, bkg, names))
        if self.mc_stat is not None:
            object.__setattr__(self, "mc_stat", self._check_mc_stat(bkg))

    def _check_mc_stat(self, bkg: np.ndarray) -> np.ndarray:
        d = np.asarray(self.mc_stat, dtype=np.float64).ravel()
        if d.shape != (bkg.shape[1],):
            raise ModelError(f"mc_stat must have one relative error per bin ({bkg.shape[1]}), got shape {d.shape}")
        if not np.all(np.isfinite(d)) or np.any(d < 0):
            raise ModelError("mc_stat must be finite and >= 0 (relative MC error of each bin)")
        if np.any((d > 0) & ~(bkg.sum(axis=0) > 0)):
            raise ModelError("mc_stat > 0 in a bin without background: a γ there scales nothing")
        return _as_readonly(d)

    def _check_systematics(self, sig: np.ndarray, bkg: np.ndarray, names: tuple[str, ...]) -> tuple:
        systs = tuple(self.shape_systematics or ())
        if not systs:
            return ()
        want = (1 + bkg.shape[0], sig.size)
        seen: set[str] = set()
        for sy in systs:
            if not isinstance(sy, ShapeSystematic):
                raise ModelError(f"shape_systematics must be ShapeSystematic objects, got {type(sy).__name__}")
            if sy.up.shape != want:
                raise ModelError(f"shape systematic {sy.name!r}: templates have shape {sy.up.shape}, "
                                 f"the model needs (1 + n_bkg, n_bins) = {want}")
            if sy.name in seen:
                raise ModelError(f"shape systematic names must be unique, {sy.name!r} repeats")
            if sy.parameter in names or sy.parameter in (self.signal_name, "mu"):
                raise ModelError(f"shape parameter {sy.parameter!r} clashes with a sample name")
            seen.add(sy.name)
        if self.interpolation not in INTERPOLATIONS:
            raise ModelError(f"interpolation {self.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")
        nominal = np.vstack([sig[None, :], bkg])
        if self.interpolation != "code4p":
            from .logmorph import LogMorphBasis

            try:
                basis = LogMorphBasis(nominal, systs, self.interpolation)
            except ValueError as exc:
                raise ModelError(str(exc)) from None
        else:
            basis = MorphBasis(nominal, systs)
        object.__setattr__(self, "_morph", basis)
        return systs

    # ------------------------------------------------------------------ properties
    @property
    def n_bins(self) -> int:
        return int(self.signal.size)

    @property
    def n_bkg(self) -> int:
        return int(self.backgrounds.shape[0])

    @property
    def n_shape(self) -> int:
        """K, the number of shape nuisance parameters α."""
        return len(self.shape_systematics)

    @property
    def shape_parameters(self) -> tuple[str, ...]:
        """``alpha_<name>`` of each shape systematic."""
        return tuple(s.parameter for s in self.shape_systematics)

    @property
    def morph(self) -> MorphBasis:
        """The morphing basis (:class:`~lzflow.stats.morphing.MorphBasis`, or
        :class:`~lzflow.stats.logmorph.LogMorphBasis` for ``log_code4p``; only with K > 0)."""
        if not self.n_shape:
            raise ModelError("the model has no shape systematics")
        return self.__dict__["_morph"]

    @property
    def n_gamma(self) -> int:
        """G, the number of bins with a template-statistics γ (``mc_stat`` > 0)."""
        return 0 if self.mc_stat is None else int(np.count_nonzero(self.mc_stat))

    @property
    def n_aux(self) -> int:
        """Length of an auxiliary-observable vector ``[a_θ (n_bkg), a_α (K), a_γ (G)]``."""
        return self.n_bkg + self.n_shape + self.n_gamma

    @property
    def n_par(self) -> int:
        """Length of the full parameter vector ``[μ, θ_1..θ_B, α_1..α_K]``."""
        return 1 + self.n_bkg + self.n_shape

    @property
    def par_names(self) -> tuple[str, ...]:
        return ("mu",) + self.names + self.shape_parameters

    @property
    def constrained(self) -> np.ndarray:
        """Boolean mask of backgrounds whose normalisation floats (``rel_unc > 0``)."""
        return self.rel_unc > 0

    @property
    def free_bkg(self) -> np.ndarray:
        """Indices of the floating backgrounds."""
        return np.flatnonzero(self.constrained)

    @property
    def n_free_bkg(self) -> int:
        return int(self.constrained.sum())

    def fit_columns(self, mu_free: bool) -> np.ndarray:
        """Indices into the full parameter vector of the fitted parameters: μ (if free), then the
        floating backgrounds, then every α."""
        bkg = (1 + self.free_bkg).astype(int)
        if self.n_shape:
            bkg = np.r_[bkg, 1 + self.n_bkg + np.arange(self.n_shape)].astype(int)
        return np.r_[0, bkg].astype(int) if mu_free else bkg

    @property
    def constraint_precision(self) -> np.ndarray:
        """``(n_par,)`` precisions ``1/r_b²`` of the constraint terms on the full parameter vector
        (0 for μ and for fixed backgrounds; 1 for each α)."""
        rel = self.rel_unc
        prec = np.r_[0.0, np.where(rel > 0, 1.0 / np.where(rel > 0, rel, 1.0) ** 2, 0.0)]
        return np.r_[prec, np.ones(self.n_shape)] if self.n_shape else prec

    @property
    def signal_is_empty(self) -> bool:
        """True when the signal template has no positive bin: there is no sensitivity to μ."""
        return not bool(np.any(self.signal > 0))

    @property
    def signal_total(self) -> float:
        return float(self.signal.sum())

    @property
    def nominal_counts(self) -> np.ndarray:
        """``(n_bkg,)`` nominal expected counts ``N_b``."""
        return self.backgrounds.sum(axis=1)

    @property
    def sigma_counts(self) -> np.ndarray:
        """``(n_bkg,)`` constraint widths on the count scale, ``r_b N_b``."""
        return self.rel_unc * self.nominal_counts

    def nominal_theta(self) -> np.ndarray:
        return np.ones(self.n_bkg)

    def nominal_nuisance(self) -> np.ndarray:
        """``[θ = 1 (n_bkg), α = 0 (K)]``, also the nominal auxiliary observables."""
        return np.r_[np.ones(self.n_bkg), np.zeros(self.n_shape)]

    def _nuisance(self, theta: np.ndarray | None) -> np.ndarray:
        """``[θ, α]`` from ``theta`` given as ``[θ, α]`` or ``θ`` alone (α = 0)."""
        if theta is None:
            return self.nominal_nuisance()
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape[-1] in (self.n_aux, self.n_bkg + self.n_shape):  # [θ, α(, a_γ)]: γ aux dropped
            return theta[..., : self.n_bkg + self.n_shape]
        if theta.shape[-1] != self.n_bkg:
            raise ModelError(f"nuisance vectors have length n_bkg or n_bkg + K = {self.n_bkg} or "
                             f"{self.n_bkg + self.n_shape}, got {theta.shape[-1]}")
        out = np.zeros(theta.shape[:-1] + (self.n_bkg + self.n_shape,))
        out[..., : self.n_bkg] = theta
        return out

    # ------------------------------------------------------------------ maths
    def expected(self, mu: float | np.ndarray, theta: np.ndarray | None = None) -> np.ndarray:
        """ν = μ s(α) + Σ_b θ_b B_b(α); broadcasts over leading axes of ``mu``/``theta``."""
        mu = np.asarray(mu, dtype=np.float64)
        if self.n_shape:
            nuis = self._nuisance(theta)
            shape = np.broadcast_shapes(mu.shape, nuis.shape[:-1])
            c = np.empty(shape + (1 + self.n_bkg,))
            c[..., 0] = mu
            c[..., 1:] = nuis[..., : self.n_bkg]
            return self.morph.expected(c, nuis[..., self.n_bkg :])
        theta = self.nominal_theta() if theta is None else np.asarray(theta, dtype=np.float64)
        return mu[..., None] * self.signal + theta @ self.backgrounds

    def full_params(self, mu: float | np.ndarray, theta: np.ndarray | None = None) -> np.ndarray:
        """Stack ``[μ, θ(, α)]`` into full parameter vectors (broadcasting over leading axes)."""
        mu = np.asarray(mu, dtype=np.float64)
        if self.n_shape:
            theta = self._nuisance(theta)
        else:
            theta = self.nominal_theta() if theta is None else np.asarray(theta, dtype=np.float64)
        shape = np.broadcast_shapes(mu.shape, theta.shape[:-1])
        out = np.empty(shape + (self.n_par,))
        out[..., 0] = mu
        out[..., 1:] = theta
        return out

    def nll(
        self,
        params: np.ndarray,
        counts: np.ndarray,
        aux: np.ndarray | None = None,
    ) -> np.ndarray:
        """Reference (dense, unoptimised) NLL, see the module docstring.

        params: ``(..., n_par)`` full parameter vectors; counts: ``(..., n_bins)``;
        aux: ``(..., n_aux)`` auxiliary observables (θ on the multiplier scale, default nominal 1;
        then α, default 0). Only constrained backgrounds contribute a constraint term.
        """
        params = np.asarray(params, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.float64)
        if self.n_gamma:
            from .mcstat import profiled_nll

            out = profiled_nll(self, params, counts, aux)
            return out.reshape(np.broadcast_shapes(params.shape[:-1], counts.shape[:-1]))
        aux = self.nominal_nuisance() if aux is None else np.asarray(aux, dtype=np.float64)
        K = self.n_shape
        if K:
            aux, aux_alpha = aux[..., : self.n_bkg], aux[..., self.n_bkg :]
            alpha, params = params[..., 1 + self.n_bkg :], params[..., : 1 + self.n_bkg]
        nu = self.expected(params[..., 0], params[..., 1:]) if not K else \
            self.morph.expected(params, alpha)
        with np.errstate(divide="ignore", invalid="ignore"):
            logterm = np.where(counts > 0, counts * np.log(np.where(counts > 0, nu, 1.0)), 0.0)
        bad = np.any((counts > 0) & ~(nu > 0), axis=-1)
        c = self.constrained
        rel = np.where(c, self.rel_unc, 1.0)
        cons = np.where(c, 0.5 * ((aux - params[..., 1:]) / rel) ** 2, 0.0).sum(axis=-1)
        if K:
            cons = cons + 0.5 * ((aux_alpha - alpha) ** 2).sum(axis=-1)
        out = nu.sum(axis=-1) - logterm.sum(axis=-1) + cons
        return np.where(bad, np.inf, out)

    def asimov(
        self, mu: float, theta: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Asimov dataset at (μ, θ(, α)): counts = ν (not rounded), aux = the nuisance values
        (arXiv:1007.1727 §5; a_α = α, 0 at the nominal point)."""
        if self.n_shape:  # with template MC statistics a_γ = 1 (the γ at their nominal values)
            nuis = self._nuisance(theta)
            return self.expected(mu, nuis), np.concatenate([nuis, np.ones(nuis.shape[:-1] + (self.n_gamma,))], axis=-1)
        theta = self.nominal_theta() if theta is None else np.asarray(theta, dtype=np.float64)
        if self.n_gamma:  # a_γ = 1: the γ at their nominal values
            return self.expected(mu, theta), np.r_[theta, np.ones(self.n_gamma)]
        return self.expected(mu, theta), theta.copy()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_templates(
        cls,
        signal: np.ndarray,
        backgrounds: Sequence[np.ndarray] | np.ndarray,
        names: Sequence[str],
        rel_unc: Sequence[float] | np.ndarray,
        signal_name: str = "signal",
    ) -> "BinnedModel":
        """Build from (possibly multi-dimensional) templates; they are flattened in C order."""
        sig = np.asarray(signal, dtype=np.float64)
        bkg = np.stack([np.asarray(b, dtype=np.float64) for b in backgrounds])
        return cls(sig, bkg, tuple(names), np.asarray(rel_unc, float), signal_name, sig.shape)

    def with_signal(self, signal: np.ndarray) -> "BinnedModel":
        """Same backgrounds, another signal template (e.g. another WIMP mass). The signal rows of
        the shape systematics keep their per-bin relative variations (exact for a rescaled
        signal; bins where the old signal is 0 become unaffected)."""
        new = np.asarray(signal, float).ravel()
        systs = self.shape_systematics
        if systs:
            old = self.signal
            ratio = np.where(old > 0, new / np.where(old > 0, old, 1.0), np.nan)  # NaN: take the new template
            systs = tuple(s.rows_scaled(0, ratio, new) for s in systs)
        return BinnedModel(
            new, self.backgrounds, self.names, self.rel_unc, self.signal_name, self.bin_shape, systs,
            self.interpolation, self.mc_stat,
        )

    def with_rel_unc(self, rel_unc: np.ndarray) -> "BinnedModel":
        return BinnedModel(
            self.signal, self.backgrounds, self.names, np.asarray(rel_unc, float),
            self.signal_name, self.bin_shape, self.shape_systematics, self.interpolation, self.mc_stat,
        )

    def with_shape_systematics(self, systematics: Sequence[ShapeSystematic] = (),
                               interpolation: str | None = None) -> "BinnedModel":
        """The same templates and constraints with other (default: no) shape systematics, morphed
        by ``interpolation`` (default: this model's)."""
        return BinnedModel(
            self.signal, self.backgrounds, self.names, self.rel_unc, self.signal_name,
            self.bin_shape, tuple(systematics), interpolation or self.interpolation, self.mc_stat,
        )

    def with_mc_stat(self, mc_stat: np.ndarray | None) -> "BinnedModel":
        """The same model with per-bin template-statistics widths δ_b (``None``: none; module
        docstring, "Template MC statistics")."""
        return BinnedModel(
            self.signal, self.backgrounds, self.names, self.rel_unc, self.signal_name,
            self.bin_shape, self.shape_systematics, self.interpolation, mc_stat,
        )
