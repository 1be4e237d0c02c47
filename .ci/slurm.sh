#!/usr/bin/env bash
# One-node Slurm cluster for tests/infra/test_slurm.py (CI and local).
#   bash .ci/slurm.sh start    # install slurm + munge if missing (apt, needs root), start the cluster
#   bash .ci/slurm.sh stop     # stop it
#   bash .ci/slurm.sh status   # sinfo
# Uses ../shared/tools/single-node-slurm.sh (the shared/ checkout beside this repository; override
# with LZFLOW_SLURM_TOOL=/path/to/single-node-slurm.sh). No accounting (slurmdbd): the slurm profile
# polls with squeue, which the script's MinJobAge=600 makes reliable.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOL=${LZFLOW_SLURM_TOOL:-../shared/tools/single-node-slurm.sh}
cmd=${1:-start}

case "$cmd" in
  start)
    if [ ! -f "$TOOL" ]; then echo "slurm.sh: $TOOL not found" >&2; exit 2; fi
    if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null || ! command -v sbatch > /dev/null \
        || ! command -v rsync > /dev/null; then
      if [ "$(id -u)" != 0 ]; then echo "slurm.sh: slurm not installed and not root" >&2; exit 2; fi
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends slurm-wlm munge slurm-client rsync > /dev/null
    fi
    if sinfo -h -o %T 2> /dev/null | grep -q idle; then echo "slurm.sh: cluster already up"; sinfo; exit 0; fi
    bash "$TOOL" start
    for _ in $(seq 30); do sinfo -h -o %T 2> /dev/null | grep -q idle && break; sleep 1; done
    sinfo -h -o %T | grep -q idle || { echo "slurm.sh: node not idle" >&2; sinfo >&2 || true; exit 1; }
    ;;
  stop)
    [ -f "$TOOL" ] && bash "$TOOL" stop || true
    ;;
  status)
    sinfo
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2; exit 2
    ;;
esac
