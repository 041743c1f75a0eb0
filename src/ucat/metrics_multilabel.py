"""Multi-label metrics of the paper's MS-COCO tables, and calibration of per-class probabilities.

The official ``main-multilabel.py`` (``compute_multilabel_metrics``, lines 112-205) scores the raw
logits ``l = 100 · cos`` (``probs = outputs``, line 126: no sigmoid, no softmax):

- **AP** of each class by scikit-learn's ``average_precision_score`` over the images; NaN for a
  class whose target is constant in the images scored (no positive, or no negative); **mAP** is
  the NaN-mean over the classes.
- **top-k** prediction: the k highest logits of an image are its predicted classes; **micro**
  P/R/F1 count true positives over every (image, class) pair, **macro** P/R/F1 average the
  per-class values over all classes, a class with no prediction (or no positive) counting 0
  (the official ``max(·, eps)`` denominators).
- It computes all of these **per batch** of its evaluation loader (``batch_size * 2`` = 512 with
  main.sh's 256, line 351) and averages them weighted by batch size (``AverageMeter``); the paper's
  Tables 14 and 15 are those averages (their F1@3 is the per-batch mean of F1, not 2PR/(P+R) of
  the mean P and R: the two differ by up to 0.013 points in the published rows).  ``summarize``
  stores both the per-batch numbers (``per_batch``, what the paper reports) and the same metrics
  over the whole set at once (``whole_set``).

Calibration (beyond the paper).  The official code turns no logit into a probability (its
threshold path and a commented ``sigmoid(l / 100)`` are unused).  ``sigmoid(l)`` of the
scale-100 logits is ≈ 1 for every class (cos > 0.1 gives > 0.9999) and ``sigmoid(l / 100)``
stays in (0.27, 0.73) whatever the evidence, so neither is a usable probability without a fitted
bias.  The per-class probability here is CLIP's zero-shot **softmax** ``p_k = softmax(l)_k``:
it ranks the classes exactly as the logits do and is the Dirichlet mean ``α_k/α_0`` the UCAT
alignment calibrates.  Calibration is scored one class against the rest (*classwise* ECE and
Brier, Kull et al. 2019): for each class, ECE of ``p_k`` against ``y_k`` over the images, with the
equal-width bins of :func:`ucat.metrics.expected_calibration_error`, and the mean of
``(p_k - y_k)^2``; both averaged over the classes.  Caveat: a softmax spreads one unit of mass,
so on an image with m labels it can give each at most about 1/m: part of the classwise error on
multi-label data is this structural under-confidence, the same for every model.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .metrics import expected_calibration_error

#: the official per-batch grouping: its validation loader's batch (main.sh 256, x2 in main-multilabel.py:351)
OFFICIAL_BATCH_SIZE = 512
TOP_K = (3, 5)
PAPER_CONVENTION = "per_batch"
PROBABILITY = "softmax"
_EPS = 1e-12   # the official denominators' floor (compute_multilabel_metrics, eps=1e-12)


def average_precision(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-class AP (scikit-learn), NaN for a class whose target is constant over the rows."""
    from sklearn.metrics import average_precision_score

    target = np.asarray(target).astype(np.int32)
    out = np.full(target.shape[1], np.nan)
    for c in range(target.shape[1]):
        if target[:, c].min() != target[:, c].max():
            out[c] = average_precision_score(target[:, c], scores[:, c])
    return out


def top_k_predictions(scores: np.ndarray, k: int) -> np.ndarray:
    """0/1 matrix of each row's k highest scores (``torch.topk``, as the official code)."""
    s = torch.from_numpy(np.ascontiguousarray(scores))
    pred = torch.zeros(s.shape, dtype=torch.int32)
    pred.scatter_(1, torch.topk(s, k=min(k, s.shape[1]), dim=1).indices, 1)
    return pred.numpy()


