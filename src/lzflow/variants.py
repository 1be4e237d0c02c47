"""Study variants: the analysis trees a configuration asks for, and which tree makes each artefact.

Used while the workflow's job graph is built (``workflow/rules/common.smk``); the study *outputs*
(tables, overlay plots) are made by :mod:`lzflow.study_table`.

Studies: one configuration block per systematic question, one results tree per variation.

A study names one parameter and the values it takes; every value is a *variant* of the baseline
analysis (the configuration without the ``studies`` block)::

    studies:
      g1:
        parameter: detector.g1          # dotted path; detector.<key> edits the detector YAML
        values: [0.05, 0.118, 0.13]
        masses_GeV: [10, 40]            # optional subset of signal.masses_GeV (default: all)
        set: {stats.likelihood: unbinned}   # optional fixed edits shared by every value
        description: light collection efficiency

Parameters are dotted paths into the configuration: ``detector.<key>`` (a key of the detector YAML's
``nest:`` section, or a top-level detector key such as ``drift_field``), ``exposure.live_time``,
``pdf.n_samples``, ``stats.toys_per_poi``, ``stats.poi_grid.n_points``, ``stats.interpolation_order``,
``backgrounds.pp.rel_unc`` and so on — anything the schema allows except ``tag``, ``results_dir``,
``signal.masses_GeV`` (use ``masses_GeV`` of the study) and ``studies``. Every variant is validated
like a configuration of its own, so a bad value fails before any job with a one-line error naming
the study, the value and what was expected. Per-mass ``stats.per_mass`` overrides still win over a
global ``stats.*`` value. Background counts are quoted for the baseline's exposure
(``exposure.backgrounds_quoted_for``), so an exposure study scales the backgrounds with the signal.

Results trees. The baseline lives in ``<results_dir>/<tag>/``; variant ``v`` of study ``s`` in
``<results_dir>/<tag>/studies/<s>/<v>/`` with the same layout (logs and benchmarks mirror it). A
variant *reuses* every upstream output whose content would be identical: each artefact gets a key,
the digest of its job spec (:mod:`lzflow.layout`) and of the keys of its inputs, and the first
variant (baseline first) with that key owns the file; the others read it from there. An n_toys
study therefore makes no PDFs and no workspaces; a g1 study remakes everything from the detector
down; a value equal to the baseline's reuses the baseline's limits outright.

Toy seeds and run numbers are functions of (seed, mass, POI, job) only, so the variants of a study
draw the *same* random numbers as the baseline wherever their generation models agree (common random
numbers): differences between variants are then much less noisy than two independent toy sets.

Shape systematics on and off. ``parameter: systematics`` with ``values: [on, off]`` (YAML's bare
``on``/``off`` read as true/false and mean the same) keeps or removes the configuration's whole
``systematics:`` block, so one run compares the limit with the detector systematics profiled and
without them. It needs a ``systematics:`` block in the configuration (e.g. the overlay
``config/overlays/systematics.yaml``). ``on`` is the baseline itself; ``off`` reuses the
detector, the NEST responses and the nominal PDFs, and makes only its workspaces (without the
varied templates), toys and merges (``config/studies/systematics_onoff.yaml``).

Outputs per study (``<results_dir>/<tag>/studies/<s>/``): ``table.csv`` and ``table.md`` (limit per
mass per variant with the % change from the baseline, toy run time from Snakemake's benchmark files)
and ``overlay.png`` (limit curves of the variants over the baseline band, with the ratio).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import layout as L
from .config import ConfigError, deep_merge, first_duplicate, load_yaml, mass_label, resolve_config, validate_raw
from .runsconfig import has_runs, resolve_runs

__all__ = [
    "Study",
    "Variant",
    "expand_studies",
    "value_label",
    "artefact_keys",
    "run_variants",
]

#: the study parameter that keeps (``on``) or removes (``off``) the whole ``systematics:`` block
SWITCH_SYSTEMATICS = "systematics"
FORBIDDEN_PARAMETERS = ("tag", "results_dir", "signal.masses_GeV", "signal.mass_labels", "studies")
#: study names and value labels are directory names: one safe path component, never '.' or '..'
STUDY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
VALUE_LABEL = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True)
class Variant:
    """One analysis tree: the baseline (``study is None``) or one value of a study."""

    study: str | None
    label: str
    value: Any
    suffix: str  #: path below <results_dir>/<tag>: "" or "/studies/<study>/<label>"
    config: dict  #: resolved configuration (lzflow.config.resolve_config)
    keys: dict = field(default_factory=dict)  #: artefact (relative path) -> content key
    owner: dict = field(default_factory=dict)  #: artefact -> suffix of the variant that makes it

    @property
    def mass_labels(self) -> list[str]:
        return list(self.config["signal"]["mass_labels"])

    def path(self, results: str, rel: str) -> str:
        """Where this variant reads artefact ``rel`` (its own tree, or the tree that owns it)."""
        return f"{results}{self.owner.get(rel, self.suffix)}/{rel}"


@dataclass(frozen=True)
class Study:
    name: str
    parameter: str
    baseline_value: Any
    description: str
    masses: list[str]  #: mass labels
    variants: list[Variant]


def value_label(value: Any) -> str:
    """Directory name of a study value: ``0.05`` → ``0.05``, ``'500 d'`` → ``500_d``."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    text = re.sub(r"[^A-Za-z0-9.+-]+", "_", text.strip()).strip("_")
    return text or "empty"


