#!/usr/bin/env python
"""Benchmark: response-matrix PDFs (lzflow) versus direct NEST simulation per PDF (naive).

(a) lzflow: build the NR, beta and gammaRay response matrices sized for ``--n-samples`` effective
    events per reference spectrum, then fold all default sources (9 WIMP masses + 11 backgrounds).
(b) naive: simulate each source's spectrum directly with NEST (n_samples events per PDF). By
    default its wall time is *extrapolated*: every source's spectrum is sampled (``--naive-rate-events``
    events, inverse CDF over the source's own energy range) and run on the same worker pool to
    measure its rate, then time = Σ_sources n_samples / rate. ``--naive-full`` runs it for real
    (use a small ``--n-samples``) and also compares each naive histogram with the folded PDF (χ²).

Usage::

    python benchmarks/bench_pdfs.py --n-samples 1e6 --workers 2 [--naive-full] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
warnings.filterwarnings("ignore", message="Default WIMP parameters are changed")

from lzflow.pdfs import fold_spectrum  # noqa: E402
from lzflow.response import build_responses  # noqa: E402
from lzflow.response.nest import CHUNK_SIZE, STAGE_DIRECT, init_worker, run_chunk  # noqa: E402
from lzflow.space import INTERACTIONS, AnalysisSpace, canonical_interaction  # noqa: E402


# ------------------------------------------------------------------------------------------
# Sources (lzflow.sources)
# ------------------------------------------------------------------------------------------
def default_sources(config_path: Path):
    """[(name, interaction, spectrum, (lo, hi))] and the resolved config."""
    from lzflow.config import load_config
    from lzflow.sources import background_source, wimp_source

    cfg = load_config(config_path)
    sources = []
    for m, label in zip(cfg["signal"]["masses_GeV"], cfg["signal"]["mass_labels"]):
        s = wimp_source(dict(mass_GeV=m, mass_label=label, sigma_ref_cm2=cfg["signal"]["sigma_ref_cm2"],
                             halo=cfg["signal"]["halo"], exposure_t_yr=cfg["exposure"]["exposure_t_yr"]))
        sources.append((s.name, s.interaction, s.spectrum, s.energy_range_keV))
    for name, b in cfg["backgrounds"].items():
        s = background_source(dict(name=name, **b))
        sources.append((s.name, s.interaction, s.spectrum, s.energy_range_keV))
    return sources, cfg


def sample_spectrum(f, lo: float, hi: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Inverse-CDF sampling of dN/dE on [lo, hi] (hi = inf cut at 2 MeV) from a fine log table."""
    hi = min(hi, 2000.0)
    grid = np.unique(np.concatenate([[lo], np.geomspace(max(lo, 1e-3), hi, 40001)]))
    pdf = np.clip(np.nan_to_num(np.asarray(f(grid), dtype=float)), 0, None)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    return np.interp(rng.random(n), cdf, grid)


