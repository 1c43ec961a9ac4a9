#!/usr/bin/env bash
# Submits a sweep as a SLURM job array, one task per grid point, plus a summary job that runs when
# every task has ended (afterany) and writes <sweep dir>/summary.md and summary.csv.
#   cluster/submit-sweep.sh [sbatch options] -- <sweep options> [--] <ftune train flags>
# e.g.
#   cluster/submit-sweep.sh --partition=gpu --time=01:00:00 -- \
#       --methods head,lora --learning-rates 1e-4,5e-4 --lora-ranks 4,8,16 --sweep-dir runs/sweep1 \
#       --model_dir=$MODELS/distilbert-base-uncased --train_data=$DATA/train.h5 --eval_data=$DATA/eval.h5
# FTUNE_ARRAY_LIMIT=K runs at most K tasks at once (--array=0-N%K). Run from the repo root (or set
# FTUNE_ROOT). Prints the array and summary job ids. Resubmitting the same sweep only reruns the
# grid points that have no results.json yet (the others finish at once).
set -euo pipefail
root=${FTUNE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export FTUNE_ROOT=$root

sbatch_opts=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do sbatch_opts+=("$1"); shift; done
if [ $# -eq 0 ]; then
  echo "usage: cluster/submit-sweep.sh [sbatch options] -- <sweep options> [--] <ftune train flags>" >&2
  exit 2
fi
shift  # the --
n=$("$root/launch/sweep.sh" --count "$@")
array_spec="0-$((n - 1))${FTUNE_ARRAY_LIMIT:+%$FTUNE_ARRAY_LIMIT}"

array_id=$(sbatch --parsable --array="$array_spec" ${sbatch_opts[@]+"${sbatch_opts[@]}"} \
           "$root/cluster/sweep.sbatch" "$@")
array_id=${array_id%%;*}
# The summary needs no GPU and a minute; these options come last, so they win.
summary_id=$(sbatch --parsable --dependency="afterany:$array_id" ${sbatch_opts[@]+"${sbatch_opts[@]}"} \
             --job-name=ftune-sweep-summary --gpus=0 --cpus-per-task=1 --time=00:10:00 --no-requeue \
             "$root/cluster/sweep.sbatch" --summary-only "$@")
summary_id=${summary_id%%;*}
echo "submit-sweep.sh: $n grid point(s): array job $array_id (--array=$array_spec), summary job $summary_id" >&2
echo "$array_id $summary_id"
