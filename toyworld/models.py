"""The toy model family, built with ComfyUI's own classes: SD1-style UNet, SD1 CLIP text tower, 4x KL VAE.

Needs ComfyUI importable (inside the host, or after `host.inprocess.import_host`). The weights live in
`toyworld/weights/`: `unet.safetensors`, `vae.safetensors`, and `clip/` (a transformers `CLIPModel` directory,
config.json + model.safetensors, whose `text_model.*` and `text_projection.weight` load unchanged into ComfyUI's
`SD1ClipModel`). `SHA256SUMS` records every file's hash; `load_*` check them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

WEIGHTS = Path(__file__).resolve().parent / "weights"
HASHES = WEIGHTS / "SHA256SUMS"
UNET_FILE, VAE_FILE, CLIP_DIR = "unet.safetensors", "vae.safetensors", "clip"
STUDENT_FILE = "student_lora.safetensors"  # LADD LoRA on the teacher (toyworld/train_student.py)
STUDENT_V2_FILE = "student_v2_lora.safetensors"  # the same on the v2 teacher (train_student.py --teacher v2)

#: SD1-style UNet on 16x16x4 latents (64x64 images), 1.7M parameters; context 32 = the CLIP text width. No attention
#: at the 16x16 level (as SDXL skips its top level): cross-attention at 8x8 and 4x4 places objects at half the cost.
UNET_CONFIG = {"image_size": 16, "in_channels": 4, "out_channels": 4, "model_channels": 32, "num_res_blocks": [1, 1, 1],
               "channel_mult": [1, 2, 2], "transformer_depth": [0, 1, 1], "transformer_depth_output": [0, 0, 1, 1, 1, 1],
               "transformer_depth_middle": 1, "use_spatial_transformer": True, "legacy": False, "context_dim": 32,
               "use_linear_in_transformer": True, "adm_in_channels": None, "use_temporal_attention": False,
               "use_temporal_resblock": False}
#: 4x down KL autoencoder: 64x64 RGB <-> 16x16x4. At 8x a 12-pixel circle is 1.5 latent cells and comes back as a
#: rounded square; at 4x the shapes survive. EmptyLatentImage divides by 8: 128x128 there is a 64x64 image here.
VAE_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
VAE_RATIO = 2 ** (len(VAE_DDCONFIG["ch_mult"]) - 1)
LATENT = 64 // VAE_RATIO  # latent side of a 64x64 image
#: text tower, also merged into ComfyUI's SD1 CLIP-L config (projection must equal hidden: Comfy's is square)
CLIP_TEXT = {"hidden_size": 32, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 3,
             "projection_dim": 32}
CLIP_VISION = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 3,
               "image_size": 64, "patch_size": 8, "num_channels": 3}
VOCAB, BOS, EOS, MAX_LEN = 49408, 49406, 49407, 77

# ------------------------------------------------------ v2 (issue 15); the shipped v1 files above stay as they are
#: the v2 toy CLIP (toyworld/train_text_v2.py): the v1 format, one text layer deeper, trained with hard negatives
CLIP_V2_DIR = "clip_v2"
CLIP_V2_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
CLIP_TEXT_V2 = dict(CLIP_TEXT, num_hidden_layers=4)
CLIP_VISION_V2 = dict(CLIP_VISION)
UNET_V2_FILE = "unet_v2.safetensors"
#: the v2 teacher: the same SD1 family (so the toy nodes, Turbo schedules, LADD LoRAs and ReNO apply unchanged), 64
#: channels at every level and one cross-attention transformer at 16x16, 8x8, 4x4 and in the middle; 2.4M parameters,
#: 0.49 GFLOP per sample forward (v1: 1.7M, 0.18). At 16x16 a latent cell is 4 pixels and an object 3-6 cells wide:
#: that is where each object's extent, shape and colour are laid down, so that is where the words about *which*
#: object is where and which colour it has must be read (v1 only read them at 8x8 and coarser and passed them up by
#: convolution); 8x8 places objects (one to three cells each), 4x4 decides left/right/above/below of the whole scene.
UNET_V2_CONFIG = dict(UNET_CONFIG, model_channels=64, channel_mult=[1, 1, 1], transformer_depth=[1, 1, 1],
                      transformer_depth_output=[1, 1, 1, 1, 1, 1])
ARCHS = ("v1", "v2")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def recorded_hashes() -> dict[str, str]:
    out = {}
    if HASHES.is_file():
        for line in HASHES.read_text().splitlines():
            if line.strip():
                digest, name = line.split(maxsplit=1)
                out[name.strip()] = digest
    return out


def record_hash(name: str) -> None:
    """Write `name`'s (relative to weights/) current hash into SHA256SUMS."""
    hashes = recorded_hashes()
    hashes[name] = sha256(WEIGHTS / name)
    HASHES.write_text("".join(f"{d}  {n}\n" for n, d in sorted(hashes.items())))


