"""Toy world without ComfyUI: seeded scenes, the held-out split, and the evaluator's calibration."""

import numpy as np
import pytest

from quickstep.toyworld import evaluate, scenes


def test_scenes_are_deterministic_per_seed_and_differ_across_seeds():
    p = scenes.parse_prompt("a photo of a circle left of a square")
    a, b, c = scenes.make_scene(p, 3), scenes.make_scene(p, 3), scenes.make_scene(p, 4)
    assert np.array_equal(a.image, b.image) and a.objects == b.objects
    assert all(np.array_equal(m, n) for m, n in zip(a.masks, b.masks, strict=True))
    assert not np.array_equal(a.image, c.image)
    imgs1, ps1 = scenes.dataset(16, seed=7)
    imgs2, ps2 = scenes.dataset(16, seed=7)
    assert np.array_equal(imgs1, imgs2) and ps1 == ps2
    assert imgs1.shape == (16, 64, 64, 3) and imgs1.dtype == np.uint8


def test_masks_are_exact_and_objects_match_the_prompt():
    for i, p in enumerate(scenes.all_prompts()):
        s = scenes.make_scene(p, i)
        want = p.count if p.category == "counting" else len(p.objects)
        assert len(s.objects) == len(s.masks) == want
        for (_, color, *_), m in zip(s.objects, s.masks, strict=True):
            assert m.sum() > 40
            pixels = s.image[m]
            assert np.abs(pixels - np.array(scenes.RGB[color])).max() <= 0.05 + 1e-6  # object pixels: its colour
        union = np.any(s.masks, axis=0)
        assert sum(int(m.sum()) for m in s.masks) == int(union.sum())  # objects never overlap


def test_heldout_split_is_fixed_disjoint_and_covers_every_category():
    train, held = scenes.train_prompts(), scenes.heldout_prompts()
    assert set(train).isdisjoint(held)
    assert set(train) | set(held) == set(scenes.all_prompts())
    assert {p.category for p in held} == set(scenes.CATEGORIES)
    assert [p.text for p in held] == [p.text for p in scenes.heldout_prompts()]
    _, ps = scenes.dataset(300, seed=0)
    assert not {p.text for p in ps} & {p.text for p in held}  # training data never draws a held-out prompt


def test_every_prompt_parses_back():
    for p in scenes.all_prompts():
        assert scenes.parse_prompt(p.text.upper()) == p
    with pytest.raises(ValueError, match="toy-world grammar"):
        scenes.parse_prompt("a photo of a dog")


def test_evaluator_passes_real_scenes():
    results = [evaluate.score(scenes.make_scene(p, 100 + k).image, p) for p in scenes.all_prompts() for k in range(2)]
    summary = evaluate.summarize(results)
    assert summary["overall"] >= 0.95, summary
    assert min(summary[c] for c in scenes.CATEGORIES) >= 0.9, summary


def test_evaluator_scores_noise_and_blank_images_near_zero():
    rng = np.random.default_rng(0)
    prompts = scenes.all_prompts()
    noise = evaluate.summarize(evaluate.score(rng.random((64, 64, 3)), p) for p in prompts)
    blank = evaluate.summarize(evaluate.score(np.full((64, 64, 3), 0.5), p) for p in prompts)
    assert noise["overall"] <= 0.05 and blank["overall"] == 0.0


def test_evaluator_rejects_wrong_scenes():
    """A scene drawn for one prompt fails prompts it contradicts (wrong colour, relation, count or shape)."""
    cases = [("a photo of a red circle", "a photo of a blue circle"),
             ("a photo of a circle left of a square", "a photo of a circle right of a square"),
             ("a photo of two squares", "a photo of three squares"),
             ("a photo of a triangle", "a photo of a square"),
             ("a photo of a red circle and a blue square", "a photo of a blue circle and a red square")]
    for drawn, asked in cases:
        fails = [not evaluate.score(scenes.make_scene(scenes.parse_prompt(drawn), k).image, asked).passed
                 for k in range(5)]
        assert all(fails), (drawn, asked)


def test_evaluator_handles_other_sizes():
    s = scenes.make_scene(scenes.parse_prompt("a photo of a green triangle"), 1)
    big = np.repeat(np.repeat(s.image, 2, axis=0), 2, axis=1)
    assert evaluate.score(big, "a photo of a green triangle").passed
    with pytest.raises(ValueError, match=r"\[height, width, 3\]"):
        evaluate.score(np.zeros((64, 64)), "a photo of a circle")


def test_sqrt_weighting_favours_the_many_prompt_categories():
    import random
    from collections import Counter

    rng_u, rng_s = random.Random(0), random.Random(0)
    train = scenes.train_prompts()
    uniform = Counter(scenes.sample_prompt(rng_u, train).category for _ in range(3000))
    sqrt = Counter(scenes.sample_prompt(rng_s, train, "sqrt").category for _ in range(3000))
    assert abs(uniform["color_attr"] - uniform["single_object"]) < 150  # about 500 each
    assert sqrt["color_attr"] > 2 * uniform["color_attr"] > 2 * sqrt["single_object"]
    assert set(sqrt) == set(scenes.CATEGORIES)  # no category starves
    with pytest.raises(ValueError, match="weighting must be"):
        scenes.sample_prompt(rng_s, train, "linear")
