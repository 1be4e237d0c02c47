#!/usr/bin/env python
"""Benchmark: NEST events/s of plain nestpy against lzflow's chunk runner and the response job.

In one run, on the configuration's detector and response settings (``pdf.n_samples``, ``pdf.seed``,
``pdf.workers``):

(a) the response job of each interaction type the analysis uses (NR, beta), built like the
    workflow's ``response`` rule (one type per job, ``pdf.workers`` processes): wall, CPU, NEST
    events/s and *effective* events/s (``n_samples`` per PDF / wall: what a direct simulation
    would have to reach to match every PDF folded from the matrix);
(b) a representative sample of that job's main chunks (every k-th, ``--events`` per type), the same
    energies, positions and NEST seeds (:func:`lzflow.response.nest.chunk_inputs`) fed to
    - plain nestpy: ``nestpy.array.runNESTvec`` in this process, then on a 2-process pool
      (``multiprocessing.Pool``, fork, detector built once per worker, results shipped back);
    - lzflow's :class:`~lzflow.response.nest.ChunkRunner` with 1 and 2 workers (histogrammed in the
      workers); its counts are checked equal to plain nestpy's events binned the same way.

CPU time is this process's plus its joined children's (``resource.getrusage``): µs of CPU per event
is the load-insensitive figure on a shared host; events/s is wall-clock.

Usage::

    python benchmarks/bench_nest.py [--events 1048576] [--config config/config.yaml] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
warnings.filterwarnings("ignore", message="Default WIMP parameters are changed")

import nestpy  # noqa: E402,F401  (imported once, before any timing: every mode, and forked workers, start with it)
from lzflow.config import load_config  # noqa: E402
from lzflow.layout import background_interaction, used_interactions  # noqa: E402
from lzflow.response import build_responses  # noqa: E402
from lzflow.response.allocation import DEFAULT_ENERGY_RANGES_KEV, energy_edges  # noqa: E402
from lzflow.response.nest import CHUNK_SIZE, STAGE_MAIN, ChunkRunner, chunk_inputs, chunk_tasks  # noqa: E402
from lzflow.space import AnalysisSpace  # noqa: E402

_PLAIN: dict = {}


def _cpu_s() -> float:
    """CPU seconds of this process plus its terminated (joined) children."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _plain_init(det: dict) -> None:
    """Pool initializer: this process's nestpy detector."""
    from lzflow.detector import build_nest_detector

    _PLAIN.update(det=det, nest=build_nest_detector(det))


def _plain_run(item: tuple) -> tuple[np.ndarray, ...]:
    """Plain nestpy: ``runNESTvec`` on given energies/positions with the detector's field, yields and
    modes; returns cS1, cS2, S1 hits above threshold and raw S2 (what a user keeps)."""
    import nestpy

    interaction, E, pos, seed = item
    det = _PLAIN["det"]
    y, field = det["yields"], det.get("drift_field_V_cm")
    res = nestpy.array.runNESTvec(
        _PLAIN["nest"], getattr(nestpy.interactions, interaction), E, pos, -1.0 if field is None else float(field),
        int(seed), [float(v) for v in y["er"]], [float(v) for v in y["nr"]], [float(v) for v in y["widths"]],
        getattr(nestpy.S1CalculationMode, det.get("s1_mode", "Hybrid")),
        getattr(nestpy.S2CalculationMode, det.get("s2_mode", "Full")), False)
    return (np.asarray(res.s1c_phd, dtype=float), np.asarray(res.s2c_phd, dtype=float),
            np.asarray(res.s1_nhits_thr), np.asarray(res.s2r_phd, dtype=float))


def _timed(label: str, n_events, fn) -> tuple[dict, object]:
    """Run ``fn()``: wall, CPU (with joined children), events/s; ``n_events`` may be a function of the output."""
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), _cpu_s()
    out = fn()
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    n_events = n_events(out) if callable(n_events) else n_events
    row = {"mode": label, "events": int(n_events), "wall_s": wall, "cpu_s": cpu,
           "events_per_s": n_events / wall, "cpu_us_per_event": cpu / n_events * 1e6,
           "load": [load0, os.getloadavg()[0]]}
    print(f"  {label:34s} {n_events:>11,d} ev {wall:7.2f} s {cpu:7.1f} CPU-s {row['events_per_s']:>10,.0f} ev/s "
          f"{row['cpu_us_per_event']:6.2f} CPU-us/ev  (load {load0:.1f}->{row['load'][1]:.1f})", flush=True)
    return row, out


