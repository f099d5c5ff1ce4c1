"""Input hardening without ComfyUI: name checks (folders.py), the fresh-noise seed across the whole widget range,
non-finite custom timesteps, and reward-loader messages (no colour codes, right advice for folders)."""

import os

import pytest
import torch

from quickstep import folders
from quickstep.reward.loading import load_reward, read_state_dict
from quickstep.samplers import grid
from quickstep.samplers.turbo import fresh_noise_seed


@pytest.mark.parametrize("name,message", [
    ("", "is empty"), ("   ", "is empty"), (None, "(a string); got NoneType"), (3, "(a string); got int"),
    ("/etc/passwd", "not an absolute path"), ("C:\\Windows\\win.ini", "not an absolute path"),
    ("..", "'..' is not allowed"), ("a/../../b", "'..' is not allowed"), ("a\\..\\b", "'..' is not allowed"),
    ("x" * 10_000, "10000 characters long"), ("a/" + "y" * 300, "255 for each part"), ("a\x00b", "NUL"),
])
def test_bad_names_are_refused_before_any_filesystem_access(name, message):
    with pytest.raises(folders.BadName) as err:
        folders.check_name(name, input="lora_name")
    assert str(err.value).startswith("lora_name ") and message in str(err.value)
    assert len(str(err.value)) < 400  # a long name is not echoed whole


def test_listed_accepts_only_listed_names_and_shows_a_few():
    options = [f"model_{i}.safetensors" for i in range(12)]
    assert folders.listed("model_3.safetensors", options, input="x", where="w") == "model_3.safetensors"
    assert folders.listed("sub\\a.pt", ["sub/a.pt"], input="x", where="w") == "sub/a.pt"
    with pytest.raises(folders.BadName, match=r"x 'nope.pt' is not in the loras folder \(it lists 12: "
                                              r"'model_0.safetensors', .*, \.\.\.\)\. Pick a listed name, or put"):
        folders.listed("nope.pt", options, input="x", where="the loras folder")
    with pytest.raises(folders.BadName, match=r"\(it is empty\)\. Pick a listed name, or download it"):
        folders.listed("nope.pt", [], input="x", where="w", hint="download it")


def test_inside_follows_links(tmp_path):
    base = tmp_path / "datasets"
    (base / "shapes").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    os.symlink(tmp_path / "secret", base / "link")
    assert folders.inside(base, "shapes", input="dataset") == base.resolve() / "shapes"
    assert folders.subfolders(base) == ["link", "shapes"]
    with pytest.raises(folders.BadName, match="leads outside"):
        folders.inside(base, "link", input="dataset")
    with pytest.raises(folders.BadName, match="does not exist"):
        folders.inside(base, "missing", input="dataset")
    assert folders.inside(base, "new/run", input="name", must_exist=False) == base.resolve() / "new" / "run"
    assert folders.message(folders.inside, base, "..", input="dataset").startswith("dataset must stay inside")
    assert folders.message(folders.inside, base, "shapes", input="dataset") is True


def test_fresh_noise_seed_covers_the_widget_range():
    assert fresh_noise_seed(None) == 0 and fresh_noise_seed(5) == 6
    assert fresh_noise_seed(2**64 - 1) == 0  # wraps instead of overflowing
    for seed in (0, 2**63, 2**64 - 2, 2**64 - 1):
        torch.Generator().manual_seed(fresh_noise_seed(seed))


@pytest.mark.parametrize("text", ["nan", "999, nan", "inf", "1, -inf", "1e999"])
def test_non_finite_custom_timesteps(text):
    with pytest.raises(ValueError, match="custom_timesteps must be finite"):
        grid.parse_custom(text)


def test_a_long_custom_timesteps_text_is_not_echoed():
    with pytest.raises(ValueError) as err:
        grid.parse_custom("abc " * 5000)
    assert len(str(err.value)) < 300


class Payload:
    """Stands for arbitrary pickled code."""


def test_pickle_refusal_names_the_global_without_colour_codes(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "extra": Payload()}, path)
    with pytest.raises(ValueError) as err:
        read_state_dict(path)
    message = str(err.value)
    assert "\x1b" not in message and "Payload" in message and "weights_only=False" not in message


@pytest.mark.parametrize("kind", ["hps", "clip", "pickscore"])
def test_a_folder_without_config_gets_the_right_advice(tmp_path, kind):
    folder = tmp_path / "loose"
    folder.mkdir()
    torch.save({"w": torch.zeros(1)}, folder / "weights.pt")
    with pytest.raises(ValueError) as err:
        load_reward(folder, kind=kind, device="cpu", managed=False)
    message = str(err.value)
    assert "folder without config.json" in message and "kind " + kind in message
    assert "not a plain tensor checkpoint" not in message and "convert" not in message
