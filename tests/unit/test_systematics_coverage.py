"""Coverage of the 90 % CL CLs+b upper limit with shape systematics on (issue 12), on the default
analysis's real 40 GeV workspace (``tests/data/workspace_m40_systematics.json.gz``: 11 rate and 5
shape nuisance parameters, NEST templates at 10⁷ samples), morphed with ``log_pchip`` (the
systematics overlay's, ``config/overlays/systematics.yaml``) or ``log_quartic``.

Each pseudo-experiment has its own truth, drawn from the constraints: α_k ~ N(0, 1) for every shape
parameter and θ_b ~ N(1, r_b) (truncated at 0) for every constrained background, with μ_true the
asymptotic median expected limit. Its counts are Poisson(ν(μ_true, θ, α)) and its auxiliary
observables N(truth, width), drawn by lzflow's own toy sampler at the truth (experiment j's truth
from its own generator [seed, 12, j], its data from the counter stream at index j). The limit is
then made as ``lzflow merge`` makes it: the test statistic q̃_μ of the experiment (the fits of
:func:`observed_q`) and S+B toys generated at the experiment's own conditional fit (μ_true, θ̂̂, α̂̂)
(the fit of :func:`generation_point`, then :func:`run_toys`), with the same exclusion policy
(:func:`toy_quality`). The experiments' own fits are batched: experiments come in canonical blocks
of :data:`PE_BLOCK` and each of the three fits is one call over a block
(:mod:`lzflow.stats.observed_batch`; only genuine failures fall back to Migrad, one by one), so a
block's results depend on nothing outside it and its rerun alone is bit-identical.

The CLs+b limit μ_up is where p_{s+b}(μ) = P(q̃_μ ≥ q̃_μ,obs | μ, θ̂̂(μ)) falls to α = 0.1, so with
μ_true a grid point (p decreasing in μ) the limit covers the truth, μ_true ≤ μ_up, exactly when
p_{s+b}(μ_true) > α. Only that p-value is computed, from n toys: with k = #{toys with q̃ ≥ q̃_obs}
and p̂ = k / n, the experiment is covered when k > α n. If the experiment were exchangeable with its
toys (an exact procedure), k would be uniform on {0, …, n} and P(k > α n) = (n − ⌊α n⌋) / (n + 1):
with n = α⁻¹(m) − 1 toys (19, 99) that is exactly 1 − α = 0.9 (n = 19: k ≥ 2, 18 of 20 values),
so finite toy counts bias nothing, and P(p̂ ≤ a) = a exactly at a = 0.05, 0.1, 0.2, 0.3 (k ≤ 0, 1,
3, 5). Two small caveats, both also true for n = 99: with toys excluded (n < 19) the fraction is
(n − ⌊α n⌋)/(n + 1), 0.895 at n = 18; and q̃ has a point mass at 0, so when fewer than 2 of the
n + 1 exchangeable values are positive, P(not covered) is 1/(n + 1) or 0 instead of 2/(n + 1):
P ≈ 20 · 0.55 · 0.45¹⁹ ≈ 3e-6 here (55 % of the experiments have q̃ > 0) — negligible.
An experiment with q̃_obs = 0 (μ̂ ≥ μ_true) has p̂ = 1 for any toys and is counted as covered
without running them. Coverage is P(covered) over the experiments, binomial error √(0.09 / N).
"""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

ALPHA = 0.1  # 90 % CL
#: truths of the shape parameters stay inside the ±2σ templates the response stage made: beyond them
#: the log_quartic extrapolation of this workspace explodes (test_extrapolation_stays_finite)
ALPHA_SPAN = 2.0
#: pseudo-experiments drawn and fitted together (one batched call per fit type)
PE_BLOCK = 64
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


def _experiments(m, fitter, seed: int, mu: float, alpha_span: float, js: np.ndarray):
    """Truths ``(n, n_par)`` (experiment j's from its own generator [seed, 12, j]) and the datasets
    (counts, aux) drawn at them by lzflow's toy sampler (seed (seed, 40, 0, "sb", j))."""
    from lzflow.stats.toys import ToySampler

    truths = np.array([_truth(m, np.random.default_rng([seed, 12, int(j)]), mu, alpha_span) for j in js])
    counts, aux = np.empty((js.size, m.n_bins)), np.empty((js.size, m.n_aux))
    for i, (j, truth) in enumerate(zip(js, truths)):
        sampler = ToySampler(fitter, truth, "counter")
        data, a = sampler.draw(seed, 40, 0, "sb", np.array([j]))
        counts[i], aux[i] = sampler.dense_counts(data)[0], a[0]
    return truths, counts, aux


