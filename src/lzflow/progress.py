"""Progress bars for long local steps, shown only where someone is watching.

A bar (tqdm) is drawn on stderr when stderr is a terminal, and never in batch logs: Snakemake rules
redirect every job's output to its log file, and cluster jobs write to files, so their logs stay
free of carriage-return noise. ``LZFLOW_PROGRESS=1`` forces bars on (e.g. under ``tail -f``),
``LZFLOW_PROGRESS=0`` forces them off.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable, TextIO

__all__ = ["show_progress", "progress"]


def show_progress(stream: TextIO | None = None) -> bool:
    """Whether to draw bars: ``LZFLOW_PROGRESS`` if set to 0/1, else whether ``stream`` is a tty."""
    forced = os.environ.get("LZFLOW_PROGRESS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it") -> Any:
    """A tqdm bar over ``iterable`` on stderr, disabled unless :func:`show_progress`."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=not show_progress(),
                leave=False, dynamic_ncols=True, mininterval=0.5)
