# NEST response per interaction type (shared by every PDF of that type), then one cheap fold per
# source: backgrounds once, the signal once per mass. Each rule's *_study twin makes a study value's.


rule response:
    """NEST detector response of one interaction type (energy -> cS1, log10 cS2 after cuts), shared by every source of that type."""
    group: PDF_GROUP
    input:
        detector=out(L.DETECTOR),
    output:
        out(L.RESPONSE),
    params:
        spec=response_spec,
        code=stage_code_hash("response"),
    threads: LZ["pdf"]["workers"]
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        log_path("response"),
    benchmark:
        bench_path("response")
    shell:
        "lzflow response --detector {input.detector:q} --spec {params.spec:q} --workers {threads} "
        "--out {output:q} > {log:q} 2>&1"


use rule response as response_study with:
    input:
        detector=upstream(L.DETECTOR),
    output:
        study_out(L.RESPONSE),
    log:
        study_log_path("response"),
    benchmark:
        study_bench_path("response")


rule background_pdf:
    """One background's 2D PDF in (cS1, log10 cS2): its spectrum folded through its response (TH2D .root with a .json sidecar)."""
    group: PDF_GROUP
    input:
        response=background_response,
    output:
        root=out(L.BACKGROUND_PDF),
        json=out(L.BACKGROUND_PDF_META),
    params:
        spec=background_spec,
        code=stage_code_hash("pdf"),
    log:
        log_path("background_pdf"),
    benchmark:
        bench_path("background_pdf")
    shell:
        "lzflow pdf --response {input.response:q} --spec {params.spec:q} --out {output.root:q} > {log:q} 2>&1"


use rule background_pdf as background_pdf_study with:
    output:
        root=study_out(L.BACKGROUND_PDF),
        json=study_out(L.BACKGROUND_PDF_META),
    log:
        study_log_path("background_pdf"),
    benchmark:
        study_bench_path("background_pdf")


rule signal_pdf:
    """The WIMP signal's 2D PDF of one mass: its recoil spectrum folded through the NR response (TH2D .root with a .json sidecar)."""
    group: PDF_GROUP
    input:
        response=out(L.fill(L.RESPONSE, interaction="NR")),
    output:
        root=out(L.SIGNAL_PDF),
        json=out(L.SIGNAL_PDF_META),
    params:
        spec=signal_spec,
        code=stage_code_hash("pdf"),
    log:
        log_path("signal_pdf"),
    benchmark:
        bench_path("signal_pdf")
    shell:
        "lzflow pdf --response {input.response:q} --spec {params.spec:q} --out {output.root:q} > {log:q} 2>&1"


use rule signal_pdf as signal_pdf_study with:
    input:
        response=upstream(L.fill(L.RESPONSE, interaction="NR")),
    output:
        root=study_out(L.SIGNAL_PDF),
        json=study_out(L.SIGNAL_PDF_META),
    log:
        study_log_path("signal_pdf"),
    benchmark:
        study_bench_path("signal_pdf")


# Detector systematics (config `systematics`, lzflow.response.variations): per interaction, the
# common-random-number nominal and each systematic's -2/-1/+1/+2 sigma matrices on the same events
# (lzflow.response.crn), then one job per affected source folding its varied templates.
rule response_variation:
    """Response of one interaction with one detector systematic shifted, on common random numbers (only with a systematics block)."""
    group: PDF_GROUP
    input:
        detector=out(L.DETECTOR),
        nominal=out(L.RESPONSE),
    output:
        out(L.RESPONSE_VARIATION),
    params:
        spec=variation_spec,
        code=stage_code_hash("response"),
    threads: LZ["pdf"]["workers"]
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        log_path("response_variation"),
    benchmark:
        bench_path("response_variation")
    shell:
        "lzflow response --detector {input.detector:q} --nominal {input.nominal:q} --spec {params.spec:q} "
        "--workers {threads} --out {output:q} > {log:q} 2>&1"


use rule response_variation as response_variation_study with:
    input:
        detector=upstream(L.DETECTOR),
        nominal=upstream(L.RESPONSE),
    output:
        study_out(L.RESPONSE_VARIATION),
    log:
        study_log_path("response_variation"),
    benchmark:
        study_bench_path("response_variation")


rule variation_pdf:
    """One source's varied templates for its detector systematics, from the CRN variation matrices (only with a systematics block)."""
    group: PDF_GROUP
    input:
        unpack(variation_pdf_inputs),
    output:
        out(L.VARIATION_PDF),
    params:
        spec=variation_pdf_spec,
        code=stage_code_hash("pdf"),
    log:
        log_path("variation_pdf"),
    benchmark:
        bench_path("variation_pdf")
    shell:
        "lzflow pdf --spec {params.spec:q} --response {input.crn:q} --nominal-pdf {input.pdf:q} "
        "--variations {input.variations:q} --out {output:q} > {log:q} 2>&1"


use rule variation_pdf as variation_pdf_study with:
    output:
        study_out(L.VARIATION_PDF),
    log:
        study_log_path("variation_pdf"),
    benchmark:
        study_bench_path("variation_pdf")
