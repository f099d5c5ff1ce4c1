"""ReNO node: optimise the initial noise of a few-step model against a reward stack (samplers/reno.py)."""

from __future__ import annotations

import logging

import comfy.model_management
import comfy.utils
import torch
from comfy_api.latest import io

from ..reward.base import Reward
from ..reward.stack import RewardStack
from ..samplers import reno
from . import validation
from .compat import ADVANCED, schema
from .reward import RewardModel, RewardType

log = logging.getLogger("quickstep")

CATEGORY = "quickstep/reno"
CHECKPOINTING = {"off": (), "generator": ("generator",), "generator + vae": ("generator", "vae"),
                 "all": ("generator", "vae", "rewards")}
PREVIEW_SIZE = 512
PLOT_IMAGES = 8
_DEFAULTS = reno.ReNOConfig()


def make_config(iterations=_DEFAULTS.iterations, learning_rate=_DEFAULTS.learning_rate, steps=_DEFAULTS.steps,
                cfg=_DEFAULTS.cfg, optimizer=_DEFAULTS.optimizer, momentum=_DEFAULTS.momentum,
                nesterov=_DEFAULTS.nesterov, grad_clip=_DEFAULTS.grad_clip, reg_weight=_DEFAULTS.reg_weight,
                precision=_DEFAULTS.precision, checkpointing="off") -> reno.ReNOConfig:
    if checkpointing not in CHECKPOINTING:
        raise ValueError(f"checkpointing must be one of {', '.join(CHECKPOINTING)}; got {checkpointing!r}.")
    if not isinstance(nesterov, bool):
        raise ValueError(f"nesterov must be true or false; got {nesterov!r}.")
    config = reno.ReNOConfig(iterations=iterations, learning_rate=learning_rate, steps=steps, cfg=cfg,
                             optimizer=optimizer, momentum=momentum, nesterov=nesterov, grad_clip=grad_clip,
                             reg_weight=reg_weight, precision=precision,
                             checkpointing=frozenset(CHECKPOINTING[checkpointing]))
    config.check()
    return config


def check_prompt(prompt) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt: ReNO needs the text the rewards score the image against (usually the same text "
                         f"as the positive conditioning); got {prompt!r}. Type the prompt, or connect a STRING.")


def as_stack(reward) -> RewardStack:
    if isinstance(reward, RewardStack):
        return reward
    if isinstance(reward, Reward):
        return RewardStack.with_reno_weights([reward])
    raise ValueError(f"reward: expected a REWARD (from Reward Stack) or a REWARD_MODEL (from Load Reward Model or "
                     f"Toy CLIP Reward); got {type(reward).__name__}. Connect one of those nodes.")


def check_model_inputs(model, vae, latent: dict) -> None:
    """Family and latent-space checks that need the connected objects (before any work starts)."""
    from ..samplers import schedule

    schedule.schedule_kind(model.get_model_object("model_sampling"))
    channels = model.get_model_object("latent_format").latent_channels
    vae_channels = getattr(vae, "latent_channels", None)
    if vae_channels is not None and vae_channels != channels:
        raise ValueError(f"vae: this VAE has {vae_channels} latent channels but the model works on {channels}; "
                         f"connect the VAE of the same family as the model (e.g. the checkpoint's own VAE).")
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
        raise ValueError("latent: expected a LATENT with 4-D samples [batch, channels, height, width] (e.g. from "
                         "EmptyLatentImage); got " + (f"shape {tuple(samples.shape)}" if isinstance(samples, torch.Tensor)
                                                      else type(samples).__name__) + ".")
    if samples.shape[1] != channels and torch.count_nonzero(samples) != 0:
        raise ValueError(f"latent: it has {samples.shape[1]} channels but the model works on {channels}; use an "
                         f"empty latent (EmptyLatentImage, or EmptySD3LatentImage for SD3/Flux) or one encoded by "
                         f"this model's VAE.")


def format_scores(result: reno.ReNOResult) -> str:
    initial, best = result.initial_scores, result.best_scores
    labels = [k for k in initial if k not in ("total", "regulariser")]
    lines = []
    for b in range(len(result.best_iteration)):
        parts = ", ".join(f"{lab} {initial[lab][b].item():.4f} -> {best[lab][b].item():.4f}" for lab in labels)
        lines.append(f"image {b}: weighted {initial['total'][b].item():.4f} -> {best['total'][b].item():.4f} "
                     f"(best at iteration {result.best_iteration[b]}; {parts})")
    weights = ", ".join(f"{lab} x{w:g}" for lab, w in result.weights.items())
    return "\n".join(lines + [f"weights: {weights}; {len(result.history)} iterations"])


