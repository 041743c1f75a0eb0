"""Measure, on the tiny demo CLIP (CPU), the effect of each remaining difference from the
official UCAT training step (docs/api.md, "Remaining differences").

    PYTHONPATH=src python tools/official_differences.py [--steps 20] [--out results/official_differences.json]

1. precision: the same UCAT fine-tuning run in fp32, bf16 autocast (ucat on GPU) and fp16 autocast
   + GradScaler (the official code, main.py:256, 375-407); weight deviation from fp32.
2. leaked attack gradients: the official attack calls loss.backward() (attacks.py:46-47) after
   optimizer.zero_grad() (main.py:368), so the attack's CE weight gradients are added to the step's;
   GradScaler then divides them by its scale (2^16 at the start).
3. float64 vs float32 Dirichlet KL (the official code: torch.distributions under autocast = float32).
"""

from __future__ import annotations

import argparse
import copy
import json
import math

import torch
from torch.distributions import Dirichlet, kl_divergence

from ucat import attacks, losses, models, train
from ucat.data import demo

TINY = {"image_size": 32, "patch_size": 8, "vision_width": 64, "vision_layers": 2, "text_width": 64,
        "text_layers": 1, "embed_dim": 32, "context_length": 12}
PARAMS = {"finetune": {"attack": {"eps": 8, "steps": 2, "step_size": 4}},
          "ucat": {"tau_prime": 0.07, "tau": 100.0}}


def classifier(seed=0):
    torch.manual_seed(seed)
    arch = models.demo_arch({**TINY, "steps": 1, "batch_size": 2, "lr": 1e-3, "warmup_steps": 0, "weight_decay": 0})
    clip = models.create_clip(arch)
    names = list(demo.DEMO_SETS["demo_train"].classnames)
    clf = models.ZeroShotClassifier.from_clip(clip, arch, names, ["This is a photo of a {}"])
    clf.logit_scale = 20.0
    return clf


def run(clf, batches, mode: str, leak: bool = False, lr=0.01):
    """UCAT SGD steps; mode fp32 | bf16 | fp16 (autocast + GradScaler)."""
    model = copy.deepcopy(clf).train()
    ref = model.frozen_copy()
    opt = torch.optim.SGD(model.visual.parameters(), lr=lr, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=mode == "fp16")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    gen = torch.Generator().manual_seed(1)
    losses_ = []
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            if leak:  # the official attack: weight gradients accumulate while attacking
                atk = PARAMS["finetune"]["attack"]
                adv = x.clone()
                noise = torch.rand(x.shape, generator=gen) * 2 - 1
                adv = (adv + noise * atk["eps"] / 255).clamp(0, 1)
                for _ in range(atk["steps"]):
                    adv.requires_grad_(True)
                    ce = torch.nn.functional.cross_entropy(model(adv).float(), y)
                    ce.backward()  # also into the weights, as attacks.py:47
                    adv = (adv.detach() + atk["step_size"] / 255 * adv.grad.sign())
                    adv = (x + (adv - x).clamp(-atk["eps"] / 255, atk["eps"] / 255)).clamp(0, 1).detach()
                logits_adv = model(adv)
                with torch.no_grad():
                    logits_ref = ref(x)
                out = losses.ucat_loss(logits_adv, logits_ref, y, model.logit_scale, 0.07, 100.0)
            else:
                out = train.method_step("ucat", model, ref, x, y, PARAMS, gen)
        scaler.scale(out["loss"]).backward()
        scaler.step(opt)
        scaler.update()
        losses_.append(float(out["loss"].detach()))
    return model, losses_


def deviation(a, b, start):
    num = sum((pa - pb).double().pow(2).sum() for pa, pb in zip(a.visual.parameters(), b.visual.parameters()))
    den = sum((pa - p0).double().pow(2).sum() for pa, p0 in zip(a.visual.parameters(), start.visual.parameters()))
    return math.sqrt(num / den)


