"""The one description of every shipped workflow. `python -m workflows.build` turns each into the UI-format file in
example_workflows/ (what the template browser lists) and, by conversion, the API-format file in workflows/api/.

Each real-model workflow names a `toy_` twin: the same graph on the toy model, which runs on a CPU in seconds, renders
the thumbnail of both, and is run by the test suite. Model file names are the official ones."""

from __future__ import annotations

from .ui import Flow

TOY_PROMPT = "a photo of a red circle and a blue square"
TOY_TITLES = {"ckpt": "Toy Checkpoint", "pos": "Positive", "neg": "Negative (empty: the CFG baseline)",
              "latent": "Empty Latent 128 = 16x16 latent = 64x64 image (4x toy VAE)", "eval": "Toy GenEval score"}
TOY_NOTE = ("Toy model: 64x64 images of coloured shapes, small enough for a CPU. Change the prompt in Positive and in "
            "Toy GenEval score (the evaluator checks the image against it); try prompts like 'two green triangles' or "
            "'a yellow square above a purple circle'.")

FLOWS: list[Flow] = []


def flow(fn):
    FLOWS.append(fn())
    return fn


def toy_start(f: Flow, batch: int = 4):
    ckpt = f.add("QuickstepToyCheckpoint", col=0, title=TOY_TITLES["ckpt"], model="teacher")
    pos = f.add("CLIPTextEncode", col=1, title=TOY_TITLES["pos"], clip=ckpt[1], text=TOY_PROMPT)
    neg = f.add("CLIPTextEncode", col=1, title=TOY_TITLES["neg"], clip=ckpt[1], text="")
    latent = f.add("EmptyLatentImage", col=0, title=TOY_TITLES["latent"], width=128, height=128, batch_size=batch)
    return ckpt, pos, neg, latent


def toy_end(f: Flow, images, col: int, first_id: int | None = None):
    f.add("SaveImage", col=col, id=first_id, images=images, filename_prefix=f"quickstep/{f.name}")
    f.add("QuickstepToyEvaluate", col=col, title=TOY_TITLES["eval"], images=images, prompt=TOY_PROMPT)


def real_start(f: Flow, ckpt_name: str, ckpt_title: str, prompt: str, size: int, sd3_latent: bool = False,
               batch: int = 1):
    ckpt = f.add("CheckpointLoaderSimple", col=0, title=ckpt_title, ckpt_name=ckpt_name)
    pos = f.add("CLIPTextEncode", col=1, clip=ckpt[1], text=prompt)
    neg = f.add("CLIPTextEncode", col=1, clip=ckpt[1], text="")
    latent = f.add("EmptySD3LatentImage" if sd3_latent else "EmptyLatentImage", col=0, width=size, height=size,
                   batch_size=batch)
    return ckpt, pos, neg, latent


# -- Turbo ----------------------------------------------------------------------------------------------------------
def turbo_1step(name: str, ckpt_name: str, ckpt_title: str, prompt: str, where: str) -> Flow:
    f = Flow(name, f"Turbo 1-step on {ckpt_title.split(' checkpoint')[0]}: one Turbo KSampler step at CFG 1.",
             twin="toy_turbo_1step")
    ckpt, pos, neg, latent = real_start(f, ckpt_name, ckpt_title, prompt, 512)
    sampled = f.add("QuickstepTurboKSampler", col=2, model=ckpt[0], positive=pos[0], negative=neg[0],
                    latent_image=latent[0], seed=0, steps=1, cfg=1.0, eta_mode="auto", eta=1.0, denoise=1.0)
    decoded = f.add("VAEDecode", col=2, samples=sampled[0], vae=ckpt[2])
    f.add("SaveImage", col=3, images=decoded[0], filename_prefix=f"quickstep/{name}")
    f.note(f"{ckpt_title.split(' checkpoint')[0]} makes an image in one step at 512x512 with CFG 1 (the negative "
           f"prompt is unused at CFG 1). Put {ckpt_name} in models/checkpoints ({where}). Change the prompt in the "
           "first CLIP Text Encode; steps 1-4 all work (more steps: a little more detail).", col=3)
    return f


