"""Export a :class:`BinnedModel` as a pyhf JSON workspace (HistFactory, pyhf ≥ 0.7).

Layout: one channel (``"lz"``) whose bins are the model's bins in C order — a 2D template of
shape ``(n_cS1, n_log10cS2)`` flattened with ``.ravel()`` (last axis fastest), exactly the
order of :attr:`BinnedModel.signal`.

Samples and modifiers:

* signal: ``normfactor`` ``"mu"`` (the POI; bounds [0, 10·μ_ref] by default);
* each constrained background b: ``histosys`` named after it with
  ``hi_data = B_b (1 + r_b)``, ``lo_data = B_b (1 − r_b)``. For these symmetric variations pyhf's
  histosys interpolations (code 0, and code 4p, the default of pyhf 0.7) are the same linear
  function; with a unit Gaussian constraint Gauss(0 | α, 1) the yield is
  B_b + α (hi − B_b) = B_b (1 + r_b α) for α ≥ 0 and B_b + α (B_b − lo) = B_b (1 + r_b α) for
  α < 0: exactly linear. With θ_b = 1 + r_b α the pyhf likelihood is Gauss(0 | (θ_b − 1)/r_b, 1)
  = lzflow's Gauss(a_b = 1 | θ_b, r_b) (aux on pyhf's α scale: (a_b − 1)/r_b). pyhf's
  ``normsys`` would be exponential (code 1) — not used. The α bounds are set to
  [max(−5, −1/r_b), 5] so that θ_b ≥ 0 as in lzflow;
* fixed backgrounds (r_b = 0): no modifier;
* each shape systematic k (:mod:`lzflow.stats.morphing`): a ``histosys`` named ``alpha_<name>``
  on every sample it affects, ``hi_data``/``lo_data`` = the sample's templates at α = +1/−1, and
  parameter bounds [−5, 5] (lzflow's α is unbounded; a fit reaching ±5 would differ). lzflow
  morphs with HistFactory interpolation code 4p; a pyhf JSON workspace cannot say which code, so
  build the model with ``ws.model(modifier_settings=PYHF_MODIFIER_SETTINGS)``. The rate histosys
  above are symmetric (hi − nominal = nominal − lo), for which codes 4p and 0 are the same linear
  function, and histosys deltas add: pyhf's expected counts are
  μ T_0(α) + Σ_b [θ_b B_b + Σ_k Δ_kb(α)], exactly lzflow's (:mod:`lzflow.stats.morphing`).

* template MC statistics (``BinnedModel.mc_stat``, :mod:`lzflow.stats.mcstat`): one ``staterror``
  modifier ``"mcstat"`` on every background sample. pyhf derives the relative width of γ_b as
  sqrt(Σ_k σ_kb²)/Σ_k B_kb over the samples carrying it; lzflow writes
  σ_kb = δ_b (Σ_k B_kb) B_kb / sqrt(Σ_k B_kb²), which gives exactly lzflow's δ_b, and σ_kb = 0 in
  bins without γ (δ_b = 0), which pyhf fixes at γ_b = 1 (``suggested_fixed``; their aux is 1).
  pyhf bounds γ to [1e-10, 10], lzflow to γ ≥ 0 (the NLLs differ by O(1e-10) at γ̂ = 0; γ̂ > 10
  would differ).

Observations default to the Asimov background-only expectation Σ_b B_b (not rounded — pyhf
accepts non-integer observations).
"""

from __future__ import annotations

import numpy as np

from .model import BinnedModel

__all__ = ["to_pyhf_workspace", "pyhf_aux_from_lzflow", "pyhf_data", "PYHF_MODIFIER_SETTINGS", "MCSTAT_MODIFIER"]

#: name of the ``staterror`` modifier of the template MC statistics
MCSTAT_MODIFIER = "mcstat"

#: pyhf model settings that reproduce lzflow's morphing (``pyhf.Workspace.model(modifier_settings=…)``)
PYHF_MODIFIER_SETTINGS = {"histosys": {"interpcode": "code4p"}}


