"""Forward + backward cost of each reward: time per call and memory, as a markdown table.

    ~/.cache/quickstep/venv/bin/python benchmarks/reward_bench.py                  # tiny random models, CPU
    ~/.cache/quickstep/venv/bin/python benchmarks/reward_bench.py --size real --device cuda --dtype fp16

tiny: the random test models (tests/reward_tiny.py) written in their real formats and loaded by `load_reward`.
real: random weights at the released architectures (CLIP/PickScore/HPS ViT-H-14, BLIP ViT-L + BERT-base, aesthetic
ViT-L/14), 224 px, built in memory (meant for a GPU). Memory: on CUDA the peak allocated during forward + backward
above the weights; on CPU the bytes autograd saved for backward (activations; CPU has no allocator peak counter).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import harness  # noqa: E402

harness.register_pack()

import reward_tiny as rt  # noqa: E402

from quickstep.reward import DTYPES, AestheticReward, load_clip_tokenizer, load_reward  # noqa: E402
from quickstep.reward.blip import ImageRewardReward, RewardHead, build_imagereward  # noqa: E402
from quickstep.reward.clip import CLIP_KINDS  # noqa: E402

KINDS = ("clip", "pickscore", "hps", "imagereward", "aesthetic")


def tiny_rewards(device, dtype):
    root = Path(tempfile.mkdtemp(prefix="reward-bench-"))
    files = rt.write_all(root)
    tokenizer = load_clip_tokenizer(root / "clip-tiny")
    rt.write_hps(files["hps"], 3)  # small vocab, with the tiny tokenizer (no ComfyUI needed)
    for kind in KINDS:
        extra = {"tokenizer": tokenizer} if kind == "hps" else {}
        yield kind, load_reward(files[kind], kind, device=device, dtype=dtype, managed=False, **extra)


def real_rewards(device, dtype):
    from transformers import BertTokenizer, CLIPConfig, CLIPModel

    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        from transformers.modeling_utils import no_init_weights
    tokenizer_dir = Path(tempfile.mkdtemp(prefix="reward-bench-tok-"))
    rt.write_clip_tokenizer(tokenizer_dir)
    clip_tok = load_clip_tokenizer(tokenizer_dir)
    vit_h = CLIPConfig(text_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                        num_attention_heads=16, hidden_act="gelu"),
                       vision_config=dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                          num_attention_heads=16, patch_size=14, image_size=224, hidden_act="gelu"),
                       projection_dim=1024)
    vit_l = CLIPConfig(text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12),
                       vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                          num_attention_heads=16, patch_size=14, image_size=224),
                       projection_dim=768)

    def clip(config):
        with no_init_weights():
            model = CLIPModel(config)
        return model.to(device=device, dtype=dtype).eval()

    for kind in ("clip", "pickscore", "hps"):
        yield kind, CLIP_KINDS[kind](clip(vit_h), clip_tok)
    sd = {"blip.visual_encoder.patch_embed.proj.weight": torch.empty(1024, 3, 16, 16),
          "blip.visual_encoder.pos_embed": torch.empty(1, 197, 1024),
          "blip.visual_encoder.blocks.23.mlp.fc1.weight": torch.empty(4096, 1024),
          "blip.visual_encoder.blocks.0.mlp.fc1.weight": torch.empty(4096, 1024),
          "blip.text_encoder.embeddings.word_embeddings.weight": torch.empty(30524, 768),
          "blip.text_encoder.embeddings.position_embeddings.weight": torch.empty(512, 768),
          "blip.text_encoder.encoder.layer.11.x": torch.empty(1),
          "blip.text_encoder.encoder.layer.0.intermediate.dense.weight": torch.empty(3072, 768),
          **{f"mlp.layers.{i}.weight": torch.empty(o, n) for i, (o, n) in
             {0: (1024, 768), 2: (128, 1024), 4: (64, 128), 6: (16, 64), 7: (1, 16)}.items()}}
    module = build_imagereward(sd, {"num_attention_heads": 12}).to(device=device, dtype=dtype)
    vocab = tokenizer_dir / "vocab.txt"
    vocab.write_text("\n".join(rt.BERT_WORDS) + "\n")
    yield "imagereward", ImageRewardReward(module, BertTokenizer.from_pretrained(str(tokenizer_dir)))
    head = RewardHead({0: (1024, 768), 2: (128, 1024), 4: (64, 128), 6: (16, 64), 7: (1, 16)})
    yield "aesthetic", AestheticReward(clip(vit_l), head.to(device=device, dtype=dtype))


def measure(reward, images, prompts, repeats):
    device = images.device
    times, saved = [], 0
    for i in range(repeats + 1):
        x = images.clone().requires_grad_()
        counted = []

        def pack(t, counted=counted):
            counted.append(t.numel() * t.element_size())
            return t

        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = reward.loss(x, prompts).sum()
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
            saved = torch.cuda.max_memory_allocated() - base
        else:
            saved = sum(counted)
        if i:  # the first call warms up (tokenizer, kernels)
            times.append(time.perf_counter() - start)
    return statistics.median(times), saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=256, help="input images are square, this many pixels")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    torch.manual_seed(0)
    images = torch.rand(args.batch, args.resolution, args.resolution, 3, device=device)
    prompts = "a red circle left of a blue square"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    mem_label = "peak above weights (MiB)" if device.type == "cuda" else "saved for backward (MiB)"
    print(f"Reward forward + backward, {args.size} models, {args.dtype}, batch {args.batch}, "
          f"{args.resolution}x{args.resolution} input, device: {name}, torch {torch.__version__}\n")
    print(f"| reward | params | model input | time / call (ms) | {mem_label} |")
    print("|---|---:|---:|---:|---:|")
    build = tiny_rewards if args.size == "tiny" else real_rewards
    kwargs = dict(device=device, dtype=dtype) if args.size == "real" else dict(device=device, dtype=args.dtype)
    for kind, reward in build(**kwargs):
        params = sum(p.numel() for p in reward.module.parameters())
        seconds, mem = measure(reward, images, prompts, args.repeats)
        print(f"| {kind} | {params / 1e6:.2f} M | {reward.image_size} px | {seconds * 1e3:.1f} | {mem / 2**20:.1f} |")
        del reward
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
