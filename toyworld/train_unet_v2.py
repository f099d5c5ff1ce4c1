"""Train the v2 toy teacher (`models.UNET_V2_CONFIG`): `python -m toyworld.train_unet --arch v2 --device cuda`.

The v1 recipe (`toyworld/train_unet.py`: epsilon prediction on SD1's discrete schedule through ComfyUI's
`model_sampling`, Min-SNR-5 weights (Hang et al., ICCV 2023), 10% caption dropout for CFG, EMA shipped) on the v2
architecture, conditioned by the v2 toy CLIP (`--clip v2`, toyworld/weights/clip_v2; `--clip v1` for the old one), and
made for a short GPU lease:

* bf16 autocast and TF32 on CUDA (fp32 master weights, AdamW fused); the data (scenes drawn by `--workers`
  processes, VAE latents, CLIP contexts of every training prompt) lives on the device, so a step moves no data;
* `--minutes` is a wall-clock budget for the training loop: at step 60 the measured rate fixes the schedule's length
  (the steps that fit the budget, less a reserve for evaluations and saves), so the cosine decay ends on time; the
  loop also stops when the budget is spent;
* the state (weights, EMA, AdamW moments, both random streams, schedule) is saved atomically to `--state` every
  `--save-every` steps and at the end; a rerun with the same `--state` resumes exactly where it stopped;
* `--stop-after N` ends the loop after step N as an interrupted run would (after saving), for resume tests;
* every `--eval-every` steps the EMA is scored with toy-GenEval on *training* prompts (`--eval-prompts` per category,
  ComfyUI's KSampler path: euler / normal, `--eval-steps` steps, CFG `--cfg`): monitoring only, held-out prompts are
  scored once, after training, by benchmarks/device_toy_v2.py;
* the EMA goes to `--out`/unet_v2.safetensors (fp16), or to toyworld/weights with its hash recorded when `--out` is
  not given; the curve to toyworld/logs/<run>.jsonl.
"""

from __future__ import annotations

import copy
import multiprocessing
import time
from pathlib import Path

import numpy as np
import torch

from . import _train, scenes, train_state
from .train_unet import encode_texts

DEFAULTS = dict(seed=0, steps=200000, batch=1024, lr=1e-3, warmup=500, data=400000, dropout=0.1, ema=0.9995,
                threads=2, minutes=6.0, reserve=0.12, init="", min_snr=5.0, weighting="sqrt", device="cpu",
                clip="v2", state="", save_every=2000, eval_every=2500, eval_prompts=6, eval_images=4, eval_steps=25,
                cfg=4.0, workers=0, compile=0, stop_after=0)
CHUNK = 2000  # scenes per data job: the data is the same whatever the number of workers


def _chunk(n: int, seed: int, weighting: str) -> tuple[np.ndarray, list[str]]:
    imgs, ps = scenes.dataset(n, seed=seed, weighting=weighting)
    return imgs, [p.text for p in ps]


def make_data(n: int, seed: int, weighting: str, workers: int) -> tuple[np.ndarray, list[str]]:
    """n training scenes (uint8 [n, 64, 64, 3]) and their captions, drawn in chunks by `workers` processes."""
    jobs = [(min(CHUNK, n - i), seed * 100_003 + 400 + k, weighting) for k, i in enumerate(range(0, n, CHUNK))]
    if workers > 1:
        # spawn, not fork: the parent may hold a CUDA context (and torch's thread pools) by now
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.starmap(_chunk, jobs)
    else:
        parts = [_chunk(*j) for j in jobs]
    return np.concatenate([p[0] for p in parts]), [t for p in parts for t in p[1]]


@torch.no_grad()
def encode_latents(vae, imgs: np.ndarray, device: torch.device, batch: int = 2048) -> torch.Tensor:
    """Model-space latents (VAE mean x 0.18215, as `train_unet.encode_latents`), computed on `device`, kept there."""
    fsm = copy.deepcopy(vae.first_stage_model).float().eval().to(device)
    out = []
    for i in range(0, len(imgs), batch):
        x = torch.from_numpy(imgs[i:i + batch]).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
        out.append(fsm.quant_conv(fsm.encoder(x)).chunk(2, dim=1)[0] * 0.18215)
    return torch.cat(out)


