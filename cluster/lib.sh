# Shared by the SLURM batch scripts in cluster/ (sourced, not run). Provides:
#   ftune_job_setup         resolve the repo, binary, ranks per node and CPUs per rank from
#                           SLURM's variables (FTUNE_NODES, FTUNE_RPN, FTUNE_CPUS_PER_RANK, FTUNE_NP)
#   ftune_train_args "$@"   sets FTUNE_ARGS: the ftune train flags plus --threads and --resume=auto
#   ftune_job_run CMD...    run the job step in the background with preemption handling:
#                           SIGUSR1 (from #SBATCH --signal=B:USR1@120 or
#                           `scancel --signal=USR1 --batch JOB`) and SIGTERM are forwarded to the
#                           step as SIGUSR1, so every rank stops at the next step boundary and
#                           writes a checkpoint; when the step exits 75 (preempted after
#                           checkpointing) the job is requeued with `scontrol requeue` and the next
#                           start continues from the checkpoint (--resume=auto).
# Environment read:
#   FTUNE_ROOT             repo checkout (default: the submit directory)
#   FTUNE_BIN              ftune binary (default: $FTUNE_ROOT/${FTUNE_BUILD_DIR:-build}/ftune)
#   FTUNE_RANKS_PER_NODE   ranks per node (default: GPUs per node, else --ntasks-per-node, else 1)
#   FTUNE_MAX_REQUEUES     stop requeueing after this many restarts (default 20)
#   FTUNE_SETUP            shell code run first, e.g. "module load openmpi/4.1 cuda/12.1"

ftune_log() { echo "[$(date '+%F %T')] ${SLURM_JOB_ID:+job $SLURM_JOB_ID: }$*"; }