def _cpu_s() -> float:
    """CPU seconds of this process plus its terminated (waited-for) children."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _timed_chunk(task):
    """:func:`run_chunk` plus the CPU time it took in the worker (robust to other load on the CPUs)."""
    t = time.process_time()
    out = run_chunk(task)
    return out, time.process_time() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-samples", type=float, default=1e7, help="effective events per PDF (default 1e7)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20180219)
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--naive-rate-events", type=int, default=100000, help="events per source to time the naive path")
    ap.add_argument("--naive-full", action="store_true", help="run the naive simulation for real (small n-samples!)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    sources, cfg = default_sources(Path(args.config))
    det = cfg["detector"]
    space = AnalysisSpace.from_dict(cfg["pdf"])
    types = sorted({canonical_interaction(s[1]) for s in sources}, key=INTERACTIONS.index)
    ns = float(args.n_samples)
    print(f"detector {det['name']} ({det['hash'][:12]}), {len(sources)} PDFs, n_samples = {ns:.3g}, "
          f"workers = {args.workers}, cpus = {os.cpu_count()}")

    # (a) lzflow: response matrices + folds -----------------------------------------------
    t0, c0 = time.perf_counter(), _cpu_s()
    responses = build_responses(det, types, n_samples=ns, seed=args.seed, n_workers=args.workers, space=space)
    t_build = time.perf_counter() - t0
    t1 = time.perf_counter()
    folds = {}
    for name, it, f, rng_keV in sources:
        folds[name] = fold_spectrum(responses[canonical_interaction(it)], f, full_range_keV=rng_keV)
    t_fold = time.perf_counter() - t1
    t_lz = t_build + t_fold
    cpu_lz = _cpu_s() - c0  # the pool's workers have exited: their CPU time is included
    for t, r in responses.items():
        print(f"  response {t:9s}: {r.n_total:>11,d} events, active {r.metadata['active_range_keV'][0]:.2f}-"
              f"{r.metadata['active_range_keV'][1]:.1f} keV, reference worst-case effective n_samples "
              f"{min(r.metadata['reference_n_samples_effective']):.3g}")
    print(f"lzflow: build {t_build:.1f} s + fold {t_fold:.2f} s = {t_lz:.1f} s wall, {cpu_lz:.1f} CPU s")

    # (b) naive: rate per source on the same number of workers (one persistent pool, so process
    #     start-up is not charged to the naive path)
    rng = np.random.default_rng(args.seed)
    n_rate = int(ns) if args.naive_full else int(args.naive_rate_events)
    rows, t_naive, cpu_naive = [], 0.0, 0.0
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(args.workers, mp_context=mp.get_context("fork"), initializer=init_worker,
                               initargs=(dict(det), None, space, {}, args.seed + 1))
    try:
        for k, (name, it, f, (lo, hi)) in enumerate(sources):
            E = sample_spectrum(f, lo, hi, n_rate, rng)
            t = canonical_interaction(it)
            csize = min(CHUNK_SIZE, -(-n_rate // (2 * args.workers)))
            tasks = [(t, STAGE_DIRECT, k * 1_000_000 + c, start, E[start:start + csize])
                     for c, start in enumerate(range(0, n_rate, csize))]
            cs1, y, ok = np.empty(n_rate), np.empty(n_rate), np.zeros(n_rate, dtype=bool)
            ts, cpu = time.perf_counter(), 0.0
            for fut in [pool.submit(_timed_chunk, task) for task in tasks]:
                (_, _, _, start, (a, b, c)), dc = fut.result()
                cs1[start:start + a.size], y[start:start + a.size], ok[start:start + a.size] = a, b, c
                cpu += dc
            dt = time.perf_counter() - ts
            cpu_naive += cpu * ns / n_rate
            rate = n_rate / dt
            t_src = ns / rate
            t_naive += t_src
            fo = folds[name]
            row = dict(source=name, interaction=t, efficiency=fo.efficiency, naive_cpu_us_per_event=1e6 * cpu / n_rate,
                       expected_events=fo.expected_total, n_samples_effective=fo.n_samples_effective,
                       n_eff_roi=fo.n_eff_roi, truncation_loss=fo.truncation_loss, naive_rate_ev_s=rate,
                       naive_time_s=t_src, naive_efficiency=float(ok.mean()))
            if args.naive_full:
                from scipy.stats import chi2

                _, ix, iy = space.bin_events(cs1, y)
                h = np.zeros(space.shape)
                np.add.at(h, (ix[ok], iy[ok]), 1.0)
                # Pearson χ²: direct counts h ~ Poisson(n π), π = folded probability (MC variance v)
                mu = fo.expected / fo.spectrum_total * n_rate
                v = fo.variance / fo.spectrum_total ** 2 * n_rate ** 2
                use = mu >= 10
                c2 = float(((h - mu)[use] ** 2 / (mu + v)[use]).sum())
                row.update(chi2=c2, ndf=int(use.sum()), p_value=float(chi2.sf(c2, use.sum())))
            rows.append(row)
    finally:
        pool.shutdown()

    print(f"\n{'source':12s} {'type':8s} {'eps_tot':>9s} {'expected':>10s} {'n_samples_eff':>14s} {'n_eff_roi':>10s} "
          f"{'trunc':>8s} {'naive ev/s':>10s}" + ("  chi2/ndf (p)" if args.naive_full else ""))
    for r in rows:
        line = (f"{r['source']:12s} {r['interaction']:8s} {r['efficiency']:9.3g} {r['expected_events']:10.4g} "
                f"{r['n_samples_effective']:14.4g} {r['n_eff_roi']:10.3g} {r['truncation_loss']:8.1e} "
                f"{r['naive_rate_ev_s']:10.0f}")
        if args.naive_full:
            line += f"  {r['chi2']:.1f}/{r['ndf']} ({r['p_value']:.3f})"
        print(line)
    how = "measured" if args.naive_full else f"extrapolated from {n_rate:,d} events per PDF"
    worst = min(r["n_samples_effective"] for r in rows if r["expected_events"] > 0)
    print(f"\nnaive ({how}): {t_naive:.1f} s wall, {cpu_naive:.1f} CPU s for {len(rows)} PDFs x {ns:.3g} events")
    print(f"lzflow: {t_lz:.1f} s wall, {cpu_lz:.1f} CPU s (pilot, allocation, simulation, folds, pool start)")
    print(f"speed-up: {t_naive / t_lz:.1f}x wall, {cpu_naive / cpu_lz:.1f}x CPU;  worst effective n_samples "
          f"{worst:.3g} ({worst / ns:.2f} of target);  load average {os.getloadavg()[0]:.2f} "
          f"(other processes may share these CPUs: compare CPU seconds)")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(
            n_samples=ns, workers=args.workers, cpus=os.cpu_count(), lzflow_build_s=t_build, lzflow_fold_s=t_fold,
            lzflow_s=t_lz, lzflow_cpu_s=cpu_lz, naive_s=t_naive, naive_cpu_s=cpu_naive, naive_mode=how,
            speedup_wall=t_naive / t_lz, speedup_cpu=cpu_naive / cpu_lz, load_average=os.getloadavg()[0],
            responses={t: dict(n_total=r.n_total, **{k: r.metadata[k] for k in ("active_range_keV",)})
                       for t, r in responses.items()},
            pdfs=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
