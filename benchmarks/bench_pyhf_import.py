#!/usr/bin/env python
"""Toys on pyhf workspaces: lzflow (imported by lzflow.pyhf_import) vs pyhf's own toys, side by side.

For each workspace, at μ = lzflow's asymptotic median expected CLs 95 % limit, the toy-based CLs of the
observed data (q̃_μ) from

* ``lzflow``: :func:`lzflow.stats.run_toys` — ``--n-lzflow`` S+B toys generated at (μ, θ̂̂(μ)) and as
  many B-only toys at (0, θ̂̂(0)) of the observed data, each fitted twice (unconditional +
  conditional), with worker threads (``--threads``, default the available cores) and with 1 thread;
* ``pyhf``: the toy calculator of ``pyhf.infer.hypotest(μ, data, model, calctype="toybased", ntoys=N,
  test_stat="qtilde")`` (numpy backend, scipy optimizer, pyhf's defaults; :func:`bench_pyhf` says why
  not hypotest itself) — N S+B and N B-only toys generated at the same fitted points, each fitted twice.

A *toy* is one generated dataset with its two fits in both tools; toys/s = 2 N / wall time. The two
CLs values are Monte Carlo estimates of the same number, printed with their binomial errors.

Workspaces (default): pyhf's validation examples shipped in ``tests/data/pyhf`` (histosys in two
channels; staterror) and lzflow's own pyhf export of the default 40 GeV workspace
(``tests/data/workspace_m40.json.gz``: 1600 bins, 11 rates as linear histosys). Pass ``--workspace``
(repeatable) for others; every workspace must import exactly (else the one-line refusal is printed).

    python benchmarks/bench_pyhf_import.py                       # ~1-2 min on 2 cores
    python benchmarks/bench_pyhf_import.py --n-pyhf 200 --n-lzflow 100000
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = [ROOT / "tests/data/pyhf/2bin_2channel_coupledhisto.json", ROOT / "tests/data/pyhf/2bin_staterror.json",
            "m40"]


def _spec(path) -> tuple[str, dict]:
    """(label, pyhf workspace dict); ``m40``: lzflow's export of the shipped 40 GeV workspace."""
    if str(path) == "m40":
        from lzflow.stats.pyhf_export import to_pyhf_workspace
        from lzflow.workspace import workspace_model

        ws = json.loads(gzip.decompress((ROOT / "tests/data/workspace_m40.json.gz").read_bytes()))
        model = workspace_model(ws)  # signal rescaled so that mu ~ 1 (as bench_toys.py): pyhf's POI bounds [0, 10]
        model = model.with_signal(model.signal * ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"])
        return "lzflow m40 export", json.loads(json.dumps(to_pyhf_workspace(model)))
    from lzflow.pyhfcli import load_pyhf_json

    return Path(path).stem, load_pyhf_json(path)


def _cls(p_sb: float, n_sb: int, p_b: float, n_b: int) -> tuple[float, float]:
    """CLs = CLs+b / CLb and its binomial error (first order, the two ensembles independent)."""
    if p_b == 0:
        return float("nan"), float("nan")
    rel2 = (1 - p_sb) / max(p_sb * n_sb, 1e-300) + (1 - p_b) / (p_b * n_b)
    return float(p_sb / p_b), float(p_sb / p_b * np.sqrt(rel2))


def bench_lzflow(imp, mu: float, n: int, threads: int | None) -> tuple[float, float, float, float]:
    """(seconds, CLs, error, q_obs) of n S+B + n B-only lzflow toys at μ."""
    from lzflow.stats import ToyRequest, run_toys
    from lzflow.stats.hypotest import observed_q

    common = dict(base_seed=7, mass_key=0, poi_index=0, toy_indices=np.arange(n), observed=imp.observed,
                  n_threads=threads)
    start = time.perf_counter()
    sb = run_toys(imp.model, ToyRequest(hypothesis="sb", mu=mu, **common))
    b = run_toys(imp.model, ToyRequest(hypothesis="b", mu=0.0, mu_test=[mu], **common))
    seconds = time.perf_counter() - start
    q_obs = observed_q(imp.model, imp.counts, imp.aux, [mu])[0][0]
    q_sb = sb.q[(sb.status_cond[:, 0] == 0) & (sb.status_uncond == 0), 0]  # failed fits left out
    q_b = b.q[(b.status_cond[:, 0] == 0) & (b.status_uncond == 0), 0]
    return (seconds, *_cls(np.mean(q_sb >= q_obs), q_sb.size, np.mean(q_b >= q_obs), q_b.size), float(q_obs))


def bench_pyhf(spec: dict, measurement: str, mu: float, n: int) -> tuple[float, float, float, float]:
    """(seconds, CLs, error, q_obs) of pyhf's toy calculator with n toys per hypothesis at μ: what
    ``pyhf.infer.hypotest(calctype="toybased")`` runs, without its expected-band percentiles, which
    fail in pyhf 0.7.6 with numpy ≥ 2 (``np.percentile(interpolation=…)``; fixed on pyhf's main)."""
    import pyhf
    from pyhf.infer.calculators import ToyCalculator

    pyhf.set_backend("numpy", "scipy")
    ws = pyhf.Workspace(spec)
    model = ws.model(measurement_name=measurement)
    np.random.seed(7)  # pyhf's toys draw from numpy's global generator
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = ToyCalculator(ws.data(model), model, test_stat="qtilde", ntoys=n, track_progress=False)
        q_obs = calc.teststatistic(mu)
        clsb, clb, _ = calc.pvalues(q_obs, *calc.distributions(mu))
    return (time.perf_counter() - start, *_cls(float(clsb), n, float(clb), n), float(q_obs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", action="append", help="pyhf workspace (.json/.json.gz; 'm40' = lzflow's export); "
                    "repeatable (default: two of pyhf's validation examples and m40)")
    ap.add_argument("--n-lzflow", type=int, default=20000, help="lzflow toys per hypothesis")
    ap.add_argument("--n-pyhf", type=int, default=100, help="pyhf toys per hypothesis (0 = skip pyhf)")
    ap.add_argument("--n-pyhf-large", type=int, default=10,
                    help="pyhf toys per hypothesis on workspaces of more than 100 bins")
    ap.add_argument("--threads", type=int, default=None, help="lzflow worker threads (default: the available cores)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)

    import pyhf

    from lzflow.pyhf_import import PyhfImportError, import_workspace
    from lzflow.stats import asymptotic_limits
    from lzflow.stats._threads import available_cores

    threads = args.threads or available_cores()
    print(f"pyhf {pyhf.__version__} (numpy, scipy; one toy at a time), lzflow batched Newton "
          f"({threads} threads and 1 thread); {available_cores()} cores available")
    rows = []
    for path in args.workspace or DEFAULTS:
        label, spec = _spec(path)
        try:
            imp = import_workspace(spec)
        except PyhfImportError as err:
            print(f"{label}: not imported: {err}")
            continue
        m = imp.model
        mu = asymptotic_limits(m, observed=imp.observed, cl=0.95, method="cls").expected[0]
        n_py = args.n_pyhf if m.n_bins <= 100 else min(args.n_pyhf, args.n_pyhf_large)
        print(f"\n{label}: {m.n_bins} bins, {m.n_par} parameters ({m.n_free_bkg} rates, {m.n_shape} histosys); "
              f"mu = {mu:.4g} (asymptotic median CLs 95 % limit)")
        t_lz, cls_lz, err_lz, q_lz = bench_lzflow(imp, mu, args.n_lzflow, threads)
        t_1 = bench_lzflow(imp, mu, min(args.n_lzflow, 4096), 1)[0]
        row = {"workspace": label, "bins": m.n_bins, "parameters": m.n_par, "mu": mu,
               "lzflow_toys": 2 * args.n_lzflow, "lzflow_s": t_lz, "lzflow_toys_per_s": 2 * args.n_lzflow / t_lz,
               "lzflow_1thread_toys_per_s": 2 * min(args.n_lzflow, 4096) / t_1,
               "lzflow_cls": cls_lz, "lzflow_cls_err": err_lz, "lzflow_q_obs": q_lz}
        if n_py:
            t_py, cls_py, err_py, q_py = bench_pyhf(spec, imp.measurement, mu, n_py)
            row.update(pyhf_toys=2 * n_py, pyhf_s=t_py, pyhf_toys_per_s=2 * n_py / t_py, pyhf_cls=cls_py,
                       pyhf_cls_err=err_py, pyhf_q_obs=q_py)
        rows.append(row)
        print(f"  lzflow: {2 * args.n_lzflow} toys in {t_lz:.2f} s = {row['lzflow_toys_per_s']:,.0f} toys/s "
              f"({row['lzflow_1thread_toys_per_s']:,.0f} with 1 thread); q~_obs = {q_lz:.5g}, CLs = {cls_lz:.4f} ± {err_lz:.4f}")
        if n_py:
            print(f"  pyhf:   {2 * n_py} toys in {t_py:.2f} s = {row['pyhf_toys_per_s']:,.1f} toys/s; "
                  f"q~_obs = {q_py:.5g}, CLs = {cls_py:.4f} ± {err_py:.4f}")
            if abs(q_py - q_lz) > 1e-3:
                print("  (q~_obs differ: pyhf's fits from its default start stop elsewhere; lzflow's minimum is the "
                      "lower one, tests/unit/test_pyhf_import.py)")
            print(f"  lzflow / pyhf toys/s: {row['lzflow_toys_per_s'] / row['pyhf_toys_per_s']:,.0f} "
                  f"({row['lzflow_1thread_toys_per_s'] / row['pyhf_toys_per_s']:,.0f} with 1 thread)")
    print(f"\n{'workspace':<28}{'bins':>6}{'pars':>6}{'lzflow toys/s':>15}{'1 thread':>10}{'pyhf toys/s':>13}{'ratio':>9}")
    for r in rows:
        py = r.get("pyhf_toys_per_s", float("nan"))
        print(f"{r['workspace']:<28}{r['bins']:>6}{r['parameters']:>6}{r['lzflow_toys_per_s']:>15,.0f}"
              f"{r['lzflow_1thread_toys_per_s']:>10,.0f}{py:>13,.1f}{r['lzflow_toys_per_s'] / py:>9,.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