def load_text_encoder(which: str):
    from . import models

    if which == "v1":
        return models.load_clip()
    if which == "v2":
        if not (models.WEIGHTS / models.CLIP_V2_DIR / "model.safetensors").is_file():
            raise FileNotFoundError("--clip v2 needs toyworld/weights/clip_v2 (python -m toyworld.train_text_v2); "
                                    "or pass --clip v1, or --clip DIR for a CLIPModel directory of the v2 format.")
        return models.load_clip_v2()
    return models.load_clip_v2(Path(which))


def eval_prompts(per_category: int) -> list[scenes.Prompt]:
    """The first `per_category` training prompts of each category (what benchmarks/toy_quality.py calls seen)."""
    train = scenes.train_prompts()
    return [p for c in scenes.CATEGORIES for p in [q for q in train if q.category == c][:per_category]]


@torch.no_grad()
def score_prompts(model, clip, vae, prompts, images: int, steps: int, cfg: float, seed: int = 1000) -> dict:
    """Toy-GenEval of `model` (a MODEL) on `prompts`, `images` each, through ComfyUI's KSampler path (euler/normal)."""
    from . import evaluate, generate

    results = []
    for i, p in enumerate(prompts):
        imgs = generate.sample(model, clip, vae, p.text, seed=seed + i, batch=images, steps=steps, cfg=cfg)
        results += [evaluate.score(img, p) for img in imgs]
    return evaluate.summarize(results)


def _patcher(model):
    import comfy.model_management
    import comfy.model_patcher

    return comfy.model_patcher.ModelPatcher(model, comfy.model_management.get_torch_device(),
                                            comfy.model_management.unet_offload_device())


