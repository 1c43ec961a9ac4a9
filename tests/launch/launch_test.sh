#!/usr/bin/env bash
# Tests of the launch scripts as users run them, on the synthetic task (tests/launch/synthetic_task.sh)
# with the real ftune binary:
#   tests/launch/launch_test.sh CASE FTUNE_BIN
# CASE: train_sh_options | train_sh_two_cpu_ranks | sweep_sh_grid | sweep_sh_stop_and_continue |
#       fetch_model | bench_sh_report | device_check_cpu | device_check_stops | check_binaries |
#       default_encoder.
# Exit 0 pass, 1 fail, 77 skipped (CTest SKIP_RETURN_CODE).
# FTUNE_KEEP_TEST_DIRS=1 keeps the scratch directory.
set -euo pipefail

case_name=${1:?usage: launch_test.sh CASE FTUNE_BIN}
FTUNE_BIN=$(realpath "${2:?usage: launch_test.sh CASE FTUNE_BIN}")
export FTUNE_BIN
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/launch/synthetic_task.sh
source "$here/synthetic_task.sh"

work=$(mktemp -d /tmp/ftune_launch_test.XXXXXX)
cleanup() {
  local pid
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null || true; done
  if [ -z "${FTUNE_KEEP_TEST_DIRS:-}" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT
cd "$work"

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_rc() {  # expect_rc CODE CMD...: runs CMD (output to $work/out), checks its exit code
  local want=$1 rc=0
  shift
  "$@" >"$work/out" 2>&1 || rc=$?
  [ "$rc" -eq "$want" ] || { cat "$work/out"; fail "expected exit $want, got $rc: $*"; }
}
expect_out() {  # expect_out REGEX: the last expect_rc's output matches (extended regex)
  grep -E -q -- "$1" "$work/out" || { cat "$work/out"; fail "output lacks /$1/"; }
}
expect_no_out() {
  if grep -E -q -- "$1" "$work/out"; then cat "$work/out"; fail "output has /$1/"; fi
}
json_num() {  # json_num FILE KEY: the first "KEY": number in FILE
  sed -n "s/.*\"$2\": *\([-0-9.e+]*\).*/\1/p" "$1" | head -1
}
skip_without_resume() {
  local help
  help=$("$FTUNE_BIN" train --help 2>&1 || true)
  if [[ "$help" != *--resume* ]]; then
    echo "SKIP: $FTUNE_BIN has no --resume yet (checkpoint/resume feature not built in)"
    exit 77
  fi
}

cores=$(nproc)
task=$work/task

case "$case_name" in

# ---- the embedded default's encoder: made from the corpus its provenance names, which holds none of
# the default eval reviews; it loads as a pretrained encoder ---------------------------------------
default_encoder)
  enc=$repo/data-prep/imdb/encoder
  expect_rc 0 "$FTUNE_BIN" inspect --model_dir="$enc"
  expect_out "loaded 68 tensors; newly initialised \(not in checkpoint\): pre_classifier.weight, pre_classifier.bias, classifier.weight, classifier.bias; ignored 5 masked-LM head tensors"
  acl=${FTUNE_SHARED:-$repo/../shared}/data/aclImdb
  if [ ! -f "$acl/unsup.csv.gz" ]; then echo "SKIP: $acl (../shared) not here: the corpus cannot be rebuilt"; exit 77; fi
  expect_rc 0 "$repo/launch/pretrain-encoder.sh" --out "$work/m" --work "$work/c" --aclimdb "$acl" --stop-after corpus
  python3 - "$enc/provenance.json" "$work/c" "$repo/data-prep/imdb/eval.csv" "$repo/configs/imdb-mlm.json" <<'EOF' || fail "corpus"
import csv, json, sys
prov, work, eval_csv, cfg = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], json.load(open(sys.argv[4]))
rebuilt = json.load(open(f"{work}/corpus.json"))
for part in ("train", "eval"):
    assert rebuilt[part] == prov["corpus"][part], (part, rebuilt[part], prov["corpus"][part])
