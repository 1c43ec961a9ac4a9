#!/usr/bin/env bash
# Downloads the Large Movie Review Dataset v1.0 (aclImdb; Maas et al., "Learning Word Vectors for
# Sentiment Analysis", ACL 2011: cite it when you use the data) and writes it as the gzip'd CSVs
# that `ftune prep` reads:
#   DEST/train.csv.gz, DEST/test.csv.gz   review,label,rating   25,000 each; label 1 = positive (pos/)
#   DEST/unsup.csv.gz                     review                50,000 unlabeled (train/unsup/)
# A review is its file's text unchanged (<br /> tags kept). Rows are ordered by label (0 then 1),
# then by the file's numeric id (<id>_<rating>.txt); unsup rows by id. RFC 4180 CSV as Python's csv
# module writes it (header row, CRLF, quotes only where needed), UTF-8.
#   cluster/fetch-imdb.sh [--tarball FILE] [DEST]      default DEST: data/aclImdb
# --tarball converts a local aclImdb_v1.tar.gz instead of downloading it (84 MB). A complete dataset
# is checked against the known SHA-256 of each uncompressed CSV. The CSVs appear only when all
# three are written (.part files renamed at the end).
# Needs python3 (tarfile, csv, gzip) and, to download, curl.
# Environment: FTUNE_IMDB_URL (default https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz).
set -euo pipefail

tarball=""
dest=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) sed -n '2,/^set -/{/^#/s/^# \{0,1\}//p;}' "$0"; exit 0 ;;
    --tarball) [ $# -ge 2 ] || { echo "fetch-imdb.sh: --tarball needs a file" >&2; exit 2; }; tarball=$2; shift 2 ;;
    --tarball=*) tarball=${1#--tarball=}; shift ;;
    -*) echo "fetch-imdb.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$dest" ] || { echo "fetch-imdb.sh: one DEST only (see --help)" >&2; exit 2; }; dest=$1; shift ;;
  esac
done
dest=${dest:-data/aclImdb}
url=${FTUNE_IMDB_URL:-https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz}

command -v python3 >/dev/null || { echo "fetch-imdb.sh: needs python3 (apt-get install python3)" >&2; exit 1; }
mkdir -p "$dest"
if [ -z "$tarball" ]; then
  command -v curl >/dev/null || { echo "fetch-imdb.sh: needs curl (apt-get install curl)" >&2; exit 1; }
  tarball=$dest/aclImdb_v1.tar.gz
  if [ ! -s "$tarball" ]; then
    progress=(-sS)
    [ -t 2 ] && progress=(--progress-bar)
    echo "fetch-imdb.sh: $url -> $tarball"
    curl -fL --retry 3 --retry-delay 2 "${progress[@]}" -o "$tarball.part" "$url" || {
      rm -f "$tarball.part"
      echo "fetch-imdb.sh: download failed" >&2
      echo "---> HINT: no internet here? download $url elsewhere and run: $0 --tarball FILE $dest" >&2
      exit 1
    }
    mv "$tarball.part" "$tarball"
  fi
fi
[ -f "$tarball" ] || { echo "fetch-imdb.sh: $tarball: no such file" >&2; exit 1; }

python3 - "$tarball" "$dest" <<'EOF'
import csv, gzip, hashlib, io, os, re, sys, tarfile

tarball, dest = sys.argv[1:3]
# sha256 of the uncompressed CSVs of the complete dataset (../shared/data/aclImdb/README.md).
FULL = {"train": (25000, "5be0a590565c575e3cc653913f19461e678b78793cd91ad34203dc99a5d6580e"),
        "test": (25000, "30c949677c0ab493e1a2c70349a4dea9f9f4e6d6b34432b631815ee7eb9af66b"),
        "unsup": (50000, "3f50eb4591540fd5d6e53bd5ecd6e56c8c488b136f4e399f4adb0e6aa39619a0")}
name = re.compile(r"(?:\./)?aclImdb/(train|test)/(neg|pos|unsup)/(\d+)_(\d+)\.txt")
found = {}  # (split, folder) -> [(id, rating, text)]
try:
    with tarfile.open(tarball, "r:*") as tar:
        for member in tar:
            m = name.fullmatch(member.name)
            if not member.isfile() or not m or (m[1], m[2]) == ("test", "unsup"):
                continue
            try:
                text = tar.extractfile(member).read().decode("utf-8")
            except UnicodeDecodeError as e:
                sys.exit(f"fetch-imdb.sh: {tarball}: {member.name} is not UTF-8 ({e})")
            found.setdefault((m[1], m[2]), []).append((int(m[3]), int(m[4]), text))
except (tarfile.TarError, OSError) as e:
    sys.exit(f"fetch-imdb.sh: {tarball}: not a readable tar archive ({e})")
for key in [("train", "neg"), ("train", "pos"), ("test", "neg"), ("test", "pos"), ("train", "unsup")]:
    if key not in found:
        sys.exit(f"fetch-imdb.sh: {tarball} has no aclImdb/{key[0]}/{key[1]}/<id>_<rating>.txt files; "
                 "is it aclImdb_v1.tar.gz?")

def rows(split):
    if split == "unsup":
        return [[text] for _, _, text in sorted(found[("train", "unsup")])]
    return [[text, str(label), str(rating)]
            for label, folder in enumerate(["neg", "pos"])
            for _, rating, text in sorted(found[(split, folder)])]

written = []
def discard(message):
    for path in written:
        os.remove(path + ".part")
    sys.exit(message)

for split, header in [("train", ["review", "label", "rating"]), ("test", ["review", "label", "rating"]),
                      ("unsup", ["review"])]:
    body = rows(split)
    out = io.StringIO(newline="")
    writer = csv.writer(out)  # RFC 4180: CRLF, minimal quoting
    writer.writerow(header)
    writer.writerows(body)
    data = out.getvalue().encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    count, want = FULL[split]
    if len(body) == count and digest != want:
        discard(f"fetch-imdb.sh: {split}.csv has sha256 {digest}, expected {want}; nothing written")
    check = "sha256 verified" if len(body) == count else f"not the complete dataset ({count:,}), sha256 not checked"
    path = os.path.join(dest, split + ".csv.gz")
    with open(path + ".part", "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        gz.write(data)
    written.append(path)
    print(f"fetch-imdb.sh: {path}: {len(body):,} rows, {len(data) / 1e6:.1f} MB, {check}")
for path in written:
    os.replace(path + ".part", path)
EOF
echo "fetch-imdb.sh: done; e.g. zcat $dest/train.csv.gz > train.csv && ftune prep --input train.csv ..." \
     "(unsup.csv: --label_column=). Cite Maas et al., ACL 2011."
