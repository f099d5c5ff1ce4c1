"""ReNO: reward-based noise optimisation of a few-step generator (Eyring et al., NeurIPS 2024, arXiv:2406.04312).

The initial noise z of a one-step (or few-step) model is optimised so that the decoded image scores high under a
weighted stack of differentiable rewards (Sec. 3 of the paper):

    z* = argmin_z  sum_i w_i * L_i(D(G(z)), prompt) + lambda * (r^2 / 2 - (d - 1) * log r),   r = ||z||_2

G is the connected MODEL sampled on the Turbo grid from z (eta 0 between steps, so z -> image is deterministic), D the
VAE decoder and L_i = offset_i - score_i each reward's loss. The second term is the negative log-likelihood of the
noise norm under the chi distribution with d = C*H*W degrees of freedom: it keeps ||z|| near sqrt(d), the typical
shell of a standard Gaussian. The paper's recipe: SGD (lr 5, momentum 0.9, Nesterov), the gradient of each image
clipped to L2 norm 0.1, lambda 0.01, 50 iterations = 50 forward passes and 49 updates, and the best iterate by the
weighted reward (regulariser excluded, iteration 0 included) is returned.

Where this departs from the reference code (on purpose, see ../shared/reference/reno.md §2-§3, §13):
* z, its optimiser state and the regulariser are fp32 (the reference runs all of it in fp16 and hits -inf);
* a batch of images is optimised at once, each with its own gradient clip and best iterate (the reference: batch 1);
* iteration 0 is exactly the noise core's RandomNoise / KSampler draw for the seed, so it is the image the plain
  Turbo sampler gives with that seed;
* guider set-up (conditioning, model loading) runs once per run, and each reward's text features once: the
  reward graphs are built and freed one at a time (the gradient w.r.t. the image is summed first, then pushed
  through VAE and generator in one backward), so only one reward's activations are alive at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field

import torch

from . import differentiable as diff
from . import schedule
from .turbo import implied_noise

OPTIMIZERS = ("sgd", "adam")
PRECISIONS = ("fp32", "bf16", "fp16")
CHECKPOINT_PARTS = ("generator", "vae", "rewards")
MAX_STEPS = 4
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class ReNOConfig:
    """The paper's defaults (ReNO `arguments.py`: lr 5, 50 iterations, clip 0.1, lambda 0.01, SGD + Nesterov)."""

    iterations: int = 50
    learning_rate: float = 5.0
    steps: int = 1
    cfg: float = 1.0
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    grad_clip: float = 0.1
    reg_weight: float = 0.01
    precision: str = "fp32"
    checkpointing: frozenset = frozenset()

    def check(self) -> None:
        """Raise ValueError naming the setting, what is expected and how to fix it."""
        def finite(name, value, low, high=math.inf, low_open=False):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or \
                    value < low or value > high or (low_open and value <= low):
                bound = f"> {low:g}" if low_open else f">= {low:g}"
                if math.isfinite(high):
                    bound += f" and <= {high:g}"
                raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")

        if not isinstance(self.iterations, int) or isinstance(self.iterations, bool) or self.iterations < 1:
            raise ValueError(f"iterations must be a positive integer (ReNO uses 50; 1 = the plain sample without "
                             f"optimisation); got {self.iterations!r}.")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be 1-{MAX_STEPS} (ReNO backpropagates through every step of a few-step "
                             f"model; 1 is the paper's setting); got {self.steps!r}. For a multi-step render, "
                             f"re-render the optimised noise output with SamplerCustomAdvanced.")
        finite("learning_rate", self.learning_rate, 0.0, low_open=True)
        finite("cfg", self.cfg, 0.0, 100.0)
        finite("momentum", self.momentum, 0.0, 1.0)
        finite("grad_clip", self.grad_clip, 0.0, low_open=True)
        finite("reg_weight", self.reg_weight, 0.0)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}.")
        unknown = set(self.checkpointing) - set(CHECKPOINT_PARTS)
        if unknown:
            raise ValueError(f"checkpointing parts must be among {', '.join(CHECKPOINT_PARTS)}; got {sorted(unknown)}.")


