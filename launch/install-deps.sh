#!/usr/bin/env bash
# Installs everything ftune needs to build and test on Debian 12 / Ubuntu 22.04+ (idempotent).
#   launch/install-deps.sh            build + test dependencies, and Hugging Face's tokenizer
#                                     (npm package tokenizers 0.23.2, into tests/data-prep/hf/node_modules)
#                                     as the oracle of the tokenizer tests
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
  libssl-dev                  # SHA-256 (vocab / source hashes)
  libonig-dev libicu-dev      # tokenizer.json: HF's regex engine (Oniguruma) and Unicode normalization (ICU)
  curl                        # cluster/fetch-model.sh (and its test)
  gnuplot-nox                 # comparison plot
)
[[ " $* " == *" --slurm "* ]] && pkgs+=(slurm-wlm munge)
[[ " $* " == *" --fuzz "* ]] && pkgs+=(clang libclang-rt-dev)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# node + npm run the tokenizer oracle; any install of them will do (e.g. NodeSource's nodejs,
# which bundles npm and conflicts with Debian's npm package).
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The oracle (tests/data-prep/tokenizer_oracle_test.cc), pinned with its integrity hash by
# package-lock.json. Its tests skip, saying why, when it is missing, so a registry that cannot be
# reached is a warning here, not a failure.
oracle=tests/data-prep/hf
cd "$(dirname "$0")/.."
if node "$oracle/hf_tokenize.js" --version 2>/dev/null | grep -q '^tokenizers 0\.23\.2,'; then
  echo "install-deps: HF tokenizers oracle present"
elif npm ci --prefix "$oracle" --no-audit --no-fund --loglevel=error >/dev/null; then
  echo "install-deps: installed $(node "$oracle/hf_tokenize.js" --version)"
else
  echo "install-deps: WARNING: could not install the npm package tokenizers into $oracle;" \
       "the tokenizer oracle tests will be skipped" >&2
fi
