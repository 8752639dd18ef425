#!/usr/bin/env node
// Differential test of medr1-tokenize against Hugging Face's Rust tokenizers (npm @anush008/tokenizers
// 0.6.0 = tokenizers 0.22.2) on generated, varied text: OmniMedVQA prompts, source code (repo and
// /usr/include), CJK / Hangul / emoji, whitespace runs of every Unicode space, digits of many scripts,
// contractions in mixed case, special tokens inside text, NFC-sensitive sequences and random code
// points. Encodes with both, compares ids; decodes the Rust ids and random id sequences with both.
//
//   node scripts/tokenizer_diff.js [--bin build/medr1-tokenize] [--quick | --mb 6 | --exhaustive] [--seed 1]
//
// --quick: ~200 KB, Qwen2-VL file only (the ctest-registered GoogleTest runs this). Exit 0 when all agree, 1 on any
// mismatch, 2 on a setup problem. Prints one summary line per tokenizer and a final verdict.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const ROOT = path.resolve(__dirname, '..');

function parseArgs(argv) {
  const a = { bin: path.join(ROOT, 'build', 'medr1-tokenize'), mb: 6, seed: 1, quick: false, keep: false };
  for (let i = 2; i < argv.length; ++i) {
    const k = argv[i];
    if (k === '--quick') a.quick = true;
    else if (k === '--keep') a.keep = true;
    else if (k === '--exhaustive') a.exhaustive = true;
    else if (k === '--bin') a.bin = argv[++i];
    else if (k === '--mb') a.mb = parseFloat(argv[++i]);
    else if (k === '--seed') a.seed = parseInt(argv[++i], 10);
    else { console.error(`tokenizer_diff: unknown argument ${k}`); process.exit(2); }
  }
  if (a.quick) a.mb = 0.2;
  return a;
}

// mulberry32: small deterministic PRNG.
function makeRng(seed) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6D2B79F5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1));  // inclusive
  const pick = (arr) => arr[Math.floor(next() * arr.length)];
  return { next, int, pick };
}

function listFiles(dir, exts, out, limit) {
  let entries;
  try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }
  entries.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  for (const e of entries) {
    if (out.length >= limit) return;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name === 'node_modules' || e.name.startsWith('build') || e.name.startsWith('.')) continue;
      listFiles(p, exts, out, limit);
    } else if (e.isFile() && exts.some((x) => e.name.endsWith(x))) {
      out.push(p);
    }
  }
}

const cp = (c) => String.fromCodePoint(c);
function randCodePoint(rng, lo, hi) {
  for (;;) {
    const c = rng.int(lo, hi);
    if (c < 0xD800 || c > 0xDFFF) return c;  // no surrogates: not valid in UTF-8 text
  }
}

const SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|object_ref_start|>', '<|object_ref_end|>',
  '<|box_start|>', '<|box_end|>', '<|quad_start|>', '<|quad_end|>', '<|vision_start|>', '<|vision_end|>',
  '<|vision_pad|>', '<|image_pad|>', '<|video_pad|>', '<tool_call>', '</tool_call>', '<|fim_prefix|>',
  '<|fim_middle|>', '<|fim_suffix|>', '<|fim_pad|>', '<|repo_name|>', '<|file_sep|>', '<tool_response>',
  '</tool_response>', '<think>', '</think>', '<|im_', '|>', '<|', '<think', 'think>', '<<think>>', '<|<|im_end|>|>',
  '<answer>', '</answer>'];
const SPACES = [' ', ' ', ' ', '\t', '\n', '\n', '\r', '\r\n', '\v', '\f', '\u0085', '\u00a0', '\u1680', '\u2000',
  '\u2003', '\u2009', '\u200a', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\u180e', '\u200b', '\ufeff'];
const CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Re", "'rE", "'VE", "'M", "'LL",
  "'Ll", "'D", "\u2019s", "'\u017f", "'\u212a", "''s", "'x", "'"];
const WORDS = ['the', 'patient', 'CT', 'MRI', 'lesion', 'it', 'they', 'we', 'I', 'don', 'can', 'won', 'Hello',
  'world', 'pneumothorax', 'x', 'A', 'B', 'C', 'D', 'answer', 'image', 'naïve', 'café', 'Straße', 'Ωμέγα', 'ж'];
