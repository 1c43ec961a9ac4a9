#!/usr/bin/env bash
# Training-speed benchmark (not a test): full, LoRA and head on the real IMDB subset (2,000 train /
# 500 eval reviews), the distilbert-base-uncased architecture (random init, as the HF anchor), batch 8,
# one epoch, length-grouped batches, with --skip_nonfinite so one NaN step costs no run. Each run's
# samples/s, tokens/s, padding, peak memory, eval accuracy and approximate model TFLOP/s, a short
# --time_phases run for the step breakdown, and, where python3 has torch + transformers + peft (the
# GPU machine), the Hugging Face Trainer anchor (hfbench.py) on the same device in the same call;
# on a CPU, where Debian's python3-torch is installed, the plain PyTorch loop anchor instead
# (launch/bench-vs-torch.sh: same LibTorch, same shapes, alternating, ratio per pair).
# The table is `ftune report --bench`: <out>.md (each row's ratio to HF as N.Nx) and <out>.json;
# the PyTorch loop's table is appended to <out>.md.
#
#   launch/bench.sh                          # everything, on the default device (CUDA if present)
#   launch/bench.sh --methods "lora" --precisions bf16 --max-steps 50
#   launch/bench.sh --budget 200             # what fits in 200 s, most wanted runs first
#
# Order (with --budget, a run starts only with --min-run seconds left and stops at the budget's
# end; the runs that did not fit are rows saying so):
#   1. --methods in the first of --precisions      2. the HF anchor (--hf-runs, in that order)
#   3. --variants of full and lora in that precision   4. --time_phases runs of 1 and 3
#   5. --methods in the other precisions (and their --time_phases runs)
#
# Options:
#   --data DIR          IMDB CSVs (train.csv, eval.csv)       default ../shared/data/imdb
#   --vocab FILE        vocab.txt                              default tests/fixtures/tokens/vocab.txt
#   --methods LIST      of full lora head head-cache           default "full lora head-cache head"
#   --precisions LIST   of fp32 bf16                           default "bf16 fp32" on CUDA, "fp32" on CPU
#   --variants LIST     of cudnn (--cudnn_sdp) and padN (--pad_to_multiple_of N)
#                                                              default "pad32 pad8 pad64 cudnn" on CUDA, none on CPU
#   --batch N           per-device batch                       default 8
#   --max-steps N       cap each timed run (default: one epoch, 250 steps)
#   --phase-steps N     steps of the --time_phases runs        default 60 (0 = none)
#   --budget SECONDS    stop starting runs after this long     default 0 (no limit)
#   --run-limit SECONDS stop any one ftune run after this long default 90
#   --min-run SECONDS   the least time a run starts with       default 15
#   --hf / --no-hf      run the HF Trainer anchor (or not)     default: when python3 has torch+transformers+peft
#   --torch / --no-torch  on a CPU, the PyTorch loop anchor   default: when /usr/bin/python3 has torch+h5py
#   --hfbench FILE      the anchor script                      default ../shared/reference/generate/hfbench.py
#   --hf-runs LIST      its runs, most wanted first            default: each method's fastest on an H200 first
#   --out FILE.md       the report (and FILE.json)             default results/bench-<device>.md
#   --runs DIR          where the runs go                      default <out without .md>-runs (emptied first)
#   -- ...              extra flags for every `ftune train` (e.g. -- --model_config=configs/tiny.json)
# Environment: FTUNE_BIN (default build/ftune), FTUNE_BUILD_DIR, PYTHON (python3: runs hfbench.py),
#   FTUNE_SHARED (the reference folder, default ../shared).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

shared=${FTUNE_SHARED:-$root/../shared}  # the reference folder users do not have
data=$shared/data/imdb vocab=tests/fixtures/tokens/vocab.txt methods="full lora head-cache head"
precisions="" variants=unset batch=8 max_steps="" phase_steps=60 budget=0 run_limit=90 min_run=15 hf=auto torch=auto
out="" work="" extra=()
hfbench=$shared/reference/generate/hfbench.py
# HF Trainer's fastest run of each method on an H200 first (padded bf16: the bar of the speed goals),
# then the same settings as ftune's rows (dynamic padding); full_dyn_bf16 is slow (cuDNN plans).
hf_runs="full_bf16 lora_bf16 head_bf16 head lora_dyn_bf16 full_dyn head_dyn_bf16 full_dyn_bf16 lora_dyn head_dyn"
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --vocab) vocab=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --precisions) precisions=$2; shift 2 ;;
    --variants) variants=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --max-steps) max_steps=$2; shift 2 ;;
    --phase-steps) phase_steps=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --run-limit) run_limit=$2; shift 2 ;;
    --min-run) min_run=$2; shift 2 ;;
    --hf) hf=1; shift ;;
    --no-hf) hf=0; shift ;;
    --torch) torch=1; shift ;;
    --no-torch) torch=0; shift ;;
    --hfbench) hfbench=$2; shift 2 ;;
    --hf-runs) hf_runs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --runs) work=$2; shift 2 ;;
    -h|--help) sed -n '2,44p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; extra+=("$@"); break ;;
    *) echo "bench: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
