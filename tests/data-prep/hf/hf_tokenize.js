// Hugging Face's own tokenizer as an oracle for ftune's tests: the npm package `tokenizers`
// (0.23.2, the Rust library behind HF's fast tokenizers), set up as distilbert-base-uncased's
// BertWordPieceTokenizer (the settings of ../shared/data/aclImdb/README.md).
//
//   node hf_tokenize.js --version
//   node hf_tokenize.js VOCAB IN OUT       ids
//   node hf_tokenize.js --words IN OUT     the words WordPiece would see
//   node hf_tokenize.js --bench VOCAB IN REPEAT   encodeBatch's time on all of IN (for
//                                                 data-prep/bench_tokenizer.cc; threads:
//                                                 RAYON_NUM_THREADS)
//
// IN holds the texts, each as a little-endian uint32 byte length and that many UTF-8 bytes. OUT
// receives, per text in the same order, a uint32 count and that many uint32 ids ([CLS] ... [SEP],
// no truncation); with --words, a uint32 byte length and the words joined by ' ' (UTF-8): the
// special tokens split out (as the added vocabulary does: leftmost, on the raw text) and the rest
// through the normalizer and pre-tokenizer, so every character's fate is visible, not hidden in
// an [UNK]. Texts go through in batches, in one process, so a million texts cost seconds, not a
// million process starts.
'use strict';
const fs = require('fs');
const path = require('path');

function load() {
  try {
    return require(path.join(__dirname, 'node_modules', 'tokenizers'));
  } catch (e) {
    process.stderr.write(`hf_tokenize: cannot load the npm package tokenizers (run launch/install-deps.sh): ${e.message}\n`);
    process.exit(3);
  }
}

async function main(argv) {
  if (argv[0] === '--version') {
    load();
    const pkg = require(path.join(__dirname, 'node_modules', 'tokenizers', 'package.json'));
    process.stdout.write(`tokenizers ${pkg.version}, node ${process.version}\n`);
    return;
  }
  if (argv[0] === '--bench' && argv.length === 4) {
    await bench(load(), argv[1], readTexts(argv[2]), Number(argv[3]));
    return;
  }
  if (argv.length !== 3) {
    process.stderr.write('usage: node hf_tokenize.js VOCAB IN OUT | --words IN OUT | --bench VOCAB IN REPEAT | --version\n');
    process.exit(2);
  }
  const [vocab, input, output] = argv;
  const tk = load();
  const texts = readTexts(input);
  const fd = fs.openSync(output, 'w');
  if (vocab === '--words') {
    writeWords(tk, texts, fd);
  } else {
    await writeIds(tk, vocab, texts, fd);
  }
  fs.closeSync(fd);
}

function readTexts(input) {
  const buf = fs.readFileSync(input);
  const texts = [];
  for (let pos = 0; pos < buf.length;) {
    const n = buf.readUInt32LE(pos);
    texts.push(buf.toString('utf8', pos + 4, pos + 4 + n));
    pos += 4 + n;
  }
  return texts;
}

const kSpecials = ['[UNK]', '[SEP]', '[CLS]', '[PAD]', '[MASK]'];

function writeWords(tk, texts, fd) {
  const normalizer = tk.bertNormalizer({cleanText: true, handleChineseChars: true, lowercase: true});
  const preTokenizer = tk.bertPreTokenizer();
  const special = new RegExp(kSpecials.map((t) => t.replace(/[[\]]/g, '\\$&')).join('|'), 'g');
  const words = (text) => {
    const out = [];
    const segment = (s) => {
      if (s) for (const [w] of preTokenizer.preTokenizeString(normalizer.normalizeString(s))) out.push(w);
    };
    let last = 0;
    for (const m of text.matchAll(special)) {
      segment(text.slice(last, m.index));
      out.push(m[0]);
      last = m.index + m[0].length;
    }
    segment(text.slice(last));
    return out.join(' ');
  };
  const kBatch = 4096;
  for (let i = 0; i < texts.length; i += kBatch) {
    const parts = [];
    for (const text of texts.slice(i, i + kBatch)) {
      const bytes = Buffer.from(words(text), 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(bytes.length);
      parts.push(len, bytes);
    }
    fs.writeSync(fd, Buffer.concat(parts));
  }
}

async function bertTokenizer(tk, vocab) {
  const model = await tk.WordPiece.fromFile(vocab, {unkToken: '[UNK]'});
  const tokenizer = new tk.Tokenizer(model);
  tokenizer.setNormalizer(tk.bertNormalizer({cleanText: true, handleChineseChars: true, lowercase: true}));
  tokenizer.setPreTokenizer(tk.bertPreTokenizer());
  const cls = tokenizer.tokenToId('[CLS]');
  const sep = tokenizer.tokenToId('[SEP]');
  tokenizer.setPostProcessor(tk.bertProcessing(['[SEP]', sep], ['[CLS]', cls]));
  // BertWordPieceTokenizer registers the special tokens the vocab has (matched on the raw text).
  tokenizer.addSpecialTokens(kSpecials.filter((t) => tokenizer.tokenToId(t) !== null));
  return tokenizer;
}

// Best of `repeat` timed passes (after one warm-up) of encodeBatch over all texts, ids included:
// wall seconds, and the CPU seconds of the process (all threads) in that pass.
async function bench(tk, vocab, texts, repeat) {
  const tokenizer = await bertTokenizer(tk, vocab);
  let best = Infinity;
  let cpu = 0;
  let ids = 0;
  for (let r = 0; r <= repeat; ++r) {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    const encodings = await tokenizer.encodeBatch(texts);
    ids = 0;
    for (const e of encodings) ids += e.getIds().length;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);
    if (r > 0 && s < best) {
      best = s;
      cpu = (c.user + c.system) / 1e6;
    }
  }
  process.stdout.write(JSON.stringify({seconds: best, cpu_seconds: cpu, ids}) + '\n');
}

async function writeIds(tk, vocab, texts, fd) {
  const tokenizer = await bertTokenizer(tk, vocab);
  const kBatch = 1024;
  for (let i = 0; i < texts.length; i += kBatch) {
    const encodings = await tokenizer.encodeBatch(texts.slice(i, i + kBatch));
    const parts = encodings.map((e) => e.getIds());
    const total = parts.reduce((s, ids) => s + 1 + ids.length, 0);
    const out = new Uint32Array(total);
    let k = 0;
    for (const ids of parts) {
      out[k++] = ids.length;
      out.set(ids, k);
      k += ids.length;
    }
    fs.writeSync(fd, Buffer.from(out.buffer));
  }
}

main(process.argv.slice(2)).catch((e) => {
  process.stderr.write(`hf_tokenize: ${e.stack || e}\n`);
  process.exit(1);
});
