rule detector:
    output:
        f"{RESULTS}{{variant}}/detector.json",
    params:
        spec=detector_spec,
        code=stage_code_hash("detector"),
    log:
        f"{LOGS}{{variant}}/detector.log",
    benchmark:
        f"{BENCHMARKS}{{variant}}/detector.tsv"
    shell:
        "lzflow detector --spec {params.spec:q} --out {output} > {log} 2>&1"
