"""Fine-tuning objectives: plain functions of logits / embeddings, usable outside the pipeline.

Notation: ``s`` is CLIP's logit scale, ``cos = logits / s``.  UCAT reparameterises the
zero-shot logits as Dirichlet concentrations ``alpha = exp((cos + 1) / tau') + 1e-6``
(official code; the paper writes it without the 1e-6) and aligns the adversarial
Dirichlet with the frozen model's clean one by the reverse KL
``KL(Dir(alpha_adv) || Dir(alpha_ref))``, weighted by ``lambda = tau / exp(softplus(2/tau'))``.

TGA-ZSR and Comp-TGA add distances between text-guided attention maps (the maps: :mod:`ucat.tga`)
to TeCoA's cross-entropy: :func:`tga_loss`.

Dirichlet KLs are evaluated in float64: with tau' = 0.07 the concentrations reach
~1e12, where the log-gamma terms (~1e13) cancel to O(1) and float32 would leave only noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import ConfigError

ALPHA_EPS = 1e-6


def dirichlet_concentration(logits: torch.Tensor, logit_scale: float, tau_prime: float) -> torch.Tensor:
    """Paper/code training map: ``alpha = exp((logits/s + 1)/tau') + 1e-6`` (float64)."""
    cos = logits.double() / logit_scale
    return torch.exp((cos + 1.0) / tau_prime) + ALPHA_EPS


def code_eval_concentration(logits: torch.Tensor) -> torch.Tensor:
    """Official code's *evaluation* map ``alpha = exp(softplus(logits)) + 1e-6`` (float64)."""
    return torch.exp(F.softplus(logits.double())) + ALPHA_EPS


def dirichlet_kl(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Closed-form ``KL(Dir(alpha) || Dir(beta))`` per row (last dim = classes), in float64."""
    alpha, beta = alpha.double(), beta.double()
    a0 = alpha.sum(-1)
    b0 = beta.sum(-1)
    return (torch.lgamma(a0) - torch.lgamma(alpha).sum(-1)
            - torch.lgamma(b0) + torch.lgamma(beta).sum(-1)
            + ((alpha - beta) * (torch.digamma(alpha) - torch.digamma(a0).unsqueeze(-1))).sum(-1))


def ucat_lambda(tau: float, tau_prime: float) -> float:
    """Weight of the alignment term in the official code: ``tau / exp(softplus(2 / tau'))``.

    Formed in log space in float64.  Where it under- or overflows float64 (tau' below about
    0.0028 for tau = 1e5, where the concentrations themselves overflow too) it raises a
    ConfigError naming ``ucat.tau_prime``: no loss can be formed there.
    """
    if tau == 0:
        return 0.0
    sp = F.softplus(torch.tensor(2.0 / tau_prime, dtype=torch.float64)).item()
    log_lam = math.log(tau) - sp
    lam = math.exp(log_lam) if log_lam < 709.7 else math.inf
    if lam == 0.0 or not math.isfinite(lam) or 2.0 / tau_prime > 709.0:
        raise ConfigError(f"ucat.tau_prime: {tau_prime} gives lambda = tau/exp(softplus(2/tau')) = "
                          f"exp({log_lam:.4g}) and concentrations up to exp({2.0 / tau_prime:.4g}), "
                          "not representable in float64; use tau' >= 0.003")
    return lam


def prob_kl(p_logits: torch.Tensor, q_logits: torch.Tensor, reduction: str = "batchmean") -> torch.Tensor:
    """``KL(softmax(p_logits) || softmax(q_logits))`` averaged over the batch, or summed
    (``reduction="sum"``: ``nn.KLDivLoss(reduction='sum')``, as PMG-AFT's code uses it)."""
    log_p = F.log_softmax(p_logits.float(), dim=-1)
    log_q = F.log_softmax(q_logits.float(), dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    if reduction == "sum":
        return kl.sum()
    if reduction != "batchmean":
        raise ConfigError(f"pmg_aft.kl_reduction: unknown value {reduction!r}; allowed: batchmean, sum")
    return kl.mean()


def tecoa_loss(logits_adv: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """TeCoA: cross-entropy on the adversarial logits."""
    ce = F.cross_entropy(logits_adv.float(), labels)
    return {"loss": ce, "ce": ce}


def ucat_loss(logits_adv, logits_ref_clean, labels, logit_scale: float, tau_prime: float, tau: float,
              forward: bool = False) -> dict[str, torch.Tensor]:
    """UCAT: ``CE(l_adv, y) + lambda * mean KL(Dir(alpha_adv) || Dir(alpha_ref))``.

    ``forward=True`` swaps the KL arguments (the paper's ``KL(Dir(alpha) || Dir(alpha_adv))`` ablation).
    ``lambda * KL`` is formed in float64 and only then cast, so the loss is finite wherever its
    true value is; ``align`` (the unweighted KL) stays float64.
    """
    ce = F.cross_entropy(logits_adv.float(), labels)
    a_adv = dirichlet_concentration(logits_adv, logit_scale, tau_prime)
    a_ref = dirichlet_concentration(logits_ref_clean.detach(), logit_scale, tau_prime)
    kl = dirichlet_kl(a_ref, a_adv) if forward else dirichlet_kl(a_adv, a_ref)
    align = kl.mean()  # float64: at tau' <= 0.015 the KL exceeds float32's range while lambda underflows it
    weighted = (ucat_lambda(tau, tau_prime) * align).to(ce.dtype)
    return {"loss": ce + weighted, "ce": ce, "align": align}


def prob_kl_ablation_loss(logits_adv, logits_ref_clean, labels, weight: float,
                          reverse: bool = False) -> dict[str, torch.Tensor]:
    """Ablations: ``CE + w * KL(p_ref(x) || p(x_adv))``, or with ``reverse`` ``KL(p(x_adv) || p_ref(x))``."""
    ce = F.cross_entropy(logits_adv.float(), labels)
    ref = logits_ref_clean.detach()
    align = prob_kl(logits_adv, ref) if reverse else prob_kl(ref, logits_adv)
    return {"loss": ce + weight * align, "ce": ce, "align": align}


def pmg_aft_loss(logits_adv, logits_ref_adv, logits_clean, labels, alpha: float, beta: float,
                 reduction: str = "batchmean") -> dict[str, torch.Tensor]:
    """PMG-AFT (its public code): ``CE(l_adv) + a KL(p_orig(x_adv) || p(x_adv)) + b KL(p(x) || p(x_adv))``.

    ``logits_ref_adv``: frozen original model on the adversarial image; ``logits_clean``:
    the trained model on the clean image (gradients flow through both of its terms).
    ``reduction="sum"`` sums the KL terms over the batch as its code does (PMG_AFT.py:210,
    735-737); CE stays a batch mean there too.
    """
    ce = F.cross_entropy(logits_adv.float(), labels)
    kl_orig = prob_kl(logits_ref_adv.detach(), logits_adv, reduction)
    kl_clean = prob_kl(logits_clean, logits_adv, reduction)
    align = alpha * kl_orig + beta * kl_clean
    return {"loss": ce + align, "ce": ce, "align": align}


def fare_loss(emb_adv: torch.Tensor, emb_ref_clean: torch.Tensor) -> dict[str, torch.Tensor]:
    """FARE: ``mean_batch ||phi(x_adv) - phi_orig(x)||_2^2`` on un-normalised image embeddings."""
    loss = (emb_adv.float() - emb_ref_clean.detach().float()).pow(2).sum(-1).mean()
    return {"loss": loss, "align": loss}


ATTENTION_DISTANCES = ("l2", "l1", "cos")


def _wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (float64 stays float64)."""
    return x if x.dtype == torch.float64 else x.float()


def attention_distance(maps: torch.Tensor, target: torch.Tensor, metric: str) -> torch.Tensor:
    """Batch-mean distance between flattened attention maps (B, H·W), TGA-ZSR's ``criterion``
    (TGA-ZSR.py:473-482): ``l2`` the mean per-image Euclidean norm of the difference, ``l1`` the
    mean absolute difference over every pixel, ``cos`` the mean of ``1 - cosine``.

    The ℓ2 norm is ``torch.linalg.vector_norm``, whose gradient at a zero difference is 0 (the
    first step, where the trained model still equals the reference), not NaN.
    """
    maps, target = _wide(maps), _wide(target)
    if metric == "l2":
        return torch.linalg.vector_norm(maps - target, dim=1).mean()
    if metric == "l1":
        return (maps - target).abs().mean()
    if metric == "cos":
        return (1 - F.cosine_similarity(maps, target, dim=1, eps=1e-8)).mean()
    raise ConfigError(f"tga distance: unknown value {metric!r}; allowed: {', '.join(ATTENTION_DISTANCES)}")


def tga_loss(logits_adv, labels, att_adv, att_clean, att_ref_clean, alpha: float, beta: float,
             distance: str = "l2") -> dict[str, torch.Tensor]:
    """TGA-ZSR / Comp-TGA: ``CE(l_adv, y) + alpha·d(A(x_adv), A_ref(x)) + beta·d(A(x), A_ref(x))``.

    ``att_adv``/``att_clean``: attention maps of the trained model on the adversarial / clean
    image; ``att_ref_clean``: the frozen original model on the clean image (the target of both
    terms, no gradient).  ``lar`` is the Local Attention Refinement term, ``gac`` the Global
    Attention Constraint term, both unweighted (TGA-ZSR.py:340-345, 467-483).
    """
    ce = F.cross_entropy(_wide(logits_adv), labels)
    ref = att_ref_clean.detach()
    lar = attention_distance(att_adv, ref, distance)
    gac = attention_distance(att_clean, ref, distance)
    align = alpha * lar + beta * gac
    return {"loss": ce + align, "ce": ce, "align": align, "lar": lar, "gac": gac}