# GPUs on this node from SLURM's variables: SLURM_GPUS_ON_NODE (set with --gpus-per-node, --gpus,
# --gres=gpu:N), else SLURM_GPUS_PER_NODE ("[type:]N"), else the job's GPU list; 0 on CPU nodes.
ftune_gpus_per_node() {
  local n=${SLURM_GPUS_ON_NODE:-}
  if [ -z "$n" ] && [ -n "${SLURM_GPUS_PER_NODE:-}" ]; then n=${SLURM_GPUS_PER_NODE##*:}; fi
  if [ -z "$n" ] && [ -n "${SLURM_JOB_GPUS:-}" ]; then n=$(tr ',' '\n' <<<"$SLURM_JOB_GPUS" | grep -c .); fi
  [[ "$n" =~ ^[0-9]+$ ]] || n=0
  echo "$n"
}

ftune_job_setup() {
  if [ -n "${FTUNE_SETUP:-}" ]; then eval "$FTUNE_SETUP"; fi
  FTUNE_ROOT=${FTUNE_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
  cd "$FTUNE_ROOT" || { ftune_log "cannot cd to FTUNE_ROOT=$FTUNE_ROOT"; exit 1; }
  FTUNE_BIN=${FTUNE_BIN:-$FTUNE_ROOT/${FTUNE_BUILD_DIR:-build}/ftune}
  if [ ! -x "$FTUNE_BIN" ]; then
    ftune_log "no ftune binary at $FTUNE_BIN"
    ftune_log "---> HINT: build it on the cluster (launch/build.sh), submit from the repo root or set FTUNE_ROOT, or set FTUNE_BIN"
    exit 1
  fi
  export FTUNE_ROOT FTUNE_BIN

  FTUNE_NODES=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
  FTUNE_GPUS_PER_NODE=$(ftune_gpus_per_node)
  local ntpn=${SLURM_NTASKS_PER_NODE:-}
  ntpn=${ntpn%%(*}  # "2(x3)" -> 2
  if [ -n "${FTUNE_RANKS_PER_NODE:-}" ]; then
    FTUNE_RPN=$FTUNE_RANKS_PER_NODE
  elif [ "$FTUNE_GPUS_PER_NODE" -gt 0 ]; then
    FTUNE_RPN=$FTUNE_GPUS_PER_NODE
  elif [[ "$ntpn" =~ ^[0-9]+$ ]]; then
    FTUNE_RPN=$ntpn
  else
    FTUNE_RPN=1
  fi
  # CPUs this job has on a node (all of them with --exclusive); each rank gets an equal share.
  local cpus=${SLURM_CPUS_ON_NODE:-$(nproc)}
  FTUNE_CPUS_PER_RANK=$((cpus / FTUNE_RPN))
  [ "$FTUNE_CPUS_PER_RANK" -ge 1 ] || FTUNE_CPUS_PER_RANK=1
  # shellcheck disable=SC2034  # FTUNE_NP is read by the batch scripts
  FTUNE_NP=$((FTUNE_NODES * FTUNE_RPN))

  # Open MPI refuses root unless told (containers, some clusters).
  if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
  export OMP_NUM_THREADS=$FTUNE_CPUS_PER_RANK

  ftune_log "start${SLURM_RESTART_COUNT:+ (restart $SLURM_RESTART_COUNT)} on ${SLURM_JOB_NODELIST:-$(hostname)}:" \
            "$FTUNE_NODES node(s) x $FTUNE_RPN rank(s), $FTUNE_GPUS_PER_NODE GPU(s)/node," \
            "$FTUNE_CPUS_PER_RANK CPU(s)/rank; $FTUNE_BIN"
}

ftune_train_args() {
  # The trainer's flags, plus --threads and --resume=auto unless given: the binary resumes from the
  # run's newest undamaged checkpoint, or starts it (again) when it has none.
  FTUNE_ARGS=("$@")
  local has_resume=0 has_threads=0 a
  for a in "${FTUNE_ARGS[@]}"; do
    case "$a" in
      --resume | --resume=*) has_resume=1 ;;
      --threads | --threads=*) has_threads=1 ;;
    esac
  done
  [ "$has_threads" = 1 ] || FTUNE_ARGS+=("--threads=$FTUNE_CPUS_PER_RANK")
  [ "$has_resume" = 1 ] || FTUNE_ARGS+=(--resume=auto)
}

_ftune_step_pid=""
_ftune_got_usr1=0
_ftune_got_term=0
_ftune_signalled=0
_ftune_forward() {  # _ftune_forward SIGNAME
  _ftune_signalled=1
  case "$1" in
    USR1) _ftune_got_usr1=1 ;;
    TERM) _ftune_got_term=1 ;;
  esac
  ftune_log "got SIG$1; asking the step to checkpoint and stop (SIGUSR1 to pid $_ftune_step_pid)"
  # srun and mpirun both forward SIGUSR1 to every rank; SIGTERM to mpirun would kill the ranks.
  [ -n "$_ftune_step_pid" ] && kill -USR1 "$_ftune_step_pid" 2>/dev/null || true
}

ftune_job_run() {
  trap '_ftune_forward USR1' USR1
  trap '_ftune_forward TERM' TERM
  ftune_log "step: $*"
  "$@" &
  _ftune_step_pid=$!
  local rc
  while :; do
    _ftune_signalled=0
    rc=0
    wait "$_ftune_step_pid" || rc=$?
    # A trapped signal interrupts `wait` with 128+n while the step still runs: wait again.
    [ "$_ftune_signalled" = 1 ] && [ "$rc" -gt 128 ] || break
  done
  trap - USR1 TERM
  ftune_log "step exited with $rc"
  if [ "$rc" -eq 75 ]; then
    if [ "$_ftune_got_term" = 1 ]; then
      # SIGTERM is SLURM cancelling or ending the job (or preempting it, which requeues it by
      # itself): keep the checkpoint, do not requeue.
      ftune_log "stopped by SIGTERM after a checkpoint; not requeueing (resubmit to continue)"
      exit 75
    fi
    local max=${FTUNE_MAX_REQUEUES:-20}
    if [ "${SLURM_RESTART_COUNT:-0}" -ge "$max" ]; then
      ftune_log "preempted after $max restarts (FTUNE_MAX_REQUEUES); not requeueing again"
      exit 75
    fi
    ftune_log "preempted after a checkpoint; requeueing"
    if scontrol requeue "$SLURM_JOB_ID"; then exit 0; fi
    ftune_log "scontrol requeue failed (is the job --requeue'able?); resubmit to continue"
    exit 75
  fi
  exit "$rc"
}
