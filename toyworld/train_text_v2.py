"""Train the v2 toy CLIP, a text encoder that binds: `python -m toyworld.train_text_v2` (30 min on one core), then
phase 2 (`PHASE2`, `--init toyworld/weights/clip_v2`); on a GPU (`--device cuda`) each phase takes about a minute.

Same format as the v1 toy CLIP (`toyworld/train_clip.py`: a transformers `CLIPModel` directory on ComfyUI's bundled
SD1 tokenizer, whose text tower loads unchanged into ComfyUI's `SD1ClipModel`), one text layer deeper, written to
toyworld/weights/clip_v2/. The v1 CLIP stays shipped (the weak baseline reward and the v1 teacher's text encoder).

v1 was trained contrastively on the batch's captions only and its text features barely tell "A left of B" from
"A right of B" (cosine 0.998). v2 is trained on *training* prompts only (held-out prompts are never drawn, nor used
as a caption or a negative) with three losses:

* contrast of each image against all training captions at once (every hard negative is always in the softmax);
  "A left of B" and "B right of A" (and two objects listed in either order) are the same statement, both positive;
* a hard-negative term: each image against its own caption and only its hard negatives (`mismatch.prompt_edits`:
  flipped relation, objects swapped, swapped colours, wrong count, wrong colour, wrong shape), and batches built in
  pairs (an image, then an image of one of its hard negatives), so the towers must resolve exactly those;
* a text-side supervised contrast (Khosla et al., NeurIPS 2020) over all training captions, two views each (the
  pooled feature and one later padding position): the same statement is positive, every other caption (hard
  negatives included) negative, temperature `--tau`. Without it the pooled features keep one large shared component
  and the hard negatives stay at cosine 0.99 even when a linear read-out tells them apart;
* slot heads on the text features: linear read-outs of the prompt's structure in a canonical frame (category, count,
  axis, then the first object = the left/upper one of a relation or the lower shape index of a pair, and the second:
  shape and colour each). At the pooled (first EOS) feature, as retrieval and rewards use it, and at a random later
  padding position, because the teacher cross-attends to all 77 token features.

Images of left/right scenes are mirrored half the time (the caption becomes its mirror's, when that is a training
prompt). The state is saved atomically to `--state` every `--save-every` steps; a rerun with the same `--state`
resumes where it stopped (weights, moments, data stream; the learning rate decays over the steps that fit `--minutes`
at the rate of the first steps, or the minutes themselves if they run out first, as the v1 scripts do).
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import _train, mismatch, scenes, train_state
from .train_clip import preprocess, tokenize

DEFAULTS = dict(seed=0, steps=20000, batch=64, lr=1e-3, data=12000, threads=1, minutes=30.0, hard=1.0, slots=1.0,
                text=1.0, tau=0.1, extra=0, init="", device="cpu", save_every=250, eval_every=500, state="/tmp/quickstep_clip_v2_state.safetensors")
#: phase 2, after phase 1 (with `--init toyworld/weights/clip_v2`): the text losses also on captions outside the grammar
PHASE2 = ["--extra", "128", "--minutes", "20", "--seed", "1", "--run", "train_text_v2_phase2",
          "--state", "/tmp/quickstep_clip_v2_phase2_state.safetensors"]
SLOT_SIZES = (len(scenes.CATEGORIES), 3, 3, len(scenes.SHAPES), 1 + len(scenes.COLORS), 1 + len(scenes.SHAPES),
              1 + len(scenes.COLORS))


def hf_config():
    from transformers import CLIPConfig

    from . import models

    text = dict(models.CLIP_TEXT_V2, vocab_size=models.VOCAB, max_position_embeddings=models.MAX_LEN,
                bos_token_id=models.BOS, eos_token_id=models.EOS, pad_token_id=models.EOS, hidden_act="quick_gelu")
    vision = dict(models.CLIP_VISION_V2, hidden_act="quick_gelu")
    text.pop("projection_dim")
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=models.CLIP_TEXT_V2["projection_dim"])


def slots(p: scenes.Prompt) -> tuple[int, ...]:
    """The prompt's structure in a canonical frame; equal for two captions of the same statement."""
    objs = list(p.objects)
    axis = 0
    if p.category == "position":
        axis = 1 if p.relation in ("left of", "right of") else 2
        if p.relation in ("right of", "below"):
            objs = objs[::-1]  # first = left / upper object
    elif len(objs) == 2:
        objs.sort(key=lambda o: (scenes.SHAPES.index(o.shape), scenes.COLORS.index(o.color) if o.color else -1))

    def colour(o):
        return 0 if o.color is None else 1 + scenes.COLORS.index(o.color)

    second = (1 + scenes.SHAPES.index(objs[1].shape), colour(objs[1])) if len(objs) == 2 else (0, 0)
    return (scenes.CATEGORIES.index(p.category), {1: 0, 2: 1, 3: 2}[p.count], axis,
            scenes.SHAPES.index(objs[0].shape), colour(objs[0]), *second)


