"""Study outputs: one table (CSV + Markdown) and one overlay plot per study.

Each study (:mod:`lzflow.variants`) varies one parameter; its table lists, per mass and per value,
the median expected limit with its toy-MC error, the ±1σ band, the asymptotic median, the change
from the baseline in per cent, the toys per POI, the MC precision they reached (the largest relative
bootstrap error of the median and ±1σ expected limits, :mod:`lzflow.precision`) and the toy jobs' run time (summed from
Snakemake's benchmark files). The overlay draws each value's median limit curve over the
baseline's ±1σ band, with the ratio to the baseline below.

The shape-systematics switch (``parameter: systematics``, values ``on``/``off``; :mod:`lzflow.variants`)
gets its own legend ("shape systematics on/off") and a summary line in the Markdown: by how much the
profiled shape systematics widen the median limit at each mass, toys and asymptotic,
``σ_on / σ_off − 1``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import layout
from .io import atomic_path, read_json
from .precision import relative_errors, worst_relative_error

__all__ = ["TABLE_COLUMNS", "read_benchmarks", "study_rows", "write_study_table", "study_markdown", "systematics_summary",
           "plot_study_overlay", "study_from_files", "write_study"]

TABLE_COLUMNS = ["study", "parameter", "variant", "value", "mass_GeV", "sigma_median_cm2", "sigma_median_err_cm2",
                 "change_median_pct", "sigma_m1_cm2", "sigma_p1_cm2", "sigma_asymptotic_median_cm2",
                 "change_asymptotic_pct", "n_toys", "mc_precision_pct", "toy_jobs_wall_s", "toy_jobs_cpu_s"]


def _median(doc: Mapping[str, Any]) -> tuple[float | None, float | None, float | None, float | None, float | None]:
    if doc.get("no_sensitivity"):
        return None, None, None, None, None
    lim = doc["limits"][doc["method"]]
    exp = lim["expected_sigma_cm2"]
    scale = doc["sigma_ref_cm2"]
    err = (lim.get("expected_mu_err") or {}).get("0")
    asym = ((doc.get("asymptotic") or {}).get("expected_sigma_cm2") or {}).get("0")
    return exp["0"], (err * scale if err is not None else None), exp["-1"], exp["1"], asym


def _n_toys(doc: Mapping[str, Any]) -> int | None:
    """S+B toys per POI (the smallest, if they differ)."""
    per_poi = (doc.get("toys") or {}).get("sb_per_poi")
    return min(per_poi) if per_poi else None


def _precision_pct(doc: Mapping[str, Any]) -> float | None:
    """The MC precision reached, in %: max over Q ∈ {median, ±1σ} of bootstrap error / Q (:func:`lzflow.precision.relative_errors`)."""
    if doc.get("no_sensitivity") or "expected_mu" not in doc["limits"][doc["method"]]:
        return None
    worst = worst_relative_error(relative_errors(doc, doc["method"]))
    return None if worst is None else 100.0 * worst


def _pct(x: float | None, ref: float | None) -> float | None:
    if x is None or ref is None or not ref:
        return None
    return 100.0 * (x / ref - 1.0)


def read_benchmarks(paths: Sequence[str | Path]) -> tuple[float | None, float | None]:
    """Sum of wall-clock and CPU seconds over Snakemake benchmark files (None if any is missing)."""
    wall = cpu = 0.0
    for p in paths:
        p = Path(p)
        if not p.is_file():
            return None, None
        rows = list(csv.DictReader(p.read_text().splitlines(), delimiter="\t"))
        if not rows:
            return None, None
        wall += float(rows[-1]["s"])
        try:
            cpu += float(rows[-1].get("cpu_time") or "nan")
        except ValueError:
            cpu = math.nan
    return wall, (cpu if math.isfinite(cpu) else None)


def study_rows(study: Mapping[str, Any], baseline: Mapping[str, Mapping[str, Any]],
               variants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Table rows: the baseline, then each variant, per mass, with the % change from the baseline.

    ``baseline``: mass label → limit document. ``variants``: ``{"label", "value", "limits": {mass
    label → limit document}, "timing": {mass label → (wall, cpu)}}`` in study order.
    """
    rows = []
    base = {label: _median(doc) for label, doc in baseline.items()}
    entries = [{"label": "baseline", "value": study.get("baseline_value"), "limits": baseline,
                "timing": study.get("baseline_timing") or {}}, *variants]
    for entry in entries:
        for label, doc in entry["limits"].items():
            med, err, m1, p1, asym = _median(doc)
            wall, cpu = (entry.get("timing") or {}).get(label, (None, None))
            rows.append({
                "study": study["name"], "parameter": study["parameter"], "variant": entry["label"],
                "value": entry["value"], "mass_GeV": doc["mass_GeV"], "sigma_median_cm2": med,
                "sigma_median_err_cm2": err, "change_median_pct": _pct(med, base[label][0]),
                "sigma_m1_cm2": m1, "sigma_p1_cm2": p1, "sigma_asymptotic_median_cm2": asym,
                "change_asymptotic_pct": _pct(asym, base[label][4]),
                "n_toys": _n_toys(doc), "mc_precision_pct": _precision_pct(doc), "toy_jobs_wall_s": wall, "toy_jobs_cpu_s": cpu,
            })
    return rows