assert prov["config"] == cfg, "provenance.json's model config is not configs/imdb-mlm.json"
csv.field_size_limit(1 << 30)
squash = lambda t: "".join(t.split()).lower()  # stricter than the script's rule: no whitespace at all, any case
evals = {squash(r["review"]) for r in csv.DictReader(open(eval_csv, newline="", encoding="utf-8"))}
for part in ("train", "eval"):
    seen = [r["review"][:60] for r in csv.DictReader(open(f"{work}/{part}.csv", newline="", encoding="utf-8"))
            if squash(r["review"]) in evals]
    assert not seen, f"{len(seen)} default eval reviews in the pretraining {part} text: {seen[:3]}"
print("corpus ok:", rebuilt["train"]["reviews"], "reviews,", rebuilt["left_out"], "left out")
EOF
  ;;

# ---- launch/train.sh: GPU detection, rank count, binding, threads, binary lookup (no training) --
train_sh_options)
  mkdir -p fakebin
  cat >fakebin/nvidia-smi <<'EOF'
#!/bin/sh
for i in 0 1 2 3; do echo "GPU $i: NVIDIA Fake (UUID: GPU-0000000$i)"; done
EOF
  chmod +x fakebin/nvidia-smi
  ts=$repo/launch/train.sh
  export FTUNE_MPIRUN=mpirun  # the command lines below are checked literally
  expect_rc 0 "$ts" --help
  expect_out '^usage: launch/train.sh'

  # nvidia-smi -L: one rank per GPU; CUDA_VISIBLE_DEVICES, when set, wins.
  expect_rc 0 env -u CUDA_VISIBLE_DEVICES PATH="$work/fakebin:$PATH" "$ts" --list-gpus
  [ "$(tr '\n' ' ' <"$work/out")" = "0 1 2 3 " ] || { cat out; fail "nvidia-smi GPUs not listed"; }
  expect_rc 0 env -u CUDA_VISIBLE_DEVICES PATH="$work/fakebin:$PATH" "$ts" --dry-run --method=head
  expect_out 'mpirun -np 4 '
  expect_out 'on 4 GPU\(s\) \[0 1 2 3\]'
  expect_rc 0 env CUDA_VISIBLE_DEVICES=2,5 PATH="$work/fakebin:$PATH" "$ts" --list-gpus
  [ "$(tr '\n' ' ' <"$work/out")" = "2 5 " ] || { cat out; fail "CUDA_VISIBLE_DEVICES not used"; }
  # Two GPUs: two ranks, each bound to cores/2 cores (if the cores allow), threads = cores/2.
  t=$((cores / 2)); [ "$t" -ge 1 ] || t=1
  expect_rc 0 env CUDA_VISIBLE_DEVICES=0,1 "$ts" --dry-run --method=head
  expect_out "mpirun -np 2 --map-by slot:PE=$t --bind-to core .* train --method=head --threads=$t\$"
  # --device=cpu ignores the GPUs; the CPU path: FTUNE_NP ranks, oversubscribed and unbound.
  t=$((cores / 3)); [ "$t" -ge 1 ] || t=1
  expect_rc 0 env CUDA_VISIBLE_DEVICES=0,1 FTUNE_NP=3 "$ts" --dry-run --device=cpu
  expect_out "mpirun -np 3 --oversubscribe --bind-to none -x OMP_NUM_THREADS=$t .* train --device=cpu --threads=$t\$"
  expect_rc 0 env CUDA_VISIBLE_DEVICES= "$ts" --dry-run
  expect_out 'mpirun -np 1 --oversubscribe --bind-to none'
  # --np wins over FTUNE_NP; a user's --threads is kept; FTUNE_MPI_ARGS are passed on.
  expect_rc 0 env CUDA_VISIBLE_DEVICES= FTUNE_NP=3 FTUNE_MPI_ARGS="--mca btl self,vader" "$ts" --np 2 --dry-run -- --threads=5 --epochs=1
  expect_out "mpirun -np 2 .*--mca btl self,vader .* train --threads=5 --epochs=1\$"
  expect_rc 2 env CUDA_VISIBLE_DEVICES= "$ts" --np 0 --dry-run
  expect_out 'positive integer'
  expect_rc 1 env FTUNE_BIN="$work/nope" CUDA_VISIBLE_DEVICES= "$ts" --epochs=1
  expect_out 'HINT'
  # The default binary is <repo>/build/ftune (FTUNE_BUILD_DIR changes the folder).
  expect_rc 0 env -u FTUNE_BIN FTUNE_BUILD_DIR=build-x CUDA_VISIBLE_DEVICES= "$ts" --dry-run
  expect_out "$repo/build-x/ftune train"
  ;;

