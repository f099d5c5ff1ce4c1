"""`python3 -m host test|demo|queue`: the README's two commands for a fresh machine, and the queue command.

Both find the ComfyUI hosts (see locate.py), make the project virtualenv (see venv.py) and then run, inside it, the
whole pytest suite (current pin: every tier; minimum pin: the tests marked `minimum_pin`), the headless demo, or
`python -m workflows.queue` (`python3 -m host queue WORKFLOW.json [--server URL] [--out DIR]`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from .locate import PACK_ROOT, HostNotFound, cache_root, find_host
from .venv import ensure_venv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m host", description=__doc__)
    parser.add_argument("command", choices=["test", "demo", "queue"])
    parser.add_argument("args", nargs=argparse.REMAINDER,
                        help="passed on to pytest (test), the demo runner or the queue command")
    opts = parser.parse_args(argv)
    try:
        current = find_host("current")
        minimum = find_host("minimum") if opts.command == "test" else None
    except HostNotFound as e:
        print(f"[quickstep] {e}", file=sys.stderr)
        return 2
    python = str(ensure_venv(current))
    env = dict(os.environ, QUICKSTEP_HOST_CURRENT=str(current), PYTHONPYCACHEPREFIX=str(cache_root() / "pycache"))
    if opts.command == "queue":
        path = os.pathsep.join(filter(None, [str(PACK_ROOT), env.get("PYTHONPATH")]))  # paths stay the caller's
        return subprocess.run([python, "-m", "workflows.queue", *opts.args], env=dict(env, PYTHONPATH=path)).returncode
    if opts.command == "demo":
        return subprocess.run([python, "-m", "host.demo", "--host", str(current), *opts.args],
                              cwd=PACK_ROOT, env=env).returncode
    env["QUICKSTEP_HOST_MINIMUM"] = str(minimum)
    pytest = [python, "-m", "pytest", "-p", "no:cacheprovider", "tests"]
    print(f"[quickstep] whole suite on the current pin: {current}", flush=True)
    rc_current = subprocess.run([*pytest, "--pin", "current", *opts.args], cwd=PACK_ROOT, env=env).returncode
    print(f"[quickstep] minimum-pin suite on: {minimum}", flush=True)
    rc_minimum = subprocess.run([*pytest, "--pin", "minimum", "-m", "minimum_pin", *opts.args],
                                cwd=PACK_ROOT, env=env).returncode
    print(f"[quickstep] current pin: {'passed' if rc_current == 0 else 'FAILED'}; "
          f"minimum pin: {'passed' if rc_minimum == 0 else 'FAILED'}", flush=True)
    return 0 if rc_current == rc_minimum == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
