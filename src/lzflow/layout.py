"""Layout of an analysis: where each stage writes, what each job is told, which code it runs.

One place for the three things the workflow (``workflow/rules/*.smk``), the study expansion
(:mod:`lzflow.variants`) and the report need to agree on:

1. **Artefact paths**, relative to an analysis tree (``<results_dir>/<tag>`` for the baseline,
   ``…/studies/<study>/<value>`` for a study value), as templates whose ``{fields}`` are Snakemake
   wildcards. :func:`fill` sets some fields and keeps the others as wildcards; renaming an output is
   one edit here. Logs and Snakemake benchmark files have templates of their own, relative to
   ``<results_dir>/logs/<tag>`` and ``<results_dir>/benchmarks/<tag>``.
2. **Job specifications**: the slice of a resolved configuration (:func:`lzflow.config.resolve_config`)
   that one job needs, handed to ``lzflow <stage> --spec``. A spec holds exactly the values that
   job's output depends on — no more, so that Snakemake's ``params`` trigger reruns a job only when
   something it uses changes (changing one mass's toy count must not rerun the other masses), and
   no less, so that two jobs with equal specs and equal inputs make equal outputs (which lets a
   study value reuse an upstream output of the baseline, :func:`lzflow.variants.artefact_keys`).
3. **Code hashes per stage**: Snakemake tracks a rule's command, params, inputs and mtimes, but not
   the Python package the command imports. Each rule carries ``code=stage_code_hash("<stage>")`` in
   its params, a SHA-256 over the source files of the modules that stage depends on
   (:data:`STAGE_MODULES`): editing one of them reruns exactly the jobs of the affected stages.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import Any, Mapping

from .construction_stage import merge_keys, poi_points, two_sided, workspace_grid
from .dataconfig import unblinded, window_edges
from .precision import precision_merge_keys
from .searchconfig import fit_search_spec
from .space import INTERACTIONS, SCALED_BETA_PATTERN

__all__ = [
    "fill", "DETECTOR", "RESPONSE", "BACKGROUND_PDF", "BACKGROUND_PDF_META", "SIGNAL_SOURCE", "SIGNAL_PDF",
    "SIGNAL_PDF_META", "WORKSPACE", "WORKSPACE_PYHF", "WORKSPACE_HS3", "IMPACTS", "TOYS_SB", "TOYS_B", "TOYS_SB_EXTRA", "TOYS_B_EXTRA",
    "PRECISION_DECISION", "TOYS_EXTRA_DIR", "LIMIT",
    "MASS_FIT_ERRORS", "PVALUES_PLOT", "TESTSTAT_PLOT", "CURVE_CSV", "CURVE_PLOT", "REFERENCE_COMPARISON", "FIT_ERRORS", "FIT_ERRORS_MD",
    "REPORT", "STUDY_TABLE", "STUDY_TABLE_MD", "STUDY_OVERLAY", "STUDIES_DIR", "LOGS", "BENCHMARKS", "FOG_CSV", "FOG_PLOT", "FOG_JSON",
    "analysis_dirs", "within_mass_pattern", "pdf_path", "pdf_meta_path", "mass_of", "likelihood_spec", "as_spec", "spec_digest", "detector_spec", "response_spec",
    "background_interaction", "used_interactions", "background_spec", "interaction_spec", "signal_spec", "workspace_spec", "toys_sb_spec",
    "toys_b_spec", "cond_fits_spec", "merge_spec", "toy_jobs", "toy_file_names", "STAGE_MODULES", "stage_code_hash", "INTERACTIONS", "SCALED_BETA_PATTERN",
    "PROCEDURE_KEYS", "LIKELIHOOD_KEYS", "RESPONSE_VARIATION", "VARIATION_PDF", "VARIATION_NOMINAL", "systematics_of",
    "response_variations", "source_systematics", "varied_sources", "variation_spec", "variation_pdf_spec",
    "GLOBAL_PVALUE", "GOF", "global_pvalue_spec",
    "source_spec", "source_interaction", "OBSERVED_DATA", "observed_toys_spec", "observed_merge_spec", "data_spec",
    "RUNS_DIR",
]


# ============================================================================ 1. artefact paths
class _KeepMissing(dict):
    """``str.format_map`` mapping that leaves unknown fields as ``{field}`` (a wildcard)."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, **values: Any) -> str:
    """``template`` with the given fields set and the others kept as wildcards:
    ``fill(TOYS_SB, mass="40")`` → ``"m40/toys/poi{poi}/job{job}.npz"``."""
    return template.format_map(_KeepMissing(values))


#: the resolved detector (rule ``detector``)
DETECTOR = "detector.json"
#: NEST response matrix per interaction type (rule ``response``)
RESPONSE = "response/{interaction}.npz"
#: 2D PDF of a source (a ROOT TH2D) and its metadata beside it (rules ``background_pdf``, ``signal_pdf``)
PDF = "pdfs/{source}.root"
PDF_META = "pdfs/{source}.json"
SIGNAL_SOURCE = "wimp_m{mass}"
BACKGROUND_PDF = fill(PDF, source="{background}")
BACKGROUND_PDF_META = fill(PDF_META, source="{background}")
SIGNAL_PDF = fill(PDF, source=SIGNAL_SOURCE)
SIGNAL_PDF_META = fill(PDF_META, source=SIGNAL_SOURCE)
#: detector systematics (config ``systematics``): per interaction, the common-random-number matrices of
#: each systematic's shifts and the CRN nominal they share (``{systematic}`` = ``nominal``), rule
#: ``response_variation``; each affected source's varied templates (rule ``variation_pdf``)
RESPONSE_VARIATION = "response/variations/{interaction}/{systematic}.npz"
VARIATION_NOMINAL = "nominal"
VARIATION_PDF = "pdfs/variations/{source}.json"
#: likelihood workspace per mass and its pyhf / HS3 exports (rule ``workspace``)
WORKSPACE = "m{mass}/workspace.json"
WORKSPACE_PYHF = "m{mass}/workspace.pyhf.json"
WORKSPACE_HS3 = "m{mass}/workspace.hs3.json"
#: each nuisance parameter's impact on the median expected limit and its Asimov constraint (lzflow.impacts)
IMPACTS = "m{mass}/impacts.json"
#: toy files: S+B per POI index × job index (rule ``toys``), B-only per job (rule ``toys_bonly``)
TOYS_SB = "m{mass}/toys/poi{poi}/job{job}.npz"
TOYS_B = "m{mass}/toys/bonly/job{job}.npz"
# toys to a target precision (lzflow.precision): the decision per mass and the extra toy files it asks for
PRECISION_DECISION, TOYS_EXTRA_DIR = "m{mass}/toys/precision_r{round}.json", "m{mass}/toys/extra/r{round}"
TOYS_SB_EXTRA, TOYS_B_EXTRA = TOYS_EXTRA_DIR + "/poi{poi}/job{job}.npz", TOYS_EXTRA_DIR + "/bonly/job{job}.npz"
#: per mass: the limit and the fit-error summary of its toys (rule ``merge``), plots (rule ``mass_plots``)
LIMIT = "m{mass}/limit.json"
MASS_FIT_ERRORS = "m{mass}/fit_errors.json"
PVALUES_PLOT = "m{mass}/pvalues.png"
TESTSTAT_PLOT = "m{mass}/teststat.png"
#: the analysis: limit curve (rule ``curve``), fit errors (rule ``errors``), report (rule ``report``)
CURVE_CSV = "limit_curve.csv"
CURVE_PLOT = "limit_curve.png"
#: the curve against the configured published reference (rule ``curve``; lzflow.references)
REFERENCE_COMPARISON = "reference_comparison.csv"
FIT_ERRORS = "fit_errors.json"
FIT_ERRORS_MD = "fit_errors.md"
REPORT = "report.html"
#: the discovery limit vs exposure and the neutrino fog (rule ``fog``, not part of ``all``; lzflow.fog)
FOG_CSV, FOG_PLOT, FOG_JSON = "fog/fog.csv", "fog/fog.png", "fog/fog.json"
#: the observed event list binned on the analysis window (rule ``observed_data``; unblinded analyses only)
OBSERVED_DATA = "data/observed.json"
#: the global discovery p-value over the masses (rule ``global_pvalue``; unblinded analyses only)
GLOBAL_PVALUE = "global_pvalue.json"
GOF = "m{mass}/gof.json"  # goodness of fit of the data (rule ``gof``, lzflow.gofstage; unblinded only)
#: study trees and each study's table and overlay (rule ``study``), below the baseline's tree
STUDIES_DIR = "studies"
STUDY_TABLE = "studies/{study}/table.csv"
STUDY_TABLE_MD = "studies/{study}/table.md"
STUDY_OVERLAY = "studies/{study}/overlay.png"
#: science runs' trees (config ``runs:``, lzflow.runsconfig): run r's in ``<tree>/runs/<r>``, with this layout
RUNS_DIR = "runs"

