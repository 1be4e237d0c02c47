#!/usr/bin/env python
"""What the global search of the shape fits buys and costs (issue 12), and the CPU floor it sets.

The NLL of the multiplicative morphings has several minima (docs/method.md, "Local minima and
further starts"), so every shape fit is started again from further points
(``FitConfig.extra_starts``). This script fits the same S+B toys (at the asymptotic median limit of
the default 40 GeV systematics workspace) with

* ``one start``: Newton from the generation point only (``extra_starts=()``, ``extra_starts_fixed=()``);
* ``default``: the workflow's further starts (:class:`lzflow.stats.FitConfig` defaults);
* ``+ half``: the default plus the optional ``half`` start, μ free and fixed (the reference search);

on the templates as the response stage builds them and on **symmetrised** ones (each ±1σ and ±2σ
pair replaced by T₀·√(T₊/T₋) and T₀·√(T₋/T₊), bin by bin: TRExFitter's two-sided symmetrisation
in ln T, which removes the even part of each variation, where MC noise and the flat knots of the
log morphings make the wells). For each it prints the CPU per toy (one thread, process time, the
workflow's ``cond_fits: needed``), the μ-free and fixed-μ fits that end above the lowest minimum
any search found for that toy (by > 1e-6), the toys whose q̃ differs from that reference by > 1e-6
and the mean q̃; then the rate two perfectly used cores would reach at that CPU per toy, against
issue 12's 10,000 toys/s (200 CPU-µs per toy).

    python benchmarks/bench_search.py                       # log_pchip, 400 toys, seed 99
    python benchmarks/bench_search.py --interpolation log_quartic --n-toys 1024 --seed 7
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

TARGET_TOYS_PER_S = 10_000  # issue 12: toys/s on 2 cores
CORES = 2
TOL = 1e-6


def symmetrised(systematic, nominal: np.ndarray):
    """``systematic`` with each ±σ pair replaced by its geometric symmetrisation about ``nominal``
    (where nominal and both anchors are > 0; elsewhere the anchors are kept)."""
    from lzflow.stats.morphing import ShapeSystematic

    def pair(up, down):
        ok = (nominal > 0) & (up > 0) & (down > 0)
        r = np.sqrt(np.divide(up, down, out=np.ones_like(up), where=ok))
        return np.where(ok, nominal * r, up), np.where(ok, nominal / r, down)

    up, down = pair(systematic.up, systematic.down)
    up2, down2 = pair(systematic.up2, systematic.down2) if systematic.has_2sigma else (None, None)
    return ShapeSystematic(systematic.name, up, down, up2, down2, systematic.segments)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", default="tests/data/workspace_m40_systematics.json.gz")
    ap.add_argument("--interpolation", default="log_pchip", choices=["log_pchip", "log_quartic", "log_code4p"])
    ap.add_argument("--n-toys", type=int, default=400)
    ap.add_argument("--seed", type=int, default=99)
    args = ap.parse_args(argv)

    from lzflow.stats import FitConfig, ToyRequest, run_toys
    from lzflow.workspace import read_workspace, workspace_model

    ws = read_workspace(args.workspace)
    base = workspace_model(ws)
    base = base.with_signal(base.signal * ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"])
    nominal = np.vstack([base.signal[None], base.backgrounds])
    template_sets = {"as built": base.shape_systematics,
                     "symmetrised": tuple(symmetrised(s, nominal) for s in base.shape_systematics)}
    default = FitConfig()
    searches = {"one start": FitConfig(extra_starts=(), extra_starts_fixed=()),
                "default": default,
                "+ half": FitConfig(extra_starts=default.extra_starts + ("half",),
                                    extra_starts_fixed=default.extra_starts_fixed + ("half",))}
    print(f"{args.workspace} ({args.interpolation}, {base.n_shape} shape + {base.n_bkg} rate parameters), "
          f"{args.n_toys} S+B toys at the median limit, seed {args.seed}, 1 thread; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'templates':12s} {'search':10s} {'CPU-us/toy':>10s} {'u off':>6s} {'c off':>6s} "
          f"{'q~ off':>7s} {'max dq~':>8s} {'mean q~':>8s} {'toys/s, 2 cores':>16s}")
    floor = {}
    for label, systematics in template_sets.items():
        model = base.with_shape_systematics(systematics, args.interpolation)
        runs = {}
        for name, cfg in searches.items():
            def request(n: int, cfg=cfg) -> ToyRequest:
                return ToyRequest(base_seed=args.seed, mass_key=400000, poi_index=0, hypothesis="sb", mu=1.0,
                                  toy_indices=np.arange(n), block_size=512, n_threads=1, config=cfg,
                                  cond_fits="needed")

            run_toys(model, request(8))  # compile outside the timing
            c0 = time.process_time()
            r = run_toys(model, request(args.n_toys))
            runs[name] = (r, (time.process_time() - c0) / args.n_toys * 1e6)
        best_u = np.min([r.nll_uncond for r, _ in runs.values()], axis=0)
        best_c = np.nanmin([np.where(np.isnan(r.nll_cond[:, 0]), np.inf, r.nll_cond[:, 0])
                            for r, _ in runs.values()], axis=0)
        # the reference q~ (mu_hat >= 0: the fits bound mu below at 0): 0 where the lowest
        # unconditional minimum has mu_hat > mu = 1, else twice its distance to the lowest fixed-mu one
        stacked = np.array([r.nll_uncond for r, _ in runs.values()])
        mu_hat_best = np.array([r.mu_hat for r, _ in runs.values()])[np.argmin(stacked, axis=0), np.arange(args.n_toys)]
        q_best = np.where(mu_hat_best > 1.0, 0.0, np.maximum(2 * (best_c - best_u), 0.0))
        for name, (r, cpu) in runs.items():
            c = r.nll_cond[:, 0]
            u_off = int(np.sum(r.nll_uncond > best_u + TOL))
            c_off = int(np.sum(np.isfinite(c) & (c > best_c + TOL)))
            dq = np.abs(r.q[:, 0] - q_best)
            rate = CORES * 1e6 / cpu
            print(f"{label:12s} {name:10s} {cpu:10,.0f} {u_off:6d} {c_off:6d} {int(np.sum(dq > TOL)):7d} "
                  f"{dq.max():8.3g} {r.q[:, 0].mean():8.4f} {rate:16,.0f}")
            floor[(label, name)] = cpu
    budget = CORES * 1e6 / TARGET_TOYS_PER_S
    print(f"issue 12's {TARGET_TOYS_PER_S:,} toys/s on {CORES} cores = {budget:.0f} CPU-us per toy; "
          f"one start (as built) {floor[('as built', 'one start')]:,.0f} = "
          f"{floor[('as built', 'one start')] / budget:.1f}x, default search "
          f"{floor[('as built', 'default')]:,.0f} = {floor[('as built', 'default')] / budget:.1f}x over")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
