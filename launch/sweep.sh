#!/usr/bin/env bash
# Single-node hyperparameter sweep: methods x learning rates x LoRA ranks x seeds, each run in its
# own output dir named from its settings, packed onto free GPUs (or N concurrent CPU slots), each
# launched with launch/train.sh. Finished runs (results.json present) are skipped, so a sweep that
# was stopped is resumed by running the same command again. Ends with one summary table
# (<sweep dir>/summary.md and summary.csv) over every run of the grid.
#   launch/sweep.sh [sweep options] [--] <ftune train flags shared by every run>
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/sweep.sh [sweep options] [--] <ftune train flags shared by every run>

Sweep options are spelled with hyphens; every other argument goes to `ftune train` for every run
(data, model, epochs, batch size, ...). Lists are comma- or space-separated.

  --methods LIST         of full,head,bitfit,last_k,lora,dora,ia3 (FTUNE_METHODS, default full,head,lora)
  --learning-rates LIST  peak learning rates              (FTUNE_LEARNING_RATES, default 5e-5)
  --lora-ranks LIST      LoRA ranks, lora and dora runs   (FTUNE_LORA_RANKS, default 12)
  --seeds LIST           seeds                            (FTUNE_SEEDS, default 42)
  --sweep-dir DIR        where the runs and summary go    (FTUNE_SWEEP_DIR, default runs/sweep)
  --slots N              concurrent runs                  (FTUNE_SLOTS; default GPUs / np, or 1 on CPU)
  --np N                 ranks per run (GPUs per run)     (FTUNE_NP, default 1)
  --only I               run only grid point I (0-based; a SLURM array task), no summary
  --count                print the number of grid points and exit
  --list                 print "index name" for every grid point and exit
  --summary-only         only write the summary table of what exists
  --dry-run              print each run's command instead of running it
  --help                 this text

Run names: <method>[_r<rank>]_lr<lr>_seed<seed>, e.g. lora_r8_lr1e-4_seed42. Each run's output is
<sweep dir>/<name>/ and its log <sweep dir>/logs/<name>.log. On GPUs each slot gets --np GPUs via
CUDA_VISIBLE_DEVICES; on CPU the cores are split between the slots (taskset) and each run uses
cores/slots threads. SIGUSR1, SIGTERM or SIGINT stop the sweep: running runs checkpoint and the
next invocation continues them (every run gets --resume=auto). Exit: 0 all runs done, 1 a run
failed, 2 bad options, 75 stopped by a signal.

  launch/sweep.sh --methods head,lora --learning-rates 1e-4,5e-4 --lora-ranks 4,8 \
      --model_dir=models/distilbert-base-uncased --train_data=data/train.h5 \
      --eval_data=data/eval.h5 --epochs=3
Environment: FTUNE_BIN (the ftune binary), FTUNE_MPI_ARGS (see launch/train.sh --help).
EOF
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
train_sh=$root/launch/train.sh

die() { echo "sweep.sh: $*" >&2; exit 2; }
split_list() { tr ', ' '\n\n' <<<"$1" | sed '/^$/d'; }

methods=${FTUNE_METHODS:-full,head,lora}
lrs=${FTUNE_LEARNING_RATES:-5e-5}
ranks=${FTUNE_LORA_RANKS:-12}
seeds=${FTUNE_SEEDS:-42}
sweep_dir=${FTUNE_SWEEP_DIR:-runs/sweep}
slots=${FTUNE_SLOTS:-}
np=${FTUNE_NP:-1}
only=""
mode=run
dry_run=0
common=()

need() { [ $# -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --methods) need "$@"; methods=$2; shift ;;
    --methods=*) methods=${1#*=} ;;
    --learning-rates | --lrs) need "$@"; lrs=$2; shift ;;
    --learning-rates=* | --lrs=*) lrs=${1#*=} ;;
    --lora-ranks) need "$@"; ranks=$2; shift ;;
    --lora-ranks=*) ranks=${1#*=} ;;
    --seeds) need "$@"; seeds=$2; shift ;;
    --seeds=*) seeds=${1#*=} ;;
    --sweep-dir) need "$@"; sweep_dir=$2; shift ;;
    --sweep-dir=*) sweep_dir=${1#*=} ;;
    --slots) need "$@"; slots=$2; shift ;;
    --slots=*) slots=${1#*=} ;;
    --np) need "$@"; np=$2; shift ;;
    --np=*) np=${1#*=} ;;
    --only) need "$@"; only=$2; shift ;;
    --only=*) only=${1#*=} ;;
    --count) mode=count ;;
    --list) mode=list ;;
    --summary-only) mode=summary ;;
    --dry-run) dry_run=1 ;;
    --) shift; common+=("$@"); break ;;
    *) common+=("$1") ;;
  esac
  shift
