"""Every node's `validate_inputs` checks all of each input it takes (ComfyUI then skips its own min/max/list checks,
which never catch NaN anyway), and the shared checks behind it: widget values against the schema
(nodes/validation.py), user-given names against what their folder lists (folders.py), the Turbo KSampler's family
check and seeds across the widget's whole range."""

import inspect
import math
import os

import comfy.sample
import pytest
import reward_tiny as rt
import torch

from quickstep import folders
from quickstep.nodes import NODES, validation
from quickstep.nodes import turbo as turbo_nodes
from quickstep.nodes.reward import LoadReward, RewardStackNode
from quickstep.reward import FOLDER
from quickstep.samplers import ksampler, schedule

pytestmark = pytest.mark.minimum_pin
WIDGETS = ("FLOAT", "INT", "STRING", "BOOLEAN", "COMBO")


def validated_widgets():
    """(node class, schema input) for every widget a node's own validate_inputs takes."""
    out = []
    for cls in NODES:
        if "validate_inputs" not in cls.__dict__:
            continue
        params = inspect.signature(cls.validate_inputs).parameters
        for inp in cls.define_schema().inputs:
            if inp.id in params and inp.get_io_type() in WIDGETS:
                out.append((cls, inp))
    return out


def bad_values(inp):
    """Values that reach validate_inputs through /prompt: core's int()/float() conversion failed (then the raw value
    arrives), or passed with a value out of range or NaN; combos arrive unconverted."""
    kind = inp.get_io_type()
    common = [[1, 2], {"a": 1}]
    if kind in ("FLOAT", "INT"):
        values = ["abc", "1.0", *common]
        if inp.min is not None:
            values.append(inp.min - (1 if kind == "INT" else max(abs(inp.min) * 0.5, 1e-3)))
        if inp.max is not None:
            values.append(inp.max + (1 if kind == "INT" else max(abs(inp.max), 1.0)))
        if kind == "FLOAT":
            values += [math.nan, math.inf, -math.inf]
        else:
            values += [1.5, True]
        return values
    if kind == "COMBO":
        return ["no such option", "", "../../etc/passwd", "/etc/passwd", "x" * 10_000, 5, *common]
    return []  # STRING, BOOLEAN: core turns every literal into str/bool before validate_inputs sees it


def test_the_nodes_validate_widgets():
    assert {cls.__name__ for cls, _ in validated_widgets()} >= {"TurboScheduler", "TurboSampler", "TurboKSampler",
                                                               "LoadReward", "RewardStackNode", "ToyEvaluate"}


@pytest.mark.parametrize("cls,inp", validated_widgets(), ids=lambda x: getattr(x, "__name__", getattr(x, "id", "")))
def test_validate_inputs_rejects_every_bad_value_with_the_input_named(cls, inp):
    for value in bad_values(inp):
        message = cls.validate_inputs(**{inp.id: value})  # must not raise (a raw TypeError replaces core's message)
        assert isinstance(message, str), f"{cls.__name__}.{inp.id}={value!r:.40} passed validation"
        assert inp.id in message, message
        assert len(message) < 3000 and "Traceback" not in message


@pytest.mark.parametrize("cls,inp", [(c, i) for c, i in validated_widgets() if i.get_io_type() in ("FLOAT", "INT")],
                         ids=lambda x: getattr(x, "__name__", getattr(x, "id", "")))
def test_the_schema_bounds_themselves_pass(cls, inp):
    for value in (inp.min, inp.max, inp.default):
        if value is not None:
            assert cls.validate_inputs(**{inp.id: value}) is True, (inp.id, value)


def test_bounds_come_from_the_schema():
    message = validation.check(turbo_nodes.TurboSampler, s_noise=2.005)
    assert message == "s_noise must be a number from 0 to 2; got 2.005."
    assert "finite" in validation.check(turbo_nodes.TurboKSampler, cfg=math.nan)
    assert validation.check(turbo_nodes.TurboKSampler, seed=2**64 - 1, cfg=30.0) is True
    with pytest.raises(KeyError, match="no input 'nope'"):
        validation.check(turbo_nodes.TurboSampler, nope=1)


