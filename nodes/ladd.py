"""LADD nodes: teacher dataset, init, chainable training, save (core-loadable LoRA + full state), resume, loss plot.

The method lives in `distill/`; these nodes declare, validate, call in and report. A LADD_STATE is data (tensors on
the CPU plus config), never a live module: each Train builds its trainer from the state it receives and returns a
new state, so ComfyUI's output cache stays truthful and a graph can chain Train -> preview -> Train -> Save.
"""

from __future__ import annotations

import logging
from pathlib import Path

import comfy.model_management
import comfy.samplers
import comfy.utils
import torch
from comfy_api.latest import io

from ..distill import losses
from ..distill.step import Config
from . import validation
from .compat import ADVANCED, schema
from .reward import RewardModel, RewardType

log = logging.getLogger("quickstep")

CATEGORY = "quickstep/ladd"
LADDState = io.Custom("LADD_STATE")
LADDDataset = io.Custom("LADD_DATASET")
LossMap = io.Custom("LOSS_MAP")  # core's type: its LossGraphNode plots the "loss" entry
DEFAULT_FOLDER = "ladd/dataset"
DEFAULT_PREFIX = "ladd/student"
PREVIEW_SIZE = 512
_D = Config()


def _output_dir() -> Path:
    import folder_paths

    return Path(folder_paths.get_output_directory())


def _previewer(model):
    import latent_preview

    return latent_preview.get_previewer(model.load_device, model.model.latent_format)


def _preview(previewer, latent_model_space):
    if previewer is None or latent_model_space is None:
        return None
    return previewer.decode_latent_to_preview_image("JPEG", latent_model_space)


def _progress_text(text: str, node_id) -> None:
    try:
        from server import PromptServer

        if node_id is not None and hasattr(PromptServer.instance, "send_progress_text"):
            PromptServer.instance.send_progress_text(text, node_id)
    except Exception:  # no server (scripts, tests in-process): the log line is enough
        pass


def _dataset_folder(name: str, must_exist: bool) -> Path:
    from ..folders import inside

    return inside(_output_dir(), name, input="folder", what="a folder inside the output folder (e.g. 'ladd/dataset')",
                  must_exist=must_exist)


# ---------------------------------------------------------------------------------------------------- dataset

class LADDDatasetNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepLADDDataset",
            display_name="LADD Dataset (teacher samples)",
            category=CATEGORY,
            search_aliases=["ladd data", "distillation dataset", "synthetic data", "teacher latents"],
            description="Samples the teacher with CFG through core sampling (what KSampler runs) for every prompt and "
                        "seed, and writes one safetensors file per image (latent + text conditioning) into a folder "
                        "under the output directory: LADD trains on the teacher's own samples (Sauer et al. 2024). "
                        "Files are written atomically; run it again after an interrupt and it continues where it "
                        "stopped. With no prompts it loads the folder as it is.",
            inputs=[
                io.Model.Input("model", tooltip="The teacher: the checkpoint to distil."),
                io.Clip.Input("clip", tooltip="The teacher's text encoder (not needed after this node)."),
                io.String.Input("prompts", multiline=True, default="a photo of a cat\na photo of a red car",
                                tooltip="One prompt per line. Empty: use the items already in the folder."),
                io.Int.Input("seed", default=0, min=0, max=2**63 - 1,
                             tooltip="First seed; each prompt gets seeds seed .. seed + images_per_prompt - 1."),
                io.Int.Input("images_per_prompt", default=4, min=1, max=10000,
                             tooltip="How many teacher samples per prompt."),
                io.Int.Input("width", default=512, min=16, max=8192, step=8, tooltip="Image width in pixels."),
                io.Int.Input("height", default=512, min=16, max=8192, step=8, tooltip="Image height in pixels."),
                io.Int.Input("steps", default=25, min=1, max=1000, tooltip="Teacher sampling steps."),
                io.Float.Input("cfg", default=4.0, min=0.0, max=100.0, step=0.1,
                               tooltip="The teacher's CFG scale: the student learns the guided distribution."),
                io.Combo.Input("sampler_name", options=list(comfy.samplers.KSampler.SAMPLERS), default="euler",
                               tooltip="Teacher sampler (as in KSampler)."),
                io.Combo.Input("scheduler", options=list(comfy.samplers.KSampler.SCHEDULERS), default="normal",
                               tooltip="Teacher scheduler (as in KSampler)."),
                io.String.Input("folder", default=DEFAULT_FOLDER,
                                tooltip="Dataset folder, relative to ComfyUI's output directory."),
                io.String.Input("negative", default="", optional=True, **ADVANCED,
                                tooltip="Negative prompt of the teacher's CFG."),
                io.Int.Input("batch", default=1, min=1, max=256, optional=True, **ADVANCED,
                             tooltip="Teacher samples per sampling call (faster, more memory)."),
            ],
            outputs=[LADDDataset.Output(display_name="dataset", tooltip="The dataset (latents + conditioning in "
                                                                         "memory), for LADD Train.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, prompts=None, seed=None, images_per_prompt=None, width=None, height=None, steps=None,
                        cfg=None, sampler_name=None, scheduler=None, folder=None, negative=None, batch=None):
        from ..folders import check_name, message

        widgets = dict(prompts=prompts, seed=seed, images_per_prompt=images_per_prompt, width=width, height=height,
                       steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler, folder=folder,
                       negative=negative, batch=batch)
        checked = validation.check(cls, **widgets)
        if checked is not True or folder is None:
            return checked
        return message(check_name, folder, input="folder", what="a folder inside the output folder")

    @classmethod
    def execute(cls, model, clip, prompts, seed, images_per_prompt, width, height, steps, cfg, sampler_name,
                scheduler, folder, negative="", batch=1) -> io.NodeOutput:
        from ..distill import dataset as ds

        validation.require(cls, prompts=prompts, seed=seed, images_per_prompt=images_per_prompt, width=width,
                           height=height, steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
                           folder=folder, negative=negative, batch=batch)

        lines = [p.strip() for p in (prompts or "").splitlines() if p.strip()]
        target = _dataset_folder(folder, must_exist=False)
        if not lines and not any(target.glob("*.safetensors")):
            raise ValueError(f"prompts is empty, so this node loads the dataset already in folder {folder!r}, but "
                             f"there is none in {target}. Write the prompts to sample the teacher on (one per line), "
                             f"or set folder to one a LADD Dataset run has filled.")
        if lines:
            previewer = _previewer(model)
            total = len(lines) * images_per_prompt
            pbar = comfy.utils.ProgressBar(total)

            def on_item(done, total, latent):
                pbar.update_absolute(done, total, _preview(previewer, model.model.process_latent_in(latent)))

            written = ds.generate(model, clip, lines, seed, images_per_prompt, target, width, height, steps, cfg,
                                  sampler_name, scheduler, negative=negative or "", batch=batch, on_item=on_item,
                                  check_interrupt=comfy.model_management.throw_exception_if_processing_interrupted)
            log.info("[quickstep] LADD dataset %s: %d new items, %d in all", target, written, total)
        data = ds.load(target)
        return io.NodeOutput(data, ui={"text": [f"{len(data)} items in {folder}"]})


# ---------------------------------------------------------------------------------------------------- init

class LADDInit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepLADDInit",
            display_name="LADD Init",
            category=CATEGORY,
            search_aliases=["ladd", "distillation", "adversarial distillation", "turbo training"],
            description="Starts a LADD run on a loaded model: the student is the model plus a LoRA whose up matrix "
                        "starts at zero (so it starts equal to the teacher), the discriminator is the same frozen "
                        "model with the LoRA switched off plus small trainable heads on several blocks. One copy of "
                        "the base weights serves all three. Train it with LADD Train.",
            inputs=[
                io.Model.Input("model", tooltip="The teacher (SD1.x, SD2.x, SDXL, SD3, Flux). It is never changed."),
                io.Int.Input("rank", default=_D.rank, min=1, max=512, tooltip="LoRA rank of the student."),
                io.Int.Input("seed", default=0, min=0, max=2**63 - 1,
                             tooltip="Seed of the LoRA and head initialisation and of all training randomness."),
                io.String.Input("heads", default=_D.heads, optional=True, **ADVANCED,
                                tooltip="Blocks the discriminator heads read: 'auto' (UNet: last input block, "
                                        "middle block, an output block; DiT: three blocks in the first two thirds) "
                                        "or comma-separated module paths such as 'input_blocks.8, middle_block'."),
                io.Int.Input("grid_steps", default=_D.grid_steps, min=1, max=4, optional=True, **ADVANCED,
                             tooltip="The student's grid (the Turbo sampler's trailing grid of this many steps); "
                                     "sample the student with 1 to this many steps."),
                io.Combo.Input("loss", options=list(losses.LOSSES), default=_D.loss, optional=True, **ADVANCED,
                               tooltip="hinge (the paper) or non_saturating (softplus; steadier at batch size 1)."),
                io.Float.Input("lr_g", default=_D.lr_g, min=1e-8, max=1.0, step=1e-6, optional=True, **ADVANCED,
                               tooltip="Learning rate of the LoRA (AdamW)."),
                io.Float.Input("lr_d", default=_D.lr_d, min=1e-8, max=1.0, step=1e-6, optional=True, **ADVANCED,
                               tooltip="Learning rate of the discriminator heads (AdamW)."),
                io.Float.Input("r1_weight", default=_D.r1_weight, min=0.0, max=1e4, step=0.01, optional=True, **ADVANCED,
                               tooltip="Weight of the R1 penalty on the heads' real inputs (0 = off)."),
                io.Float.Input("reward_weight", default=_D.reward_weight, min=0.0, max=1000.0, step=0.01,
                               optional=True, **ADVANCED,
                               tooltip="Weight of reward feedback in the generator loss (0 = off, the paper): the "
                                       "student's images, decoded by the VAE, scored by the rewards connected to "
                                       "LADD Train (ReNO's weighted loss), as Hyper-SD does for one-step students."),
                io.Int.Input("g_every", default=_D.g_every, min=1, max=100, optional=True, **ADVANCED,
                             tooltip="A generator (LoRA) step every this many discriminator steps."),
                io.Int.Input("warmup_steps", default=_D.warmup_steps, min=0, max=1000000, optional=True, **ADVANCED,
                             tooltip="Steps that train only on the low-noise half of the grid first (the paper "
                                     "warms up this way); then p = 0.7 on pure noise, 0.1 on each other step."),
                io.Float.Input("ema", default=_D.ema, min=0.0, max=0.99999, step=0.001, optional=True, **ADVANCED,
                               tooltip="EMA decay of the LoRA (0 = off); saves and the student MODEL use the EMA."),
                io.Boolean.Input("backward_simulation", default=_D.backward_simulation, optional=True, **ADVANCED,
                                 tooltip="Student inputs from its own earlier steps from pure noise (DMD2) instead "
                                         "of forward-noised teacher samples (the paper)."),
                io.Float.Input("renoise_mean", default=_D.renoise_mean, min=-5.0, max=5.0, step=0.1, optional=True, **ADVANCED,
                               tooltip="Mean m of the logit-normal re-noise level (higher = more global feedback)."),
                io.Float.Input("renoise_std", default=_D.renoise_std, min=0.01, max=5.0, step=0.1, optional=True, **ADVANCED,
                               tooltip="Spread s of the logit-normal re-noise level."),
                io.Boolean.Input("bf16", default=_D.bf16, optional=True, **ADVANCED,
                                 tooltip="bf16 autocast of model calls on a GPU (ignored on the CPU)."),
                io.Boolean.Input("gradient_checkpointing", default=_D.gradient_checkpointing, optional=True, **ADVANCED,
                                 tooltip="Recompute block activations in backward: much less memory, ~30% slower."),
            ],
            outputs=[LADDState.Output(display_name="state", tooltip="The untrained run, for LADD Train.")],
        )

    @classmethod
    def validate_inputs(cls, rank=None, seed=None, heads=None, grid_steps=None, loss=None, lr_g=None, lr_d=None,
                        r1_weight=None, g_every=None, warmup_steps=None, ema=None, backward_simulation=None,
                        renoise_mean=None, renoise_std=None, bf16=None, gradient_checkpointing=None,
                        reward_weight=None):
        return validation.check(cls, rank=rank, seed=seed, heads=heads, grid_steps=grid_steps, loss=loss, lr_g=lr_g,
                                lr_d=lr_d, r1_weight=r1_weight, reward_weight=reward_weight, g_every=g_every,
                                warmup_steps=warmup_steps, ema=ema, backward_simulation=backward_simulation,
                                renoise_mean=renoise_mean, renoise_std=renoise_std, bf16=bf16,
                                gradient_checkpointing=gradient_checkpointing)

    @classmethod
    def execute(cls, model, rank, seed, heads=_D.heads, grid_steps=_D.grid_steps, loss=_D.loss, lr_g=_D.lr_g,
                lr_d=_D.lr_d, r1_weight=_D.r1_weight, g_every=_D.g_every, warmup_steps=_D.warmup_steps, ema=_D.ema,
                backward_simulation=_D.backward_simulation, renoise_mean=_D.renoise_mean,
                renoise_std=_D.renoise_std, bf16=_D.bf16, gradient_checkpointing=_D.gradient_checkpointing,
                reward_weight=_D.reward_weight):
        from ..distill import features, lora, state, step

        validation.require(cls, rank=rank, seed=seed, heads=heads, grid_steps=grid_steps, loss=loss, lr_g=lr_g,
                           lr_d=lr_d, r1_weight=r1_weight, reward_weight=reward_weight, g_every=g_every,
                           warmup_steps=warmup_steps, ema=ema, renoise_mean=renoise_mean, renoise_std=renoise_std)
        config = Config(rank=rank, seed=seed, heads=heads, grid_steps=grid_steps, loss=loss, lr_g=lr_g, lr_d=lr_d,
                        r1_weight=r1_weight, reward_weight=reward_weight, g_every=g_every,
                        warmup_steps=warmup_steps, ema=ema, backward_simulation=backward_simulation,
                        renoise_mean=renoise_mean, renoise_std=renoise_std, bf16=bf16,
                        gradient_checkpointing=gradient_checkpointing)
        config.validate()
        step.check_model(model)
        features.parse_blocks(model.model.diffusion_model, heads)
        with torch.inference_mode(False):
            params = lora.init_params(lora.target_modules(model), rank, torch.Generator().manual_seed(seed))
        return io.NodeOutput(state.State(model=model, config=config, identity=state.base_identity(model),
                                         lora=params))


