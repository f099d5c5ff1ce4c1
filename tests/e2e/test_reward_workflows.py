"""Reward nodes through the real execution engine: tiny reward files in the server's models/rewards folder, API-format
workflows POSTed to /prompt (Load Reward Model -> Reward Stack -> Score Images -> PreviewImage)."""

import pytest
import reward_tiny as rt

from graphs import Graph


@pytest.fixture(scope="module")
def rewards(server):
    root = server.base_dir / "models" / "rewards"
    rt.write_all(root)
    return root


def batch_of_colours(g, colours=(0xFF0000, 0x00FF00, 0x0000FF)):
    images = g.node("EmptyImage", width=48, height=32, batch_size=1, color=colours[0])
    for colour in colours[1:]:
        other = g.node("EmptyImage", width=48, height=32, batch_size=1, color=colour)
        images = g.node("ImageBatch", image1=images.out(0), image2=other.out(0))
    return images


def test_best_of_n_workflow(server, rewards):
    g = Graph()
    images = batch_of_colours(g)
    hps = g.node("QuickstepLoadReward", reward_name="hps/HPS_v2.1_compressed.pt", kind="auto", dtype="auto",
                 gradient_checkpointing=False)
    ir = g.node("QuickstepLoadReward", reward_name="ImageReward/ImageReward.pt", kind="auto", dtype="fp32",
                gradient_checkpointing=True)
    aes = g.node("QuickstepLoadReward", reward_name="aesthetic/sac+logos+ava1-l14-linearMSE.pth", kind="aesthetic",
                 dtype="fp32", gradient_checkpointing=False, backbone="auto")
    stack = g.node("QuickstepRewardStack", reward_1=hps.out(0), reward_2=ir.out(0), reward_3=aes.out(0),
                   weighting="reno")
    score = g.node("QuickstepScoreImages", images=images.out(0), prompt="a red square", reward=stack.out(0))
    preview = g.node("PreviewImage", images=score.out(3))
    result = server.run(g.to_api())
    assert result.status == "success", result.error
    text = result.outputs[score.id]["text"][0]
    lines = text.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"#{i + 1} image ") for i, line in enumerate(lines))
    assert "hps" in text and "imagereward" in text and "aesthetic" in text
    values = [float(line.split(": ")[1].split(" ")[0]) for line in lines]
    assert values == sorted(values, reverse=True)
    assert len(result.outputs[preview.id]["images"]) == 3


def test_missing_reward_file_is_rejected_with_the_folder(server, rewards):
    g = Graph()
    images = batch_of_colours(g, (0x808080,))
    load = g.node("QuickstepLoadReward", reward_name="HPS_v2.1_compressed.pt", kind="hps", dtype="auto",
                  gradient_checkpointing=False)
    stack = g.node("QuickstepRewardStack", reward_1=load.out(0), weighting="reno")
    score = g.node("QuickstepScoreImages", images=images.out(0), prompt="x", reward=stack.out(0))
    g.node("PreviewImage", images=score.out(3))
    from host.server import PromptRejected

    with pytest.raises(PromptRejected) as e:
        server.run(g.to_api())
    message = str(e.value)
    assert "models" in message and "rewards" in message and "huggingface.co/xswu/HPSv2" in message
