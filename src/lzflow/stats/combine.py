"""Combination of science runs: N runs' binned models as ONE :class:`~lzflow.stats.model.BinnedModel`.

Model
-----
Run r has bins i ∈ I_r, a signal template s^r (expected events at μ = 1, already scaled to that
run's exposure), background templates B^r_b with Gaussian-constrained rate multipliers θ and
optional shape systematics α (:mod:`lzflow.stats.model`). The runs' counts are independent, so
the joint likelihood is the product over runs, and a product of Poisson terms over each run's
bins is one Poisson product over the *concatenated* bins I = I_1 ⊕ … ⊕ I_N::

    L(μ, θ, α) = Π_r Π_{i∈I_r} Pois(n_i | ν^r_i(μ, θ_r, α_r)) × Π_p Gauss(a_p | p, σ_p)

with μ shared (the cross section is one number) and each nuisance parameter p either

* **shared** (correlated) by name: one parameter and ONE constraint term; its template row in the
  combined model is each run's template in that run's bins (zeros in the bins of runs that do not
  have it); two runs must give it the same constraint (relative width r_b; the central values
  are always θ = 1, α = 0 and the unit width of α in this model) — otherwise refused in one line;
* or **separate**: one parameter per run, renamed ``<run>:<name>`` for a background rate (the
  shape systematic ``name`` becomes ``<run>.<name>``, parameter ``alpha_<run>.<name>``:
  :class:`~lzflow.stats.morphing.ShapeSystematic` names are identifiers without ``:``), its
  template in that run's bins only.

The choice is explicit per name (``correlated``: the names to share; every other name is
separate); a name in ``correlated`` that no run has is refused. Shape systematics concatenate
exactly: their morphing (code 4p or multiplicative) acts per sample and bin, and in the bins of a
run without the systematic the varied templates equal the nominal ones (no variation), so
ν_i of the combined model is ν^r_i of run r's model for i ∈ I_r. Hence, at any parameter point::

    NLL_comb(μ, θ, α) = Σ_r NLL_r(μ, θ_r, α_r) − Σ_{shared p} (n_runs(p) − 1) × c_p(θ_p)

(c_p the constraint term, counted once per shared parameter instead of once per run; with
nothing shared the combined NLL is the sum of the runs' NLLs), which the tests check at random
points. The fitters, toys, limits and exports see just a bigger model.

Two identical runs versus one run with twice the live time
----------------------------------------------------------
Two copies of a run with *every* nuisance parameter shared have ν_comb = (ν, ν); for any data the
NLL depends on the counts only through n_i + n_{i+n} (Σ_i [2ν_i − (n_i + n_{i+n}) ln ν_i] + c),
which is Poisson(2ν_i) — exactly the single run with doubled exposure (2ν, the same relative
constraints) up to a constant. So the Asimov profile likelihood ratios, hence the asymptotic
limits, are *equal* (to the solver's precision), and the toy distributions of q̃ are equal in
distribution (toy medians agree within the toy error). With separate nuisance parameters the
two-run model is NOT the doubled run: each run's rate has its own auxiliary measurement, so the
combination is constrained by two independent measurements (the Asimov likelihoods differ and the
limit is a little lower). Equality needs the constraints shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Mapping

import numpy as np

from .model import BinnedModel, ModelError, ShapeSystematic

__all__ = ["Combination", "RunBins", "combine_models", "RUN_SEPARATOR", "SHAPE_SEPARATOR", "separate_name"]

#: a separate (uncorrelated) background rate of run r is called ``<r>:<name>``
RUN_SEPARATOR = ":"
#: a separate shape systematic of run r is called ``<r>.<name>`` (identifiers only, :class:`ShapeSystematic`)
SHAPE_SEPARATOR = "."


def separate_name(run: str, name: str, shape: bool = False) -> str:
    """The combined model's name of run ``run``'s own (separate) parameter ``name``."""
    return f"{run}{SHAPE_SEPARATOR if shape else RUN_SEPARATOR}{name}"


@dataclass(frozen=True)
class RunBins:
    """Where one run sits in the combined model: bins ``[start, stop)``, its own ``bin_shape`` (its
    templates are flattened in C order inside the range), and ``par_index``: for each entry of the
    run's own full parameter vector ``[μ, θ_1..θ_B, α_1..α_K]`` its index in the combined one."""

    name: str
    start: int
    stop: int
    bin_shape: tuple[int, ...]
    par_index: tuple[int, ...]

    @property
    def bins(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def aux_index(self) -> np.ndarray:
        """Index of each of the run's auxiliary observables ``[a_θ, a_α]`` in the combined aux vector."""
        return np.asarray(self.par_index[1:], dtype=np.intp) - 1


@dataclass(frozen=True)
class Combination:
    """The combined model and, per run, its bins and parameters (:func:`combine_models`)."""

    model: BinnedModel
    runs: tuple[RunBins, ...]
    correlated: tuple[str, ...]

    def run(self, name: str) -> RunBins:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(f"run {name!r}: not in this combination ({', '.join(r.name for r in self.runs)})")

    def run_params(self, params: np.ndarray, name: str) -> np.ndarray:
        """Run ``name``'s full parameter vectors ``(..., n_par_run)`` from combined ones ``(..., n_par)``."""
        return np.asarray(params, dtype=np.float64)[..., list(self.run(name).par_index)]

    def run_aux(self, aux: np.ndarray, name: str) -> np.ndarray:
        """Run ``name``'s auxiliary observables from combined ones ``(..., n_aux)``."""
        return np.asarray(aux, dtype=np.float64)[..., self.run(name).aux_index]

    def run_counts(self, counts: np.ndarray, name: str) -> np.ndarray:
        """Run ``name``'s bins of combined counts ``(..., n_bins)``."""
        return np.asarray(counts)[..., self.run(name).bins]

    def shared_multiplicity(self) -> np.ndarray:
        """``(n_par,)``: how many runs each combined parameter acts in (μ: every run)."""
        out = np.zeros(self.model.n_par, dtype=np.intp)
        for r in self.runs:
            out[list(r.par_index)] += 1
        return out


def _check_runs(runs: Mapping[str, BinnedModel], correlated: Collection[str]) -> None:
    if not runs:
        raise ModelError("runs: no run given; expected at least one (name: BinnedModel)")
    for name, model in runs.items():
        if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ModelError(f"run name {name!r}: expected a non-empty identifier (letters, digits, _ and -)")
        if not isinstance(model, BinnedModel):
            raise ModelError(f"run {name}: {type(model).__name__}; expected a BinnedModel")
    if isinstance(correlated, str):
        raise ModelError(f"correlated: {correlated!r} is a string; expected a collection of parameter names")
    known = {n for m in runs.values() for n in m.names + tuple(s.name for s in m.shape_systematics)}
    for name in sorted(correlated):
        if name not in known:
            raise ModelError(f"correlated: {name!r} is not a background or shape systematic of any run "
                             f"(expected one of {', '.join(sorted(known))})")
    signals = {m.signal_name for m in runs.values()}
    if len(signals) > 1:
        raise ModelError(f"signal names differ between runs ({', '.join(sorted(signals))}); "
                         f"expected one signal (μ is shared)")
    interps = {m.interpolation for m in runs.values() if m.n_shape}
    if len(interps) > 1:
        raise ModelError(f"shape interpolations differ between runs ({', '.join(sorted(interps))}); "
                         f"expected one morphing for the combined model")


def _background_rows(runs: Mapping[str, BinnedModel], shared: set[str]) -> tuple[list[str], dict[str, float],
                                                                                  dict[tuple[str, str], int]]:
    """Combined background names (first appearance order), their rel_unc, and (run, name) → row."""
    names: list[str] = []
    rel: dict[str, float] = {}
    row: dict[tuple[str, str], int] = {}
    owner: dict[str, str] = {}
    for run, m in runs.items():
        for name, r in zip(m.names, m.rel_unc):
            key = name if name in shared else separate_name(run, name)
            if key in rel:
                if rel[key] != float(r):
                    raise ModelError(f"correlated background {name}: rel_unc {float(r):g} in run {run} but "
                                     f"{rel[key]:g} in run {owner[key]}; expected one constraint width")
            else:
                names.append(key)
                rel[key], owner[key] = float(r), run
            row[(run, name)] = names.index(key)
    return names, rel, row


def _shape_key(run: str, name: str, shared: set[str]) -> str:
    return name if name in shared else separate_name(run, name, shape=True)


def _shape_names(runs: Mapping[str, BinnedModel], shared: set[str]) -> list[str]:
    """Combined shape systematic names, in order of first appearance."""
    out: list[str] = []
    backgrounds = {n for m in runs.values() for n in m.names}
    for run, m in runs.items():
        for s in m.shape_systematics:
            if s.name in shared and s.name in backgrounds:
                raise ModelError(f"correlated: {s.name!r} is a shape systematic in run {run} and a background "
                                 f"in another; expected one kind of parameter per shared name")
            key = _shape_key(run, s.name, shared)
            if key not in out:
                out.append(key)
    return out


def _combined_systematic(key: str, runs: Mapping[str, BinnedModel], shared: set[str],
                         bkg_row: Mapping[tuple[str, str], int], offsets: np.ndarray,
                         nominal: np.ndarray) -> ShapeSystematic:
    """Shape systematic ``key`` of the combined model: the varied templates of each run that has it
    in that run's bins and rows, the combined nominal elsewhere (no variation there)."""
    parts = [(k, run, m, s) for k, (run, m) in enumerate(runs.items()) for s in m.shape_systematics
             if _shape_key(run, s.name, shared) == key]
    two = {s.has_2sigma for *_, s in parts}
    if len(two) > 1:
        raise ModelError(f"shape systematic {key}: ±2σ templates in some runs only; expected all runs or none")
    labels = ("up", "down", "up2", "down2") if two == {True} else ("up", "down")
    anchors = {label: nominal.copy() for label in labels}
    for k, run, m, s in parts:
        rows = [0] + [1 + bkg_row[(run, b)] for b in m.names]
        for label in labels:
            anchors[label][rows, offsets[k] : offsets[k + 1]] = getattr(s, label)
    # each run's block of bins keeps its own sample ratios in the log morphings' MC-empty rule
    return ShapeSystematic(key, anchors["up"], anchors["down"], anchors.get("up2"), anchors.get("down2"),
                           segments=tuple(int(o) for o in offsets))


def combine_models(runs: Mapping[str, BinnedModel], correlated: Collection[str]) -> Combination:
    """One model of the runs ``runs`` (name → model, in bin order), sharing μ and the nuisance
    parameters named in ``correlated`` (module docstring); no default: pass ``()`` to share none.

    Raises :class:`~lzflow.stats.model.ModelError` (one line) for bad run names, a correlated name
    no run has, different constraint widths of a shared rate, different signal names or morphings.
    """
    _check_runs(runs, correlated)
    if any(getattr(m, "n_gamma", 0) for m in runs.values()):  # lzflow.stats.mcstat: the γ would be dropped
        raise ModelError("runs with template MC statistics (mc_stat) cannot be combined yet; expected models without")
    shared = set(correlated)
    bkg_names, rel, bkg_row = _background_rows(runs, shared)
    shape_names = _shape_names(runs, shared)
    sizes = [m.n_bins for m in runs.values()]
    offsets = np.r_[0, np.cumsum(sizes)].astype(int)
    n_bins, n_bkg = int(offsets[-1]), len(bkg_names)
    signal = np.concatenate([m.signal for m in runs.values()])
    backgrounds = np.zeros((n_bkg, n_bins))
    for (run, name), row in bkg_row.items():
        k = list(runs).index(run)
        m = runs[run]
        backgrounds[row, offsets[k] : offsets[k + 1]] = m.backgrounds[m.names.index(name)]
    nominal = np.vstack([signal[None, :], backgrounds])
    systs = [_combined_systematic(key, runs, shared, bkg_row, offsets, nominal) for key in shape_names]
    interpolation = next((m.interpolation for m in runs.values() if m.n_shape), "code4p")
    model = BinnedModel(signal, backgrounds, tuple(bkg_names), np.array([rel[n] for n in bkg_names]),
                        next(iter(runs.values())).signal_name, (n_bins,), tuple(systs), interpolation)
    par = {n: i for i, n in enumerate(model.par_names)}
    run_bins = []
    for k, (run, m) in enumerate(runs.items()):
        index = [0] + [1 + bkg_row[(run, b)] for b in m.names]
        index += [par["alpha_" + _shape_key(run, s.name, shared)] for s in m.shape_systematics]
        run_bins.append(RunBins(run, int(offsets[k]), int(offsets[k + 1]), m.bin_shape, tuple(index)))
    return Combination(model, tuple(run_bins), tuple(sorted(shared)))
