"""``lzflow fog``: the discovery limit versus exposure per mass, the gradient index n and the
neutrino fog (:mod:`lzflow.fog`), written as a CSV (``mass_GeV, exposure_t_yr,
sigma_discovery_cm2, n``), a JSON summary (settings, n = 2 floor per mass, toy spot checks) and a
plot of the fog in the mass–cross-section plane (n = 2, 2.5, 3 contours, the discovery limit at
each decade of exposure, O'Hare's published xenon floor and, if given, a limit curve).

Two modes: ``--workspaces`` (LZ-like: an analysis's workspaces, one per mass, scaled from
``--workspace-exposure-t-yr``) or ``--ideal`` with ``--masses`` (O'Hare's ideal xenon detector,
threshold ``--threshold-kev``). :func:`register` adds the subcommand to :mod:`lzflow.cli`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cliparse import stage

if TYPE_CHECKING:  # numpy and the fits load on use (the console script imports this module on every call)
    from .fog import FogCurve, FogModel

__all__ = ["N_LEVELS", "cmd_fog", "figure_fog", "fog_models", "parse_spot", "register"]

#: the gradient-index contours drawn (issue 14)
N_LEVELS = (2.0, 2.5, 3.0)


def parse_spot(text: str) -> tuple[float, float]:
    """``MASS:EXPOSURE`` (GeV, t·yr) of a toy spot check."""
    from .exceptions import ConfigError

    try:
        m, e = (float(x) for x in text.split(":"))
    except ValueError:
        raise ConfigError(f"--spot-check {text!r}: expected MASS_GEV:EXPOSURE_T_YR, e.g. 40:15.3") from None
    if not (m > 0 and e > 0):
        raise ConfigError(f"--spot-check {text!r}: mass and exposure must be > 0")
    return m, e


def _read_workspace(path: str) -> dict[str, Any]:
    raw = Path(path).read_bytes()
    return json.loads(gzip.decompress(raw) if path.endswith(".gz") else raw)


def fog_models(args: argparse.Namespace) -> tuple[list[FogModel], list[dict[str, Any]]]:
    """The per-mass models of the chosen mode, sorted by mass, and the workspaces (LZ-like mode)."""
    from .exceptions import ConfigError
    from .fog import ideal_fog_model, workspace_fog_model

    if bool(args.workspaces) == bool(args.ideal):
        raise ConfigError("lzflow fog: give exactly one of --workspaces (LZ-like) or --ideal (with --masses)")
    if args.ideal:
        if not args.masses:
            raise ConfigError("--ideal: --masses is required (WIMP masses in GeV)")
        return [ideal_fog_model(m, threshold_keV=args.threshold_kev) for m in sorted(args.masses)], []
    if args.workspace_exposure_t_yr is None:
        raise ConfigError("--workspaces: --workspace-exposure-t-yr is required (the exposure the workspaces were made for)")
    if args.masses:
        raise ConfigError("--masses: only with --ideal (the workspaces carry their masses)")
    docs = sorted((_read_workspace(p) for p in args.workspaces), key=lambda w: float(w["mass_GeV"]))
    return [workspace_fog_model(ws, args.workspace_exposure_t_yr) for ws in docs], docs


def figure_fog(curves: Sequence[FogCurve], title: str, limit: tuple[Any, Any, str] | None = None,
               floor: tuple[Any, Any] | None = None):
    """The fog in the (mass, σ) plane: n shaded where ≥ 2, contours at :data:`N_LEVELS`, the
    discovery limit at every decade of exposure, ``floor`` = (m, σ) of O'Hare, ``limit`` = (m, σ, label)."""
    import numpy as np

    from .curve import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 7))
    masses = np.array([c.mass_GeV for c in curves])
    # the (mass, exposure) grid is a curvilinear mesh in the (mass, σ) plane: σ_DL decreases with exposure
    mesh_m = np.repeat(masses[:, None], curves[0].exposures.size, axis=1)
    mesh_s = np.array([c.sigma for c in curves])
    mesh_n = np.array([c.n for c in curves])
    ok = np.isfinite(mesh_s).all() and len(curves) >= 2
    if ok:
        shade = ax.contourf(mesh_m, mesh_s, np.clip(mesh_n, 1.0, 5.0), levels=np.linspace(2.0, 5.0, 13), cmap="Blues")
        bar = fig.colorbar(shade, ax=ax)
        bar.set_label("gradient index n", fontsize=14)
        lines = ax.contour(mesh_m, mesh_s, mesh_n, levels=list(N_LEVELS), colors=["navy", "darkorange", "crimson"])
        ax.clabel(lines, fmt={lv: f"n = {lv:g}" for lv in N_LEVELS}, fontsize=10, inline=False)
    ex = curves[0].exposures
    for decade in range(int(np.ceil(np.log10(ex[0]))), int(np.floor(np.log10(ex[-1]))) + 1):
        e = 10.0 ** decade
        s = [np.exp(np.interp(np.log(e), np.log(c.exposures), np.log(c.sigma))) for c in curves]
        ax.plot(masses, s, color="grey", lw=0.8, alpha=0.8)
        ax.annotate(f"{e:g} t·yr", (masses[-1], s[-1]), fontsize=9, color="dimgrey", ha="right", va="bottom")
    if floor is not None:
        ax.plot(floor[0], floor[1], "k--", lw=1.5, label="O'Hare 2021 Xe floor (n = 2, median)")
    if limit is not None:
        ax.plot(limit[0], limit[1], color="black", lw=2, label=limit[2])
    ax.set_xscale("log")
    ax.set_yscale("log")
    if masses.size > 1:
        ax.set_xlim(masses.min(), masses.max())
    finite = mesh_s[np.isfinite(mesh_s)]
    ax.set_ylim(finite.min() / 1.5, finite.max() * 1.5)
    ax.set_xlabel("WIMP mass [GeV/c²]", fontsize=15)
    ax.set_ylabel("SI WIMP-nucleon cross section [cm²]", fontsize=15)
    ax.set_title(title, fontsize=12)
    if floor is not None or limit is not None:
        ax.legend(fontsize=9, loc="upper left")
    return fig