def _block(m, fitter, seed: int, n_toys: int, mu: float, alpha_span: float, js: np.ndarray, failed: list) -> tuple:
    """One canonical block of experiments ``js``: their q̃_obs, and the rank k among n usable toys
    (k = n = n_toys without toys where q̃_obs = 0; −1 where the experiment is left out, appended to
    ``failed``). Every fit of the experiments' own data is one batched call over the block."""
    from lzflow.stats import run_toys, toy_quality
    from lzflow.stats.observed_batch import generation_points_many, observed_q_many
    from lzflow.stats.pvalues import Ensemble
    from lzflow.stats.request import ToyRequest

    truths, counts, aux = _experiments(m, fitter, seed, mu, alpha_span, js)
    obs = observed_q_many(m, counts, aux, mu)
    k, n = np.full(js.size, -1), np.full(js.size, -1)
    for i in np.flatnonzero(~np.isfinite(obs.q)):  # the experiment's own fit failed: no limit, counted apart
        failed.append({"index": int(js[i]), "truth": truths[i].tolist(), **obs.info(i)})
    k[obs.q <= 0.0] = n[obs.q <= 0.0] = n_toys  # μ̂ ≥ μ_true: every toy has q̃ ≥ 0 = q̃_obs, p̂ = 1
    ran = np.flatnonzero(np.isfinite(obs.q) & (obs.q > 0.0))
    gen = generation_points_many(m, mu, counts[ran], aux[ran])
    for g, i in enumerate(ran):
        j = int(js[i])
        try:
            r = run_toys(m, ToyRequest(base_seed=1_000_000 * seed + j, mass_key=40, poi_index=0, hypothesis="sb",
                                       mu=mu, toy_indices=np.arange(n_toys), block_size=n_toys,
                                       gen_params=gen.params[g], n_threads=1))
        except ValueError as err:  # no toys at this experiment's (μ, θ̂̂, α̂̂): no limit, counted apart
            failed.append({"index": j, "truth": truths[i].tolist(), "error": str(err),
                           "generation_point": gen.params[g].tolist(), "status": int(gen.status[g])})
            obs.q[i] = np.nan
            continue
        ens = Ensemble(r.q[:, 0], toy_quality(r, "qtilde")[:, 0] == 0)
        k[i], n[i] = int(ens.count(obs.q[i])), ens.n
    return obs.q, k, n


