# Per mass: workspace -> toy jobs (S+B per POI x job, B-only per job) -> merge; then the curve.
# Each per-mass rule has a *_study twin that makes a study value's tree (see common.smk).
# The toy files are fixed by the config; which job writes them follows the executor (TOY_SPLIT in
# common.smk, lzflow.toysplit): one job per file (rules toys, toys_bonly: clusters) or one job per
# tree and mass (the toys_m<mass>... rules at the end: one machine). The numbers are the same.
# With stats.target_precision (lzflow.precision) the toy files are the first batch: the checkpoint
# `precision` (per mass and round) measures the MC error of the toys so far and lists the extra toy
# files it needs (the same seed streams, further toy indices; one job per mass and round writes them,
# toys_extra_batch, or with the file split one job per file, toys_extra/toys_extra_bonly), until the
# target is met, the bound reached or lzflow.precision.MAX_ROUNDS rounds made; merge reads them all.
from lzflow.precisionjob import (checkpoint_decisions, extra_inputs, extra_toy_args, merge_spec_with_rounds, precision_spec,
                                 precision_trees_or_exit)

PRECISION = precision_trees_or_exit(BASELINE, STUDY_VARIANTS.values())
# LZFLOW_JOB_GROUPS=1 (common.smk): one batch job per tree and mass for workspace -> toy batch -> merge;
# =single: these jobs join the PDFs' group (one batch job in all). Not with the file split (the toy
# jobs go as job arrays, which Slurm cannot group) nor with a target precision (its checkpoint sits
# between toys and merge).
MASS_GROUP = {"1": "mass", "single": PDF_GROUP}.get(JOB_GROUPS) if TOY_SPLIT == "mass" and not PRECISION else None
# Scheduling priorities (higher first; an execution choice: no number depends on them): workspaces,
# then toy jobs and merges, then the per-mass plots. On a few cores the last mass's toys then run
# beside the plots of the others, not alone at the end with a core idle (default analysis, 2 cores:
# 9 toy batches of ~7 s; docs/benchmarks.md). Merges are not held back: a waiting job costs the
# Snakemake controller a stat of each of its inputs at every scheduling pass (a merge has ~45).
# Except where the local split makes one ~100 s toy job per mass and job index (shape systematics,
# lzflow.toysplit): there a merge (~25 s) taken before a ready toy job left the last toy job and the
# last merge alone at the end with a core idle (~120 core-s, default + systematics overlay on 2
# cores); with merges after the toy jobs the merges pair up at the end instead (docs/benchmarks.md).
PRIORITY = {"workspace": 3, "toys": 2, "merge": 1 if any(len(b) > 1 for b in TOY_BATCHES_OF.values()) else 2}


rule workspace:
    """Likelihood workspace of one mass (templates, constraints, POI grid, asymptotic limits), its pyhf and HS3 exports and the nuisance-parameter impacts."""
    priority: PRIORITY["workspace"]
    group: MASS_GROUP
    input:
        signal=out(L.SIGNAL_PDF),
        backgrounds=workspace_backgrounds,
        # read beside each .root by lzflow workspace; declared so that storage plugins stage them
        signal_json=out(L.SIGNAL_PDF_META),
        backgrounds_json=workspace_background_jsons,
        variations=workspace_variations,
    output:
        workspace=out(L.WORKSPACE),
        pyhf=out(L.WORKSPACE_PYHF),
        hs3=out(L.WORKSPACE_HS3),
        impacts=out(L.IMPACTS),
    params:
        spec=workspace_spec,
        code=stage_code_hash("workspace"),
    log:
        log_path("workspace"),
    benchmark:
        bench_path("workspace")
    shell:
        "lzflow workspace --spec {params.spec:q} --signal {input.signal:q} --backgrounds {input.backgrounds:q} "
        "--variations {input.variations:q} --out {output.workspace:q} > {log:q} 2>&1"


