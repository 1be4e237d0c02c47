"""Curve stage: the limit curve over masses (σ of ``signal.interaction``: SI WIMP–nucleon, SD
WIMP–neutron or SD WIMP–proton, the limit documents' ``interaction``), its CSV and the plots.

Plots (matplotlib with the mplhep style; each ``plot_*`` saves the figure its ``figure_*`` builds):

* ``limit_curve.png``: σ vs WIMP mass (log-log, masses labelled as plain numbers: 20, not 2×10¹),
  median expected limit with ±1σ/±2σ bands from toys, the asymptotic median, the power-constrained
  limit on Asimov background-only data, and the configured published reference (``reference:``,
  :mod:`lzflow.references`) with a ratio panel. A band edge that merge could only bound (e.g. the
  CLs+b −2σ quantile: ≈ α of the background-only experiments exclude every μ > 0) is drawn as a
  bound marker (▽ at most, △ at least), never as a band edge; the CSV has it as ``<=X``/``>=X`` in
  ``sigma_<band>_bound`` with the band's value empty;
* ``m<mass>/pvalues.png``: CLs+b, CLb and CLs vs μ with their 68.27 % Clopper–Pearson intervals
  (a p-value 0/N drawn as ▽ at its upper bound, not dropped) and the expected-limit bands;
* ``m<mass>/teststat.png``: at the POIs nearest the observed and expected limits, the test-statistic
  densities of S+B and B-only toys with an overflow bin (q above the range or +inf), the observed q
  in each legend and the asymptotic ½χ²₁ overlaid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .construction_stage import EXTRA_COLUMNS, curve_columns
from .io import atomic_path, write_csv

__all__ = ["curve_rows", "summary_line", "write_curve_csv", "plot_limit_curve", "plot_pvalues", "plot_teststat",
           "figure_limit_curve", "figure_pvalues", "figure_teststat", "plain_log_ticks", "pvalue_interval",
           "panel_pois", "qtilde_histogram", "PVALUE_CURVES", "TEST_STATISTIC_SYMBOLS",
           "BAND_COLUMNS", "OBSERVED_COLUMNS", "CROSS_SECTION_LABELS", "cross_section_label", "pyplot", "save_figure", "read_curve_csv"]

COLUMNS = ["mass_GeV", "sigma_median_cm2", "sigma_m2_cm2", "sigma_m1_cm2", "sigma_p1_cm2", "sigma_p2_cm2",
           "sigma_pcl_cm2", "sigma_asymptotic_median_cm2", "sigma_discovery_3sigma_cm2", "sigma_m2_bound",
           "sigma_m1_bound", "sigma_median_bound", "sigma_p1_bound", "sigma_p2_bound", "pcl_status", "method", "cl",
           "no_sensitivity", "interaction"]
#: with observed data (an unblinded analysis, ``limit.json`` → ``observed``) these columns follow: the
#: observed limit (the method's PCL on the data), the best fit and its 68 % interval, the local
#: discovery p-value and significance; without data the CSV has :data:`COLUMNS` only
OBSERVED_COLUMNS = ["sigma_observed_cm2", "sigma_best_fit_cm2", "sigma_best_fit_lo_cm2", "sigma_best_fit_hi_cm2",
                    "discovery_p_value", "discovery_significance"]

#: Axis label of the cross section each ``interaction`` (``signal.interaction``) limits
CROSS_SECTION_LABELS = {"SI": "SI WIMP-nucleon", "SD_n": "SD WIMP-neutron", "SD_p": "SD WIMP-proton"}


def cross_section_label(rows: Sequence[Mapping[str, Any]]) -> str:
    """The cross section of a curve's rows (their ``interaction``; SI when absent), e.g.
    ``SD WIMP-neutron``; ValueError if the rows mix couplings."""
    kinds = {r.get("interaction") or "SI" for r in rows} or {"SI"}
    if len(kinds) > 1:
        raise ValueError(f"limits of different couplings in one curve: {sorted(kinds)}")
    kind = kinds.pop()
    return CROSS_SECTION_LABELS.get(kind, kind)

#: CSV column of each band (N σ) and of its bound
BAND_COLUMNS = {"-2": "sigma_m2", "-1": "sigma_m1", "0": "sigma_median", "1": "sigma_p1", "2": "sigma_p2"}


def band_bounds(lim: Mapping[str, Any]) -> dict[str, str]:
    """{band: "<=X" | ">=X"} for the band edges that are only bounds (cm²; merge's
    ``expected_status``): e.g. the CLs+b −2σ quantile, where ≈ α of the background-only experiments
    exclude every μ > 0 and the quantile is only known to be at most the lowest tested μ."""
    out = {}
    for n, status in (lim.get("expected_status") or {}).items():
        bound = (lim.get("expected_bound_sigma_cm2") or {}).get(n)
        if status in ("upper_bound", "lower_bound") and bound is not None:
            out[n] = f"{'<=' if status == 'upper_bound' else '>='}{bound:.6g}"
    return out


def curve_rows(limits: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per mass, sorted by mass."""
    rows = []
    for doc in sorted(limits, key=lambda d: d["mass_GeV"]):
        row = {"mass_GeV": doc["mass_GeV"], "method": doc["method"], "cl": doc["cl"],
               "no_sensitivity": bool(doc.get("no_sensitivity", False)), "interaction": doc.get("interaction", "SI")}
        asym = doc.get("asymptotic") or {}
        if doc.get("no_sensitivity"):
            row.update({c: None for c in COLUMNS if c.startswith("sigma") or c == "pcl_status"})
        else:
            lim = doc["limits"][doc["method"]]
            exp = lim["expected_sigma_cm2"]
            row.update(sigma_median_cm2=exp["0"], sigma_m2_cm2=exp["-2"], sigma_m1_cm2=exp["-1"],
                       sigma_p1_cm2=exp["1"], sigma_p2_cm2=exp["2"], sigma_pcl_cm2=doc["upper_limit_sigma_cm2"],
                       sigma_asymptotic_median_cm2=(asym.get("expected_sigma_cm2") or {}).get("0"),
                       sigma_discovery_3sigma_cm2=asym.get("discovery_sigma_cm2"),
                       pcl_status=lim.get("pcl_status", "ok"))
            bounds = band_bounds(lim)
            row.update({f"{col}_bound": bounds.get(n) for n, col in BAND_COLUMNS.items()})
        if "observed" in doc:
            obs = doc["observed"]
            lo, hi = obs["best_fit"]["interval_sigma_cm2"]
            row.update(sigma_observed_cm2=obs["sigma_cm2"], sigma_best_fit_cm2=obs["best_fit"]["sigma_cm2"],
                       sigma_best_fit_lo_cm2=lo, sigma_best_fit_hi_cm2=hi,
                       discovery_p_value=obs["discovery"]["p_value"],
                       discovery_significance=obs["discovery"]["significance"])
        row.update(curve_columns(doc, row))  # two_sided headline, toy discovery (lzflow.construction_stage)
        rows.append(row)
    return rows


