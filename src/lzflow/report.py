"""Report stage: one self-contained HTML page for an analysis.

``lzflow report`` writes ``<results_dir>/<tag>/report.html`` — images embedded as base64 PNG, no
external files, so it can be mailed or attached to a logbook. Sections:

1. the limit curve (median expected 90 % CL limit, ±1σ/±2σ bands, asymptotic median, PCL, the LZ
   reference point) and its table;
2. per mass, the p-value scan (CLs+b, CLb, CLs vs μ) and the test-statistic distributions;
3. the studies: each study's table (% change from the baseline) and overlay plot;
4. the fit-error summary (failed, retried, NaN q, μ̂ at the boundary per mass/hypothesis/POI) with the
   toys to replay;
5. provenance: the resolved configuration, the detector parameters with NEST's derived quantities,
   software versions, per-stage code hashes, seeds and run numbers per mass.

Snakemake's own report (``snakemake --report``) shows the same figures with the captions in
``workflow/report/``; this page adds the tables and the provenance in one file.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from .curve import BAND_COLUMNS, cross_section_label
from .io import atomic_path, read_json

__all__ = ["software_versions", "build_report", "write_report"]

PACKAGES = ("lzflow", "nestpy", "numpy", "scipy", "iminuit", "pyhf", "uproot", "hist", "wimprates", "snakemake",
            "matplotlib", "mplhep")

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3a5f;color:#fff;padding:1em 2em}header h1{margin:0;font-size:1.6em}
nav{background:#e8eef6;padding:.5em 2em;position:sticky;top:0}nav a{margin-right:1.2em;color:#1f3a5f}
main{padding:0 2em 3em 2em;max-width:1200px}section{margin-top:2em}
h2{border-bottom:2px solid #1f3a5f;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#eef}td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #ddd;background:#fff}
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid figure{margin:0;flex:1 1 480px}
figcaption{font-size:.85em;color:#555}details{margin:.5em 0}pre{background:#f0f0f0;padding:.7em;overflow-x:auto;font-size:.8em}
.ok{color:#1a7f37;font-weight:bold}.bad{color:#b42318;font-weight:bold}
"""


