#!/usr/bin/env bash
# Issue 16: the quick config with `--profile local`, then with `--profile slurm-small` on a Slurm cluster
# (the one-node test cluster: `bash .ci/slurm.sh start`), back to back, to the same results path.
#   bash benchmarks/bench_slurm_small.sh [SNAKEMAKE ARGS FOR THE SLURM RUN...]   (from any directory)
# Prints the load before/between/after, both wall times and their ratio, each batch job's wait and run
# time in Slurm (scontrol; MinJobAge keeps them), the controller's time before the first submission and
# after the last job ended, and whether every JSON and .npz is identical (tests/infra/test_slurm.py's
# comparison); exit 1 if not. An exported LZFLOW_JOB_GROUPS (0, 1, single) or LZFLOW_SLURM_MAX_POLL_S
# (seconds; empty: the plugin's own waits) overrides slurm-small's default. Needs the lzflow
# environment active (python with lzflow, snakemake and the slurm plugin). Run it on a quiet machine:
# the ratio depends on the load (docs/cluster.md, "Small Slurm clusters").
set -euo pipefail
cd "$(dirname "$0")/.."
export CONDOR_CONFIG=${CONDOR_CONFIG:-/dev/null}
sinfo -h -o %T 2> /dev/null | grep -q idle || { echo "bench_slurm_small: no idle Slurm node (bash .ci/slurm.sh start)" >&2; exit 2; }
BASE=$(mktemp -d /tmp/bench_slurm_small.XXXXXX)
R=$BASE/results   # the same results path for both runs (outputs may record their inputs' paths)
echo "load before: $(uptime)"
t0=$(date +%s.%N)
python -m snakemake --profile local --configfile config/quick.yaml --config "results_dir=$R" --until all \
  > "$BASE/local.log" 2>&1 || { tail -30 "$BASE/local.log"; exit 1; }
t1=$(date +%s.%N)
mv "$R" "$BASE/local"
echo "load between: $(uptime)"
t2=$(date +%s.%N)
env -u LZFLOW_TOY_JOBS -u LZFLOW_LOCAL_DETECTOR python -m snakemake --profile slurm-small \
  --configfile config/quick.yaml --config "results_dir=$R" --until all "$@" > "$BASE/slurm.log" 2>&1 \
  || { tail -30 "$BASE/slurm.log"; exit 1; }
t3=$(date +%s.%N)
echo "load after: $(uptime)"
python - "$BASE" "$t0" "$t1" "$t2" "$t3" <<'PY'
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, "tests/infra")
from test_slurm import _snapshot

base, t0, t1, t2, t3 = Path(sys.argv[1]), *map(float, sys.argv[2:])
spans = []
for jid in re.findall(r"submitted with SLURM jobid (\d+)", (base / "slurm.log").read_text()):
    info = subprocess.run(["scontrol", "show", "job", jid], capture_output=True, text=True).stdout
    t = {k: datetime.fromisoformat(v).timestamp() for k, v in re.findall(r"(SubmitTime|StartTime|EndTime)=(\S+)", info)}
    if len(t) == 3:
        spans.append((t["SubmitTime"], t["StartTime"], t["EndTime"]))
        print(f"  job {jid}: submitted at +{t['SubmitTime'] - t2:.0f} s, waited {t['StartTime'] - t['SubmitTime']:.0f} s, "
              f"ran {t['EndTime'] - t['StartTime']:.0f} s (Slurm's whole seconds)")
if spans:
    print(f"  controller: ~{min(s[0] for s in spans) - t2:.0f} s before the first submission, "
          f"~{t3 - max(s[2] for s in spans):.0f} s after the last job ended (poll lag + localrules + exit)")
same = _snapshot(base / "local") == _snapshot(base / "results")
local, slurm = t1 - t0, t3 - t2
print(f"local {local:.1f} s; slurm-small {slurm:.1f} s; ratio {slurm / local:.2f}x; {len(spans)} batch jobs; "
      f"results identical: {same}; logs in {base}")
sys.exit(0 if same else 1)
PY