@flow
def sd_turbo_1step():
    return turbo_1step("sd_turbo_1step", "sd_turbo.safetensors", "SD-Turbo checkpoint (models/checkpoints)",
                       "a cinematic photo of a red fox in fresh snow, golden hour",
                       "https://huggingface.co/stabilityai/sd-turbo")


@flow
def sdxl_turbo_1step():
    return turbo_1step("sdxl_turbo_1step", "sd_xl_turbo_1.0_fp16.safetensors",
                       "SDXL-Turbo checkpoint (models/checkpoints)",
                       "a cinematic photo of a red fox in fresh snow, golden hour",
                       "https://huggingface.co/stabilityai/sdxl-turbo")


@flow
def sd35_large_turbo_4step():
    f = Flow("sd35_large_turbo_4step", "Turbo 4-step on SD3.5 Large Turbo (flow model): Turbo KSampler, 4 steps, CFG 1.",
             twin="toy_turbo_4step")
    ckpt, pos, neg, latent = real_start(f, "sd3.5_large_turbo.safetensors",
                                        "SD3.5 Large Turbo checkpoint with text encoders (models/checkpoints)",
                                        "a watercolor painting of a lighthouse on a cliff at dawn", 1024,
                                        sd3_latent=True)
    sampled = f.add("QuickstepTurboKSampler", col=2, model=ckpt[0], positive=pos[0], negative=neg[0],
                    latent_image=latent[0], seed=0, steps=4, cfg=1.0, eta_mode="auto", eta=0.0, denoise=1.0)
    decoded = f.add("VAEDecode", col=2, samples=sampled[0], vae=ckpt[2])
    f.add("SaveImage", col=3, images=decoded[0], filename_prefix="quickstep/sd35_large_turbo_4step")
    f.note("SD3.5 Large Turbo: 4 steps at 1024x1024, CFG 1, on the trailing flow grid the Turbo KSampler picks for "
           "the model. Put sd3.5_large_turbo.safetensors (https://huggingface.co/stabilityai/"
           "stable-diffusion-3.5-large-turbo) in models/checkpoints; about 20 GB of VRAM in bf16.", col=3)
    return f


@flow
def flux_schnell_4step():
    f = Flow("flux_schnell_4step", "Turbo 4-step on FLUX.1-schnell: Turbo Scheduler + Turbo Sampler in "
             "SamplerCustomAdvanced.", twin="toy_turbo_4step")
    unet = f.add("UNETLoader", col=0, title="FLUX.1-schnell (models/diffusion_models)",
                 unet_name="flux1-schnell.safetensors", weight_dtype="default")
    clip = f.add("DualCLIPLoader", col=0, clip_name1="clip_l.safetensors", clip_name2="t5xxl_fp8_e4m3fn.safetensors",
                 type="flux")
    vae = f.add("VAELoader", col=0, vae_name="ae.safetensors")
    pos = f.add("CLIPTextEncode", col=1, clip=clip[0], text="a macro photo of a dew-covered spider web at sunrise")
    latent = f.add("EmptySD3LatentImage", col=1, width=1024, height=1024, batch_size=1)
    sigmas = f.add("QuickstepTurboScheduler", col=2, model=unet[0], steps=4, denoise=1.0, grid="trailing",
                   custom_timesteps="")
    sampler = f.add("QuickstepTurboSampler", col=2, eta_mode="auto", eta=0.0, s_noise=1.0)
    noise = f.add("RandomNoise", col=2, noise_seed=0)
    guider = f.add("BasicGuider", col=2, model=unet[0], conditioning=pos[0])
    sampled = f.add("SamplerCustomAdvanced", col=3, noise=noise[0], guider=guider[0], sampler=sampler[0],
                    sigmas=sigmas[0], latent_image=latent[0])
    decoded = f.add("VAEDecode", col=3, samples=sampled[0], vae=vae[0])
    f.add("SaveImage", col=4, images=decoded[0], filename_prefix="quickstep/flux_schnell_4step")
    f.note("FLUX.1-schnell in 4 steps, no CFG (Basic Guider). Files: flux1-schnell.safetensors in "
           "models/diffusion_models and ae.safetensors in models/vae (https://huggingface.co/black-forest-labs/"
           "FLUX.1-schnell); clip_l.safetensors and t5xxl_fp8_e4m3fn.safetensors in models/text_encoders "
           "(https://huggingface.co/comfyanonymous/flux_text_encoders). Turbo Scheduler: steps 1-4; eta 0 is "
           "deterministic.", col=4)
    return f


