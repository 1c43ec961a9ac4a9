#!/usr/bin/env bash
# The main job: fine-tune the same data three ways (full, head, lora) with the same seed and
# schedule under mpirun, then write the comparison (compare.md, compare.csv, compare.svg; with
# --seeds, each method's mean and 95% CI over seeds, McNemar tests against full on the same eval
# examples, and the cost/accuracy frontier compare-frontier.svg/.png).
#
#   launch/compare.sh                       # embedded default: the assignment's IMDB reviews
#                                           # (data-prep/imdb) and the small encoder ftune pretrained
#                                           # on IMDB text; about 2 minutes on 2 CPU cores
#   launch/compare.sh --model-dir models/distilbert-base-uncased \
#       --train data/imdb/train.csv --eval data/imdb/eval.csv      # the assignment's answer
#
# Options (anything else is passed to every `ftune train`):
#   --model-dir DIR   Hugging Face model directory (config.json, model.safetensors, vocab.txt)
#   --train CSV       training CSV (review,label)    default: data-prep/imdb/train.csv
#   --eval CSV        evaluation CSV                 default: data-prep/imdb/eval.csv
#   --methods LIST    default full,head,lora (any of full,head,lora,bitfit,last_k,ia3,dora: configs/<m>.flags)
#   --seeds N         runs per method with seeds 42, 43, ... (default 1); each run also writes
#                     predictions.csv (ftune predict on the eval set) for the paired tests
#   --np N            ranks per run (default: GPUs, or 2 on CPU)
#   --epochs N        default 3 (1 for the embedded default)
#   --max-length N    tokens per review (default 512; 256 for the embedded default)
#   --out DIR         default results/<name>-<date>
# Environment: FTUNE_BIN (skip the build and use this binary), FTUNE_BUILD_DIR.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

model_dir="" train="" eval="" methods="full,head,lora" seeds=1 np="" epochs="" max_length="" out="" extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model-dir) model_dir=$2; shift 2 ;;
    --train) train=$2; shift 2 ;;
    --eval) eval=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --max-length) max_length=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; extra+=("$@"); break ;;
    *) extra+=("$1"); shift ;;
  esac
done

if [ -z "${FTUNE_BIN:-}" ]; then
  launch/build.sh
  FTUNE_BIN="$root/${FTUNE_BUILD_DIR:-build}/ftune"
fi
export FTUNE_BIN

demo=0
method_args() { :; }
if [ -z "$model_dir" ]; then
  # The embedded default: the assignment's 2,000/500 IMDB reviews and a small DistilBERT (dim 128,
  # 4 layers) that ftune pretrained itself on the rest of IMDB's text (data-prep/imdb/README.md), so
  # the comparison shows what a pretrained encoder gives each method. Small encoders want larger
  # steps than distilbert-base's 5e-5; the head trains on features encoded once.
  demo=1
  model_dir=data-prep/imdb/encoder
  : "${train:=data-prep/imdb/train.csv}" "${eval:=data-prep/imdb/eval.csv}" "${max_length:=256}" "${epochs:=1}"
  method_args() {
    case "$1" in
      full|last_k) echo --learning_rate=3e-4 ;;
      head) echo --learning_rate=1e-3 --cache_frozen_features ;;
      *) echo --learning_rate=1e-3 ;;
    esac
    echo --batch_size=16 --eval_batch_size=32
  }
fi
model_args=(--model_dir="$model_dir")
vocab=$model_dir/vocab.txt
[ -f "$vocab" ] || { echo "compare: $vocab not found (the model directory needs vocab.txt)" >&2; exit 1; }
[ -n "$train" ] && [ -n "$eval" ] || { echo "compare: give --train and --eval CSVs with --model-dir" >&2; exit 2; }
name=$(basename "$model_dir")
[ $demo = 1 ] && name=default
: "${max_length:=512}" "${epochs:=3}"
out=${out:-results/$name-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out/data"

if [ -z "$np" ]; then
  gpus=$(launch/train.sh --list-gpus | wc -l)
  np=$(( gpus > 0 ? gpus : 2 ))
fi

echo "== compare: $methods on $(basename "$train") / $(basename "$eval"), $np rank(s), $epochs epochs -> $out"
for split in train eval; do
  csv=$train; [ "$split" = eval ] && csv=$eval
  "$FTUNE_BIN" prep --input="$csv" --output="$out/data/$split.h5" --vocab="$vocab" --max_length="$max_length"
done

case "$seeds" in ''|*[!0-9]*|0) echo "compare: --seeds must be a positive number (got '$seeds')" >&2; exit 2 ;; esac
runs=()
for m in ${methods//,/ }; do
  for ((k = 0; k < seeds; k++)); do
    seed=$((42 + k))
    run=$out/$m
    [ "$seeds" -gt 1 ] && run=$out/$m-seed$seed
    echo "== $m (seed $seed)"
    # Method defaults first, then the embedded default's settings, then the user's flags, which win.
    # shellcheck disable=SC2046
    FTUNE_NP=$np launch/train.sh --np "$np" --flagfile="configs/$m.flags" "${model_args[@]}" $(method_args "$m") \
      --train_data="$out/data/train.h5" --eval_data="$out/data/eval.h5" --output_dir="$run" --seed="$seed" \
      --epochs="$epochs" --overwrite "${extra[@]}"
    # Per-example predictions for the paired tests (an adapter goes on top of the base model).
    trained=(--model_dir="$run/model")
    [ -f "$run/model/adapter_config.json" ] && trained=("${model_args[@]}" --adapter_dir="$run/model")
    "$FTUNE_BIN" predict "${trained[@]}" --data="$out/data/eval.h5" --output="$run/predictions.csv" --batch=64
    runs+=("$run")
  done
done

title="ftune: ${methods//,/, }"
[ $demo = 1 ] && title="$title (embedded default: IMDB 2,000/500, an encoder ftune pretrained on IMDB text)"
"$FTUNE_BIN" report --runs="$(IFS=,; echo "${runs[*]}")" --output="$out" --title="$title"