def checked(name: str) -> Path:
    """The path of shipped file `name`, after checking it against its recorded SHA-256."""
    path = WEIGHTS / name
    if not path.is_file():
        raise FileNotFoundError(f"toy weights {path} are missing; retrain with `python -m toyworld.train_all`.")
    want = recorded_hashes().get(name)
    if want is None or sha256(path) != want:
        raise ValueError(f"toy weights {path} do not match their SHA-256 in {HASHES}; restore them from git or "
                         f"retrain (`python -m toyworld.train_all`).")
    return path


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    import safetensors.torch

    return {k: v.float() for k, v in safetensors.torch.load_file(str(path)).items()}


# ------------------------------------------------------------------- UNet

def unet_config(arch: str = "v1"):
    import comfy.supported_models

    class ToySD15(comfy.supported_models.SD15):
        """SD1.5 with 16-channel attention heads (SD1.5's fixed 8 heads would be 4 channels wide at this size)."""

        unet_extra_config = {"num_heads": -1, "num_head_channels": 16}

    cfg = ToySD15(dict(_unet_dict(arch)))
    cfg.set_inference_dtype(torch.float32, None)
    return cfg


def _unet_dict(arch: str) -> dict:
    if arch not in ARCHS:
        raise ValueError(f"toy UNet arch must be one of {ARCHS}; got {arch!r}.")
    return UNET_V2_CONFIG if arch == "v2" else UNET_CONFIG


def build_unet_model(arch: str = "v1"):
    """A fresh (untrained, uninitialised) `comfy.model_base.BaseModel` of the toy config (`arch` v1 or v2)."""
    return unet_config(arch).get_model({})


def load_unet(path: Path | None = None):
    """MODEL (ModelPatcher) with the shipped UNet weights."""
    import comfy.model_management
    import comfy.model_patcher

    model = build_unet_model()
    sd = _load_safetensors(path or checked(UNET_FILE))
    model.diffusion_model.load_state_dict(sd, strict=True)
    model.diffusion_model.requires_grad_(False)
    mp = comfy.model_patcher.ModelPatcher(model, comfy.model_management.get_torch_device(),
                                          comfy.model_management.unet_offload_device())
    if hasattr(mp, "cached_patcher_init"):  # v0.15+: lets clone(force_deepcopy=True) rebuild the weights
        mp.cached_patcher_init = (_load_unet_again, (str(path) if path else None,))
    return mp


def _load_unet_again(path, disable_dynamic=False):
    return load_unet(Path(path) if path else None)


def load_unet_v2(path: Path | None = None):
    """MODEL (ModelPatcher) of the v2 teacher (`UNET_V2_CONFIG`), from `path` or the shipped, hash-checked file."""
    import comfy.model_management
    import comfy.model_patcher

    model = build_unet_model("v2")
    model.diffusion_model.load_state_dict(_load_safetensors(path or checked(UNET_V2_FILE)), strict=True)
    model.diffusion_model.requires_grad_(False)
    mp = comfy.model_patcher.ModelPatcher(model, comfy.model_management.get_torch_device(),
                                          comfy.model_management.unet_offload_device())
    if hasattr(mp, "cached_patcher_init"):
        mp.cached_patcher_init = (_load_unet_v2_again, (str(path) if path else None,))
    return mp


def _load_unet_v2_again(path, disable_dynamic=False):
    return load_unet_v2(Path(path) if path else None)


def load_teacher_unet(arch: str = "v1", path: Path | None = None):
    """MODEL of the `arch` toy teacher (v1 or v2), from the weights file `path` or the shipped one."""
    unet_config(arch)  # a clear error for an unknown arch
    return load_unet_v2(path) if arch == "v2" else load_unet(path)


def load_student(path: Path | None = None, arch: str = "v1", teacher: Path | None = None):
    """MODEL of the 1-4 step LADD student: the `arch` teacher (shipped, or the weights file `teacher`) plus the
    shipped LoRA (or `path`), applied the way core's LoraLoaderModelOnly applies it (`comfy.sd.load_lora_for_models`)."""
    import comfy.sd

    unet_config(arch)  # a clear error for an unknown arch
    lora = _load_safetensors(path or checked(STUDENT_V2_FILE if arch == "v2" else STUDENT_FILE))
    base = load_teacher_unet(arch, teacher)
    model, _ = comfy.sd.load_lora_for_models(base, None, lora, 1.0, 0.0)
    return model


# -------------------------------------------------------------------- VAE

