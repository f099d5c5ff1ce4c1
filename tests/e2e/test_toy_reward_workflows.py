"""The toy rewards through a real server: Toy Checkpoint samples -> Toy Reward -> Reward Stack -> Score Images in a
/prompt workflow. The match reward ranks a blank field below toy samples of a one-object prompt; the toy CLIP stays
reachable (model "clip"), and a workflow without the `model` input (made before it existed) still runs."""

import pytest

from graphs import Graph

PROMPT = "a photo of a triangle"


def score_graph(**reward_inputs):
    g = Graph()
    ckpt = g.node("QuickstepToyCheckpoint", model="teacher")
    pos = g.node("CLIPTextEncode", clip=ckpt.out(1), text=PROMPT)
    neg = g.node("CLIPTextEncode", clip=ckpt.out(1), text="")
    latent = g.node("EmptyLatentImage", width=128, height=128, batch_size=3)
    sampled = g.node("KSampler", model=ckpt.out(0), seed=0, steps=12, cfg=4.0, sampler_name="euler",
                     scheduler="normal", positive=pos.out(0), negative=neg.out(0), latent_image=latent.out(0),
                     denoise=1.0)
    decoded = g.node("VAEDecode", samples=sampled.out(0), vae=ckpt.out(2))
    blank = g.node("EmptyImage", width=64, height=64, batch_size=1, color=0x808080)
    images = g.node("ImageBatch", image1=decoded.out(0), image2=blank.out(0))  # the blank is image 3
    reward = g.node("QuickstepToyReward", **reward_inputs)
    stack = g.node("QuickstepRewardStack", reward_1=reward.out(0), weighting="reno")
    score = g.node("QuickstepScoreImages", images=images.out(0), prompt=PROMPT, reward=stack.out(0))
    g.node("PreviewImage", images=score.out(3))
    return g, score


def ranking(result, score):
    lines = result.outputs[score.id]["text"][0].splitlines()
    assert len(lines) == 4 and all(line.startswith(f"#{i + 1} image ") for i, line in enumerate(lines))
    order = [int(line.split(" ")[2].rstrip(":")) for line in lines]
    values = [float(line.split(": ")[1].split(" ")[0]) for line in lines]
    assert values == sorted(values, reverse=True) and sorted(order) == [0, 1, 2, 3]
    return order, values, lines


@pytest.mark.parametrize("inputs", [{"model": "match"}, {}], ids=["match", "without-model-input"])
def test_match_reward_scores_a_batch_and_ranks_the_blank_last(server, inputs):
    g, score = score_graph(**inputs)
    result = server.run(g.to_api())
    assert result.status == "success", result.error
    order, values, lines = ranking(result, score)
    assert all("toymatch" in line for line in lines)
    assert all(v <= 0 for v in values)  # log P(match)
    assert order[-1] == 3, lines  # the empty grey field is no triangle


def test_toy_clip_stays_reachable(server):
    g, score = score_graph(model="clip")
    result = server.run(g.to_api())
    assert result.status == "success", result.error
    _, _, lines = ranking(result, score)
    clip_scores = [float(line.split("(clip ")[1].rstrip(")")) for line in lines]  # unweighted (the stack's is 0.01)
    assert max(clip_scores) > 1  # 100 x cosine, not a log-probability


def test_an_unknown_model_is_rejected_at_prompt(server):
    from host.server import PromptRejected

    g, _ = score_graph(model="imagereward")
    with pytest.raises(PromptRejected) as e:
        server.run(g.to_api())
    assert "model" in str(e.value)
