"""One LADD training step (Sauer et al. 2024, Sec. 3, Fig. 2), callable from a node or a command-line runner.

    x0, c        a batch of the teacher's synthetic latents and their conditioning
    x_s          the student's input at a grid sigma: x0 forward-noised (or, with backward simulation, the student's
                 own earlier steps from pure noise, as DMD2 does); the top grid point is pure noise, as in sampling
    x0_fake      = student(x_s)                          (base + LoRA)
    D step       heads on teacher features (LoRA off) of re-noised x0 (real) and x0_fake (fake), both at their own
                 t_hat ~ logit-normal; discriminator loss (+ optional R1 on real features); update the heads
    G step       heads on teacher features of re-noised x0_fake, gradient through the frozen teacher and the student
                 into the LoRA only; update the LoRA (every `g_every` steps). Optional, not in LADD: reward
                 feedback, the reward gradient on the predicted x0 (ReFL, Xu et al. 2023, ImageReward; Hyper-SD,
                 Ren et al. 2024, uses human-feedback rewards so for its few-step students): x0_fake decoded by the
                 VAE, scored by a reward stack (reward/, ReNO's weighted loss), `reward_weight` times that loss
                 added to the generator's, so that a one-step student keeps what the prompt asks (colour, place)

Everything runs inside core's guider (`samplers.differentiable.run_guided`): condition processing, model loading and
patches are ComfyUI's. The G step back-propagates in two phases, the teacher part with the LoRA off and the student
part with it on, so that activation checkpointing recomputes each block with the weights it ran with. Randomness
comes from the trainer's own CPU generator only, so a saved and resumed run continues bit for bit.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields

import torch

from ..samplers import differentiable as diff
from ..samplers import grid as student_grid
from ..samplers import schedule
from ..samplers.turbo import implied_noise
from . import features, heads, losses
from . import lora as lora_mod
from . import timesteps as ts


@dataclass
class Config:
    """Everything that defines a run (saved with its state). Defaults follow the paper where it says."""

    rank: int = 16
    alpha: float = 0.0  # 0: alpha = rank (LoRA scale 1)
    seed: int = 0
    grid_steps: int = 4
    heads: str = "auto"
    head_width: int = 64
    loss: str = losses.HINGE
    lr_g: float = 1e-4
    lr_d: float = 2e-4
    betas: tuple = (0.0, 0.99)
    r1_weight: float = 0.0
    reward_weight: float = 0.0  # 0: LADD's generator loss; > 0 adds reward feedback (module docstring)
    g_every: int = 1
    warmup_steps: int = 0
    renoise_mean: float = 1.0
    renoise_std: float = 1.0
    backward_simulation: bool = False
    grad_clip: float = 1.0
    ema: float = 0.0
    bf16: bool = True
    gradient_checkpointing: bool = True

    def __post_init__(self):
        self.betas = tuple(self.betas)

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha or self.rank)

    def validate(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"rank must be a positive integer (4-64 is typical); got {self.rank!r}.")
        student_grid.check_steps_denoise(self.grid_steps, 1.0)
        if self.grid_steps > 4:
            raise ValueError(f"grid_steps must be 1-4 (the student's few-step grid); got {self.grid_steps}.")
        losses.check(self.loss)
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}.")
        if self.g_every < 1:
            raise ValueError(f"g_every must be >= 1 (a generator step every that many steps); got {self.g_every}.")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1) (0 = off, e.g. 0.999); got {self.ema}.")
        if self.renoise_std <= 0:
            raise ValueError(f"renoise_std must be > 0; got {self.renoise_std}.")
        if self.r1_weight < 0 or self.grad_clip < 0 or self.warmup_steps < 0 or self.reward_weight < 0:
            raise ValueError("r1_weight, reward_weight, grad_clip and warmup_steps must be >= 0.")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def pooled_dim(model) -> int:
    """Width of the pooled text embedding this family's text encoder gives (0 if the family uses none).

    SDXL: adm_in_channels minus its six 256-wide size embeddings; SD3: adm_in_channels; Flux: vec_in_dim. SD1.x/2.x
    UNets take no pooled vector, but their CLIP's pooled output has the context width (CLIP-L 768, OpenCLIP-H 1024).
    """
    unet = model.model.model_config.unet_config
    arch = features.architecture(model.model.diffusion_model)
    if arch == features.UNET:
        adm = unet.get("adm_in_channels")
        return int(adm) - 6 * 256 if adm else int(unet.get("context_dim") or 0)
    if arch == features.MMDIT:
        return int(unet.get("adm_in_channels") or 0)
    return int(unet.get("vec_in_dim") or 0)


def context_dim(model) -> int:
    unet = model.model.model_config.unet_config
    if "context_dim" in unet:
        return int(unet["context_dim"])
    if "context_in_dim" in unet:
        return int(unet["context_in_dim"])
    cfg = unet.get("context_embedder_config") or {}
    return int(cfg.get("params", {}).get("in_features", 0))


def check_model(model) -> None:
    """Raise a clear error for a model LADD cannot train (family, schedule)."""
    schedule.schedule_kind(model.get_model_object("model_sampling"))
    features.architecture(model.model.diffusion_model)


@contextmanager
def _training_mode(copy_saved: bool):
    """Autograd inside ComfyUI's inference mode (see samplers/differentiable.py); `copy_saved` copies saved
    activations, which Flux's in-place residual updates need and UNets do not (it costs memory)."""
    import comfy.model_management as mm

    had = hasattr(mm, "in_training")
    previous = getattr(mm, "in_training", False)
    if had:
        mm.in_training = True
    hooks = torch.autograd.graph.saved_tensors_hooks(diff._save_copy, diff._identity) if copy_saved else nullcontext()
    try:
        with torch.inference_mode(False), torch.enable_grad(), hooks:
            yield
    finally:
        if had:
            mm.in_training = previous


