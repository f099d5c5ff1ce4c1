"""Line charts drawn with PIL into ComfyUI IMAGE tensors (no matplotlib: ComfyUI does not ship it).

`line_chart` draws one panel per named group of series against a shared x axis (iteration or step), with optional
markers (e.g. the best iterate), and returns a [1, H, W, 3] float tensor in [0, 1] that any IMAGE input takes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        return [low]
    return [low + (high - low) * i / count for i in range(count + 1)]


def _fmt(value: float) -> str:
    if value == 0 or 1e-2 <= abs(value) < 1e4:
        return f"{value:.3g}"
    return f"{value:.2e}"


def line_chart(panels: dict[str, dict[str, list[float]]], x: list[float] | None = None,
               markers: dict[str, list[tuple[float, float]]] | None = None, xlabel: str = "iteration",
               width: int = 640, panel_height: int = 220) -> torch.Tensor:
    """panels: title -> {series label: values}; markers: title -> [(x, y)] drawn as rings on that panel."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    markers = markers or {}
    panels = {t: s for t, s in panels.items() if s} or {"(nothing to plot)": {}}
    height = panel_height * len(panels)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 64, 16, 22, 30
    for p, (title, series) in enumerate(panels.items()):
        y0 = p * panel_height
        box = (left, y0 + top, width - right, y0 + panel_height - bottom)
        draw.rectangle(box, outline=(0, 0, 0))
        draw.text((left, y0 + 5), title, fill=(0, 0, 0), font=font)
        values = [v for vs in series.values() for v in vs if math.isfinite(v)]
        values += [my for _, my in markers.get(title, []) if math.isfinite(my)]
        n = max((len(vs) for vs in series.values()), default=1)
        xs = list(x) if x is not None else list(range(n))
        if not values or not xs:
            continue
        lo, hi = min(values), max(values)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        xlo, xhi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

        def px(xv, yv, box=box, lo=lo, hi=hi, xlo=xlo, xhi=xhi):
            return (box[0] + (xv - xlo) / (xhi - xlo) * (box[2] - box[0]),
                    box[3] - (yv - lo) / (hi - lo) * (box[3] - box[1]))

        for tick in _ticks(lo, hi):
            _, ty = px(xlo, tick)
            draw.line((box[0] - 3, ty, box[0], ty), fill=(0, 0, 0))
            draw.text((4, ty - 6), _fmt(tick), fill=(0, 0, 0), font=font)
        for tick in _ticks(xlo, xhi):
            tx, _ = px(tick, lo)
            draw.line((tx, box[3], tx, box[3] + 3), fill=(0, 0, 0))
            draw.text((tx - 8, box[3] + 5), _fmt(round(tick, 2)), fill=(0, 0, 0), font=font)
        if p == len(panels) - 1:
            draw.text((width // 2 - 20, y0 + panel_height - 13), xlabel, fill=(0, 0, 0), font=font)
        legend_x = box[0] + 6
        for s, (label, vs) in enumerate(series.items()):
            colour = PALETTE[s % len(PALETTE)]
            points = [px(xv, yv) for xv, yv in zip(xs, vs, strict=False) if math.isfinite(yv)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            elif points:
                draw.ellipse((points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2), fill=colour)
            draw.text((legend_x, box[1] + 4), label, fill=colour, font=font)
            legend_x += 8 + int(draw.textlength(label, font=font))
        for mx, my in markers.get(title, []):
            if math.isfinite(my):
                cx, cy = px(mx, my)
                draw.ellipse((cx - 5, cy - 5, cx + 5, cy + 5), outline=(214, 39, 40), width=2)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]
