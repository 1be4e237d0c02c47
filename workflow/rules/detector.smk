# Paths, logs and benchmark files come from lzflow.layout (out, log_path, bench_path in common.smk).
import os as _os

# LZFLOW_LOCAL_DETECTOR=1 (set by profiles/slurm-small): the controller runs this ~1 s job itself
# instead of submitting it; on a small cluster a batch job costs ~20 s (sbatch, two Snakemake
# start-ups in the job, the status poll). Unset or 0: a batch job like every other rule.
LOCAL_DETECTOR = _os.environ.get("LZFLOW_LOCAL_DETECTOR", "0")
if LOCAL_DETECTOR not in ("0", "1"):
    raise SystemExit(f"lzflow: config error: LZFLOW_LOCAL_DETECTOR={LOCAL_DETECTOR!r}: expected 0 or 1")


rule detector:
    """The resolved detector (preset + overrides, with units): every NEST parameter, the derived quantities and a hash, in detector.json."""
    localrule: LOCAL_DETECTOR == "1"
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
