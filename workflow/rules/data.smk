# Observed data (config data:, docs/data.md): in an unblinded analysis (blind: false) the event list
# is binned once on the analysis window (rule observed_data, lzflow.observeddata), and every mass's
# toys (generated at the data's fits) and merge (observed results) read the binned file. A blind
# analysis (data: with blind: true, the default) has no such job and no such input: nothing reads
# the event list, every result is the Asimov sensitivity, and unblinding adds this job and reruns
# only the toys, merges and what follows them. A runs analysis (runs.<run>.data, lzflow.runsconfig)
# bins each run's list on its own window in the same job; the file holds the runs' counts
# concatenated in the combined workspace's run order, so toys, merge and global p-value read it unchanged.
# The job also writes the in-window events (OBSERVED_EVENTS, their digest in the binned file), which
# an unbinned likelihood fits (the baseline's or a study's, stats.likelihood unbinned): the toys
# (generated at the data's fits) and merges take both files. (Not for runs: their combination is binned.)
from lzflow.dataconfig import data_files, unblinded
from lzflow.observeddata import OBSERVED_EVENTS, observed_option  # params: "--observed <file>" for a job with that input
from lzflow.runsconfig import runs_data_spec

UNBLINDED = unblinded(LZ)
#: the in-window events travel beside the binned file (an unblinded single-run analysis)
EVENTS_FILE = UNBLINDED and "runs" not in LZ
#: the binned event list (and the events), inputs of every toys and merge job of an unblinded analysis; else none
OBSERVED_INPUT = [out(L.OBSERVED_DATA), *([out(OBSERVED_EVENTS)] if EVENTS_FILE else [])] if UNBLINDED else []
#: the event list(s): one, or one per run in run order (read only when unblinded)
DATA_FILES = data_files(LZ)


if UNBLINDED:

    rule observed_data:
        """The observed event list(s) binned on the analysis window (counts, out-of-window accounting, digests)."""
        input:
            DATA_FILES,
        output:
            out(L.OBSERVED_DATA),
            *([out(OBSERVED_EVENTS)] if EVENTS_FILE else []),
        params:
            spec=as_spec(runs_data_spec(LZ) if "runs" in LZ else {**L.data_spec(LZ), "unbinned_events": True}),
            code=stage_code_hash("data"),
        log:
            log_path("observed_data"),
        benchmark:
            bench_path("observed_data")
        shell:
            "lzflow bin-data --spec {params.spec:q} --events {input:q} --out {output[0]:q} > {log:q} 2>&1"
