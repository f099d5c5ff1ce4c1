"""Matching and mismatching (scene, prompt) pairs for the toy match reward, from the scenes' own ground truth.

A scene is its object list (shape, colour, centre, half-size) painted on its background. Whether a prompt holds for
an object list (`holds`) is read off the list itself, the way the scene generator means the grammar: no pixels, no
detector, and nothing from `toyworld/evaluate.py`. Hard negatives come from two sides:

* prompt side (`PROMPT_EDITS`): the same scene against its prompt with one thing changed (wrong colour, wrong shape,
  swapped colours, wrong count, flipped relation, objects swapped);
* image side (`IMAGE_EDITS`): the scene redrawn with one thing changed (blank, drop an object, an extra copy,
  recolour, swap colours, mirror along the relation's axis, reshape, one object faded to the background's grey).

Pure numpy: no torch, no ComfyUI.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import scenes

Objects = list[tuple[str, str, float, float, float]]  # (shape, colour, cx, cy, half-size), as Scene.objects
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
#: pixels between centres along the relation's axis above which a relation holds; below a third of it, it does not;
#: in between it is ambiguous and never used as a label
RELATION_MARGIN = 6.0


@dataclasses.dataclass
class Drawn:
    """A scene kept as parts so it can be redrawn with edits: background, objects, which objects are faded."""

    background: np.ndarray  # float32 [64, 64, 3]
    objects: Objects
    prompt: scenes.Prompt
    faded: frozenset = frozenset()  # indices painted in a muted grey: not an object of any colour


def draw_parts(prompt: scenes.Prompt, seed: int) -> Drawn:
    """The parts of `scenes.make_scene(prompt, seed)`: the same layout and background (the same random stream)."""
    rng = np.random.default_rng([seed, scenes.SPLIT_SEED])
    while True:
        objs = scenes._layout(rng, prompt)
        if objs is not None:
            break
    return Drawn(scenes._background(rng), objs, prompt)


def paint(d: Drawn, rng: np.random.Generator) -> np.ndarray:
    """The image of `d`: each object in its colour with a fresh jitter (faded ones in a grey near the background)."""
    img = d.background.copy()
    for i, (shape, color, cx, cy, r) in enumerate(d.objects):
        m = scenes.shape_mask(shape, cx, cy, r)
        if i in d.faded:
            grey = rng.uniform(0.3, 0.75)
            rgb = np.clip(grey + 0.12 * (np.array(scenes.RGB[color]) - 0.5), 0, 1)  # chroma ~0.1
        else:
            rgb = np.clip(np.array(scenes.RGB[color]) + rng.uniform(-0.05, 0.05, 3), 0, 1)
        img[m] = rgb
    return img.astype(np.float32)


# ------------------------------------------------------------------ truth

def _relation(a, b, relation: str) -> bool | None:
    """True/False when a is clearly / clearly not `relation` b, None when the centres are too close to say."""
    dx, dy = b[2] - a[2], b[3] - a[3]
    d = {"left of": dx, "right of": -dx, "above": dy, "below": -dy}[relation]
    if d > RELATION_MARGIN:
        return True
    return False if d < RELATION_MARGIN / 3 else None


def holds(objects: Objects, prompt: scenes.Prompt) -> bool | None:
    """Whether `prompt` is true of `objects` (None: a relation too close to call)."""
    def of(shape, color=None):
        return [o for o in objects if o[0] == shape and (color is None or o[1] == color)]

    a = prompt.objects[0]
    if prompt.category == "single_object":
        return bool(of(a.shape))
    if prompt.category == "counting":
        return len(of(a.shape)) == prompt.count
    if prompt.category == "colors":
        return bool(of(a.shape, a.color))
    b = prompt.objects[1]
    if prompt.category == "two_object":
        return bool(of(a.shape)) and bool(of(b.shape))
    if prompt.category == "color_attr":
        return bool(of(a.shape, a.color)) and bool(of(b.shape, b.color))
    verdicts = [_relation(oa, ob, prompt.relation) for oa in of(a.shape) for ob in of(b.shape)]
    if any(v is True for v in verdicts):
        return True
    return None if any(v is None for v in verdicts) else False


def visible(d: Drawn) -> Objects:
    return [o for i, o in enumerate(d.objects) if i not in d.faded]


def cell_targets(d: Drawn, grid: int = 8) -> np.ndarray:
    """Per cell of a grid x grid partition, int [3, grid, grid]: the colour (1 + index in COLORS) and shape
    (1 + index in SHAPES) of the visible object covering at least a quarter of the cell (0: none), and 1 where an
    object's centre lies. Dense targets the image features learn from besides the match label."""
    out = np.zeros((3, grid, grid), dtype=np.int64)
    best = np.full((grid, grid), 0.25)
    cell = scenes.SIZE // grid
    for shape, color, cx, cy, r in visible(d):
        cover = scenes.shape_mask(shape, cx, cy, r).reshape(grid, cell, grid, cell).mean(axis=(1, 3))
        take = cover >= best
        best = np.where(take, cover, best)
        out[0][take] = 1 + scenes.COLORS.index(color)
        out[1][take] = 1 + scenes.SHAPES.index(shape)
        out[2, min(int(cy // cell), grid - 1), min(int(cx // cell), grid - 1)] = 1
    return out


# ------------------------------------------------------------ prompt side

_BY_TEXT = {p.text: p for p in scenes.all_prompts()}


def _valid(p: scenes.Prompt) -> scenes.Prompt | None:
    """`p` as the grammar spells it (two objects may be listed in either order), or None if not in the grammar."""
    if p.text in _BY_TEXT:
        return _BY_TEXT[p.text]
    if p.category == "two_object":
        q = dataclasses.replace(p, objects=p.objects[::-1])
        return _BY_TEXT.get(q.text)
    return None


def _others(value, pool):
    return [v for v in pool if v != value]


def prompt_edits(p: scenes.Prompt, kind: str) -> list[scenes.Prompt]:
    """Every prompt of the grammar that differs from `p` by one change of `kind` (empty when it does not apply)."""
    Obj = scenes.Obj
    objs = p.objects
    out = []
    if kind == "wrong_colour" and p.category in ("colors", "color_attr"):
        for i, o in enumerate(objs):
            for c in _others(o.color, scenes.COLORS):
                new = list(objs)
                new[i] = Obj(o.shape, c)
                out.append(dataclasses.replace(p, objects=tuple(new)))
    elif kind == "wrong_shape":
        for i, o in enumerate(objs):
            for s in _others(o.shape, scenes.SHAPES):
                new = list(objs)
                new[i] = Obj(s, o.color)
                out.append(dataclasses.replace(p, objects=tuple(new)))
    elif kind == "swapped_colours" and p.category == "color_attr":
        a, b = objs
        out.append(dataclasses.replace(p, objects=(Obj(a.shape, b.color), Obj(b.shape, a.color))))
    elif kind == "wrong_count" and p.category == "counting":
        out += [dataclasses.replace(p, count=n) for n in scenes.NUMBERS if n != p.count]
    elif kind == "flipped_relation" and p.category == "position":
        out.append(dataclasses.replace(p, relation=OPPOSITE[p.relation]))
    elif kind == "swapped_objects" and p.category == "position":
        out.append(dataclasses.replace(p, objects=objs[::-1]))
    found = []
    for q in out:
        q = _valid(q)
        if q is not None and q != p and q not in found:
            found.append(q)
    return found


PROMPT_EDITS = ("wrong_colour", "wrong_shape", "swapped_colours", "wrong_count", "flipped_relation",
                "swapped_objects")


def paraphrase(p: scenes.Prompt) -> scenes.Prompt | None:
    """The same statement said the other way round ("A left of B" = "B right of A"; two objects in either order)."""
    if p.category == "position":
        return _valid(dataclasses.replace(p, objects=p.objects[::-1], relation=OPPOSITE[p.relation]))
    if p.category == "color_attr":
        return _valid(dataclasses.replace(p, objects=p.objects[::-1]))
    return None


# ------------------------------------------------------------- image side

IMAGE_EDITS = ("blank", "drop", "extra_copy", "recolour", "swap_colours", "mirror", "reshape", "fade")
#: the categories an edit changes the truth of (the others apply to every category)
EDIT_APPLIES = {"extra_copy": ("counting",), "recolour": ("colors", "color_attr"), "swap_colours": ("color_attr",),
                "mirror": ("position",)}


def image_edit(d: Drawn, kind: str, rng: np.random.Generator) -> Drawn | None:
    """`d` with one change of `kind`, or None where it does not apply to this scene (or the prompt would still hold:
    the caller checks `holds` on the result)."""
    objs = list(d.objects)
    cat = d.prompt.category
    if kind == "blank":
        return dataclasses.replace(d, objects=[], faded=frozenset())
    if kind == "drop":
        i = int(rng.integers(len(objs)))
        return dataclasses.replace(d, objects=objs[:i] + objs[i + 1:], faded=frozenset())
    if kind == "fade":
        return dataclasses.replace(d, faded=frozenset({int(rng.integers(len(objs)))}))
    if kind == "extra_copy":
        if cat != "counting":
            return None
        r = float(objs[0][4] * rng.uniform(0.85, 1.15))
        xy = scenes._place(rng, r, objs)
        if xy is None:
            return None
        color = scenes.COLORS[int(rng.integers(len(scenes.COLORS)))]
        return dataclasses.replace(d, objects=objs + [(objs[0][0], color, *xy, r)])
    if kind == "recolour":
        if cat not in ("colors", "color_attr"):
            return None
        i = int(rng.integers(len(objs)))
        s, c, x, y, r = objs[i]
        objs[i] = (s, _others(c, scenes.COLORS)[int(rng.integers(len(scenes.COLORS) - 1))], x, y, r)
        return dataclasses.replace(d, objects=objs)
    if kind == "swap_colours":
        if cat != "color_attr":
            return None
        (sa, ca, *pa), (sb, cb, *pb) = objs[:2]  # the named pair (a distractor, if any, comes after)
        return dataclasses.replace(d, objects=[(sa, cb, *pa), (sb, ca, *pb), *objs[2:]])
    if kind == "mirror":
        if cat != "position":
            return None
        horizontal = d.prompt.relation in ("left of", "right of")
        new = []
        for s, c, x, y, r in objs:
            new.append((s, c, scenes.SIZE - x, y, r) if horizontal else (s, c, x, scenes.SIZE - y, r))
        return dataclasses.replace(d, objects=new)
    if kind == "reshape":
        i = int(rng.integers(len(objs)))
        s, c, x, y, r = objs[i]
        objs[i] = (_others(s, scenes.SHAPES)[int(rng.integers(len(scenes.SHAPES) - 1))], c, x, y, r)
        return dataclasses.replace(d, objects=objs)
    raise ValueError(f"image edit kind must be one of {IMAGE_EDITS}; got {kind!r}")


def add_distractor(d: Drawn, rng: np.random.Generator) -> Drawn | None:
    """`d` plus one object of another kind that the prompt does not mention (None when there is no room)."""
    cat = d.prompt.category
    shapes = [s for s in scenes.SHAPES if cat != "counting" or s != d.prompt.objects[0].shape]
    r = float(rng.uniform(6, 9))
    xy = scenes._place(rng, r, d.objects)
    if xy is None:
        return None
    shape = shapes[int(rng.integers(len(shapes)))]
    color = scenes.COLORS[int(rng.integers(len(scenes.COLORS)))]
    return dataclasses.replace(d, objects=list(d.objects) + [(shape, color, *xy, r)])
