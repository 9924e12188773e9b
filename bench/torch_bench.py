"""Times transformers' Llama4ForCausalLM on the CPU, the same way bench/run.mjs times llama4-ts.

usage: python3 bench/torch_bench.py MODEL_DIR IDS_JSON --dtype bfloat16|float32 --threads N --new-tokens N --repeats N
Prints one JSON object on the last line of stdout.
"""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import Llama4ForCausalLM


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("ids_json")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    with open(args.ids_json) as f:
        prompt = torch.tensor([json.load(f)], dtype=torch.long)
    t0 = time.perf_counter()
    model = Llama4ForCausalLM.from_pretrained(args.model_dir, dtype=getattr(torch, args.dtype)).eval()
    load_s = time.perf_counter() - t0

    def run():
        # Prefill (the cache is created by the model), then greedy decode reusing it.
        t = time.perf_counter()
        out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
        prefill_s = time.perf_counter() - t
        cache = out.cache
        tokens = []
        t = time.perf_counter()
        for _ in range(args.new_tokens):
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            tokens.append(int(tok))
            out = model(input_ids=tok, cache=cache, use_cache=True, logits_to_keep=1)
            cache = out.cache
        decode_s = time.perf_counter() - t
        return prefill_s, decode_s, tokens

    with torch.inference_mode():
        run()  # warm-up: first-call allocations and kernel selection
        runs = [run() for _ in range(args.repeats)]

    n = prompt.shape[1]
    prefill = [n / p for p, _, _ in runs]
    decode = [args.new_tokens / d for _, d, _ in runs]
    print(json.dumps({
        "name": f"torch {args.dtype}",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "load_s": load_s,
        "prefill_tok_s": statistics.median(prefill),
        "decode_tok_s": statistics.median(decode),
        "prefill_runs": prefill,
        "decode_runs": decode,
        "tokens": runs[-1][2],
    }))


if __name__ == "__main__":
    main()