def extended_captions() -> list[tuple[str, tuple[int, ...]]]:
    """(text, statement) of captions *outside* the grammar in its words and structure: relations between coloured
    or equal shapes, coloured counts, two colours of one shape. Text only (no scenes), for the text losses of phase
    2: 89 training captions are few enough for a transformer to memorise instead of compose, and then it misreads
    held-out captions. None of these is a held-out caption, nor any caption of the grammar."""
    grammar = {p.text for p in scenes.all_prompts()}
    Obj, Prompt = scenes.Obj, scenes.Prompt
    colours = (None, *scenes.COLORS)
    out = {}
    for a in scenes.SHAPES:
        for b in scenes.SHAPES:
            for ca in colours:
                for cb in colours:
                    for r in scenes.RELATIONS:
                        p = Prompt("position", (Obj(a, ca), Obj(b, cb)), relation=r)
                        out[p.text] = slots(p)
    for s in scenes.SHAPES:
        for n, word in scenes.NUMBERS.items():
            for c in scenes.COLORS:
                out[f"a photo of {word} {c} {s}s"] = slots(Prompt("counting", (Obj(s, c),), count=n))
        for ca in scenes.COLORS:
            for cb in scenes.COLORS:
                if ca != cb:
                    p = Prompt("color_attr", (Obj(s, ca), Obj(s, cb)))
                    out[p.text] = slots(p)
    return sorted((t, k) for t, k in out.items() if t not in grammar)


def mirrored(p: scenes.Prompt) -> scenes.Prompt:
    """The prompt of a scene of `p` mirrored left-right (circles, squares and upright triangles are symmetric)."""
    if p.relation in ("left of", "right of"):
        return scenes.Prompt(p.category, p.objects, p.count, mismatch.OPPOSITE[p.relation])
    return p


class Tables:
    """Training captions, their statements (meaning ids), hard-negative and mirror maps, all over training prompts."""

    def __init__(self):
        self.prompts = scenes.train_prompts()
        self.texts = [p.text for p in self.prompts]
        keys = [slots(p) for p in self.prompts]
        uniq = sorted(set(keys))
        self.meaning = torch.tensor([uniq.index(k) for k in keys])  # [P]
        self.slot_targets = torch.tensor(keys)  # [P, 7]
        by_key = {k: i for i, k in enumerate(uniq)}
        n = len(self.prompts)
        self.hard = torch.zeros(n, n, dtype=torch.bool)  # [own prompt, candidate]: a hard negative of own
        for i, p in enumerate(self.prompts):
            for kind in mismatch.PROMPT_EDITS:
                for q in mismatch.prompt_edits(p, kind):
                    k = slots(q)
                    if k != keys[i]:
                        self.hard[i] |= torch.tensor([kk == k for kk in keys])
        mirror = [by_key.get(slots(mirrored(p)), -1) for p in self.prompts]  # meaning id of the mirror, -1: none
        first = {int(m): i for i, m in reversed(list(enumerate(self.meaning.tolist())))}
        self.mirror_prompt = torch.tensor([first[m] if m >= 0 else -1 for m in mirror])


