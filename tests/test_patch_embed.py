"""``run.patch_embed: matmul``: the stride == kernel convolution as reshape + matmul, equal to rounding."""

import copy

import pytest
import torch
from torch import nn

from ucat import config, models, patch_embed
from ucat.errors import ConfigError


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).abs().max() / b.abs().max())


def both(conv: nn.Conv2d) -> tuple[nn.Module, nn.Module]:
    matmul = copy.deepcopy(conv)
    matmul.__class__ = patch_embed.MatmulPatchEmbed
    return conv, matmul


def forward_and_input_grad(module: nn.Module, x: torch.Tensor, weights: torch.Tensor):
    x = x.clone().requires_grad_(True)
    out = module(x)
    grad, = torch.autograd.grad((out.float() * weights).sum(), x)
    return out, grad


def test_vit_b32_sized_patch_layer_matches_the_convolution_in_fp32():
    torch.manual_seed(0)
    conv, matmul = both(nn.Conv2d(3, 768, 32, 32, bias=False))   # ViT-B-32-quickgelu's conv1
    x = torch.randn(2, 3, 224, 224)
    w = torch.randn(2, 768, 7, 7)                                  # a non-uniform upstream gradient
    (ref, gref), (out, g) = forward_and_input_grad(conv, x, w), forward_and_input_grad(matmul, x, w)
    assert out.shape == ref.shape == (2, 768, 7, 7)
    assert rel(out, ref) < 1e-5 and rel(g, gref) < 1e-5
    # the weight gradient (fine-tuning) agrees too
    for m in (conv, matmul):
        m.zero_grad()
        (m(x) * w).sum().backward()
    assert rel(matmul.weight.grad, conv.weight.grad) < 1e-5


def test_bf16_agrees_with_the_bf16_convolution_within_bf16_rounding():
    torch.manual_seed(1)
    conv, matmul = both(nn.Conv2d(3, 768, 32, 32, bias=False).to(torch.bfloat16))
    x = torch.randn(2, 3, 224, 224, dtype=torch.bfloat16)
    w = torch.randn(2, 768, 7, 7)
    (ref, gref), (out, g) = forward_and_input_grad(conv, x, w), forward_and_input_grad(matmul, x, w)
    assert out.dtype == torch.bfloat16
    # both accumulate in fp32 and round once to bf16 (8 bits: relative 2^-8 per value)
    assert rel(out, ref) < 1e-2 and rel(g, gref) < 1e-2


def test_remainder_pixels_are_dropped_as_the_strided_convolution_drops_them():
    torch.manual_seed(2)
    conv, matmul = both(nn.Conv2d(3, 16, 8, 8, bias=True))
    x = torch.randn(2, 3, 35, 41)
    assert matmul(x).shape == conv(x).shape == (2, 16, 4, 5)
    assert rel(matmul(x), conv(x)) < 1e-5


def test_demo_image_tower_matches_and_keeps_its_state_dict(tiny_clip, tmp_path):
    clip, arch = tiny_clip
    swapped = copy.deepcopy(clip)
    patch_embed.apply(swapped.visual, "matmul")
    assert type(swapped.visual.conv1) is patch_embed.MatmulPatchEmbed
    assert list(swapped.state_dict()) == list(clip.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(swapped.state_dict().values(), clip.state_dict().values()))
    torch.manual_seed(3)
    x = torch.rand(4, 3, 32, 32)
    w = torch.randn(4, clip.visual.output_dim)
    (ref, gref) = forward_and_input_grad(clip.visual, x, w)
    (out, g) = forward_and_input_grad(swapped.visual, x, w)
    assert rel(out, ref) < 1e-5 and rel(g, gref) < 1e-5
    # a checkpoint of the swapped model reloads as the plain convolution, same weights
    models.save_checkpoint(tmp_path / "m.pt", swapped, arch)
    again, _, _ = models.load_checkpoint(tmp_path / "m.pt")
    assert type(again.visual.conv1) is nn.Conv2d
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), clip.state_dict().values()))
    # copies keep the swap (the reference model is a deepcopy); conv undoes it
    assert type(copy.deepcopy(swapped.visual).conv1) is patch_embed.MatmulPatchEmbed
    patch_embed.apply(swapped.visual, "conv")
    assert type(swapped.visual.conv1) is nn.Conv2d


def test_bad_setting_and_overlapping_convolution_are_one_line_errors(params):
    tower = nn.Module()
    tower.conv1 = nn.Conv2d(3, 8, 8, stride=4)
    with pytest.raises(ConfigError, match="run.patch_embed: matmul needs"):
        patch_embed.apply(tower, "matmul")
    assert patch_embed.apply(tower, "conv") is tower and type(tower.conv1) is nn.Conv2d
    with pytest.raises(ConfigError, match="run.patch_embed: unknown value 'gemm'"):
        patch_embed.apply(tower, "gemm")
    with pytest.raises(ConfigError, match="run.patch_embed"):
        config.validate(dict(params, run=dict(params["run"], patch_embed="gemm")))
    assert params["run"]["patch_embed"] == "conv"   # the default in params.yaml


def test_fine_tuning_uses_the_setting_and_writes_the_same_checkpoint_keys(tiny_clip, tmp_params, tiny_checkpoint,
                                                                       tmp_path, monkeypatch):
    from ucat import data, train

    data.prepare("demo_train", tmp_params)
    seen = []
    original = patch_embed.apply
    monkeypatch.setattr(train.patch_embed, "apply",
                        lambda visual, setting: seen.append((setting, type(visual.conv1))) or original(visual, setting))
    p = copy.deepcopy(tmp_params)
    p["run"]["patch_embed"] = "matmul"
    train.finetune(p, "ucat", tiny_checkpoint, tmp_path / "model.pt", tmp_path / "ck", tmp_path / "live",
                   torch.device("cpu"), progress=False)
    assert seen == [("matmul", nn.Conv2d)] * 2          # the trained model and UCAT's reference, before training
    trained = models.load_checkpoint(tmp_path / "model.pt")[0]   # strict load
    assert type(trained.visual.conv1) is nn.Conv2d
    assert list(trained.state_dict()) == list(tiny_clip[0].state_dict())
    assert not torch.equal(trained.visual.conv1.weight, tiny_clip[0].visual.conv1.weight)   # it trained
