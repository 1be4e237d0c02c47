"""Science runs combined in one likelihood: the ``runs:`` and ``correlated:`` configuration keys.

A configuration with a ``runs:`` block describes N ≥ 2 science runs (LZ's WS2022 and WS2024, two
live-time periods, …) analysed together::

    runs:
      ws2022:
        detector: config/detector/lz_ws2022.yaml
        detector_overrides: {}            # optional
        exposure: {fiducial_mass: 5.5 t, live_time: 60 d}
        backgrounds: {...}                # as the top-level block of a single run
      ws2024:
        detector: ...
        exposure: ...
        backgrounds: ...
    correlated: [pp, B8, atm, DSN, hep]   # shared by name; [] shares none (required: no default)

Each run has its own ``detector``, ``detector_overrides``, ``exposure`` and ``backgrounds``
(:data:`RUN_KEYS`); those keys are then *not* given at the top level (refused: a run's value and a
top-level one would conflict). ``tag``, ``results_dir``, ``reference``, ``signal``, ``pdf``,
``stats`` and ``systematics`` are shared: the signal model, binning and statistical procedure are
one for the whole analysis (the combined likelihood needs one mass, one reference cross section and
one interpolation, :func:`lzflow.combinecli.combine_workspaces`). Run ``r``'s configuration is the
shared keys plus its own, resolved as a single-run analysis (:func:`lzflow.config.resolve_config`);
an error in it is reported as ``runs.<r>.<key>``.

The likelihood is the product over runs (:mod:`lzflow.stats.combine`): the signal strength μ is
shared, a nuisance parameter named in ``correlated`` (a background rate or a shape systematic) is
one parameter with one constraint in every run that has it, every other one is kept per run as
``<r>:<name>`` (rates) or ``<r>.<name>`` (shape systematics, parameter ``alpha_<r>.<name>``). Run
names are therefore identifiers (letters, digits, ``_``; they are also directory names).

Refused, each in one line: fewer than two runs; a bad run name; ``correlated`` without ``runs`` or
``runs`` without ``correlated``; a name in ``correlated`` that no run has, or a shared background
whose ``rel_unc`` differs between runs (one parameter, one constraint); a top-level key that is
also per run; ``studies`` with runs (a study of a combination is not supported); ``data`` at the
top level (each run gives its own ``runs.<r>.data``), ``data`` in some runs but not in others, or
``data.discovery_toys`` that differ between runs.

Observed data: each run may name its own event list (``runs.<r>.data``, the keys of a single run's
``data:``); ``blind`` is then a top-level key, shared. Unblinded, the workflow bins each run's list
on its own run's window and writes one ``data/observed.json`` whose counts are the runs' counts
concatenated in run order, the combined workspace's bin order (:func:`runs_data_spec`,
:func:`lzflow.observeddata.bin_observed_runs`), with each run's out-of-window accounting.

The resolved configuration of a runs analysis (:func:`resolve_runs`) is that of its first run with
the whole exposure (the sum over runs; ``fiducial_mass_t`` is the live-time weighted mean so that
mass × live time = the total) and the union of the runs' backgrounds (the first run's entry of a
name), plus ``runs`` (run → its resolved configuration, in config order) and ``correlated``; with
event lists, ``data`` = ``{"runs": {run: its data}, "discovery_toys": N}`` and ``blind``. The
workflow builds each run's detector, responses, PDFs and workspaces in
``<results_dir>/<tag>/runs/<r>/`` and one combined workspace per mass in the analysis tree, where
toys, merge, curve and report run unchanged (``workflow/rules/runs.smk``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import layout as L
from .config import DAYS_PER_YEAR, resolve_config
from .exceptions import ConfigError

__all__ = [
    "RUN_KEYS",
    "RUN_NAME",
    "combine_spec",
    "combined_artefacts",
    "has_runs",
    "parameter_names",
    "resolve_runs",
    "run_artefacts",
    "run_configs",
    "runs_data_spec",
]

#: the keys each run gives (and the top level then does not)
RUN_KEYS = ("detector", "detector_overrides", "exposure", "backgrounds", "data")
#: a run name: an identifier (a directory name and part of the combined parameter names)
RUN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def has_runs(raw: Mapping[str, Any]) -> bool:
    """Whether a raw configuration is a runs analysis (or says ``correlated``, which needs one)."""
    return "runs" in raw or "correlated" in raw


def _check_structure(raw: Mapping[str, Any]) -> dict[str, Any]:
    runs = raw.get("runs")
    if runs is None:
        raise ConfigError(f"correlated: {raw.get('correlated')!r} without runs:; expected a runs: block (the science "
                          f"runs whose parameters it shares) or no correlated key")
    if not isinstance(runs, Mapping) or len(runs) < 2:
        raise ConfigError(f"runs: {len(runs) if isinstance(runs, Mapping) else runs!r} run(s); expected at least 2 "
                          f"science runs (a single run is the plain configuration without runs:)")
    for name in runs:
        if not isinstance(name, str) or not RUN_NAME.match(name):
            raise ConfigError(f"runs.{name}: bad run name {name!r}; expected an identifier (letters, digits, '_', not "
                              f"starting with a digit, at most 64 characters): it names a directory and parameters")
    if "correlated" not in raw:
        raise ConfigError("correlated: missing with runs:; expected the list of nuisance parameters shared across "
                          "runs (e.g. [pp, B8]; [] shares none): nothing is shared by default")
    if "data" in raw:
        raise ConfigError("data: given at the top level with runs:; expected each run's event list as "
                          "runs.<run>.data (blind stays at the top level)")
    for key in RUN_KEYS:
        if key in raw:
            raise ConfigError(f"{key}: given at the top level with runs:; expected it per run only "
                              f"(runs.<run>.{key}), so that no run's value conflicts with a shared one")
    if "studies" in raw:
        raise ConfigError("studies: given with runs:; expected no studies block in a runs analysis (study one run "
                          "as a plain configuration)")
    with_data = [name for name, entry in runs.items() if isinstance(entry, Mapping) and "data" in entry]
    if with_data and len(with_data) < len(runs):
        missing = next(name for name in runs if name not in with_data)
        raise ConfigError(f"runs.{missing}.data: missing while run(s) {', '.join(with_data)} have one; expected an "
                          f"event list in every run or in none (the combined likelihood fits every run's data)")
    return dict(runs)


def run_configs(raw: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each run's raw single-run configuration (shared keys + its own), in config order; the
    structural refusals of the module docstring."""
    runs = _check_structure(raw)
    shared = {k: v for k, v in raw.items() if k not in ("runs", "correlated")}
    return {name: {**shared, **entry} for name, entry in runs.items()}


