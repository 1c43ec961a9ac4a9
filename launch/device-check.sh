#!/usr/bin/env bash
# The one prepared call for the GPU machine (the device tool: 15 minutes of device time in all, a
# start costs minutes, what comes back is at most 8 files of $OUT). Here, first:
#   launch/stage-device.sh                   # fills .deps and .devdata (git-ignored)
# then one device call:  launch/device-check.sh    carry [".deps", ".devdata"], timeout_s 420.
#
# It ends within --budget seconds (default 330) in stages, each under `timeout`, each leaving its
# result in $OUT before the next starts; a stage that fails stops the call with one line
# "device-check: STOPPED at <stage>: <why>" (exit 1), except parity, whose failure the bench outlives:
#   env     GPU, driver, torch (version, CUDA, C++11 ABI), nvcc, compilers, MPI, HDF5
#   build   ftune (launch/build-gpu.sh), then launch/check-binaries.sh: a library "not found" stops
#   smoke   5 training steps of the tiny model on the demo reviews, which must report device cuda
#   parity  the GPU cases of the model and trainer tests (built in the background during smoke)
#   bench   launch/bench.sh with the HF anchor, shrunk to the time left (--budget of bench.sh)
# $OUT receives six files, no folders: device-check.log (everything printed), build.log, parity.log,
# bench.md, bench.json, bench-runs.tar.gz (every run's JSON files, status and log). The runs
# themselves go to $FTUNE_DEVICE_WORK (default /tmp/ftune-device-check), never into $OUT.
#
#   launch/device-check.sh [--budget S] [--out DIR]        on the GPU machine ($OUT, else results/device)
#   launch/device-check.sh --cpu [--budget S] [--out DIR]  the same stages on this machine's CPU build
#       (build/, brought up to date), the tiny model and a few steps: what tests/launch checks
# Options: --device cpu|cuda (the device the smoke run must train on: cuda, or cpu with --cpu),
#   --hfbench FILE (the HF anchor script; default .devdata/generate/hfbench.py, none with --cpu),
#   --no-hf (no HF anchor: the bench's ftune runs alone).
# Environment: FTUNE_BENCH_ARGS (extra launch/bench.sh options), FTUNE_GPU_BUILD_DIR (build-gpu).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
mode=gpu budget=330 out=${OUT:-results/device} device="" hfbench=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) mode=cpu; shift ;;
    --budget) budget=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --hfbench) hfbench=$2; shift 2 ;;
    --no-hf) hfbench=none; shift ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "device-check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$mode" = gpu ]; then
  : "${device:=cuda}" "${hfbench:=.devdata/generate/hfbench.py}"
  b=${FTUNE_GPU_BUILD_DIR:-build-gpu}
else
  : "${device:=cpu}"
  b=${FTUNE_BUILD_DIR:-build}
fi
work=${FTUNE_DEVICE_WORK:-/tmp/ftune-device-check}
rm -rf "$work"
mkdir -p "$work" "$out" || exit 1
out=$(cd "$out" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -x /usr/local/cuda/bin/nvcc ] && export PATH=/usr/local/cuda/bin:$PATH  # as build-gpu.sh finds it
start=$(date +%s)
left() { echo $((start + budget - $(date +%s))); }
at() { echo "$(($(date +%s) - start)) s"; }
cap() { local t; t=$(left); [ "$t" -gt "$1" ] && t=$1; echo $((t > 1 ? t : 1)); }  # cap S: min(S, time left)
stage() { current=$1; echo; echo "== device-check: $1 (at $(at), $(left) s left)"; }
stop() {
  echo "device-check: STOPPED at $current: $*"
  [ -n "${tests_pid:-}" ] && kill "$tests_pid" 2>/dev/null
  echo "device-check: ended after $(at); results in $out"
  exit 1
}

