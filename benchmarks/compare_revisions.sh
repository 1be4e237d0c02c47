#!/usr/bin/env bash
# Run one configuration with two revisions of lzflow and compare their results bit for bit.
#
#   bash benchmarks/compare_revisions.sh BEFORE_REV AFTER_REV [CONFIG...]
#
# e.g. `bash benchmarks/compare_revisions.sh 07458d5 HEAD config/quick.yaml` (default config:
# config/config.yaml). Each revision is exported (git archive) to a scratch directory and run there
# with `snakemake --cores all` and its own package first on PYTHONPATH (the installed lzflow's
# dependencies are used; run from an activated environment); then benchmarks/compare_results.py
# compares the two results trees: toy records, limits, workspaces, response matrices and PDFs.
# A revision's results are kept in $LZFLOW_COMPARE_DIR (default /tmp/lzflow-compare/<rev>) and reused
# when present. Exit status 1 if any number differs.
set -euo pipefail
before=${1:?usage: compare_revisions.sh BEFORE_REV AFTER_REV [CONFIG...]}
after=${2:?usage: compare_revisions.sh BEFORE_REV AFTER_REV [CONFIG...]}
shift 2
configs=("${@:-config/config.yaml}")
repo=$(git rev-parse --show-toplevel)
scratch=${LZFLOW_COMPARE_DIR:-/tmp/lzflow-compare}
export CONDOR_CONFIG=${CONDOR_CONFIG:-/dev/null}

run_revision() {  # prints the results tree of one revision
  local rev sha dir tag
  rev=$1
  sha=$(git -C "$repo" rev-parse --short=12 "$rev")
  dir=$scratch/$sha
  if [ ! -d "$dir/src" ]; then
    mkdir -p "$dir"
    git -C "$repo" archive "$sha" | tar -x -C "$dir"
  fi
  tag=$(cd "$dir" && PYTHONPATH=$dir/src python -c "import sys; from lzflow.config import load_config_stack as l; print(l(sys.argv[1:])['tag'])" "${configs[@]}")
  (cd "$dir" && PYTHONPATH=$dir/src snakemake --cores all --configfile "${configs[@]}" >"$dir/snakemake_$tag.log" 2>&1) \
    || { tail -20 "$dir/snakemake_$tag.log" >&2; exit 1; }
  echo "$dir/results/$tag"
}

tree_before=$(run_revision "$before")
tree_after=$(run_revision "$after")
echo "before: $before -> $tree_before"
echo "after:  $after -> $tree_after"
python "$repo/benchmarks/compare_results.py" "$tree_before" "$tree_after"
