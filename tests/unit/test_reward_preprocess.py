"""Reward preprocessing, input checks, the stack's arithmetic and gradient checkpointing (plain torch)."""

import numpy as np
import pytest
import torch
from torch import nn

from quickstep.reward.base import Reward, RewardModule, checkpoint_layers, normalize_prompts
from quickstep.reward.preprocess import CLIP_MEAN, CLIP_STD, check_images, resized_size, to_pixel_values
from quickstep.reward.stack import RENO_WEIGHTS, RewardStack


@pytest.mark.parametrize("hw", [(224, 224), (512, 384), (300, 700), (97, 131), (64, 64)])
def test_matches_torchvision_tensor_pipeline(hw):
    from torchvision import transforms as T

    torch.manual_seed(0)
    images = torch.rand(2, *hw, 3)
    reference = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
                           T.CenterCrop(224), T.Normalize(CLIP_MEAN, CLIP_STD)])(images.permute(0, 3, 1, 2))
    ours = to_pixel_values(images, 224)
    assert ours.shape == (2, 3, 224, 224)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("hw", [(512, 512), (480, 640), (640, 360)])
def test_matches_pil_clip_image_processor(hw):
    """transformers' CLIPImageProcessor (PIL bicubic on uint8) agrees to quantisation and filter differences."""
    from transformers import CLIPImageProcessor

    torch.manual_seed(1)
    # smooth images: PIL's and torch's bicubic kernels differ slightly on sharp edges
    low = torch.rand(1, 3, hw[0] // 32, hw[1] // 32)
    images = torch.nn.functional.interpolate(low, size=hw, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    as_uint8 = (images[0].numpy() * 255).round().astype(np.uint8)
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                                   image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    reference = processor(images=as_uint8, return_tensors="pt")["pixel_values"]
    ours = to_pixel_values(torch.from_numpy(as_uint8).float()[None] / 255, 224)
    assert ours.shape == reference.shape
    assert (ours - reference).abs().mean() < 0.01  # one uint8 step is 1/255/0.27 = 0.015 after normalisation
    assert (ours - reference).abs().max() < 0.06


def test_resized_size_rounds_like_torchvision():
    assert resized_size(300, 700, 224) == (224, 522)
    assert resized_size(700, 300, 224) == (522, 224)
    assert resized_size(224, 224, 224) == (224, 224)


def test_preprocessing_is_differentiable_and_casts():
    images = torch.rand(1, 50, 70, 3, requires_grad=True)
    out = to_pixel_values(images, 32, dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


@pytest.mark.parametrize("bad, message", [
    (torch.rand(2, 3, 32, 32), "channels-first"),
    (torch.rand(32, 32, 3), "Use images[None]"),
    (torch.rand(1, 32, 32, 4), "alpha"),
    (torch.randint(0, 255, (1, 8, 8, 3), dtype=torch.uint8), "images / 255"),
    (torch.rand(1, 8, 8, 3) * 2 - 1, "(images + 1) / 2"),
    (torch.rand(1, 8, 8, 3) * 255, "0-255"),
    (torch.zeros(0, 8, 8, 3), "empty"),
])
def test_bad_images_name_the_fix(bad, message):
    with pytest.raises(ValueError, match="images|image values") as e:
        check_images(bad)
    assert message in str(e.value)


def test_not_a_tensor():
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_images(np.zeros((1, 8, 8, 3), np.float32))


def test_prompts_broadcast_and_mismatch():
    assert normalize_prompts("a cat", 3) == ["a cat"] * 3
    assert normalize_prompts(["a cat"], 2) == ["a cat", "a cat"]
    with pytest.raises(ValueError, match="got 2 prompts for 3 images"):
        normalize_prompts(["a", "b"], 3)
    with pytest.raises(TypeError, match="string or a list of strings"):
        normalize_prompts(5, 1)


class BrightnessReward(Reward):
    """A toy reward: mean brightness of the preprocessed image times a per-instance gain."""

    kind = "clip"
    loss_offset = 100.0

    def __init__(self, gain: float, kind: str = "clip"):
        super().__init__(RewardModule(lin=nn.Linear(1, 1)), name="toy", image_size=8)
        self.gain, self.kind = gain, kind

    def _score(self, pixel_values, prompts):
        return self.gain * pixel_values.mean(dim=(1, 2, 3))


def test_stack_weights_scores_and_losses():
    a, b = BrightnessReward(1.0, "hps"), BrightnessReward(2.0, "imagereward")
    a.loss_offset, b.loss_offset = 1.0, 2.0
    stack = RewardStack.with_reno_weights([a, b])
    assert stack.weights == {"hps": RENO_WEIGHTS["hps"], "imagereward": RENO_WEIGHTS["imagereward"]}
    images = torch.rand(3, 16, 16, 3, requires_grad=True)
    sa, sb = a.score(images, "x"), b.score(images, "x")
    torch.testing.assert_close(stack.score(images, "x"), 5.0 * sa + 1.0 * sb)
    total, per = stack.losses(images, "x")
    torch.testing.assert_close(total, 5.0 * (1 - sa) + 1.0 * (2 - sb))
    torch.testing.assert_close(per["imagereward"], 2 - sb)
    total.sum().backward()
    assert images.grad.abs().sum() > 0


def test_stack_labels_duplicates_and_rejects_all_zero():
    stack = RewardStack([(BrightnessReward(1.0), 1.0), (BrightnessReward(2.0), 0.5)])
    assert list(stack.weights) == ["clip", "clip_2"]
    with pytest.raises(ValueError, match="non-zero weight"):
        RewardStack([(BrightnessReward(1.0), 0.0)])
    with pytest.raises(ValueError, match="at least one"):
        RewardStack([])


def test_checkpointing_keeps_gradients_and_recomputes():
    torch.manual_seed(0)
    layers = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.GELU()) for _ in range(3))
    calls = []
    for layer in layers:
        layer[0].register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(4, 8, requires_grad=True)

    def run():
        h = x
        for layer in layers:
            h = layer(h)
        return h.square().sum()

    run().backward()
    plain, x.grad = x.grad.clone(), None
    calls.clear()
    assert checkpoint_layers(layers) == 3
    assert checkpoint_layers(layers) == 0  # idempotent
    run().backward()
    torch.testing.assert_close(x.grad, plain)
    assert len(calls) == 6  # every layer ran again in backward