def checkpoint_targets(diffusion_model) -> list[torch.nn.Module]:
    """The modules whose activations checkpointing recomputes in backward: the UNet's res and attention blocks (its
    `input_blocks` etc. are containers whose layers `forward_timestep_embed` calls one by one, so wrapping the
    containers' forward would checkpoint nothing), SD3's joint blocks."""
    names = {"ResBlock", "SpatialTransformer", "JointBlock"}
    return [m for m in diffusion_model.modules() if type(m).__name__ in names]


@contextmanager
def checkpointing(diffusion_model, enabled: bool):
    """Activation checkpointing of `checkpoint_targets` for the duration of the block (the module is shared with
    the user's MODEL, so each patch is taken off again). Not used on Flux: its recomputation does not match the saved
    activations under the activation-copy hooks Flux needs (see `_training_mode`). Inputs are not copied as
    `diff.checkpointed` copies them for Flux: these blocks do not change their inputs in place, and without the
    copies a checkpointed step is bitwise the step without checkpointing."""
    patched = []
    try:
        if enabled:
            for m in checkpoint_targets(diffusion_model):
                original = m.forward

                def wrapped(*args, _f=original, **kwargs):
                    if not torch.is_grad_enabled():
                        return _f(*args, **kwargs)
                    return torch.utils.checkpoint.checkpoint(_f, *args, use_reentrant=False, **kwargs)

                m.forward = wrapped
                patched.append(m)
        yield
    finally:
        for m in patched:
            del m.forward  # the instance attribute; the class method shows through again


def _copied(optimizer_state: dict) -> dict:
    """An optimiser state dict with its tensors copied (the optimiser updates them in place)."""
    return {"state": {i: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                      for i, s in optimizer_state["state"].items()},
            "param_groups": [dict(g) for g in optimizer_state["param_groups"]]}


