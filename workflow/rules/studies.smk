# One table (CSV + Markdown) and one overlay plot per study, from the baseline's and the variants'
# limits (each variant's tree reuses every upstream output it does not change; see common.smk).


rule study:
    input:
        unpack(study_inputs),
    output:
        csv=report(f"{RESULTS}/studies/{{study}}/table.csv", caption="../report/study_table.rst", category="Studies",
                   subcategory="{study}"),
        md=f"{RESULTS}/studies/{{study}}/table.md",
        plot=report(f"{RESULTS}/studies/{{study}}/overlay.png", caption="../report/study_overlay.rst",
                    category="Studies", subcategory="{study}"),
    params:
        spec=study_spec,
        code=stage_code_hash("studies"),
    log:
        f"{LOGS}/studies/{{study}}.log",
    shell:
        "lzflow study --spec {params.spec:q} --limits {input.limits:q} --benchmarks {input.benchmarks:q} "
        "--out {output.csv:q} > {log:q} 2>&1"


rule report:
    input:
        curve=f"{RESULTS}/limit_curve.csv",
        curve_plot=f"{RESULTS}/limit_curve.png",
        limits=limit_files(BASELINE),
        pvalues=expand(f"{RESULTS}/m{{mass}}/pvalues.png", mass=list(MASSES)),
        teststat=expand(f"{RESULTS}/m{{mass}}/teststat.png", mass=list(MASSES)),
        errors=f"{RESULTS}/fit_errors.json",
        detector=f"{RESULTS}/detector.json",
        study_tables=study_targets(["table.csv"]),
        study_overlays=study_targets(["overlay.png"]),
    output:
        report(f"{RESULTS}/report.html", caption="../report/report.rst", category="Report"),
    params:
        spec=report_spec,
        code=stage_code_hash("report"),
    log:
        f"{LOGS}/report.log",
    shell:
        "lzflow report --spec {params.spec:q} --curve {input.curve:q} --curve-plot {input.curve_plot:q} "
        "--limits {input.limits:q} --pvalues {input.pvalues:q} --teststat {input.teststat:q} --errors {input.errors:q} "
        "--detector {input.detector:q} --study-tables {input.study_tables:q} --study-overlays {input.study_overlays:q} "
        "--out {output:q} > {log:q} 2>&1"
