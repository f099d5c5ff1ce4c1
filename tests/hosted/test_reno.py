"""ReNO (samplers/reno.py and the QuickstepReNO node) on tiny models of every family, inside inference mode as a
prompt runs it, with a differentiable synthetic reward (mean redness) whose optimum is known."""

import comfy.sample
import comfy.samplers
import pytest
import torch
from comfy_extras import nodes_custom_sampler as core_custom
from torch import nn

from comfy_testpack import tiny_models
from quickstep.nodes.reno import ReNO, as_stack
from quickstep.reward.base import Reward, RewardModule
from quickstep.reward.stack import RewardStack
from quickstep.samplers import reno
from quickstep.samplers.ksampler import make_sampler, make_sigmas

FAMILIES = ["sd1", "sd2v", "sdxl", "sd3", "flux"]


class Redness(Reward):
    """Mean of red minus the other channels: differentiable, prompt-blind, maximal on a pure red image."""

    kind = "redness"
    loss_offset = 1.0

    def __init__(self):
        super().__init__(RewardModule(unused=nn.Linear(1, 1)), name="redness", image_size=16)
        self.calls = 0

    def score(self, images, prompts):
        self.calls += 1
        return (images[..., 0] - 0.5 * (images[..., 1] + images[..., 2])).mean((1, 2)).float()


@pytest.fixture(scope="module")
def loaded():
    cache = {}

    def get(family):
        if family not in cache:
            with torch.inference_mode():
                model, clip, vae = tiny_models.build_family(family, seed=5)
                cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red circle"))
                uncond = clip.encode_from_tokens_scheduled(clip.tokenize(""))
            cache[family] = model, vae, cond, uncond
        return cache[family]

    return get


def channels(family):
    return 16 if family in ("sd3", "flux") else 4


def empty_latent(family, batch=1, h=8, w=8):
    with torch.inference_mode():
        return {"samples": torch.zeros(batch, channels(family), h, w)}


def run(loaded, family, reward=None, latent=None, seed=7, **cfg):
    model, vae, cond, uncond = loaded(family)
    stack = RewardStack([(reward or Redness(), 1.0)])
    config = reno.ReNOConfig(**{"iterations": 6, "learning_rate": 5.0, **cfg})
    with torch.inference_mode():
        return reno.optimise_noise(model, vae, stack, cond, uncond, latent or empty_latent(family), "a red circle",
                                   seed, config)


@pytest.mark.minimum_pin
@pytest.mark.parametrize("family", FAMILIES)
def test_reward_goes_up_and_best_so_far_never_decreases(loaded, family):
    result = run(loaded, family, iterations=8, learning_rate=20.0, grad_clip=1.0)
    totals = torch.stack([h["total"] for h in result.history])  # [iterations, B]
    assert len(result.history) == 8
    best = result.best_scores["total"]
    assert (best > result.initial_scores["total"]).all(), totals
    running = torch.cummax(totals, dim=0).values
    assert (running[1:] >= running[:-1]).all() and torch.equal(running[-1], best)
    assert torch.isfinite(result.images).all() and result.images.shape[-1] == 3


def test_many_iterations_reach_a_much_redder_image(loaded):
    result = run(loaded, "sd1", iterations=30, learning_rate=20.0, grad_clip=1.0)
    start, best = result.initial_scores["total"].item(), result.best_scores["total"].item()
    assert best > 1.2 * start > 0, (start, best)


def test_the_regulariser_keeps_the_noise_norm_near_sqrt_d(loaded):
    latent = empty_latent("sd1", h=16, w=16)
    kept = run(loaded, "sd1", latent=latent, iterations=30, learning_rate=20.0, grad_clip=1.0, reg_weight=0.01)
    free = run(loaded, "sd1", latent=latent, iterations=30, learning_rate=20.0, grad_clip=1.0, reg_weight=0.0)
    d = kept.noise[0].numel()
    drift_kept = (kept.noise.flatten(1).norm(dim=1) / d ** 0.5 - 1).abs().item()
    drift_free = (free.noise.flatten(1).norm(dim=1) / d ** 0.5 - 1).abs().item()
    assert kept.best_iteration[0] > 0 and drift_kept < 0.01 and drift_free > 2 * drift_kept, (drift_kept, drift_free)


