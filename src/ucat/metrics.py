"""Calibration and Dirichlet-uncertainty metrics.

Per sample (from logits): prediction, max-softmax confidence, NLL, Brier score,
predictive entropy, aleatoric (AU) and epistemic (EU) uncertainty of the Dirichlet
``Dir(alpha)`` built from the logits.  Per set: accuracy, ECE with equal-width bins over
the confidence (the torchmetrics definition), reliability bins, means, and H.

Uncertainty conventions (``evaluate.uncertainty``):
- ``paper``: ``alpha = exp((cos + 1)/tau')``; ``AU = -Σ_k (α_k/α0)(ψ(α_k+1) - ψ(α0+1))`` (the
  expected entropy of the categorical under the Dirichlet); ``EU = C/(α0 + C)``; nats.
- ``code``: the official evaluation code: ``alpha = exp(softplus(l)) + 1e-6``, the same AU,
  ``EU = C / logsumexp(alpha + 1)``, and AU, EU and entropy divided by ``log C``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .losses import code_eval_concentration, dirichlet_concentration


def aleatoric_uncertainty(alpha: torch.Tensor) -> torch.Tensor:
    """Expected entropy ``E_{p~Dir(alpha)} H(p)`` in closed form (float64), per row."""
    alpha = alpha.double()
    a0 = alpha.sum(-1, keepdim=True)
    return -((alpha / a0) * (torch.digamma(alpha + 1) - torch.digamma(a0 + 1))).sum(-1)


def epistemic_uncertainty(alpha: torch.Tensor) -> torch.Tensor:
    """Paper: ``EU = C / (alpha0 + C)`` (vacuity of the evidence ``alpha``)."""
    alpha = alpha.double()
    num_classes = alpha.shape[-1]
    return num_classes / (alpha.sum(-1) + num_classes)


def per_sample(logits: torch.Tensor, labels: torch.Tensor, logit_scale: float, convention: str = "paper",
               tau_prime: float | str = "clip") -> dict[str, np.ndarray]:
    """All per-sample quantities for a batch of logits (N, C)."""
    logits = logits.detach().float()
    num_classes = logits.shape[-1]
    log_p = F.log_softmax(logits, dim=-1)
    p = log_p.exp()
    conf, pred = p.max(-1)
    onehot = F.one_hot(labels, num_classes).float()
    entropy = -(p * log_p).sum(-1)
    if convention == "paper":
        tp = 1.0 / logit_scale if tau_prime == "clip" else float(tau_prime)
        alpha = dirichlet_concentration(logits, logit_scale, tp)
        au, eu, norm = aleatoric_uncertainty(alpha), epistemic_uncertainty(alpha), 1.0
    elif convention == "code":
        alpha = code_eval_concentration(logits)
        au = aleatoric_uncertainty(alpha)
        eu = num_classes / torch.logsumexp(alpha + 1, dim=-1)
        norm = math.log(num_classes)
    else:
        raise ValueError(f"evaluate.uncertainty: unknown value {convention!r}; allowed: paper, code")
    out = {
        "label": labels,
        "pred": pred,
        "confidence": conf,
        "nll": -log_p.gather(-1, labels[:, None]).squeeze(-1),
        "brier": (p - onehot).pow(2).sum(-1),
        "entropy": entropy / norm,
        "aleatoric": au / norm,
        "epistemic": eu / norm,
    }
    return {k: v.cpu().numpy() for k, v in out.items()}


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> dict:
    """Equal-width, right-closed bins ``(lo, hi]`` over [0, 1]: c falls in bin ``ceil(c * n) - 1``
    (c = 0 in the first bin).

    torchmetrics' ``calibration_error`` bins ``[lo, hi)`` (``torch.bucketize(..., right=True)``)
    with an extra bin for c = 1 exactly; the two agree except for a confidence lying exactly on
    an edge (including a saturated softmax, c = 1.0), where torchmetrics puts it one bin higher.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
        conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
    return {"bin_edges": edges, "bin_accuracy": acc, "bin_confidence": conf, "bin_count": count}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """ECE = Σ_b (n_b / N) |acc_b - conf_b| over the ``(lo, hi]`` bins of :func:`reliability_bins`."""
    bins = reliability_bins(confidence, correct, n_bins)
    n = bins["bin_count"].sum()
    if n == 0:
        return float("nan")
    gap = np.abs(np.nan_to_num(bins["bin_accuracy"]) - np.nan_to_num(bins["bin_confidence"]))
    return float((bins["bin_count"] / n * gap).sum())


def harmonic_mean(a: float, b: float) -> float:
    """H(clean, robust) as in the paper: 2ab/(a+b), 0 when both are 0."""
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def summarize(samples: dict[str, np.ndarray], n_bins: int = 15) -> dict:
    """Set-level metrics from the per-sample arrays (JSON-ready)."""
    correct = samples["pred"] == samples["label"]
    bins = reliability_bins(samples["confidence"], correct, n_bins)

    def listify(a):
        return [None if (isinstance(x, float) and math.isnan(x)) else x for x in np.asarray(a).tolist()]

    wrong = ~correct

    def mean_where(key, mask):  # None when no sample qualifies
        return float(samples[key][mask].mean()) if mask.any() else None

    return {
        "n": int(len(correct)),
        "accuracy": float(correct.mean()),
        "ece": expected_calibration_error(samples["confidence"], correct, n_bins),
        "nll": float(samples["nll"].mean()),
        "brier": float(samples["brier"].mean()),
        "confidence": float(samples["confidence"].mean()),
        "entropy": float(samples["entropy"].mean()),
        "aleatoric": float(samples["aleatoric"].mean()),
        "epistemic": float(samples["epistemic"].mean()),
        # uncertainty where the model errs: adversarial errors made with clean-level confidence
        # are the paper's "suppressed uncertainty"
        "confidence_wrong": mean_where("confidence", wrong),
        "entropy_wrong": mean_where("entropy", wrong),
        "confidence_correct": mean_where("confidence", correct),
        "entropy_correct": mean_where("entropy", correct),
        "reliability": {k: listify(v) for k, v in bins.items()},
    }
