"""Finding reward files in ComfyUI's `models/rewards/` folder, telling their kind apart and loading them offline.

Nothing here downloads: transformers is only ever given local folders with `local_files_only=True`, `.pt/.pth/.bin`
files load with `torch.load(weights_only=True)` and safetensors with `safetensors.torch.load_file`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import torch

from ..folders import model_file
from .base import DTYPES, Reward

log = logging.getLogger("quickstep")

FOLDER = "rewards"
EXTENSIONS = (".safetensors", ".sft", ".pt", ".pth", ".bin")
KINDS = ("clip", "pickscore", "hps", "imagereward", "aesthetic", "toymatch")
_PREFERRED = {".safetensors": 0, ".sft": 0, ".bin": 1, ".pt": 2, ".pth": 2}

#: what each kind expects in models/rewards/, and where users get it
EXPECTED = {
    "clip": "a transformers CLIP folder: config.json + model.safetensors (e.g. CLIP-ViT-H-14-laion2B-s32B-b79K/ from "
            "https://huggingface.co/laion/CLIP-ViT-H-14-laion2B-s32B-b79K, or clip-vit-large-patch14/ from "
            "https://huggingface.co/openai/clip-vit-large-patch14)",
    "pickscore": "PickScore_v1/ with config.json + model.safetensors from https://huggingface.co/yuvalkirstain/PickScore_v1",
    "hps": "HPS_v2.1_compressed.pt from https://huggingface.co/xswu/HPSv2",
    "imagereward": "ImageReward/ with ImageReward.pt + med_config.json from https://huggingface.co/THUDM/ImageReward and "
                   "vocab.txt from https://huggingface.co/google-bert/bert-base-uncased",
    "aesthetic": "sac+logos+ava1-l14-linearMSE.pth from https://github.com/christophschuhmann/improved-aesthetic-predictor "
                 "plus the CLIP ViT-L/14 folder clip-vit-large-patch14/ (config.json + model.safetensors) from "
                 "https://huggingface.co/openai/clip-vit-large-patch14",
    "toymatch": "toy_match.safetensors with toy_match.json beside it, from Quickstep's toyworld/weights/ (the toy-world "
                "match reward, trained by toyworld/train_reward.py)",
}


# -- the ComfyUI model folder ------------------------------------------------------------------------------------
def register_folder() -> None:
    """Register `models/rewards` (first), keeping paths extra_model_paths.yaml gave the `rewards` key, and set the
    extension filter."""
    import folder_paths

    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER), is_default=True)
    paths, exts = folder_paths.folder_names_and_paths[FOLDER]
    if not isinstance(exts, set):
        exts = set(exts)
        folder_paths.folder_names_and_paths[FOLDER] = (paths, exts)
    exts.update(EXTENSIONS)


def search_paths() -> list[str]:
    try:
        import folder_paths
    except ImportError:
        return []
    if FOLDER not in folder_paths.folder_names_and_paths:
        register_folder()
    return folder_paths.get_folder_paths(FOLDER)


def list_reward_files() -> list[str]:
    """Reward files under the registered folders, one entry per transformers folder (its preferred weights file;
    the other shards and formats of that folder are hidden)."""
    import folder_paths

    if FOLDER not in folder_paths.folder_names_and_paths:
        register_folder()
    names = folder_paths.get_filename_list(FOLDER)
    by_dir: dict[str, list[str]] = {}
    out = []
    for name in names:
        full = folder_paths.get_full_path(FOLDER, name)
        if full and (Path(full).parent / "config.json").is_file():
            by_dir.setdefault(os.path.dirname(name), []).append(name)
        else:
            out.append(name)
    for group in by_dir.values():
        out.append(min(group, key=lambda n: (_PREFERRED.get(Path(n).suffix.lower(), 9), "-of-" in n, n)))
    return sorted(out)


def _put_them_there(kind: str | None) -> str:
    kinds = [kind] if kind in EXPECTED else list(EXPECTED)
    expected = "\n".join(f"  - {k}: {EXPECTED[k]}" for k in kinds)
    return f"put the files there (or add a '{FOLDER}:' entry to extra_model_paths.yaml). Expected:\n{expected}"


def missing_file_error(name: str, kind: str | None = None) -> FileNotFoundError:
    paths = search_paths()
    return FileNotFoundError(
        f"Reward model '{name}' not found in the '{FOLDER}' model folder. Searched: "
        f"{', '.join(paths) if paths else '(ComfyUI not loaded; pass a full path)'}. "
        f"P{_put_them_there(kind)[1:]}")


def resolve_name(name, kind: str | None = None, input: str = "reward_name") -> Path:
    """The file a user-given `name` stands for: it must be one of the names the registered reward folders list
    (what the node's combo shows); anything else (an absolute path, '..', '', a non-string) is a ValueError naming
    `input`, and nothing outside the folders is looked at."""
    search_paths()  # registers the folder
    return model_file(FOLDER, name, input=input, hint=_put_them_there(kind))


def resolve(name_or_path: str | os.PathLike, kind: str | None = None) -> Path:
    """A path given by Python code (a Path, or an absolute path string) that exists, or a name the reward folders
    list (`resolve_name`; without ComfyUI a relative string is a path from the working directory)."""
    if isinstance(name_or_path, str) and not os.path.isabs(name_or_path) and _comfy_folders():
        return resolve_name(name_or_path, kind)
    path = Path(name_or_path)
    if path.exists():
        return path
    raise missing_file_error(str(name_or_path), kind)


# -- reading weights ---------------------------------------------------------------------------------------------
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # torch colours parts of its weights_only message


def refusal_reason(error: Exception) -> str:
    """What torch.load(weights_only=True) refused, without its colour codes or its advice to unpickle anyway."""
    text = ANSI.sub("", str(error))
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return f"it would import {found.group(1)}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else type(error).__name__


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a .pt/.pth/.bin loaded with weights_only=True (a `state_dict` entry is
    unwrapped and DataParallel `module.` prefixes dropped)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path.name} is a folder without config.json; pick the weights file inside it, or add the "
                         "transformers config.json beside the weights.")
    if path.suffix.lower() in (".safetensors", ".sft"):
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # the pickle names what it refused
            reason = refusal_reason(e)
            raise ValueError(f"{path.name} is not a plain tensor checkpoint: torch.load(weights_only=True) refused it "
                             f"({reason}). Quickstep never unpickles code; convert the file to "
                             f".safetensors with a trusted tool.") from None
        if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
            sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path.name} does not hold a state dict of tensors.")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def transformers_folder(path: Path) -> Path | None:
    folder = path if path.is_dir() else path.parent
    return folder if (folder / "config.json").is_file() else None


def read_transformers_weights(folder: Path, file: Path | None) -> dict[str, torch.Tensor]:
    """The chosen weights file, all shards of a sharded checkpoint, or the folder's preferred single file."""
    if file is not None and "-of-" not in file.name:
        return read_state_dict(file)
    for index in sorted(folder.glob("*.index.json")):  # model.safetensors.index.json sorts before pytorch_model.bin
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if file is None or file.name in shards:
            sd = {}
            for shard in shards:
                sd.update(read_state_dict(folder / shard))
            return sd
    if file is not None:
        return read_state_dict(file)
    candidates = [p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS]
    if not candidates:
        raise FileNotFoundError(f"no weights ({', '.join(EXTENSIONS)}) in {folder}")
    return read_state_dict(min(candidates, key=lambda p: (_PREFERRED[p.suffix.lower()], p.name)))


def build_clip_model(config, sd: dict[str, torch.Tensor], source: str):
    """A transformers CLIPModel from a config and a state dict (no random init, strict about missing weights)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5
        from transformers.modeling_utils import no_init_weights
    from transformers import CLIPModel

    with torch.inference_mode(False), no_init_weights():
        model = CLIPModel(config)
    with torch.inference_mode(False):
        result = model.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing:
        raise ValueError(f"{source} is not a complete CLIP checkpoint: {len(missing)} weights missing "
                         f"(e.g. {', '.join(missing[:3])}).")
    unexpected = [k for k in result.unexpected_keys if not k.endswith("position_ids")]
    if unexpected:
        log.info("[quickstep] %s: ignored %d unused weights (e.g. %s)", source, len(unexpected), unexpected[0])
    return model.float().eval()


def load_clip_model(path: Path):
    """(CLIPModel, folder for tokenizer/preprocessor files or None) from a transformers folder/file or an open_clip
    state dict."""
    from .openclip import is_openclip_state_dict, openclip_config, openclip_to_transformers, read_model_cfg

    folder = transformers_folder(path)
    if folder is not None:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        if config.model_type != "clip":
            raise ValueError(f"{folder / 'config.json'} describes a '{config.model_type}' model; a CLIP reward needs "
                             "a transformers CLIPModel (model_type 'clip').")
        sd = read_transformers_weights(folder, path if path.is_file() else None)
        return build_clip_model(config, sd, str(path)), folder
    sd = read_state_dict(path)
    if not is_openclip_state_dict(sd):
        raise ValueError(f"{path.name} is neither a transformers CLIP folder (config.json beside the weights) nor an "
                         "open_clip ViT state dict.")
    model = build_clip_model(openclip_config(sd, read_model_cfg(path)), openclip_to_transformers(sd), str(path))
    return model, path.parent


# -- telling kinds apart -----------------------------------------------------------------------------------------
def _keys(path: Path) -> list[str]:
    if path.suffix.lower() in (".safetensors", ".sft"):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    return list(read_state_dict(path))


def detect_kind(path: str | os.PathLike) -> str:
    """The reward kind of a file or folder, from its layout (and, for transformers CLIPs, its name: PickScore)."""
    path = Path(path)
    if transformers_folder(path) is not None:
        return "pickscore" if "pickscore" in str(path).lower() else "clip"
    if path.is_dir():
        raise ValueError(f"{path} is a folder without config.json; pick a weights file, or add the transformers "
                         "config.json.")
    keys = _keys(path)
    keyset = set(keys)
    stripped = {k[len("module."):] if k.startswith("module.") else k for k in keys}
    if any(k.startswith("blip.visual_encoder.") for k in stripped):
        return "imagereward"
    if any(k.startswith("match_query.") for k in stripped):
        return "toymatch"
    if {"visual.conv1.weight", "token_embedding.weight"} <= stripped:
        return "hps"
    if "layers.0.weight" in keyset and all(k.startswith("layers.") for k in keyset):
        return "aesthetic"
    if any(k.startswith("vision_model.") for k in stripped):
        raise ValueError(f"{path.name} holds transformers CLIP weights but has no config.json beside it; keep the "
                         "model's folder as downloaded (config.json + weights).")
    raise ValueError(f"cannot tell which reward {path.name} is (keys like {', '.join(keys[:3])}). Supported: "
                     "transformers CLIP folders (CLIP score, PickScore), HPS_v2.1_compressed.pt, ImageReward.pt, "
                     "the LAION aesthetic MLP (.pth); set kind explicitly if the layout is one of these.")


def find_backbone(mlp_path: Path, in_features: int) -> Path:
    """A CLIP in the reward folders (or beside the MLP) whose projection width matches the aesthetic MLP.

    The MLP was trained on OpenAI CLIP ViT-L/14 embeddings: an OpenAI backbone (quick_gelu) wins over another CLIP
    of the same width (LAION's ViT-L/14 uses gelu and would score silently wrong), which is taken with a warning.
    """
    roots = [mlp_path.parent] + [Path(p) for p in search_paths()]
    seen, others = set(), []
    for root in roots:
        if not root.is_dir():
            continue
        for config in sorted(root.rglob("config.json")):
            if config in seen:
                continue
            seen.add(config)
            try:
                cfg = json.loads(config.read_text())
            except (OSError, ValueError):
                continue
            if cfg.get("model_type") == "clip" and cfg.get("projection_dim") == in_features:
                if (cfg.get("vision_config") or {}).get("hidden_act", "quick_gelu") == "quick_gelu":
                    return config.parent
                others.append(config.parent)
    if others:
        logging.warning("Quickstep: the aesthetic MLP %s was trained on OpenAI CLIP ViT-L/14 embeddings; using %s, "
                        "which is not an OpenAI CLIP (its activation is not quick_gelu), so scores may be off. Put "
                        "openai/clip-vit-large-patch14 beside the MLP to fix this.", mlp_path.name, others[0])
        return others[0]
    raise FileNotFoundError(
        f"The aesthetic MLP {mlp_path.name} needs a CLIP backbone with {in_features}-d embeddings (CLIP ViT-L/14); "
        f"none found in {', '.join(str(r) for r in roots)}. Expected: {EXPECTED['aesthetic']}.")


def kind_mismatch(path: Path, kind: str, error: Exception) -> str:
    """The message for a file that failed to load as the `kind` a user set: the kind its layout shows, if another."""
    reason = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    try:
        detected = detect_kind(path)
    except (ValueError, OSError, RuntimeError):
        detected = None
    if detected is not None and detected != kind:
        article = "an" if detected[0] in "aeiou" else "a"
        return (f"{path.name} is {article} {detected} reward (from its layout), not {kind}: set kind to auto or "
                f"{detected}. "
                f"Loading it as {kind} failed: {reason}")
    return f"{path.name} could not be loaded as kind {kind}: {reason} Expected for {kind}: {EXPECTED[kind]}."


# -- the entry point ---------------------------------------------------------------------------------------------
def resolve_dtype(dtype, device=None) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        try:
            import comfy.model_management as mm
        except ImportError:
            return torch.float32
        device = device or mm.get_torch_device()
        if mm.should_use_bf16(device):
            return torch.bfloat16
        return torch.float16 if mm.should_use_fp16(device) else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(DTYPES)} or a torch.dtype; got {dtype!r}.")
    return DTYPES[dtype]


def load_reward(path: str | os.PathLike, kind: str = "auto", *, device=None, dtype="fp32",
                gradient_checkpointing: bool = False, backbone: str | os.PathLike | None = None,
                tokenizer=None, managed: bool | None = None) -> Reward:
    """Load a reward model from a file or folder (or a name in the `rewards` model folder).

    kind: auto (detected from the layout) or one of clip, pickscore, hps, imagereward, aesthetic, toymatch.
    device: where the weights live; None = ComfyUI's memory manager decides (ModelPatcher + load_models_gpu) when
    running inside ComfyUI, else CPU. dtype: fp32, bf16, fp16, auto or a torch.dtype. backbone: the CLIP for the
    aesthetic MLP (default: found by embedding width). tokenizer: override the CLIP tokenizer (default: the model
    folder's, else ComfyUI's bundled comfy/sd1_tokenizer).
    """
    path = resolve(path, kind if kind != "auto" else None)
    explicit = kind != "auto"
    if kind == "auto":
        kind = detect_kind(path)
    if kind not in KINDS:
        raise ValueError(f"kind must be auto or one of {', '.join(KINDS)}; got {kind!r}.")
    torch_dtype = resolve_dtype(dtype, device)
    try:
        reward = _build(path, kind, backbone, tokenizer)
    except (ValueError, KeyError, RuntimeError) as e:
        if not explicit:
            raise
        raise ValueError(kind_mismatch(path, kind, e)) from None
    reward.name = f"{kind}:{path.name}"
    if gradient_checkpointing:
        reward.enable_gradient_checkpointing()
    if managed is None:
        managed = device is None and _comfy_available()
    reward.to(dtype=torch_dtype)
    if managed:
        reward.manage(load_device=torch.device(device) if device is not None else None)
    else:
        reward.to(device=device or "cpu")
    log.info("[quickstep] loaded %r", reward)
    return reward


def _comfy_folders() -> bool:
    try:
        import folder_paths  # noqa: F401
    except ImportError:
        return False
    return True


def _comfy_available() -> bool:
    try:
        import comfy.model_management  # noqa: F401
        import comfy.model_patcher  # noqa: F401
    except ImportError:
        return False
    return True


def _build(path: Path, kind: str, backbone, tokenizer) -> Reward:
    from . import clip as clip_mod

    if kind in clip_mod.CLIP_KINDS:
        model, folder = load_clip_model(path)
        size, mean, std = clip_mod.clip_image_settings(model, folder)
        if tokenizer is None:
            tokenizer = clip_mod.load_clip_tokenizer(folder)
        return clip_mod.CLIP_KINDS[kind](model, tokenizer, image_size=size, mean=mean, std=std)
    if path.is_dir():
        raise ValueError(f"{kind} rewards load from a file, not a folder; pick the weights file in {path}.")
    if kind == "toymatch":
        from .toy_match import KEY_PREFIX, from_state_dict

        sd = read_state_dict(path)
        if not any(k.startswith(KEY_PREFIX) for k in sd):
            raise ValueError(f"{path.name} is not a toy match reward (no {KEY_PREFIX}* weights).")
        return from_state_dict(sd, path)
    if kind == "imagereward":
        from .blip import ImageRewardReward, build_imagereward, load_bert_tokenizer, read_med_config

        sd = read_state_dict(path)
        if not any(k.startswith("blip.visual_encoder.") for k in sd):
            raise ValueError(f"{path.name} is not an ImageReward checkpoint (no blip.visual_encoder.* weights).")
        with torch.inference_mode(False):
            module = build_imagereward(sd, read_med_config(path))
            result = module.load_state_dict(sd, strict=False)
        if result.missing_keys:
            raise ValueError(f"{path.name} is missing {len(result.missing_keys)} ImageReward weights "
                             f"(e.g. {', '.join(result.missing_keys[:3])}).")
        return ImageRewardReward(module, tokenizer or load_bert_tokenizer(path.parent))
    # aesthetic
    from .aesthetic import AestheticReward
    from .blip import RewardHead

    sd = read_state_dict(path)
    with torch.inference_mode(False):
        head = RewardHead.from_state_dict(sd)
        head.load_state_dict(sd)
    clip_path = resolve(backbone, "aesthetic") if backbone else find_backbone(path, head.in_features)
    model, folder = load_clip_model(clip_path)
    size, mean, std = clip_mod.clip_image_settings(model, folder)
    return AestheticReward(model, head, image_size=size, mean=mean, std=std)
