"""One (checkpoint, multi-label data set, attack, ε) cell: attack, then the multi-label metrics.

The per-batch counterpart of :meth:`ucat.evaluate.Evaluator.score_all` for a set whose labels are
multi-hot vectors (``ucat.data.is_multilabel``, MS-COCO 2017): the evaluator has loaded the model,
the class text features and the data loader and reads each batch once; :func:`prepare` checks the
batch's targets and :func:`chunk` attacks it for one cell with :mod:`ucat.attacks_multilabel`.
The cell's arrays are scored with :mod:`ucat.metrics_multilabel` (:func:`cell_summary`), and the
same cell files are written as for a single-label set:

- the summary (metrics only): the paper's cells ``mAP``, ``P@3``, ``R@3``, ``F1@3`` (fractions, per
  batch as the official code), the ``per_batch`` and ``whole_set`` metrics (top-3 and top-5, micro
  and macro), the classwise calibration of the softmax probabilities, counts;
- the per-sample arrays: ``sample_id`` (index in the full split), ``target`` (multi-hot, uint8,
  N x C) and ``logits`` (float32, N x C), from which every metric can be recomputed.
"""

from __future__ import annotations

import numpy as np
import torch

from . import attacks_multilabel, metrics_multilabel, models
from .errors import ConfigError


def cell_summary(samples: dict, cell: dict, num_classes: int, ev: dict) -> dict:
    """A multi-label cell's metrics JSON: a function of its arrays (``ucat.evaluate.cell_summary``)."""
    return {**cell, "num_classes": int(num_classes), "multilabel": True,
            **metrics_multilabel.summarize(samples["logits"], samples["target"], ev["ece_bins"])}


def prepare(evaluator, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch on the device, its targets checked to be multi-hot over the class names."""
    num_classes = evaluator.model.num_classes
    if y.ndim != 2 or y.shape[1] != num_classes:
        raise ConfigError(f"{evaluator.dataset}: targets of shape {tuple(y.shape)}, expected multi-hot "
                          f"(batch, {num_classes})")
    return x.to(evaluator.device, non_blocking=True), y.to(evaluator.device, non_blocking=True)


def chunk(evaluator, attack: str, eps: int, gen: torch.Generator, x: torch.Tensor, y: torch.Tensor,
          ids: torch.Tensor) -> dict:
    """One batch of one cell of ``evaluator`` (a :class:`ucat.evaluate.Evaluator` on a multi-label set)."""
    model, device = evaluator.model, evaluator.device
    with models.autocast(evaluator.amp, device):
        adv = attacks_multilabel.run_attack(attack, model, x, y, eps, evaluator.params["evaluate"], gen)
        with torch.no_grad():
            logits = model(adv)
    return {"sample_id": ids.numpy().astype(np.int64), "target": y.cpu().numpy().astype(np.uint8),
            "logits": logits.detach().float().cpu().numpy()}
