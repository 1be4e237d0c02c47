"""Re-blinding: the files of an unblinded run that a later blind run must not leave behind
(docs/data.md, "Running on data").

Switching ``blind: false`` back to ``true`` (or removing ``data:``) reruns the toys, merges, curve
and report on the Asimov dataset, and no rule of a blind analysis reads the data files. But the
unblinded run's own outputs would stay in the results tree, each holding observed numbers: the
binned event list and its events (:data:`lzflow.layout.OBSERVED_DATA`,
:data:`lzflow.observeddata.OBSERVED_EVENTS`), the global p-value (:data:`lzflow.layout.GLOBAL_PVALUE`),
every mass's goodness of fit (:data:`lzflow.layout.GOF`) and their logs (event counts, q₀) and
benchmarks. :func:`remove_stale_observed`, called by the workflow's ``onstart`` (never in a dry
run), removes them from a blind analysis's trees. An unblinded analysis without an events file
(``runs:``) drops a stale one.
"""

from __future__ import annotations

from pathlib import Path

from . import layout as L
from .observeddata import OBSERVED_EVENTS

__all__ = ["stale_observed_files", "remove_stale_observed"]


def _per_mass(root: Path, template: str) -> list[Path]:
    """Every existing file of a per-mass template below ``root`` (any mass label: also masses no
    longer configured)."""
    return sorted(root.glob(template.replace("{mass}", "*")))


def stale_observed_files(results: str | Path, logs: str | Path, benchmarks: str | Path, unblinded: bool,
                         events: bool) -> list[Path]:
    """The existing observed-data outputs that the analysis (``unblinded``; ``events``: it writes
    the events file, :data:`lzflow.observeddata.OBSERVED_EVENTS`) does not make (module docstring)."""
    results, logs, benchmarks = Path(results), Path(logs), Path(benchmarks)
    if unblinded:
        stale = [] if events else [results / OBSERVED_EVENTS]
    else:
        stale = [results / L.OBSERVED_DATA, results / OBSERVED_EVENTS, results / L.GLOBAL_PVALUE,
                 *_per_mass(results, L.GOF)]
        for root, names in ((logs, L.LOGS), (benchmarks, L.BENCHMARKS)):
            stale += [root / names["observed_data"], root / names["global_pvalue"], *_per_mass(root, names["gof"])]
    return [p for p in stale if p.is_file()]


def remove_stale_observed(results: str | Path, logs: str | Path, benchmarks: str | Path, unblinded: bool,
                          events: bool) -> list[Path]:
    """Remove :func:`stale_observed_files` (and the data directory when it is left empty); the
    removed paths, each also printed on one line."""
    removed = stale_observed_files(results, logs, benchmarks, unblinded, events)
    for path in removed:
        path.unlink()
        print(f"lzflow: blind analysis: removed {path} (made by an earlier run with blind: false)")
    data_dir = Path(results) / Path(L.OBSERVED_DATA).parent
    if not unblinded and data_dir.is_dir() and not any(data_dir.iterdir()):
        data_dir.rmdir()
    return removed