def text_features(model, ids: torch.Tensor, gen: torch.Generator | None = None):
    """(pooled projected features [n, d], projected features at one random position at/after EOS [n, d])."""
    out = model.text_model(input_ids=ids)
    pooled = model.text_projection(out.pooler_output)
    if gen is None:
        return pooled, None
    from . import models

    eos = (ids == models.EOS).int().argmax(-1)
    offset = (torch.rand(len(ids), generator=gen).to(ids.device) * (ids.shape[1] - eos)).long()
    later = out.last_hidden_state[torch.arange(len(ids)), (eos + offset).clamp(max=ids.shape[1] - 1)]
    return pooled, model.text_projection(later)


def image_features(model, pixels):
    return model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)


def lse_masked(logits, mask, dim):
    return torch.logsumexp(logits.masked_fill(~mask, float("-inf")), dim=dim)


def text_contrast(pooled, later, meaning, tau: float):
    """Supervised contrast of the captions' two views: positives share the statement (`meaning`), the self pair
    excluded."""
    z = F.normalize(torch.cat([pooled, later]), dim=-1)
    m = torch.cat([meaning, meaning])
    sim = z @ z.t() / tau
    other = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    pos = (m[:, None] == m[None, :]) & other
    return (lse_masked(sim, other, 1) - lse_masked(sim, pos, 1)).mean()


