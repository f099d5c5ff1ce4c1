"""The main job: run every shipped `workflows/api/toy_*.json` headless through a real ComfyUI on the embedded toy model.

    python3 -m host demo                      # via the README command (sets up the host and venv first)
    python -m host.demo --host PATH [--output DIR] [--only NAME]

Each workflow is API format (what `POST /prompt` takes). Images land in --output (default: ./quickstep-demo/), one
subfolder per workflow; the run fails if any workflow errors or returns no image.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .locate import PACK_ROOT
from .server import ComfyServer

WORKFLOWS = PACK_ROOT / "workflows" / "api"  # API format (the template browser reads UI format only)


def run_demo(host: Path, output: Path, only: str | None = None) -> int:
    flows = sorted(p for p in WORKFLOWS.glob("toy_*.json") if only is None or only in p.stem)
    if not flows:
        print(f"[quickstep] no workflows/api/toy_*.json{f' matching {only!r}' if only else ''} to run", file=sys.stderr)
        return 1
    failures = 0
    with ComfyServer(host) as server:
        print(f"[quickstep] ComfyUI {host} on {server.url}; running {len(flows)} workflow(s)", flush=True)
        for flow in flows:
            start = time.monotonic()
            result = server.run(json.loads(flow.read_text()))
            images = [img for out in result.outputs.values() for img in out.get("images", [])]
            texts = [t for out in result.outputs.values() for t in out.get("text", [])]
            if result.status != "success" or not images:
                failures += 1
                detail = result.error["exception_message"] if result.error else "no images returned"
                print(f"  FAILED {flow.name}: {detail}", flush=True)
                continue
            target = output / flow.stem
            target.mkdir(parents=True, exist_ok=True)
            for img in images:
                (target / img["filename"]).write_bytes(server.view(img))
            summary = f"; {' | '.join(texts)}" if texts else ""
            print(f"  ok {flow.name}: {len(images)} image(s) -> {target} in {time.monotonic() - start:.1f}s"
                  f"{summary}", flush=True)
    print(f"[quickstep] demo: {len(flows) - failures} passed, {failures} failed", flush=True)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", type=Path, required=True, help="ComfyUI checkout to run")
    parser.add_argument("--output", type=Path, default=Path.cwd() / "quickstep-demo")
    parser.add_argument("--only", help="run only workflows whose name contains this")
    args = parser.parse_args(argv)
    return run_demo(args.host, args.output, args.only)


if __name__ == "__main__":
    sys.exit(main())
