#!/usr/bin/env python3
"""Throughput of Hugging Face's Rust tokenizers (PyPI `tokenizers`, pinned 0.22.2 in scripts/requirements.txt)
on the same text and the same chunking as medr1-bench-tokenizer (which runs this script itself):
the text is cut after the first '\\n' at or past every 4096 bytes, each chunk encoded without
special tokens, one thread. Prints "hf_first_pass_mbps X", "hf_mbps X" (best warm pass) and
"hf_batch_mbps X" (encode_batch with TOKENIZERS_PARALLELISM=false: no per-call overhead).
  .venv/bin/python scripts/bench_tokenizer_hf.py --text FILE --tokenizer DIR [--passes 3]
"""
import os
import sys
import time

# One thread: set before tokenizers (and its rayon pool) is loaded.
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"


def args():
    a = {"passes": 3, "text": None, "tokenizer": None}
    it = iter(sys.argv[1:])
    for k in it:
        if k in ("--text", "--tokenizer", "--passes"):
            v = next(it, None)
            if v is None:
                print(f"bench_tokenizer_hf: {k} needs a value", file=sys.stderr)
                sys.exit(2)
            a[k[2:]] = int(v) if k == "--passes" else v
        else:
            print(f"bench_tokenizer_hf: unknown argument {k}", file=sys.stderr)
            sys.exit(2)
    if not a["text"] or not a["tokenizer"]:
        print("usage: bench_tokenizer_hf.py --text FILE --tokenizer DIR [--passes 3]", file=sys.stderr)
        sys.exit(2)
    return a


def chunks(buf):
    """Same rule as tests/bench/bench_tokenizer.cpp: cut after the first '\\n' at or past 4096 bytes."""
    out = []
    start = 0
    while start < len(buf):
        end = min(len(buf), start + 4096)
        if end < len(buf):
            nl = buf.find(b"\n", end - 1)
            end = len(buf) if nl < 0 else nl + 1
        out.append(buf[start:end].decode("utf-8", errors="replace"))
        start = end
    return out


def main():
    a = args()
    from tokenizers import Tokenizer

    with open(a["text"], "rb") as f:
        buf = f.read()
    mb = len(buf) / 1e6
    docs = chunks(buf)
    tok = Tokenizer.from_file(os.path.join(a["tokenizer"], "tokenizer.json"))
    best = 0.0
    n_ids = 0
    for p in range(a["passes"]):
        t0 = time.perf_counter()
        n_ids = sum(len(tok.encode(d, add_special_tokens=False)) for d in docs)
        s = time.perf_counter() - t0
        if p == 0:
            print(f"hf_first_pass_mbps {mb / s:.2f}", flush=True)
        best = max(best, mb / s)
    print(f"hf_mbps {best:.2f}")
    print(f"hf_ids {n_ids}")
    best_batch = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        tok.encode_batch(docs, add_special_tokens=False)
        best_batch = max(best_batch, mb / (time.perf_counter() - t0))
    print(f"hf_batch_mbps {best_batch:.2f}")


if __name__ == "__main__":
    main()