def leak_ratio(clf, x, y):
    """||sum of the attack's weight gradients|| / ||the loss's weight gradient|| at one step."""
    model = copy.deepcopy(clf).train()
    ref = model.frozen_copy()
    gen = torch.Generator().manual_seed(1)
    atk = PARAMS["finetune"]["attack"]
    adv = (x + (torch.rand(x.shape, generator=gen) * 2 - 1) * atk["eps"] / 255).clamp(0, 1)
    for _ in range(atk["steps"]):
        adv.requires_grad_(True)
        torch.nn.functional.cross_entropy(model(adv), y).backward()
        adv = (adv.detach() + atk["step_size"] / 255 * adv.grad.sign())
        adv = (x + (adv - x).clamp(-atk["eps"] / 255, atk["eps"] / 255)).clamp(0, 1).detach()
    g_attack = [p.grad.clone() for p in model.visual.parameters()]
    model.zero_grad()
    out = losses.ucat_loss(model(adv), ref(x).detach(), y, model.logit_scale, 0.07, 100.0)
    out["loss"].backward()
    g_loss = [p.grad for p in model.visual.parameters()]
    norm = lambda gs: math.sqrt(sum(float(g.double().pow(2).sum()) for g in gs))  # noqa: E731
    return norm(g_attack) / norm(g_loss)


def kl_precision():
    """Relative error of the float32 Dirichlet KL (official) against float64, at ViT-B/32-like cosines."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for classes, spread in ((200, 0.05), (10, 0.05), (200, 0.01)):
        cos_ref = 0.25 + spread * torch.randn(256, classes, generator=g, dtype=torch.float64)
        cos_adv = cos_ref + 0.01 * torch.randn(256, classes, generator=g, dtype=torch.float64)
        a = torch.exp((cos_adv + 1) / 0.07) + 1e-6
        b = torch.exp((cos_ref + 1) / 0.07) + 1e-6
        exact = kl_divergence(Dirichlet(a), Dirichlet(b)).mean()
        single = kl_divergence(Dirichlet(a.float()), Dirichlet(b.float())).double().mean()
        per = (kl_divergence(Dirichlet(a.float()), Dirichlet(b.float())).double()
               - kl_divergence(Dirichlet(a), Dirichlet(b))).abs() / kl_divergence(Dirichlet(a), Dirichlet(b)).abs()
        out[f"C={classes}, cos sd={spread}"] = {"kl_float64_mean": float(exact),
                                               "rel_err_of_batch_mean": float(abs(single - exact) / abs(exact)),
                                               "median_rel_err_per_sample": float(per.median())}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    clf = classifier()
    images, labels, _ = demo.make_set("demo_train", 4, 0)
    g = torch.Generator().manual_seed(2)
    batches = []
    for _ in range(args.steps):
        idx = torch.randint(len(labels), (args.batch,), generator=g)
        batches.append((images[idx].float() / 255, labels[idx]))
    fp32, l32 = run(clf, batches, "fp32")
    res = {"steps": args.steps, "batch": args.batch, "loss_fp32_first_last": [l32[0], l32[-1]]}
    for mode in ("bf16", "fp16"):
        m, ls = run(clf, batches, mode)
        res[f"{mode}_weight_deviation_vs_fp32"] = deviation(m, fp32, clf)
        res[f"{mode}_loss_last"] = ls[-1]
    leaked, ll = run(clf, batches, "fp32", leak=True)
    res["leak_fp32_weight_deviation"] = deviation(leaked, fp32, clf)
    leaked16, _ = run(clf, batches, "fp16", leak=True)
    fp16, _ = run(clf, batches, "fp16")
    res["leak_fp16_gradscaler_weight_deviation_vs_fp16"] = deviation(leaked16, fp16, clf)
    res["leak_grad_norm_ratio_one_step"] = leak_ratio(clf, *batches[0])
    res["leak_ratio_after_gradscaler_2^16"] = res["leak_grad_norm_ratio_one_step"] / 2 ** 16
    res["kl_float32_vs_float64"] = kl_precision()
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        from ucat.io import write_text

        write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