const DIGIT_SETS = ['0123456789', '٠١٢٣٤٥٦٧٨٩', '０１２３４５６７８９', '०१२३४५६७८९', '²³¹', 'ⅠⅡⅢⅫ', '½¼¾', '①②③'];
const COMBINING = [[0x300, 0x36f], [0x591, 0x5c7], [0x64b, 0x65f], [0x1dc0, 0x1dff], [0x20d0, 0x20f0], [0x302a, 0x302f],
  [0x3099, 0x309a], [0x0e31, 0x0e3a], [0x093c, 0x094d]];
const SCRIPTS = [[0x4e00, 0x9fff], [0x3400, 0x4dbf], [0x3040, 0x30ff], [0xac00, 0xd7a3], [0x1100, 0x11ff],
  [0x0400, 0x04ff], [0x0600, 0x06ff], [0x0900, 0x097f], [0x0e00, 0x0e7f], [0x0370, 0x03ff], [0x0590, 0x05ff],
  [0x1f300, 0x1faff], [0x2600, 0x27bf], [0x20000, 0x2a6df], [0xf900, 0xfaff], [0x2100, 0x214f], [0xff00, 0xffef]];
const EMOJI = ['😀', '🎉', '👍🏽', '👨\u200d👩\u200d👧\u200d👦', '🧠', '🫁', '❤️', '🏳️\u200d🌈', '🇩🇪', '1️⃣', '🩻', '🦴'];

function genWord(rng) {
  const r = rng.next();
  if (r < 0.5) return rng.pick(WORDS);
  let s = '';
  const [lo, hi] = rng.pick(SCRIPTS);
  const n = rng.int(1, 8);
  for (let i = 0; i < n; ++i) s += cp(randCodePoint(rng, lo, hi));
  return s;
}

