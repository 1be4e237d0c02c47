# Config-derived constants and helpers shared by all rules. The science lives in the lzflow
# package; rules only call its console script with a JSON job spec holding what the job needs.
import json
import sys

from snakemake.utils import validate

from lzflow.cli import response_spec_from_config
from lzflow.config import ConfigError, resolve_config
from lzflow.provenance import stage_code_hash

try:
    LZ = resolve_config(config)  # schema + units + cross-field checks: one-line errors, before any job
except ConfigError as err:
    sys.stderr.write(f"lzflow: config error: {err}\n")
    sys.exit(2)
validate(config, "../schemas/config.schema.yaml")  # the same schema, through Snakemake (fills defaults)

RESULTS = f"{LZ['results_dir']}/{LZ['tag']}"
LOGS = f"{LZ['results_dir']}/logs/{LZ['tag']}"
BACKGROUNDS = sorted(LZ["backgrounds"])
MASSES = dict(zip(LZ["signal"]["mass_labels"], LZ["signal"]["masses_GeV"]))


wildcard_constraints:
    background="|".join(BACKGROUNDS),
    mass=r"[0-9]+(\.[0-9]+)?",
    interaction="NR|beta|gammaRay",
    poi=r"[0-9]+",
    job=r"[0-9]+",


def as_spec(data):
    """A job spec as compact, key-sorted JSON (stable text, so Snakemake's params trigger is exact)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def response_spec(wildcards):
    """What a response job needs: interaction, statistics, seed, analysis binning and cuts."""
    return as_spec(response_spec_from_config(LZ, wildcards.interaction))


def _background_interaction(name):
    from lzflow.spectra import background_model

    return background_model(name).nest_interaction


def background_response(wildcards):
    return f"{RESULTS}/response/{_background_interaction(wildcards.background)}.npz"


def background_spec(wildcards):
    """What a background PDF job needs: its normalisation and constraint, nothing else."""
    return as_spec(dict(LZ["backgrounds"][wildcards.background], name=wildcards.background,
                        n_samples=LZ["pdf"]["n_samples"]))


def signal_spec(wildcards):
    """What a signal PDF job needs: this mass, the reference cross section, halo and exposure."""
    if wildcards.mass not in MASSES:
        raise ValueError(f"mass {wildcards.mass} is not in signal.masses_GeV")
    return as_spec({
        "mass_GeV": MASSES[wildcards.mass],
        "mass_label": wildcards.mass,
        "sigma_ref_cm2": LZ["signal"]["sigma_ref_cm2"],
        "halo": LZ["signal"]["halo"],
        "exposure_t_yr": LZ["exposure"]["exposure_t_yr"],
        "n_samples": LZ["pdf"]["n_samples"],
    })


STATS = LZ["stats"]


def _mass_stats(wildcards):
    if wildcards.mass not in MASSES:
        raise ValueError(f"mass {wildcards.mass} is not in signal.masses_GeV")
    return STATS["per_mass"][wildcards.mass]


def workspace_spec(wildcards):
    """What a workspace job needs: this mass, its POI-grid settings and the statistical procedure."""
    return as_spec({
        "mass_GeV": MASSES[wildcards.mass], "mass_label": wildcards.mass,
        "poi_grid": _mass_stats(wildcards)["poi_grid"],
        **{k: STATS[k] for k in ("cl", "method", "power_threshold", "test_statistic", "discovery_sigma")},
    })


def toys_sb_spec(wildcards):
    ms = _mass_stats(wildcards)
    return as_spec({"hypothesis": "sb", "poi_index": int(wildcards.poi), "job_index": int(wildcards.job),
                    "n_jobs": ms["jobs_per_poi"], "n_toys": ms["toys_per_poi"], "seed": STATS["seed"],
                    "test_statistic": STATS["test_statistic"]})


def toys_b_spec(wildcards):
    ms = _mass_stats(wildcards)
    return as_spec({"hypothesis": "b", "job_index": int(wildcards.job), "n_jobs": ms["jobs_per_poi"],
                    "n_toys": ms["toys_bonly"], "seed": STATS["seed"], "test_statistic": STATS["test_statistic"]})


def toy_files(wildcards):
    """Every toy file of one mass: S+B per POI x job and B-only per job."""
    _mass_stats(wildcards)
    return toy_files_of(wildcards.mass)


def toy_files_of(mass):
    ms = STATS["per_mass"][mass]
    base = f"{RESULTS}/m{mass}/toys"
    jobs = range(ms["jobs_per_poi"])
    return [f"{base}/poi{k}/job{j}.npz" for k in range(ms["poi_grid"]["n_points"]) for j in jobs] + [
        f"{base}/bonly/job{j}.npz" for j in jobs
    ]


def merge_spec(wildcards):
    _mass_stats(wildcards)
    return as_spec({"mass_label": wildcards.mass,
                    **{k: STATS[k] for k in ("cl", "method", "power_threshold", "test_statistic")}})


def pdf_targets():
    stems = BACKGROUNDS + [f"wimp_m{label}" for label in MASSES]
    return [f"{RESULTS}/pdfs/{stem}.{ext}" for stem in stems for ext in ("root", "json")]


def all_targets():
    return [f"{RESULTS}/detector.json", f"{RESULTS}/limit_curve.csv", f"{RESULTS}/fit_errors.json"] + pdf_targets()
