"""Event lists: (cS1, cS2) per event from CSV, Parquet or a ROOT TTree, checked, and placed in a
workspace's analysis window (docs/data.md).

Columns and units
-----------------
One file holds the events of one science run. Two quantities are read per event, each from one
column whose name is configurable (``columns={"cS1": ..., "cS2": ...}``, default ``cS1``, ``cS2``):

* ``cS1``: the corrected S1 area in phd (photons detected);
* ``cS2``: the corrected S2 area in phd, not its logarithm (log10 cS2 is computed here).

Every column's unit must be declared, in the file or by the caller (``units={"cS1": "phd", ...}``
for files that carry none); both ways must agree, and any unit other than ``phd`` is refused (phe
differ from phd by the double-photoelectron fraction: convert first). A file declares units as:

* CSV: the header cell ``name[unit]``, e.g. ``cS1[phd],cS2[phd]``; lines starting with ``#``
  before the header are comments, blank lines are skipped;
* Parquet: the Arrow field metadata ``unit`` of the column (``pyarrow.field("cS1", pa.float64(),
  metadata={"unit": "phd"})``);
* ROOT: ``name[unit]`` tokens in the TTree's title, e.g. ``"cS1[phd] cS2[phd]"`` (uproot writes the
  branch titles itself, so the tree title carries them); the tree is named ``events`` unless told.

Values must be finite and ≥ 0 (cS2 = 0 is allowed: it lies below the window). Other columns are
not read. Each refusal is one line naming the file, the column, the value and what was expected
(:class:`DataError`).

Analysis window
---------------
The window is the workspace's grid (``ws["axes"]``): ``x_0 ≤ cS1 < x_n`` and ``y_0 ≤ log10 cS2 <
y_m`` (half-open, as the ROI of :class:`lzflow.space.AnalysisSpace` that the templates were made
with). An event outside is counted under every reason it fails (``cS1_below``, ``cS1_above``,
``log10cS2_below``, ``log10cS2_above``), ``n_outside`` counts each such event once, and
``n_total = n_inside + n_outside`` always: nothing is dropped without being counted. Inside, an
event's bin along each axis is ``searchsorted(edges, v, "right") − 1`` on the workspace's own
edges; counts are ``(n_cS1, n_log10cS2)``, flattened in C order for the binned likelihood
(:class:`lzflow.stats.model.BinnedModel`), and the in-window events are the unbinned likelihood's
``(x, y) = (cS1, log10 cS2)`` (:class:`lzflow.stats.unbinned_model.EventToys`).

The other ROI cuts (S1 coincidence, raw S2 threshold, fiducial volume) act on quantities an event
list does not carry: the list is expected to have passed them, as the templates assume.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from . import __version__
from .exceptions import DataError
from .io import atomic_path

__all__ = ["DataError", "QUANTITIES", "UNIT", "DEFAULT_TREE", "FORMATS", "OUTSIDE_REASONS", "EventList",
           "AnalysisWindow", "ObservedEvents", "event_format", "read_events", "select_window", "load_events",
           "write_events", "parse_pairs", "check_columns"]

#: the quantities read per event, in this order
QUANTITIES: tuple[str, ...] = ("cS1", "cS2")
#: the only unit accepted for both
UNIT = "phd"
DEFAULT_TREE = "events"
#: file suffix → format
FORMATS: dict[str, str] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".root": "root"}
#: why an event lies outside the window (an event can fail several)
OUTSIDE_REASONS: tuple[str, ...] = ("cS1_below", "cS1_above", "log10cS2_below", "log10cS2_above")

_UNIT_HINT = {"csv": "a header cell 'NAME[phd]'", "parquet": "the field metadata unit: phd",
              "root": "a token 'NAME[phd]' in the TTree title"}
_NAME_UNIT = re.compile(r"^\s*(.*?)\s*\[\s*([^\]]*?)\s*\]\s*$")
_TITLE_TOKEN = re.compile(r"([^\s\[\]]+)\[\s*([^\]]*?)\s*\]")


# DataError (an unusable event list or pseudo-data request) is one of lzflow.exceptions.USER_ERRORS:
# the console script prints it as one line with exit status 2


# ----------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class EventList:
    """The events of one file: ``cs1``, ``cs2`` in phd (float64, file order), checked."""

    cs1: np.ndarray
    cs2: np.ndarray
    path: str
    fmt: str
    run: str | None = None

    def __len__(self) -> int:
        return int(self.cs1.size)


def event_format(path: str | Path, fmt: str | None = None) -> str:
    """``csv``, ``parquet`` or ``root``: ``fmt`` if given, else from the file's suffix."""
    if fmt is not None:
        if fmt not in set(FORMATS.values()):
            raise DataError(f"format {fmt!r}: expected one of csv, parquet, root")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: suffix {suffix!r} names no event-list format; expected one of "
                        f"{', '.join(FORMATS)} (or give the format)")
    return FORMATS[suffix]


