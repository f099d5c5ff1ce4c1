"""LADD Export: a graph's LADD run as a config for the training command (`distill/train.py`, one process or N under
torchrun), and the exact command line. The command saves states that LADD Resume continues, so a run can go graph ->
cluster -> graph."""

from __future__ import annotations

import logging
from pathlib import Path

from comfy_api.latest import io

from . import validation
from .compat import ADVANCED, schema
from .ladd import CATEGORY, DEFAULT_PREFIX, LADDDataset, LADDState

log = logging.getLogger("quickstep")

DEFAULT_CONFIG = "ladd/train_config"
TOY_BASE = "toy/teacher"
_FOLDERS = {"checkpoints": "checkpoint", "diffusion_models": "diffusion_model"}


def base_options() -> list[str]:
    """The files a MODEL can be loaded from, as '<folder>/<name>' (the toy teacher first: it is always there)."""
    import folder_paths

    options = [TOY_BASE]
    for folder in _FOLDERS:
        if folder in folder_paths.folder_names_and_paths:
            options += [f"{folder}/{name}" for name in folder_paths.get_filename_list(folder)]
    return options


def base_spec(option: str) -> dict:
    """The config's 'base' for a `base_options` entry."""
    folder, name = option.split("/", 1)
    if folder == "toy":
        return {"loader": "toy", "name": name}
    return {"loader": _FOLDERS[folder], "name": name}