class Trainer:
    """The live objects of a run: the student patcher (base + trainable LoRA), heads, optimisers, generator."""

    def __init__(self, base_model, config: Config, lora_params: dict, heads_state: dict | None = None,
                 opt_g_state: dict | None = None, opt_d_state: dict | None = None, ema: dict | None = None,
                 step: int = 0, rng_state: torch.Tensor | None = None):
        with torch.inference_mode(False):  # nodes run in inference mode; trainable tensors must be normal ones
            self._setup(base_model, config, lora_params, heads_state, opt_g_state, opt_d_state, ema, step, rng_state)

    def _setup(self, base_model, config, lora_params, heads_state, opt_g_state, opt_d_state, ema, step, rng_state):
        import comfy.model_management

        self.config, self.base_model, self.step = config, base_model, step
        self.device = comfy.model_management.get_torch_device()
        self.switch = lora_mod.Switch()
        self.lora = {k: torch.nn.Parameter(v.detach().clone().float().to(self.device)) for k, v in
                     sorted(lora_params.items())}
        self.patcher = lora_mod.attach(diff.grad_ready(base_model, "diffusion_model"), self.lora, config.lora_alpha,
                                       self.switch)
        self.diffusion_model = base_model.model.diffusion_model
        self.arch = features.architecture(self.diffusion_model)
        self.blocks = features.parse_blocks(self.diffusion_model, config.heads)
        with torch.random.fork_rng(devices=[]):  # fresh heads depend on the run's seed only
            torch.manual_seed(config.seed)
            self.disc = heads.Discriminator([b.channels for b in self.blocks], pooled_dim(base_model),
                                            config.head_width).to(self.device)
        if heads_state is not None:
            self.disc.load_state_dict(heads_state)
        self.opt_g = torch.optim.AdamW(list(self.lora.values()), lr=config.lr_g, betas=config.betas, weight_decay=0.0)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=config.lr_d, betas=config.betas, weight_decay=0.0)
        if opt_g_state is not None:
            self.opt_g.load_state_dict(_copied(opt_g_state))
        if opt_d_state is not None:
            self.opt_d.load_state_dict(_copied(opt_d_state))
        self.ema = ({k: v.detach().clone().float().to(self.device) for k, v in (ema or self.lora).items()}
                    if config.ema > 0 else None)
        # data-parallel hooks (distill/distributed.py): this process's rows (start, stop) of a global batch of
        # `total`, and the two calls whose gradients DDP averages; one process: the whole batch, the plain calls
        self.shard: tuple[int, int, int] | None = None
        self.student_call, self.heads_call = self._student, self.disc
        self.feedback: RewardFeedback | None = None  # set by the caller when config.reward_weight > 0
        self.generator = torch.Generator()
        if rng_state is not None:
            self.generator.set_state(rng_state.clone())
        else:
            self.generator.manual_seed(config.seed)

    # ------------------------------------------------------------------ pieces of a step

    # Random draws are made for the whole global batch and each process keeps its rows: every sample gets the same
    # numbers whatever the number of processes, and the generator advances alike on all of them.
    def _total(self, rows: int) -> int:
        return rows if self.shard is None else self.shard[2]

    def _mine(self, draw: torch.Tensor) -> torch.Tensor:
        return draw if self.shard is None else draw[self.shard[0]:self.shard[1]]

    def _randn(self, shape, like: torch.Tensor) -> torch.Tensor:
        draw = torch.randn((self._total(shape[0]), *shape[1:]), generator=self.generator, dtype=torch.float32)
        return self._mine(draw).to(like.device, like.dtype)

    def _autocast(self):
        use = self.config.bf16 and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use)

    def _features(self, denoise, x: torch.Tensor, sigma: torch.Tensor) -> list[torch.Tensor]:
        with self.switch.set(False), self._autocast():
            return features.extract(self.diffusion_model, self.blocks, lambda: denoise(x, sigma), x.shape[-2:])

    def _student(self, denoise, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        with self.switch.set(True), self._autocast():
            return denoise(x, sigma).float()

    def _student_input(self, denoise, ms, x0: torch.Tensor, index: torch.Tensor, sigmas: torch.Tensor,
                       depth: int):
        eps = self._randn(x0.shape, x0)
        sigma_max = float(ms.sigma_max)
        top = ms.noise_scaling(sigmas[:1].to(x0.device), eps, torch.zeros_like(x0),
                               max_denoise=math.isclose(float(sigmas[0]), sigma_max, rel_tol=1e-5)
                               or float(sigmas[0]) > sigma_max)
        if not self.config.backward_simulation:
            noised = ms.noise_scaling(sigmas[index].to(x0.device), eps, x0)
            return torch.where((index == 0).to(x0.device).view(-1, 1, 1, 1), top, noised)
        # backward simulation: the student's own Turbo steps from pure noise down to each sample's grid point
        eta = schedule.default_eta(ms)
        keep = (1.0 - eta * eta) ** 0.5
        states, x = [top], top
        with torch.no_grad():
            for i in range(depth):  # the deepest grid index of the global batch
                s, s_next = sigmas[i].to(x0.device), sigmas[i + 1].to(x0.device)
                pred = self._student(denoise, x, s.expand(x.shape[0]))
                noise = keep * implied_noise(ms, s, x, pred) if keep > 0 else torch.zeros_like(x)
                if eta > 0:
                    noise = noise + eta * self._randn(x.shape, x)
                x = ms.noise_scaling(s_next, noise, pred)
                states.append(x)
        stacked = torch.stack(states)
        return stacked[index.to(x0.device), torch.arange(x0.shape[0], device=x0.device)]

    def _clip(self, params) -> None:
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)

    # ------------------------------------------------------------------ the step

    def step_on(self, batch: dict) -> dict:
        """One training step on `batch` (from `dataset.Dataset.batch`); returns its metrics and a preview latent."""
        import comfy.model_management

        cfg = self.config
        if cfg.reward_weight > 0 and self.feedback is None:
            raise ValueError("reward_weight > 0 needs a reward: set trainer.feedback = RewardFeedback(vae, rewards) "
                             "(the LADD Train node's reward and vae inputs).")
        with torch.inference_mode(False):  # batches made inside a node's inference mode: copy them into normal ones
            latent = batch["latent"].to(self.device, torch.float32, copy=True)
            positive = batch["positive"]
            pooled = batch.get("pooled")
            pooled = pooled.to(self.device, torch.float32, copy=True) if pooled is not None else None
        do_g = self.step % cfg.g_every == 0
        warm = self.step < cfg.warmup_steps
        result = {}

        def body(denoise, ms):
            x0 = self.patcher.model.process_latent_in(latent).float()
            b = x0.shape[0]
            sigmas = ts.grid_sigmas(ms, cfg.grid_steps)
            index_all = ts.sample_grid_index(self._total(b), cfg.grid_steps, warm, self.generator)
            index = self._mine(index_all)
            x_s = self._student_input(denoise, ms, x0, index, sigmas, int(index_all.max()))
            sigma_s = sigmas[index].to(self.device)
            t_real = self._mine(ts.sample_flow_time(self._total(b), cfg.renoise_mean, cfg.renoise_std, self.generator))
            t_fake = self._mine(ts.sample_flow_time(self._total(b), cfg.renoise_mean, cfg.renoise_std, self.generator))
            eps_real, eps_fake = self._randn(x0.shape, x0), self._randn(x0.shape, x0)
            s_real = ts.flow_time_to_sigma(ms, t_real.to(self.device))
            s_fake = ts.flow_time_to_sigma(ms, t_fake.to(self.device))
            t_both = torch.cat([t_real, t_fake]).to(self.device)
            pooled_both = torch.cat([pooled, pooled]) if pooled is not None else None

            with torch.set_grad_enabled(do_g):
                x0_fake = self.student_call(denoise, x_s, sigma_s)

            # ---- discriminator step (heads only)
            with torch.no_grad():
                noisy = torch.cat([ms.noise_scaling(s_real, eps_real, x0),
                                   ms.noise_scaling(s_fake, eps_fake, x0_fake.detach())])
                feats = self._features(denoise, noisy, torch.cat([s_real, s_fake]))
            feats = [f.float() for f in feats]
            if cfg.r1_weight > 0:
                feats = [f.requires_grad_() for f in feats]
            self.disc.requires_grad_(True)
            logits = self.heads_call(feats, t_both, pooled_both)
            real, fake = logits[:b], logits[b:]
            loss_d = losses.discriminator_loss(real, fake, cfg.loss)
            r1 = torch.zeros(())
            if cfg.r1_weight > 0:
                r1 = losses.r1_penalty(real, feats)
                loss_d = loss_d + cfg.r1_weight * r1
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self._clip(self.disc.parameters())
            self.opt_d.step()
            acc_real, acc_fake = losses.accuracy(real.detach(), fake.detach())
            result.update(loss_d=float(loss_d.detach()), r1=float(r1.detach()), acc_real=acc_real, acc_fake=acc_fake)

            # ---- generator step (LoRA only), back-propagated in two phases: teacher (LoRA off), student (LoRA on)
            if do_g:
                leaf = x0_fake.detach().requires_grad_()
                self.disc.requires_grad_(False)
                with self.switch.set(False):
                    feats_g = self._features(denoise, ms.noise_scaling(s_fake, eps_fake, leaf), s_fake)
                    loss_g = losses.generator_loss(self.disc([f.float() for f in feats_g], t_fake.to(self.device),
                                                             pooled), cfg.loss)
                    (grad_x0,) = torch.autograd.grad(loss_g, leaf)
                if cfg.reward_weight > 0:
                    loss_r = self.feedback.loss(self.patcher.model.process_latent_out(leaf), batch["prompts"])
                    (grad_r,) = torch.autograd.grad(cfg.reward_weight * loss_r, leaf)
                    grad_x0 = grad_x0 + grad_r
                    result["loss_reward"] = float(loss_r.detach())
                self.opt_g.zero_grad(set_to_none=True)
                with self.switch.set(True):
                    x0_fake.backward(grad_x0)
                self._clip(list(self.lora.values()))
                self.opt_g.step()
                self.disc.requires_grad_(True)
                if self.ema is not None:
                    with torch.no_grad():
                        for k, v in self.lora.items():
                            self.ema[k].lerp_(v.detach(), 1 - cfg.ema)
                result["loss_g"] = float(loss_g.detach())
            result["preview"] = x0_fake[:1].detach().cpu()  # model space, what ComfyUI's previewers take
            return True

        comfy.model_management.throw_exception_if_processing_interrupted()
        with _training_mode(copy_saved=self.arch == features.FLUX), \
                checkpointing(self.diffusion_model, cfg.gradient_checkpointing and self.arch != features.FLUX):
            diff.run_guided(self.patcher, positive, None, 1.0, torch.zeros_like(latent), body)
        self.step += 1
        result["step"] = self.step
        return result

    # ------------------------------------------------------------------ outputs

    def lora_tensors(self, use_ema: bool = True) -> dict[str, torch.Tensor]:
        src = self.ema if (use_ema and self.ema is not None) else self.lora
        return {k: v.detach().float().cpu().clone() for k, v in src.items()}


class RewardFeedback:
    """The reward term of the generator step: VAE-space latents -> decoded IMAGE -> a `reward.stack.RewardStack`'s
    loss per image (ReNO's weighted `offset - score`), averaged over the rows."""

    def __init__(self, vae, rewards):
        self.vae, self.rewards = vae, rewards
        self.patcher = diff.grad_ready(vae.patcher)

    def loss(self, latent: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self.rewards.loss(diff.decode(self.vae, latent, self.patcher), prompts).mean()


def train_step(trainer: Trainer, batch: dict) -> dict:
    """The one training-step function: what the node's loop and a command-line runner call."""
    return trainer.step_on(batch)


def student_model(base_model, lora_params: dict, alpha: float):
    """A MODEL for sampling the student: the base with a frozen snapshot of the LoRA as weight wrappers (later
    training does not change it; the base weights are shared, not copied)."""
    frozen = {k: v.detach().float().clone() for k, v in lora_params.items()}
    return lora_mod.attach(base_model, frozen, alpha, None)
