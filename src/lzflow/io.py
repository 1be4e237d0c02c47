"""Atomic output: nothing half-written is ever left where a valid output is expected.

Each writer writes to a temporary file in the destination directory, flushes and fsyncs it, then
``os.replace``s it onto the final name (atomic on POSIX within one filesystem). A crash leaves at
most a ``.tmp`` file that no stage reads.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .exceptions import OutputError

__all__ = ["atomic_path", "write_json", "read_json", "write_csv"]


#: errno values that mean "this output cannot be written here", reported as one line
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``, else delete it.

    A full disk, a read-only file system or a missing permission raises
    :class:`~lzflow.exceptions.OutputError` naming ``path`` (one line, no traceback)."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{suffix}.tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are shared like any other file
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
            raise OutputError(err.errno, f"cannot write {path}: {err.strerror}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented, key-sorted JSON atomically (numpy values converted)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=_to_jsonable, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def read_json(path: str | Path) -> Any:
    """Read JSON; a corrupt file raises ValueError naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt JSON ({err.msg} at line {err.lineno})") from None


def write_csv(path: str | Path, rows: Any, columns: list[str]) -> None:
    """Write ``rows`` (mappings) as CSV with the given columns, ``None`` as an empty cell, atomically."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
