"""Baselines as their public code runs them: PMG-AFT's options and per-method optimisers."""

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ucat import attacks, config, losses, models, train

ROOT = Path(__file__).resolve().parents[1]


def test_prob_kl_sum_matches_kldivloss_sum():
    g = torch.Generator().manual_seed(5)
    p_logits, q_logits = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    ref = torch.nn.KLDivLoss(reduction="sum")(torch.log_softmax(q_logits, -1), torch.softmax(p_logits, -1))
    assert losses.prob_kl(p_logits, q_logits, "sum").item() == pytest.approx(ref.item(), rel=1e-5)


def test_pmg_aft_loss_sum_is_its_codes_formula():
    g = torch.Generator().manual_seed(6)
    adv, ori, clean = (torch.randn(8, 5, generator=g) for _ in range(3))
    y = torch.randint(5, (8,), generator=g)
    kl = torch.nn.KLDivLoss(reduction="sum")
    # PMG_AFT.py:735-737
    expect = F.cross_entropy(adv, y) + kl(F.log_softmax(adv, 1), F.softmax(clean, 1)) + kl(F.log_softmax(adv, 1),
                                                                                          F.softmax(ori, 1))
    out = losses.pmg_aft_loss(adv, ori, clean, y, 1.0, 1.0, "sum")
    assert out["loss"].item() == pytest.approx(expect.item(), rel=1e-5)
    mean = losses.pmg_aft_loss(adv, ori, clean, y, 1.0, 1.0)
    assert (out["align"] / mean["align"]).item() == pytest.approx(8.0, rel=1e-5)  # sum = batch x mean


def test_pmg_aft_training_view_gives_cosines_of_imagenet_normalised_images(tiny_clip, params):
    clip, arch = tiny_clip
    p = copy.deepcopy(params)
    p["pmg_aft"].update(logits="cosine", normalize="imagenet")
    model = models.ZeroShotClassifier.from_clip(clip, arch, ["a", "b", "c"], ["{}"])
    view = train.training_view("pmg_aft", copy.deepcopy(model), p)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    emb = clip.visual((x - mean) / std)
    expect = F.normalize(emb, dim=-1) @ model.class_features.t()
    torch.testing.assert_close(view(x), expect, rtol=1e-4, atol=1e-5)
    assert view(x).abs().max() <= 1.0 + 1e-5
    assert train.training_view("tecoa", model, p) is model and model.logit_scale > 1


def test_pmg_aft_uses_its_own_attack(tiny_clip, params, monkeypatch):
    from ucat.data import demo

    seen = {}
    real_pgd = attacks.pgd

    def spy(model, images, labels, eps, step, steps, *a, **k):
        seen.update(eps=eps, step=step, steps=steps)
        return real_pgd(model, images, labels, eps, step, steps, *a, **k)

    monkeypatch.setattr(attacks, "pgd", spy)
    images, labels, names = demo.make_set("demo_train", 1, 0)
    clip, arch = tiny_clip
    model = models.ZeroShotClassifier.from_clip(clip, arch, names, ["{}"]).train()
    p = copy.deepcopy(params)
    p["pmg_aft"].update(attack={"eps": 2, "steps": 5, "step_size": 1}, kl_reduction="sum")
    out = train.method_step("pmg_aft", model, model.frozen_copy(), images[:4].float() / 255, labels[:4], p, None)
    assert seen == {"eps": 2, "step": 1, "steps": 5} and torch.isfinite(out["loss"])
    train.method_step("tecoa", model, None, images[:4].float() / 255, labels[:4], p, None)
    assert seen["eps"] == p["finetune"]["attack"]["eps"]


def test_per_method_optimizer_override(params):
    p = copy.deepcopy(params)
    p["fare"]["optimizer"] = {"name": "adamw", "lr": 1e-5, "momentum": 0.9, "weight_decay": 1e-4}
    w = [torch.nn.Parameter(torch.zeros(2))]
    opt = train.make_optimizer(w, train.method_optimizer("fare", p), torch.device("cpu"))
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["lr"] == 1e-5 and opt.param_groups[0]["weight_decay"] == 1e-4
    sgd = train.make_optimizer(w, train.method_optimizer("ucat", p), torch.device("cpu"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["lr"] == p["finetune"]["lr"]
    assert train.method_optimizer("pmg_aft", p)["lr"] == p["finetune"]["lr"]  # null = finetune's


def test_paper_config_runs_the_baselines_public_settings():
    p = config.load(ROOT / "config/paper.yaml")
    assert p["pmg_aft"] | {} == {**p["pmg_aft"], "kl_reduction": "sum", "logits": "cosine", "normalize": "imagenet"}
    assert p["pmg_aft"]["attack"] == {"eps": 2, "steps": 5, "step_size": 1}
    assert train.method_optimizer("pmg_aft", p)["lr"] == 5e-5
    fare = train.method_optimizer("fare", p)
    assert (fare["optimizer"], fare["lr"], fare["weight_decay"]) == ("adamw", 1e-5, 1e-4)
