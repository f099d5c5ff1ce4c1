"""LADD (distill/ and nodes/ladd.py) on tiny models of every family, built and run inside inference mode as a prompt
runs them: what each step may change, teacher features, the core-loadable LoRA, exact resume, atomic saves, the
resumable dataset and the errors raised before training."""

import json
from pathlib import Path

import comfy.sample
import pytest
import safetensors.torch
import torch

from comfy_testpack import tiny_models
from quickstep.distill import dataset as ds
from quickstep.distill import features, lora
from quickstep.distill import state as st
from quickstep.distill import step as sp
from quickstep.nodes import ladd as ladd_nodes
from quickstep.samplers import differentiable as diff
from quickstep.samplers.ksampler import make_sampler, make_sigmas

FAMILIES = ["sd1", "sd2v", "sdxl", "sd3", "flux"]
PROMPTS = ["a red circle", "a blue square"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def family_data(tmp_path_factory):
    """family -> (MODEL, CLIP, dataset) with a 4-item teacher dataset at 64x64 (8x8 latents)."""
    cache = {}

    def get(family, seed=0):
        key = (family, seed)
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"data_{family}_{seed}")
            with torch.inference_mode():
                model, clip, _ = tiny_models.build_family(family, seed=seed)
                ds.generate(model, clip, PROMPTS, 0, 2, folder, 64, 64, 2, 2.0, "euler", "normal", batch=2)
                cache[key] = model, clip, ds.load(folder)
        return cache[key]

    return get


def new_state(model, **overrides):
    config = sp.Config(**{"rank": 4, "gradient_checkpointing": True, "bf16": True, **overrides})
    with torch.inference_mode():
        return ladd_nodes.LADDInit.execute(model, config.rank, config.seed, heads=config.heads,
                                           grid_steps=config.grid_steps, loss=config.loss, lr_g=config.lr_g,
                                           lr_d=config.lr_d, r1_weight=config.r1_weight,
                                           reward_weight=config.reward_weight, g_every=config.g_every,
                                           warmup_steps=config.warmup_steps, ema=config.ema,
                                           backward_simulation=config.backward_simulation,
                                           renoise_mean=config.renoise_mean, bf16=config.bf16,
                                           gradient_checkpointing=config.gradient_checkpointing).result[0]


def base_weights(model):
    return {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}


def run_steps(trainer, data, n, batch=2):
    with torch.inference_mode():  # the node's context
        return [{k: v for k, v in sp.train_step(trainer, data.sample_batch(batch, trainer.generator)).items()
                 if k != "preview"} for _ in range(n)]


@pytest.mark.minimum_pin
@pytest.mark.parametrize("family", FAMILIES)
def test_a_step_trains_the_lora_and_heads_and_never_the_base(family_data, family):
    model, _, data = family_data(family)
    before = base_weights(model)
    state = new_state(model, r1_weight=0.1, ema=0.5, backward_simulation=family == "sdxl")
    trainer = state.trainer()
    heads_before = {k: v.clone() for k, v in trainer.disc.state_dict().items()}
    metrics = run_steps(trainer, data, 1)  # one discriminator and one generator update
    assert all(torch.isfinite(torch.tensor([m["loss_g"], m["loss_d"]])).all() for m in metrics)
    after = model.model.diffusion_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "base weights changed"
    ups = [v for k, v in trainer.lora.items() if k.endswith(".up")]
    assert any(float(u.detach().abs().max()) > 0 for u in ups), "the LoRA did not move off zero"
    assert any(not torch.equal(heads_before[k], v) for k, v in trainer.disc.state_dict().items())


def test_discriminator_step_changes_only_heads_and_generator_step_only_the_lora(family_data):
    model, _, data = family_data("sd1")
    base = base_weights(model)
    state = new_state(model, g_every=2)
    both, d_only = state.trainer(), state.trainer()
    d_only.step = 1  # step 1 with g_every 2: a discriminator step alone
    lora_before = {k: v.detach().clone() for k, v in d_only.lora.items()}
    heads_before = {k: v.clone() for k, v in d_only.disc.state_dict().items()}
    run_steps(both, data, 1)
    run_steps(d_only, data, 1)
    assert all(torch.equal(lora_before[k], v) for k, v in d_only.lora.items()), "a D step changed the LoRA"
    assert any(not torch.equal(heads_before[k], v) for k, v in d_only.disc.state_dict().items())
    # the same D step, then a G step: the heads end where the D step alone left them, the LoRA moved
    assert all(torch.equal(both.disc.state_dict()[k], v) for k, v in d_only.disc.state_dict().items()), \
        "a G step changed the heads"
    assert any(not torch.equal(lora_before[k], v) for k, v in both.lora.items())
    after = model.model.diffusion_model.state_dict()
    assert all(torch.equal(base[k], after[k]) for k in base)


