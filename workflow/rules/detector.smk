rule detector:
    output:
        f"{RESULTS}/detector.json",
    params:
        spec=detector_spec,
        code=stage_code_hash("detector"),
    log:
        f"{LOGS}/detector.log",
    benchmark:
        f"{BENCHMARKS}/detector.tsv"
    shell:
        "lzflow detector --spec {params.spec:q} --out {output:q} > {log:q} 2>&1"


use rule detector as detector_study with:
    output:
        f"{STUDY_RESULTS}/detector.json",
    log:
        f"{STUDY_LOGS}/detector.log",
    benchmark:
        f"{STUDY_BENCHMARKS}/detector.tsv"
