# Paths, logs and benchmark files come from lzflow.layout (out, log_path, bench_path in common.smk).
rule detector:
    """The resolved detector (preset + overrides, with units): every NEST parameter, the derived quantities and a hash, in detector.json."""
    output:
        out(L.DETECTOR),
    params:
        spec=detector_spec,
        code=stage_code_hash("detector"),
    log:
        log_path("detector"),
    benchmark:
        bench_path("detector")
    shell:
        "lzflow detector --spec {params.spec:q} --out {output:q} > {log:q} 2>&1"


use rule detector as detector_study with:
    output:
        study_out(L.DETECTOR),
    log:
        study_log_path("detector"),
    benchmark:
        study_bench_path("detector")