#: per rule: its log (relative to <results_dir>/logs/<tag>) and its Snakemake benchmark file
#: (relative to <results_dir>/benchmarks/<tag>); the curve, errors, study and report rules are local
#: and keep no benchmark file
LOGS: dict[str, str] = {
    "detector": "detector.log",
    "response": "response_{interaction}.log",
    "background_pdf": "pdf_{background}.log",
    "signal_pdf": "pdf_wimp_m{mass}.log",
    "workspace": "workspace_m{mass}.log",
    "toys": "m{mass}/toys_poi{poi}_job{job}.log",
    "toys_bonly": "m{mass}/toys_bonly_job{job}.log",
    "toys_batch": "m{mass}/toys_batch.log",  # all of a mass's toy files in one job (lzflow.toysplit)
    "toys_batch_part": "m{mass}/toys_batch_job{job}.log",  # or those of one job index (shape systematics)
    "precision": "m{mass}/precision_r{round}.log", "toys_extra": "m{mass}/toys_extra_r{round}_poi{poi}_job{job}.log",
    "toys_extra_bonly": "m{mass}/toys_extra_r{round}_bonly_job{job}.log", "toys_extra_batch": "m{mass}/toys_extra_r{round}.log",
    "merge": "merge_m{mass}.log",
    "curve": "curve.log", "mass_plots": "m{mass}/plots.log",
    "errors": "errors.log",
    "study": "studies/{study}.log",
    "report": "report.log",
    "fog": "fog.log",
    "response_variation": "response_{interaction}_{systematic}.log",
    "variation_pdf": "pdf_variations_{source}.log",
    "observed_data": "observed_data.log",
    "global_pvalue": "global_pvalue.log", "gof": "m{mass}/gof.log",
    "combine": "combine_m{mass}.log",
}
BENCHMARKS: dict[str, str] = {
    "detector": "detector.tsv",
    "response": "response_{interaction}.tsv",
    "background_pdf": "pdf_{background}.tsv",
    "signal_pdf": "pdf_wimp_m{mass}.tsv",
    "workspace": "m{mass}/workspace.tsv",
    "toys": "m{mass}/toys_poi{poi}_job{job}.tsv",
    "toys_bonly": "m{mass}/toys_bonly_job{job}.tsv",
    "toys_batch": "m{mass}/toys_batch.tsv",
    "toys_batch_part": "m{mass}/toys_batch_job{job}.tsv",
    "merge": "m{mass}/merge.tsv",
    "response_variation": "response_{interaction}_{systematic}.tsv",
    "variation_pdf": "pdf_variations_{source}.tsv",
    "observed_data": "observed_data.tsv",
    "global_pvalue": "global_pvalue.tsv", "gof": "m{mass}/gof.tsv",
    "fog": "fog.tsv",
    "combine": "m{mass}/combine.tsv",
}


def analysis_dirs(results_dir: str, tag: str) -> tuple[str, str, str]:
    """(results, logs, benchmarks) directories of the analysis ``tag``; study trees lie below each,
    in ``<dir>/studies/<study>/<value>``."""
    return f"{results_dir}/{tag}", f"{results_dir}/logs/{tag}", f"{results_dir}/benchmarks/{tag}"


#: what a field of a template matches when a path is read back (:func:`within_mass_pattern`)
FIELD_PATTERNS = {"poi": r"\d+", "job": r"\d+", "round": r"\d+", "mass": r"[0-9]+(?:\.[0-9]+)?"}


@lru_cache(maxsize=None)
def within_mass_pattern(template: str) -> re.Pattern[str]:
    """Regex matching a path that ends with a per-mass ``template`` below its mass directory
    (``TOYS_SB`` → ``…/toys/poi<k>/job<j>.npz``), its fields as named groups: how a file's name
    is read back as the job it stands for (:func:`lzflow.toyjobs.toy_file_identity`)."""
    below = template.split("/", 1)[1]
    parts = re.split(r"\{(\w+)\}", below)
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>{FIELD_PATTERNS.get(part, '[^/]+')})"
                    for i, part in enumerate(parts))
    return re.compile(f"(?:^|/){regex}$")


