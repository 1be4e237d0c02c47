"""Report stage: one self-contained HTML page for an analysis.

``lzflow report`` writes ``<results_dir>/<tag>/report.html`` — images embedded as base64 PNG, no
external files, so it can be mailed or attached to a logbook. Sections:

1. the limit curve (median expected 90 % CL limit, ±1σ/±2σ bands, asymptotic median, PCL, the
   published reference) and its table, with a sentence wherever the PCL lies above the toy median
   saying why (:func:`pcl_above_median`);
2. the comparison with the configured published reference, if any;
3. per mass, the p-value scan (CLs+b, CLb and CLs vs μ) and the test-statistic distributions;
4. the nuisance parameters' impacts on the median expected limit;
5. the studies: each study's table (% change from the baseline) and overlay plot;
6. the fit-error summary (failed, retried, NaN q, μ̂ at the boundary per mass/hypothesis/POI) with the
   toys to replay;
7. provenance: the resolved configuration, the detector parameters (NEST's, with units, at the
   precision they were configured) with NEST's derived quantities, software versions, per-stage code
   hashes, seeds and run numbers per mass.

The page is rendered from the Jinja2 templates in ``lzflow/templates/`` (package data) with
autoescaping: every value from a file or the configuration is escaped; the only markup that is not
comes from the templates. Numbers are formatted by the filters of :func:`environment` (``num``: 4
significant digits, as the tables always showed; ``exact``: the shortest text that reads back as the
same float, for configured values).

Snakemake's own report (``snakemake --report``) shows the same figures with the captions in
``workflow/report/``; this page adds the tables and the provenance in one file.
"""

from __future__ import annotations

import base64
import csv
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined

from .construction_report import construction_context
from .curve import BAND_COLUMNS, cross_section_label
from .globalcli import report_context as global_pvalue_context
from .gofstage import report_context as gof_context
from .io import atomic_path, read_json

__all__ = ["software_versions", "build_report", "write_report", "environment", "Cell", "num", "exact",
           "pcl_above_median", "count_range", "NEST_DISPLAY", "DERIVED_DISPLAY", "SECTIONS"]

PACKAGES = ("lzflow", "nestpy", "numpy", "scipy", "iminuit", "pyhf", "uproot", "hist", "wimprates", "snakemake",
            "matplotlib", "mplhep", "jinja2")

#: (anchor, navigation label) of every section the page can have, in page order
SECTIONS = (("curve", "Limit curve"), ("reference", "Reference"), ("observed", "Observed"), ("masses", "Per mass"),
            ("impacts", "Impacts"),
            ("studies", "Studies"), ("errors", "Fit errors"), ("provenance", "Provenance"))

#: Unit and meaning of each NEST ``VDetector`` parameter, from the comments of NEST's own
#: ``include/Detectors/VDetector.hh`` and ``LZ_WS2022.hh`` (the NEST sources of the nestpy 2.1.3 sdist, ``lib/nest/``) and, for the units
#: lzflow converts to, ``lzflow.detector.NEST_PARAMETERS`` (a test keeps the two in step).
#: noiseQuadratic: NEST.cpp smears a pulse of area A with σ² = (q A²)² + (l A)², so q is per phd.
NEST_DISPLAY: dict[str, tuple[str, str]] = {
    "g1": ("phd / photon", "S1 photon detection efficiency at dtCntr (phd, not phe)"),
    "sPEres": ("phe", "single-phe resolution (Gaussian σ)"),
    "sPEthr": ("phe", "pulse-detection (POD) threshold"),
    "sPEeff": ("fraction", "single-phe detection efficiency"),
    "noiseBaseline": ("phe", "baseline noise: mean, width (Gaussian); EXO noise mean, width"),
    "noiseLinear": ("fraction", "linear noise: S1, S2 smeared by noiseLinear × area"),
    "noiseQuadratic": ("1 / phd", "(n)EXO quadratic noise term: S1, S2"),
    "P_dphe": ("probability", "one photon gives 2 phe instead of 1 (PMT)"),
    "coinWind": ("ns", "S1 coincidence window"),
    "coinLevel": ("PMTs", "PMTs that must fire for an S1"),
    "numPMTs": ("PMTs", "PMTs in the coincidence calculation"),
    "g1_gas": ("phd / photon", "phd per S2 photon in the gas (single-electron size)"),
    "s2Fano": ("1", "Fano-like factor of the single-electron width"),
    "s2_thr": ("phe", "S2 threshold (phe, not phd)"),
    "E_gas": ("kV/cm", "field between the liquid surface and the anode"),
    "eLife_us": ("µs", "drift-electron lifetime"),
    "T_Kelvin": ("K", "liquid temperature (drift speed)"),
    "p_bar": ("bar", "gas pressure (S2 size)"),
    "molarMass": ("g/mol", "molar mass of the xenon"),
    "dtCntr": ("µs", "drift time of the detector centre (S1 corrections)"),
    "dt_min": ("µs", "minimum drift time (top of the fiducial volume)"),
    "dt_max": ("µs", "maximum drift time (bottom of the fiducial volume)"),
    "radius": ("mm", "fiducial radius"),
    "radmax": ("mm", "radius of the TPC (physical limit)"),
    "TopDrift": ("mm", "top of the drift region (liquid surface; dt = 0)"),
    "anode": ("mm", "height of the anode"),
    "gate": ("mm", "height of the gate (where the field rises)"),
    "cathode": ("mm", "height of the cathode"),
    "PosResFlat": ("mm", "constant term of the x-y position resolution"),
    "PosResBase": ("mm", "x-y position resolution amplitude (÷ √S2 area)"),
}

