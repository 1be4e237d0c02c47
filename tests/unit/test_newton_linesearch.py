"""The interpolating line search of the shape fits (lzflow.stats.newton: _next_t, _backtrack)."""

from __future__ import annotations

import numpy as np

from lzflow.stats.fitresult import FitConfig
from lzflow.stats.newton import _backtrack, _next_t


def _quadratic(y: np.ndarray) -> np.ndarray:
    """f(y) = Σ (y − 1)² per row."""
    return np.sum((y - 1.0) ** 2, axis=1)


def test_next_t_is_the_parabola_minimum_within_a_tenth_and_a_half():
    # φ(t) = (10 t − 1)²: φ(0) = 1, φ'(0) = −20, φ(1) = 81 → minimum at t = 0.1 (exact for a parabola)
    y, d = np.zeros((1, 1)), np.full((1, 1), 10.0)
    g = 2.0 * (y - 1.0)
    t = _next_t(np.ones(1), _quadratic(y + d), _quadratic(y), g, d)
    assert t[0] == 0.1
    # a mild overshoot (d = 2.5: φ(1) = 2.25, minimum at t = 0.4) is taken as is
    d = np.full((1, 1), 2.5)
    np.testing.assert_allclose(_next_t(np.ones(1), _quadratic(y + d), _quadratic(y), g, d), [0.4], rtol=1e-15)
    # clipped to [t/10, t/2]: a barely failing step → t/2; a non-finite NLL → t/10
    d = np.full((1, 1), 1.9)
    assert _next_t(np.ones(1), _quadratic(y + d), _quadratic(y), g, d)[0] == 0.5
    assert _next_t(np.full(1, 0.5), np.array([np.inf]), _quadratic(y), g, d)[0] == 0.05


def test_interpolating_backtrack_needs_fewer_points_and_treats_rows_alone():
    cfg = FitConfig()
    y = np.zeros((3, 2))
    d = np.array([[10.0, 10.0], [1000.0, 1000.0], [3.0, 3.0]])
    g = 2.0 * (y - 1.0)
    f = _quadratic(y)
    dec = np.full(3, 4.0)

    def run(f_full):
        calls, got = [], {}

        def evaluate(c):
            calls.append(c.shape[0])
            return _quadratic(c)

        def accept(ok, c, f_c):
            for i in np.flatnonzero(ok):
                got[int(i)] = (c[i].copy(), float(f_c[i]), len(calls))

        _backtrack(y, d, g, f, dec, lambda x: x, cfg, evaluate, accept, f_full)
        return got, len(calls)

    halving, n_halving = run(None)
    interp, n_interp = run(_quadratic(y + d))
    assert sorted(interp) == [0, 1, 2] and sorted(halving) == [0, 1, 2]
    assert n_interp < n_halving
    # row 0: the parabola is exact → its minimum (y = 1) at the first try
    np.testing.assert_allclose(interp[0][0], [1.0, 1.0], rtol=0, atol=1e-15)
    assert interp[0][2] == 1
    for i in range(3):  # every accepted point decreases the NLL
        assert interp[i][1] < f[i]
    # a row's tries do not depend on the other rows
    got1 = {}
    _backtrack(y[1:2], d[1:2], g[1:2], f[1:2], dec[1:2], lambda x: x, cfg, _quadratic,
               lambda ok, c, f_c: got1.setdefault(0, c[0].copy()) if ok[0] else None, _quadratic(y[1:2] + d[1:2]))
    np.testing.assert_array_equal(got1[0], interp[1][0])
