"""Synthetic pictures for the vision tower of models/llama4-tiny (training/train_vision.py): one or two
coloured shapes on a plain background, drawn with Pillow from a seeded generator, and the chat that asks
about them and answers with a caption ("A red circle on a white ground.", the painter's word for a
background).

A scene is a function of (seed, index) only, so the training stream and the held-out set are reproducible
and never overlap (they use different seeds)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# Every colour and shape name, and "ground", is one token of the model's vocabulary: the frozen language
# model, steered only by the image features, broke words of several tokens ("s|quare", "back|gr|ound")
# into nonsense far more often than it missed a one-token word.
COLOURS = {
    "red": (215, 35, 35),
    "green": (40, 160, 60),
    "blue": (35, 75, 210),
    "gold": (235, 190, 40),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
}
# Plain backgrounds (never a shape's colour): the picture's colour is then that of its shapes, which the
# tower can see in any patch; on coloured backgrounds it had to learn which colour is the shape's, and did not.
BACKGROUNDS = {"white": COLOURS["white"], "black": COLOURS["black"]}
SHAPES = ["circle", "star", "heart", "cross"]
QUESTIONS = ["What is in this picture?", "Describe this image.", "What colour is the shape?"]
# Width:height of the picture; the wide and tall ones make the image processor cut several tiles.
ASPECTS = [(1, 1), (4, 3), (3, 4), (2, 1), (1, 2), (3, 1), (1, 3)]
TWO_SHAPES_SHARE = 0.25
COLOUR_JITTER = 20  # per channel, so the tower learns colour names rather than exact RGB values


@dataclass
class Shape:
    colour: str
    kind: str
    centre: tuple[float, float]
    radius: float  # half the size of the shape's bounding box
    rgb: tuple[int, int, int]


@dataclass
class Scene:
    width: int
    height: int
    background: str
    background_rgb: tuple[int, int, int]
    shapes: list[Shape]  # in reading order (left to right, or top to bottom in a tall picture)


def jitter(rgb, rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1), 0, 255)) for c in rgb)


def random_scene(seed: int, index: int, min_side: int = 40, max_side: int = 400) -> Scene:
    """The index-th picture of the stream seeded by seed; its short side is at least min_side pixels."""
    rng = np.random.default_rng([seed, index])
    aw, ah = ASPECTS[rng.integers(len(ASPECTS))]
    long_side = int(rng.integers(max(2 * min_side, min_side * max(aw, ah) // min(aw, ah)), max_side + 1))
    scale = long_side / max(aw, ah)
    width, height = max(16, round(aw * scale)), max(16, round(ah * scale))
    n = 2 if rng.random() < TWO_SHAPES_SHARE else 1
    background = str(rng.choice(list(BACKGROUNDS)))
    colours = [str(c) for c in rng.choice([c for c in COLOURS if c != background], size=n, replace=True)]
    kinds = [str(k) for k in rng.choice(SHAPES, size=n, replace=True)]
    if n == 2 and colours[0] == colours[1] and kinds[0] == kinds[1]:
        kinds[1] = SHAPES[(SHAPES.index(kinds[1]) + 1) % len(SHAPES)]
    # one cell per shape along the long side
    horizontal = width >= height
    cell_w, cell_h = (width / n, height) if horizontal else (width, height / n)
    shapes = []
    for i, (colour, kind) in enumerate(zip(colours, kinds)):
        radius = 0.5 * min(cell_w, cell_h) * rng.uniform(0.55, 0.9)
        x0, y0 = (i * cell_w, 0.0) if horizontal else (0.0, i * cell_h)
        cx = x0 + rng.uniform(radius, cell_w - radius)
        cy = y0 + rng.uniform(radius, cell_h - radius)
        shapes.append(Shape(colour, kind, (cx, cy), radius, jitter(COLOURS[colour], rng)))
    return Scene(width, height, background, jitter(BACKGROUNDS[background], rng), shapes)


def shape_polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if kind == "cross":  # a Greek cross, arms a third of the box wide
        a = r / 3
        return [(cx - a, cy - r), (cx + a, cy - r), (cx + a, cy - a), (cx + r, cy - a), (cx + r, cy + a), (cx + a, cy + a),
                (cx + a, cy + r), (cx - a, cy + r), (cx - a, cy + a), (cx - r, cy + a), (cx - r, cy - a), (cx - a, cy - a)]
    if kind == "heart":  # the classic parametric heart curve, scaled to the box
        points = []
        for k in range(64):
            t = 2 * math.pi * k / 64
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            points.append((cx + r * x / 17, cy - r * (y + 2.5) / 17))
        return points
    if kind == "star":
        return [(cx + (r if k % 2 == 0 else 0.42 * r) * math.cos(math.radians(90 + 36 * k)),
                 cy + 0.08 * r - (r if k % 2 == 0 else 0.42 * r) * math.sin(math.radians(90 + 36 * k))) for k in range(10)]
    raise ValueError(kind)


def draw_scene(scene: Scene) -> Image.Image:
    image = Image.new("RGB", (scene.width, scene.height), scene.background_rgb)
    draw = ImageDraw.Draw(image)
    for s in scene.shapes:
        cx, cy = s.centre
        if s.kind == "circle":
            draw.ellipse([cx - s.radius, cy - s.radius, cx + s.radius, cy + s.radius], fill=s.rgb)
        else:
            draw.polygon(shape_polygon(s.kind, cx, cy, s.radius), fill=s.rgb)
    return image


def with_article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def caption(scene: Scene) -> str:
    things = " and ".join(with_article(f"{s.colour} {s.kind}") for s in scene.shapes)
    return f"{things[0].upper()}{things[1:]} on {with_article(scene.background)} ground."


# What a picture shows, slot by slot: the first shape's colour and kind, the second's (or "none"), the background.
ATTRIBUTE_CLASSES = [list(COLOURS) + ["none"], SHAPES + ["none"], list(COLOURS) + ["none"], SHAPES + ["none"], list(BACKGROUNDS)]


def attribute_labels(scene: Scene) -> list[int]:
    first, second = scene.shapes[0], (scene.shapes[1] if len(scene.shapes) > 1 else None)
    values = [first.colour, first.kind, second.colour if second else "none", second.kind if second else "none", scene.background]
    return [classes.index(v) for classes, v in zip(ATTRIBUTE_CLASSES, values)]


def question(seed: int, index: int) -> str:
    return QUESTIONS[np.random.default_rng([seed, index, 1]).integers(len(QUESTIONS))]


def chat(image, question_text: str, answer: str | None = None) -> list[dict]:
    """The conversation as apply_chat_template takes it: the picture, then the question, in the user turn."""
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question_text}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages
