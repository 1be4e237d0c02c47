# Per mass: workspace -> toy jobs (S+B per POI x job, B-only per job) -> merge; then the curve.


rule workspace:
    input:
        signal=upstream("pdfs/wimp_m{mass}.root"),
        backgrounds=workspace_backgrounds,
        # read beside each .root by lzflow workspace; declared so that storage plugins stage them
        signal_json=upstream("pdfs/wimp_m{mass}.json"),
        backgrounds_json=workspace_background_jsons,
    output:
        f"{RESULTS}{{variant}}/m{{mass}}/workspace.json",
        f"{RESULTS}{{variant}}/m{{mass}}/workspace.pyhf.json",
        f"{RESULTS}{{variant}}/m{{mass}}/workspace.hs3.json",
    params:
        spec=workspace_spec,
        code=stage_code_hash("workspace"),
    log:
        f"{LOGS}{{variant}}/workspace_m{{mass}}.log",
    benchmark:
        f"{BENCHMARKS}{{variant}}/m{{mass}}/workspace.tsv"
    shell:
        "lzflow workspace --spec {params.spec:q} --signal {input.signal} --backgrounds {input.backgrounds} "
        "--out {output[0]} > {log} 2>&1"


rule toys:
    input:
        upstream("m{mass}/workspace.json"),
    output:
        f"{RESULTS}{{variant}}/m{{mass}}/toys/poi{{poi}}/job{{job}}.npz",
    params:
        spec=toys_sb_spec,
        code=stage_code_hash("toys"),
    resources:
        mem_mb=1000,
        runtime=30,
    log:
        f"{LOGS}{{variant}}/m{{mass}}/toys_poi{{poi}}_job{{job}}.log",
    benchmark:
        f"{BENCHMARKS}{{variant}}/m{{mass}}/toys_poi{{poi}}_job{{job}}.tsv"
    shell:
        "lzflow toys --spec {params.spec:q} --workspace {input} --out {output} > {log} 2>&1"


rule toys_bonly:
    input:
        upstream("m{mass}/workspace.json"),
    output:
        f"{RESULTS}{{variant}}/m{{mass}}/toys/bonly/job{{job}}.npz",
    params:
        spec=toys_b_spec,
        code=stage_code_hash("toys"),
    resources:
        mem_mb=1000,
        runtime=30,
    log:
        f"{LOGS}{{variant}}/m{{mass}}/toys_bonly_job{{job}}.log",
    benchmark:
        f"{BENCHMARKS}{{variant}}/m{{mass}}/toys_bonly_job{{job}}.tsv"
    shell:
        "lzflow toys --spec {params.spec:q} --workspace {input} --out {output} > {log} 2>&1"


rule merge:
    input:
        workspace=upstream("m{mass}/workspace.json"),
        toys=toy_files,
    output:
        f"{RESULTS}{{variant}}/m{{mass}}/limit.json",
    params:
        spec=merge_spec,
        code=stage_code_hash("merge"),
    log:
        f"{LOGS}{{variant}}/merge_m{{mass}}.log",
    benchmark:
        f"{BENCHMARKS}{{variant}}/m{{mass}}/merge.tsv"
    shell:
        "lzflow merge --spec {params.spec:q} --workspace {input.workspace} --toys {input.toys} "
        "--out {output} > {log} 2>&1"


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
        "lzflow curve --limits {input} --out {output.csv} --title {params.title:q} > {log} 2>&1"


rule errors:
    input:
        [toy for mass in MASSES for toy in toy_files_of(BASELINE, mass)],
    output:
        f"{RESULTS}/fit_errors.json",
        report(f"{RESULTS}/fit_errors.md", caption="../report/fit_errors.rst", category="Fit errors"),
    params:
        code=stage_code_hash("errors"),
    log:
        f"{LOGS}/errors.log",
    shell:
        "lzflow errors --toys {input} --out {output[0]} > {log} 2>&1"
