"""Tier (c): a real `main.py --cpu` server per session, with Quickstep and the tiny-model test pack linked in."""

import subprocess
import sys

import pytest

import harness
from host.server import ComfyServer
from host.venv import host_overlay


def start_server(pin: str, **kwargs) -> ComfyServer:
    host = harness.host_path(pin)
    overlay = host_overlay(host, harness.host_path("current"))
    return ComfyServer(host, python=sys.executable, pythonpath=overlay, **kwargs)


def host_status(host) -> str:
    """`git status` of the host checkout (empty when it is not a git checkout)."""
    proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=host,
                          capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""


@pytest.fixture(scope="session")
def server(pin):
    srv = start_server(pin, with_test_pack=True, extra_args=("--preview-method", "latent2rgb"))
    srv.host_status_before = host_status(srv.host)
    srv.start()
    yield srv
    srv.cleanup()