@dataclass
class ReNOResult:
    """What one run returns; every tensor on the CPU. Scores are rewards (higher is better), per image."""

    noise: torch.Tensor             # the best unit-variance noise [B, C, h, w] (fp32)
    latent: torch.Tensor            # the best latents, VAE space
    images: torch.Tensor            # the best images [B, H, W, 3]
    initial_images: torch.Tensor
    best_iteration: list[int]       # per image
    weights: dict[str, float]       # reward label -> weight
    history: list[dict[str, torch.Tensor]] = field(default_factory=list)
    """per iteration: "total" (weighted score), "regulariser" and each reward label -> [B]"""

    def scores_at(self, iteration: int | list[int]) -> dict[str, torch.Tensor]:
        """Each reward's and the weighted score per image at an iteration (one per image when a list)."""
        if isinstance(iteration, int):
            return dict(self.history[iteration])
        keys = self.history[0].keys()
        return {k: torch.stack([self.history[it][k][b] for b, it in enumerate(iteration)]) for k in keys}

    @property
    def initial_scores(self) -> dict[str, torch.Tensor]:
        return self.scores_at(0)

    @property
    def best_scores(self) -> dict[str, torch.Tensor]:
        return self.scores_at(self.best_iteration)


class OptimizedNoise:
    """A core NOISE (what RandomNoise gives SamplerCustomAdvanced) holding ReNO's optimised noise, so another
    sampler or model can re-render it (the paper's noise transfer: optimise with 1 step, render with many)."""

    def __init__(self, noise: torch.Tensor, seed: int):
        self.noise = noise.detach().to("cpu", torch.float32).clone()
        self.seed = seed  # core samplers seed their own ancestral noise from it

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        samples = input_latent["samples"]
        if tuple(samples.shape) != tuple(self.noise.shape):
            raise ValueError(
                f"noise: this ReNO noise was optimised for a latent of shape {tuple(self.noise.shape)} (batch, "
                f"channels, height, width) and cannot be reused on a latent of shape {tuple(samples.shape)}. Give "
                f"SamplerCustomAdvanced the same latent (size and batch) that ReNO optimised, or rerun ReNO on "
                f"this latent.")
        return self.noise.clone().to(samples.dtype)


def chi_regulariser(z: torch.Tensor, weight: float) -> torch.Tensor:
    """lambda * (r^2/2 - (d-1) log r) per image, r = ||z_b||, in fp32: -log of the chi_d density of the norm."""
    flat = z.float().flatten(1)
    d = flat.shape[1]
    r = flat.norm(dim=1)
    return weight * (0.5 * r.square() - (d - 1) * torch.log(r))


def clip_per_image_(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale each image's gradient to L2 norm <= max_norm in place (the reference's clip_grad_norm_ on a batch-1
    z, applied per image so one image's gradient never shrinks another's). Returns the norms before clipping."""
    norms = grad.flatten(1).norm(dim=1)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    grad.mul_(scale.view(-1, *([1] * (grad.ndim - 1))))
    return norms


def make_optimizer(z: torch.Tensor, config: ReNOConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":  # the reference's eps 1e-2 keeps Adam's first steps from exploding
        return torch.optim.Adam([z], lr=config.learning_rate, eps=1e-2)
    return torch.optim.SGD([z], lr=config.learning_rate, momentum=config.momentum,
                           nesterov=config.nesterov and config.momentum > 0)


def initial_noise(samples: torch.Tensor, latent: dict, seed: int) -> torch.Tensor:
    """Exactly the noise core's RandomNoise / KSampler draws for `seed` on `samples` (the latent's samples after
    `fix_empty_latent_channels`, as core samples them): unit variance, fp32."""
    import comfy.sample

    return comfy.sample.prepare_noise(samples, seed, latent.get("batch_index")).float()


def generator_targets(diffusion_model: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks whose activations checkpointing recomputes: UNet res/attention blocks, SD3's joint blocks. Flux's
    blocks recompute with a different sequence of saved tensors under torch's checkpoint, so a Flux model is
    checkpointed as one segment per call (its activations then live only while its own backward runs)."""
    names = {"ResBlock", "SpatialTransformer", "JointBlock"}
    blocks = [m for m in diffusion_model.modules() if type(m).__name__ in names]
    return blocks or [diffusion_model]


