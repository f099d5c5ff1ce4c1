"""Queue a workflow on ComfyUI headless: progress per node from the websocket, outputs saved, ComfyUI's error and a
non-zero exit status on failure.

    python -m workflows.queue WORKFLOW.json [--server URL] [--out DIR]     # from the repository root
    python3 -m host queue WORKFLOW.json [--server URL] [--out DIR]         # the same in the project virtualenv

WORKFLOW.json is UI format (what the frontend saves; converted to API format through the server's /object_info, as
the frontend's export does) or API format (what `POST /prompt` takes). Without --server it starts a local ComfyUI
(the harness's, current pin, with this pack) and stops it afterwards. Needs only aiohttp, which ComfyUI itself needs,
so it also runs in ComfyUI's own Python. (It is not `quickstep.queue`: a module named `queue` at the pack's root would
shadow the standard library's `queue` whenever the repository root is on sys.path.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from .convert import ConversionError, is_ui_format, to_api

EXIT_FAILED, EXIT_REJECTED, EXIT_USAGE = 1, 2, 3


def _bar(value: float, total: float, width: int = 24) -> str:
    filled = int(width * value / total) if total else width
    return "#" * filled + "." * (width - filled)


class Client:
    """A ComfyUI server at `url`: /object_info, /prompt, the websocket, /history, /view."""

    def __init__(self, url: str, out=sys.stderr):
        self.url = url.rstrip("/")
        self.out = out

    def get(self, path: str, timeout: float = 120) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return r.read()

    def object_info(self) -> dict:
        return json.loads(self.get("/object_info"))

    def view(self, image: dict) -> bytes:
        return self.get("/view?" + urllib.parse.urlencode({k: image.get(k, "") for k in ("filename", "subfolder",
                                                                                         "type")}))

    def prompt_of(self, workflow: dict) -> dict:
        """The API-format prompt for a UI or API workflow (or a {"prompt": ...} body)."""
        if is_ui_format(workflow):
            return to_api(workflow, self.object_info())
        if "prompt" in workflow and isinstance(workflow["prompt"], dict):
            workflow = workflow["prompt"]
        if not workflow or not all(isinstance(n, dict) and "class_type" in n for n in workflow.values()):
            raise ConversionError("neither UI format (nodes and links) nor API format (node id -> class_type, inputs)")
        return workflow

    def run(self, prompt: dict, quiet: bool = False, timeout: float = 3600) -> dict:
        """Queue `prompt`, follow it to the end; returns {status, prompt_id, outputs, error, node_types}."""
        return asyncio.run(self._run(prompt, quiet, timeout))

    async def _run(self, prompt: dict, quiet: bool, timeout: float) -> dict:
        import aiohttp

        client_id = uuid.uuid4().hex
        types = {k: n.get("class_type", "?") for k, n in prompt.items()}
        result = {"status": "success", "prompt_id": None, "outputs": {}, "error": None}
        tty = hasattr(self.out, "isatty") and self.out.isatty()
        shown: dict[str, float] = {}
        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={client_id}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.ws_connect(ws_url, max_msg_size=0) as ws:
                async with session.post(self.url + "/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
                    body = await r.json(content_type=None)
                if r.status != 200:
                    return {**result, "status": "rejected", "error": body}
                prompt_id = result["prompt_id"] = body["prompt_id"]
                async for frame in ws:
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        continue
                    msg = json.loads(frame.data)
                    kind, data = msg.get("type"), msg.get("data") or {}
                    if data.get("prompt_id") not in (None, prompt_id):
                        continue
                    node = str(data.get("node")) if data.get("node") is not None else None
                    label = f"node {node} {types.get(node, '')}".strip()
                    if kind == "execution_cached" and not quiet and data.get("nodes"):
                        self.out.write(f"cached: nodes {', '.join(map(str, data['nodes']))}\n")
                    elif kind == "executing" and node is None:
                        break  # sent after the history is written (execution_success comes before)
                    elif kind == "executing" and not quiet:
                        self.out.write(("\n" if tty and shown else "") + f"{label}\n")
                    elif kind == "progress" and not quiet:
                        value, total = data.get("value", 0), data.get("max", 0) or 1
                        step = shown.get(node, -1.0)
                        if tty:
                            self.out.write(f"\r  [{_bar(value, total)}] {value}/{total}")
                        elif value == total or value / total - step >= 0.25:
                            self.out.write(f"  [{_bar(value, total)}] {value}/{total}\n")
                        shown[node] = value / total
                    elif kind == "execution_error":
                        result["status"], result["error"] = "error", data
                    elif kind == "execution_interrupted":
                        result["status"], result["error"] = "interrupted", data
                    self.out.flush()
        if tty and shown and not quiet:
            self.out.write("\n")
        history = json.loads(self.get(f"/history/{prompt_id}")).get(prompt_id, {})
        result["outputs"] = history.get("outputs", {})
        if result["status"] == "success" and history.get("status", {}).get("status_str") == "error":
            result["status"] = "error"
        return result


class LocalServer:
    """`url` as given, or a ComfyUI the harness starts (and stops) when none is given."""

    def __init__(self, url: str | None):
        self.url, self._server = url, None

    def __enter__(self) -> str:
        if self.url:
            return self.url
        try:
            from host.locate import find_host
            from host.server import ComfyServer
        except ImportError as e:
            raise SystemExit(f"no --server given and the harness (host/) is not importable ({e}): run from the "
                             "repository root, or pass --server http://127.0.0.1:8188 for a running ComfyUI") from e
        self._server = ComfyServer(find_host("current")).start()
        return self._server.url

    def __exit__(self, *exc) -> None:
        if self._server:
            self._server.cleanup()


def describe_error(result: dict) -> str:
    err = result.get("error") or {}
    if result["status"] == "rejected":
        lines = [f"ComfyUI rejected the prompt: {err.get('error', {}).get('message', err)}"]
        for node_id, node_err in (err.get("node_errors") or {}).items():
            for e in node_err.get("errors", []):
                lines.append(f"  node {node_id} ({node_err.get('class_type')}): {e.get('message')}: {e.get('details')}")
        return "\n".join(lines)
    if result["status"] == "interrupted":
        return f"interrupted at node {err.get('node_id')} ({err.get('node_type')})"
    trace = "".join(err.get("traceback") or [])[-1500:]
    return (f"node {err.get('node_id')} ({err.get('node_type')}) failed: {err.get('exception_type')}: "
            f"{err.get('exception_message')}\n{trace}").rstrip()


def save_outputs(client: Client, result: dict, out_dir: Path) -> list[Path]:
    saved = []
    for node_id, output in sorted(result["outputs"].items()):
        for image in output.get("images", []):
            target = out_dir / Path(image["filename"]).name
            out_dir.mkdir(parents=True, exist_ok=True)
            target.write_bytes(client.view(image))
            saved.append(target)
        for text in output.get("text", []):
            print(f"node {node_id}: {text}")  # noqa: T201
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflows.queue", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workflow", type=Path, help="a UI-format or API-format workflow JSON")
    parser.add_argument("--server", help="ComfyUI's address, e.g. http://127.0.0.1:8188 (default: start a local one)")
    parser.add_argument("--out", type=Path, help="where outputs are saved (default: quickstep-demo/<workflow name>)")
    args = parser.parse_args(argv)
    args.out = args.out or Path("quickstep-demo") / args.workflow.stem
    try:
        workflow = json.loads(args.workflow.read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"cannot read the workflow {args.workflow}: {e}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    start = time.monotonic()
    with LocalServer(args.server) as url:
        client = Client(url)
        try:
            prompt = client.prompt_of(workflow)
        except ConversionError as e:
            print(f"{args.workflow}: {e}", file=sys.stderr)  # noqa: T201
            return EXIT_USAGE
        except urllib.error.URLError as e:
            print(f"no ComfyUI answers at {url}: {e.reason}", file=sys.stderr)  # noqa: T201
            return EXIT_FAILED
        result = client.run(prompt)
        if result["status"] != "success":
            print(describe_error(result), file=sys.stderr)  # noqa: T201
            return EXIT_REJECTED if result["status"] == "rejected" else EXIT_FAILED
        saved = save_outputs(client, result, args.out)
    print(f"done in {time.monotonic() - start:.1f}s: {len(saved)} file(s) in {args.out}")  # noqa: T201
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