# ---- launch/train.sh: 2 CPU ranks train for real ----------------------------------------------
train_sh_two_cpu_ranks)
  make_synthetic_task "$task" "$FTUNE_BIN"
  flags=(--model_config="$task/tiny.json" --train_data="$task/train.h5" --eval_data="$task/eval.h5"
         --batch_size=4 --max_steps=64 --learning_rate=3e-3 --device=cpu)
  expect_rc 0 env FTUNE_NP=2 "$repo/launch/train.sh" "${flags[@]}" --output_dir="$work/run"
  t=$((cores / 2)); [ "$t" -ge 1 ] || t=1
  expect_out "ftune: 2 rank\(s\) on .* $t intra-op threads per rank"
  [ -f run/results.json ] || fail "no results.json"
  [ "$(json_num run/results.json world_size)" = 2 ] || fail "world_size is not 2"
  acc=$(json_num run/results.json eval_accuracy)
  [ -n "$acc" ] || fail "no eval_accuracy in results.json"
  [ -f run/model/model.safetensors ] || fail "no saved model"
  # ftune's exit codes come through mpirun and the script: bad flag 2, used output dir 1.
  expect_rc 2 env FTUNE_NP=2 "$repo/launch/train.sh" "${flags[@]}" --output_dir="$work/bad" --batch_size=0
  expect_out 'batch_size must be > 0'
  expect_rc 1 env FTUNE_NP=2 "$repo/launch/train.sh" "${flags[@]}" --output_dir="$work/run"
  expect_out 'already holds a run'
  echo "2 ranks: eval accuracy $acc"
  ;;