done

# The sweep owns these flags; a shared value would silently collapse the grid.
for a in ${common[@]+"${common[@]}"}; do
  case "$a" in
    --method | --method=*) die "set methods with --methods, not $a" ;;
    --learning_rate | --learning_rate=*) die "set learning rates with --learning-rates, not $a" ;;
    --lora_rank | --lora_rank=*) die "set LoRA ranks with --lora-ranks, not $a" ;;
    --seed | --seed=*) die "set seeds with --seeds, not $a" ;;
    --output_dir | --output_dir=*) die "runs go to <--sweep-dir>/<run name>; drop $a" ;;
    --overwrite | --overwrite=* | --resume | --resume=*) die "the sweep decides $a per run (finished runs are skipped)" ;;
  esac
done
[[ "$np" =~ ^[1-9][0-9]*$ ]] || die "--np must be a positive integer, got \"$np\""
[ -z "$slots" ] || [[ "$slots" =~ ^[1-9][0-9]*$ ]] || die "--slots must be a positive integer, got \"$slots\""

# ---- The grid: method (x rank for lora) x learning rate x seed, in a fixed order --------------
g_name=() g_method=() g_lr=() g_rank=() g_seed=()
mapfile -t l_methods < <(split_list "$methods")
mapfile -t l_lrs < <(split_list "$lrs")
mapfile -t l_ranks < <(split_list "$ranks")
mapfile -t l_seeds < <(split_list "$seeds")
for m in ${l_methods[@]+"${l_methods[@]}"}; do
  case "$m" in full | head | bitfit | last_k | lora | dora | ia3) ;;
    *) die "method \"$m\" is not one of full, head, bitfit, last_k, lora, dora, ia3" ;; esac
done
for lr in ${l_lrs[@]+"${l_lrs[@]}"}; do
  [[ "$lr" =~ ^[0-9][0-9.]*([eE][-+]?[0-9]+)?$ ]] || die "learning rate \"$lr\" is not a number like 5e-5"
