"""Render the template browser's thumbnails: each toy workflow runs on a local ComfyUI (the harness's, current pin) and
its first saved batch becomes example_workflows/<name>.jpg, a 2x2 grid upscaled to 256x256; every real-model workflow
gets its toy twin's picture under its own name (the frontend asks for `<name>.jpg` for custom-node templates).

    python -m workflows.thumbnails [--server URL] [--only NAME]   # from the repository root, in the project venv
"""

from __future__ import annotations

import argparse
import io
import json
import sys

from .build import API_DIR, UI_DIR
from .describe import FLOWS

SIZE = 256


def grid(pngs: list[bytes]):
    from PIL import Image

    tiles = [Image.open(io.BytesIO(p)).convert("RGB") for p in pngs[:4]]
    side = 2 if len(tiles) > 1 else 1
    w, h = tiles[0].size
    sheet = Image.new("RGB", (w * side, h * side), "white")
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % side) * w, (k // side) * h))
    return sheet.resize((SIZE, SIZE), Image.NEAREST)


def render(server_url: str | None, only: str | None = None) -> int:
    from .queue import Client, LocalServer

    toys = [f for f in FLOWS if f.name.startswith("toy_") and (only is None or only in f.name)]
    failures = 0
    with LocalServer(server_url) as url:
        client = Client(url)
        for toy in toys:
            graph = json.loads((API_DIR / f"{toy.name}.json").read_text())
            result = client.run(graph, quiet=True)
            saves = [k for k, n in graph.items() if n["class_type"] == "SaveImage"]
            images = result.get("outputs", {}).get(saves[0], {}).get("images", []) if saves else []
            if result.get("status") != "success" or not images:
                print(f"FAILED {toy.name}: {result.get('error') or 'no images'}", file=sys.stderr)  # noqa: T201
                failures += 1
                continue
            sheet = grid([client.view(img) for img in images])
            for flow in FLOWS:
                if flow.name == toy.name or flow.twin == toy.name:
                    sheet.save(UI_DIR / f"{flow.name}.jpg", "JPEG", quality=88)
                    print(f"wrote example_workflows/{flow.name}.jpg from {toy.name}")  # noqa: T201
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflows.thumbnails", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", help="a running ComfyUI with the pack (default: start the harness's)")
    parser.add_argument("--only", help="render only toy workflows whose name contains this")
    args = parser.parse_args(argv)
    return render(args.server, args.only)


if __name__ == "__main__":
    sys.exit(main())