def parse_pairs(what: str, pairs: Mapping[str, str] | list[str] | None) -> dict[str, str]:
    """``{quantity: value}`` from a mapping or ``["cS1=s1c", ...]``; keys must be quantities."""
    if pairs is None:
        return {}
    if not isinstance(pairs, Mapping):
        out = {}
        for item in pairs:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip() or not value.strip():
                raise DataError(f"{what}: {item!r} is not QUANTITY=VALUE; expected e.g. cS1=s1c")
            out[key.strip()] = value.strip()
        pairs = out
    unknown = sorted(set(pairs) - set(QUANTITIES))
    if unknown:
        raise DataError(f"{what}.{unknown[0]}: unknown quantity; expected one of {', '.join(QUANTITIES)}")
    return {str(k): str(v) for k, v in pairs.items()}


def read_events(path: str | Path, *, columns: Mapping[str, str] | None = None,
                units: Mapping[str, str] | None = None, tree: str = DEFAULT_TREE, fmt: str | None = None,
                run: str | None = None) -> EventList:
    """Read and check the events of one file (module docstring: columns, units, values).

    ``columns``: quantity → column name (default the quantity's name); ``units``: quantity → unit,
    for files that declare none; ``tree``: the TTree of a ROOT file; ``fmt``: the format if the
    suffix does not say it; ``run``: a label carried along."""
    fmt = event_format(path, fmt)
    if not Path(path).is_file():
        raise DataError(f"{path}: no such event-list file")
    chosen = parse_pairs("columns", columns)
    names = {q: chosen.get(q, q) for q in QUANTITIES}
    given = parse_pairs("units", units)
    if len(set(names.values())) != len(names):
        raise DataError(f"columns: cS1 and cS2 both read column {names['cS1']!r}; expected two columns")
    reader = {"csv": _read_csv, "parquet": _read_parquet, "root": _read_root}[fmt]
    values, declared, where = reader(Path(path), list(names.values()), tree)
    out = {}
    for q, name in names.items():
        _check_unit(path, fmt, q, name, declared.get(name), given.get(q))
        out[q] = _check_values(path, q, name, np.asarray(values[name], dtype=np.float64), where)
    return EventList(out["cS1"], out["cS2"], str(path), fmt, run)


def _missing(path: Path, name: str, available: list[str], where: str = "") -> DataError:
    return DataError(f"{path}{where}: column {name!r} not found; columns there: {', '.join(available) or 'none'}")


def _read_csv(path: Path, names: list[str], tree: str):
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle)
        header, parsed = _csv_header(path, rows, names)
        columns = [name for name, _ in parsed]
        index = {name: columns.index(name) for name in names}
        values: dict[str, list[float]] = {name: [] for name in names}
        lines: list[int] = []
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path} line {rows.line_num}: {len(row)} fields; expected {len(header)} as in the header")
            for name in names:
                cell = row[index[name]]
                try:
                    values[name].append(float(cell))
                except ValueError:
                    raise DataError(f"{path} line {rows.line_num}: column {name!r} = {cell!r} is not a number; "
                                    f"expected a value in phd") from None
            lines.append(rows.line_num)
    return values, dict(parsed), lambda k: f"line {lines[k]}"


def _csv_header(path: Path, rows: Any, names: list[str]) -> tuple[list[str], list[tuple[str, str | None]]]:
    """The header line (after ``#`` comments and blank lines) and its (name, unit) cells; every
    column of ``names`` there, none repeated."""
    header: list[str] | None = None
    for row in rows:
        if (row and row[0].lstrip().startswith("#")) or not any(cell.strip() for cell in row):
            continue
        header = row
        break
    if header is None:
        raise DataError(f"{path}: no header line; expected e.g. 'cS1[phd],cS2[phd]'")
    parsed = []
    for cell in header:
        m = _NAME_UNIT.match(cell)
        parsed.append((m.group(1), m.group(2)) if m else (cell.strip(), None))
    columns = [name for name, _ in parsed]
    for name in set(columns):
        if columns.count(name) > 1:
            raise DataError(f"{path}: column {name!r} appears {columns.count(name)} times in the header")
    for name in names:
        if name not in columns:
            raise _missing(path, name, columns)
    return header, parsed