def test_require_rejects_null_that_check_lets_through_as_a_link():
    with pytest.raises(ValueError, match="eta_mode has no value"):
        validation.require(turbo_nodes.TurboSampler, eta_mode=None)
    with pytest.raises(ValueError, match="s_noise has no value"):  # optional, but an absent one is not None
        validation.require(turbo_nodes.TurboKSampler, s_noise=None)
    assert validation.check(turbo_nodes.TurboSampler, eta_mode=None) is True  # at validation None means linked
    with pytest.raises(ValueError, match="weight_2 must be a finite number"):
        RewardStackNode.execute(reward_1=object(), weighting="manual", weight_2=math.nan)  # a linked NaN


def test_scheduler_denoise_below_its_minimum_and_nan_timesteps():
    assert "denoise must be a number from 0.01" in turbo_nodes.TurboScheduler.validate_inputs(
        steps=8, denoise=0.001, grid="trailing", custom_timesteps="")
    for text in ("nan", "999, inf", "-inf"):
        message = turbo_nodes.TurboScheduler.validate_inputs(steps=1, denoise=1.0, grid="trailing",
                                                             custom_timesteps=text)
        assert "custom_timesteps must be finite" in message


# -- seeds ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 2**63, 2**64 - 1])
def test_every_seed_in_the_widget_range_samples(tiny, seed):
    model, clip, _ = tiny("sd1")
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red circle"))
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (out,) = turbo_nodes.TurboKSampler.execute(model, cond, cond, latent, seed, 3, 1.0, "manual", 1.0, 1.0).args
    assert torch.isfinite(out["samples"]).all()
    # SamplerCustom passes noise_seed to the sampler as extra_args["seed"]
    sampler = ksampler.make_sampler("manual", 1.0, 1.0)
    sigmas = schedule.turbo_sigmas(model.get_model_object("model_sampling"), 3)
    noise = comfy.sample.prepare_noise(latent["samples"], seed)
    custom = comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, cond, cond, latent["samples"],
                                        disable_pbar=True, seed=seed)
    torch.testing.assert_close(custom, out["samples"])


# -- latents and conditioning of another family ------------------------------------------------------------------
def test_a_latent_of_another_family_is_named(tiny):
    model, clip, _ = tiny("sd1")
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red circle"))
    sd3_latent = {"samples": torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))}
    with pytest.raises(ValueError) as err:
        turbo_nodes.TurboKSampler.execute(model, cond, cond, sd3_latent, 0, 1, 1.0, "auto", 1.0, 1.0)
    message = str(err.value)
    assert "latent_image has 16 channels" in message and "SD3" in message and "SD15" in message
    empty = {"samples": torch.zeros(1, 16, 8, 8)}  # an empty latent of any family is fine (core refits it)
    turbo_nodes.TurboKSampler.execute(model, cond, cond, empty, 0, 1, 1.0, "auto", 1.0, 1.0)


def test_conditioning_of_another_family_is_named(tiny):
    model, clip, _ = tiny("sd1")
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red circle"))
    _, sdxl_clip, _ = tiny("sdxl")
    sdxl_cond = sdxl_clip.encode_from_tokens_scheduled(sdxl_clip.tokenize("a red circle"))
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    with pytest.raises(ValueError, match="negative holds 64-wide text embeddings.*SD15 model takes 32-wide"):
        turbo_nodes.TurboKSampler.execute(model, cond, sdxl_cond, latent, 0, 1, 2.0, "auto", 1.0, 1.0)
    wide = [[torch.zeros(1, 77, 4096), {}]]  # SD3's T5 width into an SD1 model
    with pytest.raises(ValueError, match="positive holds 4096-wide"):
        turbo_nodes.check_family(model, latent["samples"], {"positive": wide})


# -- names ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    import folder_paths

    root = tmp_path_factory.mktemp("fuzz_rewards")
    files = rt.write_all(root)
    outside = tmp_path_factory.mktemp("outside")
    rt.write_hps(outside / "HPS_v2.1_compressed.pt", 1)
    folder_paths.add_model_folder_path(FOLDER, str(root))
    yield root, files, outside
    folder_paths.folder_names_and_paths[FOLDER][0].remove(str(root))


