"""Toy ensembles spread over worker processes, bit-identical to one process.

The canonical blocks of a request (:func:`lzflow.stats.toys.run_toys`) are split into ``n_procs``
groups of whole blocks; each group runs in a worker of a cached ``spawn`` process pool (kept for
later calls) as a single-threaded, single-process request with the generation point and tested
values already fixed, and the records are reassembled in the requested order. Every toy goes
through the same floating-point operations as in one process, so the records are identical.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields, replace
from typing import Any, Callable

import numpy as np

from .request import ToyRequest
from .toyresult import ToyResult

__all__ = ["process_pool", "run_in_processes"]

_POOLS: dict[int, ProcessPoolExecutor] = {}


def process_pool(n: int) -> ProcessPoolExecutor:
    """A cached ``spawn`` process pool with ``n`` workers."""
    if n not in _POOLS:
        _POOLS[n] = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))
    return _POOLS[n]


def run_in_processes(run: Callable[[Any, ToyRequest], ToyResult], model: Any, request: ToyRequest,
                     gen_params: np.ndarray) -> ToyResult:
    """``run(model, part)`` for ``request.n_procs`` parts of whole canonical blocks of ``request``,
    each generated at ``gen_params`` in one worker process; the records in the requested order.
    ``run`` must be picklable (a module-level function)."""
    indices = request.toy_indices
    blocks = indices // request.block_size
    groups = [g for g in np.array_split(np.unique(blocks), request.n_procs) if g.size]
    rows_of = [np.flatnonzero(np.isin(blocks, g)) for g in groups]
    parts = [replace(request, toy_indices=indices[rows], gen_params=gen_params, n_threads=1, n_procs=1)
             for rows in rows_of]
    results = list(process_pool(request.n_procs).map(run, [model] * len(parts), parts))
    first = results[0]
    kw = {f.name: getattr(first, f.name) for f in fields(ToyResult)}
    for name in ToyResult.PER_TOY + ToyResult.PER_TOY_SHAPE:
        array = getattr(first, name)
        out = np.empty((indices.size,) + array.shape[1:], dtype=array.dtype)
        for rows, result in zip(rows_of, results):
            out[rows] = getattr(result, name)
        kw[name] = out
    return ToyResult(**kw)
