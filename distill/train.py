"""The LADD training command (Sauer et al. 2024; the step is `step.train_step`, as QuickstepLADDTrain runs it): one
process, or N under torchrun with DDP (`distributed.py`), from the config QuickstepLADDExport writes.

    python <pack>/distill/train.py CONFIG                                          # one process (what the node shows)
    python -m torch.distributed.run --standalone --nproc_per_node 4 <pack>/distill/train.py CONFIG     # 4 processes
    python -m quickstep.distill.train CONFIG          # the same, where `quickstep` is importable (pip install -e <pack>)

Run by path, the file brings its pack folder in as the `quickstep` package (as ComfyUI imports it, whatever the folder
is called), so it works from custom_nodes/<any name> and from a checkout. ComfyUI is found, in this order: --comfyui,
$COMFYUI_PATH, the config's "comfyui", the ComfyUI around the pack (<ComfyUI>/custom_nodes/<pack>). The base model is
loaded with ComfyUI's own loaders; the dataset is the folder QuickstepLADDDataset wrote. Rank 0 writes the files
QuickstepLADDSave writes, atomically, every save_every steps and at the end: the state (<output>/<save_prefix>_state.
safetensors, for QuickstepLADDResume) and the core-loadable LoRA (<loras>/<save_prefix>.safetensors). Rerunning the
command continues from that state; Ctrl-C (SIGINT) or SIGTERM saves after the current step and exits (128 + signal).
Every check (config version and fields, world size, dataset, base model, resume state) runs before the process group
starts; a problem is one English message on rank 0 and exit status 2.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: bring the pack in as `quickstep`, then run as a module
    import importlib.util
    import os
    import sys

    _pack = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)  # distill/ itself: its module names (state, step, dataset) must not shadow others
    if "quickstep" not in sys.modules:
        _spec = importlib.util.spec_from_file_location("quickstep", os.path.join(_pack, "__init__.py"),
                                                       submodule_search_locations=[_pack])
        sys.modules["quickstep"] = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(sys.modules["quickstep"])
    from quickstep.distill.train import main as _main

    sys.exit(_main())

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .distributed import SetupError

FORMAT = "quickstep-ladd-train/1"
LOADERS = ("checkpoint", "diffusion_model", "toy")
TOY_BASES = ("teacher",)
PACK = Path(__file__).resolve().parent.parent
EXIT_SETUP = 2

_FIELDS = {
    "format": "the config version, " + repr(FORMAT),
    "comfyui": "the ComfyUI folder (optional)",
    "base": "the base model: {'loader': one of " + ", ".join(LOADERS) + ", 'name': its file name}",
    "identity": "the base model's fingerprint from the graph (optional)",
    "dataset": "the dataset folder QuickstepLADDDataset wrote",
    "resume": "a state file to start from (optional)",
    "output": "the folder for training states",
    "loras": "the folder for the LoRA (optional: ComfyUI's models/loras)",
    "save_prefix": "the name prefix of the saved files",
    "steps": "the step the run trains to",
    "batch_size": "the global batch (over all processes)",
    "save_every": "steps between saves (0: only at the end)",
    "training": "the LADD settings (QuickstepLADDInit's inputs)",
}


@dataclass
class Run:
    """A validated config. Paths are absolute (relative ones in the file are relative to the file's folder)."""

    path: Path
    base: dict
    dataset: Path
    output: Path
    save_prefix: str
    steps: int
    batch_size: int
    save_every: int
    training: dict = field(default_factory=dict)
    identity: dict | None = None
    resume: Path | None = None
    loras: Path | None = None
    comfyui: Path | None = None

    @property
    def state_file(self) -> Path:
        return self.output / f"{self.save_prefix}_state.safetensors"

    def lora_file(self, loras: Path) -> Path:
        return loras / f"{self.save_prefix}.safetensors"


# ---------------------------------------------------------------------------------------------------- the config file

def _error(path, name: str, expected: str, got, fix: str) -> SetupError:
    return SetupError(f"config {path}: field '{name}' must be {expected}; got {got!r}. {fix}")


def read_config(path) -> Run:
    """Parse and check a config file (no ComfyUI needed); every problem names the field and the fix."""
    from .step import Config

    path = Path(path)
    if not path.is_file():
        raise SetupError(f"config: no file at {path}. Write one with the QuickstepLADDExport node (it shows the "
                         "command with the path), or pass the path of an existing config.")
    try:
        raw = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise SetupError(f"config {path} is not JSON ({e}); export it again with QuickstepLADDExport.") from e
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise SetupError(f"config {path}: field 'format' is {got!r}, but this Quickstep reads {FORMAT!r}: the file "
                         "comes from another version (or is not a Quickstep training config). Export it again with "
                         "QuickstepLADDExport in this ComfyUI, or run the Quickstep version that wrote it.")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise SetupError(f"config {path}: unknown field(s) {', '.join(map(repr, unknown))} (from another version or a "
                         f"typo). The fields are: {', '.join(_FIELDS)}. Remove them or export the config again.")
    for name in ("base", "dataset", "output", "save_prefix", "steps", "batch_size", "save_every"):
        if name not in raw:
            raise SetupError(f"config {path}: field '{name}' ({_FIELDS[name]}) is missing; export the config again "
                             "with QuickstepLADDExport or add it.")
    here = path.resolve().parent

    def folder(name, value, optional=False):
        if optional and value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise _error(path, name, "a path (absolute, or relative to the config's folder)", value,
                         "Set it to the folder's path.")
        return (here / os.path.expanduser(value)).resolve()

    def integer(name, low, meaning):
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _error(path, name, f"an integer >= {low} ({meaning})", value, f"Set it to {max(low, 1)} or more.")
        return value

    base = raw["base"]
    if not isinstance(base, dict) or base.get("loader") not in LOADERS or not isinstance(base.get("name"), str):
        raise _error(path, "base", f"{{'loader': one of {', '.join(map(repr, LOADERS))}, 'name': a file name}}", base,
                     "Export the config again with QuickstepLADDExport and pick the file the MODEL was loaded from.")
    from ..folders import BadName, check_name

    prefix = raw["save_prefix"]
    try:
        check_name(prefix, input="save_prefix", what="a file name prefix inside the output folder (e.g. 'ladd/student')")
    except BadName as e:
        raise SetupError(f"config {path}: {e}") from e
    training = raw.get("training") or {}
    if not isinstance(training, dict):
        raise _error(path, "training", "an object of LADD settings", training, "Export the config again.")
    known = {f for f in Config.__dataclass_fields__}
    extra = sorted(set(training) - known)
    if extra:
        raise SetupError(f"config {path}: field 'training' has unknown setting(s) {', '.join(map(repr, extra))} (from "
                         f"another version or a typo); the settings are {', '.join(sorted(known))}.")
    try:
        config = Config.from_dict(training)
        config.validate()
    except (TypeError, ValueError) as e:
        raise SetupError(f"config {path}: field 'training': {e}") from e
    if config.reward_weight > 0:
        raise SetupError(f"config {path}: field 'training' has reward_weight {config.reward_weight:g}, but the command "
                         "does not load reward models: train a run with reward feedback in the graph (LADD Train with "
                         "its reward and vae inputs), or set reward_weight to 0 for the command.")
    identity = raw.get("identity")
    if identity is not None and not isinstance(identity, dict):
        raise _error(path, "identity", "the fingerprint the node wrote, or null", identity, "Remove it.")
    return Run(path=path, base=dict(base), dataset=folder("dataset", raw["dataset"]),
               output=folder("output", raw["output"]), save_prefix=check_name(prefix, input="save_prefix"),
               steps=integer("steps", 1, "the step count the run trains to"),
               batch_size=integer("batch_size", 1, "the global batch over all processes"),
               save_every=integer("save_every", 0, "steps between saves; 0 saves only at the end"),
               training=config.to_dict(), identity=identity, resume=folder("resume", raw.get("resume"), True),
               loras=folder("loras", raw.get("loras"), True), comfyui=folder("comfyui", raw.get("comfyui"), True))


def _relative(target: Path, start: Path) -> str:
    try:
        return os.path.relpath(target, start)
    except ValueError:  # another drive (Windows)
        return str(target)


def write_config(path: Path, *, base: dict, dataset: Path, output: Path, save_prefix: str, steps: int,
                 batch_size: int, save_every: int, training: dict, identity: dict | None = None,
                 resume: Path | None = None, loras: Path | None = None, comfyui: Path | None = None) -> Path:
    """Write a config atomically (temporary sibling, then rename); paths are stored relative to its folder."""
    path = Path(path)
    here = path.resolve().parent
    raw = {"format": FORMAT, "comfyui": str(comfyui) if comfyui else None, "base": base, "identity": identity,
           "dataset": _relative(Path(dataset), here), "resume": _relative(Path(resume), here) if resume else None,
           "output": _relative(Path(output), here), "loras": _relative(Path(loras), here) if loras else None,
           "save_prefix": save_prefix, "steps": steps, "batch_size": batch_size, "save_every": save_every,
           "training": training}
    here.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            json.dump(raw, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def command(config: Path, processes: int, python: str | None = None) -> str:
    """The exact command line that trains `config` on `processes` processes of this machine."""
    import shlex
    import subprocess

    python = python or sys.executable
    script = str(PACK / "distill" / "train.py")
    args = [python, script, str(config)] if processes == 1 else \
        [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", script, str(config)]
    return subprocess.list2cmdline(args) if os.name == "nt" else shlex.join(args)


# ---------------------------------------------------------------------------------------------------- ComfyUI

def _is_comfyui(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy" / "samplers.py").is_file()


def find_comfyui(flag: str | None, run: Run) -> Path | None:
    """The ComfyUI folder to import; None when ComfyUI is already imported (tests, a host that runs us in-process)."""
    if "comfy.model_management" in sys.modules:
        return None
    looked = []
    for what, value in (("--comfyui", flag), ("$COMFYUI_PATH", os.environ.get("COMFYUI_PATH")),
                        ("the config's 'comfyui'", str(run.comfyui) if run.comfyui else None),
                        ("the ComfyUI around the pack", str(PACK.parent.parent) if PACK.parent.name == "custom_nodes"
                         else None)):
        if not value:
            looked.append(f"{what} (not set)")
            continue
        path = Path(os.path.expanduser(value)).resolve()
        if _is_comfyui(path):
            return path
        looked.append(f"{what} = {path} (no main.py and comfy/samplers.py there)")
        if what == "--comfyui" or what == "$COMFYUI_PATH":
            break  # an explicit choice that is wrong is an error, not a reason to look elsewhere
    raise SetupError("ComfyUI: no ComfyUI folder found. Looked at:\n  - " + "\n  - ".join(looked) + "\nPass "
                     "--comfyui /path/to/ComfyUI (the folder with main.py) or set COMFYUI_PATH.")


def import_comfyui(host: Path | None, device: str, local_rank: int) -> None:
    """Import ComfyUI's modules from `host`, configured as `main.py` would be (`--cpu` on a CPU), models from its
    folders and extra_model_paths.yaml."""
    import torch

    if device == "cuda":
        torch.cuda.set_device(local_rank)  # ComfyUI's device is the current one: one GPU per process
    if host is None:
        return
    sys.path.insert(0, str(host))
    import comfy.options

    comfy.options.enable_args_parsing()
    argv, sys.argv = sys.argv, ["main.py"] + (["--cpu"] if device == "cpu" else [])
    try:
        import comfy.cli_args  # noqa: F401  parses the argv above
    finally:
        sys.argv = argv
    extra = host / "extra_model_paths.yaml"
    if extra.is_file():
        from utils.extra_config import load_extra_path_config

        load_extra_path_config(str(extra))
    import comfy.model_management  # noqa: F401


def load_base(base: dict):
    """The base MODEL, loaded the way core's loader nodes load it (CheckpointLoaderSimple, UNETLoader) or the toy
    teacher (QuickstepToyCheckpoint)."""
    loader, name = base["loader"], base["name"]
    if loader == "toy":
        if name not in TOY_BASES:
            raise SetupError(f"config: field 'base' names toy model {name!r}; the toy base is one of {TOY_BASES}.")
        from ..toyworld import models

        return models.load_unet()
    import comfy.sd
    import folder_paths

    folder = "checkpoints" if loader == "checkpoint" else "diffusion_models"
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        listed = folder_paths.get_filename_list(folder)
        raise SetupError(f"config: field 'base' names {name!r}, which is not in ComfyUI's '{folder}' folder "
                         f"({', '.join(folder_paths.get_folder_paths(folder))}; it lists {len(listed)} file(s)"
                         f"{': ' + ', '.join(map(repr, listed[:5])) if listed else ''}). Put the file there (or "
                         "in a path of extra_model_paths.yaml) or fix the name.")
    if loader == "checkpoint":
        return comfy.sd.load_checkpoint_guess_config(path, output_vae=False, output_clip=False,
                                                     embedding_directory=folder_paths.get_folder_paths("embeddings"))[0]
    return comfy.sd.load_diffusion_model(path)


# ---------------------------------------------------------------------------------------------------- setup

@dataclass
class Prepared:
    run: Run
    state: object  # distill.state.State to start from
    data: object  # distill.dataset.Dataset
    lora_file: Path
    started_from: str


def _differences(saved: dict, wanted: dict) -> list[str]:
    return [f"{k} (state {saved.get(k)!r}, config {wanted[k]!r})" for k in sorted(wanted) if saved.get(k) != wanted[k]]


def prepare(run: Run) -> Prepared:
    """Load and check everything before any process group: dataset, base model, the state to start from."""
    import torch

    from . import dataset as ds
    from . import features, lora
    from . import state as st
    from . import step as sp
    try:
        data = ds.load(run.dataset)
    except ValueError as e:
        raise SetupError(f"config {run.path}: field 'dataset' ({run.dataset}): {e}") from e
    model = load_base(run.base)
    base_name = f"{run.base['loader']} {run.base['name']!r}"
    try:
        sp.check_model(model)
        ds.check_against(data, model, sp.pooled_dim(model))
    except ValueError as e:
        raise SetupError(f"config {run.path}: the dataset ({run.dataset}) does not fit the base model ({base_name}): "
                         f"{e}") from e
    identity = st.base_identity(model)
    if run.identity is not None and run.identity != identity:
        diffs = [k for k in identity if run.identity.get(k) != identity[k]]
        raise SetupError(f"config {run.path}: field 'base' ({base_name}) loads another model than the graph trained "
                         f"(different {', '.join(diffs)}: the graph's MODEL had {run.identity.get('parameters')} "
                         f"parameters, this one {identity['parameters']}). Pick the file the MODEL was loaded from; a "
                         "MODEL with LoRAs or other patches applied cannot be re-created by the command: distil the "
                         "plain model, or merge the patches into a checkpoint first (core's CheckpointSave).")
    wanted = sp.Config.from_dict(run.training)
    source = run.state_file if run.state_file.is_file() else run.resume
    with torch.inference_mode(False):
        if source is not None:
            try:
                state = st.load(source, model)
            except (ValueError, OSError) as e:
                field_name = "resume" if source == run.resume else "save_prefix (this run's own state)"
                raise SetupError(f"config {run.path}: field '{field_name}' ({source}): {e}") from e
            diffs = _differences(state.config.to_dict(), wanted.to_dict()) if run.training else []
            if diffs:
                raise SetupError(f"config {run.path}: field 'training' differs from the state it resumes ({source}) "
                                 f"in {'; '.join(diffs)}. A resumed run keeps its settings: set these back, or start "
                                 f"a new run (another save_prefix, no 'resume').")
            started = f"resumed from {source} at step {state.step}"
        else:
            features.parse_blocks(model.model.diffusion_model, wanted.heads)
            params = lora.init_params(lora.target_modules(model), wanted.rank, torch.Generator().manual_seed(wanted.seed))
            state = st.State(model=model, config=wanted, identity=identity, lora=params)
            started = "a new run"
    loras = run.loras
    if loras is None:
        import folder_paths

        loras = Path(folder_paths.get_folder_paths("loras")[0])
    return Prepared(run=run, state=state, data=data, lora_file=run.lora_file(loras), started_from=started)


# ---------------------------------------------------------------------------------------------------- training

def save(trainer, prepared: Prepared, history: list[dict]) -> None:
    """Rank 0: the LoRA (core's format, EMA if on) and the full state, each atomically (state.atomic_save)."""
    from . import lora
    from . import state as st

    now = st.State.of(trainer, prepared.state.identity, history)
    st.atomic_save(lora.to_comfy_lora(now.student_lora(), now.config.lora_alpha), prepared.lora_file,
                   {"quickstep": f"LADD student, step {now.step}, grid {now.config.grid_steps} steps"})
    st.save(now, prepared.run.state_file)


def _summary(m: dict) -> str:
    text = f"loss_d {m['loss_d']:.3f}"
    if "loss_g" in m:
        text += f", loss_g {m['loss_g']:.3f}"
    return text + f", acc real {m['acc_real']:.2f} fake {m['acc_fake']:.2f}"


def train(prepared: Prepared, world, device, log) -> int:
    """The loop: every process draws the global batch, trains its rows; rank 0 saves. Returns the exit status."""
    import torch

    from . import distributed
    from . import step as sp

    run, data = prepared.run, prepared.data
    stop = distributed.Stop()
    distributed.init(world, device)
    try:
        with torch.inference_mode(False):
            trainer = distributed.data_parallel(prepared.state.trainer(), world, run.batch_size,
                                                  data.pooled is not None)
        history = list(prepared.state.history)
        log(f"[quickstep] LADD: {prepared.started_from}; {world.size} process(es) on {device.type}"
            + (f" ({distributed.backend(device)})" if world.size > 1 else "")
            + f", global batch {run.batch_size} ({run.batch_size // world.size} per process), step {trainer.step} -> "
            f"{run.steps}; dataset {len(data)} items {tuple(data.latents.shape[1:])} from {run.dataset}")
        log(f"[quickstep] saves {f'every {run.save_every} steps and ' if run.save_every else ''}at the end: state "
            f"{run.state_file}, LoRA {prepared.lora_file}")
        bar = None
        if world.main:
            from tqdm import tqdm

            bar = tqdm(total=run.steps, initial=trainer.step, desc="LADD", unit="step", dynamic_ncols=True)
        signum, start, first, second = 0, time.time(), trainer.step, None
        while trainer.step < run.steps:
            rows = data.sample_indices(run.batch_size, trainer.generator)  # the same on every process
            if trainer.shard is not None:
                rows = rows[trainer.shard[0]:trainer.shard[1]]
            out = sp.train_step(trainer, data.batch(rows))
            out.pop("preview")
            out = distributed.mean_metrics(out, world, device)
            # throughput from the second step on (the first one warms up) to the last, saves not included
            ended, ended_cpu = time.time(), time.process_time()
            if second is None:
                second, second_cpu = ended, ended_cpu
            history.append(out)
            if bar is not None:
                bar.set_postfix_str(_summary(out), refresh=False)
                bar.update(1)
            last = trainer.step >= run.steps
            signum = stop.agreed(world, device)
            if world.main and (signum or last or (run.save_every and trainer.step % run.save_every == 0)):
                save(trainer, prepared, history)
                (bar.write if bar is not None else log)(f"[quickstep] saved step {trainer.step}: {_summary(out)}")
            if signum:
                break
        if bar is not None:
            bar.close()
        if trainer.step == first and world.main:  # nothing to train: still leave this run's files in place
            save(trainer, prepared, history)
        done = trainer.step - first
        rate = f"{done} steps in {time.time() - start:.1f} s"
        if done > 1:
            samples = (done - 1) * run.batch_size
            cpu_ms = (ended_cpu - second_cpu) * 1000 / (samples / world.size)
            rate += (f" (steps {first + 2}-{trainer.step}: {samples / (ended - second):.2f} samples/s, {cpu_ms:.0f} "
                     "ms of CPU time per sample on rank 0)")
        if signum:
            import signal

            log(f"[quickstep] stopped by {signal.Signals(signum).name} at step {trainer.step} (saved); run the same "
                f"command again to continue to step {run.steps}.")
        else:
            log(f"[quickstep] done: step {trainer.step}, {rate}; state "
                f"{run.state_file} (QuickstepLADDResume), LoRA {prepared.lora_file} (LoraLoaderModelOnly)")
        return 128 + signum if signum else 0
    finally:
        stop.restore()
        distributed.finish(world)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m quickstep.distill.train",
                                     description="LADD distillation from a QuickstepLADDExport config, on one process "
                                                 "or under torchrun (DDP).")
    parser.add_argument("config", help="the JSON config QuickstepLADDExport wrote")
    parser.add_argument("--comfyui", default=None, help="the ComfyUI folder (default: $COMFYUI_PATH, the config's "
                                                        "'comfyui', or the ComfyUI around the pack)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                        help="auto: a GPU per process when there is one, else the CPU (gloo)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: torch's default)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from .distributed import World, check_batch

    world = World.from_env()

    def log(text):
        if world.main:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    try:
        import torch

        if args.threads > 0:
            torch.set_num_threads(args.threads)
        run = read_config(args.config)
        check_batch(run.batch_size, world.size)
        device_kind = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        if device_kind == "cuda" and torch.cuda.device_count() <= world.local_rank:
            raise SetupError(f"--device cuda: process {world.local_rank} on this node needs GPU {world.local_rank}, "
                             f"but {torch.cuda.device_count()} are visible; run at most that many processes per node "
                             "(--nproc_per_node) or --device cpu.")
        import_comfyui(find_comfyui(args.comfyui, run), device_kind, world.local_rank)
        import comfy.model_management

        device = comfy.model_management.get_torch_device()
        prepared = prepare(run)
    except SetupError as e:
        if world.local_rank == 0:  # one message per node (rank 0 on a single node)
            sys.stderr.write(f"[quickstep] error: {e}\n")
            sys.stderr.flush()
        elif world.size > 1:
            # every rank hits the same check; an early exit here would make torchrun stop rank 0 before it has
            # printed the message, so wait for rank 0's exit to end this process group
            time.sleep(60)
        return EXIT_SETUP
    return train(prepared, world, device, log)


if __name__ == "__main__":
    sys.exit(main())
