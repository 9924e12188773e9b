"""Writes a random, Scout-shaped Llama 4 text checkpoint (bf16, Hugging Face layout) for the benchmark.

Same architecture knobs as Llama-4-Scout (real 202048 vocab, 16 experts, top-1 routing, shared expert,
NoPE every 4th layer, QK norm, chunked attention) but narrow and shallow so it is ~1.3 GB on disk.

usage: python3 bench/make_scout_like.py OUT_DIR
"""
import math
import sys

import torch
from transformers import Llama4ForCausalLM, Llama4TextConfig

SEED = 1234

CONFIG = dict(
    vocab_size=202048,
    hidden_size=1024,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=128,
    intermediate_size=1024,  # per expert and the shared expert
    intermediate_size_mlp=2048,  # dense layers only (none here: every layer is MoE)
    num_hidden_layers=4,
    num_local_experts=16,
    num_experts_per_tok=1,
    interleave_moe_layer_step=1,
    no_rope_layer_interval=4,
    use_qk_norm=True,
    attention_chunk_size=8192,
    tie_word_embeddings=False,
    max_position_embeddings=262144,
    # Scout's published llama3 rope scaling (factor 16, high_freq_factor == low_freq_factor == 1.0).
    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 16.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 1.0, "original_max_position_embeddings": 8192},
    bos_token_id=200000,
    eos_token_id=[200001, 200007, 200008],
    pad_token_id=200018,
)


def main(out_dir: str) -> None:
    torch.manual_seed(SEED)
    config = Llama4TextConfig(**CONFIG)
    # Build directly in bf16: halves memory and the time spent in transformers' own init.
    torch.set_default_dtype(torch.bfloat16)
    model = Llama4ForCausalLM(config).eval()
    torch.set_default_dtype(torch.float32)

    # transformers' init (std 0.02) shrinks activations layer by layer; fan-in scaling keeps them O(1),
    # so routing, attention and logits look like a real model's rather than near-constant.
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:  # RMSNorm weights
                p.fill_(1.0)
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32))
            else:
                # nn.Linear is [out, in]; the fused experts are [E, in, out].
                fan_in = p.shape[1]
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32).mul_(1.0 / math.sqrt(fan_in)))

    model.save_pretrained(out_dir, max_shard_size="5GB")
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out_dir}: {n / 1e6:.0f}M parameters, {2 * n / 1e9:.2f} GB bf16")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