def vae_targets(vae) -> list[torch.nn.Module]:
    decoder = getattr(vae.first_stage_model, "decoder", vae.first_stage_model)
    return [m for m in decoder.modules() if type(m).__name__ in ("ResnetBlock", "AttnBlock")]


class _Generator:
    """z -> VAE-space latent: the Turbo grid from the top of the schedule, eta 0, inside core's guider."""

    def __init__(self, model, sigmas: torch.Tensor, latent_in: torch.Tensor):
        self.inner = model.model
        self.sigmas = sigmas
        self.latent_in = latent_in

    def __call__(self, denoise, model_sampling, z: torch.Tensor) -> torch.Tensor:
        sigmas = diff.as_normal(self.sigmas).to(z.device)
        max_sigma = float(model_sampling.sigma_max)
        max_denoise = math.isclose(max_sigma, float(sigmas[0]), rel_tol=1e-5) or float(sigmas[0]) > max_sigma
        x = model_sampling.noise_scaling(sigmas[0], z, self.latent_in.to(z.device), max_denoise)  # as KSAMPLER
        for i in range(len(sigmas) - 1):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            x0 = denoise(x, sigma)
            if sigma_next == 0:
                x = x0
            else:
                x = model_sampling.noise_scaling(sigma_next, implied_noise(model_sampling, sigma, x, x0), x0)
        x = model_sampling.inverse_noise_scaling(sigmas[-1], x)
        return self.inner.process_latent_out(x.float())


def optimise_noise(model, vae, stack, positive: list, negative: list | None, latent: dict, prompt: str, seed: int,
                   config: ReNOConfig | None = None,
                   on_iteration: Callable[[int, int, torch.Tensor], None] | None = None,
                   check_interrupt: Callable[[], None] | None = None) -> ReNOResult:
    """Run ReNO and return the best iterate of each image.

    `model`/`vae`: a ComfyUI MODEL (ModelPatcher) and VAE; `stack`: a `reward.stack.RewardStack`; `positive`,
    `negative`: CONDITIONING (negative used only when cfg != 1); `latent`: a LATENT (its size and batch; its samples
    enter the first noise scaling exactly as in core sampling). `on_iteration(k, total, best_images)` runs after
    each iteration; `check_interrupt()` before each (it raises to cancel). Nothing passed in is modified.
    """
    config = config or ReNOConfig()
    config.check()
    if config.cfg != 1.0 and negative is None:
        raise ValueError("negative: cfg is not 1.0, so ReNO needs a negative conditioning; connect one (e.g. "
                         "CLIPTextEncode of an empty prompt) or set cfg to 1.0.")
    model_sampling = model.get_model_object("model_sampling")
    schedule.schedule_kind(model_sampling)  # a clear error for families the Turbo grid does not cover
    sigmas = schedule.turbo_sigmas(model_sampling, config.steps)
    import comfy.sample

    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    z0 = initial_noise(samples, latent, seed)
    samples = samples.float()
    with torch.inference_mode(False):
        latent_in = model.model.process_latent_in(samples.clone())
    ready_model = diff.grad_ready(model, "diffusion_model")
    ready_vae = diff.grad_ready(vae.patcher)
    entries = [(label, reward, w) for label, reward, w in stack.entries if w != 0]
    prompts = [prompt] * z0.shape[0]
    generate = _Generator(ready_model, sigmas, latent_in)

    def body(denoise, ms):
        return _optimise(denoise, ms, generate, vae, ready_vae, entries, prompts, z0, config, on_iteration,
                         check_interrupt)

    with ExitStack() as stack_ctx, diff.autograd_enabled():
        if "generator" in config.checkpointing:
            stack_ctx.enter_context(diff.checkpointed(generator_targets(ready_model.model.diffusion_model)))
        if "vae" in config.checkpointing:
            stack_ctx.enter_context(diff.checkpointed(vae_targets(vae)))
        if "rewards" in config.checkpointing:
            for _, reward, _ in entries:
                if not reward.gradient_checkpointing:
                    stack_ctx.enter_context(diff.checkpointed(reward._checkpoint_targets))
        return diff.run_guided(ready_model, positive, negative if config.cfg != 1.0 else None, config.cfg,
                               samples, body, seed=seed)


