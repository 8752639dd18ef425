#!/usr/bin/env python3
"""Differential test of medr1-tokenize against Hugging Face's Rust tokenizers (PyPI `tokenizers`, pinned
0.22.2 in scripts/requirements.txt) on generated, varied text: OmniMedVQA prompts, source code (repo and
/usr/include), CJK / Hangul / emoji, whitespace runs of every Unicode space, digits of many scripts,
contractions in mixed case, special tokens inside text, NFC-sensitive sequences and random code
points. Encodes with both, compares ids; decodes the Rust ids and random id sequences with both.

  .venv/bin/python scripts/tokenizer_diff.py [--bin build/medr1-tokenize] [--quick | --mb 6 | --exhaustive] [--seed 1]

--quick: ~200 KB, Qwen2-VL file only (the ctest-registered GoogleTest runs this). Exit 0 when all agree, 1 on any
mismatch, 2 on a setup problem. Prints one summary line per tokenizer and a final verdict.
Text is Python str (code points): no lone surrogates ever (not valid UTF-8); JSONL is written as UTF-8.
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail_setup(msg):
    print(f"tokenizer_diff: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    a = {"bin": os.path.join(ROOT, "build", "medr1-tokenize"), "mb": 6.0, "seed": 1, "quick": False, "keep": False,
         "exhaustive": False}
    it = iter(argv)
    for k in it:
        try:
            if k in ("--quick", "--keep", "--exhaustive"):
                a[k[2:]] = True
            elif k == "--bin":
                a["bin"] = next(it)
            elif k == "--mb":
                a["mb"] = float(next(it))
            elif k == "--seed":
                a["seed"] = int(next(it))
            else:
                fail_setup(f"unknown argument {k}")
        except (StopIteration, ValueError):
            fail_setup(f"{k} needs a (numeric) value")
    if a["quick"]:
        a["mb"] = 0.2
    return a


def list_files(d, exts, out, limit):
    try:
        entries = sorted(os.scandir(d), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        if len(out) >= limit:
            return
        if e.is_dir(follow_symlinks=False):
            if e.name == "node_modules" or e.name.startswith("build") or e.name.startswith("."):
                continue
            list_files(e.path, exts, out, limit)
        elif e.is_file(follow_symlinks=False) and e.name.endswith(exts):
            out.append(e.path)


def rand_code_point(rng, lo, hi):
    while True:
        c = rng.randint(lo, hi)
        if not 0xD800 <= c <= 0xDFFF:  # no surrogates: not valid in UTF-8 text
            return c


SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
            "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
            "</tool_response>", "<think>", "</think>", "<|im_", "|>", "<|", "<think", "think>", "<<think>>",
            "<|<|im_end|>|>", "<answer>", "</answer>"]
SPACES = [" ", " ", " ", "\t", "\n", "\n", "\r", "\r\n", "\v", "\f", "\u0085", "\u00a0", "\u1680", "\u2000",
          "\u2003", "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u180e", "\u200b", "\ufeff"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Re", "'rE", "'VE", "'M", "'LL",
                "'Ll", "'D", "\u2019s", "'\u017f", "'\u212a", "''s", "'x", "'"]
WORDS = ["the", "patient", "CT", "MRI", "lesion", "it", "they", "we", "I", "don", "can", "won", "Hello",
         "world", "pneumothorax", "x", "A", "B", "C", "D", "answer", "image", "naïve", "café", "Straße", "Ωμέγα", "ж"]
DIGIT_SETS = ["0123456789", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "०१२३४५६७८९", "²³¹", "ⅠⅡⅢⅫ", "½¼¾", "①②③"]
COMBINING = [(0x300, 0x36f), (0x591, 0x5c7), (0x64b, 0x65f), (0x1dc0, 0x1dff), (0x20d0, 0x20f0), (0x302a, 0x302f),
             (0x3099, 0x309a), (0x0e31, 0x0e3a), (0x093c, 0x094d)]
SCRIPTS = [(0x4e00, 0x9fff), (0x3400, 0x4dbf), (0x3040, 0x30ff), (0xac00, 0xd7a3), (0x1100, 0x11ff),
           (0x0400, 0x04ff), (0x0600, 0x06ff), (0x0900, 0x097f), (0x0e00, 0x0e7f), (0x0370, 0x03ff), (0x0590, 0x05ff),
           (0x1f300, 0x1faff), (0x2600, 0x27bf), (0x20000, 0x2a6df), (0xf900, 0xfaff), (0x2100, 0x214f),
           (0xff00, 0xffef)]
EMOJI = ["😀", "🎉", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🧠", "🫁", "❤️", "🏳️\u200d🌈", "🇩🇪", "1️⃣", "🩻", "🦴"]
NFC_SINGLES = ["\u212b", "\u2126", "\u212a", "\u0958", "\u1e9b\u0323", "\uf900", "\ufb2c", "\u0344", "\u0f73",
               "e\u0301", "A\u030a", "\u1100\u1161\u11a8", "\uac00\u11a8", "ſ\u0307"]
PUNCT = [".", ",", "!", "?", "---", "()", '"', "#", "//", "1"]
BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def gen_word(rng):
    if rng.random() < 0.5:
        return rng.choice(WORDS)
    lo, hi = rng.choice(SCRIPTS)
    return "".join(chr(rand_code_point(rng, lo, hi)) for _ in range(rng.randint(1, 8)))


def gen_line(rng, kind, ctx):
    """One generated line of a given kind."""
    s = ""
    n = rng.randint(1, 40)
    if kind == "prompt":
        q = rng.choice(ctx["prompts"])
        r = rng.random()
        if r < 0.3:
            return q
        if r < 0.6:
            return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    f"<|vision_start|>{'<|image_pad|>' * rng.randint(1, 6)}<|vision_end|>{q}<|im_end|>\n"
                    "<|im_start|>assistant\n")
        return f"<think>\n{q}\n</think>\n<answer> {rng.choice(['A', 'B', 'C', 'D'])} </answer>"
    if kind == "code":
        f = rng.choice(ctx["code"])
        length = rng.randint(20, 3000)
        start = rng.randint(0, max(0, len(f) - length))
        return f[start:start + length]
    if kind == "multi":
        for _ in range(n):
            s += gen_word(rng) + (rng.choice([" ", "", "，", "。", ", ", "\n"]) if rng.random() < 0.6 else "")
        return s
    if kind == "emoji":
        for _ in range(n):
            s += (rng.choice(EMOJI) if rng.random() < 0.5 else gen_word(rng)) + (" " if rng.random() < 0.5 else "")
        return s
    if kind == "space":
        for _ in range(n):
            k = rng.randint(0, 3)
            for _ in range(rng.randint(1, 30) if k == 3 else k):
                s += rng.choice(SPACES)
            s += rng.choice(WORDS) if rng.random() < 0.7 else rng.choice(PUNCT)
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 10)):
                s += rng.choice(SPACES)
        return s
    if kind == "digits":
        for _ in range(n):
            digits = rng.choice(DIGIT_SETS)
            s += "".join(rng.choice(digits) for _ in range(rng.randint(1, 12)))
            s += rng.choice([" ", ".", ",", "-", "mm ", "kVp", "%", ":", "/", "x", ""])
        return s
    if kind == "contractions":
        for _ in range(n):
            s += rng.choice(WORDS) + rng.choice(CONTRACTIONS) + rng.choice([" ", "", "\n", "'", "s", " '"])
        return s
    if kind == "special":
        for _ in range(n):
            s += rng.choice(SPECIALS) if rng.random() < 0.4 else gen_word(rng)
            s += rng.choice(["", " ", "  ", "\n", "x"])
        return s
    if kind == "nfc":
        for _ in range(n):
            r = rng.random()
            if r < 0.4:
                s += rng.choice(["a", "e", "o", "A", "n", "u", "ε", "α", "и", "ا", "क", "か", "ㄱ", " ", "1"])
                for _ in range(rng.randint(1, 4)):
                    lo, hi = rng.choice(COMBINING)
                    s += chr(rng.randint(lo, hi))
            elif r < 0.6:
                s += chr(rng.randint(0x1100, 0x1112)) + chr(rng.randint(0x1161, 0x1175))
                s += chr(rng.randint(0x11a8, 0x11c2)) if rng.random() < 0.5 else ""
            elif r < 0.8:
                s += rng.choice(NFC_SINGLES)
            else:
                s += gen_word(rng)
            if rng.random() < 0.3:
                s += " "
        return s
    if kind == "random":
        for _ in range(n * 2):
            r = rng.random()
            if r < 0.35:
                s += chr(rand_code_point(rng, 0, 0xffff))
            elif r < 0.5:
                s += chr(rand_code_point(rng, 0x10000, 0x10ffff))
            elif r < 0.65:
                s += chr(rng.randint(0, 0x7f))
            elif r < 0.8:
                s += chr(rng.randint(0x80, 0x7ff))
            else:
                s += rng.choice(SPACES + ["'s", "'LL", "0", "<|im_end|>"])
        return s
    if kind == "long":
        r = rng.random()
        length = rng.randint(100, 3000)
        if r < 0.25:
            return "a" * length
        if r < 0.4:
            return " " * length + "x"
        if r < 0.55:
            return "\n" * rng.randint(2, 200) + " " * rng.randint(1, 200)
        if r < 0.7:
            return "".join(rng.choice(BASE64) for _ in range(length))
        if r < 0.85:
            return "".join(chr(rng.randint(0x4e00, 0x9fff)) for _ in range((length + 2) // 3))
        return "=" * length
    raise ValueError(kind)


def build_corpus(rng, target_bytes):
    prompts = []
    split_files = []
    list_files(os.path.join(ROOT, "tests", "data", "omnimedvqa", "Splits"), (".json",), split_files, 1000)
    for f in split_files:
        with open(f, encoding="utf-8") as fh:
            for r in json.load(fh):
                prompts += [r[k] for k in ("problem", "solution") if r.get(k)]
    if not prompts:
        prompts.append("What imaging technique is employed for obtaining this image? A)CT, B)MRI")
    code_files = []
    for d in ("src", "include", "apps", "tests/unit", "scripts", "docs"):
        list_files(os.path.join(ROOT, d), (".cpp", ".h", ".py", ".sh", ".md"), code_files, 400)
    list_files("/usr/include/c++", (".h", "algorithm", "vector", "string", "map"), code_files, 700)
    list_files("/usr/include/nlohmann", (".hpp",), code_files, 800)
    code = []
    for f in code_files:
        try:
            with open(f, encoding="utf-8", newline="") as fh:  # newline="": keep '\r\n' as is
                t = fh.read()
        except (OSError, UnicodeDecodeError):
            continue  # unreadable or not UTF-8: skip
        if t and "\ufffd" not in t:
            code.append(t)
    ctx = {"prompts": prompts, "code": code}
    kinds = [("prompt", 3), ("code", 6), ("multi", 3), ("emoji", 1), ("space", 2), ("digits", 1),
             ("contractions", 1), ("special", 2), ("nfc", 1), ("random", 2), ("long", 1)]
    lines, nbytes = [], 0
    while nbytes < target_bytes:
        kind = rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])[0]
        line = gen_line(rng, kind, ctx)
        lines.append(line)
        nbytes += len(line.encode("utf-8"))
    # Fixed edge cases, always included.
    lines += ["", " ", "\n", "'s", "<|im_end|>", "<|im_end|><|im_end|>", "a\u0085b", "\u0085", " \u0085 x", "\u00a0x",
              "x\u3000y", "\r", "\r\n\r\n", "É", "e\u0301", "I'M", "ſ", "'ſ", "\u0000", "a\u0000b"]
    return lines, nbytes


def all_code_points():
    lines, nbytes = [], 0
    for base in range(0, 0x110000, 128):
        s = "".join(f"x{ch}x {ch}1{ch}'{ch}\n" for ch in map(chr, range(base, base + 128))
                    if not 0xD800 <= ord(ch) <= 0xDFFF)
        if s:
            lines.append(s)
            nbytes += len(s.encode("utf-8"))
    return lines, nbytes


def write_jsonl(path, key, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.writelines(json.dumps({key: r}, ensure_ascii=False) + "\n" for r in rows)


def run_ours(binary, tok_dir, in_file, out_file, extra):
    try:
        r = subprocess.run([binary, "--tokenizer", tok_dir, "--input", in_file, "--output", out_file, *extra],
                           capture_output=True, text=True, errors="replace")
    except OSError as e:
        fail_setup(f"{binary} failed: {e}")
    if r.returncode != 0:
        fail_setup(f"{binary} failed (exit {r.returncode}): {r.stderr}")
    with open(out_file, encoding="utf-8", newline="") as f:
        return [json.loads(l) for l in f.read().split("\n") if l]


def first_diff(a, b):
    i = 0
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    return i


def short(x, n):
    return json.dumps(x, ensure_ascii=False)[:n]


def main():
    args = parse_args(sys.argv[1:])
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        fail_setup(f"PyPI package tokenizers missing in {sys.executable} (run bash scripts/setup.sh): {e}")
    if not os.path.exists(args["bin"]):
        fail_setup(f"{args['bin']} not found (build medr1-tokenize or pass --bin)")
    rng = random.Random(args["seed"])  # deterministic for a given seed (Mersenne Twister)
    # --exhaustive: every code point (no surrogates) in letter, digit and space contexts instead.
    lines, nbytes = all_code_points() if args["exhaustive"] else build_corpus(rng, args["mb"] * 1e6)
    tmp = tempfile.mkdtemp(prefix="medr1-tokdiff-")
    in_file = os.path.join(tmp, "in.jsonl")
    write_jsonl(in_file, "text", lines)

    failures = 0
    # --quick checks the Qwen2-VL file (the one the models use); a full run checks both.
    for name in ["qwen2vl"] if args["quick"] else ["qwen3", "qwen2vl"]:
        tok_dir = os.path.join(ROOT, "tests", "data", "tokenizer", name)
        tok_file = os.path.join(tok_dir, "tokenizer.json")
        if not os.path.exists(tok_file):
            fail_setup(f"{tok_file} missing (run bash scripts/tokenizer_fixtures.sh)")
        hf = Tokenizer.from_file(tok_file)
        t0 = time.monotonic()
        ours = run_ours(args["bin"], tok_dir, in_file, os.path.join(tmp, f"ids_{name}.jsonl"), [])
        t_ours = time.monotonic() - t0
        if len(ours) != len(lines):
            fail_setup(f"{name}: {len(ours)} output lines for {len(lines)} inputs")
        hf_ids = []
        for i in range(0, len(lines), 2000):
            hf_ids += [e.ids for e in hf.encode_batch(lines[i:i + 2000], add_special_tokens=False)]
        enc_mismatch = 0
        for i, (line, a, b) in enumerate(zip(lines, (o["ids"] for o in ours), hf_ids)):
            if a != b:
                if enc_mismatch < 5:
                    k = first_diff(a, b)
                    print(f"MISMATCH {name} line {i + 1}: {short(line, 300)}\n"
                          f"  at id #{k}: ours {a[k:k + 8]} hf {b[k:k + 8]}")
                enc_mismatch += 1

        # Decode: the Rust ids of every line (special kept and skipped), then random id sequences that
        # split UTF-8 sequences, mix special ids and ids past the vocabulary.
        vocab = 151669 if name == "qwen3" else 151657
        dec_ids = list(hf_ids)
        drng = random.Random(args["seed"] + 17)
        for _ in range(500 if args["quick"] else 5000):
            seq = []
            for _ in range(drng.randint(1, 24)):
                r = drng.random()
                if r < 0.5:
                    seq.append(drng.randint(0, 151642))
                elif r < 0.75:
                    seq.append(drng.randint(0, 255))  # single-byte tokens: split UTF-8
                elif r < 0.9:
                    seq.append(drng.randint(151643, vocab - 1))  # added tokens
                else:
                    seq.append(drng.randint(vocab, 151935))  # no token: dropped
            dec_ids.append(seq)
        dec_in = os.path.join(tmp, f"dec_{name}.jsonl")
        write_jsonl(dec_in, "ids", dec_ids)
        dec_mismatch = decode_count = 0
        for skip in (False, True):
            ours_dec = run_ours(args["bin"], tok_dir, dec_in, os.path.join(tmp, f"dec_out_{name}_{skip}.jsonl"),
                                ["--decode", "--skip-special-tokens"] if skip else ["--decode"])
            if len(ours_dec) != len(dec_ids):
                fail_setup(f"{name}: {len(ours_dec)} decode output lines for {len(dec_ids)} inputs")
            hf_dec = hf.decode_batch(dec_ids, skip_special_tokens=skip)
            for ids, o, h in zip(dec_ids, ours_dec, hf_dec):
                decode_count += 1
                if o["text"] != h:
                    if dec_mismatch < 5:
                        print(f"DECODE MISMATCH {name} skip={str(skip).lower()} ids {short(ids, 200)}\n"
                              f"  ours {short(o['text'], 200)}\n  hf   {short(h, 200)}")
                    dec_mismatch += 1
        failures += enc_mismatch + dec_mismatch
        print(f"tokenizer_diff {name}: {len(lines)} lines, {nbytes / 1e6:.2f} MB encoded, "
              f"encode mismatches {enc_mismatch}; {decode_count} decodes, decode mismatches {dec_mismatch} "
              f"(medr1-tokenize {t_ours:.1f} s incl. load)", flush=True)
    if not args["keep"]:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"tokenizer_diff: kept {tmp}")
    print("tokenizer_diff: PASS (0 mismatches)" if failures == 0 else f"tokenizer_diff: FAIL ({failures} mismatches)")
    sys.exit(0 if failures == 0 else 1)


if __name__ == "__main__":
    try:
        main()
    except Exception:  # SystemExit passes through
        traceback.print_exc()
        sys.exit(2)
