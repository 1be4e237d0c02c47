#!/usr/bin/env python
"""The two-sided belt (issue 14 item 1): 20 μ values × 2000 toys on the real 40 GeV workspace.

What is timed, on ``--procs`` worker processes (default 2, the CI machine's cores):

* ``toys``  — :func:`lzflow.stats.belt_toys.belt_toys`: 2000 S+B toys at each of the 20 grid
  points (one unconditional + one conditional fit each) and 2000 B-only toys evaluated on the
  whole grid (one unconditional + 20 conditional fits each) — the same ensembles, seeds and
  fits as the one-sided merge, test statistic q̃_μ, from whose records t_μ is computed;
* ``observed`` — :func:`~lzflow.stats.belt_toys.observed_t` of the Asimov background-only set;
* ``construction`` — :func:`~lzflow.stats.construction.two_sided_result` (belt, every B-only
  experiment's interval, bands, PCL) and, for comparison, the one-sided CLs+b inversion of the
  same toys (:func:`~lzflow.stats.belt_toys.one_sided_on_same_toys`).

Target (issue 14): ≤ 2 min per mass on 2 cores. The grid is the workspace's ``poi_grid`` with its
first point replaced by μ = 0 (20 values: 0, then 0.2 … 3.5 × the asymptotic median), so μ_lo and
the fraction of background-only intervals with μ_lo > 0 are resolved. The machine may be shared:
the load average before and after and the CPU seconds (this process + its workers, psutil) are
printed next to the wall time.

    python benchmarks/bench_belt.py                       # tests/data/workspace_m40.json.gz
    python benchmarks/bench_belt.py --workspace results/lz_projection/m40/workspace.json --json out.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_WS = Path(__file__).resolve().parents[1] / "tests" / "data" / "workspace_m40.json.gz"


def _load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def _cpu_seconds() -> float:
    """CPU seconds of this process and its live children (the toy worker pool)."""
    try:
        import psutil
    except ImportError:  # optional: wall time only
        return float("nan")
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def _read_workspace(path: Path) -> dict:
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, default=DEFAULT_WS)
    ap.add_argument("--n-toys", type=int, default=2000, help="S+B toys per grid point and B-only toys")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cl", type=float, default=0.90)
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args(argv)

    from lzflow.stats.belt_toys import belt_toys, observed_t, one_sided_on_same_toys
    from lzflow.stats.construction import two_sided_result
    from lzflow.stats.request import ToyRequest
    from lzflow.stats.toys import mass_key, observed_asimov, run_toys
    from lzflow.workspace import workspace_model

    ws = _read_workspace(args.workspace)
    model = workspace_model(ws)
    grid = np.r_[0.0, np.asarray(ws["poi_grid"], dtype=np.float64)[1:]]
    key = mass_key(float(ws["mass_GeV"]))
    n = args.n_toys
    print(f"{args.workspace.name}: {ws['mass_GeV']} GeV, {model.n_bins} bins, {model.n_bkg} backgrounds, "
          f"{grid.size} grid points (0, {grid[1]:.3g} … {grid[-1]:.3g}), {n} toys each, {args.procs} processes")
    if args.procs > 1:  # start the worker processes outside the timing
        run_toys(model, ToyRequest(base_seed=args.seed + 99, mass_key=key, poi_index=0, hypothesis="sb", mu=0.0,
                                   toy_indices=np.arange(1024 * args.procs), n_procs=args.procs))
    load_before = _load()
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    sb, b = belt_toys(model, grid, n, n, args.seed, key, n_procs=args.procs)
    t1 = time.perf_counter()
    counts, aux = observed_asimov(model)
    t_obs, _ = observed_t(model, counts, aux, grid)
    t2 = time.perf_counter()
    res = two_sided_result(grid, sb, b, t_obs, args.cl)
    one = one_sided_on_same_toys(grid, sb, b, args.cl)
    t3 = time.perf_counter()
    cpu = _cpu_seconds() - cpu0
    load_after = _load()

    n_toys = grid.size * n + n
    n_fits = grid.size * n * 2 + n * (1 + grid.size)
    wall = t3 - t0
    print(f"toys {t1 - t0:.1f} s ({n_toys} toys, {n_toys / (t1 - t0):.0f} toys/s, {n_fits / (t1 - t0):.0f} fits/s), "
          f"observed {t2 - t1:.2f} s, construction + one-sided {t3 - t2:.2f} s; total {wall:.1f} s "
          f"(target 120 s), CPU {cpu:.1f} s")
    print(f"{load_before} before, {load_after} after")
    failed = sum(int(np.sum(r.status_uncond != 0)) + int(np.sum(r.status_cond != 0)) for r in [*sb, b])
    print(f"failed fits: {failed}; B-only experiments used {res.n_experiments}, left out {res.excluded_experiments}")
    print("belt t_c(mu): " + " ".join(f"{v:.2f}" for v in res.belt.t_crit))
    print(f"{'band':>5} {'two-sided mu_up':>16} {'one-sided CLs+b':>16} {'ratio':>6}")
    for k in sorted(res.bands):
        two, o = res.bands[k], one.bands[k]
        ratio = two.value / o.value if o.status == "ok" and two.status == "ok" else float("nan")
        print(f"{k:>+5d} {two.value:>16.4g} {o.value:>16.4g} {ratio:>6.3f}   ({two.status} / {o.status})")
    frac, lo, hi = res.lo_positive
    obs = res.observed
    print(f"PCL floor (Phi(-1) of mu_up): two-sided {res.pcl_floor.bound:.4g}, one-sided {one.pcl_floor:.4g}")
    print(f"background-only intervals with mu_lo > 0: {frac:.4f} [{lo:.4f}, {hi:.4f}] (1 - CL = {1 - args.cl:.2f})")
    print(f"Asimov B-only dataset: [{obs['mu_lo']:.3g}, {obs['mu_up']:.4g} ± {obs['mu_up_err']:.2g}] "
          f"({obs['mu_lo_status']}/{obs['mu_up_status']}), PCL {obs['pcl_mu_up']:.4g}")
    if args.json:
        out = {"workspace": str(args.workspace), "n_toys": n, "procs": args.procs, "grid": grid.tolist(),
               "seconds": {"toys": t1 - t0, "observed": t2 - t1, "construction": t3 - t2, "total": wall},
               "cpu_seconds": cpu, "toys_per_s": n_toys / (t1 - t0), "load_before": load_before,
               "load_after": load_after, "two_sided": json.loads(res.to_json()),
               "one_sided_expected": {str(k): v.value for k, v in one.bands.items()}}
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(out, indent=1, allow_nan=True))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
