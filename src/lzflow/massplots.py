"""Per-mass plots of one ``limit.json``: the p-value scan and the test-statistic distributions
(:func:`lzflow.curve.plot_pvalues`, :func:`lzflow.curve.plot_teststat`).

They are a per-mass stage of their own (rule ``mass_plots``), not part of the curve, so that each
mass's plots are drawn as soon as its merge ends, in parallel with the other masses' toys, and a
change to one mass redraws that mass's plots only.
"""

from __future__ import annotations

import argparse
from typing import Any

from .cliparse import required, stage

__all__ = ["cmd_mass_plots", "register"]


def cmd_mass_plots(args: argparse.Namespace) -> int:
    """per-mass plots: the p-value scan and the test-statistic distributions of one limit.json.

    CLs+b, CLb and CLs vs mu with their Clopper-Pearson intervals, and the S+B / B-only
    test-statistic distributions at the POIs nearest the limits with the asymptotic expectation.
    """
    from .curve import plot_pvalues, plot_teststat
    from .io import read_json

    doc = read_json(args.limit)
    plot_pvalues(doc, args.pvalues_out)
    plot_teststat(doc, args.teststat_out)
    print(f"{doc['mass_GeV']:g} GeV -> {args.pvalues_out}, {args.teststat_out}")
    return 0


def register(sub: Any) -> None:
    """Add ``mass-plots`` to the console script's subparsers."""
    p = stage(sub, "mass-plots", cmd_mass_plots)
    required(p, limit="one mass's limit.json", pvalues_out="output p-value scan (PNG)",
             teststat_out="output test-statistic distributions (PNG)")
