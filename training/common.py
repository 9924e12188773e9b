"""Shared pieces of the training/ scripts: the model configuration, loading the text model from either
checkpoint layout, the sharded safetensors writer, the corpus tokenization (cached in training/.data/),
a sparse MoE forward for training, the router load-balancing loss and the token classes used to measure
expert specialisation."""
from __future__ import annotations

import hashlib
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(HERE, ".data")
CORPUS = os.path.join(DATA, "corpus.jsonl")
MODEL_DIR = os.path.join(ROOT, "models", "llama4-tiny")

SEQ_LEN = 256


def model_config(tokenizer, **overrides):
    """The Llama4TextConfig of the embedded model: every Llama 4 text feature switched on at a tiny size."""
    from transformers import Llama4TextConfig

    special = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|begin_of_text|>", "<|end_of_text|>", "<|eom|>", "<|eot|>", "<|finetune_right_pad_id|>")}
    kw = dict(
        vocab_size=len(tokenizer),
        hidden_size=256,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,          # GQA, 4 query heads per KV head
        head_dim=32,
        intermediate_size=256,          # each routed expert and the shared expert
        intermediate_size_mlp=1024,     # the dense layers
        num_local_experts=8,
        num_experts_per_tok=1,          # top-1 routing + the always-on shared expert
        interleave_moe_layer_step=2,    # dense / MoE interleaved like Maverick: MoE at layers 1, 3, 5, 7
        no_rope_layer_interval=4,       # NoPE (and full attention) at layers 3 and 7
        attention_chunk_size=128,       # chunked attention on the RoPE layers; training windows are 256
        use_qk_norm=True,
        attn_temperature_tuning=True,
        floor_scale=32,
        attn_scale=0.1,
        max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        tie_word_embeddings=True,
        router_aux_loss_coef=0.01,
        bos_token_id=special["<|begin_of_text|>"],
        eos_token_id=[special["<|end_of_text|>"], special["<|eom|>"], special["<|eot|>"]],
        pad_token_id=special["<|finetune_right_pad_id|>"],
    )
    kw.update(overrides)
    return Llama4TextConfig(**kw)


def build_model(config, seed: int):
    from transformers import Llama4ForCausalLM

    torch.manual_seed(seed)
    model = Llama4ForCausalLM(config)
    model.config.use_cache = True
    return model


def is_multimodal(model_dir: str) -> bool:
    """True for the Llama4ForConditionalGeneration layout (config.json with text_config + vision_config)."""
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        return json.load(f).get("model_type") == "llama4"


def load_text_model(model_dir: str, dtype=torch.float32):
    """The Llama4ForCausalLM of a folder in either layout: model.* (text only) or language_model.model.*
    (with the vision tower, whose text model is taken out of it)."""
    from transformers import Llama4ForCausalLM, Llama4ForConditionalGeneration

    if is_multimodal(model_dir):
        return Llama4ForConditionalGeneration.from_pretrained(model_dir, dtype=dtype).language_model
    return Llama4ForCausalLM.from_pretrained(model_dir, dtype=dtype)


def allow_multimodal_forward():
    """transformers 5.24's Llama4ForConditionalGeneration.forward ends by reading `image_outputs` from the
    language model's output, which has no such field, so every multimodal forward and generate() fails after
    computing the logits; an empty class attribute lets them finish (as test/fixtures/make_multimodal_goldens.py does)."""
    from transformers.modeling_outputs import MoeCausalLMOutputWithPast

    MoeCausalLMOutputWithPast.image_outputs = None


SHARD_BYTES = 16 * 1024 * 1024  # shards stay well under the repository's 25 MiB per-file limit


