"""Test tiers: tests/unit (plain torch, no ComfyUI), tests/hosted (ComfyUI modules in-process from the pinned host,
--cpu), tests/e2e (a real `main.py --cpu` server driven over HTTP and websocket). `--pin` picks the host."""

import pytest

import harness

harness.register_pack()


def pytest_addoption(parser):
    parser.addoption("--pin", default="current", choices=["current", "minimum"],
                     help="which pinned ComfyUI hosts the hosted and e2e tiers (default: current)")
    parser.addoption("--update-schema-snapshot", action="store_true",
                     help="rewrite tests/schema_snapshot.json from the current node schemas")


def pytest_configure(config):
    config.addinivalue_line("markers", "minimum_pin: also run on the minimum supported ComfyUI pin")
    for tier, what in (("unit", "plain torch, no ComfyUI"), ("hosted", "ComfyUI modules in-process"),
                       ("e2e", "a real ComfyUI server")):
        config.addinivalue_line("markers", f"{tier}: tier {what} (set from the test's folder)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = item.path.parent.name
        if tier in ("unit", "hosted", "e2e"):
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def pin(request) -> str:
    return request.config.getoption("--pin")
