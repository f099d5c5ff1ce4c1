"""Tier (b): ComfyUI's own modules, imported from the pinned host before any test module here is collected."""

import harness


def pytest_configure(config):
    harness.setup_inprocess_host(config.getoption("--pin"))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny():
    """tiny(family) -> (MODEL, CLIP, VAE), built once per family and session."""
    from comfy_testpack import tiny_models

    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = tiny_models.build_family(family)
        return cache[family]

    return get


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one torch thread is as fast, and does not thrash a machine shared with other jobs."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