# ---------------------------------------------------------------------------------------------------- train

def _oom_message(e, state, data, batch_size) -> str:
    shape = "x".join(str(s) for s in data.latents.shape[1:])
    cfg = state.config
    tips = [t for t, on in (("gradient_checkpointing", not cfg.gradient_checkpointing), ("bf16", not cfg.bf16)) if on]
    return (f"out of memory while training LADD: latent {shape}, batch_size {batch_size}, rank {cfg.rank}. Lower "
            f"batch_size or rank, make the dataset at a smaller size" + (f", or switch on {' and '.join(tips)} in "
                                                                         "LADD Init" if tips else "")
            + f". ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")


def loss_map(history: list[dict]) -> dict:
    g = [h["loss_g"] for h in history if "loss_g" in h]
    return {"loss": g, "loss_g": g, "loss_d": [h["loss_d"] for h in history],
            "acc_real": [h["acc_real"] for h in history], "acc_fake": [h["acc_fake"] for h in history],
            "steps": [h["step"] for h in history]}


def _feedback(weight: float, reward, vae):
    """The generator's reward term for a run with `weight` (LADD Init's reward_weight), or None; a clear error when
    the inputs and the setting disagree."""
    from ..distill.step import RewardFeedback
    from .reno import as_stack

    if weight <= 0:
        if reward is not None:  # a valid graph (e.g. a run whose reward phase is over): say so, do not stop it
            log.warning("[quickstep] LADD Train: reward is connected, but this run's reward_weight is 0 (LADD Init), "
                        "so it is not used. Set reward_weight > 0 in LADD Init (e.g. 0.2) to train with it.")
        return None
    if reward is None or vae is None:
        missing = " and ".join(n for n, v in (("reward", reward), ("vae", vae)) if v is None)
        raise ValueError(f"{missing}: this run has reward_weight {weight:g} (LADD Init), which needs a reward and the "
                         "teacher's VAE connected to LADD Train. Connect them, or start the run with reward_weight 0.")
    return RewardFeedback(vae, as_stack(reward))