done
for r in ${l_ranks[@]+"${l_ranks[@]}"}; do [[ "$r" =~ ^[1-9][0-9]*$ ]] || die "LoRA rank \"$r\" is not a positive integer"; done
for s in ${l_seeds[@]+"${l_seeds[@]}"}; do [[ "$s" =~ ^[0-9]+$ ]] || die "seed \"$s\" is not a non-negative integer"; done
[ ${#l_methods[@]} -gt 0 ] && [ ${#l_lrs[@]} -gt 0 ] && [ ${#l_seeds[@]} -gt 0 ] || die "empty method, learning rate or seed list"

for m in "${l_methods[@]}"; do
  if [ "$m" = lora ] || [ "$m" = dora ]; then
    [ ${#l_ranks[@]} -gt 0 ] || die "$m in --methods needs --lora-ranks"
    mranks=("${l_ranks[@]}")
  else
    mranks=(-)
  fi
  for r in "${mranks[@]}"; do
    for lr in "${l_lrs[@]}"; do
      for s in "${l_seeds[@]}"; do
        name=$m
        [ "$r" = - ] || name+="_r$r"
        name+="_lr${lr}_seed$s"
        g_name+=("$name") g_method+=("$m") g_lr+=("$lr") g_rank+=("$r") g_seed+=("$s")
      done
    done
  done
done
n=${#g_name[@]}

case "$mode" in
  count) echo "$n"; exit 0 ;;
  list) for ((i = 0; i < n; i++)); do echo "$i ${g_name[i]}"; done; exit 0 ;;
esac

indices=()
if [ -n "$only" ]; then
  [[ "$only" =~ ^[0-9]+$ ]] && [ "$only" -lt "$n" ] || die "--only $only is outside the grid (0..$((n - 1)))"
  indices=("$only")
else
  for ((i = 0; i < n; i++)); do indices+=("$i"); done
fi

logs=$sweep_dir/logs

# ---- Summary: grid.csv names every grid point; `ftune report --sweep` joins it with the results --
bin=${FTUNE_BIN:-$root/${FTUNE_BUILD_DIR:-build}/ftune}
write_summary() {
  mkdir -p "$sweep_dir"
  {
    echo "run,method,learning_rate,lora_rank,seed"
    for ((i = 0; i < n; i++)); do
      echo "${g_name[i]},${g_method[i]},${g_lr[i]},$([ "${g_rank[i]}" = - ] || echo "${g_rank[i]}"),${g_seed[i]}"
    done
  } >"$sweep_dir/grid.csv.tmp" && mv "$sweep_dir/grid.csv.tmp" "$sweep_dir/grid.csv"
  "$bin" report --sweep="$sweep_dir"
}

if [ "$mode" = summary ]; then
  write_summary
  exit 0
fi

# Finished runs are skipped: this is what makes a stopped sweep resumable.
queue=()
for i in "${indices[@]}"; do
  if [ -f "$sweep_dir/${g_name[i]}/results.json" ]; then
    echo "sweep.sh: skip  ${g_name[i]} (results.json present)"
  else
    queue+=("$i")
  fi
done

# ---- Slots: GPUs (np per run) or CPU slots, each with its own cores ----------------------------
force_cpu=0
for ((i = 0; i < ${#common[@]}; i++)); do
  case "${common[i]}" in
    --device=cpu) force_cpu=1 ;;
    --device) [ "${common[i + 1]:-}" = cpu ] && force_cpu=1 ;;
  esac
done
gpus=()
[ "$force_cpu" = 1 ] || mapfile -t gpus < <("$train_sh" --list-gpus)
ngpu=${#gpus[@]}
if [ "$ngpu" -gt 0 ]; then
  max_slots=$((ngpu / np))
  [ "$max_slots" -ge 1 ] || die "--np $np needs $np GPUs per run, but only $ngpu are visible"
  [ -n "$slots" ] && [ "$slots" -lt "$max_slots" ] || slots=$max_slots
else
  slots=${slots:-1}
fi
[ "${#queue[@]}" -ge "$slots" ] || slots=${#queue[@]}
[ "$slots" -ge 1 ] || slots=1

# The CPUs this process may use (affinity list such as 0-3,8-11), expanded and split per slot.
cpu_ids=()
if command -v taskset >/dev/null 2>&1; then
  list=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status 2>/dev/null || true)
  IFS=, read -r -a parts <<<"$list"
  for p in ${parts[@]+"${parts[@]}"}; do
    if [[ "$p" == *-* ]]; then
      for ((c = ${p%-*}; c <= ${p#*-}; c++)); do cpu_ids+=("$c"); done
    elif [ -n "$p" ]; then
      cpu_ids+=("$p")
    fi
  done
fi
per_slot=$(( ${#cpu_ids[@]} / slots ))
slot_cpus() {  # the comma list of CPUs of slot $1, empty when the cores cannot be split
  [ "$slots" -gt 1 ] && [ "$per_slot" -ge 1 ] || return 0
  local first=$(($1 * per_slot)) out="" k
  for ((k = first; k < first + per_slot; k++)); do out+="${out:+,}${cpu_ids[k]}"; done
  echo "$out"
}
slot_gpus() {  # CUDA_VISIBLE_DEVICES of slot $1
  local out="" k
  for ((k = $1 * np; k < ($1 + 1) * np; k++)); do out+="${out:+,}${gpus[k]}"; done
  echo "$out"
}

if [ "$dry_run" = 0 ]; then
  [ -x "$bin" ] || { echo "sweep.sh: no ftune binary at $bin (build it with launch/build.sh, or set FTUNE_BIN)" >&2; exit 1; }
fi

mkdir -p "$logs"
where="CPU"
[ "$ngpu" -gt 0 ] && where="$ngpu GPU(s)"
echo "sweep.sh: ${#queue[@]} of $n run(s) to do in $sweep_dir, $slots slot(s) on $where, $np rank(s) per run"

# ---- Run the queue ------------------------------------------------------------------------------
declare -A slot_pid=() slot_run=()
stopping=0
failed=0
preempted=0

stop_runs() {
  stopping=1
  local s
  for s in "${!slot_pid[@]}"; do kill -USR1 "${slot_pid[$s]}" 2>/dev/null || true; done
}
trap 'echo "sweep.sh: stop requested; running runs checkpoint and stop" >&2; stop_runs' USR1 TERM INT

start_run() {  # start_run SLOT INDEX
  local s=$1 i=$2 name=${g_name[$2]} dir cpus
  dir=$sweep_dir/$name
  local flags=(--method="${g_method[i]}" --learning_rate="${g_lr[i]}" --seed="${g_seed[i]}" --output_dir="$dir")
  [ "${g_rank[i]}" = - ] || flags+=(--lora_rank="${g_rank[i]}")
  # The binary decides: a stopped run continues from its newest checkpoint, one without any starts again.
  flags+=(--resume=auto)
  local env=(FTUNE_NP="$np")
  [ "$ngpu" -gt 0 ] && env+=(CUDA_VISIBLE_DEVICES="$(slot_gpus "$s")")
  local pin=()
  cpus=$(slot_cpus "$s")
  [ -n "$cpus" ] && pin=(taskset -c "$cpus") && env+=(FTUNE_BIND=none)
  local cmd=(env "${env[@]}" ${pin[@]+"${pin[@]}"} "$train_sh" "${flags[@]}" ${common[@]+"${common[@]}"})
  if [ "$dry_run" = 1 ]; then
    echo "[$name] ${cmd[*]}"
    return 0
  fi
  rm -f "$logs/$name.exit"
  echo "sweep.sh: start $name (slot $s${cpus:+, cpus $cpus}); log $logs/$name.log"
  echo "=== $(date '+%F %T') sweep.sh: ${cmd[*]}" >>"$logs/$name.log"
  "${cmd[@]}" >>"$logs/$name.log" 2>&1 </dev/null &
  slot_pid[$s]=$!
  slot_run[$s]=$i
}

finish_run() {  # finish_run SLOT EXIT_CODE
  local s=$1 rc=$2 name=${g_name[${slot_run[$1]}]}
  unset "slot_pid[$s]" "slot_run[$s]"
  if [ "$stopping" = 1 ] && [ "$rc" -eq $((128 + $(kill -l USR1))) ]; then
    # Our own stop signal reached the run while it was still starting (before its handlers were
    # installed): nothing was lost, and the next sweep starts it over. Resumable, not failed.
    echo "sweep.sh: $name was stopped while starting (before its first checkpoint); it will start over"
    rc=75
  fi
  [ "$rc" -eq 0 ] || echo "$rc" >"$logs/$name.exit"  # read by the summary while results.json is missing
  case "$rc" in
    0) echo "sweep.sh: done  $name" ;;
    75) preempted=$((preempted + 1)); echo "sweep.sh: $name stopped (exit 75); run the sweep again to continue it" ;;
    *) failed=$((failed + 1)); echo "sweep.sh: FAILED $name (exit $rc); see $logs/$name.log" >&2 ;;
  esac
}


if [ "$dry_run" = 1 ]; then
  for ((k = 0; k < ${#queue[@]}; k++)); do start_run $((k % slots)) "${queue[k]}"; done
  exit 0
fi

next=0
while :; do
  # Fill free slots.
  for ((s = 0; s < slots; s++)); do
    [ "$stopping" = 0 ] && [ "$next" -lt "${#queue[@]}" ] || break
    [ -z "${slot_pid[$s]+set}" ] || continue
    start_run "$s" "${queue[next]}"
    next=$((next + 1))
  done
  [ "${#slot_pid[@]}" -gt 0 ] || break
  # Block until a run ends (or a signal arrives), then collect every run that ended.
  wait -n 2>/dev/null || true
  for s in "${!slot_pid[@]}"; do
    pid=${slot_pid[$s]}
    if ! kill -0 "$pid" 2>/dev/null; then
      rc=0
      wait "$pid" 2>/dev/null || rc=$?
      finish_run "$s" "$rc"
    fi
  done
done
trap - USR1 TERM INT

if [ -z "$only" ]; then
  write_summary
fi
[ "$failed" -eq 0 ] || exit 1
[ "$stopping" = 0 ] && [ "$preempted" -eq 0 ] || exit 75
exit 0