@pytest.mark.parametrize("family", ["sd1", "flux"])
def test_teacher_features_with_the_lora_off_equal_the_base_models(family_data, family):
    model, _, data = family_data(family)
    trainer = new_state(model).trainer()
    run_steps(trainer, data, 2)  # a LoRA that is no longer zero
    batch = data.batch(torch.tensor([0, 1]))
    x = torch.randn(2, *data.latents.shape[1:], generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([3.0, 0.5]) if family == "sd1" else torch.tensor([0.9, 0.4])

    def feats(patcher, enabled):
        def body(denoise, _ms):
            with trainer.switch.set(enabled):
                return [f.detach().clone() for f in
                        features.extract(model.model.diffusion_model, trainer.blocks, lambda: denoise(x, sigma),
                                         x.shape[-2:])]
        with torch.inference_mode(), diff.autograd_enabled():
            return diff.run_guided(patcher, batch["positive"], None, 1.0, torch.zeros_like(x), body)

    base_patcher = diff.grad_ready(model, "diffusion_model")
    teacher, student, base = feats(trainer.patcher, False), feats(trainer.patcher, True), feats(base_patcher, True)
    assert len(teacher) == len(trainer.blocks) >= 2
    assert all(torch.equal(t, b) for t, b in zip(teacher, base, strict=True))
    assert any(not torch.equal(s, b) for s, b in zip(student, base, strict=True))


@pytest.mark.parametrize("family", ["sd1", "sd3"])
def test_checkpointing_keeps_fewer_activations_and_gives_the_same_steps(family_data, family):
    model, _, data = family_data(family)
    saved = []

    def pack(t):  # tensors autograd keeps outside checkpointed regions (the checkpoint's own hooks take the rest)
        saved.append(t.numel() * t.element_size())
        return t

    runs = {}
    for on in (False, True):
        trainer = new_state(model, gradient_checkpointing=on).trainer()
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            metrics = run_steps(trainer, data, 2)
        runs[on] = metrics, {k: v.detach().clone() for k, v in trainer.lora.items()}, sum(saved)
    assert runs[True][0] == runs[False][0]
    assert all(torch.equal(v, runs[True][1][k]) for k, v in runs[False][1].items())
    assert runs[True][2] < 0.5 * runs[False][2], f"checkpointing kept {runs[True][2]} of {runs[False][2]} bytes"


def test_saved_lora_through_core_loader_samples_like_the_in_graph_student(family_data):
    import nodes as core_nodes

    model, clip, data = family_data("sd1")
    with torch.inference_mode():
        state = new_state(model)
        state, student, losses = ladd_nodes.LADDTrain.execute(state, data, 2, 2, 0)
        lora_name, state_name = ladd_nodes.LADDSave.execute(state, "test_ladd/core").result
        assert lora_name.startswith("test_ladd/core_") and lora_name.endswith(".safetensors")
        loaded = core_nodes.LoraLoaderModelOnly().load_lora_model_only(model, lora_name, 1.0)[0]
        pos = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPTS[0]))
        latent = torch.zeros(1, 4, 8, 8)
        noise = comfy.sample.prepare_noise(latent, 5)

        def sample(m):
            return comfy.sample.sample_custom(m, noise, 1.0, make_sampler("auto", 1.0, 1.0), make_sigmas(m, 2, 1.0),
                                              pos, pos, latent, seed=5, disable_pbar=True)

        ours, core, plain = sample(student), sample(loaded), sample(model)
    assert len(losses["loss_d"]) == 2 and len(losses["loss"]) == 2
    assert not torch.allclose(ours, plain, atol=1e-4), "the LoRA had no effect"
    torch.testing.assert_close(ours, core, rtol=1e-4, atol=1e-5)
    sd = safetensors.torch.load_file(str(Path(__import__("folder_paths").get_folder_paths("loras")[0]) / lora_name))
    assert any(k.endswith(".lora_up.weight") for k in sd) and all(k.startswith("diffusion_model.") for k in sd)


