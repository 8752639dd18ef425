"""Peer of medr1-bench-grpo: one GRPO step of Med-R1's trainer (R1-V's Qwen2VLGRPOTrainer.compute_loss on TRL 0.14,
as ../MEDR1_REFERENCE.md section 1.5 lists its steps) written with the libraries it runs on: transformers 4.49,
PEFT 0.14 and torch's AdamW, on the checkpoint folder medr1-bench-grpo wrote, the same image and question.

TRL 0.14's own GRPOTrainer has no vision path; Med-R1 overrides its compute_loss whole, so the step's cost is the
transformers / PEFT / torch calls below, in this order (phase = what medr1-bench-grpo prints):
  rollout   processor (chat template, smart_resize), generate(num_return_sequences=G, do_sample, temperature 1,
            top_k 50), the completion mask (first EOS kept), the two regex rewards, advantages (std + 1e-4)
  reference per-token log-probs of prompt + completion under inference_mode (PEFT: adapters disabled; full
            fine-tuning: a frozen copy, trl.create_reference_model)
  loss      policy forward with grad, per-token log-probs, k3 KL, loss = -(exp(lp - lp.detach()) * A - beta * KL),
            per-sequence token mean then batch mean; backward
  optimizer clip_grad_norm_(1.0) + AdamW(lr 1e-6, betas (0.9, 0.999), eps 1e-8, weight decay 0; torch's default
            implementation, or fused=True with --optim adamw_torch_fused, as the HF Trainer maps its optim names)
            + zero_grad
--warm-steps W runs W whole steps before the timed one (first-step costs: optimizer state page-faulted in, lazy
allocations), as medr1-bench-grpo --warm-steps does. Nothing here is timed in ctest; prints one JSON line.

usage: .venv-peer/bin/python tests/bench/peer/hf_grpo_step.py --model DIR --image PNG --problem TEXT
       [--num-generations 4] [--new-tokens 64] [--use-peft 1] [--lora-r 16] [--bf16 1]
       [--gradient-checkpointing 1] [--threads 2] [--attn sdpa|eager] [--optim adamw_torch|adamw_torch_fused]
       [--warm-steps 0]
"""
import argparse
import copy
import json
import re
import resource
import time

import torch

import transformers
from PIL import Image
from transformers import AutoProcessor, GenerationConfig, Qwen2VLForConditionalGeneration

# Med-R1 grpo_vqa.py (think) and grpo_vqa_nothink.py question templates.
THINK = ("{Question} Your task: 1. Think through the question step by step, enclose your reasoning process in "
         "<think>...</think> tags. 2. Then provide the correct single-letter choice (A, B, C, D,...) inside "
         "<answer>...</answer> tags. 3. No extra information or text outside of these tags.")
NOTHINK = ("{Question} Your task: 1. Provide the correct single-letter choice (A, B, C, D,...) inside "
           "<answer>...</answer> tags. 2. No extra information or text outside of this tag.")


def args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--problem", required=True)
    ap.add_argument("--solution", default="<answer> A </answer>")
    ap.add_argument("--prompt-template", default="think", choices=["think", "nothink"])
    ap.add_argument("--num-generations", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--use-peft", type=int, default=1)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--bf16", type=int, default=1)
    ap.add_argument("--gradient-checkpointing", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--optim", default="adamw_torch", choices=["adamw_torch", "adamw_torch_fused"])
    ap.add_argument("--warm-steps", type=int, default=0)
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--seed", type=int, default=42)
    return ap.parse_args()


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024.0 * 1024.0)


def per_token_logps(model, input_ids, attention_mask, pixel_values, image_grid_thw):
    # Med-R1 step 6: logits[:, :-1], log_softmax, the next token's log-prob (row by row, as R1-V does, to bound
    # the fp32 [T, V] copy to one row).
    logits = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                   image_grid_thw=image_grid_thw).logits[:, :-1, :]
    ids = input_ids[:, 1:]
    out = []
    for row_logits, row_ids in zip(logits, ids):
        lp = row_logits.log_softmax(dim=-1)
        out.append(torch.gather(lp, 1, row_ids.unsqueeze(1)).squeeze(1))
    return torch.stack(out)


def rewards_of(texts, solution, think):
    sol = re.search(r"<answer>(.*?)</answer>", solution)
    truth = sol.group(1).strip() if sol else solution.strip()
    fmt = r"<think>.*?</think>\s*<answer>.*?</answer>" if think else r"\s*<answer>.*?</answer>"
    out = []
    for t in texts:
        m = re.search(r"<answer>(.*?)</answer>", t)
        student = m.group(1).strip() if m else t.strip()
        out.append(float(student == truth) + float(re.fullmatch(fmt, t, re.DOTALL) is not None))
    return torch.tensor(out)