def software_versions() -> dict[str, str]:
    """Installed versions of lzflow and the libraries the science depends on."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _img(path: str | Path, alt: str) -> str:
    p = Path(path)
    if not p.is_file():
        return f"<p><em>{html.escape(alt)}: {html.escape(str(p))} missing</em></p>"
    data = base64.b64encode(p.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _figure(path: str | Path, caption: str) -> str:
    return f"<figure>{_img(path, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _num(x: Any) -> str:
    if x is None or x == "":
        return "–"
    if isinstance(x, str):
        try:
            x = float(x)
        except ValueError:
            return html.escape(x)
    if isinstance(x, (bool, int)):
        return str(x)
    if isinstance(x, float):
        return f"{x:.4g}"
    return html.escape(json.dumps(x))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 0) -> str:
    """An HTML table; the first ``left`` columns left-aligned."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{html.escape(h)}</th>' for i, h in enumerate(header))
    body = []
    for row in rows:
        cells = "".join(f'<td class="{"l" if i < left else ""}">{c if isinstance(c, str) and c.startswith("<") else _num(c)}</td>'
                        for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _read_csv(path: str | Path) -> list[dict[str, str]]:
    return list(csv.DictReader(Path(path).read_text().splitlines()))


def _band_cell(row: Mapping[str, str], column: str) -> Any:
    """A band edge of the curve CSV: its value, or "≤ X"/"≥ X" where merge could only bound it."""
    bound = row.get(column + "_bound") or ""
    if not row.get(column + "_cm2") and bound[:2] in ("<=", ">="):
        return f"<em>{'≤' if bound[:2] == '<=' else '≥'} {float(bound[2:]):.4g}</em>"
    return row[column + "_cm2"]


def _curve_section(curve_csv: Path, curve_png: Path) -> str:
    rows = _read_csv(curve_csv)
    table = _table(
        ["mass [GeV]", "median [cm²]", "−2σ", "−1σ", "+1σ", "+2σ", "PCL [cm²]", "asymptotic median", "3σ discovery"],
        [[r["mass_GeV"], *(("no sensitivity",) + ("",) * 7 if r["no_sensitivity"] == "True" else
                           (_band_cell(r, "sigma_median"), _band_cell(r, "sigma_m2"), _band_cell(r, "sigma_m1"),
                            _band_cell(r, "sigma_p1"), _band_cell(r, "sigma_p2"),
                            r["sigma_pcl_cm2"] if r.get("pcl_status", "ok") in ("ok", "") else
                            f"<em>{_num(r['sigma_pcl_cm2'])} ({html.escape(r['pcl_status'].replace('_', ' '))})</em>",
                            r["sigma_asymptotic_median_cm2"], r["sigma_discovery_3sigma_cm2"]))] for r in rows])
    bounded = any(r.get(c + "_bound") for r in rows for c in BAND_COLUMNS.values())
    method = rows[0]["method"] if rows else ""
    cl = float(rows[0]["cl"]) if rows else 0.9
    what = cross_section_label(rows).replace("WIMP-", "WIMP–")  # SI WIMP–nucleon, SD WIMP–neutron/proton
    return (f'<section id="curve"><h2>Limit curve</h2><p>Median expected {cl:.0%} CL upper limit on the '
            f"{html.escape(what)} cross section ({html.escape(method)}, toys), with the ±1σ/±2σ bands of B-only "
            f"pseudo-experiments, the asymptotic median and the power-constrained limit on Asimov data.</p>"
            f"{_img(curve_png, 'limit curve')}{table}"
            + ("<p><em>≤ X</em>: the band edge is only known to be at most X (it needs background-only "
               "experiments whose limit lies below every tested μ; for CLs+b about α of them exclude every μ &gt; 0, "
               "so the −2σ quantile has no value to resolve). It is not drawn as a band edge.</p>" if bounded else "")
            + "</section>")


def _comparison_section(comparison_csv: Path, name: str | None) -> str:
    """lzflow's median against the published reference, per mass (lzflow.references)."""
    from .references import load_reference

    reference = load_reference(name) if name else None
    rows = _read_csv(comparison_csv)
    table = _table(["mass [GeV]", "lzflow median [cm²]", "reference [cm²]", "lzflow / reference",
                    "published number [cm²]", "lzflow / published"],
                   [[r["mass_GeV"], r["lzflow_cm2"], r["reference_cm2"], r["ratio"], r["published_cm2"],
                     r["ratio_published"]] for r in rows])
    source = ""
    if reference:
        what = "median expected sensitivity" if reference.kind == "median" else "observed 90 % CL limit"
        source = (f"<p>Reference <code>{html.escape(reference.name)}</code>: {html.escape(reference.label)}, "
                  f"{what}, {html.escape(reference.interaction)}; {html.escape(reference.citation)}.</p>"
                  + (f"<p>Power constraint: {html.escape(reference.power_constraint)}.</p>"
                     if reference.power_constraint else "")
                  + f"<details><summary>Source (file header)</summary><p>{html.escape(reference.source)}</p></details>")
    return (f'<section id="reference"><h2>Against the published reference</h2>{source}{table}'
            "<p>Ratio &gt; 1: lzflow's median expected limit is weaker than the reference"
            + (" (for an observed-limit reference, the ratio is to the observed limit)" if reference else "")
            + ".</p></section>")


def _mass_section(limits: Sequence[Mapping[str, Any]], pvalue_pngs: Sequence[str | Path],
                  teststat_pngs: Sequence[str | Path]) -> str:
    parts = ['<section id="masses"><h2>Per mass: p-value scans and test statistics</h2>']
    for doc, pv_png, q_png in sorted(zip(limits, pvalue_pngs, teststat_pngs), key=lambda t: t[0]["mass_GeV"]):
        mass = doc["mass_GeV"]
        if doc.get("no_sensitivity"):
            parts.append(f"<h3>{mass:g} GeV</h3><p>No sensitivity: the signal has no events in the ROI.</p>")
            continue
        lim = doc["limits"][doc["method"]]
        n_sb = (doc.get("toys") or {}).get("sb_per_poi") or []
        parts.append(
            f"<h3>{mass:g} GeV</h3><p>median expected {_num(lim['expected_sigma_cm2']['0'])} cm² "
            f"(asymptotic {_num(doc['asymptotic']['expected_sigma_cm2']['0'])}); {len(doc['poi_grid'])} POIs"
            f"{_grid_note(doc)}, "
            f"{min(n_sb) if n_sb else 0}–{max(n_sb) if n_sb else 0} S+B toys per POI, "
            f"{(doc.get('toys') or {}).get('bonly', 0)} B-only toys; MC errors: "
            f"{html.escape(str(lim.get('error_method', 'order statistics')))}.</p>"
            + _mass_notes(doc) +
            f'<div class="grid">{_figure(pv_png, f"{mass:g} GeV: CLs+b, CLb and CLs vs μ")}'
            f'{_figure(q_png, f"{mass:g} GeV: q̃ of S+B and B-only toys with the asymptotic distribution")}'
            f"</div>")
    parts.append("</section>")
    return "".join(parts)


def _impacts_section(impacts: Sequence[Mapping[str, Any]]) -> str:
    """Per mass, each constrained parameter ranked by its impact on the median expected limit
    (profiled vs fixed at nominal) with its post-fit constraint on Asimov data (lzflow.impacts)."""
    parts = ['<section id="impacts"><h2>Nuisance parameters: impact on the median expected limit</h2>'
             "<p>impact = median with every parameter profiled / median with this one fixed at nominal − 1; "
             "constraint = its post-fit width on background-only Asimov data / its prior width "
             "(< 1: the data constrain it).</p>"]
    for doc in sorted((d for d in impacts if not d.get("no_sensitivity")), key=lambda d: d["mass_GeV"]):
        rows = [[p["parameter"], p["kind"], f"{100 * p['impact']:+.2f} %", _num(p["median_sigma_cm2_fixed"]),
                 f"{p['asimov_constraint']:.3f}"] for p in doc["parameters"]]
        parts.append(f"<h3>{doc['mass_GeV']:g} GeV: median {_num(doc['median_sigma_cm2_profiled'])} cm² profiled</h3>"
                     + _table(["parameter", "kind", "impact", "median with it fixed [cm²]", "constraint"], rows, left=2))
    parts.append("</section>")
    return "".join(parts)


def _grid_note(doc: Mapping[str, Any]) -> str:
    configured = doc.get("poi_grid_configured")
    if not configured or len(configured) == len(doc["poi_grid"]):
        return ""
    return f" ({len(configured)} configured + {len(doc['poi_grid']) - len(configured)} added by merge beyond the grid edges)"


def _mass_notes(doc: Mapping[str, Any]) -> str:
    """Merge's warnings (toys left out, grid extended, bounds, nulls) and notes as lists; empty if none."""
    out = ""
    if doc.get("warnings"):
        out += ('<p class="bad">Merge warnings:</p><ul>'
                + "".join(f"<li>{html.escape(str(w))}</li>" for w in doc["warnings"]) + "</ul>")
    if doc.get("notes"):
        out += "<p>Notes:</p><ul>" + "".join(f"<li>{html.escape(str(w))}</li>" for w in doc["notes"]) + "</ul>"
    return out


def _studies_section(studies: Sequence[Mapping[str, Any]]) -> str:
    if not studies:
        return ('<section id="studies"><h2>Studies</h2><p>No studies in this configuration (add a '
                "<code>studies:</code> block, e.g. <code>--configfile config/config.yaml config/studies/g1.yaml</code>)."
                "</p></section>")
    parts = ['<section id="studies"><h2>Studies</h2>']
    for s in studies:
        rows = _read_csv(s["table"])
        parts.append(f"<h3>{html.escape(s['name'])}: {html.escape(rows[0]['parameter'] if rows else '')}</h3>")
        table = _table(["mass [GeV]", "variant", "value", "median σ [cm²]", "± toys", "change [%]",
                        "asymptotic σ [cm²]", "change [%]", "toys/POI", "toy jobs [s]"],
                       [[r["mass_GeV"], html.escape(r["variant"]), html.escape(r["value"]), r["sigma_median_cm2"],
                         r["sigma_median_err_cm2"], r["change_median_pct"] if r["variant"] != "baseline" else "",
                         r["sigma_asymptotic_median_cm2"],
                         r["change_asymptotic_pct"] if r["variant"] != "baseline" else "", r["n_toys"],
                         r["toy_jobs_wall_s"]] for r in sorted(rows, key=lambda r: float(r["mass_GeV"]))], left=3)
        parts.append(f'<div class="grid"><figure>{_img(s["overlay"], s["name"])}</figure><div>{table}</div></div>')
    parts.append("</section>")
    return "".join(parts)


def _errors_section(errors: Mapping[str, Any]) -> str:
    ok = errors["failed_fits"] == 0
    head = (f'<p>{errors["toys"]:,} toys in {errors["files"]} files: <span class="{"ok" if ok else "bad"}">'
            f'{errors["failed_fits"]} failed fits</span>, {errors["retried_fits"]} retried, {errors["nan_q"]} NaN q, '
            f'{errors.get("excluded_toys", 0)} toys left out of the p-values (counted per ensemble in limit.json).'
            " μ̂ at the boundary (μ̂ = 0 with q̃) is expected for about half the B-only toys and is not a failure.</p>")
    causes = sorted({k for r in errors["table"] for k in r if k not in ("mass_GeV", "hypothesis", "poi_index", "toys")})
    table = _table(["mass [GeV]", "hypothesis", "POI", "toys", *causes],
                   [[r["mass_GeV"], r["hypothesis"], r["poi_index"], r["toys"], *(r.get(c, 0) for c in causes)]
                    for r in errors["table"]], left=2)
    replay = ""
    if errors.get("toys_to_replay"):
        replay = "<h3>Toys to replay</h3>" + _table(
            ["file", "run number", "toy index", "causes"],
            [[html.escape(t["file"]), t["run_number"], t["toy_index"], html.escape(", ".join(t["causes"]))]
             for t in errors["toys_to_replay"][:50]], left=1) + (
            "<p>Replay one: <code>lzflow errors --workspace &lt;workspace.json&gt; --replay FILE INDEX</code></p>")
    return f'<section id="errors"><h2>Fit errors</h2>{head}<details><summary>per mass, hypothesis and POI</summary>{table}</details>{replay}</section>'


def _provenance_section(config: Mapping[str, Any], detector: Mapping[str, Any], code_hashes: Mapping[str, str],
                        limits: Sequence[Mapping[str, Any]]) -> str:
    versions = software_versions()
    derived = detector.get("derived", {})
    nest = detector.get("nest", {})
    seeds = _table(["mass [GeV]", "stats seed", "toy files", "run numbers", "seed entropy (first)"],
                   [[d["mass_GeV"], config["stats"]["seed"], len((d.get("toys") or {}).get("run_numbers", [])),
                     _run_range((d.get("toys") or {}).get("run_numbers", [])),
                     html.escape(json.dumps(((d.get("toys") or {}).get("seeds") or [None])[0]))]
                    for d in sorted(limits, key=lambda d: d["mass_GeV"])])
    return (
        '<section id="provenance"><h2>Provenance</h2>'
        f"<p>Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by lzflow {versions['lzflow']}. "
        f"PDF seed {config['pdf']['seed']}, n_samples {config['pdf']['n_samples']:,}; toy seed {config['stats']['seed']}.</p>"
        "<h3>Software</h3>" + _table(["package", "version"], sorted(versions.items()), left=1)
        + "<h3>Code hashes per stage</h3>" + _table(["stage", "sha256 (16)"], sorted(code_hashes.items()), left=2)
        + f"<h3>Detector {html.escape(str(detector.get('name')))} (hash {html.escape(str(detector.get('hash', ''))[:16])})</h3>"
        + '<div class="grid"><div>' + _table(["NEST parameter", "value"], sorted(nest.items()), left=1) + "</div><div>"
        + _table(["derived", "value"], sorted(derived.items()), left=1) + "</div></div>"
        + "<h3>Seeds and run numbers</h3>" + seeds
        + "<details><summary>Resolved configuration (JSON)</summary><pre>"
        + html.escape(json.dumps(config, indent=1, sort_keys=True)) + "</pre></details></section>")


def _run_range(runs: Sequence[int]) -> str:
    return f"{min(runs)} … {max(runs)}" if runs else "–"


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
    for path in [curve_csv, curve_png, *([reference_comparison] if reference_comparison else []), *impact_paths, *limit_paths, *pvalue_pngs, *teststat_pngs, errors_json, detector_json,
                 *(s[k] for s in studies for k in ("table", "overlay"))]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"lzflow report: input {path} is missing")
    if not len(limit_paths) == len(pvalue_pngs) == len(teststat_pngs):
        raise ValueError("lzflow report: one p-value and one test-statistic plot per limit file expected")
    curve_csv = Path(curve_csv)
    limits = [read_json(p) for p in limit_paths]
    errors = read_json(errors_json)
    detector = read_json(detector_json)
    title = title or f"lzflow {config['tag']}"
    exposure = config["exposure"]
    nav = "".join(f'<a href="#{k}">{v}</a>' for k, v in (("curve", "Limit curve"), ("masses", "Per mass"),
                                                          ("impacts", "Impacts"), ("studies", "Studies"), ("errors", "Fit errors"),
                                                          ("provenance", "Provenance")))
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
        f"</head><body><header><h1>{html.escape(title)}</h1><div>{exposure['fiducial_mass_t']:g} t × "
        f"{exposure['live_time_days']:g} d = {exposure['exposure_t_yr']:.2f} t·yr; {len(limits)} masses; "
        f"{config['stats']['method']} at {config['stats']['cl']:.0%} CL</div></header><nav>{nav}</nav><main>"
        + _curve_section(curve_csv, Path(curve_png))
        + (_comparison_section(Path(reference_comparison), config.get("reference")) if reference_comparison else "")
        + _mass_section(limits, pvalue_pngs, teststat_pngs)
        + (_impacts_section([read_json(p) for p in impact_paths]) if impact_paths else "")
        + _studies_section(studies)
        + _errors_section(errors)
        + _provenance_section(config, detector, code_hashes or {}, limits)
        + "</main></body></html>\n")


def write_report(path: str | Path, page: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(page)