def pdf_path(source: str) -> str:
    """The PDF (ROOT file) of one source: a background name or :data:`SIGNAL_SOURCE` of a mass."""
    return fill(PDF, source=source)


def pdf_meta_path(source: str) -> str:
    """The metadata (JSON) written beside a source's PDF."""
    return fill(PDF_META, source=source)


# ============================================================================ 2. job specifications
#: statistics keys that change how a limit is computed (workspace and merge)
PROCEDURE_KEYS = ("cl", "method", "power_threshold", "test_statistic")

#: statistics keys that change how toys are generated and fitted
LIKELIHOOD_KEYS = ("likelihood", "interpolation_order", "interpolation_floor", "template_rebin")


def as_spec(data: Mapping[str, Any]) -> str:
    """Compact, key-sorted JSON (stable text, so Snakemake's params trigger is exact)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def spec_digest(*parts: Any) -> str:
    """SHA-256 (16 hex digits) of the canonical JSON of ``parts``."""
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


def background_interaction(cfg: Mapping[str, Any], name: str) -> str:
    """The NEST interaction type whose response a background is folded with: its configured yield
    model (``backgrounds.<name>.nest_yields``)."""
    return cfg["backgrounds"][name]["nest_yields"]


def used_interactions(cfg: Mapping[str, Any]) -> list[str]:
    """The NEST interaction types whose response matrix an analysis folds: ``NR`` for the WIMP signal
    and the yield model of each background (in :data:`INTERACTIONS` order, then the charge-scaled β
    models ``beta_Q<Q>`` in name order); no other is made."""
    used = {"NR", *(background_interaction(cfg, name) for name in cfg["backgrounds"])}
    return [inter for inter in INTERACTIONS if inter in used] + sorted(used - set(INTERACTIONS))


def background_spec(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A background PDF: its normalisation, constraint and yield model, nothing else."""
    return dict(cfg["backgrounds"][name], name=name, n_samples=cfg["pdf"]["n_samples"])


def mass_of(cfg: Mapping[str, Any], label: str) -> float:
    """The mass (GeV) of a mass label of the configuration."""
    masses = dict(zip(cfg["signal"]["mass_labels"], cfg["signal"]["masses_GeV"]))
    if label not in masses:
        raise ValueError(f"mass {label} is not in signal.masses_GeV ({', '.join(masses)})")
    return masses[label]