def main():
    a = args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dtype = torch.bfloat16 if a.bf16 else torch.float32
    times = {}

    t0 = time.perf_counter()
    model = Qwen2VLForConditionalGeneration.from_pretrained(a.model, torch_dtype=dtype, attn_implementation=a.attn)
    processor = AutoProcessor.from_pretrained(a.model)
    processor.image_processor.max_pixels = 401408
    processor.image_processor.min_pixels = 3136
    if a.gradient_checkpointing:
        model.config.use_cache = False
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if a.use_peft:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(
            r=a.lora_r, lora_alpha=2 * a.lora_r, lora_dropout=0.05,
            target_modules=r"model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"))
        if a.gradient_checkpointing:
            model.enable_input_require_grads()
        ref = None
    else:
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if a.optim == "adamw_torch_fused" else {}
    opt = torch.optim.AdamW(trainable, lr=1e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **fused)
    times["set_up"] = time.perf_counter() - t0

    def one_step(times):
        # rollout
        t0 = time.perf_counter()
        template = THINK if a.prompt_template == "think" else NOTHINK
        conv = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": template.format(Question=a.problem)}]}]
        text = processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        image = Image.open(a.image).convert("RGB")
        inputs = processor(text=[text], images=[image], return_tensors="pt", padding=True, padding_side="left",
                           add_special_tokens=False)
        prompt_ids, prompt_mask = inputs["input_ids"], inputs["attention_mask"]
        G = a.num_generations
        gen_cfg = GenerationConfig(max_new_tokens=a.new_tokens, do_sample=True, temperature=1.0,
                                   num_return_sequences=G, pad_token_id=processor.tokenizer.pad_token_id)
        with torch.no_grad():
            was_ckpt = getattr(model, "is_gradient_checkpointing", False)
            gen_model = model
            gen_model.eval()
            out = gen_model.generate(**inputs, generation_config=gen_cfg, use_cache=True)
            gen_model.train()
        P = prompt_ids.size(1)
        completion_ids = out[:, P:]
        eos = processor.tokenizer.eos_token_id
        is_eos = completion_ids == eos
        eos_idx = torch.full((is_eos.size(0),), is_eos.size(1), dtype=torch.long)
        has = is_eos.any(dim=1)
        eos_idx[has] = is_eos.int().argmax(dim=1)[has]
        seq_idx = torch.arange(is_eos.size(1)).expand(is_eos.size(0), -1)
        completion_mask = (seq_idx <= eos_idx.unsqueeze(1)).int()
        attention_mask = torch.cat([prompt_mask.repeat_interleave(G, dim=0), completion_mask], dim=1)
        pixel_values = inputs["pixel_values"].repeat(G, 1)
        grid = inputs["image_grid_thw"].repeat_interleave(G, dim=0)
        texts = processor.batch_decode(completion_ids, skip_special_tokens=True)
        rewards = rewards_of(texts, a.solution, a.prompt_template == "think")
        grouped = rewards.view(-1, G)
        adv = (rewards - grouped.mean(1).repeat_interleave(G)) / (grouped.std(1).repeat_interleave(G) + 1e-4)
        times["rollout"] = time.perf_counter() - t0
        rss_rollout = peak_rss_gib()

        # reference log-probs
        t0 = time.perf_counter()
        with torch.inference_mode():
            if ref is not None:
                ref_lp = per_token_logps(ref, out, attention_mask, pixel_values, grid)
            else:
                with model.disable_adapter():
                    ref_lp = per_token_logps(model, out, attention_mask, pixel_values, grid)
        ref_lp = ref_lp[:, P - 1:].clone()
        times["reference"] = time.perf_counter() - t0

        # loss forward + backward
        t0 = time.perf_counter()
        lp = per_token_logps(model, out, attention_mask, pixel_values, grid)[:, P - 1:]
        kl = torch.exp(ref_lp - lp) - (ref_lp - lp) - 1
        per_token = -(torch.exp(lp - lp.detach()) * adv.unsqueeze(1).to(lp.dtype) - a.beta * kl)
        loss = ((per_token * completion_mask).sum(1) / completion_mask.sum(1)).mean()
        loss.backward()
        times["loss_fwd_bwd"] = time.perf_counter() - t0

        # clip + optimizer
        t0 = time.perf_counter()
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times["optimizer"] = time.perf_counter() - t0
        return {"P": P, "G": G, "completion_mask": completion_mask, "loss": loss, "grad_norm": grad_norm,
                "was_ckpt": was_ckpt, "rss_rollout": rss_rollout}

    # --warm-steps W: W whole steps first (optimizer state allocated, caches warm), then the timed one.
    warm = []
    for _ in range(a.warm_steps):
        t0 = time.perf_counter()
        one_step({})
        warm.append(round(time.perf_counter() - t0, 3))
    r = one_step(times)
    P, G, completion_mask, loss, grad_norm = r["P"], r["G"], r["completion_mask"], r["loss"], r["grad_norm"]
    was_ckpt, rss_rollout = r["was_ckpt"], r["rss_rollout"]

    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({
        "peer": f"transformers {transformers.__version__} ({a.attn}) + torch {torch.__version__}"
                + (" + peft" if a.use_peft else ""),
        "threads": a.threads, "dtype": "bf16" if a.bf16 else "fp32", "G": G, "prompt_tokens": P,
        "generated_tokens": int(completion_mask.sum().item()), "params": n_params,
        "trainable": sum(p.numel() for p in trainable), "loss": float(loss), "grad_norm": float(grad_norm),
        "gradient_checkpointing": bool(was_ckpt or a.gradient_checkpointing),
        "seconds": {k: round(v, 3) for k, v in times.items()}, "warm_up_steps_s": warm,
        "peak_rss_gib_after_rollout": round(rss_rollout, 3), "peak_rss_gib": round(peak_rss_gib(), 3)}))


if __name__ == "__main__":
    main()
