"""NEST runs: seeded, chunked simulation of recoil events in the fiducial volume.

:func:`run_nest` runs ``nestpy.array.runNESTvec`` on given energies and positions with the
detector dictionary's field, yields and S1/S2 modes; :class:`ChunkRunner` runs chunk tasks
(:func:`chunk_tasks`) in-process or on a process pool; :func:`simulate_direct` is the direct
("naive") simulation of given energies used for validation and benchmarks.

Cost of NEST events. NEST's S1 3-fold coincidence probability is computed from binomial
coefficients of numPMTs for 3 ≤ spike ≤ 10, which makes in-ROI events near threshold 3–10× slower
(≈ 25–30 µs per event) than sub-threshold (≈ 3 µs) or larger (≈ 8 µs) ones; the response spends
nearly all its events in the ROI, so its events are the expensive kind — the gain comes from
sharing and from not simulating energies outside the ROI, not from cheaper events.

Reproducibility. Events are generated in fixed-size chunks; chunk i of interaction t gets
``numpy.random.SeedSequence([seed, t, stage, i])`` (stage 0/3 = pilot A/B, 1 = main, 2 = direct
simulation; t = NEST's enum value, :data:`lzflow.space.TYPE_CODES`), spawned into one stream for
energies/positions and one 31-bit NEST seed. NEST's RNG is process-global, so chunks run in worker
*processes*; integer counts are summed in any order, so the matrix is bit-identical for any
number of workers.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..progress import progress
from ..space import TYPE_CODES, AnalysisSpace, base_interaction, canonical_interaction, charge_yield_scale
from .skewness import run_events, skewness_argument, uses_event_path

__all__ = [
    "CHUNK_SIZE",
    "CHARGE_YIELD_PARAMS",
    "charge_scaled_er_params",
    "STAGE_PILOT",
    "STAGE_MAIN",
    "STAGE_DIRECT",
    "STAGE_PILOT_B",
    "ChunkRunner",
    "chunk_inputs",
    "chunk_tasks",
    "cost_per_event",
    "longest_first",
    "timed_chunk",
    "init_worker",
    "nest_version",
    "run_chunk",
    "run_nest",
    "sample_positions",
    "simulate_direct",
]

#: Events per simulation chunk (2**17): the unit of seeding and of parallel work.
CHUNK_SIZE = 1 << 17
#: Seeding stages (the third SeedSequence entry): pilot A, main simulation, direct simulation, pilot B.
STAGE_PILOT, STAGE_MAIN, STAGE_DIRECT, STAGE_PILOT_B = 0, 1, 2, 3


def _default_builder() -> Callable[[Mapping[str, Any]], Any]:
    from ..detector import build_nest_detector

    return build_nest_detector


def sample_positions(rng: np.random.Generator, n: int, fiducial: Mapping[str, float]) -> np.ndarray:
    """(n, 3) positions [mm] uniform in the fiducial cylinder: r = r_max √u, φ uniform, z uniform in
    [z_min, z_max] (z from the cathode, upwards)."""
    r = fiducial["r_max_mm"] * np.sqrt(rng.random(n))
    phi = rng.random(n) * (2 * math.pi)
    z = fiducial["z_min_mm"] + (fiducial["z_max_mm"] - fiducial["z_min_mm"]) * rng.random(n)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def run_nest(nest_detector: Any, detector: Mapping[str, Any], interaction: str, energies_keV: np.ndarray,
             positions_mm: np.ndarray, seed: int, space: AnalysisSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``nestpy.array.runNESTvec`` with the detector dict's field, yields, widths and S1/S2 modes
    (an ER-like type of a detector with a fixed ``er_skewness``: NEST event by event with that
    skewness, :mod:`lzflow.response.skewness`).

    Returns (cS1 [phd], log10 cS2 [phd], passes) where ``passes`` is the S1 coincidence
    (``s1_nhits_thr >= coinLevel``) and raw-S2 (``s2r_phd >= s2_raw_min_phd``) cut; the cS1/cS2
    ROI is applied by :meth:`AnalysisSpace.bin_events`.
    """
    import nestpy

    field = detector.get("drift_field_V_cm")
    yields = detector["yields"]
    er = charge_scaled_er_params(yields["er"], charge_yield_scale(interaction))
    if uses_event_path(detector, base_interaction(interaction)):  # a fixed ER skewness: NEST event by event
        cs1, cs2, nhits, s2r = run_events(nest_detector, detector, base_interaction(interaction), energies_keV,
                                          positions_mm, seed, er, skewness_argument(detector))
        return _observables(cs1, cs2, nhits, s2r, detector, space)
    res = nestpy.array.runNESTvec(
        nest_detector, getattr(nestpy.interactions, base_interaction(interaction)),
        np.ascontiguousarray(energies_keV, dtype=np.float64), np.ascontiguousarray(positions_mm, dtype=np.float64),
        -1.0 if field is None else float(field), int(seed),
        er, [float(v) for v in yields["nr"]], [float(v) for v in yields["widths"]],
        getattr(nestpy.S1CalculationMode, detector.get("s1_mode", "Hybrid")),
        getattr(nestpy.S2CalculationMode, detector.get("s2_mode", "Full")),
        False,
    )
    return _observables(res.s1c_phd, res.s2c_phd, res.s1_nhits_thr, res.s2r_phd, detector, space)


