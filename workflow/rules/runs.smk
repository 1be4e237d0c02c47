# Science runs combined in one likelihood (config `runs:`, lzflow.runsconfig). Each run's detector,
# responses, PDFs and workspaces are made in its own tree RESULTS/runs/<run>/ by the *_run twins of
# the single-run rules (wildcard {run}; variant_of in common.smk returns the run's tree; an artefact
# two runs make identically, e.g. one detector's responses, is made once: lzflow.variants.run_variants), then one
# `combine` job per mass writes the analysis tree's m<mass>/workspace.json (and impacts.json), which
# the toys, merge, curve and report rules read unchanged. Without `runs:` nothing here is defined.
from lzflow.runsconfig import combine_spec as _combine_spec
from lzflow.runsconfig import combined_artefacts, run_artefacts
from lzflow.variants import run_variants

RUN_VARIANTS = run_variants(LZ)
RUN_RESULTS = f"{RESULTS}/{L.RUNS_DIR}/{{run}}"
RUN_LOGS = f"{LOGS}/{L.RUNS_DIR}/{{run}}"
RUN_BENCHMARKS = f"{BENCHMARKS}/{L.RUNS_DIR}/{{run}}"


def run_out(template):
    """Output path of a *_run rule: a layout template in the tree of science run {run}."""
    return f"{RUN_RESULTS}/{template}"


def run_log(rule):
    return f"{RUN_LOGS}/{L.LOGS[rule]}"


def run_bench(rule):
    return f"{RUN_BENCHMARKS}/{L.BENCHMARKS[rule]}"


def run_workspaces(wildcards):
    """Each run's workspace of this mass, in run order (the combined model's bin order)."""
    return [v.path(RESULTS, L.fill(L.WORKSPACE, mass=wildcards.mass)) for v in RUN_VARIANTS.values()]


def combine_spec(wildcards):
    return as_spec(_combine_spec(LZ, wildcards.mass))


def runs_targets():
    """`all` of a runs analysis: the curve, fit errors and report, the combination's per-mass files
    and every run's tree (no detector, responses or PDFs of the analysis tree itself, except the
    detector the report shows: the first run's)."""
    comparison = [out(L.REFERENCE_COMPARISON)] if LZ["reference"] else []
    runs = [v.path(RESULTS, rel) for v in RUN_VARIANTS.values() for rel in run_artefacts(v.config)]
    return [out(L.CURVE_CSV), *comparison, out(L.FIT_ERRORS), out(L.REPORT), out(L.DETECTOR),
            *(out(rel) for rel in combined_artefacts(LZ)), *dict.fromkeys(runs)]


if RUN_VARIANTS:

    wildcard_constraints:
        run="|".join(re.escape(name) for name in RUN_VARIANTS),

    use rule detector as detector_run with:
        output:
            run_out(L.DETECTOR),
        log:
            run_log("detector"),
        benchmark:
            run_bench("detector")

    use rule response as response_run with:
        input:
            detector=upstream(L.DETECTOR),
        output:
            run_out(L.RESPONSE),
        log:
            run_log("response"),
        benchmark:
            run_bench("response")

    use rule background_pdf as background_pdf_run with:
        output:
            root=run_out(L.BACKGROUND_PDF),
            json=run_out(L.BACKGROUND_PDF_META),
        log:
            run_log("background_pdf"),
        benchmark:
            run_bench("background_pdf")

    use rule signal_pdf as signal_pdf_run with:
        input:
            response=upstream(L.fill(L.RESPONSE, interaction="NR")),
        output:
            root=run_out(L.SIGNAL_PDF),
            json=run_out(L.SIGNAL_PDF_META),
        log:
            run_log("signal_pdf"),
        benchmark:
            run_bench("signal_pdf")

    use rule response_variation as response_variation_run with:
        input:
            detector=upstream(L.DETECTOR),
            nominal=upstream(L.RESPONSE),
        output:
            run_out(L.RESPONSE_VARIATION),
        log:
            run_log("response_variation"),
        benchmark:
            run_bench("response_variation")

    use rule variation_pdf as variation_pdf_run with:
        output:
            run_out(L.VARIATION_PDF),
        log:
            run_log("variation_pdf"),
        benchmark:
            run_bench("variation_pdf")

    use rule workspace as workspace_run with:
        input:
            signal=upstream(L.SIGNAL_PDF),
            backgrounds=workspace_backgrounds,
            signal_json=upstream(L.SIGNAL_PDF_META),
            backgrounds_json=workspace_background_jsons,
            variations=workspace_variations,
        output:
            workspace=run_out(L.WORKSPACE),
            pyhf=run_out(L.WORKSPACE_PYHF),
            hs3=run_out(L.WORKSPACE_HS3),
            impacts=run_out(L.IMPACTS),
        log:
            run_log("workspace"),
        benchmark:
            run_bench("workspace")

    rule combine:
        """The analysis workspace of one mass: the runs' workspaces combined (mu shared, the correlated parameters shared by name, the others per run) and its impacts."""
        input:
            run_workspaces,
        output:
            workspace=out(L.WORKSPACE),
            impacts=out(L.IMPACTS),
        params:
            spec=combine_spec,
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
