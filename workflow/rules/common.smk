# Config-derived constants and helpers shared by all rules. The science lives in the lzflow
# package; rules only call its console script with a JSON job spec holding what the job needs.
#
# Analysis trees: the baseline in RESULTS, and one tree per study value in
# RESULTS/studies/<study>/<value> (lzflow.variants). Each rule makes the baseline's artefacts with
# plain paths; its `<rule>_study` twin (`use rule … with`) makes a study value's, with the
# wildcard {variant} = "<study>/<value>", and reads each input from the tree that owns it (a study
# reuses every output it does not change). Keeping the baseline's paths free of a leading wildcard
# lets Snakemake find each file's producer by path prefix, which keeps DAG building fast.
import gc
import os
import re
import shlex

from lzflow import layout as L
from lzflow.layout import as_spec, stage_code_hash
from lzflow.toybatch import pack_specs
from lzflow.toysplit import toy_batches
from lzflow.workflow_gate import toy_split_or_exit, workflow_config

# Garbage collection: a large DAG keeps ~65 container objects per job alive to the end of the run
# (0.84 M for 10,479 jobs) while allocating many more, and CPython's default collector (thresholds
# 700, 10, 10) rescans the survivors again and again: ~20 % of a 10,000-job dry run
# (benchmarks/bench_dag.py). Freeze what exists now (Snakemake's and lzflow's modules: never
# garbage) out of future collections, and collect the young generation every
# 50,000 allocations. Peak memory is unchanged (342 MB for that dry run either way); cyclic garbage
# is still collected.
gc.freeze()
gc.set_threshold(50_000, 20, 10)

# The configuration: the --configfile stack (config/config.yaml when none is given) and --config
# overrides, loaded as `lzflow validate` loads it (each file with its `base:` chain; nothing merged
# in silently), then schema + units + cross-field checks of the baseline and of every study value:
# one-line errors, before any job. Snakemake's own `config` is replaced by it (for its report).
RAW_CONFIG, BASELINE, STUDIES = workflow_config(workflow.config_settings.configfiles, workflow.config_settings.config)
config.clear()
config.update(RAW_CONFIG)

LZ = BASELINE.config
RESULTS, LOGS, BENCHMARKS = L.analysis_dirs(LZ["results_dir"], LZ["tag"])
# the same trees for the *_study rules: {variant} is "<study>/<value>"
STUDY_RESULTS = f"{RESULTS}/{L.STUDIES_DIR}/{{variant}}"
STUDY_LOGS = f"{LOGS}/{L.STUDIES_DIR}/{{variant}}"
STUDY_BENCHMARKS = f"{BENCHMARKS}/{L.STUDIES_DIR}/{{variant}}"
BACKGROUNDS = sorted(LZ["backgrounds"])
MASSES = dict(zip(LZ["signal"]["mass_labels"], LZ["signal"]["masses_GeV"]))
STUDY_VARIANTS = {v.suffix[len(f"/{L.STUDIES_DIR}/"):]: v for s in STUDIES for v in s.variants}
STUDY_BY_NAME = {s.name: s for s in STUDIES}
# detector systematics (config `systematics`): the variation matrices' and varied templates' names
SYSTEMATICS = sorted({n for v in [BASELINE, *STUDY_VARIANTS.values()] for n in L.systematics_of(v.config)})
VARIED_SOURCES = sorted({s for v in [BASELINE, *STUDY_VARIANTS.values()] for s in L.varied_sources(v.config)})

# How toy files are bundled into jobs, an execution choice that changes no number (lzflow.toysplit):
# LZFLOW_TOY_JOBS=mass (default; local runs) -> one job per tree and mass (TOY_BATCHES, rules in
# stats.smk); =file (set by the cluster profiles) -> one job per toy file (rules toys, toys_bonly).
TOY_SPLIT = toy_split_or_exit()
TOY_BATCHES = toy_batches([BASELINE, *STUDY_VARIANTS.values()], RESULTS, LOGS, BENCHMARKS) if TOY_SPLIT == "mass" else []
TOY_BATCHES_OF = {}  # (tree suffix, mass) -> its batch jobs (one, or one per job index: lzflow.toysplit)
for _b in TOY_BATCHES:
    TOY_BATCHES_OF.setdefault((_b.suffix, _b.mass), []).append(_b)