def precision_recall_f1(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Micro and macro precision, recall and F1 of 0/1 predictions against a 0/1 target."""
    pred, target = np.asarray(pred, np.int64), np.asarray(target, np.int64)
    tp, fp, fn = (pred * target).sum(0), (pred * (1 - target)).sum(0), ((1 - pred) * target).sum(0)

    def prf(tp, fp, fn):
        p = tp / np.maximum(tp + fp, _EPS)
        r = tp / np.maximum(tp + fn, _EPS)
        return p, r, 2 * p * r / np.maximum(p + r, _EPS)

    micro = prf(tp.sum(), fp.sum(), fn.sum())
    macro = [float(np.mean(v)) for v in prf(tp, fp, fn)]
    return {"micro_precision": float(micro[0]), "micro_recall": float(micro[1]), "micro_f1": float(micro[2]),
            "macro_precision": macro[0], "macro_recall": macro[1], "macro_f1": macro[2]}


def set_metrics(scores: np.ndarray, target: np.ndarray, top_k=TOP_K) -> dict:
    """mAP and top-k P/R/F1 of one group of images (the official ``compute_multilabel_metrics``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # a group where no class can be ranked: NaN
        m_ap = float(np.nanmean(average_precision(scores, target)))
    return {"mAP": m_ap, **{f"top{k}": precision_recall_f1(top_k_predictions(scores, k), target) for k in top_k}}


def batched_metrics(scores: np.ndarray, target: np.ndarray, batch_size: int | None = OFFICIAL_BATCH_SIZE,
                    top_k=TOP_K) -> dict:
    """``set_metrics`` of consecutive batches, averaged weighted by batch size (the official
    ``AverageMeter``); ``batch_size=None``: the whole set as one batch."""
    n = len(target)
    size = n if batch_size is None else batch_size
    groups = [(set_metrics(scores[i:i + size], target[i:i + size], top_k), len(target[i:i + size]))
              for i in range(0, n, size)]
    weights = np.array([w for _, w in groups], float)

    def mean(values):
        return float(np.dot(values, weights) / weights.sum())

    out = {"mAP": mean([g["mAP"] for g, _ in groups])}
    for k in top_k:
        out[f"top{k}"] = {name: mean([g[f"top{k}"][name] for g, _ in groups]) for name in groups[0][0][f"top{k}"]}
    return out


def softmax_probabilities(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(np.asarray(logits, np.float64)), dim=-1).numpy()


def classwise_calibration(probs: np.ndarray, target: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """Mean over classes of each class's ECE (``p_k`` against ``y_k``) and Brier score."""
    target = np.asarray(target, np.float64)
    ece = [expected_calibration_error(probs[:, c], target[:, c], n_bins) for c in range(target.shape[1])]
    brier = ((probs - target) ** 2).mean(0)
    return {"ece": float(np.mean(ece)), "brier": float(brier.mean())}


def _nan_to_none(tree):
    if isinstance(tree, dict):
        return {k: _nan_to_none(v) for k, v in tree.items()}
    return None if isinstance(tree, float) and np.isnan(tree) else tree


def summarize(logits: np.ndarray, target: np.ndarray, n_bins: int = 15,
              batch_size: int = OFFICIAL_BATCH_SIZE) -> dict:
    """Set-level metrics of one cell (JSON-ready; fractions, not %): the paper's cells ``mAP``,
    ``P@3``, ``R@3``, ``F1@3`` (per batch), the ``per_batch`` and ``whole_set`` metrics, the
    classwise calibration of the softmax probabilities, and counts."""
    logits, target = np.asarray(logits, np.float32), np.asarray(target)
    per_batch = batched_metrics(logits, target, batch_size)
    top3 = per_batch["top3"]
    return _nan_to_none({
        "n": int(len(target)),
        "paper_convention": PAPER_CONVENTION,
        "mAP": per_batch["mAP"], "P@3": top3["micro_precision"], "R@3": top3["micro_recall"],
        "F1@3": top3["micro_f1"],
        "per_batch": {"batch_size": batch_size, **per_batch},
        "whole_set": batched_metrics(logits, target, None),
        "calibration": {"probability": PROBABILITY, "ece_bins": n_bins,
                        **classwise_calibration(softmax_probabilities(logits), target, n_bins)},
        "positives": int(np.asarray(target).sum()),
        "images_without_labels": int((np.asarray(target).sum(1) == 0).sum()),
    })
