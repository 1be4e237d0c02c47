r"""Variation matrices with common random numbers (CRN): the detector-systematic response.

A systematic's varied templates (:mod:`lzflow.response.variations`) need response matrices at
shifted detector parameters. Building each at the nominal's statistics would cost the nominal's
NEST time per shift; lzflow instead builds, at a reduced statistics (``n_samples_fraction`` f of the
nominal's events per energy bin, ``ceil(f N_j)``), a *pair*: the nominal detector and the shifted
one, on **identical events**, and the PDF stage applies their per-bin ratio to the full-statistics
nominal template (:func:`lzflow.pdfs.varied_template`). What is shared:

* the energy grid and the allocation: the nominal matrix's ``N_j`` (scaled by f);
* the energies and positions: chunk c of interaction t draws them from
  ``SeedSequence([seed, t, STAGE_CRN, c])`` exactly as :mod:`lzflow.response.nest` does, for every
  detector of the pair;
* NEST's own random numbers, **per event and per stage**: NEST's generator is one global stream, and
  the number of draws an event takes depends on the parameters (``std::binomial_distribution``
  rejects a different number of times at another probability), so one seed per chunk would
  decorrelate every event after the first one a shift touches. Here each event gets three seeds
  (yields+quanta, S1, S2) and NEST is reseeded before each stage: a g1 shift leaves every event's
  quanta and S2 bit-identical and its S1 a monotone function of the same uniforms.

Events are simulated one by one with ``NESTcalc.GetYields`` / ``GetQuanta`` (the detector's
``er_skewness``, :mod:`lzflow.response.skewness`) / ``GetS1`` / ``GetS2`` in the
order ``nestpy.array.runNESTvec`` uses (with a single seed per event the engine reproduces
``runNESTvec`` event for event; test), ≈ 12 µs per event against ≈ 9 µs batched.
The CRN nominal matrix of an interaction is made once (``systematic = "nominal"``) and shared by
every systematic; a zero shift reproduces it bit for bit.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import __version__
from ..io import atomic_path
from ..progress import progress
from ..space import TYPE_CODES, AnalysisSpace
from .matrix import ResponseMatrix
from .nest import CHUNK_SIZE, chunk_tasks, nest_version, sample_positions
from .skewness import skewness_argument

__all__ = ["STAGE_CRN", "VariationSet", "crn_allocation", "build_variations", "save_variations",
           "load_variations", "simulate_events", "variation_job"]

#: Seeding stage of the CRN runs (after pilot A 0, main 1, direct 2, pilot B 3).
STAGE_CRN = 4
FORMAT_VERSION = 1


@dataclass
class VariationSet:
    """Counts of one interaction type at several shifts of one systematic (or the CRN nominal),
    all on the same events: ``counts[k]`` is the (n_E, n_cS1, n_log10cS2) matrix at ``shifts[k]``."""

    interaction: str
    systematic: str
    shifts: tuple[int, ...]
    energy_edges: np.ndarray
    space: AnalysisSpace
    counts: np.ndarray
    n_sim: np.ndarray
    eps_pilot: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def response(self, shift: int) -> ResponseMatrix:
        """The matrix at one shift, as a :class:`ResponseMatrix` (fold it like any other)."""
        k = self.shifts.index(int(shift))
        return ResponseMatrix(self.interaction, self.energy_edges, self.space, self.counts[k], self.n_sim,
                              self.eps_pilot, {**self.metadata, "shift": int(shift)})


def crn_allocation(n_sim: np.ndarray, fraction: float) -> np.ndarray:
    """Events per energy bin of the CRN runs: ``ceil(fraction × N_j)`` where the nominal simulated
    any (the same support, so no energy bin the nominal folds is missing)."""
    n = np.asarray(n_sim, dtype=np.int64)
    return np.where(n > 0, np.ceil(n * float(fraction)), 0).astype(np.int64)


# ------------------------------------------------------------------------------ the per-event engine
_STATE: dict[str, Any] = {}


def _init(detectors: Sequence[Mapping[str, Any]], space: AnalysisSpace, edges: np.ndarray, seed: int,
          interaction: str) -> None:
    _STATE.clear()
    _STATE.update(detectors=[dict(d) for d in detectors], space=space, edges=edges, seed=int(seed),
                  interaction=interaction, nest={})


def _nest_for(k: int) -> dict[str, Any]:
    """This process's NEST objects of detector k (built on first use)."""
    if k not in _STATE["nest"]:
        import nestpy

        from ..detector import build_nest_detector

        det = _STATE["detectors"][k]
        nd = build_nest_detector(det)
        calc = nestpy.NESTcalc(nd)
        _STATE["nest"][k] = {"det": det, "nd": nd, "calc": calc, "g2": calc.CalculateG2(0),
                             "rho": calc.SetDensity(nd.get_T_Kelvin(), nd.get_p_bar())}
    return _STATE["nest"][k]