def build_vae(sd: dict | None = None):
    """`comfy.sd.VAE` of the toy config; weights from `sd` (a state dict of `first_stage_model`) when given."""
    import comfy.sd

    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # ComfyUI warns about every key of an empty state dict
    try:
        vae = comfy.sd.VAE(sd=sd or {}, config={"params": {"embed_dim": 4, "ddconfig": dict(VAE_DDCONFIG)}})
    finally:
        logger.setLevel(level)
    vae.downscale_ratio = vae.upscale_ratio = VAE_RATIO  # Comfy assumes 8 for an AutoencoderKL config
    return vae


def load_vae(path: Path | None = None):
    vae = build_vae(_load_safetensors(path or checked(VAE_FILE)))
    vae.first_stage_model.requires_grad_(False)  # frozen, as loaded checkpoints are (gradients still reach inputs)
    return vae


# ------------------------------------------------------------------- CLIP

def build_clip(text_config: dict | None = None):
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base

    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
    return comfy.sd.CLIP(target=target, model_options={"clip_l_model_config": dict(text_config or CLIP_TEXT)})


def text_state_dict(hf_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys of a transformers CLIPModel state dict that ComfyUI's CLIP text model takes (same names)."""
    return {k: v for k, v in hf_sd.items() if k.startswith("text_model.") or k == "text_projection.weight"}


def load_clip(directory: Path | None = None, text_config: dict | None = None):
    """CLIP (ComfyUI) whose text model carries the toy CLIP's text tower (v1 unless `text_config` says otherwise)."""
    if directory is None:
        checked(f"{CLIP_DIR}/config.json")
        path = checked(f"{CLIP_DIR}/model.safetensors")
    else:
        path = Path(directory) / "model.safetensors"
    clip = build_clip(text_config)
    sd = text_state_dict(_load_safetensors(path))
    missing, _ = clip.load_sd(sd)
    missing = [k for k in missing if "position_ids" not in k]
    if missing:
        raise ValueError(f"toy CLIP text weights lack {missing[:5]}")
    return clip


def clip_dir() -> Path:
    checked(f"{CLIP_DIR}/config.json")
    checked(f"{CLIP_DIR}/model.safetensors")
    return WEIGHTS / CLIP_DIR


def clip_v2_dir() -> Path:
    for name in CLIP_V2_FILES:
        checked(f"{CLIP_V2_DIR}/{name}")
    return WEIGHTS / CLIP_V2_DIR


def load_clip_v2(directory: Path | None = None):
    """CLIP (ComfyUI) with the v2 toy text tower (toyworld/train_text_v2.py; the v2 teacher's text encoder)."""
    return load_clip(Path(directory) if directory else clip_v2_dir(), text_config=CLIP_TEXT_V2)


def load_text_encoder(arch: str = "v1"):
    """CLIP of the `arch` toy teacher: the toy CLIP for v1, the v2 text tower for v2."""
    unet_config(arch)
    return load_clip_v2() if arch == "v2" else load_clip()


#: the toy diffusion models by name (QuickstepToyCheckpoint's `model` input, toy_quality's `--model`)
NAMED = ("teacher", "student", "teacher_v2", "student_v2")


def load_named(name: str):
    """(MODEL, CLIP) of a `NAMED` toy model: a teacher, or a student (its teacher plus the shipped LADD LoRA), each
    with its teacher's text encoder."""
    if name not in NAMED:
        raise ValueError(f"toy model must be one of {NAMED}; got {name!r}")
    arch = "v2" if name.endswith("_v2") else "v1"
    unet = load_student(arch=arch) if name.startswith("student") else load_teacher_unet(arch)
    return unet, load_text_encoder(arch)


def config_summary() -> str:
    return json.dumps({"unet": UNET_CONFIG, "vae": VAE_DDCONFIG, "clip_text": CLIP_TEXT, "clip_vision": CLIP_VISION})


#: the toy rewards, by the name QuickstepToyReward's `model` input shows
TOY_REWARDS = ("match", "clip")
#: the toy match reward's files in toyworld/weights/ (written by toyworld/train_reward.py)
MATCH_FILE, MATCH_CONFIG = "toy_match.safetensors", "toy_match.json"


def load_toy_reward(device=None, model: str = "clip"):
    """A toy reward through `reward/`'s loader, after checking the shipped files' SHA-256: `model` "clip" (the
    default here, as before) is the toy CLIP (`kind="clip"`), "match" the toy match reward (`kind="toymatch"`)."""
    from ..reward.loading import load_reward

    if model == "match":
        checked(MATCH_CONFIG)
        return load_reward(checked(MATCH_FILE), kind="toymatch", device=device, dtype="fp32")
    if model != "clip":
        raise ValueError(f"model must be one of {', '.join(TOY_REWARDS)}; got {model!r}.")
    return load_reward(clip_dir(), kind="clip", device=device, dtype="fp32")
