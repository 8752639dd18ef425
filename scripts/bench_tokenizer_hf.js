#!/usr/bin/env node
// Throughput of Hugging Face's Rust tokenizers (npm @anush008/tokenizers 0.6.0 = tokenizers 0.22.2)
// on the same text and the same chunking as medr1-bench-tokenizer (which runs this script itself):
// the text is cut after the first '\n' at or past every 4096 bytes, each chunk encoded without
// special tokens, one thread. Prints "hf_first_pass_mbps X", "hf_mbps X" (best warm pass) and
// "hf_batch_mbps X" (encodeBatch with TOKENIZERS_PARALLELISM=false: no per-call overhead).
//   node scripts/bench_tokenizer_hf.js --text FILE --tokenizer DIR [--passes 3]
'use strict';
process.env.TOKENIZERS_PARALLELISM = 'false';
process.env.RAYON_NUM_THREADS = '1';
process.env.RAYON_RS_NUM_CPUS = '1';
const fs = require('fs');
const path = require('path');

function args() {
  const a = { passes: 3 };
  for (let i = 2; i < process.argv.length; ++i) {
    const k = process.argv[i];
    if (k === '--text') a.text = process.argv[++i];
    else if (k === '--tokenizer') a.tokenizer = process.argv[++i];
    else if (k === '--passes') a.passes = parseInt(process.argv[++i], 10);
    else { console.error(`bench_tokenizer_hf: unknown argument ${k}`); process.exit(2); }
  }
  if (!a.text || !a.tokenizer) { console.error('usage: bench_tokenizer_hf.js --text FILE --tokenizer DIR'); process.exit(2); }
  return a;
}

// Same rule as tests/bench/bench_tokenizer.cpp: cut after the first '\n' at or past 4096 bytes.
function chunks(buf) {
  const out = [];
  let start = 0;
  while (start < buf.length) {
    let end = Math.min(buf.length, start + 4096);
    if (end < buf.length) {
      const nl = buf.indexOf(10, end - 1);
      end = nl < 0 ? buf.length : nl + 1;
    }
    out.push(buf.toString('utf8', start, end));
    start = end;
  }
  return out;
}

async function main() {
  const a = args();
  const tk = require(path.join(__dirname, '..', 'node_modules', '@anush008', 'tokenizers'));
  const buf = fs.readFileSync(a.text);
  const mb = buf.length / 1e6;
  const docs = chunks(buf);
  const tok = tk.Tokenizer.fromFile(path.join(a.tokenizer, 'tokenizer.json'));
  const opts = { addSpecialTokens: false };
  let best = 0;
  let nIds = 0;
  for (let p = 0; p < a.passes; ++p) {
    const t0 = process.hrtime.bigint();
    nIds = 0;
    for (const d of docs) nIds += (await tok.encode(d, null, opts)).getLength();
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (p === 0) console.log(`hf_first_pass_mbps ${(mb / s).toFixed(2)}`);
    best = Math.max(best, mb / s);
  }
  console.log(`hf_mbps ${best.toFixed(2)}`);
  console.log(`hf_ids ${nIds}`);
  let bestBatch = 0;
  for (let p = 0; p < 2; ++p) {
    const t0 = process.hrtime.bigint();
    await tok.encodeBatch(docs, opts);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    bestBatch = Math.max(bestBatch, mb / s);
  }
  console.log(`hf_batch_mbps ${bestBatch.toFixed(2)}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
