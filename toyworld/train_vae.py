"""Train the toy 4x KL autoencoder on training scenes: `python -m toyworld.train_vae` (15 min on this 2-core CPU).

Loss: L1 + MSE on pixels in [-1, 1] plus a small KL term. Afterwards the latent scale is folded into the 1x1
quant/post-quant convolutions so that latents x 0.18215 (SD1's latent format) have unit standard deviation.
`--init` continues from saved weights; `--decoder-only 1` then trains only the decoder, so latents (and a UNet
trained on them) stay valid.
"""

from __future__ import annotations

import numpy as np
import torch

from toyworld import _train, scenes


def main(argv=None):
    args, curve = _train.setup("train_vae", argv, seed=0, steps=6000, batch=8, crop=32,
                               lr=1e-3, kl=1e-6, data=6000, threads=2, minutes=15.0, init="",
                               decoder_only=0)
    from toyworld import models

    imgs, _ = scenes.dataset(args.data, seed=args.seed + 100)
    data = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
    vae = models.build_vae()
    fsm = vae.first_stage_model.float().train()
    torch.manual_seed(args.seed)
    _train.init_(fsm)  # Comfy's ops skip reset_parameters(): initialise explicitly
    if args.init:  # continue from saved weights (a second phase; see the module docstring)
        import safetensors.torch

        fsm.load_state_dict(safetensors.torch.load_file(args.init))
        curve.log(event="init", path=args.init)
    if args.decoder_only:  # latents stay exactly as they are (a UNet trained on them stays valid)
        fsm.encoder.requires_grad_(False)
        fsm.quant_conv.requires_grad_(False)
    params = [p for p in fsm.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    budget = _train.Budget(args.minutes)
    step = 0
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = _train.cosine_lr(step, args.steps, args.lr, time_fraction=budget.fraction)
        x = data[torch.randint(0, len(data), (args.batch,), generator=gen)]
        if args.crop < scenes.SIZE:  # fully convolutional: random crops teach the same local job 4x cheaper
            i, j = torch.randint(0, scenes.SIZE - args.crop + 1, (2,), generator=gen).tolist()
            x = x[:, :, i:i + args.crop, j:j + args.crop]
        moments = fsm.quant_conv(fsm.encoder(x))
        mean, logvar = moments.chunk(2, dim=1)
        logvar = logvar.clamp(-30, 20)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen)
        rec = fsm.decoder(fsm.post_quant_conv(z))
        l1 = (rec - x).abs().mean()
        mse = ((rec - x) ** 2).mean()
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean()
        loss = l1 + mse + args.kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            curve.log(step=step, loss=round(loss.item(), 5), l1=round(l1.item(), 5), mse=round(mse.item(), 5),
                      kl=round(kl.item(), 2), lr=opt.param_groups[0]["lr"])
        if budget.over:
            curve.log(event="time budget reached", step=step)
            break
    fsm.eval()
    with torch.no_grad():
        mean = torch.cat([fsm.quant_conv(fsm.encoder(data[i:i + 256])).chunk(2, dim=1)[0]
                          for i in range(0, min(2048, len(data)), 256)])
        std = mean.std().item()
        scale = 1.0 if args.decoder_only else (1 / 0.18215) / std  # latents * 0.18215 ~ unit std (SD1 format)
        c = fsm.embed_dim
        fsm.quant_conv.weight[:c] *= scale
        fsm.quant_conv.bias[:c] *= scale
        fsm.quant_conv.bias[c:] += 2 * np.log(scale)  # logvar of the scaled posterior
        fsm.post_quant_conv.weight /= scale
        check = fsm.quant_conv(fsm.encoder(data[:256])).chunk(2, dim=1)[0]
        rec = fsm.decoder(fsm.post_quant_conv(check))
        val_mse = ((rec - data[:256]) ** 2).mean().item()
    curve.log(event="done", latent_std_before=std, latent_std_after=check.std().item(), val_mse=val_mse, steps=step + 1)
    save(fsm, args.out)


def save(fsm, out: str = "") -> None:
    from toyworld import models

    _train.save_weights(fsm.state_dict(), models.VAE_FILE, out)


if __name__ == "__main__":
    main()
