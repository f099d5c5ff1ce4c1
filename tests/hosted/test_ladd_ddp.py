"""The LADD training command (distill/train.py, distill/distributed.py) and QuickstepLADDExport, on the toy teacher on
the CPU: a 2-process torchrun (gloo) trains as 1 process with the same global batch and seed; states go graph ->
command -> graph exactly; a killed run leaves its last save readable and a rerun continues it; Ctrl-C saves and stops
every rank; every setup error is one message before the process group starts."""

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch

import harness
from quickstep.distill import dataset as ds
from quickstep.distill import state as st
from quickstep.distill import step as sp
from quickstep.distill import train
from quickstep.nodes import ladd as ladd_nodes
from quickstep.nodes import ladd_export
from quickstep.samplers import differentiable as diff

PROMPTS = ["a red circle", "a blue square", "two green triangles", "a yellow circle"]
TOY = {"loader": "toy", "name": "teacher"}
SCRIPT = str(harness.PACK_ROOT / "distill" / "train.py")
#: LoRA "up" tensors whose gradient is exactly zero: the time-embedding projection of a ResBlock adds a per-channel
#: shift that the next GroupNorm (one channel per group in the toy UNet's 32-channel blocks) removes. Their gradient is
#: rounding noise, which AdamW scales up to steps of lr, so two runs differ there (and only there) by up to lr per step;
#: the student's output does not depend on them, which the test checks instead.
NULL_GRADIENT = ("input_blocks.1.0.emb_layers.1.up", "output_blocks.4.0.emb_layers.1.up",
                 "output_blocks.5.0.emb_layers.1.up")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(teacher MODEL, dataset folder, dataset): 8 teacher samples of the toy world (16x16 latents)."""
    from quickstep.toyworld import models

    folder = tmp_path_factory.mktemp("ladd_ddp_data")
    with torch.inference_mode():
        teacher, clip = models.load_unet(), models.load_clip()
        ds.generate(teacher, clip, PROMPTS, 0, 2, folder, 128, 128, 2, 4.0, "euler", "normal", batch=2)
    return teacher, folder, ds.load(folder)


@pytest.fixture(scope="module")
def env(pin, tmp_path_factory):
    """The environment of a command run: this pin's ComfyUI, one thread, and `quickstep` importable by name (a link
    named quickstep to the checkout, as an installed pack would be)."""
    links = tmp_path_factory.mktemp("pkgs")
    (links / "quickstep").symlink_to(harness.PACK_ROOT, target_is_directory=True)
    return dict(os.environ, COMFYUI_PATH=str(harness.host_path(pin)), OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join(filter(None, [str(links), os.environ.get("PYTHONPATH")])))


def config(tmp_path, data_folder, name="run", **overrides) -> Path:
    fields = dict(base=TOY, dataset=data_folder, output=tmp_path / "out", loras=tmp_path / "loras",
                  save_prefix="ladd/student", steps=3, batch_size=4, save_every=2,
                  training=sp.Config(rank=4, seed=3).to_dict())
    fields.update(overrides)
    return train.write_config(tmp_path / f"{name}.json", **fields)


def torchrun(n: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", SCRIPT]


def run(args, env, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([*args, "--threads", "1"], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=Path(env["PYTHONPATH"].split(os.pathsep)[0]))


def saved(path: Path) -> dict:
    return safetensors.torch.load_file(str(path))


def meta(path: Path) -> dict:
    with safetensors.safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["quickstep_ladd"])


def student_output(teacher, data, state_file: Path) -> torch.Tensor:
    """The student's prediction (base + the saved LoRA) on fixed noisy inputs at two grid sigmas."""
    with torch.inference_mode():
        state = st.load(state_file, teacher)
        student = sp.student_model(teacher, state.lora, state.config.lora_alpha)
        batch = data.batch(torch.tensor([0, 5]))
        x = torch.randn(2, *data.latents.shape[1:], generator=torch.Generator().manual_seed(1))
        sigma = torch.tensor([14.6, 1.0])

        def body(denoise, _ms):
            return denoise(x * sigma.view(-1, 1, 1, 1), sigma).detach().clone()

        with diff.autograd_enabled():
            return diff.run_guided(student, batch["positive"], None, 1.0, torch.zeros_like(x), body)


