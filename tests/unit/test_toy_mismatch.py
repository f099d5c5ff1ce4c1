"""The toy match reward's training pairs without ComfyUI: scene parts, ground truth, both sides' mismatches, and the
training state's exact resume."""

import numpy as np
import torch

from quickstep.toyworld import evaluate, mismatch, scenes


def test_parts_redraw_the_scene_and_its_prompt_holds():
    for i, p in enumerate(scenes.all_prompts()):
        s, d = scenes.make_scene(p, i), mismatch.draw_parts(p, i)
        assert d.objects == s.objects
        union = np.any(s.masks, axis=0)
        assert np.array_equal(d.background[~union], s.image[~union])  # the same background under the objects
        assert mismatch.holds(s.objects, p) is True
        if mismatch.paraphrase(p) is not None:
            assert mismatch.holds(s.objects, mismatch.paraphrase(p)) is True


def test_prompt_side_mismatches_are_false_of_the_scene_and_in_the_grammar():
    kinds_seen = set()
    for i, p in enumerate(scenes.all_prompts()):
        objects = scenes.make_scene(p, i).objects
        for kind in mismatch.PROMPT_EDITS:
            for q in mismatch.prompt_edits(p, kind):
                kinds_seen.add(kind)
                assert scenes.parse_prompt(q.text) == q and q != p
                assert mismatch.holds(objects, q) is False, (p.text, kind, q.text)
    assert kinds_seen == set(mismatch.PROMPT_EDITS)
    flipped = mismatch.prompt_edits(scenes.parse_prompt("a photo of a circle left of a square"), "flipped_relation")
    assert [q.text for q in flipped] == ["a photo of a circle right of a square"]


def test_image_side_edits_make_the_prompt_false_for_the_evaluator_too():
    """The edits are judged by the scenes' own truth; the (independent) evaluator agrees on the painted images."""
    rng = np.random.default_rng(0)
    counts = {}
    for i, p in enumerate(scenes.all_prompts()[::3]):
        d = mismatch.draw_parts(p, 500 + i)
        assert evaluate.score(mismatch.paint(d, rng), p).passed
        for kind in mismatch.IMAGE_EDITS:
            e = mismatch.image_edit(d, kind, rng)
            if e is None or mismatch.holds(mismatch.visible(e), p) is not False:
                continue
            counts[kind] = counts.get(kind, 0) + 1
            assert not evaluate.score(mismatch.paint(e, rng), p).passed, (p.text, kind)
    assert set(counts) == set(mismatch.IMAGE_EDITS), counts


def test_a_distractor_keeps_the_prompt_true():
    rng = np.random.default_rng(1)
    for i, p in enumerate(scenes.all_prompts()[::5]):
        d = mismatch.add_distractor(mismatch.draw_parts(p, i), rng)
        if d is not None:
            assert mismatch.holds(d.objects, p) is True
            assert evaluate.score(mismatch.paint(d, rng), p).passed


def test_training_state_resumes_exactly(tmp_path):
    from quickstep.reward.toy_match import ToyMatchNet
    from quickstep.toyworld import train_reward as tr

    def run(net, opt, rng, steps):
        data = tr.Sampler(rng)
        for _ in range(steps):
            images, *rest = data.batch(4)
            loss = tr.losses(net, tr.augment(images, rng), *rest, 1.0, 1.0)[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def fresh():
        torch.manual_seed(0)
        net = ToyMatchNet(tr.VOCAB, **tr.WORD_CLASSES, width=16, channels=(4, 8))
        return net, torch.optim.AdamW(net.parameters(), lr=1e-3), np.random.default_rng(0)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: more threads only contend on a busy machine
    try:
        net, opt, rng = fresh()
        run(net, opt, rng, 1)
        tr.save_state(str(tmp_path), net, opt, rng, 1)
        run(net, opt, rng, 2)
        net2, opt2, rng2 = fresh()
        assert tr.resume(str(tmp_path), net2, opt2, rng2) == 1
        run(net2, opt2, rng2, 2)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(net.state_dict().values(), net2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
