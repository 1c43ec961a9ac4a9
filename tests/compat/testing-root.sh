#!/usr/bin/env bash
# ftune against LibTorch 2.x and against Hugging Face's own code, in one Debian *testing* root, on a
# machine that only has Debian 12's LibTorch 1.13:
#   1. debootstraps Debian testing (LibTorch 2.14 CPU, Open MPI 5, GCC 15, Python 3 with
#      transformers 5.12, accelerate, tokenizers, safetensors, torch 2.14) into a chroot and installs
#      ftune's dependencies there (launch/install-deps.sh) plus HF's stack; PEFT 0.20.0 is not
#      packaged: its pure-Python source comes from ../shared/oracle (or FTUNE_PEFT_SRC),
#   2. builds the working tree there and runs the whole CTest suite except the SLURM tests
#      (slurmd needs cgroups, which a chroot lacks) and what does not touch LibTorch (tokenizer,
#      prep, launch, fuzz: tests/run.sh ran those against the same code), so the 2.x code paths
#      (SDPA attention, fused AdamW, the generic autocast API) are built and tested, and with them
#      the live Hugging Face oracle tests (label `hf`: references made at test time by transformers
#      and PEFT themselves; they skip, saying why, outside this root),
#   3. builds a binary against .deps (launch/fetch-gpu-deps.sh: Debian 12's Abseil, whose sonames
#      testing lacks, as a GPU host lacks any) in C++20 as launch/build-gpu.sh does, and checks
#      that it finds every library (launch/check-binaries.sh) and runs,
#   4. compiles the CUDA-only code (tests/compat/cuda_paths.cc) with -fsyntax-only against
#      LibTorch 2.14's CUDA headers and the CUDA toolkit in /usr/local/cuda, when present.
#   tests/compat/testing-root.sh [ctest args...]
#   tests/compat/testing-root.sh --shell      a shell in the root (after set-up), for debugging
# Needs root (debootstrap, chroot, bind mounts) and Debian's mirror. Where those are missing it
# prints why and exits 0 (SKIPPED); any build or test failure exits non-zero.
# Environment: FTUNE_TESTING_ROOT (chroot, default build-testing/rootfs; kept between runs),
# FTUNE_DEBIAN_MIRROR (http://deb.debian.org/debian), FTUNE_PEFT_SRC (PEFT's `src` directory).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
root=${FTUNE_TESTING_ROOT:-$repo/build-testing/rootfs}
mirror=${FTUNE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
skip() { echo "testing-root: SKIPPED: $*"; exit 0; }

[ "$(id -u)" -eq 0 ] || skip "needs root for debootstrap/chroot"
if ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; } ||
    skip "cannot install debootstrap"
fi
if [ ! -x "$root/usr/bin/apt-get" ] || [ ! -f "$root/.ftune-bootstrapped" ]; then
  echo "testing-root: debootstrap testing into $root"
  rm -rf "$root"
  mkdir -p "$root"
  debootstrap --variant=minbase testing "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
    skip "debootstrap failed (mirror unreachable?): see $root.debootstrap.log"
  touch "$root/.ftune-bootstrapped"
fi

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() {  # bind SRC DST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2" || skip "mount --bind is not permitted here"
  mounted+=("$2")
  [ "${3:-}" = ro ] && mount -o remount,bind,ro "$2" 2>/dev/null || true
}
mount -t proc proc "$root/proc" 2>/dev/null && mounted+=("$root/proc") || bind /proc "$root/proc"
mount -t sysfs sysfs "$root/sys" 2>/dev/null && mounted+=("$root/sys") || true  # hwloc (Open MPI) reads it
bind /dev "$root/dev"
bind /dev/shm "$root/dev/shm"   # Open MPI's shared-memory transport
[ -d /usr/local/cuda/include ] && bind /usr/local/cuda "$root/usr/local/cuda" ro
[ -d "$repo/../shared" ] && bind "$repo/../shared" "$root/src/shared" ro
peft=${FTUNE_PEFT_SRC:-$repo/../shared/oracle/peft-0.20.0/src}
[ -d "$peft/peft" ] && bind "$peft" "$root/opt/peft" ro
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true

# The working tree as it is (tracked and untracked, not ignored files); the build dir survives.
rm -rf "$root/src/ftune"
mkdir -p "$root/src/ftune"
git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$root/src/ftune"

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
# The mirror's testing Release file can be past its Valid-Until date: apt refuses it unless told.
echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99ftune-valid-until"
# Hugging Face's stack (libopenblas0-openmp: Debian's torch otherwise runs on the reference BLAS,
# several times slower, which would make the HF Trainer anchor meaningless).
hf_pkgs="python3-transformers python3-accelerate python3-torch python3-tokenizers python3-safetensors \
  python3-h5py python3-sklearn python3-psutil python3-yaml python3-tqdm python3-packaging libopenblas0-openmp"
in_root bash -c "cd /src/ftune && launch/install-deps.sh && \
  { dpkg-query -W python3-transformers python3-accelerate >/dev/null 2>&1 || \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $hf_pkgs; }" ||
  skip "installing packages in the chroot failed (mirror?)"
