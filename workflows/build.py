"""Write every shipped workflow from describe.py: UI format to example_workflows/<name>.json (the folder ComfyUI's
template browser lists for a custom-node pack, on both pins) and API format to workflows/api/<name>.json, converted
from the UI file as the frontend exports it.

    python -m workflows.build [--server URL]     # from the repository root, in the project virtualenv

Widget order and defaults come from the server's /object_info; without --server the harness starts a local ComfyUI
(the current pin) with the pack. tests/e2e/test_workflow_files.py checks the committed files equal what this writes.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

from .convert import to_api
from .describe import FLOWS
from .ui import to_ui

ROOT = Path(__file__).resolve().parent.parent
UI_DIR = ROOT / "example_workflows"
API_DIR = ROOT / "workflows" / "api"


def dumps(graph: dict) -> str:
    return json.dumps(graph, indent=2, ensure_ascii=False) + "\n"


def expected_files(object_info: dict) -> dict[Path, str]:
    """Every file this module writes, by path, with its text."""
    files = {}
    for flow in FLOWS:
        ui = to_ui(flow, object_info)
        files[UI_DIR / f"{flow.name}.json"] = dumps(ui)
        files[API_DIR / f"{flow.name}.json"] = dumps(to_api(ui, object_info))
    return files


def fetch_object_info(url: str) -> dict:
    with urllib.request.urlopen(url.rstrip("/") + "/object_info", timeout=120) as r:
        return json.loads(r.read())


def local_object_info() -> dict:
    from host.locate import find_host
    from host.server import ComfyServer

    with ComfyServer(find_host("current")) as server:
        return server.object_info()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflows.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", help="a running ComfyUI with the pack (default: start the harness's)")
    args = parser.parse_args(argv)
    info = fetch_object_info(args.server) if args.server else local_object_info()
    files = expected_files(info)
    UI_DIR.mkdir(exist_ok=True)
    for path, text in files.items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")  # noqa: T201
    stale = sorted({p for d in (UI_DIR, API_DIR) for p in d.glob("*.json")} - set(files))
    for path in stale:
        print(f"not described (remove it or add it to describe.py): {path.relative_to(ROOT)}")  # noqa: T201
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