#: Label and unit of each derived detector quantity (``detector.json`` ``derived``,
#: :func:`lzflow.detector.resolve_detector`)
DERIVED_DISPLAY: dict[str, tuple[str, str]] = {
    "electroluminescence_yield_photons_per_electron": ("electroluminescence yield", "photons / e⁻"),
    "extraction_efficiency": ("extraction efficiency", "fraction"),
    "fiducial_mass_t": ("fiducial mass", "t"),
    "fiducial_volume_cm3": ("fiducial volume", "cm³"),
    "g2_phd_per_electron": ("g2", "phd / e⁻"),
    "gas_gap_mm": ("gas gap", "mm"),
    "liquid_density_g_cm3": ("liquid density", "g/cm³"),
    "single_electron_phd": ("single-electron size", "phd"),
}


@dataclass(frozen=True)
class Cell:
    """A table cell given as text (never as markup): shown in italics with ``em`` (a bound, a caveat)."""

    text: str
    em: bool = False


def software_versions() -> dict[str, str]:
    """Installed versions of lzflow and the libraries the science depends on."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def num(x: Any) -> str:
    """A table number: 4 significant digits (``%.4g``); a string that reads as a number likewise,
    other strings as they are; None or "" as "–"."""
    if x is None or x == "":
        return "–"
    if isinstance(x, str):
        try:
            x = float(x)
        except ValueError:
            return x
    if isinstance(x, (bool, int)):
        return str(x)
    if isinstance(x, float):
        return f"{x:.4g}"
    return json.dumps(x)


def exact(x: Any) -> str:
    """A configured value at the precision it was given: the shortest text that reads back as the
    same float (``0.118735``, not ``0.1187``; ``177``, not ``177.0``); lists joined by ", "."""
    if isinstance(x, (list, tuple)):
        return ", ".join(exact(v) for v in x)
    if isinstance(x, float):
        text = repr(x)
        return text[:-2] if text.endswith(".0") else text
    return str(x)


def environment() -> Environment:
    """The Jinja2 environment of the report templates: autoescaping on, undefined names an error,
    filters ``num``, ``exact`` and ``g`` (``%g``, masses), test ``cell`` (a :class:`Cell`, else a
    number)."""
    env = Environment(loader=PackageLoader("lzflow", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(num=num, exact=exact, g=lambda x: f"{x:g}")
    env.tests["cell"] = lambda value: isinstance(value, Cell)
    return env


def count_range(counts: Sequence[int]) -> str:
    """Toy counts over POIs: ``300`` when all are equal, ``280–300`` otherwise, ``0`` for none."""
    if not counts:
        return "0"
    lo, hi = min(counts), max(counts)
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def _data_uri(path: str | Path) -> str | None:
    p = Path(path)
    return "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode() if p.is_file() else None


def _figure(path: str | Path, caption: str, kind: str = "") -> dict[str, Any]:
    return {"src": _data_uri(path), "path": str(path), "caption": caption, "kind": kind}


def _read_csv(path: str | Path) -> list[dict[str, str]]:
    return list(csv.DictReader(Path(path).read_text().splitlines()))


def _band_cell(row: Mapping[str, str], column: str) -> Any:
    """A band edge of the curve CSV: its value, or "≤ X"/"≥ X" where merge could only bound it."""
    bound = row.get(column + "_bound") or ""
    if not row.get(column + "_cm2") and bound[:2] in ("<=", ">="):
        return Cell(f"{'≤' if bound[:2] == '<=' else '≥'} {float(bound[2:]):.4g}", em=True)
    return row[column + "_cm2"]


def _curve_row(r: Mapping[str, str]) -> list[Any]:
    if r["no_sensitivity"] == "True":
        return [r["mass_GeV"], Cell("no sensitivity"), *[""] * 7]
    pcl = (r["sigma_pcl_cm2"] if r.get("pcl_status", "ok") in ("ok", "") else
           Cell(f"{num(r['sigma_pcl_cm2'])} ({r['pcl_status'].replace('_', ' ')})", em=True))
    return [r["mass_GeV"], _band_cell(r, "sigma_median"), _band_cell(r, "sigma_m2"), _band_cell(r, "sigma_m1"),
            _band_cell(r, "sigma_p1"), _band_cell(r, "sigma_p2"), pcl, r["sigma_asymptotic_median_cm2"],
            r["sigma_discovery_3sigma_cm2"]]


def pcl_above_median(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """Why the PCL of one mass lies above its toy median, or None where it does not.

    μ_PCL = max(μ_up, μ_min) (Cowan, Cranmer, Gross & Vitells, arXiv:1105.3166) with μ_min the
    power-threshold quantile of the background-only limits (Φ(−1): the −1σ band,
    :mod:`lzflow.stats.bands`) — below the median by construction, so the floor alone never lifts the
    PCL above it. Above the median the PCL is μ_up, the limit on the "observed" background-only Asimov
    dataset, which is not the median experiment at low counts: ``clb_at_median`` is the fraction of
    B-only toys whose q̃ at the median's μ is ≥ the Asimov data's (CLb, interpolated linearly in μ
    between grid points); above 0.5 the Asimov data exclude less than the median experiment.
    Returns {mass_GeV, excess (PCL/median − 1), floored (μ_PCL is the floor), floor_below_median,
    clb_at_median, power_threshold}.
    """
    if doc.get("no_sensitivity"):
        return None
    lim = doc["limits"][doc["method"]]
    median, pcl = (lim.get("expected_mu") or {}).get("0"), lim.get("pcl_mu")
    if median is None or pcl is None or not pcl > median:
        return None
    floor, observed = lim.get("pcl_floor_mu"), lim.get("observed_mu")
    mu = np.asarray(doc["poi_grid"], dtype=float)
    clb = np.array([np.nan if v is None else v for v in doc["pvalues"]["clb"]], dtype=float)
    order = np.argsort(mu)
    ok = np.isfinite(clb[order])
    clb_at = float(np.interp(median, mu[order][ok], clb[order][ok])) if ok.any() else None
    return {"mass_GeV": doc["mass_GeV"], "excess": pcl / median - 1.0,
            "floored": floor is not None and observed is not None and floor > observed and pcl == floor,
            "floor_below_median": floor is not None and floor < median, "clb_at_median": clb_at,
            "power_threshold": doc.get("power_threshold")}


def _curve_context(curve_csv: Path, curve_png: Path, limits: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    rows = _read_csv(curve_csv)
    return {
        "rows": [_curve_row(r) for r in rows],
        "bounded": any(r.get(c + "_bound") for r in rows for c in BAND_COLUMNS.values()),
        "method": rows[0]["method"] if rows else "", "cl": f"{float(rows[0]['cl']) if rows else 0.9:.0%}",
        "what": cross_section_label(rows).replace("WIMP-", "WIMP–"),  # SI WIMP–nucleon, SD WIMP–neutron/proton
        "figure": _figure(curve_png, "limit curve"),
        "pcl_notes": [n for n in (pcl_above_median(d) for d in sorted(limits, key=lambda d: d["mass_GeV"])) if n],
        "construction": construction_context(limits),  # two-sided headline, toy discovery; None: neither
    }


def _curve_section(curve_csv: Path, curve_png: Path, limits: Sequence[Mapping[str, Any]] = ()) -> str:
    """The limit-curve section alone (HTML)."""
    return environment().get_template("curve.html.j2").render(curve=_curve_context(curve_csv, curve_png, limits))


def _reference_context(comparison_csv: Path, name: str | None) -> dict[str, Any]:
    """lzflow's median against the published reference, per mass (lzflow.references)."""
    from .references import load_reference

    reference = load_reference(name) if name else None
    return {"reference": reference, "rows": [[r["mass_GeV"], r["lzflow_cm2"], r["reference_cm2"], r["ratio"],
                                              r["published_cm2"], r["ratio_published"]]
                                             for r in _read_csv(comparison_csv)]}


