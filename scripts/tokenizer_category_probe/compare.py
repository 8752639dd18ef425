#!/usr/bin/env python3
"""Letters / numbers that HF's pre-tokenizer regex (Oniguruma) sees and PCRE2 does not.

src/tokenizer/pre_tokenizer.cpp keeps the result as kExtraLetters / kExtraNumbers. Steps:
  gcc -O2 pcre2_classes.c -o /tmp/pc -lpcre2-32 && /tmp/pc > /tmp/pcre2.txt   # \\p{L}, \\p{N} per PCRE2
  ../../.venv/bin/python hf_classes.py > /tmp/hf.txt   # per HF: "x?x" one piece = letter; "??", "!?", " ?" two pieces = number
  python3 compare.py /tmp/pcre2.txt /tmp/hf.txt
"""
import sys


def load(path):
    out = {}
    for line in open(path):
        parts = line.split()
        out[parts[0]] = {int(x, 16) for x in parts[1:]}
    return out


def ranges(cps):
    out = []
    for c in sorted(cps):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


pcre2, hf = load(sys.argv[1]), load(sys.argv[2])
for k in "LN":
    print(k, "HF only:", "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges(hf[k] - pcre2[k])))
    print(k, "PCRE2 only (must be empty):", len(pcre2[k] - hf[k]))