use rule workspace as workspace_study with:
    input:
        signal=upstream(L.SIGNAL_PDF),
        backgrounds=workspace_backgrounds,
        signal_json=upstream(L.SIGNAL_PDF_META),
        backgrounds_json=workspace_background_jsons,
        variations=workspace_variations,
    output:
        workspace=study_out(L.WORKSPACE),
        pyhf=study_out(L.WORKSPACE_PYHF),
        hs3=study_out(L.WORKSPACE_HS3),
        impacts=study_out(L.IMPACTS),
    log:
        study_log_path("workspace"),
    benchmark:
        study_bench_path("workspace")


rule toys:
    """One S+B toy file: a block of toys generated at one POI of one mass (the file split, LZFLOW_TOY_JOBS=file)."""
    priority: PRIORITY["toys"]
    input:
        workspace=out(L.WORKSPACE),
        observed=OBSERVED_INPUT,
    output:
        out(L.TOYS_SB),
    params:
        spec=toys_sb_spec,
        code=stage_code_hash("toys"),
        observed=observed_option,
    resources:
        mem_mb=1000,
        runtime=30,
    log:
        log_path("toys"),
    benchmark:
        bench_path("toys")
    shell:
        "lzflow toys --spec {params.spec:q} --workspace {input.workspace:q} {params.observed} --out {output:q} "
        "> {log:q} 2>&1"


use rule toys as toys_study with:
    input:
        workspace=upstream(L.WORKSPACE),
        observed=OBSERVED_INPUT,
    output:
        study_out(L.TOYS_SB),
    log:
        study_log_path("toys"),
    benchmark:
        study_bench_path("toys")


rule toys_bonly:
    """One B-only toy file: a block of background-only toys of one mass, tested on the whole POI grid (the file split)."""
    priority: PRIORITY["toys"]
    input:
        workspace=out(L.WORKSPACE),
        observed=OBSERVED_INPUT,
    output:
        out(L.TOYS_B),
    params:
        spec=toys_b_spec,
        code=stage_code_hash("toys"),
        observed=observed_option,
    resources:
        mem_mb=1000,
        runtime=30,
    log:
        log_path("toys_bonly"),
    benchmark:
        bench_path("toys_bonly")
    shell:
        "lzflow toys --spec {params.spec:q} --workspace {input.workspace:q} {params.observed} --out {output:q} "
        "> {log:q} 2>&1"


use rule toys_bonly as toys_bonly_study with:
    input:
        workspace=upstream(L.WORKSPACE),
        observed=OBSERVED_INPUT,
    output:
        study_out(L.TOYS_B),
    log:
        study_log_path("toys_bonly"),
    benchmark:
        study_bench_path("toys_bonly")


rule merge:
    """One mass's toys -> limit.json (p-values, 90 % CL limit, ±1σ/±2σ bands, PCL, toy vs asymptotic; the two-sided construction and the toy discovery potential when configured) and its fit-error summary."""
    priority: PRIORITY["merge"]
    group: MASS_GROUP
    input:
        workspace=out(L.WORKSPACE),
        toys=toy_files,
        # with a target precision: every round's decision and the extra toys they asked for
        **({"decisions": lambda w: checkpoint_decisions(checkpoints.precision, w.mass),
            "extra": lambda w: extra_inputs(checkpoint_decisions(checkpoints.precision, w.mass), RESULTS,
                                            TOY_SPLIT == "mass")} if PRECISION else {}),
        observed=OBSERVED_INPUT,
    output:
        limit=out(L.LIMIT),
        errors=out(L.MASS_FIT_ERRORS),
    params:
        # with a target precision: each round's toys, errors and whether it met the target (limit.json precision.rounds)
        spec=(lambda w, input: merge_spec_with_rounds(merge_spec(w), input.decisions)) if PRECISION else merge_spec,
        code=stage_code_hash("merge"),
        observed=observed_option,
        extra=(lambda w, input: extra_toy_args(input.get("decisions"), RESULTS)) if PRECISION else "",
    log:
        log_path("merge"),
    benchmark:
        bench_path("merge")
    shell:
        "lzflow merge --spec {params.spec:q} --workspace {input.workspace:q} --toys {input.toys:q} {params.extra} {params.observed} "
        "--out {output.limit:q} --errors-out {output.errors:q} > {log:q} 2>&1"


