#!/usr/bin/env bash
# Will these binaries start? Runs `ldd` on each and fails, naming the binary and the library, if
# the dynamic loader would not find one of the libraries it needs, directly or through another
# library (the case where RUNPATH, unlike RPATH, does not reach: see CMakeLists.txt).
#   launch/check-binaries.sh PATH...     a PATH that is a directory: every executable ftune* in it
#                                        and in its sub-directories (a build tree's binaries)
# Exit 0: every binary found every library; 1: at least one "not found" (each listed); 2: no binary.
set -uo pipefail
bins=()
for p in "$@"; do
  if [ -d "$p" ]; then
    while IFS= read -r f; do bins+=("$f"); done < <(find "$p" -type f -name 'ftune*' -perm -u+x \
      -not -path '*/CMakeFiles/*' | sort)
  elif [ -f "$p" ]; then
    bins+=("$p")
  else
    echo "check-binaries: $p: no such file or directory" >&2
    exit 2
  fi
done
[ "${#bins[@]}" -gt 0 ] || { echo "check-binaries: no ftune binaries in: $*" >&2; exit 2; }
bad=0
for b in "${bins[@]}"; do
  [ "$(head -c4 "$b" | od -An -c | tr -d ' ')" = 177ELF ] || continue  # scripts
  out=$(ldd "$b" 2>&1) || true
  missing=$(grep 'not found' <<<"$out" | sed 's/^[[:space:]]*//; s/ =>.*//' | sort -u | tr '\n' ' ')
  if [ -n "$missing" ]; then
    echo "check-binaries: $b: NOT FOUND: $missing"
    bad=1
  fi
done
if [ "$bad" = 0 ]; then
  echo "check-binaries: ${#bins[@]} binaries, every library found"
else
  echo "check-binaries: a binary above would not start (error while loading shared libraries)"
fi
exit "$bad"