def coverage_run(n_pe: int, n_toys: int, seed: int, mu_factor: float = 1.0, interpolation: str = "log_quartic",
                 alpha_span: float = ALPHA_SPAN, first: int = 0) -> dict:
    """Run pseudo-experiments ``first`` … ``first + n_pe − 1`` (module docstring) in canonical
    blocks ``[b·PE_BLOCK, (b+1)·PE_BLOCK)`` (a whole block's results depend on nothing else: reruns
    of it are bit-identical); returns per experiment q̃_obs, the rank k and the usable toys n
    (experiments left out: q NaN, k = n = −1, listed in ``failed``), the coverage and its error
    over the others, wall and CPU seconds and the host load (1-min average) at the end."""
    from lzflow.stats.fit import BatchedFitter
    from lzflow.stats.fitresult import FitConfig

    if first % PE_BLOCK:
        raise ValueError(f"first: a multiple of PE_BLOCK = {PE_BLOCK} expected, got {first}")
    m = _model(interpolation)
    sampler_fitter = BatchedFitter(m, FitConfig(n_threads=1))
    js = np.arange(first, first + n_pe)
    failed: list = []
    t0, c0 = time.perf_counter(), time.process_time()
    parts = []
    with np.errstate(all="ignore"):  # overflow inside Newton steps that are then rejected
        for b0 in range(first, first + n_pe, PE_BLOCK):
            parts.append(_block(m, sampler_fitter, seed, n_toys, mu_factor, alpha_span,
                                js[(js >= b0) & (js < b0 + PE_BLOCK)], failed))
    q, k, n = (np.concatenate(x) for x in zip(*parts))
    used = k >= 0
    covered = k[used] > ALPHA * n[used]
    return {"index": js, "q_obs": q, "k": k, "n": n, "used": used, "coverage": float(covered.mean()),
            "err": float(np.sqrt(ALPHA * (1 - ALPHA) / used.sum())), "failed": failed, "interpolation": interpolation,
            "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, "load": os.getloadavg()[0]}


def _report(r: dict, n_toys: int) -> str:
    """One line: coverage, error, time, and the empirical P(p̂ ≤ a) at a few levels (uniform: a)."""
    used = r["used"]
    p = r["k"][used] / np.maximum(r["n"][used], 1)
    levels = " ".join(f"P(p<={a:g})={np.mean(p <= a):.4f}" for a in (0.05, 0.1, 0.2, 0.3))
    ran = used & (r["q_obs"] > 0)
    return (f"\nCLs+b coverage with 5 shape + 11 rate systematics ({r['interpolation']}, default 40 GeV workspace): "
            f"{r['coverage']:.4f} ± {r['err']:.4f} over {used.sum()} pseudo-experiments x {n_toys} toys "
            f"({len(r['failed'])} more left out: {r['failed']}), {ran.mean():.3f} with q>0, "
            f"toys excluded {(n_toys - r['n'][ran]).sum()} of {n_toys * ran.sum()} (max {(n_toys - r['n'][ran]).max(initial=0)} "
            f"in one experiment), {r['seconds']:.0f} s wall, {r['cpu_seconds']:.0f} s CPU, load {r['load']:.1f}; {levels}")


def _same_experiments(r: dict, again: dict) -> bool:
    """Whether ``again`` (a rerun of some of ``r``'s blocks) gave bit-identical q̃_obs, k and n."""
    pos = np.searchsorted(r["index"], again["index"])
    return all(np.array_equal(r[key][pos], again[key], equal_nan=True) for key in ("q_obs", "k", "n"))


def _few_left_out(r: dict, n_toys: int, share: float = 0.01) -> bool:
    """At most ``share`` of the experiments left out, and of the toys of those whose toys ran."""
    ran = r["used"] & (r["q_obs"] > 0)
    return len(r["failed"]) <= share * r["index"].size and (n_toys - r["n"][ran]).sum() <= share * n_toys * ran.sum()


def test_coverage_with_systematics_on_the_default_workspace_ci():
    """CI size (≈ 10 s): 128 pseudo-experiments x 19 toys (σ_cov ≈ 0.027), log_pchip (the
    systematics overlay's morphing); the limit must not under-cover by more than 2.5σ (over-coverage
    is allowed: CLs+b is one-sided); the second block rerun alone is bit-identical."""
    r = coverage_run(n_pe=2 * PE_BLOCK, n_toys=19, seed=1, interpolation="log_pchip")
    print(_report(r, 19))
    assert not r["failed"] and (r["n"] == 19).all()  # no failed fit, no toy excluded
    assert r["coverage"] >= 1 - ALPHA - 2.5 * r["err"]
    assert _same_experiments(r, coverage_run(n_pe=PE_BLOCK, n_toys=19, seed=1, interpolation="log_pchip",
                                             first=PE_BLOCK))


@pytest.mark.slow
@pytest.mark.parametrize("interpolation", ["log_pchip", "log_quartic"])
def test_coverage_over_1e4_pseudo_experiments(interpolation):
    """The issue's 10⁴: 157 blocks of 64 = 10 048 pseudo-experiments x 19 toys at μ_true = the
    median (σ_cov = 0.003); coverage within ±0.01 of 0.90, experiments left out and toys excluded
    ≤ 1 % each, one block in the middle rerun alone bit-identical. Measured (docs/method.md,
    "Coverage on the real default workspace"): log_pchip 0.9008 ± 0.0030, 339 s CPU; log_quartic
    0.8989 ± 0.0030, 437 s CPU; no experiment left out, 0 and 1 of ≈ 96 000 toys excluded."""
    n_pe = 157 * PE_BLOCK
    r = coverage_run(n_pe=n_pe, n_toys=19, seed=5, interpolation=interpolation)
    print(_report(r, 19))
    assert _few_left_out(r, 19)
    assert abs(r["coverage"] - (1 - ALPHA)) <= 0.01
    assert _same_experiments(r, coverage_run(n_pe=PE_BLOCK, n_toys=19, seed=5, interpolation=interpolation,
                                             first=78 * PE_BLOCK))


@pytest.mark.slow
@pytest.mark.parametrize("mu_factor, n_pe, seed", [(1.0, 600, 2), (0.5, 400, 4)])
def test_coverage_with_systematics_on_the_default_workspace_slow(mu_factor, n_pe, seed):
    """log_quartic with 99 toys. μ_true = the median: 600 pseudo-experiments (σ_cov ≈ 0.012),
    0.890 ± 0.012, none left out, no toy excluded, 256 s CPU (host load 2.4); μ_true = half the
    median: 400, 0.8975 ± 0.015, none left out, 169 s CPU. Before the batched fits and per-experiment
    truth streams (the same procedure, other draws): 0.906 ± 0.012 (2 experiments whose own fit
    failed left out) and 0.912 ± 0.015 (3 left out: two failed fits, and one whose conditional fit
    went to α_g1 = −3.8, α_g2 = −2.7, where the log_quartic extrapolation overflows and no toy can
    be drawn)."""
    r = coverage_run(n_pe=n_pe, n_toys=99, seed=seed, mu_factor=mu_factor)
    print(_report(r, 99))
    assert _few_left_out(r, 99)
    assert r["coverage"] >= 1 - ALPHA - 2.5 * r["err"]


@pytest.mark.slow
def test_coverage_log_pchip_half_median_truths_to_3_sigma():
    """log_pchip, μ_true = half the median, α truths drawn to ±3σ (beyond the ±2σ templates): 400 x 99;
    0.9075 ± 0.015, none left out, no toy excluded, 147 s CPU (host load 3)."""
    r = coverage_run(n_pe=400, n_toys=99, seed=4, mu_factor=0.5, interpolation="log_pchip", alpha_span=3.0)
    print(_report(r, 99))
    assert _few_left_out(r, 99)
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
