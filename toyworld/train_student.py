"""Distil the shipped toy teacher into a 1-4 step LoRA student with LADD (`distill/`), on a CPU.

    ~/.cache/quickstep/venv/bin/python -m toyworld.train_student            # ~20 min on one idle CPU thread

1. Synthetic data (LADD's recipe): the teacher sampled with CFG 4, 25 steps euler/normal (what the toy benchmark's
   teacher row runs) over the *training* prompts, `--per-prompt` seeds each, into `--data` (resumable).
2. LADD for `--steps` steps (or `--minutes` of wall clock when steps is 0), the same `distill.step.train_step` the
   QuickstepLADDTrain node calls; the full state is saved atomically every `--save-every` steps to
   `--data`/state.safetensors, and a rerun resumes from it exactly (a resumed run equals an uninterrupted one).
   A rerun with e.g. `--steps 3600 --phase "lr_g=1e-4,lr_d=1e-4,ema=0.999"` (learning rates, EMA, re-noise, R1, ...)
   continues the saved run in a new phase with those settings; the state then keeps them, so later resumes are exact
   again.
3. The LoRA (EMA weights) goes to toyworld/weights/student_lora.safetensors in core's LoRA format, and its SHA-256 into
   SHA256SUMS. The loss curve goes to toyworld/logs/train_student.jsonl (`--teacher v2`: train_student_v2.jsonl; each
   invocation writes its own; the committed file joins those of the shipped run, a note on top).

`--teacher v2` distils the v2 teacher (toyworld/weights/unet_v2.safetensors) with its text encoder (clip_v2) into
student_v2_lora.safetensors; its default `--data` folder is the v1 one + `_v2`. `--teacher-file` distils teacher
weights of either arch that are not shipped yet (a training run's output). The shipped v2 student is the defaults, then
two phases of a stronger discriminator (the default one stays near chance: README, LADD; benchmarks/results/ladd_v2.md),
then reward feedback from the toy match reward (`reward_weight`, loaded here when the run's setting is above 0):

    ... -m toyworld.train_student --teacher v2
    ... -m toyworld.train_student --teacher v2 --steps 4800 --phase "g_every=2,lr_d=1e-3"
    ... -m toyworld.train_student --teacher v2 --steps 7200 --phase "g_every=4,lr_d=2e-3"
    ... -m toyworld.train_student --teacher v2 --steps 8800 --phase "reward_weight=1.0"
    ... -m toyworld.train_student --teacher v2 --steps 11200

Experiments: pass `--run NAME` (the curve's name under toyworld/logs/) and `--out DIR`, so that the committed curve and
weights stay as they are.
"""

from __future__ import annotations

import time
from pathlib import Path

from ._train import setup

DEFAULTS = dict(threads=1, seed=0, per_prompt=16, data="/tmp/quickstep_toy_ladd", minutes=0.0, steps=2400,
                batch=8, rank=16, lr_g=5e-4, lr_d=5e-4, ema=0.99, warmup=100, g_every=1, loss="hinge",
                save_every=100, log_every=10, phase="", teacher="v1", teacher_file="")


def phase_overrides(text: str) -> dict:
    """`--phase "lr_g=1e-4,lr_d=1e-4,ema=0.999"` -> {name: value} of the `step.Config` fields a run may change on
    the way (not those that shape the LoRA, heads or grid)."""
    allowed = {"lr_g": float, "lr_d": float, "ema": float, "renoise_mean": float, "renoise_std": float,
               "r1_weight": float, "reward_weight": float, "grad_clip": float, "g_every": int, "warmup_steps": int}
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, _, value = item.partition("=")
        if key.strip() not in allowed or not value:
            raise SystemExit(f"--phase: {item!r} is not NAME=VALUE with NAME among {sorted(allowed)}")
        out[key.strip()] = allowed[key.strip()](value)
    return out


