#!/usr/bin/env python
"""The LZ-like neutrino fog (9 masses × 30 exposures, 0.1–1e4 t·yr, 90 % probability of a 3σ
discovery, :mod:`lzflow.fog`) timed on this machine: the Asimov fast path over the whole grid, then
toy spot checks (:func:`lzflow.fog.spot_check`) at chosen points.

Workspaces: the default analysis's (``results/lz_projection/m*/workspace.json``, from
``snakemake --cores all``) or ``--workspaces``; without either, the shipped 40 GeV workspace
(``tests/data/workspace_m40.json.gz``, 1600 bins, 11 backgrounds) stands in for each of the 9 masses
(the same cost per mass; said in the output).

    python benchmarks/bench_fog.py                      # Asimov grid + 2 spot checks
    python benchmarks/bench_fog.py --spot 40:15.33 --spot 40:1000 --spot-toys 2000 20000
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np

from lzflow.fog import default_exposures, fog_curve, spot_check, workspace_fog_model

ROOT = Path(__file__).resolve().parents[1]
LZ_EXPOSURE = 5.6 * 1000 / 365.25  # config/config.yaml: 5.6 t x 1000 d


def _load(path: Path) -> dict:
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)


def workspaces(paths: list[str] | None) -> tuple[list[dict], str]:
    if paths:
        return [_load(Path(p)) for p in paths], "given"
    found = sorted((ROOT / "results" / "lz_projection").glob("m*/workspace.json"))
    if len(found) >= 9:
        return [_load(p) for p in found], "results/lz_projection"
    ws = _load(ROOT / "tests" / "data" / "workspace_m40.json.gz")
    return [ws] * 9, "tests/data/workspace_m40.json.gz x 9 (no default analysis tree here)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspaces", nargs="+")
    ap.add_argument("--exposure", type=float, default=LZ_EXPOSURE, help="the workspaces' exposure (t*yr)")
    ap.add_argument("--n-exposures", type=int, default=30)
    ap.add_argument("--spot", action="append", default=None, help="MASS:EXPOSURE (default 40:15.33, 40:1000)")
    ap.add_argument("--spot-toys", type=int, nargs=2, default=[2000, 20000])
    args = ap.parse_args()
    docs, source = workspaces(args.workspaces)
    models = sorted((workspace_fog_model(ws, args.exposure) for ws in docs), key=lambda f: f.mass_GeV)
    ex = default_exposures(args.n_exposures)
    t0, c0 = time.perf_counter(), time.process_time()
    curves = [fog_curve(fm, ex) for fm in models]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"workspaces: {source}")
    print(f"Asimov fog: {len(models)} masses x {ex.size} exposures ({ex[0]:g}-{ex[-1]:g} t*yr) in {wall:.1f} s wall, "
          f"{cpu:.1f} s CPU ({1e3 * wall / (len(models) * ex.size):.0f} ms per discovery limit); target <= 30 min")
    for c in curves:
        k = int(np.argmax(c.n >= 2)) if np.any(c.n >= 2) else None
        print(f"  {c.mass_GeV:8.4g} GeV: sigma_DL {c.sigma[0]:.3e} -> {c.sigma[-1]:.3e} cm2, n {c.n[0]:.2f} -> "
              f"{c.n[-1]:.2f}" + (f", n = 2 at {c.exposures[k]:.3g} t*yr" if k is not None else ""))
    by_mass = {fm.mass_GeV: fm for fm in models}
    for text in args.spot or ["40:15.33", "40:1000"]:
        m, e = (float(x) for x in text.split(":"))
        fm = by_mass.get(m) or min(models, key=lambda f: abs(f.mass_GeV - m))
        t0 = time.perf_counter()
        r = spot_check(fm, e, n_toys_sb=args.spot_toys[0], n_toys_b=args.spot_toys[1], seed=1)
        print(f"spot check {fm.mass_GeV:g} GeV, {e:g} t*yr ({r['signal_events']:.1f} signal, "
              f"{r['background_events']:.0f} background events): P(3 sigma) toys {r['probability_toys']:.3f} +- "
              f"{r['probability_toys_err']:.3f} vs Asimov 0.9; critical q0 {r['q0_critical_toys']:.2f} (asymptotic 9); "
              f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
