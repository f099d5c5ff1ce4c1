"""Seeded 64x64 scenes of coloured shapes, with exact masks and GenEval-style captions.

A prompt is built from a small grammar that covers GenEval's six categories (single object, two objects, counting,
colours, position, colour attribution). A scene is drawn *for* a prompt: exactly the objects the prompt names, with
every unnamed attribute (colour, size, place, background) drawn at random. The prompt set is finite; a fixed,
seeded quarter of each category is held out (`heldout_prompts`) and never used in training (`train_prompts`).

Pure numpy: no torch, no ComfyUI.
"""

from __future__ import annotations

import dataclasses
import random
from functools import lru_cache

import numpy as np

SIZE = 64
SHAPES = ("circle", "square", "triangle")
COLORS = ("red", "green", "blue", "yellow")
#: base RGB of each colour; objects jitter around it, backgrounds stay well below its saturation
RGB = {"red": (0.90, 0.12, 0.10), "green": (0.12, 0.72, 0.15), "blue": (0.12, 0.22, 0.92),
       "yellow": (0.95, 0.88, 0.10)}
RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = {2: "two", 3: "three"}
CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
HELDOUT_FRACTION = 0.25
SPLIT_SEED = 5


@dataclasses.dataclass(frozen=True)
class Obj:
    shape: str
    color: str | None = None  # None: any colour


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A structured prompt; `text` is what the text encoder sees."""

    category: str
    objects: tuple[Obj, ...]  # counting: `count` copies of objects[0]
    count: int = 1
    relation: str | None = None  # position: objects[0] <relation> objects[1]

    @property
    def text(self) -> str:
        def noun(o: Obj) -> str:
            return f"{o.color} {o.shape}" if o.color else o.shape

        a = self.objects[0]
        if self.category == "counting":
            return f"a photo of {NUMBERS[self.count]} {a.shape}s"
        if self.category in ("single_object", "colors"):
            return f"a photo of a {noun(a)}"
        b = self.objects[1]
        if self.category == "position":
            return f"a photo of a {noun(a)} {self.relation} a {noun(b)}"
        return f"a photo of a {noun(a)} and a {noun(b)}"


@dataclasses.dataclass
class Scene:
    image: np.ndarray  # float32 [64, 64, 3] in [0, 1]
    masks: list[np.ndarray]  # bool [64, 64], one per object, same order as `objects`
    objects: list[tuple[str, str, float, float, float]]  # (shape, colour, cx, cy, radius)
    prompt: Prompt


def all_prompts() -> list[Prompt]:
    """Every prompt of the grammar, in a fixed order."""
    out = [Prompt("single_object", (Obj(s),)) for s in SHAPES]
    out += [Prompt("two_object", (Obj(a), Obj(b))) for i, a in enumerate(SHAPES) for b in SHAPES[i + 1:]]
    out += [Prompt("counting", (Obj(s),), count=n) for n in NUMBERS for s in SHAPES]
    out += [Prompt("colors", (Obj(s, c),)) for s in SHAPES for c in COLORS]
    out += [Prompt("position", (Obj(a), Obj(b)), relation=r) for a in SHAPES for b in SHAPES if a != b
            for r in RELATIONS]
    out += [Prompt("color_attr", (Obj(a, ca), Obj(b, cb))) for a in SHAPES for b in SHAPES if a != b
            for ca in COLORS for cb in COLORS if ca != cb]
    return out


@lru_cache(maxsize=1)
def _split() -> tuple[tuple[Prompt, ...], tuple[Prompt, ...]]:
    rng = random.Random(SPLIT_SEED)
    train, held = [], []
    for cat in CATEGORIES:
        ps = [p for p in all_prompts() if p.category == cat]
        rng.shuffle(ps)
        k = max(1, round(len(ps) * HELDOUT_FRACTION))
        held += ps[:k]
        train += ps[k:]
    return tuple(train), tuple(held)


def train_prompts() -> list[Prompt]:
    return list(_split()[0])


def heldout_prompts() -> list[Prompt]:
    """The fixed evaluation prompts; no training script ever draws them."""
    return list(_split()[1])


def parse_prompt(text: str) -> Prompt:
    """The structured prompt of a caption of the grammar; ValueError for anything else."""
    norm = " ".join(text.lower().replace(",", " ").split())
    for p in all_prompts():
        if p.text == norm:
            return p
    raise ValueError(f"prompt {text!r} is not in the toy-world grammar; expected e.g. 'a photo of two triangles', "
                     f"'a photo of a red circle and a blue square' or 'a photo of a circle left of a square' (shapes "
                     f"{SHAPES}, colours {COLORS}, relations {RELATIONS}; relations take uncoloured shapes).")


# ---------------------------------------------------------------- drawing

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5


def shape_mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Pixel-centre mask of `shape` centred at (cx, cy) with half-size r (circle radius, half side, half base)."""
    if shape == "circle":
        return (_XX - cx) ** 2 + (_YY - cy) ** 2 <= r * r
    if shape == "square":
        return (np.abs(_XX - cx) <= r) & (np.abs(_YY - cy) <= r)
    if shape == "triangle":  # apex up, base 2r, height 2r
        top, bottom = cy - r, cy + r
        half = (_YY - top) / (2 * r) * r  # half width grows linearly from the apex
        return (_YY >= top) & (_YY <= bottom) & (np.abs(_XX - cx) <= half)
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def _background(rng: np.random.Generator) -> np.ndarray:
    def muted():  # low saturation, mid brightness: never confused with an object colour
        grey = rng.uniform(0.25, 0.8)
        return np.clip(grey + rng.uniform(-0.06, 0.06, 3), 0, 1)

    a = muted()
    if rng.random() < 0.5:
        return np.broadcast_to(a, (SIZE, SIZE, 3)).astype(np.float32).copy()
    b = muted()
    ang = rng.uniform(0, 2 * np.pi)
    t = (np.cos(ang) * (_XX - SIZE / 2) + np.sin(ang) * (_YY - SIZE / 2)) / SIZE + 0.5
    t = np.clip(t, 0, 1)[..., None]
    return ((1 - t) * a + t * b).astype(np.float32)


