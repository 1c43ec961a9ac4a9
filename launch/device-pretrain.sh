#!/usr/bin/env bash
# A GPU call that pretrains encoders for the embedded default (launch/pretrain-encoder.sh with
# --seconds, one per config, side by side on the one GPU) and fine-tunes each three ways on the IMDB
# subset as a preview (fp32, two learning rates). Carry .deps and .devdata; .devdata/lesson holds the
# prepped corpus (pt_train.h5, pt_eval.h5 from pretrain-encoder.sh's corpus and prep stages), the
# IMDB subset (train.h5, eval.h5) and the configs (cfg_*.json).
#   launch/device-pretrain.sh SECONDS OUT        (then, in the same call: launch/device-check.sh)
# OUT receives pretrain.log and models.tar.gz (each model, its provenance and the previews' results).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
seconds=$1 out=$2 lesson=.devdata/lesson work=/tmp/ftune-pretrain
mkdir -p "$out" "$work/models"
export PATH=/usr/local/cuda/bin:$PATH
{
  t0=$(date +%s)
  timeout 150 env FTUNE_GPU_TARGETS=ftune launch/build-gpu.sh -DFTUNE_BUILD_TESTS=ON >"$work/build.log" 2>&1 ||
    { tail -20 "$work/build.log"; echo "device-pretrain: build failed"; exit 1; }
  echo "device-pretrain: built in $(($(date +%s) - t0)) s"
  left=$((seconds - ($(date +%s) - t0) - 30))  # 30 s for the previews
  for cfg in "$lesson"/cfg_*.json; do
    name=$(basename "$cfg" .json); name=${name#cfg_}
    mkdir -p "$work/$name.work"
    ln -sf "$PWD/$lesson/pt_train.h5" "$work/$name.work/pt_train.h5"
    ln -sf "$PWD/$lesson/pt_eval.h5" "$work/$name.work/pt_eval.h5"
    FTUNE_BIN=build-gpu/ftune launch/pretrain-encoder.sh --out "$work/models/$name" --work "$work/$name.work" \
      --config "$cfg" --vocab .devdata/vocab.txt --seconds "$left" --device cuda -- --threads=6 >"$work/$name.log" 2>&1 &
  done
  wait
  for f in "$work"/*.log; do echo "== $f"; grep -vE '^\{' "$f" | tail -25 | cut -c1-250; done
  for m in "$work"/models/*/; do
    for lr in 1e-4 3e-4; do
      for method in full head lora; do
        r=$m/preview-$method-$lr
        build-gpu/ftune train --model_dir="$m" --train_data=$lesson/train.h5 --eval_data=$lesson/eval.h5 --method=$method \
          --learning_rate=$lr --epochs=3 --batch_size=16 --device=cuda --threads=2 --save_model=false \
          $([ $method = head ] && echo --cache_frozen_features) --output_dir="$r" >"$r.log" 2>&1 &
      done
    done
    wait
    for r in "$m"/preview-*/; do
      printf '%s %s\n' "$r" "$(grep -o '"eval_accuracy": [0-9.]*' "$r/results.json" | tr '\n' ' ')"
    done
  done
  echo "device-pretrain: done after $(($(date +%s) - t0)) s"
} 2>&1 | tee "$out/pretrain.log"
tar -czf "$out/models.tar.gz" -C "$work" models $(cd "$work" && ls *.log) 2>/dev/null
ls -la "$out"