def main(argv=None):
    # a v2 run's curve is train_student_v2.jsonl: it must not rewrite the v1 student's committed curve
    args, curve = setup("train_student", argv, run=lambda a: "train_student" + ("_v2" if a.teacher == "v2" else ""),
                        **DEFAULTS)
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import harness  # the pack as the `quickstep` package, as ComfyUI imports it

    harness.register_pack()

    from quickstep.distill import dataset as ds
    from quickstep.distill import lora, state, step
    from quickstep.toyworld import models, scenes

    if args.teacher not in models.ARCHS:
        raise SystemExit(f"--teacher must be one of {models.ARCHS}; got {args.teacher!r}")
    v2 = args.teacher == "v2"
    # --teacher-file: teacher weights not shipped yet (a training run's --out)
    teacher = models.load_teacher_unet(args.teacher, Path(args.teacher_file) if args.teacher_file else None)
    clip = models.load_text_encoder(args.teacher)
    data_dir = Path(args.data + ("_v2" if v2 and args.data == DEFAULTS["data"] else ""))
    prompts = [p.text for p in scenes.train_prompts()]
    t0 = time.time()
    with torch.no_grad():
        made = ds.generate(teacher, clip, prompts, seed=args.seed, per_prompt=args.per_prompt, folder=data_dir,
                           width=128, height=128, steps=25, cfg=4.0, sampler_name="euler", scheduler="normal",
                           batch=args.per_prompt)
    curve.log(event="dataset", written=made, items=len(prompts) * args.per_prompt, seconds=round(time.time() - t0))
    data = ds.load(data_dir)
    ds.check_against(data, teacher, step.pooled_dim(teacher))

    state_file = data_dir / "state.safetensors"
    if state_file.is_file():
        run = state.load(state_file, teacher)
        overrides = phase_overrides(args.phase)  # a later phase of the run; optimiser moments and EMA carry on
        for key, value in overrides.items():
            setattr(run.config, key, value)
        run.config.validate()
        curve.log(event="resume", step=run.step, config=run.config.to_dict())
    else:
        if args.phase:
            raise SystemExit(f"--phase continues a saved run, but {state_file} does not exist; start the run first.")
        cfg = step.Config(rank=args.rank, seed=args.seed, lr_g=args.lr_g, lr_d=args.lr_d, ema=args.ema,
                          warmup_steps=args.warmup, g_every=args.g_every, loss=args.loss, bf16=False,
                          gradient_checkpointing=False)
        cfg.validate()
        params = lora.init_params(lora.target_modules(teacher), cfg.rank, torch.Generator().manual_seed(cfg.seed))
        run = state.State(model=teacher, config=cfg, identity=state.base_identity(teacher), lora=params)
    trainer = run.trainer()
    if run.config.reward_weight > 0:  # reward feedback from the toy match reward (trained on training-prompt scenes)
        from quickstep.reward.stack import RewardStack

        trainer.feedback = step.RewardFeedback(models.load_vae(),
                                               RewardStack([(models.load_toy_reward("cpu", "match"), 1.0)]))
    for opt, key in ((trainer.opt_g, "lr_g"), (trainer.opt_d, "lr_d")):  # loaded optimiser states bring their old rate
        for group in opt.param_groups:
            group["lr"] = getattr(run.config, key)
    history = list(run.history)
    start, budget = time.time(), args.minutes * 60
    while True:
        if args.steps and trainer.step >= args.steps:
            break
        if not args.steps and (budget <= 0 or time.time() - start >= budget):
            break
        out = step.train_step(trainer, data.sample_batch(args.batch, trainer.generator))
        out.pop("preview")
        history.append(out)
        if trainer.step % args.log_every == 0:
            recent = history[-args.log_every:]
            mean = {k: round(sum(h.get(k, 0.0) for h in recent) / len(recent), 4)
                    for k in ("loss_g", "loss_d", "acc_real", "acc_fake")}
            rewarded = [h["loss_reward"] for h in recent if "loss_reward" in h]  # generator steps only
            if rewarded:
                mean["loss_reward"] = round(sum(rewarded) / len(rewarded), 4)
            curve.log(step=trainer.step, **mean)
        if trainer.step % args.save_every == 0:
            state.save(state.State.of(trainer, run.identity, history), state_file)
    final = state.State.of(trainer, run.identity, history)
    state.save(final, state_file)
    out_dir = Path(args.out) if args.out else models.WEIGHTS
    name = models.STUDENT_V2_FILE if v2 else models.STUDENT_FILE
    target = out_dir / name
    state.atomic_save(lora.to_comfy_lora(final.student_lora(), final.config.lora_alpha), target,
                      {"quickstep": f"LADD toy student ({args.teacher} teacher), step {final.step}, "
                                    f"grid {final.config.grid_steps}"})
    if not args.out:
        models.record_hash(name)
    curve.log(event="done", step=final.step, file=str(target), seconds=round(time.time() - start))


if __name__ == "__main__":
    main()
