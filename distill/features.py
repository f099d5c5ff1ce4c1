"""Discriminator features: the frozen teacher's activations after several blocks, as maps on the latent grid.

LADD (Sauer et al. 2024, Sec. 3.1) takes token features from several blocks of the teacher itself and reshapes them
to 2-D grids for the heads. Here: UNets (SD1.x/2.x/SDXL) give input, middle and output block outputs, already maps;
MMDiT (SD3) joint blocks and Flux double/single blocks give image tokens, which are reshaped to the patch grid (Flux
single blocks carry the text tokens first: the last h*w tokens are the image). Forward hooks record them, and the
pass stops right after the deepest hooked block (as FastGen's `return_features_early`) by raising `_Stop`, caught in
`extract`: the autograd graph up to that block is kept, the rest of the network is never run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

UNET, MMDIT, FLUX = "unet", "mmdit", "flux"


class _Stop(Exception):
    """Raised by the hook of the deepest block: everything after it is not needed."""


@dataclass(frozen=True)
class Block:
    name: str  # module path under diffusion_model, e.g. "input_blocks.3"
    channels: int


def architecture(diffusion_model) -> str:
    if hasattr(diffusion_model, "input_blocks") and hasattr(diffusion_model, "output_blocks"):
        return UNET
    if hasattr(diffusion_model, "joint_blocks"):
        return MMDIT
    if hasattr(diffusion_model, "double_blocks"):
        return FLUX
    raise ValueError(f"model: LADD supports UNet (SD1.x, SD2.x, SDXL), MMDiT (SD3) and Flux models; this one is a "
                     f"{type(diffusion_model).__name__}.")


def _unet_channels(block) -> int:
    channels = None
    for layer in block:
        if hasattr(layer, "out_channels"):
            channels = layer.out_channels
        elif channels is None and hasattr(layer, "in_channels"):
            channels = layer.in_channels
    if channels is None:
        raise ValueError(f"cannot tell the channels of UNet block {type(block).__name__}")
    return int(channels)


def candidate_blocks(diffusion_model) -> list[Block]:
    """Every block a head may read, in execution order."""
    arch = architecture(diffusion_model)
    if arch == UNET:
        blocks = [Block(f"input_blocks.{i}", _unet_channels(b)) for i, b in enumerate(diffusion_model.input_blocks)]
        blocks.append(Block("middle_block", _unet_channels(diffusion_model.middle_block)))
        blocks += [Block(f"output_blocks.{i}", _unet_channels(b)) for i, b in enumerate(diffusion_model.output_blocks)]
        return blocks
    hidden = int(diffusion_model.hidden_size)
    if arch == MMDIT:
        return [Block(f"joint_blocks.{i}", hidden) for i in range(len(diffusion_model.joint_blocks))]
    return ([Block(f"double_blocks.{i}", hidden) for i in range(len(diffusion_model.double_blocks))]
            + [Block(f"single_blocks.{i}", hidden) for i in range(len(diffusion_model.single_blocks))])


def default_blocks(diffusion_model, count: int = 3) -> list[Block]:
    """UNets: the last input block, the middle block and the first output block of the next-higher resolution (so
    the teacher pass skips the rest of the decoder). DiTs: `count` evenly spaced blocks over the first two thirds."""
    blocks = candidate_blocks(diffusion_model)
    if architecture(diffusion_model) == UNET:
        n_in, n_out = len(diffusion_model.input_blocks), len(diffusion_model.output_blocks)
        lowest_level = int(list(diffusion_model.num_res_blocks)[-1]) + 1  # output blocks at the lowest resolution
        return [blocks[n_in - 1], blocks[n_in], blocks[n_in + 1 + min(n_out - 1, lowest_level)]]
    last = max(1, math.ceil(len(blocks) * 2 / 3))
    count = min(count, last)
    return [blocks[round((i + 1) * last / count) - 1] for i in range(count)]


def parse_blocks(diffusion_model, text: str) -> list[Block]:
    """Blocks named in `text` ("auto", or comma-separated module paths such as "input_blocks.5, middle_block")."""
    if not text.strip() or text.strip() == "auto":
        return default_blocks(diffusion_model)
    by_name = {b.name: b for b in candidate_blocks(diffusion_model)}
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in by_name]
    if bad:
        shown = ", ".join(repr(n if len(n) <= 60 else n[:60] + "...") for n in bad[:5])
        raise ValueError(f"heads: {shown} {'is' if len(bad) == 1 else 'are'} not blocks of this model; use 'auto' "
                         f"or some of {list(by_name)[:40]}.")
    order = list(by_name)
    return sorted((by_name[n] for n in dict.fromkeys(names)), key=lambda b: order.index(b.name))


def _as_map(output, arch: str, grid: tuple[int, int]) -> torch.Tensor:
    if arch == UNET:
        return output
    tokens = output[1] if arch == MMDIT else (output[0] if isinstance(output, tuple) else output)
    h, w = grid
    tokens = tokens[:, -h * w:]  # Flux single blocks: [txt, img]; the image tokens are last
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


def extract(diffusion_model, blocks: list[Block], run, latent_hw: tuple[int, int]) -> list[torch.Tensor]:
    """Run `run()` (one model call) and return the feature maps of `blocks`, stopping after the deepest one."""
    arch = architecture(diffusion_model)
    patch = 1 if arch == UNET else int(getattr(diffusion_model, "patch_size", 2))
    grid = (math.ceil(latent_hw[0] / patch), math.ceil(latent_hw[1] / patch))
    found: dict[str, torch.Tensor] = {}
    deepest = blocks[-1].name
    handles = []

    def hook_for(name):
        def hook(_module, _inputs, output):
            found[name] = _as_map(output, arch, grid)
            if name == deepest:
                raise _Stop()
        return hook

    try:
        for b in blocks:
            module = diffusion_model.get_submodule(b.name)
            if arch == UNET:  # the UNet runs a block's layers one by one (forward_timestep_embed): hook the last
                module = module[-1]
            handles.append(module.register_forward_hook(hook_for(b.name)))
        try:
            run()
        except _Stop:
            pass
    finally:
        for h in handles:
            h.remove()
    missing = [b.name for b in blocks if b.name not in found]
    if missing:
        raise RuntimeError(f"the model call did not run blocks {missing}")
    return [found[b.name] for b in blocks]