start=$(date +%s)
# The options first (they need no file), then the files.
for v in $([ "$variants" = unset ] || echo "$variants"); do
  [[ "$v" =~ ^(cudnn|pad[0-9]+)$ ]] || { echo "bench: unknown variant $v (cudnn, padN)" >&2; exit 2; }
done
for f in "$data/train.csv" "$data/eval.csv" "$vocab"; do
  [ -f "$f" ] || { echo "bench: $f not found (--data DIR with train.csv and eval.csv; --vocab FILE)" >&2; exit 2; }
done
FTUNE_BIN=${FTUNE_BIN:-$root/${FTUNE_BUILD_DIR:-build}/ftune}
[ -x "$FTUNE_BIN" ] || { echo "bench: $FTUNE_BIN not built (launch/build.sh or launch/build-gpu.sh; or set FTUNE_BIN)" >&2; exit 2; }

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  device_tag=$(echo "$gpu" | tr 'A-Z' 'a-z' | sed 's/nvidia //; s/[^a-z0-9]\+/-/g; s/-$//')
  : "${precisions:=bf16 fp32}"
  [ "$variants" != unset ] || variants="pad32 pad8 pad64 cudnn"
else
  gpu="CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(nproc) cores)"
  device_tag=cpu
  : "${precisions:=fp32}"
  [ "$variants" != unset ] || variants=""
fi
out=${out:-results/bench-$device_tag.md}
[[ "$out" == *.md ]] || { echo "bench: --out must end in .md" >&2; exit 2; }
work=${work:-${out%.md}-runs}   # every run's results.json/metrics.jsonl stay here (git-ignored under results/)
rm -rf "$work"
mkdir -p "$work" "$(dirname "$out")"
left() { if [ "$budget" -gt 0 ]; then echo $((start + budget - $(date +%s))); else echo 999999; fi; }

echo "== bench on $gpu: methods [$methods], precisions [$precisions], variants [$variants], batch $batch," \
     "budget ${budget}s -> $out"
for split in train eval; do
  "$FTUNE_BIN" prep --input="$data/$split.csv" --output="$work/$split.h5" --vocab="$vocab" --max_length=512 >/dev/null
done

common=(--train_data="$work/train.h5" --eval_data="$work/eval.h5" --epochs=1 --batch_size="$batch"
        --eval_batch_size="$batch" --group_by_length --save_model=false --logging_steps=1000 --seed=42
        --skip_nonfinite)
[ -n "$max_steps" ] && common+=(--max_steps="$max_steps")
planned=()  # every run directory in table order, run or not

