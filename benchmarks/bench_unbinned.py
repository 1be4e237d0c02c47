#!/usr/bin/env python
"""Toy throughput and accuracy: binned vs unbinned likelihood (interpolation orders 0–3).

Workspace: ``--workspace`` (default ``results/lz_projection/m40/workspace.json``). A *toy* =
generation + unconditional fit + conditional fit at the tested μ (q̃_μ), S+B toys generated at
(μ, θ̂̂(μ)) of the Asimov background-only data; μ defaults to the workspace's asymptotic median
expected CLs+b limit.

Paths (one row each):

* ``binned``                 — :func:`lzflow.stats.run_toys` (full-resolution binned model);
* ``unbinned o=N r=R``       — :func:`lzflow.stats.run_toys` on an ``UnbinnedModel``, events drawn
                               from the full-resolution templates, fitted with densities of
                               order N from templates rebinned by R per axis;
* ``iminuit`` (same row)     — :func:`lzflow.stats.unbinned.fit_minuit_events` on the first
                               ``--n-minuit`` toys of that row (same events, same NLL, one column
                               per event also at order 0): toys/s (preparation + both fits) and
                               max |Δq̃| against the batched fits.

Columns: ``toys/s`` wall clock with ``--threads`` threads (best of ``--repeat``); ``toys/cpu-s``
the same run per CPU-second of this process (all threads) — on a shared machine the wall rate
follows the other load, the CPU rate much less — and ``cpu-us/toy`` its inverse; ``x iminuit``
toys/s over the iminuit rate of the same row (one thread, one column per event); ``draw/s`` and ``prep/s`` the event draws and the
template values at the events alone (one thread, the sub-blocks of ``run_toys``). The load
average (``os.getloadavg``) is printed before and after. Toys whose events fall where every
clipped density is 0 (floor 0, orders ≥ 2) are INFEASIBLE: counted, never dropped, and left out
of |Δq̃|.

    python benchmarks/bench_unbinned.py
    python benchmarks/bench_unbinned.py --rebins 2 --floor 1e-3     # the interpolation study's setting
    python benchmarks/bench_unbinned.py --n-toys 4096 --json benchmarks/out/unbinned.json
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import sys
import time

import numpy as np


def _best(fn, repeat: int):
    """Best wall time of ``repeat`` runs, the CPU time (all threads) of that run, the output."""
    best, cpu, out = np.inf, np.inf, None
    for _ in range(max(1, repeat)):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, used = time.perf_counter() - t0, time.process_time() - c0
        if wall < best:
            best, cpu = wall, used
    return best, cpu, out


def _load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", default="results/lz_projection/m40/workspace.json")
    ap.add_argument("--n-toys", type=int, default=1024, help="toys per path")
    ap.add_argument("--n-minuit", type=int, default=8, help="toys refitted with iminuit")
    ap.add_argument("--mu", type=float, default=None, help="tested/generated μ")
    ap.add_argument("--orders", default="0,1,2,3")
    ap.add_argument("--rebins", default="1,2")
    ap.add_argument("--edge", default="mirror", choices=("mirror", "shift"))
    ap.add_argument("--floor", type=float, default=0.0)
    ap.add_argument("--block", type=int, default=256, help="toys per block")
    ap.add_argument("--threads", type=int, default=None, help="worker threads (default: cores)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    from lzflow.stats import FitConfig, ToyRequest, evaluate_test_statistic, run_toys
    from lzflow.stats._threads import available_cores, blas_threads
    from lzflow.stats.toys import generation_point, mass_key
    from lzflow.stats._rng import ensemble_key
    from lzflow.stats.request import HYPOTHESES
    from lzflow.stats.unbinned import UnbinnedFitter, fit_minuit_events, sub_block_size
    from lzflow.stats.unbinned_model import UnbinnedModel, UnbinnedToySampler, generate_unbinned_toys
    from lzflow.workspace import read_workspace, workspace_model

    ws = read_workspace(args.workspace)
    mu = args.mu
    if mu is None:
        mu = float(ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"])
    mk = mass_key(ws["mass_GeV"])
    binned = workspace_model(ws)
    n, seed, poi = args.n_toys, 2024, 1
    idx = np.arange(n)
    nthr = args.threads or available_cores()
    print(f"workspace {args.workspace}: {ws['mass_GeV']:g} GeV, {binned.bin_shape} bins, "
          f"{binned.n_bkg} backgrounds, {binned.backgrounds.sum():.0f} bkg + "
          f"{mu * binned.signal_total:.1f} signal events at mu={mu:.4g}; {nthr} threads, "
          f"block {args.block}, edge={args.edge}, floor={args.floor:g}; {_load()}")

    rows: list[dict] = []
    # the code before 2026-12 (for before/after runs of this script) had no per-bin columns
    per_event = ({"aggregate": False} if "aggregate" in inspect.signature(UnbinnedFitter.prepare).parameters
                 else {})
    request = dict(base_seed=seed, mass_key=mk, poi_index=poi, hypothesis="sb", mu=mu, toy_indices=idx,
                   n_threads=args.threads)
    t_b, c_b, rb = _best(lambda: run_toys(binned, ToyRequest(block_size=512, **request)), args.repeat)
    rows.append(dict(path="binned", toys_per_s=n / t_b, toys_per_cpu_s=n / c_b, n_toys=n,
                     failed=int(np.sum(rb.status_uncond != 0) + np.sum(rb.status_cond != 0)),
                     median_q=float(np.median(rb.q[:, 0])), mean_mu_hat=float(np.mean(rb.mu_hat)),
                     frac_q_gt_2p71=float(np.mean(rb.q[:, 0] > 2.706))))
    gen, _ = generation_point(binned, mu)
    for rebin in (int(r) for r in args.rebins.split(",")):
        for order in (int(o) for o in args.orders.split(",")):
            t0 = time.perf_counter()
            model = UnbinnedModel.from_workspace(ws, order, rebin, args.edge, args.floor)
            t_build = time.perf_counter() - t0

            def run():
                return run_toys(model, ToyRequest(block_size=args.block, **request))

            t_u, c_u, ru = _best(run, args.repeat)
            fitter = UnbinnedFitter(model, FitConfig(n_threads=1))
            sampler = UnbinnedToySampler(model, gen)
            key = ensemble_key(seed, mk, poi, HYPOTHESES["sb"])

            def draw():
                return [sampler.draw_key(key, idx[s : s + args.block]) for s in range(0, n, args.block)]

            def prep(blocks):
                for ev in blocks:
                    size = sub_block_size(model.n_par, int(ev.n_events.max()))
                    for s0 in range(0, ev.n, size):
                        fitter.prepare(ev.take(np.arange(s0, min(s0 + size, ev.n))))

            with blas_threads(1):
                _, c_d, blocks = _best(draw, 1)
                _, c_p, _ = _best(lambda: prep(blocks), 1)
            # iminuit on the first toys (same events: the generator is split invariant)
            k = min(args.n_minuit, n)
            row = dict(path=f"unbinned o={order} r={rebin}", toys_per_s=n / t_u, toys_per_cpu_s=n / c_u,
                       n_toys=n, build_s=t_build, draw_toys_per_cpu_s=n / c_d, prep_toys_per_cpu_s=n / c_p,
                       infeasible=int(np.sum(ru.status_uncond == 4)),
                       failed=int(np.sum((ru.status_uncond != 0) & (ru.status_uncond != 4))
                                  + np.sum((ru.status_cond != 0) & (ru.status_cond != 4))),
                       retried=int(np.sum(ru.first_failure_uncond != 0)
                                   + np.sum(ru.first_failure_cond != 0)),
                       median_q=float(np.nanmedian(ru.q[:, 0])),
                       mean_mu_hat=float(np.nanmean(ru.mu_hat)),
                       frac_q_gt_2p71=float(np.nanmean(ru.q[:, 0] > 2.706)),
                       clipped_frac_max=float(np.max(model.densities.clipped_integral
                                                     / np.maximum(model.densities.norm, 1e-300))))
            if k:
                def minuit():  # one column per event (also at order 0, where the toys use bins)
                    ev = generate_unbinned_toys(model, gen, idx[:k], seed, mk, poi, "sb")
                    data = fitter.prepare(ev, **per_event)
                    init = np.broadcast_to(gen, (k, gen.size))
                    return (fit_minuit_events(fitter, data, init=init),
                            fit_minuit_events(fitter, data, mu_fixed=mu, init=init))

                t_m, _, (mu_r, mc_r) = _best(minuit, 1)
                q_m = evaluate_test_statistic("qtilde", mc_r.nll, mu_r.nll, mu_r.mu, mu)
                ok = np.isfinite(q_m) & np.isfinite(ru.q[:k, 0])
                row.update(minuit_toys_per_s=k / t_m, n_minuit=k,
                           max_abs_dq_minuit=float(np.max(np.abs(q_m[ok] - ru.q[:k, 0][ok])))
                           if ok.any() else float("nan"),
                           max_abs_dmu_minuit=float(np.max(np.abs(mu_r.mu[ok] - ru.mu_hat[:k][ok])))
                           if ok.any() else float("nan"))
            rows.append(row)
            print(f"  done {row['path']}: {row['toys_per_s']:.0f} toys/s", file=sys.stderr)

    base = rows[0]["toys_per_s"]
    print(f"\n{'path':<20}{'toys/s':>9}{'toys/cpu-s':>11}{'cpu-us/toy':>11}{'binned/this':>12}{'draw/s':>8}"
          f"{'prep/s':>8}{'iminuit/s':>10}{'x iminuit':>10}{'max|dq~|':>10}{'max|dmu|':>10}{'infeas.':>8}{'failed':>7}{'mean mu^':>10}"
          f"{'P(q~>2.71)':>11}{'clip':>8}")
    for r in rows:
        print(f"{r['path']:<20}{r['toys_per_s']:>9.0f}{r['toys_per_cpu_s']:>11.0f}"
              f"{1e6 / r['toys_per_cpu_s']:>11.0f}{base / r['toys_per_s']:>12.1f}"
              f"{r.get('draw_toys_per_cpu_s', float('nan')):>8.0f}"
              f"{r.get('prep_toys_per_cpu_s', float('nan')):>8.0f}"
              f"{r.get('minuit_toys_per_s', float('nan')):>10.1f}"
              f"{r['toys_per_s'] / r.get('minuit_toys_per_s', float('nan')):>10.0f}"
              f"{r.get('max_abs_dq_minuit', float('nan')):>10.1e}"
              f"{r.get('max_abs_dmu_minuit', float('nan')):>10.1e}"
              f"{r.get('infeasible', 0):>8d}{r['failed']:>7d}{r['mean_mu_hat']:>10.2e}"
              f"{r['frac_q_gt_2p71']:>11.3f}{r.get('clipped_frac_max', 0.0):>8.1e}")
    print(f"\n{_load()}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"\nmu = {mu:.4g} (generated and tested); peak RSS = {peak:.0f} MB; "
          f"clip = max over templates of the mass added back by clipping P < 0 (relative)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(workspace=args.workspace, mu=mu, threads=nthr, block=args.block,
                           edge=args.edge, floor=args.floor, rows=rows), fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
