"""The PEFT side of tests/unit/model/lora_test.cpp (PeftLogits.*), run with .venv-peer's python (transformers
4.49 + peft 0.14 from PyPI, scripts/requirements-peer.txt).

  peft_logits.py BASE_DIR ADAPTER_DIR MERGED_DIR INPUTS.safetensors OUT.safetensors

Loads BASE_DIR with transformers (fp32, eager attention), puts ADAPTER_DIR on it with PeftModel.from_pretrained,
and writes the logits of INPUTS (input_ids, attention_mask, pixel_values, image_grid_thw) to OUT as `peft`; the
logits of PEFT's merge_and_unload() as `peft_merged`; and the logits of MERGED_DIR (medr1's merged checkpoint)
loaded by plain transformers as `ours_merged`. Prints a JSON line with the adapted module names PEFT found.
"""
import json
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, Qwen2VLForConditionalGeneration

try:
    from transformers import Qwen2_5_VLForConditionalGeneration
except ImportError:  # older transformers
    Qwen2_5_VLForConditionalGeneration = None


def model_class(path):
    cfg = AutoConfig.from_pretrained(path)
    if cfg.model_type == "qwen2_5_vl":
        return Qwen2_5_VLForConditionalGeneration
    return Qwen2VLForConditionalGeneration


def load(path):
    m = model_class(path).from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


def main():
    base_dir, adapter_dir, merged_dir, inputs_path, out_path = sys.argv[1:6]
    t = load_file(inputs_path)
    kw = dict(input_ids=t["input_ids"], attention_mask=t["attention_mask"], pixel_values=t["pixel_values"],
              image_grid_thw=t["image_grid_thw"])
    out = {}
    with torch.no_grad():
        pm = PeftModel.from_pretrained(load(base_dir), adapter_dir)
        pm.eval()
        adapted = sorted(n[: -len(".lora_A")] for n, _ in pm.named_modules() if n.endswith(".lora_A"))
        out["peft"] = pm(**kw).logits.contiguous()
        out["peft_merged"] = pm.merge_and_unload()(**kw).logits.contiguous()
        out["ours_merged"] = load(merged_dir)(**kw).logits.contiguous()
    save_file(out, out_path)
    print(json.dumps({"adapted_modules": adapted}))


if __name__ == "__main__":
    main()
