# Per mass: workspace -> toy jobs (S+B per POI x job, B-only per job) -> merge; then the curve.


rule workspace:
    input:
        signal=f"{RESULTS}/pdfs/wimp_m{{mass}}.root",
        backgrounds=expand(f"{RESULTS}/pdfs/{{background}}.root", background=BACKGROUNDS),
    output:
        f"{RESULTS}/m{{mass}}/workspace.json",
        f"{RESULTS}/m{{mass}}/workspace.pyhf.json",
        f"{RESULTS}/m{{mass}}/workspace.hs3.json",
    params:
        spec=workspace_spec,
        code=stage_code_hash("workspace"),
    log:
        f"{LOGS}/workspace_m{{mass}}.log",
    shell:
        "lzflow workspace --spec {params.spec:q} --signal {input.signal} --backgrounds {input.backgrounds} "
        "--out {output[0]} > {log} 2>&1"


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
    shell:
        "lzflow toys --spec {params.spec:q} --workspace {input} --out {output} > {log} 2>&1"


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
    shell:
        "lzflow toys --spec {params.spec:q} --workspace {input} --out {output} > {log} 2>&1"


rule merge:
    input:
        workspace=f"{RESULTS}/m{{mass}}/workspace.json",
        toys=toy_files,
    output:
        f"{RESULTS}/m{{mass}}/limit.json",
    params:
        spec=merge_spec,
        code=stage_code_hash("merge"),
    log:
        f"{LOGS}/merge_m{{mass}}.log",
    shell:
        "lzflow merge --spec {params.spec:q} --workspace {input.workspace} --toys {input.toys} "
        "--out {output} > {log} 2>&1"


rule curve:
    input:
        expand(f"{RESULTS}/m{{mass}}/limit.json", mass=list(MASSES)),
    output:
        csv=f"{RESULTS}/limit_curve.csv",
        plot=f"{RESULTS}/limit_curve.png",
    params:
        title=f"lzflow {LZ['tag']}: {LZ['exposure']['exposure_t_yr']:.2f} t yr",
        code=stage_code_hash("curve"),
    log:
        f"{LOGS}/curve.log",
    shell:
        "lzflow curve --limits {input} --out {output.csv} --title {params.title:q} > {log} 2>&1"


rule errors:
    input:
        [toy for mass in MASSES for toy in toy_files_of(mass)],
    output:
        f"{RESULTS}/fit_errors.json",
        f"{RESULTS}/fit_errors.md",
    params:
        code=stage_code_hash("errors"),
    log:
        f"{LOGS}/errors.log",
    shell:
        "lzflow errors --toys {input} --out {output[0]} > {log} 2>&1"