def _reward_grad(entries, images: torch.Tensor, prompts: list[str], backward: bool):
    """Weighted loss per image and each reward's score; with `backward`, d(loss)/d(images), built and freed one
    reward graph at a time."""
    leaf = images.detach().requires_grad_(backward)
    total = torch.zeros(images.shape[0])
    scores = {}
    for label, reward, weight in entries:
        score = reward.score(leaf, prompts).float()
        loss = weight * (reward.loss_offset - score)
        if backward:
            loss.sum().backward()
        scores[label] = score.detach().cpu()
        total = total + loss.detach().cpu()
    return total, scores, (leaf.grad if backward else None)


def _optimise(denoise, model_sampling, generate, vae, ready_vae, entries, prompts, z0, config, on_iteration,
              check_interrupt) -> ReNOResult:
    import comfy.model_management as mm

    device = mm.get_torch_device()
    z = z0.to(device).clone().requires_grad_(True)  # the fp32 master copy the optimiser updates
    optimizer = make_optimizer(z, config)
    cast = _AUTOCAST.get(config.precision)
    autocast = (lambda: torch.autocast(device.type, dtype=cast)) if cast is not None else nullcontext
    batch = z.shape[0]
    best_total = torch.full((batch,), math.inf)
    best_iteration = [0] * batch
    best_noise = z0.clone()
    best_latent = best_images = initial_images = None
    history = []
    weights = {label: w for label, _, w in entries}
    for k in range(config.iterations):
        if check_interrupt is not None:
            check_interrupt()
        update = k < config.iterations - 1  # no update after the last forward pass, as in the reference
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            latent = generate(denoise, model_sampling, z)
            images = diff.decode(vae, latent, ready_vae)
            total_loss, scores, image_grad = _reward_grad(entries, images.float(), prompts, update)
        regulariser = chi_regulariser(z, config.reg_weight)
        if update:
            torch.autograd.backward([images, regulariser.sum()], [image_grad.to(images.dtype), None])
            clip_per_image_(z.grad, config.grad_clip)
        weighted = sum(weights[label] * scores[label] for label in weights)
        history.append({"total": weighted, "regulariser": regulariser.detach().cpu(), **scores})
        cpu_images, cpu_latent = images.detach().float().cpu(), latent.detach().float().cpu()
        if initial_images is None:
            initial_images, best_images, best_latent = cpu_images.clone(), cpu_images.clone(), cpu_latent.clone()
        better = total_loss < best_total  # the weighted reward loss, without the regulariser
        if better.any():
            best_total = torch.where(better, total_loss, best_total)
            for b in torch.nonzero(better).flatten().tolist():
                best_iteration[b] = k
                best_noise[b] = z.detach()[b].cpu()
                best_latent[b], best_images[b] = cpu_latent[b], cpu_images[b]
        if update:
            optimizer.step()
        if on_iteration is not None:
            on_iteration(k, config.iterations, best_images)
    return ReNOResult(noise=best_noise, latent=best_latent, images=best_images, initial_images=initial_images,
                      best_iteration=best_iteration, weights=weights, history=history)
