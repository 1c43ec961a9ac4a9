#!/usr/bin/env bash
# Runs the repo's SLURM batch scripts (cluster/*.sbatch, cluster/submit-sweep.sh) on a real SLURM:
# munged, slurmctld and slurmd started here on this machine (tests/slurm/local_cluster.sh: one node,
# 2 count-only GPUs, non-default ports, everything under a scratch dir), jobs on the synthetic task.
#   tests/slurm/slurm_test.sh CASE FTUNE_BIN
#   jobs             srun --mpi=pmix job (ranks from SLURM_GPUS_ON_NODE), the mpirun variant (same
#                    weights), a failing job's exit code, and a job-array sweep with its summary job
#   preempt_requeue  SIGUSR1 to the batch shell: the ranks checkpoint, exit 75, the job requeues
#                    itself and finishes with the weights of an uninterrupted run (srun and mpirun)
# Exit 0 pass, 1 fail, 77 skipped (no slurm-wlm/munge, not root, or ftune without --resume).
# Everything started here is stopped on exit, also on failure. FTUNE_KEEP_TEST_DIRS=1 keeps the dir.
set -euo pipefail

case_name=${1:?usage: slurm_test.sh CASE FTUNE_BIN}
FTUNE_BIN=$(realpath "${2:?usage: slurm_test.sh CASE FTUNE_BIN}")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PATH=$PATH:/usr/sbin:/sbin
# shellcheck source=tests/slurm/local_cluster.sh
source "$here/local_cluster.sh"
# shellcheck source=tests/launch/synthetic_task.sh
source "$repo/tests/launch/synthetic_task.sh"

skip() { echo "SKIP: $*"; exit 77; }
if ! missing=$(cluster_have_tools); then
  skip "$missing not found: install SLURM with launch/install-deps.sh --slurm (slurm-wlm + munge)"
fi
[ "$(id -u)" -eq 0 ] || skip "needs root (slurmd runs the jobs and munged must own its key)"
if [ "$case_name" = preempt_requeue ]; then
  help=$("$FTUNE_BIN" train --help 2>&1 || true)
  [[ "$help" == *--resume* ]] ||
    skip "$FTUNE_BIN has no --resume yet: the requeue test needs the trainer's checkpoint/resume feature"
fi