@pytest.mark.minimum_pin
def test_two_processes_train_as_one_with_the_same_global_batch(toy, env, tmp_path):
    teacher, folder, data = toy
    one_cfg = config(tmp_path / "one", folder)
    two_cfg = config(tmp_path / "two", folder)
    with ThreadPoolExecutor(2) as pool:  # side by side: their start-up is most of the time
        one = pool.submit(run, [sys.executable, "-m", "quickstep.distill.train", str(one_cfg)], env)  # package form
        two = pool.submit(run, [*torchrun(2), str(two_cfg)], env)
        one, two = one.result(), two.result()
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es) on cpu (gloo), global batch 4 (2 per process), step 0 -> 3" in two.stdout
    assert "1 process(es) on cpu, global batch 4 (4 per process)" in one.stdout
    assert two.stdout.count("[quickstep] done: step 3") == 1  # rank 0 reports, rank 1 is silent

    a_state, b_state = tmp_path / "one/out/ladd/student_state.safetensors", tmp_path / "two/out/ladd/student_state.safetensors"
    a, b = saved(a_state), saved(b_state)
    assert set(a) == set(b)
    assert torch.equal(a["rng"], b["rng"]), "the generators diverged: a process drew other numbers"
    ha, hb = meta(a_state)["history"], meta(b_state)["history"]
    assert [h["step"] for h in ha] == [h["step"] for h in hb] == [1, 2, 3]
    for x, y in zip(ha, hb, strict=True):
        for k in ("loss_d", "loss_g", "acc_real", "acc_fake"):
            assert y[k] == pytest.approx(x[k], rel=1e-5, abs=1e-6), (k, x, y)
    # AdamW divides by the gradient's own size, so a rounding-level gradient difference in a near-zero element moves
    # it by a visible fraction of lr: the tolerance is a tenth of one step of the heads (lr_d 2e-4)
    compared = 0
    for k in a:
        if k.startswith(("lora/", "heads/")) and not k.endswith(NULL_GRADIENT):
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=2e-5, msg=k)
            compared += 1
    assert compared > 50
    moved = [k for k in a if k.startswith("lora/") and k.endswith(".up") and float(a[k].abs().max()) > 0]
    assert len(moved) > 20, "the LoRA did not train"
    # the LoRA files the command wrote (core's format) hold the same weights as the states
    lora_a = saved(tmp_path / "one/loras/ladd/student.safetensors")
    assert any(k.endswith(".lora_up.weight") for k in lora_a)
    # the null-gradient tensors differ between the runs, yet the students predict the same: they have no effect
    torch.testing.assert_close(student_output(teacher, data, b_state), student_output(teacher, data, a_state),
                               rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def reference(toy):
    """The graph alone: LADD Init then LADD Train for 4 steps at batch 4 (the nodes, in inference mode)."""
    teacher, _, data = toy
    with torch.inference_mode():
        state = init_state(teacher)
        return ladd_nodes.LADDTrain.execute(state, data, 4, 4, 0).result[0]


def init_state(teacher):
    with torch.inference_mode():
        return ladd_nodes.LADDInit.execute(teacher, 4, 3).result[0]


def export(state, data, name, steps, processes=1, batch_size=4):
    with torch.inference_mode():
        out = ladd_export.LADDExport.execute(state, data, ladd_export.TOY_BASE, steps, batch_size, 2, processes, name,
                                             save_prefix=f"test_ddp/{name}")
    command, config_name = out.result
    return command, config_name, out.ui


def assert_same_run(state: st.State, ref: st.State):
    assert state.step == ref.step
    assert torch.equal(state.rng, ref.rng)
    assert [h["loss_d"] for h in state.history] == [h["loss_d"] for h in ref.history]
    assert all(torch.equal(state.lora[k], ref.lora[k]) for k in ref.lora)
    assert all(torch.equal(state.heads[k], ref.heads[k]) for k in ref.heads)


def output_dir() -> Path:
    import folder_paths

    return Path(folder_paths.get_output_directory())


@pytest.mark.minimum_pin
def test_a_graph_state_continues_in_the_command_exactly(toy, reference, env):
    teacher, _, data = toy
    with torch.inference_mode():
        half = ladd_nodes.LADDTrain.execute(init_state(teacher), data, 2, 4, 0).result[0]
    command, config_name, ui = export(half, data, "graph_to_cmd", steps=2)
    assert command in ui["text"][0]
    raw = json.loads((output_dir() / config_name).read_text())
    assert raw["steps"] == 4 and raw["resume"].endswith("_start_state.safetensors")
    proc = run(shlex.split(command), env)  # the exact command the node shows
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout and "at step 2" in proc.stdout
    with torch.inference_mode():
        done = st.load(output_dir() / "test_ddp/graph_to_cmd_state.safetensors", teacher)
    assert_same_run(done, reference)


@pytest.mark.minimum_pin
def test_a_command_state_continues_in_the_graph_exactly(toy, reference, env):
    teacher, _, data = toy
    command, config_name, _ = export(init_state(teacher), data, "cmd_to_graph", steps=2)
    assert json.loads((output_dir() / config_name).read_text())["resume"] is None  # a new run: the settings suffice
    proc = run(shlex.split(command), env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "a new run" in proc.stdout
    with torch.inference_mode():
        resumed = ladd_nodes.LADDResume.execute(teacher, "test_ddp/cmd_to_graph_state.safetensors").result[0]
        assert resumed.step == 2
        final = ladd_nodes.LADDTrain.execute(resumed, data, 2, 4, 0).result[0]
    assert_same_run(final, reference)
    import folder_paths

    lora_file = Path(folder_paths.get_folder_paths("loras")[0]) / "test_ddp/cmd_to_graph.safetensors"
    assert lora_file.is_file()  # where LoraLoaderModelOnly lists it


def _step_of(path: Path) -> int:
    try:
        return meta(path)["step"]
    except Exception:  # not there yet
        return -1


def test_a_killed_run_leaves_its_last_save_readable_and_a_rerun_continues(toy, env, tmp_path):
    teacher, folder, _ = toy
    cfg = config(tmp_path, folder, steps=200, save_every=2, batch_size=2)
    state_file = tmp_path / "out/ladd/student_state.safetensors"
    proc = subprocess.Popen([sys.executable, SCRIPT, str(cfg), "--threads", "1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while _step_of(state_file) < 4 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no handler runs: whatever is on disk is what a crash leaves
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with torch.inference_mode():
        last = st.load(state_file, teacher)
    assert last.step >= 4 and last.step % 2 == 0 and last.step < 200
    assert len(last.history) == last.step
    assert all(torch.isfinite(v).all() for v in last.lora.values())
    again = config(tmp_path, folder, steps=last.step + 1, save_every=2, batch_size=2)
    proc = run([sys.executable, SCRIPT, str(again)], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resumed from {state_file} at step {last.step}" in proc.stdout
    assert meta(state_file)["step"] == last.step + 1


def test_ctrl_c_saves_and_stops_every_rank(toy, env, tmp_path):
    _, folder, _ = toy
    cfg = config(tmp_path, folder, steps=1000, save_every=0, batch_size=2)
    state_file = tmp_path / "out/ladd/student_state.safetensors"
    proc = subprocess.Popen([*torchrun(2), str(cfg), "--threads", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(64), "")), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 90
        while "| 2/1000" not in "".join(err) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, "".join(err)[-3000:]
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group (torchrun and both ranks)
        out = proc.stdout.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join(timeout=10)
    text = "".join(err)
    assert "stopped by SIGINT at step" in out, (out, text[-3000:])
    step = int(out.split("stopped by SIGINT at step ")[1].split()[0])
    assert 2 <= step < 1000 and meta(state_file)["step"] == step
    assert text.count("SIGINT: stopping after this step and saving") >= 2  # both ranks heard it
    # no traceback from a rank: the only one is torchrun's own report of the signal it got
    assert text.count("Traceback") == text.count("SignalException: Process"), text[-3000:]


def test_sigterm_saves_and_exits_with_128_plus_the_signal(toy, env, tmp_path):
    """SIGTERM to the one process (what a scheduler sends before preempting a job)."""
    _, folder, _ = toy
    cfg = config(tmp_path, folder, steps=1000, save_every=1, batch_size=2)
    state_file = tmp_path / "out/ladd/student_state.safetensors"
    proc = subprocess.Popen([sys.executable, SCRIPT, str(cfg), "--threads", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.time() + 90
        while _step_of(state_file) < 1 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, out
    step = int(out.split("stopped by SIGTERM at step ")[1].split()[0])
    assert meta(state_file)["step"] == step >= 1


# ---------------------------------------------------------------------------------------------------- errors

def main_error(argv, capsys) -> str:
    assert train.main(argv) == train.EXIT_SETUP
    return capsys.readouterr().err


def test_errors_are_one_message_before_the_process_group(toy, tmp_path, capsys, monkeypatch):
    teacher, folder, data = toy
    good = config(tmp_path, folder)
    raw = json.loads(good.read_text())

    def variant(name, **changes):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({**raw, **changes}))
        return str(path)

    msg = main_error([variant("old", format="quickstep-ladd-train/0")], capsys)
    assert "field 'format'" in msg and "another version" in msg and "QuickstepLADDExport" in msg
    msg = main_error([variant("newer", sharding="fsdp")], capsys)
    assert "unknown field(s) 'sharding'" in msg
    msg = main_error([variant("newer_setting", training={**raw["training"], "lr_schedule": "cosine"})], capsys)
    assert "field 'training'" in msg and "'lr_schedule'" in msg
    msg = main_error([variant("reward", training={**raw["training"], "reward_weight": 0.2})], capsys)
    assert "reward_weight 0.2" in msg and "does not load reward models" in msg and "LADD Train" in msg
    msg = main_error([variant("steps", steps=0)], capsys)
    assert "field 'steps' must be an integer >= 1" in msg
    msg = main_error([str(tmp_path / "nowhere.json")], capsys)
    assert "no file at" in msg and "QuickstepLADDExport" in msg

    empty = tmp_path / "empty"
    empty.mkdir()
    msg = main_error([variant("missing", dataset=str(empty))], capsys)
    assert "field 'dataset'" in msg and "no items" in msg and "QuickstepLADDDataset" in msg
    other = tmp_path / "flux_data"  # a dataset of another family: 16-channel latents
    st.atomic_save({"latent": torch.zeros(16, 16, 16), "cond": torch.zeros(77, 32)}, ds.item_path(other, 0),
                   {"quickstep_ladd_item": json.dumps({"prompt": "x", "seed": 0})})
    msg = main_error([variant("mismatch", dataset=str(other))], capsys)
    assert "does not fit the base model" in msg and "16 channels" in msg and "this model takes 4" in msg

    msg = main_error([variant("base", base={"loader": "checkpoint", "name": "nope.safetensors"})], capsys)
    assert "'nope.safetensors'" in msg and "'checkpoints' folder" in msg
    with torch.inference_mode():
        identity = st.base_identity(teacher)
    msg = main_error([variant("identity", identity={**identity, "values": "0" * 16})], capsys)
    assert "field 'base'" in msg and "another model than the graph trained" in msg and "LoRAs" in msg

    monkeypatch.setenv("WORLD_SIZE", "3")
    msg = main_error([str(good)], capsys)
    assert "batch_size: the global batch of 4 does not divide among 3 processes" in msg and "multiple of 3" in msg
    monkeypatch.delenv("WORLD_SIZE")

    # a resumed run keeps its settings: a config that changes them is refused, naming the setting
    assert train.main([str(good), "--threads", "1"]) == 0
    capsys.readouterr()
    msg = main_error([variant("changed", training={**raw["training"], "lr_g": 0.5}, steps=4)], capsys)
    assert "differs from the state it resumes" in msg and "lr_g (state 0.0001, config 0.5)" in msg


def test_world_size_error_under_torchrun_is_one_message_on_rank_0(toy, env, tmp_path):
    _, folder, _ = toy
    cfg = config(tmp_path, folder, batch_size=3)
    proc = run([*torchrun(2), str(cfg)], env, timeout=90)
    assert proc.returncode != 0
    assert proc.stderr.count("[quickstep] error: batch_size: the global batch of 3 does not divide among 2") == 1
    assert "Traceback" not in proc.stderr.split("[quickstep] error")[0]
    assert not (tmp_path / "out").exists()


def test_export_node_checks_its_inputs_and_writes_the_command(toy):
    teacher, _, data = toy
    cls = ladd_export.LADDExport
    assert "filename" in cls.validate_inputs(filename="../outside")
    assert "filename" in cls.validate_inputs(filename="/etc/passwd")
    assert "save_prefix" in cls.validate_inputs(save_prefix="../x")
    assert cls.validate_inputs(steps=10, batch_size=8, save_every=5, processes=2, filename="ladd/x",
                               save_prefix="ladd/y") is True
    with pytest.raises(ValueError, match="base must be one of 'toy/teacher'"), torch.inference_mode():
        cls.execute(init_state(teacher), data, "checkpoints/not_listed.safetensors", 10, 8, 5, 2, "ladd/x")
    command, config_name, ui = export(init_state(teacher), data, "two_gpus", steps=10, processes=2, batch_size=8)
    assert config_name == "two_gpus.json"
    args = shlex.split(command)
    assert args[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--nproc_per_node=2" in args
    assert args[-2:] == [SCRIPT, str(output_dir() / "two_gpus.json")]
    raw = json.loads((output_dir() / config_name).read_text())
    assert raw["format"] == train.FORMAT and raw["batch_size"] == 8 and raw["steps"] == 10
    assert raw["base"] == TOY and raw["training"]["rank"] == 4
    assert train.read_config(output_dir() / config_name).dataset == Path(data.folder).resolve()
    assert "global batch 8 on 2 process(es)" in ui["text"][0]
    with pytest.raises(ValueError, match="batch_size 6 does not divide among 4"):
        export(init_state(teacher), data, "bad", steps=1, processes=4, batch_size=6)