def write_sharded(state: dict, out: str) -> None:
    """Writes model-0000k-of-0000n.safetensors + model.safetensors.index.json, the Hub's sharded layout."""
    from safetensors.torch import save_file

    shards, current, size = [], {}, 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensor
        size += nbytes
    shards.append(current)
    for old in os.listdir(out):
        if old.startswith("model") and (old.endswith(".safetensors") or old.endswith(".safetensors.index.json")):
            os.remove(os.path.join(out, old))
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tmp = os.path.join(out, file + ".tmp")
        save_file(shard, tmp, metadata={"format": "pt"})
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(out, file))
        weight_map.update({name: file for name in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")


def count_params(model) -> dict:
    total = sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    cfg = model.config
    experts = 0
    for layer in model.model.layers:
        if getattr(layer, "is_moe_layer", False):
            experts += sum(p.numel() for p in layer.feed_forward.experts.parameters())
    n_moe = sum(1 for layer in model.model.layers if getattr(layer, "is_moe_layer", False))
    per_expert = 3 * cfg.hidden_size * cfg.intermediate_size
    active = total - experts + n_moe * cfg.num_experts_per_tok * per_expert
    embed = cfg.vocab_size * cfg.hidden_size
    return {"total": total, "embedding": embed, "non_embedding": total - embed, "active_per_token": active}


# ------------------------------------------------------------------ data

def load_docs(split: str) -> list[dict]:
    with open(CORPUS, encoding="utf-8") as f:
        return [d for d in (json.loads(line) for line in f) if d["split"] == split]


def encode_doc(tokenizer, doc: dict) -> list[int]:
    """prose: <|begin_of_text|> text <|end_of_text|>; chat: the chat template (it starts with <|begin_of_text|>
    and each turn ends with <|eot|>)."""
    if doc["kind"] == "prose":
        return tokenizer(doc["text"]).input_ids + [tokenizer.convert_tokens_to_ids("<|end_of_text|>")]
    out = tokenizer.apply_chat_template(doc["messages"], tokenize=True, add_generation_prompt=False)
    return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)


def tokenized_docs(tokenizer, split: str) -> list[np.ndarray]:
    """Token ids of every document of a split, cached by the corpus + tokenizer contents."""
    h = hashlib.sha256()
    for path in (CORPUS, os.path.join(tokenizer.name_or_path, "tokenizer.json"), os.path.join(tokenizer.name_or_path, "chat_template.jinja")):
        with open(path, "rb") as f:
            h.update(f.read())
    cache = os.path.join(DATA, f"tokens-{split}-{h.hexdigest()[:16]}.npz")
    if os.path.exists(cache):
        z = np.load(cache)
        flat, offsets = z["flat"], z["offsets"]
        return [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    docs = [np.asarray(encode_doc(tokenizer, d), dtype=np.int32) for d in load_docs(split)]
    offsets = np.cumsum([0] + [len(d) for d in docs])
    np.savez(cache, flat=np.concatenate(docs), offsets=offsets)
    return docs


def epoch_windows(docs: list[np.ndarray], seq_len: int, seed: int, epoch: int) -> np.ndarray:
    """The training windows of one epoch, [n, seq_len + 1]: documents shuffled (seeded by seed and
    epoch), concatenated, cut at a seeded offset into non-overlapping windows, windows shuffled."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(docs))
    stream = np.concatenate([docs[i] for i in order])
    start = int(rng.integers(0, seq_len))
    n = (len(stream) - start) // (seq_len + 1)
    windows = stream[start:start + n * (seq_len + 1)].reshape(n, seq_len + 1)
    return windows[rng.permutation(n)]


def eval_windows(docs: list[np.ndarray], seq_len: int) -> np.ndarray:
    """Validation windows: documents in corpus order, concatenated, cut into [n, seq_len + 1] (no overlap;
    the last partial window is dropped)."""
    stream = np.concatenate(docs)
    n = (len(stream) - 1) // seq_len
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return stream[idx]


# ------------------------------------------------------------------ sparse MoE (training speed)

def sparse_moe_forward(self, hidden_states):
    """Llama4TextMoe.forward computing each routed expert only on the tokens routed to it.

    transformers' forward runs every expert on every token with the unselected ones' inputs scaled by
    sigmoid(-inf) = 0, so their outputs (and gradients) are exactly zero: this is the same function,
    8x cheaper with 8 experts. The router is still called as a module so output_router_logits works."""
    hidden_dim = self.hidden_dim
    x = hidden_states.reshape(-1, hidden_dim)
    router_scores, router_logits = self.router(x)          # scores: [T, E], sigmoid(top-k logits), 0 elsewhere
    top_idx = torch.topk(router_logits, self.top_k, dim=1).indices    # [T, k]
    out = self.shared_expert(x)
    experts = self.experts
    flat_expert = top_idx.reshape(-1)
    flat_token = torch.arange(x.shape[0], device=x.device).repeat_interleave(self.top_k)
    order = torch.argsort(flat_expert, stable=True)
    counts = torch.bincount(flat_expert, minlength=self.num_experts).tolist()
    tokens_sorted = flat_token[order]
    gates_sorted = router_scores.gather(1, top_idx).reshape(-1)[order]
    start = 0
    for e, c in enumerate(counts):
        if c == 0:
            continue
        tok = tokens_sorted[start:start + c]
        xe = x.index_select(0, tok) * gates_sorted[start:start + c, None].to(x.dtype)
        gate, up = (xe @ experts.gate_up_proj[e]).chunk(2, dim=-1)
        ye = (up * experts.act_fn(gate)) @ experts.down_proj[e]
        out = out.index_add(0, tok, ye)
        start += c
    return out, router_logits


def use_sparse_moe(enable: bool = True):
    from transformers.models.llama4 import modeling_llama4 as m

    if not hasattr(m.Llama4TextMoe, "_dense_forward"):
        m.Llama4TextMoe._dense_forward = m.Llama4TextMoe.forward
    m.Llama4TextMoe.forward = sparse_moe_forward if enable else m.Llama4TextMoe._dense_forward


class RouterCapture:
    """Forward hooks on every Llama4Router: keeps the router logits of the last forward pass."""

    def __init__(self, model):
        from transformers.models.llama4.modeling_llama4 import Llama4Router

        self.logits: list[torch.Tensor] = []
        self.handles = [mod.register_forward_hook(self._hook) for mod in model.modules() if isinstance(mod, Llama4Router)]

    def _hook(self, module, inputs, output):
        self.logits.append(output[1])

    def clear(self):
        self.logits = []

    def remove(self):
        for h in self.handles:
            h.remove()


def load_balancing_loss(router_logits: list[torch.Tensor], top_k: int) -> torch.Tensor:
    """Switch-Transformer auxiliary loss, averaged over MoE layers: E * sum_e f_e * P_e, where f_e is the
    fraction of tokens whose top-k includes expert e and P_e the mean softmax probability of e. Equals 1
    (times top_k) for a perfectly uniform router and grows as routing collapses."""
    losses = []
    for logits in router_logits:
        logits = logits.float()
        n_exp = logits.shape[-1]
        probs = F.softmax(logits, dim=-1)
        top = torch.topk(logits, top_k, dim=-1).indices
        mask = F.one_hot(top, n_exp).sum(1).float()
        f = mask.mean(0)
        p = probs.mean(0)
        losses.append(n_exp * (f * p).sum())
    return torch.stack(losses).mean()


# ------------------------------------------------------------------ token classes

TOKEN_CLASSES = ["punctuation", "digit", "word-start", "other"]


def token_class(token: str) -> int:
    """Class of a token from its string (byte-level 'Ġ' = leading space, 'Ċ' = newline):
    punctuation: only punctuation/symbols (after an optional leading space/newline); digit: contains a
    digit; word-start: a leading space followed by a letter, or a capitalised token; other: the rest
    (word continuations, whitespace, special tokens)."""
    if token.startswith("<|") and token.endswith("|>"):
        return 3
    s = token.replace("Ġ", " ").replace("Ċ", "\n").replace("ĉ", "\t")
    core = s.strip()
    if core and any(ch.isdigit() for ch in core):
        return 1
    if core and all(not ch.isalnum() for ch in core):
        return 0
    if s[:1] == " " and s[1:2].isalpha():
        return 2
    if s[:1].isupper():
        return 2
    return 3


def mutual_information(a: np.ndarray, b: np.ndarray, na: int, nb: int) -> tuple[float, float, float]:
    """I(A;B) in bits from paired samples, and the entropies H(A), H(B)."""
    joint = np.zeros((na, nb), dtype=np.float64)
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)

    def H(p):
        p = p[p > 0]
        return float(-(p * np.log2(p)).sum())

    mi = H(pa) + H(pb) - H(joint.reshape(-1))
    return max(mi, 0.0), H(pa), H(pb)


class Timer:
    def __init__(self):
        self.t0 = time.time()

    def __call__(self) -> float:
        return time.time() - self.t0


def cosine_lr(step: int, total: int, peak: float, warmup: int, floor: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor * peak + (1 - floor) * peak * 0.5 * (1 + math.cos(math.pi * p))
