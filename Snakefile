# lzflow: projected WIMP sensitivity of a liquid-xenon TPC.
#   snakemake --cores all                      # default analysis (config/config.yaml)
#   snakemake --cores 2 --configfile config/quick.yaml
#   snakemake -n                               # show the job graph
#   snakemake --cores all --configfile config/config.yaml config/studies/g1.yaml   # a study
#   snakemake --report results/lz_projection/snakemake_report.html   # Snakemake's report (lzflow's: report.html)
from snakemake.utils import min_version

min_version("9.0")


# No `configfile:` here: Snakemake would merge it under every --configfile, silently completing a
# user's config from the default one. The configuration is loaded in workflow/rules/common.smk
# (lzflow.workflow_gate): the --configfile stack, or config/config.yaml when none is given.


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/detector.smk"
include: "workflow/rules/pdfs.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/global.smk"
include: "workflow/rules/gof.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/studies.smk"
include: "workflow/rules/fog.smk"
include: "workflow/rules/runs.smk"


from lzflow.reblind import remove_stale_observed
from lzflow.runguard import lock_results_or_exit, require_storage_tools


# Checks before any job (lzflow.runguard), each a one-line error. The node-scratch profiles stage
# every file with rsync: say so now if it is missing (every job re-reads this file, on its node too).
require_storage_tools(workflow.storage_settings.default_storage_provider)


# One run at a time per results tree, from any checkout (lzflow.locking), and a tree that can be
# written: checked once the DAG is built, before any job runs or any output is removed; dry runs
# check nothing.
onstart:
    lock_results_or_exit(RESULTS, workflow.storage_settings.default_storage_provider,
                         workflow.storage_settings.default_storage_prefix, also_writable=[LOGS, BENCHMARKS])
    # a blind analysis leaves no output of an earlier unblinded run in its trees (lzflow.reblind)
    remove_stale_observed(RESULTS, LOGS, BENCHMARKS, UNBLINDED, EVENTS_FILE)


localrules:
    all,
    curve,
    mass_plots,
    errors,
    study,
    report,


rule all:
    """Everything: the curve, report and fit errors, the studies, and every artefact of every analysis tree."""
    default_target: True
    input:
        RUNS_TARGETS if RUN_VARIANTS else all_targets(),
        GLOBAL_PVALUE_TARGETS,  # unblinded analyses only (workflow/rules/global.smk)
        GOF_TARGETS,  # unblinded analyses only (workflow/rules/gof.smk)
