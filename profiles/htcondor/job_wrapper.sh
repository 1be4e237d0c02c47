#!/usr/bin/env bash
# HTCondor job wrapper for lzflow: profiles/htcondor sets it as the `job_wrapper` resource, so
# snakemake-executor-plugin-htcondor makes it the executable of every job and passes it Snakemake's
# job command as arguments.
#
# Why: whenever any Snakemake storage plugin is installed (lzflow installs snakemake-storage-plugin-fs
# for node-scratch staging), Snakemake prefixes each remote job with
#   pip install --target '.snakemake/pip-deployments' <storage plugins> && python -m snakemake ...
# The htcondor plugin (0.3.0) cannot split that command (it submits `python install --target ...`,
# which fails at once), and execute points usually have no network for pip anyway. The environment is
# on shared storage with every plugin already installed (docs/cluster.md), so this wrapper drops
# everything up to the last '&&' and runs Snakemake's job with the environment's Python
# ($LZFLOW_PYTHON, else python3 from the PATH that getenv passes on).
set -euo pipefail
args=("$@")
start=0
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ "${args[$i]}" == "&&" ]]; then start=$((i + 1)); fi
done
rest=("${args[@]:$start}")
if [[ ${#rest[@]} -ge 3 && "${rest[1]}" == "-m" && "${rest[2]}" == "snakemake" ]]; then
  rest=("${rest[@]:3}")
fi
exec "${LZFLOW_PYTHON:-python3}" -m snakemake "${rest[@]}"