def summary_line(row: Mapping[str, Any]) -> str:
    """One console line of a curve row: median, ±1σ and asymptotic median; a band that has no
    value (its edge lies beyond the POI grid) is shown as its bound, e.g. ``>=1.1e-46``."""
    if row["no_sensitivity"]:
        return f"{row['mass_GeV']:>10g} GeV: no sensitivity"

    def shown(key: str) -> str:
        value = row[f"sigma_{key}_cm2"]
        return f"{value:.3g}" if value is not None else (row.get(f"sigma_{key}_bound") or "n/a")

    return (f"{row['mass_GeV']:>10g} GeV: median {shown('median')} cm2 [-1s {shown('m1')}, +1s {shown('p1')}], "
            f"asymptotic {row['sigma_asymptotic_median_cm2']:.3g}")


def write_curve_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """The curve CSV: :data:`COLUMNS`, :data:`OBSERVED_COLUMNS` when a row has an observed limit, then
    those of :data:`lzflow.construction_stage.EXTRA_COLUMNS` a row has (``construction`` names the headline's)."""
    observed = any("sigma_observed_cm2" in r for r in rows)
    extra = [c for c in EXTRA_COLUMNS if any(c in r for r in rows)]
    write_csv(path, rows, COLUMNS + (OBSERVED_COLUMNS if observed else []) + extra)


