"""Thread-level parallelism for the batched fitter.

numpy releases the GIL inside ufunc loops and BLAS calls, so two Python threads fitting two
blocks of toys keep two cores busy also in the element-wise parts (logs, divisions) that a
multi-threaded BLAS alone leaves single-threaded. While worker threads run, BLAS is limited to
one thread per call (otherwise the threads oversubscribe the cores); the previous setting is
restored afterwards.

The limit is set through `threadpoolctl <https://github.com/joblib/threadpoolctl>`_, which finds
every BLAS library loaded in the process (OpenBLAS, MKL, BLIS, FlexiBLAS; numpy's and scipy's
bundled copies alike) and calls its own thread-count API. ``threadpoolctl`` is imported on the
first :func:`blas_threads` call, not with this module (toy jobs import this module and start in
~0.4 s; the import costs ~4 ms, a limit/restore pair ~0.1 ms).
"""

from __future__ import annotations

import contextlib
import operator
import os
import threading
from typing import Iterator

__all__ = ["available_cores", "blas_threads"]

#: serialises setting and restoring the process-global BLAS thread counts
_LOCK = threading.Lock()


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit every loaded BLAS library to ``n`` threads inside the context, then restore each
    library's previous thread count (``threadpoolctl.threadpool_limits(n, user_api="blas")``).

    The thread counts are process-global: enter this in the thread that starts the workers. With
    no BLAS library loaded there is nothing to limit and nothing is changed."""
    try:
        k = operator.index(n)
    except TypeError:
        k = 0
    if k < 1:
        raise ValueError(f"blas_threads: n = {n!r}; expected an integer >= 1")
    from threadpoolctl import threadpool_limits

    with _LOCK:
        limiter = threadpool_limits(limits=k, user_api="blas")
    try:
        yield
    finally:
        with _LOCK:
            limiter.restore_original_limits()
