#!/usr/bin/python3
"""Golden values for medr1's GRPO loss (tests/unit/rl/rl_golden_test.cpp).

Run with Debian's interpreter (python3-torch 1.13):  /usr/bin/python3 scripts/make_rl_goldens.py
Writes tests/data/rl/rl_goldens.safetensors (hand-written safetensors: u64 LE header length, JSON
header, raw little-endian bytes). Everything is computed here from the formulas of Med-R1's
Qwen2VLGRPOTrainer.compute_loss (TRL 0.14) and TRL GRPOTrainer._compute_loss (loss_type bnpo /
dr_grpo / dapo, two-sided clipping, mask_truncated_completions), in float64 with plain autograd,
independently of the C++ code. Inputs are float32 (logits) / float64 (logps); losses and gradients
w.r.t. the logits are float64.
"""
import json
import math
import os
import struct

import torch

N, T, V, G = 8, 6, 11, 4          # 2 prompt groups of G=4 completions, 6 tokens, vocab 11
EOS = [9, 10]                     # two EOS ids, like Qwen2-VL's [151645, 151643]
# (row, position, eos id) placements: first token, middle, last, none, two EOS, none, ...
EOS_AT = {0: [(0, 9)], 1: [(2, 10)], 2: [(5, 9)], 4: [(1, 9), (3, 10)], 5: [(4, 10)], 7: [(3, 9)]}
REWARDS = [2.0, 0.0, 0.0, 1.0, 1.0, 0.0, 2.0, 2.0]

torch.manual_seed(20260128)
logits = (torch.randn(N, T, V) * 2.0).float()
ids = torch.randint(0, 9, (N, T))
for r, places in EOS_AT.items():
    for t, e in places:
        ids[r, t] = e
noise_ref = torch.randn(N, T).double() * 0.3
noise_old = torch.randn(N, T).double() * 0.5


def completion_mask(ids, mask_truncated):
    m = torch.zeros(N, T, dtype=torch.int32)
    for r in range(N):
        first = next((t for t in range(T) if int(ids[r, t]) in EOS), None)
        if first is None:
            if not mask_truncated:
                m[r, :] = 1
        else:
            m[r, : first + 1] = 1
    return m


def advantages(rewards, scale):
    out = []
    all_mean = sum(rewards) / len(rewards)
    batch_std = math.sqrt(sum((x - all_mean) ** 2 for x in rewards) / (len(rewards) - 1))
    for g in range(len(rewards) // G):
        grp = rewards[g * G:(g + 1) * G]
        mean = sum(grp) / G
        std = math.sqrt(sum((x - mean) ** 2 for x in grp) / (G - 1))  # unbiased, like torch.std
        for x in grp:
            if scale == "group":
                out.append((x - mean) / (std + 1e-4))
            elif scale == "batch":
                out.append((x - mean) / (batch_std + 1e-4))
            else:
                out.append(x - mean)
    return torch.tensor(out, dtype=torch.float64)


def logps_of(lg):
    return torch.log_softmax(lg, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # [N, T]


with torch.no_grad():
    base_logps = logps_of(logits.double())
ref_logps = base_logps + noise_ref
old_logps = base_logps + noise_old

ADV = advantages(REWARDS, "group")

# name: (loss_type, beta, clipped, eps_low, eps_high, max_completion_length, num_items, nproc, mask_truncated)
CASES = {
    "grpo": ("grpo", 0.04, False, 0.2, 0.2, 8, 0, 1, False),
    "bnpo": ("bnpo", 0.04, False, 0.2, 0.2, 8, 0, 1, False),
    "dr_grpo": ("dr_grpo", 0.04, False, 0.2, 0.2, 8, 0, 1, False),
    "dapo": ("dapo", 0.04, False, 0.2, 0.2, 8, 50, 2, False),
    "grpo_clipped": ("grpo", 0.04, True, 0.2, 0.28, 8, 0, 1, False),
    "bnpo_clipped_beta0": ("bnpo", 0.0, True, 0.2, 0.2, 8, 0, 1, False),
    "grpo_mask_truncated": ("grpo", 0.04, False, 0.2, 0.2, 8, 0, 1, True),
}

tensors = {
    "logits": logits,
    "ids": ids.long(),
    "eos_ids": torch.tensor(EOS, dtype=torch.int64),
    "rewards": torch.tensor(REWARDS, dtype=torch.float32),
    "ref_logps": ref_logps,
    "old_logps": old_logps,
    "mask": completion_mask(ids, False),
    "mask_truncated": completion_mask(ids, True),
    "advantages_group": ADV,
    "advantages_batch": advantages(REWARDS, "batch"),
    "advantages_none": advantages(REWARDS, "none"),
}

for name, (lt, beta, clipped, el, eh, mcl, items, nproc, mtrunc) in CASES.items():
    lg = logits.double().clone().requires_grad_(True)
    logp = logps_of(lg)
    mask = completion_mask(ids, mtrunc).double()
    A = ADV.unsqueeze(1)
    kl = torch.exp(ref_logps - logp) - (ref_logps - logp) - 1
    if not clipped:  # Med-R1: one iteration, ratio exp(logp - logp.detach())
        ratio = torch.exp(logp - logp.detach())
        ptl = -(ratio * A - beta * kl)
    else:
        c1 = torch.exp(logp - old_logps)
        c2 = torch.clamp(c1, 1 - el, 1 + eh)
        ptl = -torch.min(c1 * A, c2 * A) + beta * kl
        low = ((c1 < 1 - el) & (A < 0)).double()
        high = ((c1 > 1 + eh) & (A > 0)).double()
        tensors[f"{name}.clip_ratio_low"] = ((low * mask).sum() / mask.sum()).detach()
        tensors[f"{name}.clip_ratio_high"] = ((high * mask).sum() / mask.sum()).detach()
    if lt == "grpo":
        loss = ((ptl * mask).sum(1) / mask.sum(1).clamp(min=1.0)).mean()
    elif lt == "bnpo":
        loss = (ptl * mask).sum() / mask.sum().clamp(min=1.0)
    elif lt == "dr_grpo":
        loss = (ptl * mask).sum() / (N * mcl)
    elif lt == "dapo":
        loss = (ptl * mask).sum() / (items / nproc)
    loss.backward()
    tensors[f"{name}.loss"] = loss.detach()
    tensors[f"{name}.grad"] = lg.grad.detach()
    tensors[f"{name}.kl"] = ((kl * mask).sum(1) / mask.sum(1).clamp(min=1.0)).mean().detach()
    print(f"{name:22s} loss {loss.item():+.10f}  |grad| {lg.grad.abs().max().item():.3e}")

DT = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.int32: "I32"}


def write_safetensors(path, named, metadata):
    header, blobs, off = {}, [], 0
    for k, t in named.items():
        t = t.contiguous()
        b = t.numpy().tobytes()  # little-endian on every platform torch supports here
        header[k] = {"dtype": DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "rl",
                   "rl_goldens.safetensors")
write_safetensors(out, tensors, {"generator": "scripts/make_rl_goldens.py", "torch": torch.__version__,
                                 "cases": json.dumps(CASES)})
print("wrote", os.path.normpath(out))