def _run_error(run: str, err: ConfigError) -> ConfigError:
    """``runs.<run>.<key>: …`` for an error in a run's own key; a shared key's error as it is, with the run."""
    text = str(err)
    if text.split(".", 1)[0].split(":", 1)[0] in RUN_KEYS:
        return ConfigError(f"runs.{run}.{text}")
    return ConfigError(f"{text} (run {run})")


def parameter_names(cfg: Mapping[str, Any]) -> set[str]:
    """The nuisance parameters of a single-run analysis that ``correlated`` can name: its
    backgrounds and its shape systematics."""
    return set(cfg["backgrounds"]) | set(L.systematics_of(cfg))


def _check_shared_widths(runs: Mapping[str, Mapping[str, Any]], correlated: list[str]) -> None:
    """A shared background rate has ONE constraint: every run that has it must give it the same
    ``rel_unc`` (:func:`lzflow.stats.combine.combine_models` refuses it otherwise, after every PDF)."""
    for name in correlated:
        widths = {run: cfg["backgrounds"][name]["rel_unc"] for run, cfg in runs.items() if name in cfg["backgrounds"]}
        if len(set(widths.values())) > 1:
            shown = ", ".join(f"runs.{run}.backgrounds.{name}.rel_unc {w!r}" for run, w in widths.items())
            raise ConfigError(f"correlated: {name!r} is shared but its constraint differs ({shown}); expected one "
                              f"rel_unc in every run (a shared parameter has one constraint) or {name} not in correlated")


def resolve_runs(raw: Mapping[str, Any], base_dir: str | Path = ".") -> dict[str, Any]:
    """The resolved configuration of a runs analysis (module docstring)."""
    raws = run_configs(raw)
    runs: dict[str, dict[str, Any]] = {}
    for name, run_raw in raws.items():
        try:
            runs[name] = resolve_config(run_raw, base_dir)
        except ConfigError as err:
            raise _run_error(name, err) from None
    unbinned = [name for name, cfg in runs.items() if cfg["stats"].get("likelihood") == "unbinned"]
    if unbinned:  # the combined workspace has one likelihood over every run's bins (lzflow.stats.combine)
        raise ConfigError(f"stats.likelihood: 'unbinned' with runs: (run {unbinned[0]!r}); expected stats.likelihood: "
                          f"binned (the runs' combined likelihood is binned only)")
    correlated = list(raw["correlated"])
    known = set().union(*(parameter_names(c) for c in runs.values()))
    for name in correlated:
        if name not in known:
            raise ConfigError(f"correlated: {name!r} is a parameter of no run; expected background or shape-systematic "
                              f"names of the runs ({', '.join(sorted(known))})")
    _check_shared_widths(runs, correlated)
    data = _runs_data(runs)
    first = next(iter(runs.values()))
    t_yr = sum(c["exposure"]["exposure_t_yr"] for c in runs.values())
    days = sum(c["exposure"]["live_time_days"] for c in runs.values())
    exposure = {"fiducial_mass_t": t_yr * DAYS_PER_YEAR / days, "live_time_days": days, "exposure_t_yr": t_yr,
                "backgrounds_quoted_for_t_yr": t_yr}
    backgrounds: dict[str, Any] = {}
    for cfg in runs.values():
        for name, entry in cfg["backgrounds"].items():
            backgrounds.setdefault(name, entry)
    return {**first, "exposure": exposure, "backgrounds": dict(sorted(backgrounds.items())),
            "runs": runs, "correlated": correlated, **data}


