#!/usr/bin/env python3
"""Generates data-prep/unicode_tables.cc: the character classes of Hugging Face's BERT tokenizer.

HF `tokenizers` (0.23.2, the library behind the reference goldens) does not classify characters
with one Unicode version but with three, one per dependency, and ftune must do the same to get
the same ids:

  Unicode 8.0.0   crate unicode_categories 0.1.1 (its tables.rs was generated in 2015 from 8.0's
                  UnicodeData.txt and never republished): is_other (Cc, Cf, Co) for clean_text's
                  control characters, is_mark_nonspacing (Mn) for strip_accents, is_punctuation
                  (Pc Pd Ps Pe Pi Pf Po) for BertPreTokenizer. The crate lists the code points of
                  UnicodeData.txt's lines, plus the three private-use ranges spelled out in its
                  lib.rs (U+E000..U+F8FF, U+F0000..U+FFFFD, U+100000..U+10FFFD), so every
                  private-use character is a control character and is removed.
  Unicode 9.0.0   crate unicode-normalization-alignments 0.1.12 (UNICODE_VERSION = 9.0.0): NFD,
                  i.e. canonical decomposition and the canonical combining classes that order
                  combining marks.
  Unicode 17.0.0  Rust's standard library as of the compiler that built the npm binaries (rustc
                  1.98): char::to_lowercase (UnicodeData.txt's simple lowercase plus the
                  unconditional SpecialCasing.txt mappings) and char::is_whitespace (White_Space).

Plus HF's own rules (tokenizers/src/normalizers/bert.rs, pre_tokenizers/bert.rs): U+0000 and
U+FFFD are removed; \\t \\n \\r are whitespace, not control; the CJK ideograph ranges of
is_chinese_char; ASCII punctuation (char::is_ascii_punctuation) splits like Unicode P*.

Usage:
  data-prep/gen_unicode_tables.py                  # downloads the UCD files from unicode.org
  data-prep/gen_unicode_tables.py --ucd DIR        # reads DIR/<version>/<file> instead
  data-prep/gen_unicode_tables.py --check          # fails if the checked-in files differ

It also writes tests/fixtures/tokens/unicode_categories.txt, the general category of every code
point in the newest of these versions (17.0.0) as runs, from which the differential fuzz test
draws characters of every category.

Every input is checked against the sha256 pinned below, so the output is reproducible byte for
byte. tests/data-prep/tokenizer_oracle_test.cc checks the result against HF itself on every code
point.
"""
import argparse
import hashlib
import os
import sys
import urllib.request

UCD_URL = "https://www.unicode.org/Public/{version}/ucd/{name}"

# (version, file) -> sha256 of the official file.
INPUTS = {
    ("8.0.0", "UnicodeData.txt"): "38b17e1118206489a7e0ab5d29d7932212d38838df7d3ec025ecb58e8798ec20",
    ("9.0.0", "UnicodeData.txt"): "68dfc414d28257b9b5d6ddbb8b466c768c00ebdf6cbf7784364a9b6cad55ee8f",
    ("17.0.0", "UnicodeData.txt"): "2e1efc1dcb59c575eedf5ccae60f95229f706ee6d031835247d843c11d96470c",
    ("17.0.0", "SpecialCasing.txt"): "efc25faf19de21b92c1194c111c932e03d2a5eaf18194e33f1156e96de4c9588",
    ("17.0.0", "PropList.txt"): "130dcddcaadaf071008bdfce1e7743e04fdfbc910886f017d9f9ac931d8c64dd",
}
CATEGORIES_VERSION = "8.0.0"
NFD_VERSION = "9.0.0"
RUST_STD_VERSION = "17.0.0"

# bert.rs is_chinese_char.
CJK_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]
# unicode_categories 0.1.1 lib.rs, is_other_private_use.
PRIVATE_USE_RANGES = [(0xE000, 0xF8FF), (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD)]
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3

# Flag bits of a record; keep in sync with data-prep/unicode_tables.h.
DROP, SPACE, CJK, MN, PUNCT, HANGUL, LOWER_SEQ = 1, 2, 4, 8, 16, 32, 64

BLOCK = 256  # code points per second-stage block


def read_input(ucd_dir, version, name):
    if ucd_dir:
        with open(os.path.join(ucd_dir, version, name), "rb") as f:
            data = f.read()
    else:
        url = UCD_URL.format(version=version, name=name)
        print(f"gen_unicode_tables: fetching {url}", file=sys.stderr)
        with urllib.request.urlopen(url) as r:
            data = r.read()
    digest = hashlib.sha256(data).hexdigest()
    want = INPUTS[(version, name)]
    if digest != want:
        sys.exit(f"gen_unicode_tables: {version}/{name} has sha256 {digest}, expected {want}")
    return data.decode("utf-8"), digest


