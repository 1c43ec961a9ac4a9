#!/usr/bin/env bash
# Installs everything ftune needs to build and test on Debian 12 / Ubuntu 22.04+ (idempotent).
#   launch/install-deps.sh            build + test dependencies
#   launch/install-deps.sh --slurm    also slurm-wlm + munge (for the SLURM integration test)
#   launch/install-deps.sh --fuzz     also clang + its libFuzzer runtime (tests/fuzz/run.sh)
# Packages already present are skipped, so a second run is quick and changes nothing.
set -euo pipefail

pkgs=(
  g++ cmake ninja-build pkg-config make
  libtorch-dev                # LibTorch (CPU)
  libopenblas0-openmp         # fast BLAS for LibTorch: Debian otherwise links the reference BLAS (8x slower training)
  libopenmpi-dev openmpi-bin  # MPI
  libhdf5-dev                 # HDF5 (pre-tokenized datasets)
  libabsl-dev                 # Abseil (flags, status, strings)
  libgtest-dev libgmock-dev   # GoogleTest
  nlohmann-json3-dev          # JSON (config.json, safetensors headers)
  libutf8proc-dev             # Unicode (tokenizer normalisation)
  libssl-dev                  # SHA-256 (vocab / source hashes)
  curl                        # cluster/fetch-model.sh (and its test)
  gnuplot-nox                 # comparison plot
)
[[ " $* " == *" --slurm "* ]] && pkgs+=(slurm-wlm munge)
[[ " $* " == *" --fuzz "* ]] && pkgs+=(clang libclang-rt-dev)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
