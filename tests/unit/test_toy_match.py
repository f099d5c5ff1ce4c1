"""The shipped toy match reward without ComfyUI: its files and hashes, loading through `reward/`'s loader, gradients
to the image, and on fixed held-out scenes the preferences that a position- or count-blind model cannot show."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from quickstep.reward import detect_kind, load_reward
from quickstep.reward.toy_match import ToyMatchReward
from quickstep.toyworld import mismatch, models, scenes

FILES = ("toy_match.safetensors", "toy_match.json")


@pytest.fixture(scope="module")
def reward():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only contend on a busy machine
    yield load_reward(models.checked(FILES[0]), kind="auto", device="cpu", dtype="fp32")
    torch.set_num_threads(threads)


def test_shipped_files_match_their_hashes_and_load_through_the_reward_loader(reward):
    recorded = models.recorded_hashes()
    for name in FILES:
        assert models.sha256(models.WEIGHTS / name) == recorded[name], name
    assert detect_kind(models.WEIGHTS / FILES[0]) == "toymatch"
    assert isinstance(reward, ToyMatchReward) and reward.kind == "toymatch"
    assert reward.name == "toymatch:toy_match.safetensors"
    config = json.loads((models.WEIGHTS / FILES[1]).read_text())
    assert config["architecture"] == "toymatch" and reward.net.vocab == config["vocab"]
    assert (models.WEIGHTS / FILES[0]).stat().st_size < 4 * 2**20


def test_a_missing_config_or_a_foreign_file_is_refused(tmp_path):
    weights = tmp_path / "toy_match.safetensors"
    weights.write_bytes((models.WEIGHTS / FILES[0]).read_bytes())
    with pytest.raises(ValueError, match="toy_match.json is missing"):
        load_reward(weights, kind="toymatch", device="cpu")
    with pytest.raises(ValueError, match="not a toy match reward"):
        load_reward(models.WEIGHTS / models.VAE_FILE, kind="toymatch", device="cpu")


def test_gradients_reach_the_image_and_the_loss_is_reno_form(reward):
    p = scenes.parse_prompt("a photo of a circle left of a square")
    images = torch.from_numpy(np.stack([scenes.make_scene(p, k).image for k in range(2)])).requires_grad_(True)
    score = reward.score(images, p.text)
    assert score.shape == (2,) and (score <= 0).all()  # log P(match)
    torch.testing.assert_close(reward.loss(images, p.text), -score)
    score.sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum(dim=(1, 2, 3)).min() > 0


def held_out(category):
    return [p for p in scenes.heldout_prompts() if p.category == category]


SEEDS = range(70_000, 70_004)  # scenes of held-out prompts that no training run or benchmark draws


def margins(reward, pairs):
    """score(own) - score(other) for (own image, own prompt, other image, other prompt) tuples."""
    own = reward.score(torch.from_numpy(np.stack([a for a, _, _, _ in pairs])), [b for _, b, _, _ in pairs])
    other = reward.score(torch.from_numpy(np.stack([c for _, _, c, _ in pairs])), [d for _, _, _, d in pairs])
    return (own - other).numpy()


def prompt_pairs(category, kind):
    out = []
    for p in held_out(category):
        for seed in SEEDS:
            img = scenes.make_scene(p, seed).image
            out += [(img, p.text, img, q.text) for q in mismatch.prompt_edits(p, kind)]
    return out


def image_pairs(categories, kind):
    rng = np.random.default_rng(0)
    out = []
    for p in [p for c in categories for p in held_out(c)]:
        for seed in SEEDS:
            e = mismatch.image_edit(mismatch.draw_parts(p, seed), kind, rng)
            assert e is not None and mismatch.holds(mismatch.visible(e), p) is False
            out.append((scenes.make_scene(p, seed).image, p.text, mismatch.paint(e, rng), p.text))
    return out


# What the shipped reward carries (benchmarks/results/toy_reward.md), on prompts it never saw: position, counting,
# colour binding, shape and presence. A position-blind model (a bag of words and object features, like the toy CLIP
# or the first match model: flipped relation 0.22, mirror 0.01 there) scores "a circle left of a square" and "a circle
# right of a square", or a scene and its mirror image, alike or at random: its margins straddle 0. A count-blind one
# cannot tell two triangles from three; a colour-binding-blind one "a red circle and a blue square" from "a blue circle
# and a red square"; a presence-blind one a blank field from the scene.
CASES = {
    "flipped relation": lambda: prompt_pairs("position", "flipped_relation"),
    "swapped objects": lambda: prompt_pairs("position", "swapped_objects"),
    "mirror": lambda: image_pairs(["position"], "mirror"),
    "wrong count": lambda: prompt_pairs("counting", "wrong_count"),
    "extra copy": lambda: image_pairs(["counting"], "extra_copy"),
    "swapped colours": lambda: prompt_pairs("color_attr", "swapped_colours"),
    "wrong colour": lambda: prompt_pairs("colors", "wrong_colour"),
    "blank": lambda: image_pairs(scenes.CATEGORIES, "blank"),
    "drop an object": lambda: image_pairs(["two_object", "color_attr"], "drop"),
    "swap colours": lambda: image_pairs(["color_attr"], "swap_colours"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_prefers_the_own_prompt_and_the_real_scene(reward, case):
    m = margins(reward, CASES[case]())
    assert len(m) >= 8
    assert (m > 0).mean() >= 0.95, (case, m)
    assert np.median(m) >= 1.0, (case, m)  # log-probability: the match is e times likelier, at the median


def test_the_relation_follows_word_order_and_the_count_follows_the_copies(reward):
    """The same scene under its prompt, its paraphrase ("A left of B" = "B right of A") and the two readings a
    bag of words cannot tell from them; one more or one fewer copy of the counted shape lowers the score."""
    p = scenes.parse_prompt("a photo of a triangle left of a square")  # held out
    images = torch.from_numpy(np.stack([scenes.make_scene(p, seed).image for seed in SEEDS]))
    score = {t: reward.score(images, t) for t in (p.text, "a photo of a square right of a triangle",
                                                  "a photo of a square left of a triangle",
                                                  "a photo of a triangle right of a square")}
    true, paraphrase, swapped, flipped = score.values()
    assert (true > swapped + 1).all() and (true > flipped + 1).all(), score
    assert (paraphrase > swapped + 1).all() and (paraphrase > flipped + 1).all(), score
    two = scenes.parse_prompt("a photo of two triangles")  # held out
    rng = np.random.default_rng(1)
    for seed in SEEDS:
        d = mismatch.draw_parts(two, seed)
        more = mismatch.image_edit(d, "extra_copy", rng)
        fewer = dataclasses.replace(d, objects=d.objects[:1])
        got = reward.score(torch.from_numpy(np.stack([mismatch.paint(e, rng) for e in (d, more, fewer)])), two.text)
        assert got[0] > got[1] + 1 and got[0] > got[2] + 1, (seed, got)