@flow
def toy_turbo_1step():
    f = Flow("toy_turbo_1step", "Toy model, Turbo 1-step with CFG 4 (the toy teacher is not distilled).")
    ckpt, pos, neg, latent = toy_start(f)
    sampled = f.add("QuickstepTurboKSampler", col=2, model=ckpt[0], positive=pos[0], negative=neg[0],
                    latent_image=latent[0], seed=0, steps=1, cfg=4.0, eta_mode="auto", eta=1.0, denoise=1.0)
    decoded = f.add("VAEDecode", col=2, id=10, samples=sampled[0], vae=ckpt[2])
    toy_end(f, decoded[0], col=3)
    f.note(TOY_NOTE, col=3)
    return f


@flow
def toy_turbo_4step():
    f = Flow("toy_turbo_4step", "Toy model, Turbo 4-step: Turbo Scheduler + Turbo Sampler in core SamplerCustom.")
    ckpt, pos, neg, latent = toy_start(f)
    sigmas = f.add("QuickstepTurboScheduler", col=2, model=ckpt[0], steps=4, denoise=1.0, grid="trailing",
                   custom_timesteps="")
    sampler = f.add("QuickstepTurboSampler", col=2, eta_mode="auto", eta=1.0, s_noise=1.0)
    sampled = f.add("SamplerCustom", col=3, model=ckpt[0], add_noise=True, noise_seed=0, cfg=4.0, positive=pos[0],
                    negative=neg[0], sampler=sampler[0], sigmas=sigmas[0], latent_image=latent[0])
    decoded = f.add("VAEDecode", col=3, id=10, samples=sampled[0], vae=ckpt[2])
    toy_end(f, decoded[0], col=4)
    f.note(TOY_NOTE + " Turbo Scheduler: steps 1-4 on the trailing grid; custom_timesteps overrides it.", col=4)
    return f


@flow
def toy_teacher_25step():
    f = Flow("toy_teacher_25step", "Toy model, the multi-step baseline: core KSampler, 25 euler steps, CFG 4.")
    ckpt, pos, neg, latent = toy_start(f)
    sampled = f.add("KSampler", col=2, model=ckpt[0], seed=0, steps=25, cfg=4.0, sampler_name="euler",
                    scheduler="normal", positive=pos[0], negative=neg[0], latent_image=latent[0], denoise=1.0)
    decoded = f.add("VAEDecode", col=2, id=10, samples=sampled[0], vae=ckpt[2])
    toy_end(f, decoded[0], col=3)
    f.note(TOY_NOTE + " This is the 25-step reference the Turbo workflows are compared against.", col=3)
    return f


