"""Quickstep's ComfyUI nodes: thin V3 classes that validate inputs, call the torch modules and report."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .ladd import LADD_NODES
from .ladd_export import LADDExport
from .reno import RENO_NODES
from .reward import REWARD_NODES
from .toy import TOY_NODES
from .turbo import TurboKSampler, TurboSampler, TurboScheduler

NODES: list[type[io.ComfyNode]] = [TurboScheduler, TurboSampler, TurboKSampler, *REWARD_NODES, *RENO_NODES, *TOY_NODES,
                                   *LADD_NODES, LADDExport]


class QuickstepExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
