# NEST response per interaction type (shared by every PDF of that type), then one cheap fold per
# source: backgrounds once, the signal once per mass. Each rule's *_study twin makes a study value's.


rule response:
    input:
        detector=f"{RESULTS}/detector.json",
    output:
        f"{RESULTS}/response/{{interaction}}.npz",
    params:
        spec=response_spec,
        code=stage_code_hash("response"),
    threads: LZ["pdf"]["workers"]
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        f"{LOGS}/response_{{interaction}}.log",
    benchmark:
        f"{BENCHMARKS}/response_{{interaction}}.tsv"
    shell:
        "lzflow response --detector {input.detector:q} --spec {params.spec:q} --workers {threads} "
        "--out {output:q} > {log:q} 2>&1"


use rule response as response_study with:
    input:
        detector=upstream("detector.json"),
    output:
        f"{STUDY_RESULTS}/response/{{interaction}}.npz",
    log:
        f"{STUDY_LOGS}/response_{{interaction}}.log",
    benchmark:
        f"{STUDY_BENCHMARKS}/response_{{interaction}}.tsv"


rule background_pdf:
    input:
        response=background_response,
    output:
        root=f"{RESULTS}/pdfs/{{background}}.root",
        json=f"{RESULTS}/pdfs/{{background}}.json",
    params:
        spec=background_spec,
        code=stage_code_hash("pdf"),
    log:
        f"{LOGS}/pdf_{{background}}.log",
    benchmark:
        f"{BENCHMARKS}/pdf_{{background}}.tsv"
    shell:
        "lzflow pdf --response {input.response:q} --spec {params.spec:q} --out {output.root:q} > {log:q} 2>&1"


use rule background_pdf as background_pdf_study with:
    output:
        root=f"{STUDY_RESULTS}/pdfs/{{background}}.root",
        json=f"{STUDY_RESULTS}/pdfs/{{background}}.json",
    log:
        f"{STUDY_LOGS}/pdf_{{background}}.log",
    benchmark:
        f"{STUDY_BENCHMARKS}/pdf_{{background}}.tsv"


rule signal_pdf:
    input:
        response=f"{RESULTS}/response/NR.npz",
    output:
        root=f"{RESULTS}/pdfs/wimp_m{{mass}}.root",
        json=f"{RESULTS}/pdfs/wimp_m{{mass}}.json",
    params:
        spec=signal_spec,
        code=stage_code_hash("pdf"),
    log:
        f"{LOGS}/pdf_wimp_m{{mass}}.log",
    benchmark:
        f"{BENCHMARKS}/pdf_wimp_m{{mass}}.tsv"
    shell:
        "lzflow pdf --response {input.response:q} --spec {params.spec:q} --out {output.root:q} > {log:q} 2>&1"


use rule signal_pdf as signal_pdf_study with:
    input:
        response=upstream("response/NR.npz"),
    output:
        root=f"{STUDY_RESULTS}/pdfs/wimp_m{{mass}}.root",
        json=f"{STUDY_RESULTS}/pdfs/wimp_m{{mass}}.json",
    log:
        f"{STUDY_LOGS}/pdf_wimp_m{{mass}}.log",
    benchmark:
        f"{STUDY_BENCHMARKS}/pdf_wimp_m{{mass}}.tsv"