# -- best-of-N ------------------------------------------------------------------------------------------------------
@flow
def best_of_n_sd_turbo():
    f = Flow("best_of_n_sd_turbo", "Best-of-N: four SD-Turbo seeds scored by HPSv2.1 + ImageReward, best first.",
             twin="toy_best_of_n")
    ckpt, pos, neg, latent = real_start(f, "sd_turbo.safetensors", "SD-Turbo checkpoint (models/checkpoints)",
                                        "a photo of a blue teddy bear sitting to the left of a red vase", 512,
                                        batch=4)
    sampled = f.add("QuickstepTurboKSampler", col=2, model=ckpt[0], positive=pos[0], negative=neg[0],
                    latent_image=latent[0], seed=0, steps=1, cfg=1.0, eta_mode="auto", eta=1.0, denoise=1.0)
    decoded = f.add("VAEDecode", col=2, samples=sampled[0], vae=ckpt[2])
    hps = f.add("QuickstepLoadReward", col=2, title="HPSv2.1 (models/rewards)", reward_name="HPS_v2.1_compressed.pt")
    ir = f.add("QuickstepLoadReward", col=2, title="ImageReward v1.0 (models/rewards/ImageReward)",
               reward_name="ImageReward/ImageReward.pt")
    stack = f.add("QuickstepRewardStack", col=3, title="ReNO's weights", reward_1=hps[0], reward_2=ir[0],
                  weighting="reno")
    score = f.add("QuickstepScoreImages", col=3, images=decoded[0],
                  prompt="a photo of a blue teddy bear sitting to the left of a red vase", reward=stack[0])
    f.add("SaveImage", col=4, title="All four, best first", images=score[3],
          filename_prefix="quickstep/best_of_n_sd_turbo")
    f.note("Best-of-N: sample N seeds (batch_size of the Empty Latent Image), score each with the rewards, keep the "
           "best. Score Images lists the scores and returns the batch sorted best first. Keep its prompt equal to the "
           "positive prompt. Reward files: HPS_v2.1_compressed.pt (https://huggingface.co/xswu/HPSv2) in "
           "models/rewards, ImageReward.pt (https://huggingface.co/THUDM/ImageReward) in models/rewards/ImageReward.",
           col=4)
    return f


@flow
def toy_best_of_n():
    f = Flow("toy_best_of_n", "Toy model, best-of-N: four Turbo 1-step seeds scored by the toy reward, best first.")
    ckpt, pos, neg, latent = toy_start(f)
    sampled = f.add("QuickstepTurboKSampler", col=2, model=ckpt[0], positive=pos[0], negative=neg[0],
                    latent_image=latent[0], seed=0, steps=1, cfg=4.0, eta_mode="auto", eta=1.0, denoise=1.0)
    decoded = f.add("VAEDecode", col=2, samples=sampled[0], vae=ckpt[2])
    reward = f.add("QuickstepToyReward", col=2, title="Toy reward")
    stack = f.add("QuickstepRewardStack", col=3, reward_1=reward[0], weighting="manual", weight_1=1.0)
    score = f.add("QuickstepScoreImages", col=3, images=decoded[0], prompt=TOY_PROMPT, reward=stack[0])
    toy_end(f, score[3], col=4)
    f.nodes[-2].title = "All four, best first"
    f.note(TOY_NOTE + " Score Images returns the batch sorted best first; the toy reward is not the evaluator, so "
           "the toy GenEval score checks the pick independently.", col=4)
    return f


