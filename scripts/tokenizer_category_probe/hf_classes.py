#!/usr/bin/env python3
"""Letter / number classification per HF's pre-tokenizer (PyPI `tokenizers`), same format as
pcre2_classes.c. See compare.py."""
import os

from tokenizers import Tokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
pt = Tokenizer.from_file(os.path.join(ROOT, "tests", "data", "tokenizer", "qwen3", "tokenizer.json")).pre_tokenizer


def pieces(s):
    return len(pt.pre_tokenize_str(s))


L, N = [], []
for c in range(0x110000):
    if 0xD800 <= c <= 0xDFFF:
        continue
    ch = chr(c)
    if pieces("x" + ch + "x") == 1:
        L.append(f"{c:x}")
    elif pieces(ch + ch) == 2 and pieces("!" + ch) == 2 and pieces(" " + ch) == 2:
        N.append(f"{c:x}")
print("L " + " ".join(L))
print("N " + " ".join(N))