# train NAME FLAGS...: one `ftune train` into $work/NAME, under the time left; its status file
# says why when it has no results.json.
train() {
  local name=$1 dir=$work/$1 t rc=0
  shift
  mkdir -p "$dir"
  t=$(left)
  if [ "$t" -lt "$min_run" ]; then
    echo "not run: $((t > 0 ? t : 0)) s of the ${budget} s budget left" >"$dir/status"
    echo "-- $name: not run ($(cat "$dir/status"))"
    return 0
  fi
  [ "$t" -gt "$run_limit" ] && t=$run_limit
  echo "-- $name (limit ${t}s)"
  timeout -k 5 "$t" "$FTUNE_BIN" train "${common[@]}" "$@" --output_dir="$dir" "${extra[@]}" \
    >"$dir/train.log" 2>&1 || rc=$?
  grep -E "epoch 1/|done:|error|non-finite" "$dir/train.log" | cut -c1-200 || true
  if [ ! -f "$dir/results.json" ]; then
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "timed out after ${t} s" >"$dir/status"
    else echo "failed (exit $rc): $(grep -m1 'error' "$dir/train.log" | cut -c1-150)" >"$dir/status"; fi
    echo "bench: $name: $(cat "$dir/status")" >&2
    tail -5 "$dir/train.log" >&2
  fi
}
method_flags() {  # method_flags M: the flags of method M (head-cache = head with the feature cache)
  echo "--method=${1%-cache}"
  [ "$1" = head-cache ] && echo --cache_frozen_features
  return 0
}
timed_runs() {  # timed_runs PRECISION: every method in PRECISION
  local m
  for m in $methods; do
    planned+=("$work/$m-$1")
    # shellcheck disable=SC2046
    train "$m-$1" $(method_flags "$m") --precision="$1"
  done
}
phase_runs() {  # phase_runs PRECISION: the --time_phases runs of the methods that ran
  local m
  [ "$phase_steps" -gt 0 ] || return 0
  for m in $methods; do
    [ -f "$work/$m-$1/results.json" ] || continue
    # shellcheck disable=SC2046
    train "$m-$1-phases" $(method_flags "$m") --precision="$1" --max_steps="$phase_steps" --time_phases --eval_data=
  done
}

read -r -a precs <<<"$precisions"
p0=${precs[0]}
timed_runs "$p0"

hf_json="" py=${PYTHON:-python3}
if [ "$hf" != 0 ] && { [ "$hf" = 1 ] || "$py" -c 'import torch, transformers, peft' 2>/dev/null; }; then
  t=$(left)
  if [ "$budget" -le 0 ]; then t=3600
  elif [ "$t" -gt 90 ]; then t=$((t / 2))  # the other half for the variants and phase runs
  fi
  if [ ! -f "$hfbench" ]; then
    echo "bench: $hfbench not found: no HF anchor" >&2
  elif [ "$t" -lt 30 ]; then
    echo "bench: ${t} s left: no HF anchor" >&2
  else
    echo "-- Hugging Face Trainer anchor (hfbench.py: $hf_runs) on the same device, limit ${t}s"
    hf_json=$work/hf.json
    # hfbench.py rewrites its JSON after every run, so a time-out keeps the runs that finished.
    PYTHONUNBUFFERED=1 timeout -k 5 "$t" "$py" "$hfbench" "$hf_json" "$vocab" "$data/train.csv" "$data/eval.csv" \
      $hf_runs 2>&1 | cut -c1-200 || echo "bench: the HF anchor stopped (exit ${PIPESTATUS[0]}) after the runs above" >&2
  fi
fi

for v in $variants; do
  for m in full lora; do
    [[ " $methods " == *" $m "* ]] || continue
    case "$v" in
      cudnn) f=--cudnn_sdp ;;
      pad*) f=--pad_to_multiple_of=${v#pad} ;;
    esac
    planned+=("$work/$m-$p0-$v")
    train "$m-$p0-$v" --method="$m" --precision="$p0" "$f"
  done
done
phase_runs "$p0"
for p in "${precs[@]:1}"; do
  timed_runs "$p"
  phase_runs "$p"
done

# The CPU anchor: a plain PyTorch loop on the same LibTorch (Debian's python3-torch), last: it
# needs no budget share of its own (about 5 minutes on 2 cores).
torch_md=""
if [ "$device_tag" != cpu ] || [ "$torch" = 0 ]; then :
elif [ "$torch" = auto ] && ! /usr/bin/python3 -c 'import torch, h5py' 2>/dev/null; then :
elif [ "$(left)" -lt 300 ]; then
  echo "bench: $(left) s left: no PyTorch loop anchor" >&2
else
  echo "-- the plain PyTorch loop anchor (launch/bench-vs-torch.sh)"
  torch_md=$work/vs-torch.md
  FTUNE_BIN=$FTUNE_BIN PYTHON=/usr/bin/python3 launch/bench-vs-torch.sh --out "$torch_md" || torch_md=""
fi

runs=$(IFS=,; echo "${planned[*]}")
"$FTUNE_BIN" report --bench --runs="$runs" ${hf_json:+--hf_results="$hf_json"} --title="ftune training speed: $gpu" \
  --output="$out"
if [ -n "$torch_md" ]; then
  { echo; echo "## Against a plain PyTorch loop (the same LibTorch)"; sed 1d "$torch_md"; } >>"$out"
fi
echo "bench: done in $(($(date +%s) - start)) s; runs in $work"