def simulate_events(state: Mapping[str, Any], interaction: str, energies_keV: np.ndarray, positions_mm: np.ndarray,
                    seeds: np.ndarray, space: AnalysisSpace, split_streams: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NEST, event by event, as ``runNESTvec`` does it; ``seeds`` (n, 3): NEST is reseeded with
    ``seeds[i, 0]`` before the yields, ``[i, 1]`` before S1 and ``[i, 2]`` before S2
    (``split_streams=False``: once per event with ``seeds[i, 0]``, i.e. ``runNESTvec`` of that one event).
    Returns (cS1, log10 cS2, passes) as :func:`lzflow.response.nest.run_nest`."""
    import nestpy

    det, nd, calc, g2, rho = state["det"], state["nd"], state["calc"], state["g2"], state["rho"]
    itype = getattr(nestpy.interactions, interaction)
    rng = nestpy.RandomGen.rndm()
    yields = det["yields"]
    nr, widths, er = ([float(v) for v in yields[k]] for k in ("nr", "widths", "er"))
    s1m = getattr(nestpy.S1CalculationMode, det.get("s1_mode", "Hybrid"))
    s2m = getattr(nestpy.S2CalculationMode, det.get("s2_mode", "Full"))
    t_k, p_bar, molar, top = nd.get_T_Kelvin(), nd.get_p_bar(), nd.get_molarMass(), nd.get_TopDrift()
    fixed = det.get("drift_field_V_cm")
    alpha = skewness_argument(det)
    n = len(energies_keV)
    cs1, cs2, nhits, s2raw = np.empty(n), np.empty(n), np.empty(n, dtype=np.int64), np.empty(n)
    for i in range(n):
        x, y, z = (float(v) for v in positions_mm[i])
        energy = float(energies_keV[i])
        fld = float(fixed) if fixed is not None else nd.FitEF(x, y, z)
        rng.set_seed(int(seeds[i, 0]))
        # FullCalculation's GetYields + GetQuanta, with the detector's ER skewness (-999: NEST's model)
        quanta = calc.GetQuanta(calc.GetYields(itype, energy, rho, fld, molar, 54.0, nr, er), rho, widths, alpha)
        v_drift = calc.SetDriftVelocity(t_k, rho, fld, p_bar)
        if split_streams:
            rng.set_seed(int(seeds[i, 1]))
        s1 = calc.GetS1(quanta, x, y, z, x, y, z, v_drift, v_drift, itype, 0, fld, energy, s1m, -1, [], [])
        if split_streams:
            rng.set_seed(int(seeds[i, 2]))
        s2 = calc.GetS2(quanta.electrons, x, y, z, x, y, z, (top - z) / v_drift, v_drift, 0, fld, s2m, -1,
                        [], [], g2)
        cs1[i], nhits[i], cs2[i], s2raw[i] = abs(s1[5]), abs(int(s1[8])), abs(s2[7]), abs(s2[6])
    with np.errstate(divide="ignore", invalid="ignore"):
        logy = np.where(cs2 > 0, np.log10(np.where(cs2 > 0, cs2, 1.0)), np.nan)
    passes = (nhits >= int(det["nest"]["coinLevel"])) & (s2raw >= space.s2_raw_min_phd)
    return cs1, logy, passes


def _chunk_events(chunk: int, j0: int, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(fine-bin index relative to j0, energies, positions, NEST seeds (n, 3)) of one CRN chunk: the
    same for every detector of a variation set."""
    ss = np.random.SeedSequence([_STATE["seed"], TYPE_CODES[_STATE["interaction"]], STAGE_CRN, int(chunk)])
    a, b = ss.spawn(2)
    rng = np.random.default_rng(a)
    edges = _STATE["edges"]
    nb = len(counts)
    jrel = np.repeat(np.arange(nb), counts)
    lnlo = np.log(edges[j0:j0 + nb])
    lnw = np.log(edges[j0 + 1:j0 + nb + 1]) - lnlo
    energies = np.exp(lnlo[jrel] + lnw[jrel] * rng.random(jrel.size))
    positions = sample_positions(rng, jrel.size, _STATE["detectors"][0]["fiducial"])
    seeds = (b.generate_state(3 * jrel.size, np.uint32) >> 1).reshape(-1, 3)
    return jrel, energies, positions, seeds


def _run_task(task: tuple[int, int, int, np.ndarray]) -> tuple[int, int, np.ndarray]:
    """One chunk at detector k → (k, j0, counts block (bins, n_cS1, n_log10cS2))."""
    k, chunk, j0, counts = task
    space = _STATE["space"]
    jrel, energies, positions, seeds = _chunk_events(chunk, j0, counts)
    cs1, logy, passes = simulate_events(_nest_for(k), _STATE["interaction"], energies, positions, seeds, space)
    ok, ix, iy = space.bin_events(cs1, logy)
    ok &= passes
    nb = len(counts)
    nx, ny = space.shape
    flat = (jrel[ok] * nx + ix[ok]) * ny + iy[ok]
    return k, j0, np.bincount(flat, minlength=nb * nx * ny).astype(np.int64).reshape(nb, nx, ny)


def build_variations(detectors: Sequence[Mapping[str, Any]], shifts: Sequence[int], nominal: ResponseMatrix, *,
                     systematic: str, fraction: float, seed: int, n_workers: int = 1,
                     chunk_size: int = CHUNK_SIZE, metadata: Mapping[str, Any] | None = None) -> VariationSet:
    """The counts of ``nominal``'s interaction at each detector (one per shift), on common events:
    ``crn_allocation(nominal.n_sim, fraction)`` events per energy bin, seeded per chunk from ``seed``
    (bit-identical for any ``n_workers``)."""
    t = nominal.interaction
    n_sim = crn_allocation(nominal.n_sim, fraction)
    space, edges = nominal.space, nominal.energy_edges
    counts = np.zeros((len(detectors), len(edges) - 1, *space.shape), dtype=np.int64)
    tasks = [(k, c, j0, block) for (_, _, c, j0, block) in chunk_tasks(t, STAGE_CRN, n_sim, chunk_size)
             for k in range(len(detectors))]
    initargs = ([dict(d) for d in detectors], space, edges, int(seed), t)
    desc = f"NEST {t} {systematic} x{len(detectors)}"
    if n_workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init, initargs=initargs) as pool:
            futures = [pool.submit(_run_task, task) for task in tasks]
            for fut in progress(as_completed(futures), total=len(tasks), desc=desc, unit="chunk"):
                k, j0, block = fut.result()
                counts[k, j0:j0 + len(block)] += block
    else:
        _init(*initargs)
        try:
            for task in progress(tasks, total=len(tasks), desc=desc, unit="chunk"):
                k, j0, block = _run_task(task)
                counts[k, j0:j0 + len(block)] += block
        finally:
            _STATE.clear()
    meta = {"format_version": FORMAT_VERSION, "interaction": t, "systematic": systematic,
            "shifts": [int(z) for z in shifts], "detector_hashes": [d.get("hash") for d in detectors],
            "seed": int(seed), "n_samples_fraction": float(fraction), "n_total": int(n_sim.sum()),
            "chunk_size": int(chunk_size), "nominal_n_total": int(nominal.n_sim.sum()),
            "nominal_detector_hash": nominal.metadata.get("detector_hash"), "nest_version": nest_version(),
            "lzflow_version": __version__, **dict(metadata or {})}
    return VariationSet(t, systematic, tuple(int(z) for z in shifts), edges, space, counts, n_sim,
                        nominal.eps_pilot.copy(), meta)