def toy_scene_dataset(prompts: list[str], per_prompt: int) -> ds.Dataset:
    """A LADD dataset of true toy scenes for `prompts` (through the toy VAE) with the v2 toy CLIP's conditioning."""
    from quickstep.toyworld import models, scenes

    clip, vae = models.load_text_encoder("v2"), models.load_vae()
    latents, conds, pooled, names = [], [], [], []
    with torch.inference_mode():
        for text in prompts:
            pos = clip.encode_from_tokens_scheduled(clip.tokenize(text))
            images = torch.stack([torch.from_numpy(scenes.make_scene(scenes.parse_prompt(text), seed).image)
                                  for seed in range(per_prompt)])
            latents.append(vae.encode(images).float())
            conds += [pos[0][0][0].float()] * per_prompt
            pooled += [pos[0][1]["pooled_output"][0].float()] * per_prompt
            names += [text] * per_prompt
    return ds.Dataset(torch.cat(latents), torch.stack(conds), torch.stack(pooled), names, {}, "toy scenes")


def one_step_reward_loss(student_model, data: ds.Dataset, vae, rewards) -> float:
    """The reward stack's mean loss on the student's one-step images (fixed noise) for every item's prompt."""
    from quickstep.samplers import schedule

    batch = data.batch(torch.arange(len(data)))
    noise = torch.randn(data.latents.shape, generator=torch.Generator().manual_seed(11))

    def body(denoise, ms):
        sigma = schedule.turbo_sigmas(ms, 1)[:1]
        x0 = denoise(ms.noise_scaling(sigma, noise, torch.zeros_like(noise), max_denoise=True), sigma)
        return rewards.loss(diff.decode(vae, student_model.model.process_latent_out(x0)), batch["prompts"]).mean()

    with torch.inference_mode():
        return float(diff.run_guided(student_model, batch["positive"], None, 1.0, torch.zeros_like(noise), body))


def test_reward_feedback_trains_the_student_toward_the_reward():
    """reward_weight > 0: the generator step also descends the reward stack's loss on the decoded student images.
    From the same start and batches, the one-step student's toy match loss falls further with the term than the
    adversarial loss alone takes it."""
    from quickstep.reward.stack import RewardStack
    from quickstep.toyworld import models

    data = toy_scene_dataset(["a photo of a red circle", "a photo of a square left of a triangle"], 2)
    teacher, vae = models.load_teacher_unet("v2"), models.load_vae()
    rewards = RewardStack([(models.load_toy_reward("cpu", "match"), 1.0)])
    start = one_step_reward_loss(teacher, data, vae, rewards)
    after = {}
    for weight in (0.0, 1.0):
        trainer = new_state(teacher, reward_weight=weight, lr_g=3e-3, bf16=False).trainer()
        if weight:
            trainer.feedback = sp.RewardFeedback(vae, rewards)
        metrics = run_steps(trainer, data, 8, batch=4)
        assert ("loss_reward" in metrics[-1]) == (weight > 0)
        student = sp.student_model(teacher, trainer.lora_tensors(use_ema=False), trainer.config.lora_alpha)
        after[weight] = one_step_reward_loss(student, data, vae, rewards)
    assert after[1.0] < start - 0.5 and after[1.0] < after[0.0] - 0.5, (start, after)


def test_reward_feedback_needs_its_inputs_and_says_so(family_data, caplog):
    model, _, data = family_data("sd1")
    with pytest.raises(ValueError, match="reward_weight > 0 needs a reward"):
        run_steps(new_state(model, reward_weight=0.5).trainer(), data, 1)
    state = new_state(model, reward_weight=0.5)
    with pytest.raises(ValueError, match=r"reward and vae: this run has reward_weight 0\.5 .*Connect them"):
        ladd_nodes.LADDTrain.execute(state, data, 1, 2, 0)
    from quickstep.toyworld import models

    reward = models.load_toy_reward("cpu", "clip")
    with caplog.at_level("WARNING", logger="quickstep"):
        trained = ladd_nodes.LADDTrain.execute(new_state(model), data, 1, 2, 0, reward=reward).result[0]
    assert trained.step == 1 and "reward is connected, but this run's reward_weight is 0" in caplog.text
    from quickstep.nodes import ladd_export

    with pytest.raises(ValueError, match="the command does not load reward models"):
        ladd_export.LADDExport.execute(state, data, ladd_export.TOY_BASE, 1, 2, 1, 1, "cfg")