# LZFLOW_JOB_GROUPS (set by profiles/slurm-small): Snakemake job groups on a cluster, so that a batch job's
# fixed cost (sbatch, two Snakemake start-ups, the status poll that sees it end) is paid per group, not
# per rule. A group job holds the connected jobs of one group name.
#   1: "pdfs", per interaction its response (and systematic variations) and every PDF folded from it;
#      "mass" (MASS_GROUP, stats.smk), per tree and mass its workspace -> toy batch -> merge. Two levels
#      of batch jobs; the groups of one level can run on different nodes.
#   single: one name ("analysis") for both, so every batch job of the run is ONE group job (one level,
#      one node: right for a one-node cluster, where the jobs run one after the other anyway; on several
#      nodes it leaves all but one idle).
#   0 or unset: no groups. Local runs ignore groups; no number depends on them (docs/cluster.md).
JOB_GROUPS = os.environ.get("LZFLOW_JOB_GROUPS", "0")
if JOB_GROUPS not in ("0", "1", "single"):
    raise SystemExit(f"lzflow: config error: LZFLOW_JOB_GROUPS={JOB_GROUPS!r}: expected 0, 1 or single")
PDF_GROUP = {"1": "pdfs", "single": "analysis"}.get(JOB_GROUPS)


wildcard_constraints:
    variant="|".join(re.escape(name) for name in STUDY_VARIANTS) or "(?!)",
    study="|".join(re.escape(name) for name in STUDY_BY_NAME) or "(?!)",
    background="|".join(BACKGROUNDS),
    mass=r"[0-9]+(\.[0-9]+)?",
    interaction="|".join([*L.INTERACTIONS, L.SCALED_BETA_PATTERN]),  # + charge-scaled beta models (lzflow.space)
    poi=r"[0-9]+",
    job=r"[0-9]+",
    systematic="|".join(re.escape(n) for n in [L.VARIATION_NOMINAL, *SYSTEMATICS]),
    source="|".join(re.escape(name) for name in VARIED_SOURCES) or "(?!)",


def variant_of(wildcards):
    """The analysis tree of a job: a study value's (*_study rules) or the baseline's."""
    name = wildcards.get("variant")
    if wildcards.get("run") is not None:  # a science run's tree (runs.smk)
        return RUN_VARIANTS[wildcards.run]
    return BASELINE if name is None else STUDY_VARIANTS[name]


def cfg_of(wildcards):
    """The resolved configuration of the job's analysis tree."""
    return variant_of(wildcards).config


# ----------------------------------------------------------------------------- paths (lzflow.layout)
def out(template):
    """Output path of a baseline rule: a layout template in the baseline's tree."""
    return f"{RESULTS}/{template}"


def study_out(template):
    """Output path of a *_study rule: a layout template in the tree of study value {variant}."""
    return f"{STUDY_RESULTS}/{template}"


def log_path(rule):
    return f"{LOGS}/{L.LOGS[rule]}"


def study_log_path(rule):
    return f"{STUDY_LOGS}/{L.LOGS[rule]}"


def bench_path(rule):
    return f"{BENCHMARKS}/{L.BENCHMARKS[rule]}"


def study_bench_path(rule):
    return f"{STUDY_BENCHMARKS}/{L.BENCHMARKS[rule]}"


def upstream(template):
    """Input of a *_study rule: artefact ``template`` (filled with the wildcards) of the job's tree,
    from the tree that owns it (the baseline's, another value's or its own)."""

    def path(wildcards):
        return variant_of(wildcards).path(RESULTS, L.fill(template, **dict(wildcards.items())))

    return path


# ----------------------------------------------------------------------------- job specs (lzflow.layout)
def detector_spec(wildcards):
    return as_spec(L.detector_spec(cfg_of(wildcards)))


def response_spec(wildcards):
    """What a response job needs: interaction, statistics, seed, analysis binning and cuts."""
    return as_spec(L.response_spec(cfg_of(wildcards), wildcards.interaction))


def background_response(wildcards):
    interaction = L.background_interaction(cfg_of(wildcards), wildcards.background)
    return variant_of(wildcards).path(RESULTS, L.fill(L.RESPONSE, interaction=interaction))


