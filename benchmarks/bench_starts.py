#!/usr/bin/env python
"""Where the CPU of the shape fits goes with further starts (issue 12): per fit phase.

Runs :func:`lzflow.stats.run_toys` (S+B toys at μ = 1, the asymptotic median limit, one thread) on
the default 40 GeV systematics workspace and splits the process CPU time by phase — the first
μ-free fit (``u``), each of its further starts (``u:aux``, ``u:alpha0``, ``u:reflect``), the first
fit at fixed μ (``c``) and its further start (``c:reflect``) — with, per toy, the Newton
iterations, the points evaluated (morphed templates, ν, NLL, gradient), the Hessians formed and
their CPU, and for the further starts how their runs ended: lower than the toy's result so far
(by > 1e-9: the result changes), converged elsewhere (higher), stopped in the well of a known
minimum (pruned, :mod:`lzflow.stats.restart_prune`) or failed. The split wraps the library's own
functions (timing only, no change to what they compute); the records are those of a plain run.

    python benchmarks/bench_starts.py                          # log_pchip, 1024 toys
    python benchmarks/bench_starts.py --interpolation log_quartic --n-toys 2048 --seed 99
    python benchmarks/bench_starts.py --before 64899b6 --pairs 5 --n-toys 2048   # before → after

``--before REV``: the same run with revision REV of lzflow (exported with ``git archive`` to
``$LZFLOW_COMPARE_DIR/<sha>``, default ``/tmp/lzflow-compare``, first on ``PYTHONPATH``) and with this
checkout, alternately ``--pairs`` times in fresh processes; prints both CPU figures of each pair, their
medians and whether the toy records (every per-toy array) are bit-identical. Toys are fitted in whole
blocks of 512 (:func:`lzflow.stats.run_toys`): ask for a multiple of 512.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", default="tests/data/workspace_m40_systematics.json.gz")
    ap.add_argument("--interpolation", default="log_pchip", choices=["log_pchip", "log_quartic", "log_code4p"])
    ap.add_argument("--n-toys", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--before", default=None, help="revision to compare with, run by run (see above)")
    ap.add_argument("--pairs", type=int, default=3, help="with --before: before/after runs, alternating")
    ap.add_argument("--json", default=None, help="also write the total CPU and a digest of the records here")
    args = ap.parse_args(argv)
    if args.before:
        return compare(args)

    import lzflow.stats.logmorph_nll as lm
    import lzflow.stats.newton as nw
    from lzflow.stats import ToyRequest, run_toys
    from lzflow.stats.fitresult import FitStatus
    from lzflow.workspace import read_workspace, workspace_model

    ws = read_workspace(args.workspace)
    model = workspace_model(ws)
    model = model.with_signal(model.signal * ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"])
    model = model.with_shape_systematics(model.shape_systematics, args.interpolation)
    phase = ["?"]
    st: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def timed(owner, name, key, rows_of):
        orig = getattr(owner, name)

        def wrapper(*a, **k):
            t0 = time.process_time()
            out = orig(*a, **k)
            s = st[phase[0]]
            s[key + "_cpu"] += time.process_time() - t0
            s[key] += rows_of(a, out)
            return out

        setattr(owner, name, wrapper)
        return orig

    saved = [(lm._Point, "__init__", lm._Point.__init__), (lm.LogMorphRows, "hessian", lm.LogMorphRows.hessian),
             (nw, "minimise", nw.minimise), (nw, "fit_block", nw.fit_block), (nw, "restart", nw.restart)]
    timed(lm._Point, "__init__", "points", lambda a, out: a[2].shape[0])  # (self, layout, y, counts)
    timed(lm.LogMorphRows, "hessian", "hessians", lambda a, out: out.shape[2])
    timed(nw, "minimise", "runs", lambda a, out: a[1].shape[0])
    orig_min = nw.minimise

    def minimise(*a, **k):
        out = orig_min(*a, **k)
        st[phase[0]]["iterations"] += int(out.n_iter.sum())
        return out

    nw.minimise = minimise
    orig_block = nw.fit_block

    def fit_block(fitter, data, mu_fixed, *a, **k):
        phase[0] = "u" if mu_fixed is None else "c"
        return orig_block(fitter, data, mu_fixed, *a, **k)

    nw.fit_block = fit_block
    orig_restart = nw.restart

    def restart(res, ids, cols, mu_fixed, kinds, make_start, run, prune=True):
        base = "u" if mu_fixed is None else "c"

        def start(kind, i):
            phase[0] = f"{base}:{kind}"
            return make_start(kind, i)

        def run_counted(y1, i, cut):
            old, old_ok = res.nll[i].copy(), res.status[i] == FitStatus.CONVERGED
            r = run(y1, i, cut)
            conv = r.status == FitStatus.CONVERGED
            lower = conv & (~old_ok | (r.nll < old - 1e-9))
            s = st[phase[0]]
            s["lower"] += int(lower.sum())
            s["higher"] += int((conv & ~lower).sum())
            s["pruned"] += int(np.sum(r.status == FitStatus.NOT_RUN))
            s["failed"] += int(np.sum(~conv & (r.status != FitStatus.NOT_RUN)))
            return r

        out = orig_restart(res, ids, cols, mu_fixed, kinds, start, run_counted, prune)
        phase[0] = base
        return out

    nw.restart = restart

    def request(n: int) -> ToyRequest:
        return ToyRequest(base_seed=args.seed, mass_key=400000, poi_index=0, hypothesis="sb", mu=1.0,
                          toy_indices=np.arange(n), block_size=512, n_threads=1)

    run_toys(model, request(8))  # compile the kernels outside the timing
    st.clear()
    c0 = time.process_time()
    r = run_toys(model, request(args.n_toys))
    cpu = time.process_time() - c0
    for owner, name, orig in saved:
        setattr(owner, name, orig)
    n = args.n_toys
    print(f"{args.workspace} ({args.interpolation}), {n} S+B toys at the median limit, seed {args.seed}, 1 thread; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"all: {1e6 * cpu / n:,.0f} CPU-us per toy (with generation); mean q~ = {np.nanmean(r.q):.4f}, "
          f"fraction mu_hat > 1: {np.mean(r.mu_hat > 1):.3f}")
    head = ("phase", "CPU-us", "share", "runs", "iter", "points", "pt-us", "hess", "h-us", "lower", "higher", "pruned", "failed")
    print("".join(f"{h:>9}" for h in head))
    for k in sorted(st, key=lambda k: ("uc".index(k[0]), k)):
        s = st[k]
        row = [k, f"{1e6 * s['runs_cpu'] / n:,.0f}", f"{s['runs_cpu'] / cpu:.0%}"] + [
            f"{s[c] / n:.2f}" for c in ("runs", "iterations", "points")] + [
            f"{1e6 * s['points_cpu'] / n:,.0f}", f"{s['hessians'] / n:.2f}", f"{1e6 * s['hessians_cpu'] / n:,.0f}"] + [
            f"{s[c] / n:.3f}" if ":" in k else "" for c in ("lower", "higher", "pruned", "failed")]
        print("".join(f"{v:>9}" for v in row))
    print("per toy; CPU-us of a phase includes its points and Hessians; lower/higher/pruned/failed: runs per toy")
    if args.json:
        digest = hashlib.sha256()
        for name in r.per_toy:
            digest.update(np.ascontiguousarray(getattr(r, name)).tobytes())
        Path(args.json).write_text(json.dumps({"cpu_us_per_toy": 1e6 * cpu / n, "records_sha256": digest.hexdigest()}))
    return 0


def compare(args: argparse.Namespace) -> int:
    """Alternate runs of revision ``args.before`` and of this checkout (module docstring)."""
    repo = Path(__file__).resolve().parent.parent
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", args.before], check=True,
                         capture_output=True, text=True).stdout.strip()
    tree = Path(os.environ.get("LZFLOW_COMPARE_DIR", "/tmp/lzflow-compare")) / sha
    if not (tree / "src").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(repo), "archive", sha], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    out = tree / "bench_starts.json"
    for i in range(args.pairs):
        for label, src in (("before", tree / "src"), ("after", repo / "src")):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--workspace", args.workspace, "--interpolation",
                   args.interpolation, "--n-toys", str(args.n_toys), "--seed", str(args.seed), "--json", str(out)]
            env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
            subprocess.run(cmd, check=True, cwd=repo, env=env, stdout=subprocess.DEVNULL)
            runs[label].append(json.loads(out.read_text()))
            print(f"pair {i + 1} {label:>6} ({args.before if label == 'before' else 'this checkout'}): "
                  f"{runs[label][-1]['cpu_us_per_toy']:,.0f} CPU-us per toy", flush=True)
    med = {k: float(np.median([r["cpu_us_per_toy"] for r in v])) for k, v in runs.items()}
    same = len({r["records_sha256"] for v in runs.values() for r in v}) == 1
    print(f"median CPU-us per toy: before {med['before']:,.0f}, after {med['after']:,.0f} "
          f"({med['after'] / med['before'] - 1:+.1%}); toy records bit-identical: {'yes' if same else 'NO'}; "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