# -- ReNO -----------------------------------------------------------------------------------------------------------
def reno_sd_turbo_graph(f: Flow):
    prompt = "a photo of a blue teddy bear sitting to the left of a red vase"
    ckpt = f.add("CheckpointLoaderSimple", col=0, title="SD-Turbo checkpoint (models/checkpoints)",
                 ckpt_name="sd_turbo.safetensors")
    pos = f.add("CLIPTextEncode", col=1, title="Positive", clip=ckpt[1], text=prompt)
    latent = f.add("EmptyLatentImage", col=0, width=512, height=512, batch_size=1)
    common = dict(kind="auto", dtype="auto", gradient_checkpointing=True, backbone="auto")
    rewards = [f.add("QuickstepLoadReward", col=1, title=title, reward_name=name, **common) for name, title in (
        ("HPS_v2.1_compressed.pt", "HPSv2.1 (models/rewards)"),
        ("ImageReward/ImageReward.pt", "ImageReward v1.0 (models/rewards/ImageReward)"),
        ("PickScore_v1/model.safetensors", "PickScore v1 (models/rewards/PickScore_v1)"),
        ("CLIP-ViT-H-14-laion2B-s32B-b79K/model.safetensors", "CLIP ViT-H-14 (models/rewards)"))]
    stack = f.add("QuickstepRewardStack", col=2, title="ReNO's weights", reward_1=rewards[0][0],
                  reward_2=rewards[1][0], reward_3=rewards[2][0], reward_4=rewards[3][0], weighting="reno",
                  weight_1=1.0, weight_2=1.0, weight_3=1.0, weight_4=1.0)
    reno = f.add("QuickstepReNO", col=2, title="ReNO (paper defaults)", model=ckpt[0], vae=ckpt[2], positive=pos[0],
                 reward=stack[0], latent=latent[0], prompt=prompt, seed=0, iterations=50, learning_rate=5.0, steps=1,
                 cfg=1.0, optimizer="sgd", momentum=0.9, nesterov=True, grad_clip=0.1, reg_weight=0.01,
                 precision="bf16", checkpointing="generator + vae")
    f.add("SaveImage", col=3, images=reno[1], filename_prefix=f"quickstep/{f.name}")
    f.add("PreviewImage", col=3, title="Reward against iteration", images=reno[3])
    f.group("Rewards (ReNO: HPSv2.1, ImageReward, PickScore, CLIP)", *rewards)
    return ckpt, pos, latent, reno


RENO_NOTE = ("ReNO optimises the initial noise of a one-step model against the rewards (Eyring et al. 2024): 50 "
             "iterations of SGD with Nesterov momentum at learning rate 5, gradient norm clipped to 0.1, a chi-norm "
             "regulariser keeping the noise Gaussian. Keep ReNO's prompt equal to the positive prompt. Reward files: "
             "HPS_v2.1_compressed.pt (https://huggingface.co/xswu/HPSv2), ImageReward.pt "
             "(https://huggingface.co/THUDM/ImageReward), PickScore_v1 (https://huggingface.co/yuvalkirstain/"
             "PickScore_v1) and CLIP-ViT-H-14-laion2B-s32B-b79K (https://huggingface.co/laion/"
             "CLIP-ViT-H-14-laion2B-s32B-b79K) in models/rewards. About 20 GB of VRAM with checkpointing.")


@flow
def reno_sd_turbo():
    f = Flow("reno_sd_turbo", "ReNO on SD-Turbo with the paper's four rewards and defaults.", twin="toy_reno")
    reno_sd_turbo_graph(f)
    f.note(RENO_NOTE, col=3)
    return f


@flow
def reno_rerender_sd_turbo():
    f = Flow("reno_rerender_sd_turbo", "ReNO on SD-Turbo, then its optimised noise re-rendered in 4 Turbo steps.",
             twin="toy_reno_rerender")
    ckpt, pos, latent, reno = reno_sd_turbo_graph(f)
    guider = f.add("BasicGuider", col=4, model=ckpt[0], conditioning=pos[0])
    sigmas = f.add("QuickstepTurboScheduler", col=4, model=ckpt[0], steps=4, denoise=1.0, grid="trailing",
                   custom_timesteps="")
    sampler = f.add("QuickstepTurboSampler", col=4, eta_mode="auto", eta=0.0, s_noise=1.0)
    sampled = f.add("SamplerCustomAdvanced", col=5, title="Re-render ReNO's noise in 4 steps", noise=reno[2],
                    guider=guider[0], sampler=sampler[0], sigmas=sigmas[0], latent_image=latent[0])
    decoded = f.add("VAEDecode", col=5, samples=sampled[0], vae=ckpt[2])
    f.add("SaveImage", col=5, title="Re-rendered", images=decoded[0],
          filename_prefix="quickstep/reno_rerender_sd_turbo_4step")
    f.group("Re-render: the same noise, more steps", guider, sigmas, sampler)
    f.note(RENO_NOTE + " ReNO's noise output is a NOISE for any sampler: here SD-Turbo re-renders it in 4 steps.",
           col=3)
    return f


