# One table (CSV + Markdown) and one overlay plot per study, from the baseline's and the variants'
# limits (each variant's tree reuses every upstream output it does not change; see common.smk).


rule study:
    """One study's table (CSV and Markdown) and overlay plot: the limits of the baseline and of each study value."""
    input:
        unpack(study_inputs),
    output:
        csv=report(out(L.STUDY_TABLE), caption="../report/study_table.rst", category="Studies", subcategory="{study}"),
        md=out(L.STUDY_TABLE_MD),
        plot=report(out(L.STUDY_OVERLAY), caption="../report/study_overlay.rst", category="Studies",
                    subcategory="{study}"),
    params:
        spec=study_spec,
        code=stage_code_hash("studies"),
    log:
        log_path("study"),
    shell:
        "lzflow study --spec {params.spec:q} --limits {input.limits:q} --benchmarks {input.benchmarks:q} "
        "--out {output.csv:q} > {log:q} 2>&1"


rule report:
    """lzflow's self-contained HTML report (curve, per-mass limits and plots, fit errors, impacts, studies, provenance)."""
    input:
        curve=out(L.CURVE_CSV),
        curve_plot=out(L.CURVE_PLOT),
        limits=limit_files(BASELINE),
        pvalues=per_mass(L.PVALUES_PLOT),
        teststat=per_mass(L.TESTSTAT_PLOT),
        impacts=per_mass(L.IMPACTS),
        errors=out(L.FIT_ERRORS),
        detector=out(L.DETECTOR),
        study_tables=study_targets([L.STUDY_TABLE]),
        study_overlays=study_targets([L.STUDY_OVERLAY]),
        comparison=[out(L.REFERENCE_COMPARISON)] if LZ["reference"] else [],
        global_pvalue=GLOBAL_PVALUE_TARGETS,  # unblinded only; the report reads it beside the curve
        gof=GOF_TARGETS,  # unblinded only; the report reads each beside its limit.json
    output:
        report(out(L.REPORT), caption="../report/report.rst", category="Report"),
    params:
        spec=report_spec,
        comparison=comparison_option(),
        code=stage_code_hash("report"),
    log:
        log_path("report"),
    shell:
        "lzflow report --spec {params.spec:q} --curve {input.curve:q} --curve-plot {input.curve_plot:q} "
        "--limits {input.limits:q} --pvalues {input.pvalues:q} --teststat {input.teststat:q} --errors {input.errors:q} "
        "--detector {input.detector:q} --study-tables {input.study_tables:q} --study-overlays {input.study_overlays:q} "
        "--impacts {input.impacts:q} "
        "{params.comparison} --out {output:q} > {log:q} 2>&1"
