#!/usr/bin/env python
"""Toy throughput: lzflow batched Newton vs per-toy iminuit vs pyhf (numpy backend).

Model: :func:`lzflow.stats.synthetic.lz_like_model` — 40×40 (cS1, log10 cS2) bins, 1 signal
(10 events at μ = 1) + 11 Gaussian-constrained backgrounds (≈ 993 events, many nearly empty
bins). A *toy* = its unconditional + conditional fit (q̃_μ at μ = 1, S+B toys generated at
(1, θ̂̂(1)) of the Asimov background-only data).

Paths:

* ``batched``     — :func:`lzflow.stats.run_toys`, end to end: generation + both fits, in chunks
                    of ``--chunk`` toys (memory bounded: only q and statuses are kept), with
                    worker threads in one process and (``--procs``) with worker processes;
* ``fit-only``    — the same fits on pre-generated toys (fitting only, threads);
* ``iminuit``     — :func:`lzflow.stats.fit_minuit` (Migrad + analytic gradient), toy by toy; with
                    shape systematics twice: from the same further starts as the batched fits
                    (``same starts``: the same search, the ratio that compares like with like) and
                    from the generation point alone (``1 start``: one local Migrad run, whose q̃
                    differs where it stops in a higher minimum — counted, ``n_toys_dq_above_1e-6``);
* ``pyhf``        — ``pyhf.infer.mle.fit`` + ``fixed_poi_fit`` on the exported workspace.

The iminuit and pyhf paths fit the same toys as the batched path (``generate_toys``), and the
q̃ values are compared. Timings use ``time.perf_counter``; the machine may be shared, so each
measurement is the best of ``--repeat`` runs.

    python benchmarks/bench_toys.py                      # defaults: 200k batched toys
    python benchmarks/bench_toys.py --n-toys 1000000     # bounded memory (see peak RSS)
    python benchmarks/bench_toys.py --systematics        # + 4 shape nuisance parameters (issue 12)
    python benchmarks/bench_toys.py --workspace tests/data/workspace_m40_systematics.json.gz \
        --interpolation log_quartic --n-toys 16384       # the default 40 GeV workspace, 5 shape + 11 rates

``--systematics``: the model of :func:`lzflow.stats.synthetic.lz_like_systematics_model` (the same
40×40 templates with g1-, g2-like, ER-width and NR-yield shape systematics, code-4p morphing: 1 + 11
rate + 4 shape parameters), or with ``--workspace`` the workspace's own shape systematics (morphed as
the workspace says, or as ``--interpolation`` says); the iminuit and pyhf paths fit the same morphed
likelihood (pyhf with histosys code 4p; skipped for the multiplicative morphings, which pyhf cannot
express).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import warnings

import numpy as np


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_batched(model, n_toys: int, chunk: int, threads: int | None, block: int, repeat: int,
                  procs: int = 1, starts: dict | None = None, cond_fits: str = "all"):
    from lzflow.stats import FitConfig, ToyRequest, run_toys

    config = FitConfig(**(starts or {}))

    if procs > 1:  # start the worker processes outside the timing
        run_toys(model, ToyRequest(base_seed=1, mass_key=1, poi_index=0, hypothesis="sb", mu=1.0,
                                   toy_indices=np.arange(2 * block * procs), block_size=block, n_procs=procs))
    best = np.inf
    q_sum = n_fail = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        q_sum = 0.0
        n_fail = 0
        for start in range(0, n_toys, chunk):
            idx = np.arange(start, min(start + chunk, n_toys))
            r = run_toys(model, ToyRequest(base_seed=1234, mass_key=400000, poi_index=0, hypothesis="sb", mu=1.0,
                                           toy_indices=idx, block_size=block, n_threads=threads, n_procs=procs,
                                           config=config, cond_fits=cond_fits))
            q_sum += float(np.nansum(r.q))
            n_fail += int(np.sum(r.status_uncond != 0) + np.sum((r.status_cond != 0) & (r.status_cond != 7)))  # 7: not needed
            del r
        best = min(best, time.perf_counter() - t0)
    return best, q_sum / n_toys, n_fail


def bench_batched_fit(model, counts, aux, gen, threads: int | None, block: int, repeat: int,
                      starts: dict | None = None):
    from lzflow.stats import BatchedFitter, FitConfig

    f = BatchedFitter(model, FitConfig(block_size=block, n_threads=threads, **(starts or {})))
    slope = f.profile_slope(gen)
    data = f.prepare(counts, aux)
    init = np.broadcast_to(gen, (data.n, gen.size))
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        ru = f.fit(data, init=init, fisher_at=gen)
        rc = f.fit(data, mu_fixed=1.0, init=ru.params + (1.0 - ru.params[:, :1]) * slope)
        best = min(best, time.perf_counter() - t0)
        out = (ru, rc)
    return best, out


def bench_minuit(model, counts, aux, gen, starts: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())):
    """Migrad toy by toy; ``starts``: the further starts of the μ-free and the fixed-μ fits."""
    from lzflow.stats import fit_minuit

    init = np.broadcast_to(gen, (counts.shape[0], gen.size))
    t0, c0 = time.perf_counter(), time.process_time()
    ru = fit_minuit(model, counts, aux, init=init, extra_starts=starts[0])
    rc = fit_minuit(model, counts, aux, mu_fixed=1.0, init=ru.params, extra_starts=starts[1])
    return time.perf_counter() - t0, (ru, rc), time.process_time() - c0


def bench_pyhf(model, counts, aux, gen):
    import pyhf

    from lzflow.stats.pyhf_export import PYHF_MODIFIER_SETTINGS, pyhf_data, to_pyhf_workspace

    pyhf.set_backend("numpy", "scipy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ws = pyhf.Workspace(to_pyhf_workspace(model))
        pm = ws.model(modifier_settings=PYHF_MODIFIER_SETTINGS) if model.n_shape else ws.model()
    nll_u, nll_c, mu_hat = [], [], []
    t0 = time.perf_counter()
    for c, a in zip(counts, aux):
        data = pyhf_data(model, pm, c, a)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pu, fu = pyhf.infer.mle.fit(data, pm, return_fitted_val=True)
            pc, fc = pyhf.infer.mle.fixed_poi_fit(1.0, data, pm, return_fitted_val=True)
        nll_u.append(float(fu) / 2.0)
        nll_c.append(float(fc) / 2.0)
        mu_hat.append(float(pu[pm.config.poi_index]))
    dt = time.perf_counter() - t0
    return dt, np.array(nll_u), np.array(nll_c), np.array(mu_hat)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-toys", type=int, default=200_000, help="batched toys (end to end)")
    ap.add_argument("--n-fit", type=int, default=16384, help="pre-generated toys for fit-only")
    ap.add_argument("--n-minuit", type=int, default=200, help="toys for the iminuit path")
    ap.add_argument("--n-pyhf", type=int, default=5, help="toys for pyhf (0 = skip)")
    ap.add_argument("--chunk", type=int, default=65536, help="toys per run_toys call")
    ap.add_argument("--block", type=int, default=512, help="toys per fitted block")
    ap.add_argument("--threads", type=int, default=None, help="worker threads (default: cores)")
    ap.add_argument("--procs", type=int, default=None,
                    help="also time run_toys(n_procs=N) (default: cores; 1 = skip)")
    ap.add_argument("--repeat", type=int, default=2, help="best of N for batched timings")
    ap.add_argument("--json", type=str, default=None, help="also write the results here")
    ap.add_argument("--systematics", action="store_true",
                    help="synthetic model with 4 shape nuisance parameters (lz_like_systematics_model)")
    ap.add_argument("--workspace", type=str, default=None,
                    help="benchmark an exported lzflow workspace.json (e.g. results/lz_projection/m40/workspace.json) "
                         "instead of the synthetic model; its signal is rescaled so that mu = 1 is the asymptotic "
                         "median limit")
    ap.add_argument("--interpolation", choices=["log_pchip", "log_quartic", "log_code4p", "code4p"], default=None,
                    help="with --workspace: morph its shape systematics this way instead of the workspace's own")
    ap.add_argument("--one-start", action="store_true",
                    help="fit from one start only (FitConfig extra_starts=(), extra_starts_fixed=()): the cost of one "
                         "Newton fit with shape systematics")
    ap.add_argument("--cond-fits", choices=["all", "needed"], default="all",
                    help="needed: no conditional fit where mu_hat > mu (q-tilde = 0 there; lzflow.stats.toyfits), as the "
                         "workflow's toy jobs of a one-sided limit")
    args = ap.parse_args(argv)
    starts = {"extra_starts": (), "extra_starts_fixed": ()} if args.one_start else {}

    from lzflow.stats import FitConfig, evaluate_test_statistic, generate_toys, generation_point
    from lzflow.stats._threads import available_cores
    from lzflow.stats.synthetic import lz_like_model

    if args.procs is None:
        args.procs = available_cores()
    if args.workspace:
        from lzflow.workspace import read_workspace, workspace_model

        ws = read_workspace(args.workspace)
        model = workspace_model(ws)
        median = ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"]
        model = model.with_signal(model.signal * median)
        if args.interpolation and model.n_shape:
            model = model.with_shape_systematics(model.shape_systematics, args.interpolation)
        print(f"workspace {args.workspace}: {ws['mass_GeV']:g} GeV, mu=1 <-> {median * ws['sigma_ref_cm2']:.3g} cm2")
    elif args.systematics:
        from lzflow.stats.synthetic import lz_like_systematics_model

        model = lz_like_systematics_model()
    else:
        model = lz_like_model()
    gen, _ = generation_point(model, 1.0)
    print(f"model: {model.n_bins} bins, {model.n_bkg} backgrounds "
          f"({model.n_free_bkg} constrained), {model.n_shape} shape parameters {model.shape_parameters}"
          f"{' (' + model.interpolation + ')' if model.n_shape else ''}, background {model.backgrounds.sum():.1f} events, "
          f"signal {model.signal_total:.1f} events at mu=1; cores={available_cores()}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')!r}")
    rows = []
    extra: dict = {}
    c0 = time.process_time()
    t_b, q_mean, n_fail = bench_batched(model, args.n_toys, args.chunk, args.threads, args.block,
                                        args.repeat, starts=starts, cond_fits=args.cond_fits)
    cpu_b = (time.process_time() - c0) / args.repeat
    nthr = args.threads or available_cores()
    rows.append((f"batched, {nthr} threads", args.n_toys, t_b))
    # one core: wall time and CPU time of a single-threaded run (robust on a shared machine)
    n1 = min(args.n_toys, 65536)
    c0 = time.process_time()
    t_1, _, _ = bench_batched(model, n1, args.chunk, 1, args.block, 1, starts=starts, cond_fits=args.cond_fits)
    cpu_1 = time.process_time() - c0
    rows.append(("batched, 1 thread", n1, t_1))
    if args.procs > 1:
        t_p, q_mean_p, n_fail_p = bench_batched(model, args.n_toys, args.chunk, 1, args.block,
                                                args.repeat, args.procs, starts=starts, cond_fits=args.cond_fits)
        rows.append((f"batched, {args.procs} processes", args.n_toys, t_p))
        assert abs(q_mean_p - q_mean) < 1e-9 and n_fail_p == n_fail  # identical toys and fits
    n_fit = max(args.n_fit, args.n_minuit, args.n_pyhf)
    counts, aux = generate_toys(model, gen, np.arange(n_fit), 99, 400000, 0, "sb")
    counts = counts.astype(np.int32)
    t_f, (ru, rc) = bench_batched_fit(model, counts, aux, gen, args.threads, args.block,
                                      args.repeat, starts=starts)
    rows.append((f"batched fit-only, {nthr} thr", n_fit, t_f))
    q_b = evaluate_test_statistic("qtilde", rc.nll, ru.nll, ru.mu, 1.0)
    extra["newton_iterations_uncond"] = float(np.mean(ru.n_iter))
    extra["newton_iterations_cond"] = float(np.mean(rc.n_iter))
    if args.n_minuit:
        k = args.n_minuit
        # the reference does the batched path's search: Migrad from the same further starts (shape fits)
        cfg = FitConfig(**starts)
        same = (cfg.extra_starts, cfg.extra_starts_fixed) if model.n_shape else ((), ())
        paths = [("", same)] + ([("_1start", ((), ()))] if any(same) else [])
        for key, st in paths:
            t_m, (mu, mc), cpu_m = bench_minuit(model, counts[:k], aux[:k], gen, st)
            label = "iminuit, 1 start" if key else ("iminuit, same starts" if any(same) else "iminuit (per toy)")
            rows.append((label, k, t_m))
            extra[f"cpu_us_per_toy_minuit{key}"] = 1e6 * cpu_m / k
            q_m = evaluate_test_statistic("qtilde", mc.nll, mu.nll, mu.mu, 1.0)
            dq = np.abs(q_m - q_b[:k])
            extra[f"max_abs_dq_minuit{key}"] = float(np.max(dq))
            extra[f"n_toys_dq_above_1e-6_minuit{key}"] = int(np.sum(dq > 1e-6))
    if args.n_pyhf and model.n_shape and model.interpolation != "code4p":
        print(f"pyhf path skipped: pyhf cannot express the {model.interpolation} morphing")
    elif args.n_pyhf:
        k = args.n_pyhf
        t_p, nu, nc, muh = bench_pyhf(model, counts[:k], aux[:k], gen)
        rows.append(("pyhf numpy (per toy)", k, t_p))
        q_p = evaluate_test_statistic("qtilde", nc, nu, muh, 1.0)
        extra["max_abs_dq_pyhf"] = float(np.max(np.abs(q_p - q_b[:k])))
    base = rows[0][1] / rows[0][2]
    print(f"\n{'path':<26}{'toys':>10}{'seconds':>10}{'toys/s':>12}{'batched/this':>14}")
    for name, n, t in rows:
        rate = n / t
        print(f"{name:<26}{n:>10d}{t:>10.2f}{rate:>12.1f}{base / rate:>14.1f}")
    print(f"\nbatched, 1 thread: {1e6 * cpu_1 / n1:.1f} CPU-µs per toy "
          f"(= {n1 / cpu_1:.0f} toys/s per fully available core)")
    print(f"batched, {nthr} threads: {1e6 * cpu_b / args.n_toys:.1f} CPU-µs per toy (process CPU time, "
          f"averaged over the repeats); load average {os.getloadavg()[0]:.1f} at the end")
    extra["cpu_us_per_toy_1thread"] = 1e6 * cpu_1 / n1
    if "cpu_us_per_toy_minuit" in extra:  # the ratio that other load on the machine does not change
        extra["minuit_cpu_over_batched_cpu"] = extra["cpu_us_per_toy_minuit"] / extra["cpu_us_per_toy_1thread"]
    if "cpu_us_per_toy_minuit_1start" in extra:
        extra["minuit_1start_cpu_over_batched_cpu"] = extra["cpu_us_per_toy_minuit_1start"] / extra["cpu_us_per_toy_1thread"]
    extra["cpu_us_per_toy_threads"] = 1e6 * cpu_b / args.n_toys
    print(f"batched: mean q~ = {q_mean:.4f}, failed fits = {n_fail}; "
          f"fit-only failures = {int(np.sum(ru.status != 0) + np.sum(rc.status != 0))}")
    for k, v in extra.items():
        print(f"{k} = {v:.3g}")
    print(f"peak RSS = {_peak_rss_mb():.0f} MB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": [{"path": n, "toys": k, "seconds": t, "toys_per_s": k / t}
                                for n, k, t in rows], **extra,
                       "peak_rss_mb": _peak_rss_mb()}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
