"""The ``lzflow`` console script: one subcommand per stage.

Every stage can be run alone from a config file (``--config``) or, as the Snakemake rules do,
from a JSON job specification (``--spec``) that holds exactly what that job needs. User mistakes
print one line (``lzflow: error: <key>: <value> ... expected ...``) and exit with status 2; no
tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from . import __version__
from .config import ConfigError, load_config
from .detector import DetectorError
from .units import UnitError

USER_ERRORS = (ConfigError, DetectorError, UnitError, FileNotFoundError)


def _load(args: argparse.Namespace) -> dict[str, Any]:
    return load_config(args.config)


# --------------------------------------------------------------------------------------- validate
def cmd_validate(args: argparse.Namespace) -> int:
    cfg = _load(args)
    det = cfg["detector"]
    print(
        f"{args.config}: OK — tag {cfg['tag']}, detector {det['name']} (g1 {det['nest']['g1']:g}, "
        f"hash {det['hash'][:12]}), exposure {cfg['exposure']['exposure_t_yr']:.2f} t·yr, "
        f"{len(cfg['signal']['masses_GeV'])} masses, {len(cfg['backgrounds'])} backgrounds"
    )
    return 0


# --------------------------------------------------------------------------------------- detector
def cmd_detector(args: argparse.Namespace) -> int:
    from .detector import derived_quantities
    from .io import write_json

    det = json.loads(args.spec) if args.spec else _load(args)["detector"]
    out = dict(det)
    out["derived"] = derived_quantities(det)
    out["lzflow_version"] = __version__
    write_json(args.out, out)
    d = out["derived"]
    print(
        f"detector {det['name']}: g1 {det['nest']['g1']:g}, g2 {d['g2_phd_per_electron']:.2f} phd/e, "
        f"SE {d['single_electron_phd']:.2f} phd, extraction {d['extraction_efficiency']:.3f}, "
        f"fiducial {d['fiducial_mass_t']:.3f} t -> {args.out}"
    )
    return 0


def _add_source(parser: argparse.ArgumentParser, spec_help: str) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", help="analysis config YAML (e.g. config/config.yaml)")
    group.add_argument("--spec", help=spec_help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lzflow",
        description="Projected WIMP sensitivity for a liquid-xenon TPC: detector YAML -> NEST response -> "
        "2D PDFs -> likelihood -> toys -> limits. Each subcommand is one stage of the Snakemake workflow.",
    )
    parser.add_argument("--version", action="version", version=f"lzflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    p = sub.add_parser("validate", help="check a config (schema, units, cross-field checks) and summarise it",
                       description="Validate an analysis config: JSON schema, units and cross-field checks. "
                       "Prints a one-line summary, or a one-line error naming the key, value and expectation.")
    p.add_argument("--config", required=True, help="analysis config YAML")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("detector", help="resolve the detector into detector.json (NEST parameters + derived)",
                       description="Resolve the detector description (preset + overrides, units) into every NEST "
                       "parameter, add quantities NEST derives (g2, extraction efficiency, single-electron size, "
                       "fiducial mass) and a parameter hash; write results/<tag>/detector.json.")
    _add_source(p, "resolved detector dictionary as JSON (what the Snakemake rule passes)")
    p.add_argument("--out", required=True, help="output detector.json")
    p.set_defaults(func=cmd_detector)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


#: Stage modules append a ``register(subparsers)`` function here.
_EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        print(f"lzflow: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