def save_variations(vs: VariationSet, path: str | Path) -> Path:
    """Save to ``.npz`` (compressed) atomically."""
    path = Path(path)
    header = json.dumps({"interaction": vs.interaction, "systematic": vs.systematic, "shifts": list(vs.shifts),
                         "space": vs.space.to_dict(), "metadata": vs.metadata}, sort_keys=True)
    with atomic_path(path, suffix=path.suffix) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, counts=vs.counts, n_sim=vs.n_sim, eps_pilot=vs.eps_pilot,
                            energy_edges=vs.energy_edges, header=np.array(header))
    return path


def load_variations(path: str | Path) -> VariationSet:
    """Load a file written by :func:`save_variations`."""
    with np.load(Path(path), allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        if header["metadata"].get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: variation format {header['metadata'].get('format_version')} is not "
                             f"{FORMAT_VERSION}")
        return VariationSet(header["interaction"], header["systematic"], tuple(header["shifts"]),
                            z["energy_edges"].copy(), AnalysisSpace.from_dict(header["space"]), z["counts"].copy(),
                            z["n_sim"].copy(), z["eps_pilot"].copy(), header["metadata"])


def variation_job(detector: Mapping[str, Any], spec: Mapping[str, Any], nominal: ResponseMatrix, n_workers: int,
                  out: str | Path) -> str:
    """The response stage's variation job (``lzflow response --nominal``): spec ``systematic``
    (``nominal`` or a parameter of :data:`~lzflow.response.variations.PARAMETERS`), ``parameter``
    (its resolved entry), ``n_samples_fraction``, ``seed``. Returns the log line."""
    from .variations import NOMINAL, SHIFTS, physical_values, shifted_detector

    name = spec["systematic"]
    if nominal.interaction != spec["interaction"]:
        raise ValueError(f"--nominal is the {nominal.interaction} response; the spec is for {spec['interaction']}")
    if name == NOMINAL:
        shifts, dets, extra = (0,), [dict(detector)], {}
    else:
        shifts = SHIFTS
        dets = [shifted_detector(detector, name, spec["parameter"], z) for z in shifts]
        extra = {"parameter": dict(spec["parameter"]), "physical": physical_values(name, spec["parameter"])}
    vs = build_variations(dets, shifts, nominal, systematic=name, fraction=spec["n_samples_fraction"],
                          seed=spec["seed"], n_workers=n_workers, metadata=extra)
    save_variations(vs, out)
    in_roi = ", ".join(f"{z:+d}: {int(c.sum()):,}" for z, c in zip(shifts, vs.counts))
    return f"variations {vs.interaction} {name}: {vs.n_sim.sum():,} events per shift, in the ROI {in_roi} -> {out}"