main() {
  stage env
  timeout 60 bash -c '
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    python3 -c "import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"cxx11_abi\",
      torch.compiled_with_cxx11_abi(), \"gpus\", torch.cuda.device_count())" 2>&1 | tail -1
    for t in nvcc g++ cmake ninja mpicc mpirun; do printf "%-7s %s\n" "$t" "$(command -v $t >/dev/null &&
      { $t --version 2>&1 | grep -m1 -iE "[0-9]+\.[0-9]+" || echo "?"; } || echo "not on PATH")"; done
    echo "mpi.h   $(ls /usr/include/mpi.h /usr/include/x86_64-linux-gnu/*/mpi.h /usr/lib/x86_64-linux-gnu/*/include/mpi.h 2>/dev/null | head -1)"
    echo "hdf5.h  $(ls /usr/include/hdf5.h /usr/include/hdf5/serial/hdf5.h 2>/dev/null | head -1)"
    echo "cores   $(nproc), memory $(free -g | awk "/Mem:/ {print \$2}") GiB"'
  [ "$mode" = cpu ] || [ -d .deps/root/usr ] || echo "device-check: no .deps (carry it): the build needs its Abseil"

  stage build
  if [ "$mode" = gpu ]; then
    timeout "$(cap 210)" env FTUNE_GPU_TARGETS=ftune launch/build-gpu.sh -DFTUNE_BUILD_TESTS=ON >"$out/build.log" 2>&1
  else
    timeout "$(cap 600)" cmake --build "$b" --target ftune >"$out/build.log" 2>&1
  fi
  rc=$?
  if [ "$rc" != 0 ]; then
    grep -E -m8 -B2 'error|Error|not found' "$out/build.log" | cut -c1-300
    tail -5 "$out/build.log"
    stop "build of ftune $([ "$rc" = 124 ] && echo "timed out" || echo "failed (exit $rc)") after $(at) (build.log)"
  fi
  grep -E '^build-gpu:|ftune: LibTorch' "$out/build.log" | cut -c1-300
  echo "device-check: ftune built at $(at)"
  launch/check-binaries.sh "$b" || stop "a binary would not start (see above): its library is not on its RPATH"

  # The parity tests compile while the smoke run uses the GPU (neither is timed).
  # (`timeout` passes a TERM on to the build's whole process group.)
  (trap 'kill "$c" 2>/dev/null' TERM
   timeout "$(cap 240)" cmake --build "$b" -j "$(nproc)" --target ftune_model_test ftune_train_test \
     >>"$out/build.log" 2>&1 &
   c=$!
   wait "$c"
   echo $? >"$work/tests-built") &
  tests_pid=$!

  stage smoke
  mkdir -p "$work/smoke"
  for split in train eval; do
    "$b/ftune" prep --input=data-prep/demo/$split.csv --output="$work/smoke/$split.h5" \
      --vocab=tests/fixtures/tokens/vocab.txt >/dev/null || stop "ftune prep failed"
  done
  prec=fp32 limit=240  # a loaded 2-core machine evaluates the 400 reviews slowly
  [ "$device" = cuda ] && prec=bf16 limit=90
  timeout "$(cap $limit)" "$b/ftune" train --model_config=configs/tiny.json --train_data="$work/smoke/train.h5" \
    --eval_data="$work/smoke/eval.h5" --max_steps=5 --logging_steps=1 --device="$device" --precision="$prec" \
    --skip_nonfinite --save_model=false --output_dir="$work/smoke/run" >"$work/smoke/log" 2>&1
  rc=$?
  cut -c1-200 "$work/smoke/log" | tail -12
  [ "$rc" = 0 ] || stop "the smoke run failed (exit $rc)"
  trained_on=$(sed -n 's/.*"device": *"\([^"]*\)".*/\1/p' "$work/smoke/run/results.json" | head -1)
  [ "${trained_on%%:*}" = "$device" ] || stop "the smoke run trained on '$trained_on', not $device"
  echo "device-check: smoke run: 5 steps on $trained_on ($prec) at $(at)"

  stage parity
  while kill -0 "$tests_pid" 2>/dev/null && [ "$(left)" -gt 150 ]; do sleep 1; done
  if kill -0 "$tests_pid" 2>/dev/null; then
    kill "$tests_pid"
    echo "device-check: parity: tests not built with $(left) s left: skipped, the time goes to the bench"
  elif [ "$(cat "$work/tests-built" 2>/dev/null)" != 0 ]; then
    grep -E -m5 -A3 'error' "$out/build.log" | cut -c1-300
    echo "device-check: parity: TEST BUILD FAILED (build.log); on to the bench"
  elif launch/check-binaries.sh "$b/tests/model/ftune_model_test" "$b/tests/train/ftune_train_test"; then
    # The CUDA cases skip themselves where no GPU is visible (--cpu), the CPU ones run everywhere.
    timeout "$(cap 45)" "$b/tests/model/ftune_model_test" --gtest_filter='*Fused*:*Bf16*:*Cuda*:*cuda*' \
      >"$out/parity.log" 2>&1
    echo "model tests: exit $?" >>"$out/parity.log"
    timeout "$(cap 45)" "$b/tests/train/ftune_train_test" --gtest_filter='*Cuda*:*HfThreeSteps*:*FlatAdamW*' \
      >>"$out/parity.log" 2>&1
    echo "trainer tests: exit $?" >>"$out/parity.log"
    grep -E '^\[  (PASSED|FAILED) |^\[  SKIPPED \] [0-9]+ test|tests: exit' "$out/parity.log" | cut -c1-200
  else
    echo "device-check: parity: a test binary would not start; on to the bench"
  fi
  tests_pid=""

  stage bench
  bench_budget=$(($(left) - 15))  # the rest, less the time to pack up
  [ "$bench_budget" -ge 30 ] || stop "only $(left) s left: no bench"
  if [ "$mode" = gpu ]; then
    # 40 s caps a run at 50 samples/s over the epoch (HF's dynamic-padding bf16 run did 55).
    bench=(--data .devdata/imdb --vocab .devdata/vocab.txt --run-limit 40)
  else
    bench=(--data data-prep/demo --methods "full head-cache" --variants pad8 --max-steps 3 --phase-steps 2
           --min-run 5)
  fi
  if [ -n "$hfbench" ] && [ "$hfbench" != none ]; then bench+=(--hf --hfbench "$hfbench"); else bench+=(--no-hf); fi
  [ "$mode" = cpu ] && bench+=(--no-torch -- --model_config=configs/tiny.json --threads=1)
  # shellcheck disable=SC2086
  FTUNE_BIN=$b/ftune timeout -k 5 $((bench_budget + 10)) launch/bench.sh --out "$work/bench.md" \
    --runs "$work/bench" --budget "$bench_budget" ${FTUNE_BENCH_ARGS:-} "${bench[@]}"
  rc=$?
  if [ ! -f "$work/bench.md" ] && [ -d "$work/bench" ]; then  # stopped before its report: one of what ran
    runs=$(find "$work/bench" -mindepth 1 -maxdepth 1 -type d ! -name '*-phases' | sort | paste -sd,)
    [ -n "$runs" ] && "$b/ftune" report --bench --runs="$runs" --output="$work/bench.md" \
      $([ -f "$work/bench/hf.json" ] && echo --hf_results="$work/bench/hf.json") >/dev/null
  fi
  cp "$work/bench.md" "$work/bench.json" "$out/" 2>/dev/null
  (cd "$work" && find bench \( -name '*.json' -o -name '*.jsonl' -o -name status -o -name train.log \) -print0 |
     tar --null -czf "$out/bench-runs.tar.gz" -T -)
  [ "$rc" = 0 ] || echo "device-check: the bench ended with exit $rc (see above)"
  [ -f "$out/bench.md" ] || stop "no bench.md"
  echo "device-check: done after $(at); $out: $(cd "$out" && ls | tr '\n' ' ')"
}

main 2>&1 | tee "$out/device-check.log"
exit "${PIPESTATUS[0]}"