def background_spec(wildcards):
    """What a background PDF job needs: its normalisation and constraint, nothing else."""
    return as_spec(L.background_spec(cfg_of(wildcards), wildcards.background))


def signal_spec(wildcards):
    """What a signal PDF job needs: this mass, the reference cross section, halo and exposure."""
    return as_spec(L.signal_spec(cfg_of(wildcards), wildcards.mass))


def workspace_backgrounds(wildcards):
    v = variant_of(wildcards)
    return [v.path(RESULTS, L.pdf_path(name)) for name in sorted(v.config["backgrounds"])]


def workspace_background_jsons(wildcards):
    v = variant_of(wildcards)
    return [v.path(RESULTS, L.pdf_meta_path(name)) for name in sorted(v.config["backgrounds"])]


def variation_spec(wildcards):
    """A variation-matrix job: CRN statistics, seed and the systematic's physical definition."""
    return as_spec(L.variation_spec(cfg_of(wildcards), wildcards.interaction, wildcards.systematic))


def variation_pdf_spec(wildcards):
    return as_spec(L.variation_pdf_spec(cfg_of(wildcards), wildcards.source))


def variation_pdf_inputs(wildcards):
    """A source's nominal PDF, the CRN nominal matrix of its interaction and the variation matrices
    of the systematics acting on it, each from the tree that owns it."""
    v, source = variant_of(wildcards), wildcards.source
    inter = L.source_interaction(v.config, source)
    matrix = lambda name: v.path(RESULTS, L.fill(L.RESPONSE_VARIATION, interaction=inter, systematic=name))
    return {"pdf": v.path(RESULTS, L.pdf_path(source)), "pdf_json": v.path(RESULTS, L.pdf_meta_path(source)),
            "crn": matrix(L.VARIATION_NOMINAL), "variations": [matrix(n) for n in L.source_systematics(v.config, source)]}


def workspace_variations(wildcards):
    """The varied templates of this mass's workspace (none without a systematics block)."""
    v = variant_of(wildcards)
    sources = [*sorted(v.config["backgrounds"]), L.fill(L.SIGNAL_SOURCE, mass=wildcards.mass)]
    return [v.path(RESULTS, L.fill(L.VARIATION_PDF, source=s)) for s in sources if L.source_systematics(v.config, s)]


def workspace_spec(wildcards):
    """What a workspace job needs: this mass, its POI-grid settings and the statistical procedure."""
    return as_spec(L.workspace_spec(cfg_of(wildcards), wildcards.mass))


def toys_sb_spec(wildcards):
    return as_spec(L.toys_sb_spec(cfg_of(wildcards), wildcards.mass, wildcards.poi, wildcards.job))


def toys_b_spec(wildcards):
    return as_spec(L.toys_b_spec(cfg_of(wildcards), wildcards.mass, wildcards.job))


def toy_files(wildcards):
    """Every toy file of one mass of the job's tree: S+B per POI x job and B-only per job."""
    variant, mass = variant_of(wildcards), wildcards.mass
    return [variant.path(RESULTS, name) for name in L.toy_file_names(variant.config, mass)]


def merge_spec(wildcards):
    return as_spec(L.merge_spec(cfg_of(wildcards), wildcards.mass))


def limit_files(variant, masses=None):
    return [variant.path(RESULTS, L.fill(L.LIMIT, mass=mass)) for mass in (masses or variant.mass_labels)]


def per_mass(template):
    """A per-mass layout template of the baseline, for every mass."""
    return [out(L.fill(template, mass=mass)) for mass in MASSES]


# ----------------------------------------------------------------------------- studies
def _study_variants(wildcards):
    study = STUDY_BY_NAME[wildcards.study]
    return study, [BASELINE] + study.variants


def _toy_benchmarks(variant, mass):
    """Snakemake benchmark files of one mass's toy jobs, where the jobs that made the toys wrote them:
    one per toy file (file split), or every batch that made some of them (mass split)."""
    if TOY_SPLIT == "mass":
        names = L.toy_file_names(variant.config, mass)
        files = {f"{RESULTS}{variant.owner[name]}/{name}" for name in names}
        owners = dict.fromkeys(variant.owner[name] for name in names)
        return [b.benchmark for owner in owners for b in TOY_BATCHES_OF[owner, mass] if files.intersection(b.outputs)]
    return [f"{BENCHMARKS}{variant.owner[name]}/{bench}" for name, bench, _ in L.toy_jobs(variant.config, mass)]


