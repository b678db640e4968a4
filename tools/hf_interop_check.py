#!/usr/bin/env python3
"""Loads a dsv3 checkpoint (e.g. one written by `dsv3 train`) in HuggingFace
transformers and compares its logits with `dsv3 forward` on the same ids.

usage: tools/hf_interop_check.py MODEL_DIR [--dsv3 build/dsv3] [--tokens 48] [--seed 0]

Exits 0 when max|logits_dsv3 - logits_hf| <= 1e-4 * max|logits_hf|; exits 77
(skipped) when torch/transformers/safetensors are not installed. Reference /
verification only: not on the product path."""
import argparse
import os
import subprocess
import sys
import tempfile

try:
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, DeepseekV3ForCausalLM
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e}")
    sys.exit(77)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--dsv3", default=os.path.join(os.path.dirname(__file__), "..", "build", "dsv3"))
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    cfg = AutoConfig.from_pretrained(a.model)
    torch.manual_seed(a.seed)
    ids = torch.randint(2, cfg.vocab_size, (2, a.tokens))
    model = DeepseekV3ForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        ref = model(ids).logits.float()

    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
        save_file({"input_ids": ids.to(torch.int64)}, inp)
        subprocess.run([a.dsv3, "forward", "--model", a.model, "--input", inp, "--output", out], check=True)
        got = load_file(out)["logits"].float()

    err = (got - ref).abs().max().item()
    scale = ref.abs().max().item()
    rel = err / scale
    agree = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
    print(f"{a.model}: transformers {__import__('transformers').__version__}, logits {tuple(ref.shape)}, "
          f"max abs err {err:.3g}, max|ref| {scale:.3g}, relative {rel:.3g}, argmax agreement {agree:.4f}")
    sys.exit(0 if rel <= 1e-4 else 1)


if __name__ == "__main__":
    main()