def test_resume_is_exact(family_data, tmp_path):
    model, _, data = family_data("sd1")
    state = new_state(model, ema=0.5)
    straight = state.trainer()
    m_straight = run_steps(straight, data, 4)

    first = state.trainer()
    m_first = run_steps(first, data, 2)
    with torch.inference_mode():
        st.save(st.State.of(first, state.identity, m_first), tmp_path / "s.safetensors")
        again = st.load(tmp_path / "s.safetensors", model).trainer()
    assert again.step == 2
    m_second = run_steps(again, data, 2)
    assert m_first + m_second == m_straight
    assert all(torch.equal(straight.lora[k].detach(), again.lora[k].detach()) for k in straight.lora)
    assert all(torch.equal(straight.ema[k], again.ema[k]) for k in straight.ema)
    assert all(torch.equal(v, again.disc.state_dict()[k]) for k, v in straight.disc.state_dict().items())


def test_resume_node_reads_a_saved_state_and_refuses_another_base(family_data):
    model, _, data = family_data("sd1")
    other, _, _ = family_data("sd1", seed=7)
    with torch.inference_mode():
        state, _, _ = ladd_nodes.LADDTrain.execute(new_state(model), data, 1, 2, 0)
        _, state_name = ladd_nodes.LADDSave.execute(state, "test_ladd/resume").result
        back = ladd_nodes.LADDResume.execute(model, state_name).result[0]
        assert back.step == 1 and all(torch.equal(back.lora[k], state.lora[k]) for k in state.lora)
        with pytest.raises(ValueError, match="another base model"):
            ladd_nodes.LADDResume.execute(other, state_name)
        with pytest.raises(ValueError, match="stay inside"):
            ladd_nodes.LADDResume.execute(model, "../escape_state.safetensors")