def check_columns(path: str | Path, *, columns: Mapping[str, str] | None = None,
                  units: Mapping[str, str] | None = None, tree: str = DEFAULT_TREE, fmt: str | None = None) -> None:
    """Check an event list without reading one event: the file exists, and its header (CSV), schema
    (Parquet) or TTree and branch names and title (ROOT) have the columns with agreeing phd units
    (:func:`read_events`'s checks that need no value). A blind analysis may run it: column names
    and units reveal no observed quantity, and no row is counted."""
    fmt = event_format(path, fmt)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such event-list file")
    chosen = parse_pairs("columns", columns)
    names = {q: chosen.get(q, q) for q in QUANTITIES}
    if fmt == "csv":
        import csv

        with open(path, newline="", encoding="utf-8") as handle:
            declared = dict(_csv_header(path, csv.reader(handle), list(names.values()))[1])
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"{path}: not a readable Parquet file ({' '.join(str(err).split())})") from None
        for name in names.values():
            if schema.get_field_index(name) < 0:
                raise _missing(path, name, schema.names)
        metas = {n: schema.field(n).metadata or {} for n in names.values()}
        declared = {n: m[b"unit"].decode() if b"unit" in m else None for n, m in metas.items()}
    else:
        import uproot

        try:
            handle = uproot.open(path)
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: not a readable ROOT file ({' '.join(str(err).split())})") from None
        with handle:
            trees = sorted({k.split(";")[0] for k, c in handle.classnames().items() if c.startswith("TTree")})
            if tree not in trees:
                raise DataError(f"{path}: no TTree {tree!r}; TTrees there: {', '.join(trees) or 'none'}")
            ttree = handle[tree]
            for name in names.values():
                if name not in ttree.keys():
                    raise _missing(path, name, list(ttree.keys()), f" TTree {tree!r}")
            declared = {m.group(1): m.group(2) for m in _TITLE_TOKEN.finditer(ttree.title or "")}
    given = parse_pairs("units", units)
    for q, name in names.items():
        _check_unit(path, fmt, q, name, declared.get(name), given.get(q))


