"""Curve stage: the σ_SI limit curve over masses, its CSV and the plots.

Plots (matplotlib with the mplhep style):

* ``limit_curve.png``: σ_SI vs WIMP mass (log-log), median expected limit with ±1σ/±2σ bands from
  toys, the asymptotic median, the power-constrained limit, and the LZ projection reference point
  (1.4e-48 cm² at 40 GeV, arXiv:1802.06039);
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

__all__ = ["curve_rows", "write_curve_csv", "plot_limit_curve", "plot_pvalues", "plot_teststat",
           "LZ_REFERENCE"]

#: LZ projected median 90 % CL SI sensitivity (arXiv:1802.06039, PRD 101 052002): (GeV, cm²).
LZ_REFERENCE = (40.0, 1.4e-48)

COLUMNS = ["mass_GeV", "sigma_median_cm2", "sigma_m2_cm2", "sigma_m1_cm2", "sigma_p1_cm2", "sigma_p2_cm2",
           "sigma_pcl_cm2", "sigma_asymptotic_median_cm2", "sigma_discovery_3sigma_cm2", "method", "cl",
           "no_sensitivity"]


def curve_rows(limits: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per mass, sorted by mass."""
    rows = []
    for doc in sorted(limits, key=lambda d: d["mass_GeV"]):
        row = {"mass_GeV": doc["mass_GeV"], "method": doc["method"], "cl": doc["cl"],
               "no_sensitivity": bool(doc.get("no_sensitivity", False))}
        asym = doc.get("asymptotic") or {}
        if doc.get("no_sensitivity"):
            row.update({c: None for c in COLUMNS if c.startswith("sigma")})
        else:
            exp = doc["limits"][doc["method"]]["expected_sigma_cm2"]
            row.update(sigma_median_cm2=exp["0"], sigma_m2_cm2=exp["-2"], sigma_m1_cm2=exp["-1"],
                       sigma_p1_cm2=exp["1"], sigma_p2_cm2=exp["2"], sigma_pcl_cm2=doc["upper_limit_sigma_cm2"],
                       sigma_asymptotic_median_cm2=(asym.get("expected_sigma_cm2") or {}).get("0"),
                       sigma_discovery_3sigma_cm2=asym.get("discovery_sigma_cm2"))
        rows.append(row)
    return rows


def write_curve_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    write_csv(path, rows, COLUMNS)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ROOT)
    return plt


def _save(fig, path: str | Path) -> None:
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=110, bbox_inches="tight")


def plot_limit_curve(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> None:
    plt = _figure()
    good = [r for r in rows if not r["no_sensitivity"] and r["sigma_median_cm2"]]
    fig, ax = plt.subplots(figsize=(8, 6))
    if good:
        m = np.array([r["mass_GeV"] for r in good])
        col = lambda k: np.array([r[k] if r[k] is not None else np.nan for r in good], dtype=float)  # noqa: E731
        ax.fill_between(m, col("sigma_m2_cm2"), col("sigma_p2_cm2"), color="#ffdd55", label=r"expected $\pm2\sigma$")
        ax.fill_between(m, col("sigma_m1_cm2"), col("sigma_p1_cm2"), color="#55cc55", label=r"expected $\pm1\sigma$")
        ax.plot(m, col("sigma_median_cm2"), "k--", label="median expected (toys)")
        ax.plot(m, col("sigma_asymptotic_median_cm2"), color="tab:blue", ls=":", label="median expected (asymptotic)")
        ax.plot(m, col("sigma_pcl_cm2"), color="tab:red", label="PCL limit (Asimov B-only data)")
    ax.plot(*LZ_REFERENCE, marker="*", ms=14, color="tab:purple", ls="none", label="LZ projection (40 GeV)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("WIMP mass [GeV]")
    ax.set_ylabel(r"SI WIMP-nucleon $\sigma$ [cm$^2$]")
    ax.set_title(title, fontsize=14)
    ax.legend(fontsize=11)
    _save(fig, path)
    plt.close(fig)


def plot_pvalues(doc: Mapping[str, Any], path: str | Path) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 6))
    if not doc.get("no_sensitivity"):
        mu = np.asarray(doc["poi_grid"])
        pv = doc["pvalues"]
        for name, color in (("clsb", "tab:red"), ("clb", "tab:blue"), ("cls", "tab:green")):
            ax.errorbar(mu, pv[name], yerr=pv[name + "_err"], marker="o", color=color,
                        label={"clsb": "CLs+b", "clb": "CLb", "cls": "CLs"}[name])
        ax.axhline(1 - doc["cl"], color="k", ls="--", label=f"α = {1 - doc['cl']:.2f}")
        lim = doc["limits"][doc["method"]]
        exp = lim["expected_mu"]
        if exp["-2"] is not None and exp["2"] is not None:
            ax.axvspan(exp["-2"], exp["2"], color="#ffdd55", alpha=0.5, label=r"expected limit $\pm2\sigma$")
        if exp["-1"] is not None and exp["1"] is not None:
            ax.axvspan(exp["-1"], exp["1"], color="#55cc55", alpha=0.5, label=r"expected limit $\pm1\sigma$")
        ax.set_yscale("log")
    ax.set_xlabel(r"signal strength $\mu$ ($\sigma$ / $\sigma_{ref}$)")
    ax.set_ylabel("p-value")
    ax.set_title(f"{doc['mass_GeV']:g} GeV", fontsize=14)
    ax.legend(fontsize=10)
    _save(fig, path)
    plt.close(fig)


def plot_teststat(doc: Mapping[str, Any], path: str | Path, max_panels: int = 12) -> None:
    """q distributions per POI (S+B and B-only toys) with the asymptotic S+B expectation
    f(q̃_μ|μ) ≈ ½δ(q) + χ²₁ (arXiv:1007.1727, Eq. 49) overlaid."""
    from scipy.stats import chi2

    plt = _figure()
    if doc.get("no_sensitivity"):
        fig, ax = plt.subplots()
        ax.text(0.5, 0.5, "no sensitivity", ha="center")
        _save(fig, path)
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
    _save(fig, path)
    plt.close(fig)
