#!/usr/bin/env python3
"""Writes the hand-made part of the seed corpora in tests/fixtures/fuzz/<target>/ (stdlib only).

Seeds are small on purpose (libFuzzer mutates faster): real files from tests/fixtures where they are
small, plus edge cases named after what they exercise. Inputs that once broke a parser are added
by hand as `regress-<what>` and are never regenerated. Re-running this script is idempotent.
"""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
FIX = os.path.join(ROOT, "fixtures")
OUT = os.path.join(FIX, "fuzz")


def put(target, name, data):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    with open(os.path.join(OUT, target, name), "wb") as f:
        f.write(data)


def read(*path):
    with open(os.path.join(FIX, *path), "rb") as f:
        return f.read()


# ---- safetensors
def st(header, data=b"", pad=True):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors():
    put("safetensors", "hf-tiny-lora-io", read("hf", "hf-tiny-lora", "io.safetensors"))
    put("safetensors", "hf-tiny-mlm-io", read("hf", "hf-tiny-mlm", "io.safetensors"))
    put("safetensors", "empty-header", st({}))
    put("safetensors", "metadata-only", st({"__metadata__": {"format": "pt", "note": "x"}}))
    dtypes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
    hdr, data = {}, b""
    for i, (d, size) in enumerate(sorted(dtypes.items(), key=lambda kv: -kv[1])):
        n = size * 3
        hdr[f"t{i}_{d}"] = {"dtype": d, "shape": [3], "data_offsets": [len(data), len(data) + n]}
        data += bytes(range(i, i + n))
    hdr["__metadata__"] = {"format": "pt"}
    put("safetensors", "all-dtypes", st(hdr, data))
    put("safetensors", "zero-size-and-scalar",
        st({"a": {"dtype": "F32", "shape": [0, 5], "data_offsets": [0, 0]},
            "b": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}, b"\0\0\x80?"))
    put("safetensors", "rank-2", st({"w": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 12]}}, bytes(12)))
    put("safetensors", "unpadded-header", st({"x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"z", pad=False))
    put("safetensors", "escaped-name",
        st({"a\nb\u00e9\u0000": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"z"))
    put("safetensors", "bad-overlap",
        st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)))
    put("safetensors", "bad-duplicate",
        st(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"z"))
    put("safetensors", "bad-huge-shape",
        st({"a": {"dtype": "F64", "shape": [2**32, 2**32, 2**16], "data_offsets": [0, 8]}}, bytes(8)))
    put("safetensors", "bad-header-len", struct.pack("<Q", 2**63 + 5) + b"{}")
    put("safetensors", "bad-not-json", st(b"{\xff\xfe not json"))
    put("safetensors", "bad-dtype", st({"a": {"dtype": "F8\n\x1b[31m", "shape": [1], "data_offsets": [0, 1]}}, b"z"))


# ---- config.json
def hf_config():
    put("hf_config", "hf-tiny-cls", read("hf", "hf-tiny-cls", "config.json"))
    put("hf_config", "hf-tiny-mlm", read("hf", "hf-tiny-mlm", "config.json"))
    put("hf_config", "empty-object", "{}")
    put("hf_config", "labels-3", json.dumps({"id2label": {"0": "neg", "1": "neu", "2": "pos"},
                                             "label2id": {"neg": 0, "neu": 1, "pos": 2}}))
    put("hf_config", "num-labels", '{"num_labels": 5, "activation": "relu", "dropout": 0}')
    put("hf_config", "nulls", '{"dim": null, "id2label": null, "sinusoidal_pos_embds": null}')
    put("hf_config", "bad-dim-heads", '{"dim": 770, "n_heads": 12}')
    put("hf_config", "bad-huge-vocab", '{"vocab_size": 1000000000000, "dim": 18446744073709551615}')
    put("hf_config", "bad-activation", '{"activation": "swi\\nsh"}')
    put("hf_config", "bad-label-keys", '{"id2label": {"0": "a", "00": "b"}}')
    put("hf_config", "bad-types", '{"dim": "768", "dropout": [0.1], "activation": 3}')


# ---- CSV
def csv():
    reviews = read("tokens", "reviews.csv").split(b"\r\n")
    put("csv", "reviews-head", b"\r\n".join(reviews[:4]) + b"\r\n")
    put("csv", "quotes", 'review,label\n"He said ""wow"", then, left\nearly",1\nplain,0\n')
    put("csv", "crlf-bom-blank", "\ufeffreview,label\r\n\r\n\"a\r\nb\",\r\n,1\r\nlast,0")
    put("csv", "cr-only", "review,label\r\"x\ry\",1\rz,0\r")
    put("csv", "nul-bytes", "review,label\nab\0cd,1\n\"q\0\",0\n")
    put("csv", "utf8", "review,label\ncaf\u00e9 \U0001F600 \u4e2d\u6587,1\n")
    put("csv", "bad-unterminated", 'review,label\nok,1\n"never closed,0\nmore,1\n')
    put("csv", "bad-after-quote", 'review,label\n"quoted"tail,1\n"x"\xc3\xa9,0\n')
    put("csv", "bad-utf8", b"review,label\ngood,1\nba\xc3(d,0\n\xed\xa0\x80\n")
    put("csv", "ragged", "a,b,c\n1,2\n3,4,5,6\n,,\n")


# ---- tokenizer: 2 bytes of max_length (little endian, mod 1025), then the text
def tokenizer():
    for i, line in enumerate(read("tokens", "edge.jsonl").decode().splitlines()):
        text = json.loads(line)["text"]
        put("tokenizer", f"edge-{i:02d}", struct.pack("<H", 0) + text.encode("utf-8", "surrogatepass"))
    put("tokenizer", "truncate-8", struct.pack("<H", 8) + b"the quick brown fox jumps over the lazy dog again")
    put("tokenizer", "truncate-1", struct.pack("<H", 1) + b"hello world")
    put("tokenizer", "specials", struct.pack("<H", 0) + b"[CLS][SEP] [UNK][PAD][MASK] [cls] [MASK")
    put("tokenizer", "invalid-utf8", struct.pack("<H", 0) + b"caf\xc3 \xff\xfe \xed\xa0\x80 ok \xf0\x9f\x98")
    put("tokenizer", "long-word", struct.pack("<H", 0) + b"a" * 101 + b" " + "\u00e9".encode() * 100)
    put("tokenizer", "combining", struct.pack("<H", 0) + "e\u0301\u0327 \u1e09 \u212b \u0130".encode())


# ---- token datasets
def token_dataset():
    # Structured target: bytes are decoded by FuzzedDataProvider; a few fixed patterns.
    put("token_dataset", "zeros", bytes(64))
    put("token_dataset", "ones", b"\x01" * 64)
    put("token_dataset", "ramp", bytes(range(256)))
    put("token_dataset_file", "h5py_written.h5", read("prep", "h5py_written.h5"))
    # Also in token_dataset_file/, written once by `ftune prep` (RunPrep) and kept as they are:
    #   prep_csv.h5    3 CSV reviews (one with "café, 中文 [SEP]"), --max_length=512
    #   prep_jsonl.h5  2 JSONL examples, --input_format=jsonl --max_length=4

# ---- tokenizer.json: a tiny file per component (the real ones are in fixtures/tokenizers)
def tokenizer_json():
    chars = list("abcdefghijklmnopqrstuvwxyz .,!'") + ["\u0120", "\u2581"]
    def tj(model, normalizer=None, pre=None, post=None, added=()):
        return json.dumps({"version": "1.0", "truncation": None, "padding": None, "added_tokens": list(added),
                           "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post,
                           "decoder": None, "model": model}, ensure_ascii=False)
    vocab = {t: i for i, t in enumerate(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"] + chars + ["##a", "##b", "ab", "abc"])}
    special = lambda c, i: {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                            "normalized": False, "special": True}
    added = [special("[UNK]", 0), special("[CLS]", 1), special("[SEP]", 2), special("[PAD]", 3), special("[MASK]", 4)]
    bert_post = {"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1]}
    put("tokenizer_json", "wordpiece-bert", tj(
        {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
         "vocab": vocab},
        {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
        {"type": "BertPreTokenizer"}, bert_post, added))
    bvocab = {t: i for i, t in enumerate(["<s>", "</s>", "<unk>"] + chars + ["ab", "abc", "\u0120a", "<0x41>"])}
    put("tokenizer_json", "bpe-bytelevel-roberta", tj(
        {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None, "end_of_word_suffix": None,
         "fuse_unk": True, "byte_fallback": True, "ignore_merges": False, "vocab": bvocab,
         "merges": [["a", "b"], ["ab", "c"], ["\u0120", "a"]]},
        {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": True, "strip_right": False}]},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        {"type": "RobertaProcessing", "sep": ["</s>", 1], "cls": ["<s>", 0], "trim_offsets": True, "add_prefix_space": True},
        [dict(special("<s>", 0), normalized=True), special("</s>", 1), {"id": len(bvocab), "content": "<mask>", "single_word": False,
          "lstrip": True, "rstrip": False, "normalized": False, "special": True}]))
    put("tokenizer_json", "bpe-legacy-merges-template", tj(
        {"type": "BPE", "vocab": bvocab, "merges": ["a b", "ab c", "#version: 0.2"], "ignore_merges": True},
        {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
        {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"}, "behavior": "Isolated", "invert": False},
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
            {"type": "Digits", "individual_digits": True}, {"type": "Punctuation", "behavior": "Contiguous"}]},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}, "</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
        [{"id": len(bvocab), "content": "imdb", "single_word": True, "lstrip": False, "rstrip": True, "normalized": True, "special": False}]))
    put("tokenizer_json", "wordlevel-kitchen", tj(
        {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
        {"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "StripAccents"}, {"type": "Prepend", "prepend": "x"},
                                             {"type": "Replace", "pattern": {"String": "``"}, "content": "\""}, {"type": "Nmt"}]},
        {"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}, {"type": "WhitespaceSplit"},
                                                {"type": "CharDelimiterSplit", "delimiter": "-"},
                                                {"type": "Split", "pattern": {"String": "ab"}, "behavior": "MergedWithNext", "invert": True}]},
        {"type": "Sequence", "processors": [{"type": "ByteLevel", "trim_offsets": False}, bert_post]}, added))
    put("tokenizer_json", "bad-merge-names-no-token", tj({"type": "BPE", "vocab": bvocab, "merges": ["a zz"]}))
    put("tokenizer_json", "bad-vocab-hole", tj({"type": "WordLevel", "vocab": {"a": 0, "b": 2}, "unk_token": "a"}))
    put("tokenizer_json", "bad-unknown-type", tj({"type": "Unigram", "vocab": [["a", 0.0]]}))
    put("tokenizer_json", "truncated", tj({"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"})[:60])


def main():
    safetensors()
    hf_config()
    csv()
    tokenizer()
    tokenizer_json()
    token_dataset()
    return 0


if __name__ == "__main__":
    sys.exit(main())