class LADDTrain(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepLADDTrain",
            display_name="LADD Train",
            category=CATEGORY,
            search_aliases=["ladd train", "distill", "train turbo lora"],
            description="Runs `steps` LADD steps (a discriminator step, then a generator step on the LoRA) and "
                        "returns the new state, the student MODEL (sample it with the Turbo sampler at 1 to "
                        "grid_steps steps, cfg 1) and the losses. Chain several to interleave previews and saves. "
                        "Cancel stops within one step; the state saved every save_every steps stays on disk.",
            inputs=[
                LADDState.Input("state", tooltip="From LADD Init, LADD Resume or another LADD Train."),
                LADDDataset.Input("dataset", tooltip="From LADD Dataset."),
                io.Int.Input("steps", default=100, min=1, max=10000000, tooltip="Training steps to run now."),
                io.Int.Input("batch_size", default=2, min=1, max=4096,
                             tooltip="Latents per step. Use 2 or more with the hinge loss (at 1 it saturates)."),
                io.Int.Input("save_every", default=100, min=0, max=10000000,
                             tooltip="Save the full state every this many steps (0 = never) to "
                                     "output/<save_prefix>_autosave_state.safetensors, atomically."),
                io.String.Input("save_prefix", default=DEFAULT_PREFIX, optional=True, **ADVANCED,
                                tooltip="Where the periodic saves go, relative to the output directory."),
                io.MultiType.Input("reward", types=[RewardType, RewardModel], optional=True,
                                   tooltip="Reward feedback for a run whose LADD Init set reward_weight > 0: a REWARD "
                                           "from Reward Stack or one REWARD_MODEL (weighted as ReNO weights its "
                                           "kind). The dataset's prompts are what it scores against."),
                io.Vae.Input("vae", optional=True,
                             tooltip="The teacher's VAE, to decode the student's latents for the reward."),
            ],
            outputs=[
                LADDState.Output(display_name="state", tooltip="The state after these steps."),
                io.Model.Output(display_name="student", tooltip="The teacher plus the LoRA as it is now (EMA if on): "
                                                                "sample it with the Turbo sampler, cfg 1."),
                LossMap.Output(display_name="losses", tooltip="Loss history of the whole run, for LADD Loss Plot."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, steps=None, batch_size=None, save_every=None, save_prefix=None):
        from ..folders import check_name, message

        checked = validation.check(cls, steps=steps, batch_size=batch_size, save_every=save_every,
                                   save_prefix=save_prefix)
        if checked is not True or not save_prefix:
            return checked
        return message(check_name, save_prefix, input="save_prefix", what="a file name prefix")

    @classmethod
    def execute(cls, state, dataset, steps, batch_size, save_every, save_prefix=DEFAULT_PREFIX, reward=None,
                vae=None) -> io.NodeOutput:
        from ..distill import dataset as ds
        from ..distill import state as st
        from ..distill import step as sp
        from ..folders import inside

        if steps < 1 or batch_size < 1 or save_every < 0:
            raise ValueError(f"steps and batch_size must be positive and save_every >= 0; got steps {steps}, "
                             f"batch_size {batch_size}, save_every {save_every}.")
        model = state.model
        sp.check_model(model)
        ds.check_against(dataset, model, sp.pooled_dim(model))
        autosave = inside(_output_dir(), f"{save_prefix or DEFAULT_PREFIX}_autosave_state.safetensors",
                          input="save_prefix", what="a prefix inside the output folder", must_exist=False)
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        previewer = _previewer(model)
        pbar = comfy.utils.ProgressBar(steps)
        history = list(state.history)
        trainer = state.trainer()
        trainer.feedback = _feedback(state.config.reward_weight, reward, vae)
        try:
            for i in range(steps):
                comfy.model_management.throw_exception_if_processing_interrupted()
                out = sp.train_step(trainer, dataset.sample_batch(batch_size, trainer.generator))
                preview = out.pop("preview")
                history.append(out)
                text = (f"step {out['step']}: loss_d {out['loss_d']:.3f}"
                        + (f", loss_g {out['loss_g']:.3f}" if "loss_g" in out else "")
                        + f", D acc real {out['acc_real']:.2f} fake {out['acc_fake']:.2f}")
                _progress_text(text, node_id)
                log.debug("[quickstep] LADD %s", text)
                if save_every and trainer.step % save_every == 0:
                    st.save(st.State.of(trainer, state.identity, history), autosave)
                pbar.update_absolute(i + 1, steps, _preview(previewer, preview))
        except torch.OutOfMemoryError as e:
            raise RuntimeError(_oom_message(e, state, dataset, batch_size)) from e
        new = st.State.of(trainer, state.identity, history)
        student = sp.student_model(model, new.student_lora(), new.config.lora_alpha)
        log.info("[quickstep] LADD trained to step %d", new.step)
        return io.NodeOutput(new, student, loss_map(history))


# ---------------------------------------------------------------------------------------------------- save / resume

class LADDSave(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepLADDSave",
            display_name="LADD Save",
            category=CATEGORY,
            is_output_node=True,
            search_aliases=["save ladd", "save student lora"],
            description="Writes the student LoRA into models/loras/ (load it with core's LoraLoaderModelOnly or "
                        "LoraLoader on the teacher and sample with the Turbo sampler) and the full training state "
                        "(LoRA, heads, both optimisers, step, RNG, config, base model identity) into the output "
                        "directory, for LADD Resume. Both are written atomically; names get a counter.",
            inputs=[
                LADDState.Input("state", tooltip="The run to save."),
                io.String.Input("filename_prefix", default=DEFAULT_PREFIX,
                                tooltip="Name prefix, e.g. 'ladd/student': the LoRA becomes "
                                        "models/loras/ladd/student_00001_.safetensors, the state "
                                        "output/ladd/student_00001_state.safetensors."),
            ],
            outputs=[
                io.String.Output(display_name="lora_name", tooltip="The LoRA's name as LoraLoaderModelOnly lists it."),
                io.String.Output(display_name="state_name", tooltip="The state's path under the output directory, "
                                                                   "for LADD Resume."),
            ],
        )

    @classmethod
    def validate_inputs(cls, filename_prefix=None):
        from ..folders import check_name, message

        checked = validation.check(cls, filename_prefix=filename_prefix)
        if checked is not True:
            return checked
        if filename_prefix is not None:
            return message(check_name, filename_prefix, input="filename_prefix", what="a file name prefix")
        return True

    @classmethod
    def execute(cls, state, filename_prefix) -> io.NodeOutput:
        import folder_paths

        from ..distill import lora
        from ..distill import state as st
        from ..folders import output_prefix

        loras_dir = folder_paths.get_folder_paths("loras")[0]
        full, name, counter, subfolder, _ = output_prefix(filename_prefix, output_dir=loras_dir)
        lora_file = Path(full) / f"{name}_{counter:05}_.safetensors"
        st.atomic_save(lora.to_comfy_lora(state.student_lora(), state.config.lora_alpha), lora_file,
                       {"quickstep": f"LADD student, step {state.step}, grid {state.config.grid_steps} steps"})
        out_full, out_name, out_counter, out_sub, _ = output_prefix(filename_prefix)
        state_file = Path(out_full) / f"{out_name}_{max(counter, out_counter):05}_state.safetensors"
        st.save(state, state_file)
        lora_name = str(lora_file.relative_to(loras_dir)).replace("\\", "/")
        state_name = str(state_file.relative_to(_output_dir())).replace("\\", "/")
        log.info("[quickstep] LADD saved step %d: loras/%s and output/%s", state.step, lora_name, state_name)
        return io.NodeOutput(lora_name, state_name, ui={"text": [f"step {state.step}: {lora_name}, {state_name}"]})


class LADDResume(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepLADDResume",
            display_name="LADD Resume",
            category=CATEGORY,
            search_aliases=["resume ladd", "load ladd state"],
            description="Loads a full LADD training state written by LADD Save (or a Train autosave) and continues "
                        "it on the MODEL it was trained from: the next steps are the ones an uninterrupted run "
                        "would have taken. Refuses a state made on another base model.",
            inputs=[
                io.Model.Input("model", tooltip="The base model the state was trained on (same weights and LoRAs)."),
                io.String.Input("state", default="ladd/student_00001_state.safetensors",
                                tooltip="The state file, relative to the output directory (LADD Save's "
                                        "state_name)."),
            ],
            outputs=[LADDState.Output(display_name="state", tooltip="The resumed run, for LADD Train.")],
        )

    @classmethod
    def validate_inputs(cls, state=None):
        from ..folders import check_name, message

        checked = validation.check(cls, state=state)
        if checked is not True:
            return checked
        if state is not None:
            return message(check_name, state, input="state", what="a state file inside the output folder")
        return True

    @classmethod
    def execute(cls, model, state) -> io.NodeOutput:
        from ..distill import state as st
        from ..folders import inside

        path = inside(_output_dir(), state, input="state", what="a state file inside the output folder")
        with torch.inference_mode(False):
            return io.NodeOutput(st.load(path, model))


# ---------------------------------------------------------------------------------------------------- plot

class LADDLossPlot(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepLADDLossPlot",
            display_name="LADD Loss Plot",
            category=CATEGORY,
            search_aliases=["ladd plot", "gan loss plot"],
            description="Plots a LADD run: generator and discriminator losses, and the discriminator's accuracy on "
                        "real (teacher) and fake (student) samples. Accuracy stuck near 1 means the heads win; near "
                        "0.5 with falling losses is the healthy regime.",
            inputs=[LossMap.Input("losses", tooltip="LADD Train's losses output.")],
            outputs=[io.Image.Output(display_name="plot", tooltip="The plot as an IMAGE (preview or save it).")],
        )

    @classmethod
    def execute(cls, losses) -> io.NodeOutput:
        from ..plots import line_chart

        panels = {"losses (per step)": {"generator": list(losses.get("loss_g", [])),
                                        "discriminator": list(losses.get("loss_d", []))},
                  "discriminator accuracy": {"real": list(losses.get("acc_real", [])),
                                             "fake": list(losses.get("acc_fake", []))}}
        return io.NodeOutput(line_chart(panels, xlabel="step"))


LADD_NODES: list[type[io.ComfyNode]] = [LADDDatasetNode, LADDInit, LADDTrain, LADDSave, LADDResume, LADDLossPlot]