def _grid_note(doc: Mapping[str, Any]) -> str:
    configured = doc.get("poi_grid_configured")
    if not configured or len(configured) == len(doc["poi_grid"]):
        return ""
    return f" ({len(configured)} configured + {len(doc['poi_grid']) - len(configured)} added by merge beyond the grid edges)"


def _mass_context(doc: Mapping[str, Any], pv_png: str | Path, q_png: str | Path) -> dict[str, Any]:
    mass = doc["mass_GeV"]
    out: dict[str, Any] = {"mass": mass, "no_sensitivity": bool(doc.get("no_sensitivity"))}
    if out["no_sensitivity"]:
        return out
    lim = doc["limits"][doc["method"]]
    toys = doc.get("toys") or {}
    sym = {"qtilde": "q̃", "q": "q"}.get(doc["test_statistic"], "q")
    out.update(
        median=lim["expected_sigma_cm2"]["0"], asymptotic=doc["asymptotic"]["expected_sigma_cm2"]["0"],
        n_poi=len(doc["poi_grid"]), grid_note=_grid_note(doc), n_sb=count_range(toys.get("sb_per_poi") or []),
        n_bonly=toys.get("bonly", 0), error_method=str(lim.get("error_method", "order statistics")),
        warnings=[str(w) for w in doc.get("warnings") or []], notes=[str(w) for w in doc.get("notes") or []],
        pvalues=_figure(pv_png, f"{mass:g} GeV: CLs+b, CLb and CLs vs μ with 68 % Clopper–Pearson intervals "
                                f"(▽: a p-value 0 at its upper bound)", "pvalues"),
        teststat=_figure(q_png, f"{mass:g} GeV: {sym} of S+B and B-only toys at the POIs nearest the observed and "
                                f"expected limits, overflow hatched, with the asymptotic distribution", "teststat"))
    return out


