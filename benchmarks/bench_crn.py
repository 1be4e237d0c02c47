"""Common random numbers for detector-systematic variation matrices: measured variance reduction.

For each systematic, K seeds: the CRN pair (nominal and +1 sigma detector on the same events,
lzflow.response.crn) and an independent pair (the +1 sigma matrix with another seed); the 10 GeV
WIMP (and a flat beta background) is folded through each, and the variance over seeds of the
difference (shifted - nominal) is compared: per ROI total and summed over analysis bins.

    python benchmarks/bench_crn.py [--config config/quick.yaml] [--fraction 0.25] [--seeds 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lzflow import layout as L
from lzflow.config import load_config
from lzflow.pdfs import fold_spectrum
from lzflow.response import build_response
from lzflow.response.crn import build_variations
from lzflow.response.variations import shifted_detector
from lzflow.sources import background_source, wimp_source
from lzflow.space import AnalysisSpace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", nargs="+", default=["config/quick.yaml", "config/overlays/systematics.yaml"])
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--parameters", nargs="+", default=["g1", "g2", "drift_field", "nr_light"])
    args = ap.parse_args()
    cfg = load_config(args.config)
    det, space = cfg["detector"], AnalysisSpace.from_dict(cfg["pdf"])
    syst = L.systematics_of(cfg)
    sources = {"NR": wimp_source(L.signal_spec(cfg, "10")), "beta": background_source(L.background_spec(cfg, "pp"))}
    for inter, src in sources.items():
        nominal = build_response(det, inter, n_samples=cfg["pdf"]["n_samples"], seed=cfg["pdf"]["seed"], space=space,
                                 n_workers=args.workers)
        fold = lambda r: fold_spectrum(r, src.spectrum, full_range_keV=src.energy_range_keV).expected  # noqa: E731
        for name in args.parameters:
            if inter not in syst[name]["interactions"]:
                continue
            shifted = shifted_detector(det, name, syst[name], 1)
            crn, ind, t0 = [], [], time.perf_counter()
            for k in range(args.seeds):
                seed = 1000 + k
                pair = build_variations([det, shifted], (0, 1), nominal, systematic=name, fraction=args.fraction,
                                        seed=seed, n_workers=args.workers)
                other = build_variations([shifted], (1,), nominal, systematic=name, fraction=args.fraction,
                                         seed=seed + 500, n_workers=args.workers)
                s0, s1, s1_other = fold(pair.response(0)), fold(pair.response(1)), fold(other.response(1))
                crn.append(s1 - s0)
                ind.append(s1_other - s0)
            crn, ind = np.array(crn), np.array(ind)
            total = s0.sum()
            v_tot = (crn.sum(axis=(1, 2)).var(ddof=1), ind.sum(axis=(1, 2)).var(ddof=1))
            v_bin = (crn.var(axis=0, ddof=1).sum(), ind.var(axis=0, ddof=1).sum())
            print(f"{inter:4s} {src.name:9s} {name:12s} +1 sigma: mean change {crn.sum(axis=(1, 2)).mean() / total:+.4f} "
                  f"(CRN) {ind.sum(axis=(1, 2)).mean() / total:+.4f} (indep.); sd of the change of the ROI total "
                  f"{np.sqrt(v_tot[0]) / total:.4f} vs {np.sqrt(v_tot[1]) / total:.4f} (variance x{v_tot[1] / v_tot[0]:.0f}); "
                  f"summed per-bin variance x{v_bin[1] / v_bin[0]:.0f}; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
