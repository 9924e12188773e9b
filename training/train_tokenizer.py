#!/usr/bin/env python3
"""Train the byte-level BPE tokenizer of the embedded model on the training split of the corpus.

Same pipeline as the real Llama 4 tokenizer (test/fixtures/llama4-tokenizer/tokenizer.json): no
normalizer; pre-tokenizer = Split(Llama 4 regex, Isolated) + ByteLevel(no prefix space, no regex);
BPE with ignore_merges; post-processor = ByteLevel + TemplateProcessing that prepends
<|begin_of_text|>; ByteLevel decoder; Llama 4 special tokens (same names, same relative order) at the
end of the vocabulary as in the real one; eos <|eot|>, pad <|finetune_right_pad_id|>; the real
Llama 4 chat template. Deterministic: the BPE trainer sees the documents in file order.

Writes tokenizer.json, tokenizer_config.json and chat_template.jinja into --out (models/llama4-tiny).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURE = os.path.join(ROOT, "test", "fixtures", "llama4-tokenizer")

# The Llama 4 pre-tokenizer split pattern (from the real tokenizer.json).
LLAMA4_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Llama 4's special tokens kept here, in the real tokenizer's order (ids 200000.. there, V-32.. here).
SPECIAL_TOKENS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|header_start|>", "<|header_end|>", "<|eom|>", "<|eot|>", "<|step|>",
    *[f"<|text_post_train_reserved_special_token_{i}|>" for i in range(0, 6)],
    "<|python_start|>", "<|python_end|>", "<|finetune_right_pad|>",
    "<|text_post_train_reserved_special_token_8|>",
    "<|image_start|>", "<|image_end|>", "<|tile_x_separator|>", "<|tile_y_separator|>", "<|image|>", "<|patch|>",
    *[f"<|text_post_train_reserved_special_token_{i}|>" for i in range(9, 14)],
    "<|finetune_right_pad_id|>",
]
assert len(SPECIAL_TOKENS) == 32

VOCAB_SIZE = 8192
MODEL_MAX_LENGTH = 2048


def training_texts(corpus: str):
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["split"] != "train":
                continue
            if d["kind"] == "prose":
                yield d["text"]
            else:
                for m in d["messages"]:
                    yield m["content"]


def build(corpus: str, vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA4_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(training_texts(corpus), trainer=trainer)
    base = tok.get_vocab_size()
    if base != vocab_size - len(SPECIAL_TOKENS):
        raise SystemExit(f"BPE learned {base} tokens, expected {vocab_size - len(SPECIAL_TOKENS)} (corpus too small?)")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    bos = "<|begin_of_text|>"
    bos_id = tok.token_to_id(bos)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, bos_id)]),
    ])
    return tok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(HERE, ".data", "corpus.jsonl"))
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "llama4-tiny"))
    ap.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    args = ap.parse_args()

    tok = build(args.corpus, args.vocab_size)
    os.makedirs(args.out, exist_ok=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    config = {  # the same keys as the real Llama 4 tokenizer_config.json
        "backend": "tokenizers",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot|>",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": MODEL_MAX_LENGTH,
        "pad_token": "<|finetune_right_pad_id|>",
        "tokenizer_class": "TokenizersBackend",
    }
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    shutil.copyfile(os.path.join(FIXTURE, "chat_template.jinja"), os.path.join(args.out, "chat_template.jinja"))
    print(f"vocab {tok.get_vocab_size()} ({tok.get_vocab_size() - len(SPECIAL_TOKENS)} BPE + {len(SPECIAL_TOKENS)} special); "
          f"wrote {args.out}/tokenizer.json, tokenizer_config.json, chat_template.jinja")


if __name__ == "__main__":
    main()