def main(argv=None):
    import sys

    args_list = list(sys.argv[1:] if argv is None else argv)
    if "--device" in args_list and args_list[args_list.index("--device") + 1].startswith("cuda"):
        from host.inprocess import import_host  # ComfyUI on the GPU (setup below would bring it in with --cpu)
        from host.locate import find_host

        import_host(find_host("current"), cpu=False)
    args, curve = _train.setup("train_unet_v2", args_list, **DEFAULTS)
    from . import models

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    t0 = time.time()
    imgs, captions = make_data(args.data, args.seed, args.weighting, args.workers)
    curve.log(event="scenes", n=len(imgs), seconds=round(time.time() - t0, 1))
    vae = models.load_vae()
    clip = load_text_encoder(args.clip)
    latents = encode_latents(vae, imgs, dev)
    del imgs
    texts = sorted({p.text for p in scenes.train_prompts()})
    index = {t: i for i, t in enumerate(texts)}
    conds = encode_texts(clip, texts + [""]).to(dev)  # last row: the empty prompt (dropout / CFG negative)
    labels = torch.tensor([index[t] for t in captions], device=dev)
    curve.log(event="cached", latents=list(latents.shape), latent_std=latents.std().item(), texts=len(texts),
              context=list(conds.shape), seconds=round(time.time() - t0, 1))

    model = models.build_unet_model("v2")
    dm = model.diffusion_model.float()
    torch.manual_seed(args.seed)
    _train.init_(dm)
    if args.init:
        import safetensors.torch

        dm.load_state_dict({k: v.float() for k, v in safetensors.torch.load_file(args.init).items()})
        curve.log(event="init", path=args.init)
    dm.to(dev).requires_grad_(True).train()
    ema = copy.deepcopy(dm).eval().requires_grad_(False)
    params, ema_params = list(dm.parameters()), list(ema.parameters())
    curve.log(event="model", parameters=sum(p.numel() for p in params))
    sigmas = model.model_sampling.sigmas.float().to(dev)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, **({"fused": True} if cuda else {}))
    gen = torch.Generator().manual_seed(args.seed)
    dgen = torch.Generator(device=dev).manual_seed(args.seed + 1)  # noise, drawn where it is used
    gens = {"gen": gen, "dgen": dgen}
    out = Path(args.out) if args.out else None
    state = Path(args.state) if args.state else (out or Path("/tmp")) / "unet_v2_state.safetensors"
    modules = {"dm": dm, "ema": ema}
    meta = train_state.load_state(state, modules, opt, gens) or {"step": 0, "total": 0, "seconds": 0.0}
    if meta["step"]:
        curve.log(event="resumed", **meta)
    forward = torch.compile(dm) if args.compile else dm
    monitor_model = models.build_unet_model("v2")
    monitor = _patcher(monitor_model)
    step, total = meta["step"], meta["total"]
    budget_s = args.minutes * 60 - meta["seconds"]
    start = time.time()
    marks = {}
    running = torch.zeros((), device=dev)
    monitoring = bool(args.eval_every)

    def elapsed():
        return meta["seconds"] + time.time() - start

    def save_all():
        save(ema, args.out)
        train_state.save_state(state, modules, opt, gens, {"step": step, "total": total, "seconds": elapsed()})

    while step < (total or args.steps):
        if not total and step in (10, 60):  # schedule length from the measured rate (after warm-up steps)
            if cuda:
                torch.cuda.synchronize()
            marks[step] = time.time()
            if step == 60:
                rate = 50 / (marks[60] - marks[10])
                left = budget_s - (time.time() - start)
                total = int(min(args.steps, step + rate * left * (1 - args.reserve)))
                curve.log(event="schedule", steps=total, steps_per_s=round(rate, 2), batch=args.batch,
                          samples_per_s=round(rate * args.batch))
        lr = _train.cosine_lr(step, total or args.steps, args.lr, warmup=args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        pick = torch.randint(0, len(latents), (args.batch,), generator=gen).to(dev)
        drop = (torch.rand(args.batch, generator=gen) < args.dropout).to(dev)
        t = torch.randint(0, len(sigmas), (args.batch,), generator=gen).to(dev)
        x0 = latents[pick]
        ctx = conds[torch.where(drop, len(texts), labels[pick])]
        sigma = sigmas[t].view(-1, 1, 1, 1)
        noise = torch.randn(x0.shape, generator=dgen, device=dev)
        xc = (x0 + sigma * noise) / (sigma ** 2 + 1).sqrt()  # BaseModel's calculate_input for eps models
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            eps = forward(xc, timesteps=t.float(), context=ctx)
        weight = (sigma ** 2 * args.min_snr).clamp(max=1.0) if args.min_snr > 0 else 1.0  # min(SNR, g) / SNR
        loss = (weight * (eps.float() - noise) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
            running.lerp_(loss.detach(), 0.02 if step else 1.0)
        step += 1
        if step % 100 == 0 or step == 1:
            curve.log(step=step, loss=round(loss.item(), 5), smooth=round(running.item(), 5), lr=lr,
                      seconds=round(elapsed(), 1))
        if monitoring and step % args.eval_every == 0:
            t1 = time.time()
            monitor_model.diffusion_model.load_state_dict(ema.state_dict())
            try:
                summary = score_prompts(monitor, clip, vae, eval_prompts(args.eval_prompts), args.eval_images,
                                        args.eval_steps, args.cfg)
            except Exception as e:  # noqa: BLE001  monitoring must never cost a lease's training run
                curve.log(event="monitoring failed, training goes on without it", error=repr(e)[:500])
                monitoring = False
            else:
                curve.log(step=step, train_prompts={k: round(v, 3) for k, v in summary.items()},
                          eval_seconds=round(time.time() - t1, 1))
        if args.save_every and step % args.save_every == 0:
            save_all()
        if time.time() - start >= budget_s:
            curve.log(event="time budget reached", step=step)
            break
        if args.stop_after and step >= args.stop_after:  # as a run killed after its last save (tests resume)
            break
    save_all()
    curve.log(event="done", steps=step, total=total, seconds=round(elapsed(), 1))
    return step


def save(ema, out: str = "") -> None:
    from . import models

    _train.save_weights(ema.state_dict(), models.UNET_V2_FILE, out, dtype=torch.float16)  # 4.8 MB