// One generated line of a given kind.
function genLine(rng, kind, ctx) {
  let s = '';
  const n = rng.int(1, 40);
  switch (kind) {
    case 'prompt': {
      const q = rng.pick(ctx.prompts);
      const r = rng.next();
      if (r < 0.3) return q;
      if (r < 0.6) {
        return `<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n` +
          `<|vision_start|>${'<|image_pad|>'.repeat(rng.int(1, 6))}<|vision_end|>${q}<|im_end|>\n<|im_start|>assistant\n`;
      }
      return `<think>\n${q}\n</think>\n<answer> ${rng.pick(['A', 'B', 'C', 'D'])} </answer>`;
    }
    case 'code': {
      const f = rng.pick(ctx.code);
      const len = rng.int(20, 3000);
      const start = rng.int(0, Math.max(0, f.length - len));
      return f.slice(start, start + len);
    }
    case 'multi':
      for (let i = 0; i < n; ++i) s += genWord(rng) + (rng.next() < 0.6 ? rng.pick([' ', '', '，', '。', ', ', '\n']) : '');
      return s;
    case 'emoji':
      for (let i = 0; i < n; ++i) s += (rng.next() < 0.5 ? rng.pick(EMOJI) : genWord(rng)) + (rng.next() < 0.5 ? ' ' : '');
      return s;
    case 'space':
      for (let i = 0; i < n; ++i) {
        const k = rng.int(0, 3);
        for (let j = 0; j < (k === 3 ? rng.int(1, 30) : k); ++j) s += rng.pick(SPACES);
        s += rng.next() < 0.7 ? rng.pick(WORDS) : rng.pick(['.', ',', '!', '?', '---', '()', '"', '#', '//', '1']);
      }
      if (rng.next() < 0.5) for (let j = rng.int(1, 10); j > 0; --j) s += rng.pick(SPACES);
      return s;
    case 'digits':
      for (let i = 0; i < n; ++i) {
        const set = [...rng.pick(DIGIT_SETS)];
        let num = '';
        for (let j = rng.int(1, 12); j > 0; --j) num += rng.pick(set);
        s += num + rng.pick([' ', '.', ',', '-', 'mm ', 'kVp', '%', ':', '/', 'x', '']);
      }
      return s;
    case 'contractions':
      for (let i = 0; i < n; ++i) {
        s += rng.pick(WORDS) + rng.pick(CONTRACTIONS) + rng.pick([' ', '', '\n', "'", 's', ' \'']);
      }
      return s;
    case 'special':
      for (let i = 0; i < n; ++i) {
        s += rng.next() < 0.4 ? rng.pick(SPECIALS) : genWord(rng);
        s += rng.pick(['', ' ', '  ', '\n', 'x']);
      }
      return s;
    case 'nfc':
      for (let i = 0; i < n; ++i) {
        const r = rng.next();
        if (r < 0.4) {
          s += rng.pick(['a', 'e', 'o', 'A', 'n', 'u', 'ε', 'α', 'и', 'ا', 'क', 'か', 'ㄱ', ' ', '1']);
          for (let j = rng.int(1, 4); j > 0; --j) { const [lo, hi] = rng.pick(COMBINING); s += cp(rng.int(lo, hi)); }
        } else if (r < 0.6) {
          s += cp(rng.int(0x1100, 0x1112)) + cp(rng.int(0x1161, 0x1175)) + (rng.next() < 0.5 ? cp(rng.int(0x11a8, 0x11c2)) : '');
        } else if (r < 0.8) {
          s += rng.pick(['\u212b', '\u2126', '\u212a', '\u0958', '\u1e9b\u0323', '\uf900', '\ufb2c', '\u0344', '\u0f73',
            'e\u0301', 'A\u030a', '\u1100\u1161\u11a8', '\uac00\u11a8', 'ſ\u0307']);
        } else {
          s += genWord(rng);
        }
        if (rng.next() < 0.3) s += ' ';
      }
      return s;
    case 'random':
      for (let i = 0; i < n * 2; ++i) {
        const r = rng.next();
        if (r < 0.35) s += cp(randCodePoint(rng, 0, 0xffff));
        else if (r < 0.5) s += cp(randCodePoint(rng, 0x10000, 0x10ffff));
        else if (r < 0.65) s += cp(rng.int(0, 0x7f));
        else if (r < 0.8) s += cp(rng.int(0x80, 0x7ff));
        else s += rng.pick(SPACES.concat(["'s", "'LL", '0', '<|im_end|>']));
      }
      return s;
    case 'long': {
      const r = rng.next();
      const len = rng.int(100, 3000);
      if (r < 0.25) return 'a'.repeat(len);
      if (r < 0.4) return ' '.repeat(len) + 'x';
      if (r < 0.55) return '\n'.repeat(rng.int(2, 200)) + ' '.repeat(rng.int(1, 200));
      if (r < 0.7) { for (let i = 0; i < len; ++i) s += rng.pick('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'); return s; }
      if (r < 0.85) { for (let i = 0; i < len / 3; ++i) s += cp(rng.int(0x4e00, 0x9fff)); return s; }
      return '='.repeat(len);
    }
    default:
      throw new Error(kind);
  }
}