def toy_reno_graph(f: Flow):
    ckpt, pos, neg, latent = toy_start(f)
    reward = f.add("QuickstepToyReward", col=0, title="Toy reward")
    reno = f.add("QuickstepReNO", col=2, title="ReNO (toy teacher at 2 Turbo steps with CFG; 10 iterations to stay "
                 "quick on a CPU; the node defaults to the paper's 50)", box_width=400, model=ckpt[0], vae=ckpt[2],
                 positive=pos[0], negative=neg[0], reward=reward[0], latent=latent[0], prompt=TOY_PROMPT, seed=0,
                 iterations=10, learning_rate=5.0, steps=2, cfg=4.0, optimizer="sgd", momentum=0.9, nesterov=True,
                 grad_clip=0.1, reg_weight=0.01, precision="fp32", checkpointing="off")
    return ckpt, pos, neg, latent, reno


@flow
def toy_reno():
    f = Flow("toy_reno", "Toy model, ReNO: the toy reward optimises the initial noise of a 2-step render.")
    ckpt, pos, neg, latent, reno = toy_reno_graph(f)
    f.add("SaveImage", col=3, images=reno[1], filename_prefix="quickstep/toy_reno")
    f.add("PreviewImage", col=3, title="Reward against iteration", images=reno[3])
    f.add("QuickstepToyEvaluate", col=3, title=TOY_TITLES["eval"], images=reno[1], prompt=TOY_PROMPT)
    f.note(TOY_NOTE + " Keep ReNO's prompt equal to the positive prompt; more iterations: a higher reward.", col=3)
    return f


@flow
def toy_reno_rerender():
    f = Flow("toy_reno_rerender", "Toy model, ReNO then a 25-step re-render of the optimised noise.")
    ckpt, pos, neg, latent, reno = toy_reno_graph(f)
    guider = f.add("CFGGuider", col=3, title="CFG 4 guider for the multi-step render", model=ckpt[0], positive=pos[0],
                   negative=neg[0], cfg=4.0)
    sampler = f.add("KSamplerSelect", col=3, sampler_name="euler")
    sigmas = f.add("BasicScheduler", col=3, title="25 steps, normal", model=ckpt[0], scheduler="normal", steps=25,
                   denoise=1.0)
    sampled = f.add("SamplerCustomAdvanced", col=4, title="Re-render ReNO's noise with 25 steps", noise=reno[2],
                    guider=guider[0], sampler=sampler[0], sigmas=sigmas[0], latent_image=latent[0])
    decoded = f.add("VAEDecode", col=4, samples=sampled[0], vae=ckpt[2])
    toy_end(f, decoded[0], col=5)
    f.group("Re-render: the same noise, 25 steps", guider, sampler, sigmas)
    f.note(TOY_NOTE + " ReNO's noise output is a NOISE for any sampler: here the toy teacher re-renders it.", col=5)
    return f


