"""Job specifications: the slice of a resolved configuration that each workflow job needs.

A job spec is what a Snakemake rule hands to ``lzflow <stage> --spec``. It holds exactly the values
that job's output depends on — no more, so that Snakemake's ``params`` trigger reruns a job only when
something it uses changes (changing one mass's toy count must not rerun the other masses), and no
less, so that two jobs with equal specs and equal inputs produce equal outputs. The second property
is what lets a study variant reuse an upstream output of the baseline (:mod:`lzflow.studies`).

Every function takes the resolved configuration of :func:`lzflow.config.resolve_config` and returns a
JSON-serialisable dict; :func:`as_spec` gives its canonical text.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

__all__ = [
    "as_spec",
    "spec_digest",
    "detector_spec",
    "response_spec",
    "background_spec",
    "signal_spec",
    "workspace_spec",
    "toys_sb_spec",
    "toys_b_spec",
    "toy_jobs",
    "merge_spec",
    "toy_file_names",
    "background_interaction",
    "INTERACTIONS",
]

#: NEST interaction types with a response matrix
INTERACTIONS = ("NR", "beta", "gammaRay")

#: statistics keys that change how a limit is computed (workspace and merge)
PROCEDURE_KEYS = ("cl", "method", "power_threshold", "test_statistic")

#: statistics keys that change how toys are generated and fitted
LIKELIHOOD_KEYS = ("likelihood", "interpolation_order", "interpolation_floor", "template_rebin")


def as_spec(data: Mapping[str, Any]) -> str:
    """Compact, key-sorted JSON (stable text, so Snakemake's params trigger is exact)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def spec_digest(*parts: Any) -> str:
    """SHA-256 (16 hex digits) of the canonical JSON of ``parts``."""
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def detector_spec(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved detector dictionary."""
    return dict(cfg["detector"])


def response_spec(cfg: Mapping[str, Any], interaction: str) -> dict[str, Any]:
    """Interaction, statistics, seed, analysis binning and cuts of one response matrix."""
    pdf = cfg["pdf"]
    return {"interaction": interaction, "n_samples": pdf["n_samples"], "seed": pdf["seed"],
            "cs1_phd": pdf["cs1_phd"], "log10_cs2_phd": pdf["log10_cs2_phd"],
            "s2_raw_min_phd": pdf["s2_raw_min_phd"]}


def background_interaction(name: str) -> str:
    """The NEST interaction type whose response a background is folded with."""
    from .spectra import background_model

    return background_model(name).nest_interaction


def background_spec(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A background PDF: its normalisation and constraint, nothing else."""
    return dict(cfg["backgrounds"][name], name=name, n_samples=cfg["pdf"]["n_samples"])


def _mass(cfg: Mapping[str, Any], label: str) -> float:
    masses = dict(zip(cfg["signal"]["mass_labels"], cfg["signal"]["masses_GeV"]))
    if label not in masses:
        raise ValueError(f"mass {label} is not in signal.masses_GeV ({', '.join(masses)})")
    return masses[label]


def signal_spec(cfg: Mapping[str, Any], label: str) -> dict[str, Any]:
    """A signal PDF: the mass, the reference cross section, halo and exposure."""
    return {
        "mass_GeV": _mass(cfg, label),
        "mass_label": label,
        "sigma_ref_cm2": cfg["signal"]["sigma_ref_cm2"],
        "halo": cfg["signal"]["halo"],
        "exposure_t_yr": cfg["exposure"]["exposure_t_yr"],
        "n_samples": cfg["pdf"]["n_samples"],
    }


def workspace_spec(cfg: Mapping[str, Any], label: str) -> dict[str, Any]:
    """A workspace: the mass, its POI-grid settings and the statistical procedure."""
    stats = cfg["stats"]
    return {
        "mass_GeV": _mass(cfg, label), "mass_label": label,
        "poi_grid": stats["per_mass"][label]["poi_grid"],
        **{k: stats[k] for k in (*PROCEDURE_KEYS, "discovery_sigma")},
    }


def _likelihood(stats: Mapping[str, Any]) -> dict[str, Any]:
    """Likelihood settings; the binned default adds nothing (so binned specs stay as they were)."""
    if stats.get("likelihood", "binned") == "binned":
        return {}
    return {k: stats[k] for k in LIKELIHOOD_KEYS}


def toys_sb_spec(cfg: Mapping[str, Any], label: str, poi: int, job: int) -> dict[str, Any]:
    """One S+B toy job: POI index, job index and split, toy count, seed, test statistic."""
    stats = cfg["stats"]
    ms = stats["per_mass"][label]
    return {"hypothesis": "sb", "poi_index": int(poi), "job_index": int(job), "n_jobs": ms["jobs_per_poi"],
            "n_toys": ms["toys_per_poi"], "seed": stats["seed"], "test_statistic": stats["test_statistic"],
            **_likelihood(stats)}


def toys_b_spec(cfg: Mapping[str, Any], label: str, job: int) -> dict[str, Any]:
    """One B-only toy job (evaluated on the whole POI grid)."""
    stats = cfg["stats"]
    ms = stats["per_mass"][label]
    return {"hypothesis": "b", "job_index": int(job), "n_jobs": ms["jobs_per_poi"], "n_toys": ms["toys_bonly"],
            "seed": stats["seed"], "test_statistic": stats["test_statistic"], **_likelihood(stats)}


def merge_spec(cfg: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The merge of one mass: the statistical procedure."""
    _mass(cfg, label)
    return {"mass_label": label, **{k: cfg["stats"][k] for k in PROCEDURE_KEYS}}


def toy_jobs(cfg: Mapping[str, Any], label: str) -> list[tuple[str, dict[str, Any]]]:
    """(file name relative to ``m<mass>/``, job spec) of every toy job of one mass: S+B per POI × job,
    then B-only per job."""
    ms = cfg["stats"]["per_mass"][label]
    jobs = range(ms["jobs_per_poi"])
    return [(f"toys/poi{k}/job{j}.npz", toys_sb_spec(cfg, label, k, j))
            for k in range(ms["poi_grid"]["n_points"]) for j in jobs] + [
        (f"toys/bonly/job{j}.npz", toys_b_spec(cfg, label, j)) for j in jobs
    ]


def toy_file_names(cfg: Mapping[str, Any], label: str) -> list[str]:
    """Toy files of one mass, relative to its ``m<mass>/`` directory (see :func:`toy_jobs`)."""
    return [name for name, _ in toy_jobs(cfg, label)]
