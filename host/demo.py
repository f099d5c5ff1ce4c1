"""The main job: run every shipped toy workflow headless through a real ComfyUI on the embedded toy model, with the
queue command's client (workflows/queue.py), from the UI-format files the template browser lists.

    python3 -m host demo                      # via the README command (sets up the host and venv first)
    python -m host.demo --host PATH [--output DIR] [--only NAME]

Each `example_workflows/toy_*.json` is converted to API format through the server's /object_info (as the frontend's
export does), queued, followed on the websocket with a progress bar per node, and its images land in --output
(default: ./quickstep-demo/), one subfolder per workflow; the run fails if any workflow errors or returns no image.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from workflows.queue import Client, describe_error, save_outputs

from .locate import PACK_ROOT
from .server import ComfyServer

WORKFLOWS = PACK_ROOT / "example_workflows"  # UI format; the API twins are in workflows/api/


def run_demo(host: Path, output: Path, only: str | None = None) -> int:
    flows = sorted(p for p in WORKFLOWS.glob("toy_*.json") if only is None or only in p.stem)
    if not flows:
        print(f"[quickstep] no example_workflows/toy_*.json{f' matching {only!r}' if only else ''} to run",
              file=sys.stderr)
        return 1
    failures = 0
    with ComfyServer(host) as server:
        print(f"[quickstep] ComfyUI {host} on {server.url}; running {len(flows)} workflow(s)", flush=True)
        client = Client(server.url)
        for flow in flows:
            start = time.monotonic()
            print(f"[quickstep] {flow.name}", flush=True)
            result = client.run(client.prompt_of(json.loads(flow.read_text())))
            if result["status"] != "success":
                failures += 1
                print(f"  FAILED {flow.name}: {describe_error(result)}", flush=True)
                continue
            saved = save_outputs(client, result, output / flow.stem)
            if not saved:
                failures += 1
                print(f"  FAILED {flow.name}: no images returned", flush=True)
                continue
            print(f"  ok {flow.name}: {len(saved)} image(s) -> {output / flow.stem} in "
                  f"{time.monotonic() - start:.1f}s", flush=True)
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
