r"""Response matrices: build them (pilot, allocation, main simulation), save and load them.

A :class:`ResponseMatrix` holds, for one NEST interaction type, the counts :math:`c_{jb}` of
simulated events per fine energy bin j and analysis bin b and the events :math:`N_j` simulated per
energy bin; :func:`lzflow.pdfs.fold_spectrum` turns it into the PDF of any spectrum.

:func:`build_responses` makes the matrices of several types with one process pool:

1. Pilot. The acceptance :math:`\varepsilon_j` used for the allocation comes from a cheap seeded
   two-stage pilot (:data:`N_PILOT` = 2e5 events per type: half uniform in ln E, half distributed
   like the allocation planned from the first half, which sharpens ε where the plan is sensitive
   to it), pooled in groups of fine bins, tails extrapolated
   (:func:`lzflow.response.allocation.smooth_acceptance`).
2. Allocation from the reference family (:mod:`lzflow.response.reference`,
   :func:`lzflow.response.allocation.plan_allocation`): events per fine bin so that every
   reference spectrum reaches the requested effective n_samples; far tails truncated.
3. Main simulation in fixed, seeded chunks (:mod:`lzflow.response.nest`): bit-identical for any
   number of workers. The chunks of every type share one pool and are submitted longest first,
   costed with the CPU time per event the pilot's chunks took in each energy region
   (:func:`~lzflow.response.nest.cost_per_event`, :func:`~lzflow.response.nest.longest_first`):
   the order changes no number, only how long a worker idles at the end.

Files: ``.npz`` (compressed) with ``counts``, ``n_sim``, ``eps_pilot``, ``energy_edges`` and a JSON
``header`` (interaction, analysis space, metadata), written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import __version__
from ..io import atomic_path
from ..progress import progress
from ..space import INTERACTIONS, AnalysisSpace, base_interaction, canonical_interaction
from .allocation import (
    BINS_PER_DECADE,
    DEFAULT_ENERGY_RANGES_KEV,
    effective_n_samples,
    energy_edges,
    group_acceptance,
    plan_allocation,
)
from .nest import (
    CHUNK_SIZE,
    STAGE_MAIN,
    STAGE_PILOT,
    STAGE_PILOT_B,
    ChunkRunner,
    chunk_tasks,
    cost_per_event,
    longest_first,
    nest_version,
)
from .reference import ReferenceSpectrum, reference_family, reference_probabilities

__all__ = [
    "ResponseMatrix",
    "FORMAT_VERSION",
    "N_PILOT",
    "build_responses",
    "build_response",
    "save_response",
    "load_response",
]

#: Pilot events per interaction type (fixed: a smaller pilot measures the acceptance edges less
#: far out, so the conservative tail extrapolation truncates less and the matrix grows).
N_PILOT = 200_000
PILOT_CHUNK_SIZE = 1 << 14
#: Version of the ``.npz`` layout, recorded in the metadata and checked on load.
FORMAT_VERSION = 1


@dataclass
class ResponseMatrix:
    """Counts of simulated events per (fine energy bin, cS1 bin, log10 cS2 bin) for one NEST
    interaction type.

    counts : (n_E, n_cS1, n_log10cS2) int64, events passing every cut.
    n_sim : (n_E,) int64 events simulated per energy bin (0 = truncated: ε assumed 0).
    eps_pilot : (n_E,) acceptance from the pilot (tails extrapolated), used for the allocation
        and for truncation bounds.
    metadata : detector hash/name, seed, n_samples target, allocation and pilot summaries,
        versions (independent of the number of workers).
    """

    interaction: str
    energy_edges: np.ndarray
    space: AnalysisSpace
    counts: np.ndarray
    n_sim: np.ndarray
    eps_pilot: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_energy(self) -> int:
        return len(self.energy_edges) - 1

    @property
    def acceptance(self) -> np.ndarray:
        """ε̂_j = Σ_b c_jb / N_j (0 where nothing was simulated)."""
        c = self.counts.reshape(self.n_energy, -1).sum(axis=1)
        return np.where(self.n_sim > 0, c / np.maximum(self.n_sim, 1), 0.0)

    @property
    def n_total(self) -> int:
        return int(self.n_sim.sum())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResponseMatrix):
            return NotImplemented
        return (self.interaction == other.interaction and self.space == other.space
                and np.array_equal(self.energy_edges, other.energy_edges)
                and np.array_equal(self.counts, other.counts) and np.array_equal(self.n_sim, other.n_sim)
                and np.array_equal(self.eps_pilot, other.eps_pilot) and self.metadata == other.metadata)


def build_responses(detector: Mapping[str, Any], interactions: Sequence[str] = INTERACTIONS, *,
                    n_samples: float = 1e7, seed: int = 0, n_workers: int = 1,
                    space: AnalysisSpace | None = None,
                    energy_ranges_keV: Mapping[str, tuple[float, float]] | None = None,
                    bins_per_decade: int = BINS_PER_DECADE, n_pilot: int | None = None,
                    chunk_size: int = CHUNK_SIZE, safety: float = 1.02, loss_budget: float = 1e-5,
                    n_total: Mapping[str, int] | int | None = None,
                    family: Mapping[str, Sequence[ReferenceSpectrum]] | None = None,
                    builder: Callable[[Mapping[str, Any]], Any] | None = None,
                    mp_context: str | None = None) -> dict[str, ResponseMatrix]:
    """Build the response matrices of several interaction types with one process pool.

    Steps (module docstring): (1) seeded two-stage pilot → per-group acceptance, tails
    extrapolated; (2) allocation from the reference family; (3) main simulation in fixed chunks.

    Parameters
    ----------
    detector : resolved detector dictionary (:func:`lzflow.detector.resolve_detector`).
    n_samples : target effective n_samples of every reference spectrum (module docstring).
    seed : base seed; the matrices are bit-identical for any ``n_workers``.
    space : analysis space / ROI (default :class:`AnalysisSpace`).
    n_pilot : pilot events per type (default :data:`N_PILOT` = 2e5).
    n_total : fix the total number of main events (per type or for all) instead of sizing from
        ``n_samples`` (tests, studies).
    family : reference spectra per interaction type (default :func:`~.reference.reference_family`).
    builder : detector dict → nestpy detector (default :func:`lzflow.detector.build_nest_detector`);
        must be picklable (module-level) when ``n_workers > 1`` with the spawn context.
    """
    space = space or AnalysisSpace()
    n_pilot = N_PILOT if n_pilot is None else int(n_pilot)
    types = [canonical_interaction(t) for t in interactions]
    ranges = dict(DEFAULT_ENERGY_RANGES_KEV)
    ranges.update({canonical_interaction(k): tuple(v) for k, v in (energy_ranges_keV or {}).items()})
    edges = {t: energy_edges(*ranges.get(t, ranges[base_interaction(t)]), bins_per_decade) for t in types}
    fams = {t: list(family[t]) if family and t in family else reference_family(t) for t in types}
    probs = {t: reference_probabilities(fams[t], edges[t]) for t in types}
    runner = ChunkRunner(n_workers, (dict(detector), builder, space, edges, int(seed)), mp_context)
    try:
        # 1. pilot
        pilot_k, pilot_n, pilot_tasks = _run_pilot(runner, edges, probs, n_pilot, loss_budget)
        # 2. plan from the pooled pilot
        plans = {}
        for t in types:
            P, below, above = probs[t]
            eps = group_acceptance(pilot_k[t], pilot_n[t])
            plans[t] = plan_allocation(eps, P, n_samples, below=below, above=above, safety=safety,
                                       loss_budget=loss_budget, n_total=_fixed_total(n_total, t))
        # 3. main simulation
        counts = {t: np.zeros((len(edges[t]) - 1, *space.shape), dtype=np.int64) for t in types}
        tasks = [task for t in types for task in chunk_tasks(t, STAGE_MAIN, plans[t].n_sim, chunk_size)]
        cost = cost_per_event(pilot_tasks, runner.cpu_seconds, {t: len(edges[t]) - 1 for t in types})
        _accumulate(runner, longest_first(tasks, cost), counts, f"NEST {'+'.join(types)}")
    finally:
        runner.close()

    out = {}
    for t in types:
        plan = plans[t]
        resp = ResponseMatrix(interaction=t, energy_edges=edges[t], space=space, counts=counts[t],
                              n_sim=plan.n_sim, eps_pilot=plan.eps)
        acc = resp.acceptance
        achieved = [effective_n_samples(p, acc, plan.n_sim, total=1.0) for p in probs[t][0]]
        active = np.flatnonzero(plan.n_sim > 0)
        resp.metadata = {
            "format_version": FORMAT_VERSION,
            "interaction": t,
            **_detector_facts(detector),
            "seed": int(seed),
            "n_samples_target": float(n_samples) if _fixed_total(n_total, t) is None else None,  # None: N fixed
            "n_total": resp.n_total,
            "safety": float(safety),
            "chunk_size": int(chunk_size),
            "bins_per_decade": int(bins_per_decade),
            "energy_range_keV": [float(edges[t][0]), float(edges[t][-1])],
            "active_range_keV": ([float(edges[t][active[0]]), float(edges[t][active[-1] + 1])]
                                 if active.size else None),
            "n_pilot": int(pilot_n[t].sum()),
            "pilot_passed": int(pilot_k[t].sum()),
            "loss_budget": float(loss_budget),
            "reference_family": [r.name for r in fams[t]],
            "reference_cost": [float(c) for c in plan.cost],
            "reference_truncation_loss": [float(x) for x in plan.truncation_loss],
            "reference_n_samples_effective": [float(a) for a in achieved],
            "lzflow_version": __version__,
            "nest_version": nest_version(),
        }
        out[t] = resp
    return out


def _fixed_total(n_total: Mapping[str, int] | int | None, interaction: str) -> int | None:
    """The caller's fixed number of main events for this type, or None (size from n_samples)."""
    return n_total.get(interaction) if isinstance(n_total, Mapping) else n_total


