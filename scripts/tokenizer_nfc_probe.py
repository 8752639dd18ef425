#!/usr/bin/env python3
"""Lists the code points whose NFC in Hugging Face's Rust tokenizers differs from utf8proc's.

HF's NFC normalizer (crate unicode-normalization-alignments) has Unicode tables older than the
Unicode 15 of utf8proc 2.8: it gives combining class 0 to combining marks added since, and does not
know the newer canonical composition U+11935 U+11930 -> U+11938. src/tokenizer/tokenizer.cpp keeps
the result as kNfcUnknownToHf and treats those code points as HF does (as unassigned starters).

Probes every utf8proc code point with a non-zero combining class or a canonical decomposition:
the character alone, its NFD, and between marks of class 240 and 1; compares utf8proc's NFC with
the Rust normalizer (npm @anush008/tokenizers, run through node). Needs scripts/fetch_tokenizers.sh.
Usage: python3 scripts/tokenizer_nfc_probe.py
"""
import ctypes
import json
import os
import subprocess
import tempfile

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


NODE = r"""
const tk = require(process.argv[1] + '/node_modules/@anush008/tokenizers');
const t = tk.Tokenizer.fromFile(process.argv[1] + '/tests/data/tokenizer/qwen3/tokenizer.json');
const n = t.getNormalizer();
const probes = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
process.stdout.write(JSON.stringify(probes.map((p) => n.normalizeString(p[1]))));
"""


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
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([[c, p] for c, p, _, _ in probes], f)
    try:
        out = subprocess.run(["node", "-e", NODE, ROOT, f.name], check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    flagged = set()
    for (c, p, ours, is_nfd), rust in zip(probes, json.loads(out)):
        if rust != ours:
            flagged.add(c)
            if is_nfd:  # a composition HF does not know: its parts must not compose either
                flagged.update(ord(x) for x in p)
    print(f"{len(flagged)} code points:")
    print(", ".join(f"0x{c:X}" for c in sorted(flagged)))


if __name__ == "__main__":
    main()
