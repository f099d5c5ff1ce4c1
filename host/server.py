"""Start a real ComfyUI server (`main.py --cpu`) with the pack linked in, and queue API-format workflows on it.

The pack is linked into a temporary `--base-directory` (custom_nodes, models, input, output, temp, user), so the host
checkout is never written to. Progress comes from the websocket, results from `/history` and `/view`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .locate import PACK_ROOT, cache_root

TEST_PACK = PACK_ROOT / "tests" / "comfy_testpack"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunResult:
    prompt_id: str
    status: str                      # "success", "error" or "interrupted"
    messages: list[dict] = field(default_factory=list)
    previews: int = 0                # binary preview frames received
    history: dict = field(default_factory=dict)

    def of_type(self, kind: str) -> list[dict]:
        return [m["data"] for m in self.messages if m.get("type") == kind]

    @property
    def outputs(self) -> dict:
        return self.history.get("outputs", {})

    @property
    def error(self) -> dict | None:
        errors = self.of_type("execution_error")
        return errors[0] if errors else None


class ComfyServer:
    """A ComfyUI server process on a free loopback port. Use as a context manager."""

    def __init__(self, host: Path, python: str | None = None, with_test_pack: bool = False,
                 base_dir: Path | None = None, extra_args: tuple[str, ...] = (), pythonpath: Path | None = None):
        self.host = Path(host)
        self.python = python or sys.executable
        self.with_test_pack = with_test_pack
        self._tmp = None if base_dir else tempfile.TemporaryDirectory(prefix="quickstep-host-")
        self.base_dir = Path(base_dir or self._tmp.name)
        self.extra_args = extra_args
        self.pythonpath = pythonpath
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.base_dir / "server.log"

    # -- lifecycle -------------------------------------------------------------------------------------------
    def _link_packs(self) -> None:
        nodes_dir = self.base_dir / "custom_nodes"
        nodes_dir.mkdir(parents=True, exist_ok=True)
        links = {"quickstep": PACK_ROOT}
        if self.with_test_pack:
            links["quickstep_testpack"] = TEST_PACK
        for name, target in links.items():
            link = nodes_dir / name
            if not link.exists():
                link.symlink_to(target, target_is_directory=True)

    def start(self, timeout: float = 300.0) -> ComfyServer:
        self._link_packs()
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base_dir), "--disable-auto-launch", *self.extra_args]
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPYCACHEPREFIX=str(cache_root() / "pycache"),
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.pythonpath), env.get("PYTHONPATH")]))
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.host, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                self.get_json("/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer on {self.url} within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def cleanup(self) -> None:
        self.stop()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    # -- HTTP ------------------------------------------------------------------------------------------------
    def get_json(self, path: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def get_bytes(self, path: str, timeout: float = 30) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return r.read()

    def post_json(self, path: str, body: dict, timeout: float = 30) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else {})
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def object_info(self) -> dict:
        return self.get_json("/object_info", timeout=60)

    def view(self, image: dict) -> bytes:
        query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
        return self.get_bytes("/view?" + query)

    # -- running workflows -----------------------------------------------------------------------------------
    def queue(self, graph: dict, client_id: str) -> str:
        status, body = self.post_json("/prompt", {"prompt": graph, "client_id": client_id})
        if status != 200:
            raise PromptRejected(body)
        return body["prompt_id"]

    def run(self, graph: dict, timeout: float = 600, on_message=None) -> RunResult:
        """Queue `graph`, follow it on the websocket until it finishes, and return what happened."""
        import websocket  # websocket-client; only in the project virtualenv

        client_id = uuid.uuid4().hex
        ws = websocket.WebSocket()
        ws.connect(f"ws://127.0.0.1:{self.port}/ws?clientId={client_id}", timeout=timeout)
        try:
            prompt_id = self.queue(graph, client_id)
            result = RunResult(prompt_id, "success")
            deadline = time.monotonic() + timeout
            while True:
                ws.settimeout(max(1.0, deadline - time.monotonic()))
                frame = ws.recv()
                if isinstance(frame, bytes):
                    result.previews += 1
                    continue
                msg = json.loads(frame)
                data = msg.get("data", {})
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                result.messages.append(msg)
                if on_message:
                    on_message(msg, self)
                kind = msg.get("type")
                if kind == "execution_error":
                    result.status = "error"
                elif kind == "execution_interrupted":
                    result.status = "interrupted"
                if kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workflow {prompt_id} did not finish in {timeout}s")
        finally:
            ws.close()
        result.history = self.get_json(f"/history/{prompt_id}").get(prompt_id, {})
        return result

    def interrupt(self) -> None:
        self.post_json("/interrupt", {})


class PromptRejected(RuntimeError):
    """`POST /prompt` answered 400: validation failed before anything ran."""

    def __init__(self, body: dict):
        self.body = body
        super().__init__(json.dumps(body, indent=1)[:4000])
