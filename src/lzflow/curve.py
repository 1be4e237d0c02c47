"""Curve stage: the limit curve over masses (σ of ``signal.interaction``: SI WIMP–nucleon, SD
WIMP–neutron or SD WIMP–proton, the limit documents' ``interaction``), its CSV and the plots.

Plots (matplotlib with the mplhep style):

* ``limit_curve.png``: σ_SI vs WIMP mass (log-log), median expected limit with ±1σ/±2σ bands from
  toys, the asymptotic median, the power-constrained limit, and the LZ projection reference point
  (1.4e-48 cm² at 40 GeV, arXiv:1802.06039). A band edge that merge could only bound (e.g. the
  CLs+b −2σ quantile: ≈ α of the background-only experiments exclude every μ > 0) is drawn as a
  bound marker (▽ at most, △ at least), never as a band edge; the CSV has it as ``<=X``/``>=X`` in
  ``sigma_<band>_bound`` with the band's value empty;
* ``m<mass>/pvalues.png``: CLs+b, CLb and CLs vs μ with their MC errors and the expected band of
  B-only p-value curves — the old "nine graphs" in one;
* ``m<mass>/teststat.png``: per POI, the test-statistic distributions of S+B and B-only toys with the
  asymptotic q̃_μ distribution overlaid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .io import atomic_path, write_csv

__all__ = ["curve_rows", "summary_line", "write_curve_csv", "plot_limit_curve", "plot_pvalues", "plot_teststat",
           "BAND_COLUMNS", "CROSS_SECTION_LABELS", "cross_section_label", "pyplot", "save_figure", "read_curve_csv"]

COLUMNS = ["mass_GeV", "sigma_median_cm2", "sigma_m2_cm2", "sigma_m1_cm2", "sigma_p1_cm2", "sigma_p2_cm2",
           "sigma_pcl_cm2", "sigma_asymptotic_median_cm2", "sigma_discovery_3sigma_cm2", "sigma_m2_bound",
           "sigma_m1_bound", "sigma_median_bound", "sigma_p1_bound", "sigma_p2_bound", "pcl_status", "method", "cl",
           "no_sensitivity", "interaction"]

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
    write_csv(path, rows, COLUMNS)


def pyplot():
    """matplotlib.pyplot with the Agg backend and the mplhep ROOT style (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ROOT)
    return plt


def save_figure(fig, path: str | Path) -> None:
    """Write ``fig`` atomically, in the format of ``path``'s suffix."""
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=110, bbox_inches="tight")


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
            elif key.endswith(("_cm2", "_GeV")) or key == "cl":
                row[key] = float(text) if text else None
            else:
                row[key] = text or None
        rows.append(row)
    return rows


def plot_limit_curve(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "",
                     reference: Any = None) -> None:
    """The limit curve: median expected limit with its ±1σ/±2σ bands, the asymptotic median and the
    PCL limit. With a ``reference`` (:class:`lzflow.references.Reference`): its curve and quoted
    numbers, and a panel below with the ratio of lzflow's median to it."""
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
                        label=f"band edge only a bound ({text}): " + ", ".join(sorted({f"{int(p[2]):+d}σ" for p in pts})))
        ax.plot(m, col("sigma_median_cm2"), "k--", label="median expected (toys)")
        ax.plot(m, col("sigma_asymptotic_median_cm2"), color="tab:blue", ls=":", label="median expected (asymptotic)")
        ax.plot(m, col("sigma_pcl_cm2"), color="tab:red", label="PCL limit (Asimov B-only data)")
    if reference is not None:
        _draw_reference(ax, rax, good, reference)
    ax.set_xscale("log")
    ax.set_yscale("log")
    (ax if reference is None else rax).set_xlabel("WIMP mass [GeV]")
    ax.set_ylabel(cross_section_label(rows) + r" $\sigma$ [cm$^2$]")
    ax.set_title(title, fontsize=14)
    ax.legend(fontsize=11 if reference is None else 9)
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