function buildCorpus(rng, targetBytes) {
  const prompts = [];
  const splitFiles = [];
  listFiles(path.join(ROOT, 'tests', 'data', 'omnimedvqa', 'Splits'), ['.json'], splitFiles, 1000);
  for (const f of splitFiles) {
    for (const r of JSON.parse(fs.readFileSync(f, 'utf8'))) {
      if (r.problem) prompts.push(r.problem);
      if (r.solution) prompts.push(r.solution);
    }
  }
  if (prompts.length === 0) prompts.push('What imaging technique is employed for obtaining this image? A)CT, B)MRI');
  const codeFiles = [];
  for (const d of ['src', 'include', 'apps', 'tests/unit', 'scripts', 'docs']) {
    listFiles(path.join(ROOT, d), ['.cpp', '.h', '.js', '.py', '.sh', '.md'], codeFiles, 400);
  }
  listFiles('/usr/include/c++', ['.h', 'algorithm', 'vector', 'string', 'map'], codeFiles, 700);
  listFiles('/usr/include/nlohmann', ['.hpp'], codeFiles, 800);
  const code = [];
  for (const f of codeFiles) {
    try {
      const t = fs.readFileSync(f, 'utf8');
      if (t.length > 0 && !t.includes('\uFFFD')) code.push(t);
    } catch { /* unreadable: skip */ }
  }
  const ctx = { prompts, code };
  const kinds = [['prompt', 3], ['code', 6], ['multi', 3], ['emoji', 1], ['space', 2], ['digits', 1], ['contractions', 1],
    ['special', 2], ['nfc', 1], ['random', 2], ['long', 1]];
  const total = kinds.reduce((a, k) => a + k[1], 0);
  const lines = [];
  let bytes = 0;
  while (bytes < targetBytes) {
    let r = rng.next() * total;
    let kind = kinds[0][0];
    for (const [k, w] of kinds) { if (r < w) { kind = k; break; } r -= w; }
    const line = genLine(rng, kind, ctx);
    lines.push(line);
    bytes += Buffer.byteLength(line, 'utf8');
  }
  // Fixed edge cases, always included.
  lines.push('', ' ', '\n', "'s", '<|im_end|>', '<|im_end|><|im_end|>', 'a\u0085b', '\u0085', ' \u0085 x', '\u00a0x',
    'x\u3000y', '\r', '\r\n\r\n', 'É', 'e\u0301', "I'M", 'ſ', "'ſ", '\u0000', 'a\u0000b');
  return { lines, bytes };
}

function allCodePoints() {
  const lines = [];
  let bytes = 0;
  for (let base = 0; base < 0x110000; base += 128) {
    let s = '';
    for (let c = base; c < base + 128; ++c) {
      if (c >= 0xd800 && c <= 0xdfff) continue;
      const ch = String.fromCodePoint(c);
      s += `x${ch}x ${ch}1${ch}'${ch}\n`;
    }
    if (s.length === 0) continue;
    lines.push(s);
    bytes += Buffer.byteLength(s, 'utf8');
  }
  return { lines, bytes };
}

