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

import numpy as np

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


# --------------------------------------------------------------------------------------- response
def response_spec_from_config(cfg: dict[str, Any], interaction: str) -> dict[str, Any]:
    """The response job's slice of a resolved config (what the Snakemake rule passes as --spec)."""
    pdf = cfg["pdf"]
    return {"interaction": interaction, "n_samples": pdf["n_samples"], "seed": pdf["seed"],
            "cs1_phd": pdf["cs1_phd"], "log10_cs2_phd": pdf["log10_cs2_phd"],
            "s2_raw_min_phd": pdf["s2_raw_min_phd"]}


def analysis_space(spec: dict[str, Any]):
    from .response import AnalysisSpace

    return AnalysisSpace(
        cs1_min=spec["cs1_phd"]["min"], cs1_max=spec["cs1_phd"]["max"], cs1_bins=spec["cs1_phd"]["bins"],
        log10cs2_min=spec["log10_cs2_phd"]["min"], log10cs2_max=spec["log10_cs2_phd"]["max"],
        log10cs2_bins=spec["log10_cs2_phd"]["bins"], s2_raw_min_phd=spec["s2_raw_min_phd"],
    )


def cmd_response(args: argparse.Namespace) -> int:
    from .io import read_json
    from .response import build_response, save_response

    if args.spec:
        spec = json.loads(args.spec)
    else:
        spec = response_spec_from_config(_load(args), args.interaction)
    detector = read_json(args.detector)
    detector.pop("derived", None)
    detector.pop("lzflow_version", None)
    response = build_response(detector, spec["interaction"], n_samples=spec["n_samples"], seed=spec["seed"],
                              n_workers=args.workers, space=analysis_space(spec))
    save_response(response, args.out)
    print(f"response {spec['interaction']}: {int(response.n_sim.sum()):,} NEST events, "
          f"{int(response.counts.sum()):,} in the ROI -> {args.out}")
    return 0


# --------------------------------------------------------------------------------------------- pdf
def cmd_pdf(args: argparse.Namespace) -> int:
    import warnings

    from .pdfs import make_pdf
    from .response import load_response
    from .sources import background_source, wimp_source

    spec = json.loads(args.spec)
    source = wimp_source(spec) if "mass_GeV" in spec else background_source(spec)
    response = load_response(args.response)
    if response.interaction != source.interaction:
        raise ConfigError(f"{source.name}: needs the {source.interaction} response, got {args.response} "
                          f"({response.interaction})")
    out = Path(args.out)
    expected_name = f"{source.name}.root"
    if out.name != expected_name:
        raise ConfigError(f"--out: {out} must be named {expected_name}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        meta = make_pdf(response, source.name, source.spectrum, out.parent, n_samples=spec.get("n_samples"),
                        full_range_keV=source.energy_range_keV if np.isfinite(source.energy_range_keV[1]) else None,
                        source_metadata=dict(source.metadata))
    for warning in caught:
        print(f"lzflow: warning: {warning.message}", file=sys.stderr)
    print(f"pdf {source.name}: {meta['expected_events']:.4g} events in the ROI, efficiency "
          f"{meta['efficiency']:.3g}, effective n_samples {meta['n_samples_effective']:.3g} -> {out}")
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

    p = sub.add_parser("response", help="simulate one NEST interaction type into a response matrix",
                       description="Run NEST (nestpy) once for an interaction type (NR, beta, gammaRay) with energies "
                       "allocated over a fine log grid so that every PDF folded from it reaches the configured "
                       "effective n_samples; histogram the ROI events per (energy bin, cS1, log10 cS2). "
                       "Bit-identical for any number of workers.")
    _add_source(p, "response job spec as JSON (interaction, n_samples, seed, binning, ROI)")
    p.add_argument("--interaction", default="NR", choices=["NR", "beta", "gammaRay"],
                   help="interaction type (with --config)")
    p.add_argument("--detector", required=True, help="detector.json from the detector stage")
    p.add_argument("--workers", type=int, default=1, help="worker processes (does not change the result)")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=cmd_response)

    p = sub.add_parser("pdf", help="fold a source spectrum through its response into a 2D PDF (.root + .json)",
                       description="Fold one source's recoil spectrum (a background, or the WIMP signal of one mass "
                       "at sigma_ref) through its interaction type's response matrix; write a TH2D of expected "
                       "events per (cS1, log10 cS2) bin with uproot plus a JSON sidecar (expected events, "
                       "efficiency, effective n_samples, seed, detector hash). An empty signal is written with "
                       "empty: true and a warning.")
    p.add_argument("--spec", required=True, help="source job spec as JSON (what the Snakemake rule passes)")
    p.add_argument("--response", required=True, help="response .npz of the source's interaction type")
    p.add_argument("--out", required=True, help="output <source>.root (the .json is written beside it)")
    p.set_defaults(func=cmd_pdf)

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