def write_study_table(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """The table as CSV (columns :data:`TABLE_COLUMNS`), written atomically."""
    from .io import write_csv

    write_csv(path, rows, TABLE_COLUMNS)


def _fmt(x: Any, kind: str = "g") -> str:
    if x is None:
        return "–"
    if kind == "pct":
        return f"{x:+.1f} %"
    if kind == "e":
        return f"{x:.3g}"
    if kind == "s":
        return f"{x:.1f}"
    if kind == "%":
        return f"{x:.1f} %"
    return str(x)


def _is_switch(study: Mapping[str, Any]) -> bool:
    """A study that switches the shape systematics on and off (``parameter: systematics``)."""
    return study["parameter"] == "systematics"


def _widening(on: float | None, off: float | None) -> str:
    return "–" if on is None or off is None or not off else f"{100.0 * (on / off - 1.0):+.1f} %"


def systematics_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """One sentence for a systematics on/off study: σ_on / σ_off − 1 per mass (toy medians, then the
    asymptotic ones), with 'on' the baseline; empty without an ``off`` variant."""
    by = {(r["variant"], r["mass_GeV"]): r for r in rows}
    masses = sorted(m for v, m in by if v == "off" and ("baseline", m) in by)
    if not masses:
        return ""
    parts = []
    for m in masses:
        on, off = by["baseline", m], by["off", m]
        parts.append(f"{_widening(on['sigma_median_cm2'], off['sigma_median_cm2'])} at {m:g} GeV "
                     f"(asymptotic {_widening(on['sigma_asymptotic_median_cm2'], off['sigma_asymptotic_median_cm2'])})")
    return "Profiling the shape systematics widens the median expected limit (toys) by " + "; ".join(parts) + "."


def study_markdown(study: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """The study table as Markdown, one block per mass."""
    lines = [f"### Study `{study['name']}`: {study['parameter']}", ""]
    if study.get("description"):
        lines += [study["description"], ""]
    if _is_switch(study) and systematics_summary(rows):
        lines += [systematics_summary(rows), ""]
    lines += ["| mass [GeV] | variant | value | median σ [cm²] | ± (toys) | change | asymptotic σ [cm²] | change | "
              "−1σ … +1σ [cm²] | toys | MC error | toy jobs [s] |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for mass in sorted({r["mass_GeV"] for r in rows}):
        for r in (r for r in rows if r["mass_GeV"] == mass):
            band = (f"{_fmt(r['sigma_m1_cm2'], 'e')} … {_fmt(r['sigma_p1_cm2'], 'e')}"
                    if r["sigma_m1_cm2"] is not None else "–")
            change = "" if r["variant"] == "baseline" else _fmt(r["change_median_pct"], "pct")
            achange = "" if r["variant"] == "baseline" else _fmt(r["change_asymptotic_pct"], "pct")
            lines.append(f"| {mass:g} | {r['variant']} | {_fmt(r['value'])} | {_fmt(r['sigma_median_cm2'], 'e')} | "
                         f"{_fmt(r['sigma_median_err_cm2'], 'e')} | {change} | "
                         f"{_fmt(r['sigma_asymptotic_median_cm2'], 'e')} | {achange} | {band} | "
                         f"{_fmt(r['n_toys'])} | {_fmt(r['mc_precision_pct'], '%')} | {_fmt(r['toy_jobs_wall_s'], 's')} |")
    lines.append("")
    return "\n".join(lines)


def plot_study_overlay(study: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Median expected limit vs mass for each variant over the baseline's ±1σ band; ratio panel below."""
    import numpy as np

    from .curve import pyplot, save_figure

    plt = pyplot()
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(8, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    base = sorted((r for r in rows if r["variant"] == "baseline" and r["sigma_median_cm2"]), key=lambda r: r["mass_GeV"])
    bm = np.array([r["mass_GeV"] for r in base])
    bmed = np.array([r["sigma_median_cm2"] for r in base])
    if base:
        band = lambda key: [np.nan if r[key] is None else r[key] for r in base]  # noqa: E731 (a bound: no edge)
        ax.fill_between(bm, band("sigma_m1_cm2"), band("sigma_p1_cm2"), color="#55cc55",
                        alpha=0.5, label=r"baseline $\pm1\sigma$", step=None)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(variants):
        sel = sorted((r for r in rows if r["variant"] == name and r["sigma_median_cm2"]), key=lambda r: r["mass_GeV"])
        if not sel:
            continue
        m = np.array([r["mass_GeV"] for r in sel])
        med = np.array([r["sigma_median_cm2"] for r in sel])
        err = np.array([r["sigma_median_err_cm2"] or 0.0 for r in sel])
        is_base = name == "baseline"
        if _is_switch(study):
            label = f"shape systematics {'on (baseline)' if is_base else sel[0]['value']}"
        else:
            label = (f"baseline ({_fmt(study.get('baseline_value'))})" if is_base
                     else f"{study['parameter']} = {sel[0]['value']}")
        style = dict(color="k", ls="--", marker="o") if is_base else dict(color=colours[i % len(colours)], marker="s")
        ax.errorbar(m, med, yerr=err, label=label, capsize=3, **style)
        ref = np.interp(m, bm, bmed) if base else med
        rax.errorbar(m, med / ref, yerr=err / ref, capsize=3, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel(r"median expected $\sigma_{SI}$ [cm$^2$]", fontsize=16)  # fits the upper panel
    title = "shape systematics on vs off" if _is_switch(study) else study["parameter"]
    ax.set_title(f"study {study['name']}: {title}", fontsize=14)
    ax.legend(fontsize=10)
    rax.axhline(1.0, color="grey", lw=1)
    rax.set_ylabel("/ baseline", fontsize=16)
    rax.set_xlabel("WIMP mass [GeV]")
    save_figure(fig, path)
    plt.close(fig)


def study_from_files(spec: Mapping[str, Any], limit_paths: Sequence[str | Path],
                     benchmark_paths: Sequence[str | Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(study, table rows) of the study job. ``spec`` (written by the workflow): ``name``,
    ``parameter``, ``baseline_value``, ``description``, ``masses`` (labels) and ``variants``
    (``label``, ``value``, ``n_benchmarks`` per mass), the baseline first; ``limit_paths``: one
    ``limit.json`` per (variant, mass), variant-major; ``benchmark_paths``: the toy jobs' benchmark
    files in the same order, ``n_benchmarks`` of them per (variant, mass)."""
    masses = spec["masses"]
    limits, benchmarks = iter(limit_paths), iter(benchmark_paths)
    entries = []
    for v in spec["variants"]:
        entry = {"label": v["label"], "value": v["value"], "limits": {}, "timing": {}}
        for mass, n_bench in zip(masses, v.get("n_benchmarks", [0] * len(masses))):
            entry["limits"][mass] = read_json(next(limits))
            files = [next(benchmarks) for _ in range(n_bench)]
            entry["timing"][mass] = read_benchmarks(files) if files else (None, None)
        entries.append(entry)
    if next(limits, None) is not None or next(benchmarks, None) is not None:
        raise ValueError("lzflow study: more --limits/--benchmarks files than the spec's variants x masses")
    base, variants = entries[0], entries[1:]
    study = {k: spec[k] for k in ("name", "parameter", "baseline_value", "description")}
    study["baseline_timing"] = base["timing"]
    return study, study_rows(study, base["limits"], variants)


def write_study(table_csv: str | Path, study: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """Write the study's table (CSV at ``table_csv``, Markdown and overlay plot beside it, names from
    :mod:`lzflow.layout`); return the Markdown."""
    out = Path(table_csv)
    write_study_table(out, rows)
    markdown = study_markdown(study, rows)
    with atomic_path(out.with_name(Path(layout.STUDY_TABLE_MD).name)) as tmp:
        tmp.write_text(markdown)
    plot_study_overlay(study, rows, out.with_name(Path(layout.STUDY_OVERLAY).name))
    return markdown
