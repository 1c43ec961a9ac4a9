#!/usr/bin/env bash
# Launches `ftune train` on one node under mpirun: one rank per GPU, each bound to its share of the
# cores, or on CPU FTUNE_NP ranks (default 1) unbound, with threads per rank = cores / ranks.
#   launch/train.sh [--np N] [--dry-run] [--list-gpus] [--help] [--] <ftune train flags...>
# Every argument it does not know goes to `ftune train` unchanged. It execs mpirun, so signals sent
# to this script's pid reach mpirun, which forwards SIGUSR1 to every rank (ftune checkpoints and
# exits 75), and its exit code is the job's.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/train.sh [--np N] [--dry-run] [--list-gpus] [--help] [--] <ftune train flags...>

Runs `ftune train` under mpirun on this node and passes it every other argument.

  GPUs  found with CUDA_VISIBLE_DEVICES (if set) or `nvidia-smi -L`: one rank per GPU, each bound
        to cores/ranks cores (--map-by slot:PE=n --bind-to core); ftune picks GPU local_rank.
  CPU   (no GPU, or --device=cpu among the flags): FTUNE_NP ranks (default 1) with
        --oversubscribe --bind-to none.
  Both  --threads=cores/ranks is added unless the flags set --threads; root is allowed.

  launch/train.sh --method=lora --model_dir=models/distilbert-base-uncased \
                  --train_data=data/train.h5 --eval_data=data/eval.h5 --output_dir=runs/lora
  FTUNE_NP=2 launch/train.sh --flagfile=configs/head.flags ... # 2 CPU ranks

options:
  --np N        ranks (default: number of GPUs, else FTUNE_NP or 1)
  --dry-run     print the mpirun command and exit
  --list-gpus   print the GPUs this script would use, one id per line, and exit
  --help        this text (`ftune train --help` lists the trainer's flags)

environment:
  FTUNE_BIN        ftune binary (default: <repo>/${FTUNE_BUILD_DIR:-build}/ftune)
  FTUNE_NP         ranks when --np is not given
  FTUNE_BIND       auto (cores on GPU, none on CPU), cores, or none
  FTUNE_MPIRUN     mpirun command (default: mpirun)
  FTUNE_MPI_ARGS   extra mpirun arguments, e.g. "--mca btl_tcp_if_include eth0"
  CUDA_VISIBLE_DEVICES  restricts (or, empty, hides) GPUs
Exit code: ftune's (0 ok, 1 error, 2 bad flags, 75 preempted after checkpointing).
EOF
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The GPUs visible to this process, one id per line: CUDA_VISIBLE_DEVICES wins (empty, -1 or
# NoDevFiles = none), else nvidia-smi's list.
list_gpus() {
  if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
    case "$CUDA_VISIBLE_DEVICES" in
      "" | -1 | NoDevFiles) return 0 ;;
    esac
    tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | sed '/^ *$/d'
    return 0
  fi
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  nvidia-smi -L 2>/dev/null | sed -n 's/^GPU \([0-9][0-9]*\):.*/\1/p' || true
}

np=""
dry_run=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --list-gpus) list_gpus; exit 0 ;;
    --dry-run) dry_run=1 ;;
    --np) [ $# -ge 2 ] || { echo "train.sh: --np needs a value" >&2; exit 2; }; np=$2; shift ;;
    --np=*) np=${1#--np=} ;;
    --) shift; args+=("$@"); break ;;
    *) args+=("$1") ;;
  esac
  shift
done

# --device=cpu (or --device cpu) among ftune's flags means CPU even where GPUs exist.
force_cpu=0
user_threads=0
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --device=cpu) force_cpu=1 ;;
    --device) [ "${args[i + 1]:-}" = cpu ] && force_cpu=1 ;;
    --threads | --threads=*) user_threads=1 ;;
  esac
done

gpus=()
[ "$force_cpu" = 1 ] || mapfile -t gpus < <(list_gpus)
ngpu=${#gpus[@]}

if [ -z "$np" ]; then
  if [ "$ngpu" -gt 0 ]; then np=$ngpu; else np=${FTUNE_NP:-1}; fi
fi
[[ "$np" =~ ^[1-9][0-9]*$ ]] || { echo "train.sh: the rank count must be a positive integer, got \"$np\"" >&2; exit 2; }
if [ "$ngpu" -gt 0 ] && [ "$np" -gt "$ngpu" ]; then
  echo "train.sh: warning: $np ranks on $ngpu GPU(s); ranks will share GPUs" >&2
fi

cores=$(nproc)
threads=$((cores / np))
[ "$threads" -ge 1 ] || threads=1

bind=${FTUNE_BIND:-auto}
if [ "$bind" = auto ]; then
  if [ "$ngpu" -gt 0 ]; then bind=cores; else bind=none; fi
fi
# Binding each rank to its own cores needs a core per thread; otherwise fall back to no binding.
if [ "$bind" = cores ] && [ $((np * threads)) -gt "$cores" ]; then bind=none; fi
case "$bind" in
  cores) map=(--map-by "slot:PE=$threads" --bind-to core) ;;
  none) map=(--oversubscribe --bind-to none) ;;
  *) echo "train.sh: FTUNE_BIND must be auto, cores or none, got \"$bind\"" >&2; exit 2 ;;
esac

bin=${FTUNE_BIN:-$root/${FTUNE_BUILD_DIR:-build}/ftune}
if [ ! -x "$bin" ] && [ "$dry_run" = 0 ]; then
  echo "train.sh: no ftune binary at $bin" >&2
  echo "---> HINT: build it with launch/build.sh, or point FTUNE_BIN at one" >&2
  exit 1
fi

# Open MPI refuses to start as root unless told; containers and many clusters' nodes run as root.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

extra=()
[ "$user_threads" = 1 ] || extra+=("--threads=$threads")
read -r -a mpirun <<<"${FTUNE_MPIRUN:-mpirun}"
read -r -a mpi_extra <<<"${FTUNE_MPI_ARGS:-}"
cmd=("${mpirun[@]}" -np "$np" "${map[@]}" -x "OMP_NUM_THREADS=$threads" "${mpi_extra[@]}"
     "$bin" train "${args[@]}" "${extra[@]}")

where="CPU"
[ "$ngpu" -gt 0 ] && where="$ngpu GPU(s) [${gpus[*]}]"
echo "train.sh: $np rank(s) on $where, $cores core(s), $threads thread(s) per rank, bind $bind" >&2
echo "train.sh: ${cmd[*]}" >&2
[ "$dry_run" = 1 ] && exit 0
exec "${cmd[@]}"
