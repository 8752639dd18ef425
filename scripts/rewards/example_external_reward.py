#!/usr/bin/env python3
"""Example external reward for medr1-train (plain Python, no third-party packages).

Plug it in with a reward name of the form "external:<command>" in the training config:

    "reward_funcs": ["format", "external:python3 scripts/rewards/example_external_reward.py"]

Protocol (include/medr1/rl/external_reward.h): the trainer starts the command once and, per
batch, writes one JSON line to its stdin

    {"completions": [...], "solutions": [...], "prompt_mode": "think" | "nothink"}

and reads one JSON line from its stdout: {"rewards": [number or null, ...]}, one entry per
completion (null = not scored), or {"error": "message"} to stop training with that message.
Print logs to stderr only; stdout carries the protocol. Exit when stdin closes.

This script scores accuracy as Med-R1's regex path does (first <answer>(.*?)</answer>, stripped,
exact compare), so it gives the same values as the built-in "accuracy" reward. To use
math_verify as Med-R1 does first (pip install math-verify into the venv), replace score() with:

    from math_verify import parse, verify
    def score(content, sol):
        try:
            if float(verify(parse(content), parse(sol))) > 0:
                return 1.0
        except Exception:
            pass
        return regex_score(content, sol)
"""

import json
import re
import sys

ANSWER = re.compile(r"<answer>(.*?)</answer>")


def extract(text):
    m = ANSWER.search(text)
    return m.group(1).strip() if m else text.strip()


def regex_score(content, sol):
    return 1.0 if extract(content) == extract(sol) else 0.0


def score(content, sol):
    return regex_score(content, sol)


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            rewards = [score(c, s) for c, s in zip(req["completions"], req["solutions"])]
            out = {"rewards": rewards}
        except Exception as e:  # report instead of dying, so the trainer names the cause
            out = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