def _read_parquet(path: Path, names: list[str], tree: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: not a readable Parquet file ({' '.join(str(err).split())})") from None
    for name in names:
        if schema.get_field_index(name) < 0:
            raise _missing(path, name, schema.names)
    table = pq.read_table(path, columns=names)
    values, declared = {}, {}
    for name in names:
        f = schema.field(name)
        if not (pa.types.is_floating(f.type) or pa.types.is_integer(f.type)):
            raise DataError(f"{path}: column {name!r} has type {f.type}; expected numbers (float or integer)")
        column = table.column(name)
        if column.null_count:
            raise DataError(f"{path}: column {name!r} has {column.null_count} null value(s); expected a value in phd "
                            f"for every event")
        values[name] = column.to_numpy()
        meta = f.metadata or {}
        declared[name] = meta[b"unit"].decode() if b"unit" in meta else None
    return values, declared, lambda k: f"row {k}"


def _read_root(path: Path, names: list[str], tree: str):
    import uproot

    try:
        handle = uproot.open(path)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable ROOT file ({' '.join(str(err).split())})") from None
    with handle:
        trees = sorted({k.split(";")[0] for k, c in handle.classnames().items() if c.startswith("TTree")})
        if tree not in trees:
            raise DataError(f"{path}: no TTree {tree!r}; TTrees there: {', '.join(trees) or 'none'}")
        ttree = handle[tree]
        for name in names:
            if name not in ttree.keys():
                raise _missing(path, name, list(ttree.keys()), f" TTree {tree!r}")
        values = {}
        for name in names:
            array = ttree[name].array(library="np")
            if array.ndim != 1 or array.dtype.kind not in "iuf":
                raise DataError(f"{path}: branch {name!r} holds {ttree[name].typename}; expected one number per event")
            values[name] = array
        declared = {m.group(1): m.group(2) for m in _TITLE_TOKEN.finditer(ttree.title or "")}
    return values, declared, lambda k: f"entry {k}"


def _check_unit(path: Any, fmt: str, quantity: str, column: str, declared: str | None, given: str | None) -> None:
    if declared is None and given is None:
        raise DataError(f"{path}: column {column!r} ({quantity}) declares no unit; expected {_UNIT_HINT[fmt]} "
                        f"or units {quantity}={UNIT}")
    if declared is not None and given is not None and declared.strip().lower() != given.strip().lower():
        raise DataError(f"{path}: column {column!r} ({quantity}) declares unit {declared!r} but units.{quantity} = "
                        f"{given!r}; expected them to agree")
    unit = declared if declared is not None else given
    if unit.strip().lower() != UNIT:
        raise DataError(f"{path}: column {column!r} ({quantity}) has unit {unit!r}; expected {UNIT} (photons "
                        f"detected; phe differ by the double-photoelectron fraction: convert first)")


def _check_values(path: Any, quantity: str, column: str, values: np.ndarray, where: Callable[[int], str]
                  ) -> np.ndarray:
    for bad, what in ((~np.isfinite(values), "non-finite"), (values < 0, "negative")):
        if bad.any():
            k = int(np.argmax(bad))
            raise DataError(f"{path}: column {column!r} ({quantity}) has {int(bad.sum())} {what} value(s), first at "
                            f"{where(k)}: {float(values[k])!r}; expected finite values >= 0 in {UNIT}")
    return values


# ----------------------------------------------------------------------------- the window
@dataclass(frozen=True)
class AnalysisWindow:
    """The workspace's (cS1 [phd], log10 cS2 [log10 phd]) grid: bin edges along each axis."""

    cs1_edges: np.ndarray
    log10cs2_edges: np.ndarray

    def __post_init__(self) -> None:
        for name, edges in (("cS1", self.cs1_edges), ("log10cS2", self.log10cs2_edges)):
            e = np.asarray(edges, dtype=np.float64)
            if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
                raise DataError(f"window {name} edges: expected >= 2 finite, increasing values, got {e.tolist()}")

    @classmethod
    def from_workspace(cls, ws: Mapping[str, Any]) -> "AnalysisWindow":
        """From ``ws["axes"]`` (:func:`lzflow.workspace.build_workspace`): cS1 [phd], log10cS2."""
        if ws.get("runs"):  # lzflow.combinecli: a product over runs, each on its own grid
            names = [r.get("name") for r in ws["runs"]]
            raise DataError(f"workspace: a combination of runs {names}; expected one run's workspace (an event list "
                            f"is one run's: results/<tag>/runs/<run>/m<mass>/workspace.json)")
        axes = ws.get("axes") or []
        got = [(a.get("name"), a.get("unit")) for a in axes]
        if got != [("cS1", "phd"), ("log10cS2", "log10(phd)")]:
            raise DataError(f"workspace axes {got}: expected [('cS1', 'phd'), ('log10cS2', 'log10(phd)')]")
        return cls(np.asarray(axes[0]["edges"], dtype=np.float64), np.asarray(axes[1]["edges"], dtype=np.float64))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.cs1_edges.size - 1, self.log10cs2_edges.size - 1)

    def reasons(self, cs1: np.ndarray, log10cs2: np.ndarray) -> dict[str, np.ndarray]:
        """Per reason of :data:`OUTSIDE_REASONS`, which events fail it (half-open window)."""
        x, y = self.cs1_edges, self.log10cs2_edges
        return {"cS1_below": cs1 < x[0], "cS1_above": cs1 >= x[-1],
                "log10cS2_below": log10cs2 < y[0], "log10cS2_above": log10cs2 >= y[-1]}

    def bins(self, cs1: np.ndarray, log10cs2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bin indices of in-window events along each axis (the workspace's own edges)."""
        return (np.searchsorted(self.cs1_edges, cs1, side="right") - 1,
                np.searchsorted(self.log10cs2_edges, log10cs2, side="right") - 1)


def log10_cs2(cs2: np.ndarray) -> np.ndarray:
    """log10 cS2 (cS2 = 0 → −inf, below any window)."""
    with np.errstate(divide="ignore"):
        return np.log10(np.asarray(cs2, dtype=np.float64))


@dataclass(frozen=True)
class ObservedEvents:
    """An event list placed in the window: binned counts, in-window events, outside accounting.

    counts: ``(n_cS1, n_log10cS2)`` int64 on the workspace grid; cs1, log10cs2: the in-window
    events (file order); outside: events failing each reason of :data:`OUTSIDE_REASONS` (an event
    can fail two); n_outside: events outside, each once; ``n_total = n_inside + n_outside``.
    """

    counts: np.ndarray
    cs1: np.ndarray
    log10cs2: np.ndarray
    outside: Mapping[str, int]
    n_total: int
    n_outside: int
    window: AnalysisWindow
    path: str = ""
    fmt: str = ""
    run: str | None = None

    @property
    def n_inside(self) -> int:
        return int(self.cs1.size)

    def flat_counts(self) -> np.ndarray:
        """Counts as the binned likelihood takes them: float64, flattened in C order."""
        return self.counts.astype(np.float64).ravel()

    def event_toys(self, aux: np.ndarray):
        """The in-window events as one :class:`lzflow.stats.unbinned_model.EventToys` for the
        unbinned fitter, with the auxiliary observables ``aux`` (``(n_aux,)``; the observed data's
        are the nominal values, ``BinnedModel.nominal_nuisance()``)."""
        from .stats.unbinned_model import EventToys

        return EventToys.from_lists([self.cs1], [self.log10cs2], np.asarray(aux, dtype=np.float64)[None, :])

    def report(self) -> dict[str, Any]:
        """The accounting as a JSON-able dict (no per-bin numbers)."""
        x, y = self.window.cs1_edges, self.window.log10cs2_edges
        return {"file": self.path, "format": self.fmt, "run": self.run, "n_total": self.n_total,
                "n_inside": self.n_inside, "n_outside": self.n_outside,
                "outside_by_reason": {r: int(self.outside[r]) for r in OUTSIDE_REASONS},
                "window": {"cS1_phd": [float(x[0]), float(x[-1])], "log10cS2": [float(y[0]), float(y[-1])],
                           "convention": "half-open: min <= value < max"}}

    def summary_line(self) -> str:
        reasons = ", ".join(f"{r} {self.outside[r]}" for r in OUTSIDE_REASONS if self.outside[r])
        return (f"{self.path}: {self.n_total} events, {self.n_inside} in the window, {self.n_outside} outside"
                + (f" ({reasons})" if reasons else ""))


def select_window(events: EventList, window: AnalysisWindow) -> ObservedEvents:
    """Place ``events`` in ``window``: binned counts, in-window events and the outside accounting
    (module docstring)."""
    y = log10_cs2(events.cs2)
    reasons = window.reasons(events.cs1, y)
    out = np.zeros(events.cs1.shape, dtype=bool)
    for mask in reasons.values():
        out |= mask
    inside = ~out
    cs1, ly = events.cs1[inside], y[inside]
    ix, iy = window.bins(cs1, ly)
    nx, ny = window.shape
    counts = np.bincount(ix * ny + iy, minlength=nx * ny).astype(np.int64).reshape(nx, ny)
    return ObservedEvents(counts, cs1, ly, {r: int(m.sum()) for r, m in reasons.items()}, len(events),
                          int(out.sum()), window, events.path, events.fmt, events.run)


def load_events(path: str | Path, ws: Mapping[str, Any], **read_options: Any) -> ObservedEvents:
    """:func:`read_events` then :func:`select_window` on the workspace's grid."""
    return select_window(read_events(path, **read_options), AnalysisWindow.from_workspace(ws))


# ----------------------------------------------------------------------------- writing
def write_events(path: str | Path, cs1: np.ndarray, cs2: np.ndarray, *, fmt: str | None = None,
                 provenance: Mapping[str, Any] | None = None, tree: str = DEFAULT_TREE) -> str:
    """Write events (cS1, cS2 in phd) in the module's conventions, atomically; returns the format.

    ``provenance`` (JSON-able) goes into the file: CSV a ``# lzflow: {json}`` line before the
    header, Parquet the schema metadata ``lzflow``, ROOT a TObjString ``lzflow_provenance``. CSV
    values are Python's shortest round-trip repr, so the same events give the same bytes."""
    fmt = event_format(path, fmt)
    cs1 = np.ascontiguousarray(cs1, dtype=np.float64)
    cs2 = np.ascontiguousarray(cs2, dtype=np.float64)
    if cs1.shape != cs2.shape or cs1.ndim != 1:
        raise DataError(f"{path}: cS1 {cs1.shape} and cS2 {cs2.shape}: expected two 1D arrays of one length")
    meta = json.dumps({"lzflow_version": __version__, **dict(provenance or {})}, sort_keys=True,
                      separators=(",", ":"), allow_nan=False)
    suffix = Path(path).suffix
    with atomic_path(path, suffix) as tmp:
        if fmt == "csv":
            body = "".join(f"{a!r},{b!r}\n" for a, b in zip(cs1.tolist(), cs2.tolist()))
            tmp.write_text(f"# lzflow: {meta}\ncS1[{UNIT}],cS2[{UNIT}]\n{body}", encoding="utf-8")
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pa.schema([pa.field(q, pa.float64(), metadata={"unit": UNIT}) for q in QUANTITIES],
                               metadata={"lzflow": meta})
            pq.write_table(pa.table({"cS1": cs1, "cS2": cs2}, schema=schema), tmp)
        else:
            import uproot

            with uproot.recreate(tmp) as handle:
                out = handle.mktree(tree, {q: np.float64 for q in QUANTITIES},
                                    title=" ".join(f"{q}[{UNIT}]" for q in QUANTITIES))
                if cs1.size:
                    out.extend({"cS1": cs1, "cS2": cs2})
                handle["lzflow_provenance"] = meta
    return fmt