function runOurs(bin, dir, inFile, outFile, extra) {
  const r = spawnSync(bin, ['--tokenizer', dir, '--input', inFile, '--output', outFile, ...extra],
    { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.error || r.status !== 0) {
    console.error(`tokenizer_diff: ${bin} failed: ${r.error || r.stderr}`);
    process.exit(2);
  }
  return fs.readFileSync(outFile, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

function firstDiff(a, b) {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) ++i;
  return i;
}

async function main() {
  const args = parseArgs(process.argv);
  let tk;
  try {
    tk = require(path.join(ROOT, 'node_modules', '@anush008', 'tokenizers'));
  } catch (e) {
    console.error(`tokenizer_diff: @anush008/tokenizers missing (run scripts/fetch_tokenizers.sh): ${e.message}`);
    process.exit(2);
  }
  if (!fs.existsSync(args.bin)) {
    console.error(`tokenizer_diff: ${args.bin} not found (build medr1-tokenize or pass --bin)`);
    process.exit(2);
  }
  const rng = makeRng(args.seed);
  // --exhaustive: every code point (no surrogates) in letter, digit and space contexts instead.
  const { lines, bytes } = args.exhaustive ? allCodePoints() : buildCorpus(rng, args.mb * 1e6);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'medr1-tokdiff-'));
  const inFile = path.join(tmp, 'in.jsonl');
  fs.writeFileSync(inFile, lines.map((t) => JSON.stringify({ text: t })).join('\n') + '\n');

  let failures = 0;
  // --quick checks the Qwen2-VL file (the one the models use); a full run checks both.
  for (const name of args.quick ? ['qwen2vl'] : ['qwen3', 'qwen2vl']) {
    const dir = path.join(ROOT, 'tests', 'data', 'tokenizer', name);
    const tokFile = path.join(dir, 'tokenizer.json');
    if (!fs.existsSync(tokFile)) {
      console.error(`tokenizer_diff: ${tokFile} missing (run scripts/fetch_tokenizers.sh)`);
      process.exit(2);
    }
    const hf = tk.Tokenizer.fromFile(tokFile);
    const t0 = Date.now();
    const ours = runOurs(args.bin, dir, inFile, path.join(tmp, `ids_${name}.jsonl`), []);
    const tOurs = (Date.now() - t0) / 1000;
    if (ours.length !== lines.length) {
      console.error(`tokenizer_diff: ${name}: ${ours.length} output lines for ${lines.length} inputs`);
      process.exit(2);
    }
    const hfIds = [];
    const BATCH = 2000;
    for (let i = 0; i < lines.length; i += BATCH) {
      const encs = await hf.encodeBatch(lines.slice(i, i + BATCH), { addSpecialTokens: false });
      for (const e of encs) hfIds.push(e.getIds());
    }
    let encMismatch = 0;
    for (let i = 0; i < lines.length; ++i) {
      const a = ours[i].ids;
      const b = hfIds[i];
      if (a.length !== b.length || firstDiff(a, b) !== a.length) {
        if (encMismatch < 5) {
          const k = firstDiff(a, b);
          console.log(`MISMATCH ${name} line ${i + 1}: ${JSON.stringify(lines[i]).slice(0, 300)}\n` +
            `  at id #${k}: ours ${JSON.stringify(a.slice(k, k + 8))} hf ${JSON.stringify(b.slice(k, k + 8))}`);
        }
        ++encMismatch;
      }
    }

    // Decode: the Rust ids of every line (special kept and skipped), then random id sequences that
    // split UTF-8 sequences, mix special ids and ids past the vocabulary.
    const vocab = name === 'qwen3' ? 151669 : 151657;
    const decIds = hfIds.slice();
    const drng = makeRng(args.seed + 17);
    const nRandom = args.quick ? 500 : 5000;
    for (let i = 0; i < nRandom; ++i) {
      const seq = [];
      for (let j = drng.int(1, 24); j > 0; --j) {
        const r = drng.next();
        if (r < 0.5) seq.push(drng.int(0, 151642));
        else if (r < 0.75) seq.push(drng.int(0, 255));            // single-byte tokens: split UTF-8
        else if (r < 0.9) seq.push(drng.int(151643, vocab - 1));  // added tokens
        else seq.push(drng.int(vocab, 151935));                   // no token: dropped
      }
      decIds.push(seq);
    }
    const decIn = path.join(tmp, `dec_${name}.jsonl`);
    fs.writeFileSync(decIn, decIds.map((ids) => JSON.stringify({ ids })).join('\n') + '\n');
    let decMismatch = 0;
    let decodeCount = 0;
    for (const skip of [false, true]) {
      const oursDec = runOurs(args.bin, dir, decIn, path.join(tmp, `dec_out_${name}_${skip}.jsonl`),
        skip ? ['--decode', '--skip-special-tokens'] : ['--decode']);
      const hfDec = await hf.decodeBatch(decIds, skip);
      for (let i = 0; i < decIds.length; ++i) {
        ++decodeCount;
        if (oursDec[i].text !== hfDec[i]) {
          if (decMismatch < 5) {
            console.log(`DECODE MISMATCH ${name} skip=${skip} ids ${JSON.stringify(decIds[i]).slice(0, 200)}\n` +
              `  ours ${JSON.stringify(oursDec[i].text).slice(0, 200)}\n  hf   ${JSON.stringify(hfDec[i]).slice(0, 200)}`);
          }
          ++decMismatch;
        }
      }
    }
    failures += encMismatch + decMismatch;
    console.log(`tokenizer_diff ${name}: ${lines.length} lines, ${(bytes / 1e6).toFixed(2)} MB encoded, ` +
      `encode mismatches ${encMismatch}; ${decodeCount} decodes, decode mismatches ${decMismatch} ` +
      `(medr1-tokenize ${tOurs.toFixed(1)} s incl. load)`);
  }
  if (!args.keep) fs.rmSync(tmp, { recursive: true, force: true });
  else console.log(`tokenizer_diff: kept ${tmp}`);
  console.log(failures === 0 ? 'tokenizer_diff: PASS (0 mismatches)' : `tokenizer_diff: FAIL (${failures} mismatches)`);
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((e) => { console.error(e); process.exit(2); });
