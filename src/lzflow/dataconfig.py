"""The ``data:`` and ``blind:`` config keys (:func:`resolve_data`; module :mod:`lzflow.observeddata`
describes them and what the workflow does with them). Kept apart from the data handling so that
:mod:`lzflow.config` imports nothing heavy."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Mapping

from .exceptions import ConfigError

__all__ = ["DATA_DEFAULTS", "check_data_files", "data_files", "data_label", "resolve_data", "unblinded", "window_edges"]

#: documented defaults of the ``data:`` keys (recorded in the resolved configuration)
DATA_DEFAULTS: dict[str, Any] = {"columns": {"cS1": "cS1", "cS2": "cS2"}, "units": {}, "tree": "events",
                                 "discovery_toys": 10_000}
_SUFFIX_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".root": "root"}
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+-]{1,1024}$")


def _check_path(value: str) -> None:
    if not _SAFE_PATH.match(value):
        raise ConfigError(f"data.path: {value!r} has characters outside A-Z a-z 0-9 _ . / + -; expected a plain "
                          f"path (no spaces or shell metacharacters)")
    if ".." in PurePosixPath(value).parts:
        raise ConfigError(f"data.path: {value!r} contains '..'; expected a path that does not climb out of its parent")
    if value.startswith("-"):
        raise ConfigError(f"data.path: {value!r} starts with '-'; expected a file name")


def resolve_data(config: Mapping[str, Any], stats: Mapping[str, Any]) -> dict[str, Any]:
    """``{"data": {...}, "blind": bool}`` resolved from a schema-checked raw config (module
    docstring), or ``{}`` without ``data:`` (a config without data resolves as before)."""
    raw, blind = config.get("data"), config.get("blind")
    if raw is None:
        if blind is not None:
            raise ConfigError(f"blind: {blind!r} without data:; expected a data: block (the event list that blind "
                              f"keeps unread) or no blind key")
        return {}
    path = str(raw["path"])
    _check_path(path)
    fmt = raw.get("format")
    if fmt is None:
        suffix = PurePosixPath(path).suffix.lower()
        if suffix not in _SUFFIX_FORMATS:
            raise ConfigError(f"data.path: suffix {suffix!r} of {path!r} names no event-list format; expected one of "
                              f"{', '.join(_SUFFIX_FORMATS)} or data.format")
        fmt = _SUFFIX_FORMATS[suffix]
    columns = {**DATA_DEFAULTS["columns"], **dict(raw.get("columns") or {})}
    if columns["cS1"] == columns["cS2"]:
        raise ConfigError(f"data.columns: cS1 and cS2 both read column {columns['cS1']!r}; expected two columns")
    blind = True if blind is None else bool(blind)
    if not blind and stats.get("likelihood", "binned") == "unbinned":
        for key, plain in (("construction", "one_sided"), ("discovery_from_toys", None)):
            if stats.get(key, plain) != plain:  # these sections fit the binned counts only (lzflow.construction_stage)
                raise ConfigError(f"stats.{key}: {stats[key]!r} with blind: false and stats.likelihood unbinned; "
                                  f"expected stats.{key}: {plain!r} or stats.likelihood: binned")
    data = {"path": path, "format": fmt, "columns": columns,
            "units": dict(raw.get("units") or DATA_DEFAULTS["units"]),
            "tree": str(raw.get("tree", DATA_DEFAULTS["tree"])),
            "discovery_toys": int(raw.get("discovery_toys", DATA_DEFAULTS["discovery_toys"]))}
    return {"data": data, "blind": blind}


def unblinded(cfg: Mapping[str, Any]) -> bool:
    """True when a resolved config has data and ``blind: false``: only then is the data read."""
    return cfg.get("data") is not None and cfg.get("blind") is False


def data_files(cfg: Mapping[str, Any]) -> list[str]:
    """The event list(s) of a resolved config: ``[data.path]``, each run's in run order for a runs
    analysis (:mod:`lzflow.runsconfig`), ``[]`` without data."""
    data = cfg.get("data")
    if data is None:
        return []
    if "runs" in data:
        return [str(d["path"]) for d in data["runs"].values()]
    return [str(data["path"])]


def check_data_files(cfg: Mapping[str, Any]) -> None:
    """The blind-safe checks of a resolved config's event list(s) (``lzflow validate`` and the
    workflow's gate): each file exists and its header, schema or TTree has the declared columns
    with phd units (:func:`lzflow.eventlist.check_columns`: names and units only, no event read or
    counted), so that a wrong ``data`` block is found before unblinding, not at it. A ConfigError
    naming the key (``data.path`` or ``runs.<run>.data.path``) otherwise."""
    from .eventlist import DataError, check_columns

    data = cfg.get("data")
    if data is None:
        return
    entries = {f"runs.{run}.data": d for run, d in data["runs"].items()} if "runs" in data else {"data": data}
    for key, d in entries.items():
        try:
            check_columns(d["path"], columns=d["columns"], units=d["units"] or None, tree=d["tree"], fmt=d["format"])
        except DataError as err:
            raise ConfigError(f"{key}.path: {' '.join(str(err).split())}") from None


def data_label(cfg: Mapping[str, Any]) -> str:
    """The event list(s) as the report and ``lzflow validate`` name them: the path, or
    ``run: path`` per run joined by ``, `` for a runs analysis; "" without data."""
    data = cfg.get("data")
    if data is None:
        return ""
    if "runs" in data:
        return ", ".join(f"{run}: {d['path']}" for run, d in data["runs"].items())
    return str(data["path"])


def window_edges(pdf: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """The analysis window's (cS1, log10 cS2) edges from the config's ``pdf`` section, as the
    workspaces have them (:class:`lzflow.space.AnalysisSpace`)."""
    from .space import AnalysisSpace

    space = AnalysisSpace.from_dict({**pdf, "s2_raw_min_phd": pdf.get("s2_raw_min_phd", 0.0)})
    return space.cs1_edges.tolist(), space.log10cs2_edges.tolist()