# ---- launch/sweep.sh: a 2x2 grid, packed 2 at a time, resumable, summarised ----------------------
sweep_sh_grid)
  make_synthetic_task "$task" "$FTUNE_BIN"
  sw=$repo/launch/sweep.sh
  grid=(--methods head,lora --learning-rates 1e-3,3e-3 --lora-ranks 4 --sweep-dir "$work/sweep")
  flags=(--model_config="$task/tiny.json" --train_data="$task/train.h5" --eval_data="$task/eval.h5"
         --batch_size=8 --max_steps=24 --device=cpu)
  expect_rc 0 "$sw" "${grid[@]}" --count
  [ "$(cat out)" = 4 ] || fail "--count: $(cat out)"
  expect_rc 0 "$sw" "${grid[@]}" --list
  expect_out '^3 lora_r4_lr3e-3_seed42$'
  expect_rc 2 "$sw" "${grid[@]}" --method=full
  expect_out 'set methods with --methods'
  expect_rc 2 "$sw" --methods prefix
  expect_out 'not one of full, head, bitfit, last_k, lora, dora, ia3'
  # Every method of the binary; the rank is swept for lora and dora alike.
  expect_rc 0 "$sw" --methods full,head,bitfit,last_k,lora,dora,ia3 --lora-ranks 4,8 --list
  [ "$(grep -c . out)" = 9 ] || { cat out; fail "7 methods with 2 ranks for lora and dora are 9 runs"; }
  expect_out '^[0-9]+ dora_r8_lr'
  expect_rc 0 "$sw" "${grid[@]}" --dry-run -- "${flags[@]}"
  [ "$(grep -c '^\[' out)" = 4 ] || { cat out; fail "--dry-run should print 4 commands"; }

  start=$(date +%s)
  expect_rc 0 "$sw" "${grid[@]}" --slots 2 -- "${flags[@]}"
  cp out first.out
  echo "first sweep: $(($(date +%s) - start)) s"
  [ "$(grep -c '^sweep.sh: start' out)" = 4 ] || fail "4 runs should start"
  # Two slots: the second run starts before the first one ends.
  [ "$(sed -n '3p' out | cut -c1-15)" = "sweep.sh: start" ] || { cat out; fail "runs were not packed 2 at a time"; }
  for run in head_lr1e-3_seed42 head_lr3e-3_seed42 lora_r4_lr1e-3_seed42 lora_r4_lr3e-3_seed42; do
    [ -f "sweep/$run/results.json" ] || fail "no sweep/$run/results.json"
    [ -f "sweep/logs/$run.log" ] || fail "no log for $run"
  done
  # Each run got its own settings (run_config.json records the flags it ran with).
  cfg=sweep/lora_r4_lr3e-3_seed42/run_config.json
  grep -E -q '"learning_rate": "?0\.003"?,' "$cfg" || { cat "$cfg"; fail "run got the wrong learning rate"; }
  grep -E -q '"lora_rank": "?4"?,' "$cfg" || fail "lora run got the wrong rank"
  grep -E -q '"method": "lora"' "$cfg" || fail "lora run got the wrong method"

  # The summary: header + 4 rows in CSV and markdown, each done with its numbers.
  [ "$(wc -l <sweep/summary.csv)" = 5 ] || { cat sweep/summary.csv; fail "summary.csv should have 4 rows"; }
  [ "$(grep -c '^| [a-z]*_.* | done |$' sweep/summary.md)" = 4 ] || { cat sweep/summary.md; fail "summary.md should have 4 done rows"; }
  grep -q '^lora_r4_lr1e-3_seed42,lora,1e-3,4,42,[0-9]*,[01]\.[0-9]*,[0-9.]*,done$' sweep/summary.csv ||
    { cat sweep/summary.csv; fail "lora row malformed"; }
  grep -q '^head_lr3e-3_seed42,head,3e-3,,42,[0-9]*,[01]\.[0-9]*,[0-9.]*,done$' sweep/summary.csv ||
    { cat sweep/summary.csv; fail "head row malformed"; }
  head_params=$(json_num sweep/head_lr1e-3_seed42/results.json trainable_parameters)
  grep -q "^head_lr1e-3_seed42,head,1e-3,,42,$head_params," sweep/summary.csv || fail "trainable parameters not from results.json"

  # Second time: every run is skipped, nothing is rewritten, the same table comes out.
  before=$(stat -c %Y sweep/*/results.json | sort | tr '\n' ' ')
  sleep 1
  expect_rc 0 "$sw" "${grid[@]}" --slots 2 -- "${flags[@]}"
  [ "$(grep -c '^sweep.sh: skip' out)" = 4 ] || fail "finished runs should be skipped"
  expect_no_out '^sweep.sh: start'
  [ "$(stat -c %Y sweep/*/results.json | sort | tr '\n' ' ')" = "$before" ] || fail "a finished run was rerun"
  [ "$(wc -l <sweep/summary.csv)" = 5 ] || fail "summary.csv changed size"
  # A lost result is redone alone; --summary-only only reads.
  rm -r sweep/head_lr3e-3_seed42
  expect_rc 0 "$sw" "${grid[@]}" --summary-only
  expect_out '\| head_lr3e-3_seed42 \| head \| 3e-3 \| - \| 42 \| - \| - \| - \| pending \|'
  expect_rc 0 "$sw" "${grid[@]}" --slots 2 -- "${flags[@]}"
  [ "$(grep -c '^sweep.sh: start' out)" = 1 ] || fail "only the missing run should start"
  # A failing run is reported in the table and in the exit code.
  expect_rc 1 "$sw" --methods head --learning-rates 1e-3 --sweep-dir "$work/bad" -- "${flags[@]}" --batch_size=0
  grep -q ',exit 2$' bad/summary.csv || { cat bad/summary.csv; fail "failed run not in the summary"; }
  ;;

