"""Turbo sampling nodes: a model-aware few-step SIGMAS, the Turbo SAMPLER, and an all-in-one KSampler."""

from __future__ import annotations

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io

from ..samplers import grid as timestep_grid  # `grid` is an input name of TurboScheduler
from ..samplers.ksampler import ETA_MODES, make_sampler, make_sigmas
from . import validation
from .compat import ADVANCED, schema

CATEGORY = "quickstep/sampling"
LATENT_FAMILIES = {4: "SD1.x/SD2.x/SDXL", 16: "SD3/SD3.5/Flux.1"}


def _text_width(model) -> int | None:
    """Width of the text embeddings the model's diffusion network takes (None where it cannot be read)."""
    config = model.model.model_config.unet_config
    embedder = (config.get("context_embedder_config") or {}).get("params", {})  # SD3 MMDiT
    width = config.get("context_dim") or config.get("context_in_dim") or embedder.get("in_features")
    return int(width) if width else None


def check_family(model, samples, conditionings: dict) -> None:
    """A latent or conditioning of another model family fails here with both families named, not as a torch shape
    error inside the model. (Empty latents were already given the model's channels by fix_empty_latent_channels.)"""
    family = type(model.model.model_config).__name__
    channels = model.get_model_object("latent_format").latent_channels
    if samples.ndim >= 2 and samples.shape[1] != channels:
        got = samples.shape[1]
        raise ValueError(
            f"latent_image has {got} channels ({LATENT_FAMILIES.get(got, 'another model family')} latent), but this "
            f"{family} model takes {channels}-channel latents ({LATENT_FAMILIES.get(channels, family)}). Make the "
            f"latent with this model's VAE (VAEEncode) or the empty-latent node of its family.")
    width = _text_width(model)
    for name, cond in conditionings.items():
        for entry in cond or []:
            got = entry[0].shape[-1] if hasattr(entry[0], "shape") else None
            if width and got and got != width:
                raise ValueError(
                    f"{name} holds {got}-wide text embeddings, but this {family} model takes {width}-wide ones: the "
                    f"conditioning comes from another model family's text encoder. Encode the prompt with the CLIP "
                    f"loaded with this model.")


def _steps_input():
    return io.Int.Input("steps", default=1, min=timestep_grid.MIN_STEPS, max=timestep_grid.MAX_STEPS,
                        tooltip="Number of model calls. Distilled turbo models use 1-4; up to 8 allowed.")


def _denoise_input():
    return io.Float.Input("denoise", default=1.0, min=0.01, max=1.0, step=0.01,
                          tooltip="1.0 for text-to-image; lower values keep that much of the input latent "
                                  "(img2img strength): the grid then spans only the top `denoise` of the schedule.")


_ETA_MODE_TOOLTIP = ("auto: fresh noise between steps (eta 1) on discrete eps/v models such as SD-Turbo, SDXL-Turbo "
                     "and DMD2; deterministic steps (eta 0) on flow models such as SD3.5-Large-Turbo and "
                     "FLUX.1-schnell. manual: use the eta input.")
_ETA_TOOLTIP = ("Only with eta_mode manual. 0 = deterministic (Euler/DDIM, uses the noise the model implies), "
                "1 = fresh noise (LCM/ancestral); in between blends them (TCD's gamma).")
_S_NOISE_TOOLTIP = "Scale of the fresh noise added between steps (1.0 = as trained)."


class TurboScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepTurboScheduler",
            display_name="Turbo Scheduler (1-4 step)",
            category=CATEGORY,
            search_aliases=["turbo", "few step", "schnell", "lightning", "dmd2", "ladd sigmas"],
            description="Few-step SIGMAS read off the connected model's own schedule: trailing timesteps "
                        "(999, 749, 499, 249) on SD1.x/SD2.x/SDXL, flow times 1, .75, .5, .25 through the model's "
                        "shift on SD3/SD3.5/Flux. Feed it to SamplerCustom or SamplerCustomAdvanced. Unlike core's "
                        "SDTurboScheduler it is right for flow models and uses the spacing turbo models train on.",
            inputs=[
                io.Model.Input("model", tooltip="The model to sample; its model_sampling (and any shift patched "
                                                "onto it) defines the sigmas."),
                _steps_input(),
                _denoise_input(),
                io.Combo.Input("grid", options=list(timestep_grid.SPACINGS), default=timestep_grid.TRAILING, **ADVANCED,
                               tooltip="trailing: the grid LADD students, SDXL-Lightning, DMD2 and diffusers' "
                                       "SD-Turbo use (4 steps: 999, 749, 499, 249). add_demo: Stability's ADD demo "
                                       "and core SDTurboScheduler spacing (999, 899, 799, 699)."),
                io.String.Input("custom_timesteps", default="", optional=True, **ADVANCED,
                                tooltip="Overrides steps, denoise and grid. A strictly decreasing list: integer "
                                        "timesteps 0-999 on discrete models (e.g. '999, 749, 499, 249'), flow times "
                                        "in (0, 1] on flow models (e.g. '1, 0.75, 0.5, 0.25')."),
            ],
            outputs=[io.Sigmas.Output(tooltip="steps + 1 descending sigmas ending in 0.")],
        )

    @classmethod
    def validate_inputs(cls, steps=None, denoise=None, grid=None, custom_timesteps=None):
        """Checks what does not need the model before the queue runs; the model's range is checked in execute."""
        message = validation.check(cls, steps=steps, denoise=denoise, grid=grid, custom_timesteps=custom_timesteps)
        if message is not True:
            return message
        try:
            if custom_timesteps and custom_timesteps.strip():
                timestep_grid.parse_custom(custom_timesteps)
            elif None not in (steps, denoise, grid):
                timestep_grid.fractions(steps, denoise, grid)
        except ValueError as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, model, steps, denoise, grid=timestep_grid.TRAILING, custom_timesteps="") -> io.NodeOutput:
        validation.require(cls, steps=steps, denoise=denoise, grid=grid, custom_timesteps=custom_timesteps)
        return io.NodeOutput(make_sigmas(model, steps, denoise, grid, custom_timesteps or ""))


class TurboSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepTurboSampler",
            display_name="Turbo Sampler",
            category=CATEGORY,
            search_aliases=["turbo", "lcm", "tcd", "few step sampler"],
            description="Few-step SAMPLER for SamplerCustom/SamplerCustomAdvanced: predicts x0, then re-noises to "
                        "the next sigma with the model's own noise scaling (right for eps, v and flow models). eta "
                        "blends the model's implied noise (deterministic, Euler/DDIM) with fresh noise (LCM-like).",
            inputs=[
                io.Combo.Input("eta_mode", options=list(ETA_MODES), default="auto", tooltip=_ETA_MODE_TOOLTIP),
                io.Float.Input("eta", default=1.0, min=0.0, max=1.0, step=0.01, tooltip=_ETA_TOOLTIP),
                io.Float.Input("s_noise", default=1.0, min=0.0, max=2.0, step=0.01, tooltip=_S_NOISE_TOOLTIP,
                               **ADVANCED),
            ],
            outputs=[io.Sampler.Output(tooltip="The Turbo sampler, for SamplerCustom or SamplerCustomAdvanced.")],
        )

    @classmethod
    def validate_inputs(cls, eta_mode=None, eta=None, s_noise=None):
        message = validation.check(cls, eta_mode=eta_mode, eta=eta, s_noise=s_noise)
        if message is not True:
            return message
        try:
            make_sampler(eta_mode or "auto", 0.0 if eta is None else eta, 1.0 if s_noise is None else s_noise)
        except ValueError as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, eta_mode, eta, s_noise) -> io.NodeOutput:
        validation.require(cls, eta_mode=eta_mode, eta=eta, s_noise=s_noise)
        return io.NodeOutput(make_sampler(eta_mode, eta, s_noise))


class TurboKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepTurboKSampler",
            display_name="Turbo KSampler (1-4 step)",
            category=CATEGORY,
            search_aliases=["turbo ksampler", "few step", "schnell", "sdxl turbo"],
            description="All-in-one few-step sampler: the Turbo schedule and sampler rule in one node. cfg 1.0 "
                        "(the default) skips the negative pass, as distilled turbo models expect.",
            inputs=[
                io.Model.Input("model", tooltip="The (distilled) model to sample."),
                io.Conditioning.Input("positive", tooltip="What the image should show."),
                io.Conditioning.Input("negative", tooltip="Used only when cfg is not 1.0."),
                io.Latent.Input("latent_image", tooltip="Empty latent for text-to-image, or an encoded image "
                                                        "with denoise < 1 for img2img."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the initial noise and of the fresh noise between steps."),
                _steps_input(),
                io.Float.Input("cfg", default=1.0, min=0.0, max=30.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale. 1.0 = no CFG (one model call per step), "
                                       "right for SD-Turbo, SDXL-Turbo, FLUX.1-schnell and LADD students."),
                io.Combo.Input("eta_mode", options=list(ETA_MODES), default="auto", tooltip=_ETA_MODE_TOOLTIP),
                io.Float.Input("eta", default=1.0, min=0.0, max=1.0, step=0.01, tooltip=_ETA_TOOLTIP, **ADVANCED),
                _denoise_input(),
                io.Float.Input("s_noise", default=1.0, min=0.0, max=2.0, step=0.01, tooltip=_S_NOISE_TOOLTIP,
                               optional=True, **ADVANCED),
            ],
            outputs=[io.Latent.Output(tooltip="The sampled latent; decode it with VAEDecode.")],
        )

    @classmethod
    def validate_inputs(cls, seed=None, steps=None, cfg=None, eta_mode=None, eta=None, denoise=None, s_noise=None):
        return validation.check(cls, seed=seed, steps=steps, cfg=cfg, eta_mode=eta_mode, eta=eta, denoise=denoise,
                                s_noise=s_noise)

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed, steps, cfg, eta_mode, eta, denoise,
                s_noise=1.0) -> io.NodeOutput:
        validation.require(cls, seed=seed, steps=steps, cfg=cfg, eta_mode=eta_mode, eta=eta, denoise=denoise,
                           s_noise=s_noise)
        sampler = make_sampler(eta_mode, eta, s_noise)
        sigmas = make_sigmas(model, steps, denoise)
        latent = latent_image.copy()
        samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        check_family(model, samples, {"positive": positive, "negative": negative})
        noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
        callback = latent_preview.prepare_callback(model, steps)
        out = comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, samples,
                                         noise_mask=latent.get("noise_mask"), callback=callback,
                                         disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
        latent.pop("downscale_ratio_spacial", None)
        latent["samples"] = out
        return io.NodeOutput(latent)
