#!/usr/bin/env python3
"""Hugging Face's own tokenizer for a tokenizer.json (the Python `tokenizers`), as the oracle of
tests/data-prep/tokenizer_json_oracle_test.cc. The same protocol as hf_tokenizer_json.js, which
the tests use where Python's `tokenizers` is missing (the npm binding's encode() adds no special
tokens, so only Python's encodes sentence pairs as transformers does):

    python3 hf_tokenizer_json.py --version
    python3 hf_tokenizer_json.py TOKENIZER_JSON IN OUT [MAX_LENGTH]

IN: records of uint32 byte length + UTF-8 of text A, then uint32 byte length + UTF-8 of text B or
0xFFFFFFFF for none (little-endian). OUT: per record uint32 n, n uint32 ids, n uint32 type ids.
MAX_LENGTH > 0 truncates with longest_first (transformers' truncation=True); otherwise the file's
own truncation is switched off, as transformers does.
"""
import array
import struct
import sys

import tokenizers
from tokenizers import Tokenizer


def records(data):
    pos, out = 0, []
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        a = data[pos + 4:pos + 4 + n].decode("utf-8", errors="replace")
        pos += 4 + n
        (m,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if m == 0xFFFFFFFF:
            out.append(a)
        else:
            out.append((a, data[pos:pos + m].decode("utf-8", errors="replace")))
            pos += m
    return out


def main(argv):
    if argv[:1] == ["--version"]:
        print(f"tokenizers {tokenizers.__version__}, python {sys.version.split()[0]}")
        return
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    tok = Tokenizer.from_file(argv[0])
    tok.no_padding()
    max_length = int(argv[3]) if len(argv) == 4 else 0
    if max_length > 0:
        tok.enable_truncation(max_length, strategy="longest_first")
    else:
        tok.no_truncation()
    with open(argv[1], "rb") as f:
        inputs = records(f.read())
    with open(argv[2], "wb") as out:
        for i in range(0, len(inputs), 4096):
            buf = array.array("I")
            for e in tok.encode_batch(inputs[i:i + 4096]):
                buf.append(len(e.ids))
                buf.extend(e.ids)
                buf.extend(e.type_ids)
            if sys.byteorder != "little":
                buf.byteswap()
            out.write(buf.tobytes())


if __name__ == "__main__":
    main(sys.argv[1:])
