"""Quickstep: few-step image generation for ComfyUI (Turbo sampling, ReNO, LADD).

ComfyUI loads this folder from custom_nodes/ and calls `comfy_entrypoint`. Nothing heavy is imported here, so the
pack's submodules (samplers/, reward/, distill/, toyworld/) stay importable without ComfyUI, and the node modules
load only when ComfyUI asks for them.
"""

__version__ = "0.1.0"


async def comfy_entrypoint():
    from .nodes import QuickstepExtension

    return QuickstepExtension()
