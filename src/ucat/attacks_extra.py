"""CAA and A³ as the official UCAT code runs them (``main.sh`` loops ``pgd CW autoattack CAA a3``).

With the settings of the official ``main.py`` (main.py:531-570) both are ℓ∞ PGD on the
cross-entropy in which a sample stops moving at the first iterate the model misclassifies;
the others keep stepping and the last iterate is returned (pixel space, budgets in 1/255):

- :func:`caa` — CompositeAttack (Hsiung et al., CVPR 2023) restricted to its ℓ∞ component, as
  ``attack_caa`` calls it (official attacks.py:177-235, composite_attack.py:195-216):
  ``enabled_attack=[5]``, fixed order, 1 start.  It starts at the clean image, with step
  ``2.5 · step_rule_eps / steps`` (composite_attack.py:79); the official code computes that step
  from CompositeAttack's default ImageNet ℓ∞ range, 4/255, because it writes the test ε into
  ``eps_pool`` only after construction (attacks.py:204-220): 0.1/255 for 100 steps at any ε.
  Its composite machinery (order scheduling, the other components, restarts) does nothing
  when the ℓ∞ component is alone: the ℓ∞ start is the clean image, so every start is the same.
- :func:`a3` — the UCAT code's own "adaptive auto attack" (attacks.py:266-405), a
  simplification that shares its names with Liu et al.'s A³ (CVPR 2022, whose ADI biases an
  output-diversified start and which attacks a margin loss): random start, step
  ``step_size``, per-sample early stop; with several restarts, OSD attacks in restart ``r``
  only the ``int(B·(1 - min(1, osd_start + r·osd_increment)))`` samples of the batch with the
  highest best-so-far CE, ADI adds ``0.25·ε·sign(Σ sign(x_adv - x))`` over the earlier restarts
  that fooled the sample to the random start, and the sample with the highest CE over the
  restarts is returned.  The official run uses 1 restart (main.py:552-570), where OSD and ADI
  do nothing and the result is the restart's last iterate.

Differences from the official loops, none of which changes an adversarial example: the
gradient is that of the per-sample CE summed (the official takes the batch mean: the same
signs); a sample that has fooled the model is not forwarded again (the official forwards the
whole batch every step and zeroes the stopped samples' steps), which saves the stopped share of
the work; CAA treats a sample as stopped once it has fooled the model (the official re-checks
the unchanged image each step, with the same outcome).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError

CAA_STEP_FACTOR = 2.5     # CompositeAttack: step = 2.5 x eps / steps (composite_attack.py:79)
ADI_BIAS = 0.25           # A³'s ADI: the start moves 0.25 eps along the fooling directions (attacks.py:329)


def _check(eps255: float, step255: float, steps: int) -> None:
    if eps255 < 0 or step255 < 0 or steps < 0:
        raise ConfigError(f"attack budget must be non-negative (eps={eps255}, step_size={step255}, steps={steps})")


def early_stopped_pgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, start: torch.Tensor,
                      eps: float, step_size: float, steps: int, attacked: torch.Tensor | None = None,
                      early_stop: bool = True) -> torch.Tensor:
    """ℓ∞ PGD on the CE from ``start``; with ``early_stop`` a sample stops at its first misclassified iterate.

    ``eps``/``step_size`` in pixel units.  Only the samples of the boolean mask ``attacked``
    (default: all) move; the others are returned at ``start``.  Each step forwards only the
    samples still moving: the step is the signed input gradient, then the projection onto the
    ε-ball around ``images`` and [0, 1].
    """
    images = images.detach()
    adv = start.detach().clone()
    moving = torch.ones(len(images), dtype=torch.bool, device=images.device) if attacked is None else attacked.clone()
    for _ in range(steps):
        idx = moving.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x, y, clean = adv[idx].requires_grad_(True), labels[idx], images[idx]
        logits = model(x).float()
        grad, = torch.autograd.grad(F.cross_entropy(logits, y, reduction="none").sum(), x)
        step = torch.ones_like(y, dtype=torch.bool)
        if early_stop:
            step = logits.argmax(-1) == y            # still correct: keeps moving
            moving[idx[~step]] = False
        delta = torch.clamp(x.detach() + step_size * grad.sign() - clean, min=-eps, max=eps)
        stepped = torch.clamp(clean + delta, min=0, max=1)
        adv[idx[step]] = stepped[step]
    return adv


def caa(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps255: float, steps: int,
        step_rule_eps255: float | None = 4.0) -> torch.Tensor:
    """CAA's ℓ∞ component: early-stopped PGD-CE from the clean image, step ``2.5·step_rule_eps/steps``.

    ``step_rule_eps255`` (units of 1/255): 4 is what the official code's step rests on (see the
    module docstring); ``None`` uses the test ε, CompositeAttack's rule as meant.
    """
    rule = eps255 if step_rule_eps255 is None else step_rule_eps255
    _check(eps255, rule, steps)
    if steps == 0:
        return images.detach().clone()
    step = CAA_STEP_FACTOR * rule / 255 / steps
    return early_stopped_pgd(model, images, labels, images, eps255 / 255, step, steps)


def osd_kept(batch: int, restart: int, osd_start: float, osd_increment: float) -> int:
    """How many samples of the batch OSD attacks in ``restart`` (official attacks.py:312-314)."""
    drop = min(1.0, osd_start + restart * osd_increment)
    return max(1, min(batch, int(batch * (1.0 - drop))))


def a3(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps255: float, step255: float, steps: int,
       restarts: int = 1, osd_start: float = 0.0, osd_increment: float = 0.1, early_stop: bool = True,
       random_start: bool = True, adi: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """The UCAT code's A³ (see the module docstring); the random starts draw from ``generator``.

    OSD ranks the samples within the batch, so with several restarts the result depends on the
    batch's composition, as in the official code.
    """
    _check(eps255, step255, steps)
    if restarts < 1 or not 0 <= osd_start <= 1 or osd_increment < 0:
        raise ConfigError(f"a3: need restarts >= 1, 0 <= osd_start <= 1, osd_increment >= 0 "
                          f"(got {restarts}, {osd_start}, {osd_increment})")
    eps, step = eps255 / 255, step255 / 255
    images = images.detach()
    n, device = len(images), images.device
    best_adv, best_loss = images.clone(), torch.full((n,), float("-inf"), device=device)
    ranking = None                               # OSD's per-sample CE: clean, then the best so far
    fooling = torch.zeros_like(images)           # ADI: sum of sign(x_adv - x) over the restarts that fooled
    for r in range(restarts):
        kept = osd_kept(n, r, osd_start, osd_increment)
        if kept < n:
            if ranking is None:
                with torch.no_grad():
                    ranking = F.cross_entropy(model(images).float(), labels, reduction="none")
            chosen = torch.topk(ranking, kept).indices
        else:
            chosen = torch.arange(n, device=device)
        attacked = torch.zeros(n, dtype=torch.bool, device=device)
        attacked[chosen] = True
        delta = torch.zeros_like(images)
        if random_start:
            noise = torch.rand(images.shape, generator=generator, device=device, dtype=images.dtype)
            delta = (noise * 2 - 1) * eps
        if adi and r > 0:
            delta = torch.clamp(delta + ADI_BIAS * eps * fooling.sign(), min=-eps, max=eps)
        start = torch.clamp(images + delta, min=0, max=1)
        adv = early_stopped_pgd(model, images, labels, start, eps, step, steps, attacked, early_stop)
        if restarts == 1:
            return adv      # the official bookkeeping takes the first restart's iterate for every finite CE
        with torch.no_grad():
            logits = model(adv).float()
        loss = F.cross_entropy(logits, labels, reduction="none")
        better = loss > best_loss
        best_loss = torch.where(better, loss, best_loss)
        best_adv = torch.where(better.view(-1, 1, 1, 1), adv, best_adv)
        if ranking is None:
            ranking = best_loss.clone()          # every sample was attacked in this restart
        else:
            ranking[chosen] = best_loss[chosen]
        fooled = (logits.argmax(-1) != labels).view(-1, 1, 1, 1)
        fooling = fooling + torch.where(fooled, (adv - images).sign(), torch.zeros_like(images))
    return best_adv
