// Hugging Face's own tokenizer for a tokenizer.json, as an oracle for ftune's JsonTokenizer
// (tests/data-prep/tokenizer_json_oracle_test.cc) and its benchmark (data-prep/bench_tokenizer.cc).
//
//   node hf_tokenizer_json.js --version
//   node hf_tokenizer_json.js TOKENIZER_JSON IN OUT [MAX_LENGTH]
//       ids and token_type_ids of Tokenizer.fromFile(TOKENIZER_JSON).encodeBatch over IN, with
//       special tokens; MAX_LENGTH > 0 truncates with longest_first (transformers'
//       truncation=True), else the file's own truncation is switched off, as transformers does.
//   node hf_tokenizer_json.js --bench TOKENIZER_JSON IN REPEAT
//       the best of REPEAT timed encodeBatch passes (threads: RAYON_NUM_THREADS), as JSON.
//
// IN holds records: uint32 byte length + UTF-8 of text A, then uint32 byte length + UTF-8 of the
// pair's text B, or 0xFFFFFFFF for no pair (all little-endian). OUT receives per record a uint32
// count n, n uint32 ids and n uint32 type ids.
'use strict';
const fs = require('fs');
const path = require('path');

function load() {
  try {
    return require(path.join(__dirname, 'node_modules', 'tokenizers'));
  } catch (e) {
    process.stderr.write(`hf_tokenizer_json: cannot load the npm package tokenizers (run launch/install-deps.sh): ${e.message}\n`);
    process.exit(3);
  }
}

function readRecords(file) {
  const buf = fs.readFileSync(file);
  const out = [];
  for (let pos = 0; pos < buf.length;) {
    const n = buf.readUInt32LE(pos);
    const a = buf.toString('utf8', pos + 4, pos + 4 + n);
    pos += 4 + n;
    const m = buf.readUInt32LE(pos);
    pos += 4;
    if (m === 0xFFFFFFFF) {
      out.push(a);
    } else {
      out.push([a, buf.toString('utf8', pos, pos + m)]);
      pos += m;
    }
  }
  return out;
}

function open(tk, file, maxLength) {
  const tokenizer = tk.Tokenizer.fromFile(file);
  tokenizer.disablePadding();
  if (maxLength > 0) {
    tokenizer.setTruncation(maxLength, {strategy: 'LongestFirst'});
  } else {
    tokenizer.disableTruncation();
  }
  return tokenizer;
}

async function main(argv) {
  if (argv[0] === '--version') {
    load();
    const pkg = require(path.join(__dirname, 'node_modules', 'tokenizers', 'package.json'));
    process.stdout.write(`tokenizers ${pkg.version}, node ${process.version}\n`);
    return;
  }
  if (argv[0] === '--bench' && argv.length === 4) {
    const tokenizer = open(load(), argv[1], 0);
    const inputs = readRecords(argv[2]);
    let best = Infinity, cpu = 0, ids = 0;
    for (let r = 0; r <= Number(argv[3]); ++r) {
      const t0 = process.hrtime.bigint();
      const c0 = process.cpuUsage();
      const encodings = await tokenizer.encodeBatch(inputs);
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
    return;
  }
  if (argv.length !== 3 && argv.length !== 4) {
    process.stderr.write('usage: node hf_tokenizer_json.js TOKENIZER_JSON IN OUT [MAX_LENGTH] | --bench TOKENIZER_JSON IN REPEAT | --version\n');
    process.exit(2);
  }
  const tokenizer = open(load(), argv[0], argv.length === 4 ? Number(argv[3]) : 0);
  const inputs = readRecords(argv[1]);
  const fd = fs.openSync(argv[2], 'w');
  const kBatch = 1024;
  for (let i = 0; i < inputs.length; i += kBatch) {
    const batch = inputs.slice(i, i + kBatch);
    // encodeBatch takes single texts; a pair goes through encode(a, b) (the same Rust path).
    const encodings = batch.some(Array.isArray)
      ? await Promise.all(batch.map((x) => (Array.isArray(x) ? tokenizer.encode(x[0], x[1]) : tokenizer.encode(x))))
      : await tokenizer.encodeBatch(batch);
    let total = 0;
    const parts = encodings.map((e) => {
      const ids = e.getIds(), types = e.getTypeIds();
      total += 1 + 2 * ids.length;
      return [ids, types];
    });
    const out = new Uint32Array(total);
    let k = 0;
    for (const [ids, types] of parts) {
      out[k++] = ids.length;
      out.set(ids, k);
      k += ids.length;
      out.set(types, k);
      k += types.length;
    }
    fs.writeSync(fd, Buffer.from(out.buffer));
  }
  fs.closeSync(fd);
}

main(process.argv.slice(2)).catch((e) => {
  process.stderr.write(`hf_tokenizer_json: ${e.stack || e}\n`);
  process.exit(1);
});
