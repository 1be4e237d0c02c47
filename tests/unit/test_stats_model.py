"""BinnedModel validation, NLL conventions, fixed parameters."""

from __future__ import annotations

import numpy as np
import pytest

from lzflow.stats import BatchedFitter, BinnedModel, FitConfig, ModelError, fit_batch, generate_toys
from lzflow.stats.synthetic import lz_like_model, simple_model


def _arrays(n_bins=10, n_bkg=2):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, n_bins), rng.uniform(0, 5, (n_bkg, n_bins))


def test_validation_errors():
    s, b = _arrays()
    BinnedModel(s, b, ("a", "b"), np.array([0.1, 0.0]))
    with pytest.raises(ModelError, match="NaN"):
        BinnedModel(np.where(np.arange(10) == 3, np.nan, s), b, ("a", "b"), [0.1, 0.1])
    with pytest.raises(ModelError, match="negative"):
        BinnedModel(s, -b, ("a", "b"), [0.1, 0.1])
    with pytest.raises(ModelError, match="shape"):
        BinnedModel(s, b[:, :5], ("a", "b"), [0.1, 0.1])
    with pytest.raises(ModelError, match="names"):
        BinnedModel(s, b, ("a",), [0.1, 0.1])
    with pytest.raises(ModelError, match="unique"):
        BinnedModel(s, b, ("a", "a"), [0.1, 0.1])
    with pytest.raises(ModelError, match="rel_unc"):
        BinnedModel(s, b, ("a", "b"), [0.1])
    with pytest.raises(ModelError, match="negative"):
        BinnedModel(s, b, ("a", "b"), [0.1, -0.1])
    with pytest.raises(ModelError, match="infinite|NaN"):
        BinnedModel(s, b, ("a", "b"), [0.1, np.inf])


def test_2d_templates_flatten_c_order():
    s = np.arange(6.0).reshape(2, 3)
    b = np.ones((2, 3))
    m = BinnedModel.from_templates(s, [b], ["b"], [0.1])
    assert m.bin_shape == (2, 3)
    np.testing.assert_array_equal(m.signal, s.ravel())
    assert m.n_free_bkg == 1 and m.par_names == ("mu", "b")


def test_empty_signal_flag():
    s, b = _arrays()
    m = BinnedModel(np.zeros_like(s), b, ("a", "b"), [0.1, 0.1])
    assert m.signal_is_empty
    assert not BinnedModel(s, b, ("a", "b"), [0.1, 0.1]).signal_is_empty


def test_sigma_counts_pp_example():
    m = lz_like_model()
    i = m.names.index("pp_7Be")
    assert m.nominal_counts[i] == pytest.approx(542.16)
    assert m.sigma_counts[i] == pytest.approx(10.8432)


def test_fitter_nll_matches_reference_nll():
    m = simple_model(n_bins=30, n_bkg=3, background_events=50)
    c, a = generate_toys(m, m.full_params(1.0), np.arange(20), 3, 1, 0, "sb")
    r = fit_batch(m, c, a)
    ref = m.nll(r.params, c, a)
    np.testing.assert_allclose(r.nll, ref, rtol=1e-12, atol=1e-9)


def test_fixed_background_equals_tiny_width():
    """rel_unc = 0 (removed from the fit) ≡ a width of 1e-9 (constrained to nominal)."""
    base = lz_like_model()
    rel_fixed = base.rel_unc.copy()
    k = base.names.index("Pb214")
    rel_fixed[k] = 0.0
    rel_tiny = base.rel_unc.copy()
    rel_tiny[k] = 1e-9
    m_fixed, m_tiny = base.with_rel_unc(rel_fixed), base.with_rel_unc(rel_tiny)
    assert m_fixed.n_free_bkg == base.n_free_bkg - 1
    c, a = generate_toys(m_fixed, m_fixed.full_params(1.0), np.arange(64), 5, 1, 0, "sb")
    assert np.all(a[:, k] == 1.0)  # no aux for a fixed background
    out = {}
    for label, m in (("fixed", m_fixed), ("tiny", m_tiny)):
        f = BatchedFitter(m, FitConfig(n_threads=1))
        ru = f.fit(c, a)
        rc = f.fit(c, a, mu_fixed=1.5, init=ru.params)
        assert ru.converged.all() and rc.converged.all()
        out[label] = (ru, rc)
    (ruf, rcf), (rut, rct) = out["fixed"], out["tiny"]
    np.testing.assert_allclose(ruf.params, rut.params, atol=1e-6)
    np.testing.assert_allclose(rcf.params, rct.params, atol=1e-6)
    q_f = 2 * (rcf.nll - ruf.nll)
    q_t = 2 * (rct.nll - rut.nll)
    np.testing.assert_allclose(q_f, q_t, atol=1e-6)
    np.testing.assert_allclose(ruf.params[:, 1 + k], 1.0)
