"""``lzflow pyhf-limits``: asymptotic and toy-based upper limits with expected bands on the POI of
a pyhf JSON workspace, imported exactly by :mod:`lzflow.pyhf_import` (``.json`` or ``.json.gz``).
:func:`register` adds the subcommand to the parser of :mod:`lzflow.cli`; a workspace that cannot be
imported exactly is refused in one line (``lzflow: error: …``, exit status 2), as the other stages'
errors.

Limits (:mod:`lzflow.stats.asymptotic`, :func:`lzflow.stats.hypotest.toy_limits`) use q̃_μ
(arXiv:1007.1727 Eq. 16) and, by default, pyhf's conventions: CLs at 95 % CL. The toys run on a
geometric POI grid from half the asymptotic −2σ limit to 1.5 × the larger of the +2σ and the
observed limits (extended at its edges when a limit falls outside, :func:`lzflow.stats.inversion.refine_toy_grid`),
``--toys`` S+B toys per grid point and as many B-only toys, generated at θ̂̂(μ) of the observed data.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cliparse import required, stage

if TYPE_CHECKING:  # the console script imports this module on every call: numpy and the importer load on use
    import numpy as np

    from .pyhf_import import ImportedWorkspace

__all__ = ["register", "cmd_pyhf_limits", "load_pyhf_json", "toy_poi_grid", "pyhf_limits", "pyhf_asymptotic"]


def load_pyhf_json(path: str | Path) -> dict[str, Any]:
    """A pyhf workspace from ``path`` (JSON, gzipped if it ends in ``.gz``)."""
    from .pyhf_import import PyhfImportError

    path = Path(path)
    raw = path.read_bytes()
    try:
        return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise PyhfImportError(f"{path}: not a JSON pyhf workspace ({err})") from None


def toy_poi_grid(expected: dict[int, float], observed: float, n_points: int) -> np.ndarray:
    """``n_points`` geometric POI values from ½ μ_exp(−2σ) to 1.5 max(μ_exp(+2σ), μ_obs) (the
    asymptotic limits)."""
    import numpy as np

    from .pyhf_import import PyhfImportError

    lo, hi = 0.5 * expected[-2], 1.5 * max(expected[2], observed)
    if not (0 < lo < hi and math.isfinite(hi)):
        raise PyhfImportError(f"asymptotic limits {expected} (observed {observed}): no finite POI range for toys")
    return np.geomspace(lo, hi, n_points)


def _finite(value: Any) -> Any:
    """JSON-ready: NaN and ±inf (not determined) become null."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value.item() if isinstance(value, np.generic) else value


def pyhf_limits(imp: ImportedWorkspace, cl: float, method: str, n_toys: int, seed: int, n_points: int,
                n_threads: int | None = None) -> dict[str, Any]:
    """Asymptotic and (``n_toys`` > 0) toy-based limits on the POI of ``imp`` (module docstring)."""
    from .stats import asymptotic_limits, toy_limits

    asym = asymptotic_limits(imp.model, observed=imp.observed, cl=cl, method=method)
    out: dict[str, Any] = {"poi": imp.poi, "measurement": imp.measurement, "cl": cl, "method": method,
                           "test_stat": "qtilde", "asymptotic": asym.as_dict()}
    if n_toys > 0:
        grid = toy_poi_grid(asym.expected, asym.observed, n_points)
        start = time.perf_counter()
        toys = toy_limits(imp.model, grid, n_toys, n_toys, base_seed=seed, mass_key=0, cl=cl, method=method,
                          observed=imp.observed, n_threads=n_threads)
        seconds = time.perf_counter() - start
        n_fitted = n_toys * (len(toys.mu_grid) + 1)
        out["toys"] = {**toys.as_dict(), "seed": seed, "n_toys_sb_per_point": n_toys, "n_toys_b": n_toys,
                       "n_toys_fitted": n_fitted, "seconds": seconds, "toys_per_second": n_fitted / seconds}
    return out


def pyhf_asymptotic(spec: dict[str, Any], imp: ImportedWorkspace, cl: float) -> dict[str, Any]:
    """pyhf's own asymptotic CLs limits (``toms748_scan``, q̃) on the same workspace, its fits
    started at lzflow's best fit (pyhf's default start can stop in a local minimum, e.g. pyhf's
    validation workspace 2bin_2channel_coupledhisto)."""
    import pyhf
    from pyhf.infer.intervals.upper_limits import toms748_scan

    from .stats.fit import BatchedFitter

    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(tolerance=1e-12))
    ws = pyhf.Workspace(spec)
    model = ws.model(measurement_name=imp.measurement)
    fit = BatchedFitter(imp.model).fit(imp.counts[None], imp.aux[None], mu_fixed=None, mu_lower=0.0)
    init = imp.pyhf_parameters(fit.params[0], model).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs, exp = toms748_scan(ws.data(model), model, 1e-3 * imp.poi_bounds[1], imp.poi_bounds[1], level=1 - cl,
                                atol=1e-12, rtol=1e-10, test_stat="qtilde", calctype="asymptotics", init_pars=init)
    return {"version": pyhf.__version__, "observed": float(obs),
            "expected": {n: float(e) for n, e in zip((-2, -1, 0, 1, 2), exp)}}


