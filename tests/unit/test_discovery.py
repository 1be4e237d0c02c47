"""Discovery from toys (lzflow.stats.discovery): the importance-sampled background-only q0 tail
against the exact Poisson tail and plain toys, and the toy discovery potential against the
asymptotic one (high counts) and the exact Poisson answer (low counts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm, poisson

from lzflow.stats.discovery import discovery_from_toys, discovery_tail
from lzflow.stats.model import BinnedModel
from lzflow.stats.synthetic import simple_model


def one_bin(b: float) -> BinnedModel:
    """One bin, fixed background b (no nuisance): q0 is monotonic in n, its tail is Poisson."""
    return BinnedModel(np.array([1.0]), np.array([[b]]), ("bkg",), np.array([0.0]))


def exact_tail(b: float, z: float) -> float:
    """P(q0 ≥ z² | b) for one bin: q0(n) = 2(n ln(n/b) − (n − b)) for n > b."""
    n = np.arange(1, 400)
    q = np.where(n > b, 2 * (n * np.log(n / b) - (n - b)), 0.0)
    n_c = int(n[np.argmax(q >= z * z)])
    return float(poisson.sf(n_c - 1, b))


@pytest.mark.parametrize("z", [3.0, 5.0])
def test_importance_sampling_matches_exact_poisson_tail(z):
    te = discovery_tail(one_bin(10.0), 30000, base_seed=1, mass_key=40)
    t = te.tail_at(z)
    exact = exact_tail(10.0, z)  # 1.588e-3 (n ≥ 21) and 2.510e-7 (n ≥ 30)
    assert t["rel_err"] <= 0.10
    assert abs(t["p0"] - exact) <= 3 * t["p0_err"]
    assert abs(t["p0"] / exact - 1) <= 0.10


def test_importance_sampling_agrees_with_plain_toys_at_3_sigma_and_reaches_5_sigma():
    """Few bins, three backgrounds with 10 % Gaussian constraints (the tail is dominated by the
    auxiliary observables: the mixture components shift them too)."""
    m = simple_model(n_bins=8, n_bkg=3, background_events=200.0, signal_events=10.0, rel_unc=0.1)
    te = discovery_tail(m, 30000, base_seed=2, mass_key=40)
    plain = discovery_tail(m, 300000, base_seed=3, mass_key=40, components=(0.0,))
    assert plain.method == "plain toys" and te.method.startswith("importance sampling")
    i3, p3 = te.tail_at(3.0), plain.tail_at(3.0)
    assert i3["rel_err"] <= 0.10 and p3["rel_err"] <= 0.10
    assert abs(i3["p0"] - p3["p0"]) <= 3 * np.hypot(i3["p0_err"], p3["p0_err"])
    i5 = te.tail_at(5.0)
    assert i5["rel_err"] <= 0.10
    assert 0.3 * norm.sf(5) < i5["p0"] < 3 * norm.sf(5)
    assert plain.tail_at(5.0)["p0"] * plain.n < 5  # 3e5 plain toys hold (almost) none beyond 5σ
    json.dumps(te.as_dict())


def test_weights_are_unbiased_for_the_whole_distribution():
    """Σ w / N estimates P(q0 ≥ 0) = 1 and the weights are bounded by 1/f_0 (defensive mixture)."""
    te = discovery_tail(one_bin(10.0), 9000, base_seed=4, mass_key=1)
    p, e = te.pvalue(0.0)
    assert abs(p[0] - 1.0) <= 4 * e[0] + 1e-12
    assert te.weight.max() <= 3.0 + 1e-9


def test_toy_potential_agrees_with_asymptotic_at_high_counts():
    m = simple_model(n_bins=8, n_bkg=3, background_events=5000.0, signal_events=10.0, rel_unc=0.05)
    d = discovery_from_toys(m, n_toys_b=30000, n_toys_sb=4000, base_seed=5, mass_key=1, sigma_ref_cm2=1e-45)
    # measured: toys 16.97, asymptotic 16.96 (ratio 1.0007), ~170 signal events over 5000
    assert abs(d.mu_toys / d.mu_asymptotic - 1) <= 0.03
    out = d.as_dict()
    assert out["sigma_cm2_toys"] == pytest.approx(d.mu_toys * 1e-45)
    assert out["background_only"]["tails"][0]["rel_err"] <= 0.10


def test_toy_potential_follows_exact_poisson_at_low_counts():
    """One bin, b = 1: a 3σ discovery needs n ≥ 6 (P(n ≥ 6 | 1) = 5.9e-4), reached by the median
    of Pois(μ + 1) at μ = 4.67; the asymptotic formula says 4.28 (−8 %), toys follow the exact."""
    b = 1.0
    grid = np.linspace(1.0, 20.0, 39)
    d = discovery_from_toys(one_bin(b), n_toys_b=20000, n_toys_sb=4000, base_seed=5, mass_key=1, mu_grid=grid)
    n_star = next(n for n in range(1, 100) if poisson.sf(n - 1, b) <= norm.sf(3))
    mu_exact = brentq(lambda mu: poisson.cdf(n_star - 1, mu + b) - 0.5, 1e-6, 100)
    assert abs(d.mu_toys - mu_exact) <= grid[1] - grid[0]
    assert d.mu_asymptotic / mu_exact < 0.95


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="components"):
        discovery_tail(one_bin(1.0), 100, 1, 1, components=(3.0, 5.0))
    with pytest.raises(ValueError, match="mu_grid"):
        discovery_from_toys(one_bin(1.0), n_toys_b=30, n_toys_sb=10, base_seed=1, mass_key=1, mu_grid=[2.0, 1.0])


def test_same_seeds_same_numbers():
    m = simple_model(n_bins=5, n_bkg=2, background_events=50.0, signal_events=5.0, rel_unc=0.1)
    a = discovery_tail(m, 3000, base_seed=9, mass_key=2)
    b = discovery_tail(m, 3000, base_seed=9, mass_key=2)
    assert np.array_equal(a.q0, b.q0) and np.array_equal(a.weight, b.weight)
    c = discovery_tail(m, 3000, base_seed=10, mass_key=2)
    assert not np.array_equal(a.q0, c.q0)


def test_importance_sampling_with_template_mc_statistics_agrees_with_plain_toys():
    """With ``mc_stat`` γ bins the toys carry a_γ after a_θ (drawn at γ = 1 in every mixture
    component, so they cancel in the weights): the importance-sampled 3σ tail equals the plain
    toys' and the weights stay unbiased (Σ w / N estimates P(q0 ≥ 0) = 1)."""
    from dataclasses import replace

    m = simple_model(n_bins=8, n_bkg=3, background_events=200.0, signal_events=10.0, rel_unc=0.1)
    m = replace(m, mc_stat=np.full(8, 0.05))
    te = discovery_tail(m, 20000, base_seed=2, mass_key=40)
    plain = discovery_tail(m, 100000, base_seed=3, mass_key=40, components=(0.0,))
    i3, p3 = te.tail_at(3.0), plain.tail_at(3.0)
    assert i3["rel_err"] <= 0.10 and p3["rel_err"] <= 0.20
    assert abs(i3["p0"] - p3["p0"]) <= 3 * np.hypot(i3["p0_err"], p3["p0_err"])
    p, e = te.pvalue(0.0)
    assert abs(p[0] - 1.0) <= 4 * e[0] + 1e-12