# -- LADD -----------------------------------------------------------------------------------------------------------
@flow
def ladd_sdxl():
    f = Flow("ladd_sdxl", "LADD: distil SDXL into a 4-step LoRA student (dataset -> train -> save -> sample).",
             twin="toy_ladd")
    ckpt = f.add("CheckpointLoaderSimple", col=0, title="Teacher: SDXL base (models/checkpoints)",
                 ckpt_name="sd_xl_base_1.0.safetensors")
    data = f.add("QuickstepLADDDataset", col=1, model=ckpt[0], clip=ckpt[1],
                 prompts="a photo of a cat\na photo of a red car\na watercolor of a lighthouse\na portrait of an old man",
                 seed=0, images_per_prompt=64, width=1024, height=1024, steps=30, cfg=5.0, sampler_name="euler",
                 scheduler="normal", folder="ladd/sdxl_dataset")
    init = f.add("QuickstepLADDInit", col=1, model=ckpt[0], rank=16, seed=0)
    train = f.add("QuickstepLADDTrain", col=2, state=init[0], dataset=data[0], steps=2000, batch_size=2,
                  save_every=100, save_prefix="ladd/sdxl_student")
    f.add("QuickstepLADDSave", col=2, state=train[0], filename_prefix="ladd/sdxl_student")
    f.add("PreviewImage", col=2, title="Losses", images=f.add("QuickstepLADDLossPlot", col=2, losses=train[2])[0])
    pos = f.add("CLIPTextEncode", col=3, clip=ckpt[1], text="a photo of a cat")
    latent = f.add("EmptyLatentImage", col=3, width=1024, height=1024, batch_size=1)
    sampled = f.add("QuickstepTurboKSampler", col=3, title="Student: 4 steps", model=train[1], positive=pos[0],
                    negative=pos[0], latent_image=latent[0], seed=0, steps=4, cfg=1.0, eta_mode="auto", eta=1.0,
                    denoise=1.0)
    decoded = f.add("VAEDecode", col=4, samples=sampled[0], vae=ckpt[2])
    f.add("SaveImage", col=4, images=decoded[0], filename_prefix="quickstep/ladd_sdxl")
    f.note("LADD (Sauer et al. 2024): the teacher samples a dataset once (LADD Dataset), then LADD Train fits a LoRA "
           "student with discriminator heads on the teacher's features. The state autosaves every save_every steps "
           "(queue again with LADD Resume to continue); LADD Save writes the LoRA to models/loras for core's "
           "LoraLoaderModelOnly. Put sd_xl_base_1.0.safetensors (https://huggingface.co/stabilityai/"
           "stable-diffusion-xl-base-1.0) in models/checkpoints. Use many prompts (thousands) for a general student; "
           "about 40 GB of VRAM at 1024 with rank 16.", col=4)
    return f


@flow
def toy_ladd():
    f = Flow("toy_ladd", "Toy model, LADD: a tiny teacher dataset, a few training steps, save, sample the student.")
    ckpt = f.add("QuickstepToyCheckpoint", col=0, title=TOY_TITLES["ckpt"], model="teacher")
    data = f.add("QuickstepLADDDataset", col=1, model=ckpt[0], clip=ckpt[1],
                 prompts=f"{TOY_PROMPT}\na photo of two green triangles", seed=0, images_per_prompt=2, width=128,
                 height=128, steps=6, cfg=4.0, sampler_name="euler", scheduler="normal", folder="ladd/toy_dataset")
    init = f.add("QuickstepLADDInit", col=1, model=ckpt[0], rank=4, seed=0)
    train = f.add("QuickstepLADDTrain", col=2, state=init[0], dataset=data[0], steps=3, batch_size=2, save_every=0,
                  save_prefix="ladd/toy_student")
    f.add("QuickstepLADDSave", col=2, state=train[0], filename_prefix="ladd/toy_student")
    f.add("PreviewImage", col=2, title="Losses", images=f.add("QuickstepLADDLossPlot", col=2, losses=train[2])[0])
    pos = f.add("CLIPTextEncode", col=3, title=TOY_TITLES["pos"], clip=ckpt[1], text=TOY_PROMPT)
    neg = f.add("CLIPTextEncode", col=3, title=TOY_TITLES["neg"], clip=ckpt[1], text="")
    latent = f.add("EmptyLatentImage", col=3, title=TOY_TITLES["latent"], width=128, height=128, batch_size=4)
    sampled = f.add("QuickstepTurboKSampler", col=4, title="Student: 2 steps", model=train[1], positive=pos[0],
                    negative=neg[0], latent_image=latent[0], seed=0, steps=2, cfg=1.0, eta_mode="auto", eta=1.0,
                    denoise=1.0)
    decoded = f.add("VAEDecode", col=4, samples=sampled[0], vae=ckpt[2])
    toy_end(f, decoded[0], col=5)
    f.note(TOY_NOTE + " LADD here runs 3 training steps on 4 teacher images (6 teacher steps each) to stay quick; a useful toy student "
           "takes a few thousand (toyworld/train_student.py). The Toy Checkpoint's 'student' is one trained so.", col=5)
    return f


def by_name() -> dict[str, Flow]:
    return {f.name: f for f in FLOWS}