# ---- launch/sweep.sh: SIGUSR1 stops the runs at a checkpoint; the next sweep continues them -----
sweep_sh_stop_and_continue)
  skip_without_resume
  make_synthetic_task "$task" "$FTUNE_BIN"
  sw=$repo/launch/sweep.sh
  grid=(--methods full --learning-rates 1e-3,3e-3 --sweep-dir "$work/sweep" --slots 2)
  flags=(--model_config="$task/tiny.json" --train_data="$task/train.h5" --eval_data="$task/eval.h5"
         --batch_size=8 --max_steps=1000 --logging_steps=1 --threads=1 --device=cpu)
  "$sw" "${grid[@]}" -- "${flags[@]}" >stop.out 2>&1 &
  pid=$!
  m=sweep/full_lr1e-3_seed42/metrics.jsonl
  for _ in $(seq 1 600); do
    [ -f "$m" ] && [ "$(grep -c '"train"' "$m")" -ge 10 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -USR1 "$pid"
  rc=0
  wait "$pid" || rc=$?
  cat stop.out
  [ "$rc" = 75 ] || fail "a stopped sweep should exit 75, got $rc"
  compgen -G "sweep/full_lr1e-3_seed42/checkpoints/step-*" >/dev/null || fail "no checkpoint written"
  [ ! -f sweep/full_lr1e-3_seed42/results.json ] || fail "the run finished before the signal (make it longer)"
  grep -q 'preempted (resumable)' sweep/summary.md || fail "summary should show the stopped runs"
  expect_rc 0 "$sw" "${grid[@]}" -- "${flags[@]}"
  [ -f sweep/full_lr1e-3_seed42/results.json ] && [ -f sweep/full_lr3e-3_seed42/results.json ] || fail "runs not finished"
  grep -q -- '--resume=auto' sweep/logs/full_lr1e-3_seed42.log || fail "the second sweep did not resume"
  # The continued run equals an uninterrupted one, bit for bit.
  expect_rc 0 env FTUNE_NP=1 "$repo/launch/train.sh" "${flags[@]}" --method=full --learning_rate=1e-3 \
    --output_dir="$work/ref"
  cmp sweep/full_lr1e-3_seed42/model/model.safetensors ref/model/model.safetensors ||
    fail "resumed weights differ from an uninterrupted run"
  ;;

# ---- cluster/fetch-model.sh against a local stand-in for the hub (file://) -------------------------
fetch_model)
  command -v curl >/dev/null || { echo "SKIP: curl is not installed (fetch-model.sh downloads with it)"; exit 77; }
  mkdir hub
  cp "$repo/tests/fixtures/hf/hf-tiny-cls/config.json" "$repo/tests/fixtures/hf/hf-tiny-cls/model.safetensors" hub/
  cp "$repo/tests/fixtures/tokens/vocab.txt" hub/  # the real distilbert-base-uncased vocab
  fm=$repo/cluster/fetch-model.sh
  expect_rc 0 env FTUNE_HF_BASE="file://$work/hub" "$fm" "$work/model"
  expect_out 'ftune loads'
  cmp hub/model.safetensors model/model.safetensors || fail "model.safetensors differs"
  expect_rc 0 env FTUNE_HF_BASE="file://$work/nowhere" "$fm" "$work/model"
  [ "$(grep -c 'present and valid' out)" = 3 ] || fail "a complete model dir should not be fetched again"
  # A vocab with the wrong hash is refused and not left behind.
  echo extra >>hub/vocab.txt
  rm model/vocab.txt
  expect_rc 1 env FTUNE_HF_BASE="file://$work/hub" "$fm" "$work/model"
  expect_out 'vocab.txt is not what was expected'
  [ ! -e model/vocab.txt ] && [ ! -e model/vocab.txt.part ] || fail "bad vocab left behind"
  expect_rc 1 env FTUNE_HF_BASE="file://$work/nowhere" "$fm" "$work/model2"
  expect_out 'HINT'
  ;;

