"""Export a :class:`BinnedModel` as a pyhf JSON workspace (HistFactory, pyhf ≥ 0.7).

Layout: one channel (``"lz"``) whose bins are the model's bins in C order — a 2D template of
shape ``(n_cS1, n_log10cS2)`` flattened with ``.ravel()`` (last axis fastest), exactly the
order of :attr:`BinnedModel.signal`.

Samples and modifiers:

* signal: ``normfactor`` ``"mu"`` (the POI; bounds [0, 10·μ_ref] by default);
* each constrained background b: ``histosys`` named after it with
  ``hi_data = B_b (1 + r_b)``, ``lo_data = B_b (1 − r_b)``. pyhf's histosys uses interpolation
  code 0 (piecewise linear) and a unit Gaussian constraint Gauss(0 | α, 1), so the yield is
  B_b + α (hi − B_b) = B_b (1 + r_b α) for α ≥ 0 and B_b + α (B_b − lo) = B_b (1 + r_b α) for
  α < 0: exactly linear. With θ_b = 1 + r_b α the pyhf likelihood is Gauss(0 | (θ_b − 1)/r_b, 1)
  = lzflow's Gauss(a_b = 1 | θ_b, r_b) (aux on pyhf's α scale: (a_b − 1)/r_b). pyhf's
  ``normsys`` would be exponential (code 1) — not used. The α bounds are set to
  [max(−5, −1/r_b), 5] so that θ_b ≥ 0 as in lzflow;
* fixed backgrounds (r_b = 0): no modifier.

Observations default to the Asimov background-only expectation Σ_b B_b (not rounded — pyhf
accepts non-integer observations).
"""

from __future__ import annotations

import numpy as np

from .model import BinnedModel

__all__ = ["to_pyhf_workspace", "pyhf_aux_from_lzflow", "pyhf_data"]


def to_pyhf_workspace(
    model: BinnedModel,
    observed: np.ndarray | None = None,
    channel: str = "lz",
    measurement: str = "lzflow",
    poi_bounds: tuple[float, float] | None = None,
) -> dict:
    """pyhf workspace dict (see module docstring). ``observed``: counts ``(n_bins,)`` or the
    template shape (flattened in C order); default Asimov background-only."""
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
    params: list[dict] = []
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
        samples.append({"name": name, "data": tmpl.tolist(), "modifiers": mods})
    if poi_bounds is None:
        poi_bounds = (0.0, 10.0 * max(1.0, _rough_scale(model)))
    params.insert(0, {"name": "mu", "bounds": [list(map(float, poi_bounds))], "inits": [1.0]})
    return {
        "channels": [{"name": channel, "samples": samples}],
        "observations": [{"name": channel, "data": obs.tolist()}],
        "measurements": [{"name": measurement, "config": {"poi": "mu", "parameters": params}}],
        "version": "1.0.0",
    }


def _rough_scale(model: BinnedModel) -> float:
    """A μ giving ~10 signal events over √background, for default POI bounds."""
    if model.signal_is_empty:
        return 1.0
    b = model.backgrounds.sum()
    return float(max(3.0 * np.sqrt(max(b, 1.0)), 10.0) / model.signal_total)


def pyhf_aux_from_lzflow(
    model: BinnedModel, aux: np.ndarray, order: list[str] | tuple[str, ...] | None = None
) -> np.ndarray:
    """pyhf auxiliary data α_b = (a_b − 1)/r_b from lzflow aux (multiplier scale).

    ``order``: parameter names in pyhf's auxdata order (``pyhf_model.config.auxdata_order`` —
    pyhf sorts parameters by name); default lzflow's order of the constrained backgrounds.
    """
    aux = np.asarray(aux, float)
    names = [model.names[b] for b in model.free_bkg] if order is None else list(order)
    idx = np.array([model.names.index(n) for n in names], dtype=int)
    return (aux[..., idx] - 1.0) / model.rel_unc[idx]


def pyhf_data(model: BinnedModel, pyhf_model, counts: np.ndarray, aux: np.ndarray) -> np.ndarray:
    """Full pyhf data vector(s) ``[counts (C order), auxdata]`` for lzflow counts/aux."""
    counts = np.asarray(counts, float)
    a = pyhf_aux_from_lzflow(model, aux, pyhf_model.config.auxdata_order)
    return np.concatenate([counts.reshape(counts.shape[:-1] + (-1,)), a], axis=-1)
