"""lzflow.stats.observed_batch: many observed datasets fitted in one call give what the one-dataset
functions give (hypotest.observed_q, toys.generation_point), dataset by dataset."""

from __future__ import annotations

import numpy as np
import pytest

from lzflow.stats.fit import BatchedFitter
from lzflow.stats.fitresult import FitConfig, FitStatus
from lzflow.stats.hypotest import observed_q
from lzflow.stats.observed_batch import generation_points_many, observed_q_many
from lzflow.stats.synthetic import lz_like_model, lz_like_systematics_model
from lzflow.stats.toys import ToySampler, generation_point


def _datasets(m, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` toy datasets at a point away from nominal (μ = 1, θ = 1.05, α = 0.5)."""
    truth = m.full_params(1.0, np.r_[np.full(m.n_bkg, 1.05), np.full(m.n_shape, 0.5)])
    sampler = ToySampler(BatchedFitter(m, FitConfig(n_threads=1)), truth)
    data, aux = sampler.draw(seed, 40, 0, "sb", np.arange(n))
    return sampler.dense_counts(data), aux


@pytest.mark.parametrize("make", [lz_like_model, lz_like_systematics_model])
def test_batched_fits_match_the_one_dataset_functions(make):
    m = make()
    counts, aux = _datasets(m, 8, seed=3)
    mu = 1.3
    many = observed_q_many(m, counts, aux, mu)
    gens = generation_points_many(m, mu, counts, aux)
    assert (many.uncond.status == FitStatus.CONVERGED).all() and (gens.status == FitStatus.CONVERGED).all()
    assert (many.q > 0).sum() >= 2  # both branches of q̃ (μ̂ < μ and μ̂ ≥ μ) are compared
    for i in range(counts.shape[0]):
        q_one, info = observed_q(m, counts[i], aux[i], [mu])
        # the same minimisations; only the batch shape's floating-point details differ (tol 1e-9 on λ²)
        assert many.q[i] == pytest.approx(q_one[0], abs=1e-6)
        assert many.info(i)["mu_hat"] == pytest.approx(info["mu_hat"], rel=1e-4, abs=1e-6)
        gen_one, _ = generation_point(m, mu, (counts[i], aux[i]))
        np.testing.assert_allclose(gens.params[i], gen_one, rtol=1e-4, atol=1e-5)
        assert gens.params[i, 0] == mu


def test_batched_fits_are_bit_identical_for_the_same_batch():
    m = lz_like_systematics_model()
    counts, aux = _datasets(m, 6, seed=5)
    a, b = observed_q_many(m, counts, aux, 1.0), observed_q_many(m, counts, aux, 1.0)
    assert np.array_equal(a.q, b.q) and np.array_equal(a.cond.params, b.cond.params)


def test_q0_is_refused_with_one_line():
    m = lz_like_model()
    counts, aux = _datasets(m, 1, seed=1)
    with pytest.raises(ValueError, match="test_stat: .*'q0'"):
        observed_q_many(m, counts, aux, 1.0, test_stat="q0")
