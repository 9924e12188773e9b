"""Writes a random Llama 4 text checkpoint (bf16, Hugging Face layout, with a tokenizer) for the benchmark.

Two shapes, both with Llama 4's architecture knobs (16 experts, top-1 routing, shared expert, every layer
MoE, NoPE every 4th layer, QK norm, GQA, chunked attention, Scout's llama3 rope scaling):

  large-vocab  the real 202048-token vocabulary, hidden 1024, 4 layers (~1.3 GB): decode is dominated by
               the 414 MB lm_head.
  moe          an 8192-token vocabulary, hidden 2048, 8 layers (~3.7 GB, ~1.83B parameters, ~302M read
               per token): decode is dominated by the attention and expert matrices.

The attention settings are the ones llama.cpp hard-codes for Llama 4 (chunk 8192, temperature floor
scale 8192, attn_scale 0.1, NoPE interval 4, QK norm with 16 experts), so both engines compute the same
function from the same weights.

usage: python3 bench/make_scout_like.py --shape large-vocab|moe OUT_DIR
"""
import argparse
import gzip
import math
import shutil
from pathlib import Path

import torch
from transformers import Llama4ForCausalLM, Llama4TextConfig

SEED = 1234
REPO = Path(__file__).resolve().parent.parent

COMMON = dict(
    num_local_experts=16,
    num_experts_per_tok=1,
    interleave_moe_layer_step=1,
    no_rope_layer_interval=4,
    use_qk_norm=True,
    attn_temperature_tuning=True,
    attention_chunk_size=8192,
    floor_scale=8192,
    attn_scale=0.1,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    max_position_embeddings=262144,
    # Scout's published llama3 rope scaling (factor 16, high_freq_factor == low_freq_factor == 1.0);
    # llama.cpp's converter turns it into per-dimension rope frequency factors.
    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 16.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 1.0, "original_max_position_embeddings": 8192},
)

SHAPES = {
    "large-vocab": dict(
        COMMON,
        vocab_size=202048,
        hidden_size=1024,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=128,
        intermediate_size=1024,  # per expert and the shared expert
        intermediate_size_mlp=2048,  # dense layers only (none here)
        num_hidden_layers=4,
        bos_token_id=200000,
        eos_token_id=[200001, 200007, 200008],
        pad_token_id=200018,
    ),
    "moe": dict(
        COMMON,
        vocab_size=8192,
        hidden_size=2048,
        num_attention_heads=16,
        num_key_value_heads=4,
        head_dim=128,
        intermediate_size=2048,
        intermediate_size_mlp=4096,
        num_hidden_layers=8,
        bos_token_id=8160,
        eos_token_id=[8161, 8167, 8168],
        pad_token_id=8191,
    ),
}


def write_tokenizer(shape: str, out: Path) -> None:
    # llama.cpp's converter reads the vocabulary from the checkpoint folder, so ship a matching tokenizer.
    if shape == "large-vocab":
        src = REPO / "test" / "fixtures" / "llama4-tokenizer"
        with gzip.open(src / "tokenizer.json.gz", "rb") as f_in, open(out / "tokenizer.json", "wb") as f_out:
            shutil.copyfileobj(f_in, f_out)
    else:
        src = REPO / "models" / "llama4-tiny"  # Llama-4-style byte-level BPE: 8160 tokens + 32 Llama 4 specials
        shutil.copy(src / "tokenizer.json", out / "tokenizer.json")
    shutil.copy(src / "tokenizer_config.json", out / "tokenizer_config.json")
    shutil.copy(src / "LICENSE", out / "LICENSE")


def main(shape: str, out_dir: str) -> None:
    torch.manual_seed(SEED)
    config = Llama4TextConfig(**SHAPES[shape])
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

    out = Path(out_dir)
    model.save_pretrained(out, max_shard_size="5GB")
    write_tokenizer(shape, out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out_dir}: {n / 1e6:.0f}M parameters, {2 * n / 1e9:.2f} GB bf16")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("out_dir")
    args = ap.parse_args()
    main(args.shape, args.out_dir)
