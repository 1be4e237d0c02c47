# The goodness of fit of the observed data (docs/data.md, lzflow.gofstage): in an unblinded analysis
# one job per mass fits the binned event list to the mass's workspace (combined for `runs:`) and
# compares the saturated-model chi2_lambda (total and per run) with its toys. A blind analysis has
# no such job.
from lzflow.gofstage import gof_spec

#: every mass's gof.json, targets of `all` (and inputs of the report) when unblinded; else none
GOF_TARGETS = per_mass(L.GOF) if UNBLINDED else []


if UNBLINDED:

    rule gof:
        """Goodness of fit of the data at one mass: Baker-Cousins chi2_lambda (total, per run) with its toy p-value."""
        input:
            workspace=out(L.WORKSPACE),
            observed=out(L.OBSERVED_DATA),
        output:
            out(L.GOF),
        params:
            spec=as_spec(gof_spec(LZ)),
            code=stage_code_hash("gof"),
        log:
            log_path("gof"),
        benchmark:
            bench_path("gof")
        shell:
            "lzflow gof-observed --spec {params.spec:q} --workspace {input.workspace:q} --observed {input.observed:q} "
            "--out {output:q} > {log:q} 2>&1"