use rule merge as merge_study with:
    input:
        workspace=upstream(L.WORKSPACE),
        toys=toy_files,
        observed=OBSERVED_INPUT,
    output:
        limit=study_out(L.LIMIT),
        errors=study_out(L.MASS_FIT_ERRORS),
    log:
        study_log_path("merge"),
    benchmark:
        study_bench_path("merge")


# Per mass, as soon as its merge ends (in parallel with the other masses' toys); a change to one
# mass redraws that mass's plots only (lzflow.massplots).
rule mass_plots:
    """One mass's p-value scan and test-statistic distributions."""
    input:
        out(L.LIMIT),
    output:
        pvalues=report(out(L.PVALUES_PLOT), caption="../report/pvalues.rst", category="Per mass",
                       subcategory="p-value scans"),
        teststat=report(out(L.TESTSTAT_PLOT), caption="../report/teststat.rst", category="Per mass",
                        subcategory="test statistics"),
    params:
        code=stage_code_hash("mass_plots"),
    log:
        log_path("mass_plots"),
    shell:
        "lzflow mass-plots --limit {input:q} --pvalues-out {output.pvalues:q} --teststat-out {output.teststat:q} "
        "> {log:q} 2>&1"


rule curve:
    """The limit curve over the masses (CSV and plot, with the published reference)."""
    input:
        limit_files(BASELINE),
    output:
        csv=report(out(L.CURVE_CSV), caption="../report/limit_curve_table.rst", category="Limit curve"),
        plot=report(out(L.CURVE_PLOT), caption="../report/limit_curve.rst", category="Limit curve"),
        # with a configured published reference: lzflow / reference per mass (lzflow.references)
        **({"comparison": out(L.REFERENCE_COMPARISON)} if LZ["reference"] else {}),
    params:
        title=f"lzflow {LZ['tag']}: {LZ['exposure']['exposure_t_yr']:.2f} t yr",
        reference=reference_option(),
        code=stage_code_hash("curve"),
    log:
        log_path("curve"),
    shell:
        "lzflow curve --limits {input:q} --out {output.csv:q} --title {params.title:q} {params.reference} > {log:q} 2>&1"


# Per-mass fit-error summaries (written by merge from the toys it reads) -> one table. Depending on
# the summaries, not on every toy file, keeps this job from adding ~10^4 inputs to the DAG.
rule errors:
    """Fit failures of every mass in one table (JSON and Markdown), from the per-mass summaries."""
    input:
        per_mass(L.MASS_FIT_ERRORS),
    output:
        json=out(L.FIT_ERRORS),
        md=report(out(L.FIT_ERRORS_MD), caption="../report/fit_errors.rst", category="Fit errors"),
    params:
        code=stage_code_hash("errors"),
    log:
        log_path("errors"),
    shell:
        "lzflow errors --summaries {input:q} --out {output.json:q} > {log:q} 2>&1"


