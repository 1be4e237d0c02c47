"""The plots as physicists read them (issue 15 item 5), checked on the figures' matplotlib objects
before they are saved: mass ticks as plain numbers, p-value error bars equal to Clopper–Pearson
intervals computed here with scipy, p = 0 points drawn at their upper bound, q̃ panels with axis
labels, the observed q̃ in each legend and an overflow bin that completes the toys."""

from __future__ import annotations

import re

import numpy as np
import pytest
from analysis_outputs import merged_limit
from matplotlib.collections import LineCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.patches import Rectangle, StepPatch
from scipy.stats import binomtest, norm

from lzflow.curve import (curve_rows, figure_limit_curve, figure_pvalues, figure_teststat, pyplot, qtilde_histogram,
                          panel_pois)
from lzflow.references import load_reference

ONE_SIGMA = float(norm.cdf(1) - norm.cdf(-1))  # 0.6827


@pytest.fixture(scope="module")
def doc():
    return merged_limit()[0]


def _rows(medians: dict[float, float]) -> list[dict]:
    docs = []
    for mass, median in medians.items():
        exp = {str(n): median * 2.0 ** n for n in (-2, -1, 0, 1, 2)}
        docs.append({"mass_GeV": mass, "method": "CLs+b", "cl": 0.9, "upper_limit_sigma_cm2": median,
                     "asymptotic": {"expected_sigma_cm2": {"0": median}, "discovery_sigma_cm2": 2 * median},
                     "limits": {"CLs+b": {"expected_sigma_cm2": exp}}})
    return curve_rows(docs)


def _major_labels(axis) -> list[str]:
    lo, hi = sorted(axis.get_view_interval())
    return [t.get_text() for t in axis.get_majorticklabels() if lo <= t.get_position()[0] <= hi and t.get_text()]


@pytest.mark.parametrize("masses, reference, expected", [
    ((40.0,), None, {"10", "20", "30", "50", "100"}),  # one mass: matplotlib's default decade around it
    ((10.0, 40.0), None, {"10", "20", "30"}),
    ((10.0, 16.2, 27.8, 40.0, 100.0, 200.0, 1000.0), None, {"10", "20", "50", "100", "200", "500", "1000"}),
    ((10.0, 40.0), "lz_projection_2018", {"3", "10", "30", "100", "300", "1000"}),  # 2.7–2000 GeV
])
def test_mass_ticks_are_plain_numbers(masses, reference, expected):
    plt = pyplot()
    fig = figure_limit_curve(_rows({m: 1e-47 * (m / 40) for m in masses}), "t",
                             load_reference(reference) if reference else None)
    fig.canvas.draw()
    axis = fig.axes[1 if reference else 0].xaxis  # the bottom panel carries the labels
    labels = _major_labels(axis)
    assert set(labels) == expected, labels
    assert all(re.fullmatch(r"\d+", text) for text in labels)  # no 2×10¹, no mathtext
    assert all(not t.get_text() for t in axis.get_minorticklabels())
    plt.close(fig)