def pyplot():
    """matplotlib.pyplot with the Agg backend and the mplhep ROOT style (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ROOT)
    return plt


def save_figure(fig, path: str | Path, tight: bool = True) -> None:
    """Write ``fig`` atomically, in the format of ``path``'s suffix. ``tight``: crop to the drawn
    artists (a second layout pass); a figure with a constrained layout fits itself already."""
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=110, bbox_inches="tight" if tight else None)


def read_curve_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``limit_curve.csv`` (:func:`write_curve_csv`): numbers as floats, empty cells as
    None, ``no_sensitivity`` as a bool."""
    import csv

    rows = []
    for raw in csv.DictReader(Path(path).read_text().splitlines()):
        row: dict[str, Any] = {}
        for key, text in raw.items():
            if key == "no_sensitivity":
                row[key] = text == "True"
            elif key.endswith(("_cm2", "_GeV", "_rel_err")) or key == "cl":
                row[key] = float(text) if text else None
            else:
                row[key] = text or None
        rows.append(row)
    return rows


def plain_log_ticks(axis: Any) -> None:
    """Label a log-scaled axis with plain numbers (``20``, not ``2×10¹``): every integer × 10ⁿ over up
    to half a decade, 1, 2 and 5 × 10ⁿ up to 2.2 decades (also 3 × 10ⁿ up to 1.2), 1 and 3 × 10ⁿ up
    to 3.5, else 10ⁿ (so the labels do not overlap), with unlabelled minor ticks at the other
    integers. Call it after the data are drawn."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = sorted(axis.get_view_interval())
    decades = np.log10(hi / lo) if lo > 0 else np.inf
    subs = (tuple(float(k) for k in range(1, 10)) if decades <= 0.5 else (1.0, 2.0, 3.0, 5.0) if decades <= 1.2
            else (1.0, 2.0, 5.0) if decades <= 2.2 else (1.0, 3.0) if decades <= 3.5 else (1.0,))
    axis.set_major_locator(LogLocator(base=10.0, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:.10g}"))
    axis.set_minor_locator(LogLocator(base=10.0, subs=tuple(float(k) for k in range(1, 10) if k not in subs)))
    axis.set_minor_formatter(NullFormatter())


def figure_limit_curve(rows: Sequence[Mapping[str, Any]], title: str = "", reference: Any = None):
    """The limit-curve figure of :func:`plot_limit_curve` (not saved)."""
    plt = pyplot()
    good = [r for r in rows if not r["no_sensitivity"] and r["sigma_median_cm2"]]
    if reference is None:
        fig, ax = plt.subplots(figsize=(8, 6))
    else:
        fig, (ax, rax) = plt.subplots(2, 1, figsize=(8, 8), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    if good:
        m = np.array([r["mass_GeV"] for r in good])
        col = lambda k: np.array([r[k] if r[k] is not None else np.nan for r in good], dtype=float)  # noqa: E731
        m2 = col("sigma_m2_cm2")
        # a band edge known only as a bound is not drawn as one: the ±2σ fill stops at −1σ there and
        # the bound is marked (▽ "at most", △ "at least")
        ax.fill_between(m, np.where(np.isfinite(m2), m2, col("sigma_m1_cm2")), col("sigma_p2_cm2"), color="#ffdd55",
                        label=r"expected $\pm2\sigma$")
        ax.fill_between(m, col("sigma_m1_cm2"), col("sigma_p1_cm2"), color="#55cc55", label=r"expected $\pm1\sigma$")
        for key, marker, text in (("upper", "v", "at most"), ("lower", "^", "at least")):
            pts = [(r["mass_GeV"], float(r[f"{c}_bound"][2:]), n) for r in good for n, c in BAND_COLUMNS.items()
                   if r.get(f"{c}_bound") and r[f"{c}_bound"].startswith("<=" if key == "upper" else ">=")]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, color="#b08800", ls="none",
                        label=f"band edge only a bound ({text}): " + ", ".join(sorted({f"{int(p[2]):+d}σ".replace("-", "−") for p in pts})))
        kind = " two-sided" if any(r.get("construction") == "two_sided" for r in good) else ""
        ax.plot(m, col("sigma_median_cm2"), "k--", label=f"median expected (toys{kind})")
        ax.plot(m, col("sigma_asymptotic_median_cm2"), color="tab:blue", ls=":", label="median expected (asymptotic)")
        if any(r.get("sigma_observed_cm2") is not None for r in good):  # unblinded: the limit on the data
            ax.plot(m, col("sigma_observed_cm2"), "k-", lw=2, marker="o", label=f"observed{kind} limit (PCL, data)")
            lo = np.array([r.get("sigma_observed_lo_cm2") or np.nan for r in good], dtype=float)
            if np.any(lo > 0):  # two-sided: the interval's lower end where it excludes zero
                ax.plot(m, np.where(lo > 0, lo, np.nan), "k-.", lw=1.5, marker="^",
                        label="observed two-sided interval, lower end (excludes 0)")
        else:
            ax.plot(m, col("sigma_pcl_cm2"), color="tab:red", label=f"PCL{kind} limit (Asimov B-only data)")
    if reference is not None:
        _draw_reference(ax, rax, good, reference)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax.xaxis)  # shared with the ratio panel's
    (ax if reference is None else rax).set_xlabel("WIMP mass [GeV]")
    ax.set_ylabel(cross_section_label(rows) + r" $\sigma$ [cm$^2$]")
    ax.set_title(title, fontsize=14)
    ax.legend(fontsize=11 if reference is None else 9)
    return fig


def plot_limit_curve(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "",
                     reference: Any = None) -> None:
    """The limit curve: median expected limit with its ±1σ/±2σ bands, the asymptotic median and the
    PCL limit; masses as plain numbers on a log axis. With a ``reference``
    (:class:`lzflow.references.Reference`): its curve and quoted numbers, and a panel below with the
    ratio of lzflow's median to it."""
    plt = pyplot()
    fig = figure_limit_curve(rows, title, reference)
    save_figure(fig, path)
    plt.close(fig)