@pytest.mark.parametrize("name,message", [
    ("../../etc/passwd", "'..' is not allowed"),
    ("/etc/passwd", "not an absolute path"),
    ("", "reward_name is empty"),
    (None, "must be a file name (a string)"),
    ("x" * 10_000, "10000 characters long"),
    ("hps/../hps/HPS_v2.1_compressed.pt", "'..' is not allowed"),
    ("hps", "is not in the 'rewards' model folder"),  # a folder, not a listed file
])
def test_reward_names_must_be_listed_files(reward_dir, name, message):
    if name is not None:
        assert message in LoadReward.validate_inputs(reward_name=name, kind="auto")
    with pytest.raises(ValueError) as err:
        LoadReward.execute(name, "auto", "fp32", False)
    assert message in str(err.value)
    assert "root:" not in str(err.value) and "visual.conv1" not in str(err.value)  # no file content


def test_a_model_outside_the_reward_folder_is_not_loaded(reward_dir):
    outside = str(reward_dir[2] / "HPS_v2.1_compressed.pt")
    assert os.path.isfile(outside)
    assert "not an absolute path" in LoadReward.validate_inputs(reward_name=outside, kind="hps")
    with pytest.raises(ValueError, match="not an absolute path"):
        LoadReward.execute(outside, "hps", "fp32", False)
    assert "backbone" in LoadReward.validate_inputs(reward_name="hps/HPS_v2.1_compressed.pt", backbone=outside)


def test_a_null_backbone_is_refused_at_execute(reward_dir):
    assert LoadReward.validate_inputs(reward_name="hps/HPS_v2.1_compressed.pt", backbone=None) is True  # a link
    with pytest.raises(ValueError, match="backbone must be a file name"):
        LoadReward.execute("hps/HPS_v2.1_compressed.pt", "auto", "fp32", False, backbone=None)


def test_a_kind_that_does_not_match_the_file_names_both(reward_dir):
    with pytest.raises(ValueError) as err:
        LoadReward.execute("clip-tiny/model.safetensors", "aesthetic", "fp32", False)
    message = str(err.value)
    assert "model.safetensors is a clip reward" in message and "not aesthetic" in message
    assert "set kind to auto or clip" in message


def test_output_prefix_stays_inside_the_output_folder():
    import folder_paths

    out = folder_paths.get_output_directory()
    full, filename, _, subfolder, _ = folders.output_prefix("quickstep/lora")
    assert os.path.realpath(full).startswith(os.path.realpath(out)) and filename == "lora" and subfolder == "quickstep"
    for prefix, message in (("../escape", "'..' is not allowed"), ("/tmp/escape", "not an absolute path"),
                            ("", "filename_prefix is empty"), (None, "a string")):
        with pytest.raises(folders.BadName, match=message):
            folders.output_prefix(prefix)


def test_model_file_for_a_core_folder():
    import folder_paths

    root = folder_paths.get_folder_paths("loras")[0]
    os.makedirs(os.path.join(root, "sub"), exist_ok=True)
    path = os.path.join(root, "sub", "student.safetensors")
    open(path, "wb").close()
    try:
        assert folders.model_file("loras", "sub/student.safetensors", input="lora_name") == folders.Path(path)
        with pytest.raises(folders.BadName, match=r"lora_name 'student.safetensors' is not in the 'loras' model "
                                                  r"folder .*it lists \d+: 'sub/student.safetensors'"):
            folders.model_file("loras", "student.safetensors", input="lora_name")
    finally:
        os.remove(path)


def test_ladd_dataset_with_no_prompts_and_no_dataset_names_both_inputs(tmp_path, monkeypatch):
    import folder_paths

    from quickstep.nodes.ladd import LADDDatasetNode

    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path))
    widgets = dict(seed=0, images_per_prompt=1, width=64, height=64, steps=2, cfg=2.0, sampler_name="euler",
                   scheduler="normal", folder="ladd/none_yet")
    for prompts in ("", "  \n \n"):
        with pytest.raises(ValueError, match="prompts is empty.*folder 'ladd/none_yet'.*one per line"):
            LADDDatasetNode.execute(None, None, prompts, **widgets)
    assert not (tmp_path / "ladd").exists()  # nothing was created for the failed run
