#!/usr/bin/env bash
# One-command build on a GPU host that has PyTorch (LibTorch 2.x with CUDA) installed with pip,
# NCCL from the nvidia.nccl wheel, Open MPI and HDF5, but not the Debian -dev packages ftune uses:
# those come from .deps/root (made by launch/fetch-gpu-deps.sh on a machine with apt), and the
# binaries find its libraries through their RPATH.
#   launch/build-gpu.sh [extra cmake -D options]      -> build-gpu/ftune
# C++20 (newer LibTorch headers require it), the GPU's own CUDA architecture (nvidia-smi's
# compute_cap; 90 = Hopper without a GPU to ask), nvcc from /usr/local/cuda/bin for Torch's CMake.
# Environment: FTUNE_GPU_BUILD_DIR (build-gpu), FTUNE_GPU_TARGETS (ftune), PYTHON (python3),
# FTUNE_CUDA_ARCH (e.g. 90), FTUNE_CXX_STANDARD (20).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
fail() { echo "build-gpu: $*" >&2; exit 1; }
read -r torch_version torch_prefix abi < <("$py" -c 'import torch
print(torch.__version__, torch.utils.cmake_prefix_path, int(torch.compiled_with_cxx11_abi()))') ||
  fail "$py cannot import torch (pip install torch)"
# Debian's (and Ubuntu's) C++ libraries, Abseil and GoogleTest among them, use the C++11 ABI.
[ "$abi" = 1 ] || fail "LibTorch $torch_version uses the pre-C++11 ABI (torch.compiled_with_cxx11_abi() is False):" \
  "it cannot link with Abseil and GoogleTest built for the C++11 ABI; use a LibTorch built with it"
nccl_root=$("$py" -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__) if nvidia.nccl.__file__ else list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)
[ -n "$nccl_root" ] && [ -f "$nccl_root/include/nccl.h" ] || fail "nvidia.nccl wheel not found (pip install nvidia-nccl-cu12/13)"
# The wheel ships libnccl.so.2 only; CMake's find_library wants an unversioned name too.
[ -e "$nccl_root/lib/libnccl.so" ] || ln -sf libnccl.so.2 "$nccl_root/lib/libnccl.so" 2>/dev/null || true
# Torch's CMake (Caffe2's cuda.cmake) looks for nvcc on PATH.
if ! command -v nvcc >/dev/null; then
  for d in "${CUDA_HOME:-}" /usr/local/cuda; do
    [ -n "$d" ] && [ -x "$d/bin/nvcc" ] && { export PATH=$d/bin:$PATH; break; }
  done
fi
command -v nvcc >/dev/null || echo "build-gpu: warning: no nvcc on PATH or in /usr/local/cuda/bin; Torch's CMake may not find CUDA" >&2
arch=${FTUNE_CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')}
arch=${arch:-90}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-${arch%?}.${arch: -1}}
prefixes="$torch_prefix"
deps_lib=""
if [ -d .deps/root/usr ]; then
  prefixes="$prefixes;$PWD/.deps/root/usr"
  deps_lib=";$PWD/.deps/root/usr/lib/x86_64-linux-gnu"
fi
build=${FTUNE_GPU_BUILD_DIR:-build-gpu}
gen=()
command -v ninja >/dev/null && [ ! -f "$build/Makefile" ] && gen=(-G Ninja)
echo "build-gpu: LibTorch $torch_version (C++11 ABI), CUDA arch $arch, nvcc $(command -v nvcc || echo none)," \
     "C++${FTUNE_CXX_STANDARD:-20}, $(nproc) jobs"
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_STANDARD=${FTUNE_CXX_STANDARD:-20}" \
  "-DCMAKE_PREFIX_PATH=$prefixes" "-DCMAKE_CUDA_ARCHITECTURES=$arch" -DFTUNE_WITH_NCCL=ON "-DFTUNE_NCCL_ROOT=$nccl_root" \
  "-DCMAKE_BUILD_RPATH=$nccl_root/lib$deps_lib" "$@"
# shellcheck disable=SC2086
cmake --build "$build" -j "$(nproc)" --target ${FTUNE_GPU_TARGETS:-ftune}
echo "build-gpu: $build/ftune (LibTorch from $torch_prefix, NCCL from $nccl_root)"
