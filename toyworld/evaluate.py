"""A GenEval-style evaluator for the toy world, separate from every reward: an analytic detector, no learning.

Detection: pixels with high chroma are objects (backgrounds are muted by construction); each is labelled with the
nearest of the four object hues; connected components per colour are objects; the shape is the template (circle,
square, triangle fitted to the component's bounding box) with the best IoU, and a component that fits none of them
(IoU below `MIN_IOU`) or is too small is no object. Scoring follows GenEval's rules per category, and the overall
score is the mean of the per-category accuracies.

Pure numpy/scipy: no torch, no ComfyUI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from . import scenes

MIN_CHROMA = 0.3  # object colours have chroma ~0.8, backgrounds < 0.15
MIN_AREA = 30  # pixels at 64x64; the smallest object (triangle, half-size 6) covers ~72
MIN_IOU = 0.6
POSITION_MARGIN = 4.0  # pixels between centres along the relation's axis
HUES = {"red": 0.0, "yellow": 55.0, "green": 122.0, "blue": 230.0}


@dataclasses.dataclass(frozen=True)
class Detection:
    shape: str
    color: str
    cx: float
    cy: float
    area: int
    iou: float


@dataclasses.dataclass(frozen=True)
class Result:
    prompt: str
    category: str
    passed: bool
    detections: tuple[Detection, ...]
    reason: str

    def as_dict(self) -> dict:
        return {"prompt": self.prompt, "category": self.category, "passed": self.passed, "reason": self.reason,
                "detections": [dataclasses.asdict(d) for d in self.detections]}


def _to_hwc64(image) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3 or img.shape[-1] < 3:
        raise ValueError(f"image must be [height, width, 3] RGB in [0, 1]; got shape {img.shape}.")
    img = img[..., :3]
    if img.shape[:2] != (scenes.SIZE, scenes.SIZE):  # nearest-neighbour resample to the detector's 64x64 grid
        ys = (np.arange(scenes.SIZE) + 0.5) * img.shape[0] / scenes.SIZE
        xs = (np.arange(scenes.SIZE) + 0.5) * img.shape[1] / scenes.SIZE
        img = img[ys.astype(int)][:, xs.astype(int)]
    return np.clip(img, 0.0, 1.0)


def _hue(img: np.ndarray) -> np.ndarray:
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    mx, mn = img.max(-1), img.min(-1)
    c = np.maximum(mx - mn, 1e-6)
    h = np.where(mx == r, ((g - b) / c) % 6, np.where(mx == g, (b - r) / c + 2, (r - g) / c + 4))
    return h * 60.0


def detect(image) -> list[Detection]:
    """Objects in an RGB image ([H, W, 3] floats in [0, 1]; resampled to 64x64)."""
    img = _to_hwc64(image)
    chroma = img.max(-1) - img.min(-1)
    hue = _hue(img)
    names = list(HUES)
    centres = np.array([HUES[n] for n in names])
    dist = np.abs((hue[..., None] - centres + 180.0) % 360.0 - 180.0)
    label = np.where(chroma > MIN_CHROMA, dist.argmin(-1), -1)
    found = []
    for ci, color in enumerate(names):
        comps, n = ndimage.label(label == ci)
        sizes = np.bincount(comps.ravel(), minlength=n + 1)
        for k, box in enumerate(ndimage.find_objects(comps), start=1):
            if box is None or sizes[k] < MIN_AREA // 2:  # cheap pre-filter; holes only add area
                continue
            mask = ndimage.binary_fill_holes(comps == k)
            area = int(mask.sum())
            if area < MIN_AREA:
                continue
            (y0, y1), (x0, x1) = [(sl.start, sl.stop) for sl in box]
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            r = ((x1 - x0) + (y1 - y0)) / 4
            best, best_iou = None, 0.0
            for shape in scenes.SHAPES:
                t = scenes.shape_mask(shape, cx, cy, r)
                iou = (t & mask).sum() / max(1, (t | mask).sum())
                if iou > best_iou:
                    best, best_iou = shape, float(iou)
            if best_iou >= MIN_IOU:
                m_ys, m_xs = np.nonzero(mask)
                found.append(Detection(best, color, float(m_xs.mean() + 0.5), float(m_ys.mean() + 0.5), area,
                                       round(best_iou, 3)))
    return found


def _relation_holds(a: Detection, b: Detection, relation: str) -> bool:
    dx, dy = b.cx - a.cx, b.cy - a.cy
    return {"left of": dx > POSITION_MARGIN, "right of": -dx > POSITION_MARGIN,
            "above": dy > POSITION_MARGIN, "below": -dy > POSITION_MARGIN}[relation]


def score(image, prompt: str | scenes.Prompt) -> Result:
    """Pass/fail of `image` against `prompt` (a caption of the toy grammar), GenEval's way."""
    p = scenes.parse_prompt(prompt) if isinstance(prompt, str) else prompt
    dets = detect(image)

    def of(shape, color=None):
        return [d for d in dets if d.shape == shape and (color is None or d.color == color)]

    a = p.objects[0]
    if p.category == "single_object":
        ok, why = len(of(a.shape)) >= 1, f"{len(of(a.shape))} {a.shape}(s)"
    elif p.category == "counting":
        ok, why = len(of(a.shape)) == p.count, f"{len(of(a.shape))} {a.shape}(s), want {p.count}"
    elif p.category == "colors":
        ok, why = len(of(a.shape, a.color)) >= 1, f"colours of {a.shape}s: {[d.color for d in of(a.shape)]}"
    else:
        b = p.objects[1]
        if p.category == "two_object":
            ok = bool(of(a.shape)) and bool(of(b.shape))
            why = f"{len(of(a.shape))} {a.shape}(s), {len(of(b.shape))} {b.shape}(s)"
        elif p.category == "color_attr":
            ok = bool(of(a.shape, a.color)) and bool(of(b.shape, b.color))
            why = f"{[(d.color, d.shape) for d in dets]}"
        else:  # position
            ok = any(_relation_holds(da, db, p.relation) for da in of(a.shape) for db in of(b.shape))
            why = f"{[(d.shape, round(d.cx), round(d.cy)) for d in dets]}"
    return Result(p.text, p.category, bool(ok), tuple(dets), why)


def summarize(results: Iterable[Result]) -> dict[str, float]:
    """Per-category accuracy and `overall`, the mean over the categories present (GenEval's overall score)."""
    by: dict[str, list[bool]] = {}
    for r in results:
        by.setdefault(r.category, []).append(r.passed)
    out = {c: float(np.mean(by[c])) for c in scenes.CATEGORIES if c in by}
    out["overall"] = float(np.mean(list(out.values()))) if out else 0.0
    return out