def _limit_line(args: argparse.Namespace, docs: list[dict[str, Any]]):
    from .curve import read_curve_csv

    if args.limit_curve:
        rows = [r for r in read_curve_csv(args.limit_curve) if r.get("sigma_median_cm2")]
        return ([r["mass_GeV"] for r in rows], [r["sigma_median_cm2"] for r in rows],
                f"median expected 90 % CL limit ({Path(args.limit_curve).name})")
    if docs:
        pts = [(float(w["mass_GeV"]), w["asymptotic"]["expected_sigma_cm2"]["0"]) for w in docs]
        return ([m for m, _ in pts], [s for _, s in pts],
                f"asymptotic median 90 % CL limit at {args.workspace_exposure_t_yr:.3g} t·yr")
    return None


def cmd_fog(args: argparse.Namespace) -> int:
    """the discovery limit vs exposure and the neutrino fog (Asimov fast path, toy spot checks).

    Per mass: the smallest SI cross section with --probability (default 0.9) of a --z (3) sigma
    discovery, for --exposures LO HI N t*yr (default 0.1 1e4 30), with every background
    (neutrino fluxes included) a Gaussian-constrained nuisance parameter; the gradient index
    n = -(dln sigma/dln MT)^-1 and the n = 2 floor; toy spot checks at MASS:EXPOSURE points.
    """
    import numpy as np

    from .exceptions import ConfigError
    from .fog import (
        FOG_COLUMNS,
        default_exposures,
        floor_at_n,
        fog_curve,
        fog_rows,
        load_ohare_floor,
        spot_check,
    )
    from .io import write_csv, write_json

    lo, hi, n = args.exposures
    if n != int(n):
        raise ConfigError(f"--exposures N {n}: expected an integer number of exposures")
    exposures = default_exposures(int(n), lo, hi)
    models, docs = fog_models(args)
    start = time.perf_counter()
    curves = [fog_curve(fm, exposures, args.z, args.probability) for fm in models]
    seconds = time.perf_counter() - start
    mode = "ideal" if args.ideal else "workspace"
    print(f"fog ({mode}): {len(curves)} masses x {len(exposures)} exposures in {seconds:.1f} s")
    write_csv(args.out_csv, fog_rows(curves), FOG_COLUMNS)
    spots = []
    for text in args.spot_check or []:
        m, e = parse_spot(text)
        match = [fm for fm in models if abs(fm.mass_GeV - m) <= 1e-6 * m]
        if not match:
            raise ConfigError(f"--spot-check {text}: mass {m:g} GeV is not one of {[fm.mass_GeV for fm in models]}")
        r = spot_check(match[0], e, n_toys_sb=args.spot_toys[0], n_toys_b=args.spot_toys[1], seed=args.seed,
                       z=args.z, probability=args.probability)
        spots.append(r)
        print(f"spot check {m:g} GeV, {e:g} t*yr: sigma_DL {r['sigma_discovery_cm2']:.3e} cm2; P(>= {args.z:g} sigma) "
              f"toys {r['probability_toys']:.3f} +- {r['probability_toys_err']:.3f}, Asimov {args.probability:g}")
    mo, so = load_ohare_floor()
    floors = {str(c.mass_GeV): {str(lv): floor_at_n(c, lv) for lv in N_LEVELS} for c in curves}
    if args.out_json:
        write_json(args.out_json, {
            "mode": mode, "z": args.z, "probability": args.probability, "exposures_t_yr": exposures.tolist(),
            "asimov_formula": "sqrt(q0_A(mu)) = z + Phi^-1(probability) (arXiv:1007.1727 Eq. 53: sqrt(q0) ~ N(sqrt(q0_A), 1))",
            "models": [{"mass_GeV": fm.mass_GeV, "kind": fm.kind, "backgrounds": dict(zip(fm.names, map(float, fm.rel_unc))),
                        **fm.meta} for fm in models],
            "floor_sigma_cm2_at_n": {k: {lv: (v if np.isfinite(v) else None) for lv, v in d.items()}
                                     for k, d in floors.items()},
            "spot_checks": spots, "seconds": seconds})
    ohare = (mo[so > 0], so[so > 0])
    title = (f"{'ideal Xe detector' if args.ideal else 'LZ-like'}: {args.probability:.0%} probability of a "
             f"{args.z:g}σ discovery")
    from .curve import save_figure

    save_figure(figure_fog(curves, title, _limit_line(args, docs), ohare), args.out_plot)
    print(f"-> {args.out_csv}, {args.out_plot}" + (f", {args.out_json}" if args.out_json else ""))
    return 0


