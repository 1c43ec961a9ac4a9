#!/usr/bin/env bash
# cluster/fetch-imdb.sh offline: builds a small tarball in aclImdb_v1.tar.gz's layout from rows of
# ../shared/data/aclImdb/*.csv.gz (with the files of the real archive that are not reviews), runs
# the script on it with --tarball, and checks that each CSV it writes is the header plus exactly
# those rows, byte for byte as they are in the shared CSVs. The file ids are chosen so that only
# numeric order (9 < 10 < 100), not name order, gives the rows back in their original order.
#   fetch_imdb_test.sh SHARED_DIR        exit 77 = skipped (no ../shared data or no python3)
set -euo pipefail
shared=${FTUNE_SHARED:-$1}
repo=$(cd "$(dirname "$0")/../.." && pwd)
src=$shared/data/aclImdb
[ -f "$src/train.csv.gz" ] && [ -f "$src/test.csv.gz" ] && [ -f "$src/unsup.csv.gz" ] ||
  { echo "SKIP: needs $src/{train,test,unsup}.csv.gz"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: fetch-imdb.sh needs python3"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Physical lines (1-based) of the rows used: no aclImdb review holds a line break, so a row is a line.
# train/test: lines 2.. are label 0, lines 12502.. label 1; the third pick of each label is far in.
declare -A lines=([train]="2 3 9000 12502 12503 20000" [test]="2 3 7777 12502 12503 25001" [unsup]="2 3 4 40000")
for split in train test unsup; do
  zcat "$src/$split.csv.gz" |
    awk -v want="1 ${lines[$split]}" 'BEGIN { split(want, w, " "); for (i in w) keep[w[i]] = 1 } NR in keep' \
      >"$tmp/$split.expected.csv"
done

# The review files: row k of a (split, label) group becomes <id>_<rating>.txt with id 9, 10, 100.
python3 - "$tmp" <<'EOF'
import csv, io, os, sys
tmp = sys.argv[1]
ids = [9, 10, 100]
for split in ["train", "test", "unsup"]:
    with open(f"{tmp}/{split}.expected.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    groups = {}
    for row in rows:
        folder = ["neg", "pos"][int(row[1])] if split != "unsup" else "unsup"
        groups.setdefault(folder, []).append(row)
    for folder, group in groups.items():
        d = f"{tmp}/aclImdb/{'train' if split == 'unsup' else split}/{folder}"
        os.makedirs(d, exist_ok=True)
        for k, row in enumerate(group):
            rating = row[2] if split != "unsup" else "0"
            with open(f"{d}/{ids[k] if split != 'unsup' else [9, 10, 100, 1000][k]}_{rating}.txt", "w",
                      newline="", encoding="utf-8") as out:
                out.write(row[0])
# What else the real archive holds, which is not a review.
for path, text in [("README", "Large Movie Review Dataset v1.0\n"), ("imdb.vocab", "the\nand\n"),
                   ("train/labeledBow.feat", "0 0:9\n"), ("train/urls_pos.txt", "http://x\n"),
                   ("test/neg/notes.txt", "not a review\n")]:
    with open(f"{tmp}/aclImdb/{path}", "w") as out:
        out.write(text)
EOF
tar -czf "$tmp/aclImdb_v1.tar.gz" -C "$tmp" aclImdb

out=$tmp/out
"$repo/cluster/fetch-imdb.sh" --tarball "$tmp/aclImdb_v1.tar.gz" "$out" >"$tmp/log" 2>&1 ||
  { cat "$tmp/log"; fail "fetch-imdb.sh exited non-zero"; }
cat "$tmp/log"
grep -q "not the complete dataset" "$tmp/log" || fail "a subset must be reported as not checked"
for split in train test unsup; do
  [ -f "$out/$split.csv.gz" ] || fail "$out/$split.csv.gz not written"
  zcat "$out/$split.csv.gz" >"$tmp/$split.got.csv"
  cmp "$tmp/$split.expected.csv" "$tmp/$split.got.csv" ||
    { diff <(cut -c1-80 "$tmp/$split.expected.csv") <(cut -c1-80 "$tmp/$split.got.csv") || true
      fail "$split.csv differs from the rows of $src/$split.csv.gz"; }
  echo "ok: $split.csv.gz = header + $(( $(wc -l <"$tmp/$split.expected.csv") - 1 )) rows of the shared CSV, byte for byte"
done
[ -z "$(find "$out" -name '*.part')" ] || fail ".part files left behind"

# A tarball without the review folders is refused, naming what is missing, and writes nothing.
mkdir -p "$tmp/bad/aclImdb/train/pos" && echo x >"$tmp/bad/aclImdb/train/pos/1_8.txt"
tar -czf "$tmp/bad.tar.gz" -C "$tmp/bad" aclImdb
if "$repo/cluster/fetch-imdb.sh" --tarball "$tmp/bad.tar.gz" "$tmp/out2" 2>"$tmp/err"; then
  fail "an incomplete tarball was accepted"
fi
grep -q "has no aclImdb/train/neg" "$tmp/err" || { cat "$tmp/err"; fail "the error does not name the missing folder"; }
[ -z "$(ls -A "$tmp/out2")" ] || fail "files written for a bad tarball: $(ls "$tmp/out2")"
echo "ok: an incomplete tarball is refused: $(cat "$tmp/err")"
echo "PASS"
