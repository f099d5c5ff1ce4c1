"""Retrain the toy family in order (VAE, CLIP, then the UNet on their outputs): `python -m toyworld.train_all`.

About three and a half hours on this 2-core CPU machine (VAE 15 min, CLIP 10, UNet 70 + 30 + 80). Writes
toyworld/weights/* and SHA256SUMS, and the loss curves to toyworld/logs/.

`--phases v2` runs the v2 phases instead (issue 15), on the shipped VAE: the v2 toy CLIP (`toyworld.train_text_v2`,
two phases, 30 + 20 min on one core or a minute each on a GPU), then the v2 teacher (`toyworld.train_unet --arch v2`, `UNET_V2_PHASES`: a GPU run of a few
minutes; `--device cpu` runs `UNET_V2_CPU_PHASES`, two phases of 95 + 146 min here, which made the shipped v2 teacher). `--phases all` runs v1 then v2. Phase names select single phases:
`--phases vae,clip,unet,clip_v2,unet_v2`.
"""

from __future__ import annotations

import argparse

from toyworld import models, train_clip, train_unet, train_vae

#: the v2 teacher's recipe (what benchmarks/device_toy_v2.py runs on the device, written to toyworld/weights)
UNET_V2_PHASES = [["--arch", "v2", "--minutes", "6", "--workers", "16", "--eval-every", "2500"]]
#: the same on this 2-core CPU (`--device cpu`): what the shipped unet_v2.safetensors is; phase 1 95 min (about 8,000 steps of
#: batch 32, the cosine sized to the rate measured at step 60 and the budget; a rerun repeats the recipe, not the bytes)
UNET_V2_CPU_PHASES = [["--arch", "v2", "--batch", "32", "--data", "60000", "--minutes", "95",
                       "--warmup", "300", "--ema", "0.999", "--save-every", "500", "--eval-every", "3000",
                       "--eval-prompts", "2", "--eval-images", "2", "--run", "train_unet_v2_cpu"],
                      # phase 2, from phase 1's weights: lr 5e-4 cosine over 18,008 steps (what --minutes 240 sized
                      # the shipped run's plan to on this CPU), stopped at step 13,500; its own state file
                      ["--arch", "v2", "--batch", "32", "--data", "60000", "--seed", "1", "--lr", "5e-4",
                       "--warmup", "200", "--steps", "18008", "--minutes", "1000", "--ema", "0.999",
                       "--save-every", "250", "--eval-every", "3000", "--eval-prompts", "2", "--eval-images", "2",
                       "--stop-after", "13500", "--state", "/tmp/unet_v2_cpu_phase2_state.safetensors",
                       "--run", "train_unet_v2_cpu_phase2", "--init", str(models.WEIGHTS / models.UNET_V2_FILE)]]
GROUPS = {"v1": ["vae", "clip", "unet"], "v2": ["clip_v2", "unet_v2"], "all": ["vae", "clip", "unet", "clip_v2",
                                                                               "unet_v2"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m toyworld.train_all", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", default="v1", help="v1 (default: the shipped v1 files), v2, all, or a comma "
                        "list of vae, clip, unet, clip_v2, unet_v2")
    parser.add_argument("--device", default="cuda", help="device of the v2 teacher's phase (cuda or cpu)")
    args = parser.parse_args(argv)
    phases = GROUPS.get(args.phases, args.phases.split(","))
    unknown = [p for p in phases if p not in GROUPS["all"]]
    if unknown:
        parser.error(f"unknown phase(s) {unknown}; expected v1, v2, all or a comma list of {GROUPS['all']}")
    if "vae" in phases:
        train_vae.main([])
    if "clip" in phases:
        train_clip.main([])
    if "unet" in phases:
        train_unet.main([])
        for phase in (train_unet.PHASE2, train_unet.PHASE3):
            train_unet.main(phase + ["--init", str(models.WEIGHTS / models.UNET_FILE)])
    if "clip_v2" in phases:
        from toyworld import train_text_v2

        train_text_v2.main([])
        train_text_v2.main(train_text_v2.PHASE2 + ["--init", str(models.WEIGHTS / models.CLIP_V2_DIR)])
    if "unet_v2" in phases:
        for phase in UNET_V2_CPU_PHASES if args.device == "cpu" else UNET_V2_PHASES:
            train_unet.main(phase + ["--device", args.device])


if __name__ == "__main__":
    main()
