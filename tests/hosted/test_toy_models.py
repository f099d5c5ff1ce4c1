"""The shipped toy family inside the host: hashes, loading through the toy nodes, sampling through core nodes, and a
short teacher run that the (reward-independent) evaluator scores well above an untrained model."""

import shutil

import nodes as core_nodes  # ComfyUI's nodes.py
import numpy as np
import pytest
import torch

from quickstep.nodes import toy as toy_nodes
from quickstep.toyworld import evaluate, generate, models, scenes

SHIPPED = ("unet.safetensors", "vae.safetensors", "clip/config.json", "clip/model.safetensors",
           "clip/preprocessor_config.json")


@pytest.fixture(scope="module")
def toy():
    torch.set_num_threads(2)
    return toy_nodes.ToyCheckpoint.execute("teacher").args


def test_shipped_weights_match_their_recorded_hashes():
    recorded = models.recorded_hashes()
    assert set(SHIPPED) <= set(recorded)
    for name in SHIPPED:
        assert models.sha256(models.WEIGHTS / name) == recorded[name], name
    total = sum((models.WEIGHTS / n).stat().st_size for n in SHIPPED)
    assert total < 16 * 2**20  # a few MB in all


def test_a_tampered_weight_file_is_refused(tmp_path, monkeypatch):
    shutil.copytree(models.WEIGHTS, tmp_path / "weights")
    monkeypatch.setattr(models, "WEIGHTS", tmp_path / "weights")
    monkeypatch.setattr(models, "HASHES", tmp_path / "weights" / "SHA256SUMS")
    models.checked(models.VAE_FILE)  # intact copy passes
    with open(tmp_path / "weights" / models.VAE_FILE, "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ValueError, match="SHA-256"):
        models.load_vae()


def test_toy_checkpoint_samples_through_core_nodes(toy):
    model, clip, vae = toy
    assert model.model.diffusion_model.in_channels == 4 and vae.latent_channels == 4
    pos = core_nodes.CLIPTextEncode().encode(clip, "a photo of a red circle and a blue square")[0]
    neg = core_nodes.CLIPTextEncode().encode(clip, "")[0]
    assert pos[0][0].shape == (1, 77, models.CLIP_TEXT["hidden_size"])
    latent = core_nodes.EmptyLatentImage().generate(128, 128, 2)[0]  # core divides by 8; the toy VAE decodes 4x
    assert latent["samples"].shape == (2, 4, models.LATENT, models.LATENT)
    sampled = core_nodes.KSampler().sample(model, 3, 6, 4.0, "euler", "normal", pos, neg, latent)[0]
    images = core_nodes.VAEDecode().decode(vae, sampled)[0]
    assert images.shape == (2, 64, 64, 3) and torch.isfinite(images).all()
    assert images.std() > 0.05  # a picture, not a flat field
    encoded = core_nodes.VAEEncode().encode(vae, images)[0]["samples"]  # core's encode honours the 4x ratio
    assert encoded.shape == (2, 4, models.LATENT, models.LATENT)


def test_vae_reconstructs_scenes_well_enough_to_evaluate(toy):
    _, _, vae = toy
    prompts = scenes.all_prompts()[::4]
    imgs = torch.from_numpy(np.stack([scenes.make_scene(p, 7).image for p in prompts]))
    with torch.no_grad():
        rec = vae.decode(vae.encode(imgs))
    rec = rec.reshape(-1, 64, 64, 3).float().clamp(0, 1).numpy()
    summary = evaluate.summarize(evaluate.score(r, p) for r, p in zip(rec, prompts, strict=True))
    # The 4x VAE keeps shapes, colours and places (measured 1.00 here, 0.96 on the held-out scenes of
    # benchmarks/results/toy_quality.md); this guards the latent ceiling every toy model is scored under.
    assert summary["overall"] >= 0.85 and summary["single_object"] >= 0.9, summary


def test_short_teacher_run_scores_well_above_chance(toy):
    """Chance = the same images scored against another prompt of the same category: an image generator that
    ignored its prompt would score the same on both."""
    model, clip, vae = toy
    prompts = [p for p in scenes.all_prompts() if p.category in ("single_object", "two_object", "counting", "colors")]
    prompts += [p for p in scenes.all_prompts() if p.category == "color_attr"][::6]
    matched, mismatched = [], []
    for i, p in enumerate(prompts):
        same = [q for q in prompts if q.category == p.category and q != p]
        other = same[i % len(same)]
        for img in generate.sample(model, clip, vae, p.text, seed=i, batch=2, steps=10, cfg=4.0):
            matched.append(evaluate.score(img, p))
            mismatched.append(evaluate.score(img, other))
    trained, chance = evaluate.summarize(matched)["overall"], evaluate.summarize(mismatched)["overall"]
    # measured with the shipped teacher: 0.66 vs 0.00 (10 steps, CFG 4; see benchmarks/results/toy_quality.md)
    assert trained >= chance + 0.3 and trained >= 0.5, (trained, chance)


def test_toy_evaluate_node_scores_a_real_scene():
    p = scenes.parse_prompt("a photo of two triangles")
    img = torch.from_numpy(np.stack([scenes.make_scene(p, 1).image, np.full((64, 64, 3), 0.5, np.float32)]))
    out = toy_nodes.ToyEvaluate.execute(img, "a photo of two triangles")
    assert out.args[0] == pytest.approx(0.5)
    assert '"counting"' in out.args[1]
    assert toy_nodes.ToyEvaluate.validate_inputs(prompt="a photo of a dog") != True  # noqa: E712
    with pytest.raises(ValueError, match="IMAGE batch"):
        toy_nodes.ToyEvaluate.execute(torch.zeros(64, 64, 3), "a photo of a circle")


def test_toy_reward_prefers_matching_prompts():
    reward = models.load_toy_reward(device="cpu")
    prompts = [p for p in scenes.all_prompts() if p.category in ("colors", "counting", "two_object")]
    imgs = torch.from_numpy(np.stack([scenes.make_scene(p, 3).image for p in prompts]))
    texts = [p.text for p in prompts]
    matched = reward.score(imgs, texts)
    shuffled = reward.score(imgs, texts[1:] + texts[:1])
    assert matched.shape == (len(prompts),)
    assert (matched > shuffled).float().mean() >= 0.7
    imgs.requires_grad_(True)
    reward.score(imgs, texts).sum().backward()
    assert imgs.grad is not None and imgs.grad.abs().sum() > 0


def test_toy_clip_text_tower_is_the_same_in_comfy_and_transformers(toy):
    """One file, two loaders: ComfyUI's SD1ClipModel and transformers' CLIPModel give the same text features."""
    from transformers import CLIPModel

    _, clip, _ = toy
    hf = CLIPModel.from_pretrained(str(models.clip_dir())).float().eval()
    text = "a photo of a green triangle above a square"
    cond, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
    tokens = clip.tokenize(text)["l"][0]
    ids = torch.tensor([[t[0] for t in tokens]])
    assert ids[0, 0] == models.BOS and ids[0, -1] == models.EOS and ids.shape[1] == models.MAX_LEN
    with torch.no_grad():
        out = hf.text_model(input_ids=ids)
    assert torch.allclose(out.last_hidden_state, cond, atol=1e-2)
    assert torch.allclose(out.pooler_output, pooled, atol=1e-2)  # SD1's CLIP-L pooled output is unprojected
