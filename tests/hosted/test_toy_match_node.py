"""QuickstepToyReward's `model` choice inside the host: match (the default) and the toy CLIP of older workflows, both
through `reward/`'s loader after the SHA-256 check; a tampered match file is refused."""

import shutil

import pytest

from quickstep.nodes import toy as toy_nodes
from quickstep.reward import ClipReward
from quickstep.reward.toy_match import ToyMatchReward
from quickstep.toyworld import models


def test_default_is_the_match_reward_and_the_toy_clip_stays_reachable():
    default = toy_nodes.ToyReward.execute().args[0]
    assert isinstance(default, ToyMatchReward) and default.kind == "toymatch"
    clip = toy_nodes.ToyReward.execute(model="clip").args[0]
    assert isinstance(clip, ClipReward) and clip.kind == "clip"
    assert isinstance(models.load_toy_reward(device="cpu"), ClipReward)  # the function's old default
    with pytest.raises(ValueError, match="model"):
        toy_nodes.ToyReward.execute(model="hps")


def test_a_tampered_match_file_is_refused(tmp_path, monkeypatch):
    shutil.copytree(models.WEIGHTS, tmp_path / "weights", ignore=shutil.ignore_patterns("*.safetensors"))
    shutil.copy(models.WEIGHTS / models.MATCH_FILE, tmp_path / "weights" / models.MATCH_FILE)
    monkeypatch.setattr(models, "WEIGHTS", tmp_path / "weights")
    monkeypatch.setattr(models, "HASHES", tmp_path / "weights" / "SHA256SUMS")
    assert isinstance(models.load_toy_reward(device="cpu", model="match"), ToyMatchReward)  # intact copy
    with open(tmp_path / "weights" / models.MATCH_FILE, "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ValueError, match="SHA-256"):
        models.load_toy_reward(device="cpu", model="match")
