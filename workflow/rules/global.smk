# The global discovery p-value over the masses (look-elsewhere effect; docs/data.md, lzflow.globalcli):
# in an unblinded analysis one job, after the merges, draws background-only datasets once at the
# data's conditional fit and fits them at every mass's signal. A blind analysis has no such job.
#: the baseline's likelihood is unbinned (stats.likelihood): the global p-value fits the events too
GLOBAL_UNBINNED = EVENTS_FILE and LZ["stats"].get("likelihood", "binned") == "unbinned"
#: its output, a target of `all` when unblinded; else none
GLOBAL_PVALUE_TARGETS = [out(L.GLOBAL_PVALUE)] if UNBLINDED else []


if UNBLINDED:

    rule global_pvalue:
        """The global discovery p-value over every mass: p_global with its binomial error, Z_global, the trials factor."""
        input:
            workspaces=per_mass(L.WORKSPACE),
            limits=limit_files(BASELINE),
            observed=out(L.OBSERVED_DATA),
            # an unbinned likelihood fits the in-window events (read beside the binned list, digest checked)
            events_unbinned=[out(OBSERVED_EVENTS)] if GLOBAL_UNBINNED else [],
            events=DATA_FILES[0],  # its provenance only: salted (lzflow salt) or not (runs: data/observed.json's record)
        output:
            out(L.GLOBAL_PVALUE),
        params:
            spec=as_spec({**L.global_pvalue_spec(LZ), **L.likelihood_spec(LZ["stats"])}),
            code=stage_code_hash("global"),
        log:
            log_path("global_pvalue"),
        benchmark:
            bench_path("global_pvalue")
        shell:
            "lzflow global-pvalue --spec {params.spec:q} --workspaces {input.workspaces:q} --limits {input.limits:q} "
            "--observed {input.observed:q} --events {input.events:q} --threads {threads} --out {output:q} > {log:q} 2>&1"
