"""Train the toy CLIP contrastively on training scenes: `python -m toyworld.train_clip` (10 min on one core).

A transformers `CLIPModel` (text: vocab 49408 with ComfyUI's bundled SD1 tokenizer's ids, BOS 49406, EOS = pad 49407,
77 positions, quick_gelu, as ComfyUI's CLIP-L; vision: a 64x64 ViT with 8x8 patches). Saved as a transformers
directory (config.json, model.safetensors, preprocessor_config.json) in toyworld/weights/clip/. The text tower's keys
are the ones ComfyUI's `SD1ClipModel` loads, so the same file conditions the teacher.

Prompts repeat inside a batch, so the loss contrasts each image with the batch's *distinct* captions.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from toyworld import _train, scenes

MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP normalisation, what CLIPImageProcessor applies
STD = (0.26862954, 0.26130258, 0.27577711)


def hf_config():
    from transformers import CLIPConfig

    from toyworld import models

    text = dict(models.CLIP_TEXT, vocab_size=models.VOCAB, max_position_embeddings=models.MAX_LEN,
                bos_token_id=models.BOS, eos_token_id=models.EOS, pad_token_id=models.EOS, hidden_act="quick_gelu")
    vision = dict(models.CLIP_VISION, hidden_act="quick_gelu")
    text.pop("projection_dim")
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=models.CLIP_TEXT["projection_dim"])


def tokenize(texts: list[str]) -> torch.Tensor:
    """Token ids [n, 77] exactly as ComfyUI's SD1Tokenizer makes them (BOS, words, EOS, EOS padding)."""
    import comfy.sd1_clip

    tok = comfy.sd1_clip.SD1Tokenizer()
    out = []
    for t in texts:
        pairs = tok.tokenize_with_weights(t)["l"][0]
        out.append([p[0] for p in pairs])
    return torch.tensor(out, dtype=torch.long)


def preprocess(images_uint8: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def main(argv=None):
    args, curve = _train.setup("train_clip", argv, seed=0, steps=3000, batch=64, lr=1e-3, data=8000, threads=1,
                               minutes=10.0)
    from transformers import CLIPModel

    torch.manual_seed(args.seed)
    model = CLIPModel(hf_config()).train()
    prompts = scenes.train_prompts()
    texts = [p.text for p in prompts]
    index = {t: i for i, t in enumerate(texts)}
    ids = tokenize(texts)
    imgs, ps = scenes.dataset(args.data, seed=args.seed + 200)
    pixels = preprocess(imgs)
    labels = torch.tensor([index[p.text] for p in ps])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(args.seed)
    budget = _train.Budget(args.minutes)
    step = 0
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = _train.cosine_lr(step, args.steps, args.lr, time_fraction=budget.fraction)
        pick = torch.randint(0, len(pixels), (args.batch,), generator=gen)
        lab = labels[pick]
        uniq, inverse = torch.unique(lab, return_inverse=True)
        out = model(input_ids=ids[uniq], pixel_values=pixels[pick])
        logits = out.logits_per_image  # [batch, distinct captions]
        loss_i = torch.nn.functional.cross_entropy(logits, inverse)
        target = (inverse[None, :] == torch.arange(len(uniq))[:, None]).float()
        target = target / target.sum(1, keepdim=True)
        loss_t = -(target * logits.t().log_softmax(-1)).sum(-1).mean()
        loss = (loss_i + loss_t) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
        if step % 50 == 0 or step == args.steps - 1:
            acc = (logits.argmax(1) == inverse).float().mean().item()
            curve.log(step=step, loss=round(loss.item(), 4), acc=round(acc, 3), lr=opt.param_groups[0]["lr"],
                      logit_scale=round(model.logit_scale.exp().item(), 2))
        if budget.over:
            curve.log(event="time budget reached", step=step)
            break
    model.eval()
    curve.log(event="done", steps=step + 1, heldout_top1=heldout_accuracy(model))
    save(model, args.out)


@torch.no_grad()
def heldout_accuracy(model, n_per_prompt: int = 4) -> float:
    """Top-1 over all prompts (train + held-out) for scenes of held-out prompts: does the tower generalise?"""
    allp = scenes.all_prompts()
    ids = tokenize([p.text for p in allp])
    held = scenes.heldout_prompts()
    imgs = np.stack([np.round(scenes.make_scene(p, 10_000 + k).image * 255).astype(np.uint8)
                     for p in held for k in range(n_per_prompt)])
    want = torch.tensor([allp.index(p) for p in held for _ in range(n_per_prompt)])
    logits = model(input_ids=ids, pixel_values=preprocess(imgs)).logits_per_image
    return round((logits.argmax(1) == want).float().mean().item(), 3)


def save(model, out: str = "") -> None:
    from toyworld import models

    directory = (models.Path(out) if out else models.WEIGHTS) / models.CLIP_DIR
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": 64},
        "do_center_crop": True, "crop_size": {"height": 64, "width": 64}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(MEAN), "image_std": list(STD),
        "do_convert_rgb": True, "resample": 3}, indent=2) + "\n")
    if not out:
        for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
            models.record_hash(f"{models.CLIP_DIR}/{name}")


if __name__ == "__main__":
    main()
