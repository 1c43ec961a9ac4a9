#!/usr/bin/env bash
# One-command build on a GPU host that has PyTorch (LibTorch 2.x with CUDA) installed with pip,
# NCCL from the nvidia.nccl wheel, Open MPI and HDF5, but not the Debian -dev packages ftune uses:
# those come from .deps/root (made by launch/fetch-gpu-deps.sh on a machine with apt).
#   launch/build-gpu.sh [extra cmake -D options]      -> build-gpu/ftune
# Environment: FTUNE_GPU_BUILD_DIR (build-gpu), FTUNE_GPU_TARGETS (ftune), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
torch_prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
nccl_root=$("$py" -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__) if nvidia.nccl.__file__ else list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)
[ -n "$nccl_root" ] && [ -f "$nccl_root/include/nccl.h" ] || { echo "build-gpu: nvidia.nccl wheel not found (pip install nvidia-nccl-cu12/13)" >&2; exit 1; }
# The wheel ships libnccl.so.2 only; CMake's find_library wants an unversioned name too.
[ -e "$nccl_root/lib/libnccl.so" ] || ln -sf libnccl.so.2 "$nccl_root/lib/libnccl.so" 2>/dev/null || true
prefixes="$torch_prefix"
[ -d .deps/root/usr ] && prefixes="$prefixes;$PWD/.deps/root/usr"
build=${FTUNE_GPU_BUILD_DIR:-build-gpu}
gen=()
command -v ninja >/dev/null && [ ! -f "$build/Makefile" ] && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_PREFIX_PATH=$prefixes" -DFTUNE_WITH_NCCL=ON "-DFTUNE_NCCL_ROOT=$nccl_root" \
  "-DCMAKE_BUILD_RPATH=$nccl_root/lib;$PWD/.deps/root/usr/lib/x86_64-linux-gnu" "$@"
# shellcheck disable=SC2086
cmake --build "$build" -j "$(nproc)" --target ${FTUNE_GPU_TARGETS:-ftune}
echo "build-gpu: $build/ftune (LibTorch from $torch_prefix, NCCL from $nccl_root)"