if [ "${1:-}" = --shell ]; then
  in_root env PYTHONPATH=/opt/peft bash -c 'cd /src/ftune; exec bash -i'
  exit 0
fi
echo "testing-root: $(in_root env PYTHONPATH=/opt/peft python3 -c '
import torch, transformers, tokenizers, safetensors
try:
    import peft; p = "peft " + peft.__version__
except Exception as e:
    p = "no peft (%s)" % e
print("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__,
      "safetensors", safetensors.__version__, p)')"
echo "testing-root: LibTorch $(in_root dpkg-query -W -f='${Version}' libtorch-dev), $(in_root g++ --version | head -1)"

cuda=()
[ -f "$root/usr/local/cuda/include/nccl.h" ] && cuda=(-DFTUNE_WITH_NCCL=ON -DFTUNE_NCCL_ROOT=/usr/local/cuda)
in_root bash -c "cd /src/ftune && FTUNE_SKIP_DEPS=1 FTUNE_BUILD_DIR=/src/build FTUNE_UNITY_BUILD=${FTUNE_UNITY_BUILD:-OFF} \
  launch/build.sh ${cuda[*]}"
# Not here: the SLURM tests (a chroot has no cgroups), and what does not touch LibTorch, which
# tests/run.sh already ran against the same code: the tokenizer and prep (data-prep, its HF-oracle
# tests), the launch scripts, the fuzzers.
in_root bash -c 'cd /src/ftune && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  PYTHONPATH=/opt/peft FTUNE_HF_ROOT=1 \
  ctest --test-dir /src/build --output-on-failure -j "${FTUNE_TEST_JOBS:-2}" -LE "slurm|oracle|data-prep|launch|fuzz" "$@"' ctest "$@"
# The live HF tests that do not need LibTorch (HF's tokenizers library on the aclImdb reviews)
# carry the labels hf and data-prep: run them here too, where Python's tokenizers is.
in_root bash -c 'cd /src/ftune && PYTHONPATH=/opt/peft FTUNE_HF_ROOT=1 \
  ctest --test-dir /src/build --output-on-failure -j "${FTUNE_TEST_JOBS:-2}" -L "hf" -L data-prep'


# The GPU host's case: Abseil and the rest outside the system's library path, found through the
# binaries' RPATH. ftune_common_test links Abseil (with its indirect libraries), OpenSSL and GTest.
if launch/fetch-gpu-deps.sh >/dev/null 2>&1; then
  cp -a .deps "$root/src/ftune/"
  in_root bash -c 'set -e; cd /src/ftune
    so=$(basename "$(ls .deps/root/usr/lib/x86_64-linux-gnu/libabsl_strings.so.* | head -1)")
    if ldconfig -p | grep -q "$so"; then echo "testing-root: SKIPPED the .deps build: the chroot itself has $so"; exit 0; fi
    rm -rf /src/build-deps  # configured afresh: a kept cache could point at another copy of Abseil
    cmake -S . -B /src/build-deps -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_STANDARD=20 \
      -DCMAKE_PREFIX_PATH=/src/ftune/.deps/root/usr >/src/build-deps.log 2>&1 ||
      { tail -20 /src/build-deps.log; exit 1; }
    cmake --build /src/build-deps --target ftune_common_test >>/src/build-deps.log 2>&1 ||
      { tail -20 /src/build-deps.log; exit 1; }
    t=/src/build-deps/tests/common/ftune_common_test
    launch/check-binaries.sh "$t"
    ldd "$t" | grep -q "/src/ftune/.deps/root/usr/lib/x86_64-linux-gnu/$so" || { echo "testing-root: $so not from .deps"; exit 1; }
    "$t" --gtest_brief=1 | tail -2
    echo "testing-root: built against .deps (Abseil ${so##*.so.}, not in this root), C++20: every library found, runs"'
else
  echo "testing-root: launch/fetch-gpu-deps.sh failed (mirror?): the .deps build not checked"
fi

if [ -f "$root/usr/local/cuda/include/cuda_runtime_api.h" ]; then
  # Debian's CPU LibTorch ships c10/cuda headers but not the one CMake generates for CUDA builds.
  mkdir -p "$root/tmp/ftune-cuda-stub/c10/cuda/impl"
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' >"$root/tmp/ftune-cuda-stub/c10/cuda/impl/cuda_cmake_macros.h"
  in_root g++ -std=c++20 -fsyntax-only -DFTUNE_TORCH_CUDA -I/src/ftune/src -I/tmp/ftune-cuda-stub \
    -I/usr/include/torch/csrc/api/include -I/usr/local/cuda/include /src/ftune/tests/compat/cuda_paths.cc
  echo "testing-root: CUDA-only code compiles against LibTorch 2.14 + $(basename "$(readlink -f /usr/local/cuda)") headers"
else
  echo "testing-root: no CUDA toolkit headers in /usr/local/cuda: CUDA-only code not compiled"
fi
echo "testing-root: OK"
