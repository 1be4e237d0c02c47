# Observed data (config data:, docs/data.md): in an unblinded analysis (blind: false) the event list
# is binned once on the analysis window (rule observed_data, lzflow.observeddata), and every mass's
# toys (generated at the data's fits) and merge (observed results) read the binned file. A blind
# analysis (data: with blind: true, the default) has no such job and no such input: nothing reads
# the event list, every result is the Asimov sensitivity, and unblinding adds this job and reruns
# only the toys, merges and what follows them.
from lzflow.dataconfig import unblinded
from lzflow.observeddata import observed_option  # params: "--observed <file>" for a job with that input

UNBLINDED = unblinded(LZ)
#: the binned event list, an input of every toys and merge job of an unblinded analysis; else none
OBSERVED_INPUT = [out(L.OBSERVED_DATA)] if UNBLINDED else []


if UNBLINDED:

    rule observed_data:
        """The observed event list binned on the analysis window (counts, out-of-window accounting, digests)."""
        input:
            LZ["data"]["path"],
        output:
            out(L.OBSERVED_DATA),
        params:
            spec=as_spec(L.data_spec(LZ)),
            code=stage_code_hash("data"),
        log:
            log_path("observed_data"),
        benchmark:
            bench_path("observed_data")
        shell:
            "lzflow bin-data --spec {params.spec:q} --events {input:q} --out {output:q} > {log:q} 2>&1"
