# Science runs combined in one likelihood (config `runs:`, lzflow.runsconfig). Each run's detector,
# responses, PDFs and workspaces are made in its own tree RESULTS/runs/<run>/ by the *_run twins of
# the single-run rules (wildcard {run}; variant_of in common.smk returns the run's tree; an artefact
# two runs make identically, e.g. one detector's responses, is made once: lzflow.variants.run_variants),
# then one `combine` job per mass writes the analysis tree's m<mass>/workspace.json (and impacts.json),
# which the toys, merge, curve and report rules read unchanged. Without `runs:` nothing here is defined.
# (No functions here, `snakemake --lint`: the paths and specs come from lzflow.runsconfig.)
from lzflow.runsconfig import combine_spec, run_workspace_paths, runs_targets
from lzflow.variants import run_variants

RUN_VARIANTS = run_variants(LZ)
RUN_RESULTS = f"{RESULTS}/{L.RUNS_DIR}/{{run}}"
RUN_LOGS = f"{LOGS}/{L.RUNS_DIR}/{{run}}"
RUN_BENCHMARKS = f"{BENCHMARKS}/{L.RUNS_DIR}/{{run}}"
RUNS_TARGETS = runs_targets(LZ, RUN_VARIANTS, RESULTS)


if RUN_VARIANTS:

    wildcard_constraints:
        run="|".join(re.escape(name) for name in RUN_VARIANTS),

    use rule detector as detector_run with:
        output:
            f"{RUN_RESULTS}/{L.DETECTOR}",
        log:
            f"{RUN_LOGS}/{L.LOGS['detector']}",
        benchmark:
            f"{RUN_BENCHMARKS}/{L.BENCHMARKS['detector']}"

    use rule response as response_run with:
        input:
            detector=upstream(L.DETECTOR),
        output:
            f"{RUN_RESULTS}/{L.RESPONSE}",
        log:
            f"{RUN_LOGS}/{L.LOGS['response']}",
        benchmark:
            f"{RUN_BENCHMARKS}/{L.BENCHMARKS['response']}"

    use rule background_pdf as background_pdf_run with:
        output:
            root=f"{RUN_RESULTS}/{L.BACKGROUND_PDF}",
            json=f"{RUN_RESULTS}/{L.BACKGROUND_PDF_META}",
        log:
            f"{RUN_LOGS}/{L.LOGS['background_pdf']}",
        benchmark:
            f"{RUN_BENCHMARKS}/{L.BENCHMARKS['background_pdf']}"

    use rule signal_pdf as signal_pdf_run with:
        input:
            response=upstream(L.fill(L.RESPONSE, interaction="NR")),
        output:
            root=f"{RUN_RESULTS}/{L.SIGNAL_PDF}",
            json=f"{RUN_RESULTS}/{L.SIGNAL_PDF_META}",
        log:
            f"{RUN_LOGS}/{L.LOGS['signal_pdf']}",
        benchmark:
            f"{RUN_BENCHMARKS}/{L.BENCHMARKS['signal_pdf']}"

    use rule response_variation as response_variation_run with:
        input:
            detector=upstream(L.DETECTOR),
            nominal=upstream(L.RESPONSE),
        output:
            f"{RUN_RESULTS}/{L.RESPONSE_VARIATION}",
        log:
            f"{RUN_LOGS}/{L.LOGS['response_variation']}",
        benchmark:
            f"{RUN_BENCHMARKS}/{L.BENCHMARKS['response_variation']}"

    use rule variation_pdf as variation_pdf_run with:
        output:
            f"{RUN_RESULTS}/{L.VARIATION_PDF}",
        log:
            f"{RUN_LOGS}/{L.LOGS['variation_pdf']}",
        benchmark:
            f"{RUN_BENCHMARKS}/{L.BENCHMARKS['variation_pdf']}"

    use rule workspace as workspace_run with:
        input:
            signal=upstream(L.SIGNAL_PDF),
            backgrounds=workspace_backgrounds,
            signal_json=upstream(L.SIGNAL_PDF_META),
            backgrounds_json=workspace_background_jsons,
            variations=workspace_variations,
        output:
            workspace=f"{RUN_RESULTS}/{L.WORKSPACE}",
            pyhf=f"{RUN_RESULTS}/{L.WORKSPACE_PYHF}",
            hs3=f"{RUN_RESULTS}/{L.WORKSPACE_HS3}",
            impacts=f"{RUN_RESULTS}/{L.IMPACTS}",
        log:
            f"{RUN_LOGS}/{L.LOGS['workspace']}",
        benchmark:
            f"{RUN_BENCHMARKS}/{L.BENCHMARKS['workspace']}"

    rule combine:
        """The analysis workspace of one mass: the runs' workspaces combined (mu shared, the correlated parameters shared by name, the others per run) and its impacts."""
        input:
            lambda wildcards: run_workspace_paths(RUN_VARIANTS, RESULTS, wildcards.mass),
        output:
            workspace=out(L.WORKSPACE),
            impacts=out(L.IMPACTS),
        params:
            spec=lambda wildcards: as_spec(combine_spec(LZ, wildcards.mass)),
            code=stage_code_hash("combine"),
        log:
            log_path("combine"),
        benchmark:
            bench_path("combine")
        shell:
            "python -m lzflow.runsjob --spec {params.spec:q} --workspace {input:q} --out {output.workspace:q} "
            "> {log:q} 2>&1"

    # the analysis tree's workspace is the combination, never a single-run workspace of its own
    ruleorder: combine > workspace