def toy_batch_spec(batch):
    """The packed job specs of a batch job (lzflow.toybatch), in the order of its outputs."""
    return as_spec(pack_specs(batch.specs))


def study_inputs(wildcards):
    """Limits per (variant, mass) in study order, then the toy jobs' benchmark files (for run times)."""
    study, variants = _study_variants(wildcards)
    return {
        "limits": [v.path(RESULTS, L.fill(L.LIMIT, mass=m)) for v in variants for m in study.masses],
        "benchmarks": [b for v in variants for m in study.masses for b in _toy_benchmarks(v, m)],
    }


def study_spec(wildcards):
    """The study's layout: parameter, values and masses, and how many benchmark files each (variant, mass) has."""
    study, variants = _study_variants(wildcards)
    return as_spec({
        "name": study.name, "parameter": study.parameter, "baseline_value": study.baseline_value,
        "description": study.description, "masses": study.masses,
        "variants": [{"label": v.label, "value": v.value,
                      "n_benchmarks": [len(_toy_benchmarks(v, m)) for m in study.masses]} for v in variants],
    })


def report_spec(wildcards):
    """The report's provenance: the resolved baseline configuration, and the study names in input order."""
    return as_spec({"title": f"lzflow {LZ['tag']}: projected sensitivity", "config": LZ,
                    "studies": [s.name for s in STUDIES]})


def reference_option():
    """``--reference <name>`` for the curve job when the config names a published reference (quoted)."""
    return f"--reference {shlex.quote(LZ['reference'])}" if LZ["reference"] else ""


def comparison_option():
    """``--reference-comparison <csv>`` for the report job when the curve job writes one (quoted)."""
    return f"--reference-comparison {shlex.quote(out(L.REFERENCE_COMPARISON))}" if LZ["reference"] else ""


# ----------------------------------------------------------------------------- targets
def study_targets(templates=(L.STUDY_TABLE, L.STUDY_TABLE_MD, L.STUDY_OVERLAY)):
    return [out(L.fill(t, study=s.name)) for s in STUDIES for t in templates]


def tree_targets(variant):
    """Every artefact of one analysis tree, at the path of the tree that makes it. All of them are
    targets of `all`, so that one deleted, lost in a failure or moved aside by merge (a corrupt toy
    file) is made again by the next run: Snakemake does not remake a missing intermediate file
    whose downstream outputs still exist."""
    sources = sorted(variant.config["backgrounds"]) + [L.fill(L.SIGNAL_SOURCE, mass=m) for m in variant.mass_labels]
    rels = [L.DETECTOR, *(L.fill(L.RESPONSE, interaction=i) for i in L.used_interactions(variant.config)),
            *(path for s in sources for path in (L.pdf_path(s), L.pdf_meta_path(s)))]
    for mass in variant.mass_labels:
        rels += [L.fill(t, mass=mass) for t in (L.WORKSPACE, L.WORKSPACE_PYHF, L.WORKSPACE_HS3, L.IMPACTS, L.LIMIT)]
        rels += L.toy_file_names(variant.config, mass)
    # detector systematics: variation matrices and varied templates (each at its owner's path)
    rels += [L.fill(L.RESPONSE_VARIATION, interaction=i, systematic=n) for i, n in L.response_variations(variant.config)]
    rels += [L.fill(L.VARIATION_PDF, source=s) for s in L.varied_sources(variant.config)]
    paths = [variant.path(RESULTS, rel) for rel in rels]
    # a mass's fit-error summary is made by the merge job of its limit, in that job's tree
    return paths + [f"{RESULTS}{variant.owner.get(L.fill(L.LIMIT, mass=m), variant.suffix)}/"
                    f"{L.fill(L.MASS_FIT_ERRORS, mass=m)}" for m in variant.mass_labels]


def all_targets():
    trees = [BASELINE] + [v for s in STUDIES for v in s.variants]
    per_tree = list(dict.fromkeys(path for v in trees for path in tree_targets(v)))
    comparison = [out(L.REFERENCE_COMPARISON)] if LZ["reference"] else []
    return [out(L.CURVE_CSV), *comparison, out(L.FIT_ERRORS), out(L.REPORT)] + per_tree + study_targets()