def test_a_save_killed_midway_leaves_the_previous_state_readable(family_data, tmp_path, monkeypatch):
    model, _, data = family_data("sd1")
    trainer = new_state(model).trainer()
    run_steps(trainer, data, 1)
    path = tmp_path / "state.safetensors"
    st.save(st.State.of(trainer, st.base_identity(model), []), path)
    good = path.read_bytes()
    run_steps(trainer, data, 1)

    real_save = safetensors.torch.save_file

    def dies_midway(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:  # half a file on disk, then the process "dies"
            f.truncate(len(Path(filename).read_bytes()) // 2)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(safetensors.torch, "save_file", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        st.save(st.State.of(trainer, st.base_identity(model), []), path)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert st.load(path, model).step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["state.safetensors"]  # no temporary file left behind


def test_dataset_resumes_after_an_interrupt_without_duplicates_or_gaps(family_data, tmp_path):
    model, clip, _ = family_data("sd1")
    prompts = ["a red circle", "a green triangle", "a blue square"]

    def interrupt_after_four():  # Cancel, seen at the first check after the fourth item was written
        if len(list(tmp_path.glob("*.safetensors"))) >= 4:
            raise InterruptedError("cancelled")

    with torch.inference_mode():
        with pytest.raises(InterruptedError):
            ds.generate(model, clip, prompts, 10, 2, tmp_path, 64, 64, 2, 2.0, "euler", "normal",
                        check_interrupt=interrupt_after_four)
        first = {p.name: p.read_bytes() for p in tmp_path.glob("*.safetensors")}
        assert len(first) == 4
        written = ds.generate(model, clip, prompts, 10, 2, tmp_path, 64, 64, 2, 2.0, "euler", "normal")
        data = ds.load(tmp_path)
    assert written == 2 and len(data) == 6
    for name, blob in first.items():
        assert (tmp_path / name).read_bytes() == blob  # items of the first run are kept as they were
    metas = []
    for p in sorted(tmp_path.glob("*.safetensors")):
        with safetensors.safe_open(str(p), framework="pt") as f:
            metas.append(json.loads(f.metadata()["quickstep_ladd_item"]))
    assert [(m["prompt"], m["seed"]) for m in metas] == [(p, s) for p in prompts for s in (10, 11)]


def test_errors_before_training(family_data, tmp_path):
    import comfy.model_sampling

    sd1, _, sd1_data = family_data("sd1")
    sd3, _, _ = family_data("sd3")
    sdxl, _, _ = family_data("sdxl")
    with torch.inference_mode():
        edm = sd1.clone()

        class EDM(comfy.model_sampling.ModelSamplingContinuousEDM, comfy.model_sampling.EPS):
            pass

        edm.add_object_patch("model_sampling", EDM(sd1.model.model_config))
        with pytest.raises(ValueError, match="model: .*supports discrete eps/v models"):
            new_state(edm)
        with pytest.raises(ValueError, match="rank must be"):
            new_state(sd1, rank=0)
        with pytest.raises(ValueError, match="heads: .*not blocks of this model"):
            new_state(sd1, heads="no_such_block")
        with pytest.raises(ValueError, match="no items in"):
            ds.load(tmp_path)
        with pytest.raises(ValueError, match="latents have 4 channels but this model takes 16"):
            ladd_nodes.LADDTrain.execute(new_state(sd3), sd1_data, 1, 2, 0)
        with pytest.raises(ValueError, match="conditioning is 32 wide but .* takes 64"):
            ladd_nodes.LADDTrain.execute(new_state(sdxl), sd1_data, 1, 2, 0)
        with pytest.raises(ValueError, match="steps and batch_size must be positive"):
            ladd_nodes.LADDTrain.execute(new_state(sd1), sd1_data, 0, 2, 0)
    assert "batch_size 2, rank 4" in ladd_nodes._oom_message(torch.OutOfMemoryError("CUDA out of memory"),
                                                              new_state(sd1), sd1_data, 2)


def test_loss_plot_is_an_image(family_data):
    model, _, data = family_data("sd1")
    with torch.inference_mode():
        _, _, losses = ladd_nodes.LADDTrain.execute(new_state(model), data, 2, 2, 0)
        image = ladd_nodes.LADDLossPlot.execute(losses).result[0]
    assert image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 3
    assert float(image.min()) < 0.5 < float(image.max())


def test_lora_state_dict_round_trips():
    params = {"diffusion_model.a.up": torch.randn(3, 2), "diffusion_model.a.down": torch.randn(2, 5)}
    back, alpha = lora.from_comfy_lora(lora.to_comfy_lora(params, 2.0))
    assert alpha == 2.0 and all(torch.equal(back[k], params[k]) for k in params)


def test_student_grid_and_renoise_levels_follow_each_familys_schedule(family_data):
    from quickstep.distill import timesteps as ts
    from quickstep.samplers import schedule

    assert ts.grid_probabilities(4, warmup=False) == pytest.approx([0.7, 0.1, 0.1, 0.1])
    assert ts.grid_probabilities(4, warmup=True) == [0.0, 0.0, 0.5, 0.5]
    gen = torch.Generator().manual_seed(0)
    t = ts.sample_flow_time(20000, 1.0, 1.0, gen)
    assert float(t.median()) == pytest.approx(0.73, abs=0.02)  # sigmoid(1)
    for family in ("sd1", "sd3", "flux"):
        ms = family_data(family)[0].get_model_object("model_sampling")
        torch.testing.assert_close(ts.grid_sigmas(ms, 4), schedule.turbo_sigmas(ms, 4)[:-1])  # the sampler's grid
        top = ts.flow_time_to_sigma(ms, torch.tensor([1.0, 0.5]))
        assert float(top[0]) == pytest.approx(float(ms.sigma_max), rel=1e-4) and float(top[1]) < float(top[0])


def test_toy_checkpoint_offers_the_shipped_student():
    from quickstep.nodes.toy import ToyCheckpoint
    from quickstep.toyworld import models

    with torch.inference_mode():
        student, clip, _ = ToyCheckpoint.execute("student").result
        teacher = ToyCheckpoint.execute("teacher").result[0]
        sd = safetensors.torch.load_file(str(models.checked(models.STUDENT_FILE)))
        n_layers = sum(k.endswith(".lora_up.weight") for k in sd)
        assert n_layers > 10 and len(student.patches) == n_layers  # every LoRA layer found its weight
        pos = clip.encode_from_tokens_scheduled(clip.tokenize("a photo of a red circle"))
        latent = torch.zeros(1, 4, models.LATENT, models.LATENT)
        noise = comfy.sample.prepare_noise(latent, 0)
        a, b = (comfy.sample.sample_custom(m, noise, 1.0, make_sampler("auto", 1.0, 1.0), make_sigmas(m, 1, 1.0),
                                           pos, pos, latent, seed=0, disable_pbar=True) for m in (student, teacher))
    assert not torch.allclose(a, b, atol=1e-3)
