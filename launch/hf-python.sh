#!/usr/bin/env bash
# python3 with Hugging Face's stack (transformers, accelerate, PEFT, tokenizers, safetensors, torch
# 2.14 with OpenBLAS), from the Debian testing root that tests/compat/testing-root.sh makes, on a
# machine whose own python3 lacks them:
#   launch/hf-python.sh SCRIPT.py ARGS...      e.g. launch/hf-python.sh launch/hf_trainer.py --help
# The folder above the repository (which holds it and ../shared) and /tmp are mounted at the same
# paths inside the root, so absolute and repository-relative paths mean the same in and out.
# Environment: FTUNE_TESTING_ROOT (default build-testing/rootfs), FTUNE_PEFT_SRC (PEFT's src).
# Exit 3 (and why) when there is no such root: run tests/compat/testing-root.sh once (needs root).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=${FTUNE_TESTING_ROOT:-$repo/build-testing/rootfs}
peft=${FTUNE_PEFT_SRC:-${FTUNE_SHARED:-$repo/../shared}/oracle/peft-0.20.0/src}
if [ ! -x "$root/usr/bin/python3" ] || ! [ -d "$root/usr/lib/python3/dist-packages/transformers" ]; then
  echo "hf-python: no Hugging Face root at $root (make it with tests/compat/testing-root.sh, as root)" >&2
  exit 3
fi
[ "$(id -u)" -eq 0 ] || { echo "hf-python: needs root (chroot)" >&2; exit 3; }
top=$(dirname "$repo")
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() { mkdir -p "$2"; mountpoint -q "$2" || { mount --bind "$1" "$2" && mounted+=("$2"); }; }
mountpoint -q "$root/proc" || { mount -t proc proc "$root/proc" && mounted+=("$root/proc"); }
bind "$top" "$root$top"
bind /tmp "$root/tmp"
pp=""
[ -d "$peft/peft" ] && { bind "$peft" "$root/opt/peft"; pp=/opt/peft; }
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 PYTHONPATH="$pp" \
  OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" bash -c 'cd "$0" && exec python3 "$@"' "$PWD" "$@"