def _draw_reference(ax: Any, rax: Any, good: Sequence[Mapping[str, Any]], reference: Any) -> None:
    """The reference on ``ax``: its ±1σ/±2σ bands (lighter, hatched: lzflow's own bands are the
    solid green/yellow ones), its median dashed, the observed limit solid, the numbers the paper
    quotes as stars; a reference with only quoted numbers is just the stars. On ``rax``: lzflow's
    median / the reference curve (its median, or its limit for an observed-limit reference)."""
    from .references import reference_at

    m_ref = reference.mass_GeV
    short = reference.label.split(" (")[0]
    if reference.bands:
        ax.fill_between(m_ref, reference.bands["-2"], reference.bands["2"], facecolor="#ffdd55", alpha=0.35,
                        edgecolor="#b08800", hatch="//", lw=0, zorder=0.5, label=rf"{short}: expected $\pm2\sigma$")
        ax.fill_between(m_ref, reference.bands["-1"], reference.bands["1"], facecolor="#55cc55", alpha=0.35,
                        edgecolor="#2a7a2a", hatch="\\\\", lw=0, zorder=0.6, label=rf"{short}: expected $\pm1\sigma$")
    if not reference.points_only:
        ax.plot(m_ref, reference.sigma_cm2, color="tab:purple", ls="--" if reference.kind == "median" else "-",
                label=reference.label)
    if reference.observed_cm2 is not None:
        ax.plot(m_ref, reference.observed_cm2, color="tab:purple", ls="-", lw=1.5, label=f"{short}: observed limit")
    if reference.points:
        what = "median" if reference.kind == "median" else "limit"
        ax.plot(*zip(*reference.points), marker="*", ms=14, color="tab:purple", ls="none",
                label=f"{short}: {what} quoted in the paper")
    m = np.array([r["mass_GeV"] for r in good])
    ratio = np.array([r["sigma_median_cm2"] for r in good], dtype=float) / reference_at(reference, m)
    rax.axhline(1.0, color="grey", lw=1)
    rax.plot(m, ratio, "ko--")
    for mass, sigma in reference.points:
        match = [r["sigma_median_cm2"] for r in good if r["mass_GeV"] == mass]
        if match:
            rax.plot([mass], [match[0] / sigma], marker="*", ms=12, color="tab:purple", ls="none")
    rax.set_ylabel("lzflow median / " + ("reference median" if reference.kind == "median" else "reference limit"),
                   fontsize=11)


#: p-value curves of a limit.json: key, legend label, colour
PVALUE_CURVES = (("clsb", "CLs+b", "tab:red"), ("clb", "CLb", "tab:blue"), ("cls", "CLs", "tab:green"))


