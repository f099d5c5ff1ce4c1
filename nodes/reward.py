"""Reward nodes: load a reward model from models/rewards, stack rewards with weights, score and rank images."""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..reward import loading
from ..reward.stack import RENO_WEIGHTS, RewardStack
from . import validation
from .compat import ADVANCED, schema

CATEGORY = "quickstep/reward"
RewardModel = io.Custom("REWARD_MODEL")
RewardType = io.Custom("REWARD")
AUTO = "auto"
DTYPE_OPTIONS = ("auto", "fp32", "bf16", "fp16")
WEIGHTING = ("reno", "manual")
STACK_SLOTS = 4
SCORE_CHUNK = 8

loading.register_folder()


def _reward_files() -> list[str]:
    return loading.list_reward_files()


def _reward_path(reward_name, kind):
    """The file for a user's reward_name: it must be one of the names the reward folders list."""
    return loading.resolve_name(reward_name, kind if kind in loading.KINDS else None)


def _backbone_path(backbone):
    """None for auto, else the listed CLIP file the aesthetic MLP should use (a null is refused)."""
    if isinstance(backbone, str) and backbone == AUTO:
        return None
    return loading.resolve_name(backbone, "aesthetic", input="backbone")


class LoadReward(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepLoadReward",
            display_name="Load Reward Model",
            category=CATEGORY,
            search_aliases=["reward", "hps", "imagereward", "pickscore", "clip score", "aesthetic", "reno"],
            description="Loads a differentiable reward model from models/rewards (no downloads): CLIP score and "
                        "PickScore (transformers CLIP folders), HPSv2.1 (HPS_v2.1_compressed.pt), ImageReward v1.0 "
                        "(ImageReward.pt + med_config.json + vocab.txt) or the LAION aesthetic MLP (with a CLIP "
                        "ViT-L/14 folder). The weights go through ComfyUI's memory manager like core models.",
            inputs=[
                io.Combo.Input("reward_name", options=_reward_files(),
                               tooltip="A file in models/rewards (or a 'rewards:' path of extra_model_paths.yaml). "
                                       "For transformers folders pick the weights file inside the folder."),
                io.Combo.Input("kind", options=[AUTO, *loading.KINDS], default=AUTO,
                               tooltip="auto detects the kind from the file layout (a transformers CLIP whose path "
                                       "contains 'pickscore' is PickScore, any other is a CLIP score)."),
                io.Combo.Input("dtype", options=list(DTYPE_OPTIONS), default="auto",
                               tooltip="Weight precision. auto: bf16 or fp16 where the device supports it, else fp32 "
                                       "(ReNO itself runs the rewards in fp16)."),
                io.Boolean.Input("gradient_checkpointing", default=False, **ADVANCED,
                                 tooltip="Recompute transformer activations during backward: much less memory for "
                                         "ReNO's gradient, about a third more time. No effect on plain scoring."),
                io.Combo.Input("backbone", options=[AUTO, *_reward_files()], default=AUTO, optional=True,
                               **ADVANCED,
                               tooltip="Aesthetic only: the CLIP ViT-L/14 that embeds the images. auto picks a CLIP "
                                       "folder in models/rewards whose embedding width matches the MLP."),
            ],
            outputs=[RewardModel.Output(display_name="reward_model",
                                        tooltip="The loaded reward; combine one or more with Reward Stack.")],
        )

    @classmethod
    def validate_inputs(cls, reward_name=None, kind=None, dtype=None, gradient_checkpointing=None, backbone=None):
        """The names must be files the reward folders list (reward_name and backbone are checked here, not by
        ComfyUI's combo check, so that a missing file's message says where to get it)."""
        message = validation.check(cls, kind=kind, dtype=dtype, gradient_checkpointing=gradient_checkpointing)
        if message is not True:
            return message
        try:
            if reward_name is not None:  # None: linked, checked in execute
                _reward_path(reward_name, kind)
            if backbone is not None:
                _backbone_path(backbone)
        except ValueError as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, reward_name, kind, dtype, gradient_checkpointing, backbone=AUTO) -> io.NodeOutput:
        validation.require(cls, kind=kind, dtype=dtype, gradient_checkpointing=gradient_checkpointing)
        reward = loading.load_reward(_reward_path(reward_name, kind), kind, dtype=dtype,
                                     gradient_checkpointing=gradient_checkpointing, backbone=_backbone_path(backbone))
        return io.NodeOutput(reward)


class RewardStackNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        inputs = []
        for i in range(1, STACK_SLOTS + 1):
            inputs.append(RewardModel.Input(f"reward_{i}", optional=i > 1,
                                            tooltip="A reward from Load Reward Model." if i == 1 else
                                            "Another reward (optional)."))
        inputs.append(io.Combo.Input("weighting", options=list(WEIGHTING), default="reno",
                                     tooltip="reno: ReNO's weights by kind (HPS 5.0, ImageReward 1.0, PickScore 0.05, "
                                             "CLIP 0.01; aesthetic 1.0). manual: the weight inputs below."))
        for i in range(1, STACK_SLOTS + 1):
            inputs.append(io.Float.Input(f"weight_{i}", default=1.0, min=0.0, max=100.0, step=0.01, optional=True,
                                         **ADVANCED,
                                         tooltip=f"Weight of reward_{i} when weighting is manual."))
        return schema(
            node_id="QuickstepRewardStack",
            display_name="Reward Stack",
            category=CATEGORY,
            search_aliases=["reward weights", "reno rewards", "combine rewards"],
            description="Combines up to four reward models into one weighted REWARD: ReNO optimises the weighted sum "
                        "of the reward losses, Score Images ranks by the weighted sum of the scores. ImageReward mostly "
                        "helps prompt following; more HPS weight gives more visually pleasing images.",
            inputs=inputs,
            outputs=[RewardType.Output(display_name="reward", tooltip="The weighted reward, for Score Images or ReNO.")],
        )

    @classmethod
    def validate_inputs(cls, weighting=None, weight_1=None, weight_2=None, weight_3=None, weight_4=None):
        return validation.check(cls, weighting=weighting, weight_1=weight_1, weight_2=weight_2, weight_3=weight_3,
                                weight_4=weight_4)

    @classmethod
    def execute(cls, reward_1, weighting="reno", reward_2=None, reward_3=None, reward_4=None, weight_1=1.0,
                weight_2=1.0, weight_3=1.0, weight_4=1.0) -> io.NodeOutput:
        validation.require(cls, weighting=weighting, weight_1=weight_1, weight_2=weight_2, weight_3=weight_3,
                           weight_4=weight_4)
        entries = []
        for reward, weight in ((reward_1, weight_1), (reward_2, weight_2), (reward_3, weight_3), (reward_4, weight_4)):
            if reward is not None:
                entries.append((reward, RENO_WEIGHTS.get(reward.kind, 1.0) if weighting == "reno" else weight))
        return io.NodeOutput(RewardStack(entries))


def rank(stack: RewardStack, images: torch.Tensor, prompt: str, chunk: int = SCORE_CHUNK):
    """(total scores [B], per-reward scores {label: [B]}) without autograd, in chunks of `chunk` images."""
    totals, parts = [], {}
    with torch.no_grad():
        for start in range(0, images.shape[0], chunk):
            piece = images[start:start + chunk]
            per = stack.scores(piece, prompt)
            totals.append(sum(w * per[label] for label, _, w in stack.entries if w != 0).cpu())
            for label, value in per.items():
                parts.setdefault(label, []).append(value.cpu())
    return torch.cat(totals), {label: torch.cat(values) for label, values in parts.items()}


def format_scores(total: torch.Tensor, parts: dict[str, torch.Tensor], order: list[int]) -> str:
    lines = []
    for rank_pos, i in enumerate(order):
        detail = ", ".join(f"{label} {values[i].item():.4f}" for label, values in parts.items())
        lines.append(f"#{rank_pos + 1} image {i}: {total[i].item():.4f} ({detail})")
    return "\n".join(lines)


class ScoreImages(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepScoreImages",
            display_name="Score Images (best-of-N)",
            category=CATEGORY,
            search_aliases=["rank images", "best of n", "image reward score", "select best"],
            description="Scores every image of a batch against the prompt with a REWARD and sorts the batch best "
                        "first, so a batch of seeds becomes best-of-N selection. Images of any size work; they are "
                        "resized and centre-cropped as each reward model expects.",
            is_output_node=True,
            inputs=[
                io.Image.Input("images", tooltip="The batch to score (e.g. several seeds of one prompt)."),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The prompt the images should match (ignored by the aesthetic reward)."),
                RewardType.Input("reward", tooltip="The weighted reward from Reward Stack."),
            ],
            outputs=[
                io.String.Output(display_name="scores_text", tooltip="One line per image, best first: weighted score "
                                                                     "and each reward's score."),
                io.Float.Output(display_name="scores", is_output_list=True,
                                tooltip="The weighted score of each image, in input order (a list)."),
                io.Int.Output(display_name="best_index", tooltip="Batch index of the best image (0-based)."),
                io.Image.Output(display_name="sorted_images", tooltip="The batch sorted best first; take index 0 "
                                                                      "(e.g. with ImageFromBatch) for best-of-N."),
            ],
        )

    @classmethod
    def execute(cls, images, prompt, reward) -> io.NodeOutput:
        if not isinstance(reward, RewardStack):
            raise ValueError("reward must come from a Reward Stack node (a REWARD); connect Load Reward Model "
                             "through Reward Stack first.")
        total, parts = rank(reward, images, prompt)
        order = sorted(range(total.shape[0]), key=lambda i: -total[i].item())
        text = format_scores(total, parts, order)
        sorted_images = images[torch.tensor(order, device=images.device)]
        return io.NodeOutput(text, [float(v) for v in total], order[0], sorted_images, ui=ui.PreviewText(text))


REWARD_NODES = [LoadReward, RewardStackNode, ScoreImages]
