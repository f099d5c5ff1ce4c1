"""Train the toy SD1-style UNet teacher: `python -m toyworld.train_unet` (70 + 30 + 80 min on this 2-core CPU).

`--arch v2` trains the v2 teacher instead (toyworld/train_unet_v2.py: cross-attention at 16x16 too, the v2 text
encoder, bf16 on CUDA, a wall-clock budget, resumable state): `python -m toyworld.train_unet --arch v2 --device cuda`.

Needs the trained VAE and CLIP (toyworld/weights). Latents of training scenes and the CLIP text embeddings of every
training prompt (and of the empty prompt) are computed once through ComfyUI's own VAE and CLIP objects, exactly as
VAEEncode/CLIPTextEncode would; then the UNet learns epsilon prediction on SD1's discrete schedule (ComfyUI's
`model_sampling`), with 10% caption dropout to the empty prompt's embedding so classifier-free guidance works.
The loss is Min-SNR-5 weighted (Hang et al., ICCV 2023; for epsilon prediction w = min(SNR, 5) / SNR with
SNR = 1/sigma^2), which spends less of a small compute budget on the nearly clean steps. The EMA of the weights is
what ships; `--init` continues from saved UNet weights. The shipped UNet is three phases (logs train_unet.jsonl,
train_unet_phase2.jsonl, train_unet_phase3.jsonl), each continuing the one before on fresh scenes; the third weights
the categories by the square root of their prompt counts (`scenes.sample_prompt`), because colour attribution and
position, most of the prompts, were what the teacher got wrong:
    python -m toyworld.train_unet
    python -m toyworld.train_unet --init toyworld/weights/unet.safetensors --run train_unet_phase2 --lr 3e-4 \
        --minutes 30 --seed 1
    python -m toyworld.train_unet --init toyworld/weights/unet.safetensors --run train_unet_phase3 --lr 5e-4 \
        --minutes 80 --seed 2 --weighting sqrt
"""

from __future__ import annotations

import copy
import time

import torch

from toyworld import _train, scenes

PHASE2 = ["--run", "train_unet_phase2", "--lr", "3e-4", "--minutes", "30", "--seed", "1"]  # after phase 1, with --init
#: after phase 2, with --init: fresh scenes weighted towards the compositional categories (scenes.sample_prompt)
PHASE3 = ["--run", "train_unet_phase3", "--lr", "5e-4", "--minutes", "80", "--seed", "2", "--weighting", "sqrt"]


@torch.no_grad()
def encode_latents(vae, imgs, batch: int = 256) -> torch.Tensor:
    """Model-space latents (VAE mean x SD1 scale 0.18215) of uint8 images [n, 64, 64, 3]."""
    fsm = vae.first_stage_model.float().eval()
    out = []
    for i in range(0, len(imgs), batch):
        x = torch.from_numpy(imgs[i:i + batch]).permute(0, 3, 1, 2).float() / 127.5 - 1
        out.append(fsm.quant_conv(fsm.encoder(x)).chunk(2, dim=1)[0] * 0.18215)
    return torch.cat(out)


@torch.no_grad()
def encode_texts(clip, texts: list[str]) -> torch.Tensor:
    return torch.cat([clip.encode_from_tokens(clip.tokenize(t)) for t in texts]).float()


def main(argv=None):
    """`--arch v2` trains the v2 teacher (`train_v2`); anything else is the v1 recipe above, unchanged."""
    import argparse
    import sys

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--arch", default="v1", choices=["v1", "v2"])
    known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    if known.arch == "v2":
        from . import train_unet_v2

        return train_unet_v2.main(rest)
    return train_v1(rest)


def train_v1(argv=None):
    args, curve = _train.setup("train_unet", argv, seed=0, steps=12000, batch=32, lr=1e-3,
                               data=20000, dropout=0.1, ema=0.999, threads=2, minutes=70.0, weights="", init="",
                               min_snr=5.0, save_every=1000, weighting="uniform")
    from toyworld import models

    src = models.Path(args.weights) if args.weights else None
    vae = models.load_vae(src / models.VAE_FILE if src else None)
    clip = models.load_clip(src / models.CLIP_DIR if src else None)
    t0 = time.time()
    imgs, ps = scenes.dataset(args.data, seed=args.seed + 300, weighting=args.weighting)
    latents = encode_latents(vae, imgs)
    texts = sorted({p.text for p in scenes.train_prompts()})
    index = {t: i for i, t in enumerate(texts)}
    conds = encode_texts(clip, texts + [""])  # last row: the empty prompt (dropout / CFG negative)
    labels = torch.tensor([index[p.text] for p in ps])
    curve.log(event="cached", latents=list(latents.shape), latent_std=latents.std().item(), texts=len(texts),
              seconds=round(time.time() - t0, 1))

    model = models.build_unet_model()
    dm = model.diffusion_model.float()
    torch.manual_seed(args.seed)
    _train.init_(dm)
    if args.init:
        import safetensors.torch

        dm.load_state_dict({k: v.float() for k, v in safetensors.torch.load_file(args.init).items()})
        curve.log(event="init", path=args.init)
    dm.requires_grad_(True).train()
    ema = copy.deepcopy(dm).eval().requires_grad_(False)
    params, ema_params = list(dm.parameters()), list(ema.parameters())
    sigmas = model.model_sampling.sigmas.float()
    opt = torch.optim.AdamW(dm.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    budget = _train.Budget(args.minutes)
    total = args.steps
    step, running = 0, None
    for step in range(total):
        lr = _train.cosine_lr(step, total, args.lr, warmup=200, time_fraction=budget.fraction)
        for g in opt.param_groups:
            g["lr"] = lr
        pick = torch.randint(0, len(latents), (args.batch,), generator=gen)
        x0 = latents[pick]
        lab = labels[pick].clone()
        lab[torch.rand(args.batch, generator=gen) < args.dropout] = len(texts)
        ctx = conds[lab]
        t = torch.randint(0, len(sigmas), (args.batch,), generator=gen)
        sigma = sigmas[t].view(-1, 1, 1, 1)
        noise = torch.randn(x0.shape, generator=gen)
        xc = (x0 + sigma * noise) / (sigma ** 2 + 1).sqrt()  # BaseModel's calculate_input for eps models
        eps = dm(xc, timesteps=t.float(), context=ctx)
        weight = (sigma ** 2 * args.min_snr).clamp(max=1.0) if args.min_snr > 0 else 1.0  # min(SNR, g) / SNR
        loss = (weight * (eps - noise) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dm.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 50 == 0 or step == total - 1:
            curve.log(step=step, loss=round(loss.item(), 5), smooth=round(running, 5), lr=lr)
        if args.save_every and step and step % args.save_every == 0:  # a stopped run keeps its last EMA
            save(ema, args.out)
        if budget.over:
            curve.log(event="time budget reached", step=step)
            break
    curve.log(event="done", steps=step + 1)
    save(ema, args.out)


def save(dm, out: str = "") -> None:
    from toyworld import models

    _train.save_weights(dm.state_dict(), models.UNET_FILE, out, dtype=torch.float16)  # fp16 on disk: 3.5 MB


if __name__ == "__main__":
    main()
