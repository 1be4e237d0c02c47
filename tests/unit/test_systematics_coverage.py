"""Coverage of the 90 % CL CLs+b upper limit with shape systematics on (issue 12), on the default
analysis's real 40 GeV workspace (``tests/data/workspace_m40_systematics.json.gz``: 11 rate and 5
shape nuisance parameters, ``log_quartic`` morphing, NEST templates at 10⁷ samples).

Each pseudo-experiment has its own truth, drawn from the constraints: α_k ~ N(0, 1) for every shape
parameter and θ_b ~ N(1, r_b) (truncated at 0) for every constrained background, with μ_true the
asymptotic median expected limit. Its counts are Poisson(ν(μ_true, θ, α)) and its auxiliary
observables N(truth, width), drawn by lzflow's own toy sampler at the truth. The limit is then made
as ``lzflow merge`` makes it: the test statistic q̃_μ of the experiment (:func:`observed_q`) and S+B
toys generated at the experiment's own conditional fit (μ_true, θ̂̂, α̂̂) (:func:`run_toys`), with the
same exclusion policy (:func:`toy_quality`).

The CLs+b limit μ_up is where p_{s+b}(μ) = P(q̃_μ ≥ q̃_μ,obs | μ, θ̂̂(μ)) falls to α = 0.1, so with
μ_true a grid point (p decreasing in μ) the limit covers the truth, μ_true ≤ μ_up, exactly when
p_{s+b}(μ_true) > α. Only that p-value is computed, from n toys: with k = #{toys with q̃ ≥ q̃_obs}
and p̂ = k / n, the experiment is covered when k > α n. If the experiment were exchangeable with its
toys (an exact procedure), k would be uniform on {0, …, n} and P(k > α n) = (n − ⌊α n⌋) / (n + 1):
with n = α⁻¹(m) − 1 toys (19, 99) that is exactly 1 − α = 0.9, so finite toy counts bias nothing.
An experiment with q̃_obs = 0 (μ̂ ≥ μ_true) has p̂ = 1 for any toys and is counted as covered
without running them. Coverage is P(covered) over the experiments, binomial error √(0.09 / N).
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest

ALPHA = 0.1  # 90 % CL
#: truths of the shape parameters stay inside the ±2σ templates the response stage made: beyond them
#: the log_quartic extrapolation of this workspace explodes (test_extrapolation_stays_finite)
ALPHA_SPAN = 2.0
WORKSPACE = Path(__file__).parents[1] / "data" / "workspace_m40_systematics.json.gz"


def _model(interpolation: str = "log_quartic"):
    """The workspace's model (morphed by ``interpolation``) with μ = 1 at its asymptotic CLs+b median
    expected limit."""
    from lzflow.workspace import workspace_model

    ws = json.loads(gzip.decompress(WORKSPACE.read_bytes()))
    m = workspace_model(ws)
    m = m.with_shape_systematics(m.shape_systematics, interpolation)
    return m.with_signal(m.signal * ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"])


def _truncated_normal(rng: np.random.Generator, centre: float, width: float, lo: float, hi: float) -> float:
    while True:
        x = centre + width * rng.standard_normal()
        if lo < x < hi:
            return x


def _truth(m, rng: np.random.Generator, mu: float, alpha_span: float = ALPHA_SPAN) -> np.ndarray:
    """[μ, θ, α] drawn from the constraints: α_k ~ N(0, 1) truncated to ±alpha_span; θ_b ~ N(1, r_b)
    truncated at 0 (fixed θ_b = 1)."""
    theta = np.ones(m.n_bkg)
    for b in np.flatnonzero(m.constrained):
        theta[b] = _truncated_normal(rng, 1.0, m.rel_unc[b], 0.0, np.inf)
    alpha = [_truncated_normal(rng, 0.0, 1.0, -alpha_span, alpha_span) for _ in range(m.n_shape)]
    return m.full_params(mu, np.r_[theta, alpha])


def coverage_run(n_pe: int, n_toys: int, seed: int, mu_factor: float = 1.0, interpolation: str = "log_quartic",
                 alpha_span: float = ALPHA_SPAN) -> dict:
    """Run ``n_pe`` pseudo-experiments (module docstring); returns their ranks k, the usable toys of
    each, the coverage and its error, and the wall time."""
    from lzflow.stats import run_toys, toy_quality
    from lzflow.stats.fit import BatchedFitter
    from lzflow.stats.fitresult import FitConfig
    from lzflow.stats.hypotest import observed_q
    from lzflow.stats.pvalues import Ensemble
    from lzflow.stats.request import ToyRequest
    from lzflow.stats.toys import ToySampler, generation_point

    m = _model(interpolation)
    sampler_fitter = BatchedFitter(m, FitConfig(n_threads=1))
    rng = np.random.default_rng([seed, 12])
    ks, ns, q_obs_all, failed = [], [], [], []
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):  # overflow inside Newton steps that are then rejected
        for j in range(n_pe):
            truth = _truth(m, rng, mu_factor, alpha_span)
            sampler = ToySampler(sampler_fitter, truth, "counter")
            data, aux = sampler.draw(seed, 40, 0, "sb", np.array([j]))
            counts, aux = sampler.dense_counts(data)[0], aux[0]
            qs, info = observed_q(m, counts, aux, [mu_factor])
            q_obs = float(qs[0])
            if not np.isfinite(q_obs):  # the experiment's own fit failed: no limit, counted apart
                failed.append({"index": j, "truth": truth.tolist(), **info})
                continue
            q_obs_all.append(q_obs)
            if q_obs <= 0.0:  # μ̂ ≥ μ_true: every toy has q̃ ≥ 0 = q̃_obs, p̂ = 1
                ks.append(n_toys)
                ns.append(n_toys)
                continue
            try:
                r = run_toys(m, ToyRequest(base_seed=1_000_000 * seed + j, mass_key=40, poi_index=0, hypothesis="sb",
                                           mu=mu_factor, toy_indices=np.arange(n_toys), block_size=n_toys,
                                           observed=(counts, aux), n_threads=1))
            except ValueError as err:  # no toys at this experiment's (μ, θ̂̂, α̂̂): no limit, counted apart
                gen, _ = generation_point(m, mu_factor, (counts, aux))
                failed.append({"index": j, "truth": truth.tolist(), "error": str(err), "generation_point": gen.tolist()})
                q_obs_all.pop()
                continue
            ens = Ensemble(r.q[:, 0], toy_quality(r, "qtilde")[:, 0] == 0)
            ks.append(int(ens.count(q_obs)))
            ns.append(ens.n)
    k, n = np.array(ks), np.array(ns)
    covered = k > ALPHA * n
    c = float(covered.mean())
    return {"k": k, "n": n, "q_obs": np.array(q_obs_all), "coverage": c, "failed": failed, "interpolation": interpolation,
            "err": float(np.sqrt(ALPHA * (1 - ALPHA) / k.size)), "seconds": time.perf_counter() - t0}


def _report(r: dict, n_toys: int) -> str:
    """One line: coverage, error, time, and the empirical P(p̂ ≤ a) at a few levels (uniform: a)."""
    p = r["k"] / np.maximum(r["n"], 1)
    levels = " ".join(f"P(p<={a:g})={np.mean(p <= a):.3f}" for a in (0.05, 0.1, 0.2, 0.3))
    return (f"\nCLs+b coverage with 5 shape + 11 rate systematics ({r['interpolation']}, default 40 GeV workspace): "
            f"{r['coverage']:.4f} ± {r['err']:.4f} over {r['k'].size} pseudo-experiments x {n_toys} toys "
            f"({len(r['failed'])} more whose own fit failed: {r['failed']}), "
            f"{np.mean(r['q_obs'] > 0):.3f} with q>0, min usable toys {r['n'].min()}, {r['seconds']:.0f} s; {levels}")


def test_coverage_with_systematics_on_the_default_workspace_ci():
    """CI size (≈ 20 s): 64 pseudo-experiments x 19 toys (σ_cov ≈ 0.0375); the limit must not
    under-cover by more than 2.5σ (over-coverage is allowed: CLs+b is one-sided)."""
    r = coverage_run(n_pe=64, n_toys=19, seed=1)
    print(_report(r, 19))
    assert not r["failed"] and (r["n"] == 19).all()  # no failed fit, no toy excluded
    assert r["coverage"] >= 1 - ALPHA - 2.5 * r["err"]


@pytest.mark.slow
@pytest.mark.parametrize("mu_factor, n_pe, seed", [(1.0, 600, 2), (0.5, 400, 4)])
def test_coverage_with_systematics_on_the_default_workspace_slow(mu_factor, n_pe, seed):
    """μ_true = the median: 600 pseudo-experiments x 99 toys (σ_cov ≈ 0.012), 303–409 s at host load
    6 on 2 cores, coverage 0.906 ± 0.012 (2 experiments whose own fit failed left out). μ_true = half
    the median: 400 x 99, 67 s, 0.912 ± 0.015 (3 left out: two failed fits, and one whose conditional
    fit went to α_g1 = −3.8, α_g2 = −2.7, where the log_quartic extrapolation overflows and no toy can
    be drawn). 10⁴ experiments (the issue's ask) would take ≈ 1.5 h on one free core at the median
    (0.5 s each, two thirds in Migrad fallbacks of the single-dataset fits)."""
    r = coverage_run(n_pe=n_pe, n_toys=99, seed=seed, mu_factor=mu_factor)
    print(_report(r, 99))
    ran = r["q_obs"] > 0  # the experiments whose toys were run
    assert len(r["failed"]) <= 0.01 * n_pe and (99 - r["n"][ran]).sum() <= 0.01 * 99 * ran.sum()  # ≤ 1 % each
    assert r["coverage"] >= 1 - ALPHA - 2.5 * r["err"]


@pytest.mark.slow
def test_coverage_log_pchip_half_median_truths_to_3_sigma():
    """log_pchip, μ_true = half the median, α truths drawn to ±3σ (beyond the ±2σ templates): 400 x 99."""
    r = coverage_run(n_pe=400, n_toys=99, seed=4, mu_factor=0.5, interpolation="log_pchip", alpha_span=3.0)
    print(_report(r, 99))
    ran = r["q_obs"] > 0
    assert len(r["failed"]) <= 0.01 * 400 and (99 - r["n"][ran]).sum() <= 0.01 * 99 * ran.sum()
    assert r["coverage"] >= 1 - ALPHA - 2.5 * r["err"]


_QUARTIC_XFAIL = pytest.mark.xfail(
    strict=True, reason="log_quartic extrapolates ln T linearly beyond ±2σ with the quartic's slope there, which is "
    "huge in sparse bins whose filled anchors rest on a few MC events: at α = ±2.5-3 this workspace expects up to 451x its "
    "nominal events (4e11x before the MC-empty rule of issue 12; lzflow.stats.logmorph)")


@pytest.mark.parametrize("interpolation, alphas", [
    pytest.param("log_quartic", (-3.0, -2.5, 2.5, 3.0), marks=_QUARTIC_XFAIL),
    ("log_pchip", (-2.5, 2.5)),
    ("log_pchip", (-3.0, 3.0)),  # 1.06 (159 with the ratio floored at 1e-3 before issue 12)
    ("log_pchip", (-5.0, 5.0)),  # 1.10: the ±2σ normalisation continued, r̄^{|α|/2} (lzflow.stats.logmorph)
])
def test_extrapolation_stays_finite(interpolation, alphas):
    """A Gaussian-constrained shape parameter beyond the ±2σ templates should not multiply the
    expected events by more than 2 (each ±2σ template moves them by at most 6 % here, and log_pchip
    continues each sample's ±2σ normalisation exponentially: ≤ 1.06^{5/2} = 1.16 at 5σ if all moved
    together; the per-bin bound is test_logmorph.test_log_pchip_growth_beyond_2sigma_is_bounded_in_every_bin)."""
    m = _model(interpolation)
    nominal = m.expected(1.0, m.nominal_nuisance()).sum()
    worst = 0.0
    for k in range(m.n_shape):
        for a in alphas:
            nuis = m.nominal_nuisance().copy()
            nuis[m.n_bkg + k] = a
            worst = max(worst, m.expected(1.0, nuis).sum() / nominal)
    print(f"\n{interpolation}: largest expected-events factor at alpha in {alphas}: {worst:.3g}")
    assert worst < 2.0