def _get(raw: Mapping[str, Any], path: Sequence[str]) -> Any:
    node: Any = raw
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _nested(path: Sequence[str], value: Any) -> dict[str, Any]:
    out: Any = value
    for key in reversed(path):
        out = {key: out}
    return out


def _detector_path(raw: Mapping[str, Any], key_path: list[str], where: str, base_dir: str | Path) -> list[str]:
    """``detector.g1`` → ``detector_overrides.nest.g1`` (or a top-level detector key)."""
    detector = load_yaml(Path(base_dir) / raw["detector"])
    if key_path and key_path[0] in (detector.get("nest") or {}):
        return ["detector_overrides", "nest", *key_path]
    if key_path and key_path[0] in detector:
        return ["detector_overrides", *key_path]
    raise ConfigError(f"{where}: detector.{'.'.join(key_path)} is not a parameter of {raw['detector']}; "
                      f"expected detector.<key> with a key of its nest: section (e.g. detector.g1) or a top-level key")


def _edit_path(raw: Mapping[str, Any], parameter: Any, where: str, base_dir: str | Path) -> list[str]:
    if not isinstance(parameter, str) or not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", parameter):
        raise ConfigError(f"{where}: {parameter!r}; expected a dotted parameter path such as detector.g1 or "
                          f"stats.toys_per_poi")
    if any(parameter == f or parameter.startswith(f + ".") for f in FORBIDDEN_PARAMETERS):
        raise ConfigError(f"{where}: {parameter!r} cannot be studied; expected a detector, exposure, pdf, stats, "
                          f"signal.halo or backgrounds parameter (use masses_GeV to choose masses)")
    parts = parameter.split(".")
    if parts[0] == "detector":
        return _detector_path(raw, parts[1:], where, base_dir)
    return parts


def _switch_values(base_raw: Mapping[str, Any], values: Sequence[Any], where: str) -> list[str]:
    """The values of a ``parameter: systematics`` study as ``'on'``/``'off'`` (booleans accepted:
    YAML 1.1 reads a bare ``on``/``off`` as true/false)."""
    if not base_raw.get(SWITCH_SYSTEMATICS):
        raise ConfigError(f"{where}.parameter: 'systematics' switches the systematics: block on and off, but the "
                          f"configuration has no systematics: block; expected one (e.g. --configfile "
                          f"config/quick.yaml config/overlays/systematics.yaml)")
    out = []
    for i, value in enumerate(values):
        if isinstance(value, bool):
            out.append("on" if value else "off")
        elif value in ("on", "off"):
            out.append(value)
        else:
            raise ConfigError(f"{where}.values[{i}]: {value!r}; expected on or off (the systematics: block kept or "
                              f"removed)")
    return out


def _baseline_raw(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k != "studies"}


def _variant_raw(baseline: Mapping[str, Any], edits: Sequence[tuple[list[str], Any]],
                 masses: Sequence[float], baseline_exposure_t_yr: float) -> dict[str, Any]:
    raw = deep_merge(baseline, {})
    # background counts are quoted for the baseline's exposure: a variant with another exposure (an
    # exposure study) scales them; every other variant gets a factor of exactly 1
    raw["exposure"].setdefault("backgrounds_quoted_for", f"{baseline_exposure_t_yr!r} t*yr")
    for path, value in edits:
        raw = deep_merge(raw, _nested(path, value))
    raw["signal"]["masses_GeV"] = list(masses)
    per_mass = (raw.get("stats") or {}).get("per_mass")
    if per_mass:
        keep = {mass_label(float(m)) for m in masses}
        raw["stats"]["per_mass"] = {k: v for k, v in per_mass.items() if _per_mass_label(k) in keep}
    return raw


def _per_mass_label(key: Any) -> str:
    """The mass label of a ``stats.per_mass`` key (a number, or a name that resolve_config checks)."""
    return mass_label(float(key)) if isinstance(key, (int, float)) else str(key)