def _observables(s1c_phd: Any, s2c_phd: Any, s1_nhits_thr: Any, s2r_phd: Any, detector: Mapping[str, Any],
                 space: AnalysisSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cS1, log10 cS2 (NaN where cS2 <= 0), passes: S1 coincidence and raw-S2 cut) from NEST's outputs."""
    cs1 = np.asarray(s1c_phd, dtype=float)
    cs2 = np.asarray(s2c_phd, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(cs2 > 0, np.log10(np.where(cs2 > 0, cs2, 1.0)), np.nan)
    passes = ((np.asarray(s1_nhits_thr) >= int(detector["nest"]["coinLevel"]))
              & (np.asarray(s2r_phd, dtype=float) >= space.s2_raw_min_phd))
    return cs1, y, passes


#: Indices of NEST's β charge-yield parameters m1, m2 and m5 in the ER yield vector (``ERYieldsParam``).
CHARGE_YIELD_PARAMS = (0, 1, 4)


def charge_scaled_er_params(er: Sequence[float], q: float) -> list[float]:
    r"""NEST's ER yield parameters with the β charge yield scaled by ``q`` (``q = 1``: unchanged).

    NEST's β charge yield (NEST v2, Szydagis et al., arXiv:2211.10726, the β model of ``GetYieldBetaGR``) is

    .. math:: Q_y(E) = m_1 + \frac{m_2 - m_1}{[1 + (E/m_3)^{m_4}]^{m_9}}
              + m_5 + \frac{0 - m_5}{[1 + (E/m_7)^{m_8}]^{m_{10}}},

    linear in (m1, m2, m5); the light yield is :math:`N_q/E - Q_y` with the quanta :math:`N_q` fixed by
    the work function, so m1, m2, m5 × q give :math:`Q_y \to q\,Q_y` at every energy with the quanta
    conserved (the recombined electrons become photons). The parameters must be explicit: NEST's −1
    ("use the built-in field-dependent default") cannot be scaled, and is refused.
    """
    values = [float(v) for v in er]
    if q == 1.0:
        return values
    for i in CHARGE_YIELD_PARAMS:
        if not values[i] > 0:
            raise ValueError(f"detector yields.er[{i}] = {values[i]:g}: a charge-scaled beta model (Q = {q:g}) needs "
                             "explicit ER charge-yield parameters m1, m2, m5 (NEST's -1 default cannot be scaled)")
        values[i] *= q
    return values


def _chunk_streams(seed: int, interaction: str, stage: int, chunk: int) -> tuple[np.random.Generator, int]:
    """(generator for energies and positions, 31-bit NEST seed) of one chunk, from
    ``SeedSequence([seed, TYPE_CODES[interaction], stage, chunk])``; a charge-scaled β model uses β's
    code, i.e. the β response's events (common random numbers: the two differ by the yields alone)."""
    ss = np.random.SeedSequence([int(seed), TYPE_CODES[base_interaction(interaction)], stage, int(chunk)])
    a, b = ss.spawn(2)
    return np.random.default_rng(a), int(b.generate_state(1, np.uint32)[0] >> 1)


# Worker state (one per process; NEST's RNG is process-global, never use threads).
_WORKER: dict[str, Any] = {}


def init_worker(detector: Mapping[str, Any], builder: Callable | None, space: AnalysisSpace,
                edges: Mapping[str, np.ndarray], seed: int) -> None:
    """Process-pool initializer (or in-process set-up): build this process's NEST detector once and
    keep the detector dict, space, energy grids and base seed for :func:`run_chunk`."""
    builder = builder or _default_builder()
    _WORKER.clear()
    _WORKER.update(detector=dict(detector), nest=builder(detector), space=space, edges=dict(edges), seed=int(seed))


def chunk_inputs(task: tuple[str, int, int, int, np.ndarray], seed: int, edges: np.ndarray | None,
                 fiducial: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
    """NEST's inputs for one chunk task: (energies [keV], (n, 3) positions [mm], 31-bit NEST seed, fine-bin
    index of each event relative to j0, or None for a direct chunk).

    Pure function of (seed, task): energies uniform in ln E inside fine bins j0 + m (``counts[m]``
    events each, in bin order) from the chunk's stream, then the positions; a direct chunk's energies
    are the task's own. What :func:`run_chunk` simulates, and what a benchmark feeds plain nestpy.
    """
    interaction, stage, chunk, j0, counts = task
    rng, nest_seed = _chunk_streams(seed, interaction, stage, chunk)
    if stage == STAGE_DIRECT:
        E = np.asarray(counts, dtype=float)
        return E, sample_positions(rng, E.size, fiducial), nest_seed, None
    nb = len(counts)
    jrel = np.repeat(np.arange(nb), counts)
    lnlo = np.log(edges[j0:j0 + nb])
    lnw = np.log(edges[j0 + 1:j0 + nb + 1]) - lnlo
    E = np.exp(lnlo[jrel] + lnw[jrel] * rng.random(jrel.size))
    return E, sample_positions(rng, jrel.size, fiducial), nest_seed, jrel


def run_chunk(task: tuple[str, int, int, int, np.ndarray]) -> tuple[str, int, int, int, Any]:
    """Simulate one chunk: ``counts[m]`` events in fine bins j0 + m. Pilot chunks return passing
    events per bin (1-D); main chunks the (bins, n_cS1, n_log10cS2) counts block; direct chunks
    (given energies) return (cS1, log10 cS2, in-ROI mask)."""
    interaction, stage, chunk, j0, counts = task
    det, space = _WORKER["detector"], _WORKER["space"]
    E, pos, nest_seed, jrel = chunk_inputs(task, _WORKER["seed"], _WORKER["edges"].get(interaction), det["fiducial"])
    cs1, y, passes = run_nest(_WORKER["nest"], det, interaction, E, pos, nest_seed, space)
    if stage == STAGE_DIRECT:
        ok = space.bin_events(cs1, y)[0] & passes
        return interaction, stage, chunk, j0, (cs1, y, ok)
    nb = len(counts)
    ok, ix, iy = space.bin_events(cs1, y)
    ok &= passes
    if stage in (STAGE_PILOT, STAGE_PILOT_B):
        return interaction, stage, chunk, j0, np.bincount(jrel[ok], minlength=nb).astype(np.int64)
    nx, ny = space.shape
    flat = (jrel[ok] * nx + ix[ok]) * ny + iy[ok]
    block = np.bincount(flat, minlength=nb * nx * ny).astype(np.int64).reshape(nb, nx, ny)
    return interaction, stage, chunk, j0, block


def chunk_tasks(interaction: str, stage: int, n_per_bin: np.ndarray, chunk_size: int) -> list[tuple]:
    """Cut the concatenated per-bin event list into chunks of ``chunk_size`` events."""
    n_per_bin = np.asarray(n_per_bin, dtype=np.int64)
    cum = np.concatenate([[0], np.cumsum(n_per_bin)])
    total = int(cum[-1])
    tasks = []
    for c, start in enumerate(range(0, total, chunk_size)):
        stop = min(start + chunk_size, total)
        j0 = int(np.searchsorted(cum, start, side="right") - 1)
        j1 = int(np.searchsorted(cum, stop, side="left"))
        counts = np.minimum(cum[j0 + 1:j1 + 1], stop) - np.maximum(cum[j0:j1], start)
        tasks.append((interaction, stage, c, j0, counts.astype(np.int64)))
    return tasks


def timed_chunk(task: tuple[str, int, int, int, np.ndarray]) -> tuple[tuple, float]:
    """:func:`run_chunk`'s result and the CPU seconds it took in its process (``time.process_time``:
    insensitive to other load on the CPUs)."""
    import time

    t0 = time.process_time()
    out = run_chunk(task)
    return out, time.process_time() - t0


class ChunkRunner:
    """Runs chunk tasks in-process (n_workers = 1) or on a process pool.

    ``cpu_seconds[(interaction, stage, chunk)]`` records each finished chunk's CPU time (what
    :func:`cost_per_event` learns the main stage's schedule from); it never touches a result.
    """

    def __init__(self, n_workers: int, initargs: tuple, mp_context: str | None):
        self.n_workers = max(1, int(n_workers))
        self.initargs = initargs
        self.pool = None
        self.cpu_seconds: dict[tuple[str, int, int], float] = {}
        if self.n_workers > 1:
            import multiprocessing as mp

            ctx = mp.get_context(mp_context or ("fork" if "fork" in mp.get_all_start_methods() else "spawn"))
            self.pool = ProcessPoolExecutor(self.n_workers, mp_context=ctx, initializer=init_worker,
                                            initargs=initargs)
        else:
            init_worker(*initargs)

    def map_unordered(self, tasks: Iterable[tuple]) -> Iterator[tuple]:
        """:func:`run_chunk`'s results, in completion order on a pool; the pool takes the tasks in
        the given order (give the longest first: :func:`longest_first`)."""
        if self.pool is None:
            done = map(timed_chunk, tasks)
        else:
            done = (fut.result() for fut in as_completed([self.pool.submit(timed_chunk, t) for t in tasks]))
        for out, cpu in done:
            self.cpu_seconds[tuple(out[:3])] = cpu
            yield out

    def close(self) -> None:
        """Shut the pool down (or forget the in-process worker state)."""
        if self.pool is not None:
            self.pool.shutdown()
        else:
            _WORKER.clear()


def cost_per_event(tasks: Sequence[tuple], cpu_seconds: Mapping[tuple[str, int, int], float],
                   n_bins: Mapping[str, int]) -> dict[str, np.ndarray]:
    r"""CPU seconds per event in each fine energy bin, per interaction, learnt from finished chunks.

    A chunk that took :math:`T` CPU-s for :math:`n` events charges :math:`T/n` to each of its events;
    bin j's cost is the mean over the events that fell in it, and bins no chunk covered take their
    nearest measured neighbour's (``numpy.interp``, flat beyond the ends). NEST's cost per event
    varies 5–10× with energy (near-threshold S1 coincidence, large S2s: module docstring), so
    equal-size chunks are far from equal work.
    """
    num = {t: np.zeros(n, dtype=float) for t, n in n_bins.items()}
    den = {t: np.zeros(n, dtype=float) for t, n in n_bins.items()}
    for interaction, stage, chunk, j0, counts in tasks:
        cpu = cpu_seconds.get((interaction, stage, chunk))
        n = int(np.sum(counts))
        if cpu is None or n == 0 or interaction not in num:
            continue
        num[interaction][j0:j0 + len(counts)] += cpu / n * counts
        den[interaction][j0:j0 + len(counts)] += counts
    out = {}
    for t in n_bins:
        seen = np.flatnonzero(den[t] > 0)
        if seen.size == 0:
            out[t] = np.ones(n_bins[t])
            continue
        out[t] = np.interp(np.arange(n_bins[t]), seen, num[t][seen] / den[t][seen])
    return out


def longest_first(tasks: Sequence[tuple], cost: Mapping[str, np.ndarray]) -> list[tuple]:
    """The tasks in decreasing estimated cost Σ_m counts[m]·cost[j0 + m] (ties keep their order):
    longest-processing-time-first scheduling, so the pool's last chunks are its cheapest and no
    worker idles long at the end. The order never changes a result (each chunk's seed is its index;
    integer sums are order-free)."""
    est = [float(np.dot(counts, cost[t][j0:j0 + len(counts)])) if t in cost else 0.0
           for t, _, _, j0, counts in tasks]
    return [tasks[i] for i in sorted(range(len(tasks)), key=lambda i: -est[i])]


def simulate_direct(detector: Mapping[str, Any], interaction: str, energies_keV: np.ndarray, *, seed: int = 0,
                    space: AnalysisSpace | None = None, n_workers: int = 1, chunk_size: int = CHUNK_SIZE,
                    builder: Callable[[Mapping[str, Any]], Any] | None = None,
                    mp_context: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Direct NEST simulation of given recoil energies (positions uniform in the fiducial volume),
    chunked and seeded like the response matrix (stage 2), so identical for any ``n_workers``.

    Returns (cS1, log10 cS2, in_roi) per event, in input order. This is the "naive" approach
    the response matrix replaces; used for validation and benchmarks.
    """
    t = canonical_interaction(interaction)
    space = space or AnalysisSpace()
    E = np.asarray(energies_keV, dtype=float)
    tasks = [(t, STAGE_DIRECT, c, start, E[start:start + chunk_size])
             for c, start in enumerate(range(0, E.size, chunk_size))]
    cs1, y, ok = np.empty(E.size), np.empty(E.size), np.zeros(E.size, dtype=bool)
    runner = ChunkRunner(n_workers, (dict(detector), builder, space, {}, int(seed)), mp_context)
    try:
        for _, _, _, start, (a, b, c) in progress(runner.map_unordered(tasks), total=len(tasks),
                                                  desc=f"NEST {t} direct", unit="chunk"):
            cs1[start:start + a.size], y[start:start + a.size], ok[start:start + a.size] = a, b, c
    finally:
        runner.close()
    return cs1, y, ok


def nest_version() -> str:
    """The installed nestpy's version from its package metadata (``importlib.metadata``),
    recorded as ``nest_version`` in every response matrix; a nestpy release pins the NEST
    release it bundles. nestpy's own ``__nest_version__`` attribute reads ``0.0.0`` (nestpy
    2.1.3), so it is not used."""
    from importlib import metadata

    try:
        return metadata.version("nestpy")
    except metadata.PackageNotFoundError:  # pragma: no cover - nestpy is a dependency
        return "not installed"
