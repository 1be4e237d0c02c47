"""Thread-level parallelism for the batched fitter.

numpy releases the GIL inside ufunc loops and BLAS calls, so two Python threads fitting two
blocks of toys keep two cores busy also in the element-wise parts (logs, divisions) that a
multi-threaded BLAS alone leaves single-threaded. While worker threads run, BLAS is limited to
one thread per call (otherwise the threads oversubscribe the cores); the previous setting is
restored afterwards. The BLAS thread count is changed through OpenBLAS' C API found via
ctypes — numpy's wheels bundle ``scipy_openblas`` — and is a no-op when that is not available.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading
from typing import Iterator

import numpy as np

__all__ = ["available_cores", "blas_threads"]

_LOCK = threading.Lock()
_LIB: tuple | None = None


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _openblas() -> tuple | None:
    global _LIB
    if _LIB is not None:
        return _LIB or None
    found: tuple = ()
    base = os.path.dirname(os.path.dirname(np.__file__))
    candidates = glob.glob(os.path.join(base, "numpy.libs", "*openblas*")) + glob.glob(
        os.path.join(os.path.dirname(np.__file__), ".libs", "*openblas*")
    )
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for setter, getter in (
            ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("openblas_set_num_threads", "openblas_get_num_threads"),
        ):
            if hasattr(lib, setter) and hasattr(lib, getter):
                found = (getattr(lib, setter), getattr(lib, getter))
                break
        if found:
            break
    _LIB = found
    return found or None


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Temporarily set the number of OpenBLAS threads (no-op if OpenBLAS is not found)."""
    lib = _openblas()
    if lib is None:
        yield
        return
    setter, getter = lib
    with _LOCK:
        old = int(getter())
        setter(int(n))
    try:
        yield
    finally:
        with _LOCK:
            setter(old)