def _study_masses(spec: Mapping[str, Any], baseline_masses: Sequence[float], where: str) -> list[float]:
    chosen = spec.get("masses_GeV")
    if chosen is None:
        return list(baseline_masses)
    if not isinstance(chosen, list) or not chosen:
        raise ConfigError(f"{where}.masses_GeV: {chosen!r}; expected a non-empty list of masses")
    labels = {mass_label(float(m)): float(m) for m in baseline_masses}
    out = []
    for m in chosen:
        if not isinstance(m, (int, float)) or mass_label(float(m)) not in labels:
            raise ConfigError(f"{where}.masses_GeV: {m!r} is not a mass of signal.masses_GeV; expected one of "
                              f"{', '.join(labels)}")
        out.append(labels[mass_label(float(m))])
    return out


def expand_studies(raw: Mapping[str, Any], base_dir: str | Path = ".") -> tuple[Variant, list[Study]]:
    """The baseline variant and every study's variants, validated, with artefact keys and owners.

    ``raw`` is the configuration as loaded (with its optional ``studies`` block).
    """
    raw = validate_raw(raw)  # the studies block's structure too, with the schema's messages
    studies_raw = raw.get("studies") or {}
    base_raw = _baseline_raw(raw)
    if has_runs(raw):  # science runs combined (lzflow.runsconfig): refuses a studies block
        base_cfg = resolve_runs(raw, base_dir)
    else:
        base_cfg = resolve_config(base_raw, base_dir)
    baseline = Variant(None, "baseline", None, "", base_cfg, artefact_keys(base_cfg))
    studies = []
    for name, spec in studies_raw.items():
        where = f"studies.{name}"
        if not isinstance(name, str) or not STUDY_NAME.match(name):
            raise ConfigError(f"{where}: bad study name {name!r}; expected letters, digits, '_', '.', '-', starting "
                              f"with a letter, digit or '_' (it becomes a directory name)")
        if not isinstance(spec, Mapping) or "parameter" not in spec or "values" not in spec:
            raise ConfigError(f"{where}: {spec!r}; expected a mapping with 'parameter' and 'values'")
        unknown = sorted(set(spec) - {"parameter", "values", "masses_GeV", "set", "description"})
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unexpected key; expected parameter, values, masses_GeV, set, "
                              f"description")
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.values: {values!r}; expected a non-empty list")
        switch = spec["parameter"] == SWITCH_SYSTEMATICS
        if switch:
            values = _switch_values(base_raw, values, where)
            path = [SWITCH_SYSTEMATICS]
        else:
            path = _edit_path(base_raw, spec["parameter"], f"{where}.parameter", base_dir)
        fixed = []
        for key, value in (spec.get("set") or {}).items():
            fixed.append((_edit_path(base_raw, key, f"{where}.set", base_dir), value))
        masses = _study_masses(spec, base_cfg["signal"]["masses_GeV"], where)
        labels = [value_label(v) for v in values]
        bad = next((i for i, label in enumerate(labels) if not VALUE_LABEL.match(label)), None)
        if bad is not None:
            raise ConfigError(f"{where}.values[{bad}]: {values[bad]!r} would be the directory name {labels[bad]!r}; "
                              f"expected a value whose name is a plain directory name (not '.', '..', at most 64 "
                              f"characters)")
        dup = first_duplicate(labels)
        if dup is not None:
            raise ConfigError(f"{where}.values: two values share the directory name {dup!r}; expected distinct values")
        variants = []
        for i, (value, label) in enumerate(zip(values, labels)):
            edits = fixed if switch else [*fixed, (path, value)]
            vraw = _variant_raw(base_raw, edits, masses, base_cfg["exposure"]["exposure_t_yr"])
            if switch and value == "off":
                del vraw[SWITCH_SYSTEMATICS]
            try:
                cfg = resolve_config(vraw, base_dir)
            except ConfigError as err:
                raise ConfigError(f"{where}.values[{i}] = {value!r}: {err}") from None
            variants.append(Variant(name, label, value, f"/{L.STUDIES_DIR}/{name}/{label}", cfg, artefact_keys(cfg)))
        baseline_value = "on" if switch else _baseline_value(base_raw, path, base_dir)
        if fixed:  # the baseline differs from every variant in the 'set' edits too: say how
            shared = ", ".join(f"{key}={_baseline_value(base_raw, path_, base_dir)}"
                               for key, (path_, _) in zip(spec["set"], fixed))
            baseline_value = f"{baseline_value} ({shared})"
        studies.append(Study(name, spec["parameter"], baseline_value, str(spec.get("description", "")),
                             [mass_label(m) for m in masses], variants))
    _assign_owners(baseline, [v for s in studies for v in s.variants])
    return baseline, studies


