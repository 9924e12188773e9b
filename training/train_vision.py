#!/usr/bin/env python3
"""Give the embedded model (models/llama4-tiny) a small vision tower, trained on synthetic pictures.

  PYTHONPATH=<torchvision> python3 training/train_vision.py --minutes 25 --threads 2
  python3 training/train_vision.py --steps 20 --recognition-steps 20 --threads 1 --out /tmp/m   # a short deterministic run

Loads the text model of --model (either layout: Llama4ForCausalLM's model.* or the multimodal
language_model.model.*, so the script can be re-run on its own output), builds transformers'
Llama4ForConditionalGeneration around it with a small vision config (VISION_CONFIG), copies the text
weights in and trains only vision_model + multi_modal_projector: the language model is frozen, and the
saved text weights are checked to be bit-identical to the ones loaded.

Data (training/vision_data.py): pictures of one or two coloured shapes on a plain background, drawn on the
fly from a seeded generator, in the chat "<|image|>" + a question -> a caption ("A red circle on a white
ground."), through transformers' Llama4Processor (Llama4ImageProcessorFast, which needs torchvision:
put it on PYTHONPATH if it is not installed) and the model's chat template.

Two phases. First (--recognition-steps) the tower learns to see: the vision tower alone, with a linear
probe (AttributeProbe, thrown away afterwards) that reads the shapes' colours and kinds and the background
from its output. Then the whole model: the loss is the cross-entropy of the assistant's tokens only (the
caption and its <|eot|>) plus the probe's loss. Trained through the frozen language model alone, the tower
learnt to recognise nothing in 25 minutes (the answer loss stalled near 2.9 and no colour was named).

Time budget (--minutes): after --calib-steps steps the median step time fixes the number of steps (logged
as "schedule: N steps"; the LR schedule is a function of the step, so the run equals `--steps N`). Every
50 steps the plan is checked against the mean time of the last 50 steps and re-planned (logged as
"re-plan", kept in training_info.json) when the machine turned out more than 5 % slower or faster. Every
--eval-minutes the answer loss on held-out pictures (another seed) is measured and the best state is kept;
at the end the best one is saved to --out: bf16 safetensors shards, config.json (Llama4Config), generation_config.json,
preprocessor_config.json, processor_config.json and a "vision" section in training_info.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time

# Threads that wait passively: on a shared machine, spinning OpenMP threads made steps 20x slower
# whenever another process held one of the cores (must be set before torch loads its OpenMP runtime).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
import vision_data  # noqa: E402

# Llama4VisionMLP2 needs intermediate_size = hidden_size / pixel_shuffle_ratio**2, and the projector
# dimensions equal to vision_output_dim. 112-pixel tiles of 14-pixel patches: 8 x 8 patches, 16 image
# tokens per tile after the pixel shuffle.
VISION_CONFIG = dict(
    hidden_size=128, num_hidden_layers=3, num_attention_heads=4, intermediate_size=512,
    image_size=112, patch_size=14, pixel_shuffle_ratio=0.5,
    vision_output_dim=256, projector_input_dim=256, projector_output_dim=256,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
)
# The processor files as Meta's repos have them, sized for this vision tower.
PREPROCESSOR = {
    "image_processor_type": "Llama4ImageProcessorFast", "processor_class": "Llama4Processor",
    "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "rescale_factor": 1 / 255, "resample": 2,
    "max_patches": 4, "resize_to_max_canvas": False, "size": {"height": 112, "width": 112},
}
PROCESSOR = {"fake_image_token": "<|image|>", "image_token": "<|image|>", "patch_size": 14, "processor_class": "Llama4Processor"}
VAL_SEED_OFFSET = 1          # held-out pictures for checkpoint selection
TEST_SEED_OFFSET = 2         # held-out pictures for training/evaluate_vision.py
RECOGNITION_SEED_OFFSET = 3  # pictures of the recognition warm-up


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=25.0, help="wall-clock budget of both phases (default 25)")
    ap.add_argument("--steps", type=int, default=None, help="train exactly this many steps (overrides --minutes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=common.MODEL_DIR, help="folder with the trained text model and the tokenizer")
    ap.add_argument("--out", default=None, help="where to save (default: --model)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--batch", type=int, default=4, help="conversations per step (small: more steps in the budget "
                    "trained faster than larger batches in equal time)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--probe-coef", type=float, default=1.0, help="weight of the attribute probe's loss (AttributeProbe)")
    ap.add_argument("--recognition-steps", type=int, default=1200,
                    help="steps of the warm-up that trains the tower on the probe's loss alone (part of --minutes)")
    ap.add_argument("--recognition-batch", type=int, default=16)
    ap.add_argument("--calib-steps", type=int, default=10)
    ap.add_argument("--eval-minutes", type=float, default=3.0)
    ap.add_argument("--val-examples", type=int, default=96)
    ap.add_argument("--log-every", type=int, default=10)
    return ap.parse_args(argv)


def log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_processor_files(out: str):
    for name, content in (("preprocessor_config.json", PREPROCESSOR), ("processor_config.json", PROCESSOR)):
        with open(os.path.join(out, name), "w") as f:
            json.dump(content, f, indent=2)
            f.write("\n")


def encode(processor, seed: int, index: int) -> dict:
    """One training conversation: input ids, labels (-100 except the answer and its <|eot|>), pixel values, and
    what the picture shows (for the probe)."""
    scene = vision_data.random_scene(seed, index)
    answer = vision_data.caption(scene)
    messages = vision_data.chat(vision_data.draw_scene(scene), vision_data.question(seed, index), answer)
    enc = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    ids = enc["input_ids"][0]
    answer_ids = processor.tokenizer(answer + "<|eot|>", add_special_tokens=False)["input_ids"]
    # the template ends the conversation with exactly these tokens (checked: a merge across the boundary
    # would put the loss on the wrong tokens)
    assert ids[-len(answer_ids):].tolist() == answer_ids, (index, answer)
    labels = torch.full_like(ids, -100)
    labels[-len(answer_ids):] = ids[-len(answer_ids):]
    return {"input_ids": ids, "labels": labels, "pixel_values": enc["pixel_values"].float(),
            "attributes": torch.tensor(vision_data.attribute_labels(scene))}


def collate(examples: list[dict], pad_id: int) -> dict:
    """Right padding: causal attention never lets a real token see the padding after it, so no attention
    mask is needed and positions are those of the conversation alone."""
    length = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, :len(e["input_ids"])] = e["input_ids"]
        labels[i, :len(e["labels"])] = e["labels"]
    # the image features fill the <|patch|> positions in row-major order, so the tiles follow the rows
    return {"input_ids": ids, "labels": labels, "pixel_values": torch.cat([e["pixel_values"] for e in examples]),
            "tiles": [len(e["pixel_values"]) for e in examples], "attributes": torch.stack([e["attributes"] for e in examples])}


def multimodal_logits(model, input_ids, pixel_values):
    """Llama4ForConditionalGeneration.forward spelled out: vision tower -> projector -> the image features
    scattered into the <|patch|> embeddings -> the language model. Returns the logits, and the vision tower's
    output [tiles, tokens per tile, vision_output_dim]."""
    features = model.get_image_features(pixel_values=pixel_values).last_hidden_state
    projected = model.multi_modal_projector(features.reshape(-1, features.shape[-1]))
    embeds = model.get_input_embeddings()(input_ids)
    mask = (input_ids == model.config.image_token_id).unsqueeze(-1)
    embeds = embeds.masked_scatter(mask, projected.to(embeds.dtype))
    return model.language_model(inputs_embeds=embeds, use_cache=False).logits, features


def answer_loss(model, batch, reduction="mean"):
    logits, features = multimodal_logits(model, batch["input_ids"], batch["pixel_values"])
    loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1),
                           ignore_index=-100, reduction=reduction)
    return loss, features


def recognition_batch(image_processor, seed: int, start: int, n: int):
    scenes = [vision_data.random_scene(seed, start + i) for i in range(n)]
    pixels = [image_processor(vision_data.draw_scene(s), return_tensors="pt")["pixel_values"].float() for s in scenes]
    return torch.cat(pixels), [len(p) for p in pixels], torch.tensor([vision_data.attribute_labels(s) for s in scenes])


def learn_to_recognise(model, probe, image_processor, args) -> list[dict]:
    """The warm-up: the vision tower and the probe alone (no language model, so about 8x more pictures per
    second), at the peak LR after a linear warm-up. Returns the probe's loss every 100 steps."""
    params = list(model.vision_model.parameters()) + list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=args.weight_decay)
    seed = args.seed + RECOGNITION_SEED_OFFSET
    history, window = [], 0.0
    for step in range(args.recognition_steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        pixels, tiles, attributes = recognition_batch(image_processor, seed, step * args.recognition_batch, args.recognition_batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = model.get_image_features(pixel_values=pixels).last_hidden_state
        loss = probe(features, tiles, attributes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
        opt.step()
        window += loss.item()
        if (step + 1) % 100 == 0:
            history.append({"step": step + 1, "probe_loss": round(window / 100, 4)})
            log(f"recognition step {step + 1}/{args.recognition_steps}: probe loss {window / 100:.4f}")
            window = 0.0
    return history


class AttributeProbe(torch.nn.Module):
    """Linear heads that read what a picture shows (vision_data.ATTRIBUTE_CLASSES) from the vision tower's
    output averaged over the picture's tiles; their mean cross-entropy is the loss. Trained with the tower
    and not saved: the probe's loss teaches the tower to recognise, the answer loss to say what it sees (a
    table of features per attribute, which needs no recognising, did learn to steer the frozen language
    model)."""

    def __init__(self, dim: int):
        super().__init__()
        self.heads = torch.nn.ModuleList(torch.nn.Linear(dim, len(c)) for c in vision_data.ATTRIBUTE_CLASSES)

    def forward(self, features, tiles: list[int], attributes):
        pooled = torch.stack([f.float().mean(dim=(0, 1)) for f in features.split(tiles)])
        return sum(F.cross_entropy(head(pooled), attributes[:, k]) for k, head in enumerate(self.heads)) / len(self.heads)


@torch.no_grad()
def held_out_loss(model, batches: list[dict]) -> float:
    model.eval()
    total = sum(answer_loss(model, b, "sum")[0].item() for b in batches)
    count = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    model.train()
    return total / count


def build_model(text_model, tokenizer, seed: int):
    """Llama4ForConditionalGeneration with the given text model's weights and a fresh (seeded) vision tower."""
    from transformers import Llama4Config, Llama4ForConditionalGeneration

    ids = tokenizer.convert_tokens_to_ids
    # the text config as saved with the text model, less where it was loaded from
    text_config = {k: v for k, v in text_model.config.to_dict().items() if k not in ("_name_or_path", "architectures")}
    text_config["dtype"] = "bfloat16"
    config = Llama4Config(
        text_config=text_config, vision_config=VISION_CONFIG,
        image_token_index=ids("<|patch|>"),  # the model puts image features at the <|patch|> tokens, as Meta's config does
        boi_token_index=ids("<|image_start|>"), eoi_token_index=ids("<|image_end|>"),
        tie_word_embeddings=text_model.config.tie_word_embeddings,
    )
    torch.manual_seed(seed)
    model = Llama4ForConditionalGeneration(config)
    model.language_model.load_state_dict(text_model.state_dict())
    model.language_model.requires_grad_(False)
    return model


def vision_param_count(model) -> dict:
    vision = sum(p.numel() for p in model.vision_model.parameters())
    projector = sum(p.numel() for p in model.multi_modal_projector.parameters())
    return {"vision_model": vision, "multi_modal_projector": projector, "trained": vision + projector}


def saved_state(model) -> dict:
    state = {k: v.detach().to(torch.bfloat16).contiguous().clone() for k, v in model.state_dict().items()}
    if model.config.text_config.tie_word_embeddings:
        state.pop("language_model.lm_head.weight", None)  # tied to the embeddings, as transformers saves it
    return state


def save(model, state: dict, text_reference: dict, source: str, out: str, info: dict):
    # the frozen text weights must leave exactly as they came in
    for name, ref in text_reference.items():
        assert torch.equal(state["language_model." + name].view(torch.int16), ref.view(torch.int16)), name
    os.makedirs(out, exist_ok=True)
    model.config.dtype = "bfloat16"
    model.config.use_cache = True
    model.config.architectures = ["Llama4ForConditionalGeneration"]
    model.config.save_pretrained(out)
    common.write_sharded(state, out)
    if os.path.abspath(source) != os.path.abspath(out):
        for name in ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            shutil.copy(os.path.join(source, name), os.path.join(out, name))
    write_processor_files(out)
    with open(os.path.join(out, "training_info.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")


def main(argv=None):
    args = parse_args(argv)
    out = args.out or args.model
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    from transformers import AutoProcessor

    text_model = common.load_text_model(args.model)
    # the bf16 text weights as saved: the output must hold exactly these
    text_reference = {k: v.detach().to(torch.bfloat16).clone() for k, v in text_model.state_dict().items()
                      if not (k == "lm_head.weight" and text_model.config.tie_word_embeddings)}
    info_path = os.path.join(args.model, "training_info.json")
    info = json.load(open(info_path)) if os.path.exists(info_path) else {}
    os.makedirs(out, exist_ok=True)
    write_processor_files(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if not os.path.exists(os.path.join(out, name)):
            shutil.copy(os.path.join(args.model, name), os.path.join(out, name))
    processor = AutoProcessor.from_pretrained(out)
    tokenizer = processor.tokenizer
    model = build_model(text_model, tokenizer, args.seed)
    del text_model
    common.use_sparse_moe(True)
    params = vision_param_count(model)
    log(f"vision config: {json.dumps(VISION_CONFIG)}; trained parameters: {json.dumps(params)}")

    val_seed = args.seed + VAL_SEED_OFFSET
    val = [encode(processor, val_seed, i) for i in range(args.val_examples)]
    val_batches = [collate(val[i:i + args.batch], tokenizer.pad_token_id) for i in range(0, len(val), args.batch)]
    log(f"held-out: {len(val)} conversations, {sum(len(e['input_ids']) for e in val) / len(val):.0f} tokens and "
        f"{sum(len(e['pixel_values']) for e in val) / len(val):.2f} tiles on average")

    probe = AttributeProbe(model.config.vision_config.vision_output_dim)
    t0 = time.time()
    recognition = learn_to_recognise(model, probe, processor.image_processor, args)
    trained = [p for p in model.parameters() if p.requires_grad] + list(probe.parameters())
    decay = [p for p in trained if p.ndim >= 2]
    no_decay = [p for p in trained if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    total_steps = args.steps
    budget = args.minutes * 60.0
    step, examples_seen, history, step_times, replans = 0, 0, [], [], []
    best = {"loss": math.inf, "step": 0, "state": None}
    last_eval = time.time()
    eval_seconds = 0.0
    window_loss, window_probe = 0.0, 0.0

    def steps_that_fit(per_step: float) -> int:
        remaining = budget - (time.time() - t0)
        evals_left = int(remaining / (args.eval_minutes * 60)) + 1
        return step + max(1, int((remaining - evals_left * eval_seconds) / per_step))

    def evaluate():
        nonlocal last_eval, eval_seconds
        t_eval = time.time()
        loss = held_out_loss(model, val_batches)
        eval_seconds = time.time() - t_eval
        history.append({"step": step, "minutes": round((time.time() - t0) / 60, 2), "examples": examples_seen,
                        "held_out_loss": round(loss, 4)})
        if loss < best["loss"]:
            best.update(loss=loss, step=step, state=saved_state(model))
        log(f"step {step}: held-out answer loss {loss:.4f} (best {best['loss']:.4f} at step {best['step']})")
        last_eval = time.time()

    evaluate()
    model.train()
    while total_steps is None or step < total_steps:
        if args.steps is None and time.time() - t0 > budget * 1.02:
            log(f"time budget exhausted at step {step} (planned {total_steps}); stopping early")
            break
        t_step = time.time()
        warmup = max(1, min(args.warmup, (total_steps or 10**9) // 10))
        lr = common.cosine_lr(step, total_steps or 10**9, args.lr, warmup, args.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = collate([encode(processor, args.seed, examples_seen + i) for i in range(args.batch)], tokenizer.pad_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, features = answer_loss(model, batch)
        probe_loss = probe(features, batch["tiles"], batch["attributes"])
        opt.zero_grad(set_to_none=True)
        (loss + args.probe_coef * probe_loss).backward()
        torch.nn.utils.clip_grad_norm_(trained, args.grad_clip)
        opt.step()
        step += 1
        examples_seen += args.batch
        step_times.append(time.time() - t_step)
        window_loss += loss.item()
        window_probe += probe_loss.item()
        if args.steps is None and total_steps is None and step == args.calib_steps + 2:
            # the first two steps are slower (allocations); the rest fix the plan
            per_step = float(np.median(step_times[2:]))
            total_steps = steps_that_fit(per_step)
            log(f"schedule: {total_steps} steps ({per_step:.2f}s/step, held-out evaluations of {eval_seconds:.0f}s); "
                f"equivalent to --steps {total_steps}")
        elif args.steps is None and total_steps is not None and step % 50 == 0 and step < total_steps - 50:
            # the mean, not the median: steps slowed by other processes are part of the throughput
            new_total = steps_that_fit(float(np.mean(step_times[-50:])))
            if abs(new_total - total_steps) > 0.05 * total_steps:
                log(f"re-plan: {np.mean(step_times[-50:]):.2f}s/step now; {total_steps} -> {new_total} steps (the LR schedule follows)")
                total_steps = new_total
                replans.append({"step": step, "total_steps": new_total})
        if step % args.log_every == 0:
            log(f"step {step}/{total_steps or '?'} loss {window_loss / args.log_every:.4f} "
                f"probe {window_probe / args.log_every:.4f} lr {lr:.2e} "
                f"{np.median(step_times[-args.log_every:]):.2f}s/step {(time.time() - t0) / 60:.1f} min")
            window_loss, window_probe = 0.0, 0.0
        if time.time() - last_eval > args.eval_minutes * 60:
            evaluate()
    if not history or history[-1]["step"] != step:
        evaluate()

    info["vision"] = {
        "command": "python3 training/train_vision.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": VISION_CONFIG, "preprocessor": {k: PREPROCESSOR[k] for k in ("size", "max_patches", "resize_to_max_canvas")},
        "params": params, "seed": args.seed, "val_seed": val_seed, "test_seed": args.seed + TEST_SEED_OFFSET,
        "threads": args.threads, "batch": args.batch, "lr": args.lr, "warmup": max(1, min(args.warmup, (total_steps or step) // 10)),
        "min_lr_ratio": args.min_lr_ratio, "weight_decay": args.weight_decay, "grad_clip": args.grad_clip,
        "probe_coef": args.probe_coef, "recognition_steps": args.recognition_steps,
        "recognition_batch": args.recognition_batch, "recognition_history": recognition,
        "steps": step, "planned_steps": total_steps, "replans": replans, "examples_seen": examples_seen,
        "minutes": round((time.time() - t0) / 60, 2), "seconds_per_step": round(float(np.median(step_times)), 3),
        "val_examples": len(val), "history": history, "best_step": best["step"], "best_held_out_loss": round(best["loss"], 4),
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "python": platform.python_version(), "machine": platform.machine(),
    }
    save(model, best["state"], text_reference, args.model, out, info)
    log(f"done: {step} steps, {examples_seen} conversations in {info['vision']['minutes']:.1f} min; best held-out "
        f"answer loss {best['loss']:.4f} at step {best['step']}; saved to {out}")


if __name__ == "__main__":
    main()
