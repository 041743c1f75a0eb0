"""ℓ∞ attacks on a multi-label target (MS-COCO), as the official ``attacks_multilabel.py`` runs them.

The target is a multi-hot vector per image; budgets are in units of 1/255; every attack is the
PGD loop of :func:`ucat.attacks.pgd_linf` (uniform random start in [-ε, ε], signed-gradient
steps, projection onto the ε-ball and [0, 1]) on a multi-label objective of the logits
``l = s · cos`` (s = 100 for CLIP):

- ``pgd``: binary cross-entropy with logits of ``l`` against the target, summed over the classes
  (``nn.BCEWithLogitsLoss(reduction="sum")`` on the scale-100 logits, ``attack_pgd``);
- ``cw``: the multi-label CW margin ``-relu(mean_{k∈P} l_k - max_{j∉P} l_j + κ)``, κ = 50,
  where P is the image's set of positive classes (``attack_CW(..., multilabel=True)``); an image
  without labels has mean 0 over its (empty) positives, as the official ``clamp(min=1)`` gives.

AutoAttack is not defined for multi-label targets here (the paper reports none on COCO).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import pgd_linf
from .errors import ConfigError

ATTACKS = ("clean", "pgd", "cw")


def bce_objective(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ``Σ_k BCEWithLogits(l_k, y_k)`` (to maximise)."""
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none").sum(-1)


def cw_multilabel_margin(logits: torch.Tensor, target: torch.Tensor, kappa: float = 50.0) -> torch.Tensor:
    """Per-sample ``-relu(mean positive logit - largest negative logit + kappa)`` (to maximise).

    Negatives are masked with the dtype's lowest finite value (the official code's choice), so an
    image whose every class is positive stays finite.
    """
    positive = target.bool()
    mean_positive = (logits * positive).sum(-1) / positive.sum(-1).clamp(min=1)
    largest_negative = logits.masked_fill(positive, torch.finfo(logits.dtype).min).amax(-1)
    return -F.relu(mean_positive - largest_negative + kappa)


def pgd(model: nn.Module, images: torch.Tensor, target: torch.Tensor, eps255: float, step255: float, steps: int,
        loss: str = "bce", kappa: float = 50.0, random_start: bool = True,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """PGD-ℓ∞ on the BCE (``loss="bce"``) or the multi-label CW margin (``loss="cw"``), budgets in 1/255."""
    target = target.float()
    if loss == "bce":
        def objective(x):
            return bce_objective(model(x).float(), target)
    elif loss == "cw":
        def objective(x):
            return cw_multilabel_margin(model(x).float(), target, kappa)
    else:
        raise ConfigError(f"multi-label attack loss: unknown value {loss!r}; allowed: bce, cw")
    return pgd_linf(objective, images, eps255 / 255, step255 / 255, steps, random_start, generator)


def check_attack(name: str, dataset: str | None = None) -> None:
    if name not in ATTACKS:
        where = f"the multi-label data set {dataset}" if dataset else "multi-label data sets"
        raise ConfigError(f"attack {name!r} is not defined for {where}; allowed: {', '.join(ATTACKS)}")


def run_attack(name: str, model: nn.Module, images: torch.Tensor, target: torch.Tensor, eps255: float, ev: dict,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Dispatch an evaluation attack by name with the ``evaluate`` section (its ``pgd``/``cw`` settings)."""
    check_attack(name)
    if name == "clean":
        return images
    if name == "pgd":
        return pgd(model, images, target, eps255, ev["pgd"]["step_size"], ev["pgd"]["steps"], "bce",
                   generator=generator)
    return pgd(model, images, target, eps255, ev["cw"]["step_size"], ev["cw"]["steps"], "cw",
               kappa=ev["cw"]["kappa"], generator=generator)