work=$(mktemp -d /tmp/ftune_slurm_test.XXXXXX)
status=1
cleanup() {
  trap - EXIT INT TERM
  cluster_stop
  if [ "$status" -ne 0 ] && [ -d "$work/cluster/log" ]; then
    echo "---- slurmctld.log (tail)"; tail -n 30 "$work/cluster/log/slurmctld.log" 2>/dev/null || true
    echo "---- slurmd.log (tail)"; tail -n 30 "$work/cluster/log/slurmd.log" 2>/dev/null || true
  fi
  if [ -z "${FTUNE_KEEP_TEST_DIRS:-}" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "FAIL: $*" >&2
  local f
  for f in "$work"/jobs/*.out; do [ -f "$f" ] && { echo "---- $f"; tail -n 40 "$f"; }; done
  exit 1
}

started=$(date +%s)
cluster_start "$work/cluster" 2 || fail "could not start the local SLURM cluster"
echo "cluster up in $(($(date +%s) - started)) s: SLURM_CONF=$SLURM_CONF"
make_synthetic_task "$work/task" "$FTUNE_BIN" || fail "could not make the synthetic task"
mkdir -p "$work/jobs"
cd "$work/jobs"  # the submit dir: job logs (%x-%j.out) land here
export FTUNE_ROOT=$repo FTUNE_BIN

submit() { local id; id=$(sbatch --parsable "$@") || fail "sbatch $* refused"; echo "${id%%;*}"; }
wait_job() { cluster_wait "$1" "$2" || fail "job $1 did not finish in $2 s"; }
expect_job() {  # expect_job ID STATE EXITCODE [RESTARTS]
  local state code restarts
  state=$(job_state "$1") code=$(job_field "$1" ExitCode) restarts=$(job_field "$1" Restarts)
  [ "$state" = "$2" ] && [ "$code" = "$3" ] || fail "job $1: $state exit $code, expected $2 exit $3"
  [ -z "${4:-}" ] || [ "$restarts" = "$4" ] || fail "job $1 restarted $restarts time(s), expected $4"
}
log_of() { ls "$work"/jobs/*-"$1".out 2>/dev/null | head -1; }
expect_log() {  # expect_log ID REGEX
  local f
  f=$(log_of "$1")
  [ -n "$f" ] || fail "no log file *-$1.out for job $1"
  grep -E -q -- "$2" "$f" || { echo "---- $f"; cat "$f"; fail "job $1's log lacks /$2/"; }
}
json_num() { sed -n "s/.*\"$2\": *\([-0-9.e+]*\).*/\1/p" "$1" | head -1; }
expect_run() {  # expect_run DIR WORLD_SIZE: a finished run with an eval accuracy
  [ -f "$1/results.json" ] || fail "no $1/results.json"
  [ "$(json_num "$1/results.json" world_size)" = "$2" ] || fail "$1: world_size is not $2"
  [ -n "$(json_num "$1/results.json" eval_accuracy)" ] || fail "$1: no eval accuracy"
}

task=$work/task
data=(--model_config="$task/tiny.json" --train_data="$task/train.h5" --eval_data="$task/eval.h5"
      --batch_size=4 --device=cpu)
flags=("${data[@]}" --learning_rate=3e-3)

case "$case_name" in

jobs)
  # srun + PMIx, 2 "GPUs" per node -> 2 ranks; the mpirun variant on CPU with 2 ranks per node.
  j_srun=$(submit --nodes=1 --gpus-per-node=2 "$repo/cluster/train.sbatch" "${flags[@]}" --max_steps=60 \
           --output_dir="$work/srun")
  j_mpirun=$(submit --nodes=1 --gpus-per-node=0 --export=ALL,FTUNE_RANKS_PER_NODE=2 \
             "$repo/cluster/train-mpirun.sbatch" "${flags[@]}" --max_steps=60 --output_dir="$work/mpirun")
  # ftune's exit code is the job's: bad flags -> FAILED with exit 2, no requeue.
  j_bad=$(submit --nodes=1 --gpus-per-node=0 "$repo/cluster/train.sbatch" "${flags[@]}" --batch_size=0 \
          --output_dir="$work/bad")
  # A 2x2 sweep as a job array (1 CPU per task: 2 tasks at a time) plus its summary job.
  ids=$("$repo/cluster/submit-sweep.sh" --gpus=0 --cpus-per-task=1 -- --methods head,lora \
        --learning-rates 1e-3,3e-3 --lora-ranks 4 --sweep-dir "$work/sweep" -- "${data[@]}" --max_steps=24) ||
    fail "submit-sweep.sh failed"
  read -r j_array j_summary <<<"$ids"
  echo "submitted: srun $j_srun, mpirun $j_mpirun, bad $j_bad, sweep array $j_array + summary $j_summary"

  wait_job "$j_srun" 180
  expect_job "$j_srun" COMPLETED 0:0 0
  expect_log "$j_srun" '1 node\(s\) x 2 rank\(s\), 2 GPU\(s\)/node'
  expect_log "$j_srun" 'step: srun --mpi=pmix .*--ntasks-per-node=2 '
  expect_log "$j_srun" 'ftune: 2 rank\(s\) on '
  expect_run "$work/srun" 2
  echo "srun --mpi=pmix job: ok ($(($(date +%s) - started)) s)"

  wait_job "$j_mpirun" 180
  expect_job "$j_mpirun" COMPLETED 0:0 0
  expect_log "$j_mpirun" 'step: mpirun -np 2 --map-by ppr:2:node:PE=[0-9]+ --bind-to core '
  expect_run "$work/mpirun" 2
  cmp "$work/srun/model/model.safetensors" "$work/mpirun/model/model.safetensors" ||
    fail "srun and mpirun launches trained different weights"
  echo "mpirun job: ok, same weights as srun ($(($(date +%s) - started)) s)"

  wait_job "$j_bad" 120
  expect_job "$j_bad" FAILED 2:0 0
  expect_log "$j_bad" 'batch_size must be > 0'
  echo "failing job: ok"

  wait_job "$j_summary" 300
  expect_job "$j_summary" COMPLETED 0:0
  tasks=$(scontrol -o show job "$j_array" | grep -c 'ArrayTaskId=') || true
  done_tasks=$(scontrol -o show job "$j_array" | grep -c 'JobState=COMPLETED') || true
  [ "$tasks" = 4 ] && [ "$done_tasks" = 4 ] || fail "array $j_array: $done_tasks of $tasks tasks completed (want 4)"
  [ "$(ls "$work"/jobs/ftune-sweep-*.out | wc -l)" -ge 4 ] || fail "no log per array task"
  [ "$(grep -c ',done$' "$work/sweep/summary.csv")" = 4 ] || { cat "$work/sweep/summary.csv"; fail "summary lacks 4 done runs"; }
  cat "$work/sweep/summary.md"
  echo "job array sweep: ok ($(($(date +%s) - started)) s)"
  ;;

preempt_requeue)
  long=(--max_steps=1500 --logging_steps=1)
  # Interrupted (srun and mpirun variants) and uninterrupted runs of the same training.
  j_srun=$(submit --nodes=1 --gpus-per-node=2 "$repo/cluster/train.sbatch" "${flags[@]}" "${long[@]}" \
           --output_dir="$work/srun")
  j_mpirun=$(submit --nodes=1 --gpus-per-node=0 --export=ALL,FTUNE_RANKS_PER_NODE=2 \
             "$repo/cluster/train-mpirun.sbatch" "${flags[@]}" "${long[@]}" --output_dir="$work/mpirun")
  j_ref=$(submit --nodes=1 --gpus-per-node=2 "$repo/cluster/train.sbatch" "${flags[@]}" "${long[@]}" \
          --output_dir="$work/ref")
  echo "submitted: srun $j_srun, mpirun $j_mpirun (both to be preempted), reference $j_ref"

  # Preempt each as soon as it is 10 steps in, as SLURM does 120 s before the time limit: SIGUSR1
  # to the batch shell only (#SBATCH --signal=B:USR1@120).
  for pair in "$j_srun:srun" "$j_mpirun:mpirun"; do
    id=${pair%%:*} dir=$work/${pair#*:}
    for _ in $(seq 1 1800); do
      [ -f "$dir/metrics.jsonl" ] && [ "$(grep -c '"train"' "$dir/metrics.jsonl")" -ge 10 ] && break
      sleep 0.1
    done
    [ -f "$dir/metrics.jsonl" ] || fail "job $id never started training"
    scancel --signal=USR1 --batch "$id" || fail "scancel --signal=USR1 --batch $id failed"
    echo "sent SIGUSR1 to job $id at step $(grep -c '"train"' "$dir/metrics.jsonl") ($(($(date +%s) - started)) s)"
  done

  for id in "$j_srun" "$j_mpirun" "$j_ref"; do wait_job "$id" 400; done
  expect_job "$j_ref" COMPLETED 0:0 0
  expect_run "$work/ref" 2
  for pair in "$j_srun:srun" "$j_mpirun:mpirun"; do
    id=${pair%%:*} dir=$work/${pair#*:}
    [ "$(job_field "$id" Restarts)" = 1 ] ||
      fail "job $id was not requeued (restarts $(job_field "$id" Restarts)); did the run end before the signal?"
    expect_job "$id" COMPLETED 0:0 1
    expect_log "$id" 'got SIGUSR1'
    expect_log "$id" 'stopped by signal'
    expect_log "$id" 'step exited with 75'
    expect_log "$id" 'preempted after a checkpoint; requeueing'
    expect_log "$id" 'start \(restart 1\)'
    expect_log "$id" 'step exited with 0'
    compgen -G "$dir/checkpoints/step-*" >/dev/null || fail "$dir has no checkpoint"
    expect_run "$dir" 2
    [ "$(json_num "$dir/results.json" steps)" = 1500 ] || fail "$dir did not train all 1500 steps"
    cmp "$dir/model/model.safetensors" "$work/ref/model/model.safetensors" ||
      fail "job $id (${pair#*:}): weights after preemption + requeue differ from the uninterrupted run"
    echo "${pair#*:} job $id: preempted, requeued, resumed; weights identical to the uninterrupted run"
  done
  ;;

*) echo "unknown case $case_name" >&2; exit 2 ;;
esac
status=0
echo "PASS: $case_name ($(($(date +%s) - started)) s)"
