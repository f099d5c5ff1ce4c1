"""The pack inside a real server: it loads cheaply, registers natively, and never writes into the host checkout."""

import re

import pytest
from conftest import host_status


@pytest.mark.minimum_pin
def test_pack_import_time_under_budget(server):
    # core's own measurement: "Import times for custom nodes:" lists each pack's load (import + entrypoint)
    log = server.log_path.read_text(errors="replace")
    match = re.search(r"([\d.]+) seconds: \S*custom_nodes/quickstep\n", log)
    assert match, "the server log has no import time for the pack:\n" + log[-3000:]
    assert float(match.group(1)) < 0.3
    assert "IMPORT FAILED" not in log


@pytest.mark.minimum_pin
def test_host_checkout_stays_clean(server):
    assert host_status(server.host) == server.host_status_before, "the test server wrote into the host checkout"