def _bands(expected: dict, err: dict | None = None) -> str:
    def v(n: int) -> str:
        e = (err or {}).get(n, float("nan"))
        return f"{expected[n]:.5g}" + (f" ± {e:.2g}" if math.isfinite(e) else "")

    return f"expected median {v(0)}, ±1σ [{v(-1)}, {v(1)}], ±2σ [{v(-2)}, {v(2)}]"


def cmd_pyhf_limits(args: argparse.Namespace) -> int:
    """upper limits with bands on the POI of a pyhf JSON workspace (asymptotic and toys).

    Import the workspace exactly (normfactor POI, histosys with code 4p as pyhf's default,
    lumi, staterror, fixed parameters; any other modifier is refused in one line naming it),
    then compute the asymptotic and toy-based observed limits and expected bands with q~ (CLs at
    95 % CL by default, as pyhf). --compare-pyhf adds pyhf's own asymptotic limits.
    """
    from .pyhf_import import PyhfImportError, import_workspace

    for name, ok, want in (("--cl", 0 < args.cl < 1, "between 0 and 1"), ("--toys", args.toys >= 0, "≥ 0"),
                           ("--seed", args.seed >= 0, "≥ 0"), ("--points", args.points >= 2, "≥ 2")):
        if not ok:
            raise PyhfImportError(f"{name} {getattr(args, name[2:])}: expected {want}")
    spec = load_pyhf_json(args.workspace)
    imp = import_workspace(spec, args.measurement)
    print(f"pyhf-limits {args.workspace}: {imp.summary()}")
    res = pyhf_limits(imp, args.cl, args.method, args.toys, args.seed, args.points)
    label = f"{args.method.replace('cls', 'CLs').replace('CLsb', 'CLs+b')}, {100 * args.cl:g} % CL, q~"
    a = res["asymptotic"]
    expected = {int(k): v for k, v in a["expected"].items()}
    print(f"asymptotic ({label}): observed {a['observed']:.5g}; {_bands(expected)}")
    if "toys" in res:
        t = res["toys"]
        bands = _bands({int(k): v for k, v in t["expected"].items()}, {int(k): v for k, v in t["expected_err"].items()})
        print(f"toys ({t['n_toys_sb_per_point']} S+B per POI value at {len(t['mu_grid'])} values + {t['n_toys_b']} "
              f"B-only, seed {args.seed}; {t['n_toys_fitted']} toys in {t['seconds']:.1f} s = "
              f"{t['toys_per_second']:.0f} toys/s): observed {t['observed']:.5g} ± {t['observed_err']:.2g}; "
              f"{bands}")
    if args.compare_pyhf:
        if args.method != "cls":
            raise PyhfImportError(f"--compare-pyhf with --method {args.method}: pyhf's upper limits are CLs; "
                                  f"use --method cls")
        p = res["pyhf"] = pyhf_asymptotic(spec, imp, args.cl)
        worst = max([abs(p["observed"] / a["observed"] - 1)]
                    + [abs(p["expected"][n] / expected[n] - 1) for n in expected])
        print(f"pyhf {p['version']} asymptotic ({label}): observed {p['observed']:.5g}; {_bands(p['expected'])}; "
              f"largest relative difference to lzflow {worst:.1e}")
    if args.out:
        from .io import write_json

        write_json(args.out, _finite({**res, "workspace": str(args.workspace), "import": imp.summary()}))
        print(f"-> {args.out}")
    return 0


def register(sub: Any) -> None:
    """Add ``pyhf-limits`` to the console script's subparsers."""
    p = stage(sub, "pyhf-limits", cmd_pyhf_limits)
    required(p, workspace="pyhf JSON workspace (.json or .json.gz)")
    p.add_argument("--measurement", help="measurement name (default: the workspace's first, as pyhf)")
    p.add_argument("--cl", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--method", choices=["cls", "clsb"], default="cls", help="CLs (default, as pyhf) or CLs+b")
    p.add_argument("--toys", type=int, default=1000,
                   help="S+B toys per POI value and B-only toys (default 1000; 0 = asymptotic only)")
    p.add_argument("--seed", type=int, default=0, help="toy seed (default 0; same seed, same toys)")
    p.add_argument("--points", type=int, default=12, help="POI values of the toy grid (default 12)")
    p.add_argument("--compare-pyhf", action="store_true", help="also compute pyhf's asymptotic limits")
    p.add_argument("--out", help="write every number as JSON")