# ---- launch/bench.sh end to end on the demo reviews with the tiny model (no timing asserted) --
bench_sh_report)
  b=$repo/launch/bench.sh
  expect_rc 2 "$b" --data "$work/none"
  expect_out 'train.csv not found'
  expect_rc 2 "$b" --bogus
  expect_out 'unknown option'
  expect_rc 2 "$b" --variants pad
  expect_out 'unknown variant pad'
  expect_rc 0 "$b" --data "$repo/data-prep/demo" --max-steps 4 --phase-steps 3 --no-hf --no-torch --out "$work/b/bench.md" \
    -- --model_config="$repo/configs/tiny.json" --threads=1
  md=$work/b/bench.md
  [ -f "$md" ] || fail "no report"
  grep -q '"rows"' "$work/b/bench.json" || fail "no bench.json beside bench.md"
  # One row per method with a number of samples/s, a padding share and a five-phase breakdown.
  for m in full lora head head-cache; do
    row=$(grep -E "^\| $m-fp32 \|" "$md") || { cat "$md"; fail "no row for $m"; }
    [[ "$row" =~ ^\|\ $m-fp32\ \|\ ${m%-cache}\ \|\ fp32\ \|\ [a-z\ ,]+\ \|\ [0-9][0-9.]*[\ \(] ]] ||
      fail "no samples/s in: $row"
    [[ "$row" =~ \|\ [0-9.]+\ /\ [0-9.]+\ /\ [0-9.]+\ /\ [0-9.]+\ /\ [0-9.]+\ \| ]] || fail "no step breakdown in: $row"
  done
  # --budget: what does not fit is a row saying so, not a silent gap.
  expect_rc 0 "$b" --data "$repo/data-prep/demo" --methods "full lora" --max-steps 2 --phase-steps 0 --no-hf --no-torch \
    --budget 1 --min-run 5 --out "$work/c/bench.md" -- --model_config="$repo/configs/tiny.json" --threads=1
  grep -E -q '^\| lora-fp32 \| +\| +\| +\| not run: [0-9]+ s of the 1 s budget left \|' "$work/c/bench.md" ||
    { cat "$work/c/bench.md"; fail "no 'not run' row"; }
  # Every run's results.json is kept beside the report, with the method's trainable count.
  [ "$(json_num "$work/b/bench-runs/lora-fp32/results.json" padding_fraction | cut -c1-2)" = "0." ] ||
    fail "lora run lacks padding_fraction"
  grep -q '"feature_cache": true' "$work/b/bench-runs/head-cache-fp32/results.json" || fail "head-cache run without the cache"
  ;;

# ---- launch/device-check.sh --cpu: the GPU call's stages, on the CPU build with tiny sizes -------
device_check_cpu)
  d=$repo/launch/device-check.sh
  # A stand-in for hfbench.py (which needs PyTorch, transformers and PEFT): its command line and
  # its JSON, with samples/s chosen here, and one failed run.
  cat >fake_hfbench.sh <<'EOF'
out=$1
shift 4
runs="" sep=""
for m in "$@"; do
  case $m in
    full_dyn) sps=2.0 ;;
    full_bf16) sps=4.0 ;;
    head) runs+="$sep\"head\": {\"error\": \"Traceback: stand-in\"}"; sep=,; continue ;;
    *) continue ;;
  esac
  runs+="$sep\"$m\": {\"train_metrics\": {\"train_samples_per_second\": $sps}, \"peak_mem_gib\": 0.5}"
  sep=,
done
echo "{\"transformers\": \"stand-in\", \"torch\": \"stand-in\", \"runs\": {$runs}}" >"$out"
EOF
  expect_rc 0 env PYTHON=bash FTUNE_BUILD_DIR="$(dirname "$FTUNE_BIN")" FTUNE_DEVICE_WORK="$work/dc" \
    "$d" --cpu --out "$work/devout" --hfbench "$work/fake_hfbench.sh" --budget 600
  # What comes back from the device: six files, no folder, names the device tool accepts.
  got=$(cd "$work/devout" && find . -mindepth 1 | sort | tr '\n' ' ')
  [ "$got" = "./bench-runs.tar.gz ./bench.json ./bench.md ./build.log ./device-check.log ./parity.log " ] ||
    fail "\$OUT holds: $got"
  log=$work/devout/device-check.log
  for stage in env build smoke parity bench; do grep -q "^== device-check: $stage " "$log" || fail "no stage $stage"; done
  grep -E -q '^check-binaries: [0-9]+ binaries, every library found' "$log" || fail "no ldd check in the log"
  grep -q '^device-check: smoke run: 5 steps on cpu' "$log" || fail "no smoke run in the log"
  grep -q '^model tests: exit 0' "$log" || fail "model parity tests did not pass"
  grep -q '^trainer tests: exit 0' "$log" || fail "trainer parity tests did not pass"
  grep -q '^device-check: done after' "$log" || fail "no end line"
  md=$work/devout/bench.md
  for r in full-fp32 head-cache-fp32 full-fp32-pad8; do grep -q "^| $r |" "$md" || { cat "$md"; fail "no row $r"; }; done
  grep -q '^| full-fp32-pad8 | full | fp32 | padded to x8 |' "$md" || fail "pad8 row lacks its setting"
  # Each ratio is ftune's samples/s over the stand-in HF's: 2.0 with the same settings, 4.0 fastest.
  row=$(grep '^| full-fp32 |' "$md")
  awk -F'|' '{ sps = $6 + 0; same = $(NF - 2); best = $(NF - 1)
               if (same !~ /x \(HF full_dyn: 2\.0\)/ || best !~ /x \(HF full_bf16: 4\.0\)/) exit 1
               d1 = same + 0 - sps / 2; d2 = best + 0 - sps / 4
               exit !(d1 * d1 < 0.01 + 1e-4 * sps * sps && d2 * d2 < 0.01 + 1e-4 * sps * sps) }' <<<"$row" ||
    fail "wrong ratios to HF in: $row"
  grep -q '^| head | failed: see the log |' "$md" || fail "the failed HF run is not shown"
  # The runs stay outside $OUT; their JSON files come back in one tarball.
  [ -f "$work/dc/bench/full-fp32/results.json" ] || fail "runs not in FTUNE_DEVICE_WORK"
  tar -tzf "$work/devout/bench-runs.tar.gz" >"$work/tarlist"
  for f in bench/full-fp32/results.json bench/full-fp32/run_config.json bench/hf.json; do
    grep -qx "$f" "$work/tarlist" || fail "$f not in the tarball"
  done
  if grep -q '\.h5$' "$work/tarlist"; then fail "datasets in the tarball"; fi
  ;;

