"""Every reward architecture, tiny and random, written in its real file format and loaded by `load_reward`: scores
equal the reference implementation's (transformers, open_clip) to 1e-5, gradients reach the image, batch scores equal
one-by-one scores, and bad files give their message. Plain torch + transformers + open_clip; no ComfyUI."""

import pytest
import reward_tiny as rt
import torch

from quickstep.reward import (
    ClipReward,
    build_clip_model,
    detect_kind,
    load_clip_tokenizer,
    load_reward,
    read_state_dict,
)
from quickstep.reward.blip import SCORE_MEAN, SCORE_STD
from quickstep.reward.openclip import openclip_config, openclip_to_transformers
from quickstep.reward.preprocess import to_pixel_values

PROMPTS = ["a red circle", "a photo of a blue dog", "cat"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("rewards")
    out = {"root": root}
    out["clip_model"] = rt.write_hf_clip(root / "clip-tiny", 1)
    out["pick_model"] = rt.write_hf_clip(root / "PickScore_tiny", 2)
    out["hps_model"] = rt.write_hps(root / "hps" / "HPS_v2.1_compressed.pt", 3)
    out["blip"] = rt.write_imagereward(root / "ImageReward", 4)
    out["aesthetic"] = rt.write_aesthetic(root / "aesthetic", 5)
    out["tokenizer"] = load_clip_tokenizer(root / "clip-tiny")
    return out


def images(batch=3, h=40, w=56, seed=0):
    torch.manual_seed(seed)
    return torch.rand(batch, h, w, 3)


def paths(files):
    root = files["root"]
    return {"clip": root / "clip-tiny" / "model.safetensors", "pickscore": root / "PickScore_tiny",
            "hps": root / "hps" / "HPS_v2.1_compressed.pt", "imagereward": root / "ImageReward" / "ImageReward.pt",
            "aesthetic": root / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth"}


def load(files, kind, **kwargs):
    if kind == "hps":
        kwargs.setdefault("tokenizer", files["tokenizer"])  # the real file has none; ComfyUI supplies sd1_tokenizer
    return load_reward(paths(files)[kind], device="cpu", managed=False, **kwargs)


KINDS = ["clip", "pickscore", "hps", "imagereward", "aesthetic"]


@pytest.mark.parametrize("kind", KINDS)
def test_detects_kind(files, kind):
    assert detect_kind(paths(files)[kind]) == kind


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_reaches_image_and_loss_form(files, kind):
    reward = load(files, kind)
    assert reward.kind == kind
    x = images().requires_grad_()
    score = reward.score(x, PROMPTS)
    assert score.shape == (3,) and score.dtype == torch.float32 and torch.isfinite(score).all()
    reward.loss(x, PROMPTS).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    torch.testing.assert_close(reward.loss(x, PROMPTS), reward.loss_offset - score)
    assert reward.loss_offset == {"clip": 100, "pickscore": 30, "hps": 1, "imagereward": 2, "aesthetic": 10}[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_batch_equals_one_by_one(files, kind):
    reward = load(files, kind)
    x = images(4, 33, 71, seed=1)
    prompts = PROMPTS + ["the square"]
    batch = reward.score(x, prompts)
    single = torch.cat([reward.score(x[i:i + 1], prompts[i]) for i in range(4)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["clip", "hps", "imagereward"])
def test_gradient_checkpointing_gives_the_same_gradient(files, kind):
    x = images()
    grads = []
    for ckpt in (False, True):
        xi = x.clone().requires_grad_()
        load(files, kind, gradient_checkpointing=ckpt).score(xi, PROMPTS).sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind, model_key", [("clip", "clip_model"), ("pickscore", "pick_model")])
def test_clip_and_pickscore_match_transformers(files, kind, model_key):
    reward = load(files, kind)
    reference = files[model_key]
    x = images()
    pixels = reward.pixel_values(x)
    tokens = files["tokenizer"](PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = reference(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                           pixel_values=pixels).logits_per_image
    torch.testing.assert_close(reward.score(x, PROMPTS), logits.diagonal(), atol=1e-5, rtol=1e-5)


def test_hps_matches_open_clip(files):
    reward = load(files, "hps")
    model = files["hps_model"]
    x = images()
    pixels = reward.pixel_values(x)
    ids = files["tokenizer"](PROMPTS, padding="max_length", max_length=77, truncation=True,
                             return_tensors="pt")["input_ids"]
    with torch.no_grad():
        cos = (model.encode_image(pixels, normalize=True) * model.encode_text(ids, normalize=True)).sum(-1)
    torch.testing.assert_close(reward.score(x, PROMPTS), cos, atol=1e-5, rtol=1e-5)


def test_open_clip_preprocessing_matches_ours():
    """open_clip's own eval transform (PIL) for a 224 px ViT against our tensor path."""
    import open_clip
    from PIL import Image

    transform = open_clip.image_transform(224, is_train=False)
    torch.manual_seed(3)
    low = torch.rand(1, 3, 10, 14)
    x = torch.nn.functional.interpolate(low, size=(320, 448), mode="bilinear").permute(0, 2, 3, 1)
    u8 = (x[0] * 255).round().byte().numpy()
    reference = transform(Image.fromarray(u8))[None]
    ours = to_pixel_values(torch.from_numpy(u8).float()[None] / 255, 224)
    assert ours.shape == reference.shape
    assert (ours - reference).abs().mean() < 0.01


def test_openclip_heads_default_for_vit_h_shapes():
    """Without open_clip_config.json the head count comes from the width (ViT-H: 16 heads of 80)."""
    sd = {"visual.conv1.weight": torch.zeros(1280, 3, 14, 14), "visual.positional_embedding": torch.zeros(257, 1280),
          "visual.proj": torch.zeros(1280, 1024), "visual.transformer.resblocks.0.mlp.c_fc.weight": torch.zeros(5120, 1),
          "visual.transformer.resblocks.31.ln_1.weight": torch.zeros(1),
          "token_embedding.weight": torch.zeros(49408, 1024), "positional_embedding": torch.zeros(77, 1024),
          "transformer.resblocks.0.mlp.c_fc.weight": torch.zeros(4096, 1), "transformer.resblocks.23.ln_1.weight":
          torch.zeros(1)}
    cfg = openclip_config(sd)
    v, t = cfg.vision_config, cfg.text_config
    assert (v.hidden_size, v.num_attention_heads, v.num_hidden_layers, v.image_size, v.patch_size) == (1280, 16, 32, 224, 14)
    assert (t.hidden_size, t.num_attention_heads, t.num_hidden_layers, t.eos_token_id) == (1024, 16, 24, 49407)
    assert v.hidden_act == "gelu" and cfg.projection_dim == 1024


def test_imagereward_matches_transformers_blip(files):
    reward = load(files, "imagereward")
    vision, text, mlp = files["blip"]
    x = images()
    pixels = reward.pixel_values(x)
    tokens = reward.tokenizer(PROMPTS, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    with torch.no_grad():
        image = vision(pixel_values=pixels).last_hidden_state
        hidden = text(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                      encoder_hidden_states=image).last_hidden_state
        expected = (mlp(hidden[:, 0]).squeeze(-1) - SCORE_MEAN) / SCORE_STD
    torch.testing.assert_close(reward.score(x, PROMPTS), expected, atol=1e-5, rtol=1e-5)
    assert tokens["input_ids"].shape[1] == 35


def test_imagereward_reads_a_fast_tokenizer_json_alone(files, tmp_path):
    """A bert-base-uncased folder downloaded with only tokenizer.json (no vocab.txt) gives the same tokens."""
    import shutil

    from transformers import BertTokenizerFast

    from quickstep.reward.blip import load_bert_tokenizer

    shutil.copytree(files["root"] / "ImageReward", tmp_path / "ir")
    BertTokenizerFast.from_pretrained(str(tmp_path / "ir")).save_pretrained(str(tmp_path / "fast"))
    (tmp_path / "ir" / "vocab.txt").unlink()
    shutil.copy(tmp_path / "fast" / "tokenizer.json", tmp_path / "ir" / "tokenizer.json")
    slow = load_bert_tokenizer(files["root"] / "ImageReward")(PROMPTS, padding="max_length", max_length=35)
    fast = load_bert_tokenizer(tmp_path / "ir")(PROMPTS, padding="max_length", max_length=35)
    assert fast["input_ids"] == slow["input_ids"]


def test_imagereward_head_runs_in_fp32_under_a_bf16_model(files):
    reward = load(files, "imagereward", dtype="bf16")
    score = reward.score(images(), PROMPTS)
    assert next(reward.module.mlp.parameters()).dtype == torch.float32 and score.dtype == torch.float32
    reference = load(files, "imagereward").score(images(), PROMPTS)
    torch.testing.assert_close(score, reference, atol=0.1, rtol=0.1)  # bf16 towers, fp32 head


def test_aesthetic_prefers_an_openai_backbone(files, tmp_path, caplog):
    import shutil

    from quickstep.reward.loading import find_backbone

    folder = tmp_path / "aesthetic"
    shutil.copytree(files["root"] / "aesthetic", folder)
    mlp_path = folder / "sac+logos+ava1-l14-linearMSE.pth"
    openai = folder / "clip-vit-large-patch14"
    laion = folder / "a-laion-vit-l-14"  # sorts first, gelu like LAION's ViT-L/14
    rt.write_hf_clip(laion, 7, act="gelu")
    assert find_backbone(mlp_path, rt.TINY_PROJ) == openai
    shutil.rmtree(openai)
    with caplog.at_level("WARNING"):
        assert find_backbone(mlp_path, rt.TINY_PROJ) == laion
    assert "not an OpenAI CLIP" in caplog.text


def test_aesthetic_matches_reference(files):
    reward = load(files, "aesthetic")
    mlp, clip = files["aesthetic"]
    x = images()
    pixels = reward.pixel_values(x)
    with torch.no_grad():
        emb = clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output)
        expected = mlp(emb / emb.norm(dim=-1, keepdim=True)).squeeze(-1)
    torch.testing.assert_close(reward.score(x, "ignored"), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reward.score(x, "ignored"), reward.score(x, "another prompt"))


def test_from_model_wraps_a_built_clip(files):
    """The toy world's entry point: an in-memory CLIPModel + tokenizer, no files."""
    model = rt.tiny_clip(7)
    reward = ClipReward.from_model(model, files["tokenizer"])
    x = images().requires_grad_()
    reward.score(x, "a cat").sum().backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_low_precision(files, dtype):
    reward = load(files, "clip", dtype=dtype)
    assert reward.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    full = load(files, "clip").score(images(), PROMPTS)
    low = reward.score(images(), PROMPTS)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, full, atol=0.15, rtol=0.05)


def test_openclip_mapping_is_complete(files):
    sd = read_state_dict(paths(files)["hps"])
    model = build_clip_model(openclip_config(sd, {"vision_cfg": {"head_width": 16}, "text_cfg": {"heads": 2}}),
                             openclip_to_transformers(sd), "tiny")
    assert model.config.vision_config.num_attention_heads == 2


def test_missing_file_names_folder_expected_files_and_source(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_reward(tmp_path / "HPS_v2.1_compressed.pt", kind="hps", device="cpu")
    message = str(e.value)
    assert "'rewards' model folder" in message and "HPS_v2.1_compressed.pt" in message
    assert "huggingface.co/xswu/HPSv2" in message and "extra_model_paths.yaml" in message


class Payload:
    """Stands for arbitrary pickled code: weights_only loading must refuse to construct it."""


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": Payload()}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        read_state_dict(path)


def test_non_tensor_checkpoint_is_refused(tmp_path):
    path = tmp_path / "numbers.pt"
    torch.save({"epoch": 3}, path)
    with pytest.raises(ValueError, match="does not hold a state dict of tensors"):
        read_state_dict(path)


def test_unknown_layout_and_wrong_config(tmp_path):
    from safetensors.torch import save_file

    save_file({"foo.weight": torch.zeros(2)}, str(tmp_path / "mystery.safetensors"))
    with pytest.raises(ValueError, match="cannot tell which reward mystery.safetensors is"):
        detect_kind(tmp_path / "mystery.safetensors")
    save_file({"vision_model.x": torch.zeros(2)}, str(tmp_path / "loose.safetensors"))
    with pytest.raises(ValueError, match="no config.json beside it"):
        detect_kind(tmp_path / "loose.safetensors")
    with pytest.raises(ValueError, match="kind must be auto or one of"):
        load_reward(tmp_path / "loose.safetensors", kind="dalle", device="cpu")


def test_wrong_image_layout_from_a_reward(files):
    reward = load(files, "clip")
    with pytest.raises(ValueError, match="channels-first"):
        reward.score(torch.rand(1, 3, 32, 32), "a cat")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reward.score(torch.rand(1, 32, 32, 3) * 4, "a cat")
    with pytest.raises(ValueError, match="got 2 prompts for 1 images"):
        reward.score(torch.rand(1, 32, 32, 3), ["a", "b"])


def test_aesthetic_backbone_width_mismatch(files, tmp_path):
    wide = tmp_path / "wide"
    rt.write_hf_clip(wide, 9, proj=24)
    with pytest.raises(ValueError, match="takes 16-d CLIP embeddings but the backbone gives 24-d"):
        load_reward(paths(files)["aesthetic"], kind="aesthetic", backbone=wide, device="cpu")
