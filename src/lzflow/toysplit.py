"""How toy files are bundled into workflow jobs: an execution choice, never an analysis one.

The toy files themselves are fixed by the analysis configuration: per mass, S+B files per POI ×
``stats.jobs_per_poi`` and B-only files per job (:func:`lzflow.layout.toy_jobs`), each with its run
number, seeds and toy indices. Which *workflow job* writes them is chosen per run by the
environment variable :data:`TOY_JOBS_ENV` (``LZFLOW_TOY_JOBS``):

``mass`` (the default; profiles ``local``, ``local-scratch`` and plain ``snakemake --cores N``)
    One job per mass and analysis tree writes all the toy files that tree makes for that mass, in
    one process (:mod:`lzflow.toybatch`). The default analysis then runs 9 toy jobs instead of 378,
    and pays a toy job's ~1 s of start-up (interpreter, imports, workspace) 9 times instead of 378.
    With shape systematics (a ``systematics`` block with parameters) a toy costs ~40× more and a
    mass's toys ~200 CPU-s: one job per mass and **job index** (:func:`batch_parts`; the S+B files
    of every POI and the B-only file of that index, ``stats.jobs_per_poi`` equal halves by
    default), so that the last masses do not leave a core idle for minutes at the end of a run.
``file`` (profiles ``slurm``, ``slurm-scratch``, ``htcondor``)
    One job per toy file (rules ``toys``, ``toys_bonly`` and their ``*_study`` twins): many short
    jobs that a cluster runs side by side, as Slurm arrays or HTCondor job bundles.

Both write the same files from the same job specs (:func:`lzflow.toyjobs.run_toy_job`), so merge
reads the same toys and ``limit.json``, the curve and every other number are byte-identical
(``tests/workflow/test_toy_split.py``). Snakemake records which rule and parameters made a file:
switching the split on an existing results tree reruns its toy jobs once (add
``--rerun-triggers mtime input`` to keep the files already made).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from . import layout as L
from .exceptions import ConfigError

__all__ = ["TOY_JOBS_ENV", "TOY_JOB_SPLITS", "DEFAULT_TOY_JOB_SPLIT", "toy_job_split", "ToyBatch", "toy_batches",
           "owned_toy_files", "batch_parts"]

#: the environment variable that chooses the split (profiles set it; see the module docstring)
TOY_JOBS_ENV = "LZFLOW_TOY_JOBS"
#: the splits, each with what it is for (the error message lists them)
TOY_JOB_SPLITS: dict[str, str] = {"mass": "one job per mass: one machine", "file": "one job per toy file: a cluster"}
DEFAULT_TOY_JOB_SPLIT = "mass"


def toy_job_split(environ: Mapping[str, str] | None = None) -> str:
    """The split of this run: :data:`TOY_JOBS_ENV` from ``environ`` (default :data:`os.environ`),
    :data:`DEFAULT_TOY_JOB_SPLIT` when it is unset or empty; any other value is a
    :class:`~lzflow.exceptions.ConfigError` naming the variable, the value and the choices."""
    value = (os.environ if environ is None else environ).get(TOY_JOBS_ENV, "")
    if value == "":
        return DEFAULT_TOY_JOB_SPLIT
    if value not in TOY_JOB_SPLITS:
        choices = ", ".join(f"'{k}' ({v})" for k, v in TOY_JOB_SPLITS.items())
        raise ConfigError(f"{TOY_JOBS_ENV}: {value!r}; expected {choices}")
    return value


@dataclass(frozen=True)
class ToyBatch:
    """One workflow job of the ``mass`` split: the toy files one analysis tree makes for one mass
    (or, with shape systematics, those of one job index: :func:`batch_parts`).

    Paths are as the workflow uses them (below the results, logs and benchmarks directories);
    ``specs`` are the per-file job specs (:func:`lzflow.layout.toys_sb_spec`,
    :func:`~lzflow.layout.toys_b_spec`) in the order of ``outputs``."""

    rule: str  #: Snakemake rule name: ``toys_m<mass>`` (baseline) or ``toys_m<mass>_<study>_<value>``
    suffix: str  #: the tree: "" (baseline) or "/studies/<study>/<value>"
    mass: str  #: mass label
    workspace: str
    outputs: tuple[str, ...]
    specs: tuple[dict[str, Any], ...]
    log: str
    benchmark: str


def owned_toy_files(variant, label: str) -> list[tuple[str, dict[str, Any]]]:
    """(toy file, job spec) of mass ``label`` that tree ``variant`` makes itself, relative to its tree:
    the files whose artefact key no earlier tree has (:func:`lzflow.variants.artefact_keys`; a study
    value that changes only ``toys_per_poi`` reuses the baseline's B-only files)."""
    return [(name, spec) for name, _, spec in L.toy_jobs(variant.config, label)
            if variant.owner.get(name, variant.suffix) == variant.suffix]


def batch_parts(config: Mapping[str, Any], owned: Sequence[tuple[str, dict[str, Any]]]
                ) -> list[tuple[int | None, list[tuple[str, dict[str, Any]]]]]:
    """The workflow jobs of one tree's toy files of one mass (``owned``: (file, job spec) in layout
    order): ``[(None, owned)]`` (one job) without shape systematics; with them, one ``(job index,
    files)`` per job index present, in increasing order (module docstring). The files keep their
    layout order within a part; every file is in exactly one part."""
    if not L.systematics_of(config):
        return [(None, list(owned))]
    indices = sorted({int(spec["job_index"]) for _, spec in owned})
    return [(j, [(name, spec) for name, spec in owned if int(spec["job_index"]) == j]) for j in indices]


def _rule_name(variant, label: str, job: int | None = None) -> str:
    """``toys_m40``, ``toys_m7p5``, ``toys_m40_g1_0p1``, ``toys_m40_job1``: letters, digits and '_' only."""
    parts = ["toys", f"m{label}"] + ([variant.study, variant.label] if variant.study is not None else []) + \
        ([f"job{job}"] if job is not None else [])
    return "_".join(re.sub(r"[^A-Za-z0-9]", lambda m: "p" if m.group() == "." else "_", p) for p in parts)


def toy_batches(trees: Sequence, results: str, logs: str, benchmarks: str) -> list[ToyBatch]:
    """The jobs of the ``mass`` split for analysis trees ``trees`` (the baseline first, then every
    study value; :func:`lzflow.variants.expand_studies`): per tree and mass, one job for the toy
    files that tree owns (none when it owns none), or one per job index with shape systematics
    (:func:`batch_parts`). ``results``, ``logs`` and ``benchmarks`` are the baseline's directories
    (:func:`lzflow.layout.analysis_dirs`). Every toy file of every tree is made by exactly one
    batch; rule names are unique."""
    batches: list[ToyBatch] = []
    names: set[str] = set()
    for variant in trees:
        for label in variant.mass_labels:
            for job, files in batch_parts(variant.config, owned_toy_files(variant, label)):
                if not files:
                    continue
                rule = _rule_name(variant, label, job)
                base, k = rule, 1
                while rule in names:  # two values whose names differ only in punctuation
                    k += 1
                    rule = f"{base}_{k}"
                names.add(rule)
                key = "toys_batch" if job is None else "toys_batch_part"
                log, bench = (L.fill(t[key], mass=label, job=job) for t in (L.LOGS, L.BENCHMARKS))
                batches.append(ToyBatch(
                    rule=rule, suffix=variant.suffix, mass=label,
                    workspace=variant.path(results, L.fill(L.WORKSPACE, mass=label)),
                    outputs=tuple(f"{results}{variant.suffix}/{name}" for name, _ in files),
                    specs=tuple(spec for _, spec in files),
                    log=f"{logs}{variant.suffix}/{log}", benchmark=f"{benchmarks}{variant.suffix}/{bench}"))
    return batches