def run_variants(cfg: Mapping[str, Any]) -> dict[str, Variant]:
    """The science runs' trees of a runs analysis (:mod:`lzflow.runsconfig`), run → its tree in
    ``<results_dir>/<tag>/runs/<run>``; empty without runs. As between study values, an artefact
    two runs would make identically (equal keys: e.g. the responses of two runs of one detector) is
    made by the first run and read by the others."""
    runs = {name: Variant(None, name, None, f"/{L.RUNS_DIR}/{name}", rc, artefact_keys(rc))
            for name, rc in (cfg.get("runs") or {}).items()}
    if runs:
        first, *others = runs.values()
        _assign_owners(first, others)
    return runs


def _baseline_value(base_raw: Mapping[str, Any], path: list[str], base_dir: str | Path) -> Any:
    """The baseline's value at an edit path (from the config, the detector YAML or the defaults)."""
    value = _get(base_raw, path)
    if value is None and path[0] == "detector_overrides":
        value = _get(load_yaml(Path(base_dir) / base_raw["detector"]), path[1:])
    if value is None and path[0] == "stats":
        from .config import STATS_DEFAULTS

        value = _get(STATS_DEFAULTS, path[1:])
    return value


def artefact_keys(cfg: Mapping[str, Any]) -> dict[str, str]:
    """Content key of every artefact of an analysis tree (relative path → digest).

    The key of an artefact digests its job spec and the keys of its inputs, so equal keys mean
    equal files: detector → response per interaction → background and signal PDFs → workspace per
    mass → each toy job → limit per mass; with detector systematics also the variation matrices
    (from their nominal response) and each varied source's templates, which enter the workspace's key.
    """
    keys: dict[str, str] = {}
    det = keys[L.DETECTOR] = L.spec_digest("detector", L.detector_spec(cfg))
    resp = {}
    for inter in L.used_interactions(cfg):
        resp[inter] = keys[L.fill(L.RESPONSE, interaction=inter)] = L.spec_digest(
            "response", det, L.response_spec(cfg, inter))
    bkg = {}
    for name in sorted(cfg["backgrounds"]):
        k = L.spec_digest("pdf", resp[L.background_interaction(cfg, name)], L.background_spec(cfg, name))
        bkg[name] = keys[L.pdf_path(name)] = keys[L.pdf_meta_path(name)] = k
    # detector systematics: a variation matrix depends on the nominal response it reuses and its spec;
    # a source's varied templates on its nominal PDF and the matrices of its systematics
    vresp = {}
    for inter, name in L.response_variations(cfg):
        vresp[inter, name] = keys[L.fill(L.RESPONSE_VARIATION, interaction=inter, systematic=name)] = L.spec_digest(
            "response_variation", resp[inter], L.variation_spec(cfg, inter, name))

    def varied(source: str, nominal: str) -> list[str]:
        """The key of ``source``'s varied templates, as a list (empty for an unvaried source)."""
        names = L.source_systematics(cfg, source)
        if not names:
            return []
        inter = L.source_interaction(cfg, source)
        mats = [vresp[inter, n] for n in (L.VARIATION_NOMINAL, *names)]
        k = keys[L.fill(L.VARIATION_PDF, source=source)] = L.spec_digest(
            "variation_pdf", nominal, mats, L.variation_pdf_spec(cfg, source))
        return [k]

    bkg_varied = [k for n in sorted(bkg) for k in varied(n, bkg[n])]
    for label in cfg["signal"]["mass_labels"]:
        sig = L.spec_digest("pdf", resp["NR"], L.signal_spec(cfg, label))
        source = L.fill(L.SIGNAL_SOURCE, mass=label)
        keys[L.pdf_path(source)] = keys[L.pdf_meta_path(source)] = sig
        variation_keys = bkg_varied + varied(source, sig)
        ws = L.spec_digest("workspace", sig, [bkg[n] for n in sorted(bkg)], L.workspace_spec(cfg, label),
                           *([variation_keys] if variation_keys else []))  # no systematics: keys as before
        for template in (L.WORKSPACE, L.WORKSPACE_PYHF, L.WORKSPACE_HS3, L.IMPACTS):
            keys[L.fill(template, mass=label)] = ws
        toys = []
        for name, _, spec in L.toy_jobs(cfg, label):
            toys.append(L.spec_digest("toys", ws, spec))
            keys[name] = toys[-1]
        keys[L.fill(L.LIMIT, mass=label)] = L.spec_digest("merge", ws, toys, L.merge_spec(cfg, label))
    return keys


def _assign_owners(baseline: Variant, variants: Sequence[Variant]) -> None:
    """Each artefact is made by the first variant (baseline first) with its key."""
    first: dict[str, str] = {}
    for v in (baseline, *variants):
        for rel, key in v.keys.items():
            v.owner[rel] = first.setdefault(key, v.suffix)
