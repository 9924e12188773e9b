#!/usr/bin/env python3
"""Evaluate the trained model and write its metrics into the model card.

  python3 training/evaluate.py                      # models/llama4-tiny
  python3 training/evaluate.py --model /tmp/m --threads 1

Measures, on the held-out split of training/.data/corpus.jsonl:
  * perplexity of the trained model (the saved checkpoint as loaded by transformers, computed in float32),
    of a unigram model (training-token frequencies, add-one smoothed) and of the untrained model
    (common.build_model with the training seed: the exact initial weights of the run), overall and for
    the prose and chat documents separately, on windows of 256 tokens;
  * expert specialisation: for every MoE layer, the mutual information (bits) between the expert each
    validation token is routed to and the token's class (punctuation / digit / word-start / other,
    from the token string), trained vs untrained, plus each expert's load and majority class;
  * 5 sample generations from fixed prompts (3 prose, 2 with the chat template), sampled with a seed;
  * when the folder has a vision tower (training/train_vision.py), its held-out accuracy on synthetic
    pictures and its answers about two photos (training/evaluate_vision.py; needs torchvision);
  * optionally (--sdk, default on when node and dist/ exist) that the TypeScript SDK loads the folder and
    produces the same greedy continuation as transformers (training/check_sdk.js), and the same greedy
    answer to a picture when there is a vision tower.
The text model is read from either layout (Llama4ForCausalLM or Llama4ForConditionalGeneration).
Writes eval_results.json and README.md (from training/model_card.md) into the model folder.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import time

# Threads that wait passively: on a shared machine, spinning OpenMP threads made the vision evaluation
# many times slower whenever another process held a core (must be set before torch loads OpenMP).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402

PROSE_PROMPTS = [
    "It is a truth universally acknowledged",
    "Elizabeth could not help smiling as she",
    "The next morning the weather was fine, and",
]
CHAT_PROMPTS = [
    [{"role": "user", "content": "Good morning! How are you today?"}],
    [{"role": "user", "content": "Do you intend to go to the ball on Tuesday?"}],
]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@torch.no_grad()
def nll(model, windows: np.ndarray, batch: int, capture=None, routes=None) -> tuple[float, int]:
    """Summed next-token NLL over windows [n, L+1]; with capture, appends the routed expert of every input
    position per MoE layer to routes (list of lists of arrays)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        w = torch.from_numpy(windows[i:i + batch].astype(np.int64))
        if capture is not None:
            capture.clear()
        logits = model(w[:, :-1], use_cache=False).logits.float()
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), reduction="sum").item()
        count += w[:, 1:].numel()
        if capture is not None:
            for layer, lg in enumerate(capture.logits):
                routes[layer].append(lg.argmax(-1).numpy())
    return total, count


def perplexities(model, sets: dict, batch: int, capture=None):
    out, routes = {}, None
    if capture is not None:
        routes = [[] for _ in capture.handles]
    tot_n, tot_c = 0.0, 0
    for name, windows in sets.items():
        n, c = nll(model, windows, batch, capture, routes)
        out[name] = {"loss": n / c, "ppl": math.exp(n / c), "tokens": c}
        tot_n += n
        tot_c += c
    out["all"] = {"loss": tot_n / tot_c, "ppl": math.exp(tot_n / tot_c), "tokens": tot_c}
    if routes is not None:
        routes = [np.concatenate(r) for r in routes]
    return out, routes


def unigram(train_docs, sets: dict, vocab: int):
    counts = np.bincount(np.concatenate(train_docs), minlength=vocab).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    out, tot_n, tot_c = {}, 0.0, 0
    for name, windows in sets.items():
        targets = windows[:, 1:].reshape(-1)
        n, c = -float(logp[targets].sum()), len(targets)
        out[name] = {"loss": n / c, "ppl": math.exp(n / c), "tokens": c}
        tot_n += n
        tot_c += c
    out["all"] = {"loss": tot_n / tot_c, "ppl": math.exp(tot_n / tot_c), "tokens": tot_c}
    return out