# The mass split (LZFLOW_TOY_JOBS=mass, the default): per analysis tree and mass, one job writes
# every toy file that tree makes for the mass, in one process (lzflow.toybatch), each file the one
# its per-file job would write. The per-file rules above stay defined (a cluster job names its rule)
# and rank below these.
for _batch in TOY_BATCHES:

    rule:
        """The toy files of one mass (S+B per POI x job, B-only per job; with shape systematics those of one job index) in one process: the local split, LZFLOW_TOY_JOBS=mass."""
        name:
            _batch.rule
        group:
            MASS_GROUP
        priority:
            PRIORITY["toys"]
        input:
            workspace=_batch.workspace,
            observed=OBSERVED_INPUT,
        output:
            toys=_batch.outputs,
        params:
            spec=toy_batch_spec(_batch),
            code=stage_code_hash("toys"),
            observed=observed_option,
        resources:
            mem_mb=1000,
            runtime=60,
        log:
            _batch.log,
        benchmark:
            _batch.benchmark
        shell:
            "python -m lzflow.toybatch --spec {params.spec:q} --workspace {input.workspace:q} {params.observed} "
            "--out {output.toys:q} > {log:q} 2>&1"

    workflow.ruleorder(_batch.rule, "toys_study" if _batch.suffix else "toys")
    workflow.ruleorder(_batch.rule, "toys_bonly_study" if _batch.suffix else "toys_bonly")


if PRECISION:

    wildcard_constraints:
        round=r"[0-9]+",

    checkpoint precision:
        """Toys to a target precision, round {round} of one mass: the relative bootstrap MC error of its expected limits (median, ±1σ) from the toys so far, and the extra toy files that reach stats.target_precision on the quantities it covers (a number: all three; a mapping: those it names; none when it is met), up to stats.max_toys_per_poi."""
        input:
            workspace=out(L.WORKSPACE),
            toys=toy_files,
            # the rounds before this one: their decisions and extra toys
            previous=lambda w: checkpoint_decisions(checkpoints.precision, w.mass, int(w.round)),
            extra=lambda w: extra_inputs(checkpoint_decisions(checkpoints.precision, w.mass, int(w.round)), RESULTS,
                                         TOY_SPLIT == "mass"),
            observed=OBSERVED_INPUT,
        output:
            out(L.PRECISION_DECISION),
        params:
            spec=lambda w: as_spec(precision_spec(LZ, w.mass)),
            code=stage_code_hash("merge"),
            observed=observed_option,
            extra=lambda w, input: extra_toy_args(input.previous, RESULTS),
            previous=lambda w, input: f"--previous {shlex.quote(input.previous[-1])}" if input.previous else "",
        log:
            log_path("precision"),
        shell:
            "python -m lzflow.precisionjob decide --spec {params.spec:q} --workspace {input.workspace:q} "
            "--toys {input.toys:q} {params.extra} {params.previous} {params.observed} --out {output:q} > {log:q} 2>&1"

    rule toys_extra_batch:
        """Every extra toy file of a mass short of the target precision, in one process (the mass split)."""
        input:
            workspace=out(L.WORKSPACE),
            decision=out(L.PRECISION_DECISION),
            observed=OBSERVED_INPUT,
        output:
            directory(out(L.TOYS_EXTRA_DIR)),
        params:
            code=stage_code_hash("toys"),
            observed=observed_option,
        resources:
            mem_mb=1000,
            runtime=60,
        log:
            log_path("toys_extra_batch"),
        shell:
            "python -m lzflow.precisionjob toys --decision {input.decision:q} --workspace {input.workspace:q} "
            "{params.observed} --out-dir {output:q} > {log:q} 2>&1"

if PRECISION and TOY_SPLIT == "file":

    rule toys_extra:
        """One extra S+B toy file of a mass short of the target precision: the job spec the checkpoint's decision lists for it."""
        input:
            workspace=out(L.WORKSPACE),
            decision=out(L.PRECISION_DECISION),
            observed=OBSERVED_INPUT,
        output:
            out(L.TOYS_SB_EXTRA),
        params:
            code=stage_code_hash("toys"),
            observed=observed_option,
        resources:
            mem_mb=1000,
            runtime=30,
        log:
            log_path("toys_extra"),
        shell:
            "python -m lzflow.precisionjob toys --decision {input.decision:q} --workspace {input.workspace:q} "
            "{params.observed} --out {output:q} > {log:q} 2>&1"

    use rule toys_extra as toys_extra_bonly with:
        output:
            out(L.TOYS_B_EXTRA),
        log:
            log_path("toys_extra_bonly"),
