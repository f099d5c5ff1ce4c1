"""Rewards inside ComfyUI: the registered models/rewards folder, the memory manager, the bundled tokenizer fallback,
and the three nodes called as the executor calls them (inside torch.inference_mode())."""

import asyncio
import os

import pytest
import reward_tiny as rt
import torch

from quickstep.nodes.reward import LoadReward, RewardStackNode, ScoreImages
from quickstep.reward import FOLDER, comfy_tokenizer_dir, list_reward_files, load_clip_tokenizer, load_reward


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    import folder_paths

    root = tmp_path_factory.mktemp("extra_rewards")
    files = rt.write_all(root)
    (root / "clip-tiny" / "pytorch_model.bin").write_bytes(b"")  # a second format of the same folder: hidden
    folder_paths.add_model_folder_path(FOLDER, str(root))  # as an extra_model_paths.yaml 'rewards:' entry does
    yield root, files
    folder_paths.folder_names_and_paths[FOLDER][0].remove(str(root))


def rel(root, path):
    return os.path.relpath(path, root)


def run(node, **inputs):
    with torch.inference_mode():
        out = node.execute(**inputs)
    return out.args if hasattr(out, "args") else out.result


def test_folder_registered_with_default_first_and_extensions(reward_dir):
    import folder_paths

    paths, exts = folder_paths.folder_names_and_paths[FOLDER]
    assert paths[0] == os.path.join(folder_paths.models_dir, FOLDER)
    assert str(reward_dir[0]) in paths
    assert {".safetensors", ".pt", ".pth", ".bin"} <= exts and ".json" not in exts


def test_listing_one_entry_per_transformers_folder(reward_dir):
    names = list_reward_files()
    assert "clip-tiny/model.safetensors" in names and "clip-tiny/pytorch_model.bin" not in names
    assert {"hps/HPS_v2.1_compressed.pt", "ImageReward/ImageReward.pt", "PickScore_tiny/model.safetensors",
            "aesthetic/sac+logos+ava1-l14-linearMSE.pth", "aesthetic/clip-vit-large-patch14/model.safetensors"} <= set(names)


def test_bundled_tokenizer_matches_open_clip():
    import open_clip

    folder = comfy_tokenizer_dir()
    assert folder is not None and folder.name == "sd1_tokenizer"
    ours = load_clip_tokenizer(None)
    prompts = ["A photo of a Cat, sitting on a mat!", "two red circles left of a blue square"]
    ids = ours(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")["input_ids"]
    reference = open_clip.get_tokenizer("ViT-H-14")(prompts)
    for row, ref in zip(ids, reference, strict=True):
        n = int((ref != 0).sum())  # open_clip pads with 0 after <eot>; the text up to <eot> must agree
        assert row[:n].tolist() == ref[:n].tolist()


def test_managed_reward_loads_through_load_models_gpu_and_backprops_from_inference_mode(reward_dir):
    import comfy.model_management as mm

    root, files = reward_dir
    with torch.inference_mode():  # as the loader node runs
        reward = load_reward(rel(root, files["hps"]), dtype="fp32")  # a name, resolved in the folder
    assert reward.patcher is not None and reward.patcher.load_device == mm.get_torch_device()
    x = torch.rand(2, 48, 40, 3, requires_grad=True)
    with torch.inference_mode(False), torch.enable_grad():  # as ReNO's loop runs
        reward.loss(x, "a red circle").sum().backward()
    assert x.grad.abs().sum() > 0
    assert any(loaded.model is reward.patcher for loaded in mm.current_loaded_models)


def test_missing_name_message_lists_the_searched_folders(reward_dir):
    message = LoadReward.validate_inputs(reward_name="nope/HPS_v2.1_compressed.pt", kind="hps")
    assert isinstance(message, str)
    assert str(reward_dir[0]) in message and "huggingface.co/xswu/HPSv2" in message
    assert LoadReward.validate_inputs(reward_name="hps/HPS_v2.1_compressed.pt", kind="auto") is True
    assert "kind must be one of" in LoadReward.validate_inputs(reward_name="hps/HPS_v2.1_compressed.pt", kind="x")


def test_nodes_rank_a_batch_best_first(reward_dir):
    loaded = {}
    for kind, name in (("hps", "hps/HPS_v2.1_compressed.pt"), ("imagereward", "ImageReward/ImageReward.pt"),
                       ("clip", "clip-tiny/model.safetensors"), ("pickscore", "PickScore_tiny/model.safetensors")):
        (loaded[kind],) = run(LoadReward, reward_name=name, kind="auto", dtype="auto", gradient_checkpointing=False)
        assert loaded[kind].kind == kind
    (stack,) = run(RewardStackNode, reward_1=loaded["hps"], reward_2=loaded["imagereward"],
                   reward_3=loaded["pickscore"], reward_4=loaded["clip"], weighting="reno")
    assert stack.weights == {"hps": 5.0, "imagereward": 1.0, "pickscore": 0.05, "clip": 0.01}
    torch.manual_seed(0)
    images = torch.rand(5, 40, 64, 3)
    text, scores, best, ranked = run(ScoreImages, images=images, prompt="a red circle", reward=stack)
    assert len(scores) == 5 and best == max(range(5), key=lambda i: scores[i])
    order = sorted(range(5), key=lambda i: -scores[i])
    torch.testing.assert_close(ranked, images[order])
    assert text.splitlines()[0].startswith(f"#1 image {best}: ") and "imagereward" in text
    expected = stack.score(images, "a red circle")
    torch.testing.assert_close(torch.tensor(scores), expected, atol=1e-5, rtol=1e-5)


def test_manual_weights_and_aesthetic_backbone(reward_dir):
    (aesthetic,) = run(LoadReward, reward_name="aesthetic/sac+logos+ava1-l14-linearMSE.pth", kind="aesthetic",
                       dtype="fp32", gradient_checkpointing=True,
                       backbone="aesthetic/clip-vit-large-patch14/model.safetensors")
    (stack,) = run(RewardStackNode, reward_1=aesthetic, weighting="manual", weight_1=2.5)
    assert stack.weights == {"aesthetic": 2.5}
    assert aesthetic.gradient_checkpointing


def test_schema_lists_files_and_entrypoint_has_reward_nodes(reward_dir):
    import quickstep

    info = LoadReward.GET_NODE_INFO_V1()
    spec = info["input"]["required"]["reward_name"]
    assert "hps/HPS_v2.1_compressed.pt" in (spec[1].get("options") or spec[0])
    ids = {c.GET_SCHEMA().node_id for c in asyncio.run(asyncio.run(quickstep.comfy_entrypoint()).get_node_list())}
    assert {"QuickstepLoadReward", "QuickstepRewardStack", "QuickstepScoreImages"} <= ids
