#!/usr/bin/env python3
"""Evaluate the vision tower of models/llama4-tiny (training/train_vision.py) with transformers.

  PYTHONPATH=<torchvision> python3 training/evaluate_vision.py [--model DIR] [--examples 300]

Greedy answers (transformers' Llama4ForConditionalGeneration.generate, float32 on the bf16 checkpoint)
to held-out synthetic pictures: a seed the training never drew from (training_info.json's vision.test_seed),
each with one of the training questions. An answer is parsed for the colour and shape words before
"on a <colour> ground" and for that background; reported: the shapes' colours named correctly (all, in
order), their kinds likewise, the background, and the exact caption, overall and for pictures with one and
with two shapes. Also the answers for the
two real photos in test/fixtures/images (out of distribution: the tower has only seen synthetic shapes).
training/evaluate.py runs this as part of the model card; alone, it prints the results as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
import vision_data  # noqa: E402

IMAGES = os.path.join(common.ROOT, "test", "fixtures", "images")
PHOTOS = ["dog.jpg", "pasta.jpeg"]
PHOTO_QUESTIONS = ["What is in this picture?", "What colour is the shape?"]
COLOUR = re.compile(r"\b(" + "|".join(vision_data.COLOURS) + r")\b")
SHAPE = re.compile(r"\b(" + "|".join(vision_data.SHAPES) + r")\b")
BACKGROUND = re.compile(r"\bon an? (" + "|".join(vision_data.BACKGROUNDS) + r") ground\b")


def parse_answer(text: str) -> dict:
    """The colour and shape words before "on a ... ground" (or in the whole answer without one), in order,
    and the background's colour."""
    background = BACKGROUND.search(text)
    things = text[:background.start()] if background else text
    return {"colours": COLOUR.findall(things), "shapes": SHAPE.findall(things),
            "background": background.group(1) if background else None}


@torch.no_grad()
def answer(model, processor, image, question: str, max_new_tokens: int) -> tuple[str, dict]:
    """The greedy answer, and the size of the prompt (tiles, tokens)."""
    inputs = processor.apply_chat_template(vision_data.chat(image, question), add_generation_prompt=True, tokenize=True,
                                           return_dict=True, return_tensors="pt")
    inputs["pixel_values"] = inputs["pixel_values"].float()  # the processor's bf16 values into the float32 model
    out = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
    text = processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    return text, {"tiles": int(inputs["pixel_values"].shape[0]), "prompt_tokens": int(inputs["input_ids"].shape[1])}


@torch.no_grad()
def greedy_reference(model, processor, image: str = "dog.jpg", question: str = PHOTO_QUESTIONS[0], n: int = 20) -> dict:
    """transformers' greedy n tokens for a photo, for training/check_sdk.js to compare with the TypeScript SDK."""
    inputs = processor.apply_chat_template(vision_data.chat(os.path.join(IMAGES, image), question), add_generation_prompt=True,
                                           tokenize=True, return_dict=True, return_tensors="pt")
    inputs["pixel_values"] = inputs["pixel_values"].float()
    out = model.generate(**inputs, do_sample=False, max_new_tokens=n, min_new_tokens=n)
    return {"image": os.path.relpath(os.path.join(IMAGES, image), common.ROOT), "question": question,
            "input_ids": inputs["input_ids"][0].tolist(), "output_ids": out[0].tolist()}


def rate(records: list[dict]) -> dict:
    n = len(records)
    if n == 0:
        return {"n": 0}
    return {"n": n, **{k: round(sum(r[k] for r in records) / n, 4) for k in ("colour", "shape", "background", "exact")}}


def evaluate_vision(model_dir: str, examples: int = 300, max_new_tokens: int = 24, log=print) -> dict:
    from transformers import AutoProcessor, Llama4ForConditionalGeneration

    common.allow_multimodal_forward()
    info_path = os.path.join(model_dir, "training_info.json")
    vision_info = (json.load(open(info_path)) if os.path.exists(info_path) else {}).get("vision", {})
    test_seed = vision_info.get("test_seed", 1234 + 2)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = Llama4ForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    t0 = time.time()
    records = []
    for i in range(examples):
        scene = vision_data.random_scene(test_seed, i)
        question = vision_data.question(test_seed, i)
        text, size = answer(model, processor, vision_data.draw_scene(scene), question, max_new_tokens)
        got = parse_answer(text)
        want = vision_data.caption(scene)
        records.append({
            "shapes": len(scene.shapes), **size, "question": question, "caption": want, "answer": text,
            "colour": got["colours"] == [s.colour for s in scene.shapes],
            "shape": got["shapes"] == [s.kind for s in scene.shapes],
            "background": got["background"] == scene.background,
            "exact": text == want,
        })
    accuracy = {"all": rate(records), "one_shape": rate([r for r in records if r["shapes"] == 1]),
                "two_shapes": rate([r for r in records if r["shapes"] == 2])}
    log(f"held-out synthetic pictures ({examples}, {time.time() - t0:.0f}s): {json.dumps(accuracy)}")
    photos = []
    for name in PHOTOS:
        for question in PHOTO_QUESTIONS:
            text, _ = answer(model, processor, os.path.join(IMAGES, name), question, max_new_tokens)
            photos.append({"image": name, "question": question, "answer": text})
            log(f"{name} / {question!r} -> {text!r}")
    return {"test_seed": test_seed, "max_new_tokens": max_new_tokens, "accuracy": accuracy,
            "mean_tiles": round(sum(r["tiles"] for r in records) / len(records), 2),
            "mean_prompt_tokens": round(sum(r["prompt_tokens"] for r in records) / len(records), 1),
            "examples": records[:12], "errors": [r for r in records if not r["exact"]][:12], "photos": photos,
            "greedy_reference": greedy_reference(model, processor)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=common.MODEL_DIR)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--examples", type=int, default=300)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(evaluate_vision(args.model, args.examples, log=lambda m: print(m, file=sys.stderr)), indent=1))


if __name__ == "__main__":
    main()