def interaction_spec(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The WIMP coupling (``signal.interaction``) of a signal PDF or merge job; SI, the default, adds
    nothing (SI specs stay as they were, so existing SI results are not rerun)."""
    interaction = cfg["signal"].get("interaction", "SI")
    return {} if interaction == "SI" else {"interaction": interaction}


def signal_spec(cfg: Mapping[str, Any], label: str) -> dict[str, Any]:
    """A signal PDF: the mass, the reference cross section, halo, exposure and coupling."""
    return {
        "mass_GeV": mass_of(cfg, label),
        "mass_label": label,
        "sigma_ref_cm2": cfg["signal"]["sigma_ref_cm2"],
        "halo": cfg["signal"]["halo"],
        "exposure_t_yr": cfg["exposure"]["exposure_t_yr"],
        "n_samples": cfg["pdf"]["n_samples"],
        **interaction_spec(cfg),
        # signal.selection_efficiency: only when not 1 (the default), so default specs stay as they were
        **({} if cfg["signal"].get("selection_efficiency", 1.0) == 1.0
           else {"selection_efficiency": cfg["signal"]["selection_efficiency"]}),
    }


def workspace_spec(cfg: Mapping[str, Any], label: str) -> dict[str, Any]:
    """A workspace: the mass, its POI-grid settings, the statistical procedure and (only with a
    ``systematics`` block) the names of the detector systematics, in order, and their morphing."""
    stats = cfg["stats"]
    names = list(systematics_of(cfg))
    return {
        "mass_GeV": mass_of(cfg, label), "mass_label": label,
        "poi_grid": workspace_grid(stats, label),  # two_sided: μ = 0 in front (lzflow.construction_stage)
        **{k: stats[k] for k in (*PROCEDURE_KEYS, "discovery_sigma")},
        **({"systematics": names, "interpolation": cfg["systematics"]["interpolation"]} if names else {}),
        **({"mc_stat": {"threshold": stats["mc_stat"]["threshold"]}} if (stats.get("mc_stat") or {}).get("enabled") else {}),
    }


# ---------------------------------------------------------------------------- detector systematics
def systematics_of(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved systematics (name → entry, :func:`lzflow.response.variations.resolve_systematics`);
    empty without a ``systematics`` block."""
    return dict((cfg.get("systematics") or {}).get("parameters") or {})


def source_interaction(cfg: Mapping[str, Any], source: str) -> str:
    """The interaction type a source is folded with (``wimp_m<mass>``: NR)."""
    return "NR" if source.startswith("wimp_m") else background_interaction(cfg, source)


def source_systematics(cfg: Mapping[str, Any], source: str) -> list[str]:
    """The systematics that vary a source (a background name or ``wimp_m<mass>``: ``signal``)."""
    listed = "signal" if source.startswith("wimp_m") else source
    inter = source_interaction(cfg, source)
    return [name for name, spec in systematics_of(cfg).items()
            if listed in spec["sources"] and inter in spec["interactions"]]


def varied_sources(cfg: Mapping[str, Any]) -> list[str]:
    """Every source with at least one systematic: backgrounds (sorted), then the signal per mass."""
    sources = sorted(cfg["backgrounds"]) + [fill(SIGNAL_SOURCE, mass=m) for m in cfg["signal"]["mass_labels"]]
    return [s for s in sources if source_systematics(cfg, s)]


def response_variations(cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(interaction, systematic) of every variation matrix: per interaction a varied source is
    folded with, the CRN nominal (:data:`VARIATION_NOMINAL`) and each systematic acting there."""
    pairs: dict[tuple[str, str], None] = {}
    for inter in used_interactions(cfg):
        names = {n for s in varied_sources(cfg) if source_interaction(cfg, s) == inter
                 for n in source_systematics(cfg, s)}
        if names:
            pairs[(inter, VARIATION_NOMINAL)] = None
            pairs.update({(inter, n): None for n in systematics_of(cfg) if n in names})
    return list(pairs)


def variation_spec(cfg: Mapping[str, Any], interaction: str, systematic: str) -> dict[str, Any]:
    """A variation-matrix job: the CRN statistics and seed and (not for the nominal) the parameter's
    physical definition; which sources it acts on is left out (it changes no matrix)."""
    spec = {"interaction": interaction, "systematic": systematic, "seed": cfg["pdf"]["seed"],
            "n_samples_fraction": cfg["systematics"]["n_samples_fraction"]}
    if systematic != VARIATION_NOMINAL:
        spec["parameter"] = {k: v for k, v in systematics_of(cfg)[systematic].items() if k != "sources"}
    return spec


def source_spec(cfg: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The PDF spec of a source: :func:`signal_spec` of ``wimp_m<mass>``, else :func:`background_spec`."""
    if source.startswith("wimp_m"):
        return signal_spec(cfg, source[len("wimp_m"):])
    return background_spec(cfg, source)


def variation_pdf_spec(cfg: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A source's varied templates: its PDF spec and the systematics acting on it."""
    return {**source_spec(cfg, source), "systematics": source_systematics(cfg, source)}


def likelihood_spec(stats: Mapping[str, Any]) -> dict[str, Any]:
    """Likelihood settings of a toy job; the binned default adds nothing (binned specs stay as they were)."""
    if stats.get("likelihood", "binned") == "binned":
        return {}
    return {k: stats[k] for k in LIKELIHOOD_KEYS}


def cond_fits_spec(stats: Mapping[str, Any]) -> dict[str, Any]:
    """``cond_fits: needed`` in the toy jobs of a one-sided limit with q̃ or q (no conditional fit where
    μ̂ > μ: q = 0 there whatever it gives, :mod:`lzflow.stats.toyfits`); nothing for the two-sided
    construction, whose t_μ reads the fit at every μ, nor for q0."""
    from .stats.teststat import ONE_SIDED_TEST_STATISTICS

    if two_sided(stats) or stats["test_statistic"] not in ONE_SIDED_TEST_STATISTICS:
        return {}
    return {"cond_fits": "needed"}


def toys_sb_spec(cfg: Mapping[str, Any], label: str, poi: int, job: int) -> dict[str, Any]:
    """One S+B toy job: POI index, job index and split, toy count, seed, test statistic."""
    stats = cfg["stats"]
    ms = stats["per_mass"][label]
    return {"hypothesis": "sb", "poi_index": int(poi), "job_index": int(job), "n_jobs": ms["jobs_per_poi"],
            "n_toys": ms["toys_per_poi"], "seed": stats["seed"], "test_statistic": stats["test_statistic"],
            **likelihood_spec(stats), **observed_toys_spec(cfg), **cond_fits_spec(stats), **fit_search_spec(stats)}


def toys_b_spec(cfg: Mapping[str, Any], label: str, job: int) -> dict[str, Any]:
    """One B-only toy job (evaluated on the whole POI grid)."""
    stats = cfg["stats"]
    ms = stats["per_mass"][label]
    return {"hypothesis": "b", "job_index": int(job), "n_jobs": ms["jobs_per_poi"], "n_toys": ms["toys_bonly"],
            "seed": stats["seed"], "test_statistic": stats["test_statistic"], **likelihood_spec(stats),
            **observed_toys_spec(cfg), **cond_fits_spec(stats), **fit_search_spec(stats)}


def merge_spec(cfg: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The merge of one mass: the statistical procedure and which cross section the limit is on."""
    mass_of(cfg, label)
    return {"mass_label": label, **{k: cfg["stats"][k] for k in PROCEDURE_KEYS}, **interaction_spec(cfg),
            **observed_merge_spec(cfg), **merge_keys(cfg["stats"]), **precision_merge_keys(cfg["stats"])}


def observed_toys_spec(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``observed_data: true`` in the toy jobs of an unblinded analysis (toys at the data's fits);
    nothing otherwise (a blind analysis and one without data have the same toys)."""
    return {"observed_data": True} if unblinded(cfg) else {}


def observed_merge_spec(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What merge knows of the observed data: nothing without data, ``blind: true`` in a blind
    analysis (nothing of the data is read), else ``blind: false`` and the discovery toys."""
    if cfg.get("data") is None:
        return {}
    if not unblinded(cfg):
        return {"blind": True}
    return {"blind": False, "discovery_toys": int(cfg["data"]["discovery_toys"])}


def data_spec(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The binning of the event list (rule ``observed_data``): how to read it and the analysis
    window, the pdf axes' edges (:func:`lzflow.observeddata.bin_observed`)."""
    cs1, log10cs2 = window_edges(cfg["pdf"])
    return {**{k: cfg["data"][k] for k in ("format", "columns", "units", "tree")},
            "window": {"cS1_edges": cs1, "log10cS2_edges": log10cs2}}


def global_pvalue_spec(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The global p-value over the masses (rule ``global_pvalue``, unblinded analyses only;
    lzflow.globalcli): as many background-only datasets as the local discovery toys, the toys' seed."""
    return {"blind": False, "n_toys": int(cfg["data"]["discovery_toys"]), "seed": int(cfg["stats"]["seed"])}


def toy_jobs(cfg: Mapping[str, Any], label: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(toy file, benchmark file, job spec) of every toy job of one mass, relative to the tree's
    results and benchmarks directories: S+B per POI × job, then B-only per job."""
    ms = cfg["stats"]["per_mass"][label]
    jobs = range(ms["jobs_per_poi"])
    sb = [(fill(TOYS_SB, mass=label, poi=k, job=j), fill(BENCHMARKS["toys"], mass=label, poi=k, job=j),
           toys_sb_spec(cfg, label, k, j)) for k in range(poi_points(cfg["stats"], label)) for j in jobs]
    b = [(fill(TOYS_B, mass=label, job=j), fill(BENCHMARKS["toys_bonly"], mass=label, job=j),
          toys_b_spec(cfg, label, j)) for j in jobs]
    return sb + b


def toy_file_names(cfg: Mapping[str, Any], label: str) -> list[str]:
    """Toy files of one mass, relative to the tree (see :func:`toy_jobs`)."""
    return [name for name, _, _ in toy_jobs(cfg, label)]


# ============================================================================ 3. code per stage
#: names served by :mod:`lzflow.stagecode`, imported on first use (:func:`__getattr__`)
_STAGECODE_NAMES = ("PACKAGE_DIR", "RESPONSE_SPECTRA", "STAGE_MODULES", "spectra_imports", "stage_code_hash")


def __getattr__(name: str) -> Any:
    """The code-hash names of :mod:`lzflow.stagecode` (PEP 562), so that a job importing the layout
    does not read the package's sources."""
    if name in _STAGECODE_NAMES:
        from . import stagecode

        return getattr(stagecode, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
