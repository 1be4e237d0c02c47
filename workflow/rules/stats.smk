# Per mass: workspace -> toy jobs (S+B per POI x job, B-only per job) -> merge; then the curve.
# Each per-mass rule has a *_study twin that makes a study value's tree (see common.smk).


rule workspace:
    input:
        signal=f"{RESULTS}/pdfs/wimp_m{{mass}}.root",
        backgrounds=workspace_backgrounds,
        # read beside each .root by lzflow workspace; declared so that storage plugins stage them
        signal_json=f"{RESULTS}/pdfs/wimp_m{{mass}}.json",
        backgrounds_json=workspace_background_jsons,
    output:
        f"{RESULTS}/m{{mass}}/workspace.json",
        f"{RESULTS}/m{{mass}}/workspace.pyhf.json",
        f"{RESULTS}/m{{mass}}/workspace.hs3.json",
    params:
        spec=workspace_spec,
        code=stage_code_hash("workspace"),
    log:
        f"{LOGS}/workspace_m{{mass}}.log",
    benchmark:
        f"{BENCHMARKS}/m{{mass}}/workspace.tsv"
    shell:
        "lzflow workspace --spec {params.spec:q} --signal {input.signal:q} --backgrounds {input.backgrounds:q} "
        "--out {output[0]:q} > {log:q} 2>&1"


use rule workspace as workspace_study with:
    input:
        signal=upstream("pdfs/wimp_m{mass}.root"),
        backgrounds=workspace_backgrounds,
        signal_json=upstream("pdfs/wimp_m{mass}.json"),
        backgrounds_json=workspace_background_jsons,
    output:
        f"{STUDY_RESULTS}/m{{mass}}/workspace.json",
        f"{STUDY_RESULTS}/m{{mass}}/workspace.pyhf.json",
        f"{STUDY_RESULTS}/m{{mass}}/workspace.hs3.json",
    log:
        f"{STUDY_LOGS}/workspace_m{{mass}}.log",
    benchmark:
        f"{STUDY_BENCHMARKS}/m{{mass}}/workspace.tsv"


rule toys:
    input:
        f"{RESULTS}/m{{mass}}/workspace.json",
    output:
        f"{RESULTS}/m{{mass}}/toys/poi{{poi}}/job{{job}}.npz",
    params:
        spec=toys_sb_spec,
        code=stage_code_hash("toys"),
    resources:
        mem_mb=1000,
        runtime=30,
    log:
        f"{LOGS}/m{{mass}}/toys_poi{{poi}}_job{{job}}.log",
    benchmark:
        f"{BENCHMARKS}/m{{mass}}/toys_poi{{poi}}_job{{job}}.tsv"
    shell:
        "lzflow toys --spec {params.spec:q} --workspace {input:q} --out {output:q} > {log:q} 2>&1"


use rule toys as toys_study with:
    input:
        upstream("m{mass}/workspace.json"),
    output:
        f"{STUDY_RESULTS}/m{{mass}}/toys/poi{{poi}}/job{{job}}.npz",
    log:
        f"{STUDY_LOGS}/m{{mass}}/toys_poi{{poi}}_job{{job}}.log",
    benchmark:
        f"{STUDY_BENCHMARKS}/m{{mass}}/toys_poi{{poi}}_job{{job}}.tsv"


rule toys_bonly:
    input:
        f"{RESULTS}/m{{mass}}/workspace.json",
    output:
        f"{RESULTS}/m{{mass}}/toys/bonly/job{{job}}.npz",
    params:
        spec=toys_b_spec,
        code=stage_code_hash("toys"),
    resources:
        mem_mb=1000,
        runtime=30,
    log:
        f"{LOGS}/m{{mass}}/toys_bonly_job{{job}}.log",
    benchmark:
        f"{BENCHMARKS}/m{{mass}}/toys_bonly_job{{job}}.tsv"
    shell:
        "lzflow toys --spec {params.spec:q} --workspace {input:q} --out {output:q} > {log:q} 2>&1"


use rule toys_bonly as toys_bonly_study with:
    input:
        upstream("m{mass}/workspace.json"),
    output:
        f"{STUDY_RESULTS}/m{{mass}}/toys/bonly/job{{job}}.npz",
    log:
        f"{STUDY_LOGS}/m{{mass}}/toys_bonly_job{{job}}.log",
    benchmark:
        f"{STUDY_BENCHMARKS}/m{{mass}}/toys_bonly_job{{job}}.tsv"


rule merge:
    input:
        workspace=f"{RESULTS}/m{{mass}}/workspace.json",
        toys=toy_files,
    output:
        limit=f"{RESULTS}/m{{mass}}/limit.json",
        errors=f"{RESULTS}/m{{mass}}/fit_errors.json",
    params:
        spec=merge_spec,
        code=stage_code_hash("merge"),
    log:
        f"{LOGS}/merge_m{{mass}}.log",
    benchmark:
        f"{BENCHMARKS}/m{{mass}}/merge.tsv"
    shell:
        "lzflow merge --spec {params.spec:q} --workspace {input.workspace:q} --toys {input.toys:q} "
        "--out {output.limit:q} --errors-out {output.errors:q} > {log:q} 2>&1"


use rule merge as merge_study with:
    input:
        workspace=upstream("m{mass}/workspace.json"),
        toys=toy_files,
    output:
        limit=f"{STUDY_RESULTS}/m{{mass}}/limit.json",
        errors=f"{STUDY_RESULTS}/m{{mass}}/fit_errors.json",
    log:
        f"{STUDY_LOGS}/merge_m{{mass}}.log",
    benchmark:
        f"{STUDY_BENCHMARKS}/m{{mass}}/merge.tsv"


rule curve:
    input:
        limit_files(BASELINE),
    output:
        csv=report(f"{RESULTS}/limit_curve.csv", caption="../report/limit_curve_table.rst", category="Limit curve"),
        plot=report(f"{RESULTS}/limit_curve.png", caption="../report/limit_curve.rst", category="Limit curve"),
        pvalues=report(expand(f"{RESULTS}/m{{mass}}/pvalues.png", mass=list(MASSES)),
                       caption="../report/pvalues.rst", category="Per mass", subcategory="p-value scans"),
        teststat=report(expand(f"{RESULTS}/m{{mass}}/teststat.png", mass=list(MASSES)),
                        caption="../report/teststat.rst", category="Per mass", subcategory="test statistics"),
    params:
        title=f"lzflow {LZ['tag']}: {LZ['exposure']['exposure_t_yr']:.2f} t yr",
        code=stage_code_hash("curve"),
    log:
        f"{LOGS}/curve.log",
    shell:
        "lzflow curve --limits {input:q} --out {output.csv:q} --title {params.title:q} > {log:q} 2>&1"


# Per-mass fit-error summaries (written by merge from the toys it reads) -> one table. Depending on
# the summaries, not on every toy file, keeps this job from adding ~10^4 inputs to the DAG.
rule errors:
    input:
        [f"{RESULTS}/m{mass}/fit_errors.json" for mass in MASSES],
    output:
        f"{RESULTS}/fit_errors.json",
        report(f"{RESULTS}/fit_errors.md", caption="../report/fit_errors.rst", category="Fit errors"),
    params:
        code=stage_code_hash("errors"),
    log:
        f"{LOGS}/errors.log",
    shell:
        "lzflow errors --summaries {input:q} --out {output[0]:q} > {log:q} 2>&1"