def _data_note(config: Mapping[str, Any], limits: Sequence[Mapping[str, Any]] = ()) -> str | None:
    """The header's line on observed data: none without data; the event list and blind/unblinded,
    and "salted" when a limit's observed block says the list was salted (lzflow salt)."""
    from .dataconfig import data_label

    if config.get("data") is None:
        return None
    if config.get("blind") is not False:
        return f"data: {data_label(config)}, blind (the event list is not read; every result is the Asimov sensitivity)"
    salted = any((d.get("observed") or {}).get("salted") for d in limits)
    return (f"data: {data_label(config)}, unblinded (blind: false): observed results below"
            + (" — SALTED data (lzflow salt): every observed result includes fake signal events" if salted else ""))


def _observed_context(limits: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """Per mass with observed results (``limit.json`` → ``observed``, lzflow.observed): the limits,
    the best fit, the discovery p-value, the events and the pulls; None when no mass has any."""
    out = []
    for doc in sorted(limits, key=lambda d: d["mass_GeV"]):
        obs = doc.get("observed")
        if obs is None:
            continue
        fit, disc, ev = obs["best_fit"], obs["discovery"], obs["events"]
        bound = "≤ " if disc["p_value_is_upper_bound"] else ""
        out.append({
            "mass": doc["mass_GeV"], "sigma": obs["sigma_cm2"], "median": doc["median_expected_sigma_cm2"],
            "limits": [[Cell(name), lim["sigma_cm2"], lim["pcl_sigma_cm2"], Cell(lim["status"])]
                       for name, lim in obs["limits"].items()],
            "best_fit": fit["sigma_cm2"], "interval": fit["interval_sigma_cm2"],
            "p_value": f"{bound}{disc['p_value']:.3g}", "z": f"{'≥ ' if bound else ''}{disc['significance']:.2f}",
            "z_asymptotic": disc["significance_asymptotic"], "n_toys": disc["n_toys"],
            "events": f"{ev['n_total']} events, {ev['n_inside']} in the window, {ev['n_outside']} outside ("
                      + ", ".join(f"{k} {v}" for k, v in ev["outside_by_reason"].items()) + ")",
            "pulls": [[Cell(name), p["fitted"], p["pull"], p["constraint"]] for name, p in obs["pulls"].items()]})
    return out or None


def _impacts_context(impacts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per mass, each constrained parameter ranked by its impact on the median expected limit
    (profiled vs fixed at nominal) with its post-fit constraint on Asimov data (lzflow.impacts)."""
    return [{"mass": d["mass_GeV"], "median": d["median_sigma_cm2_profiled"],
             "without_shape": d.get("median_sigma_cm2_without_shape_systematics"),
             "shape_impact": (f"{100 * d['shape_systematics_impact']:+.1f} %"
                              if "shape_systematics_impact" in d else None),
             "rows": [[Cell(p["parameter"]), Cell(p["kind"]), Cell(f"{100 * p['impact']:+.2f} %"),
                       p["median_sigma_cm2_fixed"], Cell(f"{p['asimov_constraint']:.3f}")] for p in d["parameters"]]}
            for d in sorted((d for d in impacts if not d.get("no_sensitivity")), key=lambda d: d["mass_GeV"])]


def _studies_context(studies: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in studies:
        rows = _read_csv(s["table"])
        out.append({
            "name": s["name"], "parameter": rows[0]["parameter"] if rows else "", "overlay": _figure(s["overlay"], s["name"]),
            # the variant's value as configured (text), every number as the other tables show it
            "rows": [[r["mass_GeV"], Cell(r["variant"]), Cell(r["value"]), r["sigma_median_cm2"], r["sigma_median_err_cm2"],
                      r["change_median_pct"] if r["variant"] != "baseline" else "", r["sigma_asymptotic_median_cm2"],
                      r["change_asymptotic_pct"] if r["variant"] != "baseline" else "", r["n_toys"], r["toy_jobs_wall_s"]]
                     for r in sorted(rows, key=lambda r: float(r["mass_GeV"]))]})
    return out


def _errors_context(errors: Mapping[str, Any]) -> dict[str, Any]:
    causes = sorted({k for r in errors["table"] for k in r if k not in ("mass_GeV", "hypothesis", "poi_index", "toys")})
    return {
        "toys": f"{errors['toys']:,}", "files": errors["files"], "failed": errors["failed_fits"],
        "retried": errors["retried_fits"], "nan_q": errors["nan_q"], "excluded": errors.get("excluded_toys", 0),
        "causes": causes,
        "rows": [[r["mass_GeV"], Cell(str(r["hypothesis"])), r["poi_index"], r["toys"], *(r.get(c, 0) for c in causes)]
                 for r in errors["table"]],
        "replay": [[Cell(t["file"]), t["run_number"], t["toy_index"], Cell(", ".join(t["causes"]))]
                   for t in (errors.get("toys_to_replay") or [])[:50]],
    }


def _run_range(runs: Sequence[int]) -> str:
    return f"{min(runs)} … {max(runs)}" if runs else "–"


def _provenance_context(config: Mapping[str, Any], detector: Mapping[str, Any], code_hashes: Mapping[str, str],
                        limits: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    versions = software_versions()
    nest = detector.get("nest", {})
    return {
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "lzflow": versions["lzflow"],
        "pdf_seed": config["pdf"]["seed"], "n_samples": f"{config['pdf']['n_samples']:,}",
        "toy_seed": config["stats"]["seed"],
        "versions": [[Cell(k), Cell(v)] for k, v in sorted(versions.items())],
        "hashes": [[Cell(k), Cell(v)] for k, v in sorted(code_hashes.items())],
        "detector_name": str(detector.get("name")), "detector_hash": str(detector.get("hash", ""))[:16],
        "nest": [[Cell(k), Cell(exact(v)), Cell(NEST_DISPLAY.get(k, ("(unit not listed)", ""))[0]),
                  Cell(NEST_DISPLAY.get(k, ("", "not described by lzflow.report.NEST_DISPLAY"))[1])]
                 for k, v in sorted(nest.items())],
        "derived": [[Cell(DERIVED_DISPLAY.get(k, (k, ""))[0]), v, Cell(DERIVED_DISPLAY.get(k, ("", "(unit not listed)"))[1])]
                    for k, v in sorted(detector.get("derived", {}).items())],
        "seeds": [[d["mass_GeV"], config["stats"]["seed"], len((d.get("toys") or {}).get("run_numbers", [])),
                   Cell(_run_range((d.get("toys") or {}).get("run_numbers", []))),
                   Cell(json.dumps(((d.get("toys") or {}).get("seeds") or [None])[0]))]
                  for d in sorted(limits, key=lambda d: d["mass_GeV"])],
        "config_json": json.dumps(config, indent=1, sort_keys=True),
    }


def build_report(*, config: Mapping[str, Any], curve_csv: str | Path, curve_png: str | Path,
                 limit_paths: Sequence[str | Path], pvalue_pngs: Sequence[str | Path],
                 teststat_pngs: Sequence[str | Path], errors_json: str | Path, detector_json: str | Path,
                 studies: Sequence[Mapping[str, Any]] = (), code_hashes: Mapping[str, str] | None = None,
                 title: str = "", reference_comparison: str | Path | None = None,
                 impact_paths: Sequence[str | Path] = ()) -> str:
    """The report page as one HTML string (see the module docstring for its sections).

    Every file is passed explicitly (the workflow declares them as inputs, so storage plugins stage
    them); a missing one is an error, never a silently empty section. ``pvalue_pngs`` and
    ``teststat_pngs`` follow ``limit_paths``; ``studies``: ``[{"name", "table" (table.csv), "overlay"
    (overlay.png)}]``; ``reference_comparison``: the curve against the configured published
    reference (``reference_comparison.csv`` of ``lzflow curve --reference``), if any.
    """
    for path in [curve_csv, curve_png, *([reference_comparison] if reference_comparison else []), *impact_paths,
                 *limit_paths, *pvalue_pngs, *teststat_pngs, errors_json, detector_json,
                 *(s[k] for s in studies for k in ("table", "overlay"))]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"lzflow report: input {path} is missing")
    if not len(limit_paths) == len(pvalue_pngs) == len(teststat_pngs):
        raise ValueError("lzflow report: one p-value and one test-statistic plot per limit file expected")
    limits = [read_json(p) for p in limit_paths]
    exposure = config["exposure"]
    context = {
        "title": title or f"lzflow {config['tag']}",
        "exposure": f"{exposure['fiducial_mass_t']:g} t × {exposure['live_time_days']:g} d = "
                    f"{exposure['exposure_t_yr']:.2f} t·yr",
        "n_masses": len(limits), "method": config["stats"]["method"], "cl": f"{config['stats']['cl']:.0%}",
        "curve": _curve_context(Path(curve_csv), Path(curve_png), limits),
        "reference": (_reference_context(Path(reference_comparison), config.get("reference"))
                      if reference_comparison else None),
        "masses": [_mass_context(doc, pv, q) for doc, pv, q in sorted(zip(limits, pvalue_pngs, teststat_pngs),
                                                                     key=lambda t: t[0]["mass_GeV"])],
        "impacts": _impacts_context([read_json(p) for p in impact_paths]) if impact_paths else None,
        "observed": (observed := _observed_context(limits)), "data_note": _data_note(config, limits),
        "global_pvalue": global_pvalue_context(curve_csv, observed),  # unblinded: global_pvalue.json beside the curve
        "gof": gof_context(limit_paths, observed),  # unblinded: each mass's gof.json beside its limit.json
        "studies": _studies_context(studies),
        "errors": _errors_context(read_json(errors_json)),
        "provenance": _provenance_context(config, read_json(detector_json), code_hashes or {}, limits),
    }
    context["sections"] = [(anchor, label) for anchor, label in SECTIONS
                           if anchor not in ("reference", "impacts", "observed") or context[anchor] is not None]
    return environment().get_template("report.html.j2").render(**context)


def write_report(path: str | Path, page: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(page)
