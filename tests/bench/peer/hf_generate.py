"""Peer of medr1-bench-generate: transformers 4.49 greedy generation with the KV cache on a Qwen2-VL-2B-shaped
model with random weights (depth cut by --layers / --vision-depth), one 384x384 image per prompt (784 patches ->
196 merged image tokens) plus --text-tokens text tokens around it, the same prompt layout and timing rule as
medr1-bench-generate: prefill tok/s = B*S / generate(1), after one warm-up call; decode tok/s = B*N / the time of the
N steps after the first new token, inside one generate(N+1) call, as medr1's generate trace times them. The steps are
timed by a streamer (generate puts each new token to it), not as generate(N+1) - generate(1): that difference carries
the noise of two prefills and came out at ~0 (6.4e10 tok/s) for a bf16 batch of 8. EOS is suppressed
(min_new_tokens) so every call makes exactly N tokens. Prints one JSON line.

usage: .venv-peer/bin/python tests/bench/peer/hf_generate.py [--layers 28] [--vision-depth 32] [--batch 1]
       [--dtype float32|bfloat16] [--new-tokens 8] [--threads 2] [--attn eager|sdpa] [--text-tokens 60]
"""
import argparse
import json
import time

import torch

import transformers
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
from transformers.generation.streamers import BaseStreamer

IM_END = 151645
VISION_START, VISION_END, IMAGE_PAD = 151652, 151653, 151655


class StepClock(BaseStreamer):
    """Times generate's steps: put() gets the prompt first, then each new token as it is chosen."""

    def __init__(self):
        self.stamps = []

    def put(self, value):
        self.stamps.append(time.perf_counter())

    def end(self):
        pass


def config(layers, vision_depth):
    # Qwen2-VL-2B-Instruct's config.json, depth cut.
    return Qwen2VLConfig(
        vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=layers,
        num_attention_heads=12, num_key_value_heads=2, hidden_act="silu", max_position_embeddings=32768,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False,
        rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}, bos_token_id=151643, eos_token_id=IM_END,
        vision_start_token_id=VISION_START, vision_end_token_id=VISION_END, vision_token_id=151654,
        image_token_id=IMAGE_PAD, video_token_id=151656,
        vision_config={"depth": vision_depth, "embed_dim": 1280, "hidden_size": 1536, "hidden_act": "quick_gelu",
                       "mlp_ratio": 4, "num_heads": 16, "in_channels": 3, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--vision-depth", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "fp32", "bf16"])
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="eager", choices=["eager", "sdpa"])
    ap.add_argument("--text-tokens", type=int, default=60)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.bfloat16 if a.dtype in ("bfloat16", "bf16") else torch.float32

    cfg = config(a.layers, a.vision_depth)
    cfg._attn_implementation = a.attn
    torch.manual_seed(0)
    with torch.no_grad():
        model = Qwen2VLForConditionalGeneration(cfg).to(dtype).eval()

    g = torch.Generator().manual_seed(1)
    text = torch.randint(0, 150000, (a.text_tokens,), generator=g)
    # medr1-bench-generate's layout: half the text, the image, the other half (S = 196 + 2 + text tokens).
    h = a.text_tokens // 2
    one = torch.cat([text[:h], torch.tensor([VISION_START]), torch.full((196,), IMAGE_PAD),
                     torch.tensor([VISION_END]), text[h:]])
    input_ids = one.unsqueeze(0).repeat(a.batch, 1)
    attention_mask = torch.ones_like(input_ids)
    pixel_values = torch.randn(784 * a.batch, 1176, generator=g).to(dtype)
    grid = torch.tensor([[1, 28, 28]] * a.batch)
    S = input_ids.size(1)

    def generate(n, clock=None):
        t0 = time.perf_counter()
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                             image_grid_thw=grid, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             streamer=clock)
        assert out.size(1) == S + n
        return time.perf_counter() - t0

    with torch.no_grad():
        generate(1)
        t1 = generate(1)
        clock = StepClock()
        tn = generate(a.new_tokens + 1, clock)
    # stamps: the prompt, then tokens 1 .. N+1; the N decode steps run from token 1's stamp to the last.
    if len(clock.stamps) != a.new_tokens + 2:
        raise SystemExit(f"hf_generate.py: the streamer saw {len(clock.stamps)} puts, expected {a.new_tokens + 2}")
    decode_s = clock.stamps[-1] - clock.stamps[1]
    if not decode_s > 0:
        raise SystemExit(f"hf_generate.py: decode time {decode_s} s is not positive")
    print(json.dumps({
        "peer": f"transformers {transformers.__version__} ({a.attn}) + torch {torch.__version__}",
        "dtype": "bf16" if dtype == torch.bfloat16 else "fp32", "threads": a.threads, "layers": a.layers,
        "vision_depth": a.vision_depth, "params": sum(p.numel() for p in model.parameters()), "batch": a.batch,
        "prompt_tokens": S, "new_tokens": a.new_tokens, "prefill_s": round(t1, 4),
        "prefill_tok_s": round(a.batch * S / t1, 3), "decode_tok_s": round(a.batch * a.new_tokens / decode_s, 3),
        "generate_s": round(tn, 4)}))


if __name__ == "__main__":
    main()