def _accumulate(runner: ChunkRunner, tasks: list[tuple], into: dict[str, np.ndarray], desc: str) -> None:
    """Run chunk tasks and add each result (per-bin counts or a counts block) into ``into[type]``
    at its first fine bin j0 (integer sums: the order of completion does not matter)."""
    for t, _, _, j0, block in progress(runner.map_unordered(tasks), total=len(tasks), desc=desc, unit="chunk"):
        into[t][j0:j0 + len(block)] += block


def _run_pilot(runner: ChunkRunner, edges: Mapping[str, np.ndarray],
               probs: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], n_pilot: int,
               loss_budget: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[tuple]]:
    """Two-stage pilot → (passing events, simulated events) per fine bin and type, and the pilot's
    chunk tasks (whose CPU times the runner recorded: the main stage's schedule).

    Stage A: half the pilot with equal events per fine bin (uniform in ln E). Stage B: the other
    half distributed like the allocation planned from stage A, i.e. where the plan is sensitive
    to ε (threshold and cS1-edge regions included).
    """
    n_a = int(n_pilot) // 2
    pilot_n = {t: np.full(len(e) - 1, max(1, -(-n_a // (len(e) - 1))), dtype=np.int64) for t, e in edges.items()}
    pilot_k = {t: np.zeros(len(e) - 1, dtype=np.int64) for t, e in edges.items()}
    tasks = [task for t in edges for task in chunk_tasks(t, STAGE_PILOT, pilot_n[t], PILOT_CHUNK_SIZE)]
    _accumulate(runner, tasks, pilot_k, "NEST pilot A")
    n_b = {}
    for t in edges:
        P, below, above = probs[t]
        eps_a = group_acceptance(pilot_k[t], pilot_n[t])
        n_b[t] = plan_allocation(eps_a, P, 1.0, below=below, above=above, loss_budget=loss_budget,
                                 n_total=int(n_pilot) - n_a, min_per_bin=0).n_sim
    tasks_b = [task for t in edges for task in chunk_tasks(t, STAGE_PILOT_B, n_b[t], PILOT_CHUNK_SIZE)]
    _accumulate(runner, tasks_b, pilot_k, "NEST pilot B")
    return pilot_k, {t: pilot_n[t] + n_b[t] for t in edges}, tasks + tasks_b


def _detector_facts(detector: Mapping[str, Any]) -> dict[str, Any]:
    """What a matrix records of its detector (the PDF stage reads them back from here)."""
    return {
        "detector_hash": detector.get("hash"),
        "detector_name": detector.get("name"),
        "coin_level": int(detector["nest"]["coinLevel"]),
        "fiducial": {k: float(v) for k, v in detector["fiducial"].items()},
        "drift_field_V_cm": detector.get("drift_field_V_cm"),
        "s1_mode": detector.get("s1_mode", "Hybrid"),
        "s2_mode": detector.get("s2_mode", "Full"),
        # a fixed ER skewness (lzflow.response.skewness); absent at NEST's model, as before the key existed
        **({} if detector.get("er_skewness", "nest") == "nest" else {"er_skewness": detector["er_skewness"]}),
    }


def build_response(detector: Mapping[str, Any], interaction: str, **kwargs: Any) -> ResponseMatrix:
    """Build one interaction type's response matrix; keyword arguments as :func:`build_responses`."""
    t = canonical_interaction(interaction)
    return build_responses(detector, [t], **kwargs)[t]


def save_response(response: ResponseMatrix, path: str | Path) -> Path:
    """Save to ``.npz`` (compressed) atomically."""
    path = Path(path)
    header = json.dumps({"interaction": response.interaction, "space": response.space.to_dict(),
                         "metadata": response.metadata}, sort_keys=True)
    with atomic_path(path, suffix=path.suffix) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, counts=response.counts, n_sim=response.n_sim, eps_pilot=response.eps_pilot,
                            energy_edges=response.energy_edges, header=np.array(header))
    return path


def load_response(path: str | Path) -> ResponseMatrix:
    """Load a matrix written by :func:`save_response`."""
    with np.load(Path(path), allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        if header["metadata"].get("format_version") not in (None, FORMAT_VERSION):
            raise ValueError(f"{path}: response format {header['metadata'].get('format_version')} "
                             f"is not {FORMAT_VERSION}")
        return ResponseMatrix(
            interaction=header["interaction"], energy_edges=z["energy_edges"].copy(),
            space=AnalysisSpace.from_dict(header["space"]), counts=z["counts"].copy(), n_sim=z["n_sim"].copy(),
            eps_pilot=z["eps_pilot"].copy(), metadata=header["metadata"],
        )
