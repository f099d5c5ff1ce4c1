"""Turbo sampling nodes: a model-aware few-step SIGMAS, the Turbo SAMPLER, and an all-in-one KSampler."""

from __future__ import annotations

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io

from ..samplers import grid as timestep_grid  # `grid` is an input name of TurboScheduler
from ..samplers import schedule
from ..samplers.turbo import sample_turbo
from .compat import ADVANCED, schema

CATEGORY = "quickstep/sampling"
ETA_MODES = ("auto", "manual")


def _model_sampling(model):
    return model.get_model_object("model_sampling")


def make_sigmas(model, steps: int, denoise: float, spacing: str = timestep_grid.TRAILING, custom_timesteps: str = ""):
    ms = _model_sampling(model)
    if custom_timesteps.strip():
        return schedule.custom_sigmas(ms, custom_timesteps)
    return schedule.turbo_sigmas(ms, steps, denoise, spacing)


def make_sampler(eta_mode: str, eta: float, s_noise: float) -> comfy.samplers.KSAMPLER:
    if eta_mode not in ETA_MODES:
        raise ValueError(f"eta_mode must be one of {ETA_MODES}; got {eta_mode!r}.")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (0 = deterministic Euler/DDIM, 1 = fresh noise); got {eta}.")
    if s_noise < 0:
        raise ValueError(f"s_noise must be >= 0 (1 = unit noise); got {s_noise}.")
    return TurboKSAMPLER(None if eta_mode == "auto" else eta, s_noise)


class TurboKSAMPLER(comfy.samplers.KSAMPLER):
    """KSAMPLER running `sample_turbo`; eta None picks the family default from the model it is run on."""

    def __init__(self, eta: float | None, s_noise: float):
        super().__init__(sample_turbo, extra_options={"s_noise": s_noise,
                         "check_interrupt": comfy.model_management.throw_exception_if_processing_interrupted})
        self.eta = eta

    def sample(self, model_wrap, sigmas, *args, **kwargs):
        ms = model_wrap.inner_model.model_sampling
        self.extra_options["eta"] = schedule.default_eta(ms) if self.eta is None else self.eta
        return super().sample(model_wrap, sigmas, *args, **kwargs)


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
        try:
            make_sampler(eta_mode or "auto", 0.0 if eta is None else eta, 1.0 if s_noise is None else s_noise)
        except ValueError as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, eta_mode, eta, s_noise) -> io.NodeOutput:
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
    def execute(cls, model, positive, negative, latent_image, seed, steps, cfg, eta_mode, eta, denoise,
                s_noise=1.0) -> io.NodeOutput:
        sampler = make_sampler(eta_mode, eta, s_noise)
        sigmas = make_sigmas(model, steps, denoise)
        latent = latent_image.copy()
        samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
        callback = latent_preview.prepare_callback(model, steps)
        out = comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, samples,
                                         noise_mask=latent.get("noise_mask"), callback=callback,
                                         disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
        latent.pop("downscale_ratio_spacial", None)
        latent["samples"] = out
        return io.NodeOutput(latent)
