# NEST response per interaction type (shared by every PDF of that type), then one cheap fold per
# source: backgrounds once, the signal once per mass.


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
    shell:
        "lzflow response --detector {input.detector} --spec {params.spec:q} --workers {threads} "
        "--out {output} > {log} 2>&1"


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
    shell:
        "lzflow pdf --response {input.response} --spec {params.spec:q} --out {output.root} > {log} 2>&1"


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
    shell:
        "lzflow pdf --response {input.response} --spec {params.spec:q} --out {output.root} > {log} 2>&1"