def plot_pvalues(doc: Mapping[str, Any], path: str | Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 6))
    if not doc.get("no_sensitivity"):
        mu = np.asarray(doc["poi_grid"])
        pv = doc["pvalues"]
        for name, color in (("clsb", "tab:red"), ("clb", "tab:blue"), ("cls", "tab:green")):
            val = np.array([np.nan if v is None else v for v in pv[name]], dtype=float)
            if name + "_lo" in pv:  # Clopper–Pearson interval (asymmetric)
                lo = np.array([np.nan if v is None else v for v in pv[name + "_lo"]], dtype=float)
                hi = np.array([np.nan if v is None else v for v in pv[name + "_hi"]], dtype=float)
                yerr = np.clip(np.vstack([val - lo, hi - val]), 0, None)
            else:
                yerr = np.array([np.nan if v is None else v for v in pv[name + "_err"]], dtype=float)
            ax.errorbar(mu, val, yerr=yerr, marker="o", color=color,
                        label={"clsb": "CLs+b", "clb": "CLb", "cls": "CLs"}[name])
        ax.axhline(1 - doc["cl"], color="k", ls="--", label=f"α = {1 - doc['cl']:.2f}")
        lim = doc["limits"][doc["method"]]
        exp = lim["expected_mu"]
        if exp["-2"] is not None and exp["2"] is not None:
            ax.axvspan(exp["-2"], exp["2"], color="#ffdd55", alpha=0.5, label=r"expected limit $\pm2\sigma$")
        if exp["-1"] is not None and exp["1"] is not None:
            ax.axvspan(exp["-1"], exp["1"], color="#55cc55", alpha=0.5, label=r"expected limit $\pm1\sigma$")
        for n, bound in (lim.get("expected_bound_mu") or {}).items():
            rel = "≤" if lim["expected_status"][n] == "upper_bound" else "≥"
            ax.axvline(bound, color="#b08800", ls=":", label=f"expected {int(n):+d}σ {rel} {bound:.3g} (grid edge)")
        ax.set_yscale("log")
    ax.set_xlabel(r"signal strength $\mu$ ($\sigma$ / $\sigma_{ref}$)")
    ax.set_ylabel("p-value")
    ax.set_title(f"{doc['mass_GeV']:g} GeV", fontsize=14)
    ax.legend(fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


def plot_teststat(doc: Mapping[str, Any], path: str | Path, max_panels: int = 12) -> None:
    """q distributions per POI (S+B and B-only toys) with the asymptotic S+B expectation
    f(q̃_μ|μ) ≈ ½δ(q) + χ²₁ (arXiv:1007.1727, Eq. 49) overlaid."""
    from scipy.stats import chi2

    plt = pyplot()
    if doc.get("no_sensitivity"):
        fig, ax = plt.subplots()
        ax.text(0.5, 0.5, "no sensitivity", ha="center")
        save_figure(fig, path)
        plt.close(fig)
        return
    mus = doc["poi_grid"]
    idx = np.linspace(0, len(mus) - 1, min(len(mus), max_panels)).round().astype(int)
    ncol = 4
    nrow = -(-len(idx) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.3 * nrow), squeeze=False)
    for ax, k in zip(axes.flat, idx):
        qsb = np.asarray(doc["q_distributions"]["sb"][k])
        qb = np.asarray(doc["q_distributions"]["bonly"][k])
        hi = max(np.nanpercentile(np.concatenate([qsb, qb]), 99.5), 5.0)
        bins = np.linspace(0, hi, 40)
        ax.hist(np.clip(qsb, 0, hi), bins=bins, density=True, histtype="step", color="tab:red", label="S+B toys")
        ax.hist(np.clip(qb, 0, hi), bins=bins, density=True, histtype="step", color="tab:blue", label="B-only toys")
        x = np.linspace(bins[1] / 2, hi, 200)
        ax.plot(x, 0.5 * chi2.pdf(x, 1), "k:", label=r"asympt. $\frac{1}{2}\chi^2_1$")
        ax.axvline(doc["q_obs"][k], color="k", lw=1)
        ax.set_yscale("log")
        ax.set_title(f"μ = {mus[k]:.3g}", fontsize=11)
        ax.tick_params(labelsize=9)
    for ax in list(axes.flat)[len(idx):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"test statistic {doc['test_statistic']}, {doc['mass_GeV']:g} GeV", fontsize=14)
    save_figure(fig, path)
    plt.close(fig)