# A failed stage stops the call with one line, and what the stages before it wrote is in $OUT.
device_check_stops)
  expect_rc 1 env FTUNE_BUILD_DIR="$(dirname "$FTUNE_BIN")" FTUNE_DEVICE_WORK="$work/dc" \
    "$repo/launch/device-check.sh" --cpu --device cuda --out "$work/devout" --budget 300
  expect_out '^device-check: STOPPED at smoke: the smoke run failed'
  expect_out 'no CUDA device'
  got=$(cd "$work/devout" && ls | tr '\n' ' ')
  [ "$got" = "build.log device-check.log " ] || fail "\$OUT holds: $got"
  grep -q '^device-check: STOPPED at smoke' "$work/devout/device-check.log" || fail "the log lacks the STOPPED line"
  ;;

# ---- launch/check-binaries.sh: a library the loader would not find, directly or indirectly -------
check_binaries)
  c=$repo/launch/check-binaries.sh
  expect_rc 0 "$c" "$FTUNE_BIN"
  expect_out '^check-binaries: 1 binaries, every library found'
  expect_rc 2 "$c" "$work/none"
  cxx=${CXX:-g++}
  command -v "$cxx" >/dev/null || { echo "SKIP: no $cxx to build the probes"; exit 77; }
  mkdir -p lib bin runpath
  # ftune_probe -> libftunea (found through the binary's own path) -> libftuneb (same folder).
  echo 'int b() { return 0; }' >b.cc
  echo 'int b(); int a() { return b(); }' >a.cc
  echo 'int a(); int main() { return a(); }' >main.cc
  "$cxx" -shared -fPIC -o lib/libftuneb.so b.cc
  "$cxx" -shared -fPIC -o lib/libftunea.so a.cc -Llib -lftuneb
  link=(main.cc -Llib -lftunea -Wl,-rpath-link,lib -Wl,-rpath,"$work/lib")
  "$cxx" -o bin/ftune_probe "${link[@]}" -Wl,--disable-new-dtags
  "$cxx" -o runpath/ftune_probe "${link[@]}" -Wl,--enable-new-dtags
  expect_rc 0 "$c" bin
  bin/ftune_probe || fail "the RPATH probe does not start"
  # A RUNPATH serves the binary's own libraries only: libftuneb is not found (the GPU host's Abseil case).
  expect_rc 1 "$c" runpath
  expect_out 'runpath/ftune_probe: NOT FOUND: libftuneb.so'
  expect_no_out 'libftunea.so'
  expect_out 'would not start'
  rm lib/libftuneb.so
  expect_rc 1 "$c" "$work/bin"
  expect_out 'bin/ftune_probe: NOT FOUND: libftuneb.so'
  ;;

*) echo "unknown case $case_name" >&2; exit 2 ;;
esac
echo "PASS: $case_name"