def specialisation(routes, classes: np.ndarray, n_experts: int, moe_layers: list[int]):
    layers = []
    nc = len(common.TOKEN_CLASSES)
    for layer_idx, r in zip(moe_layers, routes):
        mi, h_expert, h_class = common.mutual_information(r, classes, n_experts, nc)
        base = np.bincount(classes, minlength=nc) / len(classes)
        experts = []
        for e in range(n_experts):
            sel = classes[r == e]
            if len(sel) == 0:
                experts.append({"expert": e, "load": 0.0, "class_shares": None, "top_class": None})
                continue
            counts = np.bincount(sel, minlength=nc)
            share = counts / len(sel)
            # lift over the class's overall share; classes with under 30 of this expert's tokens are ignored
            lift = np.where((base > 0) & (counts >= 30), share / np.maximum(base, 1e-12), 0.0)
            k = int(lift.argmax())  # the class most over-represented among this expert's tokens
            experts.append({"expert": e, "load": round(len(sel) / len(r), 4),
                            "class_shares": {c: round(float(x), 3) for c, x in zip(common.TOKEN_CLASSES, share)},
                            "top_class": common.TOKEN_CLASSES[k], "top_class_share": round(float(share[k]), 3),
                            "top_class_base": round(float(base[k]), 3)})
        layers.append({"layer": layer_idx, "mi_bits": round(mi, 4), "h_class_bits": round(h_class, 4),
                       "h_expert_bits": round(h_expert, 4), "mi_over_h_class": round(mi / h_class, 4) if h_class else 0.0,
                       "experts": experts})
    return layers


@torch.no_grad()
def samples(model, tokenizer, seed: int, max_new_tokens: int):
    out = []
    gen = dict(do_sample=True, temperature=0.6, top_p=0.9, max_new_tokens=max_new_tokens,
               pad_token_id=tokenizer.pad_token_id)
    for k, prompt in enumerate(PROSE_PROMPTS + CHAT_PROMPTS):
        if isinstance(prompt, str):
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            shown = prompt
        else:
            ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
            shown = tokenizer.decode(ids[0], skip_special_tokens=False)
        torch.manual_seed(seed + k)
        res = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **gen)
        new = res[0, ids.shape[1]:]
        out.append({"kind": "prose" if isinstance(prompt, str) else "chat", "prompt": shown,
                    "completion": tokenizer.decode(new, skip_special_tokens=False),
                    "prompt_tokens": int(ids.shape[1]), "new_tokens": int(new.shape[0])})
    return out


@torch.no_grad()
def greedy_reference(model, tokenizer, n: int = 20):
    prompt = PROSE_PROMPTS[0]
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    res = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                         pad_token_id=tokenizer.pad_token_id)
    return {"prompt": prompt, "input_ids": ids[0].tolist(), "output_ids": res[0].tolist()}


