"""Post-hoc calibration baseline: temperature scaling, and the adaptive (equal-mass) ECE.

Temperature scaling (Guo et al. 2017) divides a model's logits by one scalar ``T`` fitted to
minimise the NLL on held-out clean data.  It cannot change a prediction, only its
confidence, so it is the one-parameter question the fine-tuning methods must beat: does
UCAT's calibration under attack come from more than a rescaled softmax?

``fit_temperature`` minimises the mean NLL over ``beta = 1/T``; the NLL is convex in
``beta`` (log-sum-exp of a linear function minus a linear one), so its derivative
``E_p[z] - z_y`` is monotone and bisection on its sign finds the global minimum.
``ucat calibrate`` (``calibrate_model``) fits ``T`` per model on ``ucat.data.heldout`` and
writes a small JSON; the report applies it to every evaluation cell's stored logits.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .metrics import expected_calibration_error

BETA_RANGE = (1e-4, 1e4)   # T in [1e-4, 1e4]: beyond it the fit reports the bound it hit


def _nll_grad(z: torch.Tensor, y: torch.Tensor, beta: float) -> float:
    """d/d beta of mean NLL(softmax(beta z), y) = mean(E_p[z] - z_y)."""
    p = F.softmax(beta * z, dim=-1)
    return float(((p * z).sum(-1) - z.gather(-1, y[:, None]).squeeze(-1)).mean())


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / T)`` (float64)."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return float(F.cross_entropy(z / temperature, y))


def fit_temperature(logits, labels, iters: int = 200) -> float:
    """The ``T`` minimising the mean NLL of ``softmax(logits / T)``; bisection in log beta."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if z.ndim != 2 or len(z) != len(y) or len(z) == 0:
        raise ValueError(f"fit_temperature: need logits (N, C) and N labels, got {tuple(z.shape)} and {len(y)}")
    lo, hi = (math.log(b) for b in BETA_RANGE)
    if _nll_grad(z, y, math.exp(lo)) >= 0:
        return 1 / BETA_RANGE[0]
    if _nll_grad(z, y, math.exp(hi)) <= 0:  # separable data: sharper is always better
        return 1 / BETA_RANGE[1]
    for _ in range(iters):
        mid = (lo + hi) / 2
        if _nll_grad(z, y, math.exp(mid)) < 0:
            lo = mid
        else:
            hi = mid
    return float(1 / math.exp((lo + hi) / 2))


def adaptive_ece(confidence, correct, n_bins: int = 15) -> float:
    """ECE with equal-mass bins: samples sorted by confidence, split into ``n_bins`` near-equal
    counts (``np.array_split``), ``Σ_b (n_b/N) |acc_b - conf_b|``.  Less sensitive than equal-width
    bins to confidences piled up near 1, where CLIP's errors sit."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    n = len(confidence)
    if n == 0:
        return float("nan")
    order = np.argsort(confidence, kind="stable")
    total = 0.0
    for idx in np.array_split(order, min(n_bins, n)):
        total += len(idx) * abs(correct[idx].mean() - confidence[idx].mean())
    return float(total / n)


def scores(logits, labels, temperature: float = 1.0, n_bins: int = 15) -> dict:
    """ECE (equal width), adaptive ECE (equal mass), NLL, Brier and mean confidence at ``T``."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    p = F.softmax(z, dim=-1)
    conf, pred = p.max(-1)
    correct = (pred == y).numpy()
    conf = conf.numpy()
    brier = (p - F.one_hot(y, z.shape[-1]).double()).pow(2).sum(-1).mean()
    return {"ece": expected_calibration_error(conf, correct, n_bins), "ece_adaptive": adaptive_ece(conf, correct, n_bins),
            "nll": float(F.cross_entropy(z, y)), "brier": float(brier), "confidence": float(conf.mean())}


@torch.no_grad()
def heldout_logits(params: dict, checkpoint: str | Path, device: torch.device,
                   use_cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Clean logits and labels of ``checkpoint`` on the held-out split (zero-shot head of the fine-tuning classes)."""
    from . import models, prompts, textcache
    from .data.heldout import heldout_dataset
    from .evaluate import choose_batch_size

    clip_model, arch, _ = models.load_checkpoint(checkpoint)
    images, names = heldout_dataset(params, clip_model.visual.image_size[0])
    # the head the model is trained and evaluated with (prompt.source), from the shared text cache
    model = textcache.classifier(clip_model, arch, prompts.class_prompts(params["data"]["finetune"], params, names),
                                 device, use_cache)
    model.requires_grad_(False)
    del clip_model
    amp = models.autocast_dtype(params["run"]["precision"], device)
    batch_size = choose_batch_size(model, params["evaluate"]["batch_size"], device, amp, len(images))
    loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=params["data"]["num_workers"])
    zs, ys = [], []
    for x, y in loader:
        with models.autocast(amp, device):
            zs.append(model(x.to(device)).float().cpu())
        ys.append(y)
    return torch.cat(zs).numpy(), torch.cat(ys).numpy()


def calibrate_model(params: dict, checkpoint: str | Path, device: torch.device, method: str, backbone: str,
                    use_cache: bool = True) -> dict:
    """Fit ``T`` for one model on the held-out split; the record ``ucat calibrate`` writes."""
    from .data.heldout import heldout_split

    logits, labels = heldout_logits(params, checkpoint, device, use_cache)
    t = fit_temperature(logits, labels)
    bins = params["evaluate"]["ece_bins"]
    before, after = scores(logits, labels, 1.0, bins), scores(logits, labels, t, bins)
    return {"backbone": backbone, "method": method, "temperature": t,
            "fitted_on": {"dataset": params["data"]["finetune"], "split": heldout_split(params), "n": int(len(labels)),
                          "seed": params["data"]["seed"]},
            "heldout_before": before, "heldout_after": after,
            "at_bound": t in (1 / BETA_RANGE[0], 1 / BETA_RANGE[1])}