def unicode_data(text):
    """code point -> fields of UnicodeData.txt, one entry per line (ranges stay two lines)."""
    rows = {}
    for line in text.splitlines():
        if line.strip():
            f = line.split(";")
            rows[int(f[0], 16)] = f
    return rows


def prop_list(text, prop):
    out = set()
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        cps, name = (s.strip() for s in line.split(";"))
        if name != prop:
            continue
        lo, _, hi = cps.partition("..")
        out.update(range(int(lo, 16), int(hi or lo, 16) + 1))
    return out


def build(ucd_dir):
    cat_text, cat_sha = read_input(ucd_dir, CATEGORIES_VERSION, "UnicodeData.txt")
    nfd_text, nfd_sha = read_input(ucd_dir, NFD_VERSION, "UnicodeData.txt")
    rust_text, rust_sha = read_input(ucd_dir, RUST_STD_VERSION, "UnicodeData.txt")
    special_text, special_sha = read_input(ucd_dir, RUST_STD_VERSION, "SpecialCasing.txt")
    props_text, props_sha = read_input(ucd_dir, RUST_STD_VERSION, "PropList.txt")
    sources = [(CATEGORIES_VERSION, "UnicodeData.txt", cat_sha), (NFD_VERSION, "UnicodeData.txt", nfd_sha),
               (RUST_STD_VERSION, "UnicodeData.txt", rust_sha), (RUST_STD_VERSION, "SpecialCasing.txt", special_sha),
               (RUST_STD_VERSION, "PropList.txt", props_sha)]

    cats = {cp: f[2] for cp, f in unicode_data(cat_text).items()}
    other = {cp for cp, c in cats.items() if c in ("Cc", "Cf", "Co")}
    for lo, hi in PRIVATE_USE_RANGES:
        other.update(range(lo, hi + 1))
    mn = {cp for cp, c in cats.items() if c == "Mn"}
    punct = {cp for cp, c in cats.items() if c in ("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po")}
    punct.update(cp for cp in range(0x80) if chr(cp) in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

    nfd_rows = unicode_data(nfd_text)
    ccc = {cp: int(f[3]) for cp, f in nfd_rows.items() if int(f[3]) != 0}
    canon = {cp: [int(x, 16) for x in f[5].split()] for cp, f in nfd_rows.items() if f[5] and not f[5].startswith("<")}

    def full_nfd(cp):
        if cp not in canon:
            return [cp]
        return [d for part in canon[cp] for d in full_nfd(part)]

    white = prop_list(props_text, "White_Space")
    lower = {cp: [int(f[13], 16)] for cp, f in unicode_data(rust_text).items() if f[13]}
    for line in special_text.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        f = [s.strip() for s in line.split(";")]
        if f[4]:  # a condition (Final_Sigma, a language): char::to_lowercase ignores these
            continue
        lower[int(f[0], 16)] = [int(x, 16) for x in f[1].split()]

    # General categories of the newest version, as runs (the fuzz test's fixture).
    newest = {}
    first = None
    for cp, f in sorted(unicode_data(rust_text).items()):
        if f[1].endswith("First>"):
            first = cp
        elif f[1].endswith("Last>"):
            newest.update((c, f[2]) for c in range(first, cp + 1))
        else:
            newest[cp] = f[2]
    category_runs = []
    for cp in range(0x110000):
        c = newest.get(cp, "Cn")
        if c == "Cs" or 0xD800 <= cp <= 0xDFFF:
            continue
        if category_runs and category_runs[-1][0] == c and category_runs[-1][2] == cp - 1:
            category_runs[-1][2] = cp
        else:
            category_runs.append([c, cp, cp])

    cjk = set()
    for lo, hi in CJK_RANGES:
        cjk.update(range(lo, hi + 1))

    # Records: (flags, ccc, nfd offset, lower) deduplicated; per code point a record index.
    nfd_pool = [0]  # offset 0 = "decomposes to itself"; else [length, cps...]
    nfd_offset = {}
    lower_pool = [0]
    lower_offset = {}
    records = {(0, 0, 0, 0): 0}  # record 0: an ordinary character
    record_list = [(0, 0, 0, 0)]
    per_cp = []
    for cp in range(0x110000):
        flags = 0
        if 0xD800 <= cp <= 0xDFFF:  # never decoded (not a scalar value)
            per_cp.append(0)
            continue
        if cp == 0 or cp == 0xFFFD or (cp in other and cp not in (0x09, 0x0A, 0x0D)):
            flags |= DROP
        if cp in white:
            flags |= SPACE
        if cp in cjk:
            flags |= CJK
        if cp in mn:
            flags |= MN
        if cp in punct:
            flags |= PUNCT
        nfd = 0
        if HANGUL_FIRST <= cp <= HANGUL_LAST:
            flags |= HANGUL
        else:
            seq = full_nfd(cp)
            if seq != [cp]:
                key = tuple(seq)
                if key not in nfd_offset:
                    nfd_offset[key] = len(nfd_pool)
                    nfd_pool.extend([len(seq)] + seq)
                nfd = nfd_offset[key]
        low = lower.get(cp, [cp])
        if len(low) == 1:
            lval = low[0] - cp
        else:
            flags |= LOWER_SEQ
            key = tuple(low)
            if key not in lower_offset:
                lower_offset[key] = len(lower_pool)
                lower_pool.extend([len(low)] + list(low))
            lval = lower_offset[key]
        rec = (flags, ccc.get(cp, 0), nfd, lval)
        if rec not in records:
            records[rec] = len(record_list)
            record_list.append(rec)
        per_cp.append(records[rec])

    blocks = {}
    block_list = []
    stage1 = []
    for b in range(0, 0x110000, BLOCK):
        key = tuple(per_cp[b:b + BLOCK])
        if key not in blocks:
            blocks[key] = len(block_list)
            block_list.append(key)
        stage1.append(blocks[key])
    # unicode_tables.h: 16-bit indices, Decompose() writes at most 4 and Lowercase() at most 3.
    assert len(record_list) < 65536 and len(block_list) < 65536 and len(nfd_pool) < 65536
    assert max(len(k) for k in nfd_offset) <= 4 and max(len(v) for v in lower.values()) <= 3
    return (sources, record_list, stage1, block_list, nfd_pool, lower_pool), category_runs


def emit_categories(runs):
    out = [f"# GENERATED by data-prep/gen_unicode_tables.py from Unicode {RUST_STD_VERSION} UnicodeData.txt; do not edit.",
           "# General category of every Unicode scalar value (Cn = unassigned), as runs: CATEGORY FIRST LAST (hex).",
           "# Used by tests/data-prep/tokenizer_oracle_test.cc to draw random characters of every category."]
    out += [f"{c} {lo:04X} {hi:04X}" for c, lo, hi in runs]
    return "\n".join(out) + "\n"


def emit(sources, records, stage1, blocks, nfd_pool, lower_pool):
    out = []
    w = out.append
    w("// GENERATED by data-prep/gen_unicode_tables.py; do not edit. Regenerate with that script.")
    w("// clang-format off")
    w("// The character classes of Hugging Face tokenizers' BERT normalizer and pre-tokenizer (see")
    w("// data-prep/unicode_tables.h for the record layout and the script for the versions). Sources:")
    for version, name, sha in sources:
        w(f"//   Unicode {version} {name} sha256 {sha}")
    w('#include "data-prep/unicode_tables.h"')
    w("")
    w("namespace ftune::prep::unicode::internal {")
    w("")

    def array(decl, values, per_line):
        w(f"{decl} = {{")
        for i in range(0, len(values), per_line):
            w("    " + ", ".join(str(v) for v in values[i:i + per_line]) + ",")
        w("};")
        w("")

    w(f"const CharRecord kRecords[{len(records)}] = {{")
    for flags, ccc, nfd, lval in records:
        w(f"    {{{flags}, {ccc}, {nfd}, {lval}}},")
    w("};")
    w("")
    array(f"const uint16_t kStage1[{len(stage1)}]", stage1, 16)
    flat = [r for b in blocks for r in b]
    array(f"const uint16_t kStage2[{len(flat)}]", flat, 16)
    array(f"const int32_t kNfdPool[{len(nfd_pool)}]", nfd_pool, 12)
    array(f"const int32_t kLowerPool[{len(lower_pool)}]", lower_pool, 12)
    w("}  // namespace ftune::prep::unicode::internal")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ucd", help="directory with <version>/<file> copies of the UCD files (default: download)")
    ap.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "unicode_tables.cc"))
    ap.add_argument("--categories-output", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "tokens", "unicode_categories.txt"))
    ap.add_argument("--check", action="store_true", help="compare with the outputs instead of writing them")
    args = ap.parse_args()
    tables, runs = build(args.ucd)
    outputs = [(args.output, emit(*tables)), (os.path.normpath(args.categories_output), emit_categories(runs))]
    for path, text in outputs:
        if args.check:
            with open(path, encoding="utf-8") as f:
                if f.read() != text:
                    sys.exit(f"gen_unicode_tables: {path} is out of date; rerun data-prep/gen_unicode_tables.py")
            print(f"gen_unicode_tables: {path} is up to date")
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"gen_unicode_tables: wrote {path} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
