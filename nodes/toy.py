"""Toy-world nodes: the shipped tiny text-to-image family, its CLIP reward, and the GenEval-style evaluator."""

from __future__ import annotations

import json
import logging

import torch
from comfy_api.latest import io

from ..toyworld import evaluate, models, scenes
from . import validation
from .compat import schema

log = logging.getLogger("quickstep")

CATEGORY = "quickstep/toy"
RewardModel = io.Custom("REWARD_MODEL")
_EXAMPLE = "a photo of a red circle and a blue square"
TOY_MODELS = models.NAMED  # by the name QuickstepToyCheckpoint's `model` input shows
MAX_PROMPT = 200  # the longest toy-grammar prompt is under 70 characters


class ToyCheckpoint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepToyCheckpoint",
            display_name="Toy Checkpoint (64x64 shapes)",
            category=CATEGORY,
            search_aliases=["toy model", "tiny model", "toy world", "demo checkpoint"],
            description="The tiny text-to-image family shipped with Quickstep (a few MB, trained on 64x64 scenes of "
                        "red/green/blue/yellow circles, squares and triangles): an SD1-style UNet teacher, its "
                        "CLIP text encoder and a 4x VAE. Runs through core nodes on any CPU in seconds. Use "
                        "EmptyLatentImage 128x128 (core makes a 16x16 latent; the toy VAE decodes it 4x to a "
                        "64x64 image) and prompts like '" + _EXAMPLE + "'.",
            inputs=[
                io.Combo.Input("model", options=list(TOY_MODELS), default="teacher",
                               tooltip="Which toy diffusion model to load. teacher: the 25-step SD1-style UNet "
                                       "trained with caption dropout (use CFG ~3-5). student: the teacher plus the "
                                       "shipped LADD LoRA, a 1-4 step model (Turbo sampler, CFG 1). teacher_v2: the "
                                       "v2 teacher (cross-attention at every level) with its own CLIP, trained to "
                                       "bind colours, counts and relations (CFG ~3-5; still in training, see the "
                                       "README). student_v2: teacher_v2 plus its LADD LoRA, 1-4 steps, CFG 1."),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="The toy UNet (SD1 eps-prediction schedule)."),
                io.Clip.Output(display_name="CLIP", tooltip="The toy CLIP text encoder (ComfyUI's SD1 tokenizer)."),
                io.Vae.Output(display_name="VAE", tooltip="The toy 4x KL VAE: 64x64 images <-> 16x16x4 latents."),
            ],
        )

    @classmethod
    def execute(cls, model="teacher") -> io.NodeOutput:
        validation.require(cls, model=model)
        unet, clip = models.load_named(model)
        return io.NodeOutput(unet, clip, models.load_vae())


class ToyReward(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepToyReward",
            display_name="Toy Reward",
            category=CATEGORY,
            search_aliases=["toy reward", "clip score toy", "toy match reward", "toy imagereward"],
            description="A differentiable REWARD_MODEL for the toy world, for ReNO and best-of-N on the toy model. "
                        "match: a small image-text cross-encoder trained on the toy scenes with hard negatives "
                        "(wrong colour, shape, count, relation; blank, dropped, extra and swapped objects); its "
                        "score is log P(image matches prompt), 0 at best. clip: the toy CLIP (both towers) as a "
                        "CLIP score (100 x cosine), what this node gave before; it barely sees position or count. "
                        "Neither is the evaluator: Toy Evaluate scores with a separate analytic detector.",
            inputs=[
                io.Combo.Input("model", options=list(models.TOY_REWARDS), default="match", optional=True,
                               tooltip="match: the toy match reward (sees position, count and colour binding; "
                                       "score log P(match) <= 0). clip: the toy CLIP score (100 x cosine), the "
                                       "reward of workflows made before this choice existed."),
            ],
            outputs=[RewardModel.Output(display_name="REWARD_MODEL",
                                        tooltip="The reward: higher when the image matches the prompt.")],
        )

    @classmethod
    def execute(cls, model="match") -> io.NodeOutput:
        validation.require(cls, model=model)
        return io.NodeOutput(models.load_toy_reward(model=model))


class ToyEvaluate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepToyEvaluate",
            display_name="Toy Evaluate (GenEval-style)",
            category=CATEGORY,
            search_aliases=["geneval", "toy eval", "toy score"],
            is_output_node=True,
            description="Scores toy images against a toy-grammar prompt the GenEval way with an analytic detector "
                        "(colour segmentation + shape templates), independent of every reward. Categories: single "
                        "object, two objects, counting, colours, position, colour attribution. An output node: it runs and "
                        "shows its score even when nothing consumes its outputs.",
            inputs=[
                io.Image.Input("images", tooltip="Decoded toy images (any batch size; resampled to 64x64)."),
                io.String.Input("prompt", default=_EXAMPLE, multiline=False,
                                tooltip="A prompt of the toy grammar, e.g. 'a photo of two circles', 'a photo of a "
                                        "green triangle above a square' (shapes circle/square/triangle; colours "
                                        "red/green/blue/yellow; left of/right of/above/below)."),
            ],
            outputs=[
                io.Float.Output(display_name="score", tooltip="Fraction of the images that pass (GenEval accuracy)."),
                io.String.Output(display_name="details", tooltip="JSON: category, pass/fail per image, and what "
                                                                 "the detector found."),
            ],
        )

    @classmethod
    def validate_inputs(cls, prompt=None):
        message = validation.check(cls, prompt=prompt)
        if message is not True:
            return message
        if prompt is not None:
            if len(prompt) > MAX_PROMPT:
                return (f"prompt is {len(prompt)} characters long; toy-world prompts are short sentences such as "
                        f"'{_EXAMPLE}'.")
            try:
                scenes.parse_prompt(prompt)
            except ValueError as e:
                return str(e)
        return True

    @classmethod
    def execute(cls, images: torch.Tensor, prompt: str) -> io.NodeOutput:
        if images.ndim != 4 or images.shape[-1] < 3:
            raise ValueError(f"images must be an IMAGE batch [B, H, W, 3]; got shape {tuple(images.shape)}. Connect "
                             "VAEDecode's output.")
        p = scenes.parse_prompt(prompt)
        results = [evaluate.score(img.float().cpu().numpy(), p) for img in images]
        score = sum(r.passed for r in results) / len(results)
        details = {"prompt": p.text, "category": p.category, "score": score,
                   "images": [r.as_dict() for r in results]}
        log.info("[quickstep] toy evaluate %r: %.2f (%d images)", p.text, score, len(results))
        return io.NodeOutput(score, json.dumps(details), ui={"text": [f"{p.category}: {score:.2f}"]})


TOY_NODES: list[type[io.ComfyNode]] = [ToyCheckpoint, ToyReward, ToyEvaluate]
