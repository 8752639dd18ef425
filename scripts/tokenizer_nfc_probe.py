#!/usr/bin/env python3
"""Lists the code points whose NFC in Hugging Face's Rust tokenizers differs from utf8proc's.

HF's NFC normalizer (crate unicode-normalization-alignments) has Unicode tables older than the
Unicode 15 of utf8proc 2.8: it gives combining class 0 to combining marks added since, and does not
know the newer canonical composition U+11935 U+11930 -> U+11938. src/tokenizer/tokenizer.cpp keeps
the result as kNfcUnknownToHf and treats those code points as HF does (as unassigned starters).

Probes every utf8proc code point with a non-zero combining class or a canonical decomposition:
the character alone, its NFD, and between marks of class 240 and 1; compares utf8proc's NFC with
the Rust normalizer (PyPI `tokenizers`, pinned in scripts/requirements.txt). Needs the fixtures of
scripts/tokenizer_fixtures.sh.
Usage: .venv/bin/python scripts/tokenizer_nfc_probe.py
"""
import ctypes
import os

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
utf8proc = ctypes.CDLL("libutf8proc.so.2")
libc = ctypes.CDLL("libc.so.6")
libc.free.argtypes = [ctypes.c_void_p]


class Property(ctypes.Structure):  # leading fields of utf8proc_property_t
    _fields_ = [("category", ctypes.c_int16), ("combining_class", ctypes.c_int16)]


utf8proc.utf8proc_get_property.restype = ctypes.POINTER(Property)
utf8proc.utf8proc_NFC.restype = ctypes.c_void_p
utf8proc.utf8proc_NFD.restype = ctypes.c_void_p


def norm(fn, s):
    p = fn(s.encode("utf-8"))
    out = ctypes.string_at(p).decode("utf-8")
    libc.free(p)
    return out


def main():
    probes = []
    for c in range(1, 0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        nfd = norm(utf8proc.utf8proc_NFD, ch)
        if utf8proc.utf8proc_get_property(c).contents.combining_class == 0 and nfd == ch:
            continue
        for p in (ch, nfd, "a\u0345" + ch + "\u0334"):
            probes.append((c, p, norm(utf8proc.utf8proc_NFC, p), p == nfd and nfd != ch))
    hf = Tokenizer.from_file(os.path.join(ROOT, "tests", "data", "tokenizer", "qwen3", "tokenizer.json"))
    flagged = set()
    for c, p, ours, is_nfd in probes:
        if hf.normalizer.normalize_str(p) != ours:
            flagged.add(c)
            if is_nfd:  # a composition HF does not know: its parts must not compose either
                flagged.update(ord(x) for x in p)
    print(f"{len(flagged)} code points:")
    print(", ".join(f"0x{c:X}" for c in sorted(flagged)))


if __name__ == "__main__":
    main()