def _fits(cx, cy, r, placed, gap=3.0) -> bool:
    for _, _, x, y, q in placed:
        if max(abs(cx - x), abs(cy - y)) < r + q + gap:  # boxes apart: shapes never touch
            return False
    return True


def _place(rng, r, placed, box=(0, SIZE, 0, SIZE)):
    x0, x1, y0, y1 = box
    lo_x, hi_x = max(x0, 0) + r + 1, min(x1, SIZE) - r - 1
    lo_y, hi_y = max(y0, 0) + r + 1, min(y1, SIZE) - r - 1
    if lo_x > hi_x or lo_y > hi_y:
        return None
    for _ in range(200):
        cx, cy = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
        if _fits(cx, cy, r, placed):
            return cx, cy
    return None


def _layout(rng: np.random.Generator, prompt: Prompt):
    """(shape, colour, cx, cy, r) for each object; None when random placement failed (caller retries)."""
    if prompt.category == "counting":
        specs = [prompt.objects[0]] * prompt.count
    else:
        specs = list(prompt.objects)
    n = len(specs)
    rmax = {1: 12, 2: 10, 3: 8}[n]
    colors = []
    for o in specs:
        colors.append(o.color or COLORS[rng.integers(len(COLORS))])
    radii = [float(rng.uniform(6, rmax)) for _ in specs]
    placed = []
    if prompt.category == "position":
        # a then b along the relation's axis, 10+ px apart between centres on it, close on the other axis
        ra, rb = radii
        horizontal = prompt.relation in ("left of", "right of")
        first_is_a = prompt.relation in ("left of", "above")
        for _ in range(100):
            lo = rng.uniform(ra if first_is_a else rb, SIZE / 2 - 6)
            hi = rng.uniform(SIZE / 2 + 6, SIZE - (rb if first_is_a else ra))
            other = rng.uniform(SIZE / 2 - 12, SIZE / 2 + 12, 2)
            pa, pb = (lo, hi) if first_is_a else (hi, lo)
            ca = (pa, other[0]) if horizontal else (other[0], pa)
            cb = (pb, other[1]) if horizontal else (other[1], pb)
            ok = all(ra + 1 <= c <= SIZE - ra - 1 for c in ca) and all(rb + 1 <= c <= SIZE - rb - 1 for c in cb)
            if ok and _fits(*cb, rb, [(None, None, *ca, ra)]):
                return [(specs[0].shape, colors[0], *ca, ra), (specs[1].shape, colors[1], *cb, rb)]
        return None
    for o, c, r in zip(specs, colors, radii, strict=True):
        xy = _place(rng, r, placed)
        if xy is None:
            return None
        placed.append((o.shape, c, *xy, r))
    return placed


def render(objects, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    img = _background(rng)
    masks = []
    for shape, color, cx, cy, r in objects:
        m = shape_mask(shape, cx, cy, r)
        rgb = np.clip(np.array(RGB[color]) + rng.uniform(-0.05, 0.05, 3), 0, 1)
        img[m] = rgb
        masks.append(m)
    return img, masks


def make_scene(prompt: Prompt, seed: int) -> Scene:
    """The scene for `prompt` and `seed`: the same inputs always give the same pixels."""
    rng = np.random.default_rng([seed, SPLIT_SEED])
    while True:
        objs = _layout(rng, prompt)
        if objs is not None:
            break
    img, masks = render(objs, rng)
    return Scene(img, masks, objs, prompt)


def sample_prompt(rng: random.Random, prompts: list[Prompt], weighting: str = "uniform") -> Prompt:
    """A category, then a prompt of it uniformly.

    weighting "uniform": every category weighs the same. "sqrt": a category weighs the square root of its number of
    prompts, so the many-prompt compositional categories (colour attribution, position) get more of the data without
    starving the few-prompt ones (counting, single object)."""
    cats = [c for c in CATEGORIES if any(p.category == c for p in prompts)]
    if weighting == "uniform":
        cat = rng.choice(cats)
    elif weighting == "sqrt":
        cat = rng.choices(cats, weights=[sum(p.category == c for p in prompts) ** 0.5 for c in cats])[0]
    else:
        raise ValueError(f"weighting must be 'uniform' or 'sqrt'; got {weighting!r}.")
    return rng.choice([p for p in prompts if p.category == cat])


def dataset(n: int, seed: int, prompts: list[Prompt] | None = None,
            weighting: str = "uniform") -> tuple[np.ndarray, list[Prompt]]:
    """n training scenes: images uint8 [n, 64, 64, 3] and their prompts (training prompts unless given)."""
    prompts = train_prompts() if prompts is None else prompts
    rng = random.Random(seed)
    imgs = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    ps = []
    for i in range(n):
        p = sample_prompt(rng, prompts, weighting)
        s = make_scene(p, seed * 1_000_003 + i)
        imgs[i] = np.round(s.image * 255).astype(np.uint8)
        ps.append(p)
    return imgs, ps