def main(argv=None):
    args, curve = _train.setup("train_text_v2", argv, **DEFAULTS)
    from transformers import CLIPModel

    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    tab = Tables()  # masks and tables stay on the CPU (batch building); what the losses use moves to `dev`
    ids = tokenize(tab.texts).to(dev)
    t0 = time.time()
    imgs, ps = scenes.dataset(args.data, seed=args.seed + 700, weighting="sqrt")
    pixels = preprocess(imgs)
    index = {t: i for i, t in enumerate(tab.texts)}
    labels = torch.tensor([index[p.text] for p in ps])
    by_meaning = {}
    for i, m in enumerate(tab.meaning[labels].tolist()):
        by_meaning.setdefault(m, []).append(i)
    curve.log(event="data", images=len(pixels), prompts=len(tab.texts), meanings=len(by_meaning),
              seconds=round(time.time() - t0, 1))

    torch.manual_seed(args.seed)
    model = CLIPModel(hf_config()).train()
    if args.init:  # a later phase: continue from a saved v2 directory (fresh heads and moments)
        model.load_state_dict(CLIPModel.from_pretrained(args.init).state_dict())
        curve.log(event="init", path=args.init)
    extended = extended_captions() if args.extra else []
    if extended:
        keys = {k: i for i, k in enumerate(sorted({tuple(k) for k in tab.slot_targets.tolist()}))}
        assert len(keys) == int(tab.meaning.max()) + 1
        ext_ids = tokenize([t for t, _ in extended]).to(dev)
        ext_slots = torch.tensor([k for _, k in extended])
        ext_keys = sorted({k for _, k in extended} - set(keys))
        ext_meaning = torch.tensor([keys.get(k, len(keys) + ext_keys.index(k) if k in ext_keys else 0)
                                    for _, k in extended])
        curve.log(event="extended captions", n=len(extended))
    heads = torch.nn.ModuleList(torch.nn.Linear(model.config.projection_dim, n) for n in SLOT_SIZES)
    model.to(dev)
    heads.to(dev)
    opt = torch.optim.AdamW(list(model.parameters()) + list(heads.parameters()), lr=args.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(args.seed)
    modules = {"model": model, "heads": heads}
    meta = train_state.load_state(args.state, modules, opt, gen) or {"step": 0, "total": 0}
    if meta["step"]:
        curve.log(event="resumed", **meta)
    step, total, started = meta["step"], meta["total"], time.time()
    budget = args.minutes * 60

    def elapsed():
        return meta.get("seconds", 0.0) + time.time() - started

    while step < (total or args.steps) and elapsed() < budget:
        if not total and step == 20:  # schedule length from the measured rate, fixed from here on (and on resume)
            rate = 20 / (time.time() - started)
            total = int(min(args.steps, rate * args.minutes * 60))
            curve.log(event="schedule", steps=total, steps_per_s=round(rate, 2))
        # the decay follows whichever runs out first, steps or minutes: on a shared CPU the rate drifts
        lr = _train.cosine_lr(step, total or args.steps, args.lr, warmup=200, time_fraction=elapsed() / budget)
        for g in opt.param_groups:
            g["lr"] = lr
        half = args.batch // 2
        pick = torch.randint(0, len(pixels), (half,), generator=gen)
        partners = []
        for i in pick.tolist():  # an image of one of its hard negatives (a random image when it has none)
            hard = tab.hard[labels[i]].nonzero().flatten()
            if len(hard):
                m = int(tab.meaning[hard[torch.randint(0, len(hard), (1,), generator=gen)]])
                pool = by_meaning.get(m)
                if pool:
                    partners.append(pool[int(torch.randint(0, len(pool), (1,), generator=gen))])
                    continue
            partners.append(int(torch.randint(0, len(pixels), (1,), generator=gen)))
        pick = torch.cat([pick, torch.tensor(partners)])
        x, lab = pixels[pick].clone(), labels[pick].clone()
        flip = (torch.rand(len(pick), generator=gen) < 0.5) & (tab.mirror_prompt[lab] >= 0)
        x[flip] = x[flip].flip(-1)
        lab[flip] = tab.mirror_prompt[lab[flip]]

        tfeat, tlater = text_features(model, ids, gen)
        ifeat = image_features(model, x.to(dev))
        logits = model.logit_scale.exp() * F.normalize(ifeat, dim=-1) @ F.normalize(tfeat, dim=-1).t()  # [B, P]
        pos = (tab.meaning[lab][:, None] == tab.meaning[None, :]).to(dev)
        loss_i = (torch.logsumexp(logits, 1) - lse_masked(logits, pos, 1)).mean()
        cols = pos.any(0)
        loss_t = (torch.logsumexp(logits[:, cols], 0) - lse_masked(logits[:, cols], pos[:, cols], 0)).mean()
        hard = tab.hard[lab].to(dev)
        has = hard.any(1)
        loss_h = (lse_masked(logits[has], (pos | hard)[has], 1) - lse_masked(logits[has], pos[has], 1)).mean()
        targets, meaning = tab.slot_targets, tab.meaning
        if extended:  # the text losses also on a draw of captions outside the grammar
            e = torch.randint(0, len(extended), (args.extra,), generator=gen)
            efeat, elater = text_features(model, ext_ids[e.to(dev)], gen)
            tfeat_all, tlater_all = torch.cat([tfeat, efeat]), torch.cat([tlater, elater])
            targets, meaning = torch.cat([targets, ext_slots[e]]), torch.cat([meaning, ext_meaning[e]])
        else:
            tfeat_all, tlater_all = tfeat, tlater
        targets, meaning = targets.to(dev), meaning.to(dev)
        loss_s = 0.0
        for feats in (tfeat_all, tlater_all):
            for k, head in enumerate(heads):
                loss_s = loss_s + F.cross_entropy(head(feats), targets[:, k]) / len(heads)
        loss_x = text_contrast(tfeat_all, tlater_all, meaning, args.tau)
        loss = (loss_i + loss_t) / 2 + args.hard * loss_h + args.slots * loss_s / 2 + args.text * loss_x
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
        step += 1
        if step % 50 == 0 or step == 1:
            curve.log(step=step, loss=round(loss.item(), 4), contrast=round(loss_i.item(), 4),
                      hard=round(loss_h.item(), 4), slots=round(loss_s.item() / 2, 4),
                      text=round(loss_x.item(), 4), lr=lr,
                      logit_scale=round(model.logit_scale.exp().item(), 2))
        if args.eval_every and step % args.eval_every == 0:
            curve.log(step=step, **evaluate_encoder(model))
            model.train()
        if args.save_every and step % args.save_every == 0:
            train_state.save_state(args.state, modules, opt, gen, {"step": step, "total": total,
                                                                   "seconds": elapsed()})
    if args.state:  # the end too: a rerun after a finished phase saves the same weights again without training
        train_state.save_state(args.state, modules, opt, gen, {"step": step, "total": total, "seconds": elapsed()})
    model.eval()
    curve.log(event="done", steps=step, **evaluate_encoder(model))
    save(model, args.out)


# --------------------------------------------------------------------------- figures

def pairs() -> dict[str, list[tuple[scenes.Prompt, scenes.Prompt]]]:
    """The hard-negative caption pairs the issue quotes, over the whole grammar (plus paraphrases, which should
    stay close): flipped relation, objects swapped, two vs three, swapped colours."""
    allp = scenes.all_prompts()
    valid = set(allp)
    out = {"flipped relation": [], "objects swapped": [], "two vs three": [], "swapped colours": [],
           "paraphrase (same statement)": []}
    for p in allp:
        if p.category == "position":
            out["flipped relation"] += [(p, q) for q in mismatch.prompt_edits(p, "flipped_relation")]
            out["objects swapped"] += [(p, q) for q in mismatch.prompt_edits(p, "swapped_objects")]
        if p.category == "counting" and p.count == 2:
            out["two vs three"] += [(p, q) for q in mismatch.prompt_edits(p, "wrong_count")]
        if p.category == "color_attr":
            out["swapped colours"] += [(p, q) for q in mismatch.prompt_edits(p, "swapped_colours")]
        q = mismatch.paraphrase(p)
        if q is not None and q in valid and p.category == "position":
            out["paraphrase (same statement)"].append((p, q))
    return out


@torch.no_grad()
def evaluate_encoder(model, n_per_prompt: int = 4) -> dict:
    """Mean cosine of the pooled projected text features per pair kind, and held-out retrieval top-1 (images of
    held-out prompts against every caption of the grammar: exact caption, and same statement)."""
    model.eval()
    allp = scenes.all_prompts()
    dev = next(model.parameters()).device
    ids = tokenize([p.text for p in allp]).to(dev)
    feats = F.normalize(text_features(model, ids)[0], dim=-1).cpu()
    at = {p: i for i, p in enumerate(allp)}
    out = {}
    for name, prs in pairs().items():
        out[name] = round(float(np.mean([float(feats[at[a]] @ feats[at[b]]) for a, b in prs])), 3)
    held = scenes.heldout_prompts()
    imgs = np.stack([np.round(scenes.make_scene(p, 10_000 + k).image * 255).astype(np.uint8)
                     for p in held for k in range(n_per_prompt)])
    want = torch.tensor([at[p] for p in held for _ in range(n_per_prompt)])
    logits = F.normalize(image_features(model, preprocess(imgs).to(dev)), dim=-1).cpu() @ feats.t()
    got = logits.argmax(1)
    meaning = torch.tensor([hash(slots(p)) for p in allp])
    out["heldout_top1"] = round((got == want).float().mean().item(), 3)
    out["heldout_top1_statement"] = round((meaning[got] == meaning[want]).float().mean().item(), 3)
    return out


def save(model, out: str = "") -> None:
    """The CLIPModel directory toyworld/weights/clip_v2/ (or `out`/clip_v2), written atomically, hashes recorded."""
    import os
    import shutil

    from . import models
    from .train_clip import MEAN, STD

    root = models.Path(out) if out else models.WEIGHTS
    directory = root / models.CLIP_V2_DIR
    tmp = root / (models.CLIP_V2_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    (tmp / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": 64},
        "do_center_crop": True, "crop_size": {"height": 64, "width": 64}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(MEAN), "image_std": list(STD),
        "do_convert_rgb": True, "resample": 3}, indent=2) + "\n")
    old = root / (models.CLIP_V2_DIR + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    if not out:
        for name in models.CLIP_V2_FILES:
            models.record_hash(f"{models.CLIP_V2_DIR}/{name}")


if __name__ == "__main__":
    main()
