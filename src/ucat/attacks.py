"""ℓ∞ attacks in pixel space ([0, 1]); budgets are given in units of 1/255.

- :func:`pgd` — PGD on cross-entropy (``loss="ce"``) or on the CW margin (``loss="cw"``, the
  "CW" of TeCoA/PMG-AFT/UCAT: ℓ∞ PGD on ``-relu(l_y - max_{j≠y} l_j + kappa)``, not C&W-ℓ2).
  Uniform random start in [-ε, ε], signed-gradient steps, projection onto the ε-ball and
  [0, 1] after every step; with ``random_start=False`` it is step-for-step torchattacks' PGD.
- :func:`autoattack` — APGD-CE then APGD-DLR (100 iterations, 1 restart) from the reference
  AutoAttack code (fra31's, packaged on PyPI as ``pyautoattack``), run as the official UCAT code
  runs it: each attack only on the samples still robust, per-sample worst case (APGD-CE only
  for 2-class problems: DLR needs three classes).
- :func:`fare_attack` — FARE's training attack, PGD maximising the embedding distance.
- ``caa`` and ``a3`` — the official code's CAA (ℓ∞ CompositeAttack) and A³, both early-stopped
  PGD on CE: :mod:`ucat.attacks_extra`.

Attacks only ask autograd for the input gradient (``torch.autograd.grad``), so no weight
gradients are computed or accumulated while attacking.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import attacks_extra
from .attack_names import ATTACKS  # noqa: F401 (the registry; its own module so the CLI lists it without torch)
from .errors import ConfigError


def _check_budget(eps: float, step_size: float, steps: int) -> None:
    if eps < 0 or step_size < 0 or steps < 0:
        raise ConfigError(f"attack budget must be non-negative (eps={eps}, step_size={step_size}, steps={steps})")


def cw_margin_loss(logits: torch.Tensor, labels: torch.Tensor, kappa: float = 50.0) -> torch.Tensor:
    """Per-sample CW objective to *maximise*: ``-relu(l_y - max_{j≠y} l_j + kappa)``."""
    onehot = F.one_hot(labels, logits.shape[-1]).bool()
    correct = logits.masked_select(onehot)
    other = logits.masked_fill(onehot, float("-inf")).amax(-1)
    return -F.relu(correct - other + kappa)


def pgd_linf(objective: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, eps: float,
             step_size: float, steps: int, random_start: bool = True,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Maximise ``objective(x).sum()`` over the ℓ∞ ball of radius ``eps`` around ``images`` ∩ [0, 1].

    ``eps`` and ``step_size`` are in pixel units here (already divided by 255).
    """
    _check_budget(eps, step_size, steps)
    images = images.detach()
    adv = images.clone()
    if random_start and eps > 0:
        noise = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        adv = (adv + (noise * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        grad, = torch.autograd.grad(objective(adv).sum(), adv)
        adv = adv.detach() + step_size * grad.sign()
        delta = torch.clamp(adv - images, min=-eps, max=eps)
        adv = torch.clamp(images + delta, min=0, max=1).detach()
    return adv


def pgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps255: float, step255: float,
        steps: int, loss: str = "ce", kappa: float = 50.0, random_start: bool = True,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """PGD-ℓ∞ on CE or on the CW margin, budgets in units of 1/255."""
    if loss == "ce":
        def objective(x):
            return F.cross_entropy(model(x).float(), labels, reduction="none")
    elif loss == "cw":
        def objective(x):
            return cw_margin_loss(model(x).float(), labels, kappa)
    else:
        raise ConfigError(f"attack loss: unknown value {loss!r}; allowed: ce, cw")
    return pgd_linf(objective, images, eps255 / 255, step255 / 255, steps, random_start, generator)


def fare_attack(model, images: torch.Tensor, emb_ref_clean: torch.Tensor, eps255: float, step255: float,
                steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """FARE's attack: maximise ``||phi(x_adv) - phi_orig(x)||^2`` (``model.embed`` = phi)."""
    target = emb_ref_clean.detach().float()

    def objective(x):
        return (model.embed(x).float() - target).pow(2).sum(-1)

    return pgd_linf(objective, images, eps255 / 255, step255 / 255, steps, True, generator)


class _FloatLogits(nn.Module):
    """APGD calls ``model(x)``; give it float32 logits whatever the autocast dtype."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).float()


def autoattack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps255: float, steps: int,
               num_classes: int, seed: int = 0) -> torch.Tensor:
    """APGD-CE, then APGD-DLR on the samples it did not fool; per-sample worst case.

    The same schedule as the reference ``AutoAttack(version='standard')`` with
    ``attacks_to_run = ['apgd-ce', 'apgd-dlr']`` (what the official UCAT code calls), but with a
    fixed ``seed`` (the official code seeds with the wall clock) and without the global-RNG side
    effect: APGD reseeds torch's generator, so it runs inside ``fork_rng``.
    """
    from pyautoattack.autopgd_base import APGDAttack

    _check_budget(eps255, 0, steps)
    wrapped = _FloatLogits(model)
    losses = ["ce", "dlr"] if num_classes >= 3 else ["ce"]
    apgd = APGDAttack(wrapped, n_iter=steps, norm="Linf", n_restarts=1, eps=eps255 / 255, seed=seed,
                      loss="ce", rho=0.75, device=images.device)
    images = images.detach()
    adv = images.clone()
    with torch.no_grad():
        robust = wrapped(images).argmax(-1) == labels
    cuda = [images.device.index if images.device.index is not None else torch.cuda.current_device()] if images.is_cuda else []
    with torch.random.fork_rng(devices=cuda):
        for loss in losses:
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            apgd.loss = loss
            x_adv = apgd.perturb(images[idx], labels[idx])
            with torch.no_grad():
                fooled = wrapped(x_adv).argmax(-1) != labels[idx]
            adv[idx[fooled]] = x_adv[fooled].to(adv.dtype)
            robust[idx[fooled]] = False
    return adv.detach()


def run_attack(name: str, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps255: float,
               ev: dict, num_classes: int, generator: torch.Generator | None = None, seed: int = 0) -> torch.Tensor:
    """Dispatch an evaluation attack by name with the ``evaluate`` section of the parameters."""
    if name == "clean":
        return images
    if name == "pgd":
        return pgd(model, images, labels, eps255, ev["pgd"]["step_size"], ev["pgd"]["steps"], "ce", generator=generator)
    if name == "cw":
        return pgd(model, images, labels, eps255, ev["cw"]["step_size"], ev["cw"]["steps"], "cw",
                   kappa=ev["cw"]["kappa"], generator=generator)
    if name == "autoattack":
        return autoattack(model, images, labels, eps255, ev["autoattack"]["steps"], num_classes, seed)
    if name == "caa":
        return attacks_extra.caa(model, images, labels, eps255, ev["caa"]["steps"], ev["caa"]["step_rule_eps"])
    if name == "a3":
        a3 = ev["a3"]
        return attacks_extra.a3(model, images, labels, eps255, a3["step_size"], a3["steps"], a3["restarts"],
                                a3["osd_start"], a3["osd_increment"], a3["early_stop"], a3["random_start"],
                                a3["adi"], generator)
    raise ConfigError(f"attack: unknown value {name!r}; allowed: {', '.join(ATTACKS)}")
