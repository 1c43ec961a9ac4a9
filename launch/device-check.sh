#!/usr/bin/env bash
# The one prepared script for the GPU machine (device tool; stage with launch/stage-device.sh
# first and carry .deps and .devdata). In one call it:
#   1. builds ftune and the model/train tests with the machine's LibTorch (pip) and NCCL wheel,
#   2. runs the GPU cases of the parity tests (HF's three Trainer steps on CUDA, bf16 autocast),
#   3. runs launch/bench.sh on the real IMDB subset with the HF Trainer anchor on the same GPU.
# Everything it prints and writes lands in $OUT (the device tool's folder) or results/device.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-results/device}
mkdir -p "$out"
exec > >(tee "$out/device-check.log") 2>&1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
t0=$(date +%s)
# ftune first: the benchmark needs only it, so a test target that fails to build costs no data.
FTUNE_GPU_TARGETS=ftune launch/build-gpu.sh -DFTUNE_BUILD_TESTS=ON || {
  echo "device-check: BUILD OF ftune FAILED after $(( $(date +%s) - t0 )) s"; exit 1; }
echo "device-check: ftune built in $(( $(date +%s) - t0 )) s"
b=${FTUNE_GPU_BUILD_DIR:-build-gpu}
if cmake --build "$b" -j "$(nproc)" --target ftune_train_test ftune_model_test >"$out/build-tests.log" 2>&1; then
  echo "device-check: tests built at $(( $(date +%s) - t0 )) s"
  "$b/tests/train/ftune_train_test" --gtest_filter='*Cuda*:*HfThreeSteps*' 2>&1 | tail -25
  "$b/tests/model/ftune_model_test" --gtest_filter='*Bf16*:*Fused*:TinyCls.*' 2>&1 | tail -15
else
  echo "device-check: TEST BUILD FAILED (see build-tests.log); going on with the benchmark"
  grep -m5 -A3 'error' "$out/build-tests.log"
fi
FTUNE_BIN=$b/ftune launch/bench.sh --data .devdata/imdb --vocab .devdata/vocab.txt \
  --hfbench .devdata/generate/hfbench.py --out "$out/bench.md" ${FTUNE_BENCH_ARGS:-}
echo "device-check: done in $(( $(date +%s) - t0 )) s"