def sdk_check(model_dir: str, ref: dict):
    node = shutil.which("node")
    index = os.path.join(common.ROOT, "dist", "sdk", "index.js")
    if not node or not os.path.exists(index):
        return {"ran": False, "reason": "node or dist/sdk/index.js missing"}
    r = subprocess.run([node, os.path.join(HERE, "check_sdk.js"), model_dir, json.dumps(ref)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        return {"ran": True, "ok": False, "error": (r.stderr or r.stdout)[-2000:]}
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["ran"] = True
    return res


def fmt_ppl(x):
    return f"{x:,.2f}" if x < 1000 else f"{x:,.0f}"


def render_card(template: str, ctx: dict) -> str:
    for k, v in ctx.items():
        template = template.replace("{{" + k + "}}", str(v))
    return template


def card_context(res: dict, config, info: dict, model_dir: str) -> dict:
    p = res["perplexity"]
    rows = ["| | all | prose | chat |", "| --- | ---: | ---: | ---: |"]
    for name, key in (("trained model", "trained"), ("unigram baseline (training frequencies)", "unigram"),
                      ("untrained model (same seed)", "untrained")):
        rows.append(f"| {name} | {fmt_ppl(p[key]['all']['ppl'])} | {fmt_ppl(p[key]['prose']['ppl'])} | {fmt_ppl(p[key]['chat']['ppl'])} |")
    rows.append(f"| validation tokens | {p['trained']['all']['tokens']:,} | {p['trained']['prose']['tokens']:,} | {p['trained']['chat']['tokens']:,} |")
    ppl_table = "\n".join(rows)

    mi_rows = ["| MoE layer | MI trained (bits) | MI untrained (bits) | MI / H(class), trained | H(expert) trained / untrained (bits, max 3) |",
               "| ---: | ---: | ---: | ---: | ---: |"]
    for t, u in zip(res["specialisation"]["trained"], res["specialisation"]["untrained"]):
        mi_rows.append(f"| {t['layer']} | {t['mi_bits']:.3f} | {u['mi_bits']:.3f} | {t['mi_over_h_class']:.1%} | "
                       f"{t['h_expert_bits']:.2f} / {u['h_expert_bits']:.2f} |")
    exp_rows = ["| MoE layer | " + " | ".join(f"expert {e}" for e in range(config.num_local_experts)) + " |",
                "| ---: |" + " --- |" * config.num_local_experts]
    for t in res["specialisation"]["trained"]:
        cells = [f"{e['load']:.0%}: {e['top_class']} {e['top_class_share']:.0%} (vs {e['top_class_base']:.0%})" if e["top_class"] else "unused"
                 for e in t["experts"]]
        exp_rows.append(f"| {t['layer']} | " + " | ".join(cells) + " |")

    sample_md = []
    for i, s in enumerate(res["samples"], 1):
        sample_md.append(f"**{i}. {s['kind']}** (prompt {s['prompt_tokens']} tokens, {s['new_tokens']} generated)\n")
        sample_md.append("```text\n" + (s["prompt"] + s["completion"]).replace("```", "'''") + "\n```\n")
    sdk = res.get("sdk", {})
    if sdk.get("ran") and sdk.get("ok"):
        sdk_line = (f"The TypeScript SDK (`Llama4ForCausalLM.from_pretrained` + `AutoTokenizer.from_pretrained` on this folder) "
                    f"reproduces transformers' greedy continuation of \"{res['greedy_reference']['prompt']}\" token for token "
                    f"({len(res['greedy_reference']['output_ids']) - len(res['greedy_reference']['input_ids'])} new tokens).")
        if "image_greedy_match" in sdk:
            ref = res["vision"]["greedy_reference"]
            sdk_line += (f" With `AutoProcessor` + `Llama4ForConditionalGeneration` it makes transformers' input ids for "
                         f"`{os.path.basename(ref['image'])}` with \"{ref['question']}\" and the same greedy answer "
                         f"({len(ref['output_ids']) - len(ref['input_ids'])} new tokens).")
    elif sdk.get("ran"):
        sdk_line = "The TypeScript SDK check FAILED: " + str(sdk.get("error") or sdk)[:500]
    else:
        sdk_line = "The TypeScript SDK check did not run (" + str(sdk.get("reason", "skipped")) + ")."

    params = info.get("params") or res["params"]
    hist = info.get("history") or []
    hist_rows = ["| step | minutes | tokens | val loss | val ppl |", "| ---: | ---: | ---: | ---: | ---: |"]
    for h in hist:
        hist_rows.append(f"| {h['step']} | {h['minutes']} | {h['tokens']:,} | {h['val_loss']} | {h['val_ppl']} |")
    weights = sum(os.path.getsize(os.path.join(model_dir, f)) for f in os.listdir(model_dir)
                  if f.startswith("model") and f.endswith(".safetensors"))
    size = weights + sum(os.path.getsize(os.path.join(model_dir, f)) for f in os.listdir(model_dir)
                         if f in ("model.safetensors.index.json", "config.json", "generation_config.json", "tokenizer.json",
                                  "tokenizer_config.json", "chat_template.jinja", "preprocessor_config.json",
                                  "processor_config.json"))
    shards = sum(1 for f in os.listdir(model_dir) if f.startswith("model-") and f.endswith(".safetensors"))
    return {
        "PPL_TABLE": ppl_table,
        "MI_TABLE": "\n".join(mi_rows),
        "EXPERT_TABLE": "\n".join(exp_rows),
        "SAMPLES": "\n".join(sample_md),
        "SDK_LINE": sdk_line,
        "PARAMS_TOTAL": f"{params['total']:,}",
        "PARAMS_ACTIVE": f"{params['active_per_token']:,}",
        "PARAMS_EMBED": f"{params['embedding']:,}",
        "WEIGHTS_MB": f"{weights / 1e6:.1f}",
        "FOLDER_MB": f"{size / 1e6:.1f}",
        "SAVED_DTYPE": info.get("saved_dtype", "bfloat16"),
        "PRECISION": ("float32 weights and optimizer, forward pass under bfloat16 autocast" if info.get("amp_bf16", True)
                      else "float32 throughout"),
        "COMMAND": info.get("command", "?"),
        "STEPS": info.get("steps", "?"),
        "TOKENS_SEEN": f"{info.get('tokens_seen', 0):,}",
        "EPOCHS": info.get("epochs", "?"),
        "MINUTES": info.get("minutes", "?"),
        "THREADS": info.get("threads", "?"),
        "SEED": info.get("seed", "?"),
        "BATCH": info.get("batch", "?"),
        "SEQ_LEN": info.get("seq_len", "?"),
        "LR": info.get("lr", "?"),
        "WARMUP": info.get("warmup", "?"),
        "AUX_COEF": info.get("aux_coef", "?"),
        "WEIGHT_DECAY": info.get("weight_decay", "?"),
        "HISTORY_TABLE": "\n".join(hist_rows),
        "REPLAN_NOTE": ("" if not info.get("replans") else
                        " - except that this run re-planned its length when the machine's speed changed (" +
                        ", ".join(f"at step {r['step']} to {r['total_steps']} steps" for r in info["replans"]) + ")"),
        "TRAIN_TOKENS": f"{info.get('train_tokens', 0):,}",
        "TORCH": info.get("torch", "?"),
        "TRANSFORMERS": info.get("transformers", "?"),
        "EVAL_SECONDS": f"{res['seconds']:.0f}",
        "MOE_LAYERS": ", ".join(str(i) for i in config.moe_layers),
        "NOPE_LAYERS": ", ".join(str(i) for i, r in enumerate(config.no_rope_layers) if not r),
        "CONFIG_JSON": open(os.path.join(model_dir, "config.json"), encoding="utf-8").read().strip(),
        "N_SHARDS": {1: "one", 2: "two", 3: "three", 4: "four"}.get(shards, str(shards)),
        **vision_card_context(res.get("vision"), info.get("vision") or {}),
    }


def vision_card_context(res: dict | None, info: dict) -> dict:
    """The card's vision placeholders, from evaluate_vision's results and train_vision's training_info."""
    import vision_data

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    cfg = info.get("config", {})
    pre = info.get("preprocessor", {})
    tile = pre.get("size", {}).get("height", "?")
    ctx = {
        "VISION_TOWER": (f"ViT of {cfg.get('num_hidden_layers', '?')} layers, hidden size {cfg.get('hidden_size', '?')}, "
                         f"{cfg.get('num_attention_heads', '?')} heads, MLP {cfg.get('intermediate_size', '?')}, 2-D RoPE, "
                         f"{tile}-pixel tiles of {cfg.get('patch_size', '?')}-pixel patches; pixel shuffle "
                         f"(ratio {cfg.get('pixel_shuffle_ratio', '?')}) + MLP to {cfg.get('vision_output_dim', '?')}, "
                         f"then the projector to the language model's 256"),
        "IMAGE_TOKENS": (f"each tile ({tile} x {tile} pixels) becomes {(tile // cfg['patch_size']) ** 2 // 4 if cfg else '?'} "
                         "`<|patch|>` tokens; a picture bigger than one tile is cut into up to "
                         f"{pre.get('max_patches', '?')} tiles plus a global tile (`image_token_index` = `<|patch|>`)"),
        "VISION_PARAMS": f"{info.get('params', {}).get('vision_model', 0):,}",
        "PROJECTOR_PARAMS": f"{info.get('params', {}).get('multi_modal_projector', 0):,}",
        "TILE": tile, "MAX_PATCHES": pre.get("max_patches", "?"),
        "V_COMMAND": info.get("command", "?"),
        "V_SHAPES": ", ".join(vision_data.SHAPES), "V_N_SHAPES": len(vision_data.SHAPES),
        "V_COLOURS": ", ".join(vision_data.COLOURS), "V_N_COLOURS": len(vision_data.COLOURS),
        "V_TRAINED": f"{info.get('params', {}).get('trained', 0):,}",
        "V_STEPS": info.get("steps", "?"), "V_BATCH": info.get("batch", "?"), "V_EXAMPLES": f"{info.get('examples_seen', 0):,}",
        "V_MINUTES": info.get("minutes", "?"), "V_THREADS": info.get("threads", "?"), "V_SEED": info.get("seed", "?"),
        "V_WD": info.get("weight_decay", "?"), "V_LR": info.get("lr", "?"), "V_WARMUP": info.get("warmup", "?"),
        "V_VAL": info.get("val_examples", "?"),
        "V_RECOGNITION_STEPS": info.get("recognition_steps", "?"), "V_RECOGNITION_BATCH": info.get("recognition_batch", "?"),
        "V_PROBE_START": (info.get("recognition_history") or [{}])[0].get("probe_loss", "?"),
        "V_PROBE_END": (info.get("recognition_history") or [{}])[-1].get("probe_loss", "?"),
        "V_REPLAN_NOTE": ("" if not info.get("replans") else
                          f" (re-planned {len(info['replans'])} times as other work on the machine changed its speed)"),
    }
    hist = ["| step | minutes | conversations | held-out answer loss |", "| ---: | ---: | ---: | ---: |"]
    for h in info.get("history", []):
        best = " (saved)" if h["step"] == info.get("best_step") else ""
        hist.append(f"| {h['step']} | {h['minutes']} | {h['examples']:,} | {h['held_out_loss']}{best} |")
    ctx["V_HISTORY_TABLE"] = "\n".join(hist)
    if not res:
        return {**ctx, "V_TEST_N": 0, "V_TILES": "?", "V_TOKENS": "?", "V_ACCURACY_TABLE": "(not evaluated)", "V_EXAMPLES_TABLE": "", "V_PHOTOS_TABLE": "",
                "V_ONE_COLOUR": "?", "V_ONE_SHAPE": "?", "V_ONE_EXACT": "?"}
    acc = res["accuracy"]
    rows = ["| pictures | n | colour | shape | background | exact caption |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, key in (("all", "all"), ("one shape", "one_shape"), ("two shapes", "two_shapes")):
        a = acc[key]
        if a["n"]:
            rows.append(f"| {name} | {a['n']} | {a['colour']:.1%} | {a['shape']:.1%} | {a['background']:.1%} | {a['exact']:.1%} |")
    examples = ["| question | caption | answer |", "| --- | --- | --- |"]
    for r in res["examples"][:6] + res["errors"][:6]:
        examples.append(f"| {cell(r['question'])} | {cell(r['caption'])} | {cell(r['answer'])} |")
    photos = ["| photo | question | answer |", "| --- | --- | --- |"]
    for r in res["photos"]:
        photos.append(f"| `{r['image']}` | {cell(r['question'])} | {cell(r['answer'])} |")
    one = acc["one_shape"]
    return {**ctx, "V_TEST_N": acc["all"]["n"], "V_TILES": res["mean_tiles"], "V_TOKENS": res["mean_prompt_tokens"], "V_ACCURACY_TABLE": "\n".join(rows),
            "V_EXAMPLES_TABLE": "\n".join(examples), "V_PHOTOS_TABLE": "\n".join(photos),
            "V_ONE_COLOUR": f"{one['colour']:.0%}", "V_ONE_SHAPE": f"{one['shape']:.0%}", "V_ONE_EXACT": f"{one['exact']:.0%}"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=common.MODEL_DIR)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=common.SEQ_LEN)
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--sample-tokens", type=int, default=80)
    ap.add_argument("--no-sdk", action="store_true", help="skip the TypeScript SDK check")
    ap.add_argument("--no-card", action="store_true", help="do not write README.md")
    ap.add_argument("--no-vision", action="store_true", help="skip the vision tower's evaluation")
    ap.add_argument("--vision-examples", type=int, default=300, help="held-out synthetic pictures to answer")
    ap.add_argument("--template", default=os.path.join(HERE, "model_card.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    info_path = os.path.join(args.model, "training_info.json")
    info = json.load(open(info_path)) if os.path.exists(info_path) else {}
    seed = info.get("seed", 1234)

    val_docs = common.tokenized_docs(tokenizer, "val")
    kinds = [d["kind"] for d in common.load_docs("val")]
    sets = {k: common.eval_windows([d for d, kk in zip(val_docs, kinds) if kk == k], args.seq_len) for k in ("prose", "chat")}
    all_windows = np.concatenate([sets["prose"], sets["chat"]])
    classes_of_id = np.array([common.token_class(tokenizer.convert_ids_to_tokens(i)) for i in range(len(tokenizer))])
    input_classes = classes_of_id[all_windows[:, :-1].reshape(-1)]
    train_docs = common.tokenized_docs(tokenizer, "train")

    model = common.load_text_model(args.model)
    config = model.config
    # the sparse MoE dispatch must give transformers' (dense) results
    probe = torch.from_numpy(all_windows[:2, :-1].astype(np.int64))
    common.use_sparse_moe(False)
    with torch.no_grad():
        dense = model(probe, use_cache=False).logits
    common.use_sparse_moe(True)
    with torch.no_grad():
        sparse = model(probe, use_cache=False).logits
    diff = (dense - sparse).abs().max().item()
    log(f"sparse vs dense MoE: max |logit diff| {diff:.2e}")
    assert diff < 1e-3, diff

    res = {"model": os.path.relpath(os.path.abspath(args.model), os.path.dirname(HERE)), "seed": seed, "seq_len": args.seq_len, "params": common.count_params(model)}
    log("trained model ...")
    cap = common.RouterCapture(model)
    ppl_trained, routes_trained = perplexities(model, sets, args.batch, cap)
    cap.remove()
    log(f"trained: {json.dumps({k: round(v['ppl'], 2) for k, v in ppl_trained.items()})}")
    res["greedy_reference"] = greedy_reference(model, tokenizer)
    res["samples"] = samples(model, tokenizer, args.sample_seed, args.sample_tokens)
    for s in res["samples"]:
        log(f"sample ({s['kind']}): {s['prompt']!r} -> {s['completion']!r}")

    log("untrained model (same seed) ...")
    untrained = common.build_model(copy.deepcopy(config), seed)
    cap = common.RouterCapture(untrained)
    ppl_untrained, routes_untrained = perplexities(untrained, sets, args.batch, cap)
    cap.remove()
    del untrained
    log(f"untrained: {json.dumps({k: round(v['ppl'], 2) for k, v in ppl_untrained.items()})}")
    ppl_unigram = unigram(train_docs, sets, len(tokenizer))
    log(f"unigram: {json.dumps({k: round(v['ppl'], 2) for k, v in ppl_unigram.items()})}")
    res["perplexity"] = {"trained": ppl_trained, "unigram": ppl_unigram, "untrained": ppl_untrained}

    res["specialisation"] = {
        "classes": common.TOKEN_CLASSES,
        "class_shares": {c: round(float((input_classes == i).mean()), 4) for i, c in enumerate(common.TOKEN_CLASSES)},
        "trained": specialisation(routes_trained, input_classes, config.num_local_experts, config.moe_layers),
        "untrained": specialisation(routes_untrained, input_classes, config.num_local_experts, config.moe_layers),
    }
    for t, u in zip(res["specialisation"]["trained"], res["specialisation"]["untrained"]):
        log(f"layer {t['layer']}: MI(expert; class) trained {t['mi_bits']:.3f} bits, untrained {u['mi_bits']:.3f} bits; "
            f"H(expert) {t['h_expert_bits']:.2f} / {u['h_expert_bits']:.2f}")

    if common.is_multimodal(args.model) and not args.no_vision:
        import evaluate_vision

        log("vision tower ...")
        res["vision"] = evaluate_vision.evaluate_vision(args.model, args.vision_examples, log=log)

    if not args.no_sdk:
        log("TypeScript SDK check ...")
        ref = dict(res["greedy_reference"])
        if "vision" in res:
            ref["image"] = res["vision"]["greedy_reference"]
        res["sdk"] = sdk_check(args.model, ref)
        log(f"sdk: {json.dumps(res['sdk'])[:400]}")
    res["seconds"] = time.time() - t0
    with open(os.path.join(args.model, "eval_results.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    if not args.no_card:
        with open(args.template, encoding="utf-8") as f:
            card = render_card(f.read(), card_context(res, config, info, args.model))
        with open(os.path.join(args.model, "README.md"), "w", encoding="utf-8") as f:
            f.write(card)
        log(f"wrote {args.model}/README.md")
    log(f"done in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
