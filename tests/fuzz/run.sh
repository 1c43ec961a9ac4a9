#!/usr/bin/env bash
# Fuzz the torch-free parsers (CI calls this): configure a clang + libFuzzer + ASan/UBSan build in
# build-fuzz, build only the fuzz targets (no LibTorch code is compiled), and run every fuzzer for N
# seconds, starting from its seed corpus in tests/fixtures/fuzz/<target>/.
#   tests/fuzz/run.sh [seconds]        default 60 per fuzzer
# Environment:
#   FTUNE_FUZZ_BUILD_DIR  build directory (build-fuzz); its corpus/ keeps what earlier runs found
#   FTUNE_FUZZ_TARGETS    which fuzzers (default: the five that fuzz ftune's code; add
#                         token_dataset_file to fuzz libhdf5 with raw file bytes, which finds
#                         crashes inside libhdf5 1.10.8 itself: tests/hardening/README.md)
#   FTUNE_FUZZ_JOBS       fuzzers run at the same time (default 1; each uses one core)
#   FTUNE_SKIP_DEPS=1     do not apt-get clang when it is missing
# Exit status 1 if any fuzzer found a crash, a sanitizer report or a broken invariant; the input is
# kept in <build>/tests/fuzz/artifacts/<target>/ and the log in <build>/tests/fuzz/logs/<target>.log.
# To reproduce: <build>/tests/fuzz/fuzz_<target> <artifact>. Fix the bug, then add the artifact to
# tests/fixtures/fuzz/<target>/regress-<what> so every later run replays it.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
build=${FTUNE_FUZZ_BUILD_DIR:-build-fuzz}
targets=${FTUNE_FUZZ_TARGETS:-safetensors hf_config csv tokenizer tokenizer_json token_dataset}
jobs=${FTUNE_FUZZ_JOBS:-1}

if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  if [ "${FTUNE_SKIP_DEPS:-0}" != 1 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y --no-install-recommends clang libclang-rt-dev >/dev/null
  fi
  command -v clang++ >/dev/null || { echo "tests/fuzz/run.sh: needs clang with libFuzzer (Debian/Ubuntu: apt-get install clang)" >&2; exit 2; }
fi

gen=()
command -v ninja >/dev/null && [ ! -f "$build/Makefile" ] && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DFTUNE_FUZZ=ON -DFTUNE_SANITIZE=ON -DFTUNE_USE_PCH=OFF -DFTUNE_FUZZ_SECONDS="$secs" \
  "-DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" >/dev/null
cmake --build "$build" --target ftune_fuzzers -j "${FTUNE_JOBS:-$(nproc)}"

dir="$build/tests/fuzz"
mkdir -p "$dir/logs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/hardening/lsan.supp:print_suppressions=0}

run_one() {  # exactly the CTest test fuzz.<target>: the arguments CMake wrote to <target>.args
  local t=$1 args
  mapfile -t args <"$dir/$t.args"
  "$dir/fuzz_$t" "${args[@]}" >"$dir/logs/$t.log" 2>&1
}

echo "fuzzing ${secs}s each, $jobs at a time: $targets"
pids=() names=()
for t in $targets; do
  run_one "$t" & pids+=($!) names+=("$t")
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
done
failed=0
for i in "${!pids[@]}"; do
  t=${names[$i]}
  if wait "${pids[$i]}"; then status=ok; else status=FAILED; failed=1; fi
  execs=$(grep -a 'stat::number_of_executed_units' "$dir/logs/$t.log" | awk '{print $2}')
  cov=$(grep -aoE 'cov: [0-9]+ ft: [0-9]+' "$dir/logs/$t.log" | tail -1)
  printf '  %-20s %-6s %10s execs  %s  corpus %s files\n' "$t" "$status" "${execs:-?}" "${cov:-}" \
    "$(ls "$dir/corpus/$t" | wc -l)"
  if [ "$status" = FAILED ]; then
    grep -aE 'invariant violated|^\*\*\* |ERROR: |SUMMARY: |runtime error|Test unit written' "$dir/logs/$t.log" | head -20 | sed 's/^/      /'
  fi
done
exit $failed