def plot(result: reno.ReNOResult) -> torch.Tensor:
    from ..plots import line_chart

    batch = min(len(result.best_iteration), PLOT_IMAGES)
    keys = ["total"] + [k for k in result.history[0] if k not in ("total", "regulariser")] + ["regulariser"]
    panels, markers = {}, {}
    for key in keys:
        title = {"total": "weighted reward (best iterate circled)", "regulariser": "norm regulariser"}.get(key, key)
        panels[title] = {f"image {b}": [h[key][b].item() for h in result.history] for b in range(batch)}
        markers[title] = [(result.best_iteration[b], result.history[result.best_iteration[b]][key][b].item())
                          for b in range(batch)]
    return line_chart(panels, markers=markers)


class ReNO(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepReNO",
            display_name="ReNO Noise Optimizer",
            category=CATEGORY,
            search_aliases=["reno", "noise optimization", "reward guidance", "optimize noise", "test-time"],
            description="ReNO (Eyring et al., NeurIPS 2024): optimises the initial noise of a one-step (or few-step) "
                        "model by backpropagating differentiable rewards through the model, the VAE decoder and the "
                        "rewards, and returns the best image found. Iteration 0 is the plain Turbo sample of the "
                        "seed, so the result never scores below it. Paper defaults: 50 iterations, SGD lr 5 with "
                        "Nesterov momentum, gradient clip 0.1, norm regulariser 0.01. Re-render the noise output "
                        "with SamplerCustomAdvanced to use it with another model or more steps.",
            inputs=[
                io.Model.Input("model", tooltip="A few-step model (SD-Turbo, SDXL-Turbo, FLUX.1-schnell, a LADD "
                                                "student...), sampled on the Turbo grid with eta 0."),
                io.Vae.Input("vae", tooltip="The model's VAE; gradients flow through its decoder."),
                io.Conditioning.Input("positive", tooltip="What the image should show."),
                io.Conditioning.Input("negative", optional=True, tooltip="Used only when cfg is not 1.0."),
                io.MultiType.Input("reward", types=[RewardType, RewardModel],
                                   tooltip="A REWARD from Reward Stack, or one REWARD_MODEL (then weighted with "
                                           "ReNO's weight for its kind)."),
                io.Latent.Input("latent", tooltip="Sets the size and batch (e.g. EmptyLatentImage); each image of "
                                                  "the batch is optimised with its own best iterate."),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The text the rewards score the images against (usually the positive "
                                        "prompt)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the initial noise: the same noise core's RandomNoise/KSampler draw."),
                io.Int.Input("iterations", default=_DEFAULTS.iterations, min=1, max=1000,
                             tooltip="Forward passes (one update after each but the last). ReNO uses 50; 1 = the "
                                     "plain sample."),
                io.Float.Input("learning_rate", default=_DEFAULTS.learning_rate, min=0.001, max=100.0, step=0.1,
                               tooltip="Step size on the noise. ReNO: 5 (10 for Hyper-SD; its demo uses 2.5 for "
                                       "smoother trajectories)."),
                io.Int.Input("steps", default=_DEFAULTS.steps, min=1, max=reno.MAX_STEPS,
                             tooltip="Model calls per image on the Turbo grid (1 = the paper's one-step setting). "
                                     "Cost grows with steps."),
                io.Float.Input("cfg", default=_DEFAULTS.cfg, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="1.0 = no CFG (turbo models); above 1 uses negative and doubles the cost."),
                io.Combo.Input("optimizer", options=list(reno.OPTIMIZERS), default=_DEFAULTS.optimizer, **ADVANCED,
                               tooltip="sgd: the paper's SGD with momentum; adam: Adam (eps 1e-2)."),
                io.Float.Input("momentum", default=_DEFAULTS.momentum, min=0.0, max=1.0, step=0.01, **ADVANCED,
                               tooltip="SGD momentum (the paper: 0.9)."),
                io.Boolean.Input("nesterov", default=_DEFAULTS.nesterov, **ADVANCED,
                                 tooltip="Nesterov momentum for SGD (the paper: on)."),
                io.Float.Input("grad_clip", default=_DEFAULTS.grad_clip, min=0.0001, max=100.0, step=0.01,
                               **ADVANCED, tooltip="Largest L2 norm of each image's noise gradient (the paper: 0.1)."),
                io.Float.Input("reg_weight", default=_DEFAULTS.reg_weight, min=0.0, max=10.0, step=0.001,
                               **ADVANCED, tooltip="Weight of the noise-norm regulariser that keeps the noise "
                                                   "Gaussian-like (the paper: 0.01; 0 turns it off)."),
                io.Combo.Input("precision", options=list(reno.PRECISIONS), default=_DEFAULTS.precision, **ADVANCED,
                               tooltip="Autocast for the model, VAE and rewards. The noise, optimiser and "
                                       "regulariser always stay fp32. bf16/fp16 save memory and time on GPUs."),
                io.Combo.Input("checkpointing", options=list(CHECKPOINTING), default="off", **ADVANCED,
                               tooltip="Gradient checkpointing: recompute activations in backward instead of "
                                       "storing them (much less memory, about a third more time)."),
            ],
            outputs=[
                io.Latent.Output(display_name="latent", tooltip="The best latents (VAE space), one per image."),
                io.Image.Output(display_name="images", tooltip="The best images, decoded."),
                io.Noise.Output(display_name="noise", tooltip="The optimised noise as a NOISE for "
                                                              "SamplerCustomAdvanced: re-render it with the same "
                                                              "latent size, another model or more steps."),
                io.Image.Output(display_name="plot", tooltip="Each reward and the weighted total against "
                                                             "iteration, best iterate circled."),
                io.String.Output(display_name="scores", tooltip="Initial and best score per image and reward."),
            ],
        )

    @classmethod
    def validate_inputs(cls, prompt=None, seed=None, iterations=None, learning_rate=None, steps=None, cfg=None,
                        optimizer=None, momentum=None, nesterov=None, grad_clip=None, reg_weight=None, precision=None,
                        checkpointing=None):
        given = {k: v for k, v in dict(iterations=iterations, learning_rate=learning_rate, steps=steps, cfg=cfg,
                                       optimizer=optimizer, momentum=momentum, nesterov=nesterov, grad_clip=grad_clip,
                                       reg_weight=reg_weight, precision=precision,
                                       checkpointing=checkpointing).items() if v is not None}
        schema_check = validation.check(cls, prompt=prompt, seed=seed, **given)
        if schema_check is not True:
            return schema_check
        try:
            if prompt is not None:
                check_prompt(prompt)
            make_config(**given)
        except ValueError as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, model, vae, positive, reward, latent, prompt, seed, iterations, learning_rate, steps, cfg,
                negative=None, optimizer=_DEFAULTS.optimizer, momentum=_DEFAULTS.momentum,
                nesterov=_DEFAULTS.nesterov, grad_clip=_DEFAULTS.grad_clip, reg_weight=_DEFAULTS.reg_weight,
                precision=_DEFAULTS.precision, checkpointing="off") -> io.NodeOutput:
        validation.require(cls, prompt=prompt, seed=seed, iterations=iterations, learning_rate=learning_rate,
                           steps=steps, cfg=cfg, optimizer=optimizer, momentum=momentum, nesterov=nesterov,
                           grad_clip=grad_clip, reg_weight=reg_weight, precision=precision,
                           checkpointing=checkpointing)
        check_prompt(prompt)
        config = make_config(iterations, learning_rate, steps, cfg, optimizer, momentum, nesterov, grad_clip,
                             reg_weight, precision, checkpointing)
        stack = as_stack(reward)
        check_model_inputs(model, vae, latent)  # optimise_noise checks cfg against negative before any work
        pbar = comfy.utils.ProgressBar(config.iterations)

        def on_iteration(k, total, best_images):
            from PIL import Image

            pixels = (best_images[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            pbar.update_absolute(k + 1, total, ("JPEG", Image.fromarray(pixels), PREVIEW_SIZE))

        try:
            result = reno.optimise_noise(model, vae, stack, positive, negative, latent, prompt, seed, config,
                                         on_iteration=on_iteration,
                                         check_interrupt=comfy.model_management.throw_exception_if_processing_interrupted)
        except comfy.model_management.OOM_EXCEPTION as e:
            shape = tuple(latent["samples"].shape)
            raise RuntimeError(
                f"ReNO ran out of memory on a latent of shape {shape} (batch {shape[0]}, {shape[-1]}x{shape[-2]} "
                f"latent) with {config.steps} step(s), checkpointing {checkpointing!r} and precision "
                f"{config.precision!r}. Switch on checkpointing 'all', use precision bf16 (or fp16), lower the batch "
                f"or the image size, or use fewer rewards.") from e
        out = {k: v for k, v in latent.items() if k not in ("samples", "noise_mask", "downscale_ratio_spacial")}
        out["samples"] = result.latent
        text = format_scores(result)
        log.info("[quickstep] ReNO %r:\n%s", prompt, text)
        return io.NodeOutput(out, result.images, reno.OptimizedNoise(result.noise, seed), plot(result), text)


RENO_NODES: list[type[io.ComfyNode]] = [ReNO]