def _floats(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def pvalue_interval(pv: Mapping[str, Sequence[Any]], name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, low, high) per POI of one p-value curve of a limit.json's ``pvalues``.

    CLs+b and CLb are tail fractions k/N: merge stores their central 68.27 % Clopper–Pearson
    interval (``*_lo``, ``*_hi``: lo = B⁻¹(0.1587; k, N−k+1), hi = B⁻¹(0.8413; k+1, N−k); Clopper &
    Pearson, Biometrika 26 (1934) 404). At k = 0 it is [0, 1 − 0.1587^{1/N}], the one-sided 84.13 %
    upper bound — never the Wald 0 ± 0. CLs = CLs+b/CLb has no interval: value ± its propagated
    ``cls_err`` (low clipped at 0); at CLs = 0 the high end is CLs+b's high end / CLb. Files without
    intervals: value ± ``*_err``.
    """
    val = _floats(pv[name])
    if name + "_lo" in pv and name + "_hi" in pv:
        lo, hi = _floats(pv[name + "_lo"]), _floats(pv[name + "_hi"])
    else:
        err = _floats(pv[name + "_err"])
        lo, hi = np.clip(val - err, 0.0, None), val + err
    if name == "cls" and "clsb_hi" in pv:
        with np.errstate(divide="ignore", invalid="ignore"):
            hi = np.where(val == 0, _floats(pv["clsb_hi"]) / _floats(pv["clb"]), hi)
    return val, lo, hi


def figure_pvalues(doc: Mapping[str, Any]):
    """The p-value scan of :func:`plot_pvalues` (not saved)."""
    from matplotlib.lines import Line2D

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 6))
    if not doc.get("no_sensitivity"):
        mu = np.asarray(doc["poi_grid"], dtype=float)
        pv = doc["pvalues"]
        any_zero = False
        for name, label, color in PVALUE_CURVES:
            val, lo, hi = pvalue_interval(pv, name)
            shown = np.isfinite(val) & (val > 0)
            yerr = np.where(shown, np.clip(np.vstack([val - lo, hi - val]), 0.0, None), 0.0)
            ax.errorbar(mu, np.where(shown, val, np.nan), yerr=yerr, marker="o", color=color, label=label)
            zero = (val == 0) & np.isfinite(hi) & (hi > 0)
            if zero.any():  # p = 0/N: drawn at its upper bound, not dropped from the log scale
                any_zero = True
                ax.plot(mu[zero], hi[zero], "v", ms=9, mfc="none", mew=1.5, color=color, ls="none")
        ax.axhline(1 - doc["cl"], color="k", ls="--", label=f"α = {1 - doc['cl']:.2f}")
        lim = doc["limits"][doc["method"]]
        exp = lim["expected_mu"]
        if exp["-2"] is not None and exp["2"] is not None:
            ax.axvspan(exp["-2"], exp["2"], color="#ffdd55", alpha=0.5, label=r"expected limit $\pm2\sigma$")
        if exp["-1"] is not None and exp["1"] is not None:
            ax.axvspan(exp["-1"], exp["1"], color="#55cc55", alpha=0.5, label=r"expected limit $\pm1\sigma$")
        for n, bound in (lim.get("expected_bound_mu") or {}).items():
            rel = "≤" if lim["expected_status"][n] == "upper_bound" else "≥"
            ax.axvline(bound, color="#b08800", ls=":", label=f"expected {int(n):+d}σ".replace("-", "−") + f" {rel} {bound:.3g} (grid edge)")
        ax.set_yscale("log")
        handles, labels = ax.get_legend_handles_labels()
        if any_zero:
            handles.append(Line2D([], [], marker="v", ms=9, mfc="none", mew=1.5, color="k", ls="none"))
            labels.append("p = 0 (no toy beyond $q_{obs}$): upper end of its 68 % interval")
        ax.legend(handles, labels, fontsize=10)
    ax.set_xlabel(r"signal strength $\mu$ ($\sigma$ / $\sigma_{ref}$)")
    ax.set_ylabel("p-value")
    ax.set_title(f"{doc['mass_GeV']:g} GeV", fontsize=14)
    return fig


def plot_pvalues(doc: Mapping[str, Any], path: str | Path) -> None:
    """CLs+b, CLb and CLs vs μ with their 68.27 % intervals (:func:`pvalue_interval`; a p-value 0
    as ▽ at its upper bound), α and the expected-limit bands."""
    plt = pyplot()
    fig = figure_pvalues(doc)
    save_figure(fig, path)
    plt.close(fig)


#: the test statistic of a limit.json (``test_statistic``), as an axis label
TEST_STATISTIC_SYMBOLS = {"qtilde": r"\tilde{q}_\mu", "q": r"q_\mu"}


def panel_pois(doc: Mapping[str, Any], max_panels: int = 6) -> list[tuple[int, list[str]]]:
    """The POIs whose test-statistic distributions are drawn, in increasing μ, each with the limits
    it is the nearest grid point to (ln μ): first the observed limit and the expected-band
    limits of the method, then evenly spread grid points up to ``max_panels``."""
    mu = np.asarray(doc["poi_grid"], dtype=float)
    lim = doc["limits"][doc["method"]]
    targets = [("observed", lim.get("observed_mu"))]
    targets += [("median" if n == "0" else f"{int(n):+d}σ".replace("-", "−"), v) for n, v in sorted((lim.get("expected_mu") or {}).items(),
                                                                            key=lambda t: int(t[0]))]
    tags: dict[int, list[str]] = {}
    log_mu = np.log(np.where(mu > 0, mu, np.nan))
    for name, value in targets:
        if value is not None and np.isfinite(value) and value > 0 and np.isfinite(log_mu).any():
            tags.setdefault(int(np.nanargmin(np.abs(log_mu - np.log(value)))), []).append(name)
    order = np.argsort(mu, kind="stable")
    chosen = list(tags)[:max_panels]
    for k in order[np.linspace(0, mu.size - 1, min(mu.size, max_panels)).round().astype(int)]:
        if len(chosen) >= max_panels:
            break
        if int(k) not in chosen:
            chosen.append(int(k))
    for k in order:  # fewer distinct points than panels so far: fill in grid order
        if len(chosen) >= min(mu.size, max_panels):
            break
        if int(k) not in chosen:
            chosen.append(int(k))
    return [(k, tags.get(k, [])) for k in sorted(chosen, key=lambda i: mu[i])]


def qtilde_histogram(sample: Sequence[float], n_used: int, n_inf: int, bins: np.ndarray) -> tuple[np.ndarray, float]:
    """(density per bin, overflow probability) of one ensemble's test statistic.

    ``sample``: merge's subsample of the finite q of the used toys (every ~N/500-th of the sorted
    values); ``n_used`` toys were used, ``n_inf`` of them with q = +inf. Each sampled value stands for
    a fraction (1 − n_inf/n_used)/len(sample) of the toys; the overflow is everything above the last
    edge plus the +inf toys, so the histogram and the overflow sum to 1.
    """
    q = np.maximum(np.asarray(sample, dtype=float), 0.0)
    p_inf = n_inf / n_used if n_used > 0 else 0.0
    w = (1.0 - p_inf) / q.size if q.size else 0.0
    counts, _ = np.histogram(q[q <= bins[-1]], bins=bins)
    return counts * w / np.diff(bins), float(p_inf + w * np.sum(q > bins[-1]))


def figure_teststat(doc: Mapping[str, Any], max_panels: int = 6):
    """The test-statistic figure of :func:`plot_teststat` (not saved)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import LogLocator

    plt = pyplot()
    if doc.get("no_sensitivity"):
        fig, ax = plt.subplots()
        ax.text(0.5, 0.5, "no sensitivity", ha="center")
        return fig
    sym = TEST_STATISTIC_SYMBOLS.get(doc["test_statistic"], "q")
    panels = panel_pois(doc, max_panels)
    ncol = min(2, len(panels))
    nrow = -(-len(panels) // ncol)
    height = 4.6 * nrow + 1.0
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.6 * ncol, height), squeeze=False)
    # fixed margins (inches: 1.0 for the title, 1.05 for the legend and axis label), not a constrained
    # layout: its solver costs ~0.27 CPU-s per figure, and the panels' text has the same extent every time
    fig.subplots_adjust(left=0.085 if ncol > 1 else 0.15, right=0.985, top=1 - 1.0 / height, bottom=1.05 / height,
                        hspace=0.32, wspace=0.24)
    dist, toys = doc["q_distributions"], doc.get("toys") or {}
    for ax, (k, tags) in zip(axes.flat, panels):
        ens = {"sb": ("tab:red", "S+B"), "bonly": ("tab:blue", "B-only")}
        samples = {h: np.asarray(dist[h][k], dtype=float) for h in ens}
        used = {h: int((toys.get(f"{h}_used_per_poi") or [len(samples[h])] * (k + 1))[k]) for h in ens}
        n_inf = {h: int((dist.get(f"{h}_n_inf") or [0] * (k + 1))[k]) for h in ens}
        q_obs = doc["q_obs"][k]
        finite = np.concatenate([samples["sb"], samples["bonly"]])
        hi = max(float(np.percentile(finite, 99.5)) if finite.size else 0.0, 5.0,
                 1.1 * q_obs if q_obs is not None else 0.0)
        bins = np.linspace(0.0, hi, 31)
        width = bins[1] - bins[0]
        over_text = []
        for h, (color, label) in ens.items():
            density, overflow = qtilde_histogram(samples[h], used[h], n_inf[h], bins)
            ax.stairs(density, bins, color=color, lw=1.5)
            if overflow > 0:
                ax.bar(hi + width / 2, overflow / width, width=width, fill=False, hatch="///", edgecolor=color, lw=1)
            over_text.append(f"{label} {overflow:.1%}")
        x = np.linspace(width / 2, hi, 200)
        ax.plot(x, 0.5 * np.exp(-x / 2) / np.sqrt(2 * np.pi * x), "k:")  # ½ χ²₁ density
        ax.axvline(hi, color="grey", lw=0.8, ls="--")
        handles = [Patch(fill=False, hatch="///", edgecolor="grey", label=f"overflow (> {hi:.3g} or +∞): "
                         + ", ".join(over_text))]
        if q_obs is not None:
            handles.insert(0, ax.axvline(q_obs, color="k", lw=1.5, label=rf"${sym}$ observed = {q_obs:.3g}"))
        ax.legend(handles=handles, fontsize=10, loc="upper right")
        ax.set_yscale("log")
        # minor ticks at 2 and 5 per decade: all eight cost ~0.3 CPU-s per figure in tick layout
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, top * (top / bottom) ** 0.35)  # headroom for the legend
        ax.set_xlim(0.0, hi + width)
        ax.set_xlabel(rf"${sym}$", fontsize=13)
        ax.set_ylabel("probability density", fontsize=12)
        sigma = doc.get("sigma_ref_cm2")
        ax.set_title(rf"$\mu$ = {doc['poi_grid'][k]:.3g}"
                     + (f" (σ = {doc['poi_grid'][k] * sigma:.3g} cm²)" if sigma else "")
                     + (f"  ≈ {', '.join(tags)} limit" if tags else ""), fontsize=12)
        ax.tick_params(labelsize=11)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    common = [Line2D([], [], color="tab:red", lw=1.5, label=r"S+B toys (generated at $\mu$)"),
              Line2D([], [], color="tab:blue", lw=1.5, label="B-only toys"),
              Line2D([], [], color="k", ls=":", label=r"asymptotic S+B: $\frac{1}{2}\chi^2_1$ (arXiv:1007.1727)")]
    fig.legend(handles=common, loc="lower center", bbox_to_anchor=(0.5, 0.04 / height), ncol=3, fontsize=12)
    fig.suptitle(rf"${sym}$ distributions, {doc['mass_GeV']:g} GeV (observed: "
                 + ("the data)" if "observed" in doc else "Asimov background-only data)"),
                 fontsize=15, y=1 - 0.15 / height)
    return fig


def plot_teststat(doc: Mapping[str, Any], path: str | Path, max_panels: int = 6) -> None:
    """Test-statistic distributions of S+B and B-only toys at up to ``max_panels`` POIs
    (:func:`panel_pois`: those nearest the observed and expected limits), as probability
    densities with an overflow bin (q above the range or +inf; :func:`qtilde_histogram`), the
    observed q in each legend, and the asymptotic S+B expectation f(q̃_μ|μ) ≈ ½δ(q) + ½χ²₁
    (arXiv:1007.1727, Eq. 49) overlaid."""
    plt = pyplot()
    fig = figure_teststat(doc, max_panels)
    save_figure(fig, path, tight=False)  # fixed margins (figure_teststat); no second layout pass
    plt.close(fig)