def to_pyhf_workspace(
    model: BinnedModel,
    observed: np.ndarray | None = None,
    channel: str = "lz",
    measurement: str = "lzflow",
    poi_bounds: tuple[float, float] | None = None,
) -> dict:
    """pyhf workspace dict (see module docstring). ``observed``: counts ``(n_bins,)`` or the
    template shape (flattened in C order); default Asimov background-only."""
    if model.shape_systematics and model.interpolation != "code4p":
        raise ValueError(f"interpolation {model.interpolation!r} of the shape systematics cannot be written as a pyhf "
                         f"workspace; expected 'code4p' (pyhf's histosys interpolations are additive)")
    obs = model.backgrounds.sum(axis=0) if observed is None else np.asarray(observed, float).ravel()
    if obs.size != model.n_bins:
        raise ValueError(f"observed has {obs.size} bins, model has {model.n_bins}")
    samples = [
        {
            "name": model.signal_name,
            "data": model.signal.tolist(),
            "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
        }
    ]
    nominal = np.vstack([model.signal[None, :], model.backgrounds])
    shape_mods: list[list[dict]] = [[] for _ in range(nominal.shape[0])]
    for sy in model.shape_systematics:
        for s in np.flatnonzero(sy.affected(nominal)):
            shape_mods[s].append({"name": sy.parameter, "type": "histosys",
                                  "data": {"hi_data": sy.up[s].tolist(), "lo_data": sy.down[s].tolist()}})
    samples[0]["modifiers"].extend(shape_mods[0])
    params: list[dict] = []
    mcstat = _staterror_data(model) if model.n_gamma else None
    for b, name in enumerate(model.names):
        tmpl = model.backgrounds[b]
        r = float(model.rel_unc[b])
        mods: list[dict] = []
        if r > 0:
            mods.append(
                {
                    "name": name,
                    "type": "histosys",
                    "data": {"hi_data": (tmpl * (1 + r)).tolist(), "lo_data": (tmpl * (1 - r)).tolist()},
                }
            )
            params.append({"name": name, "bounds": [[max(-5.0, -1.0 / r), 5.0]]})
        if mcstat is not None:
            mods.append({"name": MCSTAT_MODIFIER, "type": "staterror", "data": mcstat[b].tolist()})
        samples.append({"name": name, "data": tmpl.tolist(), "modifiers": mods + shape_mods[1 + b]})
    if poi_bounds is None:
        poi_bounds = (0.0, 10.0 * max(1.0, _rough_scale(model)))
    params.insert(0, {"name": "mu", "bounds": [list(map(float, poi_bounds))], "inits": [1.0]})
    params.extend({"name": par, "bounds": [[-5.0, 5.0]]} for par in model.shape_parameters)
    return {
        "channels": [{"name": channel, "samples": samples}],
        "observations": [{"name": channel, "data": obs.tolist()}],
        "measurements": [{"name": measurement, "config": {"poi": "mu", "parameters": params}}],
        "version": "1.0.0",
    }


def _staterror_data(model: BinnedModel) -> np.ndarray:
    """``(n_bkg, n_bins)`` absolute errors σ_kb whose pyhf quadrature sum over the total is δ_b
    (module docstring)."""
    B = model.backgrounds
    norm = np.sqrt((B ** 2).sum(axis=0))
    scale = np.where(norm > 0, model.mc_stat * B.sum(axis=0) / np.where(norm > 0, norm, 1.0), 0.0)
    return B * scale


def _rough_scale(model: BinnedModel) -> float:
    """A μ giving ~10 signal events over √background, for default POI bounds."""
    if model.signal_is_empty:
        return 1.0
    b = model.backgrounds.sum()
    return float(max(3.0 * np.sqrt(max(b, 1.0)), 10.0) / model.signal_total)


def pyhf_aux_from_lzflow(
    model: BinnedModel, aux: np.ndarray, order: list[str] | tuple[str, ...] | None = None
) -> np.ndarray:
    """pyhf auxiliary data α_b = (a_b − 1)/r_b from lzflow aux (multiplier scale); a shape
    parameter's ``alpha_<name>`` is its aux a_k itself.

    ``order``: parameter names in pyhf's auxdata order (``pyhf_model.config.auxdata_order`` —
    pyhf sorts parameters by name); default lzflow's order of the constrained backgrounds, then
    the shape parameters.
    """
    aux = np.asarray(aux, float)
    if model.n_gamma:
        return _aux_with_mcstat(model, aux, order)
    shape = model.shape_parameters
    if order is None:
        order = [model.names[b] for b in model.free_bkg] + list(shape)
    if not shape:
        idx = np.array([model.names.index(n) for n in order], dtype=int)
        return (aux[..., idx] - 1.0) / model.rel_unc[idx]
    idx = np.array([model.names.index(n) if n in model.names else model.n_bkg + shape.index(n)
                    for n in order], dtype=int)
    rel = np.r_[np.where(model.rel_unc > 0, model.rel_unc, 1.0), np.ones(model.n_shape)][idx]
    off = np.r_[np.ones(model.n_bkg), np.zeros(model.n_shape)][idx]
    return (aux[..., idx] - off) / rel


def _aux_with_mcstat(model: BinnedModel, aux: np.ndarray, order) -> np.ndarray:
    """pyhf aux of a model with γ bins: α_b of the constrained backgrounds, a shape parameter's a_k
    itself, and per bin of the ``staterror`` vector a_γ (1 in bins without γ, which pyhf keeps fixed)."""
    shape = model.shape_parameters
    order = list(order) if order is not None else \
        [model.names[b] for b in model.free_bkg] + list(shape) + [MCSTAT_MODIFIER]
    nb, K = model.n_bkg, model.n_shape
    gb = np.flatnonzero(model.mc_stat > 0)
    parts = []
    for name in order:
        if name == MCSTAT_MODIFIER:
            g = np.ones(aux.shape[:-1] + (model.n_bins,))
            g[..., gb] = aux[..., nb + K : nb + K + gb.size]
            parts.append(g)
        elif name in shape:
            parts.append(aux[..., nb + shape.index(name)][..., None])
        else:
            b = model.names.index(name)
            parts.append(((aux[..., b] - 1.0) / model.rel_unc[b])[..., None])
    return np.concatenate(parts, axis=-1)


def pyhf_data(model: BinnedModel, pyhf_model, counts: np.ndarray, aux: np.ndarray) -> np.ndarray:
    """Full pyhf data vector(s) ``[counts (C order), auxdata]`` for lzflow counts/aux."""
    counts = np.asarray(counts, float)
    a = pyhf_aux_from_lzflow(model, aux, pyhf_model.config.auxdata_order)
    return np.concatenate([counts.reshape(counts.shape[:-1] + (-1,)), a], axis=-1)