class LADDExport(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="QuickstepLADDExport",
            display_name="LADD Export (multi-GPU command)",
            category=CATEGORY,
            is_output_node=True,
            search_aliases=["ladd torchrun", "ladd ddp", "multi gpu training", "distributed distillation",
                            "ladd cluster"],
            description="Writes a LADD run (the settings of LADD Init, or a trained state) and its dataset as a "
                        "config file in the output folder, and shows the exact command that trains it outside the "
                        "graph: one process, or one per GPU under torchrun (PyTorch DDP), with the same training "
                        "step and the same LoRA and state files as LADD Train and LADD Save. Resume the state it "
                        "saves with LADD Resume. N processes with global batch B train as one with batch B.",
            inputs=[
                LADDState.Input("state", tooltip="From LADD Init (a new run), LADD Train or LADD Resume (the command "
                                                 "continues from its step)."),
                LADDDataset.Input("dataset", tooltip="From LADD Dataset: the command reads the same folder."),
                io.Combo.Input("base", options=base_options(), default=TOY_BASE,
                               tooltip="The file the state's MODEL was loaded from (checkpoints/ as Load Checkpoint, "
                                       "diffusion_models/ as Load Diffusion Model, or the toy teacher). The command "
                                       "loads it with ComfyUI's loaders and refuses a different model, e.g. one with "
                                       "LoRAs applied."),
                io.Int.Input("steps", default=1000, min=1, max=10000000,
                             tooltip="Training steps the command runs (it trains until the state's step count is "
                                     "the state's step plus this)."),
                io.Int.Input("batch_size", default=8, min=1, max=65536,
                             tooltip="Global batch per step, over all processes (each trains batch_size / "
                                     "processes); must be a multiple of the number of processes."),
                io.Int.Input("save_every", default=100, min=0, max=10000000,
                             tooltip="The command saves the LoRA and the state every this many steps (0 = only at "
                                     "the end), atomically, from rank 0."),
                io.Int.Input("processes", default=1, min=1, max=1024,
                             tooltip="Processes on this machine (torchrun --nproc_per_node): one per GPU. 1 runs "
                                     "without torchrun."),
                io.String.Input("filename", default=DEFAULT_CONFIG,
                                tooltip="The config's name in the output folder ('.json' is added), e.g. "
                                        "'ladd/train_config'. Written atomically, replaced on each run."),
                io.String.Input("save_prefix", default=DEFAULT_PREFIX, optional=True, **ADVANCED,
                                tooltip="Names of the command's saves: output/<save_prefix>_state.safetensors (for "
                                        "LADD Resume) and models/loras/<save_prefix>.safetensors (for core's LoRA "
                                        "loaders)."),
            ],
            outputs=[
                io.String.Output(display_name="command", tooltip="The exact command line that runs the training."),
                io.String.Output(display_name="config", tooltip="The config's path under the output folder."),
            ],
        )

    @classmethod
    def validate_inputs(cls, base=None, steps=None, batch_size=None, save_every=None, processes=None, filename=None,
                        save_prefix=None):
        # base is checked here too: the minimum pin skips ComfyUI's own list check for every input of a V3 node
        # with validate_inputs
        from ..folders import check_name, message

        checked = validation.check(cls, base=base, steps=steps, batch_size=batch_size, save_every=save_every,
                                   processes=processes, filename=filename, save_prefix=save_prefix)
        if checked is not True:
            return checked
        for name, value, what in (("filename", filename, "a file name inside the output folder"),
                                  ("save_prefix", save_prefix, "a file name prefix")):
            if value is not None:
                checked = message(check_name, value, input=name, what=what)
                if checked is not True:
                    return checked
        return True

    @classmethod
    def execute(cls, state, dataset, base, steps, batch_size, save_every, processes, filename,
                save_prefix=DEFAULT_PREFIX) -> io.NodeOutput:
        import folder_paths
        import torch

        from ..distill import dataset as ds
        from ..distill import state as st
        from ..distill import step as sp
        from ..distill import train
        from ..folders import inside

        validation.require(cls, base=base, steps=steps, batch_size=batch_size, save_every=save_every,
                           processes=processes, filename=filename, save_prefix=save_prefix)
        checked = cls.validate_inputs(filename=filename, save_prefix=save_prefix)
        if checked is not True:
            raise ValueError(checked)
        if state.config.reward_weight > 0:
            raise ValueError(f"state: this run has reward_weight {state.config.reward_weight:g} (LADD Init); the "
                             "command does not load reward models. Train it in the graph with LADD Train, or start "
                             "a run with reward_weight 0 to export.")
        if batch_size % processes:  # here, not in validate_inputs: each widget's whole range stays valid on its own
            raise ValueError(f"batch_size {batch_size} does not divide among {processes} processes: each process "
                             f"trains batch_size / processes samples. Use a batch_size that is a multiple of "
                             f"{processes}, or fewer processes.")
        sp.check_model(state.model)
        ds.check_against(dataset, state.model, sp.pooled_dim(state.model))
        output = Path(folder_paths.get_output_directory())
        name = filename[:-len(".json")] if filename.endswith(".json") else filename
        config = inside(output, f"{name}.json", input="filename", what="a file name inside the output folder",
                        must_exist=False)
        inside(output, f"{save_prefix}_state.safetensors", input="save_prefix", what="a prefix inside the output "
               "folder", must_exist=False)
        resume = None
        if state.step > 0:  # a trained state: the command starts from a copy of it (a new run needs only the settings)
            resume = config.with_name(f"{config.stem}_start_state.safetensors")
            with torch.inference_mode(False):
                st.save(state, resume)
        train.write_config(config, base=base_spec(base), dataset=Path(dataset.folder), output=output,
                           loras=Path(folder_paths.get_folder_paths("loras")[0]), save_prefix=save_prefix,
                           steps=state.step + steps, batch_size=batch_size, save_every=save_every,
                           training=state.config.to_dict(), identity=state.identity, resume=resume,
                           comfyui=Path(folder_paths.__file__).resolve().parent)
        line = train.command(config, processes)
        config_name = str(config.relative_to(output)).replace("\\", "/")
        log.info("[quickstep] LADD config %s; run: %s", config, line)
        text = (f"step {state.step} -> {state.step + steps}, global batch {batch_size} on {processes} process(es). "
                f"Run:\n{line}\nIt saves output/{save_prefix}_state.safetensors (LADD Resume) and "
                f"models/loras/{save_prefix}.safetensors.")
        return io.NodeOutput(line, config_name, ui={"text": [text]})