def _plain(det: dict, items: list, workers: int) -> list:
    if workers == 1:
        _plain_init(det)
        return [_plain_run(it) for it in items]
    with mp.get_context("fork").Pool(workers, initializer=_plain_init, initargs=(det,)) as pool:
        out = pool.map(_plain_run, items, chunksize=1)
        pool.close()
        pool.join()
    return out


def _lzflow(det: dict, space: AnalysisSpace, edges: dict, seed: int, tasks: list, workers: int) -> list:
    runner = ChunkRunner(workers, (dict(det), None, space, edges, seed), None)
    try:
        return list(runner.map_unordered(tasks))
    finally:
        runner.close()


def _binned(space: AnalysisSpace, det: dict, task: tuple, jrel: np.ndarray, res: tuple) -> np.ndarray:
    """Plain nestpy's events histogrammed like a main chunk (for the equality check)."""
    s1c, s2c, nhits, s2r = res
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(s2c > 0, np.log10(np.where(s2c > 0, s2c, 1.0)), np.nan)
    ok, ix, iy = space.bin_events(s1c, y)
    ok &= (nhits >= int(det["nest"]["coinLevel"])) & (s2r >= space.s2_raw_min_phd)
    nx, ny = space.shape
    nb = len(task[4])
    return np.bincount((jrel[ok] * nx + ix[ok]) * ny + iy[ok], minlength=nb * nx * ny).reshape(nb, nx, ny)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--events", type=int, default=1 << 20, help="main-stage events per type fed to every path")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)

    cfg = load_config(Path(args.config))
    det, pdf = cfg["detector"], cfg["pdf"]
    space = AnalysisSpace.from_dict(pdf)
    seed, ns, workers = int(pdf["seed"]), float(pdf["n_samples"]), int(pdf["workers"])
    types = used_interactions(cfg)
    print(f"detector {det['name']}, n_samples {ns:.3g}, pdf.workers {workers}, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}")
    rows = []
    for t in types:
        print(f"{t}:")
        row, resp = _timed(f"response job ({workers} workers)", lambda r: r.n_total, lambda: build_responses(
            det, [t], n_samples=ns, seed=seed, n_workers=workers, space=space)[t])
        n_pdfs = (len(cfg["signal"]["masses_GeV"]) if t == "NR" else 0) + sum(
            background_interaction(cfg, b) == t for b in cfg["backgrounds"])
        row.update(effective_events_per_s=ns / row["wall_s"], interaction=t, n_pdfs=n_pdfs)
        print(f"    -> effective {row['effective_events_per_s']:,.0f} ev/s per PDF (n_samples {ns:.3g} / wall), "
              f"x {n_pdfs} PDFs folded from it = {n_pdfs * ns / row['wall_s']:,.0f} ev/s; "
              f"{100 * row['cpu_s'] / (workers * row['wall_s']):.0f} % of {workers} cores")
        rows.append(row)
        edges = {t: energy_edges(*DEFAULT_ENERGY_RANGES_KEV[t])}
        assert np.array_equal(edges[t], resp.energy_edges)
        all_tasks = chunk_tasks(t, STAGE_MAIN, resp.n_sim, CHUNK_SIZE)
        m = max(1, min(len(all_tasks), args.events // CHUNK_SIZE))
        tasks = [all_tasks[i] for i in np.unique(np.linspace(0, len(all_tasks) - 1, m).round().astype(int))]
        inputs = [chunk_inputs(task, seed, edges[t], det["fiducial"]) for task in tasks]
        items = [(t, np.ascontiguousarray(E), np.ascontiguousarray(pos), s) for E, pos, s, _ in inputs]
        n = sum(E.size for _, E, _, _ in items)
        print(f"  {len(tasks)} of its {len(all_tasks)} main chunks (every ~{len(all_tasks) / len(tasks):.0f}th), "
              f"{n:,d} events:")
        plain = None
        for w in (1, 2):
            row, plain = _timed(f"plain nestpy runNESTvec, {w} proc", n, lambda: _plain(det, items, w))
            rows.append({**row, "interaction": t})
        for w in (1, 2):
            row, lz = _timed(f"lzflow ChunkRunner, {w} worker(s)", n, lambda: _lzflow(det, space, edges, seed, tasks, w))
            rows.append({**row, "interaction": t})
        got = {c: block for _, _, c, _, block in lz}
        same = all(np.array_equal(got[task[2]], _binned(space, det, task, inp[3], res))
                   for task, inp, res in zip(tasks, inputs, plain))
        print(f"  lzflow's counts == plain nestpy's events binned alike: {same}")
        if not same:
            return 1
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
