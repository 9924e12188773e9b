#!/usr/bin/env python3
"""Train the embedded Llama-4-architecture model (models/llama4-tiny) on the CPU.

  python3 training/train.py --minutes 65 --threads 2          # the full run (see training/README.md)
  python3 training/train.py --steps 40 --threads 1 --out /tmp/m   # a deterministic short run

Model: transformers' Llama4ForCausalLM with the config of common.model_config (MoE with a shared
expert and top-1 routing interleaved with dense layers, NoPE every 4th layer, chunked attention,
QK-norm, attention temperature tuning, GQA, tied embeddings). The MoE layers run a sparse dispatch
(common.sparse_moe_forward, the same function as transformers' dense one) and the loss adds a
Switch-style load-balancing term on the router logits (captured by forward hooks), because
Llama4ForCausalLM's forward computes none.

Data: documents of training/.data/corpus.jsonl (training/fetch_data.py) tokenized with the tokenizer in
--out (training/train_tokenizer.py), packed into windows of 256 (+1) tokens; each epoch reshuffles the
documents and windows with a generator seeded by (--seed, epoch).

Time budget (--minutes): after --calib-steps steps the median step time is measured and the number of
steps that fits the budget is fixed (logged: "schedule: N steps"); the LR schedule (linear warm-up,
cosine to --min-lr-ratio) is a function of the step only, so the run is the same as `--steps N` with the
same seed and threads. Every 50 steps the plan is checked against the median time of the last 50 steps;
if the machine turned out more than 3 % faster or slower (other jobs), the number of steps is re-planned
(logged as "re-plan", kept in training_info.json) and the run is no longer exactly `--steps N`.
The forward pass runs under bfloat16 autocast (about 1.8x faster on CPUs with AVX512-BF16; the weights,
the optimizer and the loss stay float32; --no-amp turns it off).
Every --ckpt-minutes it evaluates the validation loss and writes the model to --out and the resumable
state to training/.data/train_state.pt (--resume continues from it). At the end it writes the model
(weights in bf16, --dtype) with config.json, generation_config.json and training_info.json to --out.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=65.0, help="wall-clock budget of the training loop (default 65)")
    ap.add_argument("--steps", type=int, default=None, help="train exactly this many steps (overrides --minutes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=common.MODEL_DIR, help="model folder; must hold the tokenizer files")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--batch", type=int, default=16, help="sequences per step")
    ap.add_argument("--seq-len", type=int, default=common.SEQ_LEN)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--aux-coef", type=float, default=0.01, help="weight of the router load-balancing loss")
    ap.add_argument("--calib-steps", type=int, default=20)
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--no-amp", dest="amp", action="store_false",
                    help="train in plain float32 instead of bfloat16 autocast (float32 master weights either way)")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16", help="dtype of the saved weights")
    ap.add_argument("--resume", action="store_true", help="continue from training/.data/train_state.pt")
    ap.add_argument("--state", default=os.path.join(common.DATA, "train_state.pt"))
    return ap.parse_args(argv)


def log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Batches:
    """Deterministic stream of [batch, seq_len + 1] windows; position = (epoch, index in epoch)."""

    def __init__(self, docs, seq_len, batch, seed):
        self.docs, self.seq_len, self.batch, self.seed = docs, seq_len, batch, seed
        self.epoch, self.index = 0, 0
        self.windows = common.epoch_windows(docs, seq_len, seed, 0)

    def seek(self, epoch, index):
        self.epoch, self.index = epoch, index
        self.windows = common.epoch_windows(self.docs, self.seq_len, self.seed, epoch)

    def next(self) -> torch.Tensor:
        if self.index + self.batch > len(self.windows):
            self.seek(self.epoch + 1, 0)
        b = self.windows[self.index:self.index + self.batch]
        self.index += self.batch
        return torch.from_numpy(b.astype(np.int64))


@torch.no_grad()
def evaluate_loss(model, windows: np.ndarray, batch: int = 16) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        w = torch.from_numpy(windows[i:i + batch].astype(np.int64))
        logits = model(w[:, :-1], use_cache=False).logits
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), w[:, 1:].reshape(-1), reduction="sum").item()
        count += w[:, 1:].numel()
    model.train()
    return total / count


def save_model(model, tokenizer, out: str, dtype: str, info: dict | None = None):
    from transformers import GenerationConfig

    os.makedirs(out, exist_ok=True)
    target = getattr(torch, dtype)
    state = {k: v.detach().to(target).contiguous().clone() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # tied to model.embed_tokens.weight, as transformers saves it
    config = copy.deepcopy(model.config)
    config.dtype = dtype
    config.use_cache = True
    config.architectures = ["Llama4ForCausalLM"]
    config.save_pretrained(out)
    common.write_sharded(state, out)
    ids = lambda t: tokenizer.convert_tokens_to_ids(t)  # noqa: E731
    GenerationConfig(
        bos_token_id=ids("<|begin_of_text|>"),
        eos_token_id=[ids("<|end_of_text|>"), ids("<|eom|>"), ids("<|eot|>")],
        pad_token_id=ids("<|finetune_right_pad_id|>"),
        do_sample=True, temperature=0.6, top_p=0.9,
    ).save_pretrained(out)
    if info is not None:
        with open(os.path.join(out, "training_info.json"), "w") as f:
            json.dump(info, f, indent=1)
            f.write("\n")


def param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    from transformers import AutoTokenizer

    if not os.path.exists(os.path.join(args.out, "tokenizer.json")):
        sys.exit(f"{args.out}/tokenizer.json missing: run training/train_tokenizer.py --out {args.out} first")
    if not os.path.exists(common.CORPUS):
        sys.exit(f"{common.CORPUS} missing: run training/fetch_data.py first")
    tokenizer = AutoTokenizer.from_pretrained(args.out)
    train_docs = common.tokenized_docs(tokenizer, "train")
    val_docs = common.tokenized_docs(tokenizer, "val")
    val_windows = common.eval_windows(val_docs, args.seq_len)
    n_train = sum(len(d) for d in train_docs)
    log(f"data: {len(train_docs)} train documents, {n_train} tokens; {len(val_docs)} val documents, "
        f"{sum(len(d) for d in val_docs)} tokens ({len(val_windows)} windows of {args.seq_len})")

    config = common.model_config(tokenizer)
    model = common.build_model(config, args.seed)
    common.use_sparse_moe(True)
    capture = common.RouterCapture(model)
    params = common.count_params(model)
    log(f"model: {json.dumps(params)}")
    log(f"config: layers={config.num_hidden_layers} hidden={config.hidden_size} heads={config.num_attention_heads}/"
        f"{config.num_key_value_heads} experts={config.num_local_experts} top{config.num_experts_per_tok} "
        f"moe_layers={config.moe_layers} nope_layers={[i for i, r in enumerate(config.no_rope_layers) if not r]} "
        f"chunk={config.attention_chunk_size}")

    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    batches = Batches(train_docs, args.seq_len, args.batch, args.seed)
    step, tokens_seen, prior_seconds = 0, 0, 0.0
    total_steps = args.steps
    history = []
    best = {"val_loss": math.inf, "step": 0, "state": None}
    if args.resume:
        st = torch.load(args.state, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, tokens_seen, prior_seconds = st["step"], st["tokens_seen"], st["seconds"]
        total_steps = st["total_steps"] if args.steps is None else args.steps
        history = st["history"]
        best["val_loss"], best["step"] = st["best_val_loss"], st["best_step"]
        batches.seek(*st["data_position"])
        log(f"resumed at step {step} ({prior_seconds / 60:.1f} min done), total_steps={total_steps}")

    budget = args.minutes * 60.0
    t0 = time.time() - prior_seconds
    last_ckpt = time.time()
    win_loss, win_aux, win_tokens, win_t = 0.0, 0.0, 0, time.time()
    step_times: list[float] = []  # seconds of each training step (checkpoints excluded)
    calib: list[float] = []
    replans: list[dict] = []
    per_ckpt = 15.0    # seconds per periodic checkpoint, measured at calibration
    load = torch.zeros(config.num_local_experts)

    def lr_at(s):
        # short runs warm up over a tenth of their steps (a --minutes run learns its length after
        # --calib-steps steps; runs of 1000+ steps, like the full one, always use --warmup)
        warmup = args.warmup if total_steps is None else max(1, min(args.warmup, total_steps // 10))
        return common.cosine_lr(s, total_steps or 10**9, args.lr, warmup, args.min_lr_ratio)

    def checkpoint(final=False):
        nonlocal last_ckpt
        t = time.time()
        vl = evaluate_loss(model, val_windows)
        history.append({"step": step, "minutes": round((time.time() - t0) / 60, 2), "tokens": tokens_seen,
                        "val_loss": round(vl, 4), "val_ppl": round(math.exp(vl), 2)})
        if vl < best["val_loss"]:
            best.update(val_loss=vl, step=step, state={k: v.detach().clone() for k, v in model.state_dict().items()})
        info = training_info(final=False)
        save_model(model, tokenizer, args.out, args.dtype, info)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "tokens_seen": tokens_seen,
                    "seconds": time.time() - t0, "total_steps": total_steps, "history": history,
                    "best_val_loss": best["val_loss"], "best_step": best["step"],
                    "data_position": (batches.epoch, batches.index)}, args.state)
        log(f"checkpoint step {step}: val loss {vl:.4f} (ppl {math.exp(vl):.2f}), saved to {args.out} "
            f"({time.time() - t:.1f}s)")
        last_ckpt = time.time()
        return vl

    def training_info(final):
        return {
            "command": "python3 training/train.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "seed": args.seed, "threads": args.threads, "batch": args.batch, "seq_len": args.seq_len,
            "lr": args.lr, "warmup": args.warmup if total_steps is None else max(1, min(args.warmup, total_steps // 10)), "min_lr_ratio": args.min_lr_ratio,
            "weight_decay": args.weight_decay, "amp_bf16": args.amp, "grad_clip": args.grad_clip, "aux_coef": args.aux_coef,
            "steps": step, "planned_steps": total_steps, "replans": replans, "tokens_seen": tokens_seen,
            "epochs": round(tokens_seen / n_train, 2), "train_tokens": n_train,
            "minutes": round((time.time() - t0) / 60, 2), "finished": final,
            "saved_dtype": args.dtype, "params": params, "history": history,
            "best_val_step": best["step"], "best_val_loss": None if math.isinf(best["val_loss"]) else round(best["val_loss"], 4),
            "torch": torch.__version__, "transformers": __import__("transformers").__version__,
            "python": platform.python_version(), "machine": platform.machine(),
        }

    model.train()
    while True:
        if total_steps is not None and step >= total_steps:
            break
        elapsed = time.time() - t0
        if args.steps is None and elapsed > budget * 1.02:
            log(f"time budget exhausted at step {step} (planned {total_steps}); stopping early")
            break
        t_step = time.time()
        lr = lr_at(step)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = batches.next()
        capture.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp):
            logits = model(batch[:, :-1], use_cache=False).logits
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        aux = common.load_balancing_loss(capture.logits, config.num_experts_per_tok)
        loss = ce + args.aux_coef * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        with torch.no_grad():
            for lg in capture.logits:
                load += torch.bincount(lg.argmax(-1), minlength=config.num_local_experts).float()
        step += 1
        step_times.append(time.time() - t_step)
        tokens_seen += batch[:, 1:].numel()
        win_loss += ce.item()
        win_aux += aux.item()
        win_tokens += batch[:, 1:].numel()

        # plan the number of steps from the measured speed (median step time: robust to short disturbances)
        if args.steps is None:
            if step > 3 and total_steps is None:
                calib.append(step_times[-1])
            if total_steps is None and len(calib) >= args.calib_steps:
                per_step = float(np.median(calib))
                t_ckpt = time.time()
                checkpoint()  # an early data point, and the measured cost of the periodic checkpoints
                per_ckpt = time.time() - t_ckpt
                remaining = budget - (time.time() - t0)
                n_ckpt = int(remaining / (args.ckpt_minutes * 60))
                total_steps = step + max(1, int((remaining - n_ckpt * per_ckpt) / per_step))
                log(f"schedule: {total_steps} steps ({per_step:.2f}s/step, {args.batch * args.seq_len / per_step:.0f} tok/s, "
                    f"{n_ckpt} checkpoints of {per_ckpt:.0f}s); equivalent to --steps {total_steps}")
            elif total_steps is not None and step % 50 == 0 and step > 3 + args.calib_steps and step < total_steps - 50:
                # re-plan (either way) when the machine turned out faster or slower than measured
                rate = float(np.median(step_times[-50:]))
                elapsed = time.time() - t0
                ckpts_left = int(max(0.0, budget - elapsed) / (args.ckpt_minutes * 60))
                new_total = step + max(1, int((budget - elapsed - ckpts_left * per_ckpt) / rate))
                if abs(new_total - total_steps) > 0.03 * total_steps:
                    log(f"re-plan: {rate:.2f}s/step now; {total_steps} -> {new_total} steps (the LR schedule follows)")
                    total_steps = new_total
                    replans.append({"step": step, "total_steps": new_total})

        if step % args.log_every == 0:
            dt = time.time() - win_t
            share = (load / load.sum()).tolist()
            log(f"step {step}/{total_steps or '?'} epoch {tokens_seen / n_train:.2f} loss {win_loss / args.log_every:.4f} "
                f"aux {win_aux / args.log_every:.3f} lr {lr:.2e} {win_tokens / dt:.0f} tok/s "
                f"{(time.time() - t0) / 60:.1f} min experts [{' '.join(f'{s:.2f}' for s in share)}]")
            win_loss, win_aux, win_tokens, win_t = 0.0, 0.0, 0, time.time()
            load.zero_()
        if time.time() - last_ckpt > args.ckpt_minutes * 60 and (total_steps is None or step < total_steps * 0.97):
            checkpoint()

    final_val = checkpoint()
    if best["state"] is not None and best["val_loss"] < final_val - 1e-4:
        log(f"the best validation loss was at step {best['step']} ({best['val_loss']:.4f} < {final_val:.4f}): saving that one")
        model.load_state_dict(best["state"])
    info = training_info(final=True)
    save_model(model, tokenizer, args.out, args.dtype, info)
    log(f"done: {step} steps, {tokens_seen} tokens ({tokens_seen / n_train:.2f} epochs) in {info['minutes']:.1f} min; "
        f"val loss {min(final_val, best['val_loss']):.4f}; model in {args.out}")


if __name__ == "__main__":
    main()