def _errorbars(ax) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{label: (x, low ends, high ends)} of the error bars on ``ax``."""
    out = {}
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            (bars,) = [c for c in container.lines[2] if isinstance(c, LineCollection)]
            seg = np.array([s for s in bars.get_segments() if len(s) == 2 and np.isfinite(s).all()])
            out[container.get_label()] = (seg[:, 0, 0], seg[:, 0, 1], seg[:, 1, 1])
    return out


def test_pvalue_error_bars_are_clopper_pearson_and_zero_points_are_drawn(doc):
    plt = pyplot()
    fig = figure_pvalues(doc)
    ax = fig.axes[0]
    bars = _errorbars(ax)
    mu = np.asarray(doc["poi_grid"])
    n = np.asarray(doc["toys"]["sb_used_per_poi"])
    pv = doc["pvalues"]
    for name, label, n_toys in (("clsb", "CLs+b", n), ("clb", "CLb", np.full(mu.size, doc["toys"]["bonly"]))):
        k = np.rint(np.asarray(pv[name]) * n_toys).astype(int)
        x, lo, hi = bars[label]
        shown = k > 0
        assert np.allclose(x, mu[shown])
        cp = [binomtest(int(kk), int(nn)).proportion_ci(confidence_level=ONE_SIGMA, method="exact")
              for kk, nn in zip(k[shown], n_toys[shown])]
        assert lo == pytest.approx([c.low for c in cp], rel=1e-9, abs=1e-12)
        assert hi == pytest.approx([c.high for c in cp], rel=1e-9)
    # CLs+b = 0/N at the top of the grid: drawn as ▽ at 1 − 0.1587^(1/N), not dropped from the log axis
    zero = np.asarray(pv["clsb"]) == 0
    assert zero.any(), "the test grid must reach CLs+b = 0"
    markers = [line for line in ax.get_lines() if line.get_marker() == "v" and len(line.get_xdata())]
    red = [line for line in markers if line.get_color() == "tab:red"]
    assert len(red) == 1
    assert np.allclose(red[0].get_xdata(), mu[zero])
    assert red[0].get_ydata() == pytest.approx(1 - (0.5 * (1 - ONE_SIGMA)) ** (1 / n[zero]), rel=1e-9)
    assert any("p = 0" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close(fig)


def test_panel_pois_have_labels_observed_q_and_overflow(doc):
    plt = pyplot()
    fig = figure_teststat(doc)
    panels = panel_pois(doc)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert len(axes) == len(panels) == 6
    lim = doc["limits"][doc["method"]]
    tagged = {tag for _, tags in panels for tag in tags}
    assert {"observed", "median"} <= tagged  # the grid points nearest the limits are shown
    assert np.all(np.diff([doc["poi_grid"][k] for k, _ in panels]) > 0)
    for ax, (k, _) in zip(axes, panels):
        assert ax.get_xlabel() == r"$\tilde{q}_\mu$" and ax.get_ylabel() == "probability density"
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(f"observed = {doc['q_obs'][k]:.3g}" in t for t in texts), texts
        assert any(t.startswith("overflow") for t in texts)
        # S+B and B-only: the histogram and the overflow bin hold every used toy
        for color, hyp in (("tab:red", "sb"), ("tab:blue", "bonly")):
            (step,) = [p for p in ax.patches if isinstance(p, StepPatch) and p.get_edgecolor()[:3] == _rgb(color)]
            values, edges, _ = step.get_data()
            inside = float(np.sum(values * np.diff(edges)))
            over = [p for p in ax.patches if isinstance(p, Rectangle) and not isinstance(p, StepPatch)
                    and p.get_edgecolor()[:3] == _rgb(color)]
            outside = sum(p.get_height() * p.get_width() for p in over)
            assert inside + outside == pytest.approx(1.0, rel=1e-12)
        assert ax.get_xlim()[1] > edges[-1]  # the overflow bin is on the axis
    assert lim["observed_mu"] is not None
    plt.close(fig)


def _rgb(name: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(name)


def test_overflow_counts_values_above_the_range_and_infinite_q():
    """4 sampled finite values stand for the 8 finite toys of 10 used, 2 with q = +inf."""
    bins = np.linspace(0.0, 5.0, 6)
    density, overflow = qtilde_histogram([0.5, 1.5, 1.7, 20.0], n_used=10, n_inf=2, bins=bins)
    assert overflow == pytest.approx(0.2 + 0.8 / 4)
    assert density * np.diff(bins) == pytest.approx([0.2, 0.4, 0, 0, 0])
    density, overflow = qtilde_histogram([], n_used=3, n_inf=3, bins=bins)
    assert overflow == 1.0 and not density.any()


def test_observed_two_sided_interval_lower_end_is_drawn_only_where_it_excludes_zero():
    """An unblinded two-sided curve draws the observed upper end and, where the interval excludes
    zero, its lower end (a discovery-like interval); a lower end of 0 draws nothing there."""
    plt = pyplot()
    rows = _rows({10.0: 2e-47, 40.0: 1e-48})
    for row, (up, lo) in zip(rows, ((3e-47, 0.0), (9.3e-48, 3.9e-48))):
        row.update(construction="two_sided", sigma_observed_cm2=up, sigma_observed_lo_cm2=lo)
    fig = figure_limit_curve(rows, "t")
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert "observed two-sided limit (PCL, data)" in lines
    lower = lines["observed two-sided interval, lower end (excludes 0)"]
    y = np.asarray(lower.get_ydata(), dtype=float)
    assert np.isnan(y[0]) and y[1] == pytest.approx(3.9e-48)
    rows[1]["sigma_observed_lo_cm2"] = 0.0  # no interval excludes zero: no lower-end line at all
    labels = {ln.get_label() for ln in figure_limit_curve(rows, "t").axes[0].get_lines()}
    assert not any("lower end" in label for label in labels)
    plt.close("all")
