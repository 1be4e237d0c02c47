rule detector:
    output:
        f"{RESULTS}/detector.json",
    params:
        spec=as_spec(LZ["detector"]),
        code=stage_code_hash("detector"),
    log:
        f"{LOGS}/detector.log",
    shell:
        "lzflow detector --spec {params.spec:q} --out {output} > {log} 2>&1"