def _runs_data(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The top-level ``data``/``blind`` of a runs analysis whose runs have event lists: ``data``
    = ``{"runs": {run: its resolved data}, "discovery_toys": N}`` (one set of discovery toys for
    the combination: every run must give the same N), ``blind`` the shared key; ``{}`` without data."""
    first = next(iter(runs.values()))
    if first.get("data") is None:
        return {}
    toys = {run: cfg["data"]["discovery_toys"] for run, cfg in runs.items()}
    if len(set(toys.values())) > 1:
        shown = ", ".join(f"runs.{run}.data.discovery_toys {n!r}" for run, n in toys.items())
        raise ConfigError(f"data.discovery_toys differs between runs ({shown}); expected one number (the combination "
                          f"has one set of discovery toys)")
    return {"data": {"runs": {run: dict(cfg["data"]) for run, cfg in runs.items()},
                     "discovery_toys": toys[next(iter(toys))]}, "blind": first["blind"]}


def runs_data_spec(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The binning of a runs analysis's event lists (rule ``observed_data``): per run, in run order
    (the combined workspace's bin order), how to read its list and its own window
    (:func:`lzflow.layout.data_spec` of the run; :func:`lzflow.observeddata.bin_observed_runs`)."""
    return {"runs": [{"run": run, **L.data_spec(rc)} for run, rc in cfg["runs"].items()]}


def run_artefacts(cfg: Mapping[str, Any]) -> list[str]:
    """What a run's tree holds (relative paths): detector, responses, PDFs, variation files and per
    mass the workspace, its exports and impacts — no toys or limits (those are the combination's)."""
    sources = sorted(cfg["backgrounds"]) + [L.fill(L.SIGNAL_SOURCE, mass=m) for m in cfg["signal"]["mass_labels"]]
    rels = [L.DETECTOR, *(L.fill(L.RESPONSE, interaction=i) for i in L.used_interactions(cfg)),
            *(p for s in sources for p in (L.pdf_path(s), L.pdf_meta_path(s)))]
    rels += [L.fill(L.RESPONSE_VARIATION, interaction=i, systematic=n) for i, n in L.response_variations(cfg)]
    rels += [L.fill(L.VARIATION_PDF, source=s) for s in L.varied_sources(cfg)]
    for mass in cfg["signal"]["mass_labels"]:
        rels += [L.fill(t, mass=mass) for t in (L.WORKSPACE, L.WORKSPACE_PYHF, L.WORKSPACE_HS3, L.IMPACTS)]
    return rels


def combined_artefacts(cfg: Mapping[str, Any]) -> list[str]:
    """What the combination's tree holds per mass (relative paths): the combined workspace and its
    impacts, the toy files, the limit and its fit-error summary (no detector, responses or PDFs:
    those are the runs')."""
    rels = []
    for mass in cfg["signal"]["mass_labels"]:
        rels += [L.fill(t, mass=mass) for t in (L.WORKSPACE, L.IMPACTS, L.LIMIT, L.MASS_FIT_ERRORS)]
        rels += L.toy_file_names(cfg, mass)
    return rels


def combine_spec(cfg: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The combine job of one mass: the runs in order, the shared parameters, and the workspace
    job's procedure keys and POI grid (:data:`lzflow.combinecli.SPEC_KEYS`)."""
    ws = L.workspace_spec(cfg, label)
    return {"mass_label": label, "runs": list(cfg["runs"]), "correlated": list(cfg["correlated"]),
            **{k: ws[k] for k in (*L.PROCEDURE_KEYS, "discovery_sigma", "poi_grid")}}


def run_workspace_paths(runs: Mapping[str, Any], results: str, mass: str) -> list[str]:
    """Each run's workspace of ``mass``, where the run that makes it writes it, in run order (the
    combined model's bin order); ``runs``: :func:`lzflow.variants.run_variants`."""
    return [v.path(results, L.fill(L.WORKSPACE, mass=mass)) for v in runs.values()]


def runs_targets(cfg: Mapping[str, Any], runs: Mapping[str, Any], results: str) -> list[str]:
    """``all`` of a runs analysis: the curve (and reference comparison), fit errors, report and the
    detector it shows (the first run's), the combination's per-mass files, and every run's tree at
    the path of the run that makes each file — no responses or PDFs of the analysis tree itself."""
    rels = [L.CURVE_CSV, *([L.REFERENCE_COMPARISON] if cfg["reference"] else []), L.FIT_ERRORS, L.REPORT,
            L.DETECTOR, *combined_artefacts(cfg)]
    per_run = [v.path(results, rel) for v in runs.values() for rel in run_artefacts(v.config)]
    return [f"{results}/{rel}" for rel in rels] + list(dict.fromkeys(per_run))
