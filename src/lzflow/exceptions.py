"""User-facing errors: each is one line naming the key (or file), the value and what was expected.

The console script prints them as ``lzflow: config error: <message>`` (configuration, before any
job runs) or ``lzflow: error: <message>`` (a stage's inputs) and exits with status 2; they never
reach the user as a traceback.
"""

from __future__ import annotations

import difflib
from typing import Iterable

__all__ = ["ConfigError", "UnitError", "DetectorError", "WorkspaceError", "ToyFileError", "CorruptToyFile",
           "MergeError", "OutputError", "DataError", "USER_ERRORS", "one_line", "unknown_key_message"]


class ConfigError(ValueError):
    """A user mistake in a configuration file: one line naming key, value and expectation."""


class DataError(ValueError):
    """An event list (or a request for a pseudo-dataset) is unusable: one line naming the file,
    the column, the value and what was expected (:mod:`lzflow.eventlist`, :mod:`lzflow.simulate`)."""


class UnitError(ValueError):
    """A value has no unit, an unknown unit, or a unit of the wrong dimension (:mod:`lzflow.units`)."""


class DetectorError(ValueError):
    """A detector description is inconsistent or incomplete (:mod:`lzflow.detector`)."""


class WorkspaceError(ValueError):
    """Inputs of a workspace are missing, inconsistent or unphysical (:mod:`lzflow.workspace`)."""


class ToyFileError(ValueError):
    """A toy file is missing, corrupt or inconsistent with the others (:mod:`lzflow.toyjobs`)."""


class CorruptToyFile(ToyFileError):
    """One toy file cannot be used as it is: unreadable, incomplete, edited, or not the file its
    name says. ``lzflow merge`` moves it aside (:func:`lzflow.toyjobs.quarantine`) so the next run
    makes it again."""

    def __init__(self, path: object, what: str):
        super().__init__(f"corrupt toy file {path}: {what}")
        self.path, self.what = str(path), what


class MergeError(ValueError):
    """The set of toy files of a mass is inconsistent (:mod:`lzflow.merge`)."""


class OutputError(OSError):
    """An output cannot be written (disk full, read-only file system, no permission): one line
    naming the file and the reason. Nothing half-written is left behind (:mod:`lzflow.io`)."""

    def __str__(self) -> str:
        return str(self.strerror)


#: what the console script reports as one line (``lzflow: error: …``, exit status 2), never a traceback
USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, UnitError, DetectorError, WorkspaceError, ToyFileError,
                                            MergeError, OutputError, DataError, FileNotFoundError)


def one_line(message: object) -> str:
    """``message`` as a single line (newlines and runs of blanks folded to one space)."""
    return " ".join(str(message).split())


def unknown_key_message(where: str, key: object, allowed: Iterable[str], hint: dict[str, str] | None = None) -> str:
    """``<where>.<key>: unknown key; did you mean <x>? expected one of …``.

    ``hint`` maps keys that belong elsewhere to where they belong (e.g. a NEST parameter written
    at the top of ``detector_overrides`` → ``nest.<key>``); otherwise the suggestion is the
    closest allowed key by spelling (:func:`difflib.get_close_matches`), if any is close.
    """
    allowed = sorted(str(a) for a in allowed)
    name = f"{where}.{key}" if where else str(key)
    suggestion = (hint or {}).get(str(key))
    if suggestion is None:
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        suggestion = close[0] if close else None
    did_you_mean = f"did you mean {suggestion}? " if suggestion else ""
    expected = f"expected one of {', '.join(allowed)}" if allowed else "no keys are allowed here"
    return f"{name}: unknown key; {did_you_mean}{expected}"
