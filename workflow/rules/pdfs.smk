# NEST response per interaction type (shared by every PDF of that type), then one cheap fold per
# source: backgrounds once, the signal once per mass.


rule response:
    input:
        detector=upstream("detector.json"),
    output:
        f"{RESULTS}{{variant}}/response/{{interaction}}.npz",
    params:
        spec=response_spec,
        code=stage_code_hash("response"),
    threads: LZ["pdf"]["workers"]
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        f"{LOGS}{{variant}}/response_{{interaction}}.log",
    benchmark:
        f"{BENCHMARKS}{{variant}}/response_{{interaction}}.tsv"
    shell:
        "lzflow response --detector {input.detector} --spec {params.spec:q} --workers {threads} "
        "--out {output} > {log} 2>&1"


rule background_pdf:
    input:
        response=background_response,
    output:
        root=f"{RESULTS}{{variant}}/pdfs/{{background}}.root",
        json=f"{RESULTS}{{variant}}/pdfs/{{background}}.json",
    params:
        spec=background_spec,
        code=stage_code_hash("pdf"),
    log:
        f"{LOGS}{{variant}}/pdf_{{background}}.log",
    benchmark:
        f"{BENCHMARKS}{{variant}}/pdf_{{background}}.tsv"
    shell:
        "lzflow pdf --response {input.response} --spec {params.spec:q} --out {output.root} > {log} 2>&1"


rule signal_pdf:
    input:
        response=upstream("response/NR.npz"),
    output:
        root=f"{RESULTS}{{variant}}/pdfs/wimp_m{{mass}}.root",
        json=f"{RESULTS}{{variant}}/pdfs/wimp_m{{mass}}.json",
    params:
        spec=signal_spec,
        code=stage_code_hash("pdf"),
    log:
        f"{LOGS}{{variant}}/pdf_wimp_m{{mass}}.log",
    benchmark:
        f"{BENCHMARKS}{{variant}}/pdf_wimp_m{{mass}}.tsv"
    shell:
        "lzflow pdf --response {input.response} --spec {params.spec:q} --out {output.root} > {log} 2>&1"