def register(sub: Any) -> None:
    """Add ``fog`` to the console script's subparsers."""
    p = stage(sub, "fog", cmd_fog)
    p.add_argument("--workspaces", nargs="+", help="LZ-like mode: workspace.json per mass (.json or .json.gz)")
    p.add_argument("--workspace-exposure-t-yr", type=float, help="the exposure the workspaces were made for (t*yr)")
    p.add_argument("--ideal", action="store_true", help="O'Hare's ideal xenon detector (CEvNS only)")
    p.add_argument("--masses", type=float, nargs="+", help="--ideal: WIMP masses (GeV)")
    p.add_argument("--threshold-kev", type=float, default=1e-4, help="--ideal: recoil threshold (keV, default 1e-4 as O'Hare)")
    p.add_argument("--exposures", type=float, nargs=3, default=[0.1, 1e4, 30], metavar=("LO", "HI", "N"),
                   help="N exposures geometric from LO to HI t*yr (default 0.1 1e4 30)")
    p.add_argument("--z", type=float, default=3.0, help="discovery significance (default 3)")
    p.add_argument("--probability", type=float, default=0.9,
                   help="probability of the discovery (default 0.9; 0.5 = median, O'Hare's definition)")
    p.add_argument("--spot-check", action="append", metavar="MASS:EXPOSURE", help="toy spot check (repeatable)")
    p.add_argument("--spot-toys", type=int, nargs=2, default=[2000, 20000], metavar=("SB", "B"),
                   help="S+B and B-only (importance-sampled) toys per spot check (default 2000 20000)")
    p.add_argument("--seed", type=int, default=0, help="toy seed (default 0)")
    p.add_argument("--limit-curve", help="limit_curve.csv to draw (default: the workspaces' asymptotic medians)")
    p.add_argument("--out-csv", required=True, help="output CSV: mass_GeV, exposure_t_yr, sigma_discovery_cm2, n")
    p.add_argument("--out-plot", required=True, help="output plot (.png or .pdf)")
    p.add_argument("--out-json", help="output JSON: settings, floors at n = 2, 2.5, 3, spot checks")