def test_chi_regulariser_is_fp32_finite_and_minimal_at_sqrt_d_minus_1():
    d = 4 * 64 * 64
    z = torch.randn(3, 4, 64, 64, dtype=torch.float16)
    assert reno.chi_regulariser(z, 0.01).dtype == torch.float32 and torch.isfinite(reno.chi_regulariser(z, 0.01)).all()
    radii = torch.tensor([0.9, 1.0, 1.1]) * (d - 1) ** 0.5
    values = [reno.chi_regulariser(torch.full((1, d), float(r) / d ** 0.5), 1.0).item() for r in radii]
    assert values[1] < values[0] and values[1] < values[2]


def test_gradient_clip_is_per_image():
    grad = torch.stack([torch.full((4, 2, 2), 10.0), torch.full((4, 2, 2), 1e-3)])
    reno.clip_per_image_(grad, 0.1)
    norms = grad.flatten(1).norm(dim=1)
    assert norms[0] == pytest.approx(0.1, rel=1e-4) and norms[1] == pytest.approx(1e-3 * 4, rel=1e-4)


@pytest.mark.parametrize("family", ["sd1", "sd3"])
def test_iteration_0_is_core_turbo_sampling_of_the_seed(loaded, family):
    model, vae, cond, uncond = loaded(family)
    latent = empty_latent(family, batch=2, h=8, w=12)
    result = run(loaded, family, latent=latent, iterations=1, seed=123)
    with torch.inference_mode():
        noise = core_custom.Noise_RandomNoise(123).generate_noise(latent)
        core = comfy.sample.sample_custom(model, noise, 1.0, make_sampler("auto", 1.0, 1.0), make_sigmas(model, 1, 1.0),
                                          cond, uncond, latent["samples"], seed=123, disable_pbar=True)
        images = vae.decode(core)
    torch.testing.assert_close(result.latent, core, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(result.initial_images, images.float(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(result.noise, noise.float())


def test_same_seed_same_result_other_seed_other(loaded):
    a, b = run(loaded, "sd1", seed=11), run(loaded, "sd1", seed=11)
    c = run(loaded, "sd1", seed=12)
    assert torch.equal(a.noise, b.noise) and torch.equal(a.images, b.images)
    assert not torch.equal(a.noise, c.noise)


def test_batch_of_two_non_square_each_keeps_its_own_best(loaded):
    latent = empty_latent("sdxl", batch=2, h=6, w=10)
    result = run(loaded, "sdxl", latent=latent, iterations=6, learning_rate=40.0, grad_clip=2.0)
    assert result.images.shape == (2, 48, 80, 3) and result.latent.shape == (2, 4, 6, 10)
    totals = torch.stack([h["total"] for h in result.history])
    for b in range(2):
        assert result.best_iteration[b] == int(totals[:, b].argmax())
    # each image's result is its own: optimising image 1 alone from the same noise gives the same image 1
    alone = {"samples": latent["samples"][1:], "batch_index": [1]}
    single = run(loaded, "sdxl", latent=alone, iterations=6, learning_rate=40.0, grad_clip=2.0)
    torch.testing.assert_close(single.noise[0], result.noise[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family,steps", [("sd1", 1), ("sd2v", 2), ("flux", 2)])
def test_noise_output_rerendered_by_core_sampler_custom_advanced_reproduces_latent(loaded, family, steps):
    model, vae, cond, uncond = loaded(family)
    latent = empty_latent(family, batch=1, h=8, w=8)
    result = run(loaded, family, latent=latent, iterations=4, steps=steps)
    noise = reno.OptimizedNoise(result.noise, 7)
    with torch.inference_mode():
        guider = core_custom.BasicGuider.execute(model, cond)[0]
        sigmas = make_sigmas(model, steps, 1.0)
        out = core_custom.SamplerCustomAdvanced.execute(noise, guider, make_sampler("manual", 0.0, 1.0), sigmas,
                                                        latent)[0]["samples"]
    torch.testing.assert_close(out.float(), result.latent, rtol=1e-4, atol=1e-4)


def test_noise_on_a_latent_of_another_shape_is_a_clear_error():
    noise = reno.OptimizedNoise(torch.zeros(1, 4, 8, 8), 0)
    with pytest.raises(ValueError, match=r"noise: .*\(1, 4, 8, 8\).*\(2, 4, 8, 8\)"):
        noise.generate_noise({"samples": torch.zeros(2, 4, 8, 8)})


def fingerprint(model, vae, cond):
    def tensors(obj):
        if isinstance(obj, torch.Tensor):
            return [obj.detach().clone()]
        if isinstance(obj, dict):
            return [t for v in obj.values() for t in tensors(v)]
        if isinstance(obj, (list, tuple)):
            return [t for v in obj for t in tensors(v)]
        return []

    return ([t.clone() for t in model.model.state_dict().values()], [t.clone() for t in vae.first_stage_model.state_dict().values()],
            tensors(cond), len(model.weight_wrapper_patches), len(vae.patcher.weight_wrapper_patches))


@pytest.mark.parametrize("checkpointing", [frozenset(), frozenset(reno.CHECKPOINT_PARTS)])
def test_inputs_are_bitwise_unchanged(loaded, checkpointing):
    model, vae, cond, _ = loaded("flux")
    with torch.inference_mode():
        before = fingerprint(model, vae, cond)
    run(loaded, "flux", iterations=3, checkpointing=checkpointing)
    with torch.inference_mode():
        after = fingerprint(model, vae, cond)
    for old, new in zip(before[:3], after[:3], strict=True):
        assert len(old) == len(new) and all(torch.equal(a, b) for a, b in zip(old, new, strict=True))
    assert before[3:] == after[3:]
    assert not any("forward" in m.__dict__ for m in model.model.modules())  # checkpoint wrappers removed


@pytest.mark.parametrize("family", ["sd1", "flux"])
def test_checkpointing_gives_the_same_trajectory(loaded, family):
    plain = run(loaded, family, iterations=4, learning_rate=20.0, grad_clip=1.0)
    ckpt = run(loaded, family, iterations=4, learning_rate=20.0, grad_clip=1.0,
               checkpointing=frozenset(reno.CHECKPOINT_PARTS))
    torch.testing.assert_close(ckpt.noise, plain.noise, rtol=1e-4, atol=1e-5)


def test_adam_bf16_and_cfg_run(loaded):
    result = run(loaded, "sd1", iterations=4, optimizer="adam", precision="bf16", cfg=2.0, learning_rate=0.5)
    assert torch.isfinite(result.images).all() and result.best_scores["total"] >= result.initial_scores["total"]


# -- the node -----------------------------------------------------------------------------------------------------
def node_args(loaded, family="sd1", **overrides):
    model, vae, cond, uncond = loaded(family)
    args = dict(model=model, vae=vae, positive=cond, reward=Redness(), latent=empty_latent(family), prompt="a red circle",
                seed=3, iterations=3, learning_rate=5.0, steps=1, cfg=1.0)
    args.update(overrides)
    return args


@pytest.mark.minimum_pin
def test_node_outputs(loaded):
    with torch.inference_mode():
        out = ReNO.execute(**node_args(loaded, latent=empty_latent("sd1", batch=2, h=8, w=6))).result
    latent, images, noise, plot, scores = out
    assert latent["samples"].shape == (2, 4, 8, 6) and images.shape == (2, 64, 48, 3)
    assert noise.generate_noise(latent).shape == (2, 4, 8, 6)
    assert plot.ndim == 4 and plot.shape[0] == 1 and plot.shape[-1] == 3 and 0 <= plot.min() and plot.max() <= 1
    assert plot.std() > 0.05  # something is drawn
    assert scores.count("image ") == 2 and "redness" in scores and "best at iteration" in scores


def test_a_single_reward_model_connects_with_reno_weight():
    stack = as_stack(Redness())
    assert isinstance(stack, RewardStack) and stack.weights == {"redness": 1.0}


@pytest.mark.parametrize("overrides,match", [
    ({"steps": 5}, "steps must be an integer from 1 to 4"),
    ({"steps": 0}, "steps must be an integer from 1 to 4"),
    ({"learning_rate": 0.0}, "learning_rate must be a number from 0.001"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
    ({"iterations": 0}, "iterations must be an integer from 1"),
    ({"iterations": 2.5}, "iterations must be an integer"),
    ({"prompt": "   "}, "prompt: ReNO needs the text"),
    ({"prompt": ["a", "b"]}, "prompt must be text"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of 'sgd', 'adam'"),
    ({"grad_clip": -1.0}, "grad_clip must be a number from"),
    ({"cfg": "high"}, "cfg must be a number"),
    ({"momentum": float("inf")}, "momentum must be a finite number"),
    ({"checkpointing": "some"}, "checkpointing must be one of"),
    ({"seed": 2 ** 64}, "seed must be an integer from 0"),
])
def test_bad_constants_are_rejected_before_the_queue_runs(overrides, match):
    args = {"prompt": "a red circle", "iterations": 3, "learning_rate": 5.0, "steps": 1, "cfg": 1.0, **overrides}
    message = ReNO.validate_inputs(**args)
    assert isinstance(message, str) and message.startswith(match), message
    assert ReNO.validate_inputs(prompt="a red circle", seed=2 ** 64 - 1, iterations=50, learning_rate=5.0) is True


def test_bad_values_arriving_through_links_fail_in_execute(loaded):
    with torch.inference_mode(), pytest.raises(ValueError, match="learning_rate must be a finite number"):
        ReNO.execute(**node_args(loaded, learning_rate=float("nan")))


def test_errors_from_connected_objects(loaded):
    model, vae, cond, _ = loaded("sd1")
    _, flux_vae, _, _ = loaded("flux")
    with torch.inference_mode():
        with pytest.raises(ValueError, match="reward: expected a REWARD"):
            ReNO.execute(**node_args(loaded, reward=None))
        with pytest.raises(ValueError, match="vae: this VAE has 16 latent channels but the model works on 4"):
            ReNO.execute(**node_args(loaded, vae=flux_vae))
        with pytest.raises(ValueError, match="negative: cfg is not 1.0"):
            ReNO.execute(**node_args(loaded, cfg=3.0))
        with pytest.raises(ValueError, match="latent: it has 16 channels but the model works on 4"):
            ReNO.execute(**node_args(loaded, latent={"samples": torch.ones(1, 16, 8, 8)}))
        odd = model.clone()
        odd.add_object_patch("model_sampling", nn.Module())
        with pytest.raises(ValueError, match="model: the Turbo schedule supports"):
            ReNO.execute(**node_args(loaded, model=odd))


def test_cancel_stops_within_one_iteration(loaded):
    model, vae, cond, uncond = loaded("sd1")
    reward = Redness()
    calls = []

    def interrupt():
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("cancelled")

    with torch.inference_mode(), pytest.raises(KeyboardInterrupt):
        reno.optimise_noise(model, vae, RewardStack([(reward, 1.0)]), cond, uncond, empty_latent("sd1"), "x", 0,
                            reno.ReNOConfig(iterations=50), check_interrupt=interrupt)
    assert reward.calls == 2  # two iterations ran, the third never started


def test_out_of_memory_names_the_size_and_what_to_switch_on(loaded, monkeypatch):
    import comfy.model_management as mm

    def oom(*args, **kwargs):
        raise mm.OOM_EXCEPTION("CUDA out of memory")

    monkeypatch.setattr(reno, "optimise_noise", oom)
    with torch.inference_mode(), pytest.raises(RuntimeError) as err:
        ReNO.execute(**node_args(loaded, latent=empty_latent("sd1", batch=3, h=8, w=12)))
    message = str(err.value)
    for expected in ("out of memory", "(3, 4, 8, 12)", "batch 3", "checkpointing 'all'", "bf16", "image size"):
        assert expected in message, message


def test_a_reward_first_used_for_scoring_in_inference_mode_then_in_reno(loaded):
    """Score Images then ReNO on the same (cached) reward node: cached text features must not be inference tensors."""
    from quickstep.toyworld.models import load_toy_reward

    reward = load_toy_reward()
    with torch.inference_mode():
        reward.score(torch.rand(1, 64, 64, 3), "a red circle")
    result = run(loaded, "sd1", reward=reward, iterations=2)
    assert len(result.history) == 2
