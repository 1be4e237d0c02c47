"""lzflow.stats._threads: BLAS thread limits through threadpoolctl (every loaded BLAS, restored after)."""

from __future__ import annotations

import numpy as np
import pytest
import threadpoolctl

from lzflow.stats._threads import available_cores, blas_threads


def _blas_threads() -> dict[str, int]:
    return {d["filepath"]: d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"}


def test_limit_applied_to_every_blas_and_restored():
    import scipy.linalg  # noqa: F401  (loads scipy's own BLAS next to numpy's: two libraries to limit)

    libs = _blas_threads()
    if not libs:
        pytest.skip("no BLAS library loaded that threadpoolctl can control")
    # start from a known setting above 1, so that the limit and its restoration are both visible
    with threadpoolctl.threadpool_limits(limits=3, user_api="blas"):
        assert set(_blas_threads().values()) == {3}
        with blas_threads(1):
            assert _blas_threads() == {path: 1 for path in libs}
            a = np.arange(36.0).reshape(6, 6)
            np.testing.assert_array_equal(a @ np.eye(6), a)  # BLAS still works single-threaded
            with blas_threads(2):  # nested: inner limit, then back to the outer one
                assert set(_blas_threads().values()) == {2}
            assert set(_blas_threads().values()) == {1}
        assert _blas_threads() == {path: 3 for path in libs}
    assert _blas_threads() == libs


def test_restored_after_an_exception():
    before = _blas_threads()
    with pytest.raises(RuntimeError, match="boom"):
        with blas_threads(1):
            raise RuntimeError("boom")
    assert _blas_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1", None])
def test_bad_thread_count(bad):
    with pytest.raises(ValueError, match=r"blas_threads: n = .*expected an integer >= 1"):
        with blas_threads(bad):
            pass


def test_numpy_integer_accepted_and_cores_positive():
    with blas_threads(np.int64(1)):
        assert set(_blas_threads().values()) <= {1}
    assert 1 <= available_cores() <= (__import__("os").cpu_count() or 1)
